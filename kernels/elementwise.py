"""Elementwise ops with numpy broadcasting (Triton). Twins of ``fallback_cpu/elementwise.py``.

Every operand is addressed through its own strides, so transposed, sliced and
expanded (stride 0) buffers are read in place, never copied first. A launcher
expands all operands to the output shape (a view), collapses the shape to at
most four dims (``_launch.layout``) and launches one program per ``BLOCK``
output elements; each program turns its linear indices into an element offset
per operand (``_strided_offset``). float16/bfloat16 are computed in float32
and rounded once when stored, as the numpy mirror does.

Kernels here: ``_unary_kernel`` (neg exp log sqrt abs tanh sigmoid, and relu),
``_binary_kernel`` (arithmetic, maximum/minimum, comparisons, relu's backward;
``b`` a buffer or a scalar kernel argument), ``_where_kernel`` and
``_accumulate_kernel`` (``dst += src`` in place).
"""
from __future__ import annotations

import struct

import triton
import triton.language as tl

from .. import dtypes as D
from . import _launch, buffers

# ----------------------------------------------------------------------------------------------
# shared device helpers
# ----------------------------------------------------------------------------------------------


@triton.jit
def _up(x):
    """float16/bfloat16 -> float32 for the math; every other dtype as it is."""
    if tl.constexpr(x.dtype == tl.float16) or tl.constexpr(x.dtype == tl.bfloat16):
        y = x.to(tl.float32)
    else:
        y = x
    return y


# Triton's interpreter converts float32 -> bfloat16 by truncation; the GPU (and ml_dtypes, the
# numpy mirror) round to nearest even. Under the interpreter stores round explicitly.
_EXPLICIT_BF16_ROUNDING = tl.constexpr(_launch.INTERPRET)


@triton.jit
def _bf16_rne(x):
    """float32 -> bfloat16 rounded to nearest, ties to even, on the bits (NaN stays NaN)."""
    bits = x.to(tl.uint32, bitcast=True)
    rounded = bits + (0x7FFF + ((bits >> 16) & 1))
    rounded = tl.where(x != x, bits | 0x400000, rounded)
    return (rounded >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)


@triton.jit
def _cast(x, dst: tl.constexpr):
    """``x`` converted to dtype ``dst`` for a store, floats rounded to nearest even.

    bfloat16 is reached through float32 (the interpreter garbles float64 or
    integers converted straight to bfloat16).
    """
    if tl.constexpr(dst == tl.bfloat16):
        if tl.constexpr(x.dtype == tl.bfloat16):
            y = x
        elif _EXPLICIT_BF16_ROUNDING:
            y = _bf16_rne(x.to(tl.float32))
        else:
            y = x.to(tl.float32).to(tl.bfloat16)
    else:
        y = x.to(dst)
    return y


@triton.jit
def _f64_from_bits(bits):
    """The float64 whose IEEE bits are the integer ``bits`` (exact scalars of any float dtype)."""
    return (bits + tl.zeros((1,), tl.int64)).to(tl.float64, bitcast=True)


