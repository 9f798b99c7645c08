"""Buffers on the device: creation, conversion, views, copies, gathers and joins (Triton).

Twins of ``fallback_cpu/memory.py``. Views (reshape, permute, expand, basic
indexing) are torch metadata through ``buffers``; every byte that moves on the
device moves in a kernel here:

* ``_fill_kernel``, ``_arange_kernel``: creation.
* ``_copy_kernel``: ``dst[...] = src`` between any strides with dtype
  conversion (``cast``, ``contiguous``, ``copy_``, ``cat``, ``stack``, basic
  ``setitem``, ``reshape`` of a non-viewable layout), or ``dst[...] += src``
  (``accumulate_``, basic ``index_add``).
* Advanced indexing (int64 or bool index buffers, numpy's rules for where the
  indexed dims land): ``_index_offsets_kernel`` turns the index buffers into
  one int64 element offset per index position (-1 where out of range, which
  every later access masks off), then ``_gather_kernel`` reads, and
  ``_scatter_kernel`` writes or adds, each program on a tile of (index
  position, element of the rest) (``_index_tile``). With a single index buffer
  (``x[idx]``, a DataLoader's batch) the gather or scatter computes the offsets
  itself: one launch. Index values the op table left to check (a
  ``contract.RangeCheck``) are checked where they are read and reported to the
  host, raised at its next sync. ``index_add`` with repeated positions
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
from ._jitlib import (cast_to, f64_from_bits, linear_index, report_out_of_range, strided_offset,
                      up)
from ._launch import (aot_entry, broadcast_shape, cdiv, float_bits, launch, launch_strided, numel,
                      strided_pieces)

# ----------------------------------------------------------------------------------------------
# kernels
# ----------------------------------------------------------------------------------------------


@triton.jit(do_not_specialize=("value",))
def _fill_kernel(out_ptr, value, n, FLOAT: tl.constexpr, BLOCK: tl.constexpr):
    """out[:n] = value (contiguous); FLOAT: ``value`` holds a float64's bits, else an integer."""
    lin = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = lin < n
    if FLOAT:
        v = f64_from_bits(value)
    else:
        v = value + tl.zeros((1,), tl.int64)
    if tl.constexpr(out_ptr.dtype.element_ty == tl.int1):
        v = v != 0
    tl.store(out_ptr + lin, tl.broadcast_to(cast_to(v, out_ptr.dtype.element_ty), (BLOCK,)),
             mask=mask)


