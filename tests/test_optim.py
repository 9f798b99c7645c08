"""Optimizers on "cpu": SGD and AdamW against torch's, step by step."""
import numpy as np
import pytest
import torch

import tritonnn as tn
from checks import assert_close

SHAPES = [(3, 4), (5,), (1,), (2, 1, 3)]


def run_both(make_tn, make_th, dtype=np.float64, steps=5, seed=0):
    """Same params, same per-step gradients (a nonlinear loss), both optimizers; compare each step."""
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    targets = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    ps = [tn.tensor(a, requires_grad=True) for a in init]
    ts = [torch.tensor(a, requires_grad=True) for a in init]
    opt, t_opt = make_tn(ps), make_th(ts)
    tol = (1e-12, 1e-10) if dtype == np.float64 else (1e-6, 1e-5)
    for step in range(steps):
        loss = sum(((p - tn.tensor(t)) ** 2 * (p * 0.5).tanh()).sum() for p, t in zip(ps, targets))
        t_loss = sum(((p - torch.tensor(t)) ** 2 * (p * 0.5).tanh()).sum() for p, t in zip(ts, targets))
        opt.zero_grad()
        loss.backward()
        opt.step()
        t_opt.zero_grad()
        t_loss.backward()
        t_opt.step()
        for i, (p, t) in enumerate(zip(ps, ts)):
            assert_close(p.detach().numpy(), t.detach().numpy(), *tol, f"param {i} after step {step}")
    moved = sum(np.abs(p.detach().numpy() - a).max() for p, a in zip(ps, init))
    assert moved > 1e-3                    # the optimizer really changed something


SGD_CONFIGS = [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3),
    dict(lr=0.05, momentum=0.8, nesterov=True),
    dict(lr=0.1, weight_decay=0.01),
    dict(lr=0.05, momentum=0.9, weight_decay=1e-2, nesterov=True),
    dict(lr=1.0, momentum=0.5, dampening=0.5, weight_decay=0.1),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cfg", SGD_CONFIGS, ids=[str(c) for c in SGD_CONFIGS])
def test_sgd_matches_torch(cfg, dtype):
    run_both(lambda ps: tn.optim.SGD(ps, **cfg), lambda ps: torch.optim.SGD(ps, **cfg), dtype)


ADAMW_CONFIGS = [
    dict(),
    dict(lr=0.01),
    dict(lr=0.05, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1),
    dict(lr=0.01, weight_decay=0.0),
    dict(lr=0.02, betas=(0.0, 0.5)),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cfg", ADAMW_CONFIGS, ids=[str(c) for c in ADAMW_CONFIGS])
def test_adamw_matches_torch(cfg, dtype):
    run_both(lambda ps: tn.optim.AdamW(ps, **cfg), lambda ps: torch.optim.AdamW(ps, **cfg), dtype,
             steps=6)


def test_adamw_defaults():
    p = tn.zeros(2, requires_grad=True)
    opt = tn.optim.AdamW([p])
    group = opt.param_groups[0]
    assert group["lr"] == 1e-3 and group["betas"] == (0.9, 0.999) and group["eps"] == 1e-8
    assert group["weight_decay"] == 0.01 and group["amsgrad"] is False
    assert group["maximize"] is False and len(group["params"]) == 1 and group["params"][0] is p
    assert opt.defaults == {k: v for k, v in group.items() if k != "params"}


def test_params_without_grad_are_skipped():
    a = tn.tensor([1.0, 2.0], requires_grad=True)
    b = tn.tensor([3.0], requires_grad=True)
    for opt in (tn.optim.SGD([a, b], lr=0.1, momentum=0.9, weight_decay=0.1),
                tn.optim.AdamW([a, b], lr=0.1)):
        a.grad = b.grad = None
        (a * 2).sum().backward()
        before_b = b.detach().numpy().copy()
        before_a = a.detach().numpy().copy()
        opt.step()
        np.testing.assert_array_equal(b.detach().numpy(), before_b)   # no grad: untouched
        assert not np.array_equal(a.detach().numpy(), before_a)


def test_backward_step():
    w = tn.tensor([1.0, -2.0], requires_grad=True)
    opt = tn.optim.SGD([w], lr=0.5)
    w.grad = tn.tensor([100.0, 100.0])             # stale: backward_step must zero it first
    loss = (w * tn.tensor([2.0, 4.0])).sum()
    opt.backward_step(loss)
    assert_close(w.detach().numpy(), [1.0 - 0.5 * 2.0, -2.0 - 0.5 * 4.0], 0, 0)
    assert_close(w.grad.numpy(), [2.0, 4.0], 0, 0)
    opt.backward_step((w * w).sum())
    assert_close(w.detach().numpy(), [0.0, -4.0 - 0.5 * 2 * -4.0], 0, 0)


def test_zero_grad_sets_none():
    w = tn.tensor([1.0], requires_grad=True)
    for opt in (tn.optim.SGD([w], lr=0.1), tn.optim.AdamW([w])):
        (w * 3).sum().backward()
        assert w.grad is not None
        opt.zero_grad()
        assert w.grad is None


def test_parameters_stay_leaves_and_keep_identity():
    lin = tn.nn.Linear(3, 2)
    weight = lin.weight
    opt = tn.optim.AdamW(lin.parameters(), lr=0.1)
    opt.backward_step(lin(tn.ones(4, 3)).sum())
    assert lin.weight is weight and weight.is_leaf and weight.requires_grad
    assert weight.dtype is tn.float32


@pytest.mark.parametrize("make", [
    lambda ps: tn.optim.SGD(ps, lr=-0.1),
    lambda ps: tn.optim.SGD(ps, lr=0.1, momentum=-0.5),
    lambda ps: tn.optim.SGD(ps, lr=0.1, weight_decay=-1.0),
    lambda ps: tn.optim.SGD(ps, lr=0.1, nesterov=True),
    lambda ps: tn.optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True),
    lambda ps: tn.optim.AdamW(ps, lr=-1e-3),
    lambda ps: tn.optim.AdamW(ps, betas=(1.0, 0.999)),
    lambda ps: tn.optim.AdamW(ps, betas=(0.9, 1.0)),
    lambda ps: tn.optim.AdamW(ps, betas=(-0.1, 0.999)),
    lambda ps: tn.optim.AdamW(ps, betas=(0.9,)),
    lambda ps: tn.optim.AdamW(ps, eps=-1e-8),
    lambda ps: tn.optim.AdamW(ps, weight_decay=-0.01),
    lambda ps: tn.optim.SGD([], lr=0.1),
    lambda ps: tn.optim.AdamW([]),
    lambda ps: tn.optim.SGD(ps[0], lr=0.1),
    lambda ps: tn.optim.SGD([ps[0], ps[0]], lr=0.1),
    lambda ps: tn.optim.SGD([tn.tensor([1, 2])], lr=0.1),
    lambda ps: tn.optim.SGD([ps[0] * 2], lr=0.1),
], ids=lambda f: "")
def test_bad_hyper_parameters_raise(make):
    ps = [tn.zeros(2, requires_grad=True), tn.zeros(3, requires_grad=True)]
    with pytest.raises(tn.TritonnnError):
        make(ps)


