"""Fused parameter updates, in place (Triton). Twins of ``fallback_cpu/optim.py``.

One kernel reads each parameter's element, its gradient and optimizer state
once and writes the new parameter and state back: no temporaries. The math
follows the numpy mirror (PyTorch's update rules) step by step in the same
order; float16/bfloat16 parameters and state are computed in float32 and
rounded once when stored. Hyper-parameters that are 0 (weight decay,
momentum, dampening) are compile-time switches, so the plain step pays for
nothing it does not use. The others travel as the bits of a float64 (a
compiled kernel would receive a Python float as float32) and are rounded to
the parameter's compute dtype inside, as numpy does on the host.

Flat storage (``tritonnn.flat``, layout in ``tritonnn/contract.py``): the
optimizers' step is ``sgd_flat_step``/``adam_flat_step``, one launch over
every parameter of a dtype, one program per chunk, each element's arithmetic
that of the per-parameter kernels; hyper-parameters, step counts and Adam's
bias corrections are read from tables in device memory, so no kernel argument
changes from step to step (a captured CUDA graph stays right). ``clip_grad_norm_``
over flat gradients is ``grad_norm_partials`` then ``clip_grads_``: two
launches, no atomics, the same sum in every program.
"""
from __future__ import annotations

import math

import triton
import triton.language as tl

from ..contract import ADAM_COLUMNS, SGD_COLUMNS
from . import buffers
from ._jitlib import cast_to, div_rn, f64_from_bits, sqrt_rn, strided_offset, up
from ._launch import INTERPRET, aot_entry, cdiv, elementwise, float_bits, launch, \
    launch_strided, next_pow2


