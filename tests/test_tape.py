"""The autograd tape on "cpu": accumulation, tn.grad, no_grad, freeing, deep graphs, memory, CE in place."""
import gc
import tracemalloc

import numpy as np
import pytest
import torch

import tritonnn as tn
import tritonnn.nn.functional as F
from checks import assert_close


def test_tensor_used_twice_sums_gradients():
    x = tn.tensor([2.0, -3.0], requires_grad=True)
    y = x * x + x * 3.0              # dy/dx = 2x + 3
    y.sum().backward()
    assert_close(x.grad.numpy(), [7.0, -3.0])
    z = tn.tensor([1.5], requires_grad=True)
    a = z.exp()
    (a * a + a).sum().backward()     # d/dz (e^2z + e^z) = 2e^2z + e^z
    assert_close(z.grad.numpy(), [2 * np.exp(3.0) + np.exp(1.5)])


def test_diamond_graph():
    x = tn.tensor([[0.5, -1.0], [2.0, 0.25]], dtype=tn.float64, requires_grad=True)
    t = torch.tensor(x.detach().numpy(), requires_grad=True)
    for lib, v in ((tn, x), (torch, t)):
        a = v.exp()
        b = a * v
        c = (a + b).sigmoid() * a
        c.sum().backward()
    assert_close(x.grad.numpy(), t.grad.numpy(), atol=1e-12)


def test_backward_returns_gradients_and_accumulates():
    w = tn.tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = tn.tensor(0.5, requires_grad=True)
    x = tn.tensor([4.0, 5.0, 6.0])
    loss = (w * x).sum() + b * 2.0
    g = loss.backward()
    assert isinstance(g, tn.Gradients)
    assert_close(g[w].numpy(), [4.0, 5.0, 6.0])
    assert_close(g[b].numpy(), 2.0)
    assert g.get(x) is None and x not in g and w in g and len(g) == 2
    assert {id(t) for t in g} == {id(w), id(b)}
    with pytest.raises(KeyError):
        g[x]
    assert_close(w.grad.numpy(), [4.0, 5.0, 6.0])
    assert x.grad is None
    loss2 = (w * x).sum() + b * 2.0
    g2 = loss2.backward()
    assert_close(w.grad.numpy(), [8.0, 10.0, 12.0])          # accumulated
    assert_close(b.grad.numpy(), 4.0)
    assert_close(g2[w].numpy(), [4.0, 5.0, 6.0])              # this walk's gradient only
    assert_close(g[w].numpy(), [4.0, 5.0, 6.0])               # the first mapping is untouched


def test_tn_grad_leaves_dot_grad_alone():
    w = tn.tensor([[1.0, -1.0], [0.5, 2.0]], requires_grad=True)
    b = tn.tensor([0.1, 0.2], requires_grad=True)
    x = tn.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    loss = F.linear(x, w, b).sum()
    gw, gb = tn.grad(loss, [w, b])
    assert isinstance(tn.grad((w * 2).sum(), [w]), tuple)
    assert_close(gw.numpy(), np.tile(x.numpy().sum(0), (2, 1)))
    assert_close(gb.numpy(), [3.0, 3.0])
    assert w.grad is None and b.grad is None


def test_tn_grad_wrt_intermediate():
    x = tn.tensor([1.0, 2.0, 3.0], dtype=tn.float64, requires_grad=True)
    h = x * 2.0
    h2 = h.exp()
    loss = (h2 * tn.tensor([1.0, -1.0, 0.5], dtype=tn.float64)).sum()
    gh, gx = tn.grad(loss, [h, x])
    expect_h = np.exp(2 * np.array([1.0, 2.0, 3.0])) * [1.0, -1.0, 0.5]
    assert_close(gh.numpy(), expect_h, atol=1e-12)
    assert_close(gx.numpy(), 2 * expect_h, atol=1e-12)
    assert x.grad is None


def test_tn_grad_unreached_input_is_none():
    x = tn.tensor([1.0], requires_grad=True)
    y = tn.tensor([2.0], requires_grad=True)
    (gx, gy) = tn.grad((x * 3).sum(), [x, y])
    assert_close(gx.numpy(), [3.0])
    assert gy is None
    with pytest.raises(tn.TritonnnError):
        tn.grad((x * 3).sum(), [tn.tensor([1.0])])


