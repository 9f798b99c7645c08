"""Softmax, log-softmax and the fused softmax-cross-entropy (numpy).

Every log-sum-exp subtracts the row maximum first; float16/bfloat16 rows are
computed in float32. Twins in ``kernels/softmax.py``.
"""
from __future__ import annotations

import numpy as np

from ._arrays import up


def _acc(x):
    """The accumulation dtype for ``x``: float64 stays float64, all else float32."""
    return np.float64 if x.dtype == np.float64 else np.float32


def _lse(x, dim):
    m = np.max(x, axis=dim, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)            # all -inf rows: lse = -inf, not NaN
    return m + np.log(np.sum(np.exp(x - m), axis=dim, keepdims=True))


def softmax_fwd(x, dim):
    xf = x.astype(_acc(x), copy=False)
    m = np.max(xf, axis=dim, keepdims=True)
    e = np.exp(xf - m)
    e /= np.sum(e, axis=dim, keepdims=True)
    return e.astype(x.dtype, copy=False)


def softmax_bwd(grad, y, dim):
    """dx = y * (g - sum(g * y)) along ``dim``."""
    g, yf = up(grad), up(y)
    return (yf * (g - np.sum(g * yf, axis=dim, keepdims=True))).astype(grad.dtype, copy=False)


def log_softmax_fwd(x, dim):
    xf = x.astype(_acc(x), copy=False)
    return (xf - _lse(xf, dim)).astype(x.dtype, copy=False)


def log_softmax_bwd(grad, y, dim):
    """dx = g - exp(y) * sum(g) along ``dim``."""
    g, yf = up(grad), up(y)
    return (g - np.exp(yf) * np.sum(g, axis=dim, keepdims=True)).astype(grad.dtype, copy=False)


def softmax_cross_entropy_fwd(logits, target, ignore_index, label_smoothing, reduction):
    """Loss of softmax cross-entropy over rows of ``logits`` (N, C) with int64 ``target`` (N,).

    Returns ``(loss, lse)``: ``loss`` per row (reduction "none", 0 at ignored
    rows) or a 0-d sum/mean over the rows that are not ignored, in the logits'
    dtype; ``lse`` is each row's log-sum-exp in the accumulation dtype, saved
    for the backward. With smoothing eps and C classes, row i's loss is
    ``lse_i - (1 - eps) * x[i, t_i] - eps / C * sum_c x[i, c]``.
    """
    acc = _acc(logits)
    x = logits.astype(acc, copy=False)
    n, c = x.shape
    valid = target != ignore_index
    all_valid = bool(valid.all())
    safe_t = target if all_valid else np.where(valid, target, 0)
    # 1. log-sum-exp per row, shifted by the row maximum (all -inf rows: lse = -inf, not NaN)
    m = x.max(axis=1)
    if not np.isfinite(m).all():
        m = np.where(np.isfinite(m), m, 0)
    e = x - m[:, None]
    np.exp(e, out=e)
    lse = m + np.log(e.sum(axis=1))
    # 2. minus the (smoothed) target logit
    picked = x[np.arange(n), safe_t]
    if label_smoothing:
        loss = lse - (1.0 - label_smoothing) * picked - (label_smoothing / c) * x.sum(axis=1)
    else:
        loss = lse - picked
    if not all_valid:
        loss = np.where(valid, loss, 0).astype(acc, copy=False)
    if reduction == "none":
        return loss.astype(logits.dtype), lse
    total = loss.sum(dtype=acc)
    if reduction == "mean":
        count = n if all_valid else np.count_nonzero(valid)
        total = total / acc(count) if count else acc(np.nan)
    return np.asarray(total, dtype=logits.dtype), lse


def softmax_cross_entropy_bwd(grad_loss, logits, target, lse, ignore_index, label_smoothing,
                              reduction, inplace):
    """d loss / d logits = (softmax - (1 - eps) * onehot - eps / C) * scale per row.

    ``scale`` is the upstream gradient (divided by the count of rows not
    ignored for "mean"); ignored rows get 0. With ``inplace`` the result is
    written into ``logits`` itself and returned (the tape allows this only when
    nothing else holds those logits).
    """
    acc = _acc(logits)
    n, c = logits.shape
    valid = target != ignore_index
    all_valid = bool(valid.all())
    safe_t = target if all_valid else np.where(valid, target, 0)
    g = np.asarray(grad_loss, dtype=acc)
    d = logits.astype(acc, copy=False) - lse[:, None].astype(acc, copy=False)
    np.exp(d, out=d)
    if label_smoothing:
        d -= label_smoothing / c
    d[np.arange(n), safe_t] -= (1.0 - label_smoothing)
    if reduction == "none":
        d *= (g.reshape(n) if all_valid else np.where(valid, g.reshape(n), 0))[:, None]
    else:
        count = n if all_valid else np.count_nonzero(valid)
        d *= (g / acc(count) if count else g) if reduction == "mean" else g
        if not all_valid:
            d[~valid] = 0
    if inplace:
        logits[...] = d
        return logits
    return d.astype(logits.dtype, copy=False)


def first_bad_target(target, num_classes, ignore_index):
    """The first target neither in [0, num_classes) nor ``ignore_index`` (a Python int), or None."""
    bad = (target != ignore_index) & ((target < 0) | (target >= num_classes))
    hits = np.flatnonzero(bad)
    return int(target.reshape(-1)[hits[0]]) if hits.size else None


def bce_with_logits_fwd(x, y, reduction):
    """Binary cross-entropy on logits, stable for any x: max(x,0) - x*y + log1p(exp(-|x|))."""
    acc = _acc(x)
    xf, yf = x.astype(acc, copy=False), y.astype(acc, copy=False)
    loss = np.maximum(xf, 0) - xf * yf + np.log1p(np.exp(-np.abs(xf)))
    if reduction == "none":
        return loss.astype(x.dtype)
    r = loss.sum(dtype=acc)
    if reduction == "mean":
        r = r / acc(loss.size)
    return np.asarray(r, dtype=x.dtype)


def bce_with_logits_bwd(grad_loss, x, y, reduction):
    """d/dx = (sigmoid(x) - y) * upstream (/ numel for "mean"); also d/dy = -x * upstream."""
    acc = _acc(x)
    xf, yf = x.astype(acc, copy=False), y.astype(acc, copy=False)
    g = np.asarray(grad_loss, dtype=acc)
    if reduction == "mean":
        g = g / acc(xf.size)
    e = np.exp(-np.abs(xf))
    sig = np.where(xf >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    dx = ((sig - yf) * g).astype(x.dtype)
    dy = (-xf * g).astype(y.dtype)
    return dx, dy