def test_sgd_on_float32_model_trains():
    tn.manual_seed(0)
    model = tn.nn.Sequential(tn.nn.Linear(2, 8), tn.nn.ReLU(), tn.nn.Linear(8, 2))
    x = tn.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = tn.tensor([0, 1, 1, 0])
    opt = tn.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.0)
    first = None
    for _ in range(300):
        loss = tn.nn.functional.cross_entropy(model(x), y)
        first = first if first is not None else loss.item()
        opt.backward_step(loss)
    assert loss.item() < 0.1 * first
    assert (model(x).argmax(1) == y).sum().item() == 4


@pytest.mark.parametrize("opt_name", ["sgd", "adamw"])
def test_state_follows_the_model_to_another_device(opt_name):
    """A step on "cpu", then model.to("cuda"): the optimizer's state moves with its parameters
    (PyTorch would fail with a device mismatch; the state is the optimizer's, not the user's)."""
    from conftest import skip_without_cuda
    skip_without_cuda()
    import tritonnn.nn.functional as F
    rng = np.random.default_rng(7)
    x = rng.standard_normal((8, 5)).astype(np.float32)
    y = rng.integers(0, 3, 8)
    runs = {}
    for moved in (False, True):
        tn.manual_seed(3)
        model = tn.nn.Sequential(tn.nn.Linear(5, 4), tn.nn.ReLU(), tn.nn.Linear(4, 3))
        opt = (tn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9) if opt_name == "sgd"
               else tn.optim.AdamW(model.parameters(), lr=1e-2))
        device = "cpu"
        for step in range(4):
            if moved and step == 2:
                model.to("cuda")
                device = "cuda"
            opt.backward_step(F.cross_entropy(model(tn.tensor(x, device=device)),
                                              tn.tensor(y, device=device)))
        runs[moved] = [p.detach().to("cpu").numpy() for p in model.parameters()]
    for a, b in zip(runs[False], runs[True]):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make, pattern", [
    (lambda ps: tn.optim.SGD(ps, lr="0.1"), r"SGD: learning rate must be a number, got '0\.1'"),
    (lambda ps: tn.optim.SGD(ps, lr=True), r"SGD: learning rate must be a number, got True"),
    (lambda ps: tn.optim.SGD(ps, lr=0.1, dampening=[0]), r"SGD: dampening .* \[0\]"),
    (lambda ps: tn.optim.AdamW(ps, betas=0.9), r"AdamW: betas must be a pair .*float"),
    (lambda ps: tn.optim.AdamW(ps, betas=(0.9, None)), r"AdamW: beta2 must be a number.*None"),
    (lambda ps: tn.optim.AdamW(ps, weight_decay="0"), r"AdamW: weight_decay .*'0'"),
    (lambda ps: tn.optim.SGD(iter([ps[0], "w"]), lr=0.1), r"SGD: parameter 1 is str"),
    (lambda ps: tn.optim.AdamW(3.5), r"AdamW: params must be an iterable .*float"),
])
def test_hyper_parameters_of_the_wrong_type_are_dtype_errors(make, pattern):
    ps = [tn.zeros(2, requires_grad=True)]
    with pytest.raises(tn.DTypeError, match=pattern):
        make(ps)


def test_hyper_parameters_are_stored_as_floats():
    ps = [tn.zeros(2, requires_grad=True)]
    sgd = tn.optim.SGD(ps, lr=np.float32(0.5), momentum=1, dampening=-0.5)   # torch allows both
    g = sgd.param_groups[0]
    assert (g["lr"], g["momentum"], g["dampening"]) == (0.5, 1.0, -0.5)
    assert all(type(g[k]) is float for k in ("lr", "momentum", "dampening", "weight_decay"))
    adamw = tn.optim.AdamW(ps, lr=1, betas=[0, np.float64(0.5)], eps=0)
    g = adamw.param_groups[0]
    assert g["betas"] == (0.0, 0.5) and type(g["lr"]) is float and g["eps"] == 0.0
    assert all(type(b) is float for b in g["betas"])
    with pytest.raises(tn.TritonnnError, match="SGD: invalid dampening nan"):
        tn.optim.SGD(ps, lr=0.1, dampening=float("nan"))


