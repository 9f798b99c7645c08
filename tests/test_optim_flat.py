"""Flat parameter storage (issue 12): one optimizer launch per step, no host sync, the same
bits as a step per parameter.

An optimizer keeps its parameters, their gradients and its state in one flat buffer per
device and dtype (``tritonnn.flat``); ``backward()`` writes gradients straight into it; a
step is one ``sgd_flat_step``/``adam_flat_step`` launch whose hyper-parameters, step counts
and bias corrections live in device memory. The reference here is the path it replaced, a
fused ``sgd_step``/``adamw_step`` per parameter, run on twin tensors: every parameter and
state must match it bit for bit, on both devices, while a scheduler moves the learning rate.
"""
import math

import numpy as np
import pytest
import torch

import tritonnn as tn
from tritonnn.backends import backend
from tritonnn.device import as_device

F = tn.nn.functional


# ==============================================================================================
# the reference: one fused update per parameter (the optimizer step before flat storage)
# ==============================================================================================


class Reference:
    """``opt``'s update rule applied parameter by parameter to twin tensors, with the group
    values ``opt`` holds at each step (so a scheduler's learning rate is followed)."""

    def __init__(self, opt, twins):
        self.opt, self.twins, self.state = opt, twins, {}

    def step(self):
        kind = type(self.opt).__name__
        for group in self.opt.param_groups:
            for p in group["params"]:
                t = self.twins[id(p)]
                if t.grad is None:
                    continue
                B = t._backend
                g = B.unary(t.grad._data, "neg") if group["maximize"] else t.grad._data
                if kind == "SGD":
                    self._sgd(B, t, g, group)
                else:
                    self._adam(B, t, g, group, decoupled=kind == "AdamW")

    def _sgd(self, B, t, g, group):
        momentum = group["momentum"]
        buf = self.state.get(id(t))
        first = buf is None
        if momentum and first:
            buf = self.state[id(t)] = B.empty(t.shape, t.dtype)
        B.sgd_step(t._data, g, buf if momentum else None, group["lr"], momentum,
                   group["weight_decay"], group["dampening"], group["nesterov"],
                   first or not momentum)

    def _adam(self, B, t, g, group, decoupled):
        st = self.state.get(id(t))
        if st is None:
            st = self.state[id(t)] = [0, B.full(t.shape, 0, t.dtype), B.full(t.shape, 0, t.dtype)]
        st[0] += 1
        beta1, beta2 = group["betas"]
        wd = group["weight_decay"]
        if not decoupled and wd:
            g = B.binary(g, B.binary(t._data, wd, "mul"), "add")
        B.adamw_step(t._data, g, st[1], st[2], st[0], group["lr"], beta1, beta2, group["eps"],
                     wd if decoupled else 0.0)


