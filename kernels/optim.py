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

from .elementwise import (_cast, _div, _f64_from_bits, _sqrt, _strided_offset, _up, float_bits,
                          launch_strided)


@triton.jit
def _sgd_kernel(p_ptr, g_ptr, buf_ptr, lr, momentum, weight_decay, one_minus_dampening,
                n, size1, size2, size3, ps0, ps1, ps2, ps3, gs0, gs1, gs2, gs3,
                bs0, bs1, bs2, bs3, WEIGHT_DECAY: tl.constexpr, MOMENTUM: tl.constexpr,
                FIRST: tl.constexpr, DAMPENING: tl.constexpr, NESTEROV: tl.constexpr,
                UNIT_LR: tl.constexpr, NDIM: tl.constexpr, BLOCK: tl.constexpr):
    """p -= lr * d with d = g + wd * p, through the momentum buffer when MOMENTUM."""
    lin = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = lin < n
    p_off = _strided_offset(lin, size1, size2, size3, ps0, ps1, ps2, ps3, NDIM)
    p = _up(tl.load(p_ptr + p_off, mask=mask, other=0))
    d = _up(tl.load(g_ptr + _strided_offset(lin, size1, size2, size3, gs0, gs1, gs2, gs3, NDIM),
                    mask=mask, other=0))
    lr = _f64_from_bits(lr).to(p.dtype)
    momentum = _f64_from_bits(momentum).to(p.dtype)
    weight_decay = _f64_from_bits(weight_decay).to(p.dtype)
    one_minus_dampening = _f64_from_bits(one_minus_dampening).to(p.dtype)
    if WEIGHT_DECAY:
        d = d + weight_decay * p
    if MOMENTUM:
        b_off = _strided_offset(lin, size1, size2, size3, bs0, bs1, bs2, bs3, NDIM)
        if FIRST:
            buf = d                            # the buffer starts as the first step's d
        else:
            buf = _up(tl.load(buf_ptr + b_off, mask=mask, other=0)) * momentum
            if DAMPENING:
                buf = buf + one_minus_dampening * d
            else:
                buf = buf + d
        tl.store(buf_ptr + b_off, _cast(buf, buf_ptr.dtype.element_ty), mask=mask)
        if NESTEROV:
            d = d + momentum * buf
        else:
            d = buf
    if UNIT_LR:
        p = p - d
    else:
        p = p - lr * d
    tl.store(p_ptr + p_off, _cast(p, p_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _adamw_kernel(p_ptr, g_ptr, m_ptr, v_ptr, decay, one_minus_beta1, beta2, one_minus_beta2,
                  step_size, bias2_sqrt, eps, n, size1, size2, size3,
                  ps0, ps1, ps2, ps3, gs0, gs1, gs2, gs3, ms0, ms1, ms2, ms3,
                  vs0, vs1, vs2, vs3, WEIGHT_DECAY: tl.constexpr, NDIM: tl.constexpr,
                  BLOCK: tl.constexpr):
    """One AdamW step: decoupled decay, both moments, bias-corrected update, all in place."""
    lin = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = lin < n
    p_off = _strided_offset(lin, size1, size2, size3, ps0, ps1, ps2, ps3, NDIM)
    m_off = _strided_offset(lin, size1, size2, size3, ms0, ms1, ms2, ms3, NDIM)
    v_off = _strided_offset(lin, size1, size2, size3, vs0, vs1, vs2, vs3, NDIM)
    p = _up(tl.load(p_ptr + p_off, mask=mask, other=0))
    g = _up(tl.load(g_ptr + _strided_offset(lin, size1, size2, size3, gs0, gs1, gs2, gs3, NDIM),
                    mask=mask, other=0))
    m = _up(tl.load(m_ptr + m_off, mask=mask, other=0))
    v = _up(tl.load(v_ptr + v_off, mask=mask, other=0))
    decay = _f64_from_bits(decay).to(p.dtype)
    one_minus_beta1 = _f64_from_bits(one_minus_beta1).to(p.dtype)
    beta2 = _f64_from_bits(beta2).to(p.dtype)
    one_minus_beta2 = _f64_from_bits(one_minus_beta2).to(p.dtype)
    step_size = _f64_from_bits(step_size).to(p.dtype)
    bias2_sqrt = _f64_from_bits(bias2_sqrt).to(p.dtype)
    eps = _f64_from_bits(eps).to(p.dtype)
    # 1. decoupled weight decay: p *= 1 - lr * wd
    if WEIGHT_DECAY:
        p = p * decay
    # 2. moments: m = lerp(m, g, 1 - b1); v = b2 * v + (1 - b2) * g * g
    m = m + (g - m) * one_minus_beta1
    v = v * beta2
    v = v + one_minus_beta2 * g * g
    # 3. p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    denom = _div(_sqrt(v), bias2_sqrt) + eps
    p = p - _div(step_size * m, denom)
    tl.store(p_ptr + p_off, _cast(p, p_ptr.dtype.element_ty), mask=mask)
    tl.store(m_ptr + m_off, _cast(m, m_ptr.dtype.element_ty), mask=mask)
    tl.store(v_ptr + v_off, _cast(v, v_ptr.dtype.element_ty), mask=mask)


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
# ahead-of-time compile list (format: kernels/__init__.py)
# ----------------------------------------------------------------------------------------------

def _kernels():
    out = []
    strided = {"n": "i64", "size1": "i64", "size2": "i64", "size3": "i64"}
    for dt in ("fp32", "bf16", "fp64"):
        for first, damp, nest in ((True, False, False), (False, True, False), (False, False, True)):
            ce = {"WEIGHT_DECAY": True, "MOMENTUM": True, "FIRST": first, "DAMPENING": damp,
                  "NESTEROV": nest, "UNIT_LR": False, "NDIM": 1, "BLOCK": 1024}
            out.append({"name": f"sgd_{dt}_first{int(first)}_damp{int(damp)}_nest{int(nest)}",
                        "fn": _sgd_kernel, "constexprs": ce,
                        "signature": {"p_ptr": f"*{dt}", "g_ptr": f"*{dt}", "buf_ptr": f"*{dt}",
                                      "lr": "i64", "momentum": "i64", "weight_decay": "i64",
                                      "one_minus_dampening": "i64", **strided,
                                      **{f"{p}s{k}": "i64" for p in ("p", "g", "b")
                                         for k in range(4)},
                                      **{k: "constexpr" for k in ce}}})
        ce = {"WEIGHT_DECAY": True, "NDIM": 1, "BLOCK": 1024}
        out.append({"name": f"adamw_{dt}", "fn": _adamw_kernel, "constexprs": ce,
                    "signature": {"p_ptr": f"*{dt}", "g_ptr": f"*{dt}", "m_ptr": f"*{dt}",
                                  "v_ptr": f"*{dt}",
                                  **{k: "i64" for k in ("decay", "one_minus_beta1", "beta2",
                                                         "one_minus_beta2", "step_size",
                                                         "bias2_sqrt", "eps")},
                                  **strided,
                                  **{f"{p}s{k}": "i64" for p in ("p", "g", "m", "v")
                                     for k in range(4)},
                                  **{k: "constexpr" for k in ce}}})
    return out


KERNELS = _kernels()
