"""Shared test setup.

Without a real GPU, device "cuda" runs the Triton kernels through Triton's
interpreter (TRITONNN_INTERPRET=1, set here before tritonnn or triton is
imported). On a GPU machine the tests run the compiled kernels instead.
"""
import os
import shutil

if "TRITONNN_INTERPRET" not in os.environ and shutil.which("nvidia-smi") is None:
    os.environ["TRITONNN_INTERPRET"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import tritonnn as tn  # noqa: E402

DEVICES = ["cpu", "cuda"]


def cuda_usable() -> bool:
    try:
        tn.zeros(1, device="cuda")
        return True
    except tn.DeviceError:
        return False


@pytest.fixture(params=DEVICES)
def device(request):
    """Run a test on every device: "cpu" (numpy) and "cuda" (Triton, interpreted without a GPU)."""
    if request.param == "cuda" and not cuda_usable():
        pytest.skip("no GPU and no Triton interpreter")
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(0)
