"""Layer normalization, variance, vector norms and the squared-error loss (numpy).

Twins of ``kernels/norm.py``; every function here sums squares. Statistics are
float32 for float32 and float16/bfloat16 inputs (rounded once when stored) and
float64 for float64. Variances are two-pass: the mean first (summed as offsets
from each row's first element, exact near a large offset), then the sum of
squared deviations from it, which stays exact when the mean is large against
the spread (``E[x^2] - E[x]^2`` loses every digit at a mean of 1e4 and a
standard deviation of 1e-2 in float32).
"""
from __future__ import annotations

import math

import numpy as np

from ._arrays import scratch, up


def _acc(x):
    """The accumulation dtype for ``x``: float64 stays float64, all else float32."""
    return np.float64 if x.dtype == np.float64 else np.float32


def _count(shape, dims):
    n = 1
    for d in (dims if dims else range(len(shape))):
        n *= shape[d]
    return n


def _axis(x, dims):
    return tuple(dims) if dims else tuple(range(x.ndim))


# ----------------------------------------------------------------------------------------------
# layer normalization
# ----------------------------------------------------------------------------------------------


def _as_rows(x, ndim):
    """``x`` as (M, N) in its accumulation dtype: M rows of its last ``ndim`` dims."""
    n = math.prod(x.shape[x.ndim - ndim:])
    m = math.prod(x.shape[:x.ndim - ndim])
    return x.astype(_acc(x), copy=False).reshape(m, n)


def layer_norm_fwd(x, weight, bias, ndim, eps):
    """``(y, mean, rstd)``: y = (x - mean) * rstd * weight + bias over the last ``ndim`` dims."""
    acc = _acc(x)
    xf = _as_rows(x, ndim)
    m, n = xf.shape
    # the mean summed as offsets from each row's first element (exact near a large offset)
    shift = xf[:, 0].copy() if n else np.zeros(m, acc)
    y = np.subtract(xf, shift[:, None], dtype=acc)          # becomes the output, in place
    offset = y.sum(axis=1) / acc(n)
    y -= offset[:, None]
    var = np.einsum("ij,ij->i", y, y) / acc(n)
    rstd = acc(1.0) / np.sqrt(var + acc(eps))
    y *= rstd[:, None]
    if weight is not None:
        y *= weight.astype(acc, copy=False).reshape(n)
    if bias is not None:
        y += bias.astype(acc, copy=False).reshape(n)
    return (y.reshape(x.shape).astype(x.dtype, copy=False), shift + offset,
            rstd.astype(acc, copy=False))


def layer_norm_bwd(grad, x, weight, mean, rstd, ndim, need_dx, need_dw, need_db):
    """``(dx, dw, db)``: dx = rstd * (wg - mean(wg) - xhat * mean(wg * xhat)), wg = grad * w."""
    acc = _acc(x)
    xf = _as_rows(x, ndim)
    g = _as_rows(up(grad).astype(acc, copy=False), ndim)
    m, n = xf.shape
    wshape = x.shape[x.ndim - ndim:]
    xhat = scratch(xf, 0, acc)
    np.subtract(xf, mean[:, None], out=xhat)
    xhat *= rstd[:, None]
    dx = dw = db = None
    if need_dw and weight is not None:
        gx = scratch(xf, 1, acc)
        dw = np.multiply(g, xhat, out=gx).sum(axis=0).reshape(wshape).astype(weight.dtype)
    if need_db:
        db = g.sum(axis=0).reshape(wshape).astype(grad.dtype)
    if need_dx:
        dx = g * weight.astype(acc, copy=False).reshape(n) if weight is not None else g.copy()
        c1 = np.einsum("ij,ij->i", dx, xhat) / acc(n)
        c2 = dx.sum(axis=1) / acc(n)
        xhat *= c1[:, None]
        dx -= xhat
        dx -= c2[:, None]
        dx *= rstd[:, None]
        dx = dx.reshape(x.shape).astype(grad.dtype, copy=False)
    return dx, dw, db


# ----------------------------------------------------------------------------------------------
# variance and vector norms
# ----------------------------------------------------------------------------------------------


def var_mean(x, dims, correction):
    """``(var, mean)`` over ``dims`` (empty: all), both keeping the reduced dims as size 1."""
    acc = _acc(x)
    axis = _axis(x, dims)
    xf = x.astype(acc, copy=False)
    k = _count(x.shape, dims)
    # the mean summed as offsets from the first element of each reduced group
    first = tuple(slice(0, 1) if i in axis else slice(None) for i in range(x.ndim))
    shift = xf[first] if k else np.zeros(np.sum(xf, axis=axis, keepdims=True).shape, acc)
    d = xf - shift
    offset = np.asarray(d.sum(axis=axis, keepdims=True) / acc(k))
    mean = shift + offset
    d = d - offset
    ss = np.asarray((d * d).sum(axis=axis, keepdims=True))
    var = ss / acc(max(k - correction, 0))
    return var.astype(x.dtype, copy=False), mean.astype(x.dtype, copy=False)


