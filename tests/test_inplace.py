"""In-place writes as PyTorch's: the buffer itself changes (aliases and views see it), the shared
version catches a pending backward, leaves that require grad are written only under no_grad,
and a non-leaf written while recording carries its gradient on, checked against torch."""
import numpy as np
import pytest
import torch

import tritonnn as tn
from checks import assert_close
from conftest import cuda_usable

A = np.array([[1.0, -2.0, 3.0], [0.5, 4.0, -1.5]], np.float32)

OPS = [  # (name, tritonnn in-place call, torch in-place call)
    ("+=", lambda t, o: t.__iadd__(o), lambda t, o: t.__iadd__(o)),
    ("-=", lambda t, o: t.__isub__(o), lambda t, o: t.__isub__(o)),
    ("*=", lambda t, o: t.__imul__(o), lambda t, o: t.__imul__(o)),
    ("/=", lambda t, o: t.__itruediv__(o), lambda t, o: t.__itruediv__(o)),
    ("add_", lambda t, o: t.add_(o), lambda t, o: t.add_(o)),
    ("sub_", lambda t, o: t.sub_(o), lambda t, o: t.sub_(o)),
    ("mul_", lambda t, o: t.mul_(o), lambda t, o: t.mul_(o)),
    ("div_", lambda t, o: t.div_(o), lambda t, o: t.div_(o)),
]
OTHERS = {"scalar": 2.5, "row": np.array([2.0, -1.0, 0.5], np.float32), "same": A[::-1].copy()}


def _other(kind, device, lib):
    o = OTHERS[kind]
    if not isinstance(o, np.ndarray):
        return o
    return tn.tensor(o, device=device) if lib == "tn" else torch.tensor(o)


@pytest.mark.parametrize("kind", sorted(OTHERS))
@pytest.mark.parametrize("name, op, top", OPS, ids=[o[0] for o in OPS])
def test_writes_the_buffer_every_alias_sees(device, name, op, top, kind):
    t = tn.tensor(A, device=device)
    alias, row = t, t[1]
    out = op(t, _other(kind, device, "tn"))
    want = torch.tensor(A)
    top(want, _other(kind, device, "torch"))
    assert out is t and alias is t
    assert_close(t.numpy(), want.numpy(), what=f"{name} {kind}")
    assert_close(row.numpy(), want[1].numpy(), what="a view taken before the write")


def test_writes_through_a_view_reach_the_base(device):
    t = tn.tensor(A, device=device)
    v = t[:, 1:]
    v *= 10
    v[0].add_(1)
    want = torch.tensor(A)
    want[:, 1:] *= 10
    want[0, 1:] += 1
    assert_close(t.numpy(), want.numpy())


def test_leaf_requiring_grad_is_written_only_under_no_grad(device):
    w = tn.tensor(A, device=device, requires_grad=True)
    for write in (lambda: w.__iadd__(1.0), lambda: w.mul_(2.0), lambda: w.zero_(),
                  lambda: w.fill_(3.0), lambda: w.copy_(tn.zeros(2, 3, device=device)),
                  lambda: w.clamp_(0.0, 1.0)):
        with pytest.raises(tn.TritonnnError, match="leaf tensor .* requires grad"):
            write()
    assert_close(w.detach().numpy(), A)
    w.grad = tn.ones(2, 3, device=device)
    with tn.no_grad():
        w -= 0.5 * w.grad                        # the update of a hand-written optimizer
    assert w.requires_grad and w.is_leaf
    assert_close(w.detach().numpy(), A - 0.5)


def test_a_pending_backward_catches_the_write(device):
    x = tn.tensor(A, device=device, requires_grad=True)
    y = x * 2.0
    z = (y * y).sum()                            # saved y
    with tn.no_grad():
        y += 1.0
    with pytest.raises(tn.TritonnnError, match="modified in place"):
        z.backward()