def test_no_grad_and_detach_record_nothing():
    w = tn.tensor([1.0, 2.0], requires_grad=True)
    with tn.no_grad():
        y = w * 3 + 1
        assert not tn.is_grad_enabled()
    assert tn.is_grad_enabled()
    assert not y.requires_grad and y.is_leaf
    with pytest.raises(tn.TritonnnError):
        y.sum().backward()
    d = w.detach()
    assert not d.requires_grad and d.is_leaf
    z = (d * 5).sum()
    assert not z.requires_grad
    np.testing.assert_array_equal(d.numpy(), [1.0, 2.0])

    @tn.no_grad()
    def f(t):
        return t * 2
    assert not f(w).requires_grad
    # a mix: only the path through w is recorded
    out = (w * 2 + d * 7).sum()
    out.backward()
    assert_close(w.grad.numpy(), [2.0, 2.0])


def test_backward_non_scalar():
    x = tn.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * x
    with pytest.raises(tn.ShapeError, match="gradient"):
        y.backward()
    y.backward(gradient=tn.tensor([1.0, 0.5, -1.0]))
    assert_close(x.grad.numpy(), [2.0, 2.0, -6.0])
    with pytest.raises(tn.ShapeError):
        (x * 2).backward(gradient=tn.tensor([1.0, 2.0]))
    one = tn.tensor([[2.0]], requires_grad=True)
    (one * 3).backward()                       # one element: implicit gradient is fine
    assert_close(one.grad.numpy(), [[3.0]])


def test_backward_twice_through_freed_graph():
    x = tn.tensor([1.0, 2.0], requires_grad=True)
    loss = (x.exp() * 2).sum()
    loss.backward()
    with pytest.raises(tn.TritonnnError, match="retain_graph"):
        loss.backward()
    with pytest.raises(tn.TritonnnError):
        tn.grad(loss, [x])
    # a new loss sharing the freed part of the graph also fails clearly
    h = x.exp()
    (h * 2).sum().backward()
    with pytest.raises(tn.TritonnnError):
        (h * 3).sum().backward()


def test_retain_graph_allows_second_walk():
    x = tn.tensor([1.0, 2.0], requires_grad=True)
    loss = (x.exp() * 2).sum()
    g1 = loss.backward(retain_graph=True)[x].numpy().copy()
    g2 = loss.backward()[x].numpy()
    assert_close(g1, 2 * np.exp([1.0, 2.0]))
    assert_close(g2, g1)
    assert_close(x.grad.numpy(), 2 * g1)
    y = (x * x).sum()
    (a,) = tn.grad(y, [x], retain_graph=True)
    (b,) = tn.grad(y, [x])
    assert_close(a.numpy(), b.numpy())


def test_retain_graph_through_cross_entropy():
    rng = np.random.default_rng(0)
    w = tn.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    x = tn.tensor(rng.standard_normal((5, 3)))
    y = tn.tensor([0, 3, 1, 2, 3])
    loss = F.cross_entropy(x @ w, y)
    g1 = loss.backward(retain_graph=True)[w].numpy().copy()
    g2 = loss.backward()[w].numpy()
    assert_close(g2, g1, atol=1e-12)
    t = torch.tensor(w.detach().numpy(), requires_grad=True)
    torch.nn.functional.cross_entropy(torch.tensor(x.numpy()) @ t, torch.tensor(y.numpy())).backward()
    assert_close(g1, t.grad.numpy(), atol=1e-12)


def test_backward_without_grad_raises():
    t = tn.tensor([1.0, 2.0])
    with pytest.raises(tn.TritonnnError, match="require"):
        t.sum().backward()
    with pytest.raises(tn.TritonnnError):
        tn.tensor(3.0).backward()


def test_leaf_backward():
    x = tn.tensor(3.0, requires_grad=True)
    g = x.backward()
    assert g[x].item() == 1.0 and x.grad.item() == 1.0


