"""Bugs found in review, each pinned by a test (both devices where the op runs on both)."""
import os
import stat

import numpy as np
import pytest
import torch

import tritonnn as tn


def test_numpy_scalar_keeps_the_tensor_dtype(device, tmp_path):
    y = tn.tensor([1.0, 2.0, 3.0], device=device) * np.float64(2.0)
    y = y / np.sqrt(np.float64(4.0))
    assert y.dtype is tn.float32 and y.numpy().dtype == np.float32
    tn.save({"y": y}, tmp_path / "y.safetensors")
    assert tn.load(tmp_path / "y.safetensors")["y"].tolist() == [1.0, 2.0, 3.0]
    b = tn.tensor([True, False], device=device) & True if hasattr(tn.Tensor, "__and__") else None
    assert (tn.tensor([1, 2], device=device) + np.int64(1)).dtype is tn.int64
    del b


def test_dataloader_epochs_are_independent_orders():
    ds = tn.data.TensorDataset(tn.arange(1000))
    dl = tn.data.DataLoader(ds, batch_size=100, shuffle=True, seed=3)
    first = np.concatenate([b[0].numpy() for b in dl])
    second = np.concatenate([b[0].numpy() for b in dl])
    assert sorted(first) == sorted(second) == list(range(1000))
    pos1, pos2 = np.argsort(first), np.argsort(second)
    # positions of each sample in two epochs: uncorrelated for independent permutations
    assert abs(np.corrcoef(pos1, pos2)[0, 1]) < 0.15


def test_min_dim_returns_values_and_indices(device):
    x = tn.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 2.0]], device=device, requires_grad=True)
    v, i = x.min(1)
    assert v.tolist() == [1.0, 0.0] and i.tolist() == [1, 0]
    (v * tn.tensor([2.0, 3.0], device=device)).sum().backward()
    assert x.grad.tolist() == [[0.0, 2.0, 0.0], [3.0, 0.0, 0.0]]
    vu, iu = tn.tensor([[3, 1, 2]], dtype=tn.uint8, device=device).min(1)
    assert vu.tolist() == [1] and iu.tolist() == [1]


def test_gradients_never_alias(device):
    a = tn.tensor([1.0, 2.0], device=device, requires_grad=True)
    b = tn.tensor([3.0, 4.0], device=device, requires_grad=True)
    g = tn.tensor([1.0, 1.0], device=device)
    (a + b).backward(g)
    a.grad[0] = 0.0
    assert b.grad.tolist() == [1.0, 1.0] and g.tolist() == [1.0, 1.0]


def test_np_array_copies():
    t = tn.tensor([1.0, 2.0, 3.0])
    a = np.array(t)
    a[0] = 99
    assert t.tolist() == [1.0, 2.0, 3.0]
    assert np.asarray(t, dtype=np.float64).dtype == np.float64


def test_sum_over_an_empty_dim_list_is_a_full_reduction(device):
    w = tn.tensor([[1.0, 2.0], [3.0, 4.0]], device=device, requires_grad=True)
    s = w.sum(dim=[])
    assert s.item() == 10.0
    s.backward()
    assert w.grad.tolist() == [[1.0, 1.0], [1.0, 1.0]]
    with pytest.raises(tn.IndexOutOfRange):
        tn.tensor(3.0, device=device).sum(5)


def test_module_to_keywords():
    m = tn.nn.Linear(2, 3)
    assert m.to(device="cpu") is m
    m.to(dtype=tn.float64)
    assert m.weight.dtype is tn.float64


def test_bad_joins_and_assignments_are_tritonnn_errors(device):
    with pytest.raises(tn.ShapeError, match="cat"):
        tn.cat([tn.tensor(1.0, device=device), tn.tensor(2.0, device=device)])
    assert tn.stack([tn.tensor(1.0, device=device), tn.tensor(2.0, device=device)]).shape == (2,)
    z = tn.zeros(3, device=device)
    with pytest.raises(tn.ShapeError, match="setitem"):
        z[:] = tn.ones(2, 3, device=device)
    with pytest.raises(tn.IndexOutOfRange, match="ellipsis"):
        z[..., ...]
    with pytest.raises(tn.ShapeError, match="expand"):
        tn.tensor([1.0, 2.0, 3.0], device=device).expand(-1, 3)


