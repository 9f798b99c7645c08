"""Datasets, samplers and the DataLoader: batches stacked on a new first dimension, shuffled
reproducibly, and sharded across ranks by ``DistributedSampler``."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from . import distributed as _distributed
from . import random as _random
from .checks import as_int, integer, is_scalar, same_device, shown
from .dtypes import int64
from .errors import DTypeError, IndexOutOfRange, ShapeError, TritonnnError
from .tensor import Tensor, stack, tensor

__all__ = ["Dataset", "TensorDataset", "Sampler", "SequentialSampler", "RandomSampler",
           "DistributedSampler", "DataLoader", "default_collate"]

_SEED_MASK = (1 << 64) - 1      # seeds and epochs enter a SeedSequence as unsigned 64-bit words


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


# -- samplers: the order in which a loader visits a dataset's indices ------------------------------


class Sampler:
    """An order of dataset indices: subclass with ``__iter__`` (ints in ``[0, len(dataset))``)
    and ``__len__`` (how many it yields). A DataLoader's ``sampler`` may be any iterable with a
    ``__len__``, as in PyTorch; subclassing this one only says what is meant."""

    def __iter__(self):
        raise NotImplementedError

    def __len__(self):
        raise NotImplementedError


class SequentialSampler(Sampler):
    """``0, 1, ..., len(data_source) - 1``."""

    def __init__(self, data_source):
        _length("SequentialSampler", data_source, "data_source")
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self):
        return len(self.data_source)


class RandomSampler(Sampler):
    """A fresh permutation of ``range(len(data_source))`` on every pass.

    Pass ``e`` (counted from 0 by the sampler, or set with ``set_epoch(e)``) is the permutation
    of a numpy Generator seeded with ``SeedSequence([seed, e])``; ``seed=None`` draws one from
    the global stream now, so ``tn.manual_seed`` makes every pass reproducible.
    """

    def __init__(self, data_source, seed=None):
        op = "RandomSampler"
        _length(op, data_source, "data_source")
        self.data_source = data_source
        self.seed = integer(op, seed, "seed") if seed is not None else _random.draw_seed()
        self.epoch = 0              # the pass the next iter() gives

    def set_epoch(self, epoch):
        self.epoch = integer("RandomSampler.set_epoch", epoch, "epoch")

    def __iter__(self):
        # drawn when iter() is called, not at the first next(): the pass is counted at once
        order = _permutation(len(self.data_source), self.seed, self.epoch)
        self.epoch += 1
        return iter(order.tolist())

    def __len__(self):
        return len(self.data_source)


class DistributedSampler(Sampler):
    """Rank ``rank``'s shard of a dataset split over ``num_replicas`` ranks, as PyTorch's.

    Every rank computes the same order of the ``N = len(dataset)`` indices, ``range(N)`` or,
    with ``shuffle``, a permutation that depends only on ``(seed, epoch)`` (call
    ``set_epoch(e)`` before each epoch, or every epoch repeats the first order), brings it to
    ``total_size = num_samples * num_replicas`` indices and takes every ``num_replicas``-th
    one from position ``rank``:

    * without ``drop_last``: ``num_samples = ceil(N / num_replicas)``; the order is padded by
      repeating it from its start (cyclically when ``num_replicas > N``), so a few indices are
      seen twice an epoch, and the shards together hold every index;
    * with ``drop_last``: ``num_samples = N // num_replicas`` (PyTorch writes it
      ``ceil((N - W) / W)`` when ``N % W != 0``: the same number) and the order's tail is
      dropped.

    The shards are disjoint whenever nothing is padded. Unshuffled, they are PyTorch's index
    for index. Shuffled, the permutation comes from numpy's Generator (seeded with
    ``SeedSequence([seed, epoch])``), not from torch's generator, so the order differs from
    PyTorch's for the same seed; sizes, padding and the split between ranks follow the same
    rules.

    ``num_replicas`` and ``rank`` default to ``tn.distributed.world_size()`` and
    ``tn.distributed.rank()``, which need ``tn.distributed.init()`` first.
    """

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0,
                 drop_last=False):
        op = "DistributedSampler"
        n = _length(op, dataset, "dataset")
        if num_replicas is None or rank is None:
            world, here = _process_group(op)
            num_replicas = world if num_replicas is None else num_replicas
            rank = here if rank is None else rank
        num_replicas = integer(op, num_replicas, "num_replicas")
        rank = integer(op, rank, "rank")
        if num_replicas < 1:
            raise TritonnnError(f"{op}: num_replicas must be at least 1, got {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise IndexOutOfRange(f"{op}: rank must be in [0, {num_replicas}) for "
                                  f"num_replicas={num_replicas}, got {rank}")
        self.dataset, self.num_replicas, self.rank = dataset, num_replicas, rank
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.seed = integer(op, seed, "seed")
        self.epoch = 0
        self._n = n
        self.num_samples = n // num_replicas if self.drop_last else -(-n // num_replicas)
        self.total_size = self.num_samples * num_replicas

    def set_epoch(self, epoch):
        """The epoch whose order the next pass gives (the same on every rank)."""
        self.epoch = integer("DistributedSampler.set_epoch", epoch, "epoch")

    def _indices(self):
        """This rank's indices of the current epoch, as an int64 numpy array."""
        if len(self.dataset) != self._n:
            raise TritonnnError(f"DistributedSampler: the dataset had {self._n} samples when the "
                                f"sampler was made and has {len(self.dataset)} now; make a new "
                                f"sampler")
        order = (_permutation(self._n, self.seed, self.epoch) if self.shuffle
                 else np.arange(self._n, dtype=np.int64))
        # np.resize repeats the order from its start as often as total_size needs (the padding),
        # and cuts it when total_size is shorter (drop_last)
        order = np.resize(order, self.total_size) if self.total_size else order[:0]
        return order[self.rank::self.num_replicas]

    def __iter__(self):
        return iter(self._indices().tolist())

    def __len__(self):
        return self.num_samples


