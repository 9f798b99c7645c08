"""Matrix products and the fused linear layer (Triton).

Twins of ``fallback_cpu/matmul.py`` (same names, same signatures):

* ``linear_fwd(x, w, b, relu)``: ``relu(x @ w.T + b)`` in one GEMM kernel, bias
  and ReLU applied to the float32 accumulator in the epilogue.
* ``linear_bwd(grad_out, x, w, out, relu, need_dx, need_dw, need_db)``: dX and
  dW as two GEMMs that read the upstream gradient through the ReLU mask
  (``out > 0``) as they load it; db is the row sum of the dW GEMM's A operand
  (``g.T``), taken by the programs of the first column of output tiles, so it
  needs no atomics and is bit-for-bit reproducible.
* ``matmul(a, b)``: 2-D and batched (numpy broadcasting of batch dims) with
  arbitrary strides; 1-D operands are reshaped by ``ops.matmul`` before this.

Everything is one kernel, ``_gemm_kernel``: ``C[z] = epilogue(A[z] @ B[z])``
with A (M, K), B (K, N), C (M, N) given by strides (a transpose is a stride
swap, never a copy) and up to two batch dims ``z = (z0, z1)``. float16 and
bfloat16 multiply on tensor cores with a float32 accumulator; float32 is IEEE
(FMA) unless ``tritonnn.precision.allow_tf32()``; float64 uses the fp64 MMA of
sm_80+ with a float64 accumulator. Outputs come back in the input dtype. The tile
is the autotuner's choice, except for outputs of at most ``SMALL_M`` rows that the
autotuned tiles would cover with fewer programs than the GPU has SMs (a batch-sized
layer): there ``_host_tile`` picks a smaller one per shape bucket.

``KERNELS`` lists example specializations for ahead-of-time compilation
(format: ``kernels/_launch.py``), built by ``_gemm_entry`` as the runtime
specializes contiguous operands.
"""
from __future__ import annotations

import functools
import itertools

import triton
import triton.language as tl

from .. import dtypes as D
from ..precision import allow_tf32
from . import buffers
from ._interpret import INTERPRET
from ._launch import aot_entry, cdiv, launch, merge_dims

# ----------------------------------------------------------------------------------------------
# tile configurations
# ----------------------------------------------------------------------------------------------


def _cfg(bm, bn, bk, warps, stages, group_m=8):
    return triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": group_m},
                         num_warps=warps, num_stages=stages)


# float16 / bfloat16: tensor-core tiles. 128x256x64 with 8 warps is the wgmma-sized tile for
# sm_90 (two warpgroups of m64n256); the 128x128 tiles are the sm_80 mma.sync workhorses;
# the 64-wide ones keep enough programs in flight for small M or N.
_CONFIGS_16 = [
    _cfg(128, 256, 64, 8, 3),
    _cfg(256, 128, 64, 8, 3),
    _cfg(128, 128, 64, 8, 4),
    _cfg(128, 128, 32, 4, 4),
    _cfg(128, 64, 32, 4, 4),
    _cfg(64, 128, 32, 4, 4),
    _cfg(64, 64, 32, 4, 4),
]
# float32 with TF32 allowed: tensor cores, fp32 operands take twice the shared memory of 16-bit.
_CONFIGS_TF32 = [
    _cfg(128, 128, 32, 8, 3),
    _cfg(128, 64, 32, 4, 4),
    _cfg(64, 128, 32, 4, 4),
    _cfg(64, 64, 32, 4, 4),
]
# float32 IEEE (the default): tl.dot lowers to FMAs with both operand slices held in
# registers, so BLOCK_K stays small; every tile here compiles without spills on sm_80/sm_90.
_CONFIGS_IEEE = [
    _cfg(128, 128, 16, 8, 3),
    _cfg(64, 128, 16, 4, 3),
    _cfg(64, 64, 32, 8, 3),
    _cfg(32, 64, 32, 4, 4),
]
# float64: fp64 MMA (m8n8k4); the accumulator takes twice the registers, so smaller tiles.
_CONFIGS_64 = [
    _cfg(64, 64, 16, 4, 3),
    _cfg(64, 32, 16, 4, 3),
    _cfg(32, 64, 16, 4, 3),
]
# The interpreter runs each block as one numpy op, so one big tile is fastest there.
_CONFIG_INTERPRET = _cfg(64, 64, 64, 4, 1)

