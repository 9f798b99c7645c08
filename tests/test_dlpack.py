"""DLPack: zero-copy exchange with numpy and torch, and ``tn.tensor`` of a torch tensor.

``t.__dlpack__()``/``tn.from_dlpack(x)`` share memory: a write through either side is seen
by the other, for every dtype the other side has (bfloat16 and bool included). A "cuda"
tensor exports device memory, host memory under Triton's interpreter. ``tn.tensor`` of a
torch tensor copies, for every dtype, requires_grad or not.
"""
import gc

import ml_dtypes
import numpy as np
import pytest
import torch

import tritonnn as tn
from conftest import skip_without_cuda

# (tritonnn, numpy, torch) dtypes; numpy's DLPack lacks bfloat16 (None)
DTYPES = [
    (tn.float32, np.float32, torch.float32),
    (tn.float64, np.float64, torch.float64),
    (tn.float16, np.float16, torch.float16),
    (tn.bfloat16, None, torch.bfloat16),
    (tn.int64, np.int64, torch.int64),
    (tn.int32, np.int32, torch.int32),
    (tn.uint32, np.uint32, torch.uint32),
    (tn.uint8, np.uint8, torch.uint8),
    (tn.bool, np.bool_, torch.bool),
]
IDS = [str(d[0]) for d in DTYPES]


def values(dt, shape=(2, 3)):
    """Distinct small values of ``dt`` as a numpy array (bfloat16 as ml_dtypes')."""
    a = np.arange(int(np.prod(shape))).reshape(shape)
    if dt is tn.bool:
        return a % 2 == 1
    return a.astype(ml_dtypes.bfloat16 if dt is tn.bfloat16 else dt.np)


def one(dt):
    return True if dt is tn.bool else 1


def as_numpy(t):
    """A torch tensor's values as numpy (bfloat16 through float32)."""
    t = t.detach().cpu()
    return t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()


# ------------------------------------------------------------------------------------------------
# numpy <-> "cpu"
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dt, npd, _", [d for d in DTYPES if d[1] is not None],
                         ids=[i for i, d in zip(IDS, DTYPES) if d[1] is not None])
def test_numpy_arrays_are_shared_both_ways(dt, npd, _):
    a = values(dt)
    t = tn.from_dlpack(a)
    assert (t.dtype, t.shape, t.device) == (dt, (2, 3), tn.device("cpu"))
    np.testing.assert_array_equal(t.numpy(), a)
    a[0, 0] = one(dt)                        # numpy writes, tritonnn sees
    assert t[0, 0].item() == one(dt)
    t[1, 2] = 0                               # tritonnn writes, numpy sees
    assert a[1, 2] == 0
    back = np.from_dlpack(t)                  # and out again: the same memory
    assert np.shares_memory(back, a) and back.dtype == npd


def test_numpy_views_and_odd_shapes():
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    for a in (base.T, base[::2, 1::3], base[1], np.full((), 3.5, np.float32),
              np.zeros((0, 3), np.float32)):
        t = tn.from_dlpack(a)
        assert t.shape == a.shape
        np.testing.assert_array_equal(t.numpy(), a)
        np.testing.assert_array_equal((t * 2).numpy(), a * 2)      # ops read its strides
    t = tn.from_dlpack(base[::2, 1::3])
    t[0, 1] = -1.0
    assert base[0, 4] == -1.0
    out = np.from_dlpack(tn.arange(12).reshape(3, 4).T)             # a transposed tensor
    np.testing.assert_array_equal(out, np.arange(12).reshape(3, 4).T)


def test_a_read_only_array_is_copied():
    a = np.arange(3, dtype=np.float32)
    a.flags.writeable = False
    t = tn.from_dlpack(a)
    t += 1.0
    assert a.tolist() == [0.0, 1.0, 2.0] and t.tolist() == [1.0, 2.0, 3.0]


