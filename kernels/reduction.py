"""Reductions along dimensions (Triton). Twins of ``fallback_cpu/reduction.py``.

A reduction over any set of dims is a row reduction of an (M, K) view: the kept
dims become the rows, the reduced dims the columns. When each group collapses
to a single stride the kernel reads ``x`` in place (a transpose is a stride
swap); otherwise the permuted operand is first copied contiguous. Few long
rows (a full reduction) are split into column chunks whose partial results a
second launch reduces in a fixed order: deterministic, no atomics.

float16/bfloat16 accumulate in float32, float64 in float64, integer and bool
sums in int64; max/min propagate NaN as numpy does. ``sum_to_shape`` (the
backward of broadcasting) is a sum over the broadcast dims.
"""
from __future__ import annotations

import numpy as np
import triton
import triton.language as tl

from .. import dtypes as D
from . import _launch, buffers
from ._jitlib import cast_to, div_rn, strided_offset
from ._launch import aot_entry, cdiv, launch, launch_strided, numel
from .memory import cast, contiguous, full

# ----------------------------------------------------------------------------------------------
# kernels
# ----------------------------------------------------------------------------------------------


@triton.jit
def _reduce_kernel(x_ptr, out_ptr, M, K, stride_xm, stride_xk, chunk, n_chunks, count,
                   OP: tl.constexpr, ACC: tl.constexpr, IDENTITY: tl.constexpr,
                   FINAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr):
    """out[m * n_chunks + s] = OP(x[m, s*chunk : (s+1)*chunk]) for OP in sum, mean, max, min.

    Rows ``m`` are BLOCK_M to a program (axis 0), column chunks ``s`` on axis 1.
    The tile accumulates elementwise in ``ACC`` and is reduced across columns
    once at the end. With FINAL, "mean" divides by ``count`` (the full K).
    """
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_mask = rows < M
    split = tl.program_id(1).to(tl.int64)
    k_lo = split * chunk
    k_hi = tl.minimum(k_lo + chunk, K)
    cols0 = tl.arange(0, BLOCK_K).to(tl.int64)
    acc = tl.full((BLOCK_M, BLOCK_K), IDENTITY, ACC)
    nan_seen = tl.zeros((BLOCK_M, BLOCK_K), tl.int32)
    for k0 in range(k_lo, k_hi, BLOCK_K):
        cols = k0 + cols0
        mask = row_mask[:, None] & (cols < k_hi)[None, :]
        x = tl.load(x_ptr + rows[:, None] * stride_xm + cols[None, :] * stride_xk, mask=mask,
                    other=IDENTITY).to(ACC)
        if OP == "sum" or OP == "mean":
            acc += x
        elif OP == "max":
            acc = tl.maximum(acc, x)
        else:
            acc = tl.minimum(acc, x)
        if OP == "max" or OP == "min":
            nan_seen = nan_seen | (x != x).to(tl.int32)
    if OP == "sum" or OP == "mean":
        r = tl.sum(acc, axis=1)
        if FINAL and OP == "mean":
            # IEEE-rounded, as numpy's mean (``count`` may arrive as a constexpr 1)
            r = div_rn(r, tl.zeros_like(r) + count)
    else:
        if OP == "max":
            r = tl.max(acc, axis=1)
        else:
            r = tl.min(acc, axis=1)
        if tl.constexpr(ACC.is_floating()):
            r = tl.where(tl.max(nan_seen, axis=1) > 0, float("nan"), r)
    if tl.constexpr(out_ptr.dtype.element_ty == tl.int1):
        r = r != 0
    tl.store(out_ptr + rows * n_chunks + split, cast_to(r, out_ptr.dtype.element_ty), mask=row_mask)


