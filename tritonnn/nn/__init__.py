"""Layers: ``Module``, ``Parameter``, ``Linear``, ``ReLU``, ``Sigmoid``, ``Sequential``, and ``functional``."""
from . import functional
from .modules import Identity, Linear, Module, Parameter, ReLU, Sequential, Sigmoid

__all__ = ["Module", "Parameter", "Linear", "ReLU", "Sigmoid", "Sequential", "Identity",
           "functional"]

# -- issue 11 (optim branch): containers, init, gradient clipping ------------------------------
from . import init, utils  # noqa: E402
from .modules import Flatten, ModuleList  # noqa: E402

__all__ += ["ModuleList", "Flatten", "init", "utils"]