@triton.jit(do_not_specialize=("start", "step"))
def _arange_kernel(out_ptr, start, step, n, FLOAT: tl.constexpr, BLOCK: tl.constexpr):
    """out[i] = start + i * step, in float64 (FLOAT: start/step are float64 bits) or int64."""
    lin = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = lin < n
    if FLOAT:
        v = f64_from_bits(start) + lin.to(tl.float64) * f64_from_bits(step)
    else:
        v = start + lin * step
    tl.store(out_ptr + lin, cast_to(v, out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _copy_kernel(dst_ptr, src_ptr, n, size1, size2, size3,
                 stride_dst_0, stride_dst_1, stride_dst_2, stride_dst_3,
                 stride_src_0, stride_src_1, stride_src_2, stride_src_3,
                 ADD: tl.constexpr, NDIM: tl.constexpr, INDEX32: tl.constexpr,
                 BLOCK: tl.constexpr):
    """dst = src converted to dst's dtype (float -> int truncates, anything -> bool is != 0).

    ADD: dst += src instead, in float32 for float16/bfloat16 (gradient accumulation).
    """
    lin = linear_index(BLOCK, INDEX32)
    mask = lin < n
    src_off = strided_offset(lin, size1, size2, size3, stride_src_0, stride_src_1, stride_src_2,
                             stride_src_3, NDIM)
    v = tl.load(src_ptr + src_off, mask=mask, other=0)
    dst_off = strided_offset(lin, size1, size2, size3, stride_dst_0, stride_dst_1, stride_dst_2,
                             stride_dst_3, NDIM)
    if ADD:
        v = up(tl.load(dst_ptr + dst_off, mask=mask, other=0)) + up(v)
    elif tl.constexpr(dst_ptr.dtype.element_ty == tl.int1):
        v = v != 0
    tl.store(dst_ptr + dst_off, cast_to(v, dst_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=["site"])
def _index_offsets_kernel(idx_ptr, offs_ptr, err_ptr, dim_size, dim_stride, base, site, n,
                          size1, size2, size3,
                          stride_idx_0, stride_idx_1, stride_idx_2, stride_idx_3,
                          stride_offs_0, stride_offs_1, stride_offs_2, stride_offs_3,
                          FIRST: tl.constexpr, CHECK: tl.constexpr, NDIM: tl.constexpr,
                          INDEX32: tl.constexpr,
                          BLOCK: tl.constexpr):
    """offs += wrap(idx) * dim_stride (offs = base + ... when FIRST); -1 marks an index out of range.

    ``idx`` is one advanced index buffer broadcast to the index shape; negative
    indices count from the end of the dim, as in numpy. CHECK: indices outside
    ``[-dim_size, dim_size)`` are also reported to the host (``report_out_of_range``).
    """
    lin = linear_index(BLOCK, INDEX32)
    mask = lin < n
    idx_off = strided_offset(lin, size1, size2, size3, stride_idx_0, stride_idx_1, stride_idx_2,
                             stride_idx_3, NDIM)
    raw = tl.load(idx_ptr + idx_off, mask=mask, other=0).to(tl.int64)
    if CHECK:
        report_out_of_range(err_ptr, site, raw, mask & (raw < -dim_size),
                            mask & (raw >= dim_size))
    i = tl.where(raw < 0, raw + dim_size, raw)
    bad = (i < 0) | (i >= dim_size)
    offs_off = strided_offset(lin, size1, size2, size3, stride_offs_0, stride_offs_1,
                              stride_offs_2, stride_offs_3, NDIM)
    if FIRST:
        acc = base + lin * 0
    else:
        acc = tl.load(offs_ptr + offs_off, mask=mask, other=-1)
    # an earlier dim already out of range (acc < 0) keeps the position marked
    tl.store(offs_ptr + offs_off, tl.where(bad | (acc < 0), -1, acc + i * dim_stride), mask=mask)


@triton.jit
def _index_tile(idx_ptr, err_ptr, nb, nr, stride_idx, dim_size, dim_stride, base, site,
                DIRECT: tl.constexpr, CHECK: tl.constexpr, BLOCK_B: tl.constexpr,
                BLOCK_R: tl.constexpr):
    """This program's tile of index positions ``b`` (axis 0) by rest elements ``r`` (axis 1).

    Returns ``(b, r, off, inside, valid)``: ``off[b]`` the element offset of each
    position (-1: out of range), ``inside`` the [BLOCK_B, BLOCK_R] mask of the
    tile's tails, ``valid`` that and ``off >= 0``. The offsets come from ``idx_ptr``:
    precomputed (``_index_offsets_kernel``), or with DIRECT computed here from the one
    index buffer (``stride_idx`` apart) along a dim of ``dim_size`` elements
    ``dim_stride`` apart, plus ``base``, as ``_index_offsets_kernel`` does: one launch
    instead of two. CHECK: the programs of rest block 0 report the indices out of range.
    """
    b = tl.program_id(0).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    r = tl.program_id(1).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    b_mask = b < nb
    inside = b_mask[:, None] & (r < nr)[None, :]
    if DIRECT:
        raw = tl.load(idx_ptr + b * stride_idx, mask=b_mask, other=0).to(tl.int64)
        if CHECK:
            if tl.program_id(1) == 0:
                report_out_of_range(err_ptr, site, raw, b_mask & (raw < -dim_size),
                                    b_mask & (raw >= dim_size))
        i = tl.where(raw < 0, raw + dim_size, raw)
        off = tl.where((i >= 0) & (i < dim_size), base + i * dim_stride, -1)
    else:
        off = tl.load(idx_ptr + b, mask=b_mask, other=-1)
    return b, r, off, inside, inside & (off >= 0)[:, None]


@triton.jit(do_not_specialize=["site"])
def _gather_kernel(src_ptr, idx_ptr, out_ptr, err_ptr, nb, nr, stride_out_b, stride_idx, dim_size,
                   dim_stride, base, site, size1, size2, size3,
                   stride_src_0, stride_src_1, stride_src_2, stride_src_3,
                   stride_out_0, stride_out_1, stride_out_2, stride_out_3,
                   DIRECT: tl.constexpr, CHECK: tl.constexpr, NDIM: tl.constexpr,
                   BLOCK_B: tl.constexpr, BLOCK_R: tl.constexpr):
    """out[b, r] = src[off[b] + r] for index positions b and the (strided) rest r; 0 where
    off < 0 (``_index_tile`` gives ``off``)."""
    b, r, off, inside, valid = _index_tile(idx_ptr, err_ptr, nb, nr, stride_idx, dim_size,
                                           dim_stride, base, site, DIRECT, CHECK, BLOCK_B,
                                           BLOCK_R)
    src_off = strided_offset(r, size1, size2, size3, stride_src_0, stride_src_1, stride_src_2,
                             stride_src_3, NDIM)
    out_off = strided_offset(r, size1, size2, size3, stride_out_0, stride_out_1, stride_out_2,
                             stride_out_3, NDIM)
    v = tl.load(src_ptr + off[:, None] + src_off[None, :], mask=valid, other=0)
    tl.store(out_ptr + b[:, None] * stride_out_b + out_off[None, :], v, mask=inside)


@triton.jit(do_not_specialize=["site"])
def _scatter_kernel(dst_ptr, idx_ptr, val_ptr, err_ptr, nb, nr, stride_val_b, stride_idx,
                    dim_size, dim_stride, base, site, size1, size2, size3,
                    stride_dst_0, stride_dst_1, stride_dst_2, stride_dst_3,
                    stride_val_0, stride_val_1, stride_val_2, stride_val_3,
                    ADD: tl.constexpr, DIRECT: tl.constexpr, CHECK: tl.constexpr,
                    NDIM: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_R: tl.constexpr):
    """dst[off[b] + r] = val[b, r] (ADD: +=; positions must be distinct then); skips off < 0."""
    b, r, off, inside, valid = _index_tile(idx_ptr, err_ptr, nb, nr, stride_idx, dim_size,
                                           dim_stride, base, site, DIRECT, CHECK, BLOCK_B,
                                           BLOCK_R)
    dst_off = strided_offset(r, size1, size2, size3, stride_dst_0, stride_dst_1, stride_dst_2,
                             stride_dst_3, NDIM)
    val_off = strided_offset(r, size1, size2, size3, stride_val_0, stride_val_1, stride_val_2,
                             stride_val_3, NDIM)
    v = tl.load(val_ptr + b[:, None] * stride_val_b + val_off[None, :], mask=valid, other=0)
    dst_ptrs = dst_ptr + off[:, None] + dst_off[None, :]
    if ADD:
        v = up(tl.load(dst_ptrs, mask=valid, other=0)) + up(v)
    tl.store(dst_ptrs, cast_to(v, dst_ptr.dtype.element_ty), mask=valid)


@triton.jit
def _segment_add_kernel(dst_ptr, offs_ptr, src_ptr, order_ptr, seg_ptr, nr, stride_src_b,
                        size1, size2, size3,
                        stride_dst_0, stride_dst_1, stride_dst_2, stride_dst_3,
                        stride_src_0, stride_src_1, stride_src_2, stride_src_3,
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
    src_off = strided_offset(r, size1, size2, size3, stride_src_0, stride_src_1, stride_src_2,
                             stride_src_3, NDIM)
    acc = tl.zeros((BLOCK_R,), ACC)
    for j in range(start, end):
        b = tl.load(order_ptr + j)
        acc += tl.load(src_ptr + b * stride_src_b + src_off, mask=r_mask, other=0).to(ACC)
    dst_off = strided_offset(r, size1, size2, size3, stride_dst_0, stride_dst_1, stride_dst_2,
                             stride_dst_3, NDIM)
    d_ptrs = dst_ptr + off + dst_off
    d = tl.load(d_ptrs, mask=r_mask, other=0).to(ACC)
    tl.store(d_ptrs, cast_to(d + acc, dst_ptr.dtype.element_ty), mask=r_mask)


# ----------------------------------------------------------------------------------------------
# creation, conversion and in-place writes
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
        launch(_fill_kernel, (cdiv(n, block),), out, v, n, FLOAT=is_float, BLOCK=block,
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
        launch(_arange_kernel, (cdiv(n, block),), out, a, s, n, FLOAT=is_float, BLOCK=block,
               num_warps=warps)
    return out


def cast(x, dtype):
    """A new buffer with ``x``'s values converted to ``dtype`` (float -> int truncates)."""
    out = buffers.empty(buffers.shape(x), dtype)
    launch_strided(_copy_kernel, [out, x], ADD=False)
    return out


def contiguous(x):
    """``x`` itself when row-major contiguous, else a contiguous copy."""
    if buffers.is_contiguous(x):
        return x
    out = buffers.empty(buffers.shape(x), buffers.dtype_of(x))
    launch_strided(_copy_kernel, [out, x], ADD=False)
    return out


def copy_(dst, src):
    """Write ``src`` (broadcast to ``dst``'s shape) into ``dst`` in place."""
    if buffers.shares_memory(dst, src):
        # programs run concurrently: reading memory that others write is a race, so copy first
        src = cast(src, buffers.dtype_of(src))
    launch_strided(_copy_kernel, [dst, buffers.expand(src, buffers.shape(dst))], ADD=False)


def accumulate_(dst, src):
    """``dst += src`` in place (gradient accumulation); ``src`` broadcasts to ``dst``."""
    launch_strided(_copy_kernel, [dst, buffers.expand(src, buffers.shape(dst))], ADD=True)


# ----------------------------------------------------------------------------------------------
# views
# ----------------------------------------------------------------------------------------------


def reshape(x, shape):
    """A view when the strides allow it, else a copy, as torch.reshape."""
    shape = tuple(shape)
    v = buffers.view_shape(x, shape)
    return v if v is not None else buffers.view_shape(contiguous(x), shape)


def view(x, shape):
    """``x`` with ``shape`` without a copy, or None when its strides don't allow it."""
    return buffers.view_shape(x, tuple(shape))


def permute(x, dims):
    return buffers.permute(x, dims)


def expand(x, shape):
    """A read-only broadcast view (stride 0 on expanded dims)."""
    return buffers.expand(x, shape)


exclusively_owned = buffers.exclusively_owned
overlapping = buffers.overlapping


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

    def __init__(self, x, index, checks):
        comps, comp_checks = [], []
        for i, check in zip(index, checks or (None,) * len(index)):
            if _is_buffer(i) and buffers.dtype_of(i) is D.bool_:
                # a mask's positions (a host read: the result's shape depends on them)
                found = [buffers.upload(np.ascontiguousarray(a, dtype=np.int64), D.int64)
                         for a in np.nonzero(buffers.download(i))]
                comps.extend(found)
                comp_checks.extend([None] * len(found))
            elif isinstance(i, (list, np.ndarray)):
                comps.append(from_numpy(np.asarray(i), D.int64))
                comp_checks.append(check)
            else:
                comps.append(i)
                comp_checks.append(check)
        ndim = len(buffers.shape(x))
        explicit = sum(1 for c in comps if c is not None and c is not Ellipsis)
        view_index, adv_dims, adv_idx, adv_checks = [], [], [], []
        for c, check in zip(comps, comp_checks):
            if c is Ellipsis:
                view_index.extend([slice(None)] * (ndim - explicit))
            elif c is None or isinstance(c, slice):
                view_index.append(c)
            else:
                adv_dims.append(len(view_index))
                adv_idx.append(c)
                adv_checks.append(check if _is_buffer(c) else None)
                view_index.append(slice(None))
        view = buffers.view_index(x, tuple(view_index))
        vshape, vstrides = buffers.shape(view), buffers.strides(view)
        self.adv = [(vshape[d], vstrides[d], i, check)
                    for d, i, check in zip(adv_dims, adv_idx, adv_checks)]
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
        """int64 element offsets into ``view`` of every index position (-1: out of range),
        the index buffers checked as their ``RangeCheck`` says on the way."""
        base = 0
        for size, stride, i, _ in self.adv:
            if not _is_buffer(i):
                base += (int(i) % size if size else 0) * stride
        offs = buffers.empty(self.bshape, D.int64)
        first = True
        for size, stride, i, check in self.adv:
            if _is_buffer(i):
                err, site, checking = buffers.error_args(check, offs)
                launch_strided(_index_offsets_kernel, [buffers.expand(i, self.bshape), offs],
                               (err, size, stride, base, site), FIRST=first, CHECK=checking)
                if checking:
                    buffers.checked_launch()
                first = False
        return buffers.view_shape(offs, (self.nb,))

    def source(self):
        """What the gather and scatter kernels read their offsets from, as ``_launch_tiles``
        takes it: the one index buffer itself when only one advanced component is a buffer
        and it lays out flat (the offsets computed in the same launch), else the offsets of
        ``offsets()``."""
        comps = [a for a in self.adv if _is_buffer(a[2])]
        flat = buffers.view_shape(comps[0][2], (self.nb,)) if len(comps) == 1 else None
        if flat is None:
            return (self.offsets(), False, 1, 0, 0, 0, None)
        base = 0
        for size, stride, i, _ in self.adv:
            if not _is_buffer(i):
                base += (int(i) % size if size else 0) * stride
        size, stride, _, check = comps[0]
        return (flat, True, buffers.strides(flat)[0], size, stride, base, check)

    def check_only(self):
        """An empty result still checks its index buffers (nothing is read or written)."""
        if self.nb and any(check is not None for *_, check in self.adv):
            self.offsets()


def _plan(x, index, checks):
    if not isinstance(index, tuple):
        index = (index,)
    if not any(_is_buffer(i) or isinstance(i, (list, np.ndarray)) for i in index):
        return None
    return _Plan(x, index, checks)


def _launch_tiles(kernel, rest, source, compact, nb, **meta):
    """Launch a gather or scatter kernel over tiles of (index position, rest element).

    ``rest`` is the indexed buffer with its advanced dims taken at 0 (``_Plan.src``);
    ``source`` where the offsets come from (``_Plan.source()``, or an offsets buffer);
    ``compact`` the (nb, *rest) buffer on the other side (the gathered output, the
    scattered values): the kernel gets its view at position 0 and its position stride.
    """
    if _is_buffer(source):
        source = (source, False, 1, 0, 0, 0, None)
    idx, direct, stride_idx, dim_size, dim_stride, base, check = source
    err, site, checking = buffers.error_args(check, idx)
    stride_b = buffers.strides(compact)[0]
    for (first, second), ndim, sizes, (s1, s2) in strided_pieces(
            [rest, buffers.view_index(compact, (0,))]):
        nr = numel(sizes)
        bm, bn, warps = _launch.rows(nb, nr)
        launch(kernel, (cdiv(nb, bm), cdiv(nr, bn)),
            first, idx, second, err, nb, nr, stride_b, stride_idx, dim_size, dim_stride, base,
            site, sizes[1], sizes[2], sizes[3], *s1, *s2, DIRECT=direct, CHECK=checking,
            NDIM=ndim, BLOCK_B=bm, BLOCK_R=bn, num_warps=warps, **meta)
    if checking:
        buffers.checked_launch()


def _launch_segments(rest, offs, src_c, order_b, seg_b, n_seg, acc):
    """Launch ``_segment_add_kernel``: one program row per segment of repeated positions.

    As ``_launch_tiles``, the kernel reads ``src_c`` (nb, *rest) through its view
    at position 0 (the same data pointer) and its position stride.
    """
    stride_b = buffers.strides(src_c)[0]
    for (dst, src), ndim, sizes, (s1, s2) in strided_pieces(
            [rest, buffers.view_index(src_c, (0,))]):
        nr = numel(sizes)
        _, bn, warps = _launch.rows(1, nr)
        launch(_segment_add_kernel, (n_seg, cdiv(nr, bn)),
            dst, offs, src, order_b, seg_b, nr, stride_b, sizes[1], sizes[2], sizes[3], *s1, *s2,
            ACC=acc, NDIM=ndim, BLOCK_R=bn, num_warps=warps)


def getitem(x, index, checks=None):
    """Basic indexing (ints, slices, None, Ellipsis) as a view; int64/bool index buffers gather
    (their values checked as ``checks`` say)."""
    plan = _plan(x, index, checks)
    if plan is None:
        return buffers.view_index(x, index)
    out = buffers.empty(plan.final, buffers.dtype_of(x))
    if plan.empty:
        plan.check_only()
        return out
    _launch_tiles(_gather_kernel, plan.src, plan.source(), plan.compact(out), plan.nb)
    return out


def setitem(x, index, value, checks=None):
    """``x[index] = value`` in place (value a buffer or a Python number, broadcast).

    With repeated advanced indices, which of the values lands is unspecified on a GPU
    (as in torch); numpy keeps the last.
    """
    dt = buffers.dtype_of(x)
    if not _is_buffer(value):
        value = full((), value, dt)
    elif buffers.dtype_of(value) is not dt or buffers.shares_memory(x, value):
        value = cast(value, dt)        # (a private copy when it views x: no read/write race)
    plan = _plan(x, index, checks)
    if plan is None:
        copy_(buffers.view_index(x, index), value)
        return
    if plan.empty:
        plan.check_only()
        return
    val_c = plan.compact(buffers.expand(value, plan.final))
    _launch_tiles(_scatter_kernel, plan.src, plan.source(), val_c, plan.nb, ADD=False)


def index_add(dst, index, src):
    """``dst[index] += src`` in place (repeated advanced indices accumulate); returns dst."""
    plan = _plan(dst, index, None)
    if plan is None:
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
        _launch_tiles(_scatter_kernel, plan.src, offs, src_c, plan.nb, ADD=True)
        return dst
    # repeated positions: sum each position's contributions in index order, then add once
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    seg = np.r_[starts, len(keys)].astype(np.int64)
    order_b = buffers.upload(order.astype(np.int64), D.int64)
    seg_b = buffers.upload(seg, D.int64)
    acc = tl.float64 if buffers.dtype_of(dst) is D.float64 else tl.float32
    _launch_segments(plan.src, offs, src_c, order_b, seg_b, len(starts), acc)
    return dst


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
# ahead-of-time compile list (format: kernels/_launch.py)
# ----------------------------------------------------------------------------------------------

def _kernels():
    out = []
    for dt, is_float in (("fp32", True), ("bf16", True), ("i64", False), ("i1", False)):
        ce = {"FLOAT": is_float, "BLOCK": 1024}
        out.append(aot_entry(f"fill_{dt}", _fill_kernel, dt, ce))
        out.append(aot_entry(f"arange_{dt}", _arange_kernel, dt, ce))
    for dst, src in (("fp32", "bf16"), ("i64", "fp32"), ("i1", "fp16"), ("fp16", "fp16")):
        out.append(aot_entry(f"copy_{src}_to_{dst}", _copy_kernel,
                             {"dst_ptr": dst, "src_ptr": src},
                             {"ADD": False, "NDIM": 4, "INDEX32": False, "BLOCK": 1024}))
    out.append(aot_entry("accumulate_bf16", _copy_kernel, "bf16",
                         {"ADD": True, "NDIM": 2, "INDEX32": False, "BLOCK": 1024}))
    out.append(aot_entry("index_offsets", _index_offsets_kernel, "i64",
                         {"FIRST": False, "CHECK": True, "NDIM": 2, "INDEX32": False,
                          "BLOCK": 1024}))
    # int32 indexing (every launch whose offsets fit int32): 4-D strided, i32 sizes and strides
    for dst, src in (("fp32", "fp32"), ("fp32", "bf16"), ("bf16", "fp32"), ("i64", "i64"),
                     ("i1", "fp16")):
        out.append(aot_entry(f"copy_{src}_to_{dst}_idx32", _copy_kernel,
                             {"dst_ptr": dst, "src_ptr": src},
                             {"ADD": False, "NDIM": 4, "INDEX32": True, "BLOCK": 1024},
                             scalar_type="i32"))
    for dt in ("fp32", "bf16"):
        out.append(aot_entry(f"accumulate_{dt}_idx32", _copy_kernel, dt,
                             {"ADD": True, "NDIM": 4, "INDEX32": True, "BLOCK": 1024},
                             scalar_type="i32"))
    out.append(aot_entry("index_offsets_idx32", _index_offsets_kernel, "i64",
                         {"FIRST": False, "CHECK": True, "NDIM": 4, "INDEX32": True,
                          "BLOCK": 1024},
                         scalars={"base": "i64", "dim_stride": "i64", "site": "i32"},
                         scalar_type="i32"))
    out.append(aot_entry("gather_bf16", _gather_kernel,
                         {"src_ptr": "bf16", "idx_ptr": "i64", "out_ptr": "bf16", "err_ptr": "i64"},
                         {"DIRECT": False, "CHECK": False, "NDIM": 2, "BLOCK_B": 8,
                          "BLOCK_R": 512}))
    # a DataLoader batch: rows of a float32 table gathered at a checked int64 index
    out.append(aot_entry("gather_rows_fp32_direct", _gather_kernel,
                         {"src_ptr": "fp32", "idx_ptr": "i64", "out_ptr": "fp32", "err_ptr": "i64"},
                         {"DIRECT": True, "CHECK": True, "NDIM": 1, "BLOCK_B": 8,
                          "BLOCK_R": 512}))
    out.append(aot_entry("scatter_add_fp16", _scatter_kernel,
                         {"dst_ptr": "fp16", "idx_ptr": "i64", "val_ptr": "fp16", "err_ptr": "i64"},
                         {"ADD": True, "DIRECT": False, "CHECK": False, "NDIM": 1, "BLOCK_B": 8,
                          "BLOCK_R": 512}))
    out.append(aot_entry("scatter_fp32_direct", _scatter_kernel,
                         {"dst_ptr": "fp32", "idx_ptr": "i32", "val_ptr": "fp32", "err_ptr": "i64"},
                         {"ADD": False, "DIRECT": True, "CHECK": True, "NDIM": 2, "BLOCK_B": 8,
                          "BLOCK_R": 512}))
    out.append(aot_entry("segment_add_fp32", _segment_add_kernel,
                         {"dst_ptr": "fp32", "offs_ptr": "i64", "src_ptr": "fp32",
                          "order_ptr": "i64", "seg_ptr": "i64"},
                         {"ACC": tl.float32, "NDIM": 2, "BLOCK_R": 1024}))
    return out


KERNELS = _kernels()
