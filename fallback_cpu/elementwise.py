"""Elementwise ops with numpy broadcasting (numpy).

float16/bfloat16 inputs are computed in float32 and rounded once at the end,
as the Triton kernels do. Twins live in ``kernels/elementwise.py``.
"""
from __future__ import annotations

import math

import numpy as np

from ..contract import COMPARISONS
from ._arrays import LOW, masked_grad, scratch, up


def _sigmoid(x):
    """1 / (1 + exp(-x)), as torch computes it: exp(-x) may overflow to inf and the result
    is then exactly 0, never NaN, so no branch on the sign is needed."""
    r = np.asarray(np.exp(-x))          # a 0-d input gives a numpy scalar
    r += 1
    return np.reciprocal(r, out=r)


# ----------------------------------------------------------------------------------------------
# activations: rsqrt, SiLU, GELU (exact and tanh), and their fused backward (unary_bwd)
# ----------------------------------------------------------------------------------------------

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_TANH_SCALE = math.sqrt(2.0 / math.pi)       # PyTorch's approximate="tanh" constants
_TANH_CUBIC = 0.044715
_ERFC_EXACT = np.frompyfunc(math.erfc, 1, 1)

# erfc(u) for u >= 0 as exp(-u^2) * P(t), t = 1 / (1 + 0.3275911 u), P of degree 5 with no
# constant term (Abramowitz & Stegun 7.1.26): absolute error below 1.5e-7 everywhere, about
# an ulp of float32 near 1, and the relative error of the tail stays near 1e-6 because the
# exp(-u^2) factor carries it. Used for float32 math (float16 / bfloat16 included).
_ERFC_P = 0.3275911
_ERFC_A = (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)


def _cdf_and_density(x):
    """``(Phi(x), exp(-x^2 / 2))``, Phi(x) = erfc(-x / sqrt(2)) / 2 the standard normal CDF,
    with no cancellation for either sign. The CDF is a new array; the second is a scratch
    array (valid until the next call of this thread).

    float64: ``math.erfc`` element by element (exact to an ulp, slow; float64 is for
    references and gradchecks). float32: the A&S form above, in place, from e = erfc(|z|),
    z = x / sqrt(2), on the side of the sign: Phi = e / 2 for x < 0, 1 - e / 2 for x >= 0
    (-0.0 gives 1/2 either way).
    """
    if x.dtype == np.float64:
        cdf = np.asarray(0.5 * _ERFC_EXACT(-x * _SQRT_HALF), dtype=np.float64)
        return cdf, np.asarray(np.exp(-0.5 * x * x))
    u = scratch(x, 10)
    np.abs(x, out=u)
    u *= np.float32(_SQRT_HALF)
    t = scratch(x, 11)
    np.multiply(u, np.float32(_ERFC_P), out=t)
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    cdf = np.full_like(x, _ERFC_A[0])
    for a in _ERFC_A[1:]:
        cdf *= t
        cdf += np.float32(a)
    cdf *= t
    u *= u
    np.negative(u, out=u)
    np.exp(u, out=u)                                  # exp(-z^2) = exp(-x^2 / 2)
    cdf *= u
    cdf *= np.float32(0.5)                            # h = erfc(|z|) / 2
    # h for x < 0, 1 - h for x >= 0, as 0.5 + copysign(0.5 - h, x): arithmetic, where a
    # sign-masked np.where or where= runs ~20x slower on mixed signs
    np.subtract(np.float32(0.5), cdf, out=cdf)
    np.copysign(cdf, x, out=cdf)
    cdf += np.float32(0.5)
    return cdf, u


def _gelu(x):
    cdf, _ = _cdf_and_density(x)
    cdf *= x
    return cdf


def _tanh_of_inner(x):
    """tanh(sqrt(2 / pi) * (x + 0.044715 x^3)) as a new array, in place."""
    t = np.multiply(x, x, out=np.empty_like(x))       # out=: a 0-d input stays an array
    t *= x.dtype.type(_TANH_CUBIC)
    t += x.dtype.type(1.0)
    t *= x
    t *= x.dtype.type(_TANH_SCALE)
    return np.tanh(t, out=t)


def _gelu_tanh(x):
    t = _tanh_of_inner(x)
    t += x.dtype.type(1.0)
    t *= x
    t *= x.dtype.type(0.5)
    return t


def _silu(x):
    s = _sigmoid(x)
    s *= x
    return s


def _rsqrt(x):
    r = np.sqrt(x, out=np.empty_like(x))
    return np.divide(x.dtype.type(1.0), r, out=r)


def _d_gelu(x, g):
    # Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
    cdf, e = _cdf_and_density(x)
    e *= x
    e *= x.dtype.type(_INV_SQRT_2PI)
    cdf += e
    cdf *= g
    return cdf


def _d_gelu_tanh(x, g):
    # (1 + t) / 2 + x (1 - t^2) u' / 2, u' = sqrt(2 / pi) (1 + 3 * 0.044715 x^2)
    one = x.dtype.type(1.0)
    t = _tanh_of_inner(x)
    slope = scratch(x, 12)
    np.multiply(x, x, out=slope)
    slope *= x.dtype.type(3.0 * _TANH_CUBIC)
    slope += one
    slope *= x.dtype.type(_TANH_SCALE)
    slope *= x
    d = np.multiply(t, t, out=np.empty_like(t))
    np.subtract(one, d, out=d)
    d *= slope
    t += one
    d += t
    d *= x.dtype.type(0.5)
    d *= g
    return d


def _d_silu(x, g):
    # s (1 + x (1 - s)), s = sigmoid(x)
    s = _sigmoid(x)
    d = np.subtract(x.dtype.type(1.0), s, out=np.empty_like(s))
    d *= x
    d += x.dtype.type(1.0)
    d *= s
    d *= g
    return d


_UNARY_GRAD = {
    # from the output y
    "tanh": lambda y, g: g * (1.0 - y * y),
    "sigmoid": lambda y, g: g * (y * (1.0 - y)),
    "sqrt": lambda y, g: g * (0.5 / y),
    "rsqrt": lambda y, g: g * (-0.5 * (y * y * y)),
    # from the input x
    "silu": _d_silu,
    "gelu": _d_gelu,
    "gelu_tanh": _d_gelu_tanh,
}


def unary_bwd(grad, saved, op):
    """``grad * op'(x)`` from the saved output (tanh, sigmoid, sqrt, rsqrt) or input (silu,
    gelu, gelu_tanh); float16/bfloat16 computed in float32 and rounded once."""
    r = _arr(_UNARY_GRAD[op](np.asarray(up(saved)), np.asarray(up(grad))))
    return r.astype(grad.dtype, copy=False)


_UNARY = {
    "neg": np.negative,
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "abs": np.abs,
    "tanh": np.tanh,
    "sigmoid": _sigmoid,
    "rsqrt": _rsqrt,
    "silu": _silu,
    "gelu": _gelu,
    "gelu_tanh": _gelu_tanh,
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
    """``op(x)`` for op in neg, exp, log, sqrt, abs, tanh, sigmoid, rsqrt, silu, gelu,
    gelu_tanh; same dtype as ``x``."""
    if x.dtype in LOW:
        return _arr(_UNARY[op](x.astype(np.float32))).astype(x.dtype)
    if op in _ACTIVATIONS:
        return _arr(_UNARY[op](np.asarray(x)))
    return _arr(_UNARY[op](x))


_ACTIVATIONS = frozenset({"rsqrt", "silu", "gelu", "gelu_tanh"})


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
