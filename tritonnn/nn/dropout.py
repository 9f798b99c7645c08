"""``tn.nn.Dropout``: random zeroing in training, the identity in eval mode."""
from __future__ import annotations

from ..checks import flag, number
from ..errors import TritonnnError
from . import functional as F
from .modules import Module


class Dropout(Module):
    """Zeroes each element with probability ``p`` and scales the rest by ``1 / (1 - p)`` in
    ``train()`` mode (the default); after ``eval()`` it returns its input unchanged."""

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        p = number("Dropout", p, "p")
        if not 0.0 <= p <= 1.0:
            raise TritonnnError(f"Dropout: p must be a probability in [0, 1], got {p}")
        self.p, self.inplace = p, flag("Dropout", "inplace", inplace)

    def forward(self, x):
        return F.dropout(x, self.p, self.training, self.inplace)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"
