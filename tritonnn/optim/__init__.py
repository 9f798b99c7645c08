"""Optimizers (``SGD``, ``Adam``, ``AdamW``) and learning-rate schedules
(``tn.optim.lr_scheduler``), with PyTorch's semantics and state_dict layouts."""
from . import lr_scheduler
from .optimizer import SGD, Adam, AdamW, Optimizer

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler"]