@triton.jit(do_not_specialize=("lr", "momentum", "weight_decay", "one_minus_dampening"))
def _sgd_kernel(p_ptr, g_ptr, buf_ptr, lr, momentum, weight_decay, one_minus_dampening,
                n, size1, size2, size3,
                stride_p0, stride_p1, stride_p2, stride_p3,
                stride_g0, stride_g1, stride_g2, stride_g3,
                stride_buf_0, stride_buf_1, stride_buf_2, stride_buf_3,
                WEIGHT_DECAY: tl.constexpr, MOMENTUM: tl.constexpr, FIRST: tl.constexpr,
                DAMPENING: tl.constexpr, NESTEROV: tl.constexpr, UNIT_LR: tl.constexpr,
                NDIM: tl.constexpr, BLOCK: tl.constexpr):
    """p -= lr * d with d = g + wd * p, through the momentum buffer when MOMENTUM."""
    lin = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = lin < n
    p_off = strided_offset(lin, size1, size2, size3, stride_p0, stride_p1, stride_p2, stride_p3,
                           NDIM)
    p = up(tl.load(p_ptr + p_off, mask=mask, other=0))
    g_off = strided_offset(lin, size1, size2, size3, stride_g0, stride_g1, stride_g2, stride_g3,
                           NDIM)
    d = up(tl.load(g_ptr + g_off, mask=mask, other=0))
    # hyper-parameters arrive as float64 bits and are rounded to the compute dtype, as numpy does
    lr = f64_from_bits(lr).to(p.dtype)
    momentum = f64_from_bits(momentum).to(p.dtype)
    weight_decay = f64_from_bits(weight_decay).to(p.dtype)
    one_minus_dampening = f64_from_bits(one_minus_dampening).to(p.dtype)
    # 1. d = g + wd * p
    if WEIGHT_DECAY:
        d = d + weight_decay * p
    # 2. the momentum buffer: d itself on the first step, then momentum * buf + (1 - damp) * d
    if MOMENTUM:
        buf_off = strided_offset(lin, size1, size2, size3, stride_buf_0, stride_buf_1,
                                 stride_buf_2, stride_buf_3, NDIM)
        if FIRST:
            buf = d
        else:
            buf = up(tl.load(buf_ptr + buf_off, mask=mask, other=0)) * momentum
            if DAMPENING:
                buf = buf + one_minus_dampening * d
            else:
                buf = buf + d
        tl.store(buf_ptr + buf_off, cast_to(buf, buf_ptr.dtype.element_ty), mask=mask)
        if NESTEROV:
            d = d + momentum * buf
        else:
            d = buf
    # 3. the step
    if UNIT_LR:
        p = p - d
    else:
        p = p - lr * d
    tl.store(p_ptr + p_off, cast_to(p, p_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=("decay", "one_minus_beta1", "beta2", "one_minus_beta2", "step_size",
                               "bias2_sqrt", "eps"))
def _adamw_kernel(p_ptr, g_ptr, m_ptr, v_ptr, decay, one_minus_beta1, beta2, one_minus_beta2,
                  step_size, bias2_sqrt, eps, n, size1, size2, size3,
                  stride_p0, stride_p1, stride_p2, stride_p3,
                  stride_g0, stride_g1, stride_g2, stride_g3,
                  stride_m0, stride_m1, stride_m2, stride_m3,
                  stride_v0, stride_v1, stride_v2, stride_v3,
                  WEIGHT_DECAY: tl.constexpr, NDIM: tl.constexpr, BLOCK: tl.constexpr):
    """One AdamW step: decoupled decay, both moments, bias-corrected update, all in place."""
    lin = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = lin < n
    p_off = strided_offset(lin, size1, size2, size3, stride_p0, stride_p1, stride_p2, stride_p3,
                           NDIM)
    m_off = strided_offset(lin, size1, size2, size3, stride_m0, stride_m1, stride_m2, stride_m3,
                           NDIM)
    v_off = strided_offset(lin, size1, size2, size3, stride_v0, stride_v1, stride_v2, stride_v3,
                           NDIM)
    p = up(tl.load(p_ptr + p_off, mask=mask, other=0))
    g_off = strided_offset(lin, size1, size2, size3, stride_g0, stride_g1, stride_g2, stride_g3,
                           NDIM)
    g = up(tl.load(g_ptr + g_off, mask=mask, other=0))
    m = up(tl.load(m_ptr + m_off, mask=mask, other=0))
    v = up(tl.load(v_ptr + v_off, mask=mask, other=0))
    decay = f64_from_bits(decay).to(p.dtype)
    one_minus_beta1 = f64_from_bits(one_minus_beta1).to(p.dtype)
    beta2 = f64_from_bits(beta2).to(p.dtype)
    one_minus_beta2 = f64_from_bits(one_minus_beta2).to(p.dtype)
    step_size = f64_from_bits(step_size).to(p.dtype)
    bias2_sqrt = f64_from_bits(bias2_sqrt).to(p.dtype)
    eps = f64_from_bits(eps).to(p.dtype)
    # 1. decoupled weight decay: p *= 1 - lr * wd
    if WEIGHT_DECAY:
        p = p * decay
    # 2. moments: m = lerp(m, g, 1 - b1); v = b2 * v + (1 - b2) * g * g
    m = m + (g - m) * one_minus_beta1
    v = v * beta2
    v = v + one_minus_beta2 * g * g
    # 3. p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    denom = div_rn(sqrt_rn(v), bias2_sqrt) + eps
    p = p - div_rn(step_size * m, denom)
    tl.store(p_ptr + p_off, cast_to(p, p_ptr.dtype.element_ty), mask=mask)
    tl.store(m_ptr + m_off, cast_to(m, m_ptr.dtype.element_ty), mask=mask)
    tl.store(v_ptr + v_off, cast_to(v, v_ptr.dtype.element_ty), mask=mask)


def sgd_step(param, grad, momentum_buf, lr, momentum, weight_decay, dampening, nesterov, first_step):
    """One SGD update of ``param`` (and ``momentum_buf`` when momentum != 0), in place.

    d = grad + weight_decay * param; buf = d on the first step, else
    momentum * buf + (1 - dampening) * d; param -= lr * (d + momentum * buf if
    nesterov else buf).
    """
    use_momentum = bool(momentum)
    buf = momentum_buf if use_momentum else param
    launch_strided(_sgd_kernel, [param, grad, buf],
                   tuple(float_bits(h) for h in (lr, momentum, weight_decay, 1.0 - dampening)),
                   WEIGHT_DECAY=bool(weight_decay), MOMENTUM=use_momentum,
                   FIRST=bool(first_step), DAMPENING=bool(dampening), NESTEROV=bool(nesterov),
                   UNIT_LR=lr == 1.0)


def adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay):
    """One AdamW update (decoupled weight decay), in place on param and both moments.

    param *= 1 - lr * wd; m = lerp(m, g, 1 - b1); v = b2 * v + (1 - b2) * g^2;
    param -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
    """
    bias1 = 1.0 - beta1 ** step
    bias2_sqrt = math.sqrt(1.0 - beta2 ** step)
    launch_strided(_adamw_kernel, [param, grad, exp_avg, exp_avg_sq],
                   tuple(float_bits(h) for h in (1.0 - lr * weight_decay, 1.0 - beta1, beta2,
                                                 1.0 - beta2, lr / bias1, bias2_sqrt, eps)),
                   WEIGHT_DECAY=bool(weight_decay))


