"""Devices, and the backend module that runs each one's ops."""
from __future__ import annotations

import importlib.util
import os

from .errors import DeviceError


class Device:
    """``tn.device("cpu")`` or ``tn.device("cuda")`` / ``"cuda:1"``."""

    __slots__ = ("type", "index")

    def __init__(self, spec="cpu"):
        if isinstance(spec, Device):
            self.type, self.index = spec.type, spec.index
            return
        if not isinstance(spec, str):
            raise DeviceError(f"device: expected a string like 'cpu' or 'cuda:0', got {spec!r}")
        kind, _, idx = spec.partition(":")
        if kind not in ("cpu", "cuda") or (idx and not idx.isdigit()) or (kind == "cpu" and idx not in ("", "0")):
            raise DeviceError(f"device: unknown device {spec!r}; use 'cpu', 'cuda' or 'cuda:N'")
        self.type = kind
        self.index = int(idx) if (idx and kind == "cuda") else (0 if kind == "cuda" else None)

    def __eq__(self, other):
        if isinstance(other, str):
            try:
                other = Device(other)
            except DeviceError:
                return False
        return isinstance(other, Device) and self.type == other.type and self.index == other.index

    def __hash__(self):
        return hash((self.type, self.index))

    def __str__(self):
        return self.type if self.type == "cpu" else f"cuda:{self.index}"

    def __repr__(self):
        return f"device({str(self)!r})"


CPU = Device("cpu")
_cache: dict = {}


def as_device(d) -> Device:
    if d is None:
        return CPU
    if isinstance(d, Device):
        return d
    try:
        return _cache[d]
    except (KeyError, TypeError):
        dev = Device(d)
        if isinstance(d, str):
            _cache[d] = dev
        return dev


def interpreting() -> bool:
    """True when device "cuda" runs the Triton kernels through Triton's interpreter."""
    return os.environ.get("TRITONNN_INTERPRET", "") not in ("", "0")


_backends: dict = {}


def backend(dev: Device):
    """The module of op functions for ``dev``: fallback_cpu for cpu, kernels for cuda."""
    try:
        return _backends[dev.type]
    except KeyError:
        pass
    if dev.type == "cpu":
        from . import fallback_cpu as mod
    else:
        mod = _load_cuda_backend()
    _backends[dev.type] = mod
    return mod


def _load_cuda_backend():
    if interpreting():
        # Triton reads TRITON_INTERPRET when it is first imported.
        os.environ["TRITON_INTERPRET"] = "1"
    missing = [m for m in ("torch", "triton") if importlib.util.find_spec(m) is None]
    if missing:
        raise DeviceError(f"device 'cuda' needs {' and '.join(missing)} installed "
                          f"(pip install 'tritonnn[gpu]')")
    from . import kernels as mod
    if not interpreting() and not mod.buffers.gpu_available():
        raise DeviceError("device 'cuda': no GPU is available; run on 'cpu', or set "
                          "TRITONNN_INTERPRET=1 before importing tritonnn to run the "
                          "Triton kernels through Triton's interpreter")
    return mod
