"""The global random stream: one Philox (seed, offset) pair shared by every device.

Each draw of n numbers takes counters [offset, offset + n) and advances the
offset, so ``tn.manual_seed(s)`` makes init, ``rand``/``randn`` and shuffling
reproducible, and the cpu and cuda devices draw the very same numbers.
"""
from __future__ import annotations

import os

import numpy as np

from .philox import philox


class _State:
    seed = int.from_bytes(os.urandom(8), "little") & ((1 << 63) - 1)
    offset = 0


def manual_seed(seed: int) -> None:
    """Seed every random draw tritonnn makes."""
    _State.seed = int(seed) & ((1 << 64) - 1)
    _State.offset = 0


def initial_seed() -> int:
    return _State.seed


def take(n: int):
    """Reserve ``n`` counters: returns ``(seed, offset)`` for one draw."""
    seed, offset = _State.seed, _State.offset
    # keep draws 4-aligned so a kernel may use all four Philox words later
    _State.offset += (int(n) + 3) // 4 * 4
    return seed, offset


def draw_seed() -> int:
    """A 64-bit seed drawn from the stream (one Philox block), e.g. for a DataLoader's orders."""
    seed, offset = take(4)
    c0, c1, _, _ = philox(seed, np.array([offset], dtype=np.uint64))
    return (int(c1[0]) << 32) | int(c0[0])