@pytest.mark.parametrize("name, op, top", OPS, ids=[o[0] for o in OPS])
def test_gradient_through_an_in_place_write(device, name, op, top):
    """A non-leaf written in place while recording, and the other operand requiring grad."""
    x = tn.tensor(A, device=device, requires_grad=True)
    o = tn.tensor(OTHERS["row"], device=device, requires_grad=True)
    h = x * 3.0
    op(h, o)
    (h * h).sum().backward()
    tx = torch.tensor(A, requires_grad=True)
    to = torch.tensor(OTHERS["row"], requires_grad=True)
    th = tx * 3.0
    top(th, to)
    (th * th).sum().backward()
    assert_close(h.detach().numpy(), th.detach().numpy(), what="values")
    assert_close(x.grad.numpy(), tx.grad.numpy(), what="d/dx")
    assert_close(o.grad.numpy(), to.grad.numpy(), what="d/d(other)")


def test_a_plain_tensor_joins_the_graph_when_written_with_one_that_requires_grad(device):
    acc = tn.zeros(3, device=device)
    w = tn.tensor(OTHERS["row"], device=device, requires_grad=True)
    acc += w * 2.0
    acc.sum().backward()
    assert acc.requires_grad
    assert_close(w.grad.numpy(), np.full(3, 2.0, np.float32))


def test_copy_and_clamp_carry_gradients_as_torch(device):
    x = tn.tensor(A, device=device, requires_grad=True)
    src = tn.tensor(OTHERS["row"], device=device, requires_grad=True)
    h = x * 1.0
    h.copy_(src)
    g = (x * 2.0).clamp_(-1.0, 2.0)
    (h.sum() + (g * g).sum()).backward()
    tx = torch.tensor(A, requires_grad=True)
    ts = torch.tensor(OTHERS["row"], requires_grad=True)
    th = tx * 1.0
    th.copy_(ts)
    tg = (tx * 2.0).clamp_(-1.0, 2.0)
    (th.sum() + (tg * tg).sum()).backward()
    assert_close(x.grad.numpy(), tx.grad.numpy(), what="d/dx")
    assert_close(src.grad.numpy(), ts.grad.numpy(), what="d/dsrc")


def test_clamp_and_clone_match_torch(device):
    x = tn.tensor(np.array([-2.0, -0.5, 0.5, 1.0, np.nan], np.float32), device=device,
                  requires_grad=True)
    tx = torch.tensor(x.detach().numpy(), requires_grad=True)
    for lo, hi in ((-1.0, 1.0), (None, 0.0), (0.0, None)):
        y = x.clamp(lo, hi)
        ty = tx.clamp(lo, hi)
        assert_close(y.detach().numpy(), ty.detach().numpy(), what=f"clamp({lo}, {hi})")
        (gx,) = tn.grad((y * 3.0).sum(), [x])
        (tgx,) = torch.autograd.grad((ty * 3.0).sum(), [tx])
        assert_close(gx.numpy(), tgx.numpy(), what=f"clamp({lo}, {hi}) gradient")
    i = tn.tensor([-3, 0, 7], device=device)
    assert i.clamp(0, 5).tolist() == [0, 0, 5] and i.clamp(0, 5).dtype is tn.int64
    assert i.clamp(0.5, 5).dtype is tn.float32             # a float bound: torch's promotion
    c = x.clone()
    assert c._data is not x._data and c.requires_grad
    with pytest.raises(tn.TritonnnError, match="clamp"):
        x.clamp()


def test_dtype_and_shape_rules(device):
    i = tn.tensor([1, 2, 3], device=device)
    with pytest.raises(tn.DTypeError, match=r"\+=.*float32.*int64"):
        i += 1.5                                  # torch: result type Float can't be cast to Long
    i += 2
    assert i.tolist() == [3, 4, 5] and i.dtype is tn.int64
    b = tn.tensor([True, False], device=device)
    with pytest.raises(tn.DTypeError):
        b += 1
    f = tn.tensor([1.0, 2.0], device=device)
    f += tn.tensor([1, 2], device=device)          # an integer operand is fine
    assert f.tolist() == [2.0, 4.0]
    with pytest.raises(tn.ShapeError, match=r"\(2, 2\).*\(2,\)"):
        f += tn.ones(2, 2, device=device)          # the result would not fit
    with pytest.raises(tn.DTypeError, match=r"\+="):
        f += "1"
    with pytest.raises(tn.ShapeError, match="fill_"):
        f.fill_(tn.ones(2, device=device))


