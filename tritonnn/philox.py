"""Philox-4x32-10, the counter-based generator behind every random draw, as numpy array math.

Bit-identical to Triton's ``tl.rand``/``tl.randn`` core, so the numpy backend
(``fallback_cpu.random``) and the global seed stream (``tritonnn.random``) draw
the same words the kernels do.
"""
from __future__ import annotations

import numpy as np

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


# ----------------------------------------------------------------------------------------------
# a probability as a threshold on the words (issue 11: dropout)
# ----------------------------------------------------------------------------------------------

_TO_UNIFORM = np.float32(4.6566127342e-10)


def uniform_threshold(p: float) -> int:
    """The smallest ``k`` in ``[0, 2**31]`` whose uniform float ``float32(k) * 4.6566127342e-10``
    (``tl.rand``'s conversion of a word folded to 31 bits, ``k = w`` or ``~w``) is ``>= p`` in
    float32; ``2**31`` when none is.

    The conversion is monotonic in ``k``, so ``uniform(w) >= p`` is exactly ``k >= threshold``:
    an integer compare on every device, no float conversion per number (dropout's mask).
    """
    target = np.float32(p)
    lo, hi = 0, 1 << 31
    while lo < hi:                      # the first k whose float reaches the target
        mid = (lo + hi) // 2
        if np.float32(mid) * _TO_UNIFORM >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo
