"""The strided kernels' int32 index path: when it is chosen, and that both widths agree.

``_launch.index32`` decides, per launch piece, whether every linear index and every
element offset a strided kernel computes (masked lanes included) fits int32; the
elementwise, copy and index-offset kernels then divide in 32 bits. The decision is
checked on LLM-sized layouts without allocating them, against a brute-force walk of
every lane on small layouts with huge strides, and the kernels are run both ways on
strided, transposed, expanded and 5-D operands against numpy.
"""
import importlib

import numpy as np
import pytest

from tritonnn import dtypes as D
from tritonnn.backends import backend
from tritonnn.device import as_device

from conftest import cuda_usable

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

INT32_MAX = 2 ** 31 - 1


@pytest.fixture(scope="module")
def L():
    pytest.importorskip("triton")
    if not cuda_usable():
        pytest.skip("no GPU and no Triton interpreter")
    from tritonnn.kernels import _launch
    return _launch


def decide(L, shape, *strides, block=1024):
    """``index32`` for operands of ``shape`` with ``strides`` (one tuple per operand)."""
    geo = L.layout(tuple(shape), tuple(tuple(s) for s in strides))
    assert geo is not None, f"{shape} does not collapse to {L.MAX_DIMS} dims"
    ndim, sizes, per_op = geo
    return L.index32(ndim, sizes, per_op, block)


def contiguous_strides(shape):
    out, step = [], 1
    for s in reversed(shape):
        out.append(step)
        step *= s
    return tuple(reversed(out))


# ----------------------------------------------------------------------------------------------
# the decision, on shapes never allocated
# ----------------------------------------------------------------------------------------------


def test_ordinary_training_shapes_index_in_int32(L):
    # the MLP's activations and a bias broadcast over the batch
    assert decide(L, (128, 256), (256, 1), (0, 1), (256, 1))
    # a transposed 4-D view (attention's permute) and its contiguous copy
    shape = (8, 12, 512, 64)
    src = (12 * 512 * 64, 64, 12 * 64, 1)       # (B, T, H, D) storage read as (B, H, T, D)
    assert decide(L, shape, contiguous_strides(shape), src)
    # an embedding gradient of Llama-3's vocabulary: 525M elements still fit
    assert decide(L, (128256, 4096), (4096, 1), (4096, 1))


@pytest.mark.parametrize("shape,strides,why", [
    ((8, 4096, 128256), None, "4.2G logits: the linear index passes 2**31"),
    ((65536, 40000), (1, 65536), "a transposed 2.6G-element matrix"),
    ((16, 1024), (1 << 28, 1), "16 rows of a huge buffer: few elements, offsets past 2**31"),
    ((1 << 20, 4096), (0, 1), "an expanded row: 2**32 lanes over 4096 elements"),
    ((1 << 31,), (1,), "exactly 2**31 elements: n itself is not an int32"),
])
def test_llm_sizes_index_in_int64(L, shape, strides, why):
    strides = strides or contiguous_strides(shape)
    assert not decide(L, shape, contiguous_strides(shape), strides), why


def test_the_boundary_is_exact(L):
    # 1-D contiguous: the last lane of the last block is the largest index computed
    assert decide(L, ((1 << 31) - 1024,), (1,))
    assert decide(L, ((1 << 31) - 2047,), (1,))            # rounds up to the same last block
    assert not decide(L, ((1 << 31) + 1,), (1,))
    # one operand's largest offset decides: (rows - 1) * stride + (cols - 1)
    cols = 1000
    stride = (INT32_MAX - (cols - 1)) // 3                  # 4 rows end exactly at INT32_MAX
    assert decide(L, (4, cols), (cols, 1), (stride, 1), block=1000)
    assert not decide(L, (4, cols), (cols, 1), (stride + 1, 1), block=1000)


