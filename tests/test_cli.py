"""The command line and the example, run as a user would run them."""
import os
import subprocess
import sys

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
    r = _run([sys.executable, "-m", "tritonnn.cli", "train", "--device", "cpu", "--quiet",
              "--out", str(out)])
    assert r.returncode == 0, r.stderr
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
