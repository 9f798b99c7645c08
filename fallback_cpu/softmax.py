"""Softmax, log-softmax and the fused softmax-cross-entropy (numpy).

Every log-sum-exp subtracts the row maximum first; float16/bfloat16 rows are
computed in float32. Twins in ``kernels/softmax.py``.
"""
from __future__ import annotations

import numpy as np

from ._arrays import LOW, check_range, up


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


def softmax_cross_entropy_fwd(logits, target, ignore_index, label_smoothing, reduction, check):
    """Loss of softmax cross-entropy over rows of ``logits`` (N, C) with int64 ``target`` (N,).

    Returns ``(loss, stats)``: ``loss`` per row (reduction "none", 0 at ignored
    rows) or a 0-d sum/mean over the rows that are not ignored, in the logits'
    dtype; ``stats`` (N + 1,) in the accumulation dtype, saved for the backward:
    each row's log-sum-exp, then the count of rows not ignored. With smoothing eps
    and C classes, row i's loss is ``lse_i - (1 - eps) * x[i, t_i] - eps / C *
    sum_c x[i, c]``. Targets out of range raise ``check``'s error first.
    """
    check_range(target, check)
    acc = _acc(logits)
    x = logits.astype(acc, copy=False)
    n, c = x.shape
    valid = target != ignore_index
    all_valid = bool(valid.all())
    count = n if all_valid else np.count_nonzero(valid)
    safe_t = target if all_valid else np.where(valid, target, 0)
    stats = np.empty(n + 1, acc)
    lse = stats[:n]
    # 1. log-sum-exp per row, shifted by the row maximum (all -inf rows: lse = -inf, not NaN)
    m = x.max(axis=1)
    if not np.isfinite(m).all():
        m = np.where(np.isfinite(m), m, 0)
    e = x - m[:, None]
    np.exp(e, out=e)
    np.add(m, np.log(e.sum(axis=1)), out=lse)
    stats[n] = count
    # 2. minus the (smoothed) target logit
    picked = x[np.arange(n), safe_t]
    if label_smoothing:
        loss = lse - (1.0 - label_smoothing) * picked - (label_smoothing / c) * x.sum(axis=1)
    else:
        loss = lse - picked
    if not all_valid:
        loss = np.where(valid, loss, 0).astype(acc, copy=False)
    if reduction == "none":
        return loss.astype(logits.dtype), stats
    total = loss.sum(dtype=acc)
    if reduction == "mean":
        total = total / acc(count) if count else acc(np.nan)
    return np.asarray(total, dtype=logits.dtype), stats


def softmax_cross_entropy_bwd(grad_loss, logits, target, stats, ignore_index, label_smoothing,
                              reduction, inplace):
    """d loss / d logits = (softmax - (1 - eps) * onehot - eps / C) * scale per row.

    ``scale`` is the upstream gradient (None: 1), divided by the count of rows not
    ignored (``stats[N]``) for "mean"; ignored rows get 0. With ``inplace`` the
    result is written into ``logits`` itself and returned (the tape allows this only
    when nothing else holds those logits).
    """
    acc = _acc(logits)
    n, c = logits.shape
    lse, count = stats[:n], int(stats[n])
    valid = target != ignore_index
    all_valid = bool(valid.all())
    safe_t = target if all_valid else np.where(valid, target, 0)
    g = np.asarray(1 if grad_loss is None else grad_loss, dtype=acc)
    d = logits.astype(acc, copy=False) - lse[:, None].astype(acc, copy=False)
    np.exp(d, out=d)
    if label_smoothing:
        d -= label_smoothing / c
    d[np.arange(n), safe_t] -= (1.0 - label_smoothing)
    if reduction == "none":
        d *= (g.reshape(n) if all_valid else np.where(valid, g.reshape(n), 0))[:, None]
    else:
        d *= (g / acc(count) if count else g) if reduction == "mean" else g
        if not all_valid:
            d[~valid] = 0
    if inplace:
        logits[...] = d
        return logits
    return d.astype(logits.dtype, copy=False)


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


# ----------------------------------------------------------------------------------------------
# chunked linear + cross-entropy (twins of the section of kernels/softmax.py)
# ----------------------------------------------------------------------------------------------
#
# One (rows, V) float array holds a chunk's logits, then in place exp(logits - max), the
# softmax and finally the gradient of the logits; the float products that add a chunk into
# dW work in vocabulary blocks no larger than it. So a chunk's working set is two (rows, V)
# arrays and two (rows, H) ones in the accumulation dtype (float32, or float64 for float64),
# and the chunk takes as many rows as ``budget`` bytes hold. 16-bit weights are widened to
# float32 once per call, for BLAS. For 16-bit dtypes the logits and their gradient are
# rounded to h's dtype where the kernels store them in a buffer of that dtype (as torch's
# unfused linear + cross_entropy does). dW and db add up as the kernels add them
# (``_lce_plan``, the kernels' rule): in the returned buffers for float32/float64; for
# 16-bit dtypes in float32 (rounded once) when those accumulators take at most half the
# budget, else in the returned 16-bit arrays, each chunk's float32 product added to the
# widened stored value and rounded once to nearest even.


