"""Small-output GEMMs: the tiles ``kernels.matmul._host_tile`` picks, and that they compute.

A batch-128 MLP's GEMMs have outputs of 128 x 10 .. 256 x 784; the autotuned tiles give them
2-104 programs on a 132-SM GPU. ``_host_tile`` picks a smaller tile per shape bucket so that
more SMs work (no split-K: no atomics, no extra launch). The choice is checked as a table
(the MLP's eight GEMMs, before and after, per dtype kind), then the kernels run with the
small tiles (switched on under the interpreter too) against the numpy mirror: the fused
forward (bias + ReLU), the backward (ReLU mask on the fly, db as row sums; dW alone or
all three gradients), float64, TF32, 16-bit, batched products, and bit-for-bit
reproducibility.
"""
import importlib

import numpy as np
import pytest

import tritonnn as tn
from tritonnn import dtypes as D

from conftest import skip_without_cuda

# the interpreter evaluates masked-off lanes too (log(0) in pow): values never stored
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
CPU = importlib.import_module("tritonnn.fallback_cpu.matmul")
TOL = {
    D.float32: (1e-4, 1e-4),
    D.bfloat16: (2e-2, 1.6e-2),
    D.float16: (2e-3, 2e-3),
    D.float64: (1e-10, 1e-10),
}
SMS = 132
B = 128
# the MLP 784-256-128-10 at batch 128: (name, M, N, K) of each GEMM the step launches
MLP_GEMMS = [
    ("fwd 784->256", B, 256, 784), ("fwd 256->128", B, 128, 256), ("fwd 128->10", B, 10, 128),
    ("dX 128->10", B, 128, 10), ("dW 128->10", 10, 128, B),
    ("dX 256->128", B, 256, 128), ("dW 256->128", 128, 256, B),
    ("dW 784->256", 256, 784, B),
]


@pytest.fixture(scope="module")
def mm():
    pytest.importorskip("triton")
    return importlib.import_module("tritonnn.kernels.matmul")


@pytest.fixture
def small(mm, monkeypatch):
    """The host's tile choice switched on (the interpreter runs one big tile by default), and
    a record of every GEMM launch: (kernel, programs, meta)."""
    skip_without_cuda()
    bufs = importlib.import_module("tritonnn.kernels.buffers")
    monkeypatch.setattr(mm, "HOST_TILES", True)
    launches = []
    real = mm.launch

    def spy(kernel, grid, *args, **kwargs):
        launches.append((kernel, grid, kwargs))
        return real(kernel, grid, *args, **kwargs)

    monkeypatch.setattr(mm, "launch", spy)
    return mm, bufs, launches


def pick(mm, kind, m, n, batch=1, sms=SMS):
    b = mm._tune_bucket
    return mm._host_tile(kind, b(m), b(n), b(batch), sms)


def most_programs_autotuned(mm, kind, m, n, batch=1):
    return max(mm._programs(c, m, n, batch) for c in mm._CONFIGS_BY_KIND[kind])


# ----------------------------------------------------------------------------------------------
# the choice
# ----------------------------------------------------------------------------------------------

# programs per GEMM with the host's tiles (M, N as launched), per kind; before: the most any
# autotuned tile gives (2 to 16 for the batch-sized outputs, 104 for dW of the first layer)
AFTER = {
    "ieee": [128, 64, 8, 64, 8, 128, 128, 200],
    "64": [128, 64, 8, 64, 8, 128, 128, 200],
    "16": [32, 16, 2, 16, 8, 32, 32, 196],
    "tf32": [32, 16, 2, 16, 8, 32, 32, 196],
}


