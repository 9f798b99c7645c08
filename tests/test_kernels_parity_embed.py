"""Issue 11's backend functions, Triton kernels against their numpy mirrors (embedding family;
dropout, randint, randperm and multinomial in the random family).

The helpers and the (dtype, atol, rtol) table are ``tests/test_kernels_parity.py``'s. Shapes
are odd, operands come contiguous, transposed, sliced and expanded. Every result here is
bit-identical across the backends, so most tolerances are 0: the gathers and one-hot codes
move bits, the gradient sums add the same float32 numbers in the same order, and the draws
are integer Philox arithmetic (the multinomial race compares float64 logs: exact under the
interpreter, which runs numpy's).
"""
import numpy as np
import pytest

import tritonnn as tn
from tritonnn import dtypes as D
from tritonnn.contract import RangeCheck
from tritonnn.philox import philox

from test_kernels_parity import DTYPES, DTYPE_IDS, LAYOUTS, F, K, compare, make, rnd
from conftest import cuda_usable

pytestmark = [
    pytest.mark.skipif(not cuda_usable(), reason="no GPU and no Triton interpreter"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),
]

# the gradient sums add the same float32 (float64) numbers in the same order on both sides
EXACT = [(D.float32, 0, 0), (D.bfloat16, 0, 0), (D.float16, 0, 0), (D.float64, 0, 0)]
EXACT_IDS = ["float32", "bfloat16", "float16", "float64"]
SEED = 0x1234_5678_9ABC_DEF0


def _both(name, host_args, dev_args):
    """``name`` on the mirror (host args) and the kernels (device args)."""
    return getattr(F, name)(*host_args), getattr(K, name)(*dev_args)