def _mlp(device, dtype, seed=0, dims=(7, 9, 6, 4)):
    tn.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(tn.nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(tn.nn.ReLU())
    return tn.nn.Sequential(*layers).to(device).to(dtype)


def _bits(t):
    a = t.detach().to("cpu").numpy()
    return a.view(np.uint16) if a.dtype.itemsize == 2 else a


def _assert_same(a, b, what):
    x, y = _bits(a), _bits(b)
    if not np.array_equal(x, y):
        bad = np.flatnonzero(x.ravel() != y.ravel())
        raise AssertionError(f"{what}: {bad.size} of {x.size} elements differ, first at "
                             f"{bad[:5].tolist()}: {a.detach().to('cpu').numpy().ravel()[bad[:3]]} vs "
                             f"{b.detach().to('cpu').numpy().ravel()[bad[:3]]}")


def _groups(model, **second):
    """Weights in one group, biases in another with ``second``'s values."""
    named = list(model.named_parameters())
    return [{"params": [p for n, p in named if n.endswith("weight")]},
            {"params": [p for n, p in named if n.endswith("bias")], **second}]


CONFIGS = {
    "sgd": (tn.optim.SGD, dict(lr=0.1), {}),
    "sgd_momentum": (tn.optim.SGD, dict(lr=0.05, momentum=0.9), {"lr": 0.2}),
    "sgd_nesterov_wd": (tn.optim.SGD, dict(lr=0.05, momentum=0.8, nesterov=True,
                                           weight_decay=0.01), {"weight_decay": 0.0}),
    "sgd_dampening_maximize": (tn.optim.SGD, dict(lr=0.02, momentum=0.5, dampening=0.3,
                                                  maximize=True), {"momentum": 0.0}),
    "adamw": (tn.optim.AdamW, dict(lr=0.01, weight_decay=0.1), {"weight_decay": 0.0}),
    "adamw_betas_maximize": (tn.optim.AdamW, dict(lr=0.02, betas=(0.5, 0.9), maximize=True),
                             {"betas": (0.0, 0.5), "eps": 1e-6}),
    "adam_l2": (tn.optim.Adam, dict(lr=0.01, weight_decay=0.05), {"weight_decay": 0.0}),
}


CASES = [(name, tn.float32) for name in sorted(CONFIGS)] + \
    [(name, dtype) for name in ("sgd_nesterov_wd", "adamw", "adam_l2")
     for dtype in (tn.float64, tn.bfloat16)]


@pytest.mark.parametrize("name, dtype", CASES, ids=[f"{n}-{d}" for n, d in CASES])
def test_flat_step_matches_a_step_per_parameter_bit_for_bit(name, dtype, device):
    """Training with backward() into the flat gradients, a learning rate moved every step
    by a scheduler, two groups, a parameter without a gradient on some steps: every
    parameter and state equals the per-parameter path's, bit for bit."""
    cls, kw, second = CONFIGS[name]
    model = _mlp(device, dtype)
    twin = _mlp(device, dtype)                      # the same seed: the same weights
    opt = cls(_groups(model, **second), **kw)
    sched = tn.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0 / (1 + k))
    ref = Reference(opt, {id(p): t for p, t in zip(model.parameters(), twin.parameters())})
    rng = np.random.default_rng(1)
    skipped = list(model.parameters())[1]          # the first bias: no gradient on odd steps
    for step in range(3):                           # with a gradient, without, with again
        x = tn.tensor(rng.standard_normal((5, 7)), dtype=dtype, device=device)
        y = tn.tensor(rng.integers(0, 4, 5), device=device)
        for m in (model, twin):
            m.zero_grad()
            F.cross_entropy(m(x), y).backward()
        if step % 2:
            skipped.grad = None
            ref.twins[id(skipped)].grad = None
        for p, t in zip(model.parameters(), twin.parameters()):
            if p.grad is not None:
                _assert_same(p.grad, t.grad, f"gradient of {tuple(p.shape)} at step {step}")
        opt.step()
        ref.step()
        sched.step()
        for p, t in zip(model.parameters(), twin.parameters()):
            _assert_same(p, t, f"{name} parameter {tuple(p.shape)} after step {step}")
    for p, t in zip(model.parameters(), twin.parameters()):
        st, rst = opt.state.get(p), ref.state.get(id(t))
        assert (st is None) == (rst is None)
        if st is None:
            continue
        if cls is tn.optim.SGD:
            _assert_same(st["momentum_buffer"], t._new(rst, t.dtype), "momentum buffer")
        else:
            assert st["step"] == rst[0]
            _assert_same(st["exp_avg"], t._new(rst[1], t.dtype), "exp_avg")
            _assert_same(st["exp_avg_sq"], t._new(rst[2], t.dtype), "exp_avg_sq")


# ==============================================================================================
# what a step costs: launches, host syncs, uploads, allocations
# ==============================================================================================


def _cuda():
    from conftest import skip_without_cuda
    skip_without_cuda()


def _counted(fn):
    tn.cuda.reset_stats()
    fn()
    s = tn.cuda.stats()
    return {k: s[k] for k in ("launches", "host_syncs", "uploads", "allocations")}


