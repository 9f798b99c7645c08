"""Every differentiable op on "cpu", forward and backward, against torch.

Each check builds the same inputs in both libraries, compares the forward, then
backpropagates a non-unit upstream gradient ``(out * w).sum()`` and compares
every input's gradient: float64 to 1e-10, float32 to 1e-5.
"""
import numpy as np
import pytest
import torch

import tritonnn as tn
import tritonnn.nn.functional as F
from checks import assert_close

TOL = {"float64": (1e-10, 1e-10), "float32": (1e-5, 1e-5)}
NP = {"float64": np.float64, "float32": np.float32}
TH = {"float64": torch.float64, "float32": torch.float32}
DTYPES = ["float32", "float64"]


def rnd(rng, shape, kind="any"):
    if kind == "pos":
        return rng.uniform(0.5, 2.0, shape)
    if kind == "nonzero":   # away from 0 (division, kinks)
        return rng.uniform(0.3, 2.0, shape) * rng.choice([-1.0, 1.0], shape)
    return rng.standard_normal(shape) * 1.5


def _check(fn_tn, fn_th, arrays, dtype, what="", tol=None, seed=1):
    """Forward of ``fn`` on both libraries, then the gradients of ``(out * w).sum()``.

    Float arrays become inputs that require grad (in ``dtype``); integer and
    bool arrays are passed as constant tensors of their own dtype.
    """
    atol, rtol = tol or TOL[dtype]
    xs, ts = [], []
    for a in arrays:
        if a.dtype.kind == "f":
            a = a.astype(NP[dtype])
            xs.append(tn.tensor(a, requires_grad=True))
            ts.append(torch.tensor(a, requires_grad=True))
        else:
            xs.append(tn.tensor(a))
            ts.append(torch.tensor(a))
    out = fn_tn(*xs)
    ref = fn_th(*ts)
    assert out.dtype is getattr(tn, dtype), f"{what}: output dtype {out.dtype}"
    assert out.shape == tuple(ref.shape), f"{what}: shape {out.shape} vs torch {tuple(ref.shape)}"
    assert_close(out.detach().numpy(), ref.detach().numpy(), atol, rtol, f"{what} forward")
    w = np.random.default_rng(seed).standard_normal(ref.shape).astype(NP[dtype])
    (out * tn.tensor(w)).sum().backward()
    (ref * torch.tensor(w)).sum().backward()
    n_checked = 0
    for i, (x, t) in enumerate(zip(xs, ts)):
        if not t.requires_grad:
            continue
        want = np.zeros(t.shape) if t.grad is None else t.grad.numpy()
        got = np.zeros(t.shape) if x.grad is None else x.grad.numpy()
        if x.grad is not None:
            assert x.grad.dtype is x.dtype and x.grad.shape == x.shape
        assert_close(got, want, atol, rtol, f"{what} grad of input {i}")
        n_checked += 1
    return n_checked


# ----------------------------------------------------------------------------------------------
# elementwise
# ----------------------------------------------------------------------------------------------

