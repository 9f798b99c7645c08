"""GELU (exact and tanh), SiLU, Tanh and rsqrt against torch 2.13 on "cpu" and "cuda".

Forward values and gradients of ``(out * w).sum()`` in float32, float64, bfloat16 and
float16, the modules (names, reprs, no parameters), float64 finite-difference gradchecks,
the fused backward (one tape node, one backend call) and the values PyTorch gives at the
edges (NaN, +-inf, large |x|, rsqrt at 0 and below).
"""
import math

import numpy as np
import pytest
import torch

import tritonnn as tn
import tritonnn.nn.functional as F
from checks import assert_close
from test_gradcheck import gradcheck
from test_norm import vs_torch

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

ACTIVATIONS = [
    ("gelu", lambda x: F.gelu(x), lambda x: torch.nn.functional.gelu(x)),
    ("gelu_tanh", lambda x: F.gelu(x, approximate="tanh"),
     lambda x: torch.nn.functional.gelu(x, approximate="tanh")),
    ("silu", F.silu, torch.nn.functional.silu),
    ("tanh", F.tanh, torch.tanh),
    ("Tensor.tanh", lambda x: x.tanh(), lambda x: x.tanh()),
    ("sigmoid", F.sigmoid, torch.sigmoid),
]
IDS = [a[0] for a in ACTIVATIONS]


@pytest.mark.parametrize("dname", ["float32", "float64", "bfloat16", "float16"])
@pytest.mark.parametrize("shape", [(), (7,), (3, 17), (2, 3, 5)])
@pytest.mark.parametrize("name, f_tn, f_th", ACTIVATIONS, ids=IDS)
def test_activation_vs_torch(name, f_tn, f_th, shape, dname, device, rng):
    x = rng.standard_normal(shape) * 3
    vs_torch(f_tn, f_th, [x], dname, device, f"{name} {shape} {dname}")


@pytest.mark.parametrize("name, f_tn, f_th", ACTIVATIONS, ids=IDS)
def test_activation_wide_range_and_edges(name, f_tn, f_th, device):
    """|x| up to 30, and the special values: NaN stays NaN, +-inf give torch's limits."""
    x = np.concatenate([np.linspace(-30, 30, 241), [0.0, -0.0, 1e-7, -1e-7, 5.5, -5.5]])
    vs_torch(f_tn, f_th, [x], "float32", device, f"{name} wide range")
    vs_torch(f_tn, f_th, [x], "float64", device, f"{name} wide range float64")
    # (torch's float64 here: its float32 CPU gelu gives NaN at +inf, the float64 one inf)
    special = torch.tensor([float("nan"), float("inf"), float("-inf")], dtype=torch.float64)
    got = f_tn(tn.tensor(special.numpy(), device=device).to(tn.float32)).numpy()
    want = f_th(special).numpy()
    assert_close(got, want, 0, 0, f"{name} at nan, inf, -inf")


def test_rsqrt_vs_torch(device, rng):
    x = rng.uniform(0.05, 20.0, (5, 9))
    for dname in ("float32", "float64", "bfloat16", "float16"):
        vs_torch(lambda x: x.rsqrt(), lambda x: x.rsqrt(), [x], dname, device, f"rsqrt {dname}")
    edges = torch.tensor([0.0, -0.0, -1.0, float("inf"), float("nan"), 1e-30])
    assert_close(tn.tensor(edges.numpy(), device=device).rsqrt().numpy(), edges.rsqrt().numpy(),
                 0, 1e-6, "rsqrt at the edges")


def test_sqrt_and_abs_are_complete(device, rng):
    """sqrt and abs existed before; their gradients (sqrt's now one fused launch) agree with
    torch, 0 included (sqrt' = inf there, abs' = 0)."""
    x = rng.uniform(0.1, 4.0, (4, 6))
    vs_torch(lambda x: x.sqrt(), lambda x: x.sqrt(), [x], "float32", device, "sqrt")
    vs_torch(lambda x: x.sqrt(), lambda x: x.sqrt(), [x], "bfloat16", device, "sqrt bf16")
    z = np.array([0.0, 1.0, -2.0, 3.0])
    vs_torch(lambda x: x.abs(), lambda x: x.abs(), [z], "float32", device, "abs at 0")
    vs_torch(lambda x: x.sqrt(), lambda x: x.sqrt(), [np.abs(z)], "float32", device, "sqrt at 0")


