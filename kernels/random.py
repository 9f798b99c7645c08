"""Counter-based random numbers (Triton). Twins of ``fallback_cpu/random.py``.

Element ``i`` of a draw from ``(seed, offset)`` is Philox-4x32-10 of the
64-bit counter ``offset + i`` keyed by ``seed`` (``tl.rand``/``tl.randn``), so
the same seed gives the same numbers on every device: ``rand`` bit for bit,
``randn`` up to the last bits of the GPU's log/cos.
"""
from __future__ import annotations

import triton
import triton.language as tl

from . import _launch, buffers
from ._jitlib import cast_to
from ._launch import aot_entry, cdiv, launch, numel


@triton.jit
def _random_kernel(out_ptr, seed, offset, n, NORMAL: tl.constexpr, BLOCK: tl.constexpr):
    """out[i] = U[0, 1) (NORMAL: N(0, 1)) from Philox(seed, offset + i), computed in float32."""
    lin = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = lin < n
    counter = offset + lin                     # int64: draws may start past 2**32
    if NORMAL:
        r = tl.randn(seed, counter)
    else:
        r = tl.rand(seed, counter)
    tl.store(out_ptr + lin, cast_to(r, out_ptr.dtype.element_ty), mask=mask)


def _draw(shape, dtype, seed, offset, normal):
    out = buffers.empty(shape, dtype)
    n = numel(tuple(shape))
    if n:
        block, warps = _launch.elementwise(n)
        launch(_random_kernel, (cdiv(n, block),), out, int(seed), int(offset), n, NORMAL=normal,
               BLOCK=block, num_warps=warps)
    return out


def rand(shape, dtype, seed, offset):
    """Uniform [0, 1) numbers of ``shape``, computed in float32, returned in ``dtype``."""
    return _draw(shape, dtype, seed, offset, False)


def randn(shape, dtype, seed, offset):
    """Standard normal numbers by Box-Muller on two Philox words, as ``tl.randn``."""
    return _draw(shape, dtype, seed, offset, True)


# ahead-of-time compile list (format: kernels/_launch.py)
KERNELS = [aot_entry(f"random_{'normal' if normal else 'uniform'}_{dt}", _random_kernel, dt,
                     {"NORMAL": normal, "BLOCK": 1024})
           for normal in (False, True) for dt in ("fp32", "bf16")]
