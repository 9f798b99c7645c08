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
from ._interpret import AUTOTUNE, DIRECT_LAUNCH, INTERPRET

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
    take a lock and run one at a time, through Triton's own path, as always.
    Compiled, a kernel is launched directly (``_Direct``, below): Triton's launch path
    runs for a call it has not seen, and afterwards only the compiled kernel's launcher.
    A callable ``grid`` may read only the kernel's scalar and constexpr arguments (its
    answer is kept per call key).
    """
    _COUNTS["launches"] += 1
    if _INTERPRETER_LOCK is not None:
        with _INTERPRETER_LOCK:
            return kernel[grid](*args, **kwargs)
    # by id: a JITFunction's own hash is costly; the kernel kept beside it guards the id
    known = _DIRECT.get(id(kernel))
    if known is None or known[0] is not kernel:
        known = _DIRECT[id(kernel)] = (kernel, _direct_for(kernel))
    _, launcher = known
    return launcher(grid, args, kwargs)


_INTERPRETER_LOCK = threading.Lock() if INTERPRET else None
_COUNTS = buffers.COUNTS


# ----------------------------------------------------------------------------------------------
# direct launches (compiled kernels)
# ----------------------------------------------------------------------------------------------
# ``kernel[grid](...)`` costs tens of microseconds of host time per launch in Triton's
# ``JITFunction.run`` (options, hooks, its argument binder, cache-key strings, launch
# metadata) and as much again in the autotuner's wrapper around it (its key, a dict of every
# argument): on a GPU, a small model's step is bound by that. ``_Direct`` works each thing
# out once and keeps it:
#
# * for an autotuned kernel, the config of each tuning key (its key arguments' values and
#   the dtypes of its tensors), tuned once by Triton's autotuner (or, with autotuning off,
#   pinned: the first config the kernel's prune hook keeps), never tuned again;
# * the compiled kernel of each specialisation, found by Triton's own argument binder (the
#   specialisation ``JITFunction.run`` computes: dtypes, 16-byte alignment, ints equal to 1
#   or divisible by 16, constexprs, launch options);
# * per call key (``_Direct``'s docstring), that compiled kernel, the grid and the
#   arguments that follow the positional ones;
#
# and in steady state launches the compiled kernel itself, on the current stream, for a few
# microseconds. A specialisation seen for the first time goes through ``JITFunction.run``
# (it compiles, or loads from Triton's caches, and launches; it also checks the globals the
# kernel reads). Scalars that carry values rather than shapes (hyper-parameters as float
# bits, seeds and offsets, fill values) are ``do_not_specialize`` in their kernels, so a
# learning rate whose bits happen to be divisible by 16 compiles nothing new.
# What this relies on in Triton (3.6 to 3.9 have it): ``JITFunction.device_caches[device]``
# ending in the binder, ``JITFunction.params``, ``JITFunction.run(*args, grid=, warmup=,
# **kwargs)``, a compiled kernel's ``run``/``function``/``packed_metadata`` and launcher
# arguments, the autotuner's ``fn``/``keys``/``configs``/``best_config``, ``driver.active``
# and the launch hooks in ``knobs.runtime``. Where any of it is missing (another Triton), a
# kernel has hooks this path would skip, or ``TRITONNN_DIRECT_LAUNCH=0``, launches take
# ``kernel[grid]`` as before.

_DIRECT: dict = {}                  # id(kernel) -> (kernel, its launcher)
_DIRECT_STATS = {"direct": 0, "through_triton": 0}


def direct_stats() -> dict:
    """Launches made directly and through Triton's path (first sight of a specialisation, or
    a kernel the direct path does not take) since the process started."""
    return dict(_DIRECT_STATS)


def _triton_launch(kernel, grid, args, kwargs):
    """Triton's own launch path (``JITFunction.run``, the autotuner's wrapper); with
    autotuning off, an autotuned kernel runs its pinned config (``_pinned``) instead."""
    _DIRECT_STATS["through_triton"] += 1
    if not AUTOTUNE and hasattr(kernel, "configs") and hasattr(kernel, "fn"):
        config = _pinned(kernel, args, kwargs).all_kwargs()
        return kernel.fn.run(*args, grid=grid, warmup=False, **kwargs, **config)
    return kernel[grid](*args, **kwargs)


def _pinned(tuner, args, kwargs):
    """The config an autotuned kernel runs with autotuning off: the first its prune hook keeps
    (a kernel lists its configs in order of preference, and prunes those that don't fit)."""
    configs = tuner.configs
    prune = getattr(tuner, "early_config_prune", None)
    if prune is not None:
        configs = prune(configs, dict(zip(tuner.arg_names, args)), **kwargs) or configs
    return configs[0]


def _through_triton(kernel):
    return lambda grid, args, kwargs: _triton_launch(kernel, grid, args, kwargs)


def _direct_for(kernel):
    """The launcher of ``kernel``: a ``_Direct``, or Triton's own path where it can't be one."""
    if not DIRECT_LAUNCH:
        return _through_triton(kernel)
    try:
        return _Direct(kernel)
    except _NotDirect:
        return _through_triton(kernel)


class _NotDirect(Exception):
    """This kernel (or this Triton) does not offer what a direct launch needs."""


def _triton_runtime():
    """Triton's driver holder and its runtime knobs, whose launch hooks (chains of a
    profiler's callbacks, empty otherwise) send launches through Triton's path while set."""
    try:
        from triton import knobs
        from triton.runtime.driver import driver
        runtime = knobs.runtime
        runtime.launch_enter_hook.calls, runtime.launch_exit_hook.calls
    except (ImportError, AttributeError) as e:
        raise _NotDirect(str(e)) from None
    return driver, runtime


class _Direct:
    """Direct launches of one kernel (a ``@triton.jit`` function, maybe under ``triton.autotune``).

    Two caches. ``compiled``: Triton's specialisation (from its binder) -> the compiled
    kernel. ``calls``: a cheaper key of a call -> ``(compiled kernel, grid, the arguments
    after the positional ones)``: the exact values of the scalar and constexpr arguments,
    each tensor's dtype and 16-byte alignment, and for the scalars Triton does not
    specialise by value (floats, ``do_not_specialize``) only their width class. The
    arguments after the positional ones (constexprs, the config) and a callable grid's
    answer follow from that key, so a hit needs neither the binder nor the grid function:
    a callable grid may read only the kernel's scalar and constexpr arguments.
    """

    _MAX_CALLS = 4096       # call keys kept per kernel (scalars that change every call churn)

    def __init__(self, kernel):
        from triton.runtime.autotuner import Autotuner
        from triton.runtime.jit import JITFunction
        self.driver, self.runtime = _triton_runtime()
        tuner = kernel if isinstance(kernel, Autotuner) else None
        fn = kernel.fn if tuner is not None else kernel
        if type(fn) is not JITFunction or not hasattr(fn, "device_caches") \
                or getattr(fn, "pre_run_hooks", None):
            raise _NotDirect("not a plain JITFunction")
        if tuner is not None:
            needed = ("keys", "configs", "arg_names", "fn")
            if not all(hasattr(tuner, a) for a in needed) or getattr(tuner, "reset_to_zero", None) \
                    or getattr(tuner, "restore_value", None) \
                    or getattr(tuner, "user_defined_pre_hook", False) \
                    or any(getattr(c, "pre_hook", None) for c in tuner.configs):
                raise _NotDirect("autotuner with hooks")
        self.kernel, self.fn, self.tuner = kernel, fn, tuner
        self.params = list(fn.params)
        self.names = [p.name for p in self.params]
        self.binders = {}           # device -> Triton's argument binder of this kernel
        device = self.driver.active.get_current_device()
        self.binders[device] = self._binder(device)
        self.compiled = {}          # (device, specialisation, options) -> compiled kernel
        self.calls = {}             # call key -> (compiled kernel, grid or None, tail args)
        self.configs = {}           # tuning key -> the config's kwargs
        self.plans = {}             # number of positional args -> how to read a call's key

    # -- the call key ---------------------------------------------------------------------------
    def _plan(self, args):
        """How to read the key of a call with ``len(args)`` positional arguments (from this
        call's argument types): which positions are tensors, which scalars count by width
        only, which by value; and, for an autotuned kernel, where its tuning key lies.

        A later call with another type at a position still gets a correct key (an object's
        value, or no key: then Triton's binder decides), only a slower one."""
        n = len(args)
        tensors, loose, exact = [], [], []
        for i, (p, a) in enumerate(zip(self.params, args)):
            if not p.is_constexpr and hasattr(a, "data_ptr") and hasattr(a, "dtype"):
                tensors.append(i)
            elif not p.is_constexpr and not isinstance(a, bool) and (
                    isinstance(a, float) or (isinstance(a, int) and (
                        p.do_not_specialize or getattr(p, "annotation_type", "")))):
                loose.append(i)
            else:
                exact.append(i)
        tune = None
        if self.tuner is not None:
            pos = {name: i for i, name in enumerate(self.names)}
            tune = (tuple(pos[k] for k in self.tuner.keys if pos.get(k, n) < n),
                    tuple(k for k in self.tuner.keys if pos.get(k, n) >= n))
        plan = self.plans[n] = (_key_function(n, tensors, loose, exact), tuple(tensors), tune)
        return plan

    # -- the tuning key and its config --------------------------------------------------------
    def _config(self, grid, args, kwargs):
        """The config kwargs for this call; None when this call was launched while choosing."""
        _, tensors, (from_args, from_kwargs) = self.plans.get(len(args)) or self._plan(args)
        key = (tuple([args[i] for i in from_args]), tuple([kwargs.get(k) for k in from_kwargs]),
               tuple([args[i].dtype for i in tensors]))
        cfg = self.configs.get(key)
        if cfg is not None:
            return cfg
        _DIRECT_STATS["through_triton"] += 1
        if AUTOTUNE:
            # Triton's autotuner compiles and times every candidate once, then launches
            self.tuner.run(*args, grid=grid, warmup=False, **kwargs)
            cfg = self.tuner.best_config.all_kwargs()
        else:
            cfg = _pinned(self.tuner, args, kwargs).all_kwargs()
            self.fn.run(*args, grid=grid, warmup=False, **kwargs, **cfg)
        self.configs[key] = cfg
        return None

    # -- a launch ---------------------------------------------------------------------------
    def __call__(self, grid, args, kwargs):
        runtime = self.runtime
        enter, leave = runtime.launch_enter_hook, runtime.launch_exit_hook
        if getattr(enter, "calls", enter) or getattr(leave, "calls", leave):    # a profiler
            return _triton_launch(self.kernel, grid, args, kwargs)
        driver = self.driver.active
        device = driver.get_current_device()
        try:
            key_of, _, _ = self.plans.get(len(args)) or self._plan(args)
            key = key_of(device, args, kwargs)
            call = self.calls.get(key)
        except (AttributeError, TypeError):     # an argument of another type than planned
            key = call = None
        if call is None:
            call = self._resolve(device, grid, args, kwargs)
            if call is None:                    # launched by Triton's own path
                return None
            if key is not None:
                if len(self.calls) >= self._MAX_CALLS:
                    self.calls.clear()
                self.calls[key] = call
        compiled, fixed_grid, tail = call
        if fixed_grid is not None:
            grid = fixed_grid
        _DIRECT_STATS["direct"] += 1
        n = len(grid)
        compiled.run(grid[0], grid[1] if n > 1 else 1, grid[2] if n > 2 else 1,
                     driver.get_current_stream(device), compiled.function,
                     compiled.packed_metadata, None, None, None, *args, *tail)
        return compiled

    def _resolve(self, device, grid, args, kwargs):
        """``(compiled kernel, grid or None, tail args)`` for a call not seen before, or None
        when Triton launched it (a new config or specialisation: tuned, compiled or loaded)."""
        if self.tuner is not None:
            cfg = self._config(grid, args, kwargs)
            if cfg is None:
                return None
            kwargs = {**kwargs, **cfg}
        binder = self.binders.get(device)
        if binder is None:
            binder = self.binders[device] = self._binder(device)
        bound, spec, options = binder(*args, **kwargs)
        key = (device, tuple(spec), tuple(options.items()))
        compiled = self.compiled.get(key)
        if compiled is None:
            _DIRECT_STATS["through_triton"] += 1
            compiled = self.fn.run(*args, grid=grid, warmup=False, **kwargs)
            if all(hasattr(compiled, a) for a in ("run", "function", "packed_metadata")):
                self.compiled[key] = compiled
            return None
        tail = tuple(bound.values())[len(args):]
        return compiled, (_grid3(grid(bound)) if callable(grid) else None), tail

    def _binder(self, device):
        """Triton's binder: ``(bound args, specialisation, options) = binder(*args, **kwargs)``."""
        entry = self.fn.device_caches[device]
        binder = entry[-1] if isinstance(entry, tuple) else None
        if not callable(binder):
            raise _NotDirect(f"JITFunction.device_caches holds {type(entry).__name__}")
        return binder


def _key_function(n, tensors, loose, exact):
    """``key(device, args, kwargs)`` for calls with ``n`` positional arguments, as one flat
    tuple built without loops (written out per layout, as Triton writes its binder): the
    device, ``n``, the exact values at ``exact``, dtype and 16-byte alignment at
    ``tensors``, ``_width`` at ``loose``, then the keyword arguments."""
    names = [f"a{i}" for i in range(n)]
    parts = ["device", str(n)] + [names[i] for i in exact]
    parts += [f"{names[i]}.dtype, {names[i]}.data_ptr() % 16 == 0" for i in tensors]
    parts += [f"_width({names[i]})" for i in loose]
    unpack = f"    {', '.join(names)}, = args\n" if n else ""
    src = (f"def key(device, args, kwargs):\n{unpack}"
           f"    return ({', '.join(parts)}, *kwargs.items())\n")
    scope = {"_width": _width}
    exec(src, scope)        # noqa: S102  (source built here from integers alone)
    return scope["key"]


def _width(v):
    """What Triton's specialisation of a scalar it does not specialise by value depends on:
    its type, and for an int whether it fits 32 bits (i32), 64 (i64) or only unsigned (u64)."""
    if type(v) is not int:
        return type(v)
    return 0 if -0x80000000 <= v <= 0x7FFFFFFF else (1 if -(1 << 63) <= v < (1 << 63) else 2)


def _grid3(grid):
    return tuple(grid) + (1,) * (3 - len(grid))


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
