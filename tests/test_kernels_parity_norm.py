"""The norm family and the activations: every Triton function against its numpy mirror.

As ``tests/test_kernels_parity.py`` (whose helpers and (dtype, atol, rtol) table this file
uses): odd shapes (never a multiple of a block), operands contiguous, transposed, sliced and
expanded (stride 0), float32 / bfloat16 / float16, and the long-row and split paths that
only large sizes reach (a LayerNorm row wider than one block, a full reduction of 300k
elements split into chunks, a squared-error sum past one program).
"""
import math

import numpy as np
import pytest

from tritonnn import dtypes as D
from test_kernels_parity import (DTYPE_IDS, DTYPES, LAYOUTS, Arg, K, _check, compare,
                                 cuda_usable, make, rnd)

pytestmark = [
    pytest.mark.skipif(not cuda_usable(), reason="no GPU and no Triton interpreter"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),
]

# statistics over a row add a few roundings of the stored dtype on top of the elementwise ones
ROW_DTYPES = [(D.float32, 5e-5, 5e-5), (D.bfloat16, 3e-2, 3e-2), (D.float16, 4e-3, 4e-3)]
ACC = {D.float32: D.float32, D.bfloat16: D.float32, D.float16: D.float32, D.float64: D.float64}


def results(name, args, dtype, atol, rtol):
    """``_check``, returning each result as an operand for the next call (the kernel's result
    for the kernel, the mirror's for the mirror)."""
    got, want = _check(name, args, dtype, atol, rtol)
    if isinstance(want, tuple):
        return tuple(None if w is None else Arg(w, g) for g, w in zip(got, want))
    return Arg(want, got)


# ----------------------------------------------------------------------------------------------
# activations
# ----------------------------------------------------------------------------------------------

ACTIVATIONS = ["rsqrt", "silu", "gelu", "gelu_tanh"]


