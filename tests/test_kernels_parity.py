"""Every Triton backend function against its numpy mirror, on the same inputs.

Each case calls ``tritonnn.kernels.<name>`` and ``tritonnn.fallback_cpu.<name>``
and compares the results elementwise with per-dtype tolerances. Shapes are odd
(1, 3, 17, 129: never a multiple of a block) and operands come contiguous,
transposed, sliced and expanded (stride 0). Without a GPU the kernels run in
Triton's interpreter (tests/conftest.py), so sizes stay small except where
the point is a big vocabulary.
"""
import ml_dtypes
import numpy as np
import pytest
import torch

import tritonnn as tn
import tritonnn.nn.functional as Fn
from tritonnn import dtypes as D
from tritonnn.backends import backend
from tritonnn.contract import RangeCheck
from tritonnn.device import as_device, interpreting

from conftest import cuda_usable

pytestmark = [
    pytest.mark.skipif(not cuda_usable(), reason="no GPU and no Triton interpreter"),
    # the interpreter evaluates masked-off lanes too (log(0), 0/0): values never stored
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),
]

K = backend(as_device("cuda")) if cuda_usable() else None
F = backend(as_device("cpu"))

# (dtype, atol, rtol): kernels and mirrors both compute low precision in float32 and round
# once, so they differ by at most an ulp or two of the stored dtype
DTYPES = [(D.float32, 1e-5, 1e-5), (D.bfloat16, 1e-2, 1.6e-2), (D.float16, 2e-3, 2e-3)]
DTYPE_IDS = ["float32", "bfloat16", "float16"]
LAYOUTS = ["contiguous", "transposed", "sliced", "expanded"]


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def _np(a, dtype):
    return np.asarray(a).astype(dtype.np)


class Arg:
    """One operand, as a numpy array for the mirror and a device buffer for the kernels."""

    def __init__(self, host, dev):
        self.host, self.dev = host, dev


def make(a, dtype, layout="contiguous"):
    """An operand holding the values ``a`` (numpy) with the requested memory layout.

    transposed: stored transposed and permuted back; sliced: every other row of a
    taller buffer; expanded: a single row broadcast with stride 0 (``a``'s first row).
    """
    a = _np(a, dtype)
    if layout == "contiguous" or a.ndim == 0:
        return Arg(a.copy(), K.from_numpy(a, dtype))
    if layout == "transposed":
        perm = tuple(reversed(range(a.ndim)))
        stored = np.ascontiguousarray(a.transpose(perm))
        return Arg(stored.transpose(perm), K.permute(K.from_numpy(stored, dtype), perm))
    if layout == "sliced":
        big = np.zeros((a.shape[0] * 2,) + a.shape[1:], dtype.np)
        big[::2] = a
        return Arg(big[::2], K.getitem(K.from_numpy(big, dtype), (slice(None, None, 2),)))
    if layout == "expanded":
        row = a[:1]
        return Arg(np.broadcast_to(row, a.shape), K.expand(K.from_numpy(row, dtype), a.shape))
    raise ValueError(layout)


def _host(x):
    if x is None or isinstance(x, (int, float, bool)):
        return x
    if isinstance(x, np.ndarray) or np.isscalar(x):
        return np.asarray(x)
    return K.to_numpy(x)


def compare(name, got, want, atol, rtol, what="result"):
    """Assert ``got`` (from the kernels) matches ``want`` (the mirror); print the first misses."""
    got, want = _host(got), _host(want)
    if want is None or got is None:
        assert got is None and want is None, f"{name}: {what} is {got!r}, mirror gives {want!r}"
        return
    if not isinstance(want, np.ndarray):
        assert got == want, f"{name}: {what} {got!r} != mirror {want!r}"
        return
    assert got.shape == want.shape, f"{name}: {what} shape {got.shape} != mirror {want.shape}"
    assert got.dtype == want.dtype, f"{name}: {what} dtype {got.dtype} != mirror {want.dtype}"
    g = got.astype(np.float64) if got.dtype != np.bool_ else got
    w = want.astype(np.float64) if want.dtype != np.bool_ else want
    ok = np.isclose(g, w, atol=atol, rtol=rtol, equal_nan=True) if g.dtype != np.bool_ else g == w
    if not ok.all():
        bad = np.argwhere(~ok)
        first = [(tuple(int(i) for i in ix), g[tuple(ix)], w[tuple(ix)]) for ix in bad[:5]]
        pytest.fail(f"{name}: {what}: {len(bad)} of {ok.size} elements differ "
                    f"(atol={atol}, rtol={rtol}); first (index, kernel, mirror): {first}")


def _split(args):
    host = [a.host if isinstance(a, Arg) else a for a in args]
    dev = [a.dev if isinstance(a, Arg) else a for a in args]
    return host, dev


def _expect_dtype(name, what, got, want, dtype):
    """Both backends' ``what`` has the dtype the case expects (``None``: a plain Python value)."""
    for side, r in (("kernel", got), ("mirror", want)):
        r = _host(r)
        r = np.asarray(r) if isinstance(r, np.generic) else r
        if dtype is None:
            assert not isinstance(r, np.ndarray), \
                f"{name}: {what} from the {side} is a {r.dtype} array, the case expects a value"
        else:
            assert isinstance(r, np.ndarray), \
                f"{name}: {what} from the {side} is {r!r}, the case expects a {dtype} array"
            assert r.dtype == dtype.np, \
                f"{name}: {what} from the {side} is {r.dtype}, the case expects {dtype}"