def var_bwd(grad, x, mean, std, dims, correction):
    """``g * 2 * (x - mean) / max(K - correction, 0)``, g = grad, or grad / (2 std) (0 where
    std is 0) for the standard deviation; broadcast to ``x``'s shape."""
    acc = _acc(x)
    div = max(_count(x.shape, dims) - correction, 0)
    scale = acc(2.0) / acc(div) if div else acc(np.inf)
    g = up(grad).astype(acc, copy=False)
    if std is not None:
        s = up(std).astype(acc, copy=False)
        g = np.where(s == 0, acc(0), g / (s * acc(2.0)))
    r = scale * g * (x.astype(acc, copy=False) - up(mean).astype(acc, copy=False))
    return np.asarray(r).astype(grad.dtype, copy=False)


def _sign(x):
    """sign(x) with sign(NaN) = 0, as PyTorch's ``sgn``."""
    return np.where(x > 0, 1, np.where(x < 0, -1, 0)).astype(x.dtype, copy=False)


def vector_norm(x, dims, p, keepdim):
    """``torch.linalg.vector_norm``: sum(|x|^p)^(1/p), max|x| (inf), min|x| (-inf), nnz (0)."""
    acc = _acc(x)
    axis = _axis(x, dims)
    a = np.abs(x.astype(acc, copy=False))
    if p == math.inf:
        r = a.max(axis=axis, keepdims=keepdim)
    elif p == -math.inf:
        r = a.min(axis=axis, keepdims=keepdim)
    elif p == 0:
        r = (a != 0).sum(axis=axis, keepdims=keepdim, dtype=acc)
    elif p == 1:
        r = a.sum(axis=axis, keepdims=keepdim)
    elif p == 2:
        r = np.sqrt((a * a).sum(axis=axis, keepdims=keepdim))
    else:
        r = (a ** acc(p)).sum(axis=axis, keepdims=keepdim) ** acc(1.0 / p)
    return np.asarray(r).astype(x.dtype, copy=False)


def vector_norm_bwd(grad, x, norm, dims, p):
    """The gradient of ``vector_norm`` (``grad``, ``norm`` keep the reduced dims as size 1)."""
    acc = _acc(x)
    g = up(grad).astype(acc, copy=False)
    xf = x.astype(acc, copy=False)
    nrm = up(norm).astype(acc, copy=False)
    zero = acc(0)
    if p == 0:
        r = np.zeros(x.shape, acc)
    elif p == 1:
        r = g * _sign(xf)
    elif p == 2:
        r = np.where(nrm == 0, zero, g / nrm) * xf
    elif p in (math.inf, -math.inf):
        a = np.abs(xf)
        hit = (a == nrm) | np.isnan(a)
        count = hit.sum(axis=_axis(x, dims), keepdims=True, dtype=acc)
        r = np.where(hit, _sign(xf) * (g / count), zero)
    else:
        a = np.abs(xf)
        scaled = _sign(xf) * a ** acc(p - 1)
        if p < 1:
            r = np.where(xf == 0, zero, scaled) * (g * nrm ** acc(1 - p))
        else:
            r = scaled * np.where(nrm == 0, zero, g / nrm ** acc(p - 1))
    return np.asarray(r).astype(grad.dtype, copy=False)


# ----------------------------------------------------------------------------------------------
# squared-error loss
# ----------------------------------------------------------------------------------------------


def mse_loss_fwd(x, y, reduction):
    """``(x - y)^2`` in the broadcast shape, or its 0-d sum or mean (NaN for no elements)."""
    acc = _acc(x)
    d = x.astype(acc, copy=False) - y.astype(acc, copy=False)
    sq = d * d
    if reduction == "none":
        return np.asarray(sq).astype(x.dtype, copy=False)
    total = np.asarray(sq).sum(dtype=acc)
    if reduction == "mean":
        total = total / acc(sq.size) if sq.size else acc(np.nan)
    return np.asarray(total, dtype=x.dtype)


def mse_loss_bwd(grad, x, y, reduction, need_dx, need_dy):
    """``(dx, dy)`` in the broadcast shape: dx = 2 (x - y) g (/ count for "mean"), dy = -dx."""
    acc = _acc(x)
    d = x.astype(acc, copy=False) - y.astype(acc, copy=False)
    dx = d * acc(2.0) * up(grad).astype(acc, copy=False)
    if reduction == "mean":
        dx = dx / acc(max(d.size, 1))
    dx = np.asarray(dx)
    if dx.shape != d.shape:
        dx = np.broadcast_to(dx, d.shape)
    out_x = dx.astype(x.dtype) if need_dx else None
    out_y = (-dx).astype(y.dtype) if need_dy else None
    return out_x, out_y
