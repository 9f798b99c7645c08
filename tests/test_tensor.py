"""Tensor basics on device "cpu": factories, dtypes, conversion, views, arithmetic, reductions, repr."""
import numpy as np
import pytest

import tritonnn as tn
from checks import assert_close


def arr(t):
    return t.detach().numpy()


# ----------------------------------------------------------------------------------------------
# factories and dtypes
# ----------------------------------------------------------------------------------------------


def test_dtype_names():
    names = {tn.float32: "float32", tn.float64: "float64", tn.float16: "float16",
             tn.bfloat16: "bfloat16", tn.int64: "int64", tn.int32: "int32", tn.uint32: "uint32",
             tn.uint8: "uint8", tn.bool: "bool"}
    for dt, name in names.items():
        assert str(dt) == name


@pytest.mark.parametrize("data, dtype, np_dtype", [
    (1.5, tn.float32, np.float32),
    ([1.0, 2.5], tn.float32, np.float32),
    ([[1, 2], [3, 4]], tn.int64, np.int64),
    (7, tn.int64, np.int64),
    (True, tn.bool, np.bool_),
    ([True, False, True], tn.bool, np.bool_),
    (np.array([1, 2], dtype=np.int32), tn.int32, np.int32),
    (np.array([1.0, 2.0]), tn.float64, np.float64),
    (np.array([1, 2], dtype=np.uint8), tn.uint8, np.uint8),
    (np.array([0.5], dtype=np.float16), tn.float16, np.float16),
])
def test_tensor_infers_dtype(data, dtype, np_dtype):
    t = tn.tensor(data)
    assert t.dtype is dtype
    assert t.device == "cpu" and str(t.device) == "cpu"
    a = t.numpy()
    assert a.dtype == np_dtype
    np.testing.assert_array_equal(a, np.asarray(data).astype(np_dtype))
    assert t.shape == np.asarray(data).shape
    assert t.ndim == np.asarray(data).ndim


def test_tensor_explicit_dtype_and_copy():
    src = np.arange(6, dtype=np.float64).reshape(2, 3)
    t = tn.tensor(src, dtype=tn.float32)
    assert t.dtype is tn.float32
    src[0, 0] = 100.0                      # the tensor holds a copy
    assert t[0, 0].item() == 0.0
    u = tn.from_numpy(np.array([[1, 2]], dtype=np.int32))
    assert u.dtype is tn.int32 and u.shape == (1, 2)
    with pytest.raises(tn.TritonnnError):
        tn.from_numpy([1, 2])


@pytest.mark.parametrize("shape", [(3,), (2, 3), (1, 4, 1), (0, 2)])
def test_factories(shape):
    z = tn.zeros(*shape)
    o = tn.ones(shape, dtype=tn.float64)
    e = tn.empty(*shape, dtype=tn.int32)
    assert z.shape == shape and z.dtype is tn.float32
    assert o.dtype is tn.float64 and e.dtype is tn.int32 and e.shape == shape
    np.testing.assert_array_equal(z.numpy(), np.zeros(shape, np.float32))
    np.testing.assert_array_equal(o.numpy(), np.ones(shape))
    f = tn.full(shape, 2.5)
    assert f.dtype is tn.float32
    np.testing.assert_array_equal(f.numpy(), np.full(shape, 2.5, np.float32))
    assert tn.full(shape, 3).dtype is tn.int64
    assert z.numel() == int(np.prod(shape))


def test_arange_and_len():
    a = tn.arange(5)
    assert a.dtype is tn.int64
    assert a.tolist() == [0, 1, 2, 3, 4]
    assert tn.arange(2, 8, 3).tolist() == [2, 5]
    assert len(tn.zeros(4, 2)) == 4
    assert tn.zeros(4, 2).numel() == 8


