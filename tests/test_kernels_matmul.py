"""The GEMM family on device "cuda" (kernels/matmul.py) against its numpy twin.

Each function of ``tritonnn.kernels.matmul`` is called directly on device
buffers and compared with the same-named function of
``tritonnn.fallback_cpu.matmul``: odd shapes (1, 3, 17, 129 and the 784->256
MLP layer), ReLU and bias on and off, non-contiguous operands, every
combination of wanted gradients, batched products with broadcasting. Then the
public ``F.linear`` forward and backward on "cuda" against "cpu" and torch.
Without a GPU the kernels run through Triton's interpreter.
"""
import importlib

import numpy as np
import pytest

import tritonnn as tn
from tritonnn import dtypes as D

from conftest import skip_without_cuda

F = tn.nn.functional
CPU = importlib.import_module("tritonnn.fallback_cpu.matmul")

# (dtype, atol, rtol): both sides multiply in float32 (float64) and round once, so the
# low-precision results differ by at most one unit in the last place
TOL = {
    D.float32: (1e-4, 1e-4),
    D.bfloat16: (2e-2, 1.6e-2),
    D.float16: (2e-3, 2e-3),
    D.float64: (1e-10, 1e-10),
}
LOW_AND_F32 = [D.float32, D.bfloat16, D.float16]
SHAPES = [(1, 1, 1), (3, 17, 5), (17, 3, 129), (129, 33, 17)]   # (M, K, N)
MLP = (128, 784, 256)


@pytest.fixture(scope="module")
def kern():
    """(kernels.matmul, kernels.buffers); loading the cuda backend sets up the interpreter."""
    skip_without_cuda()
    return (importlib.import_module("tritonnn.kernels.matmul"),
            importlib.import_module("tritonnn.kernels.buffers"))


def _rand(rng, shape, dtype, scale=1.0):
    return (rng.uniform(-1, 1, size=shape) * scale).astype(dtype.np)


def _assert_close(got, want, dtype, what):
    atol, rtol = TOL[dtype]
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    g, w = got.astype(np.float64), want.astype(np.float64)
    bad = ~np.isclose(g, w, atol=atol, rtol=rtol)
    if bad.any():
        idx = np.argwhere(bad)[:5]
        first = ", ".join(f"{tuple(int(i) for i in ix)}: {g[tuple(ix)]!r} vs {w[tuple(ix)]!r}"
                          for ix in idx)
        pytest.fail(f"{what} ({dtype}): {int(bad.sum())} of {bad.size} elements differ "
                    f"(atol={atol}, rtol={rtol}); first: {first}")


def _up(kern, a, dtype):
    return kern[1].upload(a, dtype)


def _down(kern, buf):
    return kern[1].download(buf)


# ----------------------------------------------------------------------------------------------
# linear_fwd
# ----------------------------------------------------------------------------------------------


def _check_linear_fwd(kern, rng, m, k, n, dtype, relu, bias):
    x, w = _rand(rng, (m, k), dtype), _rand(rng, (n, k), dtype)
    b = _rand(rng, (n,), dtype) if bias else None
    got = kern[0].linear_fwd(_up(kern, x, dtype), _up(kern, w, dtype),
                             None if b is None else _up(kern, b, dtype), relu)
    _assert_close(_down(kern, got), CPU.linear_fwd(x, w, b, relu), dtype,
                  f"linear_fwd {m}x{k}->{n} relu={relu} bias={bias}")


@pytest.mark.parametrize("relu,bias", [(False, False), (True, True), (True, False), (False, True)])
@pytest.mark.parametrize("m,k,n", SHAPES)
@pytest.mark.parametrize("dtype", LOW_AND_F32, ids=str)
def test_linear_fwd(kern, rng, m, k, n, dtype, relu, bias):
    _check_linear_fwd(kern, rng, m, k, n, dtype, relu, bias)


@pytest.mark.parametrize("dtype", LOW_AND_F32, ids=str)
def test_linear_fwd_mlp_layer(kern, rng, dtype):
    _check_linear_fwd(kern, rng, *MLP, dtype, relu=True, bias=True)