@pytest.mark.parametrize("make", [
    lambda ps: tn.optim.SGD(ps, lr=0.01, momentum=0.9),
    lambda ps: tn.optim.SGD(ps, lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4),
    lambda ps: tn.optim.AdamW(ps, lr=1e-3),
    lambda ps: tn.optim.Adam(ps, lr=1e-3, weight_decay=1e-2, maximize=True),
], ids=["sgd_momentum", "sgd_nesterov", "adamw", "adam"])
def test_one_launch_and_no_sync_per_step(make):
    """The MLP's step: opt.step() is one launch, zero_grad() none, neither waits for the
    device, uploads or allocates; a scheduler's write is one upload, at the write."""
    _cuda()
    model = _mlp("cuda", tn.float32, dims=(13, 16, 8, 3))
    opt = make(model.parameters())
    sched = tn.optim.lr_scheduler.CosineAnnealingLR(opt, 10)
    x = tn.randn(6, 13, device="cuda")
    y = tn.tensor([0, 1, 2, 0, 1, 2], device="cuda")
    for _ in range(2):
        loss = F.cross_entropy(model(x), y)
        assert _counted(opt.zero_grad) == dict(launches=0, host_syncs=0, uploads=0, allocations=0)
        loss.backward()
        assert _counted(opt.step) == dict(launches=1, host_syncs=0, uploads=0, allocations=0)
        assert _counted(sched.step) == dict(launches=0, host_syncs=0, uploads=1, allocations=0)
    for p in model.parameters():                   # the gradients are the flat buffer's views
        assert p.grad._data is p._home.grad and p._data is p._home.data


def test_mlp_step_launches_and_backward_writes_no_gradient_copy():
    """The whole step's counts (forward and backward are other ops' launches): the weight and
    bias gradients land in the flat buffer from the GEMMs themselves: no copy launch, no
    gradient allocation; the optimizer adds one launch."""
    _cuda()
    model = _mlp("cuda", tn.float32, dims=(13, 16, 8, 3))
    opt = tn.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = tn.randn(6, 13, device="cuda")
    y = tn.tensor([0, 1, 2, 0, 1, 2], device="cuda")

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    step()
    with_flat = _counted(step)
    plain = _mlp("cuda", tn.float32, dims=(13, 16, 8, 3))
    tn.cuda.reset_stats()
    loss = F.cross_entropy(plain(x), y)
    loss.backward()
    without = tn.cuda.stats()
    # the same kernels for forward and backward, one optimizer launch, and 6 fewer buffers:
    # the 3 weight and 3 bias gradients are written into the flat buffer by the GEMMs
    assert with_flat["launches"] == without["launches"] + 1
    assert with_flat["allocations"] == without["allocations"] - 6
    assert with_flat["host_syncs"] == without["host_syncs"] and with_flat["uploads"] == 0


def test_clip_grad_norm_is_two_launches_over_flat_gradients(device):
    model = _mlp(device, tn.float32)
    tmodel = torch.nn.Sequential(torch.nn.Linear(7, 9), torch.nn.ReLU(), torch.nn.Linear(9, 6),
                                 torch.nn.ReLU(), torch.nn.Linear(6, 4))
    with torch.no_grad():
        for p, t in zip(model.parameters(), tmodel.parameters()):
            t.copy_(torch.from_numpy(p.detach().to("cpu").numpy()))
    opt = tn.optim.AdamW(model.parameters(), lr=1e-2)
    t_opt = torch.optim.AdamW(tmodel.parameters(), lr=1e-2)
    rng = np.random.default_rng(2)
    for step in range(3):
        xs, ys = rng.standard_normal((5, 7)).astype(np.float32), rng.integers(0, 4, 5)
        opt.zero_grad()
        F.cross_entropy(model(tn.tensor(xs, device=device)), tn.tensor(ys, device=device)).backward()
        tmodel.zero_grad()
        torch.nn.functional.cross_entropy(tmodel(torch.from_numpy(xs)),
                                          torch.from_numpy(ys)).backward()
        counts = {}

        def clip():
            counts["total"] = tn.nn.utils.clip_grad_norm_(model.parameters(), 0.05)
        cost = _counted(clip)
        t_total = torch.nn.utils.clip_grad_norm_(tmodel.parameters(), 0.05)
        if device == "cuda":
            assert cost["launches"] == 2 and cost["host_syncs"] == 0
            if step:
                assert cost["uploads"] == 0 and cost["allocations"] == 1     # the norm it returns
        np.testing.assert_allclose(counts["total"].item(), t_total.item(), rtol=1e-5)
        for p, t in zip(model.parameters(), tmodel.parameters()):
            np.testing.assert_allclose(p.grad.to("cpu").numpy(), t.grad.numpy(), rtol=1e-4,
                                       atol=1e-7)
        opt.step()
        t_opt.step()


