"""Buffers on the host: creation, conversion, views, in-place writes and joins (numpy).

A cpu buffer is a plain ``numpy.ndarray`` of any strides. Every function here
has a twin of the same name and signature in ``kernels/memory.py``.
"""
from __future__ import annotations

import sys

import numpy as np

from ..dtypes import from_numpy as dtype_from_numpy
from ._arrays import LOW, check_range

def from_numpy(array: np.ndarray, dtype):
    """A buffer holding a copy of ``array`` converted to ``dtype``."""
    return np.array(array, dtype=dtype.np, copy=True)


def dtype_of(x):
    """The tritonnn dtype of buffer ``x``."""
    return dtype_from_numpy(x.dtype)


def to_numpy(x) -> np.ndarray:
    """The buffer's values as a numpy array (the buffer itself on the host)."""
    return x


def empty(shape, dtype):
    return np.empty(shape, dtype=dtype.np)


def full(shape, value, dtype):
    return np.full(shape, value, dtype=dtype.np)


def arange(start, stop, step, dtype):
    n = max(0, -(-(stop - start) // step)) if isinstance(step, int) else None
    if n is not None and all(isinstance(v, int) for v in (start, stop)):
        return (np.arange(n, dtype=np.int64) * step + start).astype(dtype.np)
    return np.arange(start, stop, step, dtype=np.float64).astype(dtype.np)


def cast(x, dtype):
    """A new buffer with ``x``'s values converted to ``dtype`` (float -> int truncates)."""
    return x.astype(dtype.np, copy=True)


def contiguous(x):
    """``x`` itself when row-major contiguous, else a contiguous copy."""
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


def copy_(dst, src):
    """Write ``src`` (broadcast to ``dst``'s shape) into ``dst`` in place."""
    np.copyto(dst, src, casting="unsafe")


def accumulate_(dst, src):
    """``dst += src`` in place (gradient accumulation); ``src`` broadcasts to ``dst``."""
    if dst.dtype in LOW:
        dst[...] = (dst.astype(np.float32) + src.astype(np.float32)).astype(dst.dtype)
    else:
        np.add(dst, src, out=dst)


def reshape(x, shape):
    """A view when the strides allow it, else a copy, as torch.reshape."""
    return x.reshape(shape)


def view(x, shape):
    """``x`` with ``shape`` without a copy, or None (numpy copies what it cannot view)."""
    v = x.reshape(shape)
    return v if v.size == 0 or np.may_share_memory(v, x) else None


def permute(x, dims):
    return x.transpose(dims)


def expand(x, shape):
    """A read-only broadcast view (stride 0 on expanded dims)."""
    return np.broadcast_to(x, shape)


def _check_indices(index, checks):
    """Each index array against its ``RangeCheck`` (``checks`` aligned with ``index``)."""
    if checks is not None:
        for i, check in zip(index if isinstance(index, tuple) else (index,), checks):
            check_range(i, check)


def getitem(x, index, checks=None):
    """Basic indexing (ints, slices, None, Ellipsis) as a view; an int64 index buffer gathers."""
    _check_indices(index, checks)
    r = x[index]
    return r if type(r) is np.ndarray else np.asarray(r)    # a full int index gives a numpy scalar


def cat(xs, dim):
    return np.concatenate(xs, axis=dim)


def stack(xs, dim):
    return np.stack(xs, axis=dim)


def index_add(dst, index, src):
    """``dst[index] += src`` in place (repeated advanced indices accumulate); returns dst."""
    if any(isinstance(i, np.ndarray) for i in (index if isinstance(index, tuple) else (index,))):
        np.add.at(dst, index, src)
    else:
        dst[index] += src
    return dst


def exclusively_owned(buf, extra_refs):
    """True when ``buf`` owns its memory and no one but the caller (``extra_refs`` references) holds it."""
    # this function's parameter and getrefcount's own argument add two references
    return buf.base is None and buf.flags.owndata and sys.getrefcount(buf) <= extra_refs + 2


def overlapping(x):
    """True when a dim longer than 1 has stride 0 (a broadcast view)."""
    return any(st == 0 and n > 1 for st, n in zip(x.strides, x.shape))


def setitem(x, index, value, checks=None):
    """``x[index] = value`` in place (value a buffer or a Python number, broadcast)."""
    _check_indices(index, checks)
    x[index] = value
