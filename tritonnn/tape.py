"""The autograd tape: the nodes ops record, and the reverse walk that turns them into gradients.

An op that has an input requiring grad records one ``Node``: the op's name and
backward rule (``RULES``, filled by ``@backward_rule`` in ``ops.py``), the
buffers the rule reads (``saved``), the op's other arguments (``attrs``) and,
per input, where that input's gradient goes next (the input's own node, the
leaf tensor itself, or None). The tape works on backend buffers and knows a
tensor only as ``TensorBase`` (``tensor.Tensor`` builds on it): ``walk``
returns the leaves' gradient buffers for ``tensor.py`` to wrap.

``walk`` visits the nodes reachable from the loss in reverse topological order
with an explicit stack (no recursion), hands each node the sum of its output's
gradients, and drops each node's saved buffers as soon as its rule has run,
unless the graph is retained. It also makes the tape's one in-place decision:
a node may name one saved buffer its rule can overwrite (``donate``, the fused
cross-entropy's logits); the walk grants it (``node.last_use``) only when the
graph is not retained and nothing else holds that buffer any more (no node
still to run saved it, no view of it, no tensor of the user's).
"""
from __future__ import annotations

import functools
import inspect
import threading
import weakref

from .errors import TritonnnError


class _GradMode(threading.local):
    """Whether ops record nodes: per thread (``tn.no_grad()`` in one thread leaves the others
    recording), on in every new thread."""

    enabled = True


grad_mode = _GradMode()


def is_grad_enabled() -> bool:
    return grad_mode.enabled


class no_grad:
    """Ops record nothing inside ``with tn.no_grad():``, or in a function decorated with
    ``@tn.no_grad()`` or ``@tn.no_grad`` (a generator function: each of its steps)."""

    def __new__(cls, fn=None):
        if fn is None:
            return super().__new__(cls)
        return cls()(fn)               # bare @tn.no_grad

    def __enter__(self):
        self._prev = grad_mode.enabled
        grad_mode.enabled = False
        return self

    def __exit__(self, *exc):
        grad_mode.enabled = self._prev
        return False

    def __call__(self, fn):
        if not callable(fn):
            raise TritonnnError(f"no_grad: expected a function to decorate, got "
                                f"{type(fn).__name__}")
        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def generator(*args, **kwargs):
                # every step of the generator runs without recording, the caller's code
                # between steps with its own grad mode
                gen = fn(*args, **kwargs)
                try:
                    with no_grad():
                        item = gen.send(None)
                    while True:
                        try:
                            sent = yield item
                        except GeneratorExit:
                            with no_grad():
                                gen.close()
                            raise
                        except BaseException as e:
                            with no_grad():
                                item = gen.throw(e)
                        else:
                            with no_grad():
                                item = gen.send(sent)
                except StopIteration as stop:
                    return stop.value
            return generator

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with no_grad():
                return fn(*args, **kwargs)
        return wrapper


# ----------------------------------------------------------------------------------------------
# what the tape and the op table know of a tensor
# ----------------------------------------------------------------------------------------------


class TensorBase:
    """A buffer on a device and its place on the tape: the part of a tensor the op table uses.

    ``tensor.Tensor`` subclasses it with the user API and defines ``_new``, which
    ops call on an operand to wrap a result buffer in a tensor on the same device.
    ``_version`` is a list shared by every tensor showing the same memory (views,
    ``detach()``, a ``Parameter`` made from a tensor): ``[0]`` counts in-place writes,
    and the walk refuses to run a rule whose saved inputs changed since the
    forward; ``[1]``, once a view exists, holds the tensors related by views, weakly
    (``ops._view``). ``_home``, set only on a parameter an optimizer keeps in flat storage
    (``tritonnn.flat``): where its values and its gradient live (``home.data``,
    ``home.grad``); unset on every other tensor (read it with ``getattr(t, "_home", None)``).
    """

    __slots__ = ("_data", "dtype", "device", "requires_grad", "_grad", "_node", "_backend",
                 "_version", "_home", "__weakref__")

    def _new(self, buf, dtype):
        """A new tensor holding ``buf`` (of ``dtype``) on this tensor's device."""
        raise NotImplementedError

    @property
    def shape(self) -> tuple:
        return tuple(self._data.shape)

    @property
    def ndim(self) -> int:
        return len(self._data.shape)

    def numel(self) -> int:
        n = 1
        for s in self._data.shape:
            n *= s
        return n


# ----------------------------------------------------------------------------------------------
# nodes and backward rules
# ----------------------------------------------------------------------------------------------

RULES: dict = {}
"""op name -> its backward rule ``rule(node, grad) -> tuple of input gradients (or None)``."""

TAKES_IMPLICIT_ONES: set = set()
"""The ops whose rule accepts an ``ImplicitOnes`` gradient (the losses: they fold it in)."""


