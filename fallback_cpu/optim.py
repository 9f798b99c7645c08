"""Fused parameter updates, in place (numpy). Twins in ``kernels/optim.py``.

Both follow PyTorch's update rules exactly, in the same order of operations,
so that a model trained here and in torch agrees to float rounding.
"""
from __future__ import annotations

import math

import numpy as np

from ._arrays import LOW, scratch


def sgd_step(param, grad, momentum_buf, lr, momentum, weight_decay, dampening, nesterov, first_step):
    """One SGD update of ``param`` (and ``momentum_buf`` when momentum != 0), in place.

    d = grad + weight_decay * param; buf = d on the first step, else
    momentum * buf + (1 - dampening) * d; param -= lr * (d + momentum * buf if
    nesterov else buf). Every pass writes into an existing array: no temporaries.
    """
    if param.dtype in LOW:
        p = param.astype(np.float32)
        buf = None if momentum_buf is None else momentum_buf.astype(np.float32)
        sgd_step(p, grad.astype(np.float32), buf, lr, momentum, weight_decay, dampening,
                 nesterov, first_step)
        param[...] = p
        if buf is not None:
            momentum_buf[...] = buf
        return
    d = grad
    if weight_decay:
        d = scratch(param)
        np.multiply(param, weight_decay, out=d)
        d += grad
    if momentum:
        if first_step:
            np.copyto(momentum_buf, d)
        else:
            momentum_buf *= momentum
            if dampening:
                t = scratch(param, 1)
                np.multiply(d, 1.0 - dampening, out=t)
                momentum_buf += t
            else:
                momentum_buf += d
        if nesterov:
            t = scratch(param, 1)
            np.multiply(momentum_buf, momentum, out=t)
            t += d
            d = t
        else:
            d = momentum_buf
    s = scratch(param)
    np.multiply(d, lr, out=s)
    param -= s


def adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay):
    """One AdamW update (decoupled weight decay), in place on param and both moments.

    param *= 1 - lr * wd; m = lerp(m, g, 1 - b1); v = b2 * v + (1 - b2) * g^2;
    param -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
    """
    if param.dtype in LOW:
        p, m, v = (a.astype(np.float32) for a in (param, exp_avg, exp_avg_sq))
        adamw_step(p, grad.astype(np.float32), m, v, step, lr, beta1, beta2, eps, weight_decay)
        param[...], exp_avg[...], exp_avg_sq[...] = p, m, v
        return
    s = scratch(param)
    if weight_decay:
        param *= 1.0 - lr * weight_decay
    np.subtract(grad, exp_avg, out=s)
    s *= 1.0 - beta1
    exp_avg += s
    exp_avg_sq *= beta2
    np.multiply(grad, grad, out=s)
    s *= 1.0 - beta2
    exp_avg_sq += s
    bias1 = 1.0 - beta1 ** step
    bias2_sqrt = math.sqrt(1.0 - beta2 ** step)
    np.sqrt(exp_avg_sq, out=s)
    s /= bias2_sqrt
    s += eps
    np.divide(exp_avg, s, out=s)
    s *= lr / bias1
    param -= s
