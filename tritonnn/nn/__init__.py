"""Layers: ``Module``, ``Parameter``, containers, linear, normalization, activations, ``init``,
``utils`` and ``functional``."""
from . import functional, init, utils
from .activation import GELU, SiLU, Tanh
from .modules import (Flatten, Identity, Linear, Module, ModuleList, Parameter, ReLU, Sequential,
                      Sigmoid)
from .normalization import LayerNorm

__all__ = ["Module", "Parameter", "Linear", "ReLU", "Sigmoid", "Sequential", "Identity",
           "ModuleList", "Flatten", "LayerNorm", "GELU", "SiLU", "Tanh",
           "functional", "init", "utils"]