@triton.jit
def _argmax_kernel(x_ptr, out_ptr, M, K, stride_xm, stride_xk,
                   ACC: tl.constexpr, IDENTITY: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr):
    """out[m] = index (int64) of the first maximum of row m; the first NaN wins, as np.argmax."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_mask = rows < M
    cols0 = tl.arange(0, BLOCK_K).to(tl.int64)
    best = tl.full((BLOCK_M,), IDENTITY, ACC)
    best_i = tl.zeros((BLOCK_M,), tl.int64)
    first_nan = tl.full((BLOCK_M,), K, tl.int64)
    for k0 in range(0, K, BLOCK_K):
        cols = k0 + cols0
        mask = row_mask[:, None] & (cols < K)[None, :]
        x = tl.load(x_ptr + rows[:, None] * stride_xm + cols[None, :] * stride_xk, mask=mask,
                    other=IDENTITY).to(ACC)
        if tl.constexpr(ACC.is_floating()):
            is_nan = (x != x) & mask
            first_nan = tl.minimum(first_nan, tl.min(tl.where(is_nan, cols[None, :], K), axis=1))
            x = tl.where(is_nan, IDENTITY, x)
        # 1. the block's maximum and the first column holding it
        block_max = tl.max(x, axis=1)
        hit = (x == block_max[:, None]) & mask
        block_i = tl.min(tl.where(hit, cols[None, :], K), axis=1)
        # 2. strictly greater than the running maximum: an earlier equal maximum keeps its index
        better = block_max > best
        best_i = tl.where(better, block_i, best_i)
        best = tl.where(better, block_max, best)
    tl.store(out_ptr + rows, tl.where(first_nan < K, first_nan, best_i), mask=row_mask)


@triton.jit
def _max_bwd_kernel(out_ptr, g_ptr, idx_ptr, dim_stride, n, size1, size2, size3,
                    stride_out_0, stride_out_1, stride_out_2, stride_out_3,
                    stride_g0, stride_g1, stride_g2, stride_g3,
                    stride_idx_0, stride_idx_1, stride_idx_2, stride_idx_3,
                    NDIM: tl.constexpr, BLOCK: tl.constexpr):
    """out[..., idx, ...] = g at each position of the reduced shape (out pre-zeroed).

    ``out`` is the output's view at index 0 of the reduced dim; ``dim_stride``
    steps from there to the maximum's index ``idx``.
    """
    lin = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = lin < n
    g_off = strided_offset(lin, size1, size2, size3, stride_g0, stride_g1, stride_g2, stride_g3,
                           NDIM)
    g = tl.load(g_ptr + g_off, mask=mask, other=0)
    idx_off = strided_offset(lin, size1, size2, size3, stride_idx_0, stride_idx_1, stride_idx_2,
                             stride_idx_3, NDIM)
    i = tl.load(idx_ptr + idx_off, mask=mask, other=0).to(tl.int64)
    out_off = strided_offset(lin, size1, size2, size3, stride_out_0, stride_out_1, stride_out_2,
                             stride_out_3, NDIM)
    tl.store(out_ptr + out_off + i * dim_stride, cast_to(g, out_ptr.dtype.element_ty), mask=mask)


# ----------------------------------------------------------------------------------------------
# launchers
# ----------------------------------------------------------------------------------------------


def _acc_of(dt, op):
    """(accumulator tl dtype, its buffer dtype) for reducing dtype ``dt`` with ``op``."""
    if dt is D.float64:
        return tl.float64, D.float64
    if dt.is_floating:
        return tl.float32, D.float32
    return tl.int64, D.int64


def _identity(op, dt):
    """The identity of ``op`` as a value of dtype ``dt`` (what masked lanes load as)."""
    if op in ("sum", "mean"):
        return 0
    if dt.is_floating:
        return float("-inf") if op == "max" else float("inf")
    if dt is D.bool_:
        return 0 if op == "max" else 1
    info = np.iinfo(dt.np)
    return int(info.min) if op == "max" else int(info.max)


def _as_rows(x, dims):
    """``(buf, M, K, stride_m, stride_k)``: ``x`` as M rows of the K elements over ``dims``
    (the other dims, in order, make the rows); a copy only when a group does not collapse.
    The norm family's row kernels view their operands this way too."""
    shape, strides = buffers.shape(x), buffers.strides(x)
    kept = [d for d in range(len(shape)) if d not in dims]
    kshape = tuple(shape[d] for d in kept)
    rshape = tuple(shape[d] for d in dims)
    m, k = numel(kshape), numel(rshape)
    lm = _launch.layout(kshape, (tuple(strides[d] for d in kept),))
    lk = _launch.layout(rshape, (tuple(strides[d] for d in dims),))
    if lm is not None and lk is not None and lm[0] == 1 and lk[0] == 1:
        return x, m, k, lm[2][0][3], lk[2][0][3]
    xc = contiguous(buffers.permute(x, kept + list(dims)))
    return xc, m, k, k, 1


