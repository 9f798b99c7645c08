"""The device-side floor of the kernels: ``@triton.jit`` helpers more than one op family uses.

Computing dtypes (``up``), rounding for a store (``cast_to``, ``_bf16_rne``),
exact float scalars passed as int64 bits (``f64_from_bits``), addressing a
collapsed strided layout (``linear_index``, ``strided_offset``: the device half of
``_launch.layout`` and ``_launch.index32``), the IEEE-rounded division and square root
numpy gives (``div_rn``, ``sqrt_rn``), an overflow-free ``sigmoid``, and the device half of
a deferred range check (``report_out_of_range``). Helpers are inlined
into the kernels that call them: they cost nothing at run time.
"""
import triton
import triton.language as tl

from ._interpret import INTERPRET

# Triton's interpreter converts float32 -> bfloat16 by truncation; the GPU (and ml_dtypes, the
# numpy mirror) round to nearest even. Under the interpreter stores round explicitly.
_EXPLICIT_BF16_ROUNDING = tl.constexpr(INTERPRET)


@triton.jit
def up(x):
    """float16/bfloat16 -> float32 for the math; every other dtype as it is."""
    if tl.constexpr(x.dtype == tl.float16) or tl.constexpr(x.dtype == tl.bfloat16):
        y = x.to(tl.float32)
    else:
        y = x
    return y


@triton.jit
def _bf16_rne(x):
    """float32 -> bfloat16 rounded to nearest, ties to even, on the bits (NaN stays NaN)."""
    bits = x.to(tl.uint32, bitcast=True)
    # adding 0x7FFF plus the lowest kept bit carries into the kept half exactly when the
    # dropped half is above one half, or equal to it with an odd kept half
    rounded = bits + (0x7FFF + ((bits >> 16) & 1))
    rounded = tl.where(x != x, bits | 0x400000, rounded)     # a quiet NaN, never inf
    return (rounded >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)


@triton.jit
def cast_to(x, dst: tl.constexpr):
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
def f64_from_bits(bits):
    """The float64 whose IEEE bits are the integer ``bits`` (exact scalars of any float dtype)."""
    return (bits + tl.zeros((1,), tl.int64)).to(tl.float64, bitcast=True)


@triton.jit
def linear_index(BLOCK: tl.constexpr, INDEX32: tl.constexpr):
    """This program's ``BLOCK`` linear indices: int32 when ``INDEX32``, else int64.

    ``INDEX32`` is the host's promise (``_launch.index32``) that every linear index and
    element offset the launch computes, masked lanes included, fits int32: then
    ``strided_offset`` divides in 32 bits (a 64-bit division is a long software
    sequence on NVIDIA GPUs, and holding int64 offsets doubles their registers).
    """
    if INDEX32:
        lin = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    else:
        lin = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    return lin


@triton.jit
def strided_offset(lin, size1, size2, size3, stride0, stride1, stride2, stride3,
                   NDIM: tl.constexpr):
    """Element offset of linear index ``lin`` in a (size0, size1, size2, size3) layout.

    Only the last ``NDIM`` dims are real (``_launch.layout`` pads on the left),
    so a collapsed contiguous operand (NDIM 1) costs one multiply, and a contiguous
    one (stride 1, which the runtime specializes) nothing. The arithmetic runs in
    ``lin``'s integer type (``linear_index``): int32 or int64.
    """
    if NDIM == 1:
        off = lin * stride3
    else:
        # peel the dims off from the innermost: index within the dim, times its stride
        off = (lin % size3) * stride3
        rest = lin // size3
        if NDIM == 2:
            off += rest * stride2
        else:
            off += (rest % size2) * stride2
            rest = rest // size2
            if NDIM == 3:
                off += rest * stride1
            else:
                off += (rest % size1) * stride1 + (rest // size1) * stride0
    return off


@triton.jit
def sqrt_rn(x):
    """IEEE-rounded square root (float32 has a fast approximate default; float64 is exact)."""
    if tl.constexpr(x.dtype == tl.float32):
        y = tl.sqrt_rn(x)
    else:
        y = tl.sqrt(x)
    return y


@triton.jit
def div_rn(a, b):
    """IEEE-rounded a / b, as numpy divides (float32's default division is approximate)."""
    if tl.constexpr(a.dtype == tl.float32) and tl.constexpr(b.dtype == tl.float32):
        r = tl.div_rn(a, b)
    else:
        r = a / b
    return r


@triton.jit
def sigmoid(x):
    """1 / (1 + exp(-x)) without overflow: exp(-|x|) and the two stable forms by sign."""
    e = tl.exp(-tl.abs(x))
    return tl.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


# ----------------------------------------------------------------------------------------------
# values only the device sees (issue 12): reported to the host, raised at its next sync
# ----------------------------------------------------------------------------------------------


@triton.jit
def report_out_of_range(err_ptr, site, value, below, above):
    """Record the 1-D block's bad ``value``s for the host (``buffers.raise_deferred``).

    ``below`` and ``above`` mask the values under and over the range the op needs.
    ``err_ptr`` is the int64 record ``[claim, lowest below, highest above, 0]``: the first
    launch that meets a bad value claims it by writing its ``site`` (the launch's claim, a
    number unique to the launch with the check's site in its low bits) over the 0 (an atomic
    compare-and-swap), and only that launch's programs add to the two extremes (atomic min
    and max: the same result in any order). Programs without a bad value touch nothing.
    """
    bad = below | above
    if tl.max(bad.to(tl.int32), axis=0) > 0:
        zero = tl.full((), 0, tl.int64)
        me = zero + site
        owner = tl.atomic_cas(err_ptr, zero, me)
        if (owner == 0) | (owner == me):
            value = value.to(tl.int64)
            low = tl.min(tl.where(below, value, 9223372036854775807), axis=0)
            high = tl.max(tl.where(above, value, -9223372036854775807 - 1), axis=0)
            tl.atomic_min(err_ptr + 1, low)
            tl.atomic_max(err_ptr + 2, high)
