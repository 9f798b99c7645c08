"""Argument checks shared by the op table, the Tensor API and the layers above them.

Each check either returns the normalized argument or raises the tritonnn error
that names the operation and the offending shapes, dtypes or devices. None of
them touches a buffer: they run before any kernel does.
"""
from __future__ import annotations

import math
import numbers
import operator

import numpy as np

from . import dtypes as D
from .device import Device, as_device
from .errors import DeviceError, DTypeError, IndexOutOfRange, ShapeError, TritonnnError


def shown(value, limit=60):
    """``repr(value)`` cut to ``limit`` characters, for a message that quotes what it got."""
    r = repr(value)
    return r if len(r) <= limit else r[:limit - 3] + "..."


def as_int(value):
    """``value`` as a Python int when it is an integer (an int, a numpy integer, anything with
    ``__index__``) but not a bool; None otherwise."""
    if type(value) is int:
        return value
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def integer(op, value, what):
    """``value`` as an int, or a DTypeError naming ``op`` and ``what`` (a float, str, None, ...)."""
    i = as_int(value)
    if i is None:
        raise DTypeError(f"{op}: {what} must be an int, got {shown(value)} "
                         f"({type(value).__name__})")
    return i


def number(op, value, what):
    """``value`` as a float (an int or float, Python or numpy, not a bool), or a DTypeError naming
    ``op`` and ``what``: the one check of hyper-parameters and numeric keyword arguments."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    raise DTypeError(f"{op}: {what} must be a number, got {shown(value)} ({type(value).__name__})")


def norm_dim(op, dim, ndim):
    """``dim`` in ``[0, ndim)`` (negative dims count from the end; a 0-d tensor has dim 0 or -1).

    A dim that is not an integer is a DTypeError (TypeError, as PyTorch), one outside the
    range an IndexOutOfRange (IndexError). Runs on most shape-aware calls: a plain int takes
    one type test.
    """
    if type(dim) is not int:
        dim = integer(op, dim, "dim")
    n = ndim if ndim > 0 else 1
    if not -n <= dim < n:
        raise IndexOutOfRange(f"{op}: dim {dim} is out of range for a tensor of {ndim} "
                              f"dimension(s) (expected in [{-n}, {n - 1}])")
    return dim + n if dim < 0 else dim


def norm_dims(op, dim, ndim):
    """Reduction dims as a tuple; None or an empty list means every dim, as in torch."""
    if dim is None or (isinstance(dim, (tuple, list)) and not dim):
        return tuple(range(ndim))
    if isinstance(dim, (tuple, list)):
        dims = tuple(norm_dim(op, d, ndim) for d in dim)
        if len(set(dims)) != len(dims):
            raise TritonnnError(f"{op}: dim {tuple(dim)} names a dimension twice")
        return dims
    return (norm_dim(op, dim, ndim),)


def broadcast_shapes(op, a, b):
    """numpy's broadcasting of two shapes, or a ShapeError naming both."""
    out = []
    for i in range(max(len(a), len(b))):
        x = a[len(a) - 1 - i] if i < len(a) else 1
        y = b[len(b) - 1 - i] if i < len(b) else 1
        if x != y and x != 1 and y != 1:
            raise ShapeError(f"{op}: shapes {tuple(a)} and {tuple(b)} cannot be broadcast together "
                             f"(dimension {-1 - i}: {x} vs {y})")
        out.append(max(x, y) if x != 0 and y != 0 else 0)
    return tuple(reversed(out))


MAX_DIMS = 64
"""The most dims a tensor may have (numpy's limit, on every device)."""