@pytest.mark.parametrize("dtype,atol,rtol", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("op", ACTIVATIONS)
def test_activation(op, layout, dtype, atol, rtol):
    x = rnd((17, 129), 1, low=0.05) if op == "rsqrt" else rnd((17, 129), 1) * 3
    _check("unary", [make(x, dtype, layout), op], dtype, atol, rtol)


@pytest.mark.parametrize("dtype,atol,rtol", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("op", ["tanh", "sigmoid", "sqrt", "rsqrt", "silu", "gelu", "gelu_tanh"])
def test_unary_bwd(op, layout, dtype, atol, rtol):
    saved = rnd((17, 129), 2, low=0.1) if op in ("sqrt", "rsqrt") else rnd((17, 129), 2) * 3
    if op in ("tanh", "sigmoid"):
        saved = np.tanh(saved) if op == "tanh" else 1 / (1 + np.exp(-saved))   # outputs
    g = rnd((17, 129), 3)
    _check("unary_bwd", [make(g, dtype, layout), make(saved, dtype), op], dtype, atol, rtol)


def test_unary_bwd_expanded_gradient():
    """The gradient of ``y.sum()`` arrives as a 0-d value expanded to every element."""
    x = rnd((5, 33), 4)
    g = np.full((5, 33), 0.75, np.float32)
    for op in ACTIVATIONS[1:]:
        _check("unary_bwd", [make(g, D.float32, "expanded"), make(x, D.float32), op], D.float32,
               1e-5, 1e-5)


def test_activation_float64_and_wide_range():
    x = np.concatenate([np.linspace(-40, 40, 321), [0.0, 1e-8, -1e-8]])
    for op in ("silu", "gelu", "gelu_tanh"):
        _check("unary", [make(x, D.float64), op], D.float64, 1e-12, 1e-12)
        _check("unary_bwd", [make(np.ones_like(x), D.float64), make(x, D.float64), op],
               D.float64, 1e-12, 1e-12)
        _check("unary", [make(x, D.float32), op], D.float32, 1e-6, 1e-5)


# ----------------------------------------------------------------------------------------------
# LayerNorm
# ----------------------------------------------------------------------------------------------

LN_SHAPES = [((1, 1), 1), ((3, 17), 1), ((129, 33), 1), ((2, 3, 7, 5), 2), ((17,), 1)]


@pytest.mark.parametrize("dtype,atol,rtol", ROW_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape, ndim", LN_SHAPES, ids=[str(s) for s, _ in LN_SHAPES])
def test_layer_norm(shape, ndim, affine, dtype, atol, rtol):
    x = rnd(shape, 5) * 2 + 3
    wshape = shape[len(shape) - ndim:]
    w = make(rnd(wshape, 6) + 1, dtype) if affine else None
    b = make(rnd(wshape, 7), dtype) if affine else None
    y, mean, rstd = results("layer_norm_fwd", [make(x, dtype), w, b, ndim, 1e-5],
                            (dtype, ACC[dtype], ACC[dtype]), atol, rtol)
    g = rnd(shape, 8)
    for need in ((True, True, True), (True, False, False), (False, True, True)):
        want = (dtype if need[0] else None, dtype if need[1] and affine else None,
                dtype if need[2] else None)
        _check("layer_norm_bwd", [make(g, dtype), make(x, dtype), w, mean, rstd, ndim, *need],
               want, atol * 4, rtol * 4)


@pytest.mark.parametrize("layout", ["transposed", "sliced", "expanded"])
def test_layer_norm_strided(layout):
    x = rnd((9, 12), 9) + 1
    _, mean, rstd = results("layer_norm_fwd", [make(x, D.float32, layout), None, None, 1, 1e-5],
                            D.float32, 5e-5, 5e-5)
    w = make(rnd((12,), 1) + 1, D.float32, "sliced" if layout != "sliced" else "contiguous")
    _check("layer_norm_bwd", [make(rnd((9, 12), 2), D.float32, layout), make(x, D.float32, layout),
                              w, mean, rstd, 1, True, True, True], D.float32, 2e-4, 2e-4)


def test_layer_norm_long_rows_walk_blocks():
    """Rows wider than one block (the interpreter's block holds 65536 elements): the
    forward's three passes and the backward's read-modify-written partial rows."""
    x = rnd((3, 70001), 10) + 5
    w, b = make(rnd((70001,), 11), D.float32), make(rnd((70001,), 12), D.float32)
    y, mean, rstd = results("layer_norm_fwd", [make(x, D.float32), w, b, 1, 1e-5], D.float32,
                            5e-5, 5e-5)
    _check("layer_norm_bwd", [make(rnd((3, 70001), 13), D.float32), make(x, D.float32), w, mean,
                              rstd, 1, True, True, True], D.float32, 2e-4, 2e-4)


def test_layer_norm_many_rows_use_several_programs():
    """More rows than one backward program takes: dw, db summed over programs in order."""
    x = rnd((1031, 7), 14)
    w = make(rnd((7,), 15), D.float32)
    y, mean, rstd = results("layer_norm_fwd", [make(x, D.float32), w, None, 1, 1e-5], D.float32,
                            5e-5, 5e-5)
    _check("layer_norm_bwd", [make(rnd((1031, 7), 16), D.float32), make(x, D.float32), w, mean,
                              rstd, 1, True, True, True], D.float32, 5e-4, 2e-4)


def test_layer_norm_float64_statistics():
    x = rnd((5, 33), 17).astype(np.float64) + 1e6
    y, mean, rstd = results("layer_norm_fwd", [make(x, D.float64), None, None, 1, 1e-12],
                            D.float64, 1e-9, 1e-9)
    _check("layer_norm_bwd", [make(rnd((5, 33), 18), D.float64), make(x, D.float64), None, mean,
                              rstd, 1, True, False, False], (D.float64, None, None), 1e-9, 1e-9)


@pytest.fixture
def gpu_sizes(monkeypatch):
    """The launchers size blocks and programs as on a GPU, the kernels still interpreted: the
    block shapes the ahead-of-time entries compile get run and checked here too."""
    from tritonnn.kernels import _launch
    caches = (_launch.rows, _launch.elementwise, _launch.reduce_split)
    for f in caches:
        f.cache_clear()
    monkeypatch.setattr(_launch, "INTERPRET", False)
    yield
    monkeypatch.undo()
    for f in caches:
        f.cache_clear()


# (rows, width, dtype, layout): the GPU's one-block tile of 2048 (2 rows of 1024; 8 rows of
# 256 transposed; 128 rows of 16), the unit-stride tile of 4096 (a row of 3000), and the
# row-block walks beyond (4 rows of 1024 columns for unit strides, of 512 for transposed
# operands and float64); two backward programs, so that a program adds up several row blocks
GPU_LN_CASES = [(42, 1000, D.float32, "contiguous", (2, 1024, True)),
                (70, 200, D.float32, "transposed", (8, 256, True)),
                (520, 16, D.float16, "contiguous", (128, 16, True)),
                (5, 3000, D.float32, "contiguous", (1, 4096, True)),
                (3, 3000, D.bfloat16, "contiguous", (1, 4096, True)),
                (9, 5000, D.float32, "contiguous", (4, 1024, False)),
                (9, 2100, D.float32, "transposed", (4, 512, False)),
                (9, 2500, D.float64, "contiguous", (4, 512, False))]
GPU_LN_TOL = {D.float32: 5e-4, D.bfloat16: 1.2e-1, D.float16: 1.6e-2, D.float64: 1e-9}


def _ln_fwd_bwd(m, n, dtype, layout):
    tol = GPU_LN_TOL[dtype]
    x = rnd((m, n), 30) + 2
    w = make(rnd((n,), 31) + 1, dtype)
    y, mean, rstd = results("layer_norm_fwd", [make(x, dtype, layout), w, None, 1, 1e-5],
                            (dtype, ACC[dtype], ACC[dtype]), tol, tol)
    _check("layer_norm_bwd", [make(rnd((m, n), 32), dtype, layout), make(x, dtype, layout), w,
                              mean, rstd, 1, True, True, True], dtype, tol, tol)


@pytest.mark.parametrize("m, n, dtype, layout, blocks", GPU_LN_CASES,
                         ids=[f"{m}x{n}-{d.name}-{lay}" for m, n, d, lay, _ in GPU_LN_CASES])
def test_layer_norm_at_gpu_block_sizes(gpu_sizes, monkeypatch, m, n, dtype, layout, blocks):
    from tritonnn.kernels import norm
    unit = layout == "contiguous" and dtype is not D.float64
    bm, bn, _, one_block = norm._ln_bwd_blocks(m, n, unit)
    assert (bm, bn, one_block) == blocks, "the case no longer reaches the path it names"
    monkeypatch.setattr(norm, "LN_BWD_PROGRAMS_GPU", 2)
    _ln_fwd_bwd(m, n, dtype, layout)


@pytest.mark.parametrize("cols", [16, 64])
def test_layer_norm_partials_summed_in_steps(gpu_sizes, monkeypatch, cols):
    """dw, db from 21 partial rows, summed 4 at a time (a tile of 4 x ``cols`` for the test,
    2048 elements on a GPU), the last step masked, in column blocks of ``cols``."""
    from tritonnn.kernels import norm
    monkeypatch.setattr(norm, "LN_BWD_PROGRAMS_GPU", 21)
    monkeypatch.setattr(norm, "LN_DWDB_TILE", 4 * cols)
    monkeypatch.setattr(norm, "LN_DWDB_PROGRAMS", -(-1000 // cols))
    assert norm._dwdb_blocks(21, 1000)[:2] == (4, cols)
    _ln_fwd_bwd(42, 1000, D.float32, "contiguous")


# ----------------------------------------------------------------------------------------------
# variance and vector norms
# ----------------------------------------------------------------------------------------------

REDUCE_CASES = [((17, 129), (1,)), ((17, 129), (0,)), ((3, 17, 5), (0, 2)), ((129,), ()),
                ((1, 300_001), ()), ((2, 3), (0, 1))]


@pytest.mark.parametrize("dtype,atol,rtol", ROW_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape, dims", REDUCE_CASES, ids=[f"{s}-{d}" for s, d in REDUCE_CASES])
def test_var_mean(shape, dims, dtype, atol, rtol):
    if dtype is not D.float32 and shape[-1] > 1000:
        pytest.skip("the split path: float32")
    x = rnd(shape, 19) + 10
    layout = "transposed" if len(shape) > 1 and shape[-1] < 1000 else "contiguous"
    var, mean = results("var_mean", [make(x, dtype, layout), dims, 1], dtype, atol * 4, rtol * 4)
    g = rnd(var.host.shape, 20)
    std = Arg(np.sqrt(var.host.astype(np.float32)).astype(var.host.dtype), K.unary(var.dev, "sqrt"))
    _check("var_bwd", [make(g, dtype), make(x, dtype, layout), mean, None, dims, 1], dtype,
           atol * 4, rtol * 4)
    _check("var_bwd", [make(g, dtype), make(x, dtype), mean, std, dims, 0], dtype, atol * 4,
           rtol * 4)


NORM_PS = [2.0, 1.0, 3.0, 0.5, math.inf, -math.inf, 0.0]


@pytest.mark.parametrize("p", NORM_PS)
@pytest.mark.parametrize("shape, dims", REDUCE_CASES, ids=[f"{s}-{d}" for s, d in REDUCE_CASES])
def test_vector_norm(shape, dims, p):
    x = rnd(shape, 21)
    x[..., ::7] = 0.0                                  # zeros: the 0-norm and p < 1's mask
    for keepdim in (False, True):
        norm = results("vector_norm", [make(x, D.float32), dims, p, keepdim], D.float32, 5e-5,
                       5e-5)
    if shape[-1] > 1000:
        return
    g = rnd(norm.host.shape, 22)
    _check("vector_norm_bwd", [make(g, D.float32), make(x, D.float32, "transposed"), norm, dims,
                               p], D.float32, 5e-5, 5e-5)


@pytest.mark.parametrize("dtype,atol,rtol", ROW_DTYPES[1:], ids=DTYPE_IDS[1:])
def test_vector_norm_low_precision(dtype, atol, rtol):
    _check("vector_norm", [make(rnd((17, 129), 23), dtype), (1,), 2.0, False], dtype, atol, rtol)


# ----------------------------------------------------------------------------------------------
# squared-error loss
# ----------------------------------------------------------------------------------------------

MSE_SHAPES = [((17, 129), (17, 129)), ((3, 1), (1, 5)), ((), ()), ((2, 3, 4, 5, 6), (6,)),
              ((0, 3), (0, 3))]


@pytest.mark.parametrize("dtype,atol,rtol", ROW_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("sa, sb", MSE_SHAPES, ids=[f"{a}-{b}" for a, b in MSE_SHAPES])
def test_mse_loss(sa, sb, reduction, dtype, atol, rtol):
    a, b = make(rnd(sa, 24), dtype, "transposed" if len(sa) == 2 else "contiguous"), \
        make(rnd(sb, 25), dtype)
    _check("mse_loss_fwd", [a, b, reduction], dtype, atol, rtol)
    shape = np.broadcast_shapes(sa, sb)
    g = make(rnd(shape if reduction == "none" else (), 26), dtype)
    for need in ((True, True), (True, False), (False, True)):
        _check("mse_loss_bwd", [g, a, b, reduction, *need],
               tuple(dtype if n else None for n in need), atol, rtol)


def test_mse_loss_past_one_program():
    """300k elements: per-chunk partial sums, then their sum in chunk order (two launches)."""
    a, b = rnd((300_001,), 27), rnd((300_001,), 28)
    for reduction in ("sum", "mean"):
        got, _ = _check("mse_loss_fwd", [make(a, D.float32), make(b, D.float32), reduction],
                        D.float32, 0, 2e-6)
        compare("mse_loss_fwd", K.mse_loss_fwd(K.from_numpy(a, D.float32),
                                               K.from_numpy(b, D.float32), reduction), got, 0, 0,
                "a rerun (bit for bit)")