def backward_rule(*names, implicit_ones=False):
    """Register the decorated function as the backward rule of the ops ``names``; with
    ``implicit_ones`` the rule, run first in a walk from ``loss.backward()``, gets the
    ``ImplicitOnes`` seed itself instead of a buffer of ones."""
    def register(fn):
        for name in names:
            if name in RULES:
                raise TritonnnError(f"backward rule for op '{name}' defined twice")
            RULES[name] = fn
            if implicit_ones:
                TAKES_IMPLICIT_ONES.add(name)
        return fn
    return register


class ImplicitOnes:
    """The gradient 1 that ``loss.backward()`` seeds a one-element loss with, not yet a buffer.

    A loss's rule that knows it (``backward_rule(..., implicit_ones=True)``) folds the 1
    into its kernel: the walk then needs no launch to fill a buffer of ones. Anywhere else
    the walk turns it into that buffer first (``materialize``).
    """

    __slots__ = ("shape", "dtype")

    def __init__(self, shape, dtype):
        self.shape, self.dtype = shape, dtype

    def materialize(self, backend):
        return backend.full(self.shape, 1, self.dtype)


class Node:
    """One recorded op ``name`` and its backward rule ``rule`` (looked up in ``RULES``).

    ``backend``: the module that runs the rule's math. ``next``: per input, the
    node that produced it, the leaf tensor, or None (no gradient wanted).
    ``saved``: the buffers the rule reads. ``versions``: the version box of each
    tensor whose buffer is saved, with its version at forward time, so an
    in-place write in between is an error, not a wrong gradient. ``attrs``:
    whatever else the rule needs (shapes, dims, flags). ``donate``: the index in
    ``saved`` of a buffer the rule may overwrite on its last use, and
    ``last_use`` whether the walk granted that. ``into``: while the rule runs, None or
    per input the buffer its gradient should be written into (a parameter's gradient
    home, ``walk``'s ``homes``), or None; a rule may ignore it.
    """

    __slots__ = ("name", "rule", "next", "saved", "versions", "attrs", "backend", "donate",
                 "last_use", "into", "__weakref__")

    def __init__(self, name, next_, backend, saved=(), versions=(), attrs=None, donate=None):
        try:
            self.rule = RULES[name]
        except KeyError:
            raise TritonnnError(f"{name}: this op has no backward rule; it can't take part in "
                                f"autograd (compute it under tn.no_grad() or on detached "
                                f"tensors)") from None
        self.name = name
        self.next = next_
        self.backend = backend
        self.saved = saved
        self.versions = versions
        self.attrs = attrs
        self.donate = donate
        self.last_use = False
        self.into = None

    def needs(self, i) -> bool:
        """Whether input ``i`` wants a gradient."""
        return self.next[i] is not None

    def __repr__(self):
        return f"<Node {self.name}>"


def _freed(node, g):
    """The rule of a node whose graph was walked and freed (the walk checks for it first)."""
    raise freed_error(node)


def freed_error(node):
    return TritonnnError(
        f"backward: the graph through '{node.name}' was already walked and its saved buffers "
        f"freed; pass retain_graph=True to the first backward() or tn.grad() to walk it again")


def is_freed(node) -> bool:
    return node.rule is _freed


# ----------------------------------------------------------------------------------------------
# the reverse walk
# ----------------------------------------------------------------------------------------------


def _reachable(root, leaves=None):
    """Nodes reachable from ``root`` and, for each, how many reachable nodes feed it a gradient;
    with a dict ``leaves``, also how many edges reach each leaf (by id)."""
    consumers = {root: 0}
    stack = [root]
    while stack:
        node = stack.pop()
        if node.rule is _freed:
            raise freed_error(node)
        for nxt in node.next:
            if type(nxt) is Node:
                if nxt in consumers:
                    consumers[nxt] += 1
                else:
                    consumers[nxt] = 1
                    stack.append(nxt)
            elif nxt is not None and leaves is not None:
                leaves[id(nxt)] = leaves.get(id(nxt), 0) + 1
    return consumers


# ----------------------------------------------------------------------------------------------
# observers of backward(): data parallelism starts its all-reduces while the walk goes on
# ----------------------------------------------------------------------------------------------

_observers: list = []
"""Weak references to the objects told about every ``backward()`` walk (``observe``)."""


def observe(obj):
    """Tell ``obj`` about every ``backward()`` (not ``tn.grad``), for as long as it lives:
    ``obj.leaf_ready(leaf)`` as soon as a leaf's gradient is complete in its gradient home
    (flat storage; the rest of the walk writes elsewhere), and ``obj.backward_done()`` once
    every ``.grad`` is set."""
    _observers.append(weakref.ref(obj))


