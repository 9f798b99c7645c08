"""Elementwise ops with numpy broadcasting (Triton). Twins of ``fallback_cpu/elementwise.py``.

Every operand is addressed through its own strides, so transposed, sliced and
expanded (stride 0) buffers are read in place, never copied first. A launcher
expands all operands to the output shape (a view), collapses the shape to at
most four dims (``_launch.layout``) and launches one program per ``BLOCK``
output elements; each program turns its linear indices into an element offset
per operand (``_jitlib.strided_offset``), in int32 whenever every offset of the
launch fits (``_launch.index32``), else in int64. float16/bfloat16 are computed in
float32 and rounded once when stored, as the numpy mirror does.

Kernels here: ``_unary_kernel`` (neg exp log sqrt abs tanh sigmoid, relu, and the
activations rsqrt silu gelu gelu_tanh), ``_unary_bwd_kernel`` (their derivatives and those of
tanh, sigmoid and sqrt, times the upstream gradient, in one pass),
``_binary_kernel`` (arithmetic, maximum/minimum, comparisons, relu's backward;
``b`` a buffer or a scalar kernel argument) and ``_where_kernel``. The in-place
``dst += src`` is ``memory.accumulate_``, next to the other in-place writes.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .. import dtypes as D
from ..contract import COMPARISONS
from . import buffers
from ._jitlib import (cast_to, div_rn, f64_from_bits, linear_index, sigmoid, sqrt_rn,
                      strided_offset, up)
from ._launch import aot_entry, broadcast_shape, float_bits, launch_strided

# ----------------------------------------------------------------------------------------------
# device math
# ----------------------------------------------------------------------------------------------


@triton.jit
def _tanh(x):
    """tanh: a Taylor polynomial near 0 (no cancellation), (1 - e) / (1 + e) with e = exp(-2|x|) beyond."""
    ax = tl.abs(x)
    e = tl.exp(-2.0 * ax)
    far = (1.0 - e) / (1.0 + e)
    x2 = x * x
    # x - x^3/3 + 2x^5/15 - 17x^7/315 + 62x^9/2835: error < 1e-8 relative for |x| < 0.25,
    # < 1e-15 below 0.05 (float64's cut-over: the far form loses only ~ulp / 2|x| there)
    near = ax * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0 + x2 * (62.0 / 2835.0)))))
    if tl.constexpr(x.dtype == tl.float64):
        t = tl.where(ax < 0.05, near, far)
    else:
        t = tl.where(ax < 0.25, near, far)
    return tl.where(x < 0, -t, t)


@triton.jit
def _pow(x, e):
    """``x ** e`` as numpy: exp(e log|x|), the sign of x for odd integer e, NaN for a negative
    base with a non-integer exponent, and 1 whenever e == 0."""
    mag = tl.exp(e * tl.log(tl.abs(x)))
    fl = tl.floor(e)
    is_int = e == fl
    odd = is_int & ((e - 2.0 * tl.floor(e * 0.5)) == 1.0)
    signed = tl.where(odd, -mag, mag)
    r = tl.where(x < 0, tl.where(is_int, signed, float("nan")), mag)
    return tl.where(e == 0, 1.0, r)


@triton.jit
def _ipow(a, e):
    """``a ** e`` for integers, exact and wrapping in ``a``'s dtype, as torch.

    Square-and-multiply over the exponent's bits: ``base`` runs through a, a**2, a**4, ...
    and multiplies into the result where the exponent has that bit. The loop runs as many
    times as the block's largest exponent has bits (a scalar exponent: its own), so ``x **
    39`` takes six steps. A negative exponent (signed dtypes) is 1 / a**-e truncated toward
    zero, as torch's integer pow: 1 for a == 1, +-1 for a == -1 by the exponent's parity,
    else 0.
    """
    e = e.to(tl.int64) + tl.zeros(a.shape, tl.int64)       # a scalar exponent, broadcast
    rest = tl.where(e > 0, e, 0)
    result = tl.full(a.shape, 1, a.dtype)
    base = a
    bits_left = tl.max(rest, axis=0)
    while bits_left > 0:
        result = tl.where((rest & 1) != 0, result * base, result)
        base = base * base
        rest = rest >> 1
        bits_left = bits_left >> 1
    if tl.constexpr(a.dtype.is_int_signed()):
        odd = (e & 1) != 0
        inverse = tl.where(a == 1, 1, tl.where(a == -1, tl.where(odd, -1, 1), 0))
        result = tl.where(e < 0, inverse.to(a.dtype), result)
    return result


@triton.jit
def _int_floor_divmod(a, b):
    """``(a // b, a % b)`` for integers of one dtype, floored as Python's: the quotient rounds
    toward -inf and the remainder takes the divisor's sign.

    Triton's integer ``//`` and ``%`` truncate toward zero as C's do; where the truncated
    remainder and the divisor differ in sign, the floored quotient is one lower and the
    remainder one divisor further. The host refused zero divisors (masked lanes load 0:
    they divide by 1); ``x // -1`` is ``-x``, computed without the division that overflows
    at the dtype's minimum (which wraps to itself, as torch's).
    """
    if tl.constexpr(a.dtype.is_int_signed()):
        minus_one = b == -1
        d = tl.where((b == 0) | minus_one, 1, b)
        q = a // d
        r = a - q * d
        q = tl.where(minus_one, -a, q)
        r = tl.where(minus_one, 0, r)
        step = (r != 0) & ((r < 0) != (b < 0))
        q = tl.where(step, q - 1, q)
        r = tl.where(step, r + b, r)
    else:
        d = tl.where(b == 0, 1, b)
        q = a // d                        # unsigned: truncation is flooring already
        r = a - q * d
    return q, r


@triton.jit
def _fmod(a, b):
    """C's fmod(a, b): a - trunc(a / b) * b, with a's sign; NaN for b == 0 or infinite a.

    On magnitudes: q = floor(|a| / |b|) from the rounded division, then |a| - q|b| in one
    fused multiply-add, which is exact while the quotient is below 2**53 (the caller runs
    float32 in float64: every float32 quotient below 2**53 is exact). A quotient that
    rounded up onto the next integer leaves a negative remainder: one |b| back. Beyond
    2**53 the result is approximate (numpy's fmod is exact there).
    """
    ax = tl.abs(a)
    ay = tl.abs(b)
    q = tl.floor(ax / ay)
    r = tl.fma(-q, ay, ax)
    r = tl.where(r < 0, r + ay, r)
    r = tl.where((ay == float("inf")) & (ax < float("inf")), ax, r)   # q * inf would be NaN
    r = tl.where(a < 0, -r, r)
    return tl.where((a == 0) & (ay > 0), a, r)          # a signed zero stays itself


@triton.jit
def _float_mod(a, b):
    """torch's float remainder: fmod moved into the divisor's sign (fmod exact, in float64
    for float32)."""
    if tl.constexpr(a.dtype == tl.float64):
        mod = _fmod(a, b)
    else:
        mod = _fmod(a.to(tl.float64), b.to(tl.float64)).to(a.dtype)   # exact: fmod fits a's dtype
    return tl.where((mod != 0) & ((b < 0) != (mod < 0)), mod + b, mod)


@triton.jit
def _float_floordiv(a, b):
    """torch's float floor division, step for step (numpy's too): from the exact fmod,
    div = (a - mod) / b rounded, one lower where mod and b differ in sign, then floored
    with a round-up past .5 (div is within an ulp of an integer); a zero quotient takes
    the sign of a / b, and b == 0 gives a / b (inf or NaN)."""
    if tl.constexpr(a.dtype == tl.float64):
        mod = _fmod(a, b)
    else:
        mod = _fmod(a.to(tl.float64), b.to(tl.float64)).to(a.dtype)
    div = div_rn(a - mod, b)
    div = tl.where((mod != 0) & ((b < 0) != (mod < 0)), div - 1, div)
    fl = tl.floor(div)
    fl = tl.where(div - fl > 0.5, fl + 1, fl)
    q = div_rn(a, b)
    fl = tl.where(div != 0, fl, q * 0.0)
    return tl.where(b == 0, q, fl)


# ----------------------------------------------------------------------------------------------
# activations: rsqrt, SiLU, GELU (exact and tanh) and the derivatives unary_bwd fuses
# ----------------------------------------------------------------------------------------------

# constants, written out (module-level constexprs do not mix with tensors in the interpreter):
# 0.7071067811865476 = 1 / sqrt(2); 0.3989422804014327 = 1 / sqrt(2 pi), the normal density at 0;
# 0.7978845608028654 = sqrt(2 / pi) and 0.044715: PyTorch's approximate="tanh" form



@triton.jit
def _normal_cdf(x):
    """Phi(x) = (1 + erf(x / sqrt(2))) / 2 (libdevice's erf; the interpreter's is math.erf).

    The form PyTorch's GELU uses; for very negative x the 1 + erf cancels, but the GELU
    x * Phi(x) it feeds is then below an ulp of anything it is added to.
    """
    return 0.5 * (1.0 + tl.erf(x * 0.7071067811865476))


@triton.jit
def _tanh_inner(x):
    """sqrt(2 / pi) * (x + 0.044715 x^3): the argument of the tanh in GELU's tanh form."""
    return 0.7978845608028654 * (x + 0.044715 * x * x * x)


