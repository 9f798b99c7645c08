"""Layers: ``Module``, ``Parameter``, ``Linear``, ``ReLU``, ``Sigmoid``, ``Sequential``, and ``functional``."""
from . import functional
from .modules import Identity, Linear, Module, Parameter, ReLU, Sequential, Sigmoid
# normalization and activations (issue 11)
from .activation import GELU, SiLU, Tanh
from .normalization import LayerNorm

__all__ = ["Module", "Parameter", "Linear", "ReLU", "Sigmoid", "Sequential", "Identity",
           "functional", "LayerNorm", "GELU", "SiLU", "Tanh"]