UNARY = [
    ("neg", lambda x: -x, lambda x: -x, "any"),
    ("exp", lambda x: x.exp(), lambda x: x.exp(), "any"),
    ("log", lambda x: x.log(), lambda x: x.log(), "pos"),
    ("sqrt", lambda x: x.sqrt(), lambda x: x.sqrt(), "pos"),
    ("abs", lambda x: x.abs(), lambda x: x.abs(), "nonzero"),
    ("tanh", lambda x: x.tanh(), lambda x: x.tanh(), "any"),
    ("sigmoid", lambda x: x.sigmoid(), lambda x: x.sigmoid(), "any"),
    ("F.sigmoid", F.sigmoid, torch.sigmoid, "any"),
    ("relu", lambda x: x.relu(), lambda x: x.relu(), "nonzero"),
    ("F.relu", F.relu, torch.relu, "nonzero"),
]
SHAPES = [(), (1,), (5,), (3, 4), (2, 1, 3)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name, f_tn, f_th, kind", UNARY, ids=[u[0] for u in UNARY])
def test_unary(name, f_tn, f_th, kind, shape, dtype, rng):
    assert _check(f_tn, f_th, [rnd(rng, shape, kind)], dtype, name) == 1


BINARY = [
    ("add", lambda a, b: a + b),
    ("sub", lambda a, b: a - b),
    ("mul", lambda a, b: a * b),
    ("div", lambda a, b: a / b),
    ("mod", lambda a, b: a % b),
    ("pow", lambda a, b: a ** b),
    ("maximum", lambda a, b: a.maximum(b)),
    ("minimum", lambda a, b: a.minimum(b)),
]
PAIRS = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((5, 1), (1, 6)), ((1,), (7,)),
         ((2, 1, 3), (4, 1)), ((), (3,)), ((3, 1), ()), ((1, 1), (1, 1))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sa, sb", PAIRS)
@pytest.mark.parametrize("name, f", BINARY, ids=[b[0] for b in BINARY])
def test_binary_broadcast(name, f, sa, sb, dtype, rng):
    a, b = rnd(rng, sa, "pos" if name == "pow" else "any"), rnd(rng, sb, "nonzero")
    if name in ("maximum", "minimum"):
        f_th = getattr(torch, name)
        f_tn = getattr(tn, name)
        assert _check(f_tn, f_th, [a, b], dtype, name) == 2
    else:
        assert _check(f, f, [a, b], dtype, name) == 2


@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_same_tensor_twice(dtype, rng):
    a = rnd(rng, (3, 4), "nonzero")
    _check(lambda x: x * x + x / x - x, lambda x: x * x + x / x - x, [a], dtype, "x*x+x/x-x")
    _check(lambda x: x.T @ x, lambda x: x.T @ x, [a], dtype, "x.T @ x")


def test_maximum_ties_split_gradient():
    # torch gives each side half the gradient on ties
    a = np.array([1.0, 2.0, 3.0])
    b = np.array([1.0, 5.0, 3.0])
    _check(tn.maximum, torch.maximum, [a, b], "float64", "maximum ties")
    _check(tn.minimum, torch.minimum, [a, b], "float64", "minimum ties")


SCALAR_OPS = [
    ("t+s", lambda x: x + 2.5), ("s+t", lambda x: 2.5 + x), ("t-s", lambda x: x - 1.25),
    ("s-t", lambda x: 1.25 - x), ("t*s", lambda x: x * -3.0), ("s*t", lambda x: -3.0 * x),
    ("t/s", lambda x: x / 4.0), ("s/t", lambda x: 4.0 / x), ("t*int", lambda x: x * 2),
    ("pow2", lambda x: x ** 2), ("pow3", lambda x: x ** 3), ("pow0.5", lambda x: x ** 0.5),
    ("pow-1.5", lambda x: x ** -1.5), ("pow1", lambda x: x ** 1), ("pow.method", lambda x: x.pow(2.5)),
    ("t%s", lambda x: x % 0.75), ("rpow", lambda x: 1.5 ** x),   # torch has no d(s % t)/dt
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (4,), (2, 3)])
@pytest.mark.parametrize("name, f", SCALAR_OPS, ids=[s[0] for s in SCALAR_OPS])
def test_scalar_operands(name, f, shape, dtype, rng):
    kind = "pos" if name.startswith("pow") or name == "s/t" else "any"
    assert _check(f, f, [rnd(rng, shape, kind)], dtype, name) == 1