def test_memory_outlives_the_side_it_came_from():
    a = np.arange(5, dtype=np.int64)
    t = tn.from_dlpack(a)
    del a
    gc.collect()
    assert t.tolist() == [0, 1, 2, 3, 4]
    u = tn.arange(4).to(tn.float32)
    b = np.from_dlpack(u)
    del u
    gc.collect()
    assert b.tolist() == [0.0, 1.0, 2.0, 3.0]


# ------------------------------------------------------------------------------------------------
# torch <-> "cpu" and "cuda"
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dt, _, tdt", DTYPES, ids=IDS)
def test_torch_reads_and_writes_our_tensor(device, dt, _, tdt):
    t = tn.tensor(values(dt), dtype=dt, device=device)
    p = torch.from_dlpack(t)
    assert p.dtype == tdt and tuple(p.shape) == (2, 3)
    want = "cpu" if device == "cpu" or not tn.cuda.is_available() else "cuda"
    assert p.device.type == want
    np.testing.assert_array_equal(as_numpy(p), values(dt).astype(as_numpy(p).dtype))
    p[1, 1] = one(dt)                         # torch writes, tritonnn sees
    assert t[1, 1].item() == one(dt)
    t[0, 2] = 0                               # tritonnn writes, torch sees
    assert p[0, 2].item() == 0
    kind = 2 if want == "cuda" else 1
    assert t.__dlpack_device__() == (kind, 0)
    assert tuple(int(v) for v in p.__dlpack_device__()) == (kind, 0)


@pytest.mark.parametrize("dt, _, tdt", DTYPES, ids=IDS)
def test_we_read_and_write_a_torch_tensor(dt, _, tdt):
    p = torch.from_numpy(values(dt).astype(np.float32)).to(tdt)
    t = tn.from_dlpack(p)
    assert (t.dtype, t.shape, t.device) == (dt, (2, 3), tn.device("cpu"))
    np.testing.assert_array_equal(t.numpy(), values(dt))
    p[0, 1] = one(dt)
    assert t[0, 1].item() == one(dt)
    t[1, 0] = 0
    assert p[1, 0].item() == 0
    p2 = torch.from_numpy(values(dt).astype(np.float32)).to(tdt).T[1:]      # strided
    np.testing.assert_array_equal(tn.from_dlpack(p2).numpy(), as_numpy(p2).astype(
        values(dt).dtype))


def test_cuda_tensor_round_trip_keeps_the_device(device):
    t = tn.arange(6, device=device).to(tn.float32)
    assert tn.from_dlpack(t).device == t.device     # a tritonnn tensor: x.detach()
    u = tn.from_dlpack(torch.from_dlpack(t))        # through torch and back
    u[0] = 42.0
    assert t[0].item() == 42.0


def test_gpu_memory_comes_back_as_cuda():
    if not tn.cuda.is_available():
        pytest.skip("needs a GPU: under the interpreter no producer hands out device memory")
    p = torch.arange(6, dtype=torch.float32, device="cuda")
    t = tn.from_dlpack(p)
    assert t.device == tn.device("cuda") and t.__dlpack_device__() == (2, 0)
    t[2] = -1.0
    assert p[2].item() == -1.0
    assert (t * 2).tolist() == [0.0, 2.0, -4.0, 6.0, 8.0, 10.0]


def test_autograd_runs_on_a_shared_tensor():
    a = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    w = tn.from_dlpack(a).requires_grad_()
    (w * w).sum().backward()
    assert w.grad.tolist() == [2.0, 4.0, 6.0]
    with pytest.raises(tn.TritonnnError, match=r"^__dlpack__: can't export a tensor that "
                                               r"requires grad; use tensor.detach\(\)"):
        np.from_dlpack(w)
    assert np.shares_memory(np.from_dlpack(w.detach()), a)


# ------------------------------------------------------------------------------------------------
# refusals
# ------------------------------------------------------------------------------------------------