# ==============================================================================================
# flat storage: one launch for every parameter of a dtype (layout: tritonnn/contract.py)
# ==============================================================================================
# One program per chunk. A program reads its chunk's row of the hyper table (-1: the parameter
# has no gradient this step, the program touches nothing), its [start, end) range and its step
# count, all in device memory: a learning rate a scheduler writes, a step count and the bias
# corrections it implies change no kernel argument, so a captured CUDA graph stays right.
# Flags (maximize, nesterov, a zero weight decay) are per row, so they are selected with
# where() on values: a select returns one operand's bits, the step's arithmetic is exactly
# sgd_step's / adamw_step's.

_S = {name: tl.constexpr(i) for i, name in enumerate(SGD_COLUMNS)}
_A = {name: tl.constexpr(i) for i, name in enumerate(ADAM_COLUMNS)}
S_WIDTH = tl.constexpr(len(SGD_COLUMNS))
S_LR, S_MOMENTUM, S_WD = _S["lr"], _S["momentum"], _S["weight_decay"]
S_DAMPENING, S_OMD = _S["dampening"], _S["one_minus_dampening"]
S_NESTEROV, S_MAXIMIZE = _S["nesterov"], _S["maximize"]
A_WIDTH = tl.constexpr(len(ADAM_COLUMNS))
A_LR, A_BETA2, A_EPS, A_DECAY = _A["lr"], _A["beta2"], _A["eps"], _A["decay"]
A_OMB1, A_OMB2, A_L2, A_MAXIMIZE = (_A["one_minus_beta1"], _A["one_minus_beta2"], _A["l2"],
                                    _A["maximize"])
A_B1_AT, A_B1_LEN, A_B2_AT, A_B2_LEN = (_A["bias1_at"], _A["bias1_len"], _A["bias2_at"],
                                        _A["bias2_len"])
A_LOG_B1, A_LOG_B2 = _A["log_beta1"], _A["log_beta2"]


