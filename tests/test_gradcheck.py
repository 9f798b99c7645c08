"""Backward rules against float64 central finite differences (eps 1e-6) on "cpu".

Each check differentiates ``(f(*xs) * w).sum()`` for a random upstream ``w``
(so the rule sees a non-unit gradient), analytically through the tape and
numerically by perturbing every input element. Inputs stay clear of ReLU/abs
kinks and of max ties by more than eps.
"""
import numpy as np
import pytest

import tritonnn as tn
import tritonnn.nn.functional as F
from checks import assert_close

EPS = 1e-6


def gradcheck(f, arrays, what="", seed=0, eps=EPS, atol=1e-6, rtol=1e-5):
    """Compare tape gradients of ``(f(*xs) * w).sum()`` with central differences.

    Float arrays are float64 inputs that require grad; integer/bool arrays are constants.
    """
    arrays = [np.asarray(a) for a in arrays]
    arrays = [a.astype(np.float64) if a.dtype.kind == "f" else a for a in arrays]
    diff = [a.dtype.kind == "f" for a in arrays]
    xs = [tn.tensor(a, requires_grad=d) for a, d in zip(arrays, diff)]
    out = f(*xs)
    assert out.dtype is tn.float64
    w = np.random.default_rng(seed).uniform(0.5, 1.5, out.shape) * \
        np.random.default_rng(seed + 1).choice([-1.0, 1.0], out.shape)
    (out * tn.tensor(w)).sum().backward()

    def objective(vals):
        with tn.no_grad():
            y = f(*[tn.tensor(v) for v in vals])
        return float((y.numpy() * w).sum())

    checked = 0
    for k, (a, d) in enumerate(zip(arrays, diff)):
        if not d:
            continue
        num = np.zeros(a.shape)
        for idx in np.ndindex(a.shape):
            vals = [v.copy() for v in arrays]
            vals[k][idx] = a[idx] + eps
            up = objective(vals)
            vals[k][idx] = a[idx] - eps
            down = objective(vals)
            num[idx] = (up - down) / (2 * eps)
        got = np.zeros(a.shape) if xs[k].grad is None else xs[k].grad.numpy()
        assert_close(got, num, atol, rtol, f"{what}: input {k}")
        checked += 1
    assert checked == sum(diff)


def rnd(rng, shape, kind="any"):
    if kind == "pos":
        return rng.uniform(0.5, 2.0, shape)
    if kind == "nonzero":
        return rng.uniform(0.2, 2.0, shape) * rng.choice([-1.0, 1.0], shape)
    return rng.standard_normal(shape)


def distinct(rng, shape, gap=1e-3):
    """Values whose pairwise gaps all exceed ``gap`` (no max/min ties within eps)."""
    n = int(np.prod(shape, dtype=np.int64))
    v = rng.permutation(n) * 0.37 + rng.uniform(0, 0.3, n) - n * 0.18
    return v.reshape(shape)


# ----------------------------------------------------------------------------------------------
# elementwise
# ----------------------------------------------------------------------------------------------

UNARY = [
    ("neg", lambda x: -x, "any"), ("exp", lambda x: x.exp(), "any"),
    ("log", lambda x: x.log(), "pos"), ("sqrt", lambda x: x.sqrt(), "pos"),
    ("abs", lambda x: x.abs(), "nonzero"), ("tanh", lambda x: x.tanh(), "any"),
    ("sigmoid", lambda x: x.sigmoid(), "any"), ("relu", lambda x: x.relu(), "nonzero"),
    ("pow2", lambda x: x ** 2, "any"), ("pow3", lambda x: x ** 3, "any"),
    ("pow0.5", lambda x: x ** 0.5, "pos"), ("pow-2.5", lambda x: x ** -2.5, "pos"),
    ("rsub", lambda x: 1.5 - x, "any"), ("rdiv", lambda x: 2.0 / x, "pos"),
    ("rpow", lambda x: 1.7 ** x, "any"), ("rmod", lambda x: 2.5 % x, "nonzero"),
]


@pytest.mark.parametrize("shape", [(), (4,), (2, 3)])
@pytest.mark.parametrize("name, f, kind", UNARY, ids=[u[0] for u in UNARY])
def test_unary(name, f, kind, shape, rng):
    gradcheck(f, [rnd(rng, shape, kind)], name)