def test_rand_randn_reproducible():
    tn.manual_seed(123)
    a, b = tn.rand(4, 5), tn.randn(3, 7)
    tn.manual_seed(123)
    a2, b2 = tn.rand(4, 5), tn.randn(3, 7)
    np.testing.assert_array_equal(a.numpy(), a2.numpy())
    np.testing.assert_array_equal(b.numpy(), b2.numpy())
    c = tn.rand(4, 5)                      # the stream moves on
    assert not np.array_equal(a.numpy(), c.numpy())
    tn.manual_seed(124)
    assert not np.array_equal(a.numpy(), tn.rand(4, 5).numpy())
    assert a.dtype is tn.float32
    assert (a.numpy() >= 0).all() and (a.numpy() < 1).all()
    big = tn.randn(20000).numpy().astype(np.float64)
    assert abs(big.mean()) < 0.05 and abs(big.std() - 1) < 0.05
    uni = tn.rand(20000).numpy().astype(np.float64)
    assert abs(uni.mean() - 0.5) < 0.02
    assert tn.randn(2, 2, dtype=tn.float64).dtype is tn.float64
    with pytest.raises(tn.DTypeError):
        tn.rand(3, dtype=tn.int64)


# ----------------------------------------------------------------------------------------------
# conversion and host round trips
# ----------------------------------------------------------------------------------------------


def test_to_dtype_device_both():
    t = tn.tensor([[1.7, -2.2], [3.0, 4.5]], dtype=tn.float64)
    f = t.to(tn.float32)
    assert f.dtype is tn.float32 and f.device == "cpu"
    assert_close(f.numpy(), t.numpy(), atol=1e-6)
    i = t.to(tn.int64)
    assert i.dtype is tn.int64
    assert i.tolist() == [[1, -2], [3, 4]]           # truncation toward zero, as torch
    u = tn.tensor([1.0, 2.0, 250.0]).to(tn.uint8)
    assert u.dtype is tn.uint8 and u.tolist() == [1, 2, 250]
    same = t.to("cpu")
    assert same.device == "cpu" and same.dtype is tn.float64
    both = t.to("cpu", tn.float16)
    assert both.dtype is tn.float16 and both.device == tn.device("cpu")
    assert t.to(tn.device("cpu"), dtype=tn.float32).dtype is tn.float32
    assert t.to_dtype(tn.float32).dtype is tn.float32
    b = tn.tensor([0.0, 2.0]).to(tn.bool)
    assert b.dtype is tn.bool and b.tolist() == [False, True]


def test_tolist_item_numpy():
    t = tn.tensor([[1.5, 2.0], [3.0, 4.0]])
    assert t.tolist() == [[1.5, 2.0], [3.0, 4.0]]
    assert isinstance(t[1, 0].item(), float) and t[1, 0].item() == 3.0
    assert isinstance(tn.tensor(3).item(), int)
    assert tn.tensor([5]).item() == 5
    with pytest.raises(tn.ShapeError):
        t.item()
    a = t.numpy()
    assert isinstance(a, np.ndarray) and a.dtype == np.float32
    np.testing.assert_array_equal(a, [[1.5, 2.0], [3.0, 4.0]])


def test_numpy_refuses_requires_grad():
    w = tn.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(tn.TritonnnError, match="detach"):
        w.numpy()
    with pytest.raises(tn.TritonnnError, match="detach"):
        (w * 2).numpy()
    np.testing.assert_array_equal(w.detach().numpy(), [1.0, 2.0])


def test_requires_grad_only_for_floats():
    with pytest.raises(tn.DTypeError):
        tn.tensor([1, 2], requires_grad=True)
    t = tn.tensor([1.0])
    assert not t.requires_grad
    assert t.requires_grad_() is t and t.requires_grad


def test_repr_format():
    t = tn.tensor([[1.0, 2.0], [3.0, 4.0]])
    r = repr(t)
    assert r.startswith("tensor([[1., 2.],")
    assert "[3., 4.]]" in r
    assert r.endswith("shape=(2, 2), dtype=float32, device=cpu)")
    assert str(t) == r
    r64 = repr(tn.tensor([1, 2, 3]))
    assert r64 == "tensor([1, 2, 3], shape=(3,), dtype=int64, device=cpu)"
    rg = repr(tn.tensor([0.5], requires_grad=True))
    assert "0.5" in rg and "requires_grad=True" in rg and "dtype=float32" in rg
    rb = repr(tn.tensor([True, False]))
    assert "True" in rb and "dtype=bool" in rb
    assert "dtype=bfloat16" in repr(tn.ones(2, dtype=tn.bfloat16))


