"""Embedding tables (Triton): rows gathered at index tensors, their gradient, one-hot codes.

Twins of ``fallback_cpu/embedding.py``; on ``memory`` (its ``reshape``: index and gradient
buffers of any layout seen as the 1-D and 2-D operands the kernels take).

* ``_embedding_fwd_kernel``: ``out[t, :] = weight[idx[t], :]``, each program a tile of
  (tokens, columns); one gather, the index loaded once per token and checked there (an
  index out of range reads nothing and is reported to the host, raised at its next sync).
* ``_embedding_bwd_kernel``: the table's gradient without atomics. The positions of the
  tokens are grouped by row in CSR form, ``order`` (the positions, stably sorted by their
  index) and ``starts`` (row v's positions are ``order[starts[v]:starts[v + 1]]``); each
  program owns a tile of (rows, columns) and writes every row of it, the sum of its
  positions' gradient rows in position order or zero: the zero fill and the sums in one
  pass, deterministic, and the same float32 additions as the numpy mirror.

  Building ``order`` and ``starts`` reads the indices back to the host (a counting sort in
  numpy, then two uploads). Issue 12 can move it onto the device without touching the
  gradient kernel: counts per row (integer atomics are exact, so order-free), an
  exclusive scan of the counts into ``starts`` (``tl.cumsum`` with a carry across blocks),
  then each position's slot ``starts[v] + (its rank among the earlier positions of row v)``,
  the ranks from a block-wise pass in position order (a stable counting sort).
* ``_one_hot_kernel``: ``out[t, c] = idx[t] == c`` as int64.
"""
from __future__ import annotations

import numpy as np
import triton
import triton.language as tl

from .. import dtypes as D
from . import _launch, buffers, memory
from ._jitlib import cast_to, report_out_of_range
from ._launch import aot_entry, cdiv, launch, numel


@triton.jit(do_not_specialize=["site"])
def _embedding_fwd_kernel(idx_ptr, w_ptr, out_ptr, err_ptr, n_tok, dim, num, site, stride_idx,
                          stride_w0, stride_w1, CHECK: tl.constexpr, BLOCK_M: tl.constexpr,
                          BLOCK_N: tl.constexpr):
    """out[t, d] = w[idx[t], d] for a (BLOCK_M tokens, BLOCK_N columns) tile; out row-major.

    An index outside ``[0, num)`` reads nothing (its row is 0); CHECK: the programs of
    column block 0 report it to the host (``report_out_of_range``).
    """
    t = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    d = tl.program_id(1).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    t_mask = t < n_tok
    d_mask = d < dim
    row = tl.load(idx_ptr + t * stride_idx, mask=t_mask, other=0).to(tl.int64)
    if CHECK:
        if tl.program_id(1) == 0:
            report_out_of_range(err_ptr, site, row, t_mask & (row < 0), t_mask & (row >= num))
    inside = t_mask & (row >= 0) & (row < num)
    v = tl.load(w_ptr + row[:, None] * stride_w0 + d[None, :] * stride_w1,
                mask=inside[:, None] & d_mask[None, :], other=0)
    tl.store(out_ptr + t[:, None] * dim + d[None, :], v, mask=t_mask[:, None] & d_mask[None, :])


@triton.jit(do_not_specialize=("padding_idx",))
def _embedding_bwd_kernel(g_ptr, order_ptr, starts_ptr, out_ptr, num, dim, padding_idx,
                          stride_g0, stride_g1, ACC: tl.constexpr, BLOCK_M: tl.constexpr,
                          BLOCK_N: tl.constexpr):
    """out[v, d] = sum of g[order[j], d] for j in [starts[v], starts[v + 1]), in j order.

    Every row of the (BLOCK_M, BLOCK_N) tile is written, the sum or 0 (the padding row:
    0), so ``out`` needs no zero fill; the loop runs as long as the tile's busiest row.
    """
    v = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    d = tl.program_id(1).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    v_mask = v < num
    d_mask = d < dim
    # 1. each row's run of positions in ``order``
    start = tl.load(starts_ptr + v, mask=v_mask, other=0).to(tl.int64)
    count = tl.load(starts_ptr + v + 1, mask=v_mask, other=0).to(tl.int64) - start
    count = tl.where(v == padding_idx, 0, count)
    # 2. add the positions' gradient rows one after another, in float32 (float64)
    acc = tl.zeros((BLOCK_M, BLOCK_N), ACC)
    for j in range(0, tl.max(count, axis=0)):
        live = j < count
        pos = tl.load(order_ptr + start + j, mask=live, other=0).to(tl.int64)
        acc += tl.load(g_ptr + pos[:, None] * stride_g0 + d[None, :] * stride_g1,
                       mask=live[:, None] & d_mask[None, :], other=0).to(ACC)
    tl.store(out_ptr + v[:, None] * dim + d[None, :], cast_to(acc, out_ptr.dtype.element_ty),
             mask=v_mask[:, None] & d_mask[None, :])