@pytest.mark.parametrize("dtype", [D.float32, D.bfloat16], ids=str)
def test_linear_fwd_non_contiguous(kern, rng, dtype):
    """x transposed, w a column slice of a wider matrix, b every other element."""
    bufs = kern[1]
    m, k, n = 19, 37, 23
    xt = _rand(rng, (k, m), dtype)                  # x = xt.T, strides (1, m)
    wide = _rand(rng, (n, k + 9), dtype)            # w = wide[:, 4:4+k], strides (k+9, 1)
    b2 = _rand(rng, (2 * n,), dtype)                # b = b2[::2], stride 2
    x_buf = bufs.permute(bufs.upload(xt, dtype), (1, 0))
    w_buf = bufs.view_index(bufs.upload(wide, dtype), (slice(None), slice(4, 4 + k)))
    b_buf = bufs.view_index(bufs.upload(b2, dtype), (slice(None, None, 2),))
    assert not bufs.is_contiguous(x_buf) and not bufs.is_contiguous(w_buf)
    got = kern[0].linear_fwd(x_buf, w_buf, b_buf, True)
    want = CPU.linear_fwd(xt.T, wide[:, 4:4 + k], b2[::2], True)
    _assert_close(_down(kern, got), want, dtype, "linear_fwd non-contiguous")


def test_linear_fwd_float64_and_empty_k(kern, rng):
    _check_linear_fwd(kern, rng, 33, 70, 9, D.float64, relu=True, bias=True)
    # K == 0: the product is empty, the output is relu(bias)
    _check_linear_fwd(kern, rng, 5, 0, 7, D.float32, relu=True, bias=True)


def test_linear_tf32_allowed(kern, rng):
    """With "high" precision fp32 goes through TF32 (10-bit mantissa): close, not exact."""
    m, k, n = 65, 130, 33
    x, w, b = _rand(rng, (m, k), D.float32), _rand(rng, (n, k), D.float32), _rand(rng, (n,), D.float32)
    tn.set_float32_matmul_precision("high")
    try:
        got = _down(kern, kern[0].linear_fwd(_up(kern, x, D.float32), _up(kern, w, D.float32),
                                             _up(kern, b, D.float32), False))
    finally:
        tn.set_float32_matmul_precision("highest")
    want = CPU.linear_fwd(x, w, b, False)
    np.testing.assert_allclose(got, want, atol=5e-2, rtol=1e-2)


# ----------------------------------------------------------------------------------------------
# linear_bwd
# ----------------------------------------------------------------------------------------------

NEEDS = [(True, True, True), (True, False, False), (False, True, False), (False, False, True),
         (False, True, True), (True, False, True)]


def _check_linear_bwd(kern, rng, m, k, n, dtype, relu, need, views=None):
    x, w, b = _rand(rng, (m, k), dtype), _rand(rng, (n, k), dtype), _rand(rng, (n,), dtype)
    out = CPU.linear_fwd(x, w, b, relu)
    g = _rand(rng, (m, n), dtype)
    bufs = [_up(kern, a, dtype) for a in (g, x, w, out)]
    if views is not None:
        bufs = views(bufs)
    got = kern[0].linear_bwd(*bufs, relu, *need)
    want = CPU.linear_bwd(g, x, w, out, relu, *need)
    for name, gv, wv, wanted in zip(("dx", "dw", "db"), got, want, need):
        if not wanted:
            assert gv is None, f"{name} was not asked for but came back"
            continue
        _assert_close(_down(kern, gv), wv, dtype,
                      f"linear_bwd {name} {m}x{k}->{n} relu={relu} need={need}")


@pytest.mark.parametrize("need", NEEDS, ids=lambda t: "".join("xwb"[i] for i in range(3) if t[i]))
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("m,k,n", SHAPES[1:])
@pytest.mark.parametrize("dtype", LOW_AND_F32, ids=str)
def test_linear_bwd(kern, rng, m, k, n, dtype, relu, need):
    _check_linear_bwd(kern, rng, m, k, n, dtype, relu, need)


@pytest.mark.parametrize("dtype", LOW_AND_F32, ids=str)
def test_linear_bwd_mlp_layer(kern, rng, dtype):
    _check_linear_bwd(kern, rng, *MLP, dtype, relu=True, need=(True, True, True))


