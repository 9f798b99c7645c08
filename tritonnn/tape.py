"""The autograd tape: nodes recorded by ops, and the reverse walk that computes gradients.

An op that has an input requiring grad records one ``Node``: its name, its
backward rule (a closure over exactly the buffers it saved) and, per input,
where that input's gradient goes next (the input's own node, the leaf tensor
itself, or None). ``backward`` walks the nodes reachable from the loss in
reverse topological order with an explicit stack (no recursion), hands each
node the sum of its output's gradients, and drops every node's rule and saved
buffers as soon as it has run, unless ``retain_graph``.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .errors import DeviceError, ShapeError, TritonnnError


class _GradMode:
    enabled = True
    retaining = False   # the current backward walk keeps its graph (no in-place tricks then)


def is_grad_enabled() -> bool:
    return _GradMode.enabled


class no_grad:
    """Context manager (and decorator) under which ops record nothing."""

    def __enter__(self):
        self._prev = _GradMode.enabled
        _GradMode.enabled = False
        return self

    def __exit__(self, *exc):
        _GradMode.enabled = self._prev
        return False

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with no_grad():
                return fn(*args, **kwargs)
        return wrapper


class Node:
    """One recorded op: ``backward(grad_out) -> tuple of input gradients (or None)``.

    ``saved`` pairs the version box of each tensor whose buffer the rule reads with
    its version at forward time, so a later in-place write is caught, not used.
    """

    __slots__ = ("name", "backward", "next", "saved", "__weakref__")

    def __init__(self, name, backward, next_, saved=()):
        self.name = name
        self.backward = backward
        self.next = next_
        self.saved = saved

    def __repr__(self):
        return f"<Node {self.name}>"


class Gradients(Mapping):
    """Gradients of one backward walk, keyed by tensor (``g[w]``, the seed's ``grads.get(&w)``)."""

    def __init__(self):
        self._by_id = {}    # id(tensor) -> (tensor, gradient tensor)

    def _put(self, t, g):
        self._by_id[id(t)] = (t, g)

    def __getitem__(self, t):
        try:
            return self._by_id[id(t)][1]
        except KeyError:
            raise KeyError(f"Gradients: no gradient for tensor of shape {tuple(t.shape)}; "
                           f"it does not require grad or the loss does not depend on it") from None

    def get(self, t, default=None):
        entry = self._by_id.get(id(t))
        return default if entry is None else entry[1]

    def __contains__(self, t):
        return id(t) in self._by_id

    def __iter__(self):
        return (t for t, _ in self._by_id.values())

    def __len__(self):
        return len(self._by_id)

    def __repr__(self):
        return f"Gradients({len(self)} tensors)"


def _freed_error(node):
    return TritonnnError(
        f"backward: the graph through '{node.name}' was already walked and its saved buffers "
        f"freed; pass retain_graph=True to the first backward() or tn.grad() to walk it again")


def _reachable(root):
    """Nodes reachable from ``root`` and, for each, how many reachable nodes feed it a gradient."""
    consumers = {root: 0}
    stack = [root]
    while stack:
        node = stack.pop()
        if node.backward is _freed:
            raise _freed_error(node)
        for nxt in node.next:
            if type(nxt) is Node:
                if nxt in consumers:
                    consumers[nxt] += 1
                else:
                    consumers[nxt] = 1
                    stack.append(nxt)
    return consumers


def _add(a, b):
    """a + b for two gradient buffers on one device (a may be None)."""
    if a is None:
        return b
    return backend_of_buffer(a).binary(a, b, "add")


def backend_of_buffer(buf):
    from . import fallback_cpu
    if isinstance(buf, np.ndarray):
        return fallback_cpu
    from . import kernels
    return kernels


def _walk(root_node, grad, consumers, retain_graph, keep, kept, to_leaf):
    """The reverse walk: each node runs once all its consumers have handed it their gradient."""
    pending = {root_node: grad}
    ready = [root_node]
    while ready:
        node = ready.pop()
        g = pending.pop(node, None)
        nexts = node.next
        if node in keep:
            kept[node] = g
        for box, version in node.saved:
            if box[0] != version:
                raise TritonnnError(
                    f"backward: a tensor that '{node.name}' saved for its gradient was modified "
                    f"in place after the forward (version {version}, now {box[0]}); compute "
                    f"the loss again after changing it, or change a copy")
        in_grads = node.backward(g) if g is not None else (None,) * len(nexts)
        if not retain_graph:
            node.backward = _freed
            node.next = ()
        for nxt, gi in zip(nexts, in_grads):
            if nxt is None:
                continue
            if type(nxt) is Node:
                if gi is not None:
                    pending[nxt] = _add(pending.get(nxt), gi)
                consumers[nxt] -= 1
                if consumers[nxt] == 0:
                    ready.append(nxt)
            elif gi is not None:
                to_leaf(nxt, gi)


def run_backward(root, grad, retain_graph, wanted=None):
    """Walk back from tensor ``root`` seeded with buffer ``grad``.

    ``wanted`` None: accumulate into leaves' ``.grad`` and return a Gradients of
    every leaf reached. Otherwise a list of tensors whose gradients to return
    (leaves or not); ``.grad`` is left alone.
    """
    from .tensor import Tensor
    leaf_grads = {}                       # id(leaf) -> [leaf, buffer]
    keep = {}                             # node -> tensor, for non-leaf wanted tensors
    kept = {}
    if wanted is not None:
        for t in wanted:
            if t._node is not None:
                keep[t._node] = t

    def to_leaf(leaf, g):
        slot = leaf_grads.get(id(leaf))
        if slot is None:
            leaf_grads[id(leaf)] = [leaf, g]
        else:
            slot[1] = _add(slot[1], g)

    root_node = root._node
    if root_node is None:
        to_leaf(root, grad)
    else:
        consumers = _reachable(root_node)
        _GradMode.retaining = bool(retain_graph)
        try:
            _walk(root_node, grad, consumers, retain_graph, keep, kept, to_leaf)
        finally:
            _GradMode.retaining = False

    # a backward rule may pass one buffer to several inputs (add), or the caller's own seed
    # through: every gradient handed out gets its own buffer, so none aliases another
    handed = {id(grad)}

    def as_tensor(like, buf):
        B = like._backend
        buf = B.contiguous(buf)
        if id(buf) in handed:
            buf = B.cast(buf, like.dtype)          # a private copy
        handed.add(id(buf))
        return Tensor._make(buf, like.dtype, like.device, B)

    if wanted is not None:
        out = []
        for t in wanted:
            if t._node is not None:
                buf = kept.get(t._node)
            else:
                slot = leaf_grads.get(id(t))
                buf = None if slot is None else slot[1]
            out.append(None if buf is None else as_tensor(t, buf))
        return tuple(out)

    grads = Gradients()
    for leaf, buf in leaf_grads.values():
        gt = as_tensor(leaf, buf)
        grads._put(leaf, gt)
        if leaf.grad is None:
            leaf.grad = gt
        else:
            leaf.grad = Tensor._make(_add(leaf.grad._data, gt._data),
                                     leaf.dtype, leaf.device, leaf._backend)
    return grads


def _freed(_grad):
    raise TritonnnError("backward: this node's graph was freed")


def seed_gradient(t, gradient, op):
    """The buffer that starts a backward walk from ``t``: ones for a scalar, else ``gradient``."""
    from .tensor import Tensor
    if not t.requires_grad:
        raise TritonnnError(f"{op}: the tensor of shape {t.shape} does not require grad and "
                            f"has no graph (call requires_grad_() on a leaf it depends on)")
    if t._node is not None and t._node.backward is _freed:
        raise _freed_error(t._node)
    if gradient is None:
        if t.numel() != 1:
            raise ShapeError(f"{op}: gradient can be implicitly created only for a scalar "
                             f"output, got shape {t.shape}; pass gradient= of that shape")
        return t._backend.full(t.shape, 1, t.dtype)
    if not isinstance(gradient, Tensor):
        raise TritonnnError(f"{op}: gradient must be a tensor, got {type(gradient).__name__}")
    if gradient.shape != t.shape:
        raise ShapeError(f"{op}: gradient shape {gradient.shape} does not match output shape {t.shape}")
    if gradient.device != t.device:
        raise DeviceError(f"{op}: gradient on {gradient.device}, output on {t.device}")
    return gradient.to(t.dtype)._data


def grad(outputs, inputs, grad_outputs=None, retain_graph=False):
    """Gradients of ``outputs`` with respect to each of ``inputs``, as a tuple; ``.grad`` untouched."""
    from .tensor import Tensor
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    for t in inputs:
        if not isinstance(t, Tensor) or not t.requires_grad:
            raise TritonnnError("grad: every input must be a tensor that requires grad")
    seed = seed_gradient(outputs, grad_outputs, "grad")
    return run_backward(outputs, seed, retain_graph, wanted=inputs)