@triton.jit
def _unary_grad_math(g, s, OP: tl.constexpr):
    """g * OP'(x), from the saved output s = OP(x) (tanh, sigmoid, sqrt, rsqrt) or the saved
    input s = x (silu, gelu, gelu_tanh).

    Derivations: tanh' = 1 - tanh^2; sigmoid' = s (1 - s); sqrt' = 1 / (2 sqrt x);
    rsqrt' = -x^(-3/2) / 2 = -y^3 / 2. silu = x s(x): silu' = s + x s (1 - s) = s (1 + x (1 - s)).
    gelu = x Phi(x): gelu' = Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
    gelu_tanh = x (1 + t) / 2 with t = tanh(u), u = c (x + k x^3): its derivative is
    (1 + t) / 2 + x (1 - t^2) u' / 2 with u' = c (1 + 3 k x^2).
    """
    if OP == "tanh":
        d = 1.0 - s * s
    elif OP == "sigmoid":
        d = s * (1.0 - s)
    elif OP == "sqrt":
        d = div_rn(0.5 + tl.zeros_like(s), s)
    elif OP == "rsqrt":
        d = -0.5 * (s * s * s)
    elif OP == "silu":
        sg = sigmoid(s)
        d = sg * (1.0 + s * (1.0 - sg))
    elif OP == "gelu":
        d = _normal_cdf(s) + s * (tl.exp(-0.5 * s * s) * 0.3989422804014327)
    else:
        tl.static_assert(OP == "gelu_tanh", "unknown unary_bwd op")
        t = _tanh(_tanh_inner(s))
        slope = 0.7978845608028654 * (1.0 + 0.134145 * s * s)      # 0.134145 = 3 * 0.044715
        d = 0.5 * (1.0 + t) + 0.5 * s * (1.0 - t * t) * slope
    return g * d


