"""Datasets and the DataLoader: batches stacked on a new first dimension, shuffled reproducibly."""
from __future__ import annotations

import numbers

import numpy as np

from . import random as _random
from .checks import same_device
from .errors import ShapeError, TritonnnError
from .tensor import Tensor, stack, tensor


class Dataset:
    """Subclass with ``__len__`` and ``__getitem__(i)`` returning a tuple of tensors (or numbers)."""

    def __len__(self):
        raise NotImplementedError

    def __getitem__(self, i):
        raise NotImplementedError


class TensorDataset(Dataset):
    """Row ``i`` of each of several tensors that share their first dimension."""

    def __init__(self, *tensors):
        if not tensors:
            raise TritonnnError("TensorDataset: expected at least one tensor")
        for t in tensors:
            if not isinstance(t, Tensor) or t.ndim == 0:
                raise ShapeError("TensorDataset: every item must be a tensor with at least 1 dim")
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
    """Iterate a dataset in batches; a fresh shuffled order every epoch when ``shuffle``."""

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, seed=None):
        if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) \
                or batch_size <= 0:
            raise TritonnnError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise TritonnnError("DataLoader: dataset needs __len__ and __getitem__")
        self.dataset, self.batch_size = dataset, int(batch_size)
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        # the base seed is fixed now, so each epoch's order follows from tn.manual_seed or seed
        self.seed = int(seed) if seed is not None else _random.draw_seed()
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
        for b in range(n_batches):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            if type(ds) is TensorDataset:
                # one gather per tensor instead of stacking rows one by one
                it = tensor(idx, device=ds.tensors[0].device)
                yield tuple(t[it] for t in ds.tensors)
            else:
                yield _collate([ds[int(i)] for i in idx])


def _collate(items):
    first = items[0]
    single = not isinstance(first, (tuple, list))
    rows = [(x,) if single else tuple(x) for x in items]
    width = len(rows[0])
    if any(len(r) != width for r in rows):
        raise ShapeError("DataLoader: dataset items have different numbers of fields")
    out = []
    for j in range(width):
        col = [r[j] for r in rows]
        if isinstance(col[0], Tensor):
            shapes = {c.shape for c in col}
            if len(shapes) > 1:
                raise ShapeError(f"DataLoader: field {j} of the dataset's items has different "
                                 f"shapes in one batch: {sorted(shapes)}")
            out.append(stack(col))
        else:
            out.append(tensor(col))
    return out[0] if single else tuple(out)
