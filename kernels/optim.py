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
"""
from __future__ import annotations

import math

import triton
import triton.language as tl

from ._jitlib import cast_to, div_rn, f64_from_bits, sqrt_rn, strided_offset, up
from ._launch import aot_entry, float_bits, launch_strided


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
    return out


KERNELS = _kernels()