@triton.jit
def _unary_math(x, OP: tl.constexpr):
    if OP == "neg":
        y = -x
    elif OP == "exp":
        y = tl.exp(x)
    elif OP == "log":
        y = tl.log(x)
    elif OP == "sqrt":
        y = sqrt_rn(x)
    elif OP == "abs":
        y = tl.abs(x)
    elif OP == "tanh":
        y = _tanh(x)
    elif OP == "sigmoid":
        y = sigmoid(x)
    elif OP == "rsqrt":
        y = div_rn(1.0 + tl.zeros_like(x), sqrt_rn(x))     # IEEE-rounded, as numpy's 1 / sqrt
    elif OP == "silu":
        y = x * sigmoid(x)
    elif OP == "gelu":
        y = x * _normal_cdf(x)
    elif OP == "gelu_tanh":
        y = 0.5 * x * (1.0 + _tanh(_tanh_inner(x)))
    else:
        tl.static_assert(OP == "relu", "unknown unary op")
        y = tl.where(x < 0, 0, x)        # NaN fails x < 0 and passes through, as in PyTorch
    return y


@triton.jit
def _binary_math(a, b, OP: tl.constexpr):
    if OP == "add":
        if tl.constexpr(a.dtype == tl.int1):
            r = a | b                    # bool + bool is logical or, as torch
        else:
            r = a + b
    elif OP == "sub":
        r = a - b
    elif OP == "mul":
        if tl.constexpr(a.dtype == tl.int1):
            r = a & b
        else:
            r = a * b
    elif OP == "div":
        r = div_rn(a, b)
    elif OP == "floordiv":
        if tl.constexpr(a.dtype.is_floating()):
            r = _float_floordiv(a, b)
        else:
            r, _ = _int_floor_divmod(a, b)
    elif OP == "mod":
        if tl.constexpr(a.dtype.is_floating()):
            r = _float_mod(a, b)
        else:
            _, r = _int_floor_divmod(a, b)
    elif OP == "pow":
        if tl.constexpr(a.dtype.is_floating()):
            r = _pow(a, b)
        else:
            r = _ipow(a, b)
    elif OP == "square":                 # pow with the exponent 2, exact
        r = a * a
    elif OP == "maximum":                # a NaN on either side wins, as np.maximum
        r = tl.where((a > b) | (a != a), a, b)
    elif OP == "minimum":
        r = tl.where((a < b) | (a != a), a, b)
    elif OP == "eq":
        r = a == b
    elif OP == "ne":
        r = a != b
    elif OP == "lt":
        r = a < b
    elif OP == "le":
        r = a <= b
    elif OP == "gt":
        r = a > b
    elif OP == "ge":
        r = a >= b
    else:
        tl.static_assert(OP == "relu_bwd", "unknown binary op")
        r = tl.where(b > 0, a, 0)        # grad where the ReLU output is positive
    return r


