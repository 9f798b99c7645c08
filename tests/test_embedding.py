"""``F.embedding``, ``tn.nn.Embedding`` and ``F.one_hot`` against torch, on "cpu" and "cuda".

Forward values, the table's gradient under a non-unit upstream gradient (repeated indices,
``padding_idx``, int32 and int64 indices of several shapes), float64 finite differences, the
determinism of the gradient sums (the same bits run after run and on both devices), the
layer's PyTorch init, names and ``state_dict``, and bad input.
"""
import numpy as np
import pytest
import torch

import tritonnn as tn
import tritonnn.nn.functional as F
from checks import assert_close
from test_gradcheck import gradcheck

TOL = {"float32": (1e-6, 1e-5), "float64": (1e-12, 1e-12)}

# the interpreter evaluates masked-off lanes too (log(0) in a pow kernel): values never stored
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _case(rng, num, dim, ishape, dtype):
    w = rng.standard_normal((num, dim)).astype(dtype)
    idx = rng.integers(0, num, ishape)
    if idx.size > 2:
        idx.reshape(-1)[:2] = idx.reshape(-1)[-1]          # a repeated index, always
    return w, idx


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("ishape,idtype", [((), "int64"), ((7,), "int64"), ((3, 5), "int32"),
                                           ((2, 3, 4), "int64"), ((0, 3), "int64")])
@pytest.mark.parametrize("padding_idx", [None, 2, -1])
def test_embedding_matches_torch(padding_idx, ishape, idtype, dtype, device, rng):
    num, dim = 11, 5
    w, idx = _case(rng, num, dim, ishape, dtype)
    if idx.size:
        idx.reshape(-1)[0] = 2                              # the padding row is used
    up = rng.standard_normal(ishape + (dim,)).astype(dtype)
    tw = tn.tensor(w, device=device, requires_grad=True)
    out = F.embedding(tn.tensor(idx, dtype=getattr(tn, idtype), device=device), tw,
                      padding_idx=padding_idx)
    (out * tn.tensor(up, device=device)).sum().backward()
    pw = torch.tensor(w, requires_grad=True)
    pout = torch.nn.functional.embedding(torch.tensor(idx, dtype=getattr(torch, idtype)), pw,
                                         padding_idx=padding_idx)
    (pout * torch.tensor(up)).sum().backward()
    atol, rtol = TOL[dtype]
    assert out.shape == tuple(pout.shape) and out.dtype is getattr(tn, dtype)
    assert_close(out.detach().numpy(), pout.detach().numpy(), 0, 0, "forward")
    assert_close(tw.grad.numpy(), pw.grad.numpy(), atol, rtol, "weight gradient")


def test_embedding_of_a_strided_table_and_strided_indices(device, rng):
    w = rng.standard_normal((6, 9)).astype(np.float32)
    idx = rng.integers(0, 9, (4, 6))
    tw = tn.tensor(w, device=device, requires_grad=True)
    table = tw.T                                          # (9, 6), strides (1, 9)
    ti = tn.tensor(idx, device=device).T                  # (6, 4), transposed indices
    out = F.embedding(ti, table)
    (out ** 2).sum().backward()
    pw = torch.tensor(w, requires_grad=True)
    pout = torch.nn.functional.embedding(torch.tensor(idx).T, pw.T)
    (pout ** 2).sum().backward()
    assert_close(out.detach().numpy(), pout.detach().numpy(), 0, 0, "forward")
    assert_close(tw.grad.numpy(), pw.grad.numpy(), 1e-6, 1e-5, "gradient")