def test_floor_divide_has_zero_gradient(rng):
    # torch records no derivative for floor_divide; tritonnn's is zero, as the step function's
    a = tn.tensor(rnd(rng, (3, 4)), requires_grad=True)
    b = tn.tensor(rnd(rng, (4,), "nonzero"), requires_grad=True)
    ((a // b) * 3.0).sum().backward()
    assert not a.grad.numpy().any() and not b.grad.numpy().any()
    assert b.grad.shape == (4,)


# integer, bool and float arithmetic that has no gradient to check: values and dtypes
# against torch on both devices (the kernels match the numpy mirror bit for bit)
ARITH_DTYPES = ["int64", "int32", "uint8", "float32", "float64", "float16", "bfloat16"]


def _values(rng, dtype, shape, divisor=False):
    if dtype == "uint8":
        v = rng.integers(1 if divisor else 0, 256, shape)
    elif dtype.startswith("int"):
        v = rng.integers(-40, 41, shape)
        if divisor:
            v = np.where(v == 0, 3, v)
    else:
        v = np.round(rng.standard_normal(shape) * 20, 1)
        if divisor:
            v[..., :2] = [0.0, -0.0]          # inf, NaN and signed zeros, as torch
    return v


@pytest.mark.parametrize("dtype", ARITH_DTYPES)
@pytest.mark.parametrize("op", ["//", "%"])
def test_floor_divide_and_remainder_values(op, dtype, device, rng):
    a, b = _values(rng, dtype, (5, 7)), _values(rng, dtype, (7,), divisor=True)
    td = getattr(torch, dtype)
    f = (lambda x, y: x // y) if op == "//" else (lambda x, y: x % y)
    ta, tb = torch.tensor(a).to(td), torch.tensor(b).to(td)
    xa = tn.tensor(ta, device=device)
    xb = tn.tensor(tb, device=device)
    for got, want in ((f(xa, xb), f(ta, tb)), (f(xa, 3), f(ta, 3)), (f(29, xb), f(29, tb))):
        assert str(got.dtype) == str(want.dtype).replace("torch.", "")
        np.testing.assert_array_equal(np.asarray(got.tolist(), np.float64),
                                      np.asarray(want.tolist(), np.float64), err_msg=op)


@pytest.mark.parametrize("dtype", ["int64", "int32", "uint8"])
def test_integer_pow_values(dtype, device, rng):
    td = getattr(torch, dtype)
    base = torch.tensor(rng.integers(0 if dtype == "uint8" else -7, 8, (4, 9))).to(td)
    e = torch.tensor(rng.integers(0 if dtype == "uint8" else -3, 45, (9,))).to(td)
    x, y = tn.tensor(base, device=device), tn.tensor(e, device=device)
    for got, want in ((x ** y, base ** e), (x ** 13, base ** 13), (2 ** y, 2 ** e),
                      (x ** 0, base ** 0)):
        assert str(got.dtype) == str(want.dtype).replace("torch.", "")
        assert got.tolist() == want.tolist()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sc, sa, sb", [((3, 4), (3, 4), (3, 4)), ((3, 1), (1, 4), (3, 4)),
                                        ((4,), (3, 4), ()), ((2, 3, 1), (3, 5), (1,))])
def test_where(sc, sa, sb, dtype, rng):
    cond = rng.random(sc) > 0.5
    _check(lambda c, a, b: tn.where(c, a, b), torch.where, [cond, rnd(rng, sa), rnd(rng, sb)],
           dtype, "where")


@pytest.mark.parametrize("dtype", DTYPES)
def test_where_with_scalar(dtype, rng):
    a = rnd(rng, (3, 4))
    _check(lambda x: tn.where(x > 0, x, 0.0), lambda x: torch.where(x > 0, x, 0.0), [a], dtype,
           "where(x>0, x, 0.0)")


# ----------------------------------------------------------------------------------------------
# reductions
# ----------------------------------------------------------------------------------------------

RED_SHAPES = [(3, 4, 5), (1, 6), (7,), (2, 1, 3), ()]


def _dims_of(shape):
    ds = [None] + list(range(-len(shape), len(shape)))
    if len(shape) == 3:
        ds += [(0, 2), (1, -1)]
    return ds


RED_CASES = [(s, d) for s in RED_SHAPES for d in _dims_of(s)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("shape, dim", RED_CASES)
def test_sum_mean(shape, dim, keepdim, dtype, rng):
    a = rnd(rng, shape)
    if dim is None:
        _check(lambda x: x.sum(), lambda x: x.sum(), [a], dtype, "sum()")
        _check(lambda x: x.mean(), lambda x: x.mean(), [a], dtype, "mean()")
        return
    _check(lambda x: x.sum(dim, keepdim=keepdim), lambda x: x.sum(dim, keepdim=keepdim), [a],
           dtype, f"sum({dim}, {keepdim})")
    _check(lambda x: x.mean(dim=dim, keepdim=keepdim), lambda x: x.mean(dim=dim, keepdim=keepdim),
           [a], dtype, f"mean({dim}, {keepdim})")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("shape, dim", RED_CASES)
def test_max_min(shape, dim, keepdim, dtype, rng):
    a = rnd(rng, shape)                   # continuous values: no ties
    if dim is None:
        _check(lambda x: x.max(), lambda x: x.max(), [a], dtype, "max()")
        _check(lambda x: x.min(), lambda x: x.min(), [a], dtype, "min()")
        return
    _check(lambda x: x.amax(dim, keepdim=keepdim), lambda x: x.amax(dim, keepdim=keepdim), [a],
           dtype, f"amax({dim}, {keepdim})")
    if isinstance(dim, tuple):
        return
    _check(lambda x: x.amin(dim, keepdim=keepdim), lambda x: x.amin(dim, keepdim=keepdim), [a],
           dtype, f"amin({dim}, {keepdim})")
    _check(lambda x: x.min(dim, keepdim=keepdim)[0], lambda x: x.min(dim, keepdim=keepdim)[0],
           [a], dtype, f"min({dim}, {keepdim}).values")
    idx = tn.tensor(a).min(dim, keepdim=keepdim)[1]
    assert idx.dtype is tn.int64
    np.testing.assert_array_equal(idx.numpy(),
                                  torch.tensor(a).min(dim, keepdim=keepdim)[1].numpy())
    _check(lambda x: x.max(dim, keepdim=keepdim)[0], lambda x: x.max(dim, keepdim=keepdim)[0],
           [a], dtype, f"max({dim}, {keepdim}).values")
    idx = tn.tensor(a).max(dim, keepdim=keepdim)[1]
    assert idx.dtype is tn.int64
    np.testing.assert_array_equal(idx.numpy(),
                                  torch.tensor(a).max(dim, keepdim=keepdim)[1].numpy())


def test_max_ties_gradient():
    a = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]])
    # full reduction: torch splits the gradient evenly among the tied maxima
    _check(lambda x: x.max(), lambda x: x.max(), [a], "float64", "max() ties")
    _check(lambda x: x.amax(1), lambda x: x.amax(1), [a], "float64", "amax(1) ties")
    # max(dim) routes it to the returned index
    x = tn.tensor(a, requires_grad=True)
    v, i = x.max(1)
    v.sum().backward()
    got = x.grad.numpy()
    assert got.sum() == 2.0
    np.testing.assert_array_equal(np.argmax(got, 1), i.numpy())


