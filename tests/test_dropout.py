"""``F.dropout`` and ``tn.nn.Dropout`` on "cpu" and "cuda", against torch and the Philox spec.

The mask can't equal torch's (another generator), so it is checked against its definition
(element ``i`` kept when the float32 uniform of Philox word ``i % 4`` of counter ``offset +
i // 4`` is ``>= p``, computed here with ``tritonnn.philox``, the generator ``rand`` uses),
bit for bit the same on both devices, with the kept fraction within 6 standard errors of
``1 - p``. Values are torch's formula on that mask (``x * mask / (1 - p)``), the backward
multiplies by the same mask (regenerated, not stored), and the identities, modes and errors
follow PyTorch.
"""
import numpy as np
import pytest
import torch

import tritonnn as tn
import tritonnn.nn.functional as F
from tritonnn import random as tn_random
from tritonnn.philox import philox
from checks import assert_close
from conftest import cuda_usable
from test_gradcheck import gradcheck


def _expected_mask(seed, offset, shape, p):
    """The kept mask by the contract's definition, from the reference Philox."""
    n = int(np.prod(shape, dtype=np.int64))
    quads = (n + 3) // 4
    words = np.stack(philox(seed, np.arange(quads, dtype=np.uint64) + np.uint64(offset)), 1)
    bits = words.reshape(-1)[:n].view(np.int32)
    u = np.where(bits < 0, ~bits, bits).astype(np.float32) * np.float32(4.6566127342e-10)
    return (u >= np.float32(p)).reshape(shape)


@pytest.mark.parametrize("p", [0.0, 1e-9, 0.1, 0.25, 0.5, 0.7, 0.9, 0.99999994, 1.0])
def test_threshold_is_the_float_compare(p):
    """``uniform(w) >= p`` (float32) equals the integer test the kernels run, at its edge."""
    from tritonnn.philox import uniform_threshold
    t = uniform_threshold(p)
    edge = np.arange(max(0, t - 3), min(2 ** 31, t + 3), dtype=np.int64)
    u = edge.astype(np.float32) * np.float32(4.6566127342e-10)
    np.testing.assert_array_equal(u >= np.float32(p), edge >= t)
    assert (t == 2 ** 31) == (p == 1.0)


def _draw(seed, x, p, **kw):
    """``F.dropout(x, p)`` from a freshly seeded stream; returns (out, the draw's offset)."""
    tn.manual_seed(seed)
    offset = tn_random._State.offset
    return F.dropout(x, p, **kw), offset


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16", "float16"])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_values_and_mask_follow_the_spec_and_torch(p, dtype, device, rng):
    shape = (37, 129)
    x = rng.standard_normal(shape).astype(np.float32) + 3.0       # no zeros of its own
    tx = tn.tensor(x, device=device).to(getattr(tn, dtype))
    out, offset = _draw(1234, tx, p)
    mask = _expected_mask(1234, offset, shape, p)
    got = out.to(tn.float32).numpy()
    np.testing.assert_array_equal(got != 0, mask)
    # torch's formula on the same mask, in float32 (the compute dtype), rounded once
    px = torch.tensor(tx.to(tn.float32).numpy())
    want = torch.where(torch.tensor(mask), px * (1.0 / (1.0 - p)), 0.0)
    want = want.to(getattr(torch, dtype)).float().numpy()
    assert_close(got, want, 0, 1e-6 if dtype in ("float32", "float64") else 0, "values")
    kept = mask.mean()
    assert abs(kept - (1 - p)) < 6 * np.sqrt(p * (1 - p) / mask.size), kept


def test_masks_are_bit_identical_on_cpu_and_cuda(rng):
    if not cuda_usable():
        pytest.skip("no cuda device (GPU or interpreter)")
    x = rng.standard_normal((3, 5, 67)).astype(np.float32)
    outs = {}
    for device in ("cpu", "cuda"):
        tn.manual_seed(99)
        a = F.dropout(tn.tensor(x, device=device), 0.3)
        b = F.dropout(tn.tensor(x, device=device).transpose(0, 2), 0.7)     # the next draw
        outs[device] = (a.numpy(), b.numpy())
    for got, want in zip(outs["cuda"], outs["cpu"]):
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got != 0, want != 0)


def test_backward_regenerates_the_same_mask(device, rng):
    x = rng.standard_normal((17, 33)).astype(np.float32)
    up = rng.standard_normal((17, 33)).astype(np.float32)
    tx = tn.tensor(x, device=device, requires_grad=True)
    out, offset = _draw(7, tx, 0.4)
    assert out._node.saved == (), "the mask must not be stored"
    (out * tn.tensor(up, device=device)).sum().backward()
    mask = _expected_mask(7, offset, x.shape, 0.4)
    want = torch.where(torch.tensor(mask), torch.tensor(up) * (1.0 / 0.6), 0.0).numpy()
    assert_close(tx.grad.numpy(), want, 0, 1e-6, "gradient")
    # draws after the forward don't disturb the backward's mask
    tx.grad = None
    out2, _ = _draw(7, tx, 0.4)
    tn.rand(1000, device=device)
    (out2 * tn.tensor(up, device=device)).sum().backward()
    assert_close(tx.grad.numpy(), want, 0, 1e-6, "gradient after other draws")