# ==============================================================================================
# Adam, maximize, parameter groups (issue 11)
# ==============================================================================================

ADAM_CONFIGS = [
    dict(),
    dict(lr=0.01, weight_decay=0.1),
    dict(lr=0.05, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.01),
    dict(lr=0.02, maximize=True),
    dict(lr=0.02, weight_decay=0.05, maximize=True),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cfg", ADAM_CONFIGS, ids=[str(c) for c in ADAM_CONFIGS])
def test_adam_matches_torch(cfg, dtype):
    run_both(lambda ps: tn.optim.Adam(ps, **cfg), lambda ps: torch.optim.Adam(ps, **cfg), dtype,
             steps=6)


@pytest.mark.parametrize("make", [
    lambda m, ps: m.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=0.01, maximize=True),
    lambda m, ps: m.optim.SGD(ps, lr=0.1, maximize=True),
    lambda m, ps: m.optim.AdamW(ps, lr=0.02, weight_decay=0.1, maximize=True),
], ids=["sgd_momentum", "sgd_plain", "adamw"])
def test_maximize_matches_torch(make):
    run_both(lambda ps: make(tn, ps), lambda ps: make(torch, ps), np.float64)


def _grouped(m, ps):
    return [{"params": ps[:2], "weight_decay": 0.1},
            {"params": [ps[2]], "weight_decay": 0.0, "lr": 0.02},
            {"params": ps[3], "betas": (0.5, 0.9)}]


@pytest.mark.parametrize("opt_name", ["AdamW", "Adam"])
def test_param_groups_match_torch(opt_name):
    run_both(lambda ps: getattr(tn.optim, opt_name)(_grouped(tn, ps), lr=3e-3),
             lambda ps: getattr(torch.optim, opt_name)(_grouped(torch, ps), lr=3e-3), np.float64)


def test_sgd_param_groups_match_torch():
    def groups(ps):
        return [{"params": ps[:1], "momentum": 0.9, "nesterov": True},
                {"params": ps[1:3], "lr": 0.3, "weight_decay": 0.01},
                {"params": ps[3:], "momentum": 0.5, "dampening": 0.5}]
    run_both(lambda ps: tn.optim.SGD(groups(ps), lr=0.05),
             lambda ps: torch.optim.SGD(groups(ps), lr=0.05), np.float64)


TORCH_ONLY_KEYS = {"foreach", "capturable", "differentiable", "fused", "decoupled_weight_decay"}


@pytest.mark.parametrize("opt_name", ["SGD", "Adam", "AdamW"])
def test_param_groups_hold_every_hyper_parameter_as_torch(opt_name):
    ps = [tn.zeros(2, requires_grad=True) for _ in range(3)]
    ts = [torch.zeros(2, requires_grad=True) for _ in range(3)]
    ours = getattr(tn.optim, opt_name)([{"params": ps[:2]}, {"params": [ps[2]], "lr": 0.5}],
                                       lr=0.01)
    theirs = getattr(torch.optim, opt_name)([{"params": ts[:2]}, {"params": [ts[2]], "lr": 0.5}],
                                            lr=0.01)
    assert len(ours.param_groups) == 2
    for g, tg in zip(ours.param_groups, theirs.param_groups):
        assert set(g) == set(tg) - TORCH_ONLY_KEYS
        assert {k: v for k, v in g.items() if k != "params"} == \
            {k: v for k, v in tg.items() if k in g and k != "params"}
        assert [id(p) for p in g["params"]] == [id(p) for p in (ps[:2] if g is
                                                                 ours.param_groups[0] else ps[2:])]
    assert ours.param_groups[1]["lr"] == 0.5 and ours.param_groups[0]["lr"] == 0.01
    assert set(ours.defaults) == set(theirs.defaults) - TORCH_ONLY_KEYS


def test_changing_a_group_lr_takes_effect_next_step():
    """A user (or scheduler) writing group["lr"], an int included, as torch does."""
    def make(m, ps):
        return m.optim.AdamW([{"params": ps[:2]}, {"params": ps[2:], "weight_decay": 0.0}],
                             lr=1e-2)
    rng = np.random.default_rng(3)
    init = [rng.standard_normal(s) for s in SHAPES]
    ps = [tn.tensor(a, requires_grad=True) for a in init]
    ts = [torch.tensor(a, requires_grad=True) for a in init]
    opt, t_opt = make(tn, ps), make(torch, ts)
    for step, lrs in enumerate([(1e-2, 1e-2), (0.1, 1e-3), (1, 0), (0.05, 0.2)]):
        for o in (opt, t_opt):
            for g, lr in zip(o.param_groups, lrs):
                g["lr"] = lr
        for group, m in ((ps, tn), (ts, torch)):
            for p in group:
                p.grad = None
            sum(((p * p) * (p * 0.3).tanh()).sum() for p in group).backward()
        opt.step()
        t_opt.step()
        for p, t in zip(ps, ts):
            assert_close(p.detach().numpy(), t.detach().numpy(), 1e-12, 1e-10, f"step {step}")
    assert type(opt.param_groups[0]["lr"]) is float        # the int was checked and kept as 1.0


