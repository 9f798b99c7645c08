"""``tn.randint``, ``tn.randperm`` and ``tn.multinomial`` on "cpu" and "cuda".

Random values can't equal torch's (another generator). Each draw is checked for what
makes it right: shape, dtype and range as torch's; ``tn.manual_seed`` reproduces it and the
next draw differs; "cpu" and "cuda" give the same numbers; the distribution is the
intended one (frequencies within a chi-square bound at p ~ 1e-6, the bound's computation
checked on torch's own draws of the same distribution); and bad input raises the error
torch raises, as a tritonnn error class.
"""
import itertools
import math

import numpy as np
import pytest
import torch

import tritonnn as tn
from conftest import cuda_usable

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _chi2_ok(counts, expected, what):
    """Pearson's chi-square of ``counts`` against ``expected`` below its 1e-6 upper quantile
    (Wilson-Hilferty's approximation, dof = categories - 1)."""
    counts, expected = np.asarray(counts, float), np.asarray(expected, float)
    keep = expected > 0
    assert counts[~keep].sum() == 0, f"{what}: draws in impossible categories"
    chi2 = float(((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum())
    k = int(keep.sum()) - 1
    if k == 0:
        return
    z = 4.75                                            # the normal's 1 - 1e-6 quantile
    bound = k * (1 - 2 / (9 * k) + z * math.sqrt(2 / (9 * k))) ** 3
    assert chi2 < bound, f"{what}: chi-square {chi2:.1f} over {k} dof exceeds {bound:.1f}"


def _same_on_both_devices(draw):
    """``draw(device)`` after ``manual_seed(42)`` gives the same values on cpu and cuda."""
    if not cuda_usable():
        pytest.skip("no cuda device (GPU or interpreter)")
    tn.manual_seed(42)
    a = draw("cpu").numpy()
    tn.manual_seed(42)
    b = draw("cuda").numpy()
    np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------------------------
# randint
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args,kw,shape,low,high", [
    ((0, 10, (3, 5)), {}, (3, 5), 0, 10),
    ((7, (4,)), {}, (4,), 0, 7),                          # randint(high, size)
    ((5,), {"size": (2, 2)}, (2, 2), 0, 5),
    ((-5, 5, (100,)), {}, (100,), -5, 5),
    ((-2 ** 63, 2 ** 63 - 1, (64,)), {}, (64,), -2 ** 63, 2 ** 63 - 1),
    ((0, 10, ()), {}, (), 0, 10),
    ((0, 10, (0, 3)), {}, (0, 3), 0, 10)])
def test_randint_shape_dtype_range_as_torch(args, kw, shape, low, high, device):
    got = tn.randint(*args, device=device, **kw)
    want = torch.randint(*args, **kw)
    assert got.shape == tuple(want.shape) == shape and got.dtype is tn.int64
    v = got.numpy()
    assert v.size == 0 or (v.min() >= low and v.max() < high)


@pytest.mark.parametrize("dtype", ["int32", "uint8", "float32", "bool"])
def test_randint_dtypes(dtype, device):
    high = 2 if dtype == "bool" else 200
    got = tn.randint(0, high, (500,), dtype=getattr(tn, "bool_" if dtype == "bool" else dtype),
                     device=device)
    want = torch.randint(0, high, (500,), dtype=getattr(torch, dtype))
    assert str(got.dtype) == str(want.dtype).replace("torch.", "")
    v = got.numpy().astype(np.int64)
    assert v.min() >= 0 and v.max() < high and len(np.unique(v)) > 1


def test_randint_is_uniform(device):
    tn.manual_seed(1)
    v = tn.randint(-3, 9, (24_000,), device=device).numpy()
    _chi2_ok(np.bincount(v + 3, minlength=12), [2000] * 12, "randint")
    torch.manual_seed(1)                                  # the bound passes torch's draws too
    _chi2_ok(np.bincount(torch.randint(-3, 9, (24_000,)).numpy() + 3, minlength=12), [2000] * 12,
             "torch.randint")
    # a wide range: the top and bottom halves equally likely
    wide = tn.randint(0, 2 ** 62 + 12345, (4000,), device=device).numpy()
    _chi2_ok(np.bincount((wide >= 2 ** 61 + 6172).astype(int), minlength=2), [2000, 2000],
             "randint wide")


