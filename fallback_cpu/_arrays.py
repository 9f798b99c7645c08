"""The floor of the numpy backend: helpers over arrays that several op families share.

``LOW`` (the low-precision dtypes, computed in float32) and ``up``, reusable
``scratch`` arrays for a function's intermediates, ``masked_grad``, the
fast ``where(mask, g, 0)``, and ``check_range``, the host half of a
``contract.RangeCheck``. It imports no op family.
"""
from __future__ import annotations

import threading

import ml_dtypes
import numpy as np

LOW = frozenset((np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)))
"""float16 and bfloat16: computed in float32 and rounded once, as the Triton kernels do."""


def up(x):
    """float32 view of the math for a low-precision array (``x`` itself otherwise, scalars too)."""
    return x.astype(np.float32) if isinstance(x, np.ndarray) and x.dtype in LOW else x


class _PerThread(threading.local):
    cache: dict = None


_scratch = _PerThread()


def scratch(like, slot=0, dtype=None):
    """A reusable work array shaped like ``like`` (of ``dtype``, default ``like``'s).

    A numpy function may use scratch arrays for its intermediates as long as
    none escapes the call (``slot`` tells apart several live at once); reusing
    them saves the allocation and first-touch page faults of fresh arrays on
    every step. Each thread has its own, so two threads never share one.
    """
    cache = _scratch.cache
    if cache is None:
        cache = _scratch.cache = {}
    dt = like.dtype if dtype is None else np.dtype(dtype)
    key = (like.shape, dt, slot)
    buf = cache.get(key)
    if buf is None:
        if len(cache) > 64:
            cache.clear()
        buf = cache[key] = np.empty(like.shape, dt)
    return buf


def masked_grad(g, mask, out=None):
    """``where(mask, g, 0)`` (into ``out`` if given), as a multiply by the boolean mask.

    numpy's ``where`` branches per element and runs ~10x slower than a multiply on
    a half-true mask; the multiply differs only where ``g`` is inf or NaN at a
    masked-out position (inf * 0 = NaN where PyTorch gives 0), so a non-finite
    result takes the exact ``where`` path.
    """
    r = np.multiply(g, mask, out=out) if out is not None else g * mask
    if not np.isfinite(r.sum(dtype=np.float32 if r.dtype in LOW else None)):
        np.copyto(r, np.where(mask, g, np.zeros((), g.dtype)))
    return r


def check_range(values, check):
    """Raise ``check``'s error (a ``contract.RangeCheck``, or None: nothing to check) for the
    integer array ``values`` when one of them is outside ``[check.low, check.high)`` and not
    ``check.ignore``: numpy reads its values for free, so it raises before computing."""
    if check is None or values.size == 0:
        return
    lo, hi = int(values.min()), int(values.max())
    if lo >= check.low and hi < check.high:
        return
    bad = (values < check.low) | (values >= check.high)
    if check.ignore is not None:
        bad &= values != check.ignore
    if not bad.any():
        return
    below = values[bad & (values < check.low)]
    above = values[bad & (values >= check.high)]
    raise check.exception(int(below.min()) if below.size else None,
                          int(above.max()) if above.size else None)
