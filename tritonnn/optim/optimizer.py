"""Optimizers: SGD, Adam and AdamW with PyTorch's semantics, updating parameters in place.

Parameters come as one list or as parameter groups (``[{"params": ..., "lr": ...}, ...]``),
each group a dict holding its parameters and every hyper-parameter, filled from the
optimizer's defaults; ``opt.param_groups`` is that list, and a change to ``group["lr"]``
(by the user or a scheduler) takes effect at the next step. ``state_dict()``/
``load_state_dict()`` use PyTorch's layout.

Flat storage (``tritonnn.flat``). An optimizer moves its parameters into one buffer per
device and dtype (each parameter a view into it, its values kept), with the gradients and
the optimizer state in buffers of the same layout, and a step is one launch per buffer
(``sgd_flat_step``/``adam_flat_step``: numpy's one vectorised pass, or one Triton kernel):
``backward()`` writes the gradients straight into the flat gradient buffer (``p.grad`` is a
view of it), a parameter whose ``.grad`` is None is skipped, and a gradient the user set
(``p.grad = t``) is copied in first. The hyper-parameters of every group live in a table in
device memory, written when a group's value is (``ParamGroup``: a scheduler's new learning
rate is uploaded at once, without waiting for the device); step counts and Adam's bias
corrections are counted and looked up on the device. So a step reads no value back, uploads
nothing in steady state, and a CUDA graph captured around it stays right while the schedule
moves. Each element's arithmetic is the per-parameter ``sgd_step``/``adamw_step``'s, bit for
bit. The layout is rebuilt (lazily, at the next step) when a parameter was moved or replaced
(``model.to(...)``, ``p.data = ...``), after ``add_param_group`` and ``load_state_dict``.
"""
from __future__ import annotations

import math
import weakref
from collections.abc import Iterable, Mapping

import numpy as np

from .. import dtypes as D
from ..checks import as_int, number, shown
from ..contract import ADAM_COLUMNS, SGD_COLUMNS
from ..errors import DTypeError, ShapeError, TritonnnError
from ..flat import Flat, home_of
from ..tensor import Tensor, tensor


def _check(name, value, what, low=None, high=None, high_open=False):
    """A hyper-parameter as a float: a number (else a DTypeError), in range (else a
    TritonnnError naming it); NaN is never in range."""
    value = number(name, value, what)
    ok = (low is None or value >= low) and \
        (high is None or (value < high if high_open else value <= high))
    if not ok or value != value:
        raise TritonnnError(f"{name}: invalid {what} {value}")
    return value


class ParamGroup(dict):
    """A parameter group: a plain dict, as PyTorch's, that tells its optimizer when one of its
    values is written (``group["lr"] = ...``, ``update``, ...), so the optimizer's device
    copy of the hyper-parameters follows at once, before any later launch: a learning rate a
    scheduler sets between two replays of a captured step reaches the next replay."""

    __slots__ = ("_owner",)

    def __init__(self, owner, values):
        super().__init__(values)
        self._owner = weakref.ref(owner)

    def _changed(self):
        owner = self._owner()
        if owner is not None:
            owner._group_written(self)

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self._changed()

    def __delitem__(self, key):
        super().__delitem__(key)
        self._changed()

    def update(self, *args, **kwargs):
        super().update(*args, **kwargs)
        self._changed()

    def setdefault(self, key, default=None):
        if key in self:
            return self[key]
        self[key] = default
        return default

    def pop(self, *args):
        value = super().pop(*args)
        self._changed()
        return value

    def popitem(self):
        item = super().popitem()
        self._changed()
        return item

    def clear(self):
        super().clear()
        self._changed()

    def __reduce__(self):               # copies and pickles are plain dicts
        return dict, (dict(self),)


# ==============================================================================================
# the base class: parameter groups, state, state_dict
# ==============================================================================================


