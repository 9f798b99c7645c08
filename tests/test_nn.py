"""Layers on "cpu": Module/Parameter registration, names, state dicts, modes, init, Sequential fusion."""
import math

import numpy as np
import pytest
import torch

import tritonnn as tn
import tritonnn.nn.functional as F
from checks import NeuralNetwork, TorchNeuralNetwork, assert_close


TorchNeuralNetwork.__name__ = "NeuralNetwork"


class Nested(tn.nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = tn.nn.Parameter(tn.ones(3))
        self.block = tn.nn.Sequential(tn.nn.Linear(3, 4), tn.nn.Sigmoid())
        self.head = tn.nn.Linear(4, 2, bias=False)
        self.not_a_param = tn.ones(5)          # plain tensors are not registered
        self.name = "nested"

    def forward(self, x):
        return self.head(self.block(x * self.scale))


def test_parameter_registration():
    m = Nested()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["scale", "block.0.weight", "block.0.bias", "head.weight"]
    assert all(isinstance(p, tn.nn.Parameter) and p.requires_grad for p in m.parameters())
    assert len(m.parameters()) == 4
    assert m.scale.shape == (3,) and m.head.bias is None
    assert isinstance(m.block, tn.nn.Sequential)
    assert [n for n, _ in m.named_modules()] == ["", "block", "block.0", "block.1", "head"]
    # reassigning replaces; shared parameters are listed once
    m.head.weight = tn.nn.Parameter(tn.zeros(2, 4))
    assert m.head.weight.shape == (2, 4) and len(m.parameters()) == 4
    m.extra = m.scale
    assert len(m.parameters()) == 4
    del m.extra
    with pytest.raises(AttributeError):
        m.missing_attribute
    p = tn.nn.Parameter(tn.tensor([1.0, 2.0]))
    assert p.requires_grad and p.is_leaf and p.tolist() == [1.0, 2.0]


def test_module_needs_super_init():
    class Bad(tn.nn.Module):
        def __init__(self):
            self.w = tn.nn.Parameter(tn.ones(1))
    with pytest.raises(tn.TritonnnError):
        Bad()


def test_seed_network_params_and_torch_names():
    tn.manual_seed(0)
    model = NeuralNetwork(50, 3)
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert total == 2213
    ref = TorchNeuralNetwork(50, 3)
    ours = [(n, p.shape) for n, p in model.named_parameters()]
    theirs = [(n, tuple(p.shape)) for n, p in ref.named_parameters()]
    assert ours == theirs
    assert ours[0] == ("layers.0.weight", (30, 50))
    assert list(model.state_dict()) == list(ref.state_dict())
    assert model.layers[0].weight.shape == (30, 50)


def test_repr_matches_torch_tree():
    model = NeuralNetwork(50, 3)
    ref = TorchNeuralNetwork(50, 3)
    assert repr(model) == repr(ref)
    assert "(0): Linear(in_features=50, out_features=30, bias=True)" in repr(model)
    assert repr(tn.nn.Linear(2, 3, bias=False)) == "Linear(in_features=2, out_features=3, bias=False)"


def test_state_dict_round_trip():
    tn.manual_seed(1)
    a = NeuralNetwork(4, 2)
    tn.manual_seed(2)
    b = NeuralNetwork(4, 2)
    x = tn.randn(5, 4)
    assert not np.allclose(a(x).detach().numpy(), b(x).detach().numpy())
    sd = a.state_dict()
    assert list(sd) == [n for n, _ in a.named_parameters()]
    assert all(not v.requires_grad for v in sd.values())
    missing, unexpected = b.load_state_dict(sd)
    assert missing == [] and unexpected == []
    np.testing.assert_array_equal(a(x).detach().numpy(), b(x).detach().numpy())
    # the state dict shares a's buffers (as torch's does); b holds copies
    sd["layers.0.weight"][0, 0] = 100.0
    assert a.layers[0].weight[0, 0].item() == 100.0
    assert b.layers[0].weight[0, 0].item() != 100.0
    for n, p in b.named_parameters():
        assert p.requires_grad and p.is_leaf, n


def test_load_state_dict_numpy_and_dtype_conversion():
    m = tn.nn.Linear(3, 2)
    sd = {"weight": np.arange(6, dtype=np.float64).reshape(2, 3), "bias": tn.tensor([1.0, -1.0])}
    m.load_state_dict(sd)
    assert m.weight.dtype is tn.float32
    assert m.weight.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert m.bias.tolist() == [1.0, -1.0]


def test_strict_load_lists_every_problem_at_once():
    model = NeuralNetwork(4, 2)
    sd = dict(model.state_dict())
    del sd["layers.2.bias"]
    sd["layers.9.weight"] = tn.zeros(2, 2)
    sd["layers.0.weight"] = tn.zeros(7, 4)
    before = model.layers[4].weight.detach().numpy().copy()
    with pytest.raises(tn.ShapeError) as e:
        model.load_state_dict(sd)
    msg = str(e.value)
    assert "layers.2.bias" in msg and "missing" in msg
    assert "layers.9.weight" in msg and "unexpected" in msg
    assert "layers.0.weight" in msg and "(7, 4)" in msg and "(30, 4)" in msg
    np.testing.assert_array_equal(model.layers[4].weight.detach().numpy(), before)  # nothing loaded
    # non-strict tolerates missing/unexpected names but never a wrong shape
    sd["layers.0.weight"] = tn.zeros(30, 4)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert missing == ["layers.2.bias"] and unexpected == ["layers.9.weight"]
    assert model.layers[0].weight.detach().numpy().sum() == 0.0
    sd["layers.0.weight"] = tn.zeros(3, 3)
    with pytest.raises(tn.ShapeError):
        model.load_state_dict(sd, strict=False)


def test_train_eval_flags():
    model = NeuralNetwork(4, 2)
    assert model.training and all(m.training for m in model.modules())
    assert model.eval() is model
    assert not model.training and not model.layers[2].training
    model.train()
    assert all(m.training for m in model.modules())
    model.train(False)
    assert not any(m.training for m in model.modules())


def test_module_to_dtype():
    tn.manual_seed(5)
    model = NeuralNetwork(4, 2)
    x = tn.randn(3, 4)
    y32 = model(x).detach().numpy()
    params = model.parameters()
    assert model.to(tn.float64) is model
    assert all(p.dtype is tn.float64 for p in model.parameters())
    assert [id(p) for p in model.parameters()] == [id(p) for p in params]   # same objects
    y64 = model(x.to(tn.float64))
    assert y64.dtype is tn.float64
    assert_close(y64.detach().numpy(), y32, atol=1e-5)
    model.to("cpu")
    model.to("float32")
    assert model.layers[0].weight.dtype is tn.float32
    with pytest.raises(tn.TritonnnError):
        model.to(tn.int64)


def test_zero_grad():
    model = NeuralNetwork(4, 2)
    F.cross_entropy(model(tn.randn(3, 4)), tn.tensor([0, 1, 1])).backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("fan_in, fan_out", [(1, 5), (3, 7), (50, 30), (784, 16)])
def test_linear_init_bounds(fan_in, fan_out):
    tn.manual_seed(fan_in)
    lin = tn.nn.Linear(fan_in, fan_out)
    bound = 1 / math.sqrt(fan_in)
    w, b = lin.weight.detach().numpy(), lin.bias.detach().numpy()
    assert w.shape == (fan_out, fan_in) and b.shape == (fan_out,)
    assert w.dtype == np.float32
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    if w.size >= 1000:      # spread over the whole interval, mean near 0, variance bound^2/3
        assert np.abs(w).max() > 0.95 * bound
        assert abs(w.mean()) < 0.05 * bound
        assert abs(w.var() - bound ** 2 / 3) < 0.1 * bound ** 2 / 3
    tn.manual_seed(fan_in)
    again = tn.nn.Linear(fan_in, fan_out)
    np.testing.assert_array_equal(again.weight.detach().numpy(), w)
    other = tn.nn.Linear(fan_in, fan_out)
    assert not np.array_equal(other.weight.detach().numpy(), w)
    assert tn.nn.Linear(2, 3, dtype=tn.float64).weight.dtype is tn.float64


def test_linear_forward_matches_formula(rng):
    lin = tn.nn.Linear(4, 3)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    w, b = lin.weight.detach().numpy(), lin.bias.detach().numpy()
    assert_close(lin(tn.tensor(x)).detach().numpy(), x @ w.T + b)
    x3 = rng.standard_normal((2, 5, 4)).astype(np.float32)
    assert_close(lin(tn.tensor(x3)).detach().numpy(), x3 @ w.T + b)
    with pytest.raises(tn.ShapeError):
        lin(tn.zeros(2, 5))


def test_sequential_indexing():
    layers = [tn.nn.Linear(3, 4), tn.nn.ReLU(), tn.nn.Linear(4, 2)]
    seq = tn.nn.Sequential(*layers)
    assert len(seq) == 3
    assert seq[0] is layers[0] and seq[-1] is layers[2] and seq[1] is layers[1]
    assert list(seq) == layers
    sub = seq[:2]
    assert isinstance(sub, tn.nn.Sequential) and len(sub) == 2 and sub[0] is layers[0]
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    with pytest.raises(tn.TritonnnError):
        tn.nn.Sequential(tn.nn.ReLU(), lambda x: x)


@pytest.mark.parametrize("shape", [(7, 5), (1, 5), (2, 3, 5)])
def test_sequential_fusion_matches_unfused(shape, rng):
    tn.manual_seed(11)
    seq = tn.nn.Sequential(tn.nn.Linear(5, 6), tn.nn.ReLU(), tn.nn.Linear(6, 4), tn.nn.ReLU(),
                           tn.nn.Linear(4, 3))
    x = tn.tensor(rng.standard_normal(shape).astype(np.float32))
    w = tn.tensor(rng.standard_normal(shape[:-1] + (3,)).astype(np.float32))
    fused = seq(x)
    (fused * w).sum().backward()
    fused_grads = [p.grad.numpy().copy() for p in seq.parameters()]
    seq.zero_grad()
    h = x
    for m in seq:                                # one module at a time: no fusion
        h = m(h)
    (h * w).sum().backward()
    assert_close(fused.detach().numpy(), h.detach().numpy(), atol=1e-6, what="values")
    for (name, p), g in zip(seq.named_parameters(), fused_grads):
        assert_close(g, p.grad.numpy(), atol=1e-6, what=f"grad {name}")
    # and both agree with torch
    ref = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.ReLU(), torch.nn.Linear(6, 4),
                              torch.nn.ReLU(), torch.nn.Linear(4, 3))
    with torch.no_grad():
        for tp, p in zip(ref.parameters(), seq.parameters()):
            tp.copy_(torch.tensor(p.detach().numpy()))
    assert_close(fused.detach().numpy(), ref(torch.tensor(x.numpy())).detach().numpy(), atol=1e-6)


