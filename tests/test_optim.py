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
