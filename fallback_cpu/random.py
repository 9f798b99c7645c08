"""Counter-based random numbers: Philox-4x32-10, bit-identical to Triton's ``tl.rand``/``tl.randn``.

Twins of ``kernels/random.py``. A draw of ``n`` numbers from ``(seed, offset)`` uses
counters ``offset .. offset+n-1``, so the cpu and cuda devices produce the same values from
the same seed:

* ``rand``, ``randn``: one counter per number (its first word; Box-Muller on two for randn).
* ``dropout``: all four words of a counter, one per element (a quarter of the Philox work),
  compared with ``p`` as ``rand`` would compare its number.
* ``randint``: a 64-bit word per number, reduced modulo the range in integers.
* ``randperm``: the indices sorted by distinct random keys (random high bits, the index in
  the low bits), so any correct sort gives the same permutation.
* ``multinomial``: with replacement an exact fixed-point cumulative table searched with a
  64-bit word per sample; without, PyTorch's exponential race (the smallest ``-log(1-U)/w``).
"""
from __future__ import annotations

import numpy as np

from ..philox import philox, uniform_threshold
from ._arrays import up

_M32 = np.uint64(0xFFFFFFFF)
_M64 = (1 << 64) - 1
_KEY_A, _KEY_B = 0x9E3779B9, 0xBB67AE85
_ROUND_A, _ROUND_B = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_CHUNK = 1 << 15            # counters per pass of _philox4: its arrays stay in the L2 cache
_U32 = np.uint64(32)


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


# ----------------------------------------------------------------------------------------------
# four words per counter, fast: the draws of dropout, randint, randperm and multinomial
# ----------------------------------------------------------------------------------------------


def _philox4(seed: int, offset: int, count: int) -> np.ndarray:
    """The four Philox words of counters ``offset .. offset+count-1``: a (count, 4) uint32 array.

    The numbers of ``tritonnn.philox.philox`` (the tests hold them equal), computed a
    cache-sized chunk at a time with in-place uint64 array math, 3-4x faster: each round's
    two 32x32-bit products are exact in uint64, their high and low halves a shift and a mask.
    """
    out = np.empty((count, 4), np.uint32)
    k0 = [np.uint64((seed + r * _KEY_A) & 0xFFFFFFFF) for r in range(10)]
    k1 = [np.uint64(((seed >> 32) + r * _KEY_B) & 0xFFFFFFFF) for r in range(10)]
    for start in range(0, count, _CHUNK):
        m = min(_CHUNK, count - start)
        ctr = np.arange(m, dtype=np.uint64) + np.uint64(offset + start)
        c0, c1 = ctr & _M32, ctr >> _U32
        c2, c3 = np.zeros(m, np.uint64), np.zeros(m, np.uint64)
        pa, pb = np.empty(m, np.uint64), np.empty(m, np.uint64)
        for r in range(10):
            np.multiply(c0, _ROUND_A, out=pa)
            np.multiply(c2, _ROUND_B, out=pb)
            # c0' = hi(B * c2) ^ c1 ^ k0, c2' = hi(A * c0) ^ c3 ^ k1, c1' = lo(B * c2),
            # c3' = lo(A * c0): the old c2 and c0 arrays take c0' and c2', then swap names
            np.right_shift(pb, _U32, out=c2)
            np.bitwise_xor(c2, c1, out=c2)
            np.bitwise_xor(c2, k0[r], out=c2)
            np.right_shift(pa, _U32, out=c0)
            np.bitwise_xor(c0, c3, out=c0)
            np.bitwise_xor(c0, k1[r], out=c0)
            np.bitwise_and(pb, _M32, out=c1)
            np.bitwise_and(pa, _M32, out=c3)
            c0, c2 = c2, c0
        block = out[start:start + m]
        block[:, 0], block[:, 1], block[:, 2], block[:, 3] = c0, c1, c2, c3
    return out


def _words64(seed: int, offset: int, n: int) -> np.ndarray:
    """``c1 * 2**32 + c0`` of counters ``offset .. offset+n-1``, as uint64."""
    w = _philox4(seed, offset, n)
    return (w[:, 1].astype(np.uint64) << _U32) | w[:, 0]