_CONFIGS_BY_KIND = {"16": _CONFIGS_16, "tf32": _CONFIGS_TF32, "ieee": _CONFIGS_IEEE,
                    "64": _CONFIGS_64}
# the backward GEMMs also hold the ReLU mask (and the db row sums) in registers: tiles
# above 128x128 spill there
_MAX_TILE_MASKED = 128 * 128


# Small outputs: one tile picked on the host. The autotuned tiles above fill an H100 only when
# the output has hundreds of them; a batch-128 MLP's GEMMs (M = 128, N = 10..256, and their
# backward) get 2-16 programs on 132 SMs (104 for the first layer's dW), each walking all of
# K alone. When even the kind's smallest autotuned tile leaves SMs idle and M <= SMALL_M,
# ``_host_tile`` picks, once per shape bucket, the largest of these tiles (all below the
# autotuned ones) whose program count reaches the SM count, else the smallest (the most
# programs the shape allows): no benchmarking, one compile per bucket, and no autotuner in
# the launch path.
# 16-bit and TF32 tiles keep BLOCK_M = 64, the M of one warpgroup's wgmma on sm_90; float32
# IEEE (FMA) and float64 go down to 16 x 16, the smallest tl.dot. No split-K: its partial sums
# need a second launch or atomics (a last-program-reduces counter), and the training step's
# launch budget and bitwise reproducibility rule out both.
SMALL_M = 256
_SMALL_16 = [
    _cfg(64, 32, 64, 4, 3),
    _cfg(64, 16, 64, 4, 3),
]
_SMALL_TF32 = [
    _cfg(64, 32, 32, 4, 4),
    _cfg(64, 16, 32, 4, 4),
]
_SMALL_IEEE = [
    _cfg(32, 32, 32, 4, 4),
    _cfg(16, 32, 64, 4, 3),
    _cfg(16, 16, 64, 4, 3),
]
_SMALL_64 = [
    _cfg(32, 32, 16, 4, 3),
    _cfg(16, 32, 16, 4, 3),
    _cfg(16, 16, 16, 2, 3),
]
_SMALL_BY_KIND = {"16": _SMALL_16, "tf32": _SMALL_TF32, "ieee": _SMALL_IEEE, "64": _SMALL_64}
# the launcher's switch: under the interpreter one big tile is faster (tests turn this on to
# run the small tiles there)
HOST_TILES = not INTERPRET


def _programs(cfg, m, n, batch):
    return cdiv(m, cfg.kwargs["BLOCK_M"]) * cdiv(n, cfg.kwargs["BLOCK_N"]) * batch


@functools.lru_cache(maxsize=1024)
def _host_tile(kind, m, n, batch, sms):
    """The tile for a GEMM of ``kind`` ("16", "tf32", "ieee", "64") with an (m, n) output per
    matrix and ``batch`` matrices on ``sms`` SMs, or None: let the autotuner choose.

    Called with bucketed sizes (``_tune_bucket``), so one answer serves a bucket and the
    kernel compiles once for it.
    """
    if m > SMALL_M or max(_programs(c, m, n, batch) for c in _CONFIGS_BY_KIND[kind]) >= sms:
        return None
    tiles = _SMALL_BY_KIND[kind]
    for cfg in tiles:
        if _programs(cfg, m, n, batch) >= sms:
            return cfg
    return tiles[-1]


def _config_key(c):
    return tuple(sorted(c.kwargs.items())), c.num_warps, c.num_stages