def test_identity_and_activation_modules(rng):
    a = rng.standard_normal((3, 4)).astype(np.float32)
    x = tn.tensor(a)
    assert_close(tn.nn.ReLU()(x).numpy(), np.maximum(a, 0))
    assert_close(tn.nn.Sigmoid()(x).numpy(), 1 / (1 + np.exp(-a)))
    assert tn.nn.Identity()(x) is x
    with pytest.raises(tn.TritonnnError):
        tn.nn.Module()(x)


# -- arguments of the wrong kind (issue 10) -------------------------------------------------------


def test_sequential_index_as_a_list():
    layers = [tn.nn.Linear(3, 4), tn.nn.ReLU(), tn.nn.Linear(4, 2)]
    seq = tn.nn.Sequential(*layers)
    assert seq[-3] is layers[0] and seq[np.int64(2)] is layers[2]
    assert seq[tn.tensor(1)] is layers[1]             # an int tensor of one element, as torch
    for bad, exc in [(3, tn.IndexOutOfRange), (-4, tn.IndexOutOfRange), ("0", tn.DTypeError),
                     (1.0, tn.DTypeError), (None, tn.DTypeError)]:
        with pytest.raises(exc, match="Sequential"):
            seq[bad]


def test_load_state_dict_names_every_value_that_is_not_a_tensor():
    model = tn.nn.Sequential(tn.nn.Linear(3, 2), tn.nn.ReLU(), tn.nn.Linear(2, 1))
    before = [p.detach().numpy().copy() for p in model.parameters()]
    sd = dict(model.state_dict())
    sd["0.weight"], sd["2.bias"] = [[0.0] * 3] * 2, None
    with pytest.raises(tn.DTypeError, match=r"0\.weight is list, 2\.bias is NoneType"):
        model.load_state_dict(sd)
    for p, b in zip(model.parameters(), before):           # nothing was written
        np.testing.assert_array_equal(p.detach().numpy(), b)
    with pytest.raises(tn.DTypeError, match="load_state_dict.*mapping.*tuple"):
        model.load_state_dict(tuple(sd.items()))