# ==============================================================================================
# public behaviour kept: grads as views, user-set grads, moving the model, state_dict
# ==============================================================================================


def test_user_set_and_accumulated_gradients(device):
    w = tn.tensor([1.0, 2.0, 3.0], device=device, requires_grad=True)
    b = tn.tensor([0.5], device=device, requires_grad=True)
    opt = tn.optim.SGD([w, b], lr=0.1)
    mine = tn.tensor([1.0, 1.0, 1.0], device=device)
    w.grad = mine                                  # a gradient of the user's: kept as it is
    opt.step()
    assert w.grad is mine and w.tolist() == pytest.approx([0.9, 1.9, 2.9])
    assert b.tolist() == [0.5]                     # no gradient: untouched
    w.grad = None
    (w * w).sum().backward()                       # written into the flat buffer
    assert w.grad._data is w._home.grad
    (w * 3.0).sum().backward()                     # accumulated into it, in place
    expected = [2 * 0.9 + 3, 2 * 1.9 + 3, 2 * 2.9 + 3]
    assert w.grad.tolist() == pytest.approx(expected)
    opt.zero_grad(set_to_none=False)               # zeros, still the flat buffer's view
    assert w.grad.tolist() == [0.0, 0.0, 0.0] and w.grad._data is w._home.grad
    assert b.grad is None


def test_model_to_another_device_and_dtype_lays_out_again():
    _cuda()
    model = _mlp("cpu", tn.float32)
    opt = tn.optim.AdamW(model.parameters(), lr=1e-2)
    x, y = tn.randn(5, 7), tn.tensor([0, 1, 2, 3, 0])
    opt.backward_step(F.cross_entropy(model(x), y))
    model.to("cuda")
    opt.backward_step(F.cross_entropy(model(x.to("cuda")), y.to("cuda")))
    for p in model.parameters():
        assert p.device == tn.device("cuda") and p._home.data is p._data
        assert opt.state[p]["exp_avg"].device == tn.device("cuda") and opt.state[p]["step"] == 2
    model.to(tn.float64)
    opt.backward_step(F.cross_entropy(model(x.to("cuda").to(tn.float64)), y.to("cuda")))
    assert all(opt.state[p]["exp_avg"].dtype is tn.float64 for p in model.parameters())


def test_a_written_learning_rate_is_on_the_device_before_the_step(device):
    """A scheduler's write reaches the device table at once (what a captured graph replays
    reads); a value that does not check out waits for step() to name it."""
    w = tn.ones(3, device=device, requires_grad=True)
    opt = tn.optim.AdamW([{"params": [w], "weight_decay": 0.5}], lr=0.1)
    flat = w._home.flat
    col = {name: i for i, name in enumerate(opt._columns)}

    def table():
        return flat.backend.to_numpy(flat.hyper)[0].tolist()
    opt.param_groups[0]["lr"] = 0.25
    assert table()[col["lr"]] == 0.25 and table()[col["decay"]] == 1.0 - 0.25 * 0.5
    opt.param_groups[0]["lr"] = "fast"
    assert table()[col["lr"]] == 0.25
    w.grad = tn.ones(3, device=device)
    with pytest.raises(tn.DTypeError, match=r"AdamW.step: param group 0: learning rate"):
        opt.step()
    assert w.tolist() == [1.0, 1.0, 1.0]
    opt.param_groups[0].update(lr=1, betas=[0.5, 0.75])
    assert table()[col["lr"]] == 1.0 and table()[col["beta2"]] == 0.75
    opt.step()
    assert type(opt.param_groups[0]["lr"]) is float and opt.param_groups[0]["betas"] == (0.5, 0.75)