def test_empty_layouts_launch_nothing(L):
    K = backend(as_device("cuda"))
    assert decide(L, (4, 0), (1, 1), (1, 4))
    for shape in ((4, 0), (0, 3, 5), (2, 0, 3, 1, 2, 3)):
        x = K.from_numpy(np.zeros(shape, np.float32), D.float32)
        xt = K.permute(x, tuple(reversed(range(len(shape)))))
        assert K.to_numpy(K.contiguous(xt)).shape == tuple(reversed(shape))
        assert K.to_numpy(K.binary(xt, 1.0, "add")).shape == tuple(reversed(shape))


def test_masked_lanes_count(L):
    # 2 x 5 elements with a large row stride: the real offsets end at 2**24 + 4, but a
    # 1024-lane program also computes lanes 10..1023, whose row index runs to 204
    assert decide(L, (2, 5), (5, 1), (1 << 24, 1), block=16)
    assert not decide(L, (2, 5), (5, 1), (1 << 24, 1), block=1024)


def _lane_values(ndim, sizes, strides, last):
    """Every value ``strided_offset`` computes for lanes 0..last (Python ints), the largest."""
    real = sizes[4 - ndim:]
    st = strides[4 - ndim:]
    biggest = last
    for lin in range(last + 1):
        off, rest = 0, lin
        for size, stride in zip(reversed(real[1:]), reversed(st[1:])):
            off += (rest % size) * stride
            rest //= size
            biggest = max(biggest, off, rest)
        off += rest * st[0]
        biggest = max(biggest, off)
    return biggest


def test_decision_against_every_lane(L):
    """Random small layouts with strides near 2**31 / size: int32 only where every lane fits,
    and int64 wherever a valid element's offset does not."""
    rng = np.random.default_rng(0)
    block = 16
    for _ in range(300):
        ndim = int(rng.integers(1, 5))
        real = tuple(int(s) for s in rng.integers(2, 6, ndim))
        sizes = (1,) * (4 - ndim) + real
        scale = INT32_MAX // max(1, sum(real))
        strides = tuple((0,) * (4 - ndim) + tuple(int(x) for x in rng.integers(0, 2 * scale, ndim))
                        for _ in range(2))
        n = int(np.prod(real))
        last = -(-n // block) * block - 1
        chosen = L.index32(ndim, sizes, strides, block)
        lane_max = max(_lane_values(ndim, sizes, st, last) for st in strides)
        valid_max = max(sum((s - 1) * t for s, t in zip(real, st[4 - ndim:])) for st in strides)
        if chosen:
            assert lane_max <= INT32_MAX, (sizes, strides)
        if valid_max > INT32_MAX:
            assert not chosen, (sizes, strides)


# ----------------------------------------------------------------------------------------------
# the kernels, both ways
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def fresh_plans(L):
    """Launch plans (which hold the decision) made afresh inside the test, and after it."""
    L._strided_plan.cache_clear()
    yield
    L._strided_plan.cache_clear()


@pytest.fixture(params=["int32", "int64"])
def width(request, L, monkeypatch, fresh_plans):
    """Run the kernels with the decision as made (int32 for these sizes) or forced to int64;
    records every decision made (one per launch layout)."""
    seen = []
    real = L.index32

    def spy(*args):
        got = real(*args) if request.param == "int32" else False
        seen.append(got)
        return got

    monkeypatch.setattr(L, "index32", spy)
    return request.param, seen


def _check_width(width):
    kind, seen = width
    assert seen, "no strided launch asked index32"
    assert set(seen) == {kind == "int32"}


def _dev(a, dtype=D.float32):
    K = backend(as_device("cuda"))
    return K.from_numpy(np.asarray(a), dtype)


def test_binary_where_unary_both_widths(width):
    K = backend(as_device("cuda"))
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 5, 7, 9)).astype(np.float32)
    b = rng.standard_normal((7, 1)).astype(np.float32)
    perm = (2, 0, 3, 1)
    ad = K.permute(_dev(np.ascontiguousarray(a.transpose(perm))), tuple(np.argsort(perm)))
    np.testing.assert_array_equal(K.to_numpy(K.binary(ad, _dev(b), "mul")), a * b)
    np.testing.assert_array_equal(K.to_numpy(K.binary(ad, _dev(b), "maximum")), np.maximum(a, b))
    np.testing.assert_array_equal(K.to_numpy(K.binary(ad, 2.5, "sub")), a - np.float32(2.5))
    np.testing.assert_array_equal(K.to_numpy(K.unary(ad, "abs")), np.abs(a))
    cond = a > 0
    got = K.where(_dev(cond, D.bool_), ad, _dev(b))
    np.testing.assert_array_equal(K.to_numpy(got), np.where(cond, a, b))
    g = rng.standard_normal(a.shape).astype(np.float32)
    got = K.relu_bwd(_dev(g), K.relu_fwd(ad))
    np.testing.assert_array_equal(K.to_numpy(got), np.where(a > 0, g, 0))
    _check_width(width)


