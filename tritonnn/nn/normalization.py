"""``LayerNorm``: PyTorch's arguments, initialisation (weight ones, bias zeros) and names."""
from __future__ import annotations

import numbers

from ..checks import number, shown
from ..errors import ShapeError
from ..tensor import ones, zeros
from . import functional as F
from .modules import Module, Parameter


class LayerNorm(Module):
    """Normalizes the trailing dims ``normalized_shape`` (an int or a tuple of ints) of its
    input to zero mean and unit variance, then scales by ``weight`` and shifts by ``bias``
    (learned, of ``normalized_shape``, when ``elementwise_affine``)."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True,
                 device=None, dtype=None):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, numbers.Integral) else \
            normalized_shape
        try:
            shape = tuple(shape)
        except TypeError:
            shape = None
        if not shape or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s <= 0
                            for s in shape):
            raise ShapeError(f"LayerNorm: normalized_shape must be a positive int or a tuple "
                             f"of them, got {shown(normalized_shape)}")
        self.normalized_shape = tuple(int(s) for s in shape)
        self.eps = number("LayerNorm", eps, "eps")
        self.elementwise_affine = bool(elementwise_affine)
        self.weight = self.bias = None
        if self.elementwise_affine:
            self.weight = Parameter(ones(self.normalized_shape, dtype=dtype, device=device))
            if bias:
                self.bias = Parameter(zeros(self.normalized_shape, dtype=dtype, device=device))

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}")
