"""tn.nn.init (issue 11): fans and gains equal torch's, every fill in place under no_grad,
seeded by tn.manual_seed (the same numbers on both devices), statistics of the draws."""
import math

import numpy as np
import pytest
import torch

import tritonnn as tn

init = tn.nn.init

SHAPES = [(3, 5), (7, 2), (4, 3, 2), (6, 4, 3, 3), (2, 1, 1, 1, 5)]


@pytest.mark.parametrize("shape", SHAPES)
def test_fans_equal_torch_s(shape):
    got = init._calculate_fan_in_and_fan_out(tn.empty(*shape))
    want = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert got == want


@pytest.mark.parametrize("args", [("linear",), ("conv2d",), ("sigmoid",), ("tanh",), ("relu",),
                                  ("leaky_relu",), ("leaky_relu", 0.2),
                                  ("leaky_relu", math.sqrt(5)), ("selu",)])
def test_gains_equal_torch_s(args):
    assert init.calculate_gain(*args) == torch.nn.init.calculate_gain(*args)


def _stats(t):
    a = t.detach().to(tn.float64).numpy().ravel()
    return a.min(), a.max(), a.mean(), a.std()


N = (300, 400)                 # 120,000 draws: the mean within ~0.01 sd, sd within ~0.5%


def test_uniform_and_normal_statistics(device):
    tn.manual_seed(0)                                     # deterministic; bounds hold at > 4 sd
    t = tn.empty(*N, device=device)
    assert init.uniform_(t, -2.0, 3.0) is t
    lo, hi, mean, sd = _stats(t)
    assert -2.0 <= lo < -1.99 and 2.99 < hi < 3.0
    assert abs(mean - 0.5) < 0.02 and abs(sd - 5 / math.sqrt(12)) < 0.01
    assert init.normal_(t, mean=1.5, std=0.5) is t
    _, _, mean, sd = _stats(t)
    assert abs(mean - 1.5) < 0.01 and abs(sd - 0.5) < 0.005


@pytest.mark.parametrize("fill, bound_or_std, uniform", [
    (lambda t: init.kaiming_uniform_(t), lambda fi, fo: math.sqrt(6 / fi), True),   # a=0: gain sqrt(2)
    (lambda t: init.kaiming_uniform_(t, a=math.sqrt(5)), lambda fi, fo: 1 / math.sqrt(fi), True),
    (lambda t: init.kaiming_uniform_(t, mode="fan_out", nonlinearity="relu"),
     lambda fi, fo: math.sqrt(6 / fo), True),
    (lambda t: init.kaiming_normal_(t, nonlinearity="relu"), lambda fi, fo: math.sqrt(2 / fi),
     False),
    (lambda t: init.kaiming_normal_(t, a=0.2, mode="fan_out"),
     lambda fi, fo: math.sqrt(2 / (1 + 0.04)) / math.sqrt(fo), False),
    (lambda t: init.xavier_uniform_(t), lambda fi, fo: math.sqrt(6 / (fi + fo)), True),
    (lambda t: init.xavier_uniform_(t, gain=init.calculate_gain("tanh")),
     lambda fi, fo: 5 / 3 * math.sqrt(6 / (fi + fo)), True),
    (lambda t: init.xavier_normal_(t, gain=2.0), lambda fi, fo: 2 * math.sqrt(2 / (fi + fo)),
     False),
], ids=["kaiming_uniform", "kaiming_uniform_linear", "kaiming_uniform_fan_out_relu",
        "kaiming_normal_relu", "kaiming_normal_fan_out", "xavier_uniform", "xavier_uniform_tanh",
        "xavier_normal"])
def test_kaiming_and_xavier_statistics(fill, bound_or_std, uniform, device):
    tn.manual_seed(1)
    t = tn.empty(*N, device=device)
    assert fill(t) is t
    fan_in, fan_out = N[1], N[0]
    want = bound_or_std(fan_in, fan_out)
    lo, hi, mean, sd = _stats(t)
    if uniform:
        assert -want <= lo < -0.99 * want and 0.99 * want < hi <= want
        assert abs(sd - want / math.sqrt(3)) < 0.01 * want
    else:
        assert abs(sd - want) < 0.01 * want
    assert abs(mean) < 0.02 * (want / math.sqrt(3) if uniform else want)


def test_same_seed_same_numbers_on_every_device():
    from conftest import skip_without_cuda
    skip_without_cuda()
    runs = []
    for device in ("cpu", "cuda"):
        tn.manual_seed(11)
        a, b = tn.empty(5, 7, device=device), tn.empty(3, 4, 2, device=device)
        init.kaiming_uniform_(a, a=math.sqrt(5))
        init.xavier_normal_(b)
        runs.append((a.numpy(), b.numpy()))
    for x, y in zip(*runs):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


