"""safetensors files: round trips for every dtype, interop with safetensors.torch/numpy, atomic writes."""
import os

import ml_dtypes
import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import load_file as np_load_file
from safetensors.numpy import save_file as np_save_file
from safetensors.torch import load_file as th_load_file
from safetensors.torch import save_file as th_save_file

import tritonnn as tn
import tritonnn.nn.functional as F
from tritonnn.io import load_metadata
from checks import NeuralNetwork, TorchNeuralNetwork

DTYPES = [
    (tn.float32, np.float32, torch.float32),
    (tn.float64, np.float64, torch.float64),
    (tn.float16, np.float16, torch.float16),
    (tn.bfloat16, ml_dtypes.bfloat16, torch.bfloat16),
    (tn.int64, np.int64, torch.int64),
    (tn.int32, np.int32, torch.int32),
    (tn.uint8, np.uint8, torch.uint8),
    (tn.bool, np.bool_, torch.bool),
]


def sample(np_dtype, shape, rng):
    if np.dtype(np_dtype) == np.bool_:
        return rng.random(shape) > 0.5
    if np.dtype(np_dtype).kind in "iu":
        return rng.integers(0, 200, shape).astype(np_dtype)
    return (rng.standard_normal(shape) * 10).astype(np_dtype)


def make_tensors(rng):
    out, raw = {}, {}
    for i, (dt, npd, _) in enumerate(DTYPES):
        for shape in [(3, 5), (7,), (), (2, 0, 3), (1, 1, 4)]:
            a = sample(npd, shape, rng)
            name = f"t{i}.{dt}.{'x'.join(map(str, shape)) or 'scalar'}"
            out[name] = tn.tensor(a, dtype=dt)
            raw[name] = a
    return out, raw


def test_round_trip_every_dtype_with_metadata(tmp_path, rng):
    tensors, raw = make_tensors(rng)
    p = tmp_path / "all.safetensors"
    meta = {"format": "pt", "epoch": "3", "note": "ünïcode"}
    tn.save(tensors, p, metadata=meta)
    back = tn.load(p)
    assert set(back) == set(tensors)
    for name, t in back.items():
        src = tensors[name]
        assert t.dtype is src.dtype, name
        assert t.shape == src.shape, name
        assert t.device == "cpu"
        np.testing.assert_array_equal(t.numpy().reshape(-1).view(np.uint8), raw[name].reshape(-1).view(np.uint8),
                                      err_msg=name)     # bit-exact
    assert load_metadata(p) == meta
    with safe_open(str(p), framework="numpy") as f:
        assert f.metadata() == meta


def test_save_without_metadata_and_str_path(tmp_path):
    p = str(tmp_path / "plain.safetensors")
    tn.save({"w": tn.ones(2, 2)}, p)
    assert load_metadata(p) == {}
    assert tn.load(p)["w"].tolist() == [[1.0, 1.0], [1.0, 1.0]]


def test_files_read_by_safetensors_torch(tmp_path, rng):
    tensors, raw = make_tensors(rng)
    p = tmp_path / "t.safetensors"
    tn.save(tensors, p)
    loaded = th_load_file(str(p))
    assert set(loaded) == set(tensors)
    by_tn = {dt: th for dt, _, th in DTYPES}
    for name, t in loaded.items():
        assert t.dtype == by_tn[tensors[name].dtype], name
        assert tuple(t.shape) == tensors[name].shape, name
        if t.dtype == torch.bfloat16:
            got = t.view(torch.int16).numpy().reshape(-1).view(np.uint8)
            np.testing.assert_array_equal(got, raw[name].reshape(-1).view(np.uint8), err_msg=name)
        else:
            np.testing.assert_array_equal(t.numpy(), raw[name], err_msg=name)


def test_files_read_by_safetensors_numpy(tmp_path, rng):
    tensors, raw = make_tensors(rng)
    tensors = {k: v for k, v in tensors.items() if v.dtype is not tn.bfloat16}
    p = tmp_path / "n.safetensors"
    tn.save(tensors, p)
    loaded = np_load_file(str(p))
    assert set(loaded) == set(tensors)
    for name, a in loaded.items():
        assert a.dtype == raw[name].dtype and a.shape == raw[name].shape, name
        np.testing.assert_array_equal(a, raw[name], err_msg=name)


def test_reads_files_written_by_safetensors(tmp_path, rng):
    arrays = {f"a{i}": sample(npd, (4, 3), rng) for i, (_, npd, _) in enumerate(DTYPES)
              if npd is not ml_dtypes.bfloat16}
    p = tmp_path / "np.safetensors"
    np_save_file(arrays, str(p), metadata={"k": "v"})
    back = tn.load(p)
    for k, a in arrays.items():
        assert back[k].numpy().dtype == a.dtype
        np.testing.assert_array_equal(back[k].numpy(), a, err_msg=k)
    assert load_metadata(p) == {"k": "v"}
    bf = torch.randn(3, 5).to(torch.bfloat16)
    q = tmp_path / "bf.safetensors"
    th_save_file({"bf": bf}, str(q))
    t = tn.load(q)["bf"]
    assert t.dtype is tn.bfloat16
    np.testing.assert_array_equal(np.asarray(t.tolist(), np.float32), bf.float().numpy())