def test_randint_reproducible_and_same_on_both_devices(device):
    tn.manual_seed(5)
    a = tn.randint(0, 1000, (50,), device=device).numpy()
    b = tn.randint(0, 1000, (50,), device=device).numpy()
    tn.manual_seed(5)
    np.testing.assert_array_equal(a, tn.randint(0, 1000, (50,), device=device).numpy())
    assert (a != b).any()
    _same_on_both_devices(lambda d: tn.randint(-7, 2 ** 40, (3, 33), device=d))


# ----------------------------------------------------------------------------------------------
# randperm
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 7, 1000, 3001])
def test_randperm_is_a_permutation(n, device):
    got = tn.randperm(n, device=device)
    want = torch.randperm(n)
    assert got.shape == tuple(want.shape) and got.dtype is tn.int64
    np.testing.assert_array_equal(np.sort(got.numpy()), np.arange(n))


def test_randperm_dtypes_reproducible_same_on_both_devices(device):
    for dtype in (tn.int32, tn.float32):
        got = tn.randperm(20, dtype=dtype, device=device)
        assert got.dtype is dtype
        np.testing.assert_array_equal(np.sort(got.numpy()), np.arange(20))
    tn.manual_seed(8)
    a = tn.randperm(500, device=device).numpy()
    tn.manual_seed(8)
    np.testing.assert_array_equal(a, tn.randperm(500, device=device).numpy())
    assert (a != tn.randperm(500, device=device).numpy()).any()
    _same_on_both_devices(lambda d: tn.randperm(2049, device=d))


def test_randperm_every_order_equally_likely():
    """All 24 orders of 4 items, 12,000 draws (on "cpu": the same numbers as "cuda")."""
    tn.manual_seed(2)
    index = {p: i for i, p in enumerate(itertools.permutations(range(4)))}
    counts = np.zeros(24)
    for _ in range(12_000):
        counts[index[tuple(tn.randperm(4).numpy())]] += 1
    _chi2_ok(counts, [500] * 24, "randperm(4)")
    # and a long one: where item 0 lands is uniform over 64 places
    places = np.zeros(64)
    for _ in range(3200):
        places[int(np.flatnonzero(tn.randperm(64).numpy() == 0)[0])] += 1
    _chi2_ok(places, [50] * 64, "randperm(64)")


# ----------------------------------------------------------------------------------------------
# multinomial
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape,n,replacement", [((4,), 2, False), ((4,), 9, True),
                                                 ((3, 5), 5, False), ((3, 5), 1, True),
                                                 ((0, 5), 2, False)])
def test_multinomial_shapes_as_torch(shape, n, replacement, device):
    w = np.arange(1, int(np.prod(shape)) + 1, dtype=np.float32).reshape(shape)
    got = tn.multinomial(tn.tensor(w, device=device), n, replacement)
    want = torch.multinomial(torch.tensor(w), n, replacement)
    assert got.shape == tuple(want.shape) and got.dtype is tn.int64
    if not replacement and got.numel():
        rows = got.numpy().reshape(-1, n)
        assert all(len(set(r)) == n for r in rows)


def test_multinomial_with_replacement_follows_the_weights(device):
    p = np.array([0.1, 0.0, 0.4, 0.2, 0.3], np.float32) * 7.0       # unnormalised is fine
    tn.manual_seed(3)
    v = tn.multinomial(tn.tensor(p, device=device), 20_000, replacement=True).numpy()
    _chi2_ok(np.bincount(v, minlength=5), 20_000 * p / p.sum(), "multinomial with replacement")
    torch.manual_seed(3)
    _chi2_ok(np.bincount(torch.multinomial(torch.tensor(p), 20_000, True).numpy(), minlength=5),
             20_000 * p / p.sum(), "torch.multinomial")