class Optimizer:
    """Parameter groups and per-parameter state; ``zero_grad``, ``step``, ``backward_step``,
    ``add_param_group``, ``state_dict``, ``load_state_dict``.

    Subclasses define ``_hyper(group, where)`` (the group's hyper-parameters checked and
    normalized, or an error naming ``where``), ``_key(group)`` (its raw values, compared to
    see a change), ``_row(group)`` (its row of the device hyper table), ``_states`` (the
    flat state buffers), ``_export(state)``/``_import(p, entry, where)`` (one parameter's
    state to and from PyTorch's layout), ``_launch(flat)`` and ``_stepped(p, flat, i,
    group)`` (the host's record of one parameter's step).
    """

    _states = ()
    _columns = ()

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
        self._flats = []                # the flat buffers, one per device and dtype
        self._stale = True              # the layout must be (re)built before the next step
        self._keys = []                 # per group: its values when its row was last written
        self._hyper_host = None         # the rows the device tables hold (float64 array)
        self._lists = []                # per group: its parameter list and length, as laid out
        params = list(params)
        if not params:
            raise TritonnnError(f"{name}: got an empty parameter list")
        if isinstance(params[0], Mapping):
            for k, group in enumerate(params):
                self._add(group, f"{name}: param group {k}")
        else:
            self._add({"params": params}, name)
        self._flatten(pull=False)

    # -- groups --------------------------------------------------------------------------------
    def add_param_group(self, param_group):
        """Add a group (a dict with ``params`` and any hyper-parameters; the rest comes from
        the defaults), as PyTorch's: used to unfreeze layers while training."""
        self._add(param_group, f"{type(self).__name__}.add_param_group: param group "
                               f"{len(self.param_groups)}")
        self._flatten()

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
        self.param_groups.append(ParamGroup(self, {"params": params, **full}))
        self._stale = True

    # -- stepping ------------------------------------------------------------------------------
    def zero_grad(self, set_to_none=True):
        """Drop the gradients (the default, as torch), or set them to zeros: the flat
        gradient buffer zeroed in one launch, each gradient that was there its view."""
        if set_to_none:
            for group in self.param_groups:
                for p in group["params"]:
                    p.grad = None
            return
        zeroed = set()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                home = home_of(p)
                if home is None:
                    p.grad = Tensor._make(p._backend.full(p.shape, 0, p.dtype), p.dtype, p.device,
                                          p._backend)
                    continue
                flat = home.flat
                if id(flat) not in zeroed:
                    zeroed.add(id(flat))
                    flat.backend.setitem(flat.grad, (slice(None),), 0)
                if p._grad._data is not home.grad:
                    p._grad = flat.grad_tensor(home.index)

    def backward_step(self, loss):
        """Zero the gradients, backpropagate ``loss`` and take one step (the seed's backward_step)."""
        self.zero_grad()
        loss.backward()
        self.step()

    def step(self):
        """One update of every parameter that has a gradient: one launch per flat buffer."""
        self._check_groups()
        if self._stale:
            self._flatten()
        live = self._gather()
        if live is None:                 # a parameter moved or was replaced: a new layout
            self._flatten()
            live = self._gather()
        for flat in self._flats:
            self._launch(flat)
        for flat, i, group in live:
            self._stepped(flat.params[i], flat, i, group)

    def _check_groups(self):
        """Every group's values checked (an error names the group) and, where they changed
        without a write this optimizer saw (a list mutated in place), the device rows
        rewritten: nothing is uploaded when nothing changed."""
        changed = len(self._keys) != len(self.param_groups)
        if changed or any(g["params"] is not lst or len(lst) != n for g, (lst, n) in
                          zip(self.param_groups, self._lists)):
            self._stale = True          # a group's parameter list was replaced or grown
        for k, group in enumerate(self.param_groups):
            key = self._key(group)
            if changed or key != self._keys[k]:
                group.update(self._hyper(group, f"{type(self).__name__}.step: param group {k}"))
                changed = True
        if changed:
            self._write_rows()

    def _gather(self):
        """Per flat buffer, the row of each parameter (its group's, or -1 without a gradient)
        pointed to on the device, user-set gradients copied into their homes, versions
        bumped; returns the live ``(flat, index, group)``, or None when a parameter no longer
        lives where the layout put it."""
        live = []
        for flat in self._flats:
            rows = []
            groups = flat.groups
            for i, (p, home) in enumerate(zip(flat.params, flat.homes)):
                if p._data is not home.data:
                    return None
                g = p._grad
                if g is None:
                    rows.append(-1)
                    continue
                if g._data is not home.grad:
                    if g.dtype is not p.dtype or g.shape != p.shape or g.device != p.device:
                        raise self._mismatch(p, g)
                    flat.backend.copy_(home.grad, g._data)
                rows.append(flat.group_index[i])
                p._version[0] += 1
                live.append((flat, i, groups[i]))
            flat.set_rows(rows)
        return live

    def _mismatch(self, p, g):
        return TritonnnError(f"{type(self).__name__}.step: gradient {g.shape} {g.dtype} on "
                             f"{g.device} does not match its parameter {p.shape} {p.dtype} on "
                             f"{p.device}")

    # -- flat storage and the device tables ----------------------------------------------------
    def _group_written(self, group):
        """A value of ``group`` was written: when the group still checks out, its row goes to
        the device now (a non-blocking upload, only if it changed); otherwise ``step`` raises
        the error later, as it would have."""
        if self._stale or not self._flats:
            return
        k = next((i for i, g in enumerate(self.param_groups) if g is group), None)
        if k is None or k >= len(self._keys):
            return
        if k >= len(self._lists) or group.get("params") is not self._lists[k][0]:
            self._stale = True          # new parameters: laid out at the next step
            return
        try:
            hyper = self._hyper(group, "")
        except (TritonnnError, TypeError, ValueError, KeyError):
            return
        if self._key({**group, **hyper}) != self._keys[k]:
            try:
                self._write_rows({k: {**group, **hyper}})
            except (TritonnnError, TypeError, ValueError, KeyError):
                return          # another group holds a bad value: step() names it

    def _write_rows(self, values=None):
        """Compute every group's row (``values``: checked values to use for some groups) and
        write the tables of every flat buffer when they changed."""
        groups = [values.get(k, g) if values else g for k, g in enumerate(self.param_groups)]
        rows = np.array([self._row(g) for g in groups], dtype=np.float64).reshape(
            len(groups), len(self._columns))
        self._keys = [self._key(g) for g in groups]
        if self._hyper_host is not None and self._hyper_host.shape == rows.shape and \
                np.array_equal(self._hyper_host, rows):
            return
        self._hyper_host = rows
        for flat in self._flats:
            if flat.hyper is None or tuple(flat.hyper.shape) != rows.shape:
                flat.hyper = flat.backend.from_numpy(rows, D.float64)
            else:
                flat.backend.write_table(flat.hyper, rows)
        if self._stale is False and self._needs_rebuild():
            self._stale = True

    def _needs_rebuild(self):
        return False

    def _flatten(self, pull=True):
        """Lay the parameters out again: one flat buffer per device and dtype (group order),
        their values, gradients (those in an old home) and state copied in, the step counts
        and the hyper rows uploaded."""
        if pull:
            self._pull_steps()
        old = self._flats
        by_key = {}
        for k, group in enumerate(self.param_groups):
            for p in group["params"]:
                by_key.setdefault((p.device, p.dtype), []).append((p, k))
        flats = []
        for members in by_key.values():
            params = [p for p, _ in members]
            old_grads = [(p, p._grad) for p in params
                         if p._grad is not None and getattr(p, "_home", None) is not None
                         and p._grad._data is p._home.grad]
            flat = Flat(params, self._states_of(params), rows=[k for _, k in members])
            flat.group_index = [k for _, k in members]
            flat.groups = [self.param_groups[k] for k in flat.group_index]
            flat.hyper = None
            for p, g in old_grads:
                i = p._home.index
                flat.backend.copy_(flat.homes[i].grad, g._data)
                p._grad = flat.grad_tensor(i)
            steps = []
            for i, p in enumerate(params):
                st = self.state.get(p)
                if st is not None:
                    for name in flat.states:
                        t = st.get(name)
                        if t is None:
                            continue
                        if t._backend is not p._backend:
                            t = t.to(p.device)
                        flat.backend.copy_(flat._state_views[name][i], t._data)
                        st[name] = flat.state_tensor(name, i)
                steps.append(self._steps_of(st))
            flat.set_steps(steps)
            flats.append(flat)
        for flat in old:
            flat.release()
        self._flats = flats
        self._lists = [(g["params"], len(g["params"])) for g in self.param_groups]
        self._hyper_host = None
        self._stale = False
        self._write_rows()
        self._stale = False

    def _pull_steps(self):
        """The host's step counts refreshed from the device's (a graph replay counts steps
        without the host): one wait for the device per flat buffer."""

    def _states_of(self, params):
        return self._states

    @staticmethod
    def _steps_of(st):
        return 0

    # -- state_dict ----------------------------------------------------------------------------
    def state_dict(self):
        """A snapshot in PyTorch's layout: ``{"state": {index: {...}}, "param_groups": [{...,
        "params": [indices]}]}``, parameters numbered across the groups in order.

        The state tensors are copies (a later step does not change a state dict already
        taken); the rest are plain numbers, bools, tuples and strings, what ``tn.save`` holds.
        """
        self._pull_steps()
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
        self._flatten(pull=False)

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


