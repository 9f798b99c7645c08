"""Which backend runs a device's ops: ``fallback_cpu`` (numpy) on "cpu", ``kernels`` on "cuda".

Both backends provide the same functions (``tritonnn.contract``); the op table
looks one up once per call from the operands' device and calls ``B.<name>``.
Each backend is imported on first use of its device: ``import tritonnn`` loads
neither torch nor triton, nor the numpy backend's modules until a tensor is made.
"""
from __future__ import annotations

import importlib.util

from .device import Device, interpreting
from .errors import DeviceError

_loaded: dict = {}


def backend(dev: Device):
    """The module of backend functions for device ``dev`` (a device that exists here)."""
    try:
        return _loaded[dev]
    except KeyError:
        pass
    mod = _load_numpy() if dev.type == "cpu" else _load_triton()
    if dev.type == "cuda":
        count = 1 if interpreting() else mod.buffers.device_count()
        if dev.index >= count:
            raise DeviceError(f"device {dev}: there {'is' if count == 1 else 'are'} {count} "
                              f"cuda device{'' if count == 1 else 's'} here (cuda:0"
                              f"{'' if count == 1 else f' to cuda:{count - 1}'}"
                              f"{', the interpreter' if interpreting() else ''})")
    _loaded[dev] = mod
    return mod


def _load_numpy():
    from . import fallback_cpu      # here, on first use: keeps the import of tritonnn light
    return fallback_cpu


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
