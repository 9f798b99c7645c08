"""Reductions along dimensions (numpy); float16/bfloat16 accumulate in float32.

Twins in ``kernels/reduction.py``. ``sum_to_shape`` (the backward of
broadcasting) is a sum over the broadcast dims.
"""
from __future__ import annotations

import numpy as np

from ._arrays import LOW, up


def reduce(x, dims, keepdim, op):
    """``op`` in sum, mean, max, min over ``dims`` (a tuple; empty means all)."""
    axis = tuple(dims) if dims else None
    xf = up(x)
    if op == "sum":
        r = np.sum(xf, axis=axis, keepdims=keepdim)
    elif op == "mean":
        r = np.mean(xf, axis=axis, keepdims=keepdim)
    elif op == "max":
        r = np.max(xf, axis=axis, keepdims=keepdim)
    elif op == "min":
        r = np.min(xf, axis=axis, keepdims=keepdim)
    else:
        raise KeyError(op)
    r = np.asarray(r)
    # bool/int sums count in int64, as torch does
    if op == "sum" and (x.dtype == np.bool_ or np.issubdtype(x.dtype, np.integer)):
        return r.astype(np.int64, copy=False)
    return r.astype(x.dtype, copy=False)


def sum_to_shape(g, shape):
    """Sum a broadcast gradient ``g`` back down to ``shape`` (the backward of broadcasting)."""
    shape = tuple(shape)
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        i + lead for i, s in enumerate(shape) if s == 1 and g.shape[i + lead] != 1)
    r = up(g).sum(axis=axes, keepdims=True, dtype=np.float32 if g.dtype in LOW else None)
    if lead:
        r = r.reshape(r.shape[lead:])
    return r.reshape(shape).astype(g.dtype, copy=False)


def argmax(x, dim, keepdim):
    """Index (int64) of the first maximum along ``dim`` (all elements, flattened, when None)."""
    if dim is None:
        r = np.asarray(np.argmax(x))
        return r.reshape((1,) * x.ndim) if keepdim else r.astype(np.int64)
    r = np.argmax(x, axis=dim)
    if keepdim:
        r = np.expand_dims(r, dim)
    return np.asarray(r, dtype=np.int64)


def max_bwd(grad, x, indices, dim, keepdim):
    """Route ``grad`` of ``x.max(dim)`` to the position of the (first) maximum."""
    out = np.zeros(x.shape, dtype=grad.dtype)
    idx = indices if keepdim else np.expand_dims(indices, dim)
    g = grad if keepdim else np.expand_dims(grad, dim)
    np.put_along_axis(out, idx, g, axis=dim)
    return out
