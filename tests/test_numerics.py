"""Numerics at the edges: logits of +-1e4, one-hot-extreme rows, low precision, ReLU at exactly 0.

Each loss and normalizer is compared with a float64 numpy reference computed
from the very inputs the op saw (already rounded to the tested dtype), so the
tolerance only has to cover float32 accumulation at that magnitude plus one
rounding of the result to the output dtype. A kernel that accumulated in
bfloat16/float16, or that skipped the max-subtraction, fails these checks
(the wide rows make the accumulation error visible).
"""
import numpy as np
import pytest

import tritonnn as tn

F = tn.nn.functional

BIG = 1e4
EPS32 = float(np.finfo(np.float32).eps)
# (dtype, relative tolerance of one output rounding, absolute floor) per dtype
DTYPES = {
    "float32": (tn.float32, 4 * EPS32, 1e-6),
    "float16": (tn.float16, 2.0 ** -10, 1e-4),
    "bfloat16": (tn.bfloat16, 2.0 ** -7, 1e-3),
}


def _logits(c=5):
    """Rows at +-1e4 (alone, all equal, mixed, one-hot extreme) and one ordinary row, C = c."""
    rows = [
        [BIG] + [-BIG] * (c - 1),                # one huge winner, all others hugely negative
        [-BIG] * c,                              # every logit hugely negative
        [BIG] * c,                               # every logit hugely positive
        [BIG if j == 2 else 0.0 for j in range(c)],      # one-hot extreme at class 2
        [-BIG if j == 1 else 0.0 for j in range(c)],     # one-hot extreme, negative
        [BIG, BIG] + [-BIG] * (c - 2),           # a tie at the top
        list(np.linspace(-3.0, 2.5, c)),         # an ordinary row
    ]
    return np.array(rows, dtype=np.float64)


TARGETS = np.array([0, 3, 4, 2, 1, 1, 4])          # hits and misses of the extreme classes


def _wide(n=3, c=300):
    """Wide rows where accumulating exp-sums in a 16-bit float would be visibly wrong."""
    rng = np.random.default_rng(7)
    x = rng.uniform(-4.0, 4.0, (n, c))
    x[0, 17] = BIG
    x[1] -= BIG
    return x


def _to(x, dtype, device, rg=False):
    """The tensor and, in float64, exactly the values it holds after rounding to ``dtype``."""
    t = tn.tensor(np.asarray(x, np.float32), device=device).to(dtype)
    if rg:
        t.requires_grad_()
    return t, np.asarray(t.detach().to(tn.float64).numpy())


def _np(t):
    return np.asarray(t.detach().to(tn.float64).numpy())


def _check(what, got, want, dtype_name, log_scale=True, terms=None):
    """got ~ want within one output rounding plus float32 error at logits of magnitude 1e4.

    A log-sum-exp of logits near 1e4 is only known to ~eps32 * 1e4 in float32, absolutely;
    a log-domain result (log_softmax, a loss) inherits that as an absolute error
    (``log_scale``), a probability (softmax, a gradient) as a relative one. A gradient that
    is a difference (softmax - onehot) is compared relative to the size of its ``terms``.
    """
    _, rtol, floor = DTYPES[dtype_name]
    lse_err = 8 * EPS32 * BIG
    atol = max(floor, lse_err) if log_scale else floor
    rtol = rtol if log_scale else rtol + lse_err
    if terms is not None:
        atol = floor + 2 * rtol * np.abs(terms)
    assert np.all(np.isfinite(got)), f"{what}: non-finite at {np.argwhere(~np.isfinite(got))[:5]}"
    bad = ~np.isclose(got, want, rtol=rtol, atol=atol)
    if bad.any():
        idx = np.argwhere(bad)[:5]
        raise AssertionError(f"{what} ({dtype_name}): {int(bad.sum())} of {bad.size} elements "
                             f"differ beyond rtol={rtol:g} atol={np.max(atol):g}; first: "
                             + ", ".join(f"{tuple(i)} got {got[tuple(i)]!r} want {want[tuple(i)]!r}"
                                         for i in idx))


def ref_log_softmax(x, axis=-1):
    m = x.max(axis=axis, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True)))


def ref_bce(x, y):
    return np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))


def ref_sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


dtype_names = pytest.mark.parametrize("dname", list(DTYPES))


