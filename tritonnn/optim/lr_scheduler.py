"""Learning-rate schedules: ``LambdaLR``, ``StepLR``, ``LinearLR``, ``CosineAnnealingLR`` and
``SequentialLR``, with PyTorch's semantics.

A scheduler writes ``group["lr"]`` of every param group of its optimizer; the optimizer reads
it at its next step. As in PyTorch: making a scheduler takes its first step (``last_epoch``
-1 -> 0, which sets the starting lr, e.g. ``LinearLR``'s ``start_factor * lr``) and records
each group's ``initial_lr``; call ``sched.step()`` after ``opt.step()``; ``get_last_lr()``
gives the lrs last set. Each lr is computed from the group's current lr (PyTorch's
"chainable" form, the same float operations in the same order, so the values are
PyTorch's to the last bit); ``SequentialLR`` restarts a scheduler at its milestone from
its closed form. ``state_dict()`` holds PyTorch's keys (``LambdaLR``'s without the
functions, as PyTorch's), numbers and lists only.
"""
from __future__ import annotations

import math
import types
from bisect import bisect_right
from collections.abc import Mapping

from ..checks import as_int, integer, number, shown
from ..errors import DTypeError, ShapeError, TritonnnError
from .optimizer import Optimizer

_COMMON = ("base_lrs", "last_epoch", "_step_count", "_is_initial", "_get_lr_called_within_step",
           "_last_lr")
"""The state every scheduler keeps after its own hyper-parameters, in PyTorch's order (the
two flags are always False between steps; they are kept so the layouts match)."""


class LRScheduler:
    """The base of the schedules: ``step()``, ``get_last_lr()``, ``state_dict()``,
    ``load_state_dict()``. A subclass sets its hyper-parameters (named in ``_hyper_keys``,
    checked by ``_checked``) and defines ``get_lr()``, the next lrs from the current ones,
    and where it has one ``_closed_form_lr()``, the lrs at ``last_epoch`` from ``base_lrs``."""

    _hyper_keys = ()

    def __init__(self, optimizer, last_epoch=-1):
        name = type(self).__name__
        _optimizer(name, optimizer)
        last_epoch = _last_epoch(name, last_epoch)
        groups = optimizer.param_groups
        if last_epoch == -1:
            for group in groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            missing = [k for k, g in enumerate(groups) if "initial_lr" not in g]
            if missing:
                raise TritonnnError(f"{name}: last_epoch={last_epoch} resumes a schedule, but "
                                    f"param group(s) {missing} have no 'initial_lr' (load the "
                                    f"optimizer's state_dict first, or start at last_epoch=-1)")
        self.optimizer = optimizer
        self.base_lrs = [g["initial_lr"] for g in groups]
        self.last_epoch = last_epoch
        self._initial_step()

    def _initial_step(self):
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def step(self):
        """Advance one epoch (or iteration) and write the new lr of every param group."""
        self._step_count += 1
        self._update_lr(None)

    def _update_lr(self, epoch):
        groups = self.optimizer.param_groups
        if len(self.base_lrs) != len(groups):
            raise ShapeError(f"{type(self).__name__}.step: the optimizer has {len(groups)} param "
                             f"group(s), the schedule was made for {len(self.base_lrs)}")
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:               # SequentialLR restarting this schedule at a milestone
            self.last_epoch = epoch
            values = self._closed_form_lr()
        for group, lr in zip(groups, values):
            group["lr"] = lr
        self._last_lr = [g["lr"] for g in groups]

    def get_lr(self):
        """The next lrs, computed from the current ones (``step`` calls it; to read the lrs,
        use ``get_last_lr()``)."""
        raise TritonnnError(f"{type(self).__name__}: get_lr() is not implemented")

    def _closed_form_lr(self):
        return self.get_lr()

    def get_last_lr(self):
        """The lr of each param group, as this scheduler last set them."""
        return list(self._last_lr)

    def _lrs(self):
        return [g["lr"] for g in self.optimizer.param_groups]

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self):
        """PyTorch's keys: the hyper-parameters, ``base_lrs``, ``last_epoch``, ``_step_count``,
        ``_is_initial``, ``_get_lr_called_within_step``, ``_last_lr`` (lists copied)."""
        sd = {k: getattr(self, k) for k in self._hyper_keys}
        sd.update(base_lrs=list(self.base_lrs), last_epoch=self.last_epoch,
                  _step_count=self._step_count, _is_initial=False,
                  _get_lr_called_within_step=False, _last_lr=list(self._last_lr))
        return sd

    def load_state_dict(self, state_dict):
        """Take a state from ``state_dict()`` (this class's or PyTorch's), every value checked
        before any is set. The optimizer's lrs are its own state: load them with its
        ``load_state_dict``."""
        self._apply(self._parse(state_dict))

    def _apply(self, parsed):
        for k, v in parsed.items():
            setattr(self, k, v)

    def _parse(self, sd):
        """The attributes a state dict sets, checked; an error names the first problem."""
        name = f"{type(self).__name__}.load_state_dict"
        if not isinstance(sd, Mapping):
            raise DTypeError(f"{name}: expected a mapping (what state_dict() returns), got "
                             f"{type(sd).__name__}")
        known = self._hyper_keys + _COMMON + self._extra_keys()
        optional = {"_is_initial", "_get_lr_called_within_step"}
        unexpected = [k for k in sd if k not in known]
        missing = [k for k in known if k not in sd and k not in optional]
        if unexpected or missing:
            raise TritonnnError(f"{name}: " + "; ".join(
                ([f"missing keys {missing}"] if missing else []) +
                ([f"unexpected keys {sorted(map(repr, unexpected))}"] if unexpected else [])))
        n = len(self.optimizer.param_groups)
        out = self._checked(name, **{k: sd[k] for k in self._hyper_keys})
        out["base_lrs"] = _lr_list(name, "base_lrs", sd["base_lrs"], n)
        out["_last_lr"] = _lr_list(name, "_last_lr", sd["_last_lr"], n)
        out["last_epoch"] = _last_epoch(name, sd["last_epoch"])
        out["_step_count"] = integer(name, sd["_step_count"], "_step_count")
        if out["_step_count"] < 0:
            raise TritonnnError(f"{name}: _step_count must be >= 0, got {out['_step_count']}")
        return out

    def _extra_keys(self):
        return ()

    @staticmethod
    def _checked(name, **hyper):
        return hyper

    def __repr__(self):
        hyper = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._hyper_keys)
        return f"{type(self).__name__}({hyper}{', ' if hyper else ''}last_epoch={self.last_epoch})"