def sizes(op, shape, itemsize=1):
    """A factory's ``*shape`` (ints, or one tuple/list of ints) as a tuple of non-negative ints
    that a tensor of ``itemsize``-byte elements can have (``possible_shape``)."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    for s in shape:
        if not isinstance(s, numbers.Integral) or isinstance(s, bool) or s < 0:
            raise ShapeError(f"{op}: sizes must be non-negative ints, got {tuple(shape)}")
    shape = tuple(int(s) for s in shape)
    possible_shape(op, shape, itemsize)
    return shape


def possible_shape(op, shape, itemsize=1):
    """A ShapeError for a shape no tensor can have: more than ``MAX_DIMS`` dims, or sizes
    whose product (zeros left out, as torch counts) times ``itemsize`` passes 2**63 bytes."""
    if len(shape) > MAX_DIMS:
        raise ShapeError(f"{op}: a tensor has at most {MAX_DIMS} dims, got {len(shape)}")
    n = itemsize
    for s in shape:
        n *= s or 1
    if n >= 2 ** 63:
        raise ShapeError(f"{op}: a tensor of shape {tuple(shape)} would take {n} bytes, more "
                         f"than any machine can address")


def flag(op, name, value):
    """``value`` as a bool when it is one (numpy's too), else a DTypeError naming ``name``."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise DTypeError(f"{op}: {name} must be a bool, got {value!r}")


def scalar_type(s):
    """The dtype a Python scalar takes in an op: bool -> bool, int -> int64, float -> float32."""
    if isinstance(s, bool):
        return D.bool_
    if isinstance(s, numbers.Integral):
        return D.int64
    if isinstance(s, numbers.Real):
        return D.float32
    raise DTypeError(f"unsupported operand of type {type(s).__name__}")


def is_scalar(v) -> bool:
    """A real Python or numpy number (what ops accept beside tensors)."""
    return isinstance(v, numbers.Number) and not isinstance(v, complex)


def same_device(op, *tensors):
    """The one device of ``tensors``, or a DeviceError listing each operand's shape and device."""
    dev = tensors[0].device
    for t in tensors[1:]:
        if t.device != dev:
            raise DeviceError(f"{op}: operands are on different devices: "
                              + ", ".join(f"{tuple(x.shape)} on {x.device}" for x in tensors)
                              + "; move them with .to(device) first")
    return dev


def floating(op, t):
    """A DTypeError unless ``t`` holds floating-point numbers."""
    if not t.dtype.is_floating:
        raise DTypeError(f"{op}: expected a floating-point tensor, got {t.dtype} "
                         f"(convert with .to(tn.float32))")


def same_float_dtype(op, a, b):
    """A DTypeError unless ``a`` and ``b`` share one floating-point dtype."""
    if a.dtype is not b.dtype:
        raise DTypeError(f"{op}: operands have different dtypes {a.dtype} {a.shape} and {b.dtype} "
                         f"{b.shape}; convert one with .to(dtype)")
    floating(op, a)


REDUCTIONS = ("mean", "sum", "none")


def reduction(op, reduction):
    """A loss's ``reduction`` argument: "mean", "sum" or "none"."""
    if reduction not in REDUCTIONS:
        raise TritonnnError(f"{op}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def dtype_and_device(op, args, dtype=None, device=None):
    """``to(...)``'s positional arguments sorted into ``(dtype or None, device or None)``.

    Each of ``args`` is a dtype (``tn.float32`` or ``"float32"``) or a device
    (``"cpu"``, ``"cuda:0"``, ``tn.device(...)``), in any order, as PyTorch takes them.
    """
    for a in args:
        if isinstance(a, D.DType) or (isinstance(a, str) and a in D.NAMES):
            dtype = a
        elif isinstance(a, (str, Device)):
            device = a
        else:
            raise DTypeError(f"{op}: expected a dtype or a device, got {shown(a)} "
                             f"({type(a).__name__})")
    return (None if dtype is None else D.as_dtype(dtype),
            None if device is None else as_device(device))


# ----------------------------------------------------------------------------------------------
# value ranges: a number a dtype cannot hold is refused, never wrapped or stored as garbage
# ----------------------------------------------------------------------------------------------

INT_RANGE = {dt: (int(np.iinfo(dt.np).min), int(np.iinfo(dt.np).max))
             for dt in D.ALL if dt.is_integer}
"""``(lowest, highest)`` value of each integer dtype."""


def _out_of_range(op, value, dtype):
    """The DTypeError for a ``value`` that ``dtype`` cannot hold."""
    if isinstance(value, float) and not math.isfinite(value):
        return DTypeError(f"{op}: {value} can't be converted to {dtype}: an integer dtype holds "
                          f"no NaN or infinity")
    if dtype in INT_RANGE:
        lo, hi = INT_RANGE[dtype]
        return DTypeError(f"{op}: {value} is out of range for {dtype} (it holds {lo} to {hi}); "
                          f"tritonnn refuses what would be wrapped or garbage")
    return DTypeError(f"{op}: the int {value} is too large for {dtype} (beyond float64)")


def scalar_fits(op, value, dtype):
    """``value`` (a Python or numpy number) when ``dtype`` can hold it, else a DTypeError.

    An integer dtype holds the numbers of its range (a float in range is truncated toward
    zero when stored, as PyTorch does), never NaN or infinity; bool holds every number; a
    float dtype every number a float64 can hold (it rounds, overflowing to inf, as PyTorch).
    """
    rng = INT_RANGE.get(dtype)
    if rng is not None:
        v = _plain(value)                      # Python numbers compare exactly, int with float
        if not (isinstance(v, bool) or rng[0] <= v <= rng[1]):     # NaN fails both
            raise _out_of_range(op, v, dtype)
    elif dtype.is_floating and isinstance(value, numbers.Integral) and abs(value) > 2 ** 1023:
        try:
            float(value)
        except OverflowError:
            raise _out_of_range(op, _plain(value), dtype) from None
    return value


def array_fits(op, a, dtype):
    """The host array ``a`` when each of its values fits ``dtype`` (as ``scalar_fits``),
    else a DTypeError naming the first value that does not."""
    rng = INT_RANGE.get(dtype)
    if rng is None or a.size == 0 or a.dtype.kind == "b":
        return a
    lo, hi = rng
    if a.dtype.kind in "iu":
        info = np.iinfo(a.dtype)
        if lo <= info.min and info.max <= hi:
            return a                                  # every value of a's dtype fits
        ok = (a >= lo) & (a <= hi)
    else:
        f = a.astype(np.float64)                      # float16 / bfloat16 compare exactly too
        # the float64 nearest the top of int64 is 2**63: compare strictly where it rounded up
        top = float(hi)
        ok = (f >= float(lo)) & ((f < top) if top > hi else (f <= top))
    if ok.all():
        return a
    first = a.reshape(-1)[int(np.argmin(ok.reshape(-1)))]
    raise _out_of_range(op, _plain(first), dtype)


def _plain(v):
    """A numpy scalar as the Python number it holds (for messages)."""
    return v.item() if isinstance(v, np.generic) else v