def test_a_group_value_of_the_wrong_type_is_refused_at_step():
    w = tn.ones(2, requires_grad=True)
    opt = tn.optim.SGD([{"params": [w]}], lr=0.1)
    w.grad = tn.ones(2)
    opt.param_groups[0]["lr"] = "0.1"
    with pytest.raises(tn.DTypeError, match=r"SGD.step: param group 0: learning rate .*'0\.1'"):
        opt.step()
    assert w.tolist() == [1.0, 1.0]
    opt.param_groups[0]["lr"] = 0.1
    opt.param_groups[0]["momentum"] = np.float64("nan")   # not a plain float: checked again
    with pytest.raises(tn.TritonnnError, match="SGD.step: param group 0: invalid momentum nan"):
        opt.step()
    opt.param_groups[0]["momentum"] = np.float32(0.5)
    opt.step()
    assert opt.param_groups[0]["momentum"] == 0.5 and type(opt.param_groups[0]["momentum"]) is float
    np.testing.assert_allclose(w.detach().numpy(), [0.9, 0.9])


def test_add_param_group_as_torch():
    a, b = tn.ones(2, requires_grad=True), tn.ones(3, requires_grad=True)
    opt = tn.optim.SGD([a], lr=0.1, momentum=0.9)
    opt.add_param_group({"params": b, "lr": 0.01})
    assert len(opt.param_groups) == 2 and opt.param_groups[1]["params"][0] is b
    assert opt.param_groups[1]["lr"] == 0.01 and opt.param_groups[1]["momentum"] == 0.9
    a.grad, b.grad = tn.ones(2), tn.ones(3)
    opt.step()
    np.testing.assert_allclose(b.detach().numpy(), 1 - 0.01)
    np.testing.assert_allclose(a.detach().numpy(), 1 - 0.1)
    with pytest.raises(tn.TritonnnError, match=r"add_param_group: param group 2: a parameter is "
                                               r"already in param group 0"):
        opt.add_param_group({"params": [tn.zeros(1, requires_grad=True), a]})
    with pytest.raises(tn.DTypeError, match=r"add_param_group: param group 2: params must be an "
                                            r"ordered collection .*not a set"):
        opt.add_param_group({"params": {tn.zeros(1, requires_grad=True)}})
    with pytest.raises(tn.TritonnnError, match=r"param group 2 has no 'params' entry"):
        opt.add_param_group({"lr": 0.1})
    with pytest.raises(tn.DTypeError, match=r"param group 2 must be a dict .*list"):
        opt.add_param_group([tn.zeros(1, requires_grad=True)])
    with pytest.raises(tn.TritonnnError, match=r"param group 2: invalid learning rate -1\.0"):
        opt.add_param_group({"params": [tn.zeros(1, requires_grad=True)], "lr": -1.0})
    assert len(opt.param_groups) == 2                      # nothing half-added


@pytest.mark.parametrize("groups, cls, pattern", [
    (lambda a, b: [{"params": [a]}, {"params": [b, a]}], tn.TritonnnError,
     r"AdamW: param group 1: a parameter is already in param group 0"),
    (lambda a, b: [{"params": [a]}, b], tn.DTypeError,
     r"AdamW: param group 1 must be a dict .*Tensor"),
    (lambda a, b: [{"params": [a], "betas": (0.9, 1.5)}], tn.TritonnnError,
     r"AdamW: param group 0: invalid beta2 1\.5"),
    (lambda a, b: [{"params": []}], tn.TritonnnError, r"AdamW: param group 0: got an empty"),
    (lambda a, b: [{"params": [a], "amsgrad": True}], tn.TritonnnError,
     r"AdamW: param group 0: amsgrad=True is not supported"),
    (lambda a, b: [{"params": [a, "w"]}], tn.DTypeError,
     r"AdamW: param group 0: parameter 1 is str"),
], ids=["overlap", "tensor_among_groups", "beta2", "empty_group", "amsgrad", "not_a_tensor"])
def test_bad_param_groups_raise(groups, cls, pattern):
    a, b = tn.ones(2, requires_grad=True), tn.ones(3, requires_grad=True)
    with pytest.raises(cls, match=pattern):
        tn.optim.AdamW(groups(a, b))


# ==============================================================================================
# state_dict / load_state_dict (issue 11)
# ==============================================================================================

