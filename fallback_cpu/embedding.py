"""Embedding tables (numpy): rows gathered at index arrays, their gradient, one-hot codes.

Twins of ``kernels/embedding.py``. The gradient sums each row's contributions in
position order, in float32 (float64 for float64), from zero, as the kernel does:
``np.add.at`` adds the positions one after another (``np.add.reduceat`` would not: it
adds pairwise).
"""
from __future__ import annotations

import numpy as np

from ._arrays import check_range, up


def embedding_fwd(idx, weight, check):
    """``weight[idx]``: ``idx.shape + (dim,)``, a new row-major array."""
    check_range(idx, check)
    return np.take(weight, idx, axis=0)


def embedding_bwd(grad, idx, num, padding_idx):
    """The (num, dim) table gradient: row v sums ``grad``'s rows where ``idx == v``, in order."""
    dim = grad.shape[-1]
    acc = np.float64 if grad.dtype == np.float64 else np.float32
    out = np.zeros((num, dim), acc)
    flat = idx.reshape(-1).astype(np.int64, copy=False)
    g = up(grad).reshape(flat.size, dim)
    if padding_idx is not None:
        keep = flat != padding_idx
        flat, g = flat[keep], g[keep]
    np.add.at(out, flat, g.astype(acc, copy=False))       # one position after another
    return out.astype(grad.dtype, copy=False)


def one_hot(idx, num_classes, check):
    """int64 ``idx[..., None] == arange(num_classes)``."""
    check_range(idx, check)
    return (idx[..., None] == np.arange(num_classes)).astype(np.int64)
