"""Fused parameter updates, in place (numpy). Twins in ``kernels/optim.py``.

Both follow PyTorch's update rules exactly, in the same order of operations,
so that a model trained here and in torch agrees to float rounding.
"""
from __future__ import annotations

import math

import numpy as np

from .elementwise import _LOW


def sgd_step(param, grad, momentum_buf, lr, momentum, weight_decay, dampening, nesterov, first_step):
    """One SGD update of ``param`` (and ``momentum_buf`` when momentum != 0), in place.

    d = grad + weight_decay * param; buf = d on the first step, else
    momentum * buf + (1 - dampening) * d; param -= lr * (d + momentum * buf if
    nesterov else buf).
    """
    if param.dtype in _LOW:
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
        d = grad + weight_decay * param
    if momentum:
        if first_step:
            momentum_buf[...] = d
        else:
            momentum_buf *= momentum
            momentum_buf += (1.0 - dampening) * d if dampening else d
        d = d + momentum * momentum_buf if nesterov else momentum_buf
    if lr == 1.0:
        param -= d
    else:
        # param -= lr * d without a temporary when d is a scratch array we own
        param -= lr * d


def adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay):
    """One AdamW update (decoupled weight decay), in place on param and both moments.

    param *= 1 - lr * wd; m = lerp(m, g, 1 - b1); v = b2 * v + (1 - b2) * g^2;
    param -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
    """
    if param.dtype in _LOW:
        p, m, v = (a.astype(np.float32) for a in (param, exp_avg, exp_avg_sq))
        adamw_step(p, grad.astype(np.float32), m, v, step, lr, beta1, beta2, eps, weight_decay)
        param[...], exp_avg[...], exp_avg_sq[...] = p, m, v
        return
    if weight_decay:
        param *= 1.0 - lr * weight_decay
    exp_avg += (grad - exp_avg) * (1.0 - beta1)
    exp_avg_sq *= beta2
    exp_avg_sq += (1.0 - beta2) * grad * grad
    bias1 = 1.0 - beta1 ** step
    bias2_sqrt = math.sqrt(1.0 - beta2 ** step)
    denom = np.sqrt(exp_avg_sq)
    denom /= bias2_sqrt
    denom += eps
    param -= (lr / bias1) * exp_avg / denom
