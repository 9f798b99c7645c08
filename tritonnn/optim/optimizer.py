"""Optimizers: SGD, Adam and AdamW with PyTorch's semantics, updating parameters in place.

Parameters come as one list or as parameter groups (``[{"params": ..., "lr": ...}, ...]``),
each group a dict holding its parameters and every hyper-parameter, filled from the
optimizer's defaults; ``opt.param_groups`` is that list, and a change to ``group["lr"]``
(by the user or a scheduler) takes effect at the next step. Each step is one fused backend
call per parameter (``sgd_step``/``adamw_step``), numpy on "cpu" and a Triton kernel on
"cuda" that takes the hyper-parameters as float64 bits, so a new learning rate never
compiles a new kernel. ``state_dict()``/``load_state_dict()`` use PyTorch's layout.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

from ..checks import as_int, number, shown
from ..errors import DTypeError, ShapeError, TritonnnError
from ..tensor import Tensor, empty, tensor, zeros_like


def _check(name, value, what, low=None, high=None, high_open=False):
    """A hyper-parameter as a float: a number (else a DTypeError), in range (else a
    TritonnnError naming it); NaN is never in range."""
    value = number(name, value, what)
    ok = (low is None or value >= low) and \
        (high is None or (value < high if high_open else value <= high))
    if not ok or value != value:
        raise TritonnnError(f"{name}: invalid {what} {value}")
    return value


# ==============================================================================================
# the base class: parameter groups, state, state_dict
# ==============================================================================================


class Optimizer:
    """Parameter groups and per-parameter state; ``zero_grad``, ``step``, ``backward_step``,
    ``add_param_group``, ``state_dict``, ``load_state_dict``.

    Subclasses define ``_hyper(group, where)`` (the group's hyper-parameters checked and
    normalized, or an error naming ``where``), ``_export(state)``/``_import(p, entry, where)``
    (one parameter's state to and from PyTorch's layout) and ``step``.
    """

    def __init__(self, params, defaults):
        name = type(self).__name__
        if isinstance(params, Tensor):
            raise DTypeError(f"{name}: params must be an iterable of tensors, not a single tensor "
                             f"(pass [t])")
        if isinstance(params, (str, bytes, Mapping)) or not isinstance(params, Iterable):
            raise DTypeError(f"{name}: params must be an iterable of tensors (such as "
                             f"model.parameters()) or of parameter-group dicts, got "
                             f"{type(params).__name__}")
        self.defaults = self._hyper(defaults, name)
        self.state = {}                 # parameter -> its state (a dict, PyTorch's keys)
        self.param_groups = []
        params = list(params)
        if not params:
            raise TritonnnError(f"{name}: got an empty parameter list")
        if isinstance(params[0], Mapping):
            for k, group in enumerate(params):
                self._add(group, f"{name}: param group {k}")
        else:
            self._add({"params": params}, name)

    # -- groups --------------------------------------------------------------------------------
    def add_param_group(self, param_group):
        """Add a group (a dict with ``params`` and any hyper-parameters; the rest comes from
        the defaults), as PyTorch's: used to unfreeze layers while training."""
        self._add(param_group, f"{type(self).__name__}.add_param_group: param group "
                               f"{len(self.param_groups)}")

    def _add(self, group, where):
        if not isinstance(group, Mapping):
            raise DTypeError(f"{where} must be a dict with a 'params' entry, got "
                             f"{type(group).__name__} {shown(group)}")
        if "params" not in group:
            raise TritonnnError(f"{where} has no 'params' entry (keys: {sorted(map(str, group))})")
        params = group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise DTypeError(f"{where}: params must be an ordered collection (a list), not a "
                             f"set: its order, and so the state_dict's indices, would change "
                             f"between runs")
        elif isinstance(params, (str, bytes, Mapping)) or not isinstance(params, Iterable):
            raise DTypeError(f"{where}: params must be an iterable of tensors, got "
                             f"{type(params).__name__}")
        params = list(params)
        if not params:
            raise TritonnnError(f"{where}: got an empty parameter list")
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise DTypeError(f"{where}: parameter {i} is {type(p).__name__}, not a tensor")
            if not p.dtype.is_floating:
                raise DTypeError(f"{where}: parameter {i} has dtype {p.dtype}; only floating-point "
                                 f"tensors can be optimized")
            if not p.is_leaf:
                raise TritonnnError(f"{where}: parameter {i} is not a leaf tensor")
        ids = {id(p) for p in params}
        if len(ids) != len(params):
            raise TritonnnError(f"{where}: a parameter appears more than once")
        for k, other in enumerate(self.param_groups):
            if any(id(p) in ids for p in other["params"]):
                raise TritonnnError(f"{where}: a parameter is already in param group {k}; a "
                                    f"parameter may be in one group only")
        full = {**self.defaults, **{k: v for k, v in group.items() if k != "params"}}
        full.update(self._hyper(full, where))
        self.param_groups.append({"params": params, **full})

    # -- stepping ------------------------------------------------------------------------------
    def zero_grad(self, set_to_none=True):
        """Drop the gradients (the default, as torch), or fill them with zeros."""
        for group in self.param_groups:
            for p in group["params"]:
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

    def step(self):
        raise TritonnnError(f"{type(self).__name__}: step() is not implemented")

    def _refresh(self, group):
        """The group's hyper-parameters checked again (a value changed to a non-float since the
        last step, such as an int learning rate), written back as floats."""
        k = next(i for i, g in enumerate(self.param_groups) if g is group)
        group.update(self._hyper(group, f"{type(self).__name__}.step: param group {k}"))
        return group

    def _mismatch(self, p, g):
        return TritonnnError(f"{type(self).__name__}.step: gradient {g.shape} {g.dtype} on "
                             f"{g.device} does not match its parameter {p.shape} {p.dtype} on "
                             f"{p.device}")

    @staticmethod
    def _follow(p, t):
        """State tensor ``t`` of parameter ``p`` on ``p``'s device and dtype: state follows
        its parameter through ``model.to(...)`` after the first step."""
        if t._backend is not p._backend or t.dtype is not p.dtype:
            t = t.to(p.device, p.dtype)
        return t

    # -- state_dict ----------------------------------------------------------------------------
    def state_dict(self):
        """A snapshot in PyTorch's layout: ``{"state": {index: {...}}, "param_groups": [{...,
        "params": [indices]}]}``, parameters numbered across the groups in order.

        The state tensors are copies (a later step does not change a state dict already
        taken); the rest are plain numbers, bools, tuples and strings, what ``tn.save`` holds.
        """
        index, groups = {}, []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {index[id(p)]: self._export(st) for p, st in self.state.items() if id(p) in index}
        return {"state": dict(sorted(state.items())), "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Take the hyper-parameters and state of ``state_dict`` (this optimizer's or
        PyTorch's layout), matched to this optimizer's parameters by position.

        Every check runs before anything changes: the group count, each group's parameter
        count, every hyper-parameter, each state's keys, shapes and types. State tensors are
        copied onto their parameter's device and dtype.
        """
        name = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, Mapping):
            raise DTypeError(f"{name}: expected a mapping (what state_dict() returns), got "
                             f"{type(state_dict).__name__}")
        if set(state_dict) != {"state", "param_groups"}:
            raise TritonnnError(f"{name}: expected the keys 'state' and 'param_groups', got "
                                f"{sorted(map(repr, state_dict))}")
        saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
        if not isinstance(saved_groups, (list, tuple)) or \
                not all(isinstance(g, Mapping) for g in saved_groups):
            raise DTypeError(f"{name}: 'param_groups' must be a list of dicts, got "
                             f"{shown(saved_groups)}")
        if not isinstance(saved_state, Mapping):
            raise DTypeError(f"{name}: 'state' must be a dict of parameter index -> state, got "
                             f"{type(saved_state).__name__}")
        if len(saved_groups) != len(self.param_groups):
            raise ShapeError(f"{name}: the state dict has {len(saved_groups)} param group(s), "
                             f"this optimizer {len(self.param_groups)}")
        by_index, new_groups = {}, []
        for k, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            where = f"{name}: param group {k}"
            ids = saved.get("params")
            if not isinstance(ids, (list, tuple)) or any(as_int(i) is None for i in ids):
                raise DTypeError(f"{where}: 'params' must be a list of parameter indices, got "
                                 f"{shown(ids)}")
            if len(ids) != len(group["params"]):
                raise ShapeError(f"{where} has {len(ids)} parameter(s) in the state dict, "
                                 f"{len(group['params'])} in this optimizer")
            for i, p in zip(ids, group["params"]):
                if as_int(i) in by_index:
                    raise TritonnnError(f"{where}: parameter index {as_int(i)} appears twice")
                by_index[as_int(i)] = p
            merged = {**{n: v for n, v in group.items() if n != "params"},
                      **{n: v for n, v in saved.items() if n != "params"}}
            merged.update(self._hyper(merged, where))
            new_groups.append(merged)
        new_state = {}
        for i, entry in saved_state.items():
            p = by_index.get(as_int(i)) if as_int(i) is not None else None
            if p is None:
                raise TritonnnError(f"{name}: state for parameter index {shown(i)}, which no "
                                    f"param group holds (indices: {sorted(by_index)})")
            if not isinstance(entry, Mapping):
                raise DTypeError(f"{name}: the state of parameter {i} must be a dict, got "
                                 f"{type(entry).__name__}")
            new_state[p] = self._import(p, entry, f"{name}: state of parameter {i}")
        for group, merged in zip(self.param_groups, new_groups):
            params = group["params"]
            group.clear()
            group.update({"params": params, **merged})
        self.state = new_state

    def _state_tensor(self, p, value, where, key):
        """A saved state tensor (a tritonnn tensor or numpy array of ``p``'s shape) as a new
        tensor on ``p``'s device and dtype."""
        if isinstance(value, np.ndarray):
            value = tensor(value)
        if not isinstance(value, Tensor):
            raise DTypeError(f"{where}: {key} must be a tensor, got {type(value).__name__}")
        if value.shape != p.shape:
            raise ShapeError(f"{where}: {key} has shape {value.shape}, its parameter {p.shape}")
        out = value.detach().to(p.device, p.dtype)
        return out.clone() if out._data is value._data else out

    @staticmethod
    def _step_count(value, where):
        """A saved step count: a whole number >= 0 (an int, a float such as torch's, a 0-d
        tensor or array)."""
        if isinstance(value, (Tensor, np.ndarray)):
            if value.shape not in ((), (1,)):
                raise ShapeError(f"{where}: step must be a number or a 0-d tensor, got shape "
                                 f"{tuple(value.shape)}")
            value = value.item() if isinstance(value, Tensor) else value.reshape(()).item()
        v = number(where, value, "step")
        if not (v >= 0 and math.isfinite(v) and v == int(v)):
            raise TritonnnError(f"{where}: step must be a whole number >= 0, got {value}")
        return int(v)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for k, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {k}")
            lines += [f"    {n}: {group[n]}" for n in sorted(group) if n != "params"]
        return "\n".join(lines) + "\n)"


def _flag(value):
    return bool(value)


# ==============================================================================================
# SGD
# ==============================================================================================


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, dampening, Nesterov, weight decay
    and ``maximize``, PyTorch's update rule."""

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False, *, maximize=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize))

    @staticmethod
    def _hyper(group, where):
        h = dict(lr=_check(where, group["lr"], "learning rate", 0.0),
                 momentum=_check(where, group["momentum"], "momentum", 0.0),
                 dampening=_check(where, group["dampening"], "dampening"),
                 weight_decay=_check(where, group["weight_decay"], "weight_decay", 0.0),
                 nesterov=_flag(group["nesterov"]), maximize=_flag(group["maximize"]))
        if h["nesterov"] and (h["momentum"] <= 0 or h["dampening"] != 0):
            raise TritonnnError(f"{where}: nesterov momentum needs momentum > 0 and dampening 0 "
                                f"(got momentum {h['momentum']}, dampening {h['dampening']})")
        return h

    def step(self):
        state = self.state
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            dampening, weight_decay = group["dampening"], group["weight_decay"]
            if not (type(lr) is float and type(momentum) is float and type(dampening) is float
                    and type(weight_decay) is float):
                self._refresh(group)
                lr, momentum = group["lr"], group["momentum"]
                dampening, weight_decay = group["dampening"], group["weight_decay"]
            nesterov, maximize = group["nesterov"], group["maximize"]
            for p in group["params"]:
                g = p._grad
                if g is None:
                    continue
                if g.dtype is not p.dtype or g.shape != p.shape or g.device != p.device:
                    raise self._mismatch(p, g)
                B = p._backend
                gb = B.unary(g._data, "neg") if maximize else g._data
                if momentum:
                    st = state.get(p)
                    buf = None if st is None else st["momentum_buffer"]
                    first = buf is None
                    if first:
                        buf = empty(*p.shape, dtype=p.dtype, device=p.device)
                    elif buf._backend is not B or buf.dtype is not p.dtype:
                        buf = self._follow(p, buf)
                    if st is None:
                        state[p] = {"momentum_buffer": buf}
                    else:
                        st["momentum_buffer"] = buf
                    B.sgd_step(p._data, gb, buf._data, lr, momentum, weight_decay, dampening,
                               nesterov, first)
                else:
                    B.sgd_step(p._data, gb, None, lr, momentum, weight_decay, dampening,
                               nesterov, True)
                p._version[0] += 1

    @staticmethod
    def _export(st):
        buf = st.get("momentum_buffer")
        return {"momentum_buffer": None if buf is None else buf.clone()}

    def _import(self, p, entry, where):
        extra = set(entry) - {"momentum_buffer"}
        if extra:
            raise TritonnnError(f"{where}: unexpected key(s) {sorted(map(repr, extra))} (SGD "
                                f"keeps 'momentum_buffer')")
        buf = entry.get("momentum_buffer")
        return {"momentum_buffer": None if buf is None else
                self._state_tensor(p, buf, where, "momentum_buffer")}