# ----------------------------------------------------------------------------------------------
# views and indexing
# ----------------------------------------------------------------------------------------------


def test_reshape_and_minus_one():
    a = np.arange(24, dtype=np.float32)
    t = tn.tensor(a)
    for shape in [(2, 3, 4), (4, -1), (-1,), (2, -1, 3), (1, 24), (24, 1)]:
        r = t.reshape(*shape)
        np.testing.assert_array_equal(r.numpy(), a.reshape(shape))
    np.testing.assert_array_equal(t.reshape((6, 4)).numpy(), a.reshape(6, 4))
    with pytest.raises(tn.ShapeError):
        t.reshape(5, -1)
    with pytest.raises(tn.ShapeError):
        t.reshape(-1, -1)
    with pytest.raises(tn.ShapeError):
        t.reshape(5, 5)


def test_transposes():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = tn.tensor(a)
    np.testing.assert_array_equal(t.t().numpy(), a.T)
    np.testing.assert_array_equal(t.T.numpy(), a.T)
    assert t.t().shape == (3, 2)
    b = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    u = tn.tensor(b)
    np.testing.assert_array_equal(u.transpose(0, 2).numpy(), b.transpose(2, 1, 0))
    np.testing.assert_array_equal(u.transpose(-1, 1).numpy(), b.transpose(0, 2, 1))
    np.testing.assert_array_equal(u.permute(1, 2, 0).numpy(), b.transpose(1, 2, 0))
    with pytest.raises(tn.ShapeError):
        u.t()


def test_unsqueeze_squeeze_flatten():
    a = np.arange(6, dtype=np.float32).reshape(2, 1, 3)
    t = tn.tensor(a)
    assert t.unsqueeze(0).shape == (1, 2, 1, 3)
    assert t.unsqueeze(-1).shape == (2, 1, 3, 1)
    assert t.unsqueeze(3).shape == (2, 1, 3, 1)
    assert t.squeeze(1).shape == (2, 3)
    assert t.squeeze(0).shape == (2, 1, 3)          # not size 1: unchanged, as torch
    assert t.squeeze().shape == (2, 3)
    np.testing.assert_array_equal(t.flatten().numpy(), a.reshape(-1))
    assert tn.zeros(2, 3, 4).flatten(1).shape == (2, 12)
    with pytest.raises(tn.IndexOutOfRange):
        t.unsqueeze(5)


def test_indexing_and_slicing():
    a = np.arange(30, dtype=np.float32).reshape(5, 6)
    t = tn.tensor(a)
    cases = [
        (2,), (-1,), (slice(1, 3),), (slice(-3, None),), (slice(None, None, 2),),
        (slice(None), 3), (slice(None), -1), (1, 2), (-2, slice(1, 5, 2)),
        (Ellipsis, 0), (None, 1), (slice(None), None, slice(2, 4)),
    ]
    for idx in cases:
        np.testing.assert_array_equal(t[idx].numpy(), a[idx], err_msg=str(idx))
    col = t[:, 4]
    assert col.shape == (5,) and col.tolist() == a[:, 4].tolist()
    assert t[3, 5].item() == 23.0
    rows = tn.tensor([4, 0, 4])
    np.testing.assert_array_equal(t[rows].numpy(), a[[4, 0, 4]])
    np.testing.assert_array_equal(t[:, tn.tensor([1, 5])].numpy(), a[:, [1, 5]])
    mask = tn.tensor(a[:, 0] > 10)
    np.testing.assert_array_equal(t[mask].numpy(), a[a[:, 0] > 10])
    with pytest.raises(IndexError):
        t[5]
    with pytest.raises(tn.IndexOutOfRange):
        t[0, -7]
    assert [r.tolist() for r in tn.tensor([[1, 2], [3, 4]])] == [[1, 2], [3, 4]]