@triton.jit
def _strided_offset(lin, size1, size2, size3, st0, st1, st2, st3, NDIM: tl.constexpr):
    """Element offset of linear index ``lin`` (int64) in a (size0, size1, size2, size3) layout.

    Only the last ``NDIM`` dims are real (``_launch.layout`` pads on the left),
    so a collapsed contiguous operand (NDIM 1) costs one multiply.
    """
    if NDIM == 1:
        off = lin * st3
    else:
        off = (lin % size3) * st3
        rest = lin // size3
        if NDIM == 2:
            off += rest * st2
        else:
            off += (rest % size2) * st2
            rest = rest // size2
            if NDIM == 3:
                off += rest * st1
            else:
                off += (rest % size1) * st1 + (rest // size1) * st0
    return off


@triton.jit
def _sqrt(x):
    """IEEE-rounded square root (float32 has a fast approximate default; float64 is exact)."""
    if tl.constexpr(x.dtype == tl.float32):
        y = tl.sqrt_rn(x)
    else:
        y = tl.sqrt(x)
    return y


@triton.jit
def _div(a, b):
    """IEEE-rounded a / b, as numpy divides (float32's default division is approximate)."""
    if tl.constexpr(a.dtype == tl.float32) and tl.constexpr(b.dtype == tl.float32):
        r = tl.div_rn(a, b)
    else:
        r = a / b
    return r


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
def _sigmoid(x):
    """1 / (1 + exp(-x)) without overflow: exp(-|x|) and the two stable forms by sign."""
    e = tl.exp(-tl.abs(x))
    return tl.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


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
        y = _sqrt(x)
    elif OP == "abs":
        y = tl.abs(x)
    elif OP == "tanh":
        y = _tanh(x)
    elif OP == "sigmoid":
        y = _sigmoid(x)
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
        r = _div(a, b)
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
                  xs0, xs1, xs2, xs3, os0, os1, os2, os3,
                  OP: tl.constexpr, NDIM: tl.constexpr, BLOCK: tl.constexpr):
    """out = OP(x) elementwise; x and out of one shape, any strides."""
    lin = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = lin < n
    x = tl.load(x_ptr + _strided_offset(lin, size1, size2, size3, xs0, xs1, xs2, xs3, NDIM),
                mask=mask, other=0)
    y = _unary_math(_up(x), OP)
    tl.store(out_ptr + _strided_offset(lin, size1, size2, size3, os0, os1, os2, os3, NDIM),
             _cast(y, out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _binary_kernel(a_ptr, b_ptr, out_ptr, b_value, n, size1, size2, size3,
                   as0, as1, as2, as3, bs0, bs1, bs2, bs3, os0, os1, os2, os3,
                   OP: tl.constexpr, B_KIND: tl.constexpr, NDIM: tl.constexpr,
                   BLOCK: tl.constexpr):
    """out = a OP b with broadcasting through strides.

    B_KIND 0: ``b`` is read from ``b_ptr``; 1: ``b`` is the float scalar whose
    float64 bits are ``b_value``; 2: ``b`` is the integer scalar ``b_value``.
    """
    lin = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = lin < n
    a = _up(tl.load(a_ptr + _strided_offset(lin, size1, size2, size3, as0, as1, as2, as3, NDIM),
                    mask=mask, other=0))
    if B_KIND == 0:
        b = _up(tl.load(b_ptr + _strided_offset(lin, size1, size2, size3, bs0, bs1, bs2, bs3, NDIM),
                        mask=mask, other=0))
    elif B_KIND == 1:
        b = _f64_from_bits(b_value)
        if tl.constexpr(a.dtype.is_floating()):
            b = b.to(a.dtype)            # a Python float meets a float buffer in its precision
        else:
            a = a.to(tl.float64)
    else:
        b = b_value
    r = _binary_math(a, b, OP)
    tl.store(out_ptr + _strided_offset(lin, size1, size2, size3, os0, os1, os2, os3, NDIM),
             _cast(r, out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _where_kernel(c_ptr, a_ptr, b_ptr, out_ptr, n, size1, size2, size3,
                  cs0, cs1, cs2, cs3, as0, as1, as2, as3, bs0, bs1, bs2, bs3,
                  os0, os1, os2, os3, NDIM: tl.constexpr, BLOCK: tl.constexpr):
    """out = a where c else b, all three broadcast through strides."""
    lin = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = lin < n
    c = tl.load(c_ptr + _strided_offset(lin, size1, size2, size3, cs0, cs1, cs2, cs3, NDIM),
                mask=mask, other=0)
    a = tl.load(a_ptr + _strided_offset(lin, size1, size2, size3, as0, as1, as2, as3, NDIM),
                mask=mask, other=0)
    b = tl.load(b_ptr + _strided_offset(lin, size1, size2, size3, bs0, bs1, bs2, bs3, NDIM),
                mask=mask, other=0)
    r = tl.where(c != 0, a, b)
    tl.store(out_ptr + _strided_offset(lin, size1, size2, size3, os0, os1, os2, os3, NDIM),
             _cast(r, out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _accumulate_kernel(dst_ptr, src_ptr, n, size1, size2, size3,
                       ds0, ds1, ds2, ds3, ss0, ss1, ss2, ss3,
                       NDIM: tl.constexpr, BLOCK: tl.constexpr):
    """dst += src in place (float32 math for float16/bfloat16)."""
    lin = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = lin < n
    d_off = _strided_offset(lin, size1, size2, size3, ds0, ds1, ds2, ds3, NDIM)
    d = _up(tl.load(dst_ptr + d_off, mask=mask, other=0))
    s = _up(tl.load(src_ptr + _strided_offset(lin, size1, size2, size3, ss0, ss1, ss2, ss3, NDIM),
                    mask=mask, other=0))
    tl.store(dst_ptr + d_off, _cast((d + s), dst_ptr.dtype.element_ty), mask=mask)


# ----------------------------------------------------------------------------------------------
# launch helpers (shared by the other kernel modules)
# ----------------------------------------------------------------------------------------------


def numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def broadcast_shape(*shapes):
    """numpy's broadcast of shapes (already validated by ops.py)."""
    nd = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(nd):
        size = 1
        for s in shapes:
            j = i - (nd - len(s))
            if j >= 0 and s[j] != 1:
                size = s[j]
        out.append(size)
    return tuple(out)


def float_bits(value) -> int:
    """The float64 bits of ``value`` as a signed int64 (a kernel argument that loses nothing)."""
    return struct.unpack("<q", struct.pack("<d", float(value)))[0]


def launch_strided(kernel, bufs, scalars=(), **meta):
    """Launch ``kernel`` once per ``BLOCK`` elements of the same-shape buffers ``bufs``.

    ``kernel`` takes ``(*bufs, *scalars, n, size1, size2, size3, *strides, NDIM, BLOCK)``
    with four strides per buffer. A shape that keeps more than four dims after
    collapsing is split along its leading dim into several launches.
    """
    shape = buffers.shape(bufs[0])
    n = numel(shape)
    if n == 0:
        return
    geo = _launch.layout(shape, tuple(tuple(buffers.strides(b)) for b in bufs))
    if geo is None:
        for i in range(shape[0]):
            launch_strided(kernel, [buffers.view_index(b, (i,)) for b in bufs], scalars, **meta)
        return
    ndim, sizes, strides = geo
    block, warps = _launch.elementwise(n)
    warps = meta.pop("num_warps", warps)
    flat = [s for st in strides for s in st]
    kernel[(_launch.cdiv(n, block),)](*bufs, *scalars, n, sizes[1], sizes[2], sizes[3], *flat,
                                      NDIM=ndim, BLOCK=block, num_warps=warps, **meta)


def _is_scalar(b) -> bool:
    return isinstance(b, (bool, int, float)) or (hasattr(b, "item") and not hasattr(b, "data_ptr"))


# ----------------------------------------------------------------------------------------------
# the backend functions
# ----------------------------------------------------------------------------------------------


def unary(x, op):
    """``op(x)`` for op in neg, exp, log, sqrt, abs, tanh, sigmoid; same dtype as ``x``."""
    out = buffers.empty(buffers.shape(x), buffers.dtype_of(x))
    launch_strided(_unary_kernel, [x, out], OP=op)
    return out


def binary(a, b, op):
    """``op(a, b)`` with broadcasting; ``b`` may be a Python scalar.

    Operands share one dtype (the caller promotes); comparisons return bool.
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
    out_dt = D.bool_ if op in ("eq", "ne", "lt", "le", "gt", "ge") else dt
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


def accumulate_(dst, src):
    """``dst += src`` in place (gradient accumulation); ``src`` broadcasts to ``dst``."""
    launch_strided(_accumulate_kernel, [dst, buffers.expand(src, buffers.shape(dst))])


def sum_to_shape(g, shape):
    """Sum a broadcast gradient ``g`` back down to ``shape`` (the backward of broadcasting)."""
    from .reduction import reduce
    shape = tuple(shape)
    gshape = buffers.shape(g)
    if gshape == shape:
        return g
    lead = len(gshape) - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, s in enumerate(shape)
                                      if s == 1 and gshape[i + lead] != 1)
    r = reduce(g, axes, True, "sum")
    dt = buffers.dtype_of(g)
    if buffers.dtype_of(r) is not dt:
        from .memory import cast
        r = cast(r, dt)
    return buffers.reshape(r, shape)


def relu_fwd(x):
    """max(x, 0); NaN stays NaN, as in PyTorch."""
    out = buffers.empty(buffers.shape(x), buffers.dtype_of(x))
    launch_strided(_unary_kernel, [x, out], OP="relu")
    return out


def relu_bwd(grad, out):
    """grad * (out > 0): ReLU's gradient is 0 at exactly 0, as in PyTorch."""
    return binary(grad, out, "relu_bwd")


# ----------------------------------------------------------------------------------------------
# ahead-of-time compile list (format: kernels/__init__.py)
# ----------------------------------------------------------------------------------------------

def _sig(ptrs, scalars, n_bufs, constexprs):
    sig = dict(ptrs)
    sig.update(scalars)
    sig.update({"n": "i64", "size1": "i64", "size2": "i64", "size3": "i64"})
    for name in n_bufs:
        sig.update({f"{name}s{k}": "i64" for k in range(4)})
    sig.update({k: "constexpr" for k in constexprs})
    return sig


def _kernels():
    out = []
    for op, dt in (("neg", "fp32"), ("exp", "bf16"), ("log", "fp16"), ("sqrt", "fp32"),
                   ("abs", "fp64"), ("tanh", "fp32"), ("sigmoid", "bf16"), ("relu", "fp32"),
                   ("neg", "i64")):
        ce = {"OP": op, "NDIM": 3, "BLOCK": 1024}
        out.append({"name": f"unary_{op}_{dt}", "fn": _unary_kernel, "constexprs": ce,
                    "signature": _sig({"x_ptr": f"*{dt}", "out_ptr": f"*{dt}"}, {},
                                      ("x", "o"), ce)})
    for op in ("add", "sub", "mul", "div", "pow", "square", "maximum", "minimum", "eq", "ne",
               "lt", "le", "gt", "ge", "relu_bwd"):
        for dt, kind in (("fp32", 0), ("bf16", 1), ("i64", 2)):
            if dt == "i64" and op in ("div", "pow", "square"):
                continue
            ce = {"OP": op, "B_KIND": kind, "NDIM": 4 if kind == 0 else 1, "BLOCK": 1024}
            odt = "i1" if op in ("eq", "ne", "lt", "le", "gt", "ge") else dt
            out.append({"name": f"binary_{op}_{dt}_b{kind}", "fn": _binary_kernel,
                        "constexprs": ce,
                        "signature": _sig({"a_ptr": f"*{dt}", "b_ptr": f"*{dt}",
                                           "out_ptr": f"*{odt}"}, {"b_value": "i64"},
                                          ("a", "b", "o"), ce)})
    ce = {"NDIM": 2, "BLOCK": 1024}
    out.append({"name": "where_fp16", "fn": _where_kernel, "constexprs": ce,
                "signature": _sig({"c_ptr": "*i1", "a_ptr": "*fp16", "b_ptr": "*fp16",
                                   "out_ptr": "*fp16"}, {}, ("c", "a", "b", "o"), ce)})
    out.append({"name": "accumulate_bf16", "fn": _accumulate_kernel, "constexprs": ce,
                "signature": _sig({"dst_ptr": "*bf16", "src_ptr": "*bf16"}, {}, ("d", "s"), ce)})
    return out


KERNELS = _launch.with_warps(_kernels())
