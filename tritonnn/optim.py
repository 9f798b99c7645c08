"""Optimizers: SGD and AdamW with PyTorch's semantics, updating parameters in place.

Each step is one fused backend call per parameter (``sgd_step``/``adamw_step``),
numpy on "cpu" and a Triton kernel on "cuda".
"""
from __future__ import annotations

from collections.abc import Iterable

from .checks import number
from .errors import DTypeError, TritonnnError
from .tensor import Tensor, empty, zeros_like


class Optimizer:
    """Holds the parameters and per-parameter state; ``zero_grad``, ``step``, ``backward_step``."""

    def __init__(self, params, name):
        if isinstance(params, Tensor):
            raise DTypeError(f"{name}: params must be an iterable of tensors, not a single tensor "
                             f"(pass [t])")
        if not isinstance(params, Iterable):
            raise DTypeError(f"{name}: params must be an iterable of tensors (such as "
                             f"model.parameters()), got {type(params).__name__}")
        self.params = list(params)
        if not self.params:
            raise TritonnnError(f"{name}: got an empty parameter list")
        for i, p in enumerate(self.params):
            if not isinstance(p, Tensor):
                raise DTypeError(f"{name}: parameter {i} is {type(p).__name__}, not a tensor")
            if not p.dtype.is_floating:
                raise DTypeError(f"{name}: parameter {i} has dtype {p.dtype}; only floating-point "
                                 f"tensors can be optimized")
            if not p.is_leaf:
                raise TritonnnError(f"{name}: parameter {i} is not a leaf tensor")
        if len({id(p) for p in self.params}) != len(self.params):
            raise TritonnnError(f"{name}: a parameter appears more than once")
        self.state = {}

    def zero_grad(self, set_to_none=True):
        """Drop the gradients (the default, as torch), or fill them with zeros."""
        for p in self.params:
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad = Tensor._make(p._backend.full(p.shape, 0, p.dtype), p.dtype, p.device,
                                      p._backend)

    def backward_step(self, loss):
        """Zero the gradients, backpropagate ``loss`` and take one step (the seed's backward_step)."""
        self.zero_grad()
        loss.backward()
        self.step()

    def _follow(self, p, t):
        """State tensor ``t`` of parameter ``p`` on ``p``'s device and dtype: state follows
        its parameter through ``model.to(...)`` after the first step."""
        if t._backend is not p._backend or t.dtype is not p.dtype:
            t = t.to(p.device, p.dtype)
        return t

    def _grads(self):
        for p in self.params:
            g = p.grad
            if g is None:
                continue
            if g.device != p.device or g.dtype is not p.dtype or g.shape != p.shape:
                raise TritonnnError(f"{type(self).__name__}.step: gradient {g.shape} {g.dtype} on "
                                    f"{g.device} does not match its parameter {p.shape} {p.dtype} "
                                    f"on {p.device}")
            yield p, g


def _check(name, value, what, low=None, high=None, high_open=False):
    """A hyper-parameter as a float: a number (else a DTypeError), in range (else a
    TritonnnError naming it); NaN is never in range."""
    value = number(name, value, what)
    ok = (low is None or value >= low) and \
        (high is None or (value < high if high_open else value <= high))
    if not ok or value != value:
        raise TritonnnError(f"{name}: invalid {what} {value}")
    return value


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, dampening, Nesterov and weight decay."""

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        lr = _check("SGD", lr, "learning rate", 0.0)
        momentum = _check("SGD", momentum, "momentum", 0.0)
        dampening = _check("SGD", dampening, "dampening")
        weight_decay = _check("SGD", weight_decay, "weight_decay", 0.0)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise TritonnnError("SGD: nesterov momentum needs momentum > 0 and dampening 0")
        super().__init__(params, "SGD")
        self.lr, self.momentum, self.dampening = lr, momentum, dampening
        self.weight_decay, self.nesterov = weight_decay, bool(nesterov)

    def step(self):
        for p, g in self._grads():
            buf = self.state.get(id(p))            # the momentum buffer, a tensor
            first = buf is None
            if self.momentum:
                buf = empty(*p.shape, dtype=p.dtype, device=p.device) if first else \
                    self._follow(p, buf)
                self.state[id(p)] = buf
            p._backend.sgd_step(p._data, g._data, buf._data if self.momentum else None, self.lr,
                                self.momentum, self.weight_decay, self.dampening, self.nesterov,
                                first)
            p._version[0] += 1


class AdamW(Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter), PyTorch's defaults."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        lr = _check("AdamW", lr, "learning rate", 0.0)
        eps = _check("AdamW", eps, "eps", 0.0)
        weight_decay = _check("AdamW", weight_decay, "weight_decay", 0.0)
        if not isinstance(betas, (tuple, list)):
            raise DTypeError(f"AdamW: betas must be a pair of numbers, got {type(betas).__name__} "
                             f"{betas!r}")
        if len(betas) != 2:
            raise TritonnnError(f"AdamW: betas must be a pair of numbers, got {len(betas)}: "
                                f"{tuple(betas)}")
        beta1 = _check("AdamW", betas[0], "beta1", 0.0, 1.0, high_open=True)
        beta2 = _check("AdamW", betas[1], "beta2", 0.0, 1.0, high_open=True)
        super().__init__(params, "AdamW")
        self.lr, self.betas, self.eps = lr, (beta1, beta2), eps
        self.weight_decay = weight_decay

    def step(self):
        b1, b2 = self.betas
        for p, g in self._grads():
            st = self.state.get(id(p))             # [step, exp_avg, exp_avg_sq]
            if st is None:
                st = self.state[id(p)] = [0, zeros_like(p), zeros_like(p)]
            else:
                st[1], st[2] = self._follow(p, st[1]), self._follow(p, st[2])
            st[0] += 1
            p._backend.adamw_step(p._data, g._data, st[1]._data, st[2]._data, st[0], self.lr,
                                  b1, b2, self.eps, self.weight_decay)
            p._version[0] += 1