def _mulhi64(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``floor(a * b / 2**64)`` of uint64 arrays, exactly: the high half of the 128-bit
    product from four 32x32-bit partial products, each exact in uint64."""
    ah, al = a >> _U32, a & _M32
    bh, bl = b >> _U32, b & _M32
    lh, hl = al * bh, ah * bl
    mid = ((al * bl) >> _U32) + (lh & _M32) + (hl & _M32)
    return ah * bh + (lh >> _U32) + (hl >> _U32) + (mid >> _U32)


def dropout(x, p, seed, offset):
    """``x * m``: ``m = 1 / (1 - p)`` where the element's uniform number is ``>= p``, else 0.

    ``uniform(w) >= p`` is the integer test ``threshold <= w <= 2**32 - 1 - threshold`` on the
    word (``philox.uniform_threshold``; a word past 2**31 folds to ``~w``), and the tensor
    goes a cache-sized chunk at a time: words, mask and product never leave the cache.
    """
    acc = np.float64 if x.dtype == np.float64 else np.float32
    scale = acc(0.0 if p >= 1.0 else 1.0 / (1.0 - p))
    lo = uniform_threshold(p)
    lo, hi = np.uint32(min(lo, 0xFFFFFFFF)), np.uint32(0xFFFFFFFF - lo)
    flat = up(x).astype(acc, copy=False).reshape(-1)        # row-major (a copy if strided)
    out = np.empty(flat.size, acc)
    step = 4 * _CHUNK
    for start in range(0, flat.size, step):
        m = min(step, flat.size - start)
        words = _philox4(seed, offset + start // 4, (m + 3) // 4).reshape(-1)[:m]
        factor = ((words >= lo) & (words <= hi)) * scale       # x * 0 keeps NaN as NaN
        np.multiply(flat[start:start + m], factor, out=out[start:start + m])
    return out.reshape(x.shape).astype(x.dtype, copy=False)


def randint(shape, low, high, seed, offset):
    """int64 numbers uniform in ``[low, high)``: ``low + r mod (high - low)`` in uint64."""
    n = int(np.prod(shape, dtype=np.int64))
    r = _words64(seed, offset, n)
    v = np.uint64(low & _M64) + r % np.uint64((high - low) & _M64)      # wraps mod 2**64
    return v.view(np.int64).reshape(shape)


def randperm(n, seed, offset):
    """A permutation of ``0 .. n-1``: the indices sorted by distinct random keys."""
    b = int(n).bit_length()
    keys = ((_words64(seed, offset, n) >> np.uint64(b + 1)) << np.uint64(b)) | \
        np.arange(n, dtype=np.uint64)
    return (np.sort(keys) & np.uint64((1 << b) - 1)).astype(np.int64)


def multinomial(probs, num_samples, replacement, seed, offset):
    """``num_samples`` category indices per row of the (R, C) weights: (R, num_samples) int64."""
    rows, c = probs.shape
    w = up(probs).astype(np.float64)
    if replacement:
        # exact fixed-point weights and their running sums (integers add in any order alike)
        shift = 62 - c.bit_length()
        q = (w / w.max(axis=1, keepdims=True) * float(2 ** shift)).astype(np.int64)
        cdf = np.cumsum(q, axis=1)
        u = _words64(seed, offset, rows * num_samples).reshape(rows, num_samples)
        target = _mulhi64(u, cdf[:, -1:].astype(np.uint64)).astype(np.int64)
        out = np.empty((rows, num_samples), np.int64)
        for r in range(rows):
            out[r] = np.searchsorted(cdf[r], target[r], side="right")
        return out
    # the exponential race: the smallest keys -log(1 - U) / w, ties by index
    u = _uniform(np.ascontiguousarray(_philox4(seed, offset, rows * c)[:, 0]))
    e = -np.log(1.0 - u.astype(np.float64)).reshape(rows, c)
    with np.errstate(divide="ignore"):
        key = np.where(w > 0, e / np.where(w > 0, w, 1.0), np.inf)
    return np.argsort(key, axis=1, kind="stable")[:, :num_samples].astype(np.int64)