# ----------------------------------------------------------------------------------------------
# kernels
# ----------------------------------------------------------------------------------------------


@triton.jit
def _unary_kernel(x_ptr, out_ptr, n, size1, size2, size3,
                  stride_x0, stride_x1, stride_x2, stride_x3,
                  stride_out_0, stride_out_1, stride_out_2, stride_out_3,
                  OP: tl.constexpr, NDIM: tl.constexpr, INDEX32: tl.constexpr,
                  BLOCK: tl.constexpr):
    """out = OP(x) elementwise; x and out of one shape, any strides."""
    lin = linear_index(BLOCK, INDEX32)
    mask = lin < n
    x_off = strided_offset(lin, size1, size2, size3, stride_x0, stride_x1, stride_x2, stride_x3,
                           NDIM)
    y = _unary_math(up(tl.load(x_ptr + x_off, mask=mask, other=0)), OP)
    out_off = strided_offset(lin, size1, size2, size3, stride_out_0, stride_out_1, stride_out_2,
                             stride_out_3, NDIM)
    tl.store(out_ptr + out_off, cast_to(y, out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _unary_bwd_kernel(g_ptr, s_ptr, out_ptr, n, size1, size2, size3,
                      stride_g0, stride_g1, stride_g2, stride_g3,
                      stride_s0, stride_s1, stride_s2, stride_s3,
                      stride_out_0, stride_out_1, stride_out_2, stride_out_3,
                      OP: tl.constexpr, NDIM: tl.constexpr, INDEX32: tl.constexpr,
                      BLOCK: tl.constexpr):
    """out = g * OP'(x) elementwise from the saved s (``_unary_grad_math``); one shape, any
    strides (g is often an expanded 0-d gradient)."""
    lin = linear_index(BLOCK, INDEX32)
    mask = lin < n
    g_off = strided_offset(lin, size1, size2, size3, stride_g0, stride_g1, stride_g2, stride_g3,
                           NDIM)
    g = up(tl.load(g_ptr + g_off, mask=mask, other=0))
    s_off = strided_offset(lin, size1, size2, size3, stride_s0, stride_s1, stride_s2, stride_s3,
                           NDIM)
    s = up(tl.load(s_ptr + s_off, mask=mask, other=1))     # masked lanes: no 0 / 0 for sqrt
    r = _unary_grad_math(g, s, OP)
    out_off = strided_offset(lin, size1, size2, size3, stride_out_0, stride_out_1, stride_out_2,
                             stride_out_3, NDIM)
    tl.store(out_ptr + out_off, cast_to(r, out_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=("b_value",))
def _binary_kernel(a_ptr, b_ptr, out_ptr, b_value, n, size1, size2, size3,
                   stride_a0, stride_a1, stride_a2, stride_a3,
                   stride_b0, stride_b1, stride_b2, stride_b3,
                   stride_out_0, stride_out_1, stride_out_2, stride_out_3,
                   OP: tl.constexpr, B_KIND: tl.constexpr, NDIM: tl.constexpr,
                   INDEX32: tl.constexpr, BLOCK: tl.constexpr):
    """out = a OP b with broadcasting through strides.

    B_KIND 0: ``b`` is read from ``b_ptr``; 1: ``b`` is the float scalar whose
    float64 bits are ``b_value``; 2: ``b`` is the integer scalar ``b_value``.
    """
    lin = linear_index(BLOCK, INDEX32)
    mask = lin < n
    a_off = strided_offset(lin, size1, size2, size3, stride_a0, stride_a1, stride_a2, stride_a3,
                           NDIM)
    a = up(tl.load(a_ptr + a_off, mask=mask, other=0))
    if B_KIND == 0:
        b_off = strided_offset(lin, size1, size2, size3, stride_b0, stride_b1, stride_b2,
                               stride_b3, NDIM)
        b = up(tl.load(b_ptr + b_off, mask=mask, other=0))
    elif B_KIND == 1:
        b = f64_from_bits(b_value)
        if tl.constexpr(a.dtype.is_floating()):
            b = b.to(a.dtype)            # a Python float meets a float buffer in its precision
        else:
            a = a.to(tl.float64)
    else:
        b = b_value
        if OP == "floordiv" or OP == "mod" or tl.constexpr(a.dtype == tl.int1):
            b = b.to(a.dtype)            # computed in a's dtype, which holds b (host-checked)
    r = _binary_math(a, b, OP)
    out_off = strided_offset(lin, size1, size2, size3, stride_out_0, stride_out_1, stride_out_2,
                             stride_out_3, NDIM)
    tl.store(out_ptr + out_off, cast_to(r, out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _where_kernel(cond_ptr, a_ptr, b_ptr, out_ptr, n, size1, size2, size3,
                  stride_cond_0, stride_cond_1, stride_cond_2, stride_cond_3,
                  stride_a0, stride_a1, stride_a2, stride_a3,
                  stride_b0, stride_b1, stride_b2, stride_b3,
                  stride_out_0, stride_out_1, stride_out_2, stride_out_3,
                  NDIM: tl.constexpr, INDEX32: tl.constexpr, BLOCK: tl.constexpr):
    """out = a where cond else b, all three broadcast through strides."""
    lin = linear_index(BLOCK, INDEX32)
    mask = lin < n
    cond_off = strided_offset(lin, size1, size2, size3, stride_cond_0, stride_cond_1,
                              stride_cond_2, stride_cond_3, NDIM)
    cond = tl.load(cond_ptr + cond_off, mask=mask, other=0)
    a_off = strided_offset(lin, size1, size2, size3, stride_a0, stride_a1, stride_a2, stride_a3,
                           NDIM)
    a = tl.load(a_ptr + a_off, mask=mask, other=0)
    b_off = strided_offset(lin, size1, size2, size3, stride_b0, stride_b1, stride_b2, stride_b3,
                           NDIM)
    b = tl.load(b_ptr + b_off, mask=mask, other=0)
    r = tl.where(cond != 0, a, b)
    out_off = strided_offset(lin, size1, size2, size3, stride_out_0, stride_out_1, stride_out_2,
                             stride_out_3, NDIM)
    tl.store(out_ptr + out_off, cast_to(r, out_ptr.dtype.element_ty), mask=mask)


# ----------------------------------------------------------------------------------------------
# the backend functions
# ----------------------------------------------------------------------------------------------


def _is_scalar(b) -> bool:
    return isinstance(b, (bool, int, float)) or (hasattr(b, "item") and not hasattr(b, "data_ptr"))


def unary(x, op):
    """``op(x)`` for op in neg, exp, log, sqrt, abs, tanh, sigmoid, rsqrt, silu, gelu,
    gelu_tanh; same dtype as ``x``."""
    out = buffers.empty(buffers.shape(x), buffers.dtype_of(x))
    launch_strided(_unary_kernel, [x, out], OP=op)
    return out


def unary_bwd(grad, saved, op):
    """``grad * op'(x)`` in one launch, from the saved output or input (the contract says which)."""
    out = buffers.empty(buffers.shape(saved), buffers.dtype_of(grad))
    launch_strided(_unary_bwd_kernel, [buffers.expand(grad, buffers.shape(saved)), saved, out],
                   num_warps=UNARY_BWD_WARPS, OP=op)
    return out


# SiLU's float32 derivative with three strided operands spills 8 bytes on sm_90 at 4 warps
# (8 elements a thread); 8 warps halve that (tests/test_aot_compile.py)
UNARY_BWD_WARPS = 8


def binary(a, b, op):
    """``op(a, b)`` with broadcasting; ``b`` a buffer or a Python scalar (a kernel argument).

    ``pow`` by 2 runs as an exact ``a * a``; ``relu_bwd`` is ``relu_bwd``'s kernel op.
    """
    dt = buffers.dtype_of(a)
    b_kind, b_value = 0, 0
    if _is_scalar(b):
        shape = buffers.shape(a)
        if op == "pow" and float(b) == 2.0:
            op = "square"
        if dt.is_floating or isinstance(b, float):
            b_kind, b_value = 1, float_bits(b)
        else:
            b_kind, b_value = 2, int(b)
        b_buf = a
    else:
        shape = broadcast_shape(buffers.shape(a), buffers.shape(b))
        b_buf = buffers.expand(b, shape)
    out_dt = D.bool_ if op in COMPARISONS else dt
    out = buffers.empty(shape, out_dt)
    launch_strided(_binary_kernel, [buffers.expand(a, shape), b_buf, out], (b_value,),
                   OP=op, B_KIND=b_kind)
    return out


def where(cond, a, b):
    shape = broadcast_shape(buffers.shape(cond), buffers.shape(a), buffers.shape(b))
    out = buffers.empty(shape, buffers.dtype_of(a))
    launch_strided(_where_kernel, [buffers.expand(cond, shape), buffers.expand(a, shape),
                                   buffers.expand(b, shape), out])
    return out


def relu_fwd(x):
    """max(x, 0); NaN stays NaN, as in PyTorch."""
    out = buffers.empty(buffers.shape(x), buffers.dtype_of(x))
    launch_strided(_unary_kernel, [x, out], OP="relu")
    return out


def relu_bwd(grad, out):
    """grad * (out > 0): ReLU's gradient is 0 at exactly 0, as in PyTorch."""
    return binary(grad, out, "relu_bwd")


# ----------------------------------------------------------------------------------------------
# ahead-of-time compile list (format: kernels/_launch.py)
# ----------------------------------------------------------------------------------------------

def _kernels():
    out = []
    for op, dt in (("neg", "fp32"), ("exp", "bf16"), ("log", "fp16"), ("sqrt", "fp32"),
                   ("abs", "fp64"), ("tanh", "fp32"), ("sigmoid", "bf16"), ("relu", "fp32"),
                   ("neg", "i64")):
        out.append(aot_entry(f"unary_{op}_{dt}", _unary_kernel, dt,
                             {"OP": op, "NDIM": 3, "INDEX32": False, "BLOCK": 1024}))
    for op in ("add", "sub", "mul", "div", "floordiv", "mod", "pow", "square", "maximum",
               "minimum", "eq", "ne", "lt", "le", "gt", "ge", "relu_bwd"):
        for dt, kind in (("fp32", 0), ("bf16", 1), ("i64", 2)):
            if dt == "i64" and op == "div":
                continue
            odt = "i1" if op in COMPARISONS else dt
            out.append(aot_entry(f"binary_{op}_{dt}_b{kind}", _binary_kernel,
                                 {"a_ptr": dt, "b_ptr": dt, "out_ptr": odt},
                                 {"OP": op, "B_KIND": kind, "NDIM": 4 if kind == 0 else 1,
                                  "INDEX32": False, "BLOCK": 1024}))
    # the integer paths by width and sign (floored // and %, square-and-multiply **), float64
    # fmod without the float32 detour, and bool + * (or, and)
    for op, dt, kind in (("floordiv", "i64", 0), ("mod", "i32", 0), ("floordiv", "u8", 2),
                         ("mod", "u32", 0), ("pow", "i64", 0), ("pow", "i32", 2),
                         ("pow", "u8", 0), ("floordiv", "fp64", 0), ("mod", "fp64", 1),
                         ("mod", "fp16", 0), ("add", "i1", 0), ("mul", "i1", 2)):
        out.append(aot_entry(f"binary_{op}_{dt}_b{kind}", _binary_kernel, dt,
                             {"OP": op, "B_KIND": kind, "NDIM": 4 if kind == 0 else 1,
                              "INDEX32": False, "BLOCK": 1024}))
    # the activations: forward and fused backward, float32 / low precision / float64
    for op, dt in (("rsqrt", "fp32"), ("silu", "bf16"), ("gelu", "fp32"), ("gelu", "fp64"),
                   ("gelu_tanh", "fp16")):
        out.append(aot_entry(f"unary_{op}_{dt}", _unary_kernel, dt,
                             {"OP": op, "NDIM": 3, "INDEX32": False, "BLOCK": 1024}))
    for op, dt in (("tanh", "fp32"), ("sigmoid", "bf16"), ("sqrt", "fp32"), ("rsqrt", "fp64"),
                   ("silu", "fp32"), ("gelu", "bf16"), ("gelu", "fp64"), ("gelu_tanh", "fp32")):
        out.append(aot_entry(f"unary_bwd_{op}_{dt}", _unary_bwd_kernel, dt,
                             {"OP": op, "NDIM": 2, "INDEX32": False, "BLOCK": 1024},
                             num_warps=UNARY_BWD_WARPS))
    out.append(aot_entry("where_fp16", _where_kernel,
                         {"cond_ptr": "i1", "a_ptr": "fp16", "b_ptr": "fp16", "out_ptr": "fp16"},
                         {"NDIM": 2, "INDEX32": False, "BLOCK": 1024}))
    # int32 indexing (what every launch whose offsets fit int32 runs): 4-D strided operands
    # with sizes and strides as the i32 arguments the runtime passes, no stride known to be 1
    i32 = {"b_value": "i64"}
    for op, dt in (("add", "fp32"), ("mul", "bf16"), ("div", "fp32"), ("floordiv", "fp32"),
                   ("mod", "fp32"), ("pow", "fp32"), ("maximum", "fp32"), ("lt", "fp32"),
                   ("relu_bwd", "fp32"), ("add", "fp64"), ("floordiv", "i64")):
        odt = "i1" if op in COMPARISONS else dt
        out.append(aot_entry(f"binary_{op}_{dt}_b0_idx32", _binary_kernel,
                             {"a_ptr": dt, "b_ptr": dt, "out_ptr": odt},
                             {"OP": op, "B_KIND": 0, "NDIM": 4, "INDEX32": True, "BLOCK": 1024},
                             scalars=i32, scalar_type="i32"))
    for op, dt in (("relu", "fp32"), ("exp", "bf16"), ("gelu", "fp32")):
        out.append(aot_entry(f"unary_{op}_{dt}_idx32", _unary_kernel, dt,
                             {"OP": op, "NDIM": 4, "INDEX32": True, "BLOCK": 1024},
                             scalar_type="i32"))
    for op, dt in (("silu", "fp32"), ("gelu_tanh", "bf16")):
        out.append(aot_entry(f"unary_bwd_{op}_{dt}_idx32", _unary_bwd_kernel, dt,
                             {"OP": op, "NDIM": 4, "INDEX32": True, "BLOCK": 1024},
                             scalar_type="i32", num_warps=UNARY_BWD_WARPS))
    out.append(aot_entry("where_fp32_idx32", _where_kernel,
                         {"cond_ptr": "i1", "a_ptr": "fp32", "b_ptr": "fp32", "out_ptr": "fp32"},
                         {"NDIM": 4, "INDEX32": True, "BLOCK": 1024}, scalar_type="i32"))
    # contiguous operands of one shape collapse to NDIM 1 with stride 1, which the runtime
    # passes as the constant 1: no division at all, and vectorized loads and stores
    unit = {"stride_a3": 1, "stride_b3": 1, "stride_out_3": 1}
    out.append(aot_entry("binary_add_fp32_b0_contiguous", _binary_kernel, "fp32",
                         {"OP": "add", "B_KIND": 0, "NDIM": 1, "INDEX32": True, "BLOCK": 1024,
                          **unit},
                         scalars=i32, scalar_type="i32",
                         divisible_by_16=["a_ptr", "b_ptr", "out_ptr", "n"]))
    return out


KERNELS = _kernels()