def _optimizer(name, optimizer):
    if not isinstance(optimizer, Optimizer):
        raise DTypeError(f"{name}: expected a tn.optim optimizer, got "
                         f"{type(optimizer).__name__}")
    return optimizer


def _last_epoch(name, value):
    v = integer(name, value, "last_epoch")
    if v < -1:
        raise TritonnnError(f"{name}: last_epoch must be >= -1, got {v}")
    return v


def _lr_list(name, what, value, n):
    if not isinstance(value, (list, tuple)):
        raise DTypeError(f"{name}: {what} must be a list of numbers, got {shown(value)}")
    if len(value) != n:
        raise ShapeError(f"{name}: {what} has {len(value)} value(s), the optimizer {n} param "
                         f"group(s)")
    return [number(name, v, f"{what}[{i}]") for i, v in enumerate(value)]


def _int_or_number(name, value, what):
    """An int stays an int (PyTorch computes with what it is given), else a float."""
    i = as_int(value)
    return i if i is not None else number(name, value, what)


# ==============================================================================================
# the schedules
# ==============================================================================================


class LambdaLR(LRScheduler):
    """``lr = initial_lr * lr_lambda(epoch)``; one function, or one per param group."""

    def __init__(self, optimizer, lr_lambda, last_epoch=-1):
        n = len(_optimizer("LambdaLR", optimizer).param_groups)
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != n:
                raise ShapeError(f"LambdaLR: expected {n} lr_lambda(s), one per param group, got "
                                 f"{len(lr_lambda)}")
            fns = list(lr_lambda)
        else:
            fns = [lr_lambda] * n
        for i, fn in enumerate(fns):
            if not callable(fn):
                raise DTypeError(f"LambdaLR: lr_lambda must be a function of the epoch, got "
                                 f"{type(fn).__name__} {shown(fn)}" + (f" at {i}" if n > 1 else ""))
        self.lr_lambdas = fns
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        out = []
        for fn, base in zip(self.lr_lambdas, self.base_lrs):
            factor = number("LambdaLR", fn(self.last_epoch),
                            f"lr_lambda({self.last_epoch})'s value")
            out.append(base * factor)
        return out

    def state_dict(self):
        """As the base's, plus ``lr_lambdas``: None for a function or lambda (code is not
        state), the attribute dict of a callable object."""
        sd = super().state_dict()
        sd["lr_lambdas"] = [None if isinstance(fn, types.FunctionType) else dict(vars(fn))
                            for fn in self.lr_lambdas]
        return sd

    def _parse(self, sd):
        out = super()._parse(sd)
        saved = sd["lr_lambdas"]
        if not isinstance(saved, (list, tuple)) or len(saved) != len(self.lr_lambdas) or \
                not all(s is None or isinstance(s, Mapping) for s in saved):
            raise TritonnnError(f"LambdaLR.load_state_dict: lr_lambdas must be a list of "
                                f"{len(self.lr_lambdas)} None or dict entries, got {shown(saved)}")
        out["lr_lambdas"] = saved
        return out

    def _apply(self, parsed):
        saved = parsed.pop("lr_lambdas")
        super()._apply(parsed)
        for fn, attrs in zip(self.lr_lambdas, saved):
            if attrs is not None:
                vars(fn).update(attrs)

    def _extra_keys(self):
        return ("lr_lambdas",)