def test_module_zero_grad_keeps_gradients_in_the_flat_buffer(device):
    model = _mlp(device, tn.float32)
    opt = tn.optim.SGD(model.parameters(), lr=0.1)
    x, y = tn.randn(5, 7, device=device), tn.tensor([0, 1, 2, 3, 0], device=device)
    F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=False)
    for p in model.parameters():
        assert p.grad._data is p._home.grad and not p.grad.numpy().any()
    F.cross_entropy(model(x), y).backward()           # accumulated in place
    grads = [p.grad.numpy().copy() for p in model.parameters()]
    opt.step()
    plain = _mlp(device, tn.float32)
    F.cross_entropy(plain(x), y).backward()
    for g, p in zip(grads, plain.parameters()):
        np.testing.assert_array_equal(g, p.grad.numpy())


def test_step_counts_live_on_the_device(device):
    """state_dict() reads the device's step counts: they moved without the host."""
    w = tn.ones(3, device=device, requires_grad=True)
    opt = tn.optim.AdamW([w], lr=0.1)
    for _ in range(3):
        w.grad = tn.ones(3, device=device)
        opt.step()
    flat = w._home.flat
    assert flat.read_steps() == [3]
    flat.set_steps([7])                             # as three more replays of a graph would
    assert opt.state_dict()["state"][0]["step"].item() == 7.0 and opt.state[w]["step"] == 7


def test_load_state_dict_into_a_model_copies_into_the_flat_buffer(device):
    model = _mlp(device, tn.float32)
    opt = tn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    opt.backward_step(F.cross_entropy(model(tn.randn(5, 7, device=device)),
                                      tn.tensor([0, 1, 2, 3, 0], device=device)))
    model.load_state_dict(saved)
    for (n, p), v in zip(model.named_parameters(), saved.values()):
        assert p._data is p._home.data             # still the flat buffer's view
        _assert_same(p, v, n)


def test_bias_tables_are_python_s_powers():
    from tritonnn.optim.optimizer import _bias_table
    table = _bias_table(0.999, False)
    assert len(table) > 30000 and table[-1] < 1.0 and 1.0 - 0.999 ** (len(table) + 1) == 1.0
    for t in (1, 2, 17, 1000, len(table)):
        assert table[t - 1] == 1.0 - 0.999 ** t
    root = _bias_table(0.95, True)
    assert root[9] == math.sqrt(1.0 - 0.95 ** 10)
    assert len(_bias_table(0.0, False)) == 0


# ==============================================================================================
# the flat kernels against their numpy mirrors
# ==============================================================================================

# (the kernels and the mirrors order a few operations differently, as the per-parameter
# sgd_step/adamw_step always did: each device matches its own per-parameter path bit for bit,
# above, and the two devices agree to rounding)
DTYPES = [(tn.float32, 1e-6, 1e-5), (tn.float64, 1e-13, 1e-12), (tn.bfloat16, 1e-2, 1.6e-2),
          (tn.float16, 2e-3, 2e-3)]


