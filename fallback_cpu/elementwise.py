"""Elementwise ops with numpy broadcasting (numpy).

float16/bfloat16 inputs are computed in float32 and rounded once at the end,
as the Triton kernels do. Twins live in ``kernels/elementwise.py``.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np

_LOW = frozenset((np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)))  # computed in float32


def _up(x):
    """float32 view of the math for a low-precision buffer (no-op otherwise)."""
    return x.astype(np.float32) if isinstance(x, np.ndarray) and x.dtype in _LOW else x


def _sigmoid(x):
    """1 / (1 + exp(-x)), as torch computes it: exp(-x) may overflow to inf and the result
    is then exactly 0, never NaN, so no branch on the sign is needed."""
    r = np.asarray(np.exp(-x))          # a 0-d input gives a numpy scalar
    r += 1
    return np.reciprocal(r, out=r)


_UNARY = {
    "neg": np.negative,
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "abs": np.abs,
    "tanh": np.tanh,
    "sigmoid": _sigmoid,
}

_BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
    "pow": np.power, "maximum": np.maximum, "minimum": np.minimum,
    "eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
    "gt": np.greater, "ge": np.greater_equal,
}
COMPARISONS = frozenset({"eq", "ne", "lt", "le", "gt", "ge"})


def unary(x, op):
    """``op(x)`` for op in neg, exp, log, sqrt, abs, tanh, sigmoid; same dtype as ``x``."""
    if x.dtype in _LOW:
        return _arr(_UNARY[op](x.astype(np.float32))).astype(x.dtype)
    return _arr(_UNARY[op](x))


def binary(a, b, op):
    """``op(a, b)`` with broadcasting; ``b`` may be a Python scalar.

    Operands share one dtype (the caller promotes); comparisons return bool.
    """
    f = _BINARY[op]
    if a.dtype in _LOW:
        r = f(_up(a), _up(b))
        return _arr(r) if op in COMPARISONS else _arr(r).astype(a.dtype)
    return _arr(f(a, b))


def _arr(r):
    """numpy turns 0-d results into numpy scalars; buffers are always ndarrays."""
    return r if type(r) is np.ndarray else np.asarray(r)


def where(cond, a, b):
    return np.where(cond, a, b)


def accumulate_(dst, src):
    """``dst += src`` in place (gradient accumulation); ``src`` broadcasts to ``dst``."""
    if dst.dtype in _LOW:
        dst[...] = (dst.astype(np.float32) + src.astype(np.float32)).astype(dst.dtype)
    else:
        np.add(dst, src, out=dst)


def sum_to_shape(g, shape):
    """Sum a broadcast gradient ``g`` back down to ``shape`` (the backward of broadcasting)."""
    shape = tuple(shape)
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        i + lead for i, s in enumerate(shape) if s == 1 and g.shape[i + lead] != 1)
    r = _up(g).sum(axis=axes, keepdims=True, dtype=np.float32 if g.dtype in _LOW else None)
    if lead:
        r = r.reshape(r.shape[lead:])
    return r.reshape(shape).astype(g.dtype, copy=False)


def relu_fwd(x):
    """max(x, 0); NaN stays NaN, as in PyTorch."""
    return _arr(np.maximum(x, np.zeros((), x.dtype)))


def relu_bwd(grad, out):
    """``where(out > 0, grad, 0)``: ReLU's gradient is 0 at exactly 0, as in PyTorch."""
    return masked_grad(grad, out > 0)


def masked_grad(g, mask, out=None):
    """``where(mask, g, 0)`` (into ``out`` if given), as a multiply by the boolean mask.

    numpy's ``where`` branches per element and runs ~10x slower than a multiply on
    a half-true mask; the multiply differs only where ``g`` is inf or NaN at a
    masked-out position (inf * 0 = NaN where PyTorch gives 0), so a non-finite
    result takes the exact ``where`` path.
    """
    r = np.multiply(g, mask, out=out) if out is not None else g * mask
    if not np.isfinite(r.sum(dtype=np.float32 if r.dtype in _LOW else None)):
        np.copyto(r, np.where(mask, g, np.zeros((), g.dtype)))
    return r
