"""Activation layers: ``GELU``, ``SiLU``, ``Tanh`` (PyTorch's names and arguments)."""
from __future__ import annotations

from ..errors import TritonnnError
from . import functional as F
from .modules import Module


class GELU(Module):
    """``x * Phi(x)``; ``approximate="tanh"`` uses PyTorch's tanh form."""

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise TritonnnError(f"GELU: approximate must be 'none' or 'tanh', got "
                                f"{approximate!r}")
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class SiLU(Module):
    """``x * sigmoid(x)``."""

    def forward(self, x):
        return F.silu(x)


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)