def test_view_and_graph_in_place_is_refused_not_wrong(device):
    x = tn.tensor(A, device=device, requires_grad=True)
    y = x * 2.0
    v = y[0]
    with pytest.raises(tn.TritonnnError, match="view"):
        y *= 3.0
    with pytest.raises(tn.TritonnnError, match="view"):
        v *= 3.0
    del v
    y *= 3.0                                       # the view is gone: allowed again
    y.sum().backward()
    assert_close(x.grad.numpy(), np.full((2, 3), 6.0, np.float32))


def test_parameter_shares_the_tensor_it_wraps(device):
    t = tn.tensor(OTHERS["row"], device=device)
    p = tn.nn.Parameter(t)
    x = tn.tensor(OTHERS["row"], device=device)
    loss = (p * x).sum()                           # saved p (and t: the same buffer)
    t[0] = 5.0
    assert p.detach().numpy()[0] == 5.0
    with pytest.raises(tn.TritonnnError, match="modified in place"):
        loss.backward()


def test_grad_assignment_is_checked(device):
    w = tn.tensor(A, device=device, requires_grad=True)
    with pytest.raises(tn.ShapeError, match=r"grad.*\(3,\).*\(2, 3\)"):
        w.grad = tn.zeros(3, device=device)
    with pytest.raises(tn.DTypeError, match="grad.*float64"):
        w.grad = tn.zeros(2, 3, dtype=tn.float64, device=device)
    other = "cpu" if device == "cuda" else "cuda"
    if cuda_usable():
        with pytest.raises(tn.DeviceError, match="grad"):
            w.grad = tn.zeros(2, 3, device=other)
    with pytest.raises(tn.TritonnnError, match="grad"):
        w.grad = np.zeros((2, 3), np.float32)
    w.grad = tn.ones(2, 3, device=device)
    w.grad = None
    assert w.grad is None


def test_setitem_while_recording_matches_torch(device):
    x = tn.tensor(A, device=device, requires_grad=True)
    v = tn.tensor(OTHERS["row"], device=device, requires_grad=True)
    y = x * 2.0
    y[1] = v * 3.0
    y[:, 0] = 7.0
    y[tn.tensor([0], device=device)] = v
    (y * y).sum().backward()
    tx = torch.tensor(A, requires_grad=True)
    tv = torch.tensor(OTHERS["row"], requires_grad=True)
    ty = tx * 2.0
    ty[1] = tv * 3.0
    ty[:, 0] = 7.0
    ty[torch.tensor([0])] = tv
    (ty * ty).sum().backward()
    assert_close(y.detach().numpy(), ty.detach().numpy(), what="values")
    assert_close(x.grad.numpy(), tx.grad.numpy(), what="d/dx")
    assert_close(v.grad.numpy(), tv.grad.numpy(), what="d/dv")


def test_expanded_and_overlapping_writes_are_refused(device):
    base = tn.ones(1, 3, device=device)
    e = base.expand(2, 3)
    for write in (lambda: e.add_(1.0), lambda: e.fill_(2.0), lambda: e.__setitem__(0, 5.0)):
        with pytest.raises(tn.TritonnnError, match="share one memory location"):
            write()
    a = tn.arange(4, device=device).float()
    with pytest.raises(tn.TritonnnError, match="overlapping views"):
        a[1:] += a[:-1]
    assert a.tolist() == [0.0, 1.0, 2.0, 3.0]
    a += a                                           # the very same memory is fine
    assert a.tolist() == [0.0, 2.0, 4.0, 6.0]