@pytest.mark.parametrize("relu", [False, True])
def test_linear_bwd_tiny_and_float64(kern, rng, relu):
    _check_linear_bwd(kern, rng, 1, 1, 1, D.float32, relu, (True, True, True))
    _check_linear_bwd(kern, rng, 21, 13, 6, D.float64, relu, (True, True, True))


def test_linear_bwd_non_contiguous(kern, rng):
    """g, x and the saved output as transposed views, w as a column slice."""
    m, k, n = 18, 11, 13
    b = kern[1]

    def transposed(buf):
        # the same values, stored transposed: a (r, c) view with strides (1, r)
        host = _down(kern, buf)
        return b.permute(b.upload(np.ascontiguousarray(host.T), D.float32), (1, 0))

    def views(bufs):
        g, x, w, out = bufs
        host_w = _down(kern, w)
        wide = np.concatenate([host_w, host_w[:, :3]], axis=1)
        w_view = b.view_index(b.upload(wide, D.float32), (slice(None), slice(0, k)))
        return [transposed(g), transposed(x), w_view, transposed(out)]

    _check_linear_bwd(kern, rng, m, k, n, D.float32, True, (True, True, True), views)


def test_linear_bwd_db_is_deterministic(kern, rng):
    """db comes from a fixed summation order (no atomics): bit-identical run to run."""
    m, k, n = 300, 40, 70
    x, w = _rand(rng, (m, k), D.float32), _rand(rng, (n, k), D.float32)
    g, out = _rand(rng, (m, n), D.float32), np.abs(_rand(rng, (m, n), D.float32))
    args = [_up(kern, a, D.float32) for a in (g, x, w, out)]
    first = [_down(kern, t) for t in kern[0].linear_bwd(*args, True, True, True, True)]
    again = [_down(kern, t) for t in kern[0].linear_bwd(*args, True, True, True, True)]
    only_db = _down(kern, kern[0].linear_bwd(*args, True, False, False, True)[2])
    for a, b_ in zip(first, again):
        assert np.array_equal(a, b_)
    np.testing.assert_allclose(only_db, first[2], rtol=1e-5, atol=1e-5)


def test_linear_bwd_empty_batch(kern, rng):
    """M == 0: dW and db are sums over no rows, so exact zeros."""
    w = _rand(rng, (4, 3), D.float32)
    args = [_up(kern, np.zeros(s, np.float32), D.float32) for s in ((0, 4), (0, 3))]
    dx, dw, db = kern[0].linear_bwd(args[0], args[1], _up(kern, w, D.float32), args[0],
                                    True, True, True, True)
    assert _down(kern, dx).shape == (0, 3)
    assert np.array_equal(_down(kern, dw), np.zeros((4, 3), np.float32))
    assert np.array_equal(_down(kern, db), np.zeros(4, np.float32))


# ----------------------------------------------------------------------------------------------
# matmul
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (3, 17, 5), (129, 65, 3)])
@pytest.mark.parametrize("dtype", LOW_AND_F32 + [D.float64], ids=str)
def test_matmul_2d(kern, rng, m, k, n, dtype):
    a, b = _rand(rng, (m, k), dtype), _rand(rng, (k, n), dtype)
    got = kern[0].matmul(_up(kern, a, dtype), _up(kern, b, dtype))
    _assert_close(_down(kern, got), CPU.matmul(a, b), dtype, f"matmul {m}x{k}@{k}x{n}")


@pytest.mark.parametrize("sa,sb", [
    ((2, 3, 4, 5), (5, 6)),                # batch @ 2-D
    ((4, 5), (2, 3, 5, 6)),                # 2-D @ batch
    ((3, 1, 4, 5), (2, 5, 6)),             # both broadcast
    ((2, 1, 3, 17, 9), (4, 1, 9, 33)),     # three batch dims, interleaved broadcasting
    ((1, 7, 2), (5, 2, 1)),
], ids=str)
@pytest.mark.parametrize("dtype", [D.float32, D.bfloat16], ids=str)
def test_matmul_batched_broadcast(kern, rng, sa, sb, dtype):
    a, b = _rand(rng, sa, dtype), _rand(rng, sb, dtype)
    got = kern[0].matmul(_up(kern, a, dtype), _up(kern, b, dtype))
    _assert_close(_down(kern, got), CPU.matmul(a, b), dtype, f"matmul {sa} @ {sb}")


