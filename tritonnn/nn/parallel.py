"""``DistributedDataParallel``: one model replicated on every rank, gradients averaged.

Each rank runs the same model on its own share of the batch; after each ``backward()`` the
gradients are averaged across the ranks, so every rank takes the same optimizer step and the
replicas stay identical (bit for bit: every rank gets the same reduced bytes).

How the averaging runs. The parameters are cut into buckets of about ``bucket_cap_mb``
(in reverse order of ``parameters()``, roughly the order in which backward finishes them; a
bucket is closed once it reaches the cap; one dtype and device per bucket). A bucket is all-reduced with one collective (``mean``):
straight on the optimizer's flat gradient buffer when its parameters are neighbours there
(``tritonnn.flat``: the usual case once the optimizer has taken a step, no copy), else
packed into one buffer and copied back. When the walk writes gradients into the flat buffer,
a bucket starts as soon as its last gradient is complete (``tape.observe``), in bucket
order on every rank, so communication overlaps the rest of the backward; the others start
when ``backward()`` returns, and every one is finished before it returns.

A parameter that got no gradient on a rank (not used by its forward) counts as a zero
gradient there, and every parameter has the averaged gradient afterwards, so all ranks
step alike. Only a backward that follows a forward through the wrapper (outside
``no_sync()``) averages, as in PyTorch.

``state_dict()`` keys carry the ``module.`` prefix, as PyTorch's DDP (files swap with
PyTorch DDP checkpoints); ``Module.load_state_dict`` matches the prefix either way, so the
wrapper loads its model's state dict and the model the wrapper's.
"""
from __future__ import annotations

import contextlib
import hashlib

from .. import distributed as _dist
from ..checks import shown
from ..errors import DistributedError, DTypeError, TritonnnError
from ..flat import home_of
from ..tape import is_grad_enabled, no_grad, observe
from ..tensor import Tensor
from .modules import Module