class Producer:
    """A DLPack producer on a device of our choosing."""

    def __init__(self, device, fail=False):
        self.device, self.fail = device, fail

    def __dlpack__(self, **kwargs):
        return np.ones(2).__dlpack__(**kwargs)

    def __dlpack_device__(self):
        if self.fail:
            raise RuntimeError("no device today")
        return self.device


@pytest.mark.parametrize("x, error, why", [
    ([1, 2], tn.DTypeError, r"expected an object that speaks DLPack .*got list"),
    (np.ones(2, dtype=np.int8), tn.DTypeError, r"the numpy.ndarray of dtype int8 has no tritonnn "
                                               r"dtype; supported: bfloat16, bool"),
    (np.ones(2, dtype=np.complex64), tn.DTypeError, r"of dtype complex64 has no tritonnn dtype"),
    (torch.ones(2, dtype=torch.int16), tn.DTypeError, r"torch.Tensor of dtype int16"),
    (torch.ones(2, requires_grad=True), tn.TritonnnError, r"the torch.Tensor could not be read "
                                                          r"over DLPack: .*require.* gradient"),
    (Producer((10, 0)), tn.DeviceError, r"DLPack device type 10 \(ROCm memory\); tritonnn "
                                        r"takes host \(1\) and CUDA \(2\) memory"),
    (Producer((1, 0), fail=True), tn.TritonnnError, r"Producer.__dlpack_device__\(\) failed: "
                                                    r"no device today"),
])
def test_from_dlpack_refusals(x, error, why):
    with pytest.raises(error, match=r"^from_dlpack: .*" + why):
        tn.from_dlpack(x)


# ------------------------------------------------------------------------------------------------
# tn.tensor(torch_tensor): a copy, every dtype
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dt, _, tdt", DTYPES, ids=IDS)
def test_tensor_of_a_torch_tensor_copies_every_dtype(device, dt, _, tdt):
    p = torch.from_numpy(values(dt).astype(np.float32)).to(tdt)
    if tdt.is_floating_point:
        p.requires_grad_()
    t = tn.tensor(p, device=device)
    assert (t.dtype, t.shape, t.device, t.requires_grad) == (dt, (2, 3), tn.device(device),
                                                            False)
    np.testing.assert_array_equal(t.numpy(), values(dt))
    with torch.no_grad():
        p[0, 0] = one(dt)
    assert t[0, 0].item() == values(dt)[0, 0]          # a copy
    if dt.is_floating:
        g = tn.tensor(p, requires_grad=True)
        assert g.requires_grad and g.is_leaf
        f = tn.tensor(p.T, dtype=tn.float64)                # a view, converted
        np.testing.assert_array_equal(f.numpy(), as_numpy(p.T).astype(np.float64))


@pytest.mark.parametrize("tdt", [torch.int8, torch.int16, torch.uint16, torch.uint64,
                                 torch.complex64, torch.float8_e4m3fn])
def test_tensor_of_a_torch_dtype_we_lack(tdt):
    with pytest.raises(tn.DTypeError, match=rf"^tensor: torch dtype {tdt} has no tritonnn dtype; "
                                            rf"supported: bfloat16, bool"):
        tn.tensor(torch.zeros(2).to(tdt))


def test_tensor_of_a_meta_torch_tensor_is_a_clear_error():
    with pytest.raises(tn.TritonnnError, match=r"^tensor: can't read the values of this torch "
                                               r"tensor \(torch.strided, device meta\)"):
        tn.tensor(torch.empty(2, device="meta"))


def test_dlpack_on_cuda_without_gpu_is_host_memory():
    skip_without_cuda()
    if tn.cuda.is_available():
        pytest.skip("a real GPU: device memory (test_gpu_memory_comes_back_as_cuda)")
    t = tn.ones(3, device="cuda")
    assert t.__dlpack_device__() == (1, 0)
    np.from_dlpack(t)[1] = 5.0                       # numpy reads the interpreter's buffer
    assert t.tolist() == [1.0, 5.0, 1.0]
