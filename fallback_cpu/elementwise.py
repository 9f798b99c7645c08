"""Elementwise ops with numpy broadcasting (numpy).

float16/bfloat16 inputs are computed in float32 and rounded once at the end,
as the Triton kernels do. Twins live in ``kernels/elementwise.py``.
"""
from __future__ import annotations

import numpy as np

from ..contract import COMPARISONS
from ._arrays import LOW, masked_grad, up


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

def _floordiv(a, b):
    """``floor(a / b)``: numpy's for integers (zero divisors already refused; the minimum
    // -1 wraps, as torch); for floats torch's formula on the exact fmod, written out so the
    kernels can follow it step by step (b == 0 gives a / b: inf or NaN)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if a.dtype.kind != "f":
            return np.floor_divide(a, b)
        mod = np.fmod(a, b)
        div = (a - mod) / b
        div = np.where((mod != 0) & ((b < 0) != (mod < 0)), div - 1, div)
        floor = np.floor(div)
        floor = np.where(div - floor > 0.5, floor + 1, floor)
        # a zero quotient takes the sign of a / b
        floor = np.where(div != 0, floor, (a / b) * 0)
        return np.where(b == 0, a / b, floor)


def _mod(a, b):
    """``a - b * floor(a / b)``, the sign of ``b`` (Python's and torch's ``%``): numpy's for
    integers; for floats torch's formula, fmod moved into b's sign (x % 0.0 is NaN)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if a.dtype.kind != "f":
            return np.remainder(a, b)
        mod = np.fmod(a, b)
        return np.where((mod != 0) & ((b < 0) != (mod < 0)), mod + b, mod)


def _power(a, e):
    """``a ** e``: numpy's for floats; for integers exact, wrapping in ``a``'s dtype, and a
    negative exponent gives torch's integer answer (1 for a == 1, +-1 for a == -1, else 0)."""
    if a.dtype.kind == "f":
        return np.power(a, e)
    e = np.asarray(e)
    neg = e < 0
    r = np.power(a, np.where(neg, 0, e).astype(a.dtype))
    if neg.any():
        odd = (e % 2) != 0
        r = np.where(neg, np.where(a == 1, 1, np.where(a == -1, np.where(odd, -1, 1), 0)), r)
    return np.asarray(r).astype(a.dtype, copy=False)


_BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
    "floordiv": _floordiv, "mod": _mod, "pow": _power, "maximum": np.maximum,
    "minimum": np.minimum, "eq": np.equal, "ne": np.not_equal, "lt": np.less,
    "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal,
}


def unary(x, op):
    """``op(x)`` for op in neg, exp, log, sqrt, abs, tanh, sigmoid; same dtype as ``x``."""
    if x.dtype in LOW:
        return _arr(_UNARY[op](x.astype(np.float32))).astype(x.dtype)
    return _arr(_UNARY[op](x))


def binary(a, b, op):
    """``op(a, b)`` with broadcasting; ``b`` may be a Python scalar.

    Operands share one dtype (the caller promotes); comparisons return bool.
    """
    f = _BINARY[op]
    if a.dtype in LOW:
        r = f(up(a), up(b))
        return _arr(r) if op in COMPARISONS else _arr(r).astype(a.dtype)
    return _arr(f(a, b))


def _arr(r):
    """numpy turns 0-d results into numpy scalars; buffers are always ndarrays."""
    return r if type(r) is np.ndarray else np.asarray(r)


def where(cond, a, b):
    return np.where(cond, a, b)


def relu_fwd(x):
    """max(x, 0); NaN stays NaN, as in PyTorch."""
    return _arr(np.maximum(x, np.zeros((), x.dtype)))


def relu_bwd(grad, out):
    """``where(out > 0, grad, 0)``: ReLU's gradient is 0 at exactly 0, as in PyTorch."""
    return masked_grad(grad, out > 0)
