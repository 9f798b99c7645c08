"""Datasets and the DataLoader: batches stacked on a new first dimension, shuffled reproducibly."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from . import random as _random
from .checks import integer, is_scalar, same_device, shown
from .dtypes import int64
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
        self.epoch = 0              # epochs begun
        self._progress = None       # [order, batches yielded] of the epoch begun last
        self._resume = None         # (order, batches done): where a loaded state stopped

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
        if self._resume is not None:     # the epoch a loaded state stopped in, from there on
            (order, start), self._resume = self._resume, None
        else:
            order, start = self._order(), 0
            self.epoch += 1
        progress = self._progress = [order, start]
        n_batches = len(self)
        ds = self.dataset
        collate = self.collate_fn or default_collate
        gather = type(ds) is TensorDataset and self.collate_fn is None
        if gather:
            # the epoch's order goes to the tensors' device once; each batch gathers each tensor's
            # rows at a slice of it (a view): on "cuda" no upload and no host sync per batch
            order_on_device = tensor(order, dtype=int64, device=ds.tensors[0].device)
        for b in range(start, n_batches):
            rows = slice(b * self.batch_size, (b + 1) * self.batch_size)
            if gather:
                # one gather per tensor instead of stacking rows one by one
                it = order_on_device[rows]
                batch = tuple(t[it] for t in ds.tensors)
            else:
                batch = collate([ds[int(i)] for i in order[rows]])
            progress[1] = b + 1
            yield batch

    # -- state: resume mid-epoch -----------------------------------------------------------------

    def state_dict(self):
        """Where the loader stands, as plain values ``tn.save`` stores.

        ``{"seed", "epoch", "batch", "order", "samples", "batch_size", "shuffle",
        "drop_last"}``: ``epoch`` is the epoch the next batch comes from (0-based), ``batch``
        how many of its batches were already yielded (0 at an epoch's start), ``order`` that
        epoch's sample order (an int64 tensor) when it is under way and shuffled, else None;
        the last four describe the loader, and ``load_state_dict`` checks them. Taken inside
        a ``for`` loop over the loader, it counts the batch being worked on as yielded.
        """
        if self._resume is not None:
            (order, done), epoch = self._resume, self.epoch - 1
        elif self._progress is not None and self._progress[1] < len(self):
            (order, done), epoch = self._progress, self.epoch - 1
        else:
            order, done, epoch = None, 0, self.epoch
        return {"seed": self.seed, "epoch": epoch, "batch": done,
                "order": tensor(order) if done and self.shuffle else None,
                "samples": len(self.dataset), "batch_size": self.batch_size,
                "shuffle": self.shuffle, "drop_last": self.drop_last}

    def load_state_dict(self, state):
        """Continue from ``state`` (what ``state_dict`` returned, perhaps through ``tn.save``
        and ``tn.load``): the next ``for`` loop over the loader yields the batches that would
        have followed, and later epochs the orders an uninterrupted run gets. Checked first:
        a bad state leaves the loader as it was."""
        op = "DataLoader.load_state_dict"
        if not isinstance(state, Mapping):
            raise DTypeError(f"{op}: expected the dict state_dict() returns, got "
                             f"{type(state).__name__}")
        want = {"seed", "epoch", "batch", "order", "samples", "batch_size", "shuffle",
                "drop_last"}
        if set(state) != want:
            raise TritonnnError(f"{op}: expected the keys {sorted(want)}, got "
                                f"{sorted(map(repr, state))}")
        seed, epoch, done, samples, batch_size = (
            integer(op, state[k], k) for k in ("seed", "epoch", "batch", "samples", "batch_size"))
        for k in ("shuffle", "drop_last"):
            if not isinstance(state[k], bool):
                raise DTypeError(f"{op}: {k} must be a bool, got {shown(state[k])}")
        ours = (len(self.dataset), self.batch_size, self.shuffle, self.drop_last)
        theirs = (samples, batch_size, state["shuffle"], state["drop_last"])
        if ours != theirs:
            raise TritonnnError(
                f"{op}: the state is of a loader over {samples} samples in batches of "
                f"{batch_size} (shuffle={state['shuffle']}, drop_last={state['drop_last']}); "
                f"this one is over {ours[0]} in batches of {ours[1]} (shuffle={ours[2]}, "
                f"drop_last={ours[3]})")
        if epoch < 0 or not 0 <= done < max(len(self), 1):
            raise TritonnnError(f"{op}: epoch {epoch} and batch {done} are out of range (batch "
                                f"is in [0, {len(self)}))")
        order = state["order"]
        if done and self.shuffle:
            order = self._checked_order(op, order)
        elif order is not None:
            raise TritonnnError(f"{op}: order must be None at an epoch's start or for an "
                                f"unshuffled loader, got {shown(order)}")
        else:
            order = np.arange(samples)
        self.seed = seed
        self.epoch = epoch + 1 if done else epoch
        self._resume = (order, done) if done else None
        self._progress = None

    def _checked_order(self, op, order):
        """A saved epoch order as a numpy array: a permutation of the dataset's indices."""
        if isinstance(order, Tensor):
            order = order.detach().cpu().numpy()
        n = len(self.dataset)
        if not (isinstance(order, np.ndarray) and order.dtype.kind in "iu" and
                order.shape == (n,)):
            raise TritonnnError(f"{op}: order must be an integer tensor of shape ({n},), got "
                                f"{shown(order)}")
        seen = np.zeros(n, dtype=bool)
        inside = (order >= 0) & (order < n)
        seen[order[inside]] = True
        if not (inside.all() and seen.all()):
            raise TritonnnError(f"{op}: order is not a permutation of the {n} sample indices")
        return order.astype(np.int64)


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
