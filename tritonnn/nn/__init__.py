"""Layers: ``Module``, ``Parameter``, containers, linear, embedding, dropout, normalization,
activations, ``init``, ``utils``, ``functional`` and ``parallel`` (DistributedDataParallel)."""
from . import functional, init, parallel, utils
from .activation import GELU, SiLU, Tanh
from .dropout import Dropout
from .modules import (Flatten, Identity, Linear, Module, ModuleList, Parameter, ReLU, Sequential,
                      Sigmoid)
from .normalization import LayerNorm
from .sparse import Embedding

__all__ = ["Module", "Parameter", "Linear", "ReLU", "Sigmoid", "Sequential", "Identity",
           "ModuleList", "Flatten", "Embedding", "Dropout", "LayerNorm", "GELU", "SiLU", "Tanh",
           "functional", "init", "parallel", "utils"]
