"""Matrix products and the fused linear layer (numpy, straight to BLAS).

Twins in ``kernels/matmul.py``. float16/bfloat16 multiply in float32 and round
the result once, matching a float32-accumulating GEMM.
"""
from __future__ import annotations

import numpy as np

from ._arrays import LOW, masked_grad, scratch, up

def matmul(a, b):
    """``a @ b`` for 1-D, 2-D and batched (broadcast) operands, numpy semantics."""
    if a.dtype in LOW:
        return np.matmul(up(a), up(b)).astype(a.dtype)
    return np.matmul(a, b)


def linear_fwd(x, w, b, relu):
    """``out = x @ w.T (+ b) (then ReLU)`` for x (M, K), w (N, K), b (N,) or None.

    One BLAS call writes the product; bias and ReLU then run in place on that
    buffer, so the layer allocates exactly one (M, N) array.
    """
    if x.dtype in LOW:
        out = np.matmul(up(x), up(w).T)
        if b is not None:
            out += up(b)
        if relu:
            np.maximum(out, 0.0, out=out)
        return out.astype(x.dtype)
    out = np.matmul(x, w.T)
    if b is not None:
        out += b
    if relu:
        np.maximum(out, 0, out=out)
    return out


def _relu_mask(g, out):
    """``where(out > 0, g, 0)`` in a scratch array (the masked gradient never leaves linear_bwd)."""
    mask = scratch(out, 1, np.bool_)
    np.greater(out, 0, out=mask)
    return masked_grad(g, mask, out=scratch(g, 2))


def linear_bwd(grad_out, x, w, out, relu, need_dx, need_dw, need_db, dw_into=None,
               db_into=None):
    """Gradients of ``linear_fwd``: returns ``(dx, dw, db)``, None where not needed.

    With ``relu`` the saved forward output ``out`` is the mask: the upstream
    gradient is zeroed where out <= 0 as it is read (PyTorch's convention at 0).
    ``dw``/``db`` are written into ``dw_into``/``db_into`` when given.
    """
    g = up(grad_out)
    if relu:
        g = _relu_mask(g, out)
    low = grad_out.dtype in LOW
    dx = dw = db = None
    if need_dx:
        dx = np.matmul(g, up(w))
    if need_dw:
        dw = np.matmul(g.T, up(x), out=None if low else dw_into)
    if need_db:
        db = g.sum(axis=0, out=None if low else db_into)
    if low:
        dt = grad_out.dtype
        dx = None if dx is None else dx.astype(dt)
        dw = None if dw is None else _into(dw.astype(dt), dw_into)
        db = None if db is None else _into(db.astype(dt), db_into)
    return dx, dw, db


def _into(a, dst):
    """``a`` itself, or copied into ``dst`` (and ``dst`` returned) when ``dst`` is given."""
    if dst is None:
        return a
    dst[...] = a
    return dst
