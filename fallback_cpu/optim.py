"""Fused parameter updates, in place (numpy). Twins in ``kernels/optim.py``.

Both follow PyTorch's update rules exactly, in the same order of operations,
so that a model trained here and in torch agrees to float rounding. The flat
functions (one buffer per dtype holding every parameter) run the same
per-parameter functions once per run of chunks that share hyper-parameters
and a step count: one vectorised pass for a whole parameter group.
"""
from __future__ import annotations

import math

import numpy as np

from ..contract import ADAM_COLUMNS, SGD_COLUMNS
from ._arrays import LOW, scratch, up


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


# ----------------------------------------------------------------------------------------------
# flat storage: every parameter of a dtype in one buffer (layout: tritonnn/contract.py)
# ----------------------------------------------------------------------------------------------
# The kernels run one program per chunk; here consecutive chunks that share a row and a step
# count and touch end to end form one run, and each run is one vectorised pass of the
# per-parameter functions above, with the row's hyper-parameters as Python floats: the same
# arithmetic, so the same bits, as a step per parameter. One parameter group whose parameters
# all have gradients is a single run over the whole buffer.

_SGD = {name: i for i, name in enumerate(SGD_COLUMNS)}
_ADAM = {name: i for i, name in enumerate(ADAM_COLUMNS)}


def flat_layout(dtype):
    """Segments packed end to end, each parameter one chunk: numpy takes any length."""
    return 1, 1 << 62


def write_table(table, values):
    np.copyto(table, values)


def _runs(chunks, rows, steps):
    """``(start, end, row, step, first chunk, end chunk)`` for each run of live chunks."""
    out = []
    run = None
    for c, ((lo, hi), row, step) in enumerate(zip(chunks.tolist(), rows.tolist(),
                                                  steps.tolist())):
        if run is not None and row == run[2] and step == run[3] and lo == run[1]:
            run[1], run[5] = hi, c + 1
            continue
        if run is not None and run[2] >= 0:
            out.append(run)
        run = [lo, hi, row, step, c, c + 1]
    if run is not None and run[2] >= 0:
        out.append(run)
    return out


def sgd_flat_step(param, grad, momentum_buf, chunks, rows, steps, hyper):
    """``sgd_step`` over each run of live chunks, its row's hyper-parameters as floats."""
    for lo, hi, row, step, a, b in _runs(chunks, rows, steps):
        h = hyper[row].tolist()
        momentum = h[_SGD["momentum"]]
        g = grad[lo:hi]
        if h[_SGD["maximize"]]:
            g = np.negative(g)
        sgd_step(param[lo:hi], g, momentum_buf[lo:hi] if momentum else None, h[_SGD["lr"]],
                 momentum, h[_SGD["weight_decay"]], h[_SGD["dampening"]],
                 bool(h[_SGD["nesterov"]]), step == 0)
        if momentum:
            steps[a:b] += 1


def adam_flat_step(param, grad, exp_avg, exp_avg_sq, chunks, rows, steps, hyper, bias):
    """``adamw_step`` over each run of live chunks (after maximize's negation and Adam's L2
    term), its row's hyper-parameters as floats. Its bias corrections are the tables'
    values by construction: both are ``1 - beta ** t`` in Python floats."""
    for lo, hi, row, step, a, b in _runs(chunks, rows, steps):
        h = hyper[row].tolist()
        p, g = param[lo:hi], grad[lo:hi]
        if h[_ADAM["maximize"]]:
            g = np.negative(g)
        l2 = h[_ADAM["l2"]]
        if l2:
            # two elementwise ops, each rounded to the parameter's dtype
            if p.dtype in LOW:
                g = (up(g) + up((up(p) * l2).astype(p.dtype))).astype(p.dtype)
            else:
                g = g + p * l2
        steps[a:b] += 1
        adamw_step(p, g, exp_avg[lo:hi], exp_avg_sq[lo:hi], step + 1, h[_ADAM["lr"]],
                   h[_ADAM["beta1"]], h[_ADAM["beta2"]], h[_ADAM["eps"]],
                   h[_ADAM["weight_decay"]] if h[_ADAM["l2"]] == 0 else 0.0)


def grad_norm_partials(grad, chunks, select, norm_type, partials):
    """Entry i of ``partials``: the chunks i, i + P, ... of ``grad`` that are selected."""
    acc = partials.dtype
    partials[...] = 0
    n_parts = len(partials)
    for c in np.flatnonzero(select >= 0).tolist():
        x = np.abs(grad[chunks[c, 0]:chunks[c, 1]].astype(acc))
        if x.size == 0:
            continue
        i = c % n_parts
        if norm_type == math.inf:
            partials[i] = max(partials[i], x.max())
        elif norm_type == 1.0:
            partials[i] += x.sum()
        elif norm_type == 2.0:
            partials[i] += (x * x).sum()
        else:
            partials[i] += (x ** norm_type).sum()


def clip_grads_(grad, chunks, select, partials, norm_type, max_norm, total):
    """Scale the selected chunks by ``min(1, max_norm / (norm + 1e-6))``, rounded as the
    kernel rounds: the norm and the coefficient in ``total``'s dtype, then ``grad``'s."""
    acc = partials.dtype
    out_dt = total.dtype
    cdt = np.dtype(np.float32) if out_dt in LOW else out_dt     # total's dtype computes in

    def rounded(x):
        return np.asarray(x, dtype=cdt).astype(out_dt).astype(cdt)

    if norm_type == math.inf:
        norm = partials.max(initial=acc.type(0))
    else:
        s = partials.sum(dtype=acc)
        norm = np.sqrt(s) if norm_type == 2.0 else s if norm_type == 1.0 else \
            s ** acc.type(1.0 / norm_type)
    norm = rounded(norm)
    total[...] = norm.astype(out_dt)
    coef = rounded(cdt.type(max_norm) / rounded(norm + cdt.type(1e-6)))
    coef = np.asarray(np.minimum(coef, cdt.type(1.0))).astype(grad.dtype)
    for c in np.flatnonzero(select >= 0).tolist():
        g = grad[chunks[c, 0]:chunks[c, 1]]
        if grad.dtype in LOW:
            g[...] = (up(g) * up(coef)).astype(grad.dtype)
        else:
            g *= coef
