"""Softmax, log-softmax, the fused softmax-cross-entropy and BCE-with-logits (Triton).

Twins of ``fallback_cpu/softmax.py``. Every row kernel works on a [BLOCK_M,
BLOCK_N] tile: BLOCK_M rows at once when rows are short, one row walked in
BLOCK_N steps when it is long (``_launch.rows``). Log-sum-exps are *online*:
one pass keeps a running maximum ``m`` and a running sum ``s`` of
``exp(x - m)``, rescaling ``s`` by ``exp(m_old - m_new)`` whenever the maximum
grows, so a 128k-class vocabulary costs one read for the statistics. Math is
float32 for float16/bfloat16 (float64 stays float64); row offsets are int64.

Softmax along any dim views the operand as (outer, K, inner) through its
strides (the softmax dim in the middle); only a layout that does not collapse
to that is copied first.

Cross-entropy (``softmax_cross_entropy_fwd``), one launch of ``_ce_fwd_kernel``
and no host sync:

1. Targets outside ``[0, C)`` (and not ``ignore_index``) are reported to the
   host (``_jitlib.report_out_of_range``, raised at its next sync) and never
   used as an offset; their rows lose NaN.
2. One pass per row: ``lse = m + log(s)``, the target logit read directly,
   and for label smoothing eps the row sum of the logits; ``loss = lse - (1 -
   eps) * x[t] - eps / C * sum(x)`` (PyTorch's smoothing), 0 on rows whose
   target is ``ignore_index``.
3. The last program to finish (the only one, or the holder of the last ticket
   of an atomic counter) adds the per-row losses in row order (deterministic:
   the atomic orders programs, it adds no floats) and, for "mean", divides by
   the count of rows not ignored, which it also stores after the rows'
   log-sum-exps for the backward.

The backward, one launch, writes ``(softmax - (1 - eps) * onehot - eps / C) *
scale`` with ``softmax = exp(x - lse)`` from the saved lse, the upstream
gradient 1 of ``loss.backward()`` folded in (nothing to fill or load); into
the logits buffer itself when the tape says nobody else holds it.
"""
from __future__ import annotations

import numpy as np
import triton
import triton.language as tl

from .. import dtypes as D
from ..precision import allow_tf32
from . import _launch, buffers
from ._interpret import INTERPRET
from ._jitlib import (cast_to, div_rn, f64_from_bits, report_out_of_range, sigmoid,
                      strided_offset, up)
from ._launch import aot_entry, cdiv, float_bits, launch, launch_strided, numel
from .matmul import _gemm, linear_fwd
from .memory import cast, contiguous, full
from .reduction import reduce

# ----------------------------------------------------------------------------------------------
# device helpers
# ----------------------------------------------------------------------------------------------


@triton.jit
def _finite_or_zero(m):
    """The shift for exp(x - shift): the running maximum, or 0 where it is +-inf (no inf - inf)."""
    return tl.where((m == float("inf")) | (m == float("-inf")), 0.0, m)


@triton.jit
def _online_lse_step(m, s, x):
    """Fold a [BLOCK_M, BLOCK_N] block ``x`` (masked lanes -inf) into the running (max, sum)."""
    new_m = tl.maximum(m, tl.max(x, axis=1))
    shift = _finite_or_zero(new_m)
    s = s * tl.exp(m - shift) + tl.sum(tl.exp(x - shift[:, None]), axis=1)
    return new_m, s