def _lce_plan(budget, n, v, hidden, dtype, need_dw, need_db):
    """``(rows per chunk, whether dW and db add up in float32 accumulators)``: the kernels'
    decision (float32 accumulators for 16-bit dtypes when their (V * H + V) * 4 bytes, the
    parts wanted, are at most half of ``budget``); rows from numpy's own working set, two
    (rows, V) and two (rows, H) arrays of the accumulation dtype, in what the budget leaves
    beside the float32 accumulators (when used) and the (N,) loss and lse vectors (at least
    a quarter of it); the fewest chunks that fit, of equal rows."""
    acc = np.dtype(np.float64 if dtype == np.float64 else np.float32)
    acc_bytes = (v * hidden * need_dw + v * need_db) * 4 if dtype in LOW else 0
    in_float32 = acc_bytes <= budget // 2
    room = max(budget - 2 * n * acc.itemsize - (acc_bytes if in_float32 else 0), budget // 4)
    most = max(1, min(n, room // max((2 * v + 2 * hidden) * acc.itemsize, 1)))
    return -(-n // -(-n // most)), in_float32


def _lce_logits(h, w_acc, b_acc, r0, r1, buf):
    """Rows ``r0:r1`` of h widened to the accumulation dtype, and their logits written into ``buf``."""
    hc = h[r0:r1].astype(buf.dtype, copy=False)
    z = buf[:r1 - r0]
    np.matmul(hc, w_acc.T, out=z)
    if b_acc is not None:
        z += b_acc
    _lce_stored(z, h.dtype)
    return hc, z


def _lce_stored(z, dtype):
    """``z`` rounded in place to what a buffer of ``dtype`` holds (16-bit dtypes only)."""
    if dtype in LOW:
        np.copyto(z, z.astype(dtype))


def _lce_dlogits(p, target, ignore_index, label_smoothing, scale):
    """The softmax ``p`` of a chunk turned, in place, into d loss / d logits.

    ``(p - (1 - eps) * onehot(t) - eps / V) * scale``: ``scale`` 0-d or one per row; rows
    whose target is ``ignore_index`` get 0.
    """
    rows, v = p.shape
    valid = target != ignore_index
    if label_smoothing:
        p -= label_smoothing / v
    p[np.arange(rows), np.where(valid, target, 0)] -= 1.0 - label_smoothing
    p *= scale if np.ndim(scale) == 0 else scale[:, None]
    if not valid.all():
        p[~valid] = 0
    return p


def _lce_backprop(d, hc, w_acc, dh, dw, db, r0, r1):
    """One chunk's share of the gradients: ``dh[r0:r1] = d @ w``, ``dw += d.T @ h_c``, ``db +=
    d.sum(0)`` (any of them None). dw and db either of the accumulation dtype, or 16-bit:
    then the chunk's float32 sum is added to the widened stored value and rounded once."""
    if dh is not None:
        if dh.dtype == d.dtype:
            np.matmul(d, w_acc, out=dh[r0:r1])
        else:
            dh[r0:r1] = np.matmul(d, w_acc)
    if dw is not None:
        v, hidden = dw.shape
        step = max(1, d.size // max(hidden, 1))       # product blocks no larger than d
        for v0 in range(0, v, step):
            block = np.matmul(d[:, v0:v0 + step].T, hc)
            if dw.dtype == block.dtype:
                dw[v0:v0 + step] += block
            else:
                block += dw[v0:v0 + step]             # widened, added in float32
                dw[v0:v0 + step] = block              # rounded to nearest even, once
            del block                                 # before the next block is made
    if db is not None:
        if db.dtype == d.dtype:
            db += d.sum(axis=0)
        else:
            db[...] = d.sum(axis=0) + up(db)


def _lce_grad_buffers(h, w, budget, need_dh, need_dw, need_db):
    """``(rows per chunk, dh, dw, db)``: dh in h's dtype; dw and db zeros in the dtype they
    add up in (``_lce_plan``)."""
    n, hidden = h.shape
    v = w.shape[0]
    rows, in_float32 = _lce_plan(budget, n, v, hidden, h.dtype, need_dw, need_db)
    sums = _acc(h) if in_float32 else h.dtype
    dh = np.empty((n, hidden), h.dtype) if need_dh else None
    dw = np.zeros((v, hidden), sums) if need_dw else None
    db = np.zeros((v,), sums) if need_db else None
    return rows, dh, dw, db


def _lce_rounded(x, dtype):
    return None if x is None else x.astype(dtype, copy=False)


def linear_cross_entropy_fwd(h, w, b, target, ignore_index, label_smoothing, reduction, budget,
                             need_dh, need_dw, need_db, check):
    """Cross-entropy of ``h @ w.T + b`` against ``target``, chunk by chunk of rows.

    Returns ``(loss, lse, dh, dw, db)``; for "sum"/"mean" the gradients asked for
    (upstream 1) come from the same pass: each chunk's softmax is at hand once its
    log-sum-exp is known. Targets out of range raise ``check``'s error first.
    """
    check_range(target, check)
    acc = _acc(h)
    n, v = h.shape[0], w.shape[0]
    grads = reduction != "none" and (need_dh or need_dw or need_db)
    w_acc = w.astype(acc, copy=False)
    b_acc = None if b is None else b.astype(acc, copy=False)
    rows, dh, dw, db = _lce_grad_buffers(h, w, budget, need_dh and grads, need_dw and grads,
                                         need_db and grads)
    valid = target != ignore_index
    count = int(np.count_nonzero(valid))
    # "mean": every row's gradient is over the count of rows not ignored in ALL chunks
    scale = acc(1.0 / count) if reduction == "mean" and count else acc(1.0)
    loss = np.empty((n,), acc)
    lse = np.empty((n,), acc)
    buf = np.empty((rows, v), acc)
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        t = target[r0:r1]
        ok = valid[r0:r1]
        hc, z = _lce_logits(h, w_acc, b_acc, r0, r1, buf)
        # 1. what the loss needs from the raw logits: the target logit, the row sum
        picked = z[np.arange(r1 - r0), np.where(ok, t, 0)]
        row_sum = z.sum(axis=1) if label_smoothing else None
        # 2. log-sum-exp shifted by the row maximum; z becomes exp(z - max) in place
        m = z.max(axis=1)
        if not np.isfinite(m).all():
            m = np.where(np.isfinite(m), m, 0)
        z -= m[:, None]
        np.exp(z, out=z)
        s = z.sum(axis=1)
        lse[r0:r1] = m + np.log(s)
        rl = lse[r0:r1] - (1.0 - label_smoothing) * picked
        if label_smoothing:
            rl -= (label_smoothing / v) * row_sum
        loss[r0:r1] = np.where(ok, rl, 0)
        # 3. eager gradients: softmax = exp(z - max) / sum, then the chunk's share
        if grads and ok.any():
            z /= s[:, None]
            d = _lce_dlogits(z, t, ignore_index, label_smoothing, scale)
            _lce_stored(d, h.dtype)
            _lce_backprop(d, hc, w_acc, dh, dw, db, r0, r1)
        elif grads and dh is not None:
            dh[r0:r1] = 0                       # a chunk with every row ignored
    if reduction == "none":
        out = loss.astype(h.dtype)
    else:
        total = loss.sum(dtype=acc)
        if reduction == "mean":
            total = total / acc(count) if count else acc(np.nan)
        out = np.asarray(total, dtype=h.dtype)
    return out, lse, dh, _lce_rounded(dw, h.dtype), _lce_rounded(db, h.dtype)


def linear_cross_entropy_bwd(grad_loss, h, w, b, target, lse, ignore_index, label_smoothing,
                             reduction, budget, need_dh, need_dw, need_db):
    """``(dh, dw, db)`` for the upstream ``grad_loss``, each chunk's logits computed again."""
    acc = _acc(h)
    n, v = h.shape[0], w.shape[0]
    w_acc = w.astype(acc, copy=False)
    b_acc = None if b is None else b.astype(acc, copy=False)
    rows, dh, dw, db = _lce_grad_buffers(h, w, budget, need_dh, need_dw, need_db)
    g = np.asarray(grad_loss, dtype=acc)
    valid = target != ignore_index
    if reduction == "mean":
        count = int(np.count_nonzero(valid))
        g = g / acc(count) if count else g
    buf = np.empty((rows, v), acc)
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        if not valid[r0:r1].any():
            if dh is not None:
                dh[r0:r1] = 0
            continue
        hc, z = _lce_logits(h, w_acc, b_acc, r0, r1, buf)
        z -= lse[r0:r1, None].astype(acc, copy=False)
        np.exp(z, out=z)                       # the softmax, from the forward's lse
        scale = g[r0:r1] if reduction == "none" else g
        d = _lce_dlogits(z, target[r0:r1], ignore_index, label_smoothing, scale)
        _lce_stored(d, h.dtype)
        _lce_backprop(d, hc, w_acc, dh, dw, db, r0, r1)
    return dh, _lce_rounded(dw, h.dtype), _lce_rounded(db, h.dtype)


def linear_cross_entropy_scale_(grad_loss, dh, dw, db):
    """The forward's gradients times the 0-d upstream gradient, in place."""
    for x in (dh, dw, db):
        if x is not None:
            if x.dtype in LOW:
                np.copyto(x, (up(x) * np.float32(grad_loss)).astype(x.dtype))
            else:
                x *= np.asarray(grad_loss, x.dtype)
    return dh, dw, db