class DistributedDataParallel(Module):
    """Wrap ``module`` for data-parallel training on every rank of the ``tn.distributed`` job.

    Construction broadcasts rank 0's parameters and buffers, after checking that every rank
    has the same parameters (names, shapes, dtypes): a mismatch is a ``DistributedError``
    naming the first difference. ``bucket_cap_mb``: the gradient megabytes at which a bucket (one
    all-reduce) is closed. ``broadcast_buffers``: rank 0's buffers are sent to every rank before each
    forward. ``device_ids``, ``output_device``, ``find_unused_parameters``,
    ``gradient_as_bucket_view`` and ``static_graph`` are accepted for scripts written for
    PyTorch (the model's own device is used; unused parameters are always handled).

    ``overlapped``: how many buckets the last backward started while it was still walking
    (the rest started when it returned).
    """

    def __init__(self, module, device_ids=None, output_device=None, dim=0,
                 broadcast_buffers=True, bucket_cap_mb=25.0, find_unused_parameters=False,
                 gradient_as_bucket_view=False, static_graph=False):
        op = "DistributedDataParallel"
        super().__init__()
        if not isinstance(module, Module):
            raise DTypeError(f"{op}: expected a tn.nn.Module to wrap, got "
                             f"{type(module).__name__}")
        if dim != 0:
            raise TritonnnError(f"{op}: dim must be 0 (batches split on their first dim), "
                                f"got {shown(dim)}")
        if isinstance(bucket_cap_mb, bool) or not isinstance(bucket_cap_mb, (int, float)) \
                or not bucket_cap_mb > 0:
            raise TritonnnError(f"{op}: bucket_cap_mb must be a number > 0, got "
                                f"{shown(bucket_cap_mb)}")
        if not _dist.is_initialized():
            raise DistributedError(f"{op}: tn.distributed is not initialized; call "
                                   f"tn.distributed.init() first (under torchrun)")
        self.module = module
        object.__setattr__(self, "broadcast_buffers", bool(broadcast_buffers))
        object.__setattr__(self, "bucket_cap_mb", float(bucket_cap_mb))
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        object.__setattr__(self, "_named", named)
        object.__setattr__(self, "_sync", True)
        object.__setattr__(self, "_armed", False)
        object.__setattr__(self, "overlapped", 0)
        # as PyTorch's wrapper, the buffers it keeps in step are the ones there now
        object.__setattr__(self, "_has_buffers", any(True for _ in module.buffers()))
        object.__setattr__(self, "_views", {})
        self._check_same_model()
        self._broadcast_state()
        self._make_buckets()
        observe(self)

    # -- construction ------------------------------------------------------------------------
    def _check_same_model(self):
        """Every rank wraps a model with the same parameters, or every rank raises."""
        sig = [(n, tuple(p.shape), str(p.dtype), p.device.type) for n, p in self._named]
        sig += [("buffer " + n, tuple(b.shape), str(b.dtype), b.device.type)
                for n, b in self.module.named_buffers()]
        digest = hashlib.blake2b(repr(sig).encode(), digest_size=8).digest()
        mine = [len(sig), int.from_bytes(digest, "little", signed=True)]
        op = "DistributedDataParallel"
        c = _dist._c(op)
        rows = _dist._run(op, c.all_gather_int64, mine)
        if all(list(r) == mine for r in rows):
            return
        sigs = _dist._run(op, c.all_gather_object, sig)
        raise DistributedError("DistributedDataParallel: the ranks wrap different models: "
                               + _first_difference(sigs))

    def _broadcast_state(self):
        with no_grad():
            for _, t in list(self._named) + list(self.module.named_buffers()):
                _dist.broadcast_buffer(t._data, t._backend, 0, async_op=False,
                                       name="DistributedDataParallel")
                t._version[0] += 1

    def _make_buckets(self):
        """Parameters in reverse order, a bucket closed once it holds ``bucket_cap_mb`` (so
        a small tensor joins its neighbours rather than costing a collective of its own)."""
        cap = self.bucket_cap_mb * (1 << 20)
        buckets, size, key = [], 0, None
        for i in reversed(range(len(self._named))):
            p = self._named[i][1]
            k = (p.device, p.dtype)
            if not buckets or k != key or size >= cap:
                buckets.append([])
                size, key = 0, k
            buckets[-1].append(i)
            size += p.numel() * p.dtype.itemsize
        object.__setattr__(self, "_buckets", buckets)
        object.__setattr__(self, "_bucket_of", {id(self._named[i][1]): b
                                                for b, members in enumerate(buckets)
                                                for i in members})

    # -- forward -------------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        if self.broadcast_buffers and self._has_buffers:
            bufs = list(self.module.buffers())
            if bufs and _dist.world_size() > 1:
                with no_grad():
                    for b in bufs:
                        _dist.broadcast_buffer(b._data, b._backend, 0, async_op=False,
                                               name="DistributedDataParallel.forward")
                        b._version[0] += 1
        if self._sync and is_grad_enabled():
            self._arm()
        return self.module(*args, **kwargs)

    @contextlib.contextmanager
    def no_sync(self):
        """Forwards inside skip the averaging of their backward: gradients add up locally
        (accumulation); the first backward after a forward outside averages the sum."""
        prev = self._sync
        object.__setattr__(self, "_sync", False)
        try:
            yield
        finally:
            object.__setattr__(self, "_sync", prev)

    # -- the averaging ---------------------------------------------------------------------
    def _arm(self):
        object.__setattr__(self, "_armed", True)
        object.__setattr__(self, "_ready", [len(m) for m in self._buckets])
        object.__setattr__(self, "_handles", [None] * len(self._buckets))
        object.__setattr__(self, "_next", 0)
        object.__setattr__(self, "overlapped", 0)

    def leaf_ready(self, leaf):
        """The walk finished ``leaf``'s gradient in its flat home (``tape.observe``)."""
        if not self._armed:
            return
        b = self._bucket_of.get(id(leaf))
        if b is None:
            return
        self._ready[b] -= 1
        # start the buckets that are complete, in bucket order (every rank issues the same
        # collectives in the same order); a bucket that needs packing waits for the end
        while self._next < len(self._buckets) and self._ready[self._next] == 0:
            view = self._flat_view(self._next, walking=True)
            if view is None:
                return
            self._start(self._next, view)
            object.__setattr__(self, "overlapped", self.overlapped + 1)

    def backward_done(self):
        """``backward()`` set every ``.grad``: start what is left, wait for every bucket."""
        if not self._armed:
            return
        object.__setattr__(self, "_armed", False)
        for b in range(self._next, len(self._buckets)):
            for i in self._buckets[b]:
                self._zero_if_missing(self._named[i][1])
            view = self._flat_view(b, walking=False)
            self._start(b, view if view is not None else self._pack(b))
        for b, handle in enumerate(self._handles):
            handle.wait()
            self._handles[b] = None

    def _start(self, b, view):
        buf, B, dtype, unpack = view
        self._handles[b] = _dist.reduce_buffer(
            buf, B, dtype, "mean", async_op=True, then=unpack,
            name="DistributedDataParallel (gradient all-reduce)")
        object.__setattr__(self, "_next", b + 1)

    def _flat_view(self, b, walking):
        """Bucket ``b``'s gradients as one slice of a flat gradient buffer, when its
        parameters are neighbours there and (after the walk) their ``.grad`` is that home;
        ``(buffer, backend, dtype, None)``, else None."""
        members = self._buckets[b]
        homes = []
        for i in members:
            p = self._named[i][1]
            home = home_of(p)
            if home is None or (not walking and (p._grad is None or p._grad._data is not
                                                 home.grad)):
                return None
            homes.append(home)
        cached = self._views.get(b)
        if cached is not None and all(a is h for a, h in zip(cached[0], homes)):
            return cached[1]            # the same homes as last time: the same slice
        view = self._slice_of(homes)
        self._views[b] = (homes, view)
        return view

    @staticmethod
    def _slice_of(homes):
        """The flat gradient slice that holds exactly ``homes``' gradients, or None."""
        flat = homes[0].flat
        idx = sorted(h.index for h in homes)
        if any(h.flat is not flat for h in homes) or idx[-1] - idx[0] != len(idx) - 1:
            return None
        lo = flat.offsets[idx[0]]
        hi = flat.offsets[idx[-1]] + flat.params[idx[-1]].numel()
        B = flat.backend
        return B.getitem(flat.grad, slice(lo, hi)), B, flat.dtype, None

    def _pack(self, b):
        """Bucket ``b``'s gradients copied into one buffer, and how to copy them back."""
        params = [self._named[i][1] for i in self._buckets[b]]
        B = params[0]._backend
        grads = [p._grad._data for p in params]
        packed = B.cat([B.reshape(B.contiguous(g), (-1,)) for g in grads], 0)

        def unpack():
            off = 0
            for p, g in zip(params, grads):
                n = p.numel()
                B.copy_(g, B.reshape(B.getitem(packed, slice(off, off + n)), p.shape))
                p._version[0] += 1
                off += n
        return packed, B, params[0].dtype, unpack

    @staticmethod
    def _zero_if_missing(p):
        """A parameter without a gradient on this rank takes part with zeros."""
        if p._grad is not None:
            return
        home = home_of(p)
        B = p._backend
        if home is not None:
            B.setitem(home.flat.grad, (slice(home.flat.offsets[home.index],
                                              home.flat.offsets[home.index] + p.numel()),), 0)
            p._grad = home.flat.grad_tensor(home.index)
        else:
            p._grad = Tensor._make(B.full(p.shape, 0, p.dtype), p.dtype, p.device, B)

    # -- state ---------------------------------------------------------------------------------
    def extra_repr(self):
        return (f"world_size={_dist.world_size()}, buckets={len(self._buckets)}, "
                f"bucket_cap_mb={self.bucket_cap_mb:g}")


def _first_difference(sigs):
    """The first parameter in which some rank's model differs from rank 0's, in words."""
    base = sigs[0]
    for r, sig in enumerate(sigs[1:], 1):
        if sig == base:
            continue
        for k in range(max(len(sig), len(base))):
            a = base[k] if k < len(base) else None
            o = sig[k] if k < len(sig) else None
            if a != o:
                def said(e):
                    return "nothing" if e is None else f"{e[0]!r} {e[1]} {e[2]} on {e[3]}"
                return (f"rank 0 has {said(a)} where rank {r} has {said(o)} "
                        f"(entry {k}; rank 0 has {len(base)} entries, rank {r} {len(sig)})")
    return "the ranks' parameter lists differ"


DDP = DistributedDataParallel

__all__ = ["DistributedDataParallel"]