@triton.jit
def _sgd_flat_kernel(p_ptr, g_ptr, buf_ptr, chunk_ptr, row_ptr, step_ptr, hyper_ptr,
                     HAS_BUF: tl.constexpr, BLOCK: tl.constexpr):
    """``sgd_step`` on chunk ``program_id``: p, g, buf 1-D flat buffers; chunk (C, 2) int64;
    row, step (C,) int32; hyper (R, S_WIDTH) float64."""
    c = tl.program_id(0)
    # 1. the chunk: its group's row (-1: no gradient, nothing is read or written), its range
    row = tl.load(row_ptr + c)
    live = row >= 0
    h = hyper_ptr + tl.maximum(row, 0).to(tl.int64) * S_WIDTH
    start = tl.load(chunk_ptr + 2 * c)
    end = tl.where(live, tl.load(chunk_ptr + 2 * c + 1), start)
    offs = start + tl.arange(0, BLOCK)
    mask = offs < end
    p = up(tl.load(p_ptr + offs, mask=mask, other=0))
    d = up(tl.load(g_ptr + offs, mask=mask, other=0))
    # 2. hyper-parameters: float64 in the table, rounded to the compute dtype as numpy does
    lr = tl.load(h + S_LR).to(p.dtype)
    momentum64 = tl.load(h + S_MOMENTUM)
    momentum = momentum64.to(p.dtype)
    weight_decay64 = tl.load(h + S_WD)
    weight_decay = weight_decay64.to(p.dtype)
    dampening64 = tl.load(h + S_DAMPENING)
    one_minus_dampening = tl.load(h + S_OMD).to(p.dtype)
    nesterov = tl.load(h + S_NESTEROV) != 0
    maximize = tl.load(h + S_MAXIMIZE) != 0
    # 3. d = g (negated to maximize) + wd * p
    d = tl.where(maximize, -d, d)
    d = tl.where(weight_decay64 != 0, d + weight_decay * p, d)
    # 4. the momentum buffer: d on the chunk's first momentum step, then momentum * buf +
    #    (1 - dampening) * d; the step count moves on the device
    if HAS_BUF:
        use = momentum64 != 0
        buf_mask = offs < tl.where(use, end, start)
        t = tl.load(step_ptr + c)
        buf = up(tl.load(buf_ptr + offs, mask=buf_mask, other=0)) * momentum
        buf = tl.where(dampening64 != 0, buf + one_minus_dampening * d, buf + d)
        buf = tl.where(t == 0, d, buf)
        tl.store(buf_ptr + offs, cast_to(buf, buf_ptr.dtype.element_ty), mask=buf_mask)
        # (each program owns its chunk's count: a plain store, of the same value if skipped)
        tl.store(step_ptr + c, tl.where(live & use, t + 1, t))
        d = tl.where(use, tl.where(nesterov, d + momentum * buf, buf), d)
    # 5. the step
    p = p - lr * d
    tl.store(p_ptr + offs, cast_to(p, p_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _bias_correction(bias_ptr, h, at_col, len_col, log_col, t):
    """``1 - beta^t`` in float64 (for beta2 its square root comes from the table too): the
    host's table entry ``t - 1`` while it lasts, else ``1 - exp(t * log(beta))``."""
    n = tl.load(h + len_col).to(tl.int32)
    at = tl.load(h + at_col).to(tl.int64)
    k = tl.minimum(tl.maximum(t - 1, 0), tl.maximum(n - 1, 0))
    tabled = tl.load(bias_ptr + at + k)
    computed = 1.0 - tl.exp(t.to(tl.float64) * tl.load(h + log_col))
    return tabled, computed, t <= n


@triton.jit
def _adam_flat_kernel(p_ptr, g_ptr, m_ptr, v_ptr, chunk_ptr, row_ptr, step_ptr, hyper_ptr,
                      bias_ptr, BLOCK: tl.constexpr):
    """Adam/AdamW (``adamw_step``) on chunk ``program_id``: p, g, m, v 1-D flat buffers; chunk
    (C, 2) int64; row, step (C,) int32; hyper (R, A_WIDTH) and bias float64."""
    c = tl.program_id(0)
    # 1. the chunk, its row and its step t, counted on the device
    row = tl.load(row_ptr + c)
    live = row >= 0
    h = hyper_ptr + tl.maximum(row, 0).to(tl.int64) * A_WIDTH
    start = tl.load(chunk_ptr + 2 * c)
    end = tl.where(live, tl.load(chunk_ptr + 2 * c + 1), start)
    t = tl.load(step_ptr + c) + 1
    # (each program owns its chunk's count: a plain store, of the same value if skipped)
    tl.store(step_ptr + c, tl.where(live, t, t - 1))
    offs = start + tl.arange(0, BLOCK)
    mask = offs < end
    p = up(tl.load(p_ptr + offs, mask=mask, other=0))
    g = up(tl.load(g_ptr + offs, mask=mask, other=0))
    m = up(tl.load(m_ptr + offs, mask=mask, other=0))
    v = up(tl.load(v_ptr + offs, mask=mask, other=0))
    # 2. bias corrections in float64, as the host computed them: step_size = lr / (1 - b1^t),
    #    bias2_sqrt = sqrt(1 - b2^t) (both IEEE-rounded operations, the host's bits)
    b1_tab, b1_calc, b1_in = _bias_correction(bias_ptr, h, A_B1_AT, A_B1_LEN, A_LOG_B1, t)
    b2_tab, b2_calc, b2_in = _bias_correction(bias_ptr, h, A_B2_AT, A_B2_LEN, A_LOG_B2, t)
    bias1 = tl.where(b1_in, b1_tab, b1_calc)
    bias2_sqrt = tl.where(b2_in, b2_tab, tl.sqrt(b2_calc))
    step_size = (tl.load(h + A_LR) / bias1).to(p.dtype)
    bias2_sqrt = bias2_sqrt.to(p.dtype)
    decay = tl.load(h + A_DECAY).to(p.dtype)
    one_minus_beta1 = tl.load(h + A_OMB1).to(p.dtype)
    beta2 = tl.load(h + A_BETA2).to(p.dtype)
    one_minus_beta2 = tl.load(h + A_OMB2).to(p.dtype)
    eps = tl.load(h + A_EPS).to(p.dtype)
    l2_64 = tl.load(h + A_L2)
    l2 = l2_64.to(p.dtype)
    maximize = tl.load(h + A_MAXIMIZE) != 0
    # 3. the gradient: negated to maximize; Adam's L2 term g + l2 * p, each op rounded to the
    #    parameter's dtype as the two elementwise kernels it replaces did
    g = tl.where(maximize, -g, g)
    wd_term = up(cast_to(p * l2, p_ptr.dtype.element_ty))
    g = tl.where(l2_64 != 0, up(cast_to(g + wd_term, p_ptr.dtype.element_ty)), g)
    # 4. decoupled weight decay (decay is exactly 1.0 without it: p * 1.0 is p)
    p = p * decay
    # 5. moments: m = lerp(m, g, 1 - b1); v = b2 * v + (1 - b2) * g * g
    m = m + (g - m) * one_minus_beta1
    v = v * beta2
    v = v + one_minus_beta2 * g * g
    # 6. p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    denom = div_rn(sqrt_rn(v), bias2_sqrt) + eps
    p = p - div_rn(step_size * m, denom)
    tl.store(p_ptr + offs, cast_to(p, p_ptr.dtype.element_ty), mask=mask)
    tl.store(m_ptr + offs, cast_to(m, m_ptr.dtype.element_ty), mask=mask)
    tl.store(v_ptr + offs, cast_to(v, v_ptr.dtype.element_ty), mask=mask)


_CHUNK = elementwise(1 << 40)[0]        # 1024 on a GPU, the interpreter's big block under it


def flat_layout(dtype):
    """Segments on 128-byte boundaries; a chunk is one elementwise block."""
    return max(1, 128 // dtype.itemsize), _CHUNK


def _block(flat):
    """A program's block: the chunk size (one compiled variant on a GPU); under the
    interpreter no wider than the whole flat buffer, whose chunks are no longer."""
    if INTERPRET:
        return max(16, min(_CHUNK, next_pow2(buffers.shape(flat)[0])))
    return _CHUNK


def write_table(table, values):
    buffers.upload_into(table, values)


def _flat_launch(kernel, chunks, *args, **meta):
    n_chunks = buffers.shape(chunks)[0]
    if n_chunks:
        block = _block(args[0])
        launch(kernel, (n_chunks,), *args, BLOCK=block, num_warps=_warps(block), **meta)


def _warps(block):
    return 1 if INTERPRET else 4


def sgd_flat_step(param, grad, momentum_buf, chunks, rows, steps, hyper):
    """``sgd_step`` for every live chunk of the flat buffers: one launch."""
    has_buf = momentum_buf is not None
    _flat_launch(_sgd_flat_kernel, chunks, param, grad, momentum_buf if has_buf else param,
                 chunks, rows, steps, hyper, HAS_BUF=has_buf)


def adam_flat_step(param, grad, exp_avg, exp_avg_sq, chunks, rows, steps, hyper, bias):
    """Adam/AdamW for every live chunk of the flat buffers: one launch."""
    _flat_launch(_adam_flat_kernel, chunks, param, grad, exp_avg, exp_avg_sq, chunks, rows,
                 steps, hyper, bias)


# -- clip_grad_norm_ over flat gradients: partial sums, then one scaling launch --------------

_INF, _L1, _L2, _LP = 0, 1, 2, 3


def _norm_kind(norm_type):
    return {math.inf: _INF, 1.0: _L1, 2.0: _L2}.get(norm_type, _LP)


@triton.jit(do_not_specialize=["power_bits"])
def _norm_partials_kernel(g_ptr, chunk_ptr, select_ptr, part_ptr, n_chunks, power_bits,
                          KIND: tl.constexpr, BLOCK: tl.constexpr):
    """Program i of P: the chunks i, i + P, ... that are selected: the sum of |g|^p (KIND 1:
    p = 1, 2: p = 2, 3: any p > 0) or the max of |g| (KIND 0), in the partials' dtype."""
    i = tl.program_id(0)
    n_programs = tl.num_programs(0)
    acc_t: tl.constexpr = part_ptr.dtype.element_ty
    power = f64_from_bits(power_bits).to(acc_t)
    acc = tl.zeros((BLOCK,), acc_t)
    for c in range(i, n_chunks, n_programs):
        selected = tl.load(select_ptr + c) >= 0
        start = tl.load(chunk_ptr + 2 * c)
        end = tl.where(selected, tl.load(chunk_ptr + 2 * c + 1), start)
        offs = start + tl.arange(0, BLOCK)
        x = tl.abs(up(tl.load(g_ptr + offs, mask=offs < end, other=0)).to(acc_t))
        if KIND == 0:
            # NaN wins, as it does in a sum
            acc = tl.where((acc != acc) | (x != x), acc + x, tl.maximum(acc, x))
        elif KIND == 1:
            acc = acc + x
        elif KIND == 2:
            acc = acc + x * x
        else:
            pos = x > 0
            acc = acc + tl.where(pos, tl.exp(tl.log(tl.where(pos, x, 1.0)) * power), x)
    if KIND == 0:
        nan = tl.max((acc != acc).to(tl.int32), 0) > 0
        r = tl.where(nan, float("nan"), tl.max(acc, 0))
    else:
        r = tl.sum(acc, 0)
    tl.store(part_ptr + i, r)


@triton.jit(do_not_specialize=["inv_power_bits", "max_norm_bits"])
def _clip_kernel(g_ptr, chunk_ptr, select_ptr, part_ptr, total_ptr, n_parts, inv_power_bits,
                 max_norm_bits, KIND: tl.constexpr, PARTS: tl.constexpr, BLOCK: tl.constexpr):
    """Chunk ``program_id`` of g scaled by min(1, max_norm / (norm + 1e-6)); every program
    adds up all the partials itself, in one fixed order, so all agree on the norm."""
    c = tl.program_id(0)
    acc_t: tl.constexpr = part_ptr.dtype.element_ty
    out_t: tl.constexpr = total_ptr.dtype.element_ty
    # 1. the total norm from the partials
    k = tl.arange(0, PARTS)
    parts = tl.load(part_ptr + k, mask=k < n_parts, other=0)
    if KIND == 0:
        nan = tl.max((parts != parts).to(tl.int32), 0) > 0
        norm = tl.where(nan, float("nan"), tl.max(parts, 0))
    else:
        s = tl.sum(parts, 0)
        if KIND == 1:
            norm = s
        elif KIND == 2:
            norm = sqrt_rn(s)
        else:
            inv_power = f64_from_bits(inv_power_bits).to(acc_t)
            pos = s > 0
            norm = tl.where(pos, tl.exp(tl.log(tl.where(pos, s, 1.0)) * inv_power), s)
    # 2. the norm in total's dtype, and the coefficient, each operation rounded to that dtype
    norm = up(cast_to(norm, out_t))
    tl.store(total_ptr + tl.arange(0, 1), cast_to(norm + tl.zeros((1,), norm.dtype), out_t),
             mask=tl.arange(0, 1) == c)
    max_norm = f64_from_bits(max_norm_bits).to(norm.dtype)
    denom = up(cast_to(norm + 1e-6, out_t))
    coef = up(cast_to(div_rn(max_norm, denom), out_t))
    coef = tl.minimum(coef, 1.0)
    # 3. this chunk, times the coefficient rounded to the gradient's dtype
    selected = tl.load(select_ptr + c) >= 0
    start = tl.load(chunk_ptr + 2 * c)
    end = tl.where(selected, tl.load(chunk_ptr + 2 * c + 1), start)
    offs = start + tl.arange(0, BLOCK)
    mask = offs < end
    g = up(tl.load(g_ptr + offs, mask=mask, other=0))
    coef_g = up(cast_to(coef, g_ptr.dtype.element_ty)).to(g.dtype)
    tl.store(g_ptr + offs, cast_to(g * coef_g, g_ptr.dtype.element_ty), mask=mask)


def grad_norm_partials(grad, chunks, select, norm_type, partials):
    """Launch 1 of a flat clip_grad_norm_: one partial per program."""
    n_chunks = buffers.shape(chunks)[0]
    n_parts = buffers.shape(partials)[0]
    block = _block(grad)
    power = float_bits(norm_type if math.isfinite(norm_type) else 1.0)
    launch(_norm_partials_kernel, (n_parts,), grad, chunks, select, partials, n_chunks, power,
           KIND=_norm_kind(norm_type), BLOCK=block, num_warps=_warps(block))


def clip_grads_(grad, chunks, select, partials, norm_type, max_norm, total):
    """Launch 2: every chunk scaled (``total`` written by program 0)."""
    n_chunks = buffers.shape(chunks)[0]
    if not n_chunks:
        return
    n_parts = buffers.shape(partials)[0]
    block = _block(grad)
    inv_power = float_bits(1.0 / norm_type if math.isfinite(norm_type) else 1.0)
    launch(_clip_kernel, (n_chunks,), grad, chunks, select, partials, total, n_parts,
           inv_power, float_bits(max_norm), KIND=_norm_kind(norm_type),
           PARTS=next_pow2(n_parts), BLOCK=block, num_warps=_warps(block))


# ----------------------------------------------------------------------------------------------
# ahead-of-time compile list (format: kernels/_launch.py)
# ----------------------------------------------------------------------------------------------

def _kernels():
    out = []
    for dt in ("fp32", "bf16", "fp64"):
        for first, damp, nest in ((True, False, False), (False, True, False), (False, False, True)):
            out.append(aot_entry(f"sgd_{dt}_first{int(first)}_damp{int(damp)}_nest{int(nest)}",
                                 _sgd_kernel, dt,
                                 {"WEIGHT_DECAY": True, "MOMENTUM": True, "FIRST": first,
                                  "DAMPENING": damp, "NESTEROV": nest, "UNIT_LR": False,
                                  "NDIM": 1, "BLOCK": 1024}))
        out.append(aot_entry(f"adamw_{dt}", _adamw_kernel, dt,
                             {"WEIGHT_DECAY": True, "NDIM": 1, "BLOCK": 1024}))
        # flat storage: one launch per dtype, tables in device memory
        tables = {"chunk_ptr": "i64", "row_ptr": "i32", "step_ptr": "i32", "hyper_ptr": "fp64"}
        for has_buf in (True, False):
            out.append(aot_entry(f"sgd_flat_{dt}_buf{int(has_buf)}", _sgd_flat_kernel,
                                 {"p_ptr": dt, "g_ptr": dt, "buf_ptr": dt, **tables},
                                 {"HAS_BUF": has_buf, "BLOCK": 1024}))
        out.append(aot_entry(f"adam_flat_{dt}", _adam_flat_kernel,
                             {"p_ptr": dt, "g_ptr": dt, "m_ptr": dt, "v_ptr": dt,
                              "bias_ptr": "fp64", **tables}, {"BLOCK": 1024}))
        acc = "fp64" if dt == "fp64" else "fp32"
        flat = {"g_ptr": dt, "chunk_ptr": "i64", "select_ptr": "i32", "part_ptr": acc}
        for kind, label in ((_INF, "inf"), (_L2, "l2"), (_LP, "lp")):
            out.append(aot_entry(f"norm_partials_{dt}_{label}", _norm_partials_kernel, flat,
                                 {"KIND": kind, "BLOCK": 1024}, scalars={"n_chunks": "i32"}))
            out.append(aot_entry(f"clip_{dt}_{label}", _clip_kernel,
                                 {**flat, "total_ptr": dt}, {"KIND": kind, "PARTS": 1024,
                                                             "BLOCK": 1024},
                                 scalars={"n_parts": "i32"}))
    return out


KERNELS = _kernels()
