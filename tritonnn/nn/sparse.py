"""``tn.nn.Embedding``: a lookup table of learned rows, as PyTorch's."""
from __future__ import annotations

import numbers

from ..checks import shown
from ..errors import IndexOutOfRange, ShapeError, TritonnnError
from ..tape import no_grad
from ..tensor import Tensor, randn
from . import functional as F
from .modules import Module, Parameter


def _count(what, n, call):
    if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 0:
        raise ShapeError(f"Embedding: {what} must be a non-negative int, got {shown(n)} "
                         f"({call})")
    return int(n)


class Embedding(Module):
    """``weight`` (num_embeddings, embedding_dim), initialised N(0, 1) from ``tn.manual_seed``'s
    stream, as PyTorch's; ``forward(idx)`` gives ``idx.shape + (embedding_dim,)``.

    ``padding_idx`` (may count from the end) names a row that starts at zero and takes no
    gradient. ``state_dict`` key: ``weight``.
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None,
                 norm_type=2.0, scale_grad_by_freq=False, sparse=False, _weight=None,
                 _freeze=False, device=None, dtype=None):
        super().__init__()
        call = f"Embedding({shown(num_embeddings)}, {shown(embedding_dim)})"
        num = _count("num_embeddings", num_embeddings, call)
        dim = _count("embedding_dim", embedding_dim, call)
        if padding_idx is not None:
            if not isinstance(padding_idx, numbers.Integral) or isinstance(padding_idx, bool):
                raise TritonnnError(f"Embedding: padding_idx must be an int or None, got "
                                    f"{shown(padding_idx)}")
            if not -num <= padding_idx < num:
                raise IndexOutOfRange(f"Embedding: padding_idx {padding_idx} is out of range "
                                      f"for {num} embeddings")
            padding_idx = int(padding_idx) % num
        for name, value, default in (("max_norm", max_norm, None),
                                     ("scale_grad_by_freq", scale_grad_by_freq, False),
                                     ("sparse", sparse, False)):
            if value is not default and value != default:
                raise TritonnnError(f"Embedding: {name}={value!r} is not supported (only the "
                                    f"default {default!r})")
        self.num_embeddings, self.embedding_dim, self.padding_idx = num, dim, padding_idx
        if _weight is None:
            with no_grad():
                w = randn(num, dim, device=device)
                if dtype is not None:
                    w = w.to(dtype)
                if padding_idx is not None:
                    w[padding_idx] = 0.0
        else:
            if not isinstance(_weight, Tensor) or _weight.shape != (num, dim):
                raise ShapeError(f"Embedding: _weight must be a tensor of shape {(num, dim)}, "
                                 f"got {getattr(_weight, 'shape', type(_weight).__name__)}")
            w = _weight.detach()
        self.weight = Parameter(w, requires_grad=not _freeze)

    @classmethod
    def from_pretrained(cls, embeddings, freeze=True, padding_idx=None):
        """An Embedding holding the 2-D tensor ``embeddings`` (shared, as PyTorch's), frozen
        unless ``freeze=False``."""
        if not isinstance(embeddings, Tensor) or embeddings.ndim != 2:
            raise ShapeError(f"Embedding.from_pretrained: embeddings must be a 2-D tensor, got "
                             f"{getattr(embeddings, 'shape', type(embeddings).__name__)}")
        num, dim = embeddings.shape
        return cls(num, dim, padding_idx=padding_idx, _weight=embeddings, _freeze=freeze)

    def forward(self, idx):
        return F.embedding(idx, self.weight, self.padding_idx)

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        return s if self.padding_idx is None else s + f", padding_idx={self.padding_idx}"