def test_seeded_and_in_place_on_a_parameter():
    tn.manual_seed(3)
    lin = tn.nn.Linear(6, 4)
    w = lin.weight
    tn.manual_seed(5)
    init.xavier_uniform_(lin.weight)
    first = w.detach().numpy().copy()
    tn.manual_seed(5)
    init.xavier_uniform_(lin.weight)
    np.testing.assert_array_equal(w.detach().numpy(), first)      # reproducible
    assert lin.weight is w and w.requires_grad and w.is_leaf and w.grad is None
    init.zeros_(lin.bias)
    assert lin.bias.tolist() == [0.0] * 4
    lin(tn.randn(2, 6)).sum().backward()                  # still trains
    assert w.grad is not None


def test_linear_default_init_is_kaiming_uniform_a_sqrt5():
    tn.manual_seed(9)
    lin = tn.nn.Linear(10, 3)
    w = tn.empty(3, 10)
    tn.manual_seed(9)
    init.kaiming_uniform_(w, a=math.sqrt(5))
    np.testing.assert_allclose(w.numpy(), lin.weight.detach().numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [tn.float64, tn.float16, tn.bfloat16])
def test_other_dtypes_keep_their_dtype(dtype):
    tn.manual_seed(2)
    t = tn.empty(50, 40, dtype=dtype)
    init.kaiming_normal_(t)
    assert t.dtype is dtype
    _, _, _, sd = _stats(t)
    assert abs(sd - math.sqrt(2 / 40)) < 0.05 * sd


def test_constant_zeros_ones(device):
    t = tn.empty(2, 3, device=device)
    assert init.constant_(t, 0.25) is t and t.tolist() == [[0.25] * 3] * 2
    assert init.ones_(t).tolist() == [[1.0] * 3] * 2
    assert init.zeros_(t).tolist() == [[0.0] * 3] * 2
    i = tn.empty(4, dtype=tn.int64)
    assert init.constant_(i, 7).tolist() == [7] * 4


def test_inside_a_graph_the_fill_is_not_recorded():
    w = tn.nn.Parameter(tn.ones(3, 2))
    init.normal_(w)                                       # a leaf that requires grad: allowed
    assert w.is_leaf and w.requires_grad


def test_zero_element_tensors_are_left_alone():
    t = tn.empty(0, 5)
    assert init.kaiming_uniform_(t) is t and init.xavier_normal_(t) is t
    assert init.uniform_(tn.empty(0)).shape == (0,)
    assert init.kaiming_normal_(tn.empty(0)).shape == (0,)      # no fan needed, as torch


@pytest.mark.parametrize("call, cls, pattern", [
    (lambda: init.uniform_([1.0]), tn.DTypeError, r"uniform_: expected a tensor to fill, got list"),
    (lambda: init.uniform_(tn.empty(2), 1.0, 0.0), tn.TritonnnError,
     r"uniform_: expects a <= b, got a=1\.0, b=0\.0"),
    (lambda: init.normal_(tn.empty(2), std=-1), tn.TritonnnError,
     r"normal_: expects std >= 0, got -1\.0"),
    (lambda: init.normal_(tn.empty(2), mean="0"), tn.DTypeError, r"normal_: mean must be a number"),
    (lambda: init.uniform_(tn.empty(2, dtype=tn.int64)), tn.DTypeError,
     r"uniform_: a random fill needs a floating-point tensor, got int64"),
    (lambda: init.kaiming_uniform_(tn.empty(5)), tn.ShapeError,
     r"fan_in and fan_out need a tensor of 2 or more dims, got shape \(5,\)"),
    (lambda: init.xavier_normal_(tn.empty(5)), tn.ShapeError, r"2 or more dims"),
    (lambda: init.kaiming_normal_(tn.empty(2, 2), mode="fan_avg"), tn.TritonnnError,
     r"kaiming_normal_: mode must be 'fan_in' or 'fan_out', got 'fan_avg'"),
    (lambda: init.kaiming_uniform_(tn.empty(2, 2), nonlinearity="gelu"), tn.TritonnnError,
     r"calculate_gain: unsupported nonlinearity 'gelu'"),
    (lambda: init.calculate_gain("leaky_relu", "0.1"), tn.DTypeError,
     r"calculate_gain: negative_slope must be a number"),
    (lambda: init.xavier_uniform_(tn.empty(2, 2), gain=None), tn.DTypeError,
     r"xavier_uniform_: gain must be a number"),
], ids=["not_tensor", "a_gt_b", "neg_std", "mean_str", "int_tensor", "fan_1d", "xavier_1d",
        "mode", "nonlinearity", "slope", "gain"])
def test_bad_input_raises(call, cls, pattern):
    with pytest.raises(cls, match=pattern):
        call()