def _sampler_length(op, sampler):
    """``len(sampler)``, or an error naming what it returned instead of a count."""
    try:
        return len(sampler)
    except (TypeError, ValueError) as e:
        raise DTypeError(f"{op}: len(sampler) must give a non-negative int ({e})") from None


def _length(op, data, what):
    if not hasattr(data, "__len__"):
        raise DTypeError(f"{op}: {what} must have __len__ (a Dataset, a list, ...), got "
                         f"{type(data).__name__}")
    return len(data)


def _permutation(n, seed, epoch):
    """The permutation of ``range(n)`` for ``(seed, epoch)``: through a SeedSequence, so
    consecutive epochs (and seeds) give unrelated streams; independent of any global RNG."""
    gen = np.random.default_rng(np.random.SeedSequence([seed & _SEED_MASK, epoch & _SEED_MASK]))
    return gen.permutation(n)


def _process_group(op):
    """``(world_size, rank)`` of the initialized ``tn.distributed``, or an error saying how to
    give them."""
    if not _distributed.is_initialized():
        raise TritonnnError(f"{op}: num_replicas and rank not given and tn.distributed is not "
                            f"initialized; call tn.distributed.init() first or pass them")
    return _distributed.world_size(), _distributed.rank()


# -- the loader ---------------------------------------------------------------------------------