def reduce(x, dims, keepdim, op):
    """``op`` in sum, mean, max, min over ``dims`` (a tuple; empty means all)."""
    shape = buffers.shape(x)
    nd = len(shape)
    dims = tuple(sorted({d % nd for d in dims})) if (dims and nd) else tuple(range(nd))
    dt = buffers.dtype_of(x)
    out_dt = D.int64 if (op == "sum" and not dt.is_floating) else dt
    out_shape = tuple(1 if i in dims else s for i, s in enumerate(shape)) if keepdim else \
        tuple(s for i, s in enumerate(shape) if i not in dims)
    out = buffers.empty(out_shape, out_dt)
    xr, m, k, sm, sk = _as_rows(x, dims)
    if m == 0:
        return out
    acc, acc_dt = _acc_of(dt, op)
    n_chunks, chunk = _launch.reduce_split(m, k)
    flat = buffers.view_shape(out, (m,))
    if n_chunks == 1:
        bm, bk, warps = _launch.rows(m, max(k, 1))
        launch(_reduce_kernel, (cdiv(m, bm), 1),
            xr, flat, m, k, sm, sk, max(k, 1), 1, k, OP=op, ACC=acc,
            IDENTITY=_identity(op, dt), FINAL=True, BLOCK_M=bm, BLOCK_K=bk, num_warps=warps)
        return out
    # stage 1: partial results of each column chunk; stage 2: reduce the partials in order
    part = buffers.empty((m, n_chunks), acc_dt)
    bm, bk, warps = _launch.rows(m, chunk)
    launch(_reduce_kernel, (cdiv(m, bm), n_chunks),
        xr, part, m, k, sm, sk, chunk, n_chunks, k, OP=op, ACC=acc,
        IDENTITY=_identity(op, dt), FINAL=False, BLOCK_M=bm, BLOCK_K=bk, num_warps=warps)
    bm, bk, warps = _launch.rows(m, n_chunks)
    launch(_reduce_kernel, (cdiv(m, bm), 1),
        part, flat, m, n_chunks, n_chunks, 1, n_chunks, 1, k, OP=op, ACC=acc,
        IDENTITY=_identity(op, acc_dt), FINAL=True, BLOCK_M=bm, BLOCK_K=bk, num_warps=warps)
    return out


def sum_to_shape(g, shape):
    """Sum a broadcast gradient ``g`` back down to ``shape`` (the backward of broadcasting)."""
    shape = tuple(shape)
    gshape = buffers.shape(g)
    if gshape == shape:
        return g
    lead = len(gshape) - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, s in enumerate(shape)
                                      if s == 1 and gshape[i + lead] != 1)
    r = reduce(g, axes, True, "sum")
    if buffers.dtype_of(r) is not buffers.dtype_of(g):
        r = cast(r, buffers.dtype_of(g))          # integer sums come back as int64
    return buffers.reshape(r, shape)


