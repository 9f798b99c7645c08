"""The command line and the example, run as a user would run them."""
import fcntl
import os
import pathlib
import pty
import re
import select
import struct
import subprocess
import sys
import tempfile
import termios
import time

import numpy as np
import pytest

import tritonnn as tn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, env_extra=None, timeout=300):
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def test_train_default_settings_reach_95_percent(tmp_path):
    out = tmp_path / "digits.safetensors"
    r = _run([sys.executable, "-m", "tritonnn.cli", "train", "--device", "cpu", "--out", str(out)])
    assert r.returncode == 0, r.stderr
    # stderr is a pipe here, as in a redirected log: one plain line per epoch, no bar
    assert [ln.split(":")[0] for ln in r.stderr.splitlines()] == [
        f"epoch {e:>2}/40" for e in range(1, 41)], r.stderr[-2000:]
    assert len(r.stdout) + len(r.stderr) < 4096, "a default run's log is a few KB"
    line = [ln for ln in r.stdout.splitlines() if "test accuracy" in ln][-1]
    acc = float(line.split("test accuracy")[1].split("%")[0])
    assert acc >= 95.0, r.stdout
    # the saved model is a plain safetensors file holding the MLP and reproduces the accuracy
    sd = tn.load(out)
    assert sorted(sd) == ["0.bias", "0.weight", "2.bias", "2.weight", "4.bias", "4.weight"]
    assert tn.io.load_metadata(out)["test_accuracy"] == f"{acc / 100:.4f}"
    from tritonnn.cli import build_mlp
    from tritonnn.datasets import load_digits, train_test_split
    model = build_mlp(64, [128, 64], 10, "cpu")
    model.load_state_dict(sd)
    images, labels = load_digits()
    _, te = train_test_split(len(images), 0.2, 0)
    with tn.no_grad():
        pred = model(tn.tensor(images[te])).argmax(dim=1).numpy()
    assert abs(np.mean(pred == labels[te]) * 100 - acc) < 0.01


def test_train_adamw_and_bad_option(tmp_path):
    r = _run([sys.executable, "-m", "tritonnn.cli", "train", "--device", "cpu", "--quiet",
              "--optimizer", "adamw", "--lr", "0.003", "--epochs", "8", "--out", ""])
    assert r.returncode == 0, r.stderr
    acc = float(r.stdout.split("test accuracy")[1].split("%")[0])
    assert acc > 90.0
    r = _run([sys.executable, "-m", "tritonnn.cli", "train", "--optimizer", "rmsprop"])
    assert r.returncode != 0 and "invalid choice" in r.stderr
    for option, value in (("--schedule", "linear"), ("--precision", "fp16")):
        r = _run([sys.executable, "-m", "tritonnn.cli", "train", option, value])
        assert r.returncode == 2 and f"argument {option}: invalid choice: '{value}'" in r.stderr


def test_digits_dataset_is_the_uci_set():
    from tritonnn.datasets import load_digits
    x, y = load_digits()
    assert x.shape == (1797, 64) and x.dtype == np.float32 and y.dtype == np.int64
    assert 0.0 <= x.min() and x.max() == 1.0
    assert np.bincount(y).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_info_names_the_backends():
    r = _run([sys.executable, "-m", "tritonnn.cli", "info"])
    assert r.returncode == 0, r.stderr
    assert "numpy backend" in r.stdout and "tritonnn" in r.stdout
    r = _run([sys.executable, "-m", "tritonnn.cli", "info"], {"TRITONNN_INTERPRET": "1"})
    assert "interpreter" in r.stdout


def test_seed_walkthrough_on_cpu():
    r = _run([sys.executable, "examples/seed_walkthrough.py", "--device", "cpu"])
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "Total number of trainable model parameters: 2213" in r.stdout
    assert "test accuracy: 1.0" in r.stdout
    assert "the walkthrough ran end to end on cpu" in r.stdout


