"""The host-side floor of the kernels: launch settings, strided layouts, one strided launcher.

Every op family builds on this module (and on ``_jitlib``, its device-side
twin); it imports no op family.

Block sizes and warps. One place decides how big a block is and how many
warps run it, so every row-wise kernel (softmax, cross-entropy, reductions,
gathers) sizes itself the same way. Under the Triton interpreter each program
runs as a handful of numpy ops over whole blocks, so blocks there are big and
grids small; on a GPU blocks are sized for occupancy and a fixed set of block
sizes keeps the number of compiled variants small. Every answer is cached per
shape.

Strided layouts. Operands of one shape are described by a *layout*: the shape
collapsed to at most ``MAX_DIMS`` dims (size-1 dims dropped, neighbouring dims
merged where every operand's strides allow), padded on the left to exactly
``MAX_DIMS``. Kernels turn a linear index into an element offset per operand
from it (``_jitlib.strided_offset``); a shape that keeps more dims is split
along its leading dim into several launches (``strided_pieces``).

Ahead-of-time compile entries
-----------------------------
Every kernel module lists example specializations of its kernels in
``KERNELS`` (``kernels.KERNELS`` is their concatenation), for
``tests/test_aot_compile.py`` to build each with ``triton.compile(ASTSource(fn,
signature, constexprs), target=GPUTarget("cuda", 80 or 90, 32))`` on a machine
without a GPU. ``aot_entry`` makes each entry, a dict:

``name``        a unique label, e.g. ``"ce_fwd_bf16_smooth1"``
``fn``          the ``@triton.jit`` function (``kernel.fn`` under ``triton.autotune``)
``signature``   ``{arg name: type}`` for EVERY parameter, in order: pointers
                ``"*fp32"``, ``"*bf16"``, ``"*i64"``, ``"*i1"`` (bool buffers)...,
                scalars ``"i64"`` (``"i32"``, ``"fp32"``...), and ``"constexpr"``
                for meta-parameters
``constexprs``  ``{name: value}`` for every ``"constexpr"`` in ``signature``
                (strings, ints, bools, floats such as ``float("-inf")``, and
                ``tl.float32``-style dtypes)
``num_warps``, ``num_stages``   launch options (defaults: the warps ``warps``
                gives the entry's block sizes, and 3 stages)
``divisible_by_16`` optional parameter names the compiler may assume are multiples of 16
``ptx_contains`` optional ``{arch: [substring, ...]}`` the PTX must contain
"""
from __future__ import annotations

import functools
import inspect
import struct
import threading

from . import buffers
from ._interpret import INTERPRET

MAX_DIMS = 4

# the most elements one program touches at once (a [BLOCK_M, BLOCK_N] tile or a 1-D block)
_TILE_GPU = 4096
_TILE_INTERPRET = 1 << 16
_ELEMENTWISE_GPU = 1024

# ----------------------------------------------------------------------------------------------
# shapes and scalars
# ----------------------------------------------------------------------------------------------


def numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def broadcast_shape(*shapes):
    """numpy's broadcast of shapes (already validated by ops.py)."""
    nd = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(nd):
        size = 1
        for s in shapes:
            j = i - (nd - len(s))
            if j >= 0 and s[j] != 1:
                size = s[j]
        out.append(size)
    return tuple(out)


def float_bits(value) -> int:
    """The float64 bits of ``value`` as a signed int64 (a kernel argument that loses nothing)."""
    return struct.unpack("<q", struct.pack("<d", float(value)))[0]


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


# ----------------------------------------------------------------------------------------------
# block sizes and warps
# ----------------------------------------------------------------------------------------------