class StepLR(LRScheduler):
    """``lr = initial_lr * gamma ** (epoch // step_size)``."""

    _hyper_keys = ("step_size", "gamma")

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        h = self._checked("StepLR", step_size=step_size, gamma=gamma)
        self.step_size, self.gamma = h["step_size"], h["gamma"]
        super().__init__(optimizer, last_epoch)

    @staticmethod
    def _checked(name, step_size, gamma):
        s = integer(name, step_size, "step_size")
        if s < 1:
            raise TritonnnError(f"{name}: step_size must be >= 1, got {s}")
        return dict(step_size=s, gamma=number(name, gamma, "gamma"))

    def get_lr(self):
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._lrs()
        return [lr * self.gamma for lr in self._lrs()]

    def _closed_form_lr(self):
        return [base * self.gamma ** (self.last_epoch // self.step_size) for base in self.base_lrs]


class LinearLR(LRScheduler):
    """The lr factor goes linearly from ``start_factor`` to ``end_factor`` over
    ``total_iters`` steps, then stays."""

    _hyper_keys = ("start_factor", "end_factor", "total_iters")

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5,
                 last_epoch=-1):
        h = self._checked("LinearLR", start_factor=start_factor, end_factor=end_factor,
                          total_iters=total_iters)
        self.start_factor, self.end_factor = h["start_factor"], h["end_factor"]
        self.total_iters = h["total_iters"]
        super().__init__(optimizer, last_epoch)

    @staticmethod
    def _checked(name, start_factor, end_factor, total_iters):
        start = number(name, start_factor, "start_factor")
        end = number(name, end_factor, "end_factor")
        if not 0.0 < start <= 1.0:
            raise TritonnnError(f"{name}: start_factor must be in (0, 1], got {start}")
        if not 0.0 <= end <= 1.0:
            raise TritonnnError(f"{name}: end_factor must be in [0, 1], got {end}")
        total = integer(name, total_iters, "total_iters")
        if total < 1:
            raise TritonnnError(f"{name}: total_iters must be >= 1, got {total}")
        return dict(start_factor=start, end_factor=end, total_iters=total)

    def get_lr(self):
        if self.last_epoch == 0:
            return [lr * self.start_factor for lr in self._lrs()]
        if self._is_initial or self.last_epoch > self.total_iters:
            return self._lrs()
        # the ratio of the factors at this epoch and the previous one
        delta = self.end_factor - self.start_factor
        ratio = 1.0 + delta / (self.total_iters * self.start_factor +
                               (self.last_epoch - 1) * delta)
        return [lr * ratio for lr in self._lrs()]

    def _closed_form_lr(self):
        frac = min(self.total_iters, self.last_epoch) / self.total_iters
        return [base * (self.start_factor + (self.end_factor - self.start_factor) * frac)
                for base in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """``lr = eta_min + (initial_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2``, computed
    step by step from the current lr as PyTorch's (past ``T_max`` it rises again)."""

    _hyper_keys = ("T_max", "eta_min")

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):  # noqa: N803 (torch's name)
        h = self._checked("CosineAnnealingLR", T_max=T_max, eta_min=eta_min)
        self.T_max, self.eta_min = h["T_max"], h["eta_min"]
        super().__init__(optimizer, last_epoch)

    @staticmethod
    def _checked(name, T_max, eta_min):  # noqa: N803
        t = _int_or_number(name, T_max, "T_max")
        if not t > 0 or not math.isfinite(t):
            raise TritonnnError(f"{name}: T_max must be > 0, got {t}")
        return dict(T_max=t, eta_min=_int_or_number(name, eta_min, "eta_min"))

    def get_lr(self):
        e, t, low = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return self._lrs()
        if self._step_count == 1 and e > 0:
            return [low + (base - low) * (1 + math.cos(e * math.pi / t)) / 2
                    for base in self.base_lrs]
        if (e - 1 - t) % (2 * t) == 0:         # the lowest point passed: climb back up
            return [lr + (base - low) * (1 - math.cos(math.pi / t)) / 2
                    for base, lr in zip(self.base_lrs, self._lrs())]
        ratio = (1 + math.cos(math.pi * e / t)) / (1 + math.cos(math.pi * (e - 1) / t))
        return [ratio * (lr - low) + low for lr in self._lrs()]

    def _closed_form_lr(self):
        e, t, low = self.last_epoch, self.T_max, self.eta_min
        return [low + (base - low) * (1 + math.cos(math.pi * e / t)) / 2 for base in self.base_lrs]


class SequentialLR(LRScheduler):
    """``schedulers[0]`` until ``milestones[0]``, then ``schedulers[1]`` restarted from its
    start, and so on (warm-up then decay: ``SequentialLR(opt, [LinearLR(...),
    CosineAnnealingLR(...)], milestones=[warmup])``)."""

    def __init__(self, optimizer, schedulers, milestones, last_epoch=-1):
        name = "SequentialLR"
        _optimizer(name, optimizer)
        if not isinstance(schedulers, (list, tuple)) or not schedulers:
            raise TritonnnError(f"{name}: expects a non-empty list of schedulers, got "
                                f"{shown(schedulers)}")
        for i, s in enumerate(schedulers):
            if not isinstance(s, LRScheduler) or isinstance(s, SequentialLR):
                raise DTypeError(f"{name}: scheduler {i} is {type(s).__name__}, not a "
                                 f"tn.optim.lr_scheduler schedule (SequentialLR does not nest)")
            if s.optimizer is not optimizer:
                raise TritonnnError(f"{name}: scheduler {i} ({type(s).__name__}) belongs to "
                                    f"another optimizer")
        self._milestones = self._checked_milestones(name, milestones, len(schedulers))
        last_epoch = _last_epoch(name, last_epoch)
        self._schedulers = list(schedulers)
        self.last_epoch = last_epoch + 1
        self.optimizer = optimizer
        # each scheduler took its first step when it was made: undo those, then start the first
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        for s in self._schedulers:
            s.last_epoch -= 1
        first = self._schedulers[bisect_right(self._milestones, 0)]
        first._initial_step()
        self._last_lr = first.get_last_lr()

    @staticmethod
    def _checked_milestones(name, milestones, n):
        if not isinstance(milestones, (list, tuple)):
            raise DTypeError(f"{name}: milestones must be a list of ints, got {shown(milestones)}")
        if len(milestones) != n - 1:
            raise ShapeError(f"{name}: {n} scheduler(s) need {n - 1} milestone(s), got "
                             f"{len(milestones)}: {list(milestones)}")
        out = [integer(name, m, "a milestone") for m in milestones]
        if any(m < 0 for m in out) or any(a >= b for a, b in zip(out, out[1:])):
            raise TritonnnError(f"{name}: milestones must be increasing ints >= 0, got {out}")
        return out

    def step(self):
        self.last_epoch += 1
        k = bisect_right(self._milestones, self.last_epoch)
        s = self._schedulers[k]
        if k > 0 and self._milestones[k - 1] == self.last_epoch:
            s._update_lr(0)
        else:
            s.step()
        self._last_lr = s.get_last_lr()

    def state_dict(self):
        """PyTorch's keys: ``_milestones``, ``last_epoch``, ``_last_lr`` and ``_schedulers``
        (each scheduler's own state dict)."""
        return {"_milestones": list(self._milestones), "last_epoch": self.last_epoch,
                "_last_lr": list(self._last_lr),
                "_schedulers": [s.state_dict() for s in self._schedulers]}

    def load_state_dict(self, state_dict):
        name = "SequentialLR.load_state_dict"
        if not isinstance(state_dict, Mapping):
            raise DTypeError(f"{name}: expected a mapping (what state_dict() returns), got "
                             f"{type(state_dict).__name__}")
        keys = {"_milestones", "last_epoch", "_last_lr", "_schedulers"}
        if set(state_dict) != keys:
            raise TritonnnError(f"{name}: expected the keys {sorted(keys)}, got "
                                f"{sorted(map(repr, state_dict))}")
        subs = state_dict["_schedulers"]
        if not isinstance(subs, (list, tuple)) or len(subs) != len(self._schedulers):
            raise ShapeError(f"{name}: _schedulers must hold {len(self._schedulers)} state "
                             f"dict(s), got {shown(subs)}")
        milestones = self._checked_milestones(name, state_dict["_milestones"],
                                              len(self._schedulers))
        last_epoch = _last_epoch(name, state_dict["last_epoch"])
        last_lr = _lr_list(name, "_last_lr", state_dict["_last_lr"],
                           len(self.optimizer.param_groups))
        parsed = [s._parse(sd) for s, sd in zip(self._schedulers, subs)]   # all checked first
        for s, p in zip(self._schedulers, parsed):
            s._apply(p)
        self._milestones, self.last_epoch, self._last_lr = milestones, last_epoch, last_lr
