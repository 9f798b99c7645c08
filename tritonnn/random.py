"""The global random stream: one Philox (seed, offset) pair shared by every device.

Each draw of n numbers takes counters [offset, offset + n) and advances the
offset, so ``tn.manual_seed(s)`` makes init, ``rand``/``randn`` and shuffling
reproducible, and the cpu and cuda devices draw the very same numbers.
"""
from __future__ import annotations

import numbers
import os
from collections.abc import Mapping

import numpy as np

from .errors import DTypeError, TritonnnError
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


# ----------------------------------------------------------------------------------------------
# the stream's state: save it in a checkpoint, set it back to resume
# ----------------------------------------------------------------------------------------------

def get_rng_state() -> dict:
    """The global stream's state as ``{"seed": int, "offset": int}`` (the Philox key and the
    next counter): plain values that ``tn.save`` stores and ``set_rng_state`` takes back.
    (torch returns a uint8 tensor; this is the same information, readable.)"""
    return {"seed": _State.seed, "offset": _State.offset}


def set_rng_state(state) -> None:
    """Continue the global stream from ``state`` (what ``get_rng_state`` returned): every
    later draw (init, ``rand``, shuffling, dropout) is the one that followed it."""
    op = "set_rng_state"
    if not isinstance(state, Mapping):
        raise DTypeError(f"{op}: expected the dict get_rng_state() returns ({{'seed': ..., "
                         f"'offset': ...}}), got {type(state).__name__}")
    if set(state) != {"seed", "offset"}:
        raise TritonnnError(f"{op}: expected exactly the keys 'seed' and 'offset', got "
                            f"{sorted(map(repr, state))}")
    values = {}
    for key in ("seed", "offset"):
        v = state[key]
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise DTypeError(f"{op}: {key} must be an int, got {type(v).__name__} {v!r}")
        if not 0 <= int(v) < 1 << 64:
            raise TritonnnError(f"{op}: {key} must be in [0, 2**64), got {int(v)}")
        values[key] = int(v)
    _State.seed, _State.offset = values["seed"], values["offset"]