@pytest.mark.slow
def test_seed_walkthrough_on_cuda():
    """Every step of the guide on device "cuda": Triton kernels (interpreted without a GPU)."""
    env = {} if os.environ.get("TRITONNN_INTERPRET") is None else {"TRITONNN_INTERPRET": "1"}
    r = _run([sys.executable, "examples/seed_walkthrough.py", "--device", "cuda"], env, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "the walkthrough ran end to end on cuda" in r.stdout


# ==============================================================================================
# train: every argument checked before any work
# ==============================================================================================

TRAIN = [sys.executable, "-m", "tritonnn.cli", "train", "--device", "cpu", "--epochs", "2"]

BAD_TRAIN_ARGUMENTS = [
    ("--epochs", "0"), ("--epochs", "-1"), ("--epochs", "abc"), ("--epochs", "1.5"),
    ("--batch-size", "0"),
    ("--lr", "0"), ("--lr", "-0.1"), ("--lr", "nan"), ("--lr", "inf"),
    ("--momentum", "1"), ("--momentum", "-0.1"),
    ("--weight-decay", "-0.001"), ("--weight-decay", "nan"),
    ("--hidden", "abc"), ("--hidden", "0"), ("--hidden", "64,,32"), ("--hidden", "-5"),
    ("--test-fraction", "0"), ("--test-fraction", "1"), ("--test-fraction", "nan"),
    ("--test-fraction", "0.0001"),      # rounds to an empty test split of the 1,797 digits
    ("--test-fraction", "0.9999"),      # ... and to an empty training split
    ("--seed", "-1"), ("--seed", str(2 ** 64)),
    ("--out", "{tmp}/missing/model.safetensors"), ("--out", "{tmp}/model.pt"),
    ("--out", "{tmp}/folder.safetensors"),
    ("--warmup", "-1"), ("--warmup", "90"),         # 2 epochs of 45 batches: 90 steps in all
    ("--clip", "-1"), ("--clip", "nan"),
    ("--checkpoint-every", "-5"), ("--checkpoint", "{tmp}/missing/c.safetensors"),
    ("--resume", "{tmp}/nothing.safetensors"), ("--resume", "{tmp}/folder.safetensors"),
    ("--plot", "{tmp}/curves.jpg"), ("--plot", "{tmp}/missing/curves.png"),
]


def _check_usage_error(r, prog, argument, value):
    """Exit 2, one line on stderr naming the argument and the value, nothing on stdout."""
    lines = r.stderr.splitlines()
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith(f"{prog}: error: argument {argument}"), lines[0]
    assert lines[0].endswith(f"({value})"), lines[0]
    assert r.stdout == "", "nothing printed, no epoch trained"


@pytest.mark.parametrize("argument,value", BAD_TRAIN_ARGUMENTS)
def test_train_bad_argument_exits_2_before_any_work(tmp_path, argument, value):
    (tmp_path / "folder.safetensors").mkdir()
    before = sorted(tmp_path.rglob("*"))
    value = value.format(tmp=tmp_path)
    out = [] if argument == "--out" else ["--out", str(tmp_path / "model.safetensors")]
    r = _run([*TRAIN, *out, argument, value])
    _check_usage_error(r, "tritonnn train", argument, value)
    assert sorted(tmp_path.rglob("*")) == before, "no model, no probe file left behind"


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder this process cannot write into: a chmod-ed one, or for root (who writes
    anywhere) /sys where it is mounted read-only."""
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o500)
        yield folder
        folder.chmod(0o700)
        return
    try:
        os.remove(tempfile.mkstemp(dir="/sys")[1])
    except OSError:
        yield pathlib.Path("/sys")
    else:
        pytest.skip("root, and /sys is writable: no read-only folder to try")


def test_train_out_in_a_read_only_folder_fails_before_training(read_only_folder):
    out = read_only_folder / "model.safetensors"
    r = _run([*TRAIN, "--out", str(out)])
    _check_usage_error(r, "tritonnn train", "--out", out)
    assert "is not writable" in r.stderr and not out.exists()


def test_train_cuda_without_gpu_or_interpreter_fails_up_front(tmp_path):
    if tn.cuda.is_available():
        pytest.skip("a GPU is here: device cuda is available")
    env = {k: v for k, v in os.environ.items() if k != "TRITONNN_INTERPRET"}
    r = subprocess.run([*TRAIN, "--device", "cuda", "--out", str(tmp_path / "m.safetensors")],
                       capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    _check_usage_error(r, "tritonnn train", "--device", "cuda")
    assert "TRITONNN_INTERPRET=1" in r.stderr and not list(tmp_path.iterdir())


def test_train_without_hidden_layer_and_quiet(tmp_path):
    """``--hidden ''``: softmax regression, 64 -> 10; ``--quiet``: the final summary only."""
    out = tmp_path / "linear.safetensors"
    r = _run([*TRAIN, "--hidden", "", "--quiet", "--out", str(out)])
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert [ln.split()[0] for ln in r.stdout.splitlines()] == ["train", "saved"], r.stdout
    assert sorted(tn.load(out)) == ["0.bias", "0.weight"]
    assert tn.io.load_metadata(out)["architecture"] == "64-10"


def test_train_redirected_log_has_plain_epoch_lines(tmp_path):
    log = tmp_path / "train.log"
    with open(log, "w") as f:
        r = subprocess.run([*TRAIN, "--epochs", "3", "--out", ""], stdout=f, stderr=f,
                           timeout=120, cwd=ROOT)
    assert r.returncode == 0
    text = log.read_text()
    epoch_lines = [ln for ln in text.splitlines() if ln.startswith("epoch")]
    assert len(epoch_lines) == 3, text
    for e, ln in enumerate(epoch_lines, 1):
        assert re.fullmatch(rf"epoch {e}/3: train loss \d+\.\d{{4}}, test accuracy "
                            rf"\d+\.\d\d% \(\d+\.\d s\)", ln), ln
    assert "\r" not in text and "batch/s" not in text, "no progress bar in a log"
    assert len(text) < 1024, text


# ==============================================================================================
# train: schedule, clipping, precision, checkpoints and resume, curves
# ==============================================================================================


def _final_accuracy(stdout):
    return float(stdout.split("test accuracy")[-1].split("%")[0])


def _same_weights(a, b):
    sa, sb = tn.load(a), tn.load(b)
    assert sorted(sa) == sorted(sb)
    for k in sa:
        assert np.array_equal(sa[k].numpy(), sb[k].numpy()), k


def test_train_schedule_and_clipping_are_the_documented_loop(tmp_path):
    """``--schedule cosine --warmup 10 --clip 0.5`` trains exactly as this loop does: AdamW,
    SequentialLR(LinearLR(1/11 -> 1 over 10 steps), CosineAnnealingLR(the rest)) stepped per
    batch, clip_grad_norm_ before each step. Same final weights, bit for bit."""
    out = tmp_path / "cli.safetensors"
    r = _run([*TRAIN, "--optimizer", "adamw", "--lr", "0.01", "--schedule", "cosine",
              "--warmup", "10", "--clip", "0.5", "--out", str(out)])
    assert r.returncode == 0, r.stderr
    assert "cosine schedule, warmup 10, clip 0.5, fp32" in r.stdout
    from tritonnn.cli import build_mlp
    from tritonnn.datasets import load_digits, train_test_split
    images, labels = load_digits()
    tr, _ = train_test_split(len(images), 0.2, 0)
    tn.manual_seed(0)
    x, y = tn.tensor(images[tr]), tn.tensor(labels[tr])
    model = build_mlp(64, [128, 64], 10, "cpu")
    opt = tn.optim.AdamW(model.parameters(), lr=0.01, weight_decay=1e-4)
    loader = tn.data.DataLoader(tn.data.TensorDataset(x, y), batch_size=32, shuffle=True, seed=0)
    sch = tn.optim.lr_scheduler
    sched = sch.SequentialLR(opt, [sch.LinearLR(opt, 1 / 11, total_iters=10),
                                   sch.CosineAnnealingLR(opt, T_max=2 * 45 - 10)], [10])
    lrs, norms = [], []
    for _ in range(2):
        for xb, yb in loader:
            loss = tn.nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            norms.append(tn.nn.utils.clip_grad_norm_(model.parameters(), 0.5).item())
            opt.step()
            lrs.append(opt.param_groups[0]["lr"])
            sched.step()
    assert lrs[0] == pytest.approx(0.01 / 11) and lrs[10] == pytest.approx(0.01)
    assert lrs[-1] < 1e-4 and max(norms) > 0.5, "the schedule decays; clipping acted"
    ref = tmp_path / "loop.safetensors"
    tn.save(model.state_dict(), ref)
    _same_weights(out, ref)


def test_train_killed_run_resumes_to_the_same_weights(tmp_path):
    """A run killed (SIGKILL) after some checkpoint, resumed with ``--resume``, ends with the
    weights of the same run left alone; checkpoints fall mid-epoch (every 7 of 45 batches)."""
    options = ["--epochs", "6", "--optimizer", "adamw", "--lr", "0.003", "--schedule", "cosine",
               "--warmup", "5", "--clip", "1", "--checkpoint-every", "7", "--quiet"]
    whole = tmp_path / "whole.safetensors"
    r = _run([*TRAIN[:-2], *options, "--checkpoint", str(tmp_path / "w.ckpt.safetensors"),
              "--out", str(whole)])
    assert r.returncode == 0, r.stderr
    ckpt, out = tmp_path / "run.ckpt.safetensors", tmp_path / "resumed.safetensors"
    p = subprocess.Popen([*TRAIN[:-2], *options, "--checkpoint", str(ckpt), "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    deadline = time.monotonic() + 120
    while not ckpt.exists() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    p.kill()
    p.communicate()
    assert ckpt.exists() and not out.exists(), "killed after a checkpoint, before the end"
    state = tn.load(ckpt)
    assert 0 < state["step"] < 6 * 45 and state["step"] % 7 == 0
    r = _run([*TRAIN[:-2], *options, "--resume", str(ckpt), "--out", str(out)])
    assert r.returncode == 0, r.stderr
    _same_weights(out, whole)
    # a finished run's last checkpoint resumes to the end too, and the history is whole
    r = _run([*TRAIN[:-2], *options, "--resume", str(tmp_path / "w.ckpt.safetensors"),
              "--out", str(out), "--plot", str(tmp_path / "curves.png")])
    assert r.returncode == 0, r.stderr
    _same_weights(out, whole)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    last = tn.load(tmp_path / "w.ckpt.safetensors")     # step 266 = 38 * 7, in epoch 6
    assert last["step"] == 266 and last["epoch"] == 6 and last["epoch_seen"] == 41 * 32
    assert [h[0] for h in last["history"]] == [1, 2, 3, 4, 5]
    assert all(0 < h[2] <= 1 for h in last["history"])


def test_train_resume_refuses_other_training_options(tmp_path):
    ckpt = tmp_path / "c.safetensors"
    r = _run([*TRAIN, "--checkpoint-every", "30", "--checkpoint", str(ckpt), "--out", ""])
    assert r.returncode == 0, r.stderr
    r = _run([*TRAIN, "--lr", "0.1", "--resume", str(ckpt), "--out", ""])
    _check_usage_error(r, "tritonnn train", "--resume", ckpt)
    assert "made with --lr 0.05, this run has --lr 0.1" in r.stderr
    model = tmp_path / "model.safetensors"
    tn.save({"w": tn.ones(2)}, model)
    r = _run([*TRAIN, "--resume", str(model), "--out", ""])
    _check_usage_error(r, "tritonnn train", "--resume", model)
    assert "not a checkpoint of tritonnn train" in r.stderr


def test_train_bf16_ends_within_half_a_point_of_fp32(tmp_path):
    """The default run (40 epochs of SGD) with ``--precision bf16``: bfloat16 matmuls under
    autocast, float32 master weights; the test accuracy within 0.5 points of float32's."""
    accs = {}
    for precision in ("fp32", "bf16"):
        r = _run([*TRAIN[:-2], "--precision", precision, "--quiet", "--out", ""])
        assert r.returncode == 0, r.stderr
        accs[precision] = _final_accuracy(r.stdout)
    assert accs["fp32"] >= 95.0 and abs(accs["bf16"] - accs["fp32"]) <= 0.5, accs


# ==============================================================================================
# the progress bar
# ==============================================================================================


def _run_on_terminal(args, timeout=120):
    """Run ``args`` with stderr on a pseudo-terminal (100 columns); returns (rc, stdout, tty)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=slave, cwd=ROOT)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not select.select([master], [], [], 1.0)[0]:
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:             # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    stdout = p.communicate(timeout=max(1, deadline - time.monotonic()))[0]
    return p.returncode, stdout.decode(), b"".join(chunks).decode(errors="replace")


def test_train_progress_bar_counts_batches_on_a_terminal():
    rc, stdout, tty = _run_on_terminal([*TRAIN, "--out", ""])
    assert rc == 0, tty
    # one bar for the run (2 epochs of 45 batches), redrawn under each epoch line
    assert "/90 [" in tty and "45/90" in tty and "90/90" in tty, tty
    assert "loss=" in tty
    assert re.search(r"epoch 1/2: train loss \d\.\d{4}", tty) and "epoch 2/2: train loss" in tty
    assert "test accuracy" in stdout


class _RecordingBar:
    """The part of tqdm that train_epoch uses, recording when it draws."""

    def __init__(self, clock):
        self.n, self.clock, self.draws, self.postfix = 0, clock, [], {}

    def set_postfix(self, refresh=True, **kw):
        assert not refresh, "the postfix must not force a redraw"
        self.postfix = kw

    def update(self, k):
        assert k > 0
        self.n += k
        self.draws.append((self.clock.now, self.n))


class _FakeClock:
    """Each reading moves 0.1 s on: a batch takes about 0.1 s."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 0.1
        return self.now


def _tiny_training():
    """A seeded model, optimizer and loader: 42 samples in batches of 4, the last one of 2."""
    tn.manual_seed(3)
    x, y = tn.randn(42, 4), tn.tensor(np.arange(42) % 3)
    model = tn.nn.Sequential(tn.nn.Linear(4, 8), tn.nn.ReLU(), tn.nn.Linear(8, 3))
    opt = tn.optim.SGD(model.parameters(), lr=0.1)
    loader = tn.data.DataLoader(tn.data.TensorDataset(x, y), batch_size=4, shuffle=True, seed=3)
    return model, opt, loader


def test_train_epoch_draws_the_bar_per_batch_at_most_every_refresh():
    from tritonnn.cli import train_epoch
    clock = _FakeClock()
    bar = _RecordingBar(clock)
    mean = train_epoch(*_tiny_training(), bar, refresh_s=0.25, clock=clock)
    assert bar.n == 11, "every batch counted"
    assert len(bar.draws) >= 2 and bar.draws[-1][1] < 11, "drawn during the epoch, throttled"
    times = [t for t, _ in bar.draws]
    assert all(b - a >= 0.25 for a, b in zip(times, times[1:]))
    assert bar.postfix == {"loss": f"{mean:.4f}"}, "the epoch's mean shown last"
    # the bar changes nothing, and the mean is exact: every sample's loss, weighted by batch
    assert train_epoch(*_tiny_training()) == mean
    model, opt, loader = _tiny_training()
    total = 0.0
    for xb, yb in loader:
        loss = tn.nn.functional.cross_entropy(model(xb), yb)
        opt.backward_step(loss)
        total += loss.item() * len(yb)
    assert mean == pytest.approx(total / 42, rel=1e-6)


# ==============================================================================================
# info and sweep
# ==============================================================================================


def test_info_and_sweep_bad_arguments_exit_2_with_one_line():
    r = _run([sys.executable, "-m", "tritonnn.cli", "info", "--verbose"])
    assert r.returncode == 2 and r.stderr.splitlines() == [
        "tritonnn info: error: unrecognized arguments: --verbose"], r.stderr
    r = _run([sys.executable, "-m", "tritonnn.cli", "sweep", "--kernels", "relu", "nope"])
    lines = r.stderr.splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith("tritonnn sweep: error: argument --kernels: unknown kernel "
                               "family 'nope'"), lines[0]
    assert r.stdout == "", "no family ran"
