"""Datasets and the DataLoader: batches stacked on a new first dimension, shuffled reproducibly."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from . import random as _random
from .checks import integer, is_scalar, same_device, shown
from .errors import DTypeError, ShapeError, TritonnnError
from .tensor import Tensor, stack, tensor


class Dataset:
    """Subclass with ``__len__`` and ``__getitem__(i)`` returning a tuple, a dict or a tensor."""

    def __len__(self):
        raise NotImplementedError

    def __getitem__(self, i):
        raise NotImplementedError


class TensorDataset(Dataset):
    """Row ``i`` of each of several tensors that share their first dimension."""

    def __init__(self, *tensors):
        if not tensors:
            raise TritonnnError("TensorDataset: expected at least one tensor")
        for i, t in enumerate(tensors):
            if not isinstance(t, Tensor):
                raise DTypeError(f"TensorDataset: argument {i} is {type(t).__name__}, not a "
                                 f"tensor (wrap it with tn.tensor(...))")
            if t.ndim == 0:
                raise ShapeError(f"TensorDataset: argument {i} is a 0-d tensor; every tensor "
                                 f"needs a first dim to index")
        n = tensors[0].shape[0]
        if any(t.shape[0] != n for t in tensors):
            raise ShapeError("TensorDataset: tensors have different lengths: "
                             + ", ".join(str(t.shape) for t in tensors))
        same_device("TensorDataset", *tensors)
        self.tensors = tensors

    def __len__(self):
        return self.tensors[0].shape[0]

    def __getitem__(self, i):
        return tuple(t[i] for t in self.tensors)


class DataLoader:
    """Iterate a dataset in batches; a fresh shuffled order every epoch when ``shuffle``.

    ``collate_fn(items)`` makes one batch of a list of dataset items; by default
    (``default_collate``) tensors are stacked on a new first dim, numbers become a tensor,
    and tuples and dicts are batched field by field (dicts per key).
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, seed=None,
                 collate_fn=None):
        op = "DataLoader"
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise DTypeError(f"{op}: dataset must have __len__ and __getitem__ (a Dataset, a "
                             f"list, ...), got {type(dataset).__name__}")
        batch_size = integer(op, batch_size, "batch_size")
        if batch_size <= 0:
            raise TritonnnError(f"{op}: batch_size must be positive, got {batch_size}")
        if collate_fn is not None and not callable(collate_fn):
            raise DTypeError(f"{op}: collate_fn must be callable or None, got "
                             f"{type(collate_fn).__name__}")
        self.dataset, self.batch_size = dataset, batch_size
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.collate_fn = collate_fn
        # the base seed is fixed now, so each epoch's order follows from tn.manual_seed or seed
        self.seed = integer(op, seed, "seed") if seed is not None else _random.draw_seed()
        self.epoch = 0

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self):
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        # (seed, epoch) through a SeedSequence: unrelated streams for consecutive epochs
        gen = np.random.default_rng([self.seed & ((1 << 64) - 1), self.epoch])
        return gen.permutation(n)

    def __iter__(self):
        order = self._order()
        self.epoch += 1
        n_batches = len(self)
        ds = self.dataset
        collate = self.collate_fn or default_collate
        for b in range(n_batches):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            if type(ds) is TensorDataset and self.collate_fn is None:
                # one gather per tensor instead of stacking rows one by one
                it = tensor(idx, device=ds.tensors[0].device)
                yield tuple(t[it] for t in ds.tensors)
            else:
                yield collate([ds[int(i)] for i in idx])


def default_collate(items):
    """One batch of a list of dataset items, as PyTorch's default collate.

    Tensors are stacked on a new first dim; numbers become a tensor (``tn.tensor``'s
    dtypes), numpy arrays a stacked tensor; strings stay a list; tuples and lists become a
    tuple of batched fields, dicts a dict batched per key (recursively). Items whose
    structure, types or shapes differ within the batch, and ``None``, are refused.
    """
    return _collate(list(items), "item")


def _collate(values, where):
    first = values[0]
    if isinstance(first, Tensor):
        _same_kind(values, where, "a tensor", lambda v: isinstance(v, Tensor))
        _same_shape(values, where)
        return stack(values)
    if isinstance(first, Mapping):
        _same_kind(values, where, "a dict", lambda v: isinstance(v, Mapping))
        keys = list(first)
        for v in values[1:]:
            if set(v) != set(keys):
                raise TritonnnError(f"DataLoader: {where} has different keys in one batch: "
                                    f"{sorted(map(repr, keys))} and {sorted(map(repr, v))}")
        return {k: _collate([v[k] for v in values], f"{where}[{k!r}]") for k in keys}
    if isinstance(first, (tuple, list)):
        _same_kind(values, where, "a tuple or list", lambda v: isinstance(v, (tuple, list)))
        if any(len(v) != len(first) for v in values):
            raise ShapeError(f"DataLoader: {where} has different numbers of fields in one batch: "
                             f"{sorted({len(v) for v in values})}")
        return tuple(_collate(list(col), f"{where}[{j}]") for j, col in enumerate(zip(*values)))
    if isinstance(first, str):
        _same_kind(values, where, "a string", lambda v: isinstance(v, str))
        return list(values)
    if isinstance(first, np.ndarray):
        _same_kind(values, where, "a numpy array", lambda v: isinstance(v, np.ndarray))
        _same_shape(values, where)
        return tensor(np.stack(values))
    if is_scalar(first):
        _same_kind(values, where, "a number", is_scalar)
        return tensor(values)
    _refuse(first, where)


def _collatable(v):
    return isinstance(v, (Tensor, Mapping, tuple, list, str, np.ndarray)) or is_scalar(v)


def _same_kind(values, where, name, test):
    for v in values:
        if not test(v):
            if not _collatable(v):
                _refuse(v, where)
            raise DTypeError(f"DataLoader: {where} differs in kind within one batch: {name} "
                             f"in one item, {type(v).__name__} in another")


def _same_shape(values, where):
    shapes = {tuple(v.shape) for v in values}
    if len(shapes) > 1:
        raise ShapeError(f"DataLoader: {where} has different shapes in one batch: "
                         f"{sorted(shapes)}")


def _refuse(v, where):
    raise DTypeError(f"DataLoader: {where} is {shown(v)} ({type(v).__name__}); dataset items "
                     f"may hold tensors, numbers, strings and numpy arrays, in tuples, lists "
                     f"and dicts")