@triton.jit(do_not_specialize=["site"])
def _one_hot_kernel(idx_ptr, out_ptr, err_ptr, n, num_classes, site, stride_idx,
                    CHECK: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """out[t, c] = (idx[t] == c) as int64, out row-major (n, num_classes); CHECK: values outside
    ``[0, num_classes)`` reported to the host by the programs of column block 0."""
    t = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    c = tl.program_id(1).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    t_mask = t < n
    v = tl.load(idx_ptr + t * stride_idx, mask=t_mask, other=-1).to(tl.int64)
    if CHECK:
        if tl.program_id(1) == 0:
            report_out_of_range(err_ptr, site, v, t_mask & (v < 0), t_mask & (v >= num_classes))
    hit = (v[:, None] == c[None, :]).to(tl.int64)
    tl.store(out_ptr + t[:, None] * num_classes + c[None, :], hit,
             mask=t_mask[:, None] & (c < num_classes)[None, :])


def _flat(idx):
    """``idx`` as a 1-D buffer of its values in row-major order (a view when strides allow)."""
    return memory.reshape(idx, (numel(buffers.shape(idx)),))


def embedding_fwd(idx, weight, check):
    """``weight[idx]``: ``idx.shape + (dim,)``, a new row-major buffer (indices checked as
    ``check`` says, in the same launch)."""
    num, dim = buffers.shape(weight)
    shape = buffers.shape(idx)
    out = buffers.empty(shape + (dim,), buffers.dtype_of(weight))
    n = numel(shape)
    if n == 0:
        return out
    flat = _flat(idx)
    bt, bd, warps = _launch.rows(n, max(dim, 1))
    sw0, sw1 = buffers.strides(weight)
    err, site, checking = buffers.error_args(check, out)
    launch(_embedding_fwd_kernel, (cdiv(n, bt), max(cdiv(dim, bd), 1)), flat, weight, out, err,
           n, dim, num, site, buffers.strides(flat)[0], sw0, sw1, CHECK=checking, BLOCK_M=bt,
           BLOCK_N=bd, num_warps=warps)
    if checking:
        buffers.checked_launch()
    return out


def embedding_bwd(grad, idx, num, padding_idx):
    """The (num, dim) table gradient: row v sums ``grad``'s rows where ``idx == v``, in order."""
    dim = buffers.shape(grad)[-1]
    dt = buffers.dtype_of(grad)
    out = buffers.empty((num, dim), dt)
    if num == 0 or dim == 0:
        return out
    n = numel(buffers.shape(idx))
    g = memory.reshape(grad, (n, dim))
    # the CSR grouping of positions by row, on the host for now (see the module docstring)
    host = buffers.download(idx).reshape(-1).astype(np.int64, copy=False)
    itype = np.int32 if n < 2 ** 31 else np.int64
    order = np.argsort(host, kind="stable").astype(itype)
    starts = np.zeros(num + 1, np.int64)
    np.cumsum(np.bincount(host, minlength=num), out=starts[1:])
    order_b = buffers.upload(order if n else np.zeros(1, itype),
                             D.int32 if itype is np.int32 else D.int64)
    starts_b = buffers.upload(starts, D.int64)
    bv, bd, warps = _launch.rows(num, dim)
    sg0, sg1 = buffers.strides(g)
    acc = tl.float64 if dt is D.float64 else tl.float32
    launch(_embedding_bwd_kernel, (cdiv(num, bv), cdiv(dim, bd)), g, order_b, starts_b, out, num,
           dim, -1 if padding_idx is None else int(padding_idx), sg0, sg1, ACC=acc, BLOCK_M=bv,
           BLOCK_N=bd, num_warps=warps)
    return out


def one_hot(idx, num_classes, check):
    """int64 ``idx[..., None] == arange(num_classes)`` (values checked as ``check`` says)."""
    shape = buffers.shape(idx)
    out = buffers.empty(shape + (num_classes,), D.int64)
    n = numel(shape)
    if n == 0:
        return out
    flat = _flat(idx)
    bt, bc, warps = _launch.rows(n, max(num_classes, 1))
    err, site, checking = buffers.error_args(check, out)
    launch(_one_hot_kernel, (cdiv(n, bt), max(cdiv(num_classes, bc), 1)), flat, out, err, n,
           num_classes, site, buffers.strides(flat)[0], CHECK=checking, BLOCK_M=bt,
           BLOCK_N=bc, num_warps=warps)
    if checking:
        buffers.checked_launch()
    return out


# ahead-of-time compile list (format: kernels/_launch.py)
def _kernels():
    out = []
    for idt, wdt in (("i64", "fp32"), ("i32", "bf16"), ("i64", "fp64")):
        out.append(aot_entry(f"embedding_fwd_{idt}_{wdt}", _embedding_fwd_kernel,
                             {"idx_ptr": idt, "w_ptr": wdt, "out_ptr": wdt, "err_ptr": "i64"},
                             {"CHECK": True, "BLOCK_M": 8, "BLOCK_N": 512}))
    for odt, wdt, acc in (("i32", "fp32", tl.float32), ("i32", "bf16", tl.float32),
                          ("i64", "fp64", tl.float64)):
        out.append(aot_entry(f"embedding_bwd_{wdt}", _embedding_bwd_kernel,
                             {"g_ptr": wdt, "order_ptr": odt, "starts_ptr": "i64",
                              "out_ptr": wdt},
                             {"ACC": acc, "BLOCK_M": 8, "BLOCK_N": 512}))
    out.append(aot_entry("one_hot", _one_hot_kernel, "i64",
                         {"CHECK": True, "BLOCK_M": 4, "BLOCK_N": 1024}))
    return out


KERNELS = _kernels()