class DataLoader:
    """Iterate a dataset in batches; a fresh shuffled order every epoch when ``shuffle``.

    ``sampler``, as in PyTorch, gives the order instead: any iterable of indices with a
    ``__len__`` (a ``Sampler``, ``DistributedSampler``, a list), read in full at the start of
    each epoch, so ``sampler.set_epoch(e)`` before the loop takes effect; ``len(loader)``
    counts its indices. It excludes ``shuffle=True``.

    ``collate_fn(items)`` makes one batch of a list of dataset items; by default
    (``default_collate``) tensors are stacked on a new first dim, numbers become a tensor,
    and tuples and dicts are batched field by field (dicts per key).
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, sampler=None, drop_last=False,
                 seed=None, collate_fn=None):
        op = "DataLoader"
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise DTypeError(f"{op}: dataset must have __len__ and __getitem__ (a Dataset, a "
                             f"list, ...), got {type(dataset).__name__}")
        batch_size = integer(op, batch_size, "batch_size")
        if batch_size <= 0:
            raise TritonnnError(f"{op}: batch_size must be positive, got {batch_size}")
        if sampler is not None:
            if isinstance(sampler, bool) or not (hasattr(sampler, "__iter__") and
                                                 hasattr(sampler, "__len__")):
                # a bool here is most likely drop_last passed by position, as before sampler came
                hint = (" (drop_last comes after sampler: pass it as drop_last=)"
                        if isinstance(sampler, bool) else "")
                raise DTypeError(f"{op}: sampler must be an iterable of indices with __len__ (a "
                                 f"tn.data.Sampler, a list, ...) or None, got {shown(sampler)} "
                                 f"({type(sampler).__name__}){hint}")
            if shuffle:
                raise TritonnnError(f"{op}: sampler and shuffle=True exclude each other: the "
                                    f"sampler sets the order (shuffle in the sampler, e.g. "
                                    f"DistributedSampler(..., shuffle=True))")
            _sampler_length(op, sampler)
        if collate_fn is not None and not callable(collate_fn):
            raise DTypeError(f"{op}: collate_fn must be callable or None, got "
                             f"{type(collate_fn).__name__}")
        self.dataset, self.batch_size, self.sampler = dataset, batch_size, sampler
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.collate_fn = collate_fn
        # the base seed is fixed now, so each epoch's order follows from tn.manual_seed or seed
        self.seed = integer(op, seed, "seed") if seed is not None else _random.draw_seed()
        self.epoch = 0              # epochs begun
        self._progress = None       # [order, batches yielded] of the epoch begun last
        self._resume = None         # (order, batches done): where a loaded state stopped

    def __len__(self):
        n = (len(self.dataset) if self.sampler is None
             else _sampler_length("DataLoader", self.sampler))
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self):
        if self.sampler is not None:
            return self._sampler_order()
        n = len(self.dataset)
        return _permutation(n, self.seed, self.epoch) if self.shuffle else np.arange(n)

    def _sampler_order(self):
        """The sampler's indices for this epoch as an int64 array, checked: ints, inside the
        dataset, as many as the sampler's len() (from which the batches are counted)."""
        op, n = "DataLoader", len(self.dataset)
        items = list(self.sampler)
        count = _sampler_length(op, self.sampler)
        if len(items) != count:
            raise TritonnnError(f"{op}: the sampler yielded {len(items)} indices but its len() "
                                f"is {count}")
        if not items:
            return np.zeros(0, dtype=np.int64)
        # numpy turns a bool among ints into 0 or 1, floats into a float array and refuses ragged
        # items: look at the items one by one only when the array is not plain ints
        try:
            order = np.asarray(items)
            plain = order.ndim == 1 and order.dtype.kind in "iu"
        except (TypeError, ValueError):
            plain = False
        if not plain or any(type(i) in (bool, np.bool_) for i in items):
            for pos, i in enumerate(items):
                if as_int(i) is None:
                    raise DTypeError(f"{op}: the sampler gave {shown(i)} ({type(i).__name__}) "
                                     f"at position {pos}; indices must be ints")
            order = np.asarray([as_int(i) for i in items], dtype=object)
        outside = np.flatnonzero((order < 0) | (order >= n))
        if len(outside):
            pos = int(outside[0])
            raise IndexOutOfRange(f"{op}: the sampler gave index {as_int(items[pos])} at position "
                                  f"{pos}; the dataset has {n} samples (indices in [0, {n}))")
        return order.astype(np.int64)

    def __iter__(self):
        if self._resume is not None:     # the epoch a loaded state stopped in, from there on
            order, start = self._resume
            if order is None:            # a sampler's: its order again (after set_epoch)
                order = self._order()
            self._resume = None
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

        A loader with a sampler adds ``"sampler": True`` and never stores the order (a
        ``DistributedSampler``'s differs from rank to rank): the resumed loader asks its own
        sampler again when the resumed epoch's loop starts, so set the sampler's epoch first
        (``sampler.set_epoch(epoch)``, as every epoch) and it skips the batches done.
        """
        if self._resume is not None:
            (order, done), epoch = self._resume, self.epoch - 1
        elif self._progress is not None and self._progress[1] < len(self):
            (order, done), epoch = self._progress, self.epoch - 1
        else:
            order, done, epoch = None, 0, self.epoch
        state = {"seed": self.seed, "epoch": epoch, "batch": done,
                 "order": tensor(order) if done and self.shuffle else None,
                 "samples": len(self.dataset), "batch_size": self.batch_size,
                 "shuffle": self.shuffle, "drop_last": self.drop_last}
        if self.sampler is not None:
            state["sampler"] = True
        return state

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
        if set(state) - {"sampler"} != want:
            raise TritonnnError(f"{op}: expected the keys {sorted(want)} (and 'sampler' from a "
                                f"loader with one), got {sorted(map(repr, state))}")
        # a state without the key comes from a loader without a sampler (or from before samplers)
        with_sampler = state.get("sampler", False)
        if not isinstance(with_sampler, bool):
            raise DTypeError(f"{op}: sampler must be a bool, got {shown(with_sampler)}")
        if with_sampler != (self.sampler is not None):
            theirs, ours = ("with", "none") if with_sampler else ("without", "one")
            raise TritonnnError(f"{op}: the state is of a loader {theirs} a sampler; this one "
                                f"has {ours}")
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
        elif self.sampler is None:
            order = np.arange(samples)
        # with a sampler, order stays None: the resumed epoch's loop asks the sampler
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