def test_setitem():
    t = tn.zeros(3, 4)
    t[1] = 5.0
    t[:, 2] = tn.tensor([1.0, 2.0, 3.0])
    expect = np.zeros((3, 4), np.float32)
    expect[1] = 5
    expect[:, 2] = [1, 2, 3]
    np.testing.assert_array_equal(t.numpy(), expect)
    w = tn.zeros(2, requires_grad=True)
    with pytest.raises(tn.TritonnnError):
        w[0] = 1.0


# ----------------------------------------------------------------------------------------------
# arithmetic
# ----------------------------------------------------------------------------------------------

SHAPE_PAIRS = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((5, 1), (1, 6)), ((1,), (7,)),
               ((2, 1, 3), (4, 1)), ((), (3,)), ((3, 1, 1), (1, 1))]


@pytest.mark.parametrize("sa, sb", SHAPE_PAIRS)
def test_broadcasting_arithmetic(sa, sb, rng):
    a = rng.standard_normal(sa).astype(np.float32)
    b = (rng.uniform(0.5, 2.0, sb) * rng.choice([-1, 1], sb)).astype(np.float32)
    x, y = tn.tensor(a), tn.tensor(b)
    assert_close((x + y).numpy(), a + b, what="add")
    assert_close((x - y).numpy(), a - b, what="sub")
    assert_close((x * y).numpy(), a * b, what="mul")
    assert_close((x / y).numpy(), a / b, what="div")
    assert_close(tn.maximum(x, y).numpy(), np.maximum(a, b), what="maximum")
    assert (x + y).shape == np.broadcast_shapes(sa, sb)
    assert (x + y).dtype is tn.float32


def test_broadcast_mismatch_raises():
    with pytest.raises(tn.ShapeError, match=r"\(3, 4\).*\(5,\)"):
        tn.zeros(3, 4) + tn.zeros(5)


def test_scalars_on_both_sides(rng):
    a = rng.uniform(0.5, 2.0, (3, 4)).astype(np.float32)
    x = tn.tensor(a)
    for got, want in [
        (x + 2, a + 2), (2 + x, 2 + a), (x - 1.5, a - 1.5), (1.5 - x, 1.5 - a),
        (x * 3, a * 3), (3 * x, 3 * a), (x / 4, a / 4), (4 / x, 4 / a), (x ** 2, a ** 2),
        (x ** 0.5, np.sqrt(a)), (-x, -a), (x ** -1, 1 / a),
    ]:
        assert got.dtype is tn.float32
        assert_close(got.numpy(), want, atol=1e-6, rtol=1e-6)
    i = tn.tensor([1, 2, 3])
    assert (i + 1).dtype is tn.int64 and (i + 1).tolist() == [2, 3, 4]
    assert (i * 0.5).dtype is tn.float32 and (i * 0.5).tolist() == [0.5, 1.0, 1.5]
    assert (i / 2).dtype is tn.float32 and (i / 2).tolist() == [0.5, 1.0, 1.5]
    d = tn.tensor([1.0, 2.0], dtype=tn.float64)
    assert (d * 2.5).dtype is tn.float64          # a Python float never changes precision
    with pytest.raises(tn.DTypeError):
        d + tn.tensor([1.0, 2.0])                 # float64 + float32: no silent promotion


@pytest.mark.parametrize("sa, sb", [((3,), (3,)), ((3,), (3, 4)), ((2, 3), (3,)),
                                    ((2, 3), (3, 4)), ((2, 2, 3), (3, 4)),
                                    ((2, 1, 3, 4), (5, 4, 2)), ((1, 1), (1, 1))])
def test_matmul(sa, sb, rng):
    a = rng.standard_normal(sa)
    b = rng.standard_normal(sb)
    x, y = tn.tensor(a), tn.tensor(b)
    out = x @ y
    want = a @ b
    assert out.shape == want.shape
    assert_close(out.numpy(), want, atol=1e-12)
    assert_close(x.matmul(y).numpy(), want, atol=1e-12)