@triton.jit
def _row_start(rows, inner, stride_o, stride_i):
    """Offset of each row's first element in an (outer, K, inner) view.

    Row ``r`` is ``(r // inner, :, r % inner)``: the softmax dim K runs along it.
    """
    return (rows // inner) * stride_o + (rows % inner) * stride_i


# ----------------------------------------------------------------------------------------------
# softmax and log-softmax
# ----------------------------------------------------------------------------------------------


@triton.jit
def _softmax_fwd_kernel(x_ptr, out_ptr, R, K, inner,
                        stride_xo, stride_xk, stride_xi, stride_out_o, stride_out_k, stride_out_i,
                        LOG: tl.constexpr, ACC: tl.constexpr,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """out = softmax(x) (LOG: log_softmax) over K for each of the R = outer * inner rows."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_mask = rows < R
    x_base = _row_start(rows, inner, stride_xo, stride_xi)
    out_base = _row_start(rows, inner, stride_out_o, stride_out_i)
    cols0 = tl.arange(0, BLOCK_N).to(tl.int64)
    # 1. running maximum and rescaled sum of exp over the row, one block at a time
    m = tl.full((BLOCK_M,), float("-inf"), ACC)
    s = tl.zeros((BLOCK_M,), ACC)
    for k0 in range(0, K, BLOCK_N):
        cols = k0 + cols0
        mask = row_mask[:, None] & (cols < K)[None, :]
        x = tl.load(x_ptr + x_base[:, None] + cols[None, :] * stride_xk, mask=mask,
                    other=float("-inf")).to(ACC)
        m, s = _online_lse_step(m, s, x)
    shift = _finite_or_zero(m)
    lse = shift + tl.log(s)
    # 2. normalise and write
    for k0 in range(0, K, BLOCK_N):
        cols = k0 + cols0
        mask = row_mask[:, None] & (cols < K)[None, :]
        x = tl.load(x_ptr + x_base[:, None] + cols[None, :] * stride_xk, mask=mask,
                    other=float("-inf")).to(ACC)
        if LOG:
            y = x - lse[:, None]
        else:
            y = div_rn(tl.exp(x - shift[:, None]), s[:, None])
        tl.store(out_ptr + out_base[:, None] + cols[None, :] * stride_out_k,
                 cast_to(y, out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _softmax_bwd_kernel(g_ptr, y_ptr, out_ptr, R, K, inner,
                        stride_go, stride_gk, stride_gi, stride_yo, stride_yk, stride_yi,
                        stride_out_o, stride_out_k, stride_out_i, LOG: tl.constexpr,
                        ACC: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """softmax: dx = y * (g - sum(g * y)); LOG (y = log_softmax): dx = g - exp(y) * sum(g).

    Derivation: with y = softmax(x), dy_j/dx_k = y_j ([j == k] - y_k), so
    dx_k = sum_j g_j y_j ([j == k] - y_k) = y_k (g_k - sum_j g_j y_j). For
    y = log_softmax(x), dy_j/dx_k = [j == k] - softmax_k, so dx_k = g_k -
    exp(y_k) sum_j g_j. Either way one row sum couples the outputs.
    """
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_mask = rows < R
    g_base = _row_start(rows, inner, stride_go, stride_gi)
    y_base = _row_start(rows, inner, stride_yo, stride_yi)
    out_base = _row_start(rows, inner, stride_out_o, stride_out_i)
    cols0 = tl.arange(0, BLOCK_N).to(tl.int64)
    # 1. the row sum that couples the outputs (reduced per block: a [BLOCK_M, BLOCK_N]
    #    accumulator held across the loop spills registers)
    total = tl.zeros((BLOCK_M,), ACC)
    for k0 in range(0, K, BLOCK_N):
        cols = k0 + cols0
        mask = row_mask[:, None] & (cols < K)[None, :]
        g = tl.load(g_ptr + g_base[:, None] + cols[None, :] * stride_gk, mask=mask,
                    other=0).to(ACC)
        if LOG:
            total += tl.sum(g, axis=1)
        else:
            y = tl.load(y_ptr + y_base[:, None] + cols[None, :] * stride_yk, mask=mask,
                        other=0).to(ACC)
            total += tl.sum(g * y, axis=1)
    # 2. the gradient
    for k0 in range(0, K, BLOCK_N):
        cols = k0 + cols0
        mask = row_mask[:, None] & (cols < K)[None, :]
        g = tl.load(g_ptr + g_base[:, None] + cols[None, :] * stride_gk, mask=mask,
                    other=0).to(ACC)
        y = tl.load(y_ptr + y_base[:, None] + cols[None, :] * stride_yk, mask=mask,
                    other=0).to(ACC)
        if LOG:
            dx = g - tl.exp(y) * total[:, None]
        else:
            dx = y * (g - total[:, None])
        tl.store(out_ptr + out_base[:, None] + cols[None, :] * stride_out_k,
                 cast_to(dx, out_ptr.dtype.element_ty), mask=mask)


def _acc(dt):
    return tl.float64 if dt is D.float64 else tl.float32


def _as3d(x, dim):
    """``(buf, (outer, K, inner), (s_outer, s_k, s_inner))``: ``x`` seen around dim ``dim``."""
    shape, strides = buffers.shape(x), buffers.strides(x)
    outer, inner = shape[:dim], shape[dim + 1:]
    lo = _launch.layout(outer, (strides[:dim],))
    li = _launch.layout(inner, (strides[dim + 1:],))
    dims = (numel(outer), shape[dim], numel(inner))
    if lo is not None and li is not None and lo[0] == 1 and li[0] == 1:
        return x, dims, (lo[2][0][3], strides[dim], li[2][0][3])
    x = contiguous(x)
    return x, dims, (dims[1] * dims[2], dims[2], 1)


def _softmax_fwd(x, dim, log):
    dim %= len(buffers.shape(x))
    dt = buffers.dtype_of(x)
    out = buffers.empty(buffers.shape(x), dt)
    xb, (o, k, i), xs = _as3d(x, dim)
    r = o * i
    if r and k:
        bm, bn, warps = _launch.rows(r, k)
        launch(_softmax_fwd_kernel, (cdiv(r, bm),),
            xb, out, r, k, i, *xs, k * i, i, 1, LOG=log, ACC=_acc(dt),
            BLOCK_M=bm, BLOCK_N=bn, num_warps=warps)
    return out


# The backward holds g, y and three int64 offset blocks live: 2048-element tiles keep it
# under the register file on sm_80 (4096 spills; tests/test_aot_compile.py).
SOFTMAX_BWD_TILE = 2048


def _softmax_bwd(grad, y, dim, log):
    dim %= len(buffers.shape(y))
    dt = buffers.dtype_of(grad)
    out = buffers.empty(buffers.shape(y), dt)
    gb, (o, k, i), gs = _as3d(grad, dim)
    yb, _, ys = _as3d(y, dim)
    r = o * i
    if r and k:
        bm, bn, warps = _launch.rows(r, k, max_elems=SOFTMAX_BWD_TILE)
        launch(_softmax_bwd_kernel, (cdiv(r, bm),),
            gb, yb, out, r, k, i, *gs, *ys, k * i, i, 1, LOG=log, ACC=_acc(dt),
            BLOCK_M=bm, BLOCK_N=bn, num_warps=warps)
    return out


def softmax_fwd(x, dim):
    return _softmax_fwd(x, dim, False)


def softmax_bwd(grad, y, dim):
    """dx = y * (g - sum(g * y)) along ``dim``."""
    return _softmax_bwd(grad, y, dim, False)


def log_softmax_fwd(x, dim):
    return _softmax_fwd(x, dim, True)


def log_softmax_bwd(grad, y, dim):
    """dx = g - exp(y) * sum(g) along ``dim``."""
    return _softmax_bwd(grad, y, dim, True)


# ----------------------------------------------------------------------------------------------
# fused softmax-cross-entropy
# ----------------------------------------------------------------------------------------------


@triton.jit
def _ce_total(loss_ptr, t_ptr, out_ptr, count_ptr, N, stride_t, ignore_index,
              MODE: tl.constexpr, ACC: tl.constexpr, VOLATILE: tl.constexpr, BLOCK: tl.constexpr):
    """One program, rows in a fixed order: the count of rows not ignored into ``count_ptr``
    (unless None) and into ``out_ptr``: MODE "sum" the per-row losses' sum, "mean" that over
    the count, "count" the count alone. ``VOLATILE``: the losses were stored by other programs
    of the same launch (read past the caches)."""
    idx0 = tl.arange(0, BLOCK).to(tl.int64)
    total = tl.zeros((BLOCK,), ACC)
    count = tl.zeros((BLOCK,), tl.int64)
    for k0 in range(0, N, BLOCK):
        idx = k0 + idx0
        mask = idx < N
        if MODE != "count":
            total += tl.load(loss_ptr + idx, mask=mask, other=0, volatile=VOLATILE).to(ACC)
        t = tl.load(t_ptr + idx * stride_t, mask=mask, other=ignore_index)
        count += (t != ignore_index).to(tl.int64)
    n = tl.sum(count, axis=0).to(ACC)
    if MODE == "sum":
        r = tl.sum(total, axis=0)
    elif MODE == "mean":
        r = div_rn(tl.sum(total, axis=0), n)
    else:
        r = n
    tl.store(out_ptr, cast_to(r, out_ptr.dtype.element_ty))
    if count_ptr is not None:
        tl.store(count_ptr, cast_to(n, count_ptr.dtype.element_ty))


@triton.jit(do_not_specialize=("ignore_index", "one_minus_eps", "eps_over_c", "site"))
def _ce_fwd_kernel(x_ptr, t_ptr, loss_ptr, lse_ptr, out_ptr, ticket_ptr, err_ptr, N, C,
                   stride_xn, stride_xc, stride_t, ignore_index, one_minus_eps, eps_over_c, site,
                   SMOOTH: tl.constexpr, ACC: tl.constexpr, MODE: tl.constexpr,
                   ONE_PROGRAM: tl.constexpr, CHECK: tl.constexpr, BLOCK_M: tl.constexpr,
                   BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr):
    """Per row i of logits x (N, C): lse_i and
    loss_i = lse_i - (1-eps) x[i, t_i] - eps/C sum_c x[i, c];
    then the count of rows not ignored into ``lse[N]`` (for the backward of "mean") and, for
    MODE "sum"/"mean", the rows' total into ``out`` ("count": the count again): one launch
    for the whole loss.

    loss_i is 0 where t_i == ignore_index and NaN where t_i is out of range (CHECK: that
    target is recorded at ``err_ptr`` for the host, ``_jitlib.report_out_of_range``).
    ``loss`` is stored in its buffer's dtype (the logits' for reduction "none", the
    accumulator's otherwise). The total is taken by the last program to finish: each
    program stores its rows, then takes a ticket (an atomic add on ``ticket_ptr``, which
    orders its stores before it); the one holding the last ticket adds every row in
    order, as a single program would (deterministic), and puts the ticket counter back
    to 0 for the next launch. With ONE_PROGRAM the only program does it without a ticket.
    """
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_mask = rows < N
    base = rows * stride_xn                     # int64: rows * vocab may pass 2**31
    t = tl.load(t_ptr + rows * stride_t, mask=row_mask, other=ignore_index)
    counted = row_mask & (t != ignore_index)
    # 0. targets outside [0, C) (and not ignore_index) are reported and never used as offsets
    if CHECK:
        report_out_of_range(err_ptr, site, t, counted & (t < 0), counted & (t >= C))
    valid = counted & (t >= 0) & (t < C)
    one_minus_eps = f64_from_bits(one_minus_eps).to(ACC)     # float64 bits: no fp32 rounding
    eps_over_c = f64_from_bits(eps_over_c).to(ACC)
    # 1. the target logit, read directly
    picked = tl.load(x_ptr + base + tl.where(valid, t, 0) * stride_xc, mask=valid,
                     other=0).to(ACC)
    # 2. online log-sum-exp over vocabulary blocks, and the plain row sum for smoothing
    cols0 = tl.arange(0, BLOCK_N).to(tl.int64)
    m = tl.full((BLOCK_M,), float("-inf"), ACC)
    s = tl.zeros((BLOCK_M,), ACC)
    row_sum = tl.zeros((BLOCK_M, BLOCK_N), ACC)
    for k0 in range(0, C, BLOCK_N):
        cols = k0 + cols0
        mask = row_mask[:, None] & (cols < C)[None, :]
        x = tl.load(x_ptr + base[:, None] + cols[None, :] * stride_xc, mask=mask,
                    other=float("-inf")).to(ACC)
        m, s = _online_lse_step(m, s, x)
        if SMOOTH:
            row_sum += tl.where(mask, x, 0.0)
    lse = _finite_or_zero(m) + tl.log(s)
    # 3. the loss (PyTorch's label smoothing: (1-eps) on the target, eps spread uniformly)
    loss = lse - one_minus_eps * picked
    if SMOOTH:
        loss = loss - eps_over_c * tl.sum(row_sum, axis=1)
    loss = tl.where(valid, loss, tl.where(counted, float("nan"), 0.0))
    tl.store(loss_ptr + rows, cast_to(loss, loss_ptr.dtype.element_ty), mask=row_mask)
    tl.store(lse_ptr + rows, cast_to(lse, lse_ptr.dtype.element_ty), mask=row_mask)
    # 4. the total (MODE "count", for reduction "none": the count alone), in row order, by
    #    the last program to get here (every program's rows stored first)
    #    (MODE "rows": none of it, the rows are a chunk of a longer loss)
    if MODE != "rows":
        tl.debug_barrier()                     # this program's threads have stored their rows
        if ONE_PROGRAM:
            _ce_total(loss_ptr, t_ptr, out_ptr, lse_ptr + N, N, stride_t, ignore_index,
                      MODE, ACC, False, BLOCK_T)
        else:
            ticket = tl.atomic_add(ticket_ptr, 1, sem="acq_rel")
            if ticket == tl.num_programs(0) - 1:
                _ce_total(loss_ptr, t_ptr, out_ptr, lse_ptr + N, N, stride_t, ignore_index,
                          MODE, ACC, True, BLOCK_T)
                tl.atomic_xchg(ticket_ptr, 0)


@triton.jit(do_not_specialize=("ignore_index",))
def _ce_total_kernel(loss_ptr, t_ptr, out_ptr, N, stride_t, ignore_index,
                     MODE: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr):
    """One program, rows in a fixed order. MODE "sum": out = sum(loss); "mean": that over the
    count of rows not ignored; "count": out = that count alone (for the backward of "mean").
    (The chunked linear cross-entropy's; the plain one totals in ``_ce_fwd_kernel``.)"""
    _ce_total(loss_ptr, t_ptr, out_ptr, None, N, stride_t, ignore_index, MODE, ACC, False, BLOCK)


@triton.jit(do_not_specialize=("ignore_index", "one_minus_eps", "eps_over_c"))
def _ce_bwd_kernel(x_ptr, t_ptr, lse_ptr, g_ptr, count_ptr, dx_ptr, N, C, stride_xn, stride_xc,
                   stride_t, stride_g, stride_dx_n, stride_dx_c, ignore_index, one_minus_eps,
                   eps_over_c, count_at, SMOOTH: tl.constexpr, MEAN: tl.constexpr,
                   UNIT: tl.constexpr, ACC: tl.constexpr, BLOCK_M: tl.constexpr,
                   BLOCK_N: tl.constexpr):
    """dx[i, c] = (exp(x[i, c] - lse_i) - eps/C - (1-eps) [c == t_i]) * scale_i.

    scale_i is the upstream gradient of row i (UNIT: 1, nothing loaded; over the count of
    rows not ignored at ``count_ptr + count_at``, for "mean"), 0 on ignored rows. ``dx``
    may be ``x`` itself: each element is read before the same program overwrites it. A
    target out of range matches no column.
    """
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_mask = rows < N
    t = tl.load(t_ptr + rows * stride_t, mask=row_mask, other=ignore_index)
    valid = row_mask & (t != ignore_index)
    one_minus_eps = f64_from_bits(one_minus_eps).to(ACC)
    eps_over_c = f64_from_bits(eps_over_c).to(ACC)
    lse = tl.load(lse_ptr + rows, mask=row_mask, other=0).to(ACC)
    if UNIT:
        g = tl.full((BLOCK_M,), 1.0, ACC)
    else:
        g = tl.load(g_ptr + rows * stride_g, mask=row_mask, other=0).to(ACC)
    if MEAN:
        g = div_rn(g, tl.load(count_ptr + count_at).to(ACC))
    scale = tl.where(valid, g, 0.0)
    x_base = rows * stride_xn
    d_base = rows * stride_dx_n
    cols0 = tl.arange(0, BLOCK_N).to(tl.int64)
    for k0 in range(0, C, BLOCK_N):
        cols = k0 + cols0
        mask = row_mask[:, None] & (cols < C)[None, :]
        x = tl.load(x_ptr + x_base[:, None] + cols[None, :] * stride_xc, mask=mask,
                    other=0).to(ACC)
        d = tl.exp(x - lse[:, None])
        if SMOOTH:
            d = d - eps_over_c
        d = tl.where(cols[None, :] == t[:, None], d - one_minus_eps, d)
        d = d * scale[:, None]
        tl.store(dx_ptr + d_base[:, None] + cols[None, :] * stride_dx_c,
                 cast_to(d, dx_ptr.dtype.element_ty), mask=mask)


def _ce_launch_args(logits, target, label_smoothing):
    n, c = buffers.shape(logits)
    sn, sc = buffers.strides(logits)
    smooth = bool(label_smoothing)
    return n, c, sn, sc, buffers.strides(target)[0], smooth, float_bits(1.0 - label_smoothing), \
        float_bits(label_smoothing / c)


_TICKET = []         # the multi-program cross-entropy's ticket counter: int32 (1,), 0 between
                     # launches


def _ticket():
    if not _TICKET:
        _TICKET.append(buffers.upload(np.zeros(1, np.int32), D.int32))
    return _TICKET[0]


def softmax_cross_entropy_fwd(logits, target, ignore_index, label_smoothing, reduction, check):
    """Loss of softmax cross-entropy over rows of ``logits`` (N, C) with int64 ``target`` (N,).

    Returns ``(loss, stats)``: ``loss`` per row (reduction "none", 0 at ignored
    rows) or a 0-d sum/mean over the rows that are not ignored, in the logits'
    dtype; ``stats`` (N + 1,) in the accumulation dtype, saved for the backward:
    each row's log-sum-exp, then the count of rows not ignored. One launch; targets
    out of range are reported as ``check`` says (``_jitlib.report_out_of_range``).
    """
    dt = buffers.dtype_of(logits)
    acc_dt = D.float64 if dt is D.float64 else D.float32
    n, c, sn, sc, ts, smooth, one_minus_eps, eps_over_c = _ce_launch_args(
        logits, target, label_smoothing)
    stats = buffers.empty((n + 1,), acc_dt)
    rows = buffers.empty((n,), dt if reduction == "none" else acc_dt)
    # "none" has no total: the count alone goes to stats[N] (twice, as total and as count)
    out = buffers.view_index(stats, slice(n, n + 1)) if reduction == "none" else \
        buffers.empty((), dt)
    bm, bn, warps = _launch.rows(n, c)
    grid = cdiv(n, bm)
    err, site, checking = buffers.error_args(check, stats)
    launch(_ce_fwd_kernel, (grid,),
        logits, target, rows, stats, out, _ticket(), err, n, c, sn, sc, ts, ignore_index,
        one_minus_eps, eps_over_c, site, SMOOTH=smooth, ACC=_acc(dt),
        MODE="count" if reduction == "none" else reduction, ONE_PROGRAM=grid == 1,
        CHECK=checking, BLOCK_M=bm, BLOCK_N=bn, BLOCK_T=_launch.rows(1, n)[1], num_warps=warps)
    if checking:
        buffers.checked_launch()
    return (rows if reduction == "none" else out), stats


def softmax_cross_entropy_bwd(grad_loss, logits, target, stats, ignore_index, label_smoothing,
                              reduction, inplace):
    """d loss / d logits = (softmax - (1 - eps) * onehot - eps / C) * scale per row.

    ``scale`` is the upstream gradient (None: 1, folded into the kernel), divided by
    the count of rows not ignored (``stats[N]``) for "mean"; ignored rows get 0. With
    ``inplace`` the result is written into ``logits`` itself and returned. One launch.
    """
    dt = buffers.dtype_of(logits)
    n, c, sn, sc, ts, smooth, one_minus_eps, eps_over_c = _ce_launch_args(
        logits, target, label_smoothing)
    unit = grad_loss is None
    g_stride = buffers.strides(grad_loss)[0] if reduction == "none" and not unit else 0
    dx = logits if inplace else buffers.empty((n, c), dt)
    dsn, dsc = buffers.strides(dx)
    bm, bn, warps = _launch.rows(n, c)
    launch(_ce_bwd_kernel, (cdiv(n, bm),),
        logits, target, stats, stats if unit else grad_loss, stats, dx, n, c, sn, sc, ts,
        g_stride, dsn, dsc, ignore_index, one_minus_eps, eps_over_c, n, SMOOTH=smooth,
        MEAN=reduction == "mean", UNIT=unit, ACC=_acc(dt), BLOCK_M=bm, BLOCK_N=bn,
        num_warps=warps)
    return dx


# ----------------------------------------------------------------------------------------------
# binary cross-entropy on logits
# ----------------------------------------------------------------------------------------------


@triton.jit
def _log1p_small(e):
    """log(1 + e) for e in [0, 1], keeping the relative precision of tiny e (no log1p in tl)."""
    return tl.where(e < 1e-4, e * (1.0 - 0.5 * e), tl.log(1.0 + e))


@triton.jit
def _bce_fwd_kernel(x_ptr, y_ptr, out_ptr, n, size1, size2, size3,
                    stride_x0, stride_x1, stride_x2, stride_x3,
                    stride_y0, stride_y1, stride_y2, stride_y3,
                    stride_out_0, stride_out_1, stride_out_2, stride_out_3,
                    NDIM: tl.constexpr, BLOCK: tl.constexpr):
    """loss = max(x, 0) - x * y + log(1 + exp(-|x|)), stable for any x.

    Derivation: -y log(sigmoid(x)) - (1 - y) log(1 - sigmoid(x)) = log(1 + exp(x)) - x y,
    and log(1 + exp(x)) = max(x, 0) + log(1 + exp(-|x|)) never overflows.
    """
    lin = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = lin < n
    x_off = strided_offset(lin, size1, size2, size3, stride_x0, stride_x1, stride_x2, stride_x3,
                           NDIM)
    x = up(tl.load(x_ptr + x_off, mask=mask, other=0))
    y_off = strided_offset(lin, size1, size2, size3, stride_y0, stride_y1, stride_y2, stride_y3,
                           NDIM)
    y = up(tl.load(y_ptr + y_off, mask=mask, other=0))
    loss = tl.maximum(x, 0.0) - x * y + _log1p_small(tl.exp(-tl.abs(x)))
    out_off = strided_offset(lin, size1, size2, size3, stride_out_0, stride_out_1, stride_out_2,
                             stride_out_3, NDIM)
    tl.store(out_ptr + out_off, cast_to(loss, out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _bce_bwd_kernel(x_ptr, y_ptr, g_ptr, dx_ptr, dy_ptr, count, n, size1, size2, size3,
                    stride_x0, stride_x1, stride_x2, stride_x3,
                    stride_y0, stride_y1, stride_y2, stride_y3,
                    stride_g0, stride_g1, stride_g2, stride_g3,
                    stride_dx_0, stride_dx_1, stride_dx_2, stride_dx_3,
                    stride_dy_0, stride_dy_1, stride_dy_2, stride_dy_3,
                    MEAN: tl.constexpr, NDIM: tl.constexpr, BLOCK: tl.constexpr):
    """dx = (sigmoid(x) - y) * g and dy = -x * g, with g the upstream gradient (/ count for MEAN)."""
    lin = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = lin < n
    x_off = strided_offset(lin, size1, size2, size3, stride_x0, stride_x1, stride_x2, stride_x3,
                           NDIM)
    x = up(tl.load(x_ptr + x_off, mask=mask, other=0))
    y_off = strided_offset(lin, size1, size2, size3, stride_y0, stride_y1, stride_y2, stride_y3,
                           NDIM)
    y = up(tl.load(y_ptr + y_off, mask=mask, other=0))
    g_off = strided_offset(lin, size1, size2, size3, stride_g0, stride_g1, stride_g2, stride_g3,
                           NDIM)
    g = up(tl.load(g_ptr + g_off, mask=mask, other=0))
    if MEAN:
        g = g / count
    dx_off = strided_offset(lin, size1, size2, size3, stride_dx_0, stride_dx_1, stride_dx_2,
                            stride_dx_3, NDIM)
    tl.store(dx_ptr + dx_off, cast_to((sigmoid(x) - y) * g, dx_ptr.dtype.element_ty), mask=mask)
    dy_off = strided_offset(lin, size1, size2, size3, stride_dy_0, stride_dy_1, stride_dy_2,
                            stride_dy_3, NDIM)
    tl.store(dy_ptr + dy_off, cast_to(-x * g, dy_ptr.dtype.element_ty), mask=mask)


def bce_with_logits_fwd(x, y, reduction):
    """Binary cross-entropy on logits, stable for any x: max(x,0) - x*y + log1p(exp(-|x|))."""
    dt = buffers.dtype_of(x)
    shape = buffers.shape(x)
    acc_dt = D.float64 if dt is D.float64 else D.float32
    loss = buffers.empty(shape, dt if reduction == "none" else acc_dt)
    launch_strided(_bce_fwd_kernel, [x, y, loss])
    if reduction == "none":
        return loss
    return cast(reduce(loss, (), False, reduction), dt)


def bce_with_logits_bwd(grad_loss, x, y, reduction):
    """d/dx = (sigmoid(x) - y) * upstream (/ numel for "mean"); also d/dy = -x * upstream."""
    shape = buffers.shape(x)
    dx = buffers.empty(shape, buffers.dtype_of(x))
    dy = buffers.empty(shape, buffers.dtype_of(y))
    launch_strided(_bce_bwd_kernel, [x, y, buffers.expand(grad_loss, shape), dx, dy],
                   (max(numel(shape), 1),), MEAN=reduction == "mean")
    return dx, dy


# ----------------------------------------------------------------------------------------------
# ahead-of-time compile list (format: kernels/_launch.py)
# ----------------------------------------------------------------------------------------------

def _kernels():
    out = []
    for dt, acc in (("fp32", tl.float32), ("bf16", tl.float32), ("fp16", tl.float32),
                    ("fp64", tl.float64)):
        for log in (False, True):
            name = "log_softmax" if log else "softmax"
            out.append(aot_entry(f"{name}_fwd_{dt}", _softmax_fwd_kernel, dt,
                                 {"LOG": log, "ACC": acc, "BLOCK_M": 1, "BLOCK_N": 4096}))
            out.append(aot_entry(f"{name}_bwd_{dt}", _softmax_bwd_kernel, dt,
                                 {"LOG": log, "ACC": acc, "BLOCK_M": SOFTMAX_BWD_TILE // 512,
                                  "BLOCK_N": 512}))
        acc_dt = "fp64" if dt == "fp64" else "fp32"
        for smooth in (False, True):
            # the loss of a training step: a "mean" in one program (a batch of short rows) or
            # over many, its total taken by the last one (a long vocabulary)
            mode, one = ("mean", True) if smooth else ("sum", False)
            out.append(aot_entry(f"ce_fwd_{dt}_smooth{int(smooth)}_{mode}", _ce_fwd_kernel,
                                 {"x_ptr": dt, "t_ptr": "i64", "loss_ptr": acc_dt,
                                  "lse_ptr": acc_dt, "out_ptr": dt, "ticket_ptr": "i32",
                                  "err_ptr": "i64"},
                                 {"SMOOTH": smooth, "ACC": acc, "MODE": mode,
                                  "ONE_PROGRAM": one, "CHECK": True, "BLOCK_M": 1,
                                  "BLOCK_N": 4096, "BLOCK_T": 4096}))
            out.append(aot_entry(f"ce_bwd_{dt}_smooth{int(smooth)}", _ce_bwd_kernel,
                                 {"x_ptr": dt, "t_ptr": "i64", "lse_ptr": acc_dt, "g_ptr": dt,
                                  "count_ptr": acc_dt, "dx_ptr": dt},
                                 {"SMOOTH": smooth, "MEAN": not smooth, "UNIT": not smooth,
                                  "ACC": acc, "BLOCK_M": 1, "BLOCK_N": 4096}))
    # the MLP's loss: (128, 10) float32 rows, one program of 128 x 16
    out.append(aot_entry("ce_fwd_fp32_batch_mean", _ce_fwd_kernel,
                         {"x_ptr": "fp32", "t_ptr": "i64", "loss_ptr": "fp32", "lse_ptr": "fp32",
                          "out_ptr": "fp32", "ticket_ptr": "i32", "err_ptr": "i64"},
                         {"SMOOTH": False, "ACC": tl.float32, "MODE": "mean",
                          "ONE_PROGRAM": True, "CHECK": True, "BLOCK_M": 128, "BLOCK_N": 16,
                          "BLOCK_T": 128}))
    out.append(aot_entry("ce_fwd_bf16_chunk_rows", _ce_fwd_kernel,
                         {"x_ptr": "bf16", "t_ptr": "i64", "loss_ptr": "fp32", "lse_ptr": "fp32",
                          "out_ptr": "fp32", "ticket_ptr": "fp32", "err_ptr": "i64"},
                         {"SMOOTH": True, "ACC": tl.float32, "MODE": "rows",
                          "ONE_PROGRAM": True, "CHECK": True, "BLOCK_M": 1, "BLOCK_N": 4096,
                          "BLOCK_T": 16}))
    for mode in ("sum", "mean", "count"):
        out.append(aot_entry(f"ce_total_{mode}", _ce_total_kernel,
                             {"loss_ptr": "fp32", "t_ptr": "i64", "out_ptr": "bf16"},
                             {"MODE": mode, "ACC": tl.float32, "BLOCK": 1024}))
    out.append(aot_entry("bce_fwd_bf16", _bce_fwd_kernel,
                         {"x_ptr": "bf16", "y_ptr": "bf16", "out_ptr": "fp32"},
                         {"NDIM": 3, "BLOCK": 1024}))
    out.append(aot_entry("bce_bwd_fp32", _bce_bwd_kernel, "fp32",
                         {"MEAN": True, "NDIM": 1, "BLOCK": 1024}))
    return out


KERNELS = _kernels()


# ----------------------------------------------------------------------------------------------
# chunked linear + cross-entropy (twins of the section of fallback_cpu/softmax.py)
# ----------------------------------------------------------------------------------------------
#
# Rows of h go in chunks. For each: the chunk's logits z = h_c @ w.T + b (the GEMM of
# ``linear_fwd``, one (rows, V) buffer in h's dtype), its losses and log-sum-exps
# (``_ce_fwd_kernel`` writing into the rows of the whole (N,) buffers), then, when gradients
# are wanted, d loss / d z written over z in place (``_ce_bwd_kernel``), dh_c = dz @ w
# written by the GEMM straight into dh's rows, and dW += dz.T @ h_c with db += dz.sum(0)
# (``_lce_accumulate_kernel``). A chunk's working set is z alone.
#
# Where dW and db add up (``_lce_plan``, the same rule as the numpy mirror's): float32 and
# float64 in the returned buffers themselves; float16/bfloat16 in float32 accumulators
# (rounded once at the end) when those take at most half the budget, else in the returned
# 16-bit buffers: each chunk's product is summed in float32 inside the GEMM, added in
# float32 to the stored value and rounded once, one rounding per chunk.


@triton.jit
def _lce_accumulate_kernel(
    # pointers: C (M, N) += A (M, K) @ B (K, N) and rowsum (M,) += A.sum(1); C and rowsum
    # are the accumulators of dW and db (float32/float64, or the 16-bit gradients
    # themselves), A = dlogits.T, B = h's rows
    a_ptr, b_ptr, c_ptr, rowsum_ptr,
    # sizes
    M, N, K,
    # strides (in elements)
    stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn, stride_rowsum,
    # meta-parameters
    DOT: tl.constexpr, ROWSUM: tl.constexpr, FP64: tl.constexpr,
    INPUT_PRECISION: tl.constexpr, DOT_IN_FP32: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    """``C += A @ B`` (DOT) and ``rowsum += A.sum(1)`` (ROWSUM) for one (BLOCK_M, BLOCK_N) tile.

    Each element of C, and (from the programs of tile column 0) of rowsum, is read,
    added to and written by exactly one program: the sum over chunks (one launch each,
    in order) is the same on every run, with no atomics. Without DOT the grid has one
    tile column and only the row sums are taken. The product sums in float32 (float64);
    a 16-bit C or rowsum is read, widened, added to in float32 and rounded once to
    nearest even per launch.
    """
    # 1. Which tile: groups of GROUP_M rows of tiles, column by column (A panels reused in L2).
    pid = tl.program_id(0).to(tl.int64)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    pids_in_group = GROUP_M * num_pid_n
    first_pid_m = (pid // pids_in_group) * GROUP_M
    group_rows = tl.minimum(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + (pid % pids_in_group) % group_rows
    pid_n = (pid % pids_in_group) // group_rows

    # 2. int64 offsets (M x K, the vocabulary times the chunk's rows, can pass 2**31)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    in_m = offs_m < M
    in_n = offs_n < N
    a_ptrs = a_ptr + offs_m[:, None] * stride_am + offs_k[None, :] * stride_ak
    b_ptrs = b_ptr + offs_k[:, None] * stride_bk + offs_n[None, :] * stride_bn
    step = tl.full((), BLOCK_K, tl.int64)
    if FP64:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float64)
        rowsum = tl.zeros((BLOCK_M,), dtype=tl.float64)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        rowsum = tl.zeros((BLOCK_M,), dtype=tl.float32)

    # 3. March along K (the chunk's rows); out-of-range lanes load 0 and add nothing.
    for kb in range(0, tl.cdiv(K, BLOCK_K)):
        in_k = offs_k < K - kb * BLOCK_K
        a = tl.load(a_ptrs, mask=in_m[:, None] & in_k[None, :], other=0.0)
        if ROWSUM:
            rowsum += tl.sum(a.to(rowsum.dtype), axis=1)
        if DOT:
            b = tl.load(b_ptrs, mask=in_k[:, None] & in_n[None, :], other=0.0)
            if DOT_IN_FP32:
                # interpreter only: its tl.dot multiplies bfloat16 bit patterns as integers
                acc = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
            else:
                acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION, out_dtype=acc.dtype)
            b_ptrs += step * stride_bk
        a_ptrs += step * stride_ak

    # 4. Add into the accumulators: this chunk's share joins the earlier chunks' sum, in the
    #    accumulators' precision or, for 16-bit ones, in float32 rounded once on the store.
    if DOT:
        c_ptrs = c_ptr + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn
        inside = in_m[:, None] & in_n[None, :]
        c_sum = up(tl.load(c_ptrs, mask=inside, other=0.0)) + acc
        tl.store(c_ptrs, cast_to(c_sum, c_ptr.dtype.element_ty), mask=inside)
    if ROWSUM:
        if pid_n == 0:
            r_ptrs = rowsum_ptr + offs_m * stride_rowsum
            r_sum = up(tl.load(r_ptrs, mask=in_m, other=0.0)) + rowsum
            tl.store(r_ptrs, cast_to(r_sum, rowsum_ptr.dtype.element_ty), mask=in_m)


# (BLOCK_M, BLOCK_N, BLOCK_K, warps, stages) of the accumulating GEMM, by operand kind: the
# tensor-core tiles of the backward GEMMs in matmul.py, at most 128x128 (the accumulator
# and the tile of C it is added to are both live in the epilogue)
_LCE_TILES = {"16": (128, 128, 64, 8, 3), "tf32": (128, 128, 32, 8, 3),
              "ieee": (64, 128, 16, 4, 3), "64": (64, 64, 16, 4, 3)}


def _lce_tile_interpreted(m, n, k):
    """The interpreter runs each block as one numpy op: few, tall tiles (up to 64k elements)."""
    bn = max(16, min(_launch.next_pow2(n), 64))
    bk = max(16, min(_launch.next_pow2(k), 64))
    bm = max(16, min(_launch.next_pow2(m), (1 << 16) // max(bn, bk)))
    return bm, bn, bk, 4, 1


def _lce_kind(dt):
    if dt in (D.bfloat16, D.float16):
        return "16"
    if dt is D.float64:
        return "64"
    return "tf32" if allow_tf32() else "ieee"


def _lce_accumulate(a, b, c, rowsum):
    """``c += a @ b`` (c None: skipped) and ``rowsum += a.sum(1)`` (None: skipped)."""
    (m, k), dt = buffers.shape(a), buffers.dtype_of(a)
    dot = c is not None and numel(buffers.shape(c)) > 0
    n = buffers.shape(b)[1] if dot else 1
    if m == 0 or not (dot or rowsum is not None):
        return
    kind = _lce_kind(dt)
    bm, bn, bk, warps, stages = _lce_tile_interpreted(m, n, k) if INTERPRET else \
        _LCE_TILES[kind]
    sa, sb = buffers.strides(a), buffers.strides(b)
    sc = buffers.strides(c) if dot else (0, 0)
    acc_buf = c if dot else rowsum
    launch(_lce_accumulate_kernel, (cdiv(m, bm) * cdiv(n, bn),),
           a, b, acc_buf, acc_buf if rowsum is None else rowsum, m, n, k,
           sa[0], sa[1], sb[0], sb[1], sc[0], sc[1],
           0 if rowsum is None else buffers.strides(rowsum)[0],
           DOT=dot, ROWSUM=rowsum is not None, FP64=dt is D.float64,
           INPUT_PRECISION="tf32" if kind == "tf32" else "ieee",
           DOT_IN_FP32=INTERPRET and dt is D.bfloat16,
           BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=8, num_warps=warps, num_stages=stages)


def _lce_plan(budget, n, v, hidden, dt, need_dw, need_db):
    """``(rows per chunk, whether dW and db add up in float32 accumulators)``.

    The accumulators: float32/float64 add up in the returned buffers. For float16 and
    bfloat16 the float32 accumulators ((V * H + V) * 4 bytes, the parts wanted) are used
    when they take at most half of ``budget``; otherwise dW and db add up in the returned
    16-bit buffers, rounded once per chunk (the mirror's rule, the same decision).
    Rows: the budget, less the float32 accumulators when used and the (N,) loss and lse
    vectors (but never less than a quarter of it), holds a chunk's (rows, V) logits in h's
    dtype (dh's rows are written in place). The fewest chunks that fit, of equal rows (a
    multiple of 16 where that still fits: whole GEMM K steps, the divisibility the
    compiled specializations assume).
    """
    acc_item = 8 if dt is D.float64 else 4
    low = dt in (D.bfloat16, D.float16)
    acc_bytes = (v * hidden * need_dw + v * need_db) * 4 if low else 0
    in_float32 = acc_bytes <= budget // 2
    # what the (N,) vectors and the accumulators leave, but at least a quarter of the budget
    # (the vectors of a huge batch over few classes, which no chunking shrinks)
    room = max(budget - 2 * n * acc_item - (acc_bytes if in_float32 else 0), budget // 4)
    most = max(1, min(n, room // max(v * dt.itemsize, 1)))
    rows = cdiv(n, cdiv(n, most))                        # equal chunks, as few as fit
    if rows < n and cdiv(rows, 16) * 16 <= most:
        rows = cdiv(rows, 16) * 16
    return rows, in_float32


class _LceRun:
    """What every chunk of one call shares: sizes, strides, flags and the gradient buffers."""

    def __init__(self, h, w, b, target, ignore_index, label_smoothing, reduction, budget,
                 need_dh, need_dw, need_db):
        self.h, self.w, self.b, self.target = h, w, b, target
        self.dt = buffers.dtype_of(h)
        self.acc_dt = D.float64 if self.dt is D.float64 else D.float32
        self.n, self.hidden = buffers.shape(h)
        self.v = buffers.shape(w)[0]
        self.ignore_index, self.reduction = ignore_index, reduction
        self.smooth = bool(label_smoothing)
        self.one_minus_eps = float_bits(1.0 - label_smoothing)
        self.eps_over_c = float_bits(label_smoothing / self.v)
        self.rows, in_float32 = _lce_plan(budget, self.n, self.v, self.hidden, self.dt,
                                          need_dw, need_db)
        sum_dt = self.acc_dt if in_float32 else self.dt       # where dW and db add up
        self.dh = buffers.empty((self.n, self.hidden), self.dt) if need_dh else None
        self.dw = full((self.v, self.hidden), 0, sum_dt) if need_dw else None
        self.db = full((self.v,), 0, sum_dt) if need_db else None
        self.count = None
        if reduction == "mean" and (need_dh or need_dw or need_db):
            # "mean" scales every row by the count of rows not ignored in ALL chunks
            self.count = buffers.empty((1,), self.acc_dt)
            block = _launch.rows(1, self.n)[1]
            launch(_ce_total_kernel, (1,), self.count, target, self.count, self.n,
                   buffers.strides(target)[0], ignore_index, MODE="count",
                   ACC=_acc(self.dt), BLOCK=block, num_warps=_launch.warps(block))

    def chunks(self):
        """``(rows slice, h's rows, target's rows, their logits)`` for each chunk, in order."""
        for r0 in range(0, self.n, self.rows):
            sl = slice(r0, min(self.n, r0 + self.rows))
            hc = buffers.view_index(self.h, sl)
            yield sl, hc, buffers.view_index(self.target, sl), linear_fwd(hc, self.w, self.b,
                                                                          False)

    def ce_fwd(self, z, tc, loss_rows, lse_rows, check):
        """The chunk's losses and log-sum-exps (no total), its targets checked as ``check``."""
        rows, c = buffers.shape(z)
        bm, bn, warps = _launch.rows(rows, c)
        err, site, checking = buffers.error_args(check, lse_rows)
        launch(_ce_fwd_kernel, (cdiv(rows, bm),),
               z, tc, loss_rows, lse_rows, lse_rows, lse_rows, err, rows, c,
               *buffers.strides(z), buffers.strides(tc)[0], self.ignore_index,
               self.one_minus_eps, self.eps_over_c, site, SMOOTH=self.smooth, ACC=_acc(self.dt),
               MODE="rows", ONE_PROGRAM=True, CHECK=checking, BLOCK_M=bm, BLOCK_N=bn,
               BLOCK_T=16, num_warps=warps)
        if checking:
            buffers.checked_launch()

    def dlogits_(self, z, tc, lse_rows, g, g_stride):
        """z (the chunk's logits) overwritten with d loss / d z, the upstream ``g`` per row
        (None: 1)."""
        rows, c = buffers.shape(z)
        sn, sc = buffers.strides(z)
        mean = self.reduction == "mean"
        bm, bn, warps = _launch.rows(rows, c)
        launch(_ce_bwd_kernel, (cdiv(rows, bm),),
               z, tc, lse_rows, lse_rows if g is None else g,
               self.count if mean else lse_rows, z, rows, c, sn, sc,
               buffers.strides(tc)[0], g_stride, sn, sc, self.ignore_index, self.one_minus_eps,
               self.eps_over_c, 0, SMOOTH=self.smooth, MEAN=mean, UNIT=g is None,
               ACC=_acc(self.dt), BLOCK_M=bm, BLOCK_N=bn, num_warps=warps)

    def backprop(self, dz, hc, sl):
        """The chunk's share: dh's rows = dz @ w (written in place); dW += dz.T @ h_c and
        db += dz.sum(0)."""
        if self.dh is not None and self.hidden:
            rows = buffers.view_index(self.dh, sl)
            _gemm(dz, self.w, rows, buffers.shape(dz)[0], self.hidden, self.v,
                  buffers.strides(dz), buffers.strides(self.w), buffers.strides(rows))
        if self.dw is not None or self.db is not None:
            _lce_accumulate(buffers.permute(dz, (1, 0)), hc, self.dw, self.db)

    def gradients(self):
        """``(dh, dw, db)``: float32 accumulators rounded once to h's dtype (16-bit sums
        and float32/float64 ones are already the gradients)."""
        def rounded(x):
            return x if x is None or buffers.dtype_of(x) is self.dt else cast(x, self.dt)
        return self.dh, rounded(self.dw), rounded(self.db)


def linear_cross_entropy_fwd(h, w, b, target, ignore_index, label_smoothing, reduction, budget,
                             need_dh, need_dw, need_db, check):
    """Cross-entropy of ``h @ w.T + b`` against ``target``, chunk by chunk of rows.

    Returns ``(loss, lse, dh, dw, db)``; for "sum"/"mean" the gradients asked for
    (upstream 1) come from the same pass, written over each chunk's logits once its
    log-sum-exps are known. Each chunk's targets are checked as ``check`` says.
    """
    grads = reduction != "none" and (need_dh or need_dw or need_db)
    run = _LceRun(h, w, b, target, ignore_index, label_smoothing, reduction, budget,
                  need_dh and grads, need_dw and grads, need_db and grads)
    loss_rows = buffers.empty((run.n,), run.dt if reduction == "none" else run.acc_dt)
    lse = buffers.empty((run.n,), run.acc_dt)
    for sl, hc, tc, z in run.chunks():
        lse_rows = buffers.view_index(lse, sl)
        run.ce_fwd(z, tc, buffers.view_index(loss_rows, sl), lse_rows, check)
        if grads:
            run.dlogits_(z, tc, lse_rows, None, 0)          # the upstream 1, in the kernel
            run.backprop(z, hc, sl)
        del z                   # the chunk's logits go before the next chunk's come
    if reduction == "none":
        return loss_rows, lse, None, None, None
    out = buffers.empty((), run.dt)
    block = _launch.rows(1, run.n)[1]
    launch(_ce_total_kernel, (1,), loss_rows, target, out, run.n, buffers.strides(target)[0],
           ignore_index, MODE=reduction, ACC=_acc(run.dt), BLOCK=block,
           num_warps=_launch.warps(block))
    return (out, lse) + run.gradients()


def linear_cross_entropy_bwd(grad_loss, h, w, b, target, lse, ignore_index, label_smoothing,
                             reduction, budget, need_dh, need_dw, need_db):
    """``(dh, dw, db)`` for the upstream ``grad_loss``, each chunk's logits computed again."""
    run = _LceRun(h, w, b, target, ignore_index, label_smoothing, reduction, budget,
                  need_dh, need_dw, need_db)
    per_row = reduction == "none"
    for sl, hc, tc, z in run.chunks():
        g = buffers.view_index(grad_loss, sl) if per_row else grad_loss
        run.dlogits_(z, tc, buffers.view_index(lse, sl), g,
                     buffers.strides(g)[0] if per_row else 0)
        run.backprop(z, hc, sl)
        del z
    return run.gradients()


@triton.jit
def _lce_scale_kernel(x_ptr, g_ptr, n, BLOCK: tl.constexpr):
    """``x[:n] *= g`` in place, x contiguous and g 0-d of x's dtype (16-bit in float32)."""
    lin = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = lin < n
    g = up(tl.load(g_ptr))
    x = up(tl.load(x_ptr + lin, mask=mask, other=0))
    tl.store(x_ptr + lin, cast_to(x * g, x_ptr.dtype.element_ty), mask=mask)


def linear_cross_entropy_scale_(grad_loss, dh, dw, db):
    """The forward's gradients times the 0-d upstream gradient, in place."""
    for x in (dh, dw, db):
        n = 0 if x is None else numel(buffers.shape(x))
        if n:
            block, warps = _launch.elementwise(n)
            launch(_lce_scale_kernel, (cdiv(n, block),), x, grad_loss, n, BLOCK=block,
                   num_warps=warps)
    return dh, dw, db


def _lce_entry(name, dt, kind, dot=True, sums=None):
    """One specialization of ``_lce_accumulate_kernel`` as the runtime compiles it for a
    contiguous chunk with sizes that are multiples of 16: A = dlogits.T (unit stride along
    M), h's rows, C and rowsum contiguous (those unit strides become constexpr 1); every
    pointer and every other size and stride an i32 divisible by 16. ``sums``: the dtype
    dW and db add up in (default float32, float64 for float64; ``dt`` itself for the
    16-bit sums of large vocabularies)."""
    bm, bn, bk, warps, stages = _LCE_TILES[kind]
    acc = sums or ("fp64" if dt == "fp64" else "fp32")
    constexprs = {"DOT": dot, "ROWSUM": True, "FP64": dt == "fp64",
                  "INPUT_PRECISION": "tf32" if kind == "tf32" else "ieee", "DOT_IN_FP32": False,
                  "BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": 8,
                  "stride_am": 1, "stride_bn": 1, "stride_cn": 1, "stride_rowsum": 1}
    fn = _lce_accumulate_kernel
    return aot_entry(name, fn, {"a_ptr": dt, "b_ptr": dt, "c_ptr": acc, "rowsum_ptr": acc},
                     constexprs, scalar_type="i32",
                     divisible_by_16=[k for k in fn.arg_names if k not in constexprs],
                     num_warps=warps, num_stages=stages,
                     ptx_contains={90: ["wgmma.mma_async"]} if dot and kind in ("16", "tf32")
                     else {})


def _lce_kernels():
    return [_lce_entry("lce_accumulate_bf16", "bf16", "16"),
            _lce_entry("lce_accumulate_fp16", "fp16", "16"),
            _lce_entry("lce_accumulate_bf16_sums_bf16", "bf16", "16", sums="bf16"),
            _lce_entry("lce_accumulate_fp16_sums_fp16", "fp16", "16", sums="fp16"),
            _lce_entry("lce_accumulate_fp32", "fp32", "ieee"),
            _lce_entry("lce_accumulate_fp32_tf32", "fp32", "tf32"),
            _lce_entry("lce_accumulate_fp64", "fp64", "64"),
            _lce_entry("lce_rowsum_bf16", "bf16", "16", dot=False),
            _lce_entry("lce_rowsum_bf16_sums_bf16", "bf16", "16", dot=False, sums="bf16"),
            aot_entry("lce_scale_bf16", _lce_scale_kernel, "bf16", {"BLOCK": 1024})]


KERNELS = KERNELS + _lce_kernels()
