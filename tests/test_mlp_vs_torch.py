"""A 784-256-128-10 ReLU MLP at batch 128 on "cpu", step for step against torch.

The same weights go into both models; logits, loss and every gradient must
agree, then three SGD (momentum, weight decay) or AdamW steps must leave the
same parameters after each step.
"""
import numpy as np
import pytest
import torch

import tritonnn as tn
import tritonnn.nn.functional as F
from checks import assert_close

SIZES = (784, 256, 128, 10)
BATCH = 128


def build(seed=0):
    tn.manual_seed(seed)
    ours = tn.nn.Sequential(tn.nn.Linear(784, 256), tn.nn.ReLU(), tn.nn.Linear(256, 128),
                            tn.nn.ReLU(), tn.nn.Linear(128, 10))
    ref = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(),
                              torch.nn.Linear(256, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    with torch.no_grad():
        for (n, p), (tn_name, q) in zip(ref.named_parameters(), ours.named_parameters()):
            assert n == tn_name
            p.copy_(torch.from_numpy(q.detach().numpy().copy()))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((BATCH, 784)).astype(np.float32)
    y = rng.integers(0, 10, BATCH)
    return ours, ref, x, y


def compare_params(ours, ref, atol, rtol, what):
    for (n, q), p in zip(ours.named_parameters(), ref.parameters()):
        assert_close(q.detach().numpy(), p.detach().numpy(), atol, rtol, f"{what}: {n}")


def test_forward_loss_and_gradients_match():
    ours, ref, x, y = build(0)
    logits = ours(tn.tensor(x))
    loss = F.cross_entropy(logits, tn.tensor(y))
    t_logits = ref(torch.from_numpy(x))
    t_loss = torch.nn.functional.cross_entropy(t_logits, torch.from_numpy(y))
    assert logits.shape == (BATCH, 10) and logits.dtype is tn.float32
    assert_close(logits.detach().numpy(), t_logits.detach().numpy(), 1e-5, 1e-5, "logits")
    assert_close(loss.item(), t_loss.item(), 1e-6, 1e-6, "loss")
    grads = loss.backward()
    t_loss.backward()
    for (n, q), p in zip(ours.named_parameters(), ref.parameters()):
        assert grads[q] is not None and q.grad is not None
        assert_close(q.grad.numpy(), p.grad.numpy(), 1e-6, 1e-4, f"grad {n}")
        assert_close(grads[q].numpy(), p.grad.numpy(), 1e-6, 1e-4, f"Gradients[{n}]")
        assert np.abs(p.grad.numpy()).max() > 0          # a real gradient, not all zeros


@pytest.mark.parametrize("opt_name", ["sgd", "adamw"])
def test_three_optimizer_steps_match(opt_name):
    ours, ref, x, y = build(1)
    if opt_name == "sgd":
        opt = tn.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        t_opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    else:
        opt = tn.optim.AdamW(ours.parameters(), weight_decay=0.01)
        t_opt = torch.optim.AdamW(ref.parameters(), weight_decay=0.01)
    xt, yt = tn.tensor(x), tn.tensor(y)
    t_x, t_y = torch.from_numpy(x), torch.from_numpy(y)
    losses = []
    for step in range(3):
        loss = F.cross_entropy(ours(xt), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        t_loss = torch.nn.functional.cross_entropy(ref(t_x), t_y)
        t_opt.zero_grad()
        t_loss.backward()
        t_opt.step()
        assert_close(loss.item(), t_loss.item(), 1e-5, 1e-5, f"loss before step {step}")
        # AdamW moves each weight by about lr = 1e-3 a step: 2e-5 is 2% of one step
        compare_params(ours, ref, 2e-5, 1e-4, f"{opt_name} after step {step}")
        losses.append(loss.item())
    assert losses[-1] < losses[0]