def _all_configs():
    if INTERPRET:
        return [_CONFIG_INTERPRET]
    unique = {}
    for kind in _CONFIGS_BY_KIND.values():
        for c in kind:
            unique.setdefault(_config_key(c), c)
    return list(unique.values())


def _config_kind(ptr, precision):
    name = str(ptr.dtype)
    if name.endswith(("float16", "bfloat16")):
        return "16"
    if name.endswith("float64"):
        return "64"
    return "tf32" if precision == "tf32" else "ieee"


def _tune_bucket(size: int) -> int:
    """The autotune key of a GEMM size: the next power of 2 (0 stays 0)."""
    return 0 if size <= 0 else 1 << (int(size) - 1).bit_length()


def _prune_configs(configs, named_args, **kwargs):
    """autotune's early prune hook: the tiles written for this dtype/precision and flags."""
    kind = _config_kind(named_args["a_ptr"], kwargs.get("INPUT_PRECISION"))
    wanted = {_config_key(c) for c in _CONFIGS_BY_KIND[kind]}
    masked = kwargs.get("MASK_A") or kwargs.get("ROWSUM_A")
    kept = [c for c in configs if _config_key(c) in wanted and not (
        masked and c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"] > _MAX_TILE_MASKED)]
    return kept or configs


# ----------------------------------------------------------------------------------------------
# the GEMM kernel
# ----------------------------------------------------------------------------------------------


@triton.autotune(configs=_all_configs(),
                 key=["M_TUNE", "N_TUNE", "K_TUNE", "BATCH", "MASK_A", "ROWSUM_A",
                      "INPUT_PRECISION"],
                 prune_configs_by={"early_config_prune": _prune_configs})
@triton.jit
def _gemm_kernel(
    # pointers
    a_ptr, b_ptr, c_ptr, bias_ptr, keep_ptr, rowsum_ptr,
    # sizes: C[z] (M, N) = A[z] (M, K) @ B[z] (K, N); z runs over BATCH = Z0 * Z1 matrices;
    # *_TUNE: M, N, K rounded up to powers of 2, the autotune key (a new batch size of the
    # same order reuses the tuned tile instead of benchmarking every config again)
    M, N, K, BATCH, Z1, M_TUNE, N_TUNE, K_TUNE,
    # strides (in elements)
    stride_az0, stride_az1, stride_am, stride_ak,
    stride_bz0, stride_bz1, stride_bk, stride_bn,
    stride_cz0, stride_cz1, stride_cm, stride_cn,
    stride_keep_m, stride_keep_k, stride_bias, stride_rowsum,
    # meta-parameters
    HAS_BIAS: tl.constexpr, RELU: tl.constexpr, MASK_A: tl.constexpr, ROWSUM_A: tl.constexpr,
    FP64: tl.constexpr, INPUT_PRECISION: tl.constexpr, DOT_IN_FP32: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    """``C[z] = epilogue(A'[z] @ B[z])`` for one (BLOCK_M, BLOCK_N) tile of one matrix z.

    A' is A, or with MASK_A, A zeroed where ``keep <= 0`` (``keep`` has A's shape and
    its own strides: the ReLU output read as the mask of the upstream gradient).
    The epilogue adds ``bias[n]`` (HAS_BIAS) then clamps at 0 (RELU). With ROWSUM_A
    the programs of tile column 0 also write ``rowsum[m] = sum_k A'[m, k]`` (the bias
    gradient, when A' is the masked ``g.T``). Inputs: fp16/bf16/fp32/fp64; the
    accumulator is fp32 (fp64 for fp64); C and rowsum are stored in their own dtypes.
    """
    # 1. Which tile: program ids run over BATCH x (tile grid of C). Within one matrix,
    #    tiles go in groups of GROUP_M rows of tiles, column by column, so the programs
    #    running together share A row-panels and B column-panels in L2.
    pid = tl.program_id(0).to(tl.int64)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    tiles = num_pid_m * num_pid_n
    z = pid // tiles
    tile = pid % tiles
    z0 = z // Z1
    z1 = z % Z1
    pids_in_group = GROUP_M * num_pid_n
    first_pid_m = (tile // pids_in_group) * GROUP_M
    group_rows = tl.minimum(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + (tile % pids_in_group) % group_rows
    pid_n = (tile % pids_in_group) // group_rows

    # 2. Offsets: int64 rows/cols (rows x stride can pass 2**31); K moves by pointer steps.
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    in_m = offs_m < M
    in_n = offs_n < N
    a_ptrs = a_ptr + (z0 * stride_az0 + z1 * stride_az1) \
        + offs_m[:, None] * stride_am + offs_k[None, :] * stride_ak
    b_ptrs = b_ptr + (z0 * stride_bz0 + z1 * stride_bz1) \
        + offs_k[:, None] * stride_bk + offs_n[None, :] * stride_bn
    keep_ptrs = keep_ptr + offs_m[:, None] * stride_keep_m + offs_k[None, :] * stride_keep_k
    step = tl.full((), BLOCK_K, tl.int64)     # int64 pointer steps along K
    a_step = step * stride_ak
    b_step = step * stride_bk
    keep_step = step * stride_keep_k

    if FP64:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float64)
        rowsum = tl.zeros((BLOCK_M,), dtype=tl.float64)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        rowsum = tl.zeros((BLOCK_M,), dtype=tl.float32)

    # 3. March along K. Out-of-range rows, cols and the K tail load as 0, which adds
    #    nothing to the dot product (and nothing to the row sums).
    for kb in range(0, tl.cdiv(K, BLOCK_K)):
        k_left = K - kb * BLOCK_K
        in_k = offs_k < k_left
        a = tl.load(a_ptrs, mask=in_m[:, None] & in_k[None, :], other=0.0)
        b = tl.load(b_ptrs, mask=in_k[:, None] & in_n[None, :], other=0.0)
        if MASK_A:
            # the ReLU's backward on the fly: g where out > 0, else 0 (0 at out == 0)
            keep = tl.load(keep_ptrs, mask=in_m[:, None] & in_k[None, :], other=0.0)
            a = tl.where(keep.to(acc.dtype) > 0, a, tl.zeros_like(a))
            keep_ptrs += keep_step
        if ROWSUM_A:
            rowsum += tl.sum(a.to(rowsum.dtype), axis=1)
        if DOT_IN_FP32:
            # interpreter only: its tl.dot multiplies bfloat16 bit patterns as integers
            acc = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
        else:
            acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION, out_dtype=acc.dtype)
        a_ptrs += a_step
        b_ptrs += b_step

    # 4. Epilogue on the accumulator, then one rounding to the output dtype.
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_n * stride_bias, mask=in_n, other=0.0)
        acc += bias.to(acc.dtype)[None, :]
    if RELU:
        acc = tl.where(acc < 0.0, 0.0, acc)      # NaN stays NaN (tl.maximum would drop it)
    c_ptrs = c_ptr + (z0 * stride_cz0 + z1 * stride_cz1) \
        + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=in_m[:, None] & in_n[None, :])
    if ROWSUM_A:
        # one owner per row (the tile column pid_n == 0): deterministic, no atomics
        if pid_n == 0:
            tl.store(rowsum_ptr + offs_m * stride_rowsum,
                     rowsum.to(rowsum_ptr.dtype.element_ty), mask=in_m)


def _gemm_grid(meta):
    return (triton.cdiv(meta["M"], meta["BLOCK_M"]) * triton.cdiv(meta["N"], meta["BLOCK_N"])
            * meta["BATCH"],)


# ----------------------------------------------------------------------------------------------
# bias gradient alone (no dW wanted): masked column sums
# ----------------------------------------------------------------------------------------------


@triton.jit
def _masked_colsum_kernel(
    g_ptr, keep_ptr, out_ptr,
    M, N,
    stride_gm, stride_gn, stride_keep_m, stride_keep_n, stride_out,
    MASK: tl.constexpr, FP64: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """``out[n] = sum_m g[m, n] * (keep[m, n] > 0 if MASK else 1)`` for BLOCK_N columns.

    g, keep: (M, N) any float dtype and strides; out: (N,) in its own dtype. Each
    program owns its columns and walks all of M in a fixed order: deterministic.
    """
    pid = tl.program_id(0).to(tl.int64)
    offs_n = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    in_n = offs_n < N
    if FP64:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float64)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for m0 in range(0, M, BLOCK_M):
        # a (BLOCK_M, BLOCK_N) slab of rows; summed elementwise, reduced once at the end
        offs_m = m0 + tl.arange(0, BLOCK_M).to(tl.int64)
        inside = (offs_m < M)[:, None] & in_n[None, :]
        g = tl.load(g_ptr + offs_m[:, None] * stride_gm + offs_n[None, :] * stride_gn,
                    mask=inside, other=0.0).to(acc.dtype)
        if MASK:
            keep = tl.load(keep_ptr + offs_m[:, None] * stride_keep_m
                           + offs_n[None, :] * stride_keep_n, mask=inside, other=0.0)
            g = tl.where(keep.to(acc.dtype) > 0, g, tl.zeros_like(g))
        acc += g
    tl.store(out_ptr + offs_n * stride_out, tl.sum(acc, axis=0).to(out_ptr.dtype.element_ty),
             mask=in_n)


_COLSUM_BLOCK = (64, 64) if INTERPRET else (32, 128)   # (BLOCK_M, BLOCK_N)


def _colsum_grid(meta):
    return (triton.cdiv(meta["N"], meta["BLOCK_N"]),)


# ----------------------------------------------------------------------------------------------
# launchers
# ----------------------------------------------------------------------------------------------

_NO_STRIDES = (0, 0)


def _precision(dtype):
    return "tf32" if dtype is D.float32 and allow_tf32() else "ieee"


def _kind(dtype, precision):
    """``_config_kind`` from a tritonnn dtype."""
    if dtype is D.float16 or dtype is D.bfloat16:
        return "16"
    if dtype is D.float64:
        return "64"
    return "tf32" if precision == "tf32" else "ieee"


def _gemm(a, b, c, m, n, k, a_strides, b_strides, c_strides, *, batch=1, z1=1,
          az=_NO_STRIDES, bz=_NO_STRIDES, cz=_NO_STRIDES, bias=None, relu=False,
          keep=None, keep_strides=_NO_STRIDES, rowsum=None):
    """Launch ``_gemm_kernel``: C (m, n) = A (m, k) @ B (k, n) given by element strides.

    The tile comes from ``_host_tile`` for small outputs, else from the autotuner.
    """
    dtype = buffers.dtype_of(a)
    precision = _precision(dtype)
    tile = _host_tile(_kind(dtype, precision), _tune_bucket(m), _tune_bucket(n),
                     _tune_bucket(batch), buffers.sm_count()) if HOST_TILES else None
    if tile is None:
        kernel, grid, meta = _gemm_kernel, _gemm_grid, {}
    else:
        kernel, grid = _gemm_kernel.fn, (_programs(tile, m, n, batch),)
        meta = dict(tile.kwargs, num_warps=tile.num_warps, num_stages=tile.num_stages)
    launch(kernel, grid,
        a, b, c,
        c if bias is None else bias, c if keep is None else keep, c if rowsum is None else rowsum,
        m, n, k, batch, z1, _tune_bucket(m), _tune_bucket(n), _tune_bucket(k),
        az[0], az[1], a_strides[0], a_strides[1],
        bz[0], bz[1], b_strides[0], b_strides[1],
        cz[0], cz[1], c_strides[0], c_strides[1],
        keep_strides[0], keep_strides[1],
        0 if bias is None else buffers.strides(bias)[0],
        0 if rowsum is None else buffers.strides(rowsum)[0],
        HAS_BIAS=bias is not None, RELU=relu, MASK_A=keep is not None,
        ROWSUM_A=rowsum is not None, FP64=dtype is D.float64,
        INPUT_PRECISION=precision, DOT_IN_FP32=INTERPRET and dtype is D.bfloat16, **meta,
    )


def _colsum(g, keep, out):
    m, n = buffers.shape(g)
    bm, bn = _COLSUM_BLOCK
    gs = buffers.strides(g)
    ks = _NO_STRIDES if keep is None else buffers.strides(keep)
    launch(_masked_colsum_kernel, _colsum_grid,
        g, g if keep is None else keep, out, m, n, gs[0], gs[1], ks[0], ks[1],
        buffers.strides(out)[0], MASK=keep is not None,
        FP64=buffers.dtype_of(g) is D.float64, BLOCK_M=bm, BLOCK_N=bn, num_warps=4)


def linear_fwd(x, w, b, relu):
    """``relu?(x @ w.T + b)``: x (M, K), w (N, K), b (N,) or None -> (M, N) in x's dtype.

    One kernel: the product accumulates in float32 (float64 for float64) and the
    bias and the ReLU are applied to the accumulator before the single store.
    """
    (m, k), n = buffers.shape(x), buffers.shape(w)[0]
    dtype = buffers.dtype_of(x)
    out = buffers.empty((m, n), dtype)
    if m and n:
        ws = buffers.strides(w)
        _gemm(x, w, out, m, n, k, buffers.strides(x), (ws[1], ws[0]), buffers.strides(out),
              bias=b, relu=relu)
    return out


def linear_bwd(grad_out, x, w, out, relu, need_dx, need_dw, need_db, dw_into=None,
               db_into=None):
    """Gradients of ``linear_fwd``: ``(dx, dw, db)`` with None where not needed.

    g = grad_out (M, N), read through the mask ``out > 0`` when ``relu`` (the saved
    forward output; PyTorch's convention: no gradient at 0).
      dx = g @ w          (M, K)   A = g,   B = w
      dw = g.T @ x        (N, K)   A = g.T, B = x;  db = row sums of A = g.sum(0)
    All three come back in grad_out's dtype; ``dw``/``db`` are written into
    ``dw_into``/``db_into`` (row-major, a parameter's gradient home) when given.
    """
    (m, k), n = buffers.shape(x), buffers.shape(w)[0]
    dtype = buffers.dtype_of(grad_out)
    gs = buffers.strides(grad_out)
    keep = out if relu else None
    ks = buffers.strides(out) if relu else _NO_STRIDES
    dx = dw = db = None
    if need_dx:
        dx = buffers.empty((m, k), dtype)
        if m and k:
            _gemm(grad_out, w, dx, m, k, n, gs, buffers.strides(w), buffers.strides(dx),
                  keep=keep, keep_strides=ks)
    if need_db:
        db = db_into if db_into is not None else buffers.empty((n,), dtype)
    if need_dw:
        dw = dw_into if dw_into is not None else buffers.empty((n, k), dtype)
        if n and k:
            xs = buffers.strides(x)
            _gemm(grad_out, x, dw, n, k, m, (gs[1], gs[0]), xs, buffers.strides(dw),
                  keep=keep, keep_strides=(ks[1], ks[0]), rowsum=db)
    if need_db and n and not (need_dw and k):
        _colsum(grad_out, keep, db)
    return dx, dw, db


# -- batched matmul ---------------------------------------------------------------------------


def _batch_layout(shape, strides, batch):
    """Strides of a (..., R, C) operand broadcast to batch dims ``batch`` (0 where broadcast)."""
    nb = len(shape) - 2
    out = [0] * (len(batch) - nb)
    for i in range(nb):
        out.append(0 if shape[i] == 1 and batch[len(batch) - nb + i] != 1 else strides[i])
    return out


def matmul(a, b):
    """``a @ b`` for 2-D or batched operands (..., M, K) @ (..., K, N), batch dims broadcast."""
    sa, sb = buffers.shape(a), buffers.shape(b)
    m, k, n = sa[-2], sa[-1], sb[-1]
    dtype = buffers.dtype_of(a)
    if len(sa) == 2 and len(sb) == 2:
        out = buffers.empty((m, n), dtype)
        if m and n:
            _gemm(a, b, out, m, n, k, buffers.strides(a), buffers.strides(b),
                  buffers.strides(out))
        return out
    ba, bb = sa[:-2], sb[:-2]
    nd = max(len(ba), len(bb))
    ba, bb = (1,) * (nd - len(ba)) + ba, (1,) * (nd - len(bb)) + bb
    batch = tuple(x if y == 1 else y for x, y in zip(ba, bb))
    out = buffers.empty(batch + (m, n), dtype)
    if not (m and n) or 0 in batch:
        return out
    sta, stb, stc = buffers.strides(a), buffers.strides(b), buffers.strides(out)
    # batch dims every operand walks as one merge (and size-1 dims drop)
    dims = merge_dims(batch, (_batch_layout(sa, sta, batch), _batch_layout(sb, stb, batch),
                              stc[:-2]))
    if len(dims) <= 2:
        _launch_batched(a, b, out, m, n, k, sta[-2:], stb[-2:], stc[-2:], dims)
        return out
    # more than two batch dims that no stride pattern merges: one launch per leading index
    a_full = buffers.expand(a, batch + (m, k))
    b_full = buffers.expand(b, batch + (k, n))
    for idx in itertools.product(*(range(s) for s in batch[:-2])):
        av, bv, cv = (buffers.view_index(t, idx) for t in (a_full, b_full, out))
        sub = merge_dims(batch[-2:], tuple(buffers.strides(t)[:-2] for t in (av, bv, cv)))
        _launch_batched(av, bv, cv, m, n, k, sta[-2:], stb[-2:], stc[-2:], sub)
    return out


def _launch_batched(a, b, c, m, n, k, sa, sb, sc, dims):
    dims = [(1, (0, 0, 0))] * (2 - len(dims)) + dims
    (z0, s0), (z1, s1) = dims
    _gemm(a, b, c, m, n, k, sa, sb, sc, batch=z0 * z1, z1=z1,
          az=(s0[0], s1[0]), bz=(s0[1], s1[1]), cz=(s0[2], s1[2]))


# ----------------------------------------------------------------------------------------------
# ahead-of-time compile list (format: kernels/_launch.py)
# ----------------------------------------------------------------------------------------------

def _gemm_entry(name, dt, cfg, *, bias=False, relu=False, mask=False, rowsum=False,
                precision="ieee", unit_strides=("stride_ak", "stride_bk"), batched=False,
                ptx_contains=None):
    """One specialization of ``_gemm_kernel``: operands of dtype ``dt``, tile ``cfg``.

    It mirrors what the runtime compiles for contiguous operands with sizes that are
    multiples of 16: the strides that are 1 (``unit_strides``, plus the output's,
    the bias's and db's) and, for 2-D products, the batch counts become constexpr 1;
    every pointer and every other size and stride is an i32 marked divisible by 16.
    """
    constexprs = {"HAS_BIAS": bias, "RELU": relu, "MASK_A": mask, "ROWSUM_A": rowsum,
                  "FP64": dt == "fp64", "INPUT_PRECISION": precision, "DOT_IN_FP32": False}
    constexprs.update(cfg.kwargs)
    ones = set(unit_strides) | {"stride_cn", "stride_bias", "stride_rowsum"}
    if not batched:
        ones |= {"BATCH", "Z1"}
    constexprs.update({k: 1 for k in ones})
    fn = _gemm_kernel.fn
    return aot_entry(name, fn, dt, constexprs, scalar_type="i32",
                     divisible_by_16=[k for k in fn.arg_names if k not in constexprs],
                     num_warps=cfg.num_warps, num_stages=cfg.num_stages,
                     ptx_contains=ptx_contains or {})


def _kernels():
    wgmma = {90: ["wgmma.mma_async"]}
    dx = dict(mask=True, unit_strides=("stride_ak", "stride_bn", "stride_keep_k"))
    dw = dict(mask=True, rowsum=True, unit_strides=("stride_am", "stride_bn", "stride_keep_m"))
    fwd = dict(bias=True, relu=True)

    def entry(kind, dt, cfg, **kw):
        tile = "x".join(str(cfg.kwargs[k]) for k in ("BLOCK_M", "BLOCK_N", "BLOCK_K"))
        label = "tf32" if kw.get("precision") == "tf32" else dt
        return _gemm_entry(f"{kind}_{label}_{tile}_w{cfg.num_warps}", dt, cfg, **kw)

    big_masked16 = _CONFIGS_16[2]         # the largest 16-bit tile the backward GEMMs may pick
    ieee, tf32, f64 = _CONFIGS_IEEE[0], _CONFIGS_TF32[0], _CONFIGS_64[0]
    out = [
        # forward: relu(x @ w.T + b), the largest tiles of each dtype
        entry("linear_fwd", "bf16", _CONFIGS_16[0], ptx_contains=wgmma, **fwd),
        entry("linear_fwd", "bf16", _CONFIGS_16[1], ptx_contains=wgmma, **fwd),
        entry("linear_fwd", "fp16", big_masked16, ptx_contains=wgmma, **fwd),
        entry("linear_fwd", "fp32", ieee, **fwd),
        entry("linear_fwd", "fp32", tf32, precision="tf32", ptx_contains=wgmma, **fwd),
        entry("linear_fwd", "fp64", f64, **fwd),
        # backward: dX = (g * mask) @ w;  dW = (g * mask).T @ x with db = its row sums
        entry("linear_dx", "bf16", big_masked16, ptx_contains=wgmma, **dx),
        entry("linear_dx", "fp32", ieee, **dx),
        entry("linear_dw_db", "bf16", big_masked16, ptx_contains=wgmma, **dw),
        entry("linear_dw_db", "fp32", ieee, **dw),
        entry("linear_dw_db", "fp32", tf32, precision="tf32", **dw),
        entry("linear_dw_db", "fp64", f64, **dw),
        # batched matmul
        entry("bmm", "fp16", _CONFIGS_16[-1], unit_strides=("stride_ak", "stride_bn"),
              batched=True),
    ]
    # the small tiles ``_host_tile`` picks for batch-sized outputs: the forward's epilogue and
    # the backward's mask + row-sum GEMM of each (wgmma on sm_90 for 16-bit and TF32)
    for kind, dt, precision, ptx in (("ieee", "fp32", "ieee", {}), ("tf32", "fp32", "tf32", wgmma),
                                     ("16", "bf16", "ieee", wgmma), ("64", "fp64", "ieee", {})):
        for cfg in _SMALL_BY_KIND[kind]:
            out.append(entry("linear_fwd", dt, cfg, precision=precision, ptx_contains=ptx, **fwd))
            out.append(entry("linear_dw_db", dt, cfg, precision=precision, ptx_contains=ptx,
                             **dw))
    for dt in ("fp32", "bf16"):
        bm, bn = 32, 128
        out.append(aot_entry(f"masked_colsum_{dt}", _masked_colsum_kernel, dt,
                             {"MASK": True, "FP64": False, "BLOCK_M": bm, "BLOCK_N": bn,
                              "stride_gn": 1, "stride_keep_n": 1, "stride_out": 1},
                             scalar_type="i32",
                             divisible_by_16=["g_ptr", "keep_ptr", "out_ptr", "N", "stride_gm",
                                              "stride_keep_m"],
                             num_warps=4, num_stages=3, ptx_contains={}))
    return out


KERNELS = _kernels()