# ==============================================================================================
# Adam and AdamW
# ==============================================================================================


class _AdamBase(Optimizer):
    """Adam's moments and bias correction; ``_decoupled`` picks AdamW's weight decay
    (``p *= 1 - lr * wd``, inside the fused step) or Adam's L2 term (``g + wd * p``, added to
    the gradient before the step, as PyTorch's Adam)."""

    _decoupled = True

    def __init__(self, params, lr, betas, eps, weight_decay, amsgrad, maximize):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize))

    @classmethod
    def _hyper(cls, group, where):
        if "decoupled_weight_decay" in group and \
                _flag(group["decoupled_weight_decay"]) != cls._decoupled:
            raise TritonnnError(f"{where}: decoupled_weight_decay="
                                f"{group['decoupled_weight_decay']} is "
                                f"{'AdamW' if not cls._decoupled else 'Adam'}'s weight decay; "
                                f"use tn.optim.{'AdamW' if not cls._decoupled else 'Adam'}")
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)):
            raise DTypeError(f"{where}: betas must be a pair of numbers, got "
                             f"{type(betas).__name__} {shown(betas)}")
        if len(betas) != 2:
            raise TritonnnError(f"{where}: betas must be a pair of numbers, got {len(betas)}: "
                                f"{tuple(betas)}")
        if _flag(group["amsgrad"]):
            raise TritonnnError(f"{where}: amsgrad=True is not supported (the fused step keeps "
                                f"no max_exp_avg_sq); use amsgrad=False")
        return dict(lr=_check(where, group["lr"], "learning rate", 0.0),
                    betas=(_check(where, betas[0], "beta1", 0.0, 1.0, high_open=True),
                           _check(where, betas[1], "beta2", 0.0, 1.0, high_open=True)),
                    eps=_check(where, group["eps"], "eps", 0.0),
                    weight_decay=_check(where, group["weight_decay"], "weight_decay", 0.0),
                    amsgrad=False, maximize=_flag(group["maximize"]))

    def step(self):
        state, decoupled = self.state, self._decoupled
        for group in self.param_groups:
            lr, betas, eps, weight_decay = (group["lr"], group["betas"], group["eps"],
                                            group["weight_decay"])
            if not (type(lr) is float and type(betas) is tuple and len(betas) == 2
                    and type(betas[0]) is float and type(betas[1]) is float
                    and type(eps) is float and type(weight_decay) is float) or group["amsgrad"]:
                self._refresh(group)
                lr, betas, eps, weight_decay = (group["lr"], group["betas"], group["eps"],
                                                group["weight_decay"])
            beta1, beta2 = betas
            maximize = group["maximize"]
            for p in group["params"]:
                g = p._grad
                if g is None:
                    continue
                if g.dtype is not p.dtype or g.shape != p.shape or g.device != p.device:
                    raise self._mismatch(p, g)
                B = p._backend
                st = state.get(p)
                if st is None:
                    st = state[p] = {"step": 0, "exp_avg": zeros_like(p),
                                     "exp_avg_sq": zeros_like(p)}
                m, v = st["exp_avg"], st["exp_avg_sq"]
                if m._backend is not B or m.dtype is not p.dtype:
                    m = st["exp_avg"] = self._follow(p, m)
                if v._backend is not B or v.dtype is not p.dtype:
                    v = st["exp_avg_sq"] = self._follow(p, v)
                st["step"] = n = st["step"] + 1
                gb = B.unary(g._data, "neg") if maximize else g._data
                if decoupled:
                    B.adamw_step(p._data, gb, m._data, v._data, n, lr, beta1, beta2, eps,
                                 weight_decay)
                else:
                    if weight_decay:
                        gb = B.binary(gb, B.binary(p._data, weight_decay, "mul"), "add")
                    B.adamw_step(p._data, gb, m._data, v._data, n, lr, beta1, beta2, eps, 0.0)
                p._version[0] += 1

    @staticmethod
    def _export(st):
        # the step count as PyTorch keeps it: a 0-d float32 tensor on "cpu"
        return {"step": tensor(float(st["step"])), "exp_avg": st["exp_avg"].clone(),
                "exp_avg_sq": st["exp_avg_sq"].clone()}

    def _import(self, p, entry, where):
        keys = {"step", "exp_avg", "exp_avg_sq"}
        if set(entry) != keys:
            extra, missing = set(entry) - keys, keys - set(entry)
            parts = ([f"missing {sorted(missing)}"] if missing else []) + \
                ([f"unexpected {sorted(map(repr, extra))}"] if extra else [])
            hint = " (amsgrad's max_exp_avg_sq is not supported)" if "max_exp_avg_sq" in extra \
                else ""
            raise TritonnnError(f"{where}: expected the keys {sorted(keys)}: "
                                f"{', '.join(parts)}{hint}")
        return {"step": self._step_count(entry["step"], where),
                "exp_avg": self._state_tensor(p, entry["exp_avg"], where, "exp_avg"),
                "exp_avg_sq": self._state_tensor(p, entry["exp_avg_sq"], where, "exp_avg_sq")}


class Adam(_AdamBase):
    """Adam (Kingma & Ba) with PyTorch's defaults; ``weight_decay`` is an L2 term added to the
    gradient (``g + wd * p``), as ``torch.optim.Adam``."""

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize)


class AdamW(_AdamBase):
    """Adam with decoupled weight decay (Loshchilov & Hutter), PyTorch's defaults."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize)