def _to_torch(obj):
    """A tritonnn state dict as torch's: tensors through numpy, the structure as it is."""
    if isinstance(obj, tn.Tensor):
        return torch.from_numpy(obj.numpy().copy())
    if isinstance(obj, dict):
        return {k: _to_torch(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_torch(v) for v in obj)
    return obj


def _from_torch(obj):
    if isinstance(obj, torch.Tensor):
        return tn.tensor(obj.detach().numpy().copy())
    if isinstance(obj, dict):
        return {k: _from_torch(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_from_torch(v) for v in obj)
    return obj


def _loss_step(module, ps, targets, k):
    """Gradients of a nonlinear loss that changes with the step ``k``."""
    for p in ps:
        p.grad = None
    t = [module.tensor(x * (1 + 0.1 * k)) for x in targets]
    sum(((p - q) ** 2 * (p * 0.5).tanh()).sum() for p, q in zip(ps, t)).backward()


OPTIMIZERS = {
    "sgd_momentum": lambda m, ps: m.optim.SGD(
        [{"params": ps[:2], "nesterov": True}, {"params": ps[2:], "lr": 0.02}], lr=0.05,
        momentum=0.9, weight_decay=0.01),
    "adam": lambda m, ps: m.optim.Adam(
        [{"params": ps[:1]}, {"params": ps[1:], "weight_decay": 0.05}], lr=0.01),
    "adamw": lambda m, ps: m.optim.AdamW(
        [{"params": ps[:3], "weight_decay": 0.1}, {"params": ps[3:], "weight_decay": 0.0}],
        lr=3e-3, betas=(0.8, 0.95)),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_state_dict_layout_is_torch_s(name):
    rng = np.random.default_rng(1)
    init = [rng.standard_normal(s) for s in SHAPES]
    targets = [rng.standard_normal(s) for s in SHAPES]
    ps = [tn.tensor(a, requires_grad=True) for a in init]
    ts = [torch.tensor(a, requires_grad=True) for a in init]
    opt, t_opt = OPTIMIZERS[name](tn, ps), OPTIMIZERS[name](torch, ts)
    ps[1].grad = None
    for k in range(2):
        _loss_step(tn, ps[:1] + ps[2:], targets[:1] + targets[2:], k)   # ps[1] never has a grad
        _loss_step(torch, ts[:1] + ts[2:], targets[:1] + targets[2:], k)
        opt.step()
        t_opt.step()
    sd, tsd = opt.state_dict(), t_opt.state_dict()
    assert list(sd) == ["state", "param_groups"]
    assert list(sd["state"]) == list(tsd["state"]) == [0, 2, 3]          # by index, across groups
    for i, st in sd["state"].items():
        assert list(st) == list(tsd["state"][i])
        for key, v in st.items():
            tv = tsd["state"][i][key]
            assert isinstance(v, tn.Tensor) and v.dtype is (tn.float32 if key == "step"
                                                            else tn.float64)
            assert_close(v.numpy(), tv.numpy(), 1e-12, 1e-10, f"state {i} {key}")
    for g, tg in zip(sd["param_groups"], tsd["param_groups"]):
        assert g["params"] == tg["params"]
        assert g == {k: v for k, v in tg.items() if k in g}
        assert list(g)[-1] == "params"


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_state_dict_loads_into_torch_and_back(name):
    """tritonnn -> torch after 3 steps, both continue; torch -> tritonnn after 3 more, both
    continue: the parameters agree at every step."""
    rng = np.random.default_rng(2)
    init = [rng.standard_normal(s) for s in SHAPES]
    targets = [rng.standard_normal(s) for s in SHAPES]
    ps = [tn.tensor(a, requires_grad=True) for a in init]
    opt = OPTIMIZERS[name](tn, ps)
    for k in range(3):
        _loss_step(tn, ps, targets, k)
        opt.step()
    ts = [torch.tensor(p.detach().numpy(), requires_grad=True) for p in ps]
    t_opt = OPTIMIZERS[name](torch, ts)
    t_opt.load_state_dict(_to_torch(opt.state_dict()))
    for k in range(3, 6):
        _loss_step(tn, ps, targets, k)
        _loss_step(torch, ts, targets, k)
        opt.step()
        t_opt.step()
        for p, t in zip(ps, ts):
            assert_close(p.detach().numpy(), t.detach().numpy(), 1e-12, 1e-10, f"step {k}")
    ps2 = [tn.tensor(t.detach().numpy(), requires_grad=True) for t in ts]
    opt2 = OPTIMIZERS[name](tn, ps2)
    opt2.load_state_dict(_from_torch(t_opt.state_dict()))
    for k in range(6, 9):
        _loss_step(tn, ps2, targets, k)
        _loss_step(torch, ts, targets, k)
        opt2.step()
        t_opt.step()
        for p, t in zip(ps2, ts):
            assert_close(p.detach().numpy(), t.detach().numpy(), 1e-12, 1e-10, f"step {k}")


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_resume_is_bit_for_bit(name, device):
    """N steps straight == k steps, state_dict, a fresh optimizer and model, load_state_dict,
    N - k steps."""
    rng = np.random.default_rng(4)
    init = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    targets = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    # bit identity holds at any length: 2 steps build every state (momentum, Adam's moments
    # and step count) before the save, 2 more use it after the load
    n, k = 4, 2

    def params(values):
        return [tn.tensor(v, device=device, requires_grad=True) for v in values]

    def run(ps, opt, steps):
        for s in steps:
            for p in ps:
                p.grad = None
            t = [tn.tensor(x * (1 + 0.1 * s), device=device) for x in targets]
            sum(((p - q) ** 2 * (p * 0.5).tanh()).sum() for p, q in zip(ps, t)).backward()
            opt.step()

    straight = params(init)
    run(straight, OPTIMIZERS[name](tn, straight), range(n))
    first = params(init)
    opt = OPTIMIZERS[name](tn, first)
    run(first, opt, range(k))
    sd = opt.state_dict()
    resumed = params([p.detach().numpy() for p in first])
    fresh = OPTIMIZERS[name](tn, resumed)
    fresh.load_state_dict(sd)
    run(resumed, fresh, range(k, n))
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(b.detach().numpy(), a.detach().numpy())
    assert all(st_t.device == tn.device(device) for st in fresh.state.values()
               for st_t in st.values() if isinstance(st_t, tn.Tensor))


def test_state_dict_is_a_snapshot_and_load_copies():
    w = tn.ones(3, requires_grad=True)
    opt = tn.optim.AdamW([w], lr=0.1)
    w.grad = tn.ones(3)
    opt.step()
    sd = opt.state_dict()
    before = sd["state"][0]["exp_avg"].numpy().copy()
    opt.step()
    np.testing.assert_array_equal(sd["state"][0]["exp_avg"].numpy(), before)
    assert sd["state"][0]["step"].item() == 1.0 and opt.state[w]["step"] == 2
    other = tn.optim.AdamW([w], lr=0.1)
    other.load_state_dict(sd)
    other.step()                                           # moves its own copy, not sd's
    np.testing.assert_array_equal(sd["state"][0]["exp_avg"].numpy(), before)
    assert other.state[w]["step"] == 2


def test_load_state_dict_takes_hyper_parameters_and_extra_keys():
    a, b = tn.ones(2, requires_grad=True), tn.ones(2, requires_grad=True)
    src = tn.optim.SGD([{"params": [a], "lr": 0.5}, {"params": [b]}], lr=0.1, momentum=0.9)
    src.param_groups[1]["initial_lr"] = 0.1               # as a scheduler leaves it
    dst = tn.optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.3)
    dst.load_state_dict(src.state_dict())
    assert dst.param_groups[0]["lr"] == 0.5 and dst.param_groups[1]["momentum"] == 0.9
    assert dst.param_groups[1]["initial_lr"] == 0.1
    assert dst.param_groups[0]["params"][0] is a


def _sd_with(opt, edit):
    sd = opt.state_dict()
    edit(sd)
    return sd


@pytest.mark.parametrize("edit, cls, pattern", [
    (lambda sd: sd["param_groups"].pop(), tn.ShapeError,
     r"AdamW.load_state_dict: the state dict has 1 param group\(s\), this optimizer 2"),
    (lambda sd: sd["param_groups"][1]["params"].append(7), tn.ShapeError,
     r"param group 1 has 3 parameter\(s\) in the state dict, 2 in this optimizer"),
    (lambda sd: sd["state"][0].update(exp_avg=tn.zeros(5)), tn.ShapeError,
     r"state of parameter 0: exp_avg has shape \(5,\), its parameter \(2,\)"),
    (lambda sd: sd["state"].update({9: sd["state"][0]}), tn.TritonnnError,
     r"state for parameter index 9, which no param group holds"),
    (lambda sd: sd["state"][0].pop("exp_avg_sq"), tn.TritonnnError,
     r"state of parameter 0: expected the keys .*missing \['exp_avg_sq'\]"),
    (lambda sd: sd["state"][0].update(max_exp_avg_sq=tn.zeros(2)), tn.TritonnnError,
     r"unexpected \[\"'max_exp_avg_sq'\"\].*amsgrad"),
    (lambda sd: sd["state"][0].update(step=2.5), tn.TritonnnError,
     r"state of parameter 0: step must be a whole number >= 0, got 2\.5"),
    (lambda sd: sd["state"][0].update(exp_avg=[0.0, 0.0]), tn.DTypeError,
     r"state of parameter 0: exp_avg must be a tensor, got list"),
    (lambda sd: sd["param_groups"][0].update(lr="fast"), tn.DTypeError,
     r"AdamW.load_state_dict: param group 0: learning rate must be a number, got 'fast'"),
    (lambda sd: sd["param_groups"][0].update(decoupled_weight_decay=False), tn.TritonnnError,
     r"decoupled_weight_decay=False is Adam's weight decay; use tn.optim.Adam"),
    (lambda sd: sd.pop("state"), tn.TritonnnError,
     r"expected the keys 'state' and 'param_groups'"),
    (lambda sd: sd["param_groups"][1].update(params=[0, 1]), tn.TritonnnError,
     r"parameter index 0 appears twice"),
], ids=["groups", "params", "shape", "index", "missing_key", "amsgrad", "step", "list",
        "lr", "adam_state", "no_state", "twice"])
def test_load_state_dict_mismatches_are_clear_errors(edit, cls, pattern):
    ps = [tn.ones(2, requires_grad=True) for _ in range(3)]
    opt = tn.optim.AdamW([{"params": ps[:1]}, {"params": ps[1:]}], lr=0.1)
    for p in ps:
        p.grad = tn.ones(2)
    opt.step()
    bad = _sd_with(opt, edit)
    before = opt.state_dict()
    with pytest.raises(cls, match=pattern):
        opt.load_state_dict(bad)
    after = opt.state_dict()                              # all or nothing
    assert after["param_groups"] == before["param_groups"]
    for i in before["state"]:
        for key in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_array_equal(after["state"][i][key].numpy(),
                                          before["state"][i][key].numpy())
    with pytest.raises(tn.DTypeError, match=r"AdamW.load_state_dict: expected a mapping"):
        opt.load_state_dict([("state", {})])


def test_sgd_state_dict_without_momentum_and_wrong_keys():
    w = tn.ones(2, requires_grad=True)
    opt = tn.optim.SGD([w], lr=0.1)
    w.grad = tn.ones(2)
    opt.step()
    assert opt.state_dict()["state"] == {}                # torch keeps none without momentum
    with pytest.raises(tn.TritonnnError, match=r"SGD.load_state_dict: state of parameter 0: "
                                               r"unexpected key\(s\) \[\"'exp_avg'\"\]"):
        opt.load_state_dict({"state": {0: {"exp_avg": tn.zeros(2)}},
                             "param_groups": opt.state_dict()["param_groups"]})


def test_repr_lists_the_groups():
    opt = tn.optim.SGD([{"params": [tn.ones(1, requires_grad=True)]},
                        {"params": [tn.ones(1, requires_grad=True)], "lr": 0.5}], lr=0.1)
    r = repr(opt)
    assert r.startswith("SGD (\nParameter Group 0\n") and "Parameter Group 1" in r
    assert "    lr: 0.5" in r and "    momentum: 0.0" in r


# ==============================================================================================
# gradient clipping: tn.nn.utils (issue 11)
# ==============================================================================================

CLIP_SHAPES = [(4, 3), (7,), (2, 2, 2), (1,)]


def _with_grads(device, dtype=np.float32, scale=1.0, skip=2, seed=0):
    """Parameters in both libraries with the same gradients; parameter ``skip`` has none."""
    rng = np.random.default_rng(seed)
    ps, ts = [], []
    for i, s in enumerate(CLIP_SHAPES):
        a, g = rng.standard_normal(s).astype(dtype), (rng.standard_normal(s) * scale).astype(dtype)
        p, t = tn.tensor(a, device=device, requires_grad=True), torch.tensor(a, requires_grad=True)
        if i != skip:
            p.grad, t.grad = tn.tensor(g, device=device), torch.tensor(g)
        ps.append(p)
        ts.append(t)
    return ps, ts


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf"), 3.5, 0.5])
@pytest.mark.parametrize("max_norm, scale", [(1.0, 1.0), (100.0, 1.0), (0.5, 1e-3)],
                         ids=["clipped", "untouched", "tiny_grads"])
def test_clip_grad_norm_matches_torch(norm_type, max_norm, scale, device):
    ps, ts = _with_grads(device, scale=scale)
    total = tn.nn.utils.clip_grad_norm_(ps, max_norm, norm_type)
    t_total = torch.nn.utils.clip_grad_norm_(ts, max_norm, norm_type)
    assert isinstance(total, tn.Tensor) and total.shape == () and total.dtype is tn.float32
    assert total.device == tn.device(device)
    assert_close(total.numpy(), t_total.numpy(), 1e-7, 1e-5, "total norm")
    for p, t in zip(ps, ts):
        if t.grad is None:
            assert p.grad is None
        else:
            assert_close(p.grad.numpy(), t.grad.numpy(), 1e-7, 1e-5, "clipped gradient")


def test_clip_grad_norm_leaves_small_gradients_bit_for_bit():
    ps, _ = _with_grads("cpu")
    before = [None if p.grad is None else p.grad.numpy().copy() for p in ps]
    tn.nn.utils.clip_grad_norm_(ps, 1e6)
    for p, b in zip(ps, before):
        if b is not None:
            np.testing.assert_array_equal(p.grad.numpy(), b)


@pytest.mark.parametrize("dtypes", [(np.float64,) * 4, (np.float32, np.float64, np.float32,
                                                         np.float64)], ids=["f64", "mixed"])
def test_clip_grad_norm_float64_and_mixed_dtypes(dtypes):
    rng = np.random.default_rng(5)
    ps, ts = [], []
    for s, dt in zip(CLIP_SHAPES, dtypes):
        a, g = rng.standard_normal(s).astype(dt), rng.standard_normal(s).astype(dt)
        p, t = tn.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
        p.grad, t.grad = tn.tensor(g), torch.tensor(g)
        ps.append(p)
        ts.append(t)
    total = tn.nn.utils.clip_grad_norm_(ps, 0.7)
    t_total = torch.nn.utils.clip_grad_norm_(ts, 0.7)
    assert total.dtype is tn.float64 and t_total.dtype == torch.float64
    assert_close(total.numpy(), t_total.numpy(), 1e-7, 1e-6)
    for p, t in zip(ps, ts):
        assert p.grad.dtype is p.dtype
        assert_close(p.grad.numpy(), t.grad.numpy(), 1e-7, 1e-6)


def test_clip_grad_norm_bfloat16_accumulates_in_float32(device):
    rng = np.random.default_rng(6)
    g = rng.standard_normal(5000).astype(np.float32)
    p = tn.tensor(g, device=device).to(tn.bfloat16).requires_grad_()
    p.grad = tn.tensor(g, device=device).to(tn.bfloat16)
    t = torch.tensor(g).to(torch.bfloat16).requires_grad_()
    t.grad = torch.tensor(g).to(torch.bfloat16)
    total = tn.nn.utils.clip_grad_norm_([p], 1.0)
    t_total = torch.nn.utils.clip_grad_norm_([t], 1.0)
    assert total.dtype is tn.bfloat16 and t_total.dtype == torch.bfloat16      # torch's dtype
    assert_close(total.to(tn.float32).numpy(), t_total.float().numpy(), 0, 1e-2)
    assert_close(p.grad.to(tn.float32).numpy(), t.grad.float().numpy(), 1e-3, 2e-2)


def test_clip_grad_norm_never_syncs_with_the_host(device, monkeypatch):
    """Nothing of the norm comes back to the host: every way a value could is made to fail."""
    ps, ts = _with_grads(device)
    backend = ps[0]._backend

    def sync(*args, **kwargs):
        raise AssertionError("a host sync inside clip_grad_norm_")
    for name in ("item", "numpy", "tolist", "__bool__", "__float__", "__int__", "__index__"):
        monkeypatch.setattr(tn.Tensor, name, sync)
    monkeypatch.setattr(backend, "to_numpy", sync)
    total = tn.nn.utils.clip_grad_norm_(ps, 0.5, 2.0)
    tn.nn.utils.clip_grad_norm_(ps, 0.5, float("inf"))
    monkeypatch.undo()
    t_total = torch.nn.utils.clip_grad_norm_(ts, 0.5, 2.0)
    assert_close(total.numpy(), t_total.numpy(), 1e-7, 1e-5)


def test_clip_grad_norm_edge_cases(device):
    w = tn.ones(3, device=device, requires_grad=True)
    total = tn.nn.utils.clip_grad_norm_([w], 1.0)            # no gradient at all
    assert total.shape == () and total.item() == 0.0 and total.device == tn.device(device)
    w.grad = tn.tensor([3.0, 4.0, 0.0], device=device)
    total = tn.nn.utils.clip_grad_norm_(w, 1.0)              # one tensor is fine
    assert abs(total.item() - 5.0) < 1e-6
    assert_close(w.grad.numpy(), [0.6, 0.8, 0.0], 1e-6, 1e-6)
    w.grad = tn.tensor([float("nan"), 1.0, 1.0], device=device)
    with pytest.raises(tn.TritonnnError, match=r"clip_grad_norm_: the total norm of order 2\.0 "
                                               r"of the gradients is nan"):
        tn.nn.utils.clip_grad_norm_([w], 1.0, error_if_nonfinite=True)
    e = tn.zeros(0, device=device, requires_grad=True)
    e.grad = tn.zeros(0, device=device)
    assert tn.nn.utils.clip_grad_norm_([e], 1.0, float("inf")).item() == 0.0


def test_clip_refuses_mixed_devices():
    from conftest import skip_without_cuda
    skip_without_cuda()
    a, b = tn.ones(2, requires_grad=True), tn.ones(2, device="cuda", requires_grad=True)
    a.grad, b.grad = tn.ones(2), tn.ones(2, device="cuda")
    with pytest.raises(tn.DeviceError, match=r"clip_grad_norm_: parameters and gradients are on 2 "
                                             r"devices \(cpu, cuda"):
        tn.nn.utils.clip_grad_norm_([a, b], 1.0)
    with pytest.raises(tn.DeviceError, match=r"clip_grad_value_: .*2 devices"):
        tn.nn.utils.clip_grad_value_([a, b], 1.0)
    assert a.grad.tolist() == [1.0, 1.0]


@pytest.mark.parametrize("call, cls, pattern", [
    (lambda ps: tn.nn.utils.clip_grad_norm_(ps, "1"), tn.DTypeError,
     r"clip_grad_norm_: max_norm must be a number, got '1'"),
    (lambda ps: tn.nn.utils.clip_grad_norm_(ps, -1.0), tn.TritonnnError,
     r"clip_grad_norm_: max_norm must be >= 0, got -1\.0"),
    (lambda ps: tn.nn.utils.clip_grad_norm_(ps, 1.0, 0), tn.TritonnnError,
     r"clip_grad_norm_: norm_type must be > 0 or math.inf, got 0\.0"),
    (lambda ps: tn.nn.utils.clip_grad_norm_(ps, 1.0, float("nan")), tn.TritonnnError,
     r"norm_type must be > 0"),
    (lambda ps: tn.nn.utils.clip_grad_norm_(3, 1.0), tn.DTypeError,
     r"clip_grad_norm_: parameters must be a tensor or an iterable of tensors .*int"),
    (lambda ps: tn.nn.utils.clip_grad_norm_([ps[0], np.ones(2)], 1.0), tn.DTypeError,
     r"clip_grad_norm_: parameter 1 is ndarray"),
    (lambda ps: tn.nn.utils.clip_grad_value_(ps, -0.1), tn.TritonnnError,
     r"clip_grad_value_: clip_value must be >= 0, got -0\.1"),
    (lambda ps: tn.nn.utils.clip_grad_value_(ps, None), tn.DTypeError,
     r"clip_grad_value_: clip_value must be a number, got None"),
], ids=["max_norm_str", "max_norm_negative", "norm_type_zero", "norm_type_nan", "params_int",
        "param_ndarray", "clip_value_negative", "clip_value_none"])
def test_clip_bad_input_raises(call, cls, pattern):
    ps, _ = _with_grads("cpu")
    before = [None if p.grad is None else p.grad.numpy().copy() for p in ps]
    with pytest.raises(cls, match=pattern):
        call(ps)
    for p, b in zip(ps, before):
        if b is not None:
            np.testing.assert_array_equal(p.grad.numpy(), b)


@pytest.mark.parametrize("clip_value", [0.3, 0.0, 10.0])
def test_clip_grad_value_matches_torch(clip_value, device):
    ps, ts = _with_grads(device)
    assert tn.nn.utils.clip_grad_value_(ps, clip_value) is None
    torch.nn.utils.clip_grad_value_(ts, clip_value)
    for p, t in zip(ps, ts):
        if t.grad is not None:
            np.testing.assert_array_equal(p.grad.numpy(), t.grad.numpy())


def test_clipping_in_a_training_step_matches_torch():
    """AdamW with clip_grad_norm_ between backward and step, several steps, as torch."""
    rng = np.random.default_rng(8)
    init = [rng.standard_normal(s) * 3 for s in SHAPES]
    ps = [tn.tensor(a, requires_grad=True) for a in init]
    ts = [torch.tensor(a, requires_grad=True) for a in init]
    opt, t_opt = tn.optim.AdamW(ps, lr=0.05), torch.optim.AdamW(ts, lr=0.05)
    for step in range(5):
        for group in (ps, ts):
            for p in group:
                p.grad = None
            sum(((p * p) * (p * 0.5).tanh()).sum() for p in group).backward()
        n = tn.nn.utils.clip_grad_norm_(ps, 1.0)
        tn_n = torch.nn.utils.clip_grad_norm_(ts, 1.0)
        assert_close(n.numpy(), tn_n.numpy(), 1e-12, 1e-10, f"norm at step {step}")
        opt.step()
        t_opt.step()
    for p, t in zip(ps, ts):
        assert_close(p.detach().numpy(), t.detach().numpy(), 1e-12, 1e-10)