def observers() -> list:
    """The live observers (dead references dropped)."""
    if not _observers:
        return []
    live = [r() for r in _observers]
    if any(o is None for o in live):
        _observers[:] = [r for r, o in zip(_observers, live) if o is not None]
    return [o for o in live if o is not None]


def _check_versions(node):
    for box, version in node.versions:
        if box[0] != version:
            raise TritonnnError(
                f"backward: a tensor that '{node.name}' saved for its gradient was modified "
                f"in place after the forward (version {version}, now {box[0]}); compute "
                f"the loss again after changing it, or change a copy")


def _sum(B, a, b):
    """a + b for two gradient buffers of backend B (a may be None)."""
    return b if a is None else B.binary(a, b, "add")



def _destinations(nexts, reached):
    """Per input of a node, the gradient home its gradient may be written into, or None for
    all: a leaf's home when the leaf still lives there, has no ``.grad`` yet and has had no
    gradient from this walk (``reached``); a leaf that is two inputs at once gets it once."""
    into = None
    for i, nxt in enumerate(nexts):
        if nxt is None or type(nxt) is Node:
            continue
        home = getattr(nxt, "_home", None)
        if home is None or nxt._grad is not None or home.data is not nxt._data \
                or id(nxt) in reached:
            continue
        if into is None:
            into = [None] * len(nexts)
        elif any(b is home.grad for b in into):
            continue
        into[i] = home.grad
    return into


def walk(root, seed, retain_graph=False, keep=(), homes=False):
    """Walk back from node ``root`` seeded with the gradient buffer ``seed``.

    ``seed`` may be an ``ImplicitOnes`` (``loss.backward()``): only a root whose rule takes
    it gets it as is. Returns ``(leaf_grads, kept)``: ``leaf_grads`` maps ``id(leaf)`` to
    ``[leaf, gradient buffer]`` for every leaf reached; ``kept`` maps each node
    of ``keep`` (non-leaf tensors whose gradient is wanted) to its gradient
    buffer. Unless ``retain_graph``, every walked node is freed.

    With ``homes`` (``backward()``, which fills ``.grad``), a leaf with a gradient home
    (``TensorBase._home``, flat storage an optimizer keeps) and no ``.grad`` gets its
    gradient written straight there: the rule that produces it is offered the home
    (``node.into``), and later contributions are added into it in place. Its entry in
    ``leaf_grads`` is then the home itself.
    """
    watchers = observers() if homes else ()
    leaf_edges = {} if watchers else None
    consumers = _reachable(root, leaf_edges)
    leaf_grads = {}
    in_home = set()         # ids of the leaves whose gradient is being summed in their home
    kept = {}
    if type(seed) is ImplicitOnes and (root.name not in TAKES_IMPLICIT_ONES or root in keep):
        seed = seed.materialize(root.backend)
    pending = {root: seed}
    ready = [root]
    while ready:
        node = ready.pop()
        g = pending.pop(node, None)
        nexts = node.next
        B = node.backend
        if node in keep:
            kept[node] = g
        _check_versions(node)
        into = None
        if g is None:
            in_grads = (None,) * len(nexts)
        else:
            node.last_use = (node.donate is not None and not retain_graph
                             and B.exclusively_owned(node.saved[node.donate], 1))
            if homes:
                into = node.into = _destinations(nexts, leaf_grads)
            in_grads = node.rule(node, g)
            node.into = None
        if not retain_graph:
            node.rule = _freed
            node.next = node.saved = node.attrs = ()
        for i, (nxt, gi) in enumerate(zip(nexts, in_grads)):
            if nxt is None:
                continue
            if type(nxt) is Node:
                if gi is not None:
                    # a gradient lives where its input does (``.to(device)`` changes backend)
                    pending[nxt] = _sum(nxt.backend, pending.get(nxt), gi)
                consumers[nxt] -= 1
                if consumers[nxt] == 0:
                    ready.append(nxt)
            elif gi is not None:
                slot = leaf_grads.get(id(nxt))
                if slot is None:
                    home = into[i] if into is not None else None
                    if home is not None and gi is not home:
                        nxt._backend.copy_(home, gi)        # the rule did not write it there
                        gi = home
                    if home is not None:
                        in_home.add(id(nxt))
                    leaf_grads[id(nxt)] = [nxt, gi]
                elif id(nxt) in in_home:
                    nxt._backend.accumulate_(slot[1], gi)
                else:
                    slot[1] = _sum(nxt._backend, slot[1], gi)
            if leaf_edges is not None and type(nxt) is not Node:
                left = leaf_edges[id(nxt)] = leaf_edges[id(nxt)] - 1
                if left == 0 and id(nxt) in in_home:
                    for w in watchers:
                        w.leaf_ready(nxt)
    return leaf_grads, kept
