"""LayerNorm, var / std / norm and mse_loss against torch 2.13, on "cpu" and "cuda".

Each check builds the same inputs in both libraries, compares the forward, then
backpropagates a non-unit upstream gradient ``(out * w).sum()`` and compares every input's
gradient. "cuda" runs the Triton kernels (through Triton's interpreter without a GPU).
float64 finite-difference gradchecks (``test_gradcheck.gradcheck``) cover every rule, and
the numerics cases pin what the two-pass statistics buy: exact variances at a mean of 1e4.
"""
import math
import warnings

import numpy as np
import pytest
import torch

import tritonnn as tn
import tritonnn.nn.functional as F
from checks import assert_close
from test_gradcheck import gradcheck

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

# (dtype name, atol, rtol) for forward and gradients against torch
TOLS = {"float64": (1e-10, 1e-10), "float32": (2e-5, 2e-5), "bfloat16": (3e-2, 3e-2),
        "float16": (4e-3, 4e-3)}


def _np(a, dname):
    t = torch.tensor(np.asarray(a, dtype=np.float64)).to(getattr(torch, dname))
    return t


def vs_torch(fn_tn, fn_th, arrays, dname, device, what, tol=None, seed=1, grads=True):
    """Forward and gradients of ``fn`` on equal inputs (rounded to ``dname`` first) against torch."""
    atol, rtol = tol or TOLS[dname]
    xs, ts = [], []
    for a in arrays:
        if a is None:
            xs.append(None)
            ts.append(None)
            continue
        t = _np(a, dname)
        ts.append(t.clone().requires_grad_(grads))
        xs.append(tn.tensor(t.float().numpy() if dname == "bfloat16" else t.numpy(),
                            device=device).to(getattr(tn, dname)).requires_grad_(grads))
    out = fn_tn(*xs)
    ref = fn_th(*ts)
    assert out.dtype is getattr(tn, dname), f"{what}: output dtype {out.dtype}"
    assert out.shape == tuple(ref.shape), f"{what}: shape {out.shape} vs torch {tuple(ref.shape)}"
    assert_close(out.detach().double().numpy(), ref.detach().double().numpy(), atol, rtol,
                 f"{what} forward")
    if not grads:
        return
    w = np.random.default_rng(seed).standard_normal(tuple(ref.shape))
    wt = _np(w, dname)
    (out * tn.tensor(wt.double().numpy(), device=device).to(out.dtype)).sum().backward()
    (ref * wt).sum().backward()
    for i, (x, t) in enumerate(zip(xs, ts)):
        if t is None:
            continue
        want = np.zeros(t.shape) if t.grad is None else t.grad.double().numpy()
        assert x.grad is not None, f"{what}: input {i} has no gradient"
        assert x.grad.dtype is x.dtype and x.grad.shape == x.shape
        assert_close(x.grad.double().numpy(), want, atol, rtol, f"{what} grad of input {i}")


# ----------------------------------------------------------------------------------------------
# LayerNorm
# ----------------------------------------------------------------------------------------------

LN_CASES = [((4, 17), (17,)), ((2, 3, 33), (33,)), ((3, 5, 6), (5, 6)), ((1, 1), (1,)),
            ((37,), (37,)), ((2, 3000), (3000,))]


@pytest.mark.parametrize("dname", ["float32", "bfloat16", "float16", "float64"])
@pytest.mark.parametrize("shape, nshape", LN_CASES, ids=[str(c[0]) for c in LN_CASES])
def test_layer_norm_vs_torch(shape, nshape, dname, device, rng):
    if dname == "float64" and device == "cuda" and shape[-1] > 100:
        pytest.skip("float64 interpreter coverage: the small shapes")
    x = rng.standard_normal(shape) * 2 + 0.5
    w = rng.uniform(0.5, 1.5, nshape)
    b = rng.standard_normal(nshape)
    vs_torch(lambda x, w, b: F.layer_norm(x, nshape, w, b, eps=1e-5),
             lambda x, w, b: torch.nn.functional.layer_norm(x, nshape, w, b, eps=1e-5),
             [x, w, b], dname, device, f"layer_norm {shape} {dname}")


