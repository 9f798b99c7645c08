"""The README's training script runs as written: straight through, and killed then resumed to
the very same weights (schedule, clipping, bf16 autocast, Dropout, a shuffling loader)."""
import os
import pathlib
import re
import subprocess
import sys
import time

import numpy as np

import tritonnn as tn

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _script():
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## A training script"):]
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