def test_embedding_not_the_last_layer(device, rng):
    """The gradient reaches the table through layers above it (and through a sum of two uses)."""
    w = rng.standard_normal((10, 6)).astype(np.float32)
    lin = rng.standard_normal((3, 6)).astype(np.float32)
    idx = np.array([[1, 4, 4, 9], [0, 1, 1, 1]])
    idx2 = np.array([[9, 9, 0, 1], [4, 4, 2, 1]])
    y = np.array([0, 2, 1, 1, 0, 2, 2, 1])
    tw = tn.tensor(w, device=device, requires_grad=True)
    tl = tn.tensor(lin, device=device, requires_grad=True)
    h = F.embedding(tn.tensor(idx, device=device), tw) + \
        F.embedding(tn.tensor(idx2, device=device), tw)
    loss = F.cross_entropy(F.linear(h.reshape(-1, 6).tanh(), tl), tn.tensor(y, device=device))
    loss.backward()
    pw, pl = torch.tensor(w, requires_grad=True), torch.tensor(lin, requires_grad=True)
    ph = torch.nn.functional.embedding(torch.tensor(idx), pw) + \
        torch.nn.functional.embedding(torch.tensor(idx2), pw)
    ploss = torch.nn.functional.cross_entropy(
        torch.nn.functional.linear(ph.reshape(-1, 6).tanh(), pl), torch.tensor(y))
    ploss.backward()
    assert_close(loss.item(), ploss.item(), 1e-6, 1e-5, "loss")
    assert_close(tw.grad.numpy(), pw.grad.numpy(), 1e-6, 1e-5, "table gradient")
    assert_close(tl.grad.numpy(), pl.grad.numpy(), 1e-6, 1e-5, "linear gradient")


@pytest.mark.parametrize("idx", [np.array([[0, 3, 1], [3, 3, 2]]), np.array(4),
                                 np.array([1, 1, 1, 1], np.int32)], ids=["2-D", "0-d", "int32"])
def test_embedding_gradcheck_float64(idx, rng):
    # (padding_idx drops the padding row's gradient on purpose: checked against torch above)
    gradcheck(lambda w, i: F.embedding(i, w), [rng.standard_normal((5, 4)), idx], "embedding")


def test_embedding_gradient_is_deterministic_and_the_same_on_both_devices(rng):
    """Thousands of uses of a few rows: the sums come out bit-identical run after run, and
    "cpu" and "cuda" add the same float32 numbers in the same order."""
    from conftest import cuda_usable
    w = rng.standard_normal((7, 33)).astype(np.float32)
    idx = rng.integers(0, 7, 3000)
    up = (rng.standard_normal((3000, 33)) * 100).astype(np.float32)
    grads = []
    for device in (["cpu", "cuda"] if cuda_usable() else ["cpu"]):
        for _ in range(2):
            tw = tn.tensor(w, device=device, requires_grad=True)
            (F.embedding(tn.tensor(idx, device=device), tw) * tn.tensor(up, device=device)) \
                .sum().backward()
            grads.append(tw.grad.numpy())
    for g in grads[1:]:
        np.testing.assert_array_equal(g, grads[0])
    ref = np.zeros((7, 33))
    np.add.at(ref, idx, up.astype(np.float64))
    assert_close(grads[0], ref, 1e-2, 1e-5, "against float64 sums")


# ----------------------------------------------------------------------------------------------
# nn.Embedding
# ----------------------------------------------------------------------------------------------


def test_layer_init_names_and_state_dict(device):
    tn.manual_seed(3)
    emb = tn.nn.Embedding(300, 40, device=device)
    w = emb.weight.detach().numpy()
    assert emb.weight.shape == (300, 40) and emb.weight.requires_grad
    assert [n for n, _ in emb.named_parameters()] == ["weight"]
    assert list(emb.state_dict()) == list(torch.nn.Embedding(300, 40).state_dict()) == ["weight"]
    # PyTorch's init: N(0, 1) (mean and std within 6 standard errors of 12,000 draws)
    assert abs(w.mean()) < 6 / np.sqrt(w.size) and abs(w.std() - 1) < 6 / np.sqrt(2 * w.size)
    tn.manual_seed(3)
    np.testing.assert_array_equal(tn.nn.Embedding(300, 40).weight.detach().numpy(), w)
    tn.manual_seed(3)
    np.testing.assert_array_equal(w, tn.randn(300, 40).numpy())   # the stream rand draws from
    assert repr(emb) == repr(torch.nn.Embedding(300, 40)) == "Embedding(300, 40)"


def test_layer_padding_idx_row_starts_at_zero_and_stays(device, rng):
    emb = tn.nn.Embedding(6, 3, padding_idx=-2, device=device)
    assert emb.padding_idx == 4 and repr(emb) == repr(torch.nn.Embedding(6, 3, padding_idx=-2))
    assert (emb.weight.detach().numpy()[4] == 0).all()
    opt = tn.optim.SGD(emb.parameters(), lr=0.5)
    for _ in range(2):
        loss = (emb(tn.tensor([[4, 1], [4, 4]], device=device)) ** 2).sum() + 1.0
        opt.backward_step(loss)
    assert (emb.weight.detach().numpy()[4] == 0).all(), "the padding row took a gradient"


