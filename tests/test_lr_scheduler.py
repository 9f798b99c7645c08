"""tn.optim.lr_scheduler against torch.optim.lr_scheduler: the lr of every param group after
every step (equal to the last bit), the state_dict keys and values, resume, and bad input."""
import math
import warnings

import numpy as np
import pytest
import torch

import tritonnn as tn

L, TL = tn.optim.lr_scheduler, torch.optim.lr_scheduler


def _optimizers(opt_name="SGD"):
    """The same two-group optimizer in both libraries (lrs 0.1 and 0.25)."""
    ps = [tn.zeros(2, requires_grad=True), tn.zeros(3, requires_grad=True)]
    ts = [torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)]

    def make(m, params):
        return getattr(m.optim, opt_name)([{"params": [params[0]]},
                                           {"params": [params[1]], "lr": 0.25}], lr=0.1)
    return make(tn, ps), make(torch, ts)


class Halving:
    """A callable object: its attributes are state (torch saves its __dict__)."""

    def __init__(self, every):
        self.every = every

    def __call__(self, epoch):
        return 0.5 ** (epoch // self.every)


SCHEDULES = {
    "lambda": lambda m, o: m.LambdaLR(o, lambda e: 0.97 ** e),
    "lambda_per_group": lambda m, o: m.LambdaLR(o, [lambda e: 1 / (1 + e), Halving(7)]),
    "step": lambda m, o: m.StepLR(o, step_size=7, gamma=0.5),
    "step_default_gamma": lambda m, o: m.StepLR(o, 30),
    "linear_warmup": lambda m, o: m.LinearLR(o, start_factor=0.01, total_iters=17),
    "linear_decay": lambda m, o: m.LinearLR(o, start_factor=1.0, end_factor=0.05, total_iters=40),
    "linear_default": lambda m, o: m.LinearLR(o),
    "cosine": lambda m, o: m.CosineAnnealingLR(o, T_max=50),
    "cosine_eta_min_restarts": lambda m, o: m.CosineAnnealingLR(o, T_max=13, eta_min=1e-3),
    "warmup_then_cosine": lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.1, total_iters=10), m.CosineAnnealingLR(o, T_max=90)],
        milestones=[10]),
    "three_phases": lambda m, o: m.SequentialLR(
        o, [m.StepLR(o, 3, 0.7), m.LambdaLR(o, lambda e: 1 / (e + 1)),
            m.CosineAnnealingLR(o, 20, 1e-4)], milestones=[12, 40]),
}


def _same_lrs(ours, theirs, o, to, what):
    assert ours.get_last_lr() == theirs.get_last_lr(), what
    assert [g["lr"] for g in o.param_groups] == [g["lr"] for g in to.param_groups], what


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_lrs_equal_torch_s_to_the_bit(name):
    o, to = _optimizers()
    with warnings.catch_warnings():
        warnings.simplefilter("error")                    # normal use warns nothing
        s = SCHEDULES[name](L, o)
    ts = SCHEDULES[name](TL, to)
    _same_lrs(s, ts, o, to, "after construction")
    seen = set()
    for step in range(150):
        o.step()
        to.step()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            s.step()
        ts.step()
        _same_lrs(s, ts, o, to, f"step {step}")
        seen.add(s.get_last_lr()[0])
    assert len(seen) > 3                                  # the schedule really moved
    assert o.param_groups[0]["initial_lr"] == 0.1 and o.param_groups[1]["initial_lr"] == 0.25


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_state_dict_has_torch_s_keys_and_values(name):
    o, to = _optimizers()
    s, ts = SCHEDULES[name](L, o), SCHEDULES[name](TL, to)
    for _ in range(23):
        o.step()
        to.step()
        s.step()
        ts.step()
    sd, tsd = s.state_dict(), ts.state_dict()
    assert list(sd) == list(tsd)
    assert sd == tsd
    if "lambda" in name:                                  # functions are not state; objects are
        assert sd["lr_lambdas"][0] is None
    if name == "lambda_per_group":
        assert sd["lr_lambdas"][1] == {"every": 7}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_resume_from_state_dicts(name):
    """k steps, both state dicts, a fresh optimizer and scheduler loading them: the rest of
    the schedule is the straight run's; the same after loading torch's state dicts."""
    n, k = 60, 21
    o, _ = _optimizers()
    s = SCHEDULES[name](L, o)
    straight = []
    for _ in range(n):
        o.step()
        s.step()
        straight.append(s.get_last_lr())
    for source in ("tritonnn", "torch"):
        if source == "tritonnn":
            o, _ = _optimizers()
            s = SCHEDULES[name](L, o)
        else:
            _, o = _optimizers()
            s = SCHEDULES[name](TL, o)
        for _ in range(k):
            o.step()
            s.step()
        osd, ssd = o.state_dict(), s.state_dict()
        if source == "torch":
            osd = {"state": {}, "param_groups": osd["param_groups"]}   # SGD without momentum
        o2, _ = _optimizers()
        s2 = SCHEDULES[name](L, o2)                       # made first, then loaded, as torch's
        o2.load_state_dict(osd)                           # docs advise
        s2.load_state_dict(ssd)
        assert s2.get_last_lr() == straight[k - 1]
        for i in range(k, n):
            o2.step()
            s2.step()
            assert s2.get_last_lr() == straight[i], (source, i)