@pytest.mark.parametrize("affine", ["none", "weight", "both"])
def test_layer_norm_without_affine(affine, device, rng):
    x = rng.standard_normal((5, 19))
    w = rng.uniform(0.5, 1.5, (19,)) if affine != "none" else None
    b = rng.standard_normal((19,)) if affine == "both" else None
    vs_torch(lambda x, w, b: F.layer_norm(x, (19,), w, b),
             lambda x, w, b: torch.nn.functional.layer_norm(x, (19,), w, b),
             [x, w, b], "float32", device, f"layer_norm affine={affine}")


def test_layer_norm_strided_input_and_expanded_gradient(device, rng):
    """A transposed input is read through its strides; ``y.sum()`` gives an expanded gradient."""
    a = rng.standard_normal((24, 6)).astype(np.float32)
    x = tn.tensor(a, device=device, requires_grad=True)
    t = torch.tensor(a, requires_grad=True)
    y = F.layer_norm(x.t(), 24)
    r = torch.nn.functional.layer_norm(t.t(), (24,))
    assert_close(y.detach().numpy(), r.detach().numpy(), 2e-5, 2e-5, "forward")
    (y * y).sum().backward()
    (r * r).sum().backward()
    assert_close(x.grad.numpy(), t.grad.numpy(), 2e-5, 2e-5, "grad")


@pytest.mark.parametrize("dname, tol", [("float32", 1e-3), ("bfloat16", 1e-2), ("float16", 1e-2)])
def test_layer_norm_large_offset_small_variance(dname, tol, device, rng):
    """Mean 1e4, standard deviation ~1: the two-pass statistics (mean summed from a shift)
    keep every digit the rounded input holds, compared with torch's float64 LayerNorm of the
    same rounded values. (torch's own float32 result is off by ~1e-3 here and its float16
    one by ~8e-2: that is why the reference is float64.)"""
    x = 1e4 + rng.standard_normal((6, 256))
    t = torch.tensor(x).to(getattr(torch, dname))
    exact = torch.nn.functional.layer_norm(t.double(), (256,)).numpy()
    got = F.layer_norm(tn.tensor(t.float().numpy(), device=device).to(getattr(tn, dname)),
                       256).double().numpy()
    assert np.isfinite(got).all()
    assert_close(got, exact, tol, tol, f"layer_norm at 1e4 {dname}")


@pytest.mark.parametrize("ulps", [1, 64])
def test_layer_norm_float32_values_a_few_ulps_apart(ulps, device):
    """float32 values 1e4 + {-1, 0, 1} * ulps * 2^-10 (ulps of 1e4): summed as offsets from
    the row's first element the mean keeps the deviations, so the row normalises as float64
    math on the same values does (a plain float32 sum rounds them away)."""
    rng = np.random.default_rng(3)
    x = (1e4 + rng.choice([-1, 0, 1], (4, 64)) * ulps * 2 ** -10).astype(np.float32)
    got = F.layer_norm(tn.tensor(x, device=device), 64, eps=0.0).numpy()
    xd = x.astype(np.float64)
    want = (xd - xd.mean(1, keepdims=True)) / xd.std(1, keepdims=True)
    assert_close(got, want, 1e-4, 1e-4, "normalised row")
    v = tn.tensor(x, device=device).var(1, unbiased=False).numpy()
    assert_close(v, xd.var(1), 0, 1e-4, "var of the rows")