def test_layer_loads_a_torch_state_dict_and_computes_the_same(device, rng):
    torch.manual_seed(0)
    pt = torch.nn.Embedding(20, 8, padding_idx=0)
    emb = tn.nn.Embedding(20, 8, padding_idx=0, device=device)
    emb.load_state_dict({k: tn.tensor(v.detach().numpy()) for k, v in pt.state_dict().items()})
    idx = rng.integers(0, 20, (5, 7))
    up = rng.standard_normal((5, 7, 8)).astype(np.float32)
    out = emb(tn.tensor(idx, device=device))
    (out * tn.tensor(up, device=device)).sum().backward()
    pout = pt(torch.tensor(idx))
    (pout * torch.tensor(up)).sum().backward()
    assert_close(out.detach().numpy(), pout.detach().numpy(), 0, 0, "forward")
    assert_close(emb.weight.grad.numpy(), pt.weight.grad.numpy(), 1e-6, 1e-5, "gradient")


def test_from_pretrained_is_frozen_by_default(device):
    table = tn.tensor([[1.0, 2.0], [3.0, 4.0]], device=device)
    frozen = tn.nn.Embedding.from_pretrained(table)
    assert not frozen.weight.requires_grad
    np.testing.assert_array_equal(frozen(tn.tensor([1, 0], device=device)).numpy(),
                                  [[3.0, 4.0], [1.0, 2.0]])
    assert tn.nn.Embedding.from_pretrained(table, freeze=False).weight.requires_grad


def test_layer_trains_in_float64_and_bfloat16(device):
    for dtype in (tn.float64, tn.bfloat16):
        emb = tn.nn.Embedding(5, 4, dtype=dtype, device=device)
        assert emb.weight.dtype is dtype
        out = emb(tn.tensor([0, 0, 3], device=device))
        out.float().sum().backward() if dtype is tn.bfloat16 else out.sum().backward()
        g = emb.weight.grad.to(tn.float32).numpy()
        np.testing.assert_array_equal(g, np.array([[2.0] * 4, [0] * 4, [0] * 4, [1] * 4,
                                                   [0] * 4], np.float32))


# ----------------------------------------------------------------------------------------------
# one_hot
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape,num_classes", [((5,), -1), ((5,), 9), ((2, 3), 4), ((), 3),
                                               ((0,), 3), ((0, 2), 5)])
def test_one_hot_matches_torch(shape, num_classes, device, rng):
    idx = rng.integers(0, 3, shape)
    got = F.one_hot(tn.tensor(idx, device=device), num_classes)
    want = torch.nn.functional.one_hot(torch.tensor(idx), num_classes)
    assert got.dtype is tn.int64 and got.shape == tuple(want.shape)
    np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_one_hot_of_int32_and_strided_indices(device):
    idx = np.array([[0, 3], [2, 1], [3, 3]])
    got = F.one_hot(tn.tensor(idx, dtype=tn.int32, device=device).T, 4)
    np.testing.assert_array_equal(got.numpy(),
                                  torch.nn.functional.one_hot(torch.tensor(idx).T, 4).numpy())


# ----------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------