def test_copy_cast_accumulate_index_both_widths(width):
    K = backend(as_device("cuda"))
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 4, 10)).astype(np.float32)
    xd = K.permute(_dev(np.ascontiguousarray(x.transpose(2, 0, 1))), (1, 2, 0))
    np.testing.assert_array_equal(K.to_numpy(K.contiguous(xd)), x)
    np.testing.assert_array_equal(K.to_numpy(K.cast(xd, D.int64)), x.astype(np.int64))
    acc = _dev(np.ones((6, 4, 10), np.float32))
    K.accumulate_(acc, K.getitem(xd, (slice(None), slice(None), slice(0, 1))))
    np.testing.assert_array_equal(K.to_numpy(acc), 1 + np.broadcast_to(x[:, :, :1], x.shape))
    idx = np.array([[5, 0], [-1, 3]])
    got = K.getitem(xd, (_dev(idx, D.int64),))
    np.testing.assert_array_equal(K.to_numpy(got), x[idx])
    _check_width(width)


def test_five_dims_split_into_pieces_both_widths(width):
    """A layout that keeps five dims runs as one launch per leading index, each decided."""
    K = backend(as_device("cuda"))
    bufs = importlib.import_module("tritonnn.kernels.buffers")
    L = importlib.import_module("tritonnn.kernels._launch")
    rng = np.random.default_rng(3)
    a = rng.standard_normal((2, 3, 4, 5, 6)).astype(np.float32)
    perm = (4, 2, 0, 3, 1)
    ad = K.permute(_dev(np.ascontiguousarray(a.transpose(perm))), tuple(np.argsort(perm)))
    assert L.layout(a.shape, (bufs.strides(ad), (120, 40, 10, 2, 1))) is None
    b = rng.standard_normal((1, 3, 1, 5, 1)).astype(np.float32)
    np.testing.assert_array_equal(K.to_numpy(K.binary(ad, _dev(b), "add")), a + b)
    _check_width(width)


def test_every_strided_launch_of_a_small_tensor_picks_int32(L, monkeypatch, fresh_plans):
    """Through the public API: each elementwise op and copy on ordinary shapes asks, and
    int32 is the answer."""
    import tritonnn as tn
    seen = []
    real = L.index32
    monkeypatch.setattr(L, "index32", lambda *a: seen.append(real(*a)) or seen[-1])
    x = tn.tensor(np.arange(24, dtype=np.float32).reshape(2, 3, 4), device="cuda")
    y = (x.permute(2, 0, 1) * 2 + 1).relu()
    z = y.permute(1, 2, 0).contiguous()
    want = np.arange(24, dtype=np.float32).reshape(2, 3, 4).transpose(2, 0, 1) * 2 + 1
    np.testing.assert_array_equal(z.numpy(), want.transpose(1, 2, 0))
    assert len(seen) >= 3 and all(seen), seen