def test_layer_norm_module_like_torch(device):
    tn.manual_seed(0)
    m = tn.nn.LayerNorm(8).to(device)
    tm = torch.nn.LayerNorm(8)
    assert list(m.state_dict()) == list(tm.state_dict()) == ["weight", "bias"]
    assert_close(m.weight.detach().numpy(), np.ones(8), 0, 0, "weight")
    assert_close(m.bias.detach().numpy(), np.zeros(8), 0, 0, "bias")
    assert repr(m) == repr(tm) == "LayerNorm((8,), eps=1e-05, elementwise_affine=True, bias=True)"
    m2 = tn.nn.LayerNorm((3, 4), eps=1e-6, elementwise_affine=False)
    assert m2.parameters() == [] and m2.weight is None
    tm2 = torch.nn.LayerNorm((3, 4), eps=1e-6, elementwise_affine=False)
    assert repr(m2) == repr(tm2)
    # load torch's trained-looking parameters and agree on a forward
    with torch.no_grad():
        tm.weight.uniform_(0.5, 1.5)
        tm.bias.uniform_(-1, 1)
    m.load_state_dict({k: tn.tensor(v.numpy()) for k, v in tm.state_dict().items()})
    a = np.random.default_rng(0).standard_normal((3, 5, 8)).astype(np.float32)
    assert_close(m(tn.tensor(a, device=device)).detach().numpy(),
                 tm(torch.tensor(a)).detach().numpy(), 2e-5, 2e-5, "LayerNorm forward")
    assert len(tn.nn.LayerNorm(8, bias=False).parameters()) == 1


def test_layer_norm_bf16_module(device):
    m = tn.nn.LayerNorm(16, dtype=tn.bfloat16, device=device)
    assert m.weight.dtype is tn.bfloat16
    y = m(tn.randn(4, 16, device=device).to(tn.bfloat16))
    y.float().sum().backward()
    assert m.weight.grad.dtype is tn.bfloat16 and m.bias.grad.dtype is tn.bfloat16


def test_layer_norm_weight_gradient_is_deterministic(device, rng):
    """dw/db are per-program partial sums added in a fixed order: bit-identical reruns."""
    x = rng.standard_normal((300, 40)).astype(np.float32)
    g = rng.standard_normal((300, 40)).astype(np.float32)
    runs = []
    for _ in range(2):
        w = tn.ones(40, device=device, requires_grad=True)
        b = tn.zeros(40, device=device, requires_grad=True)
        y = F.layer_norm(tn.tensor(x, device=device), 40, w, b)
        dw, db = tn.grad(y, [w, b], grad_outputs=tn.tensor(g, device=device))
        runs.append((dw.numpy().tobytes(), db.numpy().tobytes()))
    assert runs[0] == runs[1]


LN_BAD = [
    (lambda d: F.layer_norm(tn.ones(2, 3, device=d), (4,)), tn.ShapeError,
     r"layer_norm: normalized_shape \(4,\) does not match .*\(2, 3\)"),
    (lambda d: F.layer_norm(tn.ones(2, 3, device=d), 3, tn.ones(4, device=d)), tn.ShapeError,
     r"layer_norm: weight of shape \(4,\) does not match normalized_shape \(3,\)"),
    (lambda d: F.layer_norm(tn.ones(2, 3, device=d), 3, tn.ones(3, device=d, dtype=tn.float64)),
     tn.DTypeError, r"layer_norm: input is float32 but weight is float64"),
    (lambda d: F.layer_norm(tn.ones(2, 3, device=d, dtype=tn.int64), 3), tn.DTypeError,
     r"layer_norm: expected a floating-point tensor, got int64"),
    (lambda d: F.layer_norm(tn.ones(2, 3, device=d), ()), tn.ShapeError,
     r"layer_norm: normalized_shape must be one or more"),
    (lambda d: F.layer_norm(tn.ones(2, 3, device=d), "3"), tn.ShapeError,
     r"layer_norm: normalized_shape must be"),
    (lambda d: F.layer_norm(tn.ones(2, 3, device=d), 3, eps="x"), tn.DTypeError,
     r"layer_norm: eps must be a number"),
    (lambda d: F.layer_norm([1.0, 2.0], 2), tn.DTypeError, r"layer_norm: expected a tensor input"),
    (lambda d: tn.nn.LayerNorm(0), tn.ShapeError, r"LayerNorm: normalized_shape must be a "
                                                  r"positive int"),
    (lambda d: tn.nn.LayerNorm(2.5), tn.ShapeError, r"LayerNorm: normalized_shape"),
]


@pytest.mark.parametrize("i", range(len(LN_BAD)))
def test_layer_norm_refuses(i, device):
    build, cls, msg = LN_BAD[i]
    with pytest.raises(cls, match=msg):
        build(device)