def test_deep_chain_no_recursion_error():
    x = tn.tensor([1.0], requires_grad=True)
    y = x
    for _ in range(100_000):
        y = -y
    g = y.sum().backward()
    assert g[x].item() == 1.0          # an even number of negations


def test_deep_chain_tn_grad_and_mixed():
    x = tn.tensor([0.5], dtype=tn.float64, requires_grad=True)
    y = x
    for _ in range(5_000):
        y = y * 1.0001 + 0.0
    (gx,) = tn.grad(y.sum(), [x])
    assert_close(gx.numpy(), [1.0001 ** 5_000], rtol=1e-9)


def test_memory_stays_flat_over_training():
    tn.manual_seed(0)
    model = tn.nn.Sequential(tn.nn.Linear(8, 16), tn.nn.ReLU(), tn.nn.Linear(16, 3))
    opt = tn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x = tn.randn(32, 8)
    y = tn.tensor(np.arange(32) % 3)

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.backward_step(loss)
        return loss

    gc.collect()
    tracemalloc.start()
    try:
        for _ in range(100):
            step()
        gc.collect()
        at_100 = tracemalloc.get_traced_memory()[0]
        for _ in range(900):
            last = step()
        gc.collect()
        at_1000 = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert at_1000 - at_100 < 32 * 1024, f"grew by {at_1000 - at_100} bytes over 900 steps"
    assert last.item() < 1.2                      # and it did train


# ----------------------------------------------------------------------------------------------
# the fused cross-entropy writes its gradient into the logits only when nobody else holds them
# ----------------------------------------------------------------------------------------------