@pytest.mark.parametrize("kind", sorted(AFTER))
def test_mlp_gemms_launch_more_programs(mm, kind):
    got, before = [], []
    for (name, m, n, _), want in zip(MLP_GEMMS, AFTER[kind]):
        tile = pick(mm, kind, m, n)
        assert tile is not None, f"{name}: the autotuner kept a {m}x{n} output"
        got.append(mm._programs(tile, m, n, 1))
        before.append(most_programs_autotuned(mm, kind, m, n))
    assert got == AFTER[kind], list(zip([g[0] for g in MLP_GEMMS], before, got))
    # every GEMM gets at least as many programs, and the 128-row ones with 128 or more
    # columns 4x to 8x more
    assert all(a >= b for a, b in zip(got, before))
    assert all(a >= 4 * b for a, b, (_, m, n, _) in zip(got, before, MLP_GEMMS)
               if m == B and n >= 128)


def test_sixteen_bit_and_tf32_keep_a_wgmma_tile(mm):
    """sm_90's warpgroup MMA needs 64 rows per warpgroup: BLOCK_M stays 64 with 4 warps."""
    for kind in ("16", "tf32"):
        for tile in mm._SMALL_BY_KIND[kind]:
            assert tile.kwargs["BLOCK_M"] == 64 and tile.num_warps == 4


@pytest.mark.parametrize("kind", ["ieee", "tf32", "16", "64"])
def test_large_outputs_stay_with_the_autotuner(mm, kind):
    assert pick(mm, kind, 4096, 4096) is None                # M > SMALL_M
    assert pick(mm, kind, 512, 64) is None
    assert pick(mm, kind, 128, 50304) is None                # a logits layer fills the GPU
    assert pick(mm, kind, 64, 64, batch=256) is None         # many small matrices do too
    assert pick(mm, kind, 64, 64, batch=1) is not None


def test_the_choice_is_the_largest_tile_that_fills_the_sms(mm):
    # 256 x 1024: 32x32 gives 256 programs (>= 132); the next larger tile (32x64) 128
    tile = pick(mm, "ieee", 256, 784)
    assert (tile.kwargs["BLOCK_M"], tile.kwargs["BLOCK_N"]) == (32, 32)
    # no tile fills a tiny output: the smallest, which gives the most programs
    assert pick(mm, "ieee", 16, 16) is mm._SMALL_IEEE[-1]
    # a GPU with fewer SMs settles for larger tiles
    tile = pick(mm, "ieee", 128, 256, sms=32)
    assert (tile.kwargs["BLOCK_M"], tile.kwargs["BLOCK_N"]) == (32, 32)


def test_the_choice_is_per_bucket(mm):
    """Shapes in one power-of-2 bucket share a tile (one compile per bucket)."""
    for kind in ("ieee", "16"):
        assert pick(mm, kind, 100, 200) is pick(mm, kind, 128, 256)
        assert pick(mm, kind, 65, 129) is pick(mm, kind, 128, 256)


# ----------------------------------------------------------------------------------------------
# the kernels with the small tiles
# ----------------------------------------------------------------------------------------------


def _rand(rng, shape, dtype):
    return rng.uniform(-1, 1, size=shape).astype(dtype.np)


def _close(got, want, dtype, what):
    atol, rtol = TOL[dtype]
    assert got.shape == want.shape and got.dtype == want.dtype, what
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), atol=atol,
                               rtol=rtol, err_msg=what)


def _used_small_tiles(mm, launches, want_programs=None):
    gemms = [(k, g, kw) for k, g, kw in launches if k is mm._gemm_kernel.fn]
    assert gemms, "no GEMM launched with a host-picked tile"
    assert all(k is not mm._gemm_kernel for k, _, _ in launches), "the autotuner ran"
    if want_programs is not None:
        assert [g[0] for _, g, _ in gemms] == want_programs