def warps(elems: int) -> int:
    """Warps for a program that holds ``elems`` elements per live block: about 8 per thread.

    Eight fp32 values plus their int64 offsets per operand keep every row kernel
    within the register file without spilling (checked by tests/test_aot_compile.py).
    """
    return max(1, min(16, int(elems) // 256))


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


# ----------------------------------------------------------------------------------------------
# strided layouts and the strided launcher
# ----------------------------------------------------------------------------------------------


def merge_dims(shape, strides):
    """``[(size, strides), ...]``: the dims of ``shape`` that are not 1, neighbours merged.

    ``strides`` holds one stride sequence per operand; two neighbouring dims
    merge when, for every operand, the outer one steps over exactly the inner
    one (``outer stride == inner stride * inner size``), so walking the merged
    dim visits the same elements in the same order.
    """
    merged = []
    for i, size in enumerate(shape):
        if size == 1:
            continue
        st = tuple(s[i] for s in strides)
        if merged:
            outer_size, outer_st = merged[-1]
            if all(o == s * size for o, s in zip(outer_st, st)):
                merged[-1] = (outer_size * size, st)
                continue
        merged.append((size, st))
    return merged


@functools.lru_cache(maxsize=4096)
def layout(shape: tuple, strides: tuple):
    """Collapse ``shape`` for operands with ``strides`` (a tuple of stride tuples).

    Returns ``(ndim, sizes, strides)``: ``ndim`` the number of dims left (1 to
    ``MAX_DIMS``), ``sizes`` the ``MAX_DIMS`` sizes (leading ones padded with 1)
    and per operand its ``MAX_DIMS`` strides; or None when more than
    ``MAX_DIMS`` dims remain.
    """
    merged = merge_dims(shape, strides) or [(1, tuple(0 for _ in strides))]
    if len(merged) > MAX_DIMS:
        return None
    pad = MAX_DIMS - len(merged)
    sizes = (1,) * pad + tuple(s for s, _ in merged)
    per_op = tuple((0,) * pad + tuple(st[k] for _, st in merged) for k in range(len(strides)))
    return len(merged), sizes, per_op


def strided_pieces(bufs):
    """Yield ``(views, ndim, sizes, strides)`` for each launch over the same-shape ``bufs``.

    One piece, ``bufs`` themselves with their ``layout``, when the shape
    collapses to ``MAX_DIMS`` dims; otherwise the pieces of the views at each
    index of the leading dim, in order. A view at index 0 starts where its
    buffer starts, so a kernel may still step from it along a dim not in the
    layout (the gather kernels' index positions).
    """
    shape = buffers.shape(bufs[0])
    geo = layout(shape, tuple(tuple(buffers.strides(b)) for b in bufs))
    if geo is None:
        for i in range(shape[0]):
            yield from strided_pieces([buffers.view_index(b, (i,)) for b in bufs])
        return
    yield (bufs, *geo)


INT32_MAX = (1 << 31) - 1


def index32(ndim: int, sizes: tuple, strides: tuple, block: int) -> bool:
    """Whether a strided launch over ``layout``'s ``(ndim, sizes, strides)`` may index in int32.

    The kernels compute linear indices up to the last lane of the last program
    (``cdiv(n, block) * block - 1``: masked lanes compute too, and an int32 that wraps
    there would be undefined) and, per operand, ``strided_offset``'s offset of each:
    the inner real dims' indices stay below their sizes, the outermost one's runs to
    ``last // (product of the inner sizes)``. With every stride's magnitude counted
    (torch strides are never negative, but nothing here relies on it), each partial
    sum is at most the total, so one bound per operand covers every intermediate.
    """
    n = numel(sizes)
    if n == 0:
        return True                              # (nothing is launched)
    last = cdiv(n, block) * block - 1
    if last > INT32_MAX or n > INT32_MAX:        # (n itself is compared with the indices)
        return False
    real = sizes[MAX_DIMS - ndim:]
    outer_max = last // numel(real[1:])
    for st in strides:
        st = st[MAX_DIMS - ndim:]
        bound = outer_max * abs(st[0]) + sum((s - 1) * abs(t) for s, t in zip(real[1:], st[1:]))
        if bound > INT32_MAX:
            return False
    return True


_TAKES_INDEX32 = {}      # id(kernel) -> whether it has the INDEX32 meta-parameter


def _takes_index32(kernel) -> bool:
    """Whether ``kernel`` has the ``INDEX32`` meta-parameter (``_jitlib.linear_index``)."""
    got = _TAKES_INDEX32.get(id(kernel))
    if got is None:
        got = _TAKES_INDEX32[id(kernel)] = "INDEX32" in kernel.arg_names
    return got


def launch(kernel, grid, *args, **kwargs):
    """Run ``kernel`` over ``grid`` with ``args``: every kernel launch of the package comes here.

    Triton's interpreter patches ``triton.language`` while it runs a kernel, so two
    threads interpreting at once break each other: under the interpreter launches
    take a lock and run one at a time (a GPU launches from any thread).
    """
    _COUNTS["launches"] += 1
    if _INTERPRETER_LOCK is None:
        return kernel[grid](*args, **kwargs)
    with _INTERPRETER_LOCK:
        return kernel[grid](*args, **kwargs)


_INTERPRETER_LOCK = threading.Lock() if INTERPRET else None
_COUNTS = buffers.COUNTS


@functools.lru_cache(maxsize=4096)
def _strided_plan(shape: tuple, strides: tuple):
    """Everything a one-piece strided launch over ``shape`` needs, or None (more pieces).

    ``(n, grid, sizes_and_strides, ndim, block, warps, index32)``: the arguments after
    the buffers' scalars are ``(n, size1, size2, size3, *strides)``; one cached look-up
    per launch instead of the layout, the block and the index width one by one.
    """
    geo = layout(shape, strides)
    if geo is None:
        return None
    ndim, sizes, per_op = geo
    n = numel(sizes)
    block, nwarps = elementwise(n)
    args = (n, sizes[1], sizes[2], sizes[3], *(s for st in per_op for s in st))
    return n, (cdiv(n, block),), args, ndim, block, nwarps, index32(ndim, sizes, per_op, block)


def launch_strided(kernel, bufs, scalars=(), num_warps=None, **meta):
    """Launch ``kernel`` once per ``BLOCK`` elements of the same-shape buffers ``bufs``.

    ``kernel`` takes ``(*bufs, *scalars, n, size1, size2, size3, *strides, NDIM, BLOCK)``
    with four strides per buffer (``stride_<operand>0`` .. ``3``); ``meta`` are its
    other constexprs; ``num_warps`` overrides the elementwise choice. A kernel with an
    ``INDEX32`` meta-parameter (``_jitlib.linear_index``) gets ``index32``'s answer for
    each piece: int32 indexing whenever the piece's offsets fit, int64 beyond.
    """
    shape = buffers.shape(bufs[0])
    plan = _strided_plan(shape, tuple(tuple(buffers.strides(b)) for b in bufs))
    if plan is None:
        # more than MAX_DIMS dims after collapsing: one launch per piece along the leading dim
        if numel(shape):
            for views, _, _, _ in strided_pieces(bufs):
                launch_strided(kernel, views, scalars, num_warps, **meta)
        return
    n, grid, args, ndim, block, nwarps, narrow = plan
    if n == 0:
        return
    if _takes_index32(kernel):
        meta["INDEX32"] = narrow
    launch(kernel, grid, *bufs, *scalars, *args, NDIM=ndim, BLOCK=block,
           num_warps=num_warps or nwarps, **meta)


# ----------------------------------------------------------------------------------------------
# ahead-of-time compile entries (format: this module's docstring)
# ----------------------------------------------------------------------------------------------

_BLOCK_NAMES = ("BLOCK", "BLOCK_M", "BLOCK_N", "BLOCK_K", "BLOCK_B", "BLOCK_R")


def meta_parameters(fn):
    """The names of jit function ``fn``'s parameters annotated ``tl.constexpr``, in order."""
    params = inspect.signature(fn.fn).parameters     # the Python function, compiled or interpreted
    return [n for n, p in params.items()
            if str(getattr(p.annotation, "__name__", p.annotation)).endswith("constexpr")]


def aot_entry(name, fn, pointers, constexprs, *, scalars=None, scalar_type="i64", **options):
    """One ahead-of-time compile entry for the jit function ``fn``.

    Only what its parameter names do not say is given: ``pointers``, the dtype
    of every ``*_ptr`` parameter (``{name: "bf16", ...}``, or one dtype for
    all); ``constexprs``, the meta-parameter values; ``scalars``, any scalar
    whose type is not ``scalar_type``. The signature follows ``fn.arg_names``.
    ``options`` (``num_warps``, ``num_stages``, ``divisible_by_16``,
    ``ptx_contains``) are copied; ``num_warps`` defaults to what ``warps``
    gives the product of the entry's block sizes, as the launchers choose.
    """
    scalars = scalars or {}
    args = fn.arg_names
    named = set(constexprs) | set(scalars) | set(() if isinstance(pointers, str) else pointers)
    unknown = named - set(args)
    if unknown:
        raise ValueError(f"AOT entry {name}: {fn.__name__} has no parameters {sorted(unknown)}")
    # every tl.constexpr parameter needs a value; an ordinary int given one is specialised on it
    unset = [a for a in meta_parameters(fn) if a not in constexprs]
    if unset:
        raise ValueError(f"AOT entry {name}: no value for {fn.__name__}'s meta-parameters {unset}")
    signature = {}
    for arg in args:
        if arg in constexprs:
            signature[arg] = "constexpr"
        elif arg.endswith("_ptr"):
            dtype = pointers if isinstance(pointers, str) else pointers.get(arg)
            if dtype is None:
                raise ValueError(f"AOT entry {name}: no dtype for {fn.__name__}'s {arg}")
            signature[arg] = f"*{dtype}"
        else:
            signature[arg] = scalars.get(arg, scalar_type)
    if "num_warps" not in options:
        options["num_warps"] = warps(numel(int(constexprs.get(k, 1)) for k in _BLOCK_NAMES))
    return {"name": name, "fn": fn, "signature": signature, "constexprs": dict(constexprs),
            **options}