BINARY = [("add", lambda a, b: a + b), ("sub", lambda a, b: a - b), ("mul", lambda a, b: a * b),
          ("div", lambda a, b: a / b), ("maximum", tn.maximum), ("minimum", tn.minimum),
          ("mod", lambda a, b: a % b), ("floordiv", lambda a, b: a // b),
          ("pow", lambda a, b: a ** b)]


@pytest.mark.parametrize("sa, sb", [((2, 3), (2, 3)), ((2, 3), (3,)), ((3, 1), (1, 4)),
                                    ((), (3,)), ((2, 1, 3), (2, 1))])
@pytest.mark.parametrize("name, f", BINARY, ids=[b[0] for b in BINARY])
def test_binary(name, f, sa, sb, rng):
    a = rnd(rng, sa, "pos" if name == "pow" else "any")
    b = rnd(rng, sb, "nonzero")
    if name in ("maximum", "minimum"):
        shape = np.broadcast_shapes(sa, sb)
        if min(np.abs(np.broadcast_to(a, shape) - np.broadcast_to(b, shape)).ravel()) < 1e-3:
            b = b + 0.01        # keep away from ties
    gradcheck(f, [a, b], name)


@pytest.mark.parametrize("sc, sa, sb", [((2, 3), (2, 3), (2, 3)), ((3, 1), (1, 4), ()),
                                        ((4,), (2, 4), (1,))])
def test_where(sc, sa, sb, rng):
    cond = rng.random(sc) > 0.4
    gradcheck(lambda c, a, b: tn.where(c, a, b), [cond, rnd(rng, sa), rnd(rng, sb)], "where")


# ----------------------------------------------------------------------------------------------
# reductions
# ----------------------------------------------------------------------------------------------


RED_CASES = [(op, d) for op in ("sum", "mean", "amax", "amin") for d in (None, 0, 1, -1, (0, 2))]


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("op, dim", RED_CASES)
def test_reductions(op, dim, keepdim, rng):
    a = distinct(rng, (2, 3, 4))
    if dim is None:
        f = lambda x: getattr(x, {"amax": "max", "amin": "min"}.get(op, op))()  # noqa: E731
    else:
        f = lambda x: getattr(x, op)(dim, keepdim=keepdim)  # noqa: E731
    gradcheck(f, [a], f"{op}({dim}, {keepdim})")


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_max_dim_values(dim, keepdim, rng):
    gradcheck(lambda x: x.max(dim, keepdim=keepdim)[0], [distinct(rng, (3, 4, 2))], "max(dim)")


# ----------------------------------------------------------------------------------------------
# products
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sa, sb", [((3,), (3,)), ((3,), (3, 2)), ((2, 3), (3,)), ((2, 3), (3, 4)),
                                    ((2, 2, 3), (3, 2)), ((2, 1, 2, 3), (2, 3, 2))])
def test_matmul(sa, sb, rng):
    gradcheck(lambda a, b: a @ b, [rnd(rng, sa), rnd(rng, sb)], "matmul")


def _linear_inputs(rng, sx, sw, bias, relu):
    """Inputs whose pre-activations all sit at least 1e-3 away from the ReLU kink."""
    for _ in range(100):
        x, w = rnd(rng, sx), rnd(rng, sw)
        b = rnd(rng, sw[:1]) if bias else None
        pre = x @ w.T + (0 if b is None else b)
        if not relu or np.abs(pre).min() > 1e-3:
            return [x, w] + ([b] if bias else [])
    raise AssertionError("could not draw inputs away from the kink")


@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("sx, sw, bias", [((4, 3), (5, 3), True), ((4, 3), (2, 3), False),
                                          ((2, 2, 3), (4, 3), True), ((3,), (2, 3), True)])
def test_linear(sx, sw, bias, activation, rng):
    arrays = _linear_inputs(rng, sx, sw, bias, activation == "relu")
    gradcheck(lambda *t: F.linear(*t, activation=activation), arrays, f"linear {activation}")


def test_sequential_fused_linear_relu(rng):
    tn.manual_seed(3)
    model = tn.nn.Sequential(tn.nn.Linear(3, 5), tn.nn.ReLU(), tn.nn.Linear(5, 2)).to(tn.float64)
    x = rnd(rng, (4, 3))
    params = [p.detach().numpy().copy() for p in model.parameters()]
    h = np.maximum(x @ params[0].T + params[1], 0)
    assert np.abs(x @ params[0].T + params[1]).min() > 1e-3

    def f(w1, b1, w2, b2):
        h = F.linear(tn.tensor(x), w1, b1, activation="relu")
        return F.linear(h, w2, b2)
    gradcheck(f, params, "linear+relu -> linear")
    assert h.shape == (4, 5)


# ----------------------------------------------------------------------------------------------
# views and joins
# ----------------------------------------------------------------------------------------------

