"""Layers: ``Module``, ``Parameter``, ``Linear``, ``ReLU``, ``Sigmoid``, ``Sequential``, and ``functional``."""
from . import functional
from .modules import Identity, Linear, Module, Parameter, ReLU, Sequential, Sigmoid
from .dropout import Dropout  # issue 11
from .sparse import Embedding  # issue 11

__all__ = ["Module", "Parameter", "Linear", "ReLU", "Sigmoid", "Sequential", "Identity",
           "functional"]
__all__ += ["Embedding", "Dropout"]  # issue 11
