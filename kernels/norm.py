"""Layer normalization, variance, vector norms and the squared-error loss (Triton).

Twins of ``fallback_cpu/norm.py``: every kernel here sums squares. Statistics
are float32 for float32, float16 and bfloat16 (rounded once when stored) and
float64 for float64; row offsets are int64.

Variances are two-pass, not Welford. The mean comes first, then the sum of
squared deviations from it: exact at large offsets, where ``E[x^2] -
E[x]^2`` keeps no digit in float32, and cheaper per element than Welford's
running update (one subtraction and one multiply-add, no division). The mean
itself is summed as offsets from the row's first element (``shift``): near a
large offset those differences are exact (Sterbenz), so float32 sums keep the
deviations' digits that a plain sum of values near 1e4 rounds away (values a
few ulps apart still normalise exactly). A row that fits one block
(``ONE_BLOCK``: every LayerNorm width up to 4096 on a GPU) is read from memory
once and both passes run on registers; a longer row is read once per pass.

LayerNorm (``layer_norm_fwd``/``_bwd``):

1. ``_ln_fwd_kernel``: per row, ``mean``, ``rstd = 1 / sqrt(var + eps)`` and
   ``y = (x - mean) * rstd * w + b`` in one launch; mean and rstd are saved.
2. ``_ln_bwd_kernel``: one program per band of rows (at most 256 programs on a
   GPU) computes ``dx`` and adds ``grad * xhat`` and ``grad`` over its rows into
   its own row of a (2, P, N) partials buffer: in registers while a row fits
   one block (up to 4096 elements with unit column strides, 2048 otherwise),
   else a read-modify-write of the program's own partial row once per block of
   4 rows (never another program's row). x and g are read from memory once
   (twice for a longer row), dx written once.
3. ``_ln_dwdb_kernel`` sums the P partial rows for each column block of 16 to
   64 columns (at least 128 programs where N allows), in a fixed order: dw and
   db are deterministic, with no atomics, and the partials (a few MB) are a
   small fraction of the traffic.

``var_mean`` and ``vector_norm`` are row reductions of an (M, K) view of the
operand (kept dims the rows, reduced dims the columns; read in place when each
group collapses to one stride). Few long rows split into column chunks
(``_launch.reduce_split``) whose partial results a second launch combines in
chunk order: for the variance, the chunks' means and centred sums merge by the
law of total variance, ``M2 = sum(M2_i) + sum(n_i (mean_i - mean)^2)``.

``mse_loss_fwd`` with "sum"/"mean" is one launch of one program up to
``MSE_ONE_PROGRAM`` elements (every loss of a training script) and two beyond:
per-chunk partial sums, then their sum in chunk order.
"""
from __future__ import annotations

import math

import triton
import triton.language as tl

from .. import dtypes as D
from . import _launch, buffers
from ._jitlib import cast_to, div_rn, f64_from_bits, sqrt_rn, strided_offset, up
from ._launch import aot_entry, cdiv, float_bits, launch, launch_strided, numel
from .memory import contiguous, full
from .reduction import _as_rows, reduce  # the same row view as the reductions

# ----------------------------------------------------------------------------------------------
# layer normalization
# ----------------------------------------------------------------------------------------------


