"""Mixed precision: ``tn.autocast``, and the per-thread state the op table reads.

Inside ``with tn.autocast("cuda" or "cpu", dtype=tn.bfloat16):`` the ops on tensors of that
device type pick their precision themselves (``ops.py``, section *autocast*): matmuls and
linears cast their float32 operands to the low dtype on the fly (recorded casts, so float32
parameters get float32 gradients) and return it; softmax, log_softmax, the losses, sum and
mean upcast a float16/bfloat16 input to float32; everything else runs in its input dtype.

The state is per thread, as grad mode is (``tape.grad_mode``): a region in one thread
leaves the others alone. This module holds the state only; the decisions are the ops'.
"""
from __future__ import annotations

import functools
import inspect
import threading

from . import dtypes as D
from .errors import DeviceError, DTypeError

DEVICE_TYPES = ("cpu", "cuda")
LOW_DTYPES = (D.bfloat16, D.float16)
# torch's defaults: float16 on a GPU, bfloat16 on the host
DEFAULT_DTYPE = {"cpu": D.bfloat16, "cuda": D.float16}


class _AutocastState(threading.local):
    """Per thread: the low dtype of each device type (None: autocast off there)."""

    cpu = None
    cuda = None


state = _AutocastState()

# Enabled regions open now, in all threads together: the op table's first test, a list item
# (25 ns) where reading the thread-local state costs 200 ns. Zero means no region anywhere;
# otherwise the op reads this thread's state, which alone decides.
open_regions = [0]
_count_lock = threading.Lock()


def low_dtype(device):
    """The dtype matmuls run in on ``device`` (a Device) under autocast, or None."""
    return state.cpu if device.type == "cpu" else state.cuda


def _device_type(op, device_type):
    if not isinstance(device_type, str) or device_type not in DEVICE_TYPES:
        raise DeviceError(f"{op}: device_type must be 'cpu' or 'cuda' (no index: autocast "
                          f"covers every GPU), got {device_type!r}")
    return device_type


def is_autocast_enabled(device_type="cuda") -> bool:
    """Whether autocast is on for ``device_type`` in this thread."""
    return getattr(state, _device_type("is_autocast_enabled", device_type)) is not None


def get_autocast_dtype(device_type="cuda"):
    """The low dtype autocast uses for ``device_type`` in this thread (its default when off)."""
    device_type = _device_type("get_autocast_dtype", device_type)
    return getattr(state, device_type) or DEFAULT_DTYPE[device_type]


class autocast:
    """Run matmuls and linears of ``device_type`` tensors in ``dtype`` (bfloat16 or float16)
    with float32 accumulation, and softmax, losses and sums in float32.

    A context manager (``with tn.autocast("cpu", dtype=tn.bfloat16):``) or a decorator
    (``@tn.autocast("cuda")``); nests (the inner region wins, the outer comes back on exit);
    ``enabled=False`` turns it off inside an enclosing region. Per thread.
    """

    def __init__(self, device_type, dtype=None, enabled=True):
        op = "autocast"
        self.device_type = _device_type(op, device_type)
        if dtype is None:
            dtype = DEFAULT_DTYPE[self.device_type]
        if isinstance(dtype, str) and dtype in D.NAMES:
            dtype = D.from_name(dtype)
        if not any(dtype is low for low in LOW_DTYPES):
            raise DTypeError(f"{op}: dtype must be tn.bfloat16 or tn.float16, got {dtype!r}")
        if not isinstance(enabled, bool):
            raise DTypeError(f"{op}: enabled must be a bool, got {type(enabled).__name__} "
                             f"{enabled!r}")
        self.dtype, self.enabled = dtype, enabled
        self._saved = []          # the state each (nested) entry replaced

    def __enter__(self):
        self._saved.append(getattr(state, self.device_type))
        setattr(state, self.device_type, self.dtype if self.enabled else None)
        if self.enabled:
            with _count_lock:
                open_regions[0] += 1
        return self

    def __exit__(self, *exc):
        setattr(state, self.device_type, self._saved.pop())
        if self.enabled:
            with _count_lock:
                open_regions[0] -= 1
        return False

    def __call__(self, fn):
        if not callable(fn):
            raise DTypeError(f"autocast: expected a function to decorate, got "
                             f"{type(fn).__name__}")
        args = (self.device_type, self.dtype, self.enabled)
        if inspect.isgeneratorfunction(fn):
            raise DTypeError("autocast: a generator function cannot be decorated (its steps "
                             "run after the call returns); use `with tn.autocast(...)` in it")

        @functools.wraps(fn)
        def wrapper(*a, **k):
            with autocast(*args):           # a fresh region per call: safe in threads
                return fn(*a, **k)
        return wrapper

    def __repr__(self):
        return (f"autocast({self.device_type!r}, dtype={self.dtype}, "
                f"enabled={self.enabled})")