def _key_of(value):
    """A value and its type, element by element for a tuple or list: what makes a group's
    values equal to the ones last checked (1 and 1.0 differ: 1 is checked and stored as 1.0)."""
    if isinstance(value, (tuple, list)):
        return (type(value),) + tuple(_key_of(v) for v in value)
    return type(value), value


# ==============================================================================================
# SGD
# ==============================================================================================


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, dampening, Nesterov, weight decay
    and ``maximize``, PyTorch's update rule."""

    _columns = SGD_COLUMNS
    _names = ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize")

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

    def _key(self, group):
        return tuple(_key_of(group.get(n)) for n in self._names)

    def _row(self, group):
        dampening = group["dampening"]
        return (group["lr"], group["momentum"], group["weight_decay"], dampening,
                1.0 - dampening, float(group["nesterov"]), float(group["maximize"]))

    def _states_of(self, params):
        return ("momentum_buffer",) if any(g["momentum"] for g in self.param_groups) else ()

    def _needs_rebuild(self):
        return any(g["momentum"] for g in self.param_groups) and \
            any("momentum_buffer" not in flat.states for flat in self._flats)

    @staticmethod
    def _steps_of(st):
        """A chunk's step count says whether its momentum buffer holds anything yet."""
        return 0 if st is None or st.get("momentum_buffer") is None else 1

    def _launch(self, flat):
        flat.backend.sgd_flat_step(flat.data, flat.grad, flat.states.get("momentum_buffer"),
                                   flat.chunks, flat.rows, flat.steps, flat.hyper)

    def _stepped(self, p, flat, i, group):
        if group["momentum"]:
            st = self.state.get(p)
            if st is None or st.get("momentum_buffer") is None:
                self.state[p] = {"momentum_buffer": flat.state_tensor("momentum_buffer", i)}

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

