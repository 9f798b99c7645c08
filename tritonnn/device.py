"""Devices: ``tn.device("cpu")``, ``"cuda"``, ``"cuda:N"``, and whether "cuda" is interpreted."""
from __future__ import annotations

import functools
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


@functools.cache
def interpreting() -> bool:
    """True when device "cuda" runs the Triton kernels through Triton's interpreter.

    The one reader of ``TRITONNN_INTERPRET`` (read once, on first use): set it before
    the first use of device "cuda".
    """
    return os.environ.get("TRITONNN_INTERPRET", "") not in ("", "0")