def test_matmul_batched_strided(kern, rng):
    """Permuted batch dims that no stride pattern merges, and transposed matrices."""
    bufs = kern[1]
    base_a = _rand(rng, (4, 3, 2, 6, 5), D.float32)          # a = base_a.transpose(2, 1, 0, 3, 4)
    base_b = _rand(rng, (4, 7, 5), D.float32)                # b = base_b.transpose(0, 2, 1)
    a_buf = bufs.permute(bufs.upload(base_a, D.float32), (2, 1, 0, 3, 4))
    b_buf = bufs.permute(bufs.upload(base_b, D.float32), (0, 2, 1))
    got = kern[0].matmul(a_buf, b_buf)
    want = CPU.matmul(base_a.transpose(2, 1, 0, 3, 4), base_b.transpose(0, 2, 1))
    _assert_close(_down(kern, got), want, D.float32, "matmul strided batch")


# ----------------------------------------------------------------------------------------------
# the public API: F.linear on "cuda" == "cpu" == torch
# ----------------------------------------------------------------------------------------------


def _run_linear(device, x, w, b, g, activation, dtype):
    xt = tn.tensor(x, device=device, dtype=dtype, requires_grad=True)
    wt = tn.tensor(w, device=device, dtype=dtype, requires_grad=True)
    bt = None if b is None else tn.tensor(b, device=device, dtype=dtype, requires_grad=True)
    y = F.linear(xt, wt, bt, activation=activation)
    y.backward(gradient=tn.tensor(g, device=device, dtype=dtype))
    to_np = lambda t: t.detach().to("cpu").to(tn.float32).numpy()   # noqa: E731
    return [to_np(y), to_np(xt.grad), to_np(wt.grad)] + ([] if bt is None else [to_np(bt.grad)])


@pytest.mark.parametrize("activation,bias", [("relu", True), (None, True), ("relu", False)])
@pytest.mark.parametrize("dtype", [tn.float32, tn.bfloat16], ids=str)
def test_functional_linear_cuda_matches_cpu_and_torch(kern, rng, activation, bias, dtype):
    torch = pytest.importorskip("torch")
    m, k, n = 37, 29, 19
    x, w = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((n, k)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32) if bias else None
    g = rng.standard_normal((m, n)).astype(np.float32)
    if dtype is tn.bfloat16:
        # round the inputs once so every side starts from the same bfloat16 values
        x, w, g = (a.astype(D.bfloat16.np).astype(np.float32) for a in (x, w, g))
        b = None if b is None else b.astype(D.bfloat16.np).astype(np.float32)
    cuda = _run_linear("cuda", x, w, b, g, activation, dtype)
    cpu = _run_linear("cpu", x, w, b, g, activation, dtype)

    tdt = torch.float32 if dtype is tn.float32 else torch.bfloat16
    tx = torch.tensor(x, dtype=tdt, requires_grad=True)
    tw = torch.tensor(w, dtype=tdt, requires_grad=True)
    tb = None if b is None else torch.tensor(b, dtype=tdt, requires_grad=True)
    ty = torch.nn.functional.linear(tx, tw, tb)
    if activation == "relu":
        ty = torch.relu(ty)
    ty.backward(torch.tensor(g, dtype=tdt))
    ref = [t.detach().float().numpy() for t in [ty, tx.grad, tw.grad] + ([] if tb is None else [tb.grad])]

    ddt = D.float32 if dtype is tn.float32 else D.bfloat16
    # torch's bf16 CPU kernels round intermediate sums differently: a looser check there
    torch_tol = TOL[D.float32] if dtype is tn.float32 else (0.1, 0.05)
    for name, c, p, r in zip(("y", "dx", "dw", "db"), cuda, cpu, ref):
        _assert_close(c.astype(ddt.np), p.astype(ddt.np), ddt, f"F.linear {name} cuda vs cpu")
        np.testing.assert_allclose(c, r, atol=torch_tol[0], rtol=torch_tol[1],
                                   err_msg=f"F.linear {name} cuda vs torch ({dtype})")
