"""Shared test setup.

Without a real GPU, device "cuda" runs the Triton kernels through Triton's
interpreter (TRITONNN_INTERPRET=1, set here before tritonnn or triton is
imported). On a GPU machine the tests run the compiled kernels instead.
"""
import functools
import os
import shutil

if "TRITONNN_INTERPRET" not in os.environ and shutil.which("nvidia-smi") is None:
    os.environ["TRITONNN_INTERPRET"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import tritonnn as tn  # noqa: E402

DEVICES = ["cpu", "cuda"]


@functools.cache
def why_no_cuda() -> str | None:
    """Why device "cuda" cannot run here, or None when it can (a GPU, or Triton's interpreter).

    Asked once per session: every test that needs "cuda" comes here (``cuda_usable``,
    ``skip_without_cuda``, the ``device`` fixture). Only tritonnn's ``DeviceError`` means "not
    here"; any other exception (a kernel module that fails to import, say) is a bug and is raised.
    """
    try:
        tn.zeros(1, device="cuda").numpy()
    except tn.DeviceError as e:
        return str(e)
    return None


def cuda_usable() -> bool:
    return why_no_cuda() is None


def skip_without_cuda():
    """Skip the calling test when device "cuda" cannot run here, saying why."""
    if not cuda_usable():
        pytest.skip(f"device cuda not usable: {why_no_cuda()}")


@pytest.fixture(params=DEVICES)
def device(request):
    """Run a test on every device: "cpu" (numpy) and "cuda" (Triton, interpreted without a GPU)."""
    if request.param == "cuda":
        skip_without_cuda()
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _no_device_error_left_pending():
    """A test that makes a kernel record a bad target or index (raised at the next sync on
    "cuda") must see that error itself: one left pending would surface in a later test."""
    yield
    try:
        tn.cuda.synchronize()           # nothing (no count, no torch) unless "cuda" was used
    except tn.IndexOutOfRange as e:
        pytest.fail(f"the test left a device-side error pending: {e}")