def _flat_case(dtype, rng, sizes=(37, 1, 129, 0, 1025)):
    """Flat buffers and tables for segments of ``sizes`` (chunks as each backend cuts them)
    on both backends: (cpu arrays, cuda buffers)."""
    out = {}
    for dev in ("cpu", "cuda"):
        B = backend(as_device(dev))
        align, chunk = B.flat_layout(dtype)
        at, chunks, owner = 0, [], []
        for k, n in enumerate(sizes):
            at = -(-at // align) * align
            chunks += [(s, min(s + chunk, at + n)) for s in range(at, at + n, chunk)]
            owner += [k] * len(range(at, at + n, chunk))
            at += n
        out[dev] = (B, max(at, 1), np.array(chunks, dtype=np.int64).reshape(-1, 2),
                    np.array(owner, dtype=np.int64))
    return out


def _fill(B, dev_case, arrays, dtype):
    """Flat buffers of one backend holding ``arrays`` (one per segment) at its offsets."""
    _, size, chunks, owner = dev_case
    out = np.zeros(size, dtype=np.float64)
    starts = {}
    for (lo, _), k in zip(chunks, owner):
        starts.setdefault(int(k), int(lo))
    for k, a in enumerate(arrays):
        if a.size:
            out[starts[k]:starts[k] + a.size] = a
    return B.from_numpy(out.astype(dtype.np), dtype), starts


def _segments(buf, B, starts, sizes, dtype):
    host = B.to_numpy(buf).astype(np.float64)
    return [host[starts[k]:starts[k] + n] if n else np.zeros(0) for k, n in enumerate(sizes)]


@pytest.mark.parametrize("dtype,atol,rtol", DTYPES, ids=lambda d: str(d))
@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_flat_kernel_matches_its_mirror(opt, dtype, atol, rtol):
    _cuda()
    from tritonnn.contract import ADAM_COLUMNS, SGD_COLUMNS
    from tritonnn.optim.optimizer import _bias_table
    rng = np.random.default_rng(3)
    sizes = (37, 1, 129, 0, 1025)
    case = _flat_case(dtype, rng, sizes)
    p0 = [rng.standard_normal(n) for n in sizes]
    g0 = [rng.standard_normal(n) for n in sizes]
    m0 = [rng.standard_normal(n) * 0.1 for n in sizes]
    v0 = [np.abs(rng.standard_normal(n)) * 0.01 for n in sizes]
    seg_rows = [0, 1, -1, 0, 2]                  # segment 2 has no gradient this step
    seg_steps = [0, 3, 1, 0, 12]
    if opt == "sgd":
        groups = [dict(lr=0.1, momentum=0.9, weight_decay=0.01, dampening=0.0, nesterov=1.0,
                       maximize=0.0),
                  dict(lr=1.0, momentum=0.5, weight_decay=0.0, dampening=0.25, nesterov=0.0,
                       maximize=1.0),
                  dict(lr=0.05, momentum=0.0, weight_decay=0.1, dampening=0.0, nesterov=0.0,
                       maximize=0.0)]
        hyper = np.array([[g["lr"], g["momentum"], g["weight_decay"], g["dampening"],
                           1.0 - g["dampening"], g["nesterov"], g["maximize"]] for g in groups])
        assert hyper.shape[1] == len(SGD_COLUMNS)
        bias = None
    else:
        tables = [_bias_table(0.9, False), _bias_table(0.999, True), _bias_table(0.5, False),
                  _bias_table(0.6, True)]
        at = np.cumsum([0] + [len(t) for t in tables])
        bias = np.concatenate(tables)

        def row(lr, b1, b2, eps, wd, decoupled, maximize, t1, t2):
            return [lr, b1, b2, eps, wd, 1.0 - lr * wd if decoupled else 1.0, 1.0 - b1, 1.0 - b2,
                    0.0 if decoupled else wd, maximize, at[t1], len(tables[t1]), at[t2],
                    len(tables[t2]), math.log(b1), math.log(b2)]
        hyper = np.array([row(1e-2, 0.9, 0.999, 1e-8, 0.1, True, 0.0, 0, 1),
                          row(3e-2, 0.5, 0.6, 1e-6, 0.05, False, 1.0, 2, 3),
                          row(1e-3, 0.9, 0.6, 1e-8, 0.0, True, 1.0, 0, 3)])
        assert hyper.shape[1] == len(ADAM_COLUMNS)
    results = {}
    for dev in ("cpu", "cuda"):
        B, size, chunks, owner = case[dev]
        p, starts = _fill(B, case[dev], p0, dtype)
        g, _ = _fill(B, case[dev], g0, dtype)
        m, _ = _fill(B, case[dev], m0, dtype)
        v, _ = _fill(B, case[dev], v0, dtype)
        rows = B.from_numpy(np.array([seg_rows[k] for k in owner], np.int32), tn.int32)
        steps = B.from_numpy(np.array([seg_steps[k] for k in owner], np.int32), tn.int32)
        ch = B.from_numpy(chunks, tn.int64)
        hy = B.from_numpy(hyper, tn.float64)
        for _ in range(2):                          # the step counts move between the two
            if opt == "sgd":
                B.sgd_flat_step(p, g, m, ch, rows, steps, hy)
            else:
                B.adam_flat_step(p, g, m, v, ch, rows, steps, hy,
                                 B.from_numpy(bias, tn.float64))
        results[dev] = [_segments(buf, B, starts, sizes, dtype) for buf in (p, m, v)]
        step_host = B.to_numpy(steps)
        results[dev].append([[int(step_host[c]) for c in np.flatnonzero(owner == k)]
                             for k in range(len(sizes))])
    for which, (a, b) in enumerate(zip(results["cpu"][:3], results["cuda"][:3])):
        for k, (x, y) in enumerate(zip(a, b)):
            np.testing.assert_allclose(y, x, atol=atol, rtol=rtol,
                                       err_msg=f"buffer {which}, segment {k}")
    assert results["cpu"][3] == results["cuda"][3]
    moved = [not np.array_equal(x, p0[k].astype(dtype.np).astype(np.float64))
             for k, x in enumerate(results["cpu"][0])]
    assert moved == [True, True, False, False, True]     # skipped and empty segments untouched


def test_adam_past_its_bias_table_computes_on_the_device(monkeypatch):
    """Past a capped table, the bias corrections come from exp(t log beta): within a few
    float64 ulps of Python's powers."""
    _cuda()
    import tritonnn.optim.optimizer as O
    monkeypatch.setattr(O, "_BIAS_CAP", 3)
    monkeypatch.setattr(O, "_BIAS_TABLES", {})
    results = []
    for device in ("cpu", "cuda"):
        w = tn.tensor(np.linspace(-1, 1, 11), device=device, requires_grad=True)
        opt = tn.optim.AdamW([w], lr=0.1, betas=(0.9, 0.99))
        for k in range(8):
            w.grad = tn.tensor(np.cos(np.arange(11) + k), device=device)
            opt.step()
        results.append(w.detach().to("cpu").numpy())
    np.testing.assert_allclose(results[1], results[0], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf, 3.0])
