"""Counter-based random numbers: Philox-4x32-10, bit-identical to Triton's ``tl.rand``/``tl.randn``.

A draw of ``n`` numbers from ``(seed, offset)`` uses counters ``offset .. offset+n-1``,
so the cpu and cuda devices produce the same values from the same seed.
"""
from __future__ import annotations

import numpy as np

HELPERS = ("philox",)
"""Beyond the contract: ``tritonnn.random`` draws the host-side seed stream with ``philox``."""

_M = np.uint64(0xFFFFFFFF)
_KEY_A, _KEY_B = np.uint32(0x9E3779B9), np.uint32(0xBB67AE85)
_ROUND_A, _ROUND_B = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)


def philox(seed: int, counter: np.ndarray):
    """Four uint32 words of Philox-4x32-10 for each uint64 counter (c2 = c3 = 0)."""
    c0 = (counter & _M).astype(np.uint32)
    c1 = (counter >> np.uint64(32)).astype(np.uint32)
    c2 = np.zeros_like(c0)
    c3 = np.zeros_like(c0)
    k0 = np.uint32(seed & 0xFFFFFFFF)
    k1 = np.uint32((seed >> 32) & 0xFFFFFFFF)
    with np.errstate(over="ignore"):
        for _ in range(10):
            prod_b = _ROUND_B * c2.astype(np.uint64)   # full 64-bit products
            prod_a = _ROUND_A * c0.astype(np.uint64)
            c0, c1, c2, c3 = (
                (prod_b >> np.uint64(32)).astype(np.uint32) ^ c1 ^ k0,
                (prod_b & _M).astype(np.uint32),
                (prod_a >> np.uint64(32)).astype(np.uint32) ^ c3 ^ k1,
                (prod_a & _M).astype(np.uint32),
            )
            k0 = k0 + _KEY_A
            k1 = k1 + _KEY_B
    return c0, c1, c2, c3


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
