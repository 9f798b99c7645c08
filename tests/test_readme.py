"""The README's training scripts run as written: the one-process script straight through, and
killed then resumed to the very same weights (schedule, clipping, bf16 autocast, Dropout, a
shuffling loader); the data-parallel one under torchrun with two ranks."""
import os
import pathlib
import re
import subprocess
import sys
import time

import numpy as np

import tritonnn as tn

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _script(heading="## A training script"):
    text = (ROOT / "README.md").read_text()
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _run(folder, script, kill_after_checkpoint=False):
    env = {k: v for k, v in os.environ.items() if k != "TRITONNN_INTERPRET"}   # device cpu
    p = subprocess.Popen([sys.executable, "-c", script], cwd=folder, env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if kill_after_checkpoint:
        deadline = time.monotonic() + 120
        while not (folder / "ckpt.safetensors").exists() and p.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.005)
        p.kill()
    out, err = p.communicate(timeout=300)
    return p.returncode, out, err


def test_readme_training_script_runs_and_resumes_bit_for_bit(tmp_path):
    script = _script()
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    straight.mkdir()
    broken.mkdir()
    rc, out, err = _run(straight, script)
    assert rc == 0, err
    lines = out.splitlines()
    assert [ln.split(":")[0] for ln in lines] == [f"epoch {e}" for e in range(5)], out
    assert float(lines[-1].split("loss ")[1].split(",")[0]) < 0.5
    rc, out, err = _run(straight, script)          # the checkpoint says: done
    assert rc == 0 and out == "", (out, err)
    _run(broken, script, kill_after_checkpoint=True)
    done = tn.load(broken / "ckpt.safetensors")["epoch"]
    assert done < 4, "killed before the end"
    rc, out, err = _run(broken, script)
    assert rc == 0, err
    assert out.splitlines()[0].startswith(f"epoch {done + 1}:")
    a, b = tn.load(straight / "ckpt.safetensors"), tn.load(broken / "ckpt.safetensors")
    for key in a["model"]:
        assert np.array_equal(a["model"][key].numpy(), b["model"][key].numpy()), key
    assert a["rng"] == b["rng"] and a["loader"]["epoch"] == b["loader"]["epoch"]


def test_readme_data_parallel_script_runs_under_torchrun(tmp_path):
    script = tmp_path / "ddp_script.py"
    script.write_text(_script("## Training on several GPUs"))
    env = {k: v for k, v in os.environ.items() if k != "TRITONNN_INTERPRET"}   # device cpu
    env["OMP_NUM_THREADS"] = "1"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc-per-node=2", str(script)], cwd=tmp_path, env=env, text=True,
                       capture_output=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    model = tn.nn.Sequential(tn.nn.Linear(64, 128), tn.nn.ReLU(), tn.nn.Linear(128, 10))
    model.load_state_dict(tn.load(tmp_path / "model.safetensors"))
    from tritonnn.datasets import load_digits
    images, labels = load_digits()
    hits = (model(tn.tensor(images)).argmax(dim=1) == tn.tensor(labels)).sum().item()
    assert hits / len(labels) > 0.95