def test_layer_norm_devices_mixed():
    pytest.importorskip("triton")
    from conftest import skip_without_cuda
    skip_without_cuda()
    with pytest.raises(tn.DeviceError, match="layer_norm"):
        F.layer_norm(tn.ones(2, 3), 3, tn.ones(3, device="cuda"))


@pytest.mark.parametrize("shape, nshape", [((3, 5), (5,)), ((2, 3, 4), (3, 4)), ((4,), (4,))])
def test_layer_norm_gradcheck(shape, nshape, rng):
    gradcheck(lambda x, w, b: F.layer_norm(x, nshape, w, b), [
        rng.standard_normal(shape), rng.uniform(0.5, 1.5, nshape), rng.standard_normal(nshape)],
        "layer_norm")
    gradcheck(lambda x: F.layer_norm(x, nshape), [rng.standard_normal(shape)], "layer_norm")


# ----------------------------------------------------------------------------------------------
# var, std, norm
# ----------------------------------------------------------------------------------------------

VAR_CASES = [((5,), None), ((3, 7), 1), ((3, 7), 0), ((2, 3, 4), (0, 2)), ((2, 3, 4), -1),
             ((), None), ((4, 1), 1)]


# keepdim only reshapes the result (ops._moments: the kernels and the backward's kept shape
# are the same either way), so it is crossed with one dtype, not all three
@pytest.mark.parametrize("keepdim, dname", [(False, "float32"), (False, "float64"),
                                            (False, "bfloat16"), (True, "float32")])
@pytest.mark.parametrize("shape, dim", VAR_CASES, ids=[f"{c[0]}-{c[1]}" for c in VAR_CASES])
def test_var_std_vs_torch(shape, dim, keepdim, dname, device, rng):
    x = rng.standard_normal(shape) + 3.0
    for name in ("var", "std"):
        for unbiased in (True, False):
            vs_torch(lambda x: getattr(x, name)(dim, unbiased, keepdim),
                     lambda x: getattr(x, name)(dim, unbiased=unbiased, keepdim=keepdim),
                     [x], dname, device, f"{name} {shape} dim={dim} unbiased={unbiased}")


@pytest.mark.parametrize("correction", [0, 1, 2, 0.5])
def test_var_correction_keyword(correction, device, rng):
    x = rng.standard_normal((4, 6))
    vs_torch(lambda x: x.var(1, correction=correction),
             lambda x: x.var(1, correction=correction), [x], "float32", device,
             f"var correction={correction}")
    vs_torch(lambda x: x.std(correction=correction), lambda x: x.std(correction=correction),
             [x], "float32", device, f"std correction={correction}")