def _setup(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    w = rng.standard_normal((5, 4)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    y = rng.integers(0, 5, 6)
    return x, w, b, y


def _torch_grads(x, w, b, y, extra):
    tw = torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    logits = torch.nn.functional.linear(torch.tensor(x), tw, tb)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(y)) + extra(logits)
    loss.backward()
    return loss.item(), logits.detach().numpy(), tw.grad.numpy(), tb.grad.numpy()


@pytest.mark.parametrize("name, extra", [
    ("alone", None),
    ("plus sum", lambda lg: lg.sum() * 0.5),
    ("plus square", lambda lg: (lg * lg).sum() * 0.1),
    ("plus exp", lambda lg: lg.exp().mean()),
    ("plus relu", lambda lg: lg.relu().sum() * 0.3),
    ("plus row", lambda lg: lg[1].sum()),
])
@pytest.mark.parametrize("keep_logits", [False, True])
def test_cross_entropy_inplace_is_safe(name, extra, keep_logits):
    x, w, b, y = _setup()
    ex = extra or (lambda lg: lg.sum() * 0.0)
    ref_loss, ref_logits, ref_gw, ref_gb = _torch_grads(x, w, b, y, ex)
    tw = tn.tensor(w, requires_grad=True)
    tb = tn.tensor(b, requires_grad=True)
    logits = F.linear(tn.tensor(x), tw, tb)
    if extra is None:
        loss = F.cross_entropy(logits, tn.tensor(y))
    else:
        loss = F.cross_entropy(logits, tn.tensor(y)) + extra(logits)
    if not keep_logits:
        del logits
    loss.backward()
    assert_close(loss.item(), ref_loss, what="loss")
    assert_close(tw.grad.numpy(), ref_gw, what="dW")
    assert_close(tb.grad.numpy(), ref_gb, what="db")
    if keep_logits:
        assert_close(logits.detach().numpy(), ref_logits, what="user's logits after backward")


def test_cross_entropy_on_leaf_logits_keeps_values():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((4, 3)).astype(np.float32)
    logits = tn.tensor(a, requires_grad=True)
    y = tn.tensor([0, 2, 1, 1])
    F.cross_entropy(logits, y).backward()
    np.testing.assert_array_equal(logits.detach().numpy(), a)
    t = torch.tensor(a, requires_grad=True)
    torch.nn.functional.cross_entropy(t, torch.tensor(y.numpy())).backward()
    assert_close(logits.grad.numpy(), t.grad.numpy())


def test_cross_entropy_logits_numpy_alias_kept():
    x, w, b, y = _setup(2)
    _, ref_logits, ref_gw, _ = _torch_grads(x, w, b, y, lambda lg: lg.sum() * 0.0)
    tw = tn.tensor(w, requires_grad=True)
    logits = F.linear(tn.tensor(x), tw, tn.tensor(b))
    view = logits.detach().numpy()             # the user holds the buffer through numpy
    loss = F.cross_entropy(logits, tn.tensor(y))
    del logits
    loss.backward()
    assert_close(view, ref_logits, what="numpy view of the logits")
    assert_close(tw.grad.numpy(), ref_gw, what="dW")


def test_cross_entropy_grad_wrt_logits_intermediate():
    x, w, b, y = _setup(3)
    tw = tn.tensor(w, requires_grad=True)
    logits = F.linear(tn.tensor(x), tw, tn.tensor(b))
    loss = F.cross_entropy(logits, tn.tensor(y), reduction="sum")
    (gl, gw) = tn.grad(loss, [logits, tw])
    t = torch.tensor(logits.detach().numpy(), requires_grad=True)
    torch.nn.functional.cross_entropy(t, torch.tensor(y), reduction="sum").backward()
    assert_close(gl.numpy(), t.grad.numpy(), what="dlogits")
    assert_close(gw.numpy(), t.grad.numpy().T @ x, what="dW")


# the walk decides whether the cross-entropy rule may write into the logits buffer

def _ce_inplace_decision(monkeypatch, scenario):
    """Run one backward through cross-entropy and return the ``inplace`` flag its rule got."""
    from tritonnn import fallback_cpu
    seen = []
    real = fallback_cpu.softmax_cross_entropy_bwd

    def spy(*args):
        seen.append(args[-1])
        return real(*args)
    monkeypatch.setattr(fallback_cpu, "softmax_cross_entropy_bwd", spy)
    x, w, b, y = _setup(4)
    tw = tn.tensor(w, requires_grad=True)
    y = tn.tensor(y)
    held = []
    if scenario == "leaf logits":
        logits = tn.tensor(x @ w.T, requires_grad=True)
        held.append(logits)
    else:
        logits = F.linear(tn.tensor(x), tw, tn.tensor(b))
    loss = F.cross_entropy(logits, y)
    if scenario == "user keeps the logits":
        held.append(logits)
    elif scenario == "user keeps a view":
        held.append(logits[1:])
    elif scenario == "another op saved them, walked later":
        loss = (logits * logits).sum() + loss
    elif scenario == "another op saved them, walked first":
        loss = loss + (logits * logits).sum()
    del logits
    loss.backward(retain_graph=scenario == "retain_graph")
    assert len(seen) == 1
    return seen[0]


@pytest.mark.parametrize("scenario, inplace", [
    ("temporary logits", True),
    ("user keeps the logits", False),
    ("user keeps a view", False),
    ("another op saved them, walked later", False),
    # the walk pops the last-pushed branch first: the product's rule has read (and freed) the
    # logits before cross-entropy runs, so that rule holds the last use
    ("another op saved them, walked first", True),
    ("retain_graph", False),
    ("leaf logits", False),
])
def test_the_walk_grants_the_cross_entropy_in_place_write(monkeypatch, scenario, inplace):
    assert _ce_inplace_decision(monkeypatch, scenario) is inplace


@pytest.mark.parametrize("other", ["cuda", "cpu"])
def test_gradients_summed_on_their_own_device_across_to(other):
    """Two paths through .to(device) meet again: their gradients are added on the input's device."""
    from conftest import skip_without_cuda
    skip_without_cuda()
    home = "cpu" if other == "cuda" else "cuda"
    a = np.array([0.5, -1.0, 2.0], np.float32)
    x = tn.tensor(a, device=home, requires_grad=True)
    (x.to(other) * x.to(other)).sum().backward()
    assert x.grad.device == tn.device(home)
    assert_close(x.grad.numpy(), 2 * a, what="d(x*x)/dx through two copies")
    w = tn.tensor(a, device=home, requires_grad=True)
    (gw,) = tn.grad((w.to(other) + w.to(other)).sum(), [w])
    assert gw.device == tn.device(home)
    assert_close(gw.numpy(), np.full(3, 2.0, np.float32), what="d(w+w)/dw through two copies")