def test_pow_zero_gradient_at_zero(device):
    w = tn.tensor([0.0, 2.0], device=device, requires_grad=True)
    (w ** 0).sum().backward()
    assert w.grad.tolist() == [0.0, 0.0]


def test_stack_gradient(device):
    a = tn.tensor([1.0, 2.0], device=device, requires_grad=True)
    b = tn.tensor([3.0, 4.0], device=device, requires_grad=True)
    s = tn.stack([a, b], dim=1)
    (s * tn.tensor([[1.0, 2.0], [3.0, 4.0]], device=device)).sum().backward()
    assert a.grad.tolist() == [1.0, 3.0] and b.grad.tolist() == [2.0, 4.0]


def test_sequential_slice_keeps_names():
    seq = tn.nn.Sequential(tn.nn.Linear(2, 3), tn.nn.ReLU(), tn.nn.Linear(3, 1))
    tseq = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    assert list(seq[1:].state_dict()) == list(tseq[1:].state_dict()) == ["2.weight", "2.bias"]


def test_zero_grad_without_set_to_none():
    m = tn.nn.Linear(2, 1)
    opt = tn.optim.SGD(m.parameters(), lr=0.1)
    m(tn.ones(1, 2)).sum().backward()
    opt.zero_grad(set_to_none=False)
    assert m.weight.grad.tolist() == [[0.0, 0.0]]
    opt.zero_grad()
    assert m.weight.grad is None


def test_saved_file_mode_follows_umask(tmp_path):
    old = os.umask(0o022)
    try:
        p = tmp_path / "m.safetensors"
        tn.save({"a": tn.ones(2)}, p)
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o644
        os.chmod(p, 0o600)
        tn.save({"a": tn.zeros(2)}, p)             # an existing file keeps its mode
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    finally:
        os.umask(old)


def test_in_place_write_after_forward_is_caught(device):
    x = tn.tensor([1.0, 2.0], device=device)
    w = tn.tensor([3.0, 4.0], device=device, requires_grad=True)
    y = (x * w).sum()
    x[0] = 100.0
    with pytest.raises(tn.TritonnnError, match="modified in place"):
        y.backward()
    # a view and a detached alias share the version: writes through them are caught too
    y = (x * w).sum()
    x.detach()[1] = 7.0
    with pytest.raises(tn.TritonnnError, match="modified in place"):
        y.backward()
    y = (x.reshape(2, 1) * w).sum()
    x[0:1][0] = 1.0
    with pytest.raises(tn.TritonnnError, match="modified in place"):
        y.backward()
    # an op that saved nothing does not care, as in torch
    y = (x + w).sum()
    x[0] = 5.0
    y.backward()
    assert w.grad.tolist() == [1.0, 1.0]


def test_optimizer_step_between_forward_and_backward_is_caught():
    m = tn.nn.Linear(3, 2)
    opt = tn.optim.SGD(m.parameters(), lr=0.1)
    m(tn.ones(1, 3)).sum().backward()
    loss = m(tn.ones(1, 3)).sum()
    opt.step()                      # changes the weight the pending backward saved
    with pytest.raises(tn.TritonnnError, match="modified in place"):
        loss.backward()


def test_leaf_can_be_written_under_no_grad():
    w = tn.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(tn.TritonnnError, match="requires grad"):
        w[0] = 5.0
    with tn.no_grad():
        w[0] = 5.0
    assert w.tolist() == [5.0, 2.0] and w.requires_grad


def test_fused_linear_relu_keeps_nan(device):
    """relu(NaN) is NaN in torch and in tn.relu; the fused epilogue must not turn it into 0."""
    x = tn.tensor([[float("nan"), 1.0], [1.0, 2.0]], device=device)
    w = tn.tensor([[1.0, 0.0], [0.0, -1.0]], device=device)
    out = tn.nn.functional.linear(x, w, activation="relu").tolist()
    assert np.isnan(out[0]).all() and out[1] == [1.0, 0.0]      # NaN * 0 is NaN too