def test_multinomial_without_replacement_is_successive_sampling():
    """The ordered pairs drawn from [0.5, 0.3, 0.2] (one row per draw, one launch): P(i, j) =
    p_i * p_j / (1 - p_i), as torch's. On "cpu" only: "cuda" draws the same numbers (checked
    below), and the interpreter runs one program per row, slowly."""
    p = np.array([0.5, 0.3, 0.2])
    rows = 6000
    tn.manual_seed(4)
    v = tn.multinomial(tn.tensor(np.tile(p, (rows, 1))), 2).numpy()
    expected = np.zeros(9)
    for i in range(3):
        for j in range(3):
            if i != j:
                expected[3 * i + j] = rows * p[i] * p[j] / (1 - p[i])
    _chi2_ok(np.bincount(3 * v[:, 0] + v[:, 1], minlength=9), expected, "without replacement")
    torch.manual_seed(4)
    t = torch.multinomial(torch.tensor(np.tile(p, (rows, 1))), 2).numpy()
    _chi2_ok(np.bincount(3 * t[:, 0] + t[:, 1], minlength=9), expected, "torch, same test")


def test_multinomial_never_draws_a_zero_weight(device):
    w = np.zeros((3, 40), np.float32)
    w[0, [3, 7, 11]] = [1.0, 2.0, 3.0]
    w[1, :] = 1.0
    w[2, 39] = 1e-30                                      # tiny, still positive
    got = tn.multinomial(tn.tensor(w, device=device), 1).numpy()
    assert got[0, 0] in (3, 7, 11) and got[2, 0] == 39
    three = tn.multinomial(tn.tensor(w[:1], device=device), 3).numpy()
    assert sorted(three[0]) == [3, 7, 11]
    rep = tn.multinomial(tn.tensor(w, device=device), 50, True).numpy()
    assert np.isin(rep[0], [3, 7, 11]).all() and (rep[2] == 39).all()


def test_multinomial_without_replacement_past_the_positive_weights(device):
    """More samples than positive weights: torch draws the zero-weight categories last (in no
    stated order); tritonnn too, in index order."""
    w = [0.2, 0.0, 0.8, 0.0]
    got = tn.multinomial(tn.tensor(w, device=device), 4).numpy()
    want = torch.multinomial(torch.tensor(w), 4).numpy()
    assert sorted(got[:2]) == sorted(want[:2]) == [0, 2]
    assert list(got[2:]) == [1, 3] and sorted(want[2:]) == [1, 3]


def test_multinomial_reproducible_and_same_on_both_devices(device):
    w = tn.tensor(np.random.default_rng(0).random((4, 30)), dtype=tn.float32, device=device)
    for replacement in (False, True):
        tn.manual_seed(6)
        a = tn.multinomial(w, 10, replacement).numpy()
        tn.manual_seed(6)
        np.testing.assert_array_equal(a, tn.multinomial(w, 10, replacement).numpy())
        assert (a != tn.multinomial(w, 10, replacement).numpy()).any()
    host = np.random.default_rng(1).random((3, 129)).astype(np.float32)
    for replacement in (False, True):
        _same_on_both_devices(lambda d: tn.multinomial(tn.tensor(host, device=d), 17,
                                                       replacement))


# ----------------------------------------------------------------------------------------------
# bad input: torch refuses the same calls
# ----------------------------------------------------------------------------------------------


def _w(*v):
    return lambda d: tn.tensor(list(v), device=d)


