"""Elementwise ops with numpy broadcasting (Triton). Twins of ``fallback_cpu/elementwise.py``.

Every operand is addressed through its own strides, so transposed, sliced and
expanded (stride 0) buffers are read in place, never copied first. A launcher
expands all operands to the output shape (a view), collapses the shape to at
most four dims (``_launch.layout``) and launches one program per ``BLOCK``
output elements; each program turns its linear indices into an element offset
per operand (``_jitlib.strided_offset``). float16/bfloat16 are computed in
float32 and rounded once when stored, as the numpy mirror does.

Kernels here: ``_unary_kernel`` (neg exp log sqrt abs tanh sigmoid, and relu),
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
from ._jitlib import cast_to, div_rn, f64_from_bits, sigmoid, sqrt_rn, strided_offset, up
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
    # x - x^3/3 + 2x^5/15 - 17x^7/315 + 62x^9/2835: error < 1e-8 relative for |x| < 0.25
    near = ax * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0 + x2 * (62.0 / 2835.0)))))
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
    else:
        tl.static_assert(OP == "relu", "unknown unary op")
        y = tl.where(x < 0, 0, x)        # NaN fails x < 0 and passes through, as in PyTorch
    return y


@triton.jit
def _binary_math(a, b, OP: tl.constexpr):
    if OP == "add":
        r = a + b
    elif OP == "sub":
        r = a - b
    elif OP == "mul":
        r = a * b
    elif OP == "div":
        r = div_rn(a, b)
    elif OP == "pow":
        r = _pow(a, b)
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
                  OP: tl.constexpr, NDIM: tl.constexpr, BLOCK: tl.constexpr):
    """out = OP(x) elementwise; x and out of one shape, any strides."""
    lin = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = lin < n
    x_off = strided_offset(lin, size1, size2, size3, stride_x0, stride_x1, stride_x2, stride_x3,
                           NDIM)
    y = _unary_math(up(tl.load(x_ptr + x_off, mask=mask, other=0)), OP)
    out_off = strided_offset(lin, size1, size2, size3, stride_out_0, stride_out_1, stride_out_2,
                             stride_out_3, NDIM)
    tl.store(out_ptr + out_off, cast_to(y, out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _binary_kernel(a_ptr, b_ptr, out_ptr, b_value, n, size1, size2, size3,
                   stride_a0, stride_a1, stride_a2, stride_a3,
                   stride_b0, stride_b1, stride_b2, stride_b3,
                   stride_out_0, stride_out_1, stride_out_2, stride_out_3,
                   OP: tl.constexpr, B_KIND: tl.constexpr, NDIM: tl.constexpr,
                   BLOCK: tl.constexpr):
    """out = a OP b with broadcasting through strides.

    B_KIND 0: ``b`` is read from ``b_ptr``; 1: ``b`` is the float scalar whose
    float64 bits are ``b_value``; 2: ``b`` is the integer scalar ``b_value``.
    """
    lin = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
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
                  NDIM: tl.constexpr, BLOCK: tl.constexpr):
    """out = a where cond else b, all three broadcast through strides."""
    lin = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
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
    """``op(x)`` for op in neg, exp, log, sqrt, abs, tanh, sigmoid; same dtype as ``x``."""
    out = buffers.empty(buffers.shape(x), buffers.dtype_of(x))
    launch_strided(_unary_kernel, [x, out], OP=op)
    return out


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
                             {"OP": op, "NDIM": 3, "BLOCK": 1024}))
    for op in ("add", "sub", "mul", "div", "pow", "square", "maximum", "minimum", "eq", "ne",
               "lt", "le", "gt", "ge", "relu_bwd"):
        for dt, kind in (("fp32", 0), ("bf16", 1), ("i64", 2)):
            if dt == "i64" and op in ("div", "pow", "square"):
                continue
            odt = "i1" if op in COMPARISONS else dt
            out.append(aot_entry(f"binary_{op}_{dt}_b{kind}", _binary_kernel,
                                 {"a_ptr": dt, "b_ptr": dt, "out_ptr": odt},
                                 {"OP": op, "B_KIND": kind, "NDIM": 4 if kind == 0 else 1,
                                  "BLOCK": 1024}))
    out.append(aot_entry("where_fp16", _where_kernel,
                         {"cond_ptr": "i1", "a_ptr": "fp16", "b_ptr": "fp16", "out_ptr": "fp16"},
                         {"NDIM": 2, "BLOCK": 1024}))
    return out


KERNELS = _kernels()
