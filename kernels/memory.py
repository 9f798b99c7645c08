"""Buffers on the device: creation, conversion, views, copies, gathers and joins (Triton).

Twins of ``fallback_cpu/memory.py``. Views (reshape, permute, expand, basic
indexing) are torch metadata through ``buffers``; every byte that moves on the
device moves in a kernel here:

* ``_fill_kernel``, ``_arange_kernel``: creation.
* ``_copy_kernel``: ``dst[...] = src`` between any strides with dtype
  conversion (``cast``, ``contiguous``, ``copy_``, ``cat``, ``stack``, basic
  ``setitem``, ``reshape`` of a non-viewable layout).
* Advanced indexing (int64 or bool index buffers, numpy's rules for where the
  indexed dims land): ``_index_offsets_kernel`` turns the index buffers into
  one int64 element offset per index position (-1 where out of range, which
  every later access masks off), then ``_gather_kernel`` reads, and
  ``_scatter_kernel`` writes or adds. ``index_add`` with repeated positions
  sums each position's contributions in a fixed order (``_segment_add_kernel``
  over a stable sort of the offsets): deterministic, no atomics.
"""
from __future__ import annotations

import math

import numpy as np
import triton
import triton.language as tl

from .. import dtypes as D
from . import _launch, buffers
from .elementwise import _sig as _strided_sig  # the AOT signature of a strided kernel
from .elementwise import (_cast, _f64_from_bits, _strided_offset, _up, float_bits,
                          launch_strided, numel)

# ----------------------------------------------------------------------------------------------
# kernels
# ----------------------------------------------------------------------------------------------


@triton.jit
def _fill_kernel(out_ptr, value, n, FLOAT: tl.constexpr, BLOCK: tl.constexpr):
    """out[:n] = value (contiguous); FLOAT: ``value`` holds a float64's bits, else an integer."""
    lin = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = lin < n
    if FLOAT:
        v = _f64_from_bits(value)
    else:
        v = value + tl.zeros((1,), tl.int64)
    if tl.constexpr(out_ptr.dtype.element_ty == tl.int1):
        v = v != 0
    tl.store(out_ptr + lin, tl.broadcast_to(_cast(v, out_ptr.dtype.element_ty), (BLOCK,)),
             mask=mask)


