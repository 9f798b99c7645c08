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

_BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
    "pow": np.power, "maximum": np.maximum, "minimum": np.minimum,
    "eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
    "gt": np.greater, "ge": np.greater_equal,
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