def _check(name, args, dtype, atol, rtol):
    """Run ``name`` on both backends with ``args`` (Arg operands or plain values) and compare.

    ``dtype``: the result's expected dtype, the same on both backends (``None`` for a plain
    Python value); for a tuple of results, one dtype for all or a tuple with one per result.
    """
    host, dev = _split(args)
    want = getattr(F, name)(*host)
    got = getattr(K, name)(*dev)
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want), f"{name}: result arity"
        dtypes = dtype if isinstance(dtype, tuple) else (dtype,) * len(want)
        assert len(dtypes) == len(want), f"{name}: {len(want)} results, {len(dtypes)} dtypes"
        for i, (g, w, dt) in enumerate(zip(got, want, dtypes)):
            g, w = _host(g), _host(w)
            _expect_dtype(name, f"output {i}", g, w, dt)
            compare(name, g, w, atol, rtol, f"output {i}")
    else:
        assert not isinstance(dtype, tuple), f"{name}: one result, dtypes {dtype}"
        g, w = _host(got), _host(want)
        _expect_dtype(name, "result", g, w, dtype)
        compare(name, g, w, atol, rtol)
    return got, want


def _check_inplace(name, args, which, dtype, atol, rtol):
    """Run an in-place ``name`` on both backends; the operands at ``which`` keep ``dtype`` and
    agree after the call."""
    host, dev = _split(args)
    getattr(F, name)(*host)
    getattr(K, name)(*dev)
    for i in which:
        got = _host(dev[i])
        _expect_dtype(name, f"operand {i} after the call", got, host[i], dtype)
        compare(name, got, host[i], atol, rtol, f"operand {i} after the call")


def rnd(shape, seed=0, low=None):
    r = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return np.abs(r) + low if low is not None else r


# ----------------------------------------------------------------------------------------------
# elementwise
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype,atol,rtol", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("op", ["neg", "exp", "log", "sqrt", "abs", "tanh", "sigmoid"])
def test_unary(op, layout, dtype, atol, rtol):
    x = rnd((17, 129), 1, low=0.05) if op in ("log", "sqrt") else rnd((17, 129), 1) * 3
    _check("unary", [make(x, dtype, layout), op], dtype, atol, rtol)


def test_tanh_near_zero_keeps_relative_precision():
    x = np.array([1e-6, -3e-5, 1e-3, 0.2, -0.24, 0.26, 5.0, -20.0], np.float32)
    compare("tanh", K.unary(K.from_numpy(x, D.float32), "tanh"), np.tanh(x), 0, 3e-7)


BINARY_OPS = ["add", "sub", "mul", "div", "maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge"]
COMPARISONS = {"eq", "ne", "lt", "le", "gt", "ge"}          # give bool, whatever the operands


def _binary_dtype(op, dtype):
    return D.bool_ if op in COMPARISONS else dtype