@triton.jit
def _arange_kernel(out_ptr, start, step, n, FLOAT: tl.constexpr, BLOCK: tl.constexpr):
    """out[i] = start + i * step, in float64 (FLOAT: start/step are float64 bits) or int64."""
    lin = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = lin < n
    if FLOAT:
        v = _f64_from_bits(start) + lin.to(tl.float64) * _f64_from_bits(step)
    else:
        v = start + lin * step
    tl.store(out_ptr + lin, _cast(v, out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _copy_kernel(dst_ptr, src_ptr, n, size1, size2, size3,
                 ds0, ds1, ds2, ds3, ss0, ss1, ss2, ss3,
                 NDIM: tl.constexpr, BLOCK: tl.constexpr):
    """dst = src converted to dst's dtype (float -> int truncates, anything -> bool is != 0)."""
    lin = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = lin < n
    v = tl.load(src_ptr + _strided_offset(lin, size1, size2, size3, ss0, ss1, ss2, ss3, NDIM),
                mask=mask, other=0)
    if tl.constexpr(dst_ptr.dtype.element_ty == tl.int1):
        v = v != 0
    tl.store(dst_ptr + _strided_offset(lin, size1, size2, size3, ds0, ds1, ds2, ds3, NDIM),
             _cast(v, dst_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _index_offsets_kernel(idx_ptr, offs_ptr, dim_size, dim_stride, base, n, size1, size2, size3,
                          is0, is1, is2, is3, os0, os1, os2, os3,
                          FIRST: tl.constexpr, NDIM: tl.constexpr, BLOCK: tl.constexpr):
    """offs += wrap(idx) * dim_stride (offs = base + ... when FIRST); -1 marks an index out of range.

    ``idx`` is one advanced index buffer broadcast to the index shape; negative
    indices count from the end of the dim, as in numpy.
    """
    lin = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = lin < n
    i = tl.load(idx_ptr + _strided_offset(lin, size1, size2, size3, is0, is1, is2, is3, NDIM),
                mask=mask, other=0).to(tl.int64)
    i = tl.where(i < 0, i + dim_size, i)
    bad = (i < 0) | (i >= dim_size)
    o_off = _strided_offset(lin, size1, size2, size3, os0, os1, os2, os3, NDIM)
    if FIRST:
        acc = base + lin * 0
    else:
        acc = tl.load(offs_ptr + o_off, mask=mask, other=-1)
    tl.store(offs_ptr + o_off, tl.where(bad | (acc < 0), -1, acc + i * dim_stride), mask=mask)


@triton.jit
def _gather_kernel(src_ptr, offs_ptr, out_ptr, nb, nr, out_stride_b, size1, size2, size3,
                   ss0, ss1, ss2, ss3, os0, os1, os2, os3,
                   NDIM: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_R: tl.constexpr):
    """out[b, r] = src[offs[b] + r] for index positions b and the (strided) rest r; 0 where offs < 0."""
    b = tl.program_id(0).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    r = tl.program_id(1).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    b_mask = b < nb
    r_mask = r < nr
    off = tl.load(offs_ptr + b, mask=b_mask, other=-1)
    s_off = _strided_offset(r, size1, size2, size3, ss0, ss1, ss2, ss3, NDIM)
    o_off = _strided_offset(r, size1, size2, size3, os0, os1, os2, os3, NDIM)
    ok = (b_mask & (off >= 0))[:, None] & r_mask[None, :]
    v = tl.load(src_ptr + off[:, None] + s_off[None, :], mask=ok, other=0)
    tl.store(out_ptr + b[:, None] * out_stride_b + o_off[None, :], v,
             mask=b_mask[:, None] & r_mask[None, :])


@triton.jit
def _scatter_kernel(dst_ptr, offs_ptr, val_ptr, nb, nr, val_stride_b, size1, size2, size3,
                    ds0, ds1, ds2, ds3, vs0, vs1, vs2, vs3,
                    ADD: tl.constexpr, NDIM: tl.constexpr, BLOCK_B: tl.constexpr,
                    BLOCK_R: tl.constexpr):
    """dst[offs[b] + r] = val[b, r] (ADD: +=; positions must be distinct then); skips offs < 0."""
    b = tl.program_id(0).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    r = tl.program_id(1).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    b_mask = b < nb
    r_mask = r < nr
    off = tl.load(offs_ptr + b, mask=b_mask, other=-1)
    d_off = _strided_offset(r, size1, size2, size3, ds0, ds1, ds2, ds3, NDIM)
    v_off = _strided_offset(r, size1, size2, size3, vs0, vs1, vs2, vs3, NDIM)
    ok = (b_mask & (off >= 0))[:, None] & r_mask[None, :]
    v = tl.load(val_ptr + b[:, None] * val_stride_b + v_off[None, :], mask=ok, other=0)
    d_ptrs = dst_ptr + off[:, None] + d_off[None, :]
    if ADD:
        v = _up(tl.load(d_ptrs, mask=ok, other=0)) + _up(v)
    tl.store(d_ptrs, _cast(v, dst_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _segment_add_kernel(dst_ptr, offs_ptr, src_ptr, order_ptr, seg_ptr, nr, src_stride_b,
                        size1, size2, size3, ds0, ds1, ds2, ds3, ss0, ss1, ss2, ss3,
                        ACC: tl.constexpr, NDIM: tl.constexpr, BLOCK_R: tl.constexpr):
    """dst[offs[p] + r] += sum of src[b, r] over the index positions b that share position p.

    One program per (segment of the stably sorted offsets, block of r): the
    positions of a segment are summed in their original order, so the result
    never depends on scheduling.
    """
    seg = tl.program_id(0)
    r = tl.program_id(1).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    r_mask = r < nr
    start = tl.load(seg_ptr + seg)
    end = tl.load(seg_ptr + seg + 1)
    off = tl.load(offs_ptr + tl.load(order_ptr + start))
    s_off = _strided_offset(r, size1, size2, size3, ss0, ss1, ss2, ss3, NDIM)
    acc = tl.zeros((BLOCK_R,), ACC)
    for j in range(start, end):
        b = tl.load(order_ptr + j)
        acc += tl.load(src_ptr + b * src_stride_b + s_off, mask=r_mask, other=0).to(ACC)
    d_ptrs = dst_ptr + off + _strided_offset(r, size1, size2, size3, ds0, ds1, ds2, ds3, NDIM)
    d = tl.load(d_ptrs, mask=r_mask, other=0).to(ACC)
    tl.store(d_ptrs, _cast((d + acc), dst_ptr.dtype.element_ty), mask=r_mask)


# ----------------------------------------------------------------------------------------------
# creation and conversion
# ----------------------------------------------------------------------------------------------


def from_numpy(array: np.ndarray, dtype):
    """A buffer holding a copy of ``array`` converted to ``dtype``."""
    return buffers.upload(np.array(array, dtype=dtype.np, copy=True), dtype)


def dtype_of(x):
    """The tritonnn dtype of buffer ``x``."""
    return buffers.dtype_of(x)


def to_numpy(x) -> np.ndarray:
    """The buffer's values as a host numpy array (a copy)."""
    return buffers.download(x)


def empty(shape, dtype):
    return buffers.empty(shape, dtype)


def full(shape, value, dtype):
    out = buffers.empty(shape, dtype)
    n = numel(buffers.shape(out))
    if n:
        is_float = dtype.is_floating
        v = float_bits(value) if is_float else int(value)
        block, warps = _launch.elementwise(n)
        _fill_kernel[(_launch.cdiv(n, block),)](out, v, n, FLOAT=is_float, BLOCK=block,
                                                num_warps=warps)
    return out


def arange(start, stop, step, dtype):
    if all(isinstance(v, (int, np.integer)) for v in (start, stop, step)):
        n = len(range(int(start), int(stop), int(step)))
        is_float, a, s = False, int(start), int(step)
    else:
        n = max(0, math.ceil((stop - start) / step))
        is_float, a, s = True, float_bits(start), float_bits(step)
    out = buffers.empty((n,), dtype)
    if n:
        block, warps = _launch.elementwise(n)
        _arange_kernel[(_launch.cdiv(n, block),)](out, a, s, n, FLOAT=is_float, BLOCK=block,
                                                  num_warps=warps)
    return out


def cast(x, dtype):
    """A new buffer with ``x``'s values converted to ``dtype`` (float -> int truncates)."""
    out = buffers.empty(buffers.shape(x), dtype)
    launch_strided(_copy_kernel, [out, x])
    return out


def contiguous(x):
    """``x`` itself when row-major contiguous, else a contiguous copy."""
    if buffers.is_contiguous(x):
        return x
    out = buffers.empty(buffers.shape(x), buffers.dtype_of(x))
    launch_strided(_copy_kernel, [out, x])
    return out


def copy_(dst, src):
    """Write ``src`` (broadcast to ``dst``'s shape) into ``dst`` in place."""
    if buffers.shares_memory(dst, src):
        # programs run concurrently: reading memory that others write is a race, so copy first
        src = cast(src, buffers.dtype_of(src))
    launch_strided(_copy_kernel, [dst, buffers.expand(src, buffers.shape(dst))])


# ----------------------------------------------------------------------------------------------
# views
# ----------------------------------------------------------------------------------------------


def reshape(x, shape):
    """A view when the strides allow it, else a copy, as torch.reshape."""
    shape = tuple(shape)
    v = buffers.view_shape(x, shape)
    return v if v is not None else buffers.view_shape(contiguous(x), shape)


def permute(x, dims):
    return buffers.permute(x, dims)


def expand(x, shape):
    """A read-only broadcast view (stride 0 on expanded dims)."""
    return buffers.expand(x, shape)


exclusively_owned = buffers.exclusively_owned


# ----------------------------------------------------------------------------------------------
# indexing
# ----------------------------------------------------------------------------------------------


def _is_buffer(i) -> bool:
    return hasattr(i, "data_ptr")


class _Plan:
    """An advanced index split the numpy way.

    ``view`` is ``x`` indexed by the basic part (advanced components kept as
    full dims); ``adv`` lists ``(size, stride, index)`` of each advanced dim of
    ``view`` (index an int64 buffer or a Python int); the result has shape
    ``final`` = index dims ``bshape`` placed at ``at`` among the remaining dims
    ``rest``; ``src`` is ``view`` with the advanced dims taken at 0 (the rest).
    """

    def __init__(self, x, index):
        comps = []
        for i in index:
            if _is_buffer(i) and buffers.dtype_of(i) is D.bool_:
                comps.extend(buffers.upload(np.ascontiguousarray(a, dtype=np.int64), D.int64)
                             for a in np.nonzero(buffers.download(i)))
            elif isinstance(i, (list, np.ndarray)):
                comps.append(from_numpy(np.asarray(i), D.int64))
            else:
                comps.append(i)
        ndim = len(buffers.shape(x))
        explicit = sum(1 for c in comps if c is not None and c is not Ellipsis)
        view_index, adv_dims, adv_idx = [], [], []
        for c in comps:
            if c is Ellipsis:
                view_index.extend([slice(None)] * (ndim - explicit))
            elif c is None or isinstance(c, slice):
                view_index.append(c)
            else:
                adv_dims.append(len(view_index))
                adv_idx.append(c)
                view_index.append(slice(None))
        view = buffers.view_index(x, tuple(view_index))
        vshape, vstrides = buffers.shape(view), buffers.strides(view)
        self.adv = [(vshape[d], vstrides[d], i) for d, i in zip(adv_dims, adv_idx)]
        from .elementwise import broadcast_shape
        self.bshape = broadcast_shape(*(buffers.shape(i) for i in adv_idx if _is_buffer(i)))
        rest_dims = [d for d in range(len(vshape)) if d not in adv_dims]
        self.rest = tuple(vshape[d] for d in rest_dims)
        adjacent = adv_dims == list(range(adv_dims[0], adv_dims[0] + len(adv_dims)))
        self.at = adv_dims[0] if adjacent else 0
        self.final = self.rest[:self.at] + self.bshape + self.rest[self.at:]
        self.nb = numel(self.bshape)
        self.empty = numel(self.final) == 0 or numel(vshape) == 0
        if not self.empty:
            perm = adv_dims + rest_dims
            self.src = buffers.view_index(buffers.permute(view, perm), (0,) * len(adv_dims))
        self.view = view

    def compact(self, buf):
        """A ``(nb, *rest)`` view of a buffer laid out in ``final`` order (a copy if not viewable)."""
        nbd, at = len(self.bshape), self.at
        total = len(self.final)
        perm = list(range(at, at + nbd)) + list(range(at)) + list(range(at + nbd, total))
        p = buffers.permute(buf, perm)
        shape = (self.nb,) + self.rest
        v = buffers.view_shape(p, shape)
        return v if v is not None else buffers.view_shape(contiguous(p), shape)

    def offsets(self):
        """int64 element offsets into ``view`` of every index position (-1: out of range)."""
        base = 0
        for size, stride, i in self.adv:
            if not _is_buffer(i):
                base += (int(i) % size if size else 0) * stride
        offs = buffers.empty(self.bshape, D.int64)
        first = True
        for size, stride, i in self.adv:
            if _is_buffer(i):
                launch_strided(_index_offsets_kernel, [buffers.expand(i, self.bshape), offs],
                               (size, stride, base), FIRST=first)
                first = False
        return buffers.view_shape(offs, (self.nb,))


def _plan(x, index):
    if not isinstance(index, tuple):
        index = (index,)
    if not any(_is_buffer(i) or isinstance(i, (list, np.ndarray)) for i in index):
        return None
    return _Plan(x, index)


def _rows_launch(kernel, first, offs, second, nb, rest, b_stride, **meta):
    """Launch a gather/scatter kernel over (index position, rest) with ``rest`` strided."""
    nr = numel(rest)
    geo = _launch.layout(rest, (tuple(buffers.strides(first)), tuple(buffers.strides(second))))
    if geo is None:
        for i in range(rest[0]):
            _rows_launch(kernel, buffers.view_index(first, (i,)), offs,
                         buffers.view_index(second, (i,)), nb, rest[1:], b_stride, **meta)
        return
    ndim, sizes, (s1, s2) = geo
    bm, bn, warps = _launch.rows(nb, nr)
    grid = (_launch.cdiv(nb, bm), _launch.cdiv(nr, bn))
    kernel[grid](first, offs, second, nb, nr, b_stride, sizes[1], sizes[2], sizes[3], *s1, *s2,
                 NDIM=ndim, BLOCK_B=bm, BLOCK_R=bn, num_warps=warps, **meta)


def getitem(x, index):
    """Basic indexing (ints, slices, None, Ellipsis) as a view; int64/bool index buffers gather."""
    plan = _plan(x, index)
    if plan is None:
        return buffers.view_index(x, index)
    out = buffers.empty(plan.final, buffers.dtype_of(x))
    if plan.empty:
        return out
    out_c = plan.compact(out)
    # the gather kernel takes (src, offs, out): rest strides of the source, then of the output
    _gather(plan.src, plan.offsets(), out_c, plan)
    return out


def _gather(src, offs, out_c, plan):
    out_rest = buffers.view_index(out_c, (0,))
    b_stride = buffers.strides(out_c)[0]
    _rows_launch(_gather_kernel, src, offs, out_rest, plan.nb, plan.rest, b_stride)


def _scatter(dst_rest, offs, val_c, plan, add):
    val_rest = buffers.view_index(val_c, (0,))
    b_stride = buffers.strides(val_c)[0]
    _rows_launch(_scatter_kernel, dst_rest, offs, val_rest, plan.nb, plan.rest, b_stride, ADD=add)


def setitem(x, index, value):
    """``x[index] = value`` in place (value a buffer or a Python number, broadcast).

    With repeated advanced indices, which of the values lands is unspecified on a GPU
    (as in torch); numpy keeps the last.
    """
    dt = buffers.dtype_of(x)
    if not _is_buffer(value):
        value = full((), value, dt)
    elif buffers.dtype_of(value) is not dt or buffers.shares_memory(x, value):
        value = cast(value, dt)        # (a private copy when it views x: no read/write race)
    plan = _plan(x, index)
    if plan is None:
        copy_(buffers.view_index(x, index), value)
        return
    if plan.empty:
        return
    val_c = plan.compact(buffers.expand(value, plan.final))
    _scatter(plan.src, plan.offsets(), val_c, plan, False)


def index_add(dst, index, src):
    """``dst[index] += src`` in place (repeated advanced indices accumulate); returns dst."""
    plan = _plan(dst, index)
    if plan is None:
        from .elementwise import accumulate_
        accumulate_(buffers.view_index(dst, index), src)
        return dst
    if plan.empty:
        return dst
    offs = plan.offsets()
    src_c = plan.compact(buffers.expand(src, plan.final))
    host = buffers.download(offs)
    order = np.argsort(host, kind="stable")
    keys = host[order]
    keep = keys >= 0
    order, keys = order[keep], keys[keep]
    if len(np.unique(keys)) == len(keys):
        _scatter(plan.src, offs, src_c, plan, True)
        return dst
    # repeated positions: sum each position's contributions in index order, then add once
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    seg = np.r_[starts, len(keys)].astype(np.int64)
    order_b = buffers.upload(order.astype(np.int64), D.int64)
    seg_b = buffers.upload(seg, D.int64)
    acc = tl.float64 if buffers.dtype_of(dst) is D.float64 else tl.float32
    _segment_launch(plan.src, offs, src_c, order_b, seg_b, len(starts), plan.rest, acc)
    return dst


def _segment_launch(dst_rest, offs, src_c, order_b, seg_b, n_seg, rest, acc):
    src_rest = buffers.view_index(src_c, (0,))
    geo = _launch.layout(rest, (tuple(buffers.strides(dst_rest)), tuple(buffers.strides(src_rest))))
    if geo is None:
        for i in range(rest[0]):
            _segment_launch(buffers.view_index(dst_rest, (i,)), offs,
                            buffers.view_index(src_c, (slice(None), i)), order_b, seg_b, n_seg,
                            rest[1:], acc)
        return
    ndim, sizes, (sd, ss) = geo
    nr = numel(rest)
    _, bn, warps = _launch.rows(1, nr)
    _segment_add_kernel[(n_seg, _launch.cdiv(nr, bn))](
        dst_rest, offs, src_c, order_b, seg_b, nr, buffers.strides(src_c)[0],
        sizes[1], sizes[2], sizes[3], *sd, *ss, ACC=acc, NDIM=ndim, BLOCK_R=bn, num_warps=warps)


# ----------------------------------------------------------------------------------------------
# joins
# ----------------------------------------------------------------------------------------------


def cat(xs, dim):
    shapes = [buffers.shape(x) for x in xs]
    nd = len(shapes[0])
    dim %= nd
    out_shape = shapes[0][:dim] + (sum(s[dim] for s in shapes),) + shapes[0][dim + 1:]
    out = buffers.empty(out_shape, buffers.dtype_of(xs[0]))
    start = 0
    for x, s in zip(xs, shapes):
        if s[dim]:
            copy_(buffers.view_index(out, (slice(None),) * dim + (slice(start, start + s[dim]),)), x)
        start += s[dim]
    return out


def stack(xs, dim):
    shape = buffers.shape(xs[0])
    dim %= len(shape) + 1
    out = buffers.empty(shape[:dim] + (len(xs),) + shape[dim:], buffers.dtype_of(xs[0]))
    for i, x in enumerate(xs):
        copy_(buffers.view_index(out, (slice(None),) * dim + (i,)), x)
    return out


# ----------------------------------------------------------------------------------------------
# ahead-of-time compile list (format: kernels/__init__.py)
# ----------------------------------------------------------------------------------------------

def _rows_sig(ptrs, scalars, names, constexprs):
    sig = dict(ptrs)
    sig.update(scalars)
    sig.update({"size1": "i64", "size2": "i64", "size3": "i64"})
    for name in names:
        sig.update({f"{name}s{k}": "i64" for k in range(4)})
    sig.update({k: "constexpr" for k in constexprs})
    return sig


def _kernels():
    out = []
    for dt, is_float in (("fp32", True), ("bf16", True), ("i64", False), ("i1", False)):
        ce = {"FLOAT": is_float, "BLOCK": 1024}
        out.append({"name": f"fill_{dt}", "fn": _fill_kernel, "constexprs": ce,
                    "signature": {"out_ptr": f"*{dt}", "value": "i64", "n": "i64",
                                  **{k: "constexpr" for k in ce}}})
        out.append({"name": f"arange_{dt}", "fn": _arange_kernel, "constexprs": ce,
                    "signature": {"out_ptr": f"*{dt}", "start": "i64", "step": "i64", "n": "i64",
                                  **{k: "constexpr" for k in ce}}})
    for dst, src in (("fp32", "bf16"), ("i64", "fp32"), ("i1", "fp16"), ("fp16", "fp16")):
        ce = {"NDIM": 4, "BLOCK": 1024}
        out.append({"name": f"copy_{src}_to_{dst}", "fn": _copy_kernel, "constexprs": ce,
                    "signature": _strided_sig({"dst_ptr": f"*{dst}", "src_ptr": f"*{src}"}, {},
                                              ("d", "s"), ce)})
    ce = {"FIRST": False, "NDIM": 2, "BLOCK": 1024}
    out.append({"name": "index_offsets", "fn": _index_offsets_kernel, "constexprs": ce,
                "signature": _strided_sig({"idx_ptr": "*i64", "offs_ptr": "*i64"},
                                          {"dim_size": "i64", "dim_stride": "i64", "base": "i64"},
                                          ("i", "o"), ce)})
    ce = {"NDIM": 2, "BLOCK_B": 8, "BLOCK_R": 512}
    out.append({"name": "gather_bf16", "fn": _gather_kernel, "constexprs": ce,
                "signature": _rows_sig({"src_ptr": "*bf16", "offs_ptr": "*i64", "out_ptr": "*bf16"},
                                       {"nb": "i64", "nr": "i64", "out_stride_b": "i64"},
                                       ("s", "o"), ce)})
    ce = {"ADD": True, "NDIM": 1, "BLOCK_B": 8, "BLOCK_R": 512}
    out.append({"name": "scatter_add_fp16", "fn": _scatter_kernel, "constexprs": ce,
                "signature": _rows_sig({"dst_ptr": "*fp16", "offs_ptr": "*i64", "val_ptr": "*fp16"},
                                       {"nb": "i64", "nr": "i64", "val_stride_b": "i64"},
                                       ("d", "v"), ce)})
    ce = {"ACC": tl.float32, "NDIM": 2, "BLOCK_R": 1024}
    out.append({"name": "segment_add_fp32", "fn": _segment_add_kernel, "constexprs": ce,
                "signature": _rows_sig({"dst_ptr": "*fp32", "offs_ptr": "*i64", "src_ptr": "*fp32",
                                        "order_ptr": "*i64", "seg_ptr": "*i64"},
                                       {"nr": "i64", "src_stride_b": "i64"}, ("d", "s"), ce)})
    return out


KERNELS = _launch.with_warps(_kernels())
