"""Counter-based random numbers: Philox-4x32-10, bit-identical to Triton's ``tl.rand``/``tl.randn``.

A draw of ``n`` numbers from ``(seed, offset)`` uses counters ``offset .. offset+n-1``,
so the cpu and cuda devices produce the same values from the same seed.
"""
from __future__ import annotations

import numpy as np

from ..philox import philox


def _uniform(bits: np.ndarray) -> np.ndarray:
    """uint32 -> float32 in [0, 1), as Triton's uint_to_uniform_float."""
    x = bits.view(np.int32)
    x = np.where(x < 0, ~x, x)
    return x.astype(np.float32) * np.float32(4.6566127342e-10)


def _counters(n: int, offset: int) -> np.ndarray:
    return np.arange(n, dtype=np.uint64) + np.uint64(offset)


def rand(shape, dtype, seed, offset):
    """Uniform [0, 1) numbers of ``shape``, computed in float32, returned in ``dtype``."""
    n = int(np.prod(shape, dtype=np.int64))
    c0, _, _, _ = philox(seed, _counters(n, offset))
    return _uniform(c0).reshape(shape).astype(dtype.np, copy=False)


def randn(shape, dtype, seed, offset):
    """Standard normal numbers by Box-Muller on two Philox words, as ``tl.randn``."""
    n = int(np.prod(shape, dtype=np.int64))
    c0, c1, _, _ = philox(seed, _counters(n, offset))
    u1 = np.maximum(np.float32(1.0e-7), _uniform(c0))
    u2 = _uniform(c1)
    r = np.sqrt(np.float32(-2.0) * np.log(u1))
    out = r * np.cos(np.float32(6.283185307179586) * u2)
    return out.reshape(shape).astype(dtype.np, copy=False)