@triton.jit(do_not_specialize=("eps_bits",))
def _ln_fwd_kernel(x_ptr, w_ptr, b_ptr, y_ptr, mean_ptr, rstd_ptr, M, N, stride_xm, stride_xn,
                   stride_w, stride_b, eps_bits,
                   HAS_W: tl.constexpr, HAS_B: tl.constexpr, ONE_BLOCK: tl.constexpr,
                   ACC: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """y = (x - mean) * rstd * w + b over each of the M rows of N elements of x.

    ``y`` is a row-major (M, N) buffer; ``mean``/``rstd`` (M,) in ACC. ``eps`` arrives
    as its float64 bits (exact in either ACC).
    """
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_mask = rows < M
    x_base = rows * stride_xm
    y_base = rows * N
    cols0 = tl.arange(0, BLOCK_N).to(tl.int64)
    n_f = tl.zeros((BLOCK_M,), ACC) + N                  # N may arrive as a constexpr 1
    eps = f64_from_bits(eps_bits).to(ACC)
    if ONE_BLOCK:
        # the row in registers: both passes read it there
        col_mask = cols0 < N
        mask = row_mask[:, None] & col_mask[None, :]
        x = tl.load(x_ptr + x_base[:, None] + cols0[None, :] * stride_xn, mask=mask,
                    other=0).to(ACC)
        # 1. the mean, summed as offsets from the row's first element (exact differences at a
        #    large offset, so the sum keeps the deviations' digits); 2. the centred sum of
        #    squares (masked lanes kept at 0)
        shift = tl.load(x_ptr + x_base, mask=row_mask, other=0).to(ACC)
        d = tl.where(mask, x - shift[:, None], 0.0)
        offset = div_rn(tl.sum(d, axis=1), n_f)
        mean = shift + offset
        xc = tl.where(mask, d - offset[:, None], 0.0)
        var = div_rn(tl.sum(xc * xc, axis=1), n_f)
        rstd = div_rn(tl.zeros_like(var) + 1.0, sqrt_rn(var + eps))
        # 3. normalise, scale, shift
        y = xc * rstd[:, None]
        if HAS_W:
            y = y * tl.load(w_ptr + cols0 * stride_w, mask=col_mask, other=0).to(ACC)[None, :]
        if HAS_B:
            y = y + tl.load(b_ptr + cols0 * stride_b, mask=col_mask, other=0).to(ACC)[None, :]
        tl.store(y_ptr + y_base[:, None] + cols0[None, :], cast_to(y, y_ptr.dtype.element_ty),
                 mask=mask)
    else:
        # a long row, walked in blocks once per pass (per-lane sums, reduced at the end)
        shift = tl.load(x_ptr + x_base, mask=row_mask, other=0).to(ACC)
        total = tl.zeros((BLOCK_M, BLOCK_N), ACC)
        for k0 in range(0, N, BLOCK_N):
            cols = k0 + cols0
            mask = row_mask[:, None] & (cols < N)[None, :]
            x = tl.load(x_ptr + x_base[:, None] + cols[None, :] * stride_xn, mask=mask,
                        other=0).to(ACC)
            total += tl.where(mask, x - shift[:, None], 0.0)
        offset = div_rn(tl.sum(total, axis=1), n_f)
        mean = shift + offset
        sq = tl.zeros((BLOCK_M, BLOCK_N), ACC)
        for k0 in range(0, N, BLOCK_N):
            cols = k0 + cols0
            mask = row_mask[:, None] & (cols < N)[None, :]
            x = tl.load(x_ptr + x_base[:, None] + cols[None, :] * stride_xn, mask=mask,
                        other=0).to(ACC)
            xc = tl.where(mask, (x - shift[:, None]) - offset[:, None], 0.0)
            sq += xc * xc
        var = div_rn(tl.sum(sq, axis=1), n_f)
        rstd = div_rn(tl.zeros_like(var) + 1.0, sqrt_rn(var + eps))
        for k0 in range(0, N, BLOCK_N):
            cols = k0 + cols0
            col_mask = cols < N
            mask = row_mask[:, None] & col_mask[None, :]
            x = tl.load(x_ptr + x_base[:, None] + cols[None, :] * stride_xn, mask=mask,
                        other=0).to(ACC)
            y = ((x - shift[:, None]) - offset[:, None]) * rstd[:, None]
            if HAS_W:
                y = y * tl.load(w_ptr + cols * stride_w, mask=col_mask, other=0).to(ACC)[None, :]
            if HAS_B:
                y = y + tl.load(b_ptr + cols * stride_b, mask=col_mask, other=0).to(ACC)[None, :]
            tl.store(y_ptr + y_base[:, None] + cols[None, :], cast_to(y, y_ptr.dtype.element_ty),
                     mask=mask)
    tl.store(mean_ptr + rows, mean, mask=row_mask)
    tl.store(rstd_ptr + rows, rstd, mask=row_mask)


@triton.jit
def _ln_bwd_kernel(x_ptr, w_ptr, g_ptr, mean_ptr, rstd_ptr, dx_ptr, part_ptr, M, N, P,
                   rows_per_program, stride_xm, stride_xn, stride_w, stride_gm, stride_gn,
                   HAS_W: tl.constexpr, NEED_DX: tl.constexpr, NEED_DWB: tl.constexpr,
                   ONE_BLOCK: tl.constexpr, ACC: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """dx for the rows [pid * rows_per_program, ...) and this program's partial dw, db.

    Derivation: y = xhat * w + b with xhat = (x - mean) * rstd. With wg = g * w,
    dL/dxhat = wg, and since mean and rstd depend on the whole row,
    dx = rstd * (wg - mean_row(wg) - xhat * mean_row(wg * xhat)) (the projection of wg
    off the directions 1 and xhat). dw = sum_rows(g * xhat), db = sum_rows(g): this
    program's share goes to part[0, pid, :] and part[1, pid, :].
    """
    pid = tl.program_id(0).to(tl.int64)
    row_lo = pid * rows_per_program
    row_hi = tl.minimum(row_lo + rows_per_program, M)
    cols0 = tl.arange(0, BLOCK_N).to(tl.int64)
    dw_row = part_ptr + pid * N                          # this program's own partial rows
    db_row = part_ptr + (P + pid) * N
    if ONE_BLOCK:
        col_mask = cols0 < N
        if HAS_W:
            w = tl.load(w_ptr + cols0 * stride_w, mask=col_mask, other=0).to(ACC)
        dw_acc = tl.zeros((BLOCK_N,), ACC)
        db_acc = tl.zeros((BLOCK_N,), ACC)
        for r0 in range(row_lo, row_hi, BLOCK_M):
            rows = r0 + tl.arange(0, BLOCK_M)
            row_mask = rows < row_hi
            mask = row_mask[:, None] & col_mask[None, :]
            x = tl.load(x_ptr + rows[:, None] * stride_xm + cols0[None, :] * stride_xn,
                        mask=mask, other=0).to(ACC)
            g = tl.load(g_ptr + rows[:, None] * stride_gm + cols0[None, :] * stride_gn,
                        mask=mask, other=0).to(ACC)
            mean = tl.load(mean_ptr + rows, mask=row_mask, other=0)
            rstd = tl.load(rstd_ptr + rows, mask=row_mask, other=0)
            xhat = tl.where(mask, (x - mean[:, None]) * rstd[:, None], 0.0)
            if NEED_DX:
                if HAS_W:
                    wg = g * w[None, :]
                else:
                    wg = g
                n_f = tl.zeros((BLOCK_M,), ACC) + N
                c1 = div_rn(tl.sum(wg * xhat, axis=1), n_f)
                c2 = div_rn(tl.sum(wg, axis=1), n_f)
                dx = (wg - xhat * c1[:, None] - c2[:, None]) * rstd[:, None]
                tl.store(dx_ptr + rows[:, None] * N + cols0[None, :],
                         cast_to(dx, dx_ptr.dtype.element_ty), mask=mask)
            if NEED_DWB:
                dw_acc += tl.sum(g * xhat, axis=0)
                db_acc += tl.sum(g, axis=0)
        if NEED_DWB:
            tl.store(dw_row + cols0, dw_acc, mask=col_mask)
            tl.store(db_row + cols0, db_acc, mask=col_mask)
    else:
        # long rows, BLOCK_M at a time, walked in column blocks: 1. the two row sums; 2. dx,
        # and the block's column sums of g * xhat and g added into this program's own partial
        # rows (zeroed by the host): one read-modify-write per BLOCK_M rows
        n_f = tl.zeros((BLOCK_M,), ACC) + N
        for r0 in range(row_lo, row_hi, BLOCK_M):
            rows = r0 + tl.arange(0, BLOCK_M)
            row_mask = rows < row_hi
            mean = tl.load(mean_ptr + rows, mask=row_mask, other=0)
            rstd = tl.load(rstd_ptr + rows, mask=row_mask, other=0)
            s1 = tl.zeros((BLOCK_M, BLOCK_N), ACC)
            s2 = tl.zeros((BLOCK_M, BLOCK_N), ACC)
            if NEED_DX:
                for k0 in range(0, N, BLOCK_N):
                    cols = k0 + cols0
                    col_mask = cols < N
                    mask = row_mask[:, None] & col_mask[None, :]
                    x = tl.load(x_ptr + rows[:, None] * stride_xm + cols[None, :] * stride_xn,
                                mask=mask, other=0).to(ACC)
                    g = tl.load(g_ptr + rows[:, None] * stride_gm + cols[None, :] * stride_gn,
                                mask=mask, other=0).to(ACC)
                    if HAS_W:
                        g = g * tl.load(w_ptr + cols * stride_w, mask=col_mask,
                                        other=0).to(ACC)[None, :]
                    xhat = tl.where(mask, (x - mean[:, None]) * rstd[:, None], 0.0)
                    s1 += g * xhat
                    s2 += g
            c1 = div_rn(tl.sum(s1, axis=1), n_f)
            c2 = div_rn(tl.sum(s2, axis=1), n_f)
            for k0 in range(0, N, BLOCK_N):
                cols = k0 + cols0
                col_mask = cols < N
                mask = row_mask[:, None] & col_mask[None, :]
                x = tl.load(x_ptr + rows[:, None] * stride_xm + cols[None, :] * stride_xn,
                            mask=mask, other=0).to(ACC)
                g = tl.load(g_ptr + rows[:, None] * stride_gm + cols[None, :] * stride_gn,
                            mask=mask, other=0).to(ACC)
                xhat = tl.where(mask, (x - mean[:, None]) * rstd[:, None], 0.0)
                if NEED_DX:
                    if HAS_W:
                        wg = g * tl.load(w_ptr + cols * stride_w, mask=col_mask,
                                         other=0).to(ACC)[None, :]
                    else:
                        wg = g
                    dx = (wg - xhat * c1[:, None] - c2[:, None]) * rstd[:, None]
                    tl.store(dx_ptr + rows[:, None] * N + cols[None, :],
                             cast_to(dx, dx_ptr.dtype.element_ty), mask=mask)
                if NEED_DWB:
                    tl.store(dw_row + cols, tl.load(dw_row + cols, mask=col_mask, other=0)
                             + tl.sum(g * xhat, axis=0), mask=col_mask)
                    tl.store(db_row + cols, tl.load(db_row + cols, mask=col_mask, other=0)
                             + tl.sum(g, axis=0), mask=col_mask)


@triton.jit
def _ln_dwdb_kernel(part_ptr, dw_ptr, db_ptr, P, N,
                    HAS_DW: tl.constexpr, HAS_DB: tl.constexpr, ACC: tl.constexpr,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """dw[n] = sum_p part[0, p, n] and db[n] = sum_p part[1, p, n] over the P partial rows.

    One program per BLOCK_N columns walks the partial rows BLOCK_M at a time, each lane
    adding its own rows, then sums its lanes: the same order on every run (no atomics).
    """
    cols = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    col_mask = cols < N
    p0s = tl.arange(0, BLOCK_M).to(tl.int64)
    acc_w = tl.zeros((BLOCK_M, BLOCK_N), ACC)
    acc_b = tl.zeros((BLOCK_M, BLOCK_N), ACC)
    for p0 in range(0, P, BLOCK_M):
        ps = p0 + p0s
        mask = (ps < P)[:, None] & col_mask[None, :]
        if HAS_DW:
            acc_w += tl.load(part_ptr + ps[:, None] * N + cols[None, :], mask=mask, other=0)
        if HAS_DB:
            acc_b += tl.load(part_ptr + (P + ps[:, None]) * N + cols[None, :], mask=mask, other=0)
    if HAS_DW:
        tl.store(dw_ptr + cols, cast_to(tl.sum(acc_w, axis=0), dw_ptr.dtype.element_ty),
                 mask=col_mask)
    if HAS_DB:
        tl.store(db_ptr + cols, cast_to(tl.sum(acc_b, axis=0), db_ptr.dtype.element_ty),
                 mask=col_mask)


def _acc(dt):
    return tl.float64 if dt is D.float64 else tl.float32


def _acc_dtype(dt):
    return D.float64 if dt is D.float64 else D.float32


def _flat(w):
    """A 1-D view (or copy) of a weight of any shape and its stride, or (None, 0)."""
    if w is None:
        return None, 0
    n = numel(buffers.shape(w))
    geo = _launch.layout(buffers.shape(w), (tuple(buffers.strides(w)),))
    if geo is None or geo[0] != 1:
        w = contiguous(w)
        return buffers.view_shape(w, (n,)), 1
    return w, geo[2][0][3]


# The forward holds one tile and takes 4096 elements. The backward holds x, g, xhat and wg
# tiles live: with unit column strides (Triton compiles them as constexpr 1: vector loads, one
# address per four elements) a 4096-element tile over 16 warps stays within the 128 registers a
# thread has there, so rows up to 4096 are read once; strided operands (an address per element)
# and float64 take 2048 over 8 warps (tests/test_aot_compile.py builds both).
LN_FWD_TILE = 4096
LN_BWD_TILE = 2048
LN_BWD_TILE_UNIT = 4096
# a longer row is walked in column blocks, LN_BWD_LOOP_ROWS rows at a time: the partial dw, db
# rows are read-modified-written once per row block, not once per row
LN_BWD_LOOP_ROWS = 4
# programs of the backward (each adds its band of rows into its own partial row)
LN_BWD_PROGRAMS_GPU = 256
LN_BWD_PROGRAMS_INTERPRET = 4
# the second stage of dw, db: column blocks of 16 to 64 columns, as narrow as keeps at least
# LN_DWDB_PROGRAMS programs busy (the P x N partials are a few MB, read once: the time is
# latency, so many short programs beat a few long ones), each walking the partial rows in
# tiles of LN_DWDB_TILE elements per accumulator
LN_DWDB_COLS = (16, 64)
LN_DWDB_PROGRAMS = 128
LN_DWDB_TILE = 2048


def _ln_bwd_blocks(m, n, unit):
    """``(BLOCK_M, BLOCK_N, num_warps, ONE_BLOCK)`` of ``_ln_bwd_kernel`` for ``m`` rows of
    ``n``; ``unit``: unit column strides and not float64 (rows longer than LN_BWD_TILE then
    take the larger tile)."""
    tile = LN_BWD_TILE_UNIT if unit and n > LN_BWD_TILE else LN_BWD_TILE
    bm, bn, warps = _launch.rows(m, n, max_elems=tile)
    if n <= bn:
        return bm, bn, warps, True
    bm = min(LN_BWD_LOOP_ROWS, _launch.next_pow2(m))
    return bm, bn // bm, warps, False


def _dwdb_blocks(programs, n):
    """``(BLOCK_M, BLOCK_N, num_warps)`` of ``_ln_dwdb_kernel`` on a GPU for ``programs``
    partial rows of ``n`` columns (the launcher and the ahead-of-time entries both ask here)."""
    lo, hi = LN_DWDB_COLS
    bn = max(lo, min(hi, _launch.next_pow2(cdiv(n, LN_DWDB_PROGRAMS))))
    bm = min(_launch.next_pow2(programs), LN_DWDB_TILE // bn)
    return bm, bn, _launch.warps(bm * bn)


def _ln_shape(x, ndim):
    shape = buffers.shape(x)
    dims = tuple(range(len(shape) - ndim, len(shape)))
    return shape, dims


def layer_norm_fwd(x, weight, bias, ndim, eps):
    """``(y, mean, rstd)``: y = (x - mean) * rstd * weight + bias over the last ``ndim`` dims."""
    shape, dims = _ln_shape(x, ndim)
    dt = buffers.dtype_of(x)
    xr, m, n, sm, sn = _as_rows(x, dims)
    y = buffers.empty(shape, dt)
    mean = buffers.empty((m,), _acc_dtype(dt))
    rstd = buffers.empty((m,), _acc_dtype(dt))
    if m == 0 or n == 0:
        if m:
            mean = full((m,), math.nan, _acc_dtype(dt))
            rstd = full((m,), 1.0 / math.sqrt(eps) if eps > 0 else math.inf, _acc_dtype(dt))
        return y, mean, rstd
    wb, sw = _flat(weight)
    bb, sb = _flat(bias)
    bm, bn, warps = _launch.rows(m, n, max_elems=LN_FWD_TILE)
    launch(_ln_fwd_kernel, (cdiv(m, bm),),
           xr, wb if wb is not None else xr, bb if bb is not None else xr, y, mean, rstd,
           m, n, sm, sn, sw, sb, float_bits(eps), HAS_W=wb is not None, HAS_B=bb is not None,
           ONE_BLOCK=n <= bn, ACC=_acc(dt), BLOCK_M=bm, BLOCK_N=bn, num_warps=warps)
    return y, mean, rstd


def layer_norm_bwd(grad, x, weight, mean, rstd, ndim, need_dx, need_dw, need_db):
    """``(dx, dw, db)``; dw and db from per-program partials summed in a fixed order."""
    shape, dims = _ln_shape(x, ndim)
    wshape = shape[len(shape) - ndim:]
    dt = buffers.dtype_of(x)
    need_dw = bool(need_dw and weight is not None)
    need_db = bool(need_db)
    xr, m, n, sm, sn = _as_rows(x, dims)
    gr, _, _, sgm, sgn = _as_rows(grad, dims)
    dx = buffers.empty(shape, buffers.dtype_of(grad)) if need_dx else None
    dw = buffers.empty(wshape, buffers.dtype_of(weight)) if need_dw else None
    db = buffers.empty(wshape, buffers.dtype_of(grad)) if need_db else None
    if m == 0 or n == 0:                                 # nothing to sum: zero gradients
        dw = full(wshape, 0, buffers.dtype_of(weight)) if need_dw else None
        db = full(wshape, 0, buffers.dtype_of(grad)) if need_db else None
        return dx, dw, db
    wb, sw = _flat(weight)
    unit = sn == 1 and sgn == 1 and sw in (0, 1) and dt is not D.float64
    bm, bn, warps, one_block = _ln_bwd_blocks(m, n, unit)
    cap = LN_BWD_PROGRAMS_INTERPRET if _launch.INTERPRET else LN_BWD_PROGRAMS_GPU
    per = cdiv(cdiv(m, cap), bm) * bm                   # rows per program, whole row blocks
    programs = cdiv(m, per)
    need_dwb = need_dw or need_db
    acc_dt = _acc_dtype(dt)
    if need_dwb:
        part = full((2, programs, n), 0, acc_dt) if not one_block else \
            buffers.empty((2, programs, n), acc_dt)
    else:
        part = mean                                      # any pointer: never touched
    launch(_ln_bwd_kernel, (programs,),
           xr, wb if wb is not None else xr, gr, mean, rstd, dx if dx is not None else xr, part,
           m, n, programs, per, sm, sn, sw, sgm, sgn, HAS_W=wb is not None,
           NEED_DX=bool(need_dx), NEED_DWB=need_dwb, ONE_BLOCK=one_block, ACC=_acc(dt),
           BLOCK_M=bm, BLOCK_N=bn, num_warps=warps)
    if need_dwb:
        if _launch.INTERPRET:
            bp, bn2, warps2 = _launch.rows(programs, n)
        else:
            bp, bn2, warps2 = _dwdb_blocks(programs, n)
        dwf = buffers.view_shape(dw, (n,)) if need_dw else part
        dbf = buffers.view_shape(db, (n,)) if need_db else part
        launch(_ln_dwdb_kernel, (cdiv(n, bn2),), part, dwf, dbf, programs, n,
               HAS_DW=need_dw, HAS_DB=need_db, ACC=_acc(dt), BLOCK_M=bp, BLOCK_N=bn2,
               num_warps=warps2)
    return dx, dw, db


# ----------------------------------------------------------------------------------------------
# variance
# ----------------------------------------------------------------------------------------------


@triton.jit(do_not_specialize=("divisor_bits",))
def _moments_kernel(x_ptr, var_ptr, mean_ptr, M, K, stride_xm, stride_xk, chunk, n_chunks,
                    divisor_bits, FINAL: tl.constexpr, ACC: tl.constexpr,
                    BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr):
    """Mean and centred sum of squares of x[m, s*chunk : (s+1)*chunk], two passes.

    FINAL (one chunk per row): var = M2 / divisor and mean, in the outputs' dtype.
    Otherwise the chunk's (M2, mean) go to var[m * n_chunks + s], mean[...] in ACC.
    """
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_mask = rows < M
    split = tl.program_id(1).to(tl.int64)
    k_lo = split * chunk
    k_hi = tl.minimum(k_lo + chunk, K)
    cols0 = tl.arange(0, BLOCK_K).to(tl.int64)
    count = tl.zeros((BLOCK_M,), ACC) + (k_hi - k_lo)
    # 1. the chunk's mean, summed as offsets from its first element (exact differences at a
    #    large offset: the sum keeps the deviations' digits)
    first = tl.zeros_like(rows) + k_lo
    shift = tl.load(x_ptr + rows * stride_xm + first * stride_xk, mask=row_mask & (first < k_hi),
                    other=0).to(ACC)
    acc = tl.zeros((BLOCK_M, BLOCK_K), ACC)
    for k0 in range(k_lo, k_hi, BLOCK_K):
        cols = k0 + cols0
        mask = row_mask[:, None] & (cols < k_hi)[None, :]
        x = tl.load(x_ptr + rows[:, None] * stride_xm + cols[None, :] * stride_xk, mask=mask,
                    other=0).to(ACC)
        acc += tl.where(mask, x - shift[:, None], 0.0)
    offset = div_rn(tl.sum(acc, axis=1), count)
    mean = shift + offset
    # 2. the sum of squared deviations from it
    acc = tl.zeros((BLOCK_M, BLOCK_K), ACC)
    for k0 in range(k_lo, k_hi, BLOCK_K):
        cols = k0 + cols0
        mask = row_mask[:, None] & (cols < k_hi)[None, :]
        x = tl.load(x_ptr + rows[:, None] * stride_xm + cols[None, :] * stride_xk, mask=mask,
                    other=0).to(ACC)
        d = tl.where(mask, (x - shift[:, None]) - offset[:, None], 0.0)
        acc += d * d
    m2 = tl.sum(acc, axis=1)
    if FINAL:
        var = div_rn(m2, tl.zeros_like(m2) + f64_from_bits(divisor_bits).to(ACC))
        tl.store(var_ptr + rows, cast_to(var, var_ptr.dtype.element_ty), mask=row_mask)
        tl.store(mean_ptr + rows, cast_to(mean, mean_ptr.dtype.element_ty), mask=row_mask)
    else:
        tl.store(var_ptr + rows * n_chunks + split, m2, mask=row_mask)
        tl.store(mean_ptr + rows * n_chunks + split, mean, mask=row_mask)


@triton.jit(do_not_specialize=("divisor_bits",))
def _moments_merge_kernel(m2_ptr, pmean_ptr, var_ptr, mean_ptr, M, K, chunk, n_chunks,
                          divisor_bits, ACC: tl.constexpr,
                          BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr):
    """Merge each row's chunk statistics in chunk order (the law of total variance):
    mean = sum(n_i mean_i) / K and M2 = sum(M2_i + n_i (mean_i - mean)^2)."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_mask = rows < M
    c0 = tl.arange(0, BLOCK_K).to(tl.int64)
    k_f = tl.zeros((BLOCK_M,), ACC) + K
    acc = tl.zeros((BLOCK_M, BLOCK_K), ACC)
    for s0 in range(0, n_chunks, BLOCK_K):
        cs = s0 + c0
        mask = row_mask[:, None] & (cs < n_chunks)[None, :]
        n_i = (tl.minimum(cs * chunk + chunk, K) - cs * chunk).to(ACC)
        mi = tl.load(pmean_ptr + rows[:, None] * n_chunks + cs[None, :], mask=mask, other=0)
        acc += tl.where(mask, n_i[None, :] * mi, 0.0)
    mean = div_rn(tl.sum(acc, axis=1), k_f)
    acc = tl.zeros((BLOCK_M, BLOCK_K), ACC)
    for s0 in range(0, n_chunks, BLOCK_K):
        cs = s0 + c0
        mask = row_mask[:, None] & (cs < n_chunks)[None, :]
        n_i = (tl.minimum(cs * chunk + chunk, K) - cs * chunk).to(ACC)
        mi = tl.load(pmean_ptr + rows[:, None] * n_chunks + cs[None, :], mask=mask, other=0)
        m2 = tl.load(m2_ptr + rows[:, None] * n_chunks + cs[None, :], mask=mask, other=0)
        d = mi - mean[:, None]
        acc += tl.where(mask, m2 + n_i[None, :] * d * d, 0.0)
    m2 = tl.sum(acc, axis=1)
    var = div_rn(m2, tl.zeros_like(m2) + f64_from_bits(divisor_bits).to(ACC))
    tl.store(var_ptr + rows, cast_to(var, var_ptr.dtype.element_ty), mask=row_mask)
    tl.store(mean_ptr + rows, cast_to(mean, mean_ptr.dtype.element_ty), mask=row_mask)


@triton.jit(do_not_specialize=("scale_bits",))
def _var_bwd_kernel(g_ptr, x_ptr, mean_ptr, std_ptr, out_ptr, scale_bits, n, size1, size2, size3,
                    stride_g0, stride_g1, stride_g2, stride_g3,
                    stride_x0, stride_x1, stride_x2, stride_x3,
                    stride_mean_0, stride_mean_1, stride_mean_2, stride_mean_3,
                    stride_std_0, stride_std_1, stride_std_2, stride_std_3,
                    stride_out_0, stride_out_1, stride_out_2, stride_out_3,
                    HAS_STD: tl.constexpr, NDIM: tl.constexpr, BLOCK: tl.constexpr):
    """out = scale * g * (x - mean), scale = 2 / (K - correction) (g, mean, std broadcast).

    HAS_STD (the gradient of std = sqrt(var)): g is first grad / (2 std), 0 where std is
    0 (PyTorch's choice at a constant row, where the derivative is infinite).
    """
    lin = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = lin < n
    g = up(tl.load(g_ptr + strided_offset(lin, size1, size2, size3, stride_g0, stride_g1,
                                          stride_g2, stride_g3, NDIM), mask=mask, other=0))
    x = up(tl.load(x_ptr + strided_offset(lin, size1, size2, size3, stride_x0, stride_x1,
                                          stride_x2, stride_x3, NDIM), mask=mask, other=0))
    mu = up(tl.load(mean_ptr + strided_offset(lin, size1, size2, size3, stride_mean_0,
                                              stride_mean_1, stride_mean_2, stride_mean_3, NDIM),
                    mask=mask, other=0))
    if HAS_STD:
        sd = up(tl.load(std_ptr + strided_offset(lin, size1, size2, size3, stride_std_0,
                                                 stride_std_1, stride_std_2, stride_std_3, NDIM),
                        mask=mask, other=1))
        g = tl.where(sd == 0, 0.0, div_rn(g, sd * 2.0))
    scale = f64_from_bits(scale_bits).to(x.dtype)
    r = scale * g * (x - mu)
    out_off = strided_offset(lin, size1, size2, size3, stride_out_0, stride_out_1, stride_out_2,
                             stride_out_3, NDIM)
    tl.store(out_ptr + out_off, cast_to(r, out_ptr.dtype.element_ty), mask=mask)


def _keep(shape, dims):
    return tuple(1 if i in dims else s for i, s in enumerate(shape))


def _all_dims(shape, dims):
    return tuple(sorted(dims)) if dims else tuple(range(len(shape)))


def var_mean(x, dims, correction):
    """``(var, mean)`` over ``dims`` (empty: all), the reduced dims kept as size 1."""
    shape = buffers.shape(x)
    dims = _all_dims(shape, dims)
    dt = buffers.dtype_of(x)
    kshape = _keep(shape, dims)
    var = buffers.empty(kshape, dt)
    mean = buffers.empty(kshape, dt)
    xr, m, k, sm, sk = _as_rows(x, dims)
    if m == 0:
        return var, mean
    divisor = float_bits(max(k - correction, 0))
    acc = _acc(dt)
    var_f, mean_f = buffers.view_shape(var, (m,)), buffers.view_shape(mean, (m,))
    n_chunks, chunk = _launch.reduce_split(m, max(k, 1))
    if n_chunks == 1:
        bm, bk, warps = _launch.rows(m, max(k, 1))
        launch(_moments_kernel, (cdiv(m, bm), 1), xr, var_f, mean_f, m, k, sm, sk, max(k, 1), 1,
               divisor, FINAL=True, ACC=acc, BLOCK_M=bm, BLOCK_K=bk, num_warps=warps)
        return var, mean
    acc_dt = _acc_dtype(dt)
    pm2 = buffers.empty((m, n_chunks), acc_dt)
    pmean = buffers.empty((m, n_chunks), acc_dt)
    bm, bk, warps = _launch.rows(m, chunk)
    launch(_moments_kernel, (cdiv(m, bm), n_chunks), xr, pm2, pmean, m, k, sm, sk, chunk,
           n_chunks, divisor, FINAL=False, ACC=acc, BLOCK_M=bm, BLOCK_K=bk, num_warps=warps)
    bm, bc, warps = _launch.rows(m, n_chunks)
    launch(_moments_merge_kernel, (cdiv(m, bm),), pm2, pmean, var_f, mean_f, m, k, chunk,
           n_chunks, divisor, ACC=acc, BLOCK_M=bm, BLOCK_K=bc, num_warps=warps)
    return var, mean


def var_bwd(grad, x, mean, std, dims, correction):
    """``g * 2 * (x - mean) / max(K - correction, 0)`` (g = grad, or grad / (2 std) masked
    at std == 0 for the standard deviation) in one launch."""
    shape = buffers.shape(x)
    dims = _all_dims(shape, dims)
    div = max(numel(tuple(shape[d] for d in dims)) - correction, 0)
    scale = 2.0 / div if div else math.inf
    out = buffers.empty(shape, buffers.dtype_of(grad))
    mean_e = buffers.expand(mean, shape)
    std_e = mean_e if std is None else buffers.expand(std, shape)
    launch_strided(_var_bwd_kernel, [buffers.expand(grad, shape), x, mean_e, std_e, out],
                   (float_bits(scale),), HAS_STD=std is not None)
    return out


# ----------------------------------------------------------------------------------------------
# vector norms
# ----------------------------------------------------------------------------------------------


@triton.jit(do_not_specialize=("p_bits",))
def _norm_kernel(x_ptr, ref_ptr, out_ptr, M, K, stride_xm, stride_xk, chunk, n_chunks, p_bits,
                 ORD: tl.constexpr, STAGE: tl.constexpr, ACC: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr):
    """Row norms of x (M, K) over column chunks.

    ORD: "two" (sum x^2, then sqrt), "one" (sum |x|), "p" (sum |x|^p, then ^(1/p)),
    "inf" (max |x|), "ninf" (min |x|), "zero" (count x != 0), "ties" (count |x| == ref[m]
    or NaN: the elements sharing an inf-norm's gradient).
    STAGE: "full" (one chunk: x -> the norm, in out's dtype), "partial" (a chunk's sum or
    extreme -> out[m * n_chunks + s] in ACC), "final" (x holds the partials: combine them
    and take the root).
    """
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_mask = rows < M
    split = tl.program_id(1).to(tl.int64)
    k_lo = split * chunk
    k_hi = tl.minimum(k_lo + chunk, K)
    cols0 = tl.arange(0, BLOCK_K).to(tl.int64)
    p = f64_from_bits(p_bits).to(ACC)
    if ORD == "ties":
        ref = tl.load(ref_ptr + rows, mask=row_mask, other=0).to(ACC)
    if ORD == "ninf":
        acc = tl.full((BLOCK_M, BLOCK_K), float("inf"), ACC)    # min's identity
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_K), ACC)                 # sum's, and max's over |x|
    nan_seen = tl.zeros((BLOCK_M, BLOCK_K), tl.int32)
    for k0 in range(k_lo, k_hi, BLOCK_K):
        cols = k0 + cols0
        mask = row_mask[:, None] & (cols < k_hi)[None, :]
        x = tl.load(x_ptr + rows[:, None] * stride_xm + cols[None, :] * stride_xk, mask=mask,
                    other=0).to(ACC)
        if STAGE == "final":
            v = x                                    # partials: already powered
            if ORD == "ninf":
                v = tl.where(mask, v, float("inf"))
        else:
            a = tl.abs(x)
            if ORD == "two":
                v = a * a
            elif ORD == "p":
                v = tl.where(a == 0, 0.0, tl.exp(p * tl.log(a)))
            elif ORD == "zero":
                v = tl.where(mask & (a != 0), 1.0, 0.0).to(ACC)
            elif ORD == "ties":
                v = tl.where(mask & ((a == ref[:, None]) | (a != a)), 1.0, 0.0).to(ACC)
            elif ORD == "ninf":
                v = tl.where(mask, a, float("inf"))
            else:
                v = a
        if ORD == "inf":
            acc = tl.maximum(acc, v)
            nan_seen = nan_seen | (v != v).to(tl.int32)
        elif ORD == "ninf":
            acc = tl.minimum(acc, v)
            nan_seen = nan_seen | (v != v).to(tl.int32)
        else:
            acc += v
    if ORD == "inf":
        r = tl.max(acc, axis=1)
    elif ORD == "ninf":
        r = tl.min(acc, axis=1)
    else:
        r = tl.sum(acc, axis=1)
    if ORD == "inf" or ORD == "ninf":
        r = tl.where(tl.max(nan_seen, axis=1) > 0, float("nan"), r)
    if STAGE == "partial":
        tl.store(out_ptr + rows * n_chunks + split, r, mask=row_mask)
    else:
        if ORD == "two":
            r = sqrt_rn(r)
        elif ORD == "p":
            r = tl.where(r == 0, 0.0, tl.exp(tl.log(r) / p))
        tl.store(out_ptr + rows, cast_to(r, out_ptr.dtype.element_ty), mask=row_mask)


@triton.jit(do_not_specialize=("p_bits",))
def _norm_bwd_kernel(g_ptr, x_ptr, norm_ptr, count_ptr, out_ptr, p_bits, n, size1, size2, size3,
                     stride_g0, stride_g1, stride_g2, stride_g3,
                     stride_x0, stride_x1, stride_x2, stride_x3,
                     stride_norm_0, stride_norm_1, stride_norm_2, stride_norm_3,
                     stride_count_0, stride_count_1, stride_count_2, stride_count_3,
                     stride_out_0, stride_out_1, stride_out_2, stride_out_3,
                     ORD: tl.constexpr, NDIM: tl.constexpr, BLOCK: tl.constexpr):
    """The gradient of a vector norm, elementwise (g, norm and count broadcast to x's shape).

    d/dx (sum |x|^p)^(1/p) = sign(x) |x|^(p-1) / norm^(p-1): for p = 2, x / norm; for
    p = 1, sign(x); 0 where norm is 0 (PyTorch's subgradient), and for p < 1 (the
    "plow" branch) 0 where x is 0, computed as sign(x) |x|^(p-1) * norm^(1-p). inf and
    -inf: sign(x) at the elements whose |x| is the norm (or NaN), over their count.
    """
    lin = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = lin < n
    g = up(tl.load(g_ptr + strided_offset(lin, size1, size2, size3, stride_g0, stride_g1,
                                          stride_g2, stride_g3, NDIM), mask=mask, other=0))
    x = up(tl.load(x_ptr + strided_offset(lin, size1, size2, size3, stride_x0, stride_x1,
                                          stride_x2, stride_x3, NDIM), mask=mask, other=0))
    nrm = up(tl.load(norm_ptr + strided_offset(lin, size1, size2, size3, stride_norm_0,
                                               stride_norm_1, stride_norm_2, stride_norm_3, NDIM),
                     mask=mask, other=1))
    sign = tl.where(x > 0, 1.0, tl.where(x < 0, -1.0, 0.0))    # sign(NaN) = 0, as torch
    if ORD == "zero":
        r = g * 0.0
    elif ORD == "one":
        r = g * sign
    elif ORD == "two":
        r = tl.where(nrm == 0, 0.0, g / nrm) * x
    elif ORD == "inf":
        count = up(tl.load(count_ptr + strided_offset(lin, size1, size2, size3, stride_count_0,
                                                      stride_count_1, stride_count_2,
                                                      stride_count_3, NDIM),
                           mask=mask, other=1))
        a = tl.abs(x)
        r = tl.where((a == nrm) | (a != a), sign * (g / count), 0.0)
    else:
        p = f64_from_bits(p_bits).to(x.dtype)
        a = tl.abs(x)
        scaled = sign * tl.exp((p - 1.0) * tl.log(a))
        if ORD == "plow":
            r = tl.where(x == 0, 0.0, scaled) * (g * tl.exp((1.0 - p) * tl.log(nrm)))
        else:
            scaled = tl.where(a == 0, 0.0, scaled)          # 0^(p-1) = 0 for p > 1
            r = scaled * tl.where(nrm == 0, 0.0, g / tl.exp((p - 1.0) * tl.log(nrm)))
    out_off = strided_offset(lin, size1, size2, size3, stride_out_0, stride_out_1, stride_out_2,
                             stride_out_3, NDIM)
    tl.store(out_ptr + out_off, cast_to(r, out_ptr.dtype.element_ty), mask=mask)


def _ord(p):
    if p == math.inf:
        return "inf"
    if p == -math.inf:
        return "ninf"
    return {0: "zero", 1: "one", 2: "two"}.get(p, "p")


def _row_norms(x, dims, p, ord_, ref, out_dt):
    """The ``ord_`` reduction of ``x`` over ``dims`` as an (M,) buffer in ``out_dt``."""
    dt = buffers.dtype_of(x)
    xr, m, k, sm, sk = _as_rows(x, dims)
    out = buffers.empty((m,), out_dt)
    if m == 0:
        return out
    acc = _acc(dt)
    pb = float_bits(p if ord_ == "p" else 0.0)
    ref = ref if ref is not None else out
    n_chunks, chunk = _launch.reduce_split(m, max(k, 1))
    if n_chunks == 1:
        bm, bk, warps = _launch.rows(m, max(k, 1))
        launch(_norm_kernel, (cdiv(m, bm), 1), xr, ref, out, m, k, sm, sk, max(k, 1), 1, pb,
               ORD=ord_, STAGE="full", ACC=acc, BLOCK_M=bm, BLOCK_K=bk, num_warps=warps)
        return out
    part = buffers.empty((m, n_chunks), _acc_dtype(dt))
    bm, bk, warps = _launch.rows(m, chunk)
    launch(_norm_kernel, (cdiv(m, bm), n_chunks), xr, ref, part, m, k, sm, sk, chunk, n_chunks,
           pb, ORD=ord_, STAGE="partial", ACC=acc, BLOCK_M=bm, BLOCK_K=bk, num_warps=warps)
    final_ord = "one" if ord_ in ("zero", "ties") else ord_       # counts add up as sums
    bm, bk, warps = _launch.rows(m, n_chunks)
    launch(_norm_kernel, (cdiv(m, bm), 1), part, ref, out, m, n_chunks, n_chunks, 1, n_chunks,
           1, pb, ORD=final_ord, STAGE="final", ACC=acc, BLOCK_M=bm, BLOCK_K=bk,
           num_warps=warps)
    return out


def vector_norm(x, dims, p, keepdim):
    """``torch.linalg.vector_norm`` over ``dims`` (empty: all)."""
    shape = buffers.shape(x)
    dims = _all_dims(shape, dims)
    out_shape = _keep(shape, dims) if keepdim else \
        tuple(s for i, s in enumerate(shape) if i not in dims)
    out = _row_norms(x, dims, p, _ord(p), None, buffers.dtype_of(x))
    return buffers.view_shape(out, out_shape)


def vector_norm_bwd(grad, x, norm, dims, p):
    """The gradient of ``vector_norm``, one elementwise launch (inf norms: one more to count
    the tied elements)."""
    shape = buffers.shape(x)
    dims = _all_dims(shape, dims)
    ord_ = _ord(p)
    if ord_ == "p" and p < 1:
        ord_ = "plow"
    norm_e = buffers.expand(norm, shape)
    count = norm_e
    if ord_ in ("inf", "ninf"):
        kshape = _keep(shape, dims)
        ties = _row_norms(x, dims, p, "ties", contiguous(norm),
                          _acc_dtype(buffers.dtype_of(x)))
        count = buffers.expand(buffers.view_shape(ties, kshape), shape)
        ord_ = "inf"
    out = buffers.empty(shape, buffers.dtype_of(grad))
    launch_strided(_norm_bwd_kernel, [buffers.expand(grad, shape), x, norm_e, count, out],
                   (float_bits(p if math.isfinite(p) else 0.0),), num_warps=NORM_BWD_WARPS,
                   ORD=ord_)
    return out


# Five strided operands and a correctly rounded division per element: at 4 warps (8 elements a
# thread) the float32 2-norm and inf-norm gradients spill a few bytes around the division's
# slow path (sm_90 and sm_80); 8 warps halve the live values (tests/test_aot_compile.py)
NORM_BWD_WARPS = 8


# ----------------------------------------------------------------------------------------------
# squared-error loss
# ----------------------------------------------------------------------------------------------


@triton.jit
def _sq_err_kernel(x_ptr, y_ptr, out_ptr, n, size1, size2, size3,
                   stride_x0, stride_x1, stride_x2, stride_x3,
                   stride_y0, stride_y1, stride_y2, stride_y3,
                   stride_out_0, stride_out_1, stride_out_2, stride_out_3,
                   NDIM: tl.constexpr, BLOCK: tl.constexpr):
    """out = (x - y)^2 elementwise (x and y broadcast through their strides)."""
    lin = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = lin < n
    x = up(tl.load(x_ptr + strided_offset(lin, size1, size2, size3, stride_x0, stride_x1,
                                          stride_x2, stride_x3, NDIM), mask=mask, other=0))
    y = up(tl.load(y_ptr + strided_offset(lin, size1, size2, size3, stride_y0, stride_y1,
                                          stride_y2, stride_y3, NDIM), mask=mask, other=0))
    d = x - y
    out_off = strided_offset(lin, size1, size2, size3, stride_out_0, stride_out_1, stride_out_2,
                             stride_out_3, NDIM)
    tl.store(out_ptr + out_off, cast_to(d * d, out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _mse_sum_kernel(x_ptr, y_ptr, out_ptr, n, size1, size2, size3,
                    stride_x0, stride_x1, stride_x2, stride_x3,
                    stride_y0, stride_y1, stride_y2, stride_y3, chunk,
                    MEAN: tl.constexpr, FINAL: tl.constexpr, ACC: tl.constexpr,
                    NDIM: tl.constexpr, BLOCK: tl.constexpr):
    """Sum of (x - y)^2 over the linear indices [pid * chunk, (pid + 1) * chunk).

    FINAL (one program covers everything): out[0] = the sum, over n for MEAN (0 / 0 =
    NaN when there is nothing), in out's dtype; otherwise out[pid] = the chunk's sum in ACC.
    """
    pid = tl.program_id(0).to(tl.int64)
    lo = pid * chunk
    hi = tl.minimum(lo + chunk, n)
    idx0 = tl.arange(0, BLOCK).to(tl.int64)
    acc = tl.zeros((BLOCK,), ACC)
    for k0 in range(lo, hi, BLOCK):
        lin = k0 + idx0
        mask = lin < hi
        x = tl.load(x_ptr + strided_offset(lin, size1, size2, size3, stride_x0, stride_x1,
                                           stride_x2, stride_x3, NDIM), mask=mask,
                    other=0).to(ACC)
        y = tl.load(y_ptr + strided_offset(lin, size1, size2, size3, stride_y0, stride_y1,
                                           stride_y2, stride_y3, NDIM), mask=mask,
                    other=0).to(ACC)
        d = x - y
        acc += d * d
    total = tl.sum(acc, axis=0)
    if FINAL:
        if MEAN:
            total = div_rn(total, tl.zeros_like(total) + n)
        tl.store(out_ptr, cast_to(total, out_ptr.dtype.element_ty))
    else:
        tl.store(out_ptr + pid, total)


@triton.jit
def _sum_partials_kernel(part_ptr, out_ptr, P, count, MEAN: tl.constexpr, ACC: tl.constexpr,
                         BLOCK: tl.constexpr):
    """out[0] = sum(part[:P]) in order (over ``count`` for MEAN), one program."""
    idx0 = tl.arange(0, BLOCK).to(tl.int64)
    acc = tl.zeros((BLOCK,), ACC)
    for k0 in range(0, P, BLOCK):
        idx = k0 + idx0
        acc += tl.load(part_ptr + idx, mask=idx < P, other=0)
    total = tl.sum(acc, axis=0)
    if MEAN:
        total = div_rn(total, tl.zeros_like(total) + count)
    tl.store(out_ptr, cast_to(total, out_ptr.dtype.element_ty))


@triton.jit
def _mse_bwd_kernel(x_ptr, y_ptr, g_ptr, dx_ptr, dy_ptr, count, n, size1, size2, size3,
                    stride_x0, stride_x1, stride_x2, stride_x3,
                    stride_y0, stride_y1, stride_y2, stride_y3,
                    stride_g0, stride_g1, stride_g2, stride_g3,
                    stride_dx_0, stride_dx_1, stride_dx_2, stride_dx_3,
                    stride_dy_0, stride_dy_1, stride_dy_2, stride_dy_3,
                    MEAN: tl.constexpr, NEED_DX: tl.constexpr, NEED_DY: tl.constexpr,
                    NDIM: tl.constexpr, BLOCK: tl.constexpr):
    """dx = (x - y) * 2 * g (over ``count`` for MEAN) and dy = -dx, one pass."""
    lin = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = lin < n
    x = up(tl.load(x_ptr + strided_offset(lin, size1, size2, size3, stride_x0, stride_x1,
                                          stride_x2, stride_x3, NDIM), mask=mask, other=0))
    y = up(tl.load(y_ptr + strided_offset(lin, size1, size2, size3, stride_y0, stride_y1,
                                          stride_y2, stride_y3, NDIM), mask=mask, other=0))
    g = up(tl.load(g_ptr + strided_offset(lin, size1, size2, size3, stride_g0, stride_g1,
                                          stride_g2, stride_g3, NDIM), mask=mask, other=0))
    d = (x - y) * 2.0 * g
    if MEAN:
        d = div_rn(d, tl.zeros_like(d) + count)
    if NEED_DX:
        off = strided_offset(lin, size1, size2, size3, stride_dx_0, stride_dx_1, stride_dx_2,
                             stride_dx_3, NDIM)
        tl.store(dx_ptr + off, cast_to(d, dx_ptr.dtype.element_ty), mask=mask)
    if NEED_DY:
        off = strided_offset(lin, size1, size2, size3, stride_dy_0, stride_dy_1, stride_dy_2,
                             stride_dy_3, NDIM)
        tl.store(dy_ptr + off, cast_to(-d, dy_ptr.dtype.element_ty), mask=mask)


# Up to this many elements the "sum"/"mean" loss is one program (one launch); beyond, chunks.
MSE_ONE_PROGRAM_GPU = 1 << 16
MSE_MAX_CHUNKS = 1024


def _bshape(x, y):
    return _launch.broadcast_shape(buffers.shape(x), buffers.shape(y))


def mse_loss_fwd(x, y, reduction):
    """``(x - y)^2`` (broadcast), or its 0-d sum / mean accumulated in a fixed order."""
    shape = _bshape(x, y)
    dt = buffers.dtype_of(x)
    xe, ye = buffers.expand(x, shape), buffers.expand(y, shape)
    if reduction == "none":
        out = buffers.empty(shape, dt)
        launch_strided(_sq_err_kernel, [xe, ye, out])
        return out
    n = numel(shape)
    geo = _launch.layout(shape, (tuple(buffers.strides(xe)), tuple(buffers.strides(ye))))
    if geo is None:                                 # more than 4 dims after collapsing: copy
        xe, ye = contiguous(xe), contiguous(ye)
        geo = _launch.layout(shape, (tuple(buffers.strides(xe)), tuple(buffers.strides(ye))))
    ndim, sizes, (sx, sy) = geo
    block, warps = _launch.elementwise(n)
    acc = _acc(dt)
    mean = reduction == "mean"
    out = buffers.empty((), dt)
    one_program = n <= (block * 2 if _launch.INTERPRET else MSE_ONE_PROGRAM_GPU)
    if one_program:
        launch(_mse_sum_kernel, (1,), xe, ye, out, n, sizes[1], sizes[2], sizes[3], *sx, *sy,
               max(n, 1), MEAN=mean, FINAL=True, ACC=acc, NDIM=ndim, BLOCK=block,
               num_warps=warps)
        return out
    per = block * (2 if _launch.INTERPRET else 8)
    chunk = cdiv(cdiv(n, min(cdiv(n, per), MSE_MAX_CHUNKS)), block) * block
    chunks = cdiv(n, chunk)
    part = buffers.empty((chunks,), _acc_dtype(dt))
    launch(_mse_sum_kernel, (chunks,), xe, ye, part, n, sizes[1], sizes[2], sizes[3], *sx, *sy,
           chunk, MEAN=mean, FINAL=False, ACC=acc, NDIM=ndim, BLOCK=block, num_warps=warps)
    pblock = _launch.rows(1, chunks)[1]
    launch(_sum_partials_kernel, (1,), part, out, chunks, n, MEAN=mean, ACC=acc, BLOCK=pblock,
           num_warps=_launch.warps(pblock))
    return out


def mse_loss_bwd(grad, x, y, reduction, need_dx, need_dy):
    """``(dx, dy)`` in the broadcast shape, one launch."""
    shape = _bshape(x, y)
    xe, ye = buffers.expand(x, shape), buffers.expand(y, shape)
    dx = buffers.empty(shape, buffers.dtype_of(x)) if need_dx else None
    dy = buffers.empty(shape, buffers.dtype_of(y)) if need_dy else None
    if not (need_dx or need_dy):
        return dx, dy
    dummy = dx if dx is not None else dy
    launch_strided(_mse_bwd_kernel, [xe, ye, buffers.expand(grad, shape),
                                     dx if dx is not None else dummy,
                                     dy if dy is not None else dummy],
                   (max(numel(shape), 1),), MEAN=reduction == "mean", NEED_DX=bool(need_dx),
                   NEED_DY=bool(need_dy))
    return dx, dy


# ----------------------------------------------------------------------------------------------
# ahead-of-time compile list (format: kernels/_launch.py)
# ----------------------------------------------------------------------------------------------

def _ln_unit(name, fn, pointers, constexprs, aligned, warps=None):
    """An entry as the runtime compiles a LayerNorm kernel for operands with unit column
    strides (they arrive as constexpr 1) and sizes below 2^31 (i32): ``aligned``, every other
    size and stride a multiple of 16 as in a training step (N = 1024, say), else none."""
    unit = {k: 1 for k in fn.arg_names if k in ("stride_xn", "stride_gn", "stride_w", "stride_b")}
    constexprs = {**constexprs, **unit}
    options = {} if warps is None else {"num_warps": warps}
    if aligned:
        options["divisible_by_16"] = [k for k in fn.arg_names
                                      if k not in constexprs and k != "eps_bits"]
    return aot_entry(name, fn, pointers, constexprs, scalar_type="i32",
                     scalars={"eps_bits": "i64"} if "eps_bits" in fn.arg_names else None,
                     **options)


def _kernels():
    out = []
    # LayerNorm at the tiles and warps the launchers choose on a GPU (``_launch.rows`` with
    # LN_FWD_TILE, ``_ln_bwd_blocks``, ``_dwdb_blocks``): strided i64 operands (any dtype),
    # and with unit column strides: the backward's larger tile over rows of 2048 < N <= 4096
    # and its row-block walk beyond (only there), and a training step's width 1024
    for dt, acc in (("fp32", tl.float32), ("bf16", tl.float32), ("fp16", tl.float32),
                    ("fp64", tl.float64)):
        acc_dt = "fp64" if dt == "fp64" else "fp32"
        ptrs = {"x_ptr": dt, "w_ptr": dt, "b_ptr": dt, "y_ptr": dt, "mean_ptr": acc_dt,
                "rstd_ptr": acc_dt}
        fwd = {"HAS_W": True, "HAS_B": True, "ACC": acc}
        for one, bm, bn in ((True, 1, 4096), (True, 16, 256), (False, 1, 4096)):
            out.append(aot_entry(f"ln_fwd_{dt}_{'one' if one else 'loop'}{bm}x{bn}",
                                 _ln_fwd_kernel, ptrs,
                                 {**fwd, "ONE_BLOCK": one, "BLOCK_M": bm, "BLOCK_N": bn}))
        bptrs = {"x_ptr": dt, "w_ptr": dt, "g_ptr": dt, "mean_ptr": acc_dt, "rstd_ptr": acc_dt,
                 "dx_ptr": dt, "part_ptr": acc_dt}
        bwd = {"HAS_W": True, "NEED_DX": True, "NEED_DWB": True, "ACC": acc}
        loop_m = LN_BWD_LOOP_ROWS
        for one, bm, bn in ((True, 1, LN_BWD_TILE), (True, 8, LN_BWD_TILE // 8),
                            (False, loop_m, LN_BWD_TILE // loop_m)):
            out.append(aot_entry(f"ln_bwd_{dt}_{'one' if one else 'loop'}{bm}x{bn}",
                                 _ln_bwd_kernel, bptrs,
                                 {**bwd, "ONE_BLOCK": one, "BLOCK_M": bm, "BLOCK_N": bn}))
        if dt != "fp64":
            for one, bm, bn, aligned in ((True, 1, LN_BWD_TILE_UNIT, False),
                                         (True, 1, LN_BWD_TILE_UNIT, True),
                                         (False, loop_m, LN_BWD_TILE_UNIT // loop_m, True)):
                out.append(_ln_unit(f"ln_bwd_{dt}_unit{'' if aligned else 'odd'}_"
                                    f"{'one' if one else 'loop'}{bm}x{bn}", _ln_bwd_kernel, bptrs,
                                    {**bwd, "ONE_BLOCK": one, "BLOCK_M": bm, "BLOCK_N": bn},
                                    aligned))
        if dt in ("fp32", "bf16"):
            out.append(_ln_unit(f"ln_fwd_{dt}_unit_one4x1024", _ln_fwd_kernel, ptrs,
                                {**fwd, "ONE_BLOCK": True, "BLOCK_M": 4, "BLOCK_N": 1024}, True))
            out.append(_ln_unit(f"ln_bwd_{dt}_unit_one2x1024", _ln_bwd_kernel, bptrs,
                                {**bwd, "ONE_BLOCK": True, "BLOCK_M": 2, "BLOCK_N": 1024}, True))
        # the second stage: P = 256 partial rows of N = 1024, 4096 and 16384 columns (one
        # block shape each), and the 12 partial rows of 12 columns of a small input
        dptrs = {"part_ptr": acc_dt, "dw_ptr": dt, "db_ptr": dt}
        dwdb = {"HAS_DW": True, "HAS_DB": True, "ACC": acc}
        for p, n in ((LN_BWD_PROGRAMS_GPU, 1024), (LN_BWD_PROGRAMS_GPU, 4096),
                     (LN_BWD_PROGRAMS_GPU, 16384), (12, 12)):
            if dt in ("bf16", "fp16") and n in (4096, 16384):
                continue                                 # the float32 code but for the store
            bm, bn, warps = _dwdb_blocks(p, n)
            out.append(aot_entry(f"ln_dwdb_{dt}_{bm}x{bn}", _ln_dwdb_kernel, dptrs,
                                 {**dwdb, "BLOCK_M": bm, "BLOCK_N": bn}, num_warps=warps))
        if dt in ("fp32", "bf16"):
            bm, bn, warps = _dwdb_blocks(LN_BWD_PROGRAMS_GPU, 1024)
            out.append(_ln_unit(f"ln_dwdb_{dt}_i32_{bm}x{bn}", _ln_dwdb_kernel, dptrs,
                                {**dwdb, "BLOCK_M": bm, "BLOCK_N": bn}, True, warps))
    out.append(aot_entry("ln_fwd_fp32_noaffine", _ln_fwd_kernel,
                         {"x_ptr": "fp32", "w_ptr": "fp32", "b_ptr": "fp32", "y_ptr": "fp32",
                          "mean_ptr": "fp32", "rstd_ptr": "fp32"},
                         {"HAS_W": False, "HAS_B": False, "ONE_BLOCK": True, "ACC": tl.float32,
                          "BLOCK_M": 4, "BLOCK_N": 1024}))
    for dt, acc, final in (("fp32", tl.float32, True), ("bf16", tl.float32, False),
                           ("fp64", tl.float64, True)):
        acc_dt = "fp64" if dt == "fp64" else "fp32"
        odt = dt if final else acc_dt
        out.append(aot_entry(f"moments_{dt}_{'final' if final else 'partial'}", _moments_kernel,
                             {"x_ptr": dt, "var_ptr": odt, "mean_ptr": odt},
                             {"FINAL": final, "ACC": acc, "BLOCK_M": 4, "BLOCK_K": 1024}))
    out.append(aot_entry("moments_merge_fp32", _moments_merge_kernel,
                         {"m2_ptr": "fp32", "pmean_ptr": "fp32", "var_ptr": "bf16",
                          "mean_ptr": "bf16"},
                         {"ACC": tl.float32, "BLOCK_M": 4, "BLOCK_K": 1024}))
    for has_std, dt in ((False, "fp32"), (True, "bf16")):
        out.append(aot_entry(f"var_bwd_{dt}_std{int(has_std)}", _var_bwd_kernel, dt,
                             {"HAS_STD": has_std, "NDIM": 3, "BLOCK": 1024}))
    for ord_, stage, dt in (("two", "full", "fp32"), ("two", "partial", "bf16"),
                            ("two", "final", "fp32"), ("one", "full", "fp16"),
                            ("p", "full", "fp32"), ("p", "final", "fp64"),
                            ("inf", "full", "bf16"), ("ninf", "partial", "fp32"),
                            ("zero", "full", "fp32"), ("ties", "full", "fp32")):
        acc = tl.float64 if dt == "fp64" else tl.float32
        acc_dt = "fp64" if dt == "fp64" else "fp32"
        xdt = acc_dt if stage == "final" else dt
        odt = acc_dt if stage == "partial" else dt
        out.append(aot_entry(f"norm_{ord_}_{stage}_{dt}", _norm_kernel,
                             {"x_ptr": xdt, "ref_ptr": dt, "out_ptr": odt},
                             {"ORD": ord_, "STAGE": stage, "ACC": acc, "BLOCK_M": 4,
                              "BLOCK_K": 1024}))
    for ord_, dt in (("two", "fp32"), ("one", "bf16"), ("inf", "fp32"), ("p", "fp64"),
                     ("plow", "fp32"), ("zero", "fp16")):
        out.append(aot_entry(f"norm_bwd_{ord_}_{dt}", _norm_bwd_kernel,
                             {"g_ptr": dt, "x_ptr": dt, "norm_ptr": dt, "count_ptr": "fp32",
                              "out_ptr": dt}, {"ORD": ord_, "NDIM": 2, "BLOCK": 1024},
                             num_warps=NORM_BWD_WARPS))
    out.append(aot_entry("sq_err_bf16", _sq_err_kernel, "bf16", {"NDIM": 2, "BLOCK": 1024}))
    for dt, acc in (("fp32", tl.float32), ("bf16", tl.float32), ("fp64", tl.float64)):
        for final in (True, False):
            acc_dt = "fp64" if dt == "fp64" else "fp32"
            out.append(aot_entry(f"mse_sum_{dt}_{'final' if final else 'partial'}",
                                 _mse_sum_kernel,
                                 {"x_ptr": dt, "y_ptr": dt, "out_ptr": dt if final else acc_dt},
                                 {"MEAN": True, "FINAL": final, "ACC": acc, "NDIM": 1,
                                  "BLOCK": 1024}))
    out.append(aot_entry("sum_partials_fp32", _sum_partials_kernel,
                         {"part_ptr": "fp32", "out_ptr": "bf16"},
                         {"MEAN": True, "ACC": tl.float32, "BLOCK": 1024}))
    for dt in ("fp32", "bf16"):
        out.append(aot_entry(f"mse_bwd_{dt}", _mse_bwd_kernel, dt,
                             {"MEAN": True, "NEED_DX": True, "NEED_DY": True, "NDIM": 2,
                              "BLOCK": 1024}))
    return out


KERNELS = _kernels()
