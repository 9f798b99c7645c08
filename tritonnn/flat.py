"""Flat storage: the parameters of one device and dtype in one buffer, gradients and optimizer
state in buffers of the same layout, every parameter tensor a view into them.

An optimizer keeps its parameters here (``tn.optim``), so that one launch updates all of them
(``sgd_flat_step``/``adam_flat_step``) and ``clip_grad_norm_`` reads every gradient in two
(``grad_norm_partials``/``clip_grads_``). Each parameter's segment starts at a multiple of
the backend's alignment (``flat_layout``) and is cut into chunks, one program each; the
chunk table, a row per chunk (which hyper-parameters, or -1: skip) and a step count per chunk
live in device memory next to the buffers.

A parameter here gets a gradient *home* (``TensorBase._home``): its views into the parameter
and gradient buffers. ``backward()`` writes its gradient straight into the home
(``tape.walk``), so ``p.grad`` is a view of the flat gradient buffer and no step gathers
gradients. What lives where is decided once per layout; every step checks only identities
(the parameter still views its home, its gradient is the home's view) and rebuilds the layout
when a parameter moved (``model.to(...)``, ``p.data = ...``).
"""
from __future__ import annotations

import numpy as np

from . import dtypes as D
from .tensor import Tensor


class Home:
    """Where parameter ``flat.params[index]`` lives: ``data`` (the parameter's buffer, a view
    into ``flat.data``) and ``grad`` (its gradient's view into ``flat.grad``)."""

    __slots__ = ("data", "grad", "flat", "index")

    def __init__(self, data, grad, flat, index):
        self.data, self.grad, self.flat, self.index = data, grad, flat, index


def home_of(p):
    """``p``'s home when ``p`` still lives there, else None."""
    home = getattr(p, "_home", None)
    return home if home is not None and home.data is p._data else None


class Flat:
    """``params`` (one device and dtype, in this order) moved into one buffer ``data``, with
    a gradient buffer ``grad`` and one zero-filled state buffer per name in ``states``, all of
    one layout; the parameters' values are copied in and each parameter's ``_data`` becomes
    its view. ``rows``: each parameter's first row (default -1). The owner may attach its
    own tables (an optimizer's ``hyper`` and ``bias``)."""

    def __init__(self, params, states=(), rows=None):
        first = params[0]
        B, dtype = first._backend, first.dtype
        self.params = list(params)
        self.backend, self.dtype, self.device = B, dtype, first.device
        align, chunk = B.flat_layout(dtype)
        offsets, chunks, first_chunk, n = [], [], [], 0
        for p in self.params:
            n = -(-n // align) * align
            size = p.numel()
            offsets.append(n)
            first_chunk.append(len(chunks))
            chunks += [(s, min(s + chunk, n + size)) for s in range(n, n + size, chunk)]
            n += size
        first_chunk.append(len(chunks))
        self.offsets, self.first_chunk, self.size = offsets, first_chunk, max(n, 1)
        self.n_chunks = len(chunks)
        self.data = B.empty((self.size,), dtype)
        self.grad = B.full((self.size,), 0, dtype)
        self.states = {name: B.full((self.size,), 0, dtype) for name in states}
        self.chunks = B.from_numpy(np.array(chunks, dtype=np.int64).reshape(-1, 2), D.int64)
        self.steps = B.from_numpy(np.zeros(self.n_chunks, np.int32), D.int32)
        # what ``rows`` says, per parameter (``rows``: the rows to start from, else -1)
        self.param_rows = [-1] * len(self.params) if rows is None else list(rows)
        counts = np.diff(np.array(first_chunk))
        self.rows = B.from_numpy(np.repeat(np.array(self.param_rows, dtype=np.int32), counts),
                                 D.int32)
        self._selects = {}
        self.homes = []
        for i, p in enumerate(self.params):
            data = self._view(self.data, i)
            B.copy_(data, p._data)
            p._data = data
            p._home = home = Home(data, self._view(self.grad, i), self, i)
            self.homes.append(home)
        self._state_views = {name: [self._view(buf, i) for i in range(len(self.params))]
                             for name, buf in self.states.items()}

    def _view(self, buf, i):
        p, off = self.params[i], self.offsets[i]
        B = self.backend
        return B.reshape(B.getitem(buf, slice(off, off + p.numel())), p.shape)

    # -- per parameter ---------------------------------------------------------------------------
    def state_tensor(self, name, i):
        """A tensor viewing parameter ``i``'s segment of state buffer ``name``."""
        p = self.params[i]
        return Tensor._make(self._state_views[name][i], p.dtype, p.device, p._backend)

    def grad_tensor(self, i):
        """A tensor viewing parameter ``i``'s gradient home."""
        p = self.params[i]
        return Tensor._make(self.homes[i].grad, p.dtype, p.device, p._backend)

    def chunks_of(self, i):
        return range(self.first_chunk[i], self.first_chunk[i + 1])

    # -- tables in device memory -----------------------------------------------------------------
    def set_rows(self, param_rows):
        """Point each parameter's chunks at its row (-1: skipped); one upload when the rows
        changed since the last call, none otherwise."""
        if param_rows == self.param_rows:
            return
        self.param_rows = list(param_rows)
        if not self.n_chunks:
            return
        counts = np.diff(np.array(self.first_chunk))
        host = np.repeat(np.array(param_rows, dtype=np.int32), counts)
        self.backend.write_table(self.rows, host)

    def set_steps(self, param_steps):
        """Set every parameter's chunk step counts (a list of ints); one upload."""
        counts = np.diff(np.array(self.first_chunk))
        host = np.repeat(np.array(param_steps, dtype=np.int32), counts)
        if self.n_chunks:
            self.backend.write_table(self.steps, host)

    def read_steps(self):
        """Each parameter's step count as the device keeps it (one wait for the device), None
        for a parameter with no elements."""
        host = self.backend.to_numpy(self.steps) if self.n_chunks else np.zeros(0, np.int32)
        return [int(host[a]) if a < b else None
                for a, b in zip(self.first_chunk[:-1], self.first_chunk[1:])]

    def select(self, indices):
        """A device table marking the chunks of the parameters ``indices`` (a tuple) with 0,
        every other chunk with -1; made and uploaded once per set of indices."""
        table = self._selects.get(indices)
        if table is None:
            host = np.full(self.n_chunks, -1, np.int32)
            for i in indices:
                host[self.first_chunk[i]:self.first_chunk[i + 1]] = 0
            if len(self._selects) >= 8:
                self._selects.clear()
            table = self._selects[indices] = self.backend.from_numpy(host, D.int32)
        return table

    def cached(self, key, make):
        """A scratch buffer this layout keeps for ``key`` (``make()`` builds it once): the
        same memory every step, so nothing is allocated in steady state."""
        buf = self._selects.get(("cached", key))
        if buf is None:
            buf = self._selects[("cached", key)] = make()
        return buf

    def release(self):
        """Forget the homes of the parameters that still point here (a new layout replaces
        this one)."""
        for p, home in zip(self.params, self.homes):
            if getattr(p, "_home", None) is home:
                p._home = None