BAD = [
    ("randint low >= high", lambda d: tn.randint(3, 3, (2,), device=d),
     lambda: torch.randint(3, 3, (2,)), tn.TritonnnError, r"randint: low must be below high"),
    ("randint high 0", lambda d: tn.randint(0, (2,), device=d),
     lambda: torch.randint(0, (2,)), tn.TritonnnError, r"randint: low must be below high"),
    ("randint uint8 300", lambda d: tn.randint(0, 302, (2,), dtype=tn.uint8, device=d),
     lambda: torch.randint(0, 302, (2,), dtype=torch.uint8), tn.DTypeError,
     r"randint: 301 is out of range for uint8"),
    ("randint bool 3", lambda d: tn.randint(0, 3, (2,), dtype=tn.bool_, device=d),
     lambda: torch.randint(0, 3, (2,), dtype=torch.bool), tn.DTypeError, r"randint: bool"),
    ("randint float bound", lambda d: tn.randint(0.5, 10, (3,), device=d),
     lambda: torch.randint(0.5, 10, (3,)), tn.DTypeError, r"randint: low must be an int"),
    ("randint high 2**63", lambda d: tn.randint(0, 2 ** 63, (3,), device=d),
     lambda: torch.randint(0, 2 ** 63, (3,)), tn.DTypeError, r"randint: 9223372036854775808"),
    ("randint negative size", lambda d: tn.randint(0, 10, (-1,), device=d),
     lambda: torch.randint(0, 10, (-1,)), tn.ShapeError, r"randint: sizes must be non-negative"),
    ("randint no size", lambda d: tn.randint(0, 10, device=d),
     lambda: torch.randint(0, 10), tn.ShapeError, r"randint: a size is needed"),
    ("randperm -1", lambda d: tn.randperm(-1, device=d), lambda: torch.randperm(-1),
     tn.ShapeError, r"randperm: n must be >= 0, got -1"),
    ("randperm float", lambda d: tn.randperm(2.0, device=d), lambda: torch.randperm(2.0),
     tn.DTypeError, r"randperm: n must be an int"),
    ("randperm uint8 300", lambda d: tn.randperm(300, dtype=tn.uint8, device=d),
     lambda: torch.randperm(300, dtype=torch.uint8), tn.DTypeError,
     r"randperm: 299 is out of range for uint8"),
    ("multinomial 0 samples", lambda d: tn.multinomial(_w(0.2, 0.8)(d), 0),
     lambda: torch.multinomial(torch.tensor([0.2, 0.8]), 0), tn.TritonnnError,
     r"multinomial: num_samples must be positive, got 0"),
    ("multinomial too many", lambda d: tn.multinomial(_w(0.2, 0.8)(d), 3),
     lambda: torch.multinomial(torch.tensor([0.2, 0.8]), 3), tn.TritonnnError,
     r"multinomial: can't draw 3 samples without replacement from 2 categories"),
    ("multinomial zero row", lambda d: tn.multinomial(_w(0.0, 0.0)(d), 1, True),
     lambda: torch.multinomial(torch.tensor([0.0, 0.0]), 1, True), tn.TritonnnError,
     r"multinomial: row 0 of the weights sums to 0"),
    ("multinomial negative", lambda d: tn.multinomial(_w(-1.0, 2.0)(d), 1),
     lambda: torch.multinomial(torch.tensor([-1.0, 2.0]), 1), tn.TritonnnError,
     r"multinomial: weights must be finite and non-negative; row 0 holds -1.0 at 0"),
    ("multinomial nan", lambda d: tn.multinomial(_w(1.0, float("nan"))(d), 1),
     lambda: torch.multinomial(torch.tensor([1.0, float("nan")]), 1), tn.TritonnnError,
     r"multinomial: weights must be finite.*nan at 1"),
    ("multinomial inf", lambda d: tn.multinomial(_w(float("inf"), 1.0)(d), 1),
     lambda: torch.multinomial(torch.tensor([float("inf"), 1.0]), 1), tn.TritonnnError,
     r"multinomial: weights must be finite.*inf at 0"),
    ("multinomial ints", lambda d: tn.multinomial(tn.tensor([1, 2], device=d), 1),
     lambda: torch.multinomial(torch.tensor([1, 2]), 1), tn.DTypeError,
     r"multinomial: expected floating-point weights, got int64"),
    ("multinomial 3-D", lambda d: tn.multinomial(tn.ones(2, 2, 2, device=d), 1),
     lambda: torch.multinomial(torch.ones(2, 2, 2), 1), tn.ShapeError,
     r"multinomial: probs must be 1-D .* or 2-D .*\(2, 2, 2\)"),
    ("multinomial 0-d", lambda d: tn.multinomial(tn.tensor(1.0, device=d), 1),
     lambda: torch.multinomial(torch.tensor(1.0), 1), tn.ShapeError,
     r"multinomial: probs must be 1-D"),
    ("multinomial replacement str", lambda d: tn.multinomial(_w(0.5, 0.5)(d), 1, "yes"),
     lambda: torch.multinomial(torch.tensor([0.5, 0.5]), 1, "yes"), tn.DTypeError,
     r"multinomial: replacement must be a bool"),
]


@pytest.mark.parametrize("name,call,torch_call,error,match", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_refused_as_torch_refuses_it(name, call, torch_call, error, match, device):
    with pytest.raises(error, match=match):
        call(device)
    with pytest.raises((RuntimeError, TypeError, ValueError, OverflowError)):
        torch_call()