@pytest.mark.parametrize("dtype,atol,rtol", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("op", BINARY_OPS)
def test_binary_broadcast_strided(op, dtype, atol, rtol):
    a = make(rnd((3, 17, 129), 2), dtype, "transposed")      # (3, 17, 129) seen through strides
    b = make(rnd((17, 1), 3), dtype, "sliced")              # broadcast along the last dim
    if op in ("eq", "ne", "le", "ge"):
        b = make(np.round(rnd((17, 1), 3)), dtype, "sliced")
        a = make(np.round(rnd((3, 17, 129), 2)), dtype)      # ties do happen
    _check("binary", [a, b, op], _binary_dtype(op, dtype), atol, rtol)


@pytest.mark.parametrize("dtype,atol,rtol", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("op,scalar", [("add", 1.5), ("sub", -2), ("mul", 0.1), ("div", 3.0),
                                       ("pow", 2), ("pow", 1.5), ("pow", -0.5), ("pow", 3),
                                       ("maximum", 0.0), ("gt", 0.25), ("eq", 0)])
def test_binary_scalar(op, scalar, dtype, atol, rtol):
    x = rnd((129,), 4, low=0.1) if op == "pow" and scalar not in (2, 3) else rnd((129,), 4)
    tol = (4 * atol, 4 * rtol) if op == "pow" else (atol, rtol)   # exp(e * log x) vs pow
    _check("binary", [make(x, dtype, "sliced"), scalar, op], _binary_dtype(op, dtype), *tol)


def test_binary_integer_and_float64():
    a = np.arange(-8, 9, dtype=np.int64)
    for op in ("add", "sub", "mul", "maximum", "lt"):
        _check("binary", [make(a, D.int64), make(a[::-1].copy(), D.int64), op],
               _binary_dtype(op, D.int64), 0, 0)
        _check("binary", [make(a, D.int64), 3, op], _binary_dtype(op, D.int64), 0, 0)
    x = rnd((17,), 5).astype(np.float64)
    # a Python float meets a float64 buffer in full precision (no float32 rounding)
    _check("binary", [make(x, D.float64), 0.1, "mul"], D.float64, 0, 1e-15)


# integer dtypes with their extremes, for the ops that wrap or floor
INT_DTYPES = [D.int64, D.int32, D.uint32, D.uint8]


def _ints(shape, dtype, seed, magnitude=None):
    """Random integers of ``dtype`` (both signs when signed), the dtype's extremes among them."""
    info = np.iinfo(dtype.np)
    hi = info.max if magnitude is None else min(magnitude, info.max)
    lo = 0 if info.min == 0 else -hi
    a = np.random.default_rng(seed).integers(lo, hi, shape, dtype=np.int64, endpoint=True)
    a = a.astype(dtype.np)
    if magnitude is None:
        a.reshape(-1)[:2] = (info.min, info.max)
    return a


def _divisors(shape, dtype, seed):
    """Nonzero divisors, small and large, both signs when signed (-1 among them)."""
    d = _ints(shape, dtype, seed, 9)
    d = np.where(d == 0, 7, d).astype(dtype.np)
    d.reshape(-1)[0] = -1 if np.iinfo(dtype.np).min < 0 else 1
    if d.size > 2:
        d.reshape(-1)[1] = np.iinfo(dtype.np).max
    return d


@pytest.mark.parametrize("dtype", INT_DTYPES, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("op", ["floordiv", "mod"])
def test_binary_floor_divmod_integers(op, layout, dtype):
    a = make(_ints((3, 17, 129), dtype, 30), dtype, layout)
    _check("binary", [a, make(_divisors((17, 1), dtype, 31), dtype, "sliced"), op], dtype, 0, 0)
    signed = np.iinfo(dtype.np).min < 0
    for divisor in (3, 1, 7, int(np.iinfo(dtype.np).max)) + ((-3, -1) if signed else ()):
        _check("binary", [a, divisor, op], dtype, 0, 0)
    # a 0-d dividend (``7 // t``) against a tensor of divisors
    _check("binary", [make(np.array(7), dtype), make(_divisors((129,), dtype, 32), dtype), op],
           dtype, 0, 0)


FLOAT_DIVMOD = DTYPES + [(D.float64, 0, 0)]


@pytest.mark.parametrize("dtype,atol,rtol", FLOAT_DIVMOD, ids=DTYPE_IDS + ["float64"])
@pytest.mark.parametrize("op", ["floordiv", "mod"])
def test_binary_floor_divmod_floats(op, dtype, atol, rtol):
    # both backends run torch's formula on an exact fmod: equal to the last bit
    a = rnd((3, 17, 129), 33) * 40
    a[0, 0, :6] = [0.0, -0.0, np.inf, -np.inf, np.nan, 6.0]
    b = rnd((17, 1), 34) * 3
    b[:5, 0] = [0.0, -0.0, np.inf, np.nan, -3.0]
    _check("binary", [make(a, dtype, "transposed"), make(b, dtype, "sliced"), op], dtype, 0, 0)
    for divisor in (2.5, -3.0, 0.1, 0.0, np.inf):
        _check("binary", [make(a, dtype), divisor, op], dtype, 0, 0)
    # quotients past float32's 2**24 (fmod in float64: still exact)
    big = np.array([1e10, -3e9, 123456789.0, 7e7], np.float32)
    _check("binary", [make(big, dtype), make(np.array([3.0, 7.0, -0.1, 0.3]), dtype), op],
           dtype, 0, 0)


@pytest.mark.parametrize("dtype", INT_DTYPES, ids=str)
def test_binary_integer_pow(dtype):
    signed = np.iinfo(dtype.np).min < 0
    base = make(_ints((17, 129), dtype, 35, 6), dtype, "transposed")
    # exponents up to 70: the products wrap, exactly as numpy's and torch's do
    e = _ints((129,), dtype, 36, 70)
    if signed:
        e[:5] = [-1, -2, -3, 0, 63]
    _check("binary", [base, make(e, dtype), "pow"], dtype, 0, 0)
    for exponent in (0, 1, 2, 3, 39, 64):
        _check("binary", [base, exponent, "pow"], dtype, 0, 0)
    # a 0-d base (``2 ** t``)
    _check("binary", [make(np.array(3), dtype), make(e, dtype), "pow"], dtype, 0, 0)
    # negative exponents (signed): 1, +-1 or 0, as torch's integer pow
    if signed:
        ones = make(np.array([1, -1, -1, 2, 0, -2, 5]), dtype)
        _check("binary", [ones, make(np.array([-1, -1, -2, -3, -1, -1, -7]), dtype), "pow"],
               dtype, 0, 0)


@pytest.mark.parametrize("dtype,atol,rtol", DTYPES, ids=DTYPE_IDS)
def test_binary_pow_tensor_exponent(dtype, atol, rtol):
    x = make(rnd((17, 129), 37, low=0.1), dtype, "transposed")
    _check("binary", [x, make(rnd((17, 1), 38), dtype, "sliced"), "pow"], dtype, 4 * atol,
           4 * rtol)
    # negative bases: a sign for odd integer exponents, NaN for fractional ones, 1 for e == 0
    neg = make(-rnd((6,), 39, low=0.5), dtype)
    _check("binary", [neg, make(np.array([3.0, 2.0, 0.0, 0.5, -1.0, 1.0]), dtype), "pow"],
           dtype, 4 * atol, 4 * rtol)
    # a 0-d base (``2.0 ** t``)
    _check("binary", [make(np.array(2.0), dtype), make(rnd((129,), 40), dtype), "pow"], dtype,
           4 * atol, 4 * rtol)


def test_binary_bool():
    rng = np.random.default_rng(41)
    a = make(rng.random((17, 129)) > 0.5, D.bool_, "transposed")
    b = make(rng.random((129,)) > 0.5, D.bool_)
    for op in ("add", "mul", "maximum", "minimum", "eq", "ne", "lt", "ge"):
        _check("binary", [a, b, op], D.bool_, 0, 0)       # add is or, mul is and
        for scalar in (True, False):
            _check("binary", [a, scalar, op], D.bool_, 0, 0)


def test_binary_narrow_integers_with_scalars():
    # a Python int meets the buffer in its own dtype: uint8 arithmetic wraps at 256
    for dtype in (D.uint8, D.int32, D.uint32):
        a = make(_ints((3, 129), dtype, 42), dtype, "sliced")
        for op in ("add", "sub", "mul", "maximum", "lt", "eq"):
            _check("binary", [a, 200, op], _binary_dtype(op, dtype), 0, 0)


@pytest.mark.parametrize("dtype,atol,rtol", DTYPES, ids=DTYPE_IDS)
def test_where_relu_accumulate(dtype, atol, rtol):
    x = rnd((17, 129), 6)
    x[0, :5] = 0.0
    cond = make(x > 0, D.bool_, "transposed")
    _check("where", [cond, make(x, dtype, "sliced"), make(rnd((129,), 7), dtype)], dtype,
           atol, rtol)
    _check("relu_fwd", [make(x, dtype, "transposed")], dtype, atol, rtol)
    _check("relu_bwd", [make(rnd((17, 129), 8), dtype, "expanded"), make(x, dtype)], dtype,
           atol, rtol)
    dst = make(rnd((17, 129), 9), dtype, "transposed")
    _check_inplace("accumulate_", [dst, make(rnd((129,), 10), dtype)], [0], dtype, atol, rtol)


@pytest.mark.parametrize("dtype,atol,rtol", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape,to", [((3, 17, 129), (17, 1)), ((3, 17, 129), (1, 129)),
                                      ((17, 129), (17, 129)), ((3, 1, 129), ()),
                                      ((4, 3, 17), (3, 1))])
def test_sum_to_shape(shape, to, dtype, atol, rtol):
    _check("sum_to_shape", [make(rnd(shape, 11), dtype, "transposed"), to], dtype,
           atol * 10, rtol)


# ----------------------------------------------------------------------------------------------
# reductions
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype,atol,rtol", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("dims,keepdim", [((), False), ((0,), True), ((2,), False),
                                          ((0, 2), False), ((1,), True)])