_BIAS_CAP = 1 << 20
"""The longest bias-correction table (8 MiB): past it (only for a beta above ~0.99996) the
device computes ``1 - exp(t * log(beta))`` instead of looking the host's value up."""

_BIAS_TABLES = {}       # (beta, square root?) -> float64 array: 1 - beta ** t, t = 1, 2, ...


def _bias_table(beta, root):
    """``1 - beta ** t`` (its square root when ``root``) for t = 1, 2, ... in Python floats,
    as ``adamw_step`` computes it, up to the first t where it is exactly 1.0 (from there on it
    stays 1.0) or ``_BIAS_CAP`` entries."""
    key = (beta, root)
    table = _BIAS_TABLES.get(key)
    if table is None:
        values, t = [], 1
        while len(values) < _BIAS_CAP:
            b = 1.0 - beta ** t
            if b == 1.0:
                break
            values.append(math.sqrt(b) if root else b)
            t += 1
        if len(_BIAS_TABLES) >= 16:
            _BIAS_TABLES.clear()
        table = _BIAS_TABLES[key] = np.array(values, dtype=np.float64)
    return table


class _AdamBase(Optimizer):
    """Adam's moments and bias correction; ``_decoupled`` picks AdamW's weight decay
    (``p *= 1 - lr * wd``, inside the fused step) or Adam's L2 term (``g + wd * p``, added to
    the gradient before the step, as PyTorch's Adam)."""

    _decoupled = True
    _columns = ADAM_COLUMNS
    _states = ("exp_avg", "exp_avg_sq")
    _names = ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize")

    def __init__(self, params, lr, betas, eps, weight_decay, amsgrad, maximize):
        self._bias_keys = None          # the (beta, root) of each table in the bias buffer
        self._bias_at = {}              # (beta, root) -> (offset, length) in the bias buffer
        self._bias_host = None
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

    def _key(self, group):
        return tuple(_key_of(group.get(n)) for n in self._names)

    def _write_rows(self, values=None):
        groups = [values.get(k, g) if values else g for k, g in enumerate(self.param_groups)]
        self._bias_tables(groups)
        super()._write_rows(values)

    def _bias_tables(self, groups):
        """The bias buffer: one table per distinct beta1 (``1 - beta1^t``) and beta2
        (``sqrt(1 - beta2^t)``) of the groups, rebuilt and uploaded when the betas change
        (never in steady state)."""
        keys = sorted({(g["betas"][0], False) for g in groups} |
                      {(g["betas"][1], True) for g in groups})
        if keys != self._bias_keys:
            parts, at, n = [], {}, 0
            for key in keys:
                table = _bias_table(*key)
                at[key] = (n if len(table) else 0, len(table))
                parts.append(table)
                n += len(table)
            self._bias_keys, self._bias_at = keys, at
            self._bias_host = np.concatenate(parts + [np.ones(1)])      # never empty
            for flat in self._flats:
                flat.bias = None
        for flat in self._flats:
            if getattr(flat, "bias", None) is None:
                flat.bias = flat.backend.from_numpy(self._bias_host, D.float64)

    def _row(self, group):
        lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
        at1, n1 = self._bias_at[(beta1, False)]
        at2, n2 = self._bias_at[(beta2, True)]
        decoupled = self._decoupled
        return (lr, beta1, beta2, group["eps"], wd, 1.0 - lr * wd if decoupled else 1.0,
                1.0 - beta1, 1.0 - beta2, 0.0 if decoupled else wd, float(group["maximize"]),
                at1, n1, at2, n2, math.log(beta1) if beta1 > 0 else -math.inf,
                math.log(beta2) if beta2 > 0 else -math.inf)

    @staticmethod
    def _steps_of(st):
        return 0 if st is None else st["step"]

    def _pull_steps(self):
        for flat in self._flats:
            counts = None
            for i, p in enumerate(flat.params):
                st = self.state.get(p)
                if st is None or flat.first_chunk[i] == flat.first_chunk[i + 1]:
                    continue
                if counts is None:
                    counts = flat.read_steps()
                st["step"] = counts[i]

    def _launch(self, flat):
        flat.backend.adam_flat_step(flat.data, flat.grad, flat.states["exp_avg"],
                                    flat.states["exp_avg_sq"], flat.chunks, flat.rows,
                                    flat.steps, flat.hyper, flat.bias)

    def _stepped(self, p, flat, i, group):
        st = self.state.get(p)
        if st is None:
            st = self.state[p] = {"step": 0, "exp_avg": flat.state_tensor("exp_avg", i),
                                  "exp_avg_sq": flat.state_tensor("exp_avg_sq", i)}
        st["step"] += 1

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