@pytest.mark.parametrize("dtype", [D.float32, D.bfloat16], ids=str)
def test_mlp_layer_forward_and_backward(small, rng, dtype):
    """784 -> 256 at batch 128, ReLU and bias fused; all three gradients. Run at 513 -> 129
    at batch 65, the smallest sizes in the same power-of-2 buckets: the same three tiles as
    the MLP's layer, with fewer programs (the interpreter's cost) and a tail in every dim."""
    mm, bufs, launches = small
    m, k, n = 65, 513, 129
    kind = "ieee" if dtype is D.float32 else "16"
    for out_rows, out_cols, mlp_rows, mlp_cols in ((m, n, B, 256), (m, k, B, 784),
                                                   (n, k, 256, 784)):    # forward, dx, dw
        assert pick(mm, kind, out_rows, out_cols) is pick(mm, kind, mlp_rows, mlp_cols)
    x, w, b = _rand(rng, (m, k), dtype), _rand(rng, (n, k), dtype), _rand(rng, (n,), dtype)
    up = lambda a: bufs.upload(a, dtype)              # noqa: E731
    out = mm.linear_fwd(up(x), up(w), up(b), True)
    want_out = CPU.linear_fwd(x, w, b, True)
    _close(bufs.download(out), want_out, dtype, "linear_fwd")
    g = _rand(rng, (m, n), dtype)
    got = mm.linear_bwd(up(g), up(x), up(w), up(want_out), True, True, True, True)
    want = CPU.linear_bwd(g, x, w, want_out, True, True, True, True)
    for name, gv, wv in zip(("dx", "dw", "db"), got, want):
        _close(bufs.download(gv), wv, dtype, f"linear_bwd {name}")
    _used_small_tiles(mm, launches, [mm._programs(pick(mm, kind, r, c), r, c, 1)
                                     for r, c in ((m, n), (m, k), (n, k))])


@pytest.mark.parametrize("need", [(False, True, False), (True, True, True)],
                         ids=lambda t: "".join("xwb"[i] for i in range(3) if t[i]))
def test_small_layers_every_gradient_combination(small, rng, need):
    """The 128 -> 10 end of the MLP with a 128 -> 128 layer before it (the MLP's is 256 ->
    128: the same tile, flags and full blocks, half its programs), odd sizes around it; with
    and without ReLU."""
    mm, bufs, launches = small
    dtype = D.float32
    for (m, k, n), relu in (((B, 128, 128), True), ((B, 128, 10), False), ((37, 19, 45), True)):
        x, w, b = _rand(rng, (m, k), dtype), _rand(rng, (n, k), dtype), _rand(rng, (n,), dtype)
        out = CPU.linear_fwd(x, w, b, relu)
        g = _rand(rng, (m, n), dtype)
        ups = [bufs.upload(a, dtype) for a in (g, x, w, out)]
        _close(bufs.download(mm.linear_fwd(ups[1], ups[2], bufs.upload(b, dtype), relu)), out,
               dtype, f"linear_fwd {m}x{k}->{n}")
        got = mm.linear_bwd(*ups, relu, *need)
        want = CPU.linear_bwd(g, x, w, out, relu, *need)
        for name, gv, wv, wanted in zip(("dx", "dw", "db"), got, want, need):
            if wanted:
                _close(bufs.download(gv), wv, dtype, f"linear_bwd {name} {m}x{k}->{n}")
            else:
                assert gv is None
    _used_small_tiles(mm, launches)


def test_float64_and_tf32(small, rng):
    mm, bufs, launches = small
    m, k, n = 40, 48, 24
    x, w, b = (_rand(rng, s, D.float64) for s in ((m, k), (n, k), (n,)))
    up = lambda a, dt=D.float64: bufs.upload(a.astype(dt.np), dt)    # noqa: E731
    out = CPU.linear_fwd(x, w, b, True)
    _close(bufs.download(mm.linear_fwd(up(x), up(w), up(b), True)), out, D.float64, "fp64 fwd")
    g = _rand(rng, (m, n), D.float64)
    got = mm.linear_bwd(up(g), up(x), up(w), up(out), True, True, True, True)
    for name, gv, wv in zip(("dx", "dw", "db"), got, CPU.linear_bwd(g, x, w, out, True, True,
                                                                      True, True)):
        _close(bufs.download(gv), wv, D.float64, f"fp64 {name}")
    _used_small_tiles(mm, launches)
    assert all(kw["BLOCK_M"] <= 32 for _, _, kw in launches)
    launches.clear()
    tn.set_float32_matmul_precision("high")
    try:
        got = bufs.download(mm.linear_fwd(up(x, D.float32), up(w, D.float32),
                                          up(b, D.float32), False))
    finally:
        tn.set_float32_matmul_precision("highest")
    np.testing.assert_allclose(got, CPU.linear_fwd(x, w, b, False), atol=5e-2, rtol=1e-2)
    (_, _, kw), = launches
    assert kw["INPUT_PRECISION"] == "tf32" and kw["BLOCK_M"] == 64