def test_module_to_is_all_or_nothing(device):
    model = NeuralNetwork(4, 2)
    model.layers[0].weight.grad = tn.zeros(30, 4)
    with pytest.raises(tn.DTypeError, match="Module.to.*bool"):
        model.to(tn.bool)
    with pytest.raises(tn.DTypeError, match="Module.to: expected a dtype or a device, got 3"):
        model.to(3)
    assert all(p.dtype is tn.float32 and p.device == tn.device("cpu")
               for p in model.parameters())
    model.to(device, tn.float64)
    assert all(p.dtype is tn.float64 and p.device == tn.device(device)
               for p in model.parameters())
    g = model.layers[0].weight.grad
    assert g.dtype is tn.float64 and g.device == tn.device(device)


def test_mse_loss_broadcasts_with_a_warning_and_promotes_like_torch():
    a, b = [[1.0], [2.0], [4.0]], [0.0, 1.0]
    with pytest.warns(UserWarning, match=r"mse_loss: .*\(2,\).*\(3, 1\).*\(3, 2\)"):
        got = F.mse_loss(tn.tensor(a), tn.tensor(b), reduction="none")
    with pytest.warns(UserWarning):
        want = torch.nn.functional.mse_loss(torch.tensor(a), torch.tensor(b), reduction="none")
    assert got.shape == tuple(want.shape)
    assert_close(got.numpy(), want.numpy())
    # an integer target mixes into a floating input (torch promotes it); two integers do not
    got = F.mse_loss(tn.tensor([1.0, 2.0]), tn.tensor([0, 4]), reduction="sum")
    assert got.dtype is tn.float32 and got.item() == 5.0
    with pytest.raises(tn.DTypeError, match="mse_loss.*int64.*int64"):
        F.mse_loss(tn.tensor([1, 2]), tn.tensor([0, 4]))
    with pytest.raises(tn.DTypeError, match="mse_loss: input is float32 but target is float64"):
        F.mse_loss(tn.tensor([1.0, 2.0]), tn.tensor([0.0, 4.0], dtype=tn.float64))


def test_cross_entropy_keyword_numbers_may_be_numpy():
    logits, target = tn.tensor([[1.0, 2.0, 0.5], [0.1, 0.2, 3.0]]), tn.tensor([0, 2])
    got = F.cross_entropy(logits, target, ignore_index=np.int64(2), label_smoothing=np.float32(0.1))
    want = torch.nn.functional.cross_entropy(torch.tensor(logits.numpy()), torch.tensor([0, 2]),
                                             ignore_index=2, label_smoothing=0.1)
    assert_close(got.numpy(), want.numpy(), atol=1e-6)
    with pytest.raises(tn.DTypeError, match="cross_entropy: ignore_index must be an int, got True"):
        F.cross_entropy(logits, target, ignore_index=True)
