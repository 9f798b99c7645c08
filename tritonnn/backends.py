"""Which backend runs a device's ops: ``fallback_cpu`` (numpy) for "cpu", ``kernels`` (Triton) for "cuda".

Both backends provide the same functions (``tritonnn.contract``); the op table
looks one up once per call from the operands' device and calls ``B.<name>``.
The Triton backend is imported on first use of "cuda", so ``import tritonnn``
loads neither torch nor triton.
"""
from __future__ import annotations

import importlib.util

from . import fallback_cpu
from .device import Device, interpreting
from .errors import DeviceError

_loaded: dict = {"cpu": fallback_cpu}


def backend(dev: Device):
    """The module of backend functions for device ``dev``."""
    try:
        return _loaded[dev.type]
    except KeyError:
        pass
    _loaded[dev.type] = mod = _load_triton()
    return mod


def _load_triton():
    missing = [m for m in ("torch", "triton") if importlib.util.find_spec(m) is None]
    if missing:
        raise DeviceError(f"device 'cuda' needs {' and '.join(missing)} installed "
                          f"(pip install 'tritonnn[gpu]')")
    from . import kernels   # here, on first use of "cuda": keeps torch and triton out of the import
    if not interpreting() and not kernels.buffers.gpu_available():
        raise DeviceError("device 'cuda': no GPU is available; run on 'cpu', or set "
                          "TRITONNN_INTERPRET=1 before importing tritonnn to run the "
                          "Triton kernels through Triton's interpreter")
    return kernels