# ------------------------------------------------------------------------------------------------
# softmax and log_softmax
# ------------------------------------------------------------------------------------------------

@dtype_names
@pytest.mark.parametrize("make", [_logits, _wide], ids=["extreme", "wide"])
def test_softmax_and_log_softmax(device, dname, make):
    dtype = DTYPES[dname][0]
    x, xr = _to(make(), dtype, device, rg=True)
    want_log = ref_log_softmax(xr)
    y = F.softmax(x, dim=-1)
    ly = F.log_softmax(x, dim=-1)
    assert y.dtype is dtype and ly.dtype is dtype
    _check("softmax", _np(y), np.exp(want_log), dname, log_scale=False)
    _check("log_softmax", _np(ly), want_log, dname)
    rows = _np(y).sum(-1)
    assert np.allclose(rows, 1.0, atol=DTYPES[dname][1] * xr.shape[1]), rows
    # gradients: upstream weights so that neither backward is trivially zero
    w = np.linspace(-1.0, 1.0, xr.size).reshape(xr.shape)
    wt, wr = _to(w, dtype, device)
    gs = tn.grad(y, [x], grad_outputs=wt)[0]
    gl = tn.grad(ly, [x], grad_outputs=wt)[0]
    p = np.exp(want_log)
    dot = (wr * p).sum(-1, keepdims=True)
    _check("softmax grad", _np(gs), p * (wr - dot), dname, log_scale=False,
           terms=p * (np.abs(wr) + np.abs(dot)))
    total = wr.sum(-1, keepdims=True)
    _check("log_softmax grad", _np(gl), wr - p * total, dname, log_scale=False,
           terms=np.abs(wr) + p * np.abs(total))


def test_softmax_over_dim_0_at_extremes(device):
    x, xr = _to(_logits().T.copy(), tn.float32, device)
    _check("softmax dim 0", _np(F.softmax(x, dim=0)), np.exp(ref_log_softmax(xr, axis=0)),
           "float32", log_scale=False)


# ------------------------------------------------------------------------------------------------
# cross_entropy
# ------------------------------------------------------------------------------------------------

@dtype_names
@pytest.mark.parametrize("make", [_logits, _wide], ids=["extreme", "wide"])
def test_cross_entropy_at_extreme_logits(device, dname, make):
    dtype = DTYPES[dname][0]
    x, xr = _to(make(), dtype, device, rg=True)
    n, c = xr.shape
    target = (TARGETS[:n] if c == 5 else np.arange(n) * 7) % c
    t = tn.tensor(target, dtype=tn.int64, device=device)
    logp = ref_log_softmax(xr)
    per_row = -logp[np.arange(n), target]
    none = F.cross_entropy(x, t, reduction="none")
    assert none.dtype is dtype and none.shape == (n,)
    _check("cross_entropy none", _np(none), per_row, dname)
    _check("cross_entropy sum", _np(F.cross_entropy(x, t, reduction="sum")), per_row.sum(), dname)
    mean = F.cross_entropy(x, t)
    _check("cross_entropy mean", _np(mean), per_row.mean(), dname)
    # d mean / d logits = (softmax - onehot) / n: finite and right even at +-1e4
    (g,) = tn.grad(mean, [x])
    onehot = np.eye(c)[target]
    _check("cross_entropy grad", _np(g), (np.exp(logp) - onehot) / n, dname, log_scale=False,
           terms=(np.exp(logp) + onehot) / n)


def test_cross_entropy_one_hot_extremes_are_exact(device):
    # a 1e4 margin: the right class costs 0, a wrong one costs exactly the margin
    x = tn.tensor([[BIG, 0.0, 0.0], [BIG, 0.0, 0.0], [0.0, 0.0, -BIG]], device=device)
    t = tn.tensor([0, 1, 2], device=device)
    loss = F.cross_entropy(x, t, reduction="none").numpy()
    np.testing.assert_allclose(loss, [0.0, BIG, BIG + np.log(2.0)], rtol=1e-6, atol=1e-6)


def test_cross_entropy_with_ignored_rows_at_extremes(device):
    x, xr = _to(_logits(), tn.float32, device, rg=True)
    target = TARGETS.copy()
    target[[1, 3]] = -100
    t = tn.tensor(target, device=device)
    loss = F.cross_entropy(x, t)
    keep = target != -100
    want = -ref_log_softmax(xr)[keep, target[keep]].mean()
    _check("cross_entropy ignore", _np(loss), want, "float32")
    loss.backward()
    g = _np(x.grad)
    assert np.all(np.isfinite(g)) and np.all(g[~keep] == 0.0)