def test_matmul_errors():
    with pytest.raises(tn.ShapeError, match="inner"):
        tn.zeros(2, 3) @ tn.zeros(4, 2)
    with pytest.raises(tn.DTypeError):
        tn.zeros(2, 3) @ tn.zeros(3, 2, dtype=tn.float64)


def test_unary_functions(rng):
    a = rng.standard_normal((4, 5)).astype(np.float32)
    p = np.abs(a) + 0.1
    x, xp = tn.tensor(a), tn.tensor(p)
    assert_close(x.exp().numpy(), np.exp(a), rtol=1e-6)
    assert_close(xp.log().numpy(), np.log(p), rtol=1e-6)
    assert_close(x.sigmoid().numpy(), 1 / (1 + np.exp(-a)), rtol=1e-6)
    assert_close(tn.sigmoid(x).numpy(), 1 / (1 + np.exp(-a)), rtol=1e-6)
    assert_close(x.relu().numpy(), np.maximum(a, 0))
    assert_close(tn.relu(x).numpy(), np.maximum(a, 0))
    assert_close(x.tanh().numpy(), np.tanh(a), rtol=1e-6)
    assert_close(xp.sqrt().numpy(), np.sqrt(p), rtol=1e-6)
    assert_close(x.abs().numpy(), np.abs(a))
    big = tn.tensor([-1000.0, 0.0, 1000.0]).sigmoid().tolist()
    assert big == [0.0, 0.5, 1.0]
    with pytest.raises(tn.DTypeError):
        tn.tensor([1, 2]).exp()


@pytest.mark.parametrize("shape", [(4, 5), (3, 1, 6), (7,), (1, 1)])
def test_reductions(shape, rng):
    a = rng.standard_normal(shape).astype(np.float32)
    x = tn.tensor(a)
    assert_close(x.sum().numpy(), a.sum(), atol=1e-5)
    assert x.sum().shape == ()
    assert_close(x.mean().numpy(), a.mean(), atol=1e-6)
    assert x.max().item() == a.max()
    for d in range(-len(shape), len(shape)):
        for keep in (False, True):
            assert_close(x.sum(d, keepdim=keep).numpy(), a.sum(d, keepdims=keep), atol=1e-5)
            assert_close(x.mean(dim=d, keepdim=keep).numpy(), a.mean(d, keepdims=keep), atol=1e-6)
            v, i = x.max(d, keepdim=keep)
            np.testing.assert_array_equal(v.numpy(), a.max(d, keepdims=keep))
            want_i = np.argmax(a, d)
            if keep:
                want_i = np.expand_dims(want_i, d)
            np.testing.assert_array_equal(i.numpy(), want_i)
            am = x.argmax(d, keepdim=keep)
            assert am.dtype is tn.int64
            np.testing.assert_array_equal(am.numpy(), want_i)
    assert x.argmax().item() == int(np.argmax(a))


def test_int_and_bool_sums():
    b = tn.tensor([True, False, True, True])
    s = b.sum()
    assert s.dtype is tn.int64 and s.item() == 3
    assert tn.tensor([1, 2, 3], dtype=tn.int32).sum().dtype is tn.int64
    with pytest.raises(tn.DTypeError):
        tn.tensor([1, 2]).mean()


def test_comparisons(rng):
    a = rng.integers(0, 3, (4, 5)).astype(np.float32)
    b = rng.integers(0, 3, (5,)).astype(np.float32)
    x, y = tn.tensor(a), tn.tensor(b)
    for got, want in [(x == y, a == b), (x != y, a != b), (x < y, a < b), (x <= y, a <= b),
                      (x > y, a > b), (x >= y, a >= b), (x > 1, a > 1), (x == 2.0, a == 2)]:
        assert got.dtype is tn.bool
        np.testing.assert_array_equal(got.numpy(), want)
    pred = tn.tensor([0, 1, 1, 2])
    y = tn.tensor([0, 1, 2, 2])
    assert (pred == y).sum().item() == 3