def test_var_of_one_element_is_nan_as_torch(device):
    """One element, unbiased: 0 / 0 = NaN, forward and gradient, as torch gives."""
    for name in ("var", "std"):
        x = tn.tensor([2.5], device=device, requires_grad=True)
        t = torch.tensor([2.5], requires_grad=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = getattr(t, name)()
            r.backward()
        y = getattr(x, name)()
        y.backward()
        assert math.isnan(y.item()) and math.isnan(r.item())
        assert_close(x.grad.numpy(), t.grad.numpy(), 0, 0, f"{name} grad of one element")
        # biased: 0, and a gradient of 0 (var) or NaN (std: 0 / 0), as torch
        x = tn.tensor([2.5], device=device, requires_grad=True)
        t = torch.tensor([2.5], requires_grad=True)
        getattr(t, name)(unbiased=False).backward()
        y = getattr(x, name)(unbiased=False)
        y.backward()
        assert y.item() == 0.0
        assert_close(x.grad.numpy(), t.grad.numpy(), 0, 0, f"{name} biased grad of one element")


def test_var_nan_and_inf_propagate_as_torch(device):
    for vals in ([1.0, float("nan"), 2.0], [1.0, float("inf"), 2.0]):
        for name in ("var", "std", "norm"):
            got = getattr(tn.tensor(vals, device=device), name)().item()
            want = getattr(torch.tensor(vals), name)().item()
            assert (math.isnan(got) and math.isnan(want)) or got == want, (name, vals, got, want)


def test_var_full_reduction_of_a_long_row_splits_and_merges(device, rng):
    """A full reduction of 300k elements runs as column chunks merged by the law of total
    variance (on a GPU and under the interpreter alike); at a mean of 1e3 it stays exact."""
    x = (1e3 + rng.standard_normal(300_001)).astype(np.float32)
    t = torch.tensor(x, dtype=torch.float64)
    got = tn.tensor(x, device=device).var().item()
    assert abs(got - t.var().item()) <= 1e-5 * t.var().item()
    assert abs(tn.tensor(x, device=device).norm().item() - t.norm().item()) <= \
        1e-5 * t.norm().item()


NORM_PS = [2, "fro", 1, 3, 0.5, float("inf"), float("-inf"), 0]


@pytest.mark.parametrize("p", NORM_PS, ids=[str(p) for p in NORM_PS])
@pytest.mark.parametrize("shape, dim, keepdim", [((5,), None, False), ((3, 7), 1, False),
                                                 ((3, 7), 0, True), ((2, 3, 4), (0, 2), False),
                                                 ((2, 3), None, True)])
def test_norm_vs_torch(p, shape, dim, keepdim, device, rng):
    x = rng.uniform(0.3, 2.0, shape) * rng.choice([-1.0, 1.0], shape)
    for dname in ("float32", "float64"):
        vs_torch(lambda x: x.norm(p, dim, keepdim), lambda x: x.norm(p, dim, keepdim), [x],
                 dname, device, f"norm p={p} {shape} dim={dim}")


def test_norm_of_zeros_has_zero_gradient_as_torch(device):
    for p in (2, 3, 1.5, float("inf")):
        x = tn.zeros(4, device=device, requires_grad=True)
        t = torch.zeros(4, requires_grad=True)
        x.norm(p).backward()
        t.norm(p).backward()
        assert_close(x.grad.numpy(), t.grad.numpy(), 0, 0, f"grad of the {p}-norm at 0")


def test_norm_inf_ties_share_the_gradient(device):
    x = tn.tensor([[1.0, -3.0, 3.0, 2.0]], device=device, requires_grad=True)
    t = torch.tensor([[1.0, -3.0, 3.0, 2.0]], requires_grad=True)
    x.norm(float("inf"), 1).sum().backward()
    t.norm(float("inf"), 1).sum().backward()
    assert_close(x.grad.numpy(), t.grad.numpy(), 0, 0, "inf-norm ties")


def test_norm_low_precision(device, rng):
    x = rng.standard_normal((8, 300))
    for dname in ("bfloat16", "float16"):
        vs_torch(lambda x: x.norm(dim=1), lambda x: x.norm(dim=1), [x], dname, device,
                 f"norm {dname}")


VAR_BAD = [
    (lambda d: tn.tensor([1, 2], device=d).var(), tn.DTypeError,
     r"var: expected a floating-point tensor, got int64"),
    (lambda d: tn.ones(2, 3, device=d).std(dim=2), tn.IndexOutOfRange, r"std: dim 2 is out of"),
    (lambda d: tn.ones(2, device=d).var(unbiased=True, correction=1), tn.TritonnnError,
     r"var: give either unbiased or correction"),
    (lambda d: tn.ones(2, device=d).var(correction="1"), tn.DTypeError,
     r"var: correction must be a number"),
    (lambda d: tn.ones(2, device=d).var(0, keepdim=1), tn.DTypeError, r"var: keepdim must be a bool"),
    (lambda d: tn.ones(2, device=d).norm(p="nuc"), tn.DTypeError, r"norm: p must be a number"),
    (lambda d: tn.ones(2, device=d).norm(p=-1), tn.TritonnnError, r"norm: p must be >= 0"),
    (lambda d: tn.ones(0, device=d).norm(p=float("inf")), tn.ShapeError,
     r"norm: the inf norm of an empty dimension"),
]


@pytest.mark.parametrize("i", range(len(VAR_BAD)))
def test_var_norm_refuse(i, device):
    build, cls, msg = VAR_BAD[i]
    with pytest.raises(cls, match=msg):
        build(device)


@pytest.mark.parametrize("shape, dim", [((4,), None), ((3, 4), 1), ((2, 3, 2), (0, 2))])
def test_var_std_norm_gradcheck(shape, dim, rng):
    x = rng.standard_normal(shape)
    gradcheck(lambda x: x.var(dim), [x], "var")
    gradcheck(lambda x: x.var(dim, correction=0), [x], "var biased")
    gradcheck(lambda x: x.std(dim), [x], "std")
    for p in (2, 1, 3, 0.5, float("inf"), float("-inf")):
        gradcheck(lambda x: x.norm(p, dim), [rng.permutation(x.size).reshape(shape) * 0.37 + 0.2],
                  f"norm p={p}")


def test_rsqrt_and_abs_gradcheck(rng):
    gradcheck(lambda x: x.rsqrt(), [rng.uniform(0.5, 2.0, (3, 4))], "rsqrt")
    gradcheck(lambda x: x.abs(), [rng.uniform(0.2, 2.0, (5,)) * rng.choice([-1.0, 1.0], (5,))],
              "abs")


# ----------------------------------------------------------------------------------------------
# mse_loss
# ----------------------------------------------------------------------------------------------

MSE_CASES = [((4, 5), (4, 5)), ((7,), (7,)), ((), ()), ((3, 1), (3, 2)), ((2, 3, 4), (4,))]


@pytest.mark.parametrize("dname", ["float32", "float64", "bfloat16", "float16"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("sa, sb", MSE_CASES, ids=[f"{a}-{b}" for a, b in MSE_CASES])
def test_mse_loss_vs_torch(sa, sb, reduction, dname, device, rng):
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # the broadcasting warning, both libraries
        vs_torch(lambda a, b: F.mse_loss(a, b, reduction=reduction),
                 lambda a, b: torch.nn.functional.mse_loss(a, b, reduction=reduction),
                 [a, b], dname, device, f"mse_loss {sa} {sb} {reduction}")


def test_mse_loss_big_sum_is_split_and_deterministic(device, rng):
    a = rng.standard_normal(300_001).astype(np.float32)
    b = rng.standard_normal(300_001).astype(np.float32)
    want = torch.nn.functional.mse_loss(torch.tensor(a, dtype=torch.float64),
                                        torch.tensor(b, dtype=torch.float64)).item()
    got = [F.mse_loss(tn.tensor(a, device=device), tn.tensor(b, device=device)).item()
           for _ in range(2)]
    assert got[0] == got[1]
    assert abs(got[0] - want) <= 1e-5 * want


def test_mse_loss_of_nothing(device):
    e = tn.ones(0, device=device)
    assert math.isnan(F.mse_loss(e, e).item())
    assert F.mse_loss(e, e, reduction="sum").item() == 0.0


def test_mse_loss_integer_target_and_target_gradient(device):
    x = tn.tensor([1.0, 2.0, 4.0], device=device, requires_grad=True)
    y = tn.tensor([0, 4, 4], device=device)
    loss = F.mse_loss(x, y, reduction="sum")
    assert loss.item() == 5.0 and loss.dtype is tn.float32
    loss.backward()
    assert x.grad.tolist() == [2.0, -4.0, 0.0]
    # the target takes a gradient too when it requires one (-dx), as torch
    a = tn.tensor([1.0, 2.0], device=device, requires_grad=True)
    b = tn.tensor([0.5, 3.0], device=device, requires_grad=True)
    F.mse_loss(a, b).backward()
    assert a.grad.tolist() == [0.5, -1.0] and b.grad.tolist() == [-0.5, 1.0]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("sa, sb", [((3, 4), (3, 4)), ((3, 1), (4,)), ((), (2,))])
def test_mse_loss_gradcheck(sa, sb, reduction, rng):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gradcheck(lambda a, b: F.mse_loss(a, b, reduction=reduction),
                  [rng.standard_normal(sa), rng.standard_normal(sb)], f"mse_loss {reduction}")


def test_mse_loss_is_one_node(device):
    """The loss records one tape node (the fused op), not a chain of sub, mul and mean."""
    x = tn.ones(3, 4, device=device, requires_grad=True)
    loss = F.mse_loss(x, tn.zeros(3, 4, device=device))
    assert loss._node.name == "mse_loss"
    assert [n for n in loss._node.next if n is not None] == [x]