BAD = [
    ("float indices", lambda d: F.embedding(tn.tensor([0.0, 1.0], device=d), tn.ones(3, 2, device=d)),
     tn.DTypeError, r"embedding.*int64 or int32.*float32"),
    ("uint8 indices", lambda d: F.embedding(tn.tensor([0, 1], dtype=tn.uint8, device=d),
                                            tn.ones(3, 2, device=d)),
     tn.DTypeError, r"embedding.*uint8"),
    ("index past the end", lambda d: F.embedding(tn.tensor([0, 3, 1], device=d),
                                                 tn.ones(3, 2, device=d)),
     tn.IndexOutOfRange, r"embedding: index 3 is out of range for a table of 3 rows"),
    ("negative index", lambda d: F.embedding(tn.tensor([[0], [-1]], device=d),
                                             tn.ones(3, 2, device=d)),
     tn.IndexOutOfRange, r"embedding: index -1 .*\[0, 3\)"),
    ("empty table", lambda d: F.embedding(tn.tensor([2], device=d), tn.ones(0, 2, device=d)),
     tn.IndexOutOfRange, r"embedding: index 2 .*0 rows"),
    ("1-D weight", lambda d: F.embedding(tn.tensor([0], device=d), tn.ones(3, device=d)),
     tn.ShapeError, r"embedding.*2-D.*\(3,\)"),
    ("padding_idx out of range", lambda d: F.embedding(tn.tensor([0], device=d),
                                                       tn.ones(3, 2, device=d), padding_idx=3),
     tn.IndexOutOfRange, r"embedding: padding_idx 3"),
    ("padding_idx float", lambda d: F.embedding(tn.tensor([0], device=d), tn.ones(3, 2, device=d),
                                                padding_idx=1.0),
     tn.DTypeError, r"embedding: padding_idx must be an int"),
    ("max_norm", lambda d: F.embedding(tn.tensor([0], device=d), tn.ones(3, 2, device=d),
                                       max_norm=1.0),
     tn.TritonnnError, r"embedding: max_norm=1.0 is not supported"),
    ("list indices", lambda d: F.embedding([0, 1], tn.ones(3, 2, device=d)),
     tn.DTypeError, r"embedding"),
    ("Embedding(-1, 3)", lambda d: tn.nn.Embedding(-1, 3), tn.ShapeError,
     r"Embedding: num_embeddings must be a non-negative int, got -1"),
    ("Embedding(3, 2.5)", lambda d: tn.nn.Embedding(3, 2.5), tn.ShapeError,
     r"Embedding: embedding_dim"),
    ("Embedding padding", lambda d: tn.nn.Embedding(3, 2, padding_idx=3), tn.IndexOutOfRange,
     r"Embedding: padding_idx 3 is out of range for 3"),
    ("one_hot float", lambda d: F.one_hot(tn.tensor([0.0], device=d), 2), tn.DTypeError,
     r"one_hot.*integer.*float32"),
    ("one_hot too big", lambda d: F.one_hot(tn.tensor([0, 2], device=d), 2), tn.IndexOutOfRange,
     r"one_hot: class value 2 is out of range for 2 classes"),
    ("one_hot negative", lambda d: F.one_hot(tn.tensor([0, -1], device=d), 3),
     tn.IndexOutOfRange, r"one_hot: class value -1"),
    ("one_hot negative inferred", lambda d: F.one_hot(tn.tensor([-2, 1], device=d)),
     tn.IndexOutOfRange, r"one_hot: class values must be non-negative, got -2"),
    ("one_hot empty inferred", lambda d: F.one_hot(tn.zeros(0, dtype=tn.int64, device=d)),
     tn.TritonnnError, r"one_hot: can't infer the number of classes from an empty tensor"),
    ("one_hot -2", lambda d: F.one_hot(tn.tensor([1], device=d), -2), tn.TritonnnError,
     r"one_hot: num_classes must be -1"),
    ("one_hot float classes", lambda d: F.one_hot(tn.tensor([1], device=d), 2.0), tn.DTypeError,
     r"one_hot: num_classes must be an int"),
]


# index values the kernel checks as it reads them: "cuda" raises at the next synchronization
CHECKED_ON_THE_DEVICE = {"index past the end", "negative index", "empty table", "one_hot too big",
                         "one_hot negative"}


@pytest.mark.parametrize("name,call,error,match", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_clear_error(name, call, error, match, device):
    if device == "cuda" and name in CHECKED_ON_THE_DEVICE:
        tn.cuda.reset_stats()
        call(device)
        assert tn.cuda.stats()["host_syncs"] == 0
        with pytest.raises(error, match=match):
            tn.cuda.synchronize()
        tn.cuda.set_sync_checks(True)           # or at the op itself, for debugging
        try:
            with pytest.raises(error, match=match):
                call(device)
        finally:
            tn.cuda.set_sync_checks(False)
        return
    with pytest.raises(error, match=match):
        call(device)


def test_mixed_devices_are_refused(device):
    from conftest import skip_without_cuda
    skip_without_cuda()
    other = "cpu" if device == "cuda" else "cuda"
    with pytest.raises(tn.DeviceError, match="embedding"):
        F.embedding(tn.tensor([0], device=device), tn.ones(3, 2, device=other))


def test_indices_written_after_the_forward_are_caught(device):
    w = tn.ones(4, 2, device=device, requires_grad=True)
    idx = tn.tensor([0, 1], device=device)
    out = F.embedding(idx, w)
    idx += 1
    with pytest.raises(tn.TritonnnError, match="embedding"):
        out.sum().backward()