def test_ieee_float32_by_default(small, rng):
    """The small tiles keep IEEE float32 unless TF32 was asked for: exact small integers."""
    mm, bufs, launches = small
    x = rng.integers(-8, 8, (B, 300)).astype(np.float32)
    w = rng.integers(-8, 8, (10, 300)).astype(np.float32) / 1024
    got = bufs.download(mm.linear_fwd(bufs.upload(x, D.float32), bufs.upload(w, D.float32),
                                      None, False))
    np.testing.assert_array_equal(got, x.astype(np.float64) @ w.T.astype(np.float64))
    assert launches[0][2]["INPUT_PRECISION"] == "ieee"


def test_batched_matmul_with_small_tiles(small, rng):
    mm, bufs, launches = small
    for sa, sb, dtype in (((3, 20, 33), (33, 17), D.float32), ((2, 1, 9, 40), (3, 40, 24),
                                                                D.bfloat16)):
        a, b = _rand(rng, sa, dtype), _rand(rng, sb, dtype)
        got = mm.matmul(bufs.upload(a, dtype), bufs.upload(b, dtype))
        _close(bufs.download(got), CPU.matmul(a, b), dtype, f"matmul {sa} @ {sb}")
    _used_small_tiles(mm, launches)


def test_small_tiles_are_reproducible(small, rng):
    """No atomics, a fixed order: the same inputs give the same bits, run after run (small
    sizes, as bits do not depend on them: both GEMMs still walk K in several steps)."""
    mm, bufs, _ = small
    m, k, n = 72, 40, 70
    x, w = _rand(rng, (m, k), D.float32), _rand(rng, (n, k), D.float32)
    g, out = _rand(rng, (m, n), D.float32), np.abs(_rand(rng, (m, n), D.float32))
    args = [bufs.upload(a, D.float32) for a in (g, x, w, out)]
    first = [bufs.download(t) for t in mm.linear_bwd(*args, True, True, True, True)]
    again = [bufs.download(t) for t in mm.linear_bwd(*args, True, True, True, True)]
    for a, b_ in zip(first, again):
        assert np.array_equal(a, b_)


def test_mlp_step_through_the_api(small, rng):
    """F.linear forward and backward on "cuda" with the host's tiles, against "cpu"."""
    mm, _, launches = small
    F = tn.nn.functional
    x = _rand(rng, (B, 64), D.float32)
    w1, b1 = _rand(rng, (48, 64), D.float32), _rand(rng, (48,), D.float32)
    w2, b2 = _rand(rng, (10, 48), D.float32), _rand(rng, (10,), D.float32)
    grads = {}
    for dev in ("cpu", "cuda"):
        ps = [tn.tensor(a, device=dev, requires_grad=True) for a in (w1, b1, w2, b2)]
        h = F.linear(tn.tensor(x, device=dev), ps[0], ps[1], activation="relu")
        loss = (F.linear(h, ps[2], ps[3]) ** 2).sum()
        loss.backward()
        grads[dev] = [loss.detach().numpy()] + [p.grad.numpy() for p in ps]
    for c, g in zip(grads["cpu"], grads["cuda"]):
        np.testing.assert_allclose(g, c, rtol=1e-4, atol=1e-4)
    _used_small_tiles(mm, launches)
