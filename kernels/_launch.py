"""Launch settings for the non-GEMM kernels: block sizes, warps and strided layouts.

One place decides how big a block is and how many warps run it, so every
row-wise kernel (softmax, cross-entropy, reductions, gathers) sizes itself the
same way. Under the Triton interpreter each program runs as a handful of numpy
ops over whole blocks, so blocks there are big and grids small; on a GPU blocks
are sized for occupancy and a fixed set of block sizes keeps the number of
compiled variants small. Every answer is cached per shape.

Strided operands are described by a *layout*: the shape collapsed to at most
``MAX_DIMS`` dims (size-1 dims dropped, neighbouring dims merged where every
operand's strides allow), padded on the left to exactly ``MAX_DIMS``. The
kernels turn a linear index into an element offset per operand from it
(``elementwise._strided_offset``).
"""
from __future__ import annotations

import functools

from ..device import interpreting

INTERPRET = interpreting()
MAX_DIMS = 4

# the most elements one program touches at once (a [BLOCK_M, BLOCK_N] tile or a 1-D block)
_TILE_GPU = 4096
_TILE_INTERPRET = 1 << 16
_ELEMENTWISE_GPU = 1024


def warps(elems: int) -> int:
    """Warps for a program that holds ``elems`` elements per live block: about 8 per thread.

    Eight fp32 values plus their int64 offsets per operand keep every row kernel
    within the register file without spilling (checked by tests/test_aot_compile.py).
    """
    return max(1, min(16, int(elems) // 256))


def with_warps(entries):
    """Give each ahead-of-time compile entry the warps its launcher uses for its block sizes."""
    for e in entries:
        elems = 1
        for k in ("BLOCK", "BLOCK_M", "BLOCK_N", "BLOCK_K", "BLOCK_B", "BLOCK_R"):
            elems *= int(e["constexprs"].get(k, 1))
        e.setdefault("num_warps", warps(elems))
    return entries


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


@functools.lru_cache(maxsize=1024)
def elementwise(n: int):
    """``(BLOCK, num_warps)`` for a 1-D kernel over ``n`` elements."""
    if INTERPRET:
        return max(16, min(next_pow2(n), _TILE_INTERPRET)), 1
    return _ELEMENTWISE_GPU, warps(_ELEMENTWISE_GPU)


@functools.lru_cache(maxsize=1024)
def rows(n_rows: int, n_cols: int, max_cols: int = 0, max_elems: int = 0):
    """``(BLOCK_M, BLOCK_N, num_warps)`` for a kernel over rows of ``n_cols`` elements.

    A row longer than ``BLOCK_N`` is walked in ``BLOCK_N`` steps; short rows are
    packed ``BLOCK_M`` to a program so a program always has a full tile of work.
    ``max_cols`` caps ``BLOCK_N`` (0: the tile size); ``max_elems`` caps the tile on a GPU
    (for kernels that hold several tiles live at once).
    """
    tile = _TILE_INTERPRET if INTERPRET else (min(_TILE_GPU, max_elems) if max_elems else _TILE_GPU)
    cap = min(tile, max_cols) if max_cols else tile
    block_n = max(16, min(next_pow2(n_cols), cap))
    block_m = max(1, min(next_pow2(n_rows), tile // block_n))
    if INTERPRET:
        return block_m, block_n, 1
    return block_m, block_n, warps(block_m * block_n)


@functools.lru_cache(maxsize=256)
def reduce_split(n_rows: int, n_cols: int):
    """How many column chunks a reduction of few, long rows is split into (1: no split).

    The partial results of the chunks are reduced by a second launch, in a fixed
    order, so the answer does not depend on scheduling (no atomics).
    """
    _, block_n, _ = rows(n_rows, n_cols)
    per_chunk = block_n * (2 if INTERPRET else 8)
    if n_rows >= 128 or n_cols <= per_chunk:
        return 1, n_cols
    chunks = min(cdiv(n_cols, per_chunk), 1024)
    chunk = cdiv(cdiv(n_cols, chunks), block_n) * block_n
    return cdiv(n_cols, chunk), chunk


@functools.lru_cache(maxsize=4096)
def layout(shape: tuple, strides: tuple):
    """Collapse ``shape`` for operands with ``strides`` (a tuple of stride tuples).

    Returns ``(ndim, sizes, strides)``: ``ndim`` the number of dims left (1 to
    ``MAX_DIMS``), ``sizes`` the ``MAX_DIMS`` sizes (leading ones padded with 1)
    and per operand its ``MAX_DIMS`` strides; or None when more than
    ``MAX_DIMS`` dims remain (the caller then splits the leading dim).
    """
    dims = [(s, tuple(st[i] for st in strides)) for i, s in enumerate(shape) if s != 1]
    merged = []
    for size, st in dims:
        if merged:
            psize, pst = merged[-1]
            if all(p == s * size for p, s in zip(pst, st)):
                merged[-1] = (psize * size, st)
                continue
        merged.append((size, st))
    if not merged:
        merged = [(1, tuple(0 for _ in strides))]
    if len(merged) > MAX_DIMS:
        return None
    pad = MAX_DIMS - len(merged)
    sizes = (1,) * pad + tuple(s for s, _ in merged)
    per_op = tuple((0,) * pad + tuple(st[k] for _, st in merged) for k in range(len(strides)))
    return len(merged), sizes, per_op