@pytest.mark.parametrize("op", ["sum", "mean", "max", "min"])
def test_reduce(op, dims, keepdim, dtype, atol, rtol):
    x = make(rnd((3, 17, 129), 12), dtype, "transposed")
    _check("reduce", [x, dims, keepdim, op], dtype, atol * 20, rtol)


@pytest.mark.parametrize("op", ["sum", "mean", "max", "min"])
def test_reduce_split_into_chunks_and_nan(op):
    # few long rows: the two-stage (chunked, then partials) path
    n = 140_001 if interpreting() else 1_000_003
    x = rnd((2, n), 13)
    _check("reduce", [make(x, D.float32), (1,), False, op], D.float32, 1e-3, 1e-4)
    x[1, n // 2] = np.nan
    _check("reduce", [make(x, D.float32), (), False, op], D.float32, 1e-3, 1e-4)


def test_reduce_integers_and_bool():
    a = np.arange(-50, 79, dtype=np.int64).reshape(3, 43)
    for op in ("sum", "max", "min"):
        _check("reduce", [make(a, D.int64, "transposed"), (1,), False, op], D.int64, 0, 0)
        # integer sums widen to int64 (as torch's); max and min keep int32
        _check("reduce", [make(a.astype(np.int32), D.int32), (0,), True, op],
               D.int64 if op == "sum" else D.int32, 0, 0)
    _check("reduce", [make(a > 3, D.bool_), (), False, "sum"], D.int64, 0, 0)


@pytest.mark.parametrize("dtype,atol,rtol", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("dim,keepdim", [(None, False), (None, True), (0, False), (2, True),
                                         (1, False)])
def test_argmax(dim, keepdim, dtype, atol, rtol):
    x = np.round(rnd((3, 17, 129), 14) * 2)            # ties: the first maximum wins
    _check("argmax", [make(x, dtype, "transposed"), dim, keepdim], D.int64, 0, 0)


def test_argmax_nan_and_integers():
    x = rnd((3, 129), 15)
    x[1, 7] = np.nan
    x[1, 9] = np.nan
    _check("argmax", [make(x, D.float32), 1, False], D.int64, 0, 0)
    a = np.array([[3, 9, 9, -2], [-5, -5, -7, -5]], np.int64)
    _check("argmax", [make(a, D.int64), 1, False], D.int64, 0, 0)


@pytest.mark.parametrize("dtype,atol,rtol", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("dim,keepdim", [(0, False), (1, True), (2, False)])
def test_max_bwd(dim, keepdim, dtype, atol, rtol):
    x = rnd((3, 17, 129), 16)
    idx = F.argmax(_np(x, dtype), dim, keepdim)
    g = rnd(idx.shape, 17)
    _check("max_bwd", [make(g, dtype), make(x, dtype, "transposed"), make(idx, D.int64), dim,
                       keepdim], dtype, atol, rtol)


# ----------------------------------------------------------------------------------------------
# softmax family
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype,atol,rtol", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax_family(log, dim, dtype, atol, rtol):
    fwd, bwd = ("log_softmax_fwd", "log_softmax_bwd") if log else ("softmax_fwd", "softmax_bwd")
    x = rnd((3, 17, 129), 18) * 4
    _, y = _check(fwd, [make(x, dtype, "transposed"), dim], dtype, atol, rtol)
    g = rnd((3, 17, 129), 19)
    _check(bwd, [make(g, dtype, "sliced"), make(y, dtype), dim], dtype, atol * 4, rtol * 2)


def test_softmax_long_rows_and_masked_rows():
    x = rnd((2, 70_001 if interpreting() else 300_001), 20) * 10
    x[1] = -np.inf                                       # an all -inf row is NaN, as numpy
    for name in ("softmax_fwd", "log_softmax_fwd"):
        _check(name, [make(x, D.float32), 1], D.float32, 1e-6, 1e-4)


# ----------------------------------------------------------------------------------------------
# fused softmax-cross-entropy
# ----------------------------------------------------------------------------------------------


def _ce_case(n, c, dtype, seed, ignore=True):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((n, c)) * 3).astype(np.float32)
    target = rng.integers(0, c, n).astype(np.int64)
    if ignore and n > 1:
        target[1] = -100
    return logits, target


def _check_ce(n, c, dtype, atol, rtol, reduction, eps, inplace, layout="contiguous", seed=0,
              ignore=True):
    logits, target = _ce_case(n, c, dtype, seed, ignore)
    lg = make(logits, dtype, layout)
    t = make(target, D.int64)
    # the loss in the logits' dtype; lse, saved for backward, in the accumulation dtype
    acc = D.float64 if dtype is D.float64 else D.float32
    (loss, lse), _ = _check("softmax_cross_entropy_fwd", [lg, t, -100, eps, reduction, None],
                            (dtype, acc), atol, rtol)
    g = rnd((n,), seed + 1) if reduction == "none" else np.float32(1.7)
    g_arg = make(g, dtype)
    want = F.softmax_cross_entropy_bwd(g_arg.host, lg.host.copy(), target, K.to_numpy(lse),
                                       -100, eps, reduction, False)
    got = K.softmax_cross_entropy_bwd(g_arg.dev, lg.dev, t.dev, lse, -100, eps, reduction,
                                      inplace)
    if inplace:
        assert got is lg.dev, "in place: the gradient must be written into the logits buffer"
    got = _host(got)
    _expect_dtype("softmax_cross_entropy_bwd", "gradient", got, want, dtype)
    compare("softmax_cross_entropy_bwd", got, want, atol, rtol * 2)


@pytest.mark.parametrize("dtype,atol,rtol", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("inplace", [False, True], ids=["fresh", "inplace"])
def test_cross_entropy(inplace, eps, reduction, dtype, atol, rtol):
    _check_ce(17, 129, dtype, atol, rtol, reduction, eps, inplace)


@pytest.mark.parametrize("layout", ["transposed", "sliced"])
def test_cross_entropy_strided_logits(layout):
    _check_ce(17, 33, D.float32, 1e-5, 1e-5, "mean", 0.05, False, layout)


def test_cross_entropy_one_row_and_all_ignored():
    _check_ce(1, 3, D.float32, 1e-6, 1e-5, "mean", 0.0, False, ignore=False)
    logits = rnd((3, 5), 21)
    target = np.full(3, -100, np.int64)
    for red in ("mean", "sum", "none"):
        _check("softmax_cross_entropy_fwd", [make(logits, D.float32), make(target, D.int64),
                                             -100, 0.0, red, None], D.float32, 1e-6, 1e-6)


@pytest.mark.parametrize("vocab,rows", [(50257, 2), (128256, 3)])
@pytest.mark.parametrize("dtype,atol,rtol", [DTYPES[0], DTYPES[1]], ids=DTYPE_IDS[:2])
def test_cross_entropy_big_vocabulary(vocab, rows, dtype, atol, rtol):
    _check_ce(rows, vocab, dtype, atol * 10, rtol, "mean", 0.1, True, seed=vocab)


@pytest.mark.parametrize("n,c", [(5, 37), (300, 7), (3, 50_000)])
def test_cross_entropy_many_programs_and_the_upstream_one(n, c):
    # many programs (the total by the holder of the last ticket, run after run: the ticket
    # counter goes back to 0) and one; the backward with the upstream 1 folded in (None)
    logits, target = _ce_case(n, c, D.float32, n)
    lg, t = make(logits, D.float32), make(target, D.int64)
    for red in ("mean", "sum", "mean"):
        (loss, stats), _ = _check("softmax_cross_entropy_fwd", [lg, t, -100, 0.0, red, None],
                                  (D.float32, D.float32), 1e-5, 1e-5)
        want = F.softmax_cross_entropy_bwd(None, lg.host.copy(), target, K.to_numpy(stats), -100,
                                           0.0, red, False)
        got = K.softmax_cross_entropy_bwd(None, lg.dev, t.dev, stats, -100, 0.0, red, False)
        compare("softmax_cross_entropy_bwd", got, want, 1e-5, 2e-5)


# targets checked as they are read: numpy raises before computing, the kernel records the bad
# value and the next synchronization raises the same error (the lowest value below the range,
# else the highest above it)
TARGET_CASES = [([1, -100, 40, -3], "-3"), ([0, 1, 2], None), ([-100], None), ([5, 37, 40], "40"),
                ([-7, 99, -9], "-9")]


@pytest.mark.parametrize("target,bad", TARGET_CASES, ids=[str(c[0]) for c in TARGET_CASES])
def test_cross_entropy_checks_targets(target, bad):
    check = RangeCheck(0, 37, -100, tn.IndexOutOfRange, "cross_entropy: target {} is bad")
    t = np.array(target, np.int64)
    logits = rnd((len(t), 37), 3)
    lg, td = make(logits, D.float32), make(t, D.int64)
    if bad is None:
        _check("softmax_cross_entropy_fwd", [lg, td, -100, 0.0, "mean", check], D.float32,
               1e-5, 1e-5)
        return
    with pytest.raises(tn.IndexOutOfRange, match=f"target {bad} is bad"):
        F.softmax_cross_entropy_fwd(logits, t, -100, 0.0, "mean", check)
    loss, _ = K.softmax_cross_entropy_fwd(lg.dev, td.dev, -100, 0.0, "none", check)
    with pytest.raises(tn.IndexOutOfRange, match=f"target {bad} is bad"):
        K.to_numpy(loss)
    rows = K.to_numpy(loss)                 # reported once; the rows with a bad target are NaN
    assert np.isnan(rows[(t != -100) & ((t < 0) | (t >= 37))]).all()


@pytest.mark.skipif(interpreting(), reason="needs a GPU with > 5 GB free")
def test_cross_entropy_row_offsets_past_2_31():
    # rows * vocab > 2**31: the last row's offset only fits in int64
    n, c = 16_400, 131_072
    logits = tn.zeros(n, c, dtype=tn.bfloat16, device="cuda")
    logits[n - 1, 5] = 4.0
    target = tn.full((n,), 5, dtype=tn.int64, device="cuda")
    loss, lse = K.softmax_cross_entropy_fwd(logits._data, target._data, -100, 0.0, "none", None)
    last = K.to_numpy(loss)[-1].astype(np.float32)
    want = np.log(np.exp(4.0) + c - 1) - 4.0
    assert abs(last - want) < 2e-2, (last, want)


# ----------------------------------------------------------------------------------------------
# binary cross-entropy on logits
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype,atol,rtol", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_with_logits(reduction, dtype, atol, rtol):
    x = rnd((17, 129), 22) * 5
    x[0, :3] = [-80.0, 80.0, 0.0]
    y = (rnd((17, 129), 23) > 0).astype(np.float32)
    _check("bce_with_logits_fwd", [make(x, dtype, "transposed"), make(y, dtype), reduction],
           dtype, atol * 20, rtol)
    g = rnd((17, 129), 24) if reduction == "none" else np.float32(0.5)
    _check("bce_with_logits_bwd", [make(g, dtype), make(x, dtype), make(y, dtype, "sliced"),
                                   reduction], dtype, atol, rtol)


# ----------------------------------------------------------------------------------------------
# optimizers
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype,atol,rtol", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("momentum,dampening,nesterov,wd,lr", [
    (0.0, 0.0, False, 0.0, 0.1), (0.9, 0.0, False, 1e-2, 0.05), (0.9, 0.1, False, 0.0, 1.0),
    (0.8, 0.0, True, 1e-3, 0.3)])
def test_sgd_step(momentum, dampening, nesterov, wd, lr, dtype, atol, rtol):
    p = make(rnd((17, 129), 25), dtype)
    buf = make(rnd((17, 129), 26), dtype) if momentum else None
    for first in (True, False):
        g = make(rnd((17, 129), 27 + first), dtype, "transposed")
        args = [p, g, buf, lr, momentum, wd, dampening, nesterov, first]
        _check_inplace("sgd_step", args, [0, 2] if momentum else [0], dtype, atol, rtol)
        # keep both sides on identical state for the next step
        p = make(p.host, dtype)
        buf = make(buf.host, dtype) if momentum else None


@pytest.mark.parametrize("dtype,atol,rtol", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_adamw_step(wd, dtype, atol, rtol):
    p, m, v = make(rnd((3, 129), 29), dtype), make(rnd((3, 129), 30) * 0.1, dtype), \
        make(rnd((3, 129), 31, low=0.0) * 0.01, dtype)
    for step in (1, 2, 7):
        g = make(rnd((3, 129), 32 + step), dtype, "sliced")
        _check_inplace("adamw_step", [p, g, m, v, step, 1e-3, 0.9, 0.999, 1e-8, wd], [0, 2, 3],
                       dtype, atol, rtol)
        p, m, v = (make(a.host, dtype) for a in (p, m, v))


# ----------------------------------------------------------------------------------------------
# memory: creation, casts, copies, indexing, joins, random
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [D.float32, D.bfloat16, D.float16, D.float64, D.int64, D.int32,
                                   D.uint8, D.bool_], ids=str)
def test_full_arange_and_cast(dtype):
    _check("full", [(3, 17), 1 if dtype is D.bool_ else 3, dtype], dtype, 0, 0)
    _check("full", [(129,), 0.1 if dtype.is_floating else 7, dtype], dtype, 0, 0)
    if dtype is not D.bool_:
        _check("arange", [2, 131, 3, dtype], dtype, 0, 0)
        if dtype is not D.uint8:
            _check("arange", [-5, 120, 1, dtype], dtype, 0, 0)
    if dtype.is_floating:
        _check("arange", [0.5, 7.25, 0.25, dtype], dtype, 0, 0)
    src = rnd((17, 33), 40) * 50
    for src_dt in (D.float32, D.bfloat16, D.int64, D.bool_):
        vals = src if src_dt.is_floating else (src.astype(np.int64) if src_dt is D.int64
                                               else src > 0)
        if dtype is D.uint8 and src_dt.is_floating:
            vals = np.abs(vals)
        _check("cast", [make(vals, src_dt, "transposed"), dtype], dtype, 0, 0)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_contiguous_and_copy(layout):
    x = make(rnd((17, 129), 41), D.float32, layout)
    got, _ = _check("contiguous", [x], D.float32, 0, 0)
    assert K.buffers.is_contiguous(got)
    c = make(rnd((17, 129), 42), D.float32)
    assert K.contiguous(c.dev) is c.dev, "a contiguous buffer is returned as it is"
    dst = make(rnd((17, 129), 43), D.bfloat16, "transposed")
    _check_inplace("copy_", [dst, make(rnd((129,), 44), D.float32)], [0], D.bfloat16, 0, 0)
    # a copy between layouts that keep six dims after collapsing (split in launches)
    x6 = rnd((2, 3, 2, 3, 2, 3), 45)
    perm = (5, 3, 1, 4, 2, 0)
    x6d = K.permute(K.from_numpy(x6, D.float32), perm)
    compare("contiguous", K.contiguous(x6d), np.ascontiguousarray(x6.transpose(perm)), 0, 0)
    compare("reshape", K.reshape(x6d, (6, 36)), x6.transpose(perm).reshape(6, 36), 0, 0)


@pytest.mark.parametrize("dtype,atol,rtol", DTYPES, ids=DTYPE_IDS)
def test_cat_and_stack(dtype, atol, rtol):
    a = make(rnd((3, 17), 46), dtype, "transposed")
    b = make(rnd((3, 1), 47), dtype)
    c = make(rnd((3, 129), 48), dtype, "sliced")
    compare("cat", K.cat([a.dev, b.dev, c.dev], 1), F.cat([a.host, b.host, c.host], 1), 0, 0)
    compare("cat", K.cat([a.dev, a.dev], -2), F.cat([a.host, a.host], -2), 0, 0)
    for dim in (0, 1, 2, -1):
        compare("stack", K.stack([a.dev, a.dev, a.dev], dim),
                F.stack([a.host, a.host, a.host], dim), 0, 0)


def _index_cases():
    i2 = np.array([[0, 4], [-1, 2]], np.int64)
    return [
        ("int", (1,)), ("slices", (slice(1, 4), slice(None, None, 2))),
        ("none-ellipsis", (None, Ellipsis, 3)),
        ("array", (i2,)), ("array-mid", (slice(None), i2)),
        ("array-int-adjacent", (slice(1, 4), i2, 2)),
        ("arrays-apart", (i2, slice(None), i2)), ("int-array-apart", (0, slice(None), i2)),
        ("ellipsis-array", (Ellipsis, i2)), ("none-array", (None, i2, None)),
        ("repeated", (np.array([3, 3, 0, 3], np.int64),)),
    ]


def _dev_index(index):
    return tuple(K.from_numpy(i, D.int64) if isinstance(i, np.ndarray) else i for i in index)


@pytest.mark.parametrize("name,index", _index_cases(), ids=[c[0] for c in _index_cases()])
def test_getitem_setitem_index_add(name, index):
    x = make(rnd((5, 6, 7), 49), D.float32, "transposed")
    compare("getitem", K.getitem(x.dev, _dev_index(index)), F.getitem(x.host, index), 0, 0)
    shape = F.getitem(x.host, index).shape
    src = rnd(shape, 50)
    dst = make(np.zeros((5, 6, 7), np.float32), D.float32)
    F.index_add(dst.host, index, src)
    K.index_add(dst.dev, _dev_index(index), K.from_numpy(src, D.float32))
    compare("index_add", dst.dev, dst.host, 1e-6, 1e-6)
    if name != "repeated":                               # numpy's last-write-wins is unordered here
        val = rnd(shape[-1:], 51)
        tgt = make(rnd((5, 6, 7), 52), D.float32)
        F.setitem(tgt.host, index, val)
        K.setitem(tgt.dev, _dev_index(index), K.from_numpy(val, D.float32))
        compare("setitem", tgt.dev, tgt.host, 0, 0)
        tgt2 = make(rnd((5, 6, 7), 53), D.float32)
        F.setitem(tgt2.host, index, 2.5)
        K.setitem(tgt2.dev, _dev_index(index), 2.5)
        compare("setitem scalar", tgt2.dev, tgt2.host, 0, 0)


def test_getitem_bool_mask_and_out_of_range():
    x = rnd((5, 6), 54)
    mask = x > 0.3
    compare("getitem", K.getitem(K.from_numpy(x, D.float32), (K.from_numpy(mask, D.bool_),)),
            x[mask], 0, 0)
    compare("getitem", K.getitem(K.from_numpy(x, D.float32),
                                 (slice(None), K.from_numpy(mask[0], D.bool_))), x[:, mask[0]], 0, 0)
    # an index past the end never reads outside the buffer (unchecked: the op checked it)
    got = K.to_numpy(K.getitem(K.from_numpy(x, D.float32),
                               (K.from_numpy(np.array([1, 99]), D.int64),)))
    assert (got[0] == x[1]).all() and (got[1] == 0).all()
    # checked: numpy raises at once, the kernel at the next read, naming the same index
    check = RangeCheck(-5, 5, None, tn.IndexOutOfRange, "index {} is out")
    idx = np.array([1, -8, 99, 7])
    with pytest.raises(tn.IndexOutOfRange, match="index -8 is out"):
        F.getitem(x, (slice(None), idx), (None, check))
    out = K.getitem(K.from_numpy(x, D.float32), (slice(None), K.from_numpy(idx, D.int64)),
                    (None, check))
    with pytest.raises(tn.IndexOutOfRange, match="index -8 is out"):
        K.to_numpy(out)
    got = K.to_numpy(out)
    assert (got[:, 0] == x[:, 1]).all() and (got[:, 1:] == 0).all()
    # setitem writes the positions in range only
    dst = K.from_numpy(x, D.float32)
    K.setitem(dst, (K.from_numpy(np.array([0, 9]), D.int64),), 2.0, (check,))
    with pytest.raises(tn.IndexOutOfRange, match="index 9 is out"):
        K.to_numpy(dst)
    got = K.to_numpy(dst)
    assert (got[0] == 2.0).all() and (got[1:] == x[1:]).all()


@pytest.mark.parametrize("dtype", [D.float32, D.bfloat16, D.float16], ids=str)
@pytest.mark.parametrize("n,offset", [(1, 0), (3, 4), (129, 2 ** 33 + 8), (17, 2 ** 31 - 4)])
def test_rand_randn_bit_identical(n, offset, dtype):
    seed = 0x1234_5678_9ABC
    _check("rand", [(n,), dtype, seed, offset], dtype, 0, 0)
    # Box-Muller uses log/cos: exact under the interpreter, within float rounding on a GPU
    tol = 0 if interpreting() else 1e-5
    _check("randn", [(n,), dtype, seed, offset], dtype, tol, tol)


def test_exclusively_owned():
    a = K.full((3,), 1, D.float32)
    assert K.exclusively_owned(a, 1)
    b = a                                                 # noqa: F841 - a second reference
    assert not K.exclusively_owned(a, 1)
    v = K.getitem(K.full((3,), 1, D.float32), (slice(1, None),))
    assert not K.exclusively_owned(v, 1)
    base = K.full((4,), 1, D.float32)
    view = K.getitem(base, (slice(1, None),))              # a live view of base's memory
    assert not K.exclusively_owned(base, 1), "a live view must count as a holder"
    del view
    assert K.exclusively_owned(base, 1)


def test_setitem_from_an_overlapping_view_of_itself():
    """x[1:] = x[:-1] must read the old values (a private copy first), past one block too."""
    n = 70000
    x = K.arange(0, n, 1, D.float32)
    K.setitem(x, (slice(1, None),), K.getitem(x, (slice(None, -1),)))
    got = K.to_numpy(x)
    want = np.concatenate([[0.0], np.arange(n - 1, dtype=np.float32)])
    np.testing.assert_array_equal(got, want)


# ----------------------------------------------------------------------------------------------
# through the public API: "cuda" (Triton) against "cpu" (numpy) and torch
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_logits_feed_another_op(device, reduction):
    """The logits feed CE *and* another op: the CE gradient must not overwrite them in place."""
    rng = np.random.default_rng(60)
    x = rng.standard_normal((7, 11)).astype(np.float32)
    y = rng.integers(0, 11, 7)
    y[2] = -100
    lg = tn.tensor(x, device=device, requires_grad=True)
    logits = lg * 1.5                                   # a non-leaf, held by both branches
    loss = Fn.cross_entropy(logits, tn.tensor(y, device=device), reduction=reduction) \
        + (logits * 2).sum()
    loss.backward()
    tx = torch.tensor(x, requires_grad=True)
    tl_ = tx * 1.5
    tloss = torch.nn.functional.cross_entropy(tl_, torch.tensor(y), reduction=reduction) \
        + (tl_ * 2).sum()
    tloss.backward()
    compare("loss", np.asarray(loss.item(), np.float32), np.asarray(tloss.item(), np.float32),
            1e-5, 1e-5)
    compare("grad", lg.grad.numpy(), tx.grad.numpy(), 1e-5, 1e-5)


@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_cross_entropy_in_place_gradient_matches_torch(eps):
    """Only CE holds the logits (a temporary): its gradient goes into the logits buffer."""
    rng = np.random.default_rng(61)
    x = rng.standard_normal((9, 13)).astype(np.float32)
    y = rng.integers(0, 13, 9)
    y[0] = -100
    grads = {}
    for device in ("cpu", "cuda"):
        lg = tn.tensor(x, device=device, requires_grad=True)
        loss = Fn.cross_entropy(lg * 2.0, tn.tensor(y, device=device), label_smoothing=eps)
        loss.backward()
        grads[device] = (loss.item(), lg.grad.numpy())
    tx = torch.tensor(x, requires_grad=True)
    torch.nn.functional.cross_entropy(tx * 2.0, torch.tensor(y), label_smoothing=eps).backward()
    for device, (lv, g) in grads.items():
        compare(f"grad on {device}", g, tx.grad.numpy(), 1e-6, 1e-5)


def test_tensor_api_cuda_matches_cpu():
    rng = np.random.default_rng(62)
    a = rng.standard_normal((4, 6)).astype(np.float32)
    b = rng.standard_normal((6,)).astype(np.float32)
    out = {}
    for device in ("cpu", "cuda"):
        x = tn.tensor(a, device=device, requires_grad=True)
        w = tn.tensor(b, device=device, requires_grad=True)
        h = ((x * w + 1.0).tanh() - x.T.T.sigmoid() / 2).relu()
        s = h.softmax(dim=0).log() + h.log_softmax(dim=-1)
        v, i = s.max(dim=1)
        z = tn.cat([s[:, 1:3], s[:, :1]], dim=1).sum() + v.mean() + s[tn.tensor([0, 2, 2],
                                                                            device=device)].sum()
        z.backward()
        out[device] = (z.item(), x.grad.numpy(), w.grad.numpy(), i.numpy(),
                       (h > 0.2).sum().item(), s.argmax(dim=1).numpy())
    for got, want in zip(out["cuda"], out["cpu"]):
        compare("tensor api", np.asarray(got), np.asarray(want), 1e-5, 1e-4)


@pytest.mark.parametrize("opt", ["sgd", "adamw"])
def test_training_flow_cuda_matches_cpu(opt):
    """The seed walkthrough: Linear + ReLU + cross-entropy + an optimizer, a few steps."""
    rng = np.random.default_rng(63)
    xs = rng.standard_normal((16, 8)).astype(np.float32)
    ys = rng.integers(0, 3, 16)
    losses = {}
    for device in ("cpu", "cuda"):
        tn.manual_seed(0)
        model = tn.nn.Sequential(tn.nn.Linear(8, 16), tn.nn.ReLU(), tn.nn.Linear(16, 3)).to(device)
        optim = tn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9) if opt == "sgd" else \
            tn.optim.AdamW(model.parameters(), lr=1e-2)
        x, y = tn.tensor(xs, device=device), tn.tensor(ys, device=device)
        hist = []
        for _ in range(4):
            loss = Fn.cross_entropy(model(x), y)
            optim.backward_step(loss)
            hist.append(loss.item())
        losses[device] = (np.array(hist, np.float32),
                          [p.detach().numpy() for p in model.parameters()])
    compare("losses", losses["cuda"][0], losses["cpu"][0], 1e-5, 1e-4)
    for pc, pg in zip(losses["cpu"][1], losses["cuda"][1]):
        compare("parameters", pg, pc, 1e-5, 1e-4)
    assert losses["cpu"][0][-1] < losses["cpu"][0][0]


def test_bfloat16_numpy_roundtrip():
    x = rnd((3, 17), 64).astype(ml_dtypes.bfloat16)
    got = K.to_numpy(K.from_numpy(x, D.bfloat16))
    assert got.dtype == x.dtype and (got.view(np.int16) == x.view(np.int16)).all()