# ----------------------------------------------------------------------------------------------
# products
# ----------------------------------------------------------------------------------------------

MATMUL = [((4,), (4,)), ((4,), (4, 3)), ((2, 4), (4,)), ((2, 4), (4, 3)), ((1, 1), (1, 1)),
          ((5, 2, 4), (4, 3)), ((4, 3), (5, 3, 2)), ((2, 1, 3, 4), (5, 4, 2)), ((3,), (2, 3, 5)),
          ((2, 3, 5), (5,))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sa, sb", MATMUL)
def test_matmul(sa, sb, dtype, rng):
    a, b = rnd(rng, sa), rnd(rng, sb)
    assert _check(lambda x, y: x @ y, lambda x, y: x @ y, [a, b], dtype, "matmul") == 2
    _check(lambda x, y: x.matmul(y), torch.matmul, [a, b], dtype, "matmul()")


LINEAR = [((5, 4), (3, 4), True), ((5, 4), (3, 4), False), ((1, 7), (1, 7), True),
          ((2, 3, 4), (6, 4), True), ((4,), (3, 4), True), ((9, 1), (2, 1), False)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("sx, sw, bias", LINEAR)
def test_linear(sx, sw, bias, activation, dtype, rng):
    arrays = [rnd(rng, sx), rnd(rng, sw)] + ([rnd(rng, sw[:1])] if bias else [])

    def f_tn(x, w, b=None):
        return F.linear(x, w, b, activation=activation)

    def f_th(x, w, b=None):
        y = torch.nn.functional.linear(x, w, b)
        return torch.relu(y) if activation == "relu" else y
    assert _check(f_tn, f_th, arrays, dtype, f"linear {activation}") == len(arrays)


def test_linear_relu_with_zero_rows():
    # whole rows and columns clipped by the ReLU still get exact zero gradients
    x = np.array([[1.0, 2.0], [-1.0, -2.0], [0.5, -0.25]])
    w = np.array([[1.0, 1.0], [-1.0, 0.5], [2.0, -3.0]])
    b = np.array([0.1, -0.2, 0.0])
    _check(lambda *t: F.linear(*t, activation="relu"),
           lambda *t: torch.relu(torch.nn.functional.linear(*t)), [x, w, b], "float64", "linear_relu")


def test_linear_errors():
    with pytest.raises(tn.ShapeError):
        F.linear(tn.zeros(2, 3), tn.zeros(4, 5))
    with pytest.raises(tn.ShapeError):
        F.linear(tn.zeros(2, 3), tn.zeros(4, 3), tn.zeros(3))
    with pytest.raises(tn.TritonnnError):
        F.linear(tn.zeros(2, 3), tn.zeros(4, 3), activation="gelu")


# ----------------------------------------------------------------------------------------------
# views and joins
# ----------------------------------------------------------------------------------------------

VIEWS = [
    ("reshape", (3, 4), lambda x: x.reshape(2, -1, 3), lambda x: x.reshape(2, -1, 3)),
    ("reshape-tuple", (2, 3, 4), lambda x: x.reshape((4, 6)), lambda x: x.reshape((4, 6))),
    ("reshape-of-T", (3, 4), lambda x: x.t().reshape(-1), lambda x: x.t().reshape(-1)),
    ("flatten", (2, 3, 4), lambda x: x.flatten(), lambda x: x.flatten()),
    ("permute", (2, 3, 4), lambda x: x.permute(2, 0, 1), lambda x: x.permute(2, 0, 1)),
    ("transpose", (2, 3, 4), lambda x: x.transpose(0, 2), lambda x: x.transpose(0, 2)),
    ("t", (3, 5), lambda x: x.t(), lambda x: x.t()),
    ("T", (1, 5), lambda x: x.T, lambda x: x.T),
    ("expand", (3, 1), lambda x: x.expand(2, 3, 5), lambda x: x.expand(2, 3, 5)),
    ("expand-1", (1, 4), lambda x: x.expand(3, -1), lambda x: x.expand(3, -1)),
    ("index-int", (4, 5), lambda x: x[2], lambda x: x[2]),
    ("index-neg", (4, 5), lambda x: x[-1, 1:4], lambda x: x[-1, 1:4]),
    ("index-col", (4, 5), lambda x: x[:, 3], lambda x: x[:, 3]),
    ("index-step", (6, 5), lambda x: x[::2, 1::3], lambda x: x[::2, 1::3]),
    ("index-ellipsis", (2, 3, 4), lambda x: x[..., 1], lambda x: x[..., 1]),
    ("index-none", (3, 4), lambda x: x[None, 1:], lambda x: x[None, 1:]),
    ("index-scalar", (3, 4), lambda x: x[1, 2], lambda x: x[1, 2]),
    ("squeeze", (3, 1, 4, 1), lambda x: x.squeeze(), lambda x: x.squeeze()),
    ("squeeze-dim", (3, 1, 4), lambda x: x.squeeze(1), lambda x: x.squeeze(1)),
    ("squeeze-noop", (3, 2), lambda x: x.squeeze(0), lambda x: x.squeeze(0)),
    ("unsqueeze", (3, 4), lambda x: x.unsqueeze(1), lambda x: x.unsqueeze(1)),
    ("unsqueeze-neg", (3, 4), lambda x: x.unsqueeze(-1), lambda x: x.unsqueeze(-1)),
    ("unsqueeze-0d", (), lambda x: x.unsqueeze(0), lambda x: x.unsqueeze(0)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, shape, f_tn, f_th", VIEWS, ids=[v[0] for v in VIEWS])
def test_views(name, shape, f_tn, f_th, dtype, rng):
    assert _check(f_tn, f_th, [rnd(rng, shape)], dtype, name) == 1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("idx", [[0, 2, 0, 3], [3], [-1, 1]])
def test_index_with_int_tensor(idx, dtype, rng):
    a = rnd(rng, (4, 5))
    i = np.array(idx, dtype=np.int64)
    _check(lambda x, j: x[j], lambda x, j: x[j], [a, i], dtype, "x[idx]")
    _check(lambda x, j: x[:, j], lambda x, j: x[:, j], [a, i], dtype, "x[:, idx]")
    _check(lambda x, j: x[j, 1:], lambda x, j: x[j, 1:], [a, i], dtype, "x[idx, 1:]")


@pytest.mark.parametrize("dtype", DTYPES)
def test_index_with_bool_mask(dtype, rng):
    a = rnd(rng, (5, 3))
    m = np.array([True, False, True, True, False])
    _check(lambda x, k: x[k], lambda x, k: x[k], [a, m], dtype, "x[mask]")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes, dim", [([(2, 3), (4, 3), (1, 3)], 0), ([(2, 3), (2, 1)], 1),
                                         ([(2, 3, 4), (2, 3, 2)], -1), ([(5,)], 0)])
def test_cat(shapes, dim, dtype, rng):
    arrays = [rnd(rng, s) for s in shapes]
    assert _check(lambda *t: tn.cat(t, dim=dim), lambda *t: torch.cat(t, dim=dim), arrays, dtype,
                  "cat") == len(arrays)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, n, dim", [((2, 3), 3, 0), ((2, 3), 2, 1), ((2, 3), 2, -1),
                                           ((4,), 1, 0), ((), 3, 0)])