@pytest.mark.parametrize("module, torch_module, want_repr", [
    (lambda: tn.nn.GELU(), lambda: torch.nn.GELU(), "GELU(approximate='none')"),
    (lambda: tn.nn.GELU(approximate="tanh"), lambda: torch.nn.GELU(approximate="tanh"),
     "GELU(approximate='tanh')"),
    (lambda: tn.nn.SiLU(), lambda: torch.nn.SiLU(), "SiLU()"),
    (lambda: tn.nn.Tanh(), lambda: torch.nn.Tanh(), "Tanh()"),
])
def test_activation_modules(module, torch_module, want_repr, device, rng):
    m, tm = module(), torch_module()
    assert repr(m) == repr(tm) == want_repr
    assert m.parameters() == [] and list(m.state_dict()) == []
    vs_torch(m, tm, [rng.standard_normal((4, 6))], "float32", device, want_repr)


def test_activation_modules_in_a_sequential(device):
    """A small MLP with LayerNorm and GELU trains the same as torch's for a few steps."""
    tn.manual_seed(0)
    net = tn.nn.Sequential(tn.nn.Linear(6, 16), tn.nn.LayerNorm(16), tn.nn.GELU(),
                           tn.nn.Linear(16, 8), tn.nn.SiLU(), tn.nn.Linear(8, 1), tn.nn.Tanh())
    tnet = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.LayerNorm(16), torch.nn.GELU(),
                               torch.nn.Linear(16, 8), torch.nn.SiLU(), torch.nn.Linear(8, 1),
                               torch.nn.Tanh())
    tnet.load_state_dict({k: torch.tensor(v.numpy()) for k, v in net.state_dict().items()})
    net = net.to(device)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((32, 6)).astype(np.float32), rng.standard_normal((32, 1))
    opt = tn.optim.SGD(net.parameters(), lr=0.1)
    topt = torch.optim.SGD(tnet.parameters(), lr=0.1)
    for _ in range(3):
        loss = F.mse_loss(net(tn.tensor(x, device=device)), tn.tensor(y.astype(np.float32),
                                                                      device=device))
        opt.backward_step(loss)
        tloss = torch.nn.functional.mse_loss(tnet(torch.tensor(x)), torch.tensor(
            y.astype(np.float32)))
        topt.zero_grad()
        tloss.backward()
        topt.step()
        assert abs(loss.item() - tloss.item()) <= 1e-5 * max(1.0, tloss.item())
    for (name, p), (_, tp) in zip(net.named_parameters(), tnet.named_parameters()):
        assert_close(p.detach().numpy(), tp.detach().numpy(), 2e-5, 2e-5, name)


def test_gelu_refuses_an_unknown_approximation(device):
    with pytest.raises(tn.TritonnnError, match=r"gelu: approximate must be 'none' or 'tanh', "
                                               r"got 'fast'"):
        F.gelu(tn.ones(2, device=device), approximate="fast")
    with pytest.raises(tn.TritonnnError, match=r"GELU: approximate must be"):
        tn.nn.GELU(approximate=None)
    for f, name in ((F.gelu, "gelu"), (F.silu, "silu"), (lambda t: t.rsqrt(), "rsqrt")):
        with pytest.raises(tn.DTypeError, match=rf"{name}: expected a floating-point tensor, "
                                                r"got int64"):
            f(tn.tensor([1, 2], device=device))
    with pytest.raises(tn.DTypeError, match=r"silu: expected a tensor"):
        F.silu([1.0])


@pytest.mark.parametrize("name, f", [
    ("gelu", F.gelu), ("gelu_tanh", lambda x: F.gelu(x, approximate="tanh")),
    ("silu", F.silu), ("tanh", F.tanh), ("sigmoid", F.sigmoid), ("sqrt", lambda x: x.sqrt()),
    ("rsqrt", lambda x: x.rsqrt())])
@pytest.mark.parametrize("shape", [(), (4,), (2, 3)])
def test_activation_gradcheck(name, f, shape, rng):
    x = rng.uniform(0.3, 2.5, shape) if name in ("sqrt", "rsqrt") else rng.standard_normal(shape) * 2
    gradcheck(f, [x], name)


@pytest.mark.parametrize("name, f", [
    ("gelu", F.gelu), ("gelu_tanh", lambda x: F.gelu(x, approximate="tanh")),
    ("silu", F.silu), ("tanh", F.tanh), ("sigmoid", F.sigmoid), ("rsqrt", lambda x: x.rsqrt())])
def test_activation_backward_is_one_fused_call(name, f, device, monkeypatch):
    """The rule makes exactly one backend call (``unary_bwd``): no chain of elementwise ops."""
    x = tn.rand(3, 5, device=device, requires_grad=True) + 0.5
    x = x.detach().requires_grad_()
    y = f(x)
    g = tn.ones(3, 5, device=device)
    B = x._backend
    calls = []
    for fn in ("unary_bwd", "binary", "unary", "where", "full"):
        orig = getattr(B, fn)
        monkeypatch.setattr(B, fn, lambda *a, _o=orig, _n=fn: calls.append(_n) or _o(*a))
    tn.grad(y, [x], grad_outputs=g)
    monkeypatch.undo()
    assert calls == ["unary_bwd"], calls