def test_stack_cat(rng):
    arrays = [rng.standard_normal((2, 3)).astype(np.float32) for _ in range(3)]
    ts = [tn.tensor(a) for a in arrays]
    for d in (0, 1, 2, -1):
        np.testing.assert_array_equal(tn.stack(ts, dim=d).numpy(), np.stack(arrays, d))
    for d in (0, 1, -1):
        np.testing.assert_array_equal(tn.cat(ts, dim=d).numpy(), np.concatenate(arrays, d))
    odd = [tn.zeros(1, 3), tn.ones(4, 3)]
    assert tn.cat(odd).shape == (5, 3)
    with pytest.raises(tn.ShapeError):
        tn.stack(odd)
    with pytest.raises(tn.ShapeError):
        tn.cat([tn.zeros(2, 3), tn.zeros(2, 4)])
    with pytest.raises(tn.TritonnnError):
        tn.cat([])


def test_zero_dim_results_are_arrays():
    m = tn.tensor([[1.0, 2.0], [3.0, 4.0]])
    x = tn.tensor(2.0)
    for t in (x * 3, 3 - x, x.exp(), -x, x.relu(), m[1, 0], m.sum(), x == 2,
              tn.tensor(2.0, dtype=tn.float16) * 2, m[0] @ m[1]):
        a = t.numpy()
        assert isinstance(a, np.ndarray) and a.shape == (), type(a)
    assert (m[0] @ m[1]).item() == 11.0
    b = tn.tensor(0.5, requires_grad=True)
    (b * 2.0).backward()
    (b * 2.0).backward()                  # accumulation into a 0-d leaf
    assert b.grad.item() == 4.0


@pytest.mark.parametrize("spec", ["cuda:1", "cuda:5"])
def test_a_device_index_that_does_not_exist_is_refused(spec):
    from conftest import skip_without_cuda
    skip_without_cuda()
    count = tn.cuda.device_count() if tn.cuda.is_available() else 1
    if int(spec.split(":")[1]) < count:
        pytest.skip(f"this machine has {spec}")
    for make in (lambda: tn.zeros(2, device=spec), lambda: tn.tensor([1.0], device=spec),
                 lambda: tn.ones(2).to(spec)):
        with pytest.raises(tn.DeviceError, match=rf"device {spec}: there (is|are) {count}"):
            make()


def test_dims_are_ints_of_any_integer_kind():
    t = tn.ones(2, 3)
    assert t.sum(np.int64(1)).tolist() == [3.0, 3.0]
    assert t.sum(dim=(np.int32(0), -1)).item() == 6.0
    assert t.transpose(tn.tensor(0), 1).shape == (3, 2)       # a one-element int tensor, as torch
    assert t.size(np.int8(-1)) == 3
    for bad in [True, 1.0, "1", None, tn.tensor(1.0), tn.tensor([0, 1])]:
        with pytest.raises(tn.DTypeError, match="unsqueeze: dim must be an int"):
            t.unsqueeze(bad)
    with pytest.raises(tn.IndexOutOfRange, match=r"softmax: dim 2 .*\[-2, 1\]"):
        t.softmax(2)


def test_iterating_and_len():
    t = tn.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert len(t) == 2 and [r.tolist() for r in t] == [[1.0, 2.0], [3.0, 4.0]]
    s = tn.tensor(1.0)
    with pytest.raises(TypeError, match="iter: a 0-d tensor"):
        iter(s)                       # refused when the iterator is made, not when first used
    with pytest.raises(TypeError, match="len: a 0-d tensor"):
        len(s)


def test_setitem_value_of_the_wrong_type():
    t = tn.zeros(3)
    for bad in ["1", None, {}]:
        with pytest.raises(tn.DTypeError, match="setitem: value must be a tensor or a number"):
            t[0] = bad
    t[0], t[1] = np.float32(2.5), True
    assert t.tolist() == [2.5, 1.0, 0.0]