def test_torch_state_dict_loads_into_our_model(tmp_path, rng):
    torch.manual_seed(0)
    ref = TorchNeuralNetwork(50, 3)
    p = tmp_path / "torch_model.safetensors"
    th_save_file(ref.state_dict(), str(p))
    model = NeuralNetwork(50, 3)
    model.load_state_dict(tn.load(p))
    x = rng.standard_normal((8, 50)).astype(np.float32)
    ours = model(tn.tensor(x)).detach().numpy()
    theirs = ref(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-6, rtol=1e-5)
    # and the other way: our file into torch
    q = tmp_path / "ours.safetensors"
    tn.save(dict(model.state_dict()), q)
    ref2 = TorchNeuralNetwork(50, 3)
    ref2.load_state_dict(th_load_file(str(q)))
    np.testing.assert_allclose(ref2(torch.from_numpy(x)).detach().numpy(), theirs, atol=1e-6)


def test_model_round_trip_keeps_predictions(tmp_path):
    tn.manual_seed(4)
    model = NeuralNetwork(5, 2)
    p = tmp_path / "m.safetensors"
    tn.save(dict(model.state_dict()), p)
    tn.manual_seed(99)
    other = NeuralNetwork(5, 2)
    x = tn.randn(6, 5)
    assert not np.array_equal(model(x).detach().numpy(), other(x).detach().numpy())
    other.load_state_dict(tn.load(p))
    np.testing.assert_array_equal(model(x).detach().numpy(), other(x).detach().numpy())


def temp_leftovers(folder, keep):
    return sorted(f for f in os.listdir(folder) if f not in keep)


def test_atomic_write_leaves_no_temp_files(tmp_path):
    p = tmp_path / "a.safetensors"
    for i in range(3):
        tn.save({"x": tn.full((4,), float(i))}, p)
    assert temp_leftovers(tmp_path, {"a.safetensors"}) == []
    assert tn.load(p)["x"].tolist() == [2.0] * 4


def test_save_to_missing_folder(tmp_path):
    p = tmp_path / "nope" / "deeper" / "m.safetensors"
    with pytest.raises(tn.TritonnnError, match="does not exist"):
        tn.save({"x": tn.ones(2)}, p)
    assert not (tmp_path / "nope").exists()
    assert temp_leftovers(tmp_path, set()) == []


def old_file(tmp_path):
    p = tmp_path / "keep.safetensors"
    tn.save({"x": tn.tensor([1.0, 2.0, 3.0])}, p)
    return p, p.read_bytes()


def test_failed_save_keeps_old_file_bad_value(tmp_path):
    p, before = old_file(tmp_path)
    with pytest.raises(tn.TritonnnError):
        tn.save({"x": tn.ones(5), "y": np.ones(3)}, p)
    with pytest.raises(tn.TritonnnError):
        tn.save({"x": tn.ones(5)}, p, metadata={"epoch": 3})
    assert p.read_bytes() == before
    assert temp_leftovers(tmp_path, {p.name}) == []


def test_crash_during_write_keeps_old_file(tmp_path, monkeypatch):
    p, before = old_file(tmp_path)

    def disk_full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(tn.TritonnnError, match="No space left"):
        tn.save({"x": tn.ones(1000)}, p)
    monkeypatch.undo()
    assert p.read_bytes() == before
    assert tn.load(p)["x"].tolist() == [1.0, 2.0, 3.0]
    assert temp_leftovers(tmp_path, {p.name}) == []


def test_interrupt_during_write_keeps_old_file(tmp_path, monkeypatch):
    p, before = old_file(tmp_path)

    def interrupted(src, dst):
        raise KeyboardInterrupt
    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tn.save({"x": tn.ones(1000)}, p)
    monkeypatch.undo()
    assert p.read_bytes() == before
    assert temp_leftovers(tmp_path, {p.name}) == []


def test_load_errors(tmp_path):
    with pytest.raises(tn.TritonnnError):
        tn.load(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{bad}")
    with pytest.raises(tn.TritonnnError):
        tn.load(bad)
    with pytest.raises(tn.TritonnnError):
        tn.load(tmp_path)


def test_loaded_tensors_are_usable(tmp_path):
    p = tmp_path / "u.safetensors"
    tn.save({"w": tn.tensor([[1.0, 2.0], [3.0, 4.0]]), "y": tn.tensor([0, 1])}, p)
    d = tn.load(p)
    w = d["w"].requires_grad_()
    loss = F.cross_entropy(w * 2, d["y"])
    loss.backward()
    assert w.grad.shape == (2, 2)
    d["y"][0] = 1                              # writable
    assert d["y"].tolist() == [1, 1]
