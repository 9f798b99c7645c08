"""The training examples (examples/train_digits.py, examples/names_lm.py), run as a user runs
them, with short settings: they learn, a resumed run ends bit for bit where an uninterrupted
one does, and the language model makes up names.

The scripts run as subprocesses on "cpu" with one BLAS thread: their matrices are small, and
on a busy machine extra BLAS threads only spin against each other (a 100x slowdown on a
loaded two-core host); the results do not depend on it.
"""
import math
import os
import re
import subprocess
import sys

import pytest

import tritonnn as tn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIGITS = os.path.join(ROOT, "examples", "train_digits.py")
NAMES = os.path.join(ROOT, "examples", "names_lm.py")
EPOCHS = 3
STEPS_PER_EPOCH = math.ceil(1437 / 32)       # 80% of the 1,797 digits, in batches of 32


def _run(script, *args, ok=True):
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    r = subprocess.run([sys.executable, script, *map(str, args)], capture_output=True, text=True,
                       timeout=300, env=env, cwd=ROOT)
    if ok:
        assert r.returncode == 0, f"rc={r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _epochs(stdout):
    """{epoch: (train loss, test accuracy in %, the whole line)} of the per-epoch lines."""
    out = {}
    for line in stdout.splitlines():
        m = re.fullmatch(r"epoch +(\d+)/(\d+): train loss ([\d.]+), test accuracy ([\d.]+)%, "
                         r"lr ([\d.e+-]+)", line)
        if m:
            out[int(m[1])] = (float(m[3]), float(m[4]), line)
    return out


# ==============================================================================================
# train_digits
# ==============================================================================================


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """An uninterrupted EPOCHS-epoch run that writes a checkpoint: (stdout, its bytes)."""
    ckpt = tmp_path_factory.mktemp("digits") / "straight.safetensors"
    r = _run(DIGITS, "--device", "cpu", "--epochs", EPOCHS, "--checkpoint", ckpt)
    return r.stdout, ckpt.read_bytes()


def test_train_digits_learns(straight_run):
    stdout, _ = straight_run
    epochs = _epochs(stdout)
    assert sorted(epochs) == list(range(1, EPOCHS + 1)), stdout
    losses = [epochs[e][0] for e in sorted(epochs)]
    accs = [epochs[e][1] for e in sorted(epochs)]
    # ln(10) = 2.30 is the loss of a uniform guess, 10% the accuracy of one
    assert losses[-1] < 0.5 and losses == sorted(losses, reverse=True), stdout
    assert accs[-1] > 85.0 and accs[-1] > accs[0], stdout
    final = re.search(r"final test accuracy ([\d.]+)% after (\d+) steps", stdout)
    assert final and float(final[1]) == accs[-1], stdout
    assert int(final[2]) == EPOCHS * STEPS_PER_EPOCH


def test_train_digits_checkpoint_holds_the_whole_run(straight_run, tmp_path):
    _, data = straight_run
    path = tmp_path / "c.safetensors"
    path.write_bytes(data)
    state = tn.load(path)
    assert set(state) == {"model", "optim", "sched", "loader", "rng", "step", "epochs",
                          "epoch_loss_sum", "epoch_batches"}
    assert state["step"] == EPOCHS * STEPS_PER_EPOCH and state["epochs"] == EPOCHS
    assert sorted(state["model"]) == ["0.bias", "0.weight", "3.bias", "3.weight", "5.bias",
                                      "5.weight"]
    # two param groups: weight decay on the three matrices, none on the three biases
    groups = state["optim"]["param_groups"]
    assert [(g["weight_decay"], len(g["params"])) for g in groups] == [(0.05, 3), (0.0, 3)]
    assert state["sched"]["last_epoch"] == EPOCHS * STEPS_PER_EPOCH and state["sched"]["_last_lr"][0] == 0.0


@pytest.mark.parametrize("stop_after,every", [("1", None), ("1.5", 7)],
                         ids=["at-an-epoch-end", "mid-epoch"])