def _indices(shape, num, seed, dtype=D.int64, layout="contiguous", repeats=True):
    rng = np.random.default_rng(seed)
    hi = max(1, num // 3) if repeats else num         # few distinct rows: many repeats
    return make(rng.integers(0, hi, shape), dtype, layout)


# ----------------------------------------------------------------------------------------------
# embedding: forward gather, backward sums, one-hot
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("wdtype", [D.float32, D.bfloat16, D.float16, D.float64, D.int64], ids=str)
@pytest.mark.parametrize("wlayout", ["contiguous", "transposed", "sliced"])
@pytest.mark.parametrize("ishape,ilayout,idtype", [
    ((17,), "contiguous", D.int64), ((3, 17), "transposed", D.int32),
    ((5, 3, 7), "sliced", D.int64), ((), "contiguous", D.int32), ((0, 4), "contiguous", D.int64)])
def test_embedding_fwd(ishape, ilayout, idtype, wlayout, wdtype):
    w = make(rnd((33, 129), 1) * 4, wdtype, wlayout)
    idx = _indices(ishape, 33, 2, idtype, ilayout)
    want, got = _both("embedding_fwd", [idx.host, w.host, None], [idx.dev, w.dev, None])
    assert want.shape == ishape + (129,)
    compare("embedding_fwd", got, want, 0, 0)


@pytest.mark.parametrize("dtype,atol,rtol", EXACT, ids=EXACT_IDS)
@pytest.mark.parametrize("glayout", LAYOUTS)
@pytest.mark.parametrize("padding_idx", [None, 0, 5])
def test_embedding_bwd(padding_idx, glayout, dtype, atol, rtol):
    num, dim = 31, 129
    idx = _indices((6, 17), num, 3, D.int64, "transposed")     # rows < 10, many repeats
    g = make(rnd((6, 17, dim), 4) * 3, dtype, glayout)
    want, got = _both("embedding_bwd", [g.host, idx.host, num, padding_idx],
                      [g.dev, idx.dev, num, padding_idx])
    assert want.shape == (num, dim) and want.dtype == dtype.np
    compare("embedding_bwd", got, want, atol, rtol)
    unused = np.setdiff1d(np.arange(num), idx.host)
    assert (K.to_numpy(got)[unused] == 0).all(), "rows no index names must be 0"
    if padding_idx is not None:
        assert (K.to_numpy(got)[padding_idx] == 0).all(), "the padding row takes no gradient"


def test_embedding_bwd_heavy_repeats_int32_and_empty():
    num, dim = 7, 3
    idx = make(np.r_[np.full(300, 2), np.arange(7), np.full(41, 6)], D.int32)
    g = make(rnd((348, dim), 5), D.float32)
    want, got = _both("embedding_bwd", [g.host, idx.host, num, None], [g.dev, idx.dev, num, None])
    compare("embedding_bwd", got, want, 0, 0)
    ref = np.zeros((num, dim))
    np.add.at(ref, idx.host, g.host.astype(np.float64))
    compare("embedding_bwd vs float64", K.to_numpy(got).astype(np.float64), ref, 1e-5, 1e-5)
    # no index at all: a zero table
    none = make(np.zeros((0,), np.int64), D.int64)
    want, got = _both("embedding_bwd", [make(np.zeros((0, dim)), D.float32).host, none.host, 4,
                                        None],
                      [K.from_numpy(np.zeros((0, dim), np.float32), D.float32), none.dev, 4, None])
    compare("embedding_bwd (no indices)", got, np.zeros((4, dim), np.float32), 0, 0)


@pytest.mark.parametrize("idtype", [D.int64, D.int32, D.uint8], ids=str)
@pytest.mark.parametrize("shape,layout", [((17,), "sliced"), ((3, 17), "transposed"),
                                          ((), "contiguous"), ((0,), "contiguous")])
@pytest.mark.parametrize("num_classes", [1, 13, 129])
def test_one_hot(num_classes, shape, layout, idtype):
    idx = make(np.random.default_rng(6).integers(0, num_classes, shape), idtype, layout)
    want, got = _both("one_hot", [idx.host, num_classes, None], [idx.dev, num_classes, None])
    assert want.shape == shape + (num_classes,) and want.dtype == np.int64
    compare("one_hot", got, want, 0, 0)


@pytest.mark.parametrize("name,num", [("embedding_fwd", 5), ("one_hot", 5), ("embedding_fwd", 0)])
@pytest.mark.parametrize("idtype", [D.int64, D.int32], ids=str)
def test_indices_out_of_range_are_reported(name, num, idtype):
    # numpy raises before computing; the kernel reads nothing for a bad index (its row is 0)
    # and the next read of any buffer raises the same error (lowest below, else highest above)
    check = RangeCheck(0, num, None, tn.IndexOutOfRange, "value {} is out")
    values = np.array([[1, 7, 2], [-4, 9, 0]]) if num else np.array([[3, 1]])
    bad = "-4" if num else "3"
    idx = make(values, idtype, "transposed")
    host_args = [idx.host, rnd((num, 3), 2)] if name == "embedding_fwd" else [idx.host, num]
    dev_args = [idx.dev, make(host_args[1], D.float32).dev] if name == "embedding_fwd" else \
        [idx.dev, num]
    with pytest.raises(tn.IndexOutOfRange, match=f"value {bad} is out"):
        getattr(F, name)(*host_args, check)
    out = getattr(K, name)(*dev_args, check)
    with pytest.raises(tn.IndexOutOfRange, match=f"value {bad} is out"):
        K.to_numpy(out)
    got = K.to_numpy(out)
    inside = (idx.host >= 0) & (idx.host < num)
    if num:
        want = getattr(F, name)(np.where(inside, idx.host, 0), host_args[1], None)
        assert (got[inside] == want[inside]).all() and (got[~inside] == 0).all()


# ----------------------------------------------------------------------------------------------
# random family: dropout, randint, randperm, multinomial
# ----------------------------------------------------------------------------------------------


def test_philox4_words_are_philox():
    """The mirror's fast four-word Philox equals ``tritonnn.philox`` (the one rand uses)."""
    from tritonnn.fallback_cpu.random import _philox4
    for seed, offset, n in [(0, 0, 5), (SEED, 2 ** 33 - 3, 70_003), (2 ** 64 - 1, 2 ** 63, 9)]:
        got = _philox4(seed, offset, n)
        want = philox(seed, np.arange(n, dtype=np.uint64) + np.uint64(offset))
        for k in range(4):
            np.testing.assert_array_equal(got[:, k], want[k], err_msg=f"word {k}, {seed}, {offset}")


DROPOUT_DTYPES = DTYPES + [(D.float64, 0, 0)]


@pytest.mark.parametrize("dtype,atol,rtol", DROPOUT_DTYPES, ids=DTYPE_IDS + ["float64"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 1.0])
def test_dropout(p, layout, dtype, atol, rtol):
    x = make(rnd((17, 129), 7) * 3, dtype, layout)
    for offset in (0, 8, 2 ** 33 + 4):
        want, got = _both("dropout", [x.host, p, SEED, offset], [x.dev, p, SEED, offset])
        # one float32 (float64) multiply, rounded once on both sides: bit for bit
        compare("dropout", got, want, 0, 0)
        kept = K.to_numpy(got) != 0
        if p in (0.0, 1.0):
            assert kept.all() if p == 0.0 else not kept.any()


def test_dropout_split_layout_and_odd_sizes():
    """A layout that keeps six dims is launched in pieces starting mid-counter (the unaligned
    path): the mask must still follow the row-major index of the whole tensor."""
    x6 = rnd((3, 3, 5, 3, 3, 7), 8)
    perm = (5, 3, 1, 4, 2, 0)
    xd = K.permute(K.from_numpy(x6, D.float32), perm)
    want = F.dropout(x6.transpose(perm), 0.4, SEED, 12)
    compare("dropout (6 dims)", K.dropout(xd, 0.4, SEED, 12), want, 0, 0)
    contiguous = F.dropout(np.ascontiguousarray(x6.transpose(perm)), 0.4, SEED, 12)
    np.testing.assert_array_equal(want, contiguous)
    for n in (1, 3, 5, 1029):
        x = rnd((n,), 9)
        compare("dropout", K.dropout(K.from_numpy(x, D.float32), 0.5, 3, 4),
                F.dropout(x, 0.5, 3, 4), 0, 0)


def test_dropout_keeps_nan_as_pytorch():
    """A dropped NaN or inf becomes NaN (x * 0), a kept one stays (x * scale), as PyTorch."""
    x = np.array([np.nan, np.inf, -np.inf, 1.0] * 8, np.float32)
    want, got = _both("dropout", [x, 0.5, SEED, 0], [K.from_numpy(x, D.float32), 0.5, SEED, 0])
    compare("dropout", got, want, 0, 0)
    kept = F.dropout(np.ones_like(x), 0.5, SEED, 0) != 0
    assert 0 < kept.sum() < x.size
    assert np.isnan(want[~kept & ~np.isfinite(x)]).all()
    np.testing.assert_array_equal(want[kept], x[kept] * np.float32(2.0))


@pytest.mark.parametrize("low,high", [(0, 10), (-5, 5), (3, 2 ** 40), (0, 1),
                                      (-2 ** 63, 2 ** 63 - 1)])
@pytest.mark.parametrize("shape,offset", [((1,), 0), ((3, 17), 4), ((129,), 2 ** 33 + 8)])
def test_randint(shape, offset, low, high):
    want, got = _both("randint", [shape, low, high, SEED, offset], [shape, low, high, SEED, offset])
    compare("randint", got, want, 0, 0)
    assert want.dtype == np.int64 and want.shape == shape
    assert want.min() >= low and want.max() < high


@pytest.mark.parametrize("n", [1, 2, 3, 17, 129, 1000, 4099])
def test_randperm(n):
    want, got = _both("randperm", [n, SEED, 8], [n, SEED, 8])
    compare("randperm", got, want, 0, 0)
    np.testing.assert_array_equal(np.sort(want), np.arange(n))


@pytest.mark.parametrize("dtype", [D.float32, D.bfloat16, D.float64], ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
@pytest.mark.parametrize("replacement", [True, False])
@pytest.mark.parametrize("rows,c,n", [(1, 1, 1), (3, 17, 5), (2, 129, 129), (4, 300, 7)])
def test_multinomial(rows, c, n, replacement, layout, dtype):
    if not replacement and n > c:
        pytest.skip("more samples than categories")
    w = np.abs(rnd((rows, c), 10)) + 0.01
    if c > n + 2:
        w[:, 1::3] = 0                                   # zero weights are never drawn
    if not replacement:
        n = min(n, int((w > 0).sum(axis=1).min()))
    probs = make(w, dtype, layout)
    for offset in (0, 2 ** 33 + 4):
        want, got = _both("multinomial", [probs.host, n, replacement, SEED, offset],
                          [probs.dev, n, replacement, SEED, offset])
        assert want.shape == (rows, n) and want.dtype == np.int64
        compare("multinomial", got, want, 0, 0)
        assert (probs.host.astype(np.float64)[np.arange(rows)[:, None], want] > 0).all()
        if not replacement:
            assert all(len(set(r)) == n for r in want), "a category drawn twice"


def test_multinomial_without_replacement_past_the_positive_weights():
    """Fewer positive weights than samples: the zero weights (+inf keys) follow by index."""
    w = np.zeros((2, 37), np.float32)
    w[0, [5, 20]] = [1.0, 3.0]
    w[1, :] = np.linspace(0.0, 1.0, 37)
    probs = make(w, D.float32)
    want, got = _both("multinomial", [probs.host, 6, False, SEED, 0], [probs.dev, 6, False, SEED, 0])
    compare("multinomial", got, want, 0, 0)
    assert sorted(want[0, :2]) == [5, 20] and list(want[0, 2:]) == [0, 1, 2, 3]