def test_our_state_dict_loads_into_torch():
    o, to = _optimizers()
    s = SCHEDULES["warmup_then_cosine"](L, o)
    for _ in range(15):
        o.step()
        s.step()
    ts = SCHEDULES["warmup_then_cosine"](TL, to)
    to.load_state_dict({"state": {}, "param_groups": o.state_dict()["param_groups"]})
    ts.load_state_dict(s.state_dict())
    for _ in range(30):
        o.step()
        to.step()
        s.step()
        ts.step()
        _same_lrs(s, ts, o, to, "after loading")


def test_scheduled_training_matches_torch():
    """The optimizer really uses the scheduled lr: AdamW + warm-up and cosine, torch's params."""
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((4, 3))
    w, tw = tn.tensor(w0, requires_grad=True), torch.tensor(w0, requires_grad=True)
    opt, topt = tn.optim.AdamW([w], lr=0.05), torch.optim.AdamW([tw], lr=0.05)
    s = SCHEDULES["warmup_then_cosine"](L, opt)
    ts = SCHEDULES["warmup_then_cosine"](TL, topt)
    for _ in range(30):
        for p in (w, tw):
            p.grad = None
            ((p * p).sum() + 0.1 * (p * p * p).sum()).backward()
        opt.step()
        topt.step()
        s.step()
        ts.step()
    np.testing.assert_allclose(w.detach().numpy(), tw.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert not np.allclose(w.detach().numpy(), w0)


def test_last_epoch_resume_needs_initial_lr():
    o, _ = _optimizers()
    with pytest.raises(tn.TritonnnError, match=r"StepLR: last_epoch=5 resumes a schedule, but "
                                               r"param group\(s\) \[0, 1\] have no 'initial_lr'"):
        L.StepLR(o, 3, last_epoch=5)
    for g in o.param_groups:
        g["initial_lr"] = g["lr"]
    s = L.StepLR(o, 3, gamma=0.5, last_epoch=5)           # continues at epoch 6, as torch
    assert s.last_epoch == 6 and s.get_last_lr() == [0.05, 0.125]


def test_get_last_lr_is_a_copy():
    o, _ = _optimizers()
    s = L.StepLR(o, 2)
    s.get_last_lr().append(3.0)
    assert s.get_last_lr() == [0.1, 0.25]


@pytest.mark.parametrize("build, cls, pattern", [
    (lambda o: L.StepLR("opt", 3), tn.DTypeError, r"StepLR: expected a tn.optim optimizer, got str"),
    (lambda o: L.StepLR(o, 0), tn.TritonnnError, r"StepLR: step_size must be >= 1, got 0"),
    (lambda o: L.StepLR(o, 2.5), tn.DTypeError, r"StepLR: step_size must be an int, got 2\.5"),
    (lambda o: L.StepLR(o, 3, gamma="x"), tn.DTypeError, r"StepLR: gamma must be a number"),
    (lambda o: L.StepLR(o, 3, last_epoch=-2), tn.TritonnnError,
     r"StepLR: last_epoch must be >= -1, got -2"),
    (lambda o: L.LinearLR(o, start_factor=0), tn.TritonnnError,
     r"LinearLR: start_factor must be in \(0, 1\], got 0\.0"),
    (lambda o: L.LinearLR(o, end_factor=1.5), tn.TritonnnError,
     r"LinearLR: end_factor must be in \[0, 1\], got 1\.5"),
    (lambda o: L.LinearLR(o, total_iters=0), tn.TritonnnError,
     r"LinearLR: total_iters must be >= 1, got 0"),
    (lambda o: L.CosineAnnealingLR(o, 0), tn.TritonnnError, r"CosineAnnealingLR: T_max must be > 0"),
    (lambda o: L.CosineAnnealingLR(o, None), tn.DTypeError,
     r"CosineAnnealingLR: T_max must be a number, got None"),
    (lambda o: L.LambdaLR(o, [lambda e: 1.0]), tn.ShapeError,
     r"LambdaLR: expected 2 lr_lambda\(s\), one per param group, got 1"),
    (lambda o: L.LambdaLR(o, 0.5), tn.DTypeError, r"LambdaLR: lr_lambda must be a function"),
    (lambda o: L.SequentialLR(o, [], []), tn.TritonnnError,
     r"SequentialLR: expects a non-empty list of schedulers"),
    (lambda o: L.SequentialLR(o, [L.StepLR(o, 2), L.StepLR(o, 3)], [2, 5]), tn.ShapeError,
     r"SequentialLR: 2 scheduler\(s\) need 1 milestone\(s\), got 2: \[2, 5\]"),
    (lambda o: L.SequentialLR(o, [L.StepLR(o, 2), L.StepLR(o, 3), L.StepLR(o, 4)], [5, 2]),
     tn.TritonnnError, r"SequentialLR: milestones must be increasing ints >= 0, got \[5, 2\]"),
    (lambda o: L.SequentialLR(o, [L.StepLR(o, 2), L.StepLR(_optimizers()[0], 3)], [2]),
     tn.TritonnnError, r"SequentialLR: scheduler 1 \(StepLR\) belongs to another optimizer"),
    (lambda o: L.SequentialLR(o, [L.StepLR(o, 2), "cosine"], [2]), tn.DTypeError,
     r"SequentialLR: scheduler 1 is str"),
], ids=lambda v: "" if callable(v) else None)
def test_bad_arguments_raise(build, cls, pattern):
    o, _ = _optimizers()
    with pytest.raises(cls, match=pattern):
        build(o)


def test_lambda_returning_junk_is_refused():
    o, _ = _optimizers()
    with pytest.raises(tn.DTypeError, match=r"LambdaLR: lr_lambda\(0\)'s value must be a number, "
                                            r"got 'fast'"):
        L.LambdaLR(o, lambda e: "fast")


@pytest.mark.parametrize("edit, cls, pattern", [
    (lambda sd: sd.update(gamma=0.5), tn.TritonnnError,
     r"CosineAnnealingLR.load_state_dict: unexpected keys \[\"'gamma'\"\]"),
    (lambda sd: sd.pop("T_max"), tn.TritonnnError, r"missing keys \['T_max'\]"),
    (lambda sd: sd.update(base_lrs=[0.1]), tn.ShapeError,
     r"base_lrs has 1 value\(s\), the optimizer 2 param group\(s\)"),
    (lambda sd: sd.update(last_epoch="3"), tn.DTypeError, r"last_epoch must be an int, got '3'"),
    (lambda sd: sd.update(T_max=-1), tn.TritonnnError, r"T_max must be > 0, got -1"),
], ids=["unexpected", "missing", "groups", "last_epoch", "t_max"])
def test_load_state_dict_mismatches_are_clear_errors(edit, cls, pattern):
    o, _ = _optimizers()
    s = L.CosineAnnealingLR(o, 10)
    for _ in range(3):
        s.step()
    before = s.state_dict()
    bad = s.state_dict()
    edit(bad)
    with pytest.raises(cls, match=pattern):
        s.load_state_dict(bad)
    assert s.state_dict() == before                        # nothing set


def test_sequential_load_checks_every_scheduler_first():
    o, _ = _optimizers()
    s = SCHEDULES["warmup_then_cosine"](L, o)
    for _ in range(4):
        s.step()
    before = s.state_dict()
    bad = s.state_dict()
    bad["_schedulers"][0]["last_epoch"] = 0
    bad["_schedulers"][1]["T_max"] = "x"
    with pytest.raises(tn.DTypeError, match="CosineAnnealingLR.load_state_dict: T_max"):
        s.load_state_dict(bad)
    assert s.state_dict() == before
    with pytest.raises(tn.ShapeError, match=r"SequentialLR.load_state_dict: _schedulers must "
                                            r"hold 2 state dict\(s\)"):
        s.load_state_dict({**before, "_schedulers": before["_schedulers"][:1]})


def test_a_group_added_after_the_scheduler_is_a_clear_error():
    o, _ = _optimizers()
    s = L.StepLR(o, 2)
    o.add_param_group({"params": [tn.zeros(1, requires_grad=True)]})
    with pytest.raises(tn.ShapeError, match=r"StepLR.step: the optimizer has 3 param group\(s\), "
                                            r"the schedule was made for 2"):
        s.step()


def test_cosine_formula_values():
    """Spot values against the closed form (the chain equals it up to rounding)."""
    o, _ = _optimizers()
    s = L.CosineAnnealingLR(o, T_max=10, eta_min=0.01)
    for e in range(1, 11):
        s.step()
        want = 0.01 + (0.1 - 0.01) * (1 + math.cos(math.pi * e / 10)) / 2
        assert abs(s.get_last_lr()[0] - want) < 1e-15