# ------------------------------------------------------------------------------------------------
# binary_cross_entropy_with_logits
# ------------------------------------------------------------------------------------------------

@dtype_names
def test_bce_with_logits_at_extremes(device, dname):
    dtype = DTYPES[dname][0]
    xs = np.array([[BIG, -BIG, 0.0, 30.0, -30.0, 2.5],
                   [-BIG, BIG, 1e-3, -17.0, 88.0, -0.5]])
    ys = np.array([[1.0, 0.0, 1.0, 0.0, 1.0, 0.5],
                   [1.0, 0.0, 0.0, 1.0, 0.25, 1.0]])
    x, xr = _to(xs, dtype, device, rg=True)
    y, yr = _to(ys, dtype, device)
    per = ref_bce(xr, yr)
    _check("bce none", _np(F.binary_cross_entropy_with_logits(x, y, reduction="none")), per,
           dname)
    mean = F.binary_cross_entropy_with_logits(x, y)
    _check("bce mean", _np(mean), per.mean(), dname)
    (g,) = tn.grad(mean, [x])
    _check("bce grad", _np(g), (ref_sigmoid(xr) - yr) / xr.size, dname, log_scale=False,
           terms=(ref_sigmoid(xr) + yr) / xr.size)


# ------------------------------------------------------------------------------------------------
# ReLU at exactly 0
# ------------------------------------------------------------------------------------------------

@dtype_names
def test_relu_gradient_at_zero_is_zero(device, dname):
    dtype = DTYPES[dname][0]
    x, _ = _to([-1.0, 0.0, 2.0, -0.0, 0.0, 3.0], dtype, device, rg=True)
    for fn in (F.relu, tn.relu, lambda t: t.relu(), tn.nn.ReLU()):
        (g,) = tn.grad((fn(x) * 2.0).sum(), [x])
        np.testing.assert_array_equal(_np(g), [0.0, 0.0, 2.0, 0.0, 0.0, 2.0])


# x @ w.T + b is exactly 0 at [0, 0], [0, 1] and [1, 1] (small integers, exact in every dtype)
X = [[1.0, -1.0], [2.0, 0.5]]
W = [[1.0, 1.0], [0.0, 0.0], [1.0, -1.0]]
B = [0.0, 0.0, -3.0]
PRE = np.array(X) @ np.array(W).T + np.array(B)       # [[0, 0, -1], [2.5, 0, -1.5]]
MASK = (PRE > 0).astype(np.float64)                   # the gradient flows only where pre > 0


@dtype_names
def test_fused_linear_relu_gradient_at_zero_is_zero(device, dname):
    dtype = DTYPES[dname][0]
    assert np.sum(PRE == 0) == 3
    x, xr = _to(X, dtype, device, rg=True)
    w, wr = _to(W, dtype, device, rg=True)
    b, _ = _to(B, dtype, device, rg=True)
    up = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    upt, upr = _to(up, dtype, device)
    out = F.linear(x, w, b, activation="relu")
    np.testing.assert_array_equal(_np(out), np.maximum(PRE, 0))
    gx, gw, gb = tn.grad((out * upt).sum(), [x, w, b])
    g = upr * MASK
    np.testing.assert_array_equal(_np(gx), g @ wr)
    np.testing.assert_array_equal(_np(gw), g.T @ xr)
    np.testing.assert_array_equal(_np(gb), g.sum(0))
    assert _np(gb)[1] == 0.0          # the unit whose pre-activation is 0 in both rows


def test_sequential_linear_relu_runs_fused_with_zero_gradient_at_zero(device):
    model = tn.nn.Sequential(tn.nn.Linear(2, 3), tn.nn.ReLU()).to(device)
    model.load_state_dict({"0.weight": tn.tensor(W), "0.bias": tn.tensor(B)})
    x = tn.tensor(X, device=device)
    out = model(x)
    assert out._node is not None and out._node.name == "linear_relu"     # one fused op
    out.sum().backward()
    np.testing.assert_array_equal(model[0].bias.grad.numpy(), MASK.sum(0))
    np.testing.assert_array_equal(model[0].weight.grad.numpy(), MASK.T @ np.array(X))