@pytest.mark.parametrize("dtype,atol,rtol", [(tn.float32, 1e-6, 1e-5), (tn.bfloat16, 1e-2, 2e-2),
                                             (tn.float64, 1e-12, 1e-12)], ids=str)
def test_clip_kernels_match_their_mirror(norm_type, dtype, atol, rtol):
    _cuda()
    rng = np.random.default_rng(4)
    sizes = (37, 1, 129, 0, 1025)
    g0 = [rng.standard_normal(n) for n in sizes]
    case = _flat_case(dtype, rng, sizes)
    out = {}
    acc = tn.float64 if dtype is tn.float64 else tn.float32
    for dev in ("cpu", "cuda"):
        B, size, chunks, owner = case[dev]
        g, starts = _fill(B, case[dev], g0, dtype)
        select = B.from_numpy(np.array([0 if k != 2 else -1 for k in owner], np.int32),
                              tn.int32)
        ch = B.from_numpy(chunks, tn.int64)
        partials = B.empty((3,), acc)
        total = B.empty((), dtype)
        B.grad_norm_partials(g, ch, select, norm_type, partials)
        B.clip_grads_(g, ch, select, partials, norm_type, 0.5, total)
        out[dev] = (_segments(g, B, starts, sizes, dtype), float(B.to_numpy(total)))
    np.testing.assert_allclose(out["cuda"][1], out["cpu"][1], rtol=rtol)
    for k, (x, y) in enumerate(zip(out["cpu"][0], out["cuda"][0])):
        np.testing.assert_allclose(y, x, atol=atol, rtol=rtol, err_msg=f"segment {k}")
    kept = out["cpu"][0][2]
    np.testing.assert_array_equal(kept, g0[2].astype(dtype.np).astype(np.float64))
    selected = np.concatenate([g0[k] for k in (0, 1, 4)])
    expected = np.linalg.norm(selected, norm_type) if norm_type != math.inf else \
        np.abs(selected).max()
    np.testing.assert_allclose(out["cpu"][1], expected, rtol=max(rtol, 1e-6))