def test_stack(shape, n, dim, dtype, rng):
    arrays = [rnd(rng, shape) for _ in range(n)]
    assert _check(lambda *t: tn.stack(t, dim=dim), lambda *t: torch.stack(t, dim=dim), arrays,
                  dtype, "stack") == n


@pytest.mark.parametrize("dtype", DTYPES)
def test_cat_same_tensor_twice(dtype, rng):
    a = rnd(rng, (2, 3))
    _check(lambda x: tn.cat([x, x * 2], 0), lambda x: torch.cat([x, x * 2], 0), [a], dtype,
           "cat x twice")


# ----------------------------------------------------------------------------------------------
# softmax family and losses
# ----------------------------------------------------------------------------------------------

SOFTMAX_CASES = [(s, d) for s in [(3, 4, 5), (1, 7), (6,), (4, 1)] for d in range(-len(s), len(s))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, dim", SOFTMAX_CASES)
def test_softmax_log_softmax(shape, dim, dtype, rng):
    a = rnd(rng, shape) * 2
    _check(lambda x: F.softmax(x, dim), lambda x: torch.softmax(x, dim), [a], dtype, "softmax")
    _check(lambda x: tn.softmax(x, dim), lambda x: torch.softmax(x, dim), [a], dtype, "tn.softmax")
    _check(lambda x: x.softmax(dim), lambda x: x.softmax(dim), [a], dtype, "x.softmax")
    _check(lambda x: F.log_softmax(x, dim), lambda x: torch.log_softmax(x, dim), [a], dtype,
           "log_softmax")
    _check(lambda x: x.log_softmax(dim), lambda x: x.log_softmax(dim), [a], dtype, "x.log_softmax")


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_extreme_values(dtype):
    a = np.array([[1000.0, 0.0, -1000.0], [-500.0, -500.0, -499.0]])
    _check(lambda x: F.softmax(x, 1), lambda x: torch.softmax(x, 1), [a], dtype, "softmax big")
    _check(lambda x: F.log_softmax(x, 1), lambda x: torch.log_softmax(x, 1), [a], dtype,
           "log_softmax big")


def _targets(rng, n, c, ignore_frac=0.0, dtype=np.int64):
    t = rng.integers(0, c, n).astype(dtype)
    if ignore_frac:
        drop = rng.random(n) < ignore_frac
        drop[0] = True                      # at least one ignored row
        drop[-1] = False                    # and at least one that is not
        t[drop] = -100
    return t


CE_SHAPES = [(5, 3), (1, 4), (7, 10), (3, 1), (16, 2)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", CE_SHAPES)
@pytest.mark.parametrize("ignore, smoothing", [(False, 0.0), (True, 0.0), (False, 0.1),
                                               (True, 0.1)])
def test_cross_entropy(shape, reduction, ignore, smoothing, dtype, rng):
    n, c = shape
    logits = rnd(rng, shape) * 2
    target = _targets(rng, n, c, 0.4 if ignore and n > 1 else 0.0)
    kw = dict(reduction=reduction, label_smoothing=smoothing)
    _check(lambda x, t: F.cross_entropy(x, t, **kw),
           lambda x, t: torch.nn.functional.cross_entropy(x, t, **kw),
           [logits, target], dtype, f"cross_entropy {kw}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_int32_targets_and_extremes(dtype, rng):
    logits = np.array([[200.0, -200.0, 0.0], [-300.0, 300.0, 1.0], [0.0, 0.0, 0.0]])
    target = np.array([1, 1, 2])
    _check(lambda x, t: F.cross_entropy(x, t.to(tn.int32)),
           lambda x, t: torch.nn.functional.cross_entropy(x, t), [logits, target], dtype,
           "cross_entropy int32 target")


def test_cross_entropy_errors():
    x = tn.zeros(3, 4)
    with pytest.raises(tn.IndexOutOfRange):
        F.cross_entropy(x, tn.tensor([0, 4, 1]))
    with pytest.raises(tn.ShapeError):
        F.cross_entropy(x, tn.tensor([0, 1]))
    with pytest.raises(tn.DTypeError):
        F.cross_entropy(x, tn.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(tn.TritonnnError):
        F.cross_entropy(x, tn.tensor([0, 1, 2]), reduction="avg")


BCE_SHAPES = [(), (1,), (6,), (3, 4), (2, 1, 5)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", BCE_SHAPES)
def test_bce_with_logits(shape, reduction, dtype, rng):
    x = rnd(rng, shape) * 3
    y = rng.random(shape)
    _check(lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction),
           lambda a, b: torch.nn.functional.binary_cross_entropy_with_logits(a, b,
                                                                              reduction=reduction),
           [x, y], dtype, f"bce {reduction}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_with_logits_extreme(reduction, dtype):
    x = np.array([100.0, -100.0, 100.0, -100.0, 0.0, 30.0])
    y = np.array([1.0, 0.0, 0.0, 1.0, 0.5, 1.0])
    _check(lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction),
           lambda a, b: torch.nn.functional.binary_cross_entropy_with_logits(a, b,
                                                                              reduction=reduction),
           [x, y], dtype, f"bce extreme {reduction}")
    loss = F.binary_cross_entropy_with_logits(tn.tensor(x.astype(NP[dtype])),
                                              tn.tensor(y.astype(NP[dtype])), reduction="none")
    assert np.isfinite(loss.numpy()).all()


# ----------------------------------------------------------------------------------------------
# casts
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("src, dst", [("float32", "float64"), ("float64", "float32")])
def test_cast_gradient_flows(src, dst, rng):
    a = rnd(rng, (3, 4))
    tol = TOL["float32"]

    def f_tn(x):
        return (x.to(getattr(tn, dst)) * 2).exp()

    def f_th(x):
        return (x.to(TH[dst]) * 2).exp()
    a = a.astype(NP[src])
    x = tn.tensor(a, requires_grad=True)
    t = torch.tensor(a, requires_grad=True)
    out, ref = f_tn(x), f_th(t)
    assert out.dtype is getattr(tn, dst)
    assert_close(out.detach().numpy(), ref.detach().numpy(), *tol, "cast forward")
    w = rng.standard_normal(a.shape)
    (out * tn.tensor(w.astype(NP[dst]))).sum().backward()
    (ref * torch.tensor(w, dtype=TH[dst])).sum().backward()
    assert x.grad.dtype is getattr(tn, src)
    assert_close(x.grad.numpy(), t.grad.numpy(), *tol, "cast grad")


def test_cast_through_half_precision(rng):
    a = rnd(rng, (4, 3)).astype(np.float32)
    for half, th_half in [(tn.float16, torch.float16), (tn.bfloat16, torch.bfloat16)]:
        x = tn.tensor(a, requires_grad=True)
        t = torch.tensor(a, requires_grad=True)
        out = (x.to(half) * 3).to(tn.float32)
        ref = (t.to(th_half) * 3).to(torch.float32)
        assert_close(out.detach().numpy(), ref.detach().numpy(), 0, 0, f"{half} forward")
        out.sum().backward()
        ref.sum().backward()
        assert_close(x.grad.numpy(), t.grad.numpy(), 0, 0, f"{half} grad")


def test_cast_to_int_cuts_the_graph():
    x = tn.tensor([1.5, 2.5], requires_grad=True)
    i = x.to(tn.int64)
    assert i.dtype is tn.int64 and not i.requires_grad


@pytest.mark.parametrize("dtype", ["int64", "int32", "uint8", "bool"])
def test_min_along_a_dim_keeps_integer_dtypes(dtype, device, rng):
    td = getattr(torch, dtype)
    if dtype == "bool":
        ref = torch.tensor(rng.random((3, 5)) > 0.5)
    else:
        info = torch.iinfo(td)
        ref = torch.tensor(rng.integers(info.min, info.max, (3, 5), endpoint=True)).to(td)
        ref[0, 1], ref[1, 3], ref[2, 4] = info.min, info.max, info.min     # the extremes too
    x = tn.tensor(ref, device=device)
    for dim in (0, 1, -1):
        (v, i), (rv, ri) = x.min(dim), ref.min(dim)
        assert str(v.dtype) == str(rv.dtype).replace("torch.", "") and i.dtype is tn.int64
        assert v.tolist() == rv.tolist() and i.tolist() == ri.tolist()