def test_gradcheck_float64(rng):
    # each call reseeds, so every evaluation of the finite differences sees the same mask
    def f(x):
        tn.manual_seed(5)
        return F.dropout(x, 0.35)
    gradcheck(f, [rng.standard_normal((4, 7))], "dropout")


def test_strided_input_takes_the_row_major_mask(device, rng):
    x = rng.standard_normal((8, 13)).astype(np.float32)
    t = tn.tensor(x, device=device).T                   # (13, 8) through strides
    a, _ = _draw(3, t, 0.5)
    b, _ = _draw(3, t.contiguous(), 0.5)
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_reproducible_and_fresh_draws(device):
    x = tn.ones(1000, device=device)
    a, _ = _draw(11, x, 0.5)
    b, _ = _draw(11, x, 0.5)
    c = F.dropout(x, 0.5)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert (a.numpy() != c.numpy()).any(), "the next draw must differ"


def test_identities_as_pytorch(device):
    x = tn.tensor([[1.0, -2.0], [3.0, float("nan")]], device=device)
    assert F.dropout(x, 0.0) is x and F.dropout(x, 0.5, training=False) is x
    assert F.dropout(tn.zeros(0, 3, device=device), 0.5).shape == (0, 3)
    pt = torch.tensor([[1.0, -2.0], [3.0, float("nan")]])
    assert torch.nn.functional.dropout(pt, 0.0) is pt      # (torch agrees)
    # p = 1: everything dropped; x * 0 keeps NaN, as torch's
    np.testing.assert_array_equal(F.dropout(x, 1.0).numpy(),
                                  torch.nn.functional.dropout(pt, 1.0).numpy())
    ints = tn.tensor([1, 2], device=device)
    assert F.dropout(ints, 0.5, training=False) is ints


def test_module_acts_in_train_mode_only(device):
    tn.manual_seed(0)
    model = tn.nn.Sequential(tn.nn.Linear(6, 64), tn.nn.Dropout(0.5)).to(device)
    x = tn.ones(4, 6, device=device)
    assert model.training and model[1].training
    a, b = model(x), model(x)
    assert (a.detach().numpy() == 0).any() and (a.detach().numpy() != b.detach().numpy()).any()
    model.eval()
    np.testing.assert_array_equal(model(x).detach().numpy(), model[0](x).detach().numpy())
    assert model[1](x) is x
    assert repr(tn.nn.Dropout(0.2)) == repr(torch.nn.Dropout(0.2)) == "Dropout(p=0.2, inplace=False)"
    assert list(model.state_dict()) == ["0.weight", "0.bias"]


def test_inplace(device, rng):
    x = rng.standard_normal((5, 9)).astype(np.float32)
    t = tn.tensor(x, device=device)
    view = t[1:]
    out, offset = _draw(21, t, 0.3, inplace=True)
    assert out is t
    mask = _expected_mask(21, offset, x.shape, 0.3)
    np.testing.assert_array_equal(t.numpy() != 0, mask)
    np.testing.assert_array_equal(view.numpy(), t.numpy()[1:])
    leaf = tn.tensor(x, device=device, requires_grad=True)
    with pytest.raises(tn.TritonnnError, match="dropout_: a leaf tensor"):
        F.dropout(leaf, 0.3, inplace=True)
    # on a non-leaf the gradient flows through the in-place write
    leaf2 = tn.tensor(x, device=device, requires_grad=True)
    h = leaf2 * 2.0
    out, offset = _draw(21, h, 0.3, inplace=True)
    out.sum().backward()
    assert_close(leaf2.grad.numpy(), np.where(_expected_mask(21, offset, x.shape, 0.3),
                                              2.0 / 0.7, 0.0), 0, 1e-6, "in-place gradient")


BAD = [
    ("p above 1", lambda d: F.dropout(tn.ones(3, device=d), 1.5), tn.TritonnnError,
     r"dropout: p must be a probability in \[0, 1\], got 1.5"),
    ("p negative", lambda d: F.dropout(tn.ones(3, device=d), -0.1), tn.TritonnnError,
     r"dropout: p must be a probability"),
    ("p nan", lambda d: F.dropout(tn.ones(3, device=d), float("nan")), tn.TritonnnError,
     r"dropout: p must be a probability in \[0, 1\], got nan"),
    ("p str", lambda d: F.dropout(tn.ones(3, device=d), "a"), tn.DTypeError,
     r"dropout: p must be a number"),
    ("training int", lambda d: F.dropout(tn.ones(3, device=d), 0.5, 1), tn.DTypeError,
     r"dropout: training must be a bool"),
    ("integer tensor", lambda d: F.dropout(tn.tensor([1, 2], device=d), 0.5), tn.DTypeError,
     r"dropout: expected a floating-point tensor, got int64"),
    ("not a tensor", lambda d: F.dropout([1.0, 2.0], 0.5), tn.DTypeError, r"dropout"),
    ("Dropout(1.5)", lambda d: tn.nn.Dropout(1.5), tn.TritonnnError,
     r"Dropout: p must be a probability in \[0, 1\], got 1.5"),
    ("Dropout(inplace=1)", lambda d: tn.nn.Dropout(0.5, inplace=1), tn.DTypeError,
     r"Dropout: inplace must be a bool"),
]


@pytest.mark.parametrize("name,call,error,match", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_clear_error(name, call, error, match, device):
    with pytest.raises(error, match=match):
        call(device)