VIEWS = [
    ("reshape", (2, 3), lambda x: x.reshape(3, -1) * x.reshape(3, 2)),
    ("permute", (2, 3, 2), lambda x: x.permute(1, 2, 0)),
    ("transpose", (2, 3), lambda x: x.transpose(0, 1) @ x),
    ("t", (2, 3), lambda x: x.t()),
    ("expand", (3, 1), lambda x: x.expand(2, 3, 4)),
    ("getitem", (4, 3), lambda x: x[1:3, -1] * x[0, :2]),
    ("getitem-col", (4, 3), lambda x: x[:, 1]),
    ("squeeze", (3, 1, 2), lambda x: x.squeeze(1)),
    ("unsqueeze", (3, 2), lambda x: x.unsqueeze(0) + x.unsqueeze(1)),
    ("flatten", (2, 3), lambda x: x.flatten()),
]


@pytest.mark.parametrize("name, shape, f", VIEWS, ids=[v[0] for v in VIEWS])
def test_views(name, shape, f, rng):
    gradcheck(f, [rnd(rng, shape)], name)


def test_getitem_int_tensor(rng):
    idx = np.array([2, 0, 2, 3])
    gradcheck(lambda x, i: x[i], [rnd(rng, (4, 3)), idx], "x[idx] with repeats")
    gradcheck(lambda x, i: x[:, i[:2]], [rnd(rng, (4, 3)), idx], "x[:, idx]")


def test_cat_stack(rng):
    gradcheck(lambda a, b: tn.cat([a, b, a], dim=1), [rnd(rng, (2, 3)), rnd(rng, (2, 1))], "cat")
    gradcheck(lambda a, b: tn.stack([a, b], dim=-1), [rnd(rng, (2, 3)), rnd(rng, (2, 3))], "stack")


# ----------------------------------------------------------------------------------------------
# softmax family and losses
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("log", [False, True])
def test_softmax(dim, log, rng):
    f = (lambda x: F.log_softmax(x, dim)) if log else (lambda x: F.softmax(x, dim))
    gradcheck(f, [rnd(rng, (3, 4)) * 2], f"{'log_' if log else ''}softmax({dim})")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ignore, smoothing", [(False, 0.0), (True, 0.0), (False, 0.1), (True, 0.1)])
def test_cross_entropy(reduction, ignore, smoothing, rng):
    n, c = 5, 4
    target = rng.integers(0, c, n)
    if ignore:
        target[[1, 3]] = -100
    gradcheck(lambda x, t: F.cross_entropy(x, t, reduction=reduction, label_smoothing=smoothing),
              [rnd(rng, (n, c)) * 2, target], f"cross_entropy {reduction} {ignore} {smoothing}")


def test_cross_entropy_not_last_layer(rng):
    """CE of logits that also feed another term: the fused backward must not clobber them."""
    target = rng.integers(0, 3, 4)

    def f(x, w):
        logits = x @ w
        return F.cross_entropy(logits, tn.tensor(target)) * 1.7 + (logits * logits).sum() * 0.1
    gradcheck(f, [rnd(rng, (4, 2)), rnd(rng, (2, 3))], "CE + logits**2")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_with_logits(reduction, rng):
    x = rnd(rng, (3, 4)) * 3
    y = rng.random((3, 4))
    gradcheck(lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction), [x, y],
              f"bce {reduction}")


def test_mlp_end_to_end(rng):
    """A 2-layer MLP with fused linear+ReLU and cross-entropy: every parameter."""
    x = rnd(rng, (6, 3))
    target = np.array([0, 2, 1, 1, 0, 2])
    for _ in range(100):
        w1, b1 = rnd(rng, (4, 3)), rnd(rng, (4,))
        if np.abs(x @ w1.T + b1).min() > 1e-3:
            break
    w2, b2 = rnd(rng, (3, 4)), rnd(rng, (3,))

    def f(w1, b1, w2, b2):
        h = F.linear(tn.tensor(x), w1, b1, activation="relu")
        return F.cross_entropy(F.linear(h, w2, b2), tn.tensor(target), label_smoothing=0.05)
    gradcheck(f, [w1, b1, w2, b2], "mlp")


def test_cast_float32_path(rng):
    """A float32 detour: coarser differences, but the gradient still flows through both casts."""
    a = rnd(rng, (3, 2))
    gradcheck(lambda x: (x.to(tn.float32) * 3).exp().to(tn.float64), [a], "cast f32",
              eps=1e-2, atol=1e-3, rtol=1e-3)