def test_train_digits_resume_is_bit_for_bit(straight_run, tmp_path, stop_after, every):
    """Stop after k epochs (a checkpoint), resume to EPOCHS: the same final checkpoint file as
    the uninterrupted run (weights, AdamW's moments, schedule, loader, random stream), and the
    same per-epoch lines, the interrupted epoch's running loss included."""
    straight_out, straight_bytes = straight_run
    ckpt = tmp_path / "run.safetensors"
    common = ["--device", "cpu", "--epochs", EPOCHS, "--checkpoint", ckpt]
    extra = ["--checkpoint-every", every] if every else []
    first = _run(DIGITS, *common, *extra, "--stop-after", stop_after)
    stopped = re.search(r"stopped at step (\d+)/(\d+)", first.stdout)
    assert stopped and int(stopped[1]) == round(float(stop_after) * STEPS_PER_EPOCH), first.stdout
    assert tn.load(ckpt)["step"] == int(stopped[1])
    assert ckpt.read_bytes() != straight_bytes
    second = _run(DIGITS, *common, "--resume")
    assert f"resumed from {ckpt} at step {stopped[1]}/" in second.stdout
    assert ckpt.read_bytes() == straight_bytes
    straight, resumed = _epochs(straight_out), _epochs(second.stdout)
    assert sorted(resumed) == list(range(int(float(stop_after)) + 1, EPOCHS + 1))
    assert all(resumed[e][2] == straight[e][2] for e in resumed), second.stdout


def test_train_digits_refuses_a_resume_it_cannot_do(straight_run, tmp_path):
    r = _run(DIGITS, "--device", "cpu", "--resume", ok=False)
    assert r.returncode == 2 and "--resume needs --checkpoint" in r.stderr
    r = _run(DIGITS, "--device", "cpu", "--resume", "--checkpoint", tmp_path / "none",
             ok=False)
    assert r.returncode == 2 and "there is no checkpoint at" in r.stderr
    path = tmp_path / "c.safetensors"
    path.write_bytes(straight_run[1])
    r = _run(DIGITS, "--device", "cpu", "--epochs", EPOCHS + 1, "--checkpoint", path,
             "--resume", ok=False)
    assert r.returncode != 0 and f"resume with --epochs {EPOCHS}" in r.stderr
    assert path.read_bytes() == straight_run[1]


# ==============================================================================================
# names_lm
# ==============================================================================================


def _names_run(*args, device="cpu"):
    """(final validation loss, [train loss at each report], the made-up names, stdout)."""
    r = _run(NAMES, "--device", device, *args)
    lines = r.stdout.splitlines()
    reports = [re.fullmatch(r"step +\d+/\d+: train loss ([\d.]+), validation loss ([\d.]+)", ln)
               for ln in lines]
    reports = [m for m in reports if m]
    assert reports and "new names:" in lines[-2], r.stdout
    names = lines[-1].strip().split(", ")
    return float(reports[-1][2]), [float(m[1]) for m in reports], names, r.stdout


def test_names_lm_learns_and_makes_up_names():
    val, train, names, stdout = _names_run("--steps", 100, "--samples", 20, "--seed", 3)
    uniform = math.log(27)
    assert f"a uniform guess scores {uniform:.3f}" in stdout
    assert val < 2.5 < uniform and train[-1] < 2.5 < train[0], stdout
    assert len(names) == 20
    assert all(re.fullmatch(r"[a-z]{1,20}", n) for n in names), names
    assert len(set(names)) >= 15, names
    # names, not letter soup: mostly 3 to 12 letters, nearly all with a vowel
    assert sum(3 <= len(n) <= 12 for n in names) >= 16, names
    assert sum(bool(re.search("[aeiouy]", n)) for n in names) >= 18, names


def test_names_lm_is_seeded():
    def output(seed):
        stdout = _names_run("--steps", 20, "--samples", 6, "--seed", seed)[3]
        return [ln for ln in stdout.splitlines() if not ln.startswith("trained in")]
    first = output(5)
    assert output(5) == first
    assert output(6)[-1] != first[-1]


# ==============================================================================================
# on a real GPU: bf16 autocast (too slow for the Triton interpreter)
# ==============================================================================================


@pytest.mark.skipif(not tn.cuda.is_available(), reason="needs a real GPU (the interpreter "
                    "takes minutes for these runs)")
def test_examples_on_a_gpu():
    r = _run(DIGITS, "--device", "cuda", "--epochs", EPOCHS)
    epochs = _epochs(r.stdout)
    assert sorted(epochs) == [1, 2, 3] and epochs[EPOCHS][1] > 85.0, r.stdout
    val, _, names, stdout = _names_run("--steps", 100, "--samples", 10, device="cuda")
    assert val < 2.5 and all(re.fullmatch(r"[a-z]{1,20}", n) for n in names), stdout