def argmax(x, dim, keepdim):
    """Index (int64) of the first maximum along ``dim`` (all elements, flattened, when None)."""
    shape = buffers.shape(x)
    nd = len(shape)
    if dim is None:
        dims = tuple(range(nd))
        out_shape = (1,) * nd if keepdim else ()
    else:
        dim %= max(nd, 1)
        dims = (dim,) if nd else ()
        out_shape = tuple(1 if i == dim else s for i, s in enumerate(shape)) if keepdim else \
            tuple(s for i, s in enumerate(shape) if i != dim)
    out = buffers.empty(out_shape, D.int64)
    if dim is None and nd > 1:
        x = contiguous(x)               # flattened order is row-major order
    xr, m, k, sm, sk = _as_rows(x, dims)
    if m == 0:
        return out
    dt = buffers.dtype_of(x)
    acc, _ = _acc_of(dt, "max")
    bm, bk, warps = _launch.rows(m, max(k, 1))
    warps = min(warps, ARGMAX_MAX_WARPS)
    launch(_argmax_kernel, (cdiv(m, bm),),
        xr, buffers.view_shape(out, (m,)), m, k, sm, sk, ACC=acc, IDENTITY=_identity("max", dt),
        BLOCK_M=bm, BLOCK_K=bk, num_warps=warps)
    return out


# Past 8 warps ptxas caps argmax's (value, int64 index) pairs at 64 registers and spills on
# sm_80; max_bwd's int64 index math spills on sm_90 at 4 warps (tests/test_aot_compile.py).
ARGMAX_MAX_WARPS = 8
MAX_BWD_WARPS = 8


def max_bwd(grad, x, indices, dim, keepdim):
    """Route ``grad`` of ``x.max(dim)`` to the position of the (first) maximum."""
    shape = buffers.shape(x)
    out = full(shape, 0, buffers.dtype_of(grad))
    kshape = tuple(1 if i == dim else s for i, s in enumerate(shape))
    g = grad if keepdim else buffers.reshape(grad, kshape)
    idx = indices if keepdim else buffers.reshape(indices, kshape)
    at0 = buffers.view_index(out, (slice(None),) * dim + (slice(0, 1),))
    launch_strided(_max_bwd_kernel, [at0, g, idx], (buffers.strides(out)[dim],),
                   num_warps=MAX_BWD_WARPS)
    return out


# ----------------------------------------------------------------------------------------------
# ahead-of-time compile list (format: kernels/_launch.py)
# ----------------------------------------------------------------------------------------------

def _kernels():
    out = []
    for op, dt, acc, odt, ident in (("sum", "bf16", tl.float32, "bf16", 0),
                                    ("mean", "fp32", tl.float32, "fp32", 0),
                                    ("max", "fp16", tl.float32, "fp32", float("-inf")),
                                    ("min", "fp64", tl.float64, "fp64", float("inf")),
                                    ("sum", "i1", tl.int64, "i64", 0),
                                    ("max", "i32", tl.int64, "i32", -2 ** 31)):
        for final in (False, True):
            out.append(aot_entry(f"reduce_{op}_{dt}_{'final' if final else 'partial'}",
                                 _reduce_kernel, {"x_ptr": dt, "out_ptr": odt},
                                 {"OP": op, "ACC": acc, "IDENTITY": ident, "FINAL": final,
                                  "BLOCK_M": 4, "BLOCK_K": 1024}))
    for dt, acc, ident in (("bf16", tl.float32, float("-inf")), ("i64", tl.int64, -2 ** 63)):
        out.append(aot_entry(f"argmax_{dt}", _argmax_kernel, {"x_ptr": dt, "out_ptr": "i64"},
                             {"ACC": acc, "IDENTITY": ident, "BLOCK_M": 1, "BLOCK_K": 4096},
                             num_warps=ARGMAX_MAX_WARPS))
    out.append(aot_entry("max_bwd_fp32", _max_bwd_kernel,
                         {"out_ptr": "fp32", "g_ptr": "fp32", "idx_ptr": "i64"},
                         {"NDIM": 2, "BLOCK": 1024}, num_warps=MAX_BWD_WARPS))
    return out


KERNELS = _kernels()
