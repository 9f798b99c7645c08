"""A training step on "cuda" that never waits for the device (issue 12).

Counted under the interpreter as on a GPU (``tn.cuda.stats()``): an MLP step launches 3
forward GEMMs (bias and ReLU fused), 1 cross-entropy forward (targets checked, rows, mean),
1 cross-entropy backward (the upstream 1 folded in) and 5 backward GEMMs, and reads nothing
back; a DataLoader over "cuda" tensors adds one gather per tensor and no upload or read.
Values only the device sees (class targets, index tensors) are checked in the kernels that
read them and raised at the next synchronization, as the error the op raises on "cpu";
``tn.cuda.set_sync_checks(True)`` or ``TRITONNN_SYNC_CHECKS=1`` raise at the op.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import tritonnn as tn
import tritonnn.nn.functional as F
from checks import assert_close
from conftest import skip_without_cuda


@pytest.fixture(autouse=True)
def _cuda():
    skip_without_cuda()


# issue 12's MLP is 784-256-128-10 at batch 128; the launch and sync counts do not depend on
# the sizes, so a smaller one (the batch and every width but the 10 classes past one of the
# interpreter's 64-wide tiles) counts them in a fraction of the interpreter's time
IN, HIDDEN, BATCH = 100, (80, 70), 72


def _mlp(device):
    tn.manual_seed(0)
    return tn.nn.Sequential(tn.nn.Linear(IN, HIDDEN[0]), tn.nn.ReLU(),
                            tn.nn.Linear(HIDDEN[0], HIDDEN[1]), tn.nn.ReLU(),
                            tn.nn.Linear(HIDDEN[1], 10)).to(device)


def _batch(device, n=BATCH, seed=1):
    rng = np.random.default_rng(seed)
    x = tn.tensor(rng.standard_normal((n, IN)).astype(np.float32), device=device)
    y = tn.tensor(rng.integers(0, 10, n), device=device)
    return x, y


def _torch_step(model, x, y):
    """The same forward and backward in torch (float32, cpu): loss and parameter grads."""
    params = [torch.tensor(p.detach().numpy(), requires_grad=True) for p in model.parameters()]
    h = torch.tensor(x.numpy())
    for k in range(0, 6, 2):
        h = torch.nn.functional.linear(h, params[k], params[k + 1])
        if k < 4:
            h = torch.relu(h)
    loss = torch.nn.functional.cross_entropy(h, torch.tensor(y.numpy()))
    loss.backward()
    return loss.item(), [p.grad.numpy() for p in params]


# ----------------------------------------------------------------------------------------------
# the step's cost
# ----------------------------------------------------------------------------------------------


def test_mlp_forward_backward_is_ten_launches_and_no_sync():
    model = _mlp("cuda")
    x, y = _batch("cuda")
    for step in range(3):                   # the first step also allocates the error record
        for p in model.parameters():
            p.grad = None
        tn.cuda.reset_stats()
        loss = F.cross_entropy(model(x), y)
        forward = tn.cuda.stats()
        loss.backward()
        s = tn.cuda.stats()
        assert forward["launches"] == 4, forward        # 3 GEMMs (+bias, ReLU), 1 loss
        assert s["launches"] <= 10, s                   # + 1 loss gradient, 5 GEMMs
        assert s["host_syncs"] == 0, s
        if step:
            assert s["uploads"] == 0, s
    want_loss, want_grads = _torch_step(model, x, y)
    assert_close(loss.item(), want_loss, 1e-5, 1e-5, "loss")
    for p, g in zip(model.parameters(), want_grads):
        assert_close(p.grad.numpy(), g, 1e-5, 1e-4, "gradient")


@pytest.mark.parametrize("make_opt", [
    lambda ps: tn.optim.SGD(ps, lr=0.1, momentum=0.9),
    lambda ps: tn.optim.AdamW(ps, lr=1e-3)], ids=["sgd", "adamw"])
def test_a_training_step_reads_nothing_back(make_opt):
    model = _mlp("cuda")
    opt = make_opt(model.parameters())
    x, y = _batch("cuda")
    for _ in range(3):
        tn.cuda.reset_stats()
        opt.backward_step(F.cross_entropy(model(x), y))
        assert tn.cuda.stats()["host_syncs"] == 0


@pytest.mark.parametrize("make_opt", [
    lambda ps: tn.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-4),
    lambda ps: tn.optim.AdamW(ps, lr=1e-3)], ids=["sgd", "adamw"])
def test_a_whole_step_is_eleven_launches(make_opt):
    """Issue 12's budget for the MLP step: 3 forward GEMMs (bias, ReLU fused), 1 cross-entropy
    forward (targets checked, mean reduced), 1 cross-entropy backward (no seed fill), 5
    backward GEMMs and 1 optimizer launch over every parameter; no host sync; a schedule that
    moves the learning rate changes neither."""
    model = _mlp("cuda")
    opt = make_opt(model.parameters())
    sched = tn.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    x, y = _batch("cuda")
    for _ in range(2):
        tn.cuda.reset_stats()
        opt.backward_step(F.cross_entropy(model(x), y))
        sched.step()
        s = tn.cuda.stats()
        assert s["launches"] == 11 and s["host_syncs"] == 0, s


def test_a_dataloader_driven_step_reads_nothing_back():
    model = _mlp("cuda")
    opt = tn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = _batch("cuda", n=2 * BATCH + 20)
    loader = tn.data.DataLoader(tn.data.TensorDataset(x, y), batch_size=BATCH, shuffle=True,
                                seed=5)
    want = []
    for epoch in range(2):
        batches = iter(loader)
        got = []
        while True:
            tn.cuda.reset_stats()
            try:
                xb, yb = next(batches)
            except StopIteration:
                break
            fetched = tn.cuda.stats()
            opt.backward_step(F.cross_entropy(model(xb), yb))
            s = tn.cuda.stats()
            assert s["host_syncs"] == 0 and s["launches"] - fetched["launches"] == 11, s
            # the epoch's order goes up once, with the first batch; then one gather a tensor
            assert fetched["uploads"] == (1 if not got else 0), fetched
            assert fetched["launches"] == 2, fetched
            got.append(yb)
        assert len(got) == 3 and got[-1].shape == (20,)
        # the batches are the rows of the loader's order, as on "cpu"
        order = loader.state_dict()["order"]
        assert order is None                    # (the epoch is over)
        want.append(np.concatenate([b.numpy() for b in got]))
    assert not np.array_equal(want[0], want[1])             # a new order every epoch
    for w in want:
        assert sorted(w.tolist()) == sorted(y.numpy().tolist())


def test_dataloader_batches_are_the_same_on_both_devices():
    x, y = _batch("cpu", n=50)
    rows = []
    for device in ("cpu", "cuda"):
        loader = tn.data.DataLoader(tn.data.TensorDataset(x.to(device), y.to(device)),
                                    batch_size=16, shuffle=True, seed=11)
        rows.append([(xb.numpy(), yb.numpy()) for xb, yb in loader])
    for (xc, yc), (xg, yg) in zip(*rows):
        np.testing.assert_array_equal(xc, xg)
        np.testing.assert_array_equal(yc, yg)


def test_implicit_ones_seed_only_where_a_rule_folds_it():
    # a cross-entropy root takes the 1 as is; any other root gets a buffer of ones, as before
    logits = tn.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]], device="cuda", requires_grad=True)
    y = tn.tensor([2, 0], device="cuda")
    tn.cuda.reset_stats()
    F.cross_entropy(logits, y).backward()
    assert tn.cuda.stats()["launches"] == 2             # forward and backward, no fill
    direct = logits.grad.numpy()
    logits.grad = None
    (F.cross_entropy(logits, y) * 1.0).backward()
    np.testing.assert_allclose(logits.grad.numpy(), direct, rtol=1e-6)
    # a root whose gradient is wanted itself, and a leaf root, get a real buffer
    loss = F.cross_entropy(logits, y)
    (g_loss,) = tn.grad(loss, [loss])
    assert g_loss.item() == 1.0
    leaf = tn.tensor(3.0, device="cuda", requires_grad=True)
    leaf.backward()
    assert leaf.grad.item() == 1.0
    # the linear cross-entropy takes it too: its forward's gradients are handed out as they are
    h = tn.tensor(np.random.default_rng(3).standard_normal((5, 4)).astype(np.float32),
                  device="cuda", requires_grad=True)
    w = tn.tensor(np.random.default_rng(4).standard_normal((6, 4)).astype(np.float32),
                  device="cuda", requires_grad=True)
    t = tn.tensor([0, 5, 2, 2, 1], device="cuda")
    F.linear_cross_entropy(h, w, t).backward()
    th, tw = (torch.tensor(a.detach().numpy(), requires_grad=True) for a in (h, w))
    torch.nn.functional.cross_entropy(th @ tw.T, torch.tensor(t.numpy())).backward()
    assert_close(h.grad.numpy(), th.grad.numpy(), 1e-6, 1e-5, "dh")
    assert_close(w.grad.numpy(), tw.grad.numpy(), 1e-6, 1e-5, "dw")


# ----------------------------------------------------------------------------------------------
# errors only the device sees: raised at the next synchronization
# ----------------------------------------------------------------------------------------------

TARGET_MESSAGE = r"cross_entropy: target 12 is out of range for 10 classes"


def test_bad_target_raises_at_the_next_item_with_the_op_and_value():
    model = _mlp("cuda")
    x, _ = _batch("cuda", n=6)
    y = tn.tensor([1, 12, 3, 0, 9, 2], device="cuda")
    tn.cuda.reset_stats()
    loss = F.cross_entropy(model(x), y)
    loss.backward()                             # the step runs on: nothing waits for the device
    assert tn.cuda.stats()["host_syncs"] == 0
    with pytest.raises(tn.IndexOutOfRange, match=TARGET_MESSAGE):
        loss.item()
    assert np.isnan(loss.item())                # reported once; the loss of a bad row is NaN
    # "cpu" raises at the op, with the same message
    with pytest.raises(tn.IndexOutOfRange, match=TARGET_MESSAGE):
        F.cross_entropy(_mlp("cpu")(x.cpu()), y.cpu())


@pytest.mark.parametrize("read", ["synchronize", "numpy", "tolist", "print", "to_cpu"])
def test_every_host_read_raises_it(read, capsys):
    t = tn.arange(10, dtype=tn.float32, device="cuda")
    bad = t[tn.tensor([1, -11, 4], device="cuda")]
    other = t * 2.0                             # any later read raises, not just of ``bad``
    reads = {"synchronize": tn.cuda.synchronize, "numpy": other.numpy, "tolist": other.tolist,
             "print": lambda: print(other), "to_cpu": lambda: other.to("cpu")}
    with pytest.raises(tn.IndexOutOfRange,
                       match=r"index: index -11 is out of bounds for dimension 0 with size 10"):
        reads[read]()
    assert bad.tolist() == [1.0, 0.0, 4.0]      # the bad index read nothing


def test_the_first_bad_launch_is_reported_with_its_extremes():
    # two ops go wrong before the sync: the first one's error, naming its lowest bad value below
    # the range (else its highest above); the second is not reported
    logits = tn.zeros(4, 3, device="cuda")
    F.cross_entropy(logits, tn.tensor([7, 5, -100, 9], device="cuda"))
    F.cross_entropy(logits, tn.tensor([-4, 0, 1, 2], device="cuda"))
    with pytest.raises(tn.IndexOutOfRange, match=r"target 9 is out of range for 3 classes"):
        tn.cuda.synchronize()
    F.cross_entropy(logits, tn.tensor([7, -5, -8, 9], device="cuda"))
    with pytest.raises(tn.IndexOutOfRange, match=r"target -8 is out"):
        tn.cuda.synchronize()
    tn.cuda.synchronize()                       # nothing left
    # the same bad values on "cpu": the same value named
    with pytest.raises(tn.IndexOutOfRange, match=r"target -8 is out"):
        F.cross_entropy(logits.cpu(), tn.tensor([7, -5, -8, 9]))


def test_a_multi_program_loss_reports_and_stays_in_bounds():
    # a long vocabulary: one row a program, the total by the last program to finish
    n, c = 5, 70_000
    logits = tn.tensor(np.random.default_rng(2).standard_normal((n, c)).astype(np.float32),
                       device="cuda")
    good = tn.tensor([0, c - 1, 5, -100, 17], device="cuda")
    want = torch.nn.functional.cross_entropy(torch.tensor(logits.numpy()),
                                             torch.tensor(good.numpy()))
    for _ in range(2):                          # the ticket counter is back at 0 after a launch
        assert_close(F.cross_entropy(logits, good).item(), want.item(), 1e-5, 1e-5, "mean")
    F.cross_entropy(logits, tn.tensor([0, c, 5, -100, c + 3], device="cuda"))
    with pytest.raises(tn.IndexOutOfRange, match=rf"target {c + 3} is out of range"):
        tn.cuda.synchronize()
    assert_close(F.cross_entropy(logits, good).item(), want.item(), 1e-5, 1e-5, "mean after")


def test_sync_checks_raise_at_the_op():
    logits = tn.zeros(2, 10, device="cuda")
    bad = tn.tensor([3, 12], device="cuda")
    assert not tn.cuda.sync_checks()
    tn.cuda.set_sync_checks(True)
    try:
        assert tn.cuda.sync_checks()
        with pytest.raises(tn.IndexOutOfRange, match=r"cross_entropy: target 12 is out"):
            F.cross_entropy(logits, bad)
        with pytest.raises(tn.IndexOutOfRange, match=r"embedding: index 12 is out of range"):
            F.embedding(bad, tn.ones(5, 2, device="cuda"))
        with pytest.raises(tn.IndexOutOfRange, match=r"index: index 12 is out of bounds"):
            logits[0, bad]
        tn.cuda.synchronize()                   # nothing left over
    finally:
        tn.cuda.set_sync_checks(False)
    with pytest.raises(tn.DTypeError, match=r"set_sync_checks: expected True or False"):
        tn.cuda.set_sync_checks(1)


def test_sync_checks_from_the_environment():
    code = ("import tritonnn as tn, tritonnn.nn.functional as F\n"
            "assert tn.cuda.sync_checks()\n"
            "try:\n"
            "    F.cross_entropy(tn.zeros(2, 3, device='cuda'), tn.tensor([0, 3], device='cuda'))\n"
            "except tn.IndexOutOfRange as e:\n"
            "    print('raised at the op:', e)\n")
    env = dict(os.environ, TRITONNN_SYNC_CHECKS="1")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "raised at the op: cross_entropy: target 3 is out of range for 3 classes" in r.stdout


def test_index_writes_and_gathers_never_leave_the_tensor():
    x = tn.zeros(3, 4, device="cuda")
    x[tn.tensor([0, 3, -4, 2], device="cuda")] = 1.0
    with pytest.raises(tn.IndexOutOfRange, match=r"index -4 is out of bounds for dimension 0"):
        x.numpy()
    np.testing.assert_array_equal(x.numpy(), [[1] * 4, [0] * 4, [1] * 4])
    # an empty dim: every index is out of range, nothing is read
    e = tn.zeros(0, 2, device="cuda")
    e[tn.tensor([1], device="cuda")]
    with pytest.raises(tn.IndexOutOfRange, match=r"index 1 is out of bounds .* size 0"):
        tn.cuda.synchronize()
    # one_hot and embedding check in their kernels too
    F.one_hot(tn.tensor([[0, 1], [4, 2]], device="cuda"), 3)
    with pytest.raises(tn.IndexOutOfRange, match=r"one_hot: class value 4 is out of range"):
        tn.cuda.synchronize()
