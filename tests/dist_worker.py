"""One rank of the data-parallel tests (tests/test_distributed.py launches it, with torchrun or
by hand): ``python tests/dist_worker.py OUT DEVICE PHASE [PHASE ...]``.

Each phase writes what it saw to ``OUT/<phase>-<rank>.json`` (and ``.npz`` for arrays); the
test compares the ranks with each other and with one process training on the global batch.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

import tritonnn as tn
import tritonnn.nn.functional as F

N_SAMPLES, FEATURES, CLASSES, PER_RANK = 64, 8, 3, 8


def data():
    g = np.random.default_rng(1234)
    x = g.standard_normal((N_SAMPLES, FEATURES)).astype(np.float32)
    y = g.integers(0, CLASSES, N_SAMPLES).astype(np.int64)
    return x, y


def build(width=16):
    return tn.nn.Sequential(tn.nn.Linear(FEATURES, width), tn.nn.ReLU(),
                            tn.nn.Linear(width, 16), tn.nn.ReLU(),
                            tn.nn.Linear(16, CLASSES))


def arrays(model):
    return {n: p.detach().cpu().numpy() for n, p in model.state_dict().items()}


def write(out, name, rank, doc, arrs=None):
    with open(os.path.join(out, f"{name}-{rank}.json"), "w") as f:
        json.dump(doc, f)
    if arrs is not None:
        np.savez(os.path.join(out, f"{name}-{rank}.npz"), **arrs)


def phase_train(out, dev, r, w, optimizer="sgd", steps_per_epoch=None, epochs=2):
    """DDP over a DistributedSampler-driven loader; weights start different on every rank
    (DDP broadcasts rank 0's)."""
    x, y = data()
    tn.manual_seed(100 + r)
    model = build().to(dev)
    ddp = tn.nn.parallel.DistributedDataParallel(model, bucket_cap_mb=0.0002)
    initial = arrays(model)
    if optimizer == "sgd":
        opt = tn.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    else:
        opt = tn.optim.AdamW(ddp.parameters(), lr=1e-2, weight_decay=1e-2)
    ds = tn.data.TensorDataset(tn.tensor(x, device=dev), tn.tensor(y, device=dev))
    sampler = tn.data.DistributedSampler(ds, shuffle=True, seed=7)
    loader = tn.data.DataLoader(ds, batch_size=PER_RANK, sampler=sampler)
    batches, losses, early = [], [], []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        batches.append([int(i) for i in sampler])
        for xb, yb in loader:
            loss = F.cross_entropy(ddp(xb), yb)
            opt.zero_grad()
            loss.backward()
            early.append(ddp.overlapped)
            opt.step()
            losses.append(float(loss.item()))
    write(out, f"train_{optimizer}", r, {"batches": batches, "losses": losses,
                                         "overlapped": early, "buckets": len(ddp._buckets)},
          {**{"init." + k: v for k, v in initial.items()},
           **{"final." + k: v for k, v in arrays(model).items()}})


def phase_nosync(out, dev, r, w):
    """Two micro-batches per rank, the first under no_sync: the gradients equal one process's
    on the global batch of all four."""
    x, y = data()
    tn.manual_seed(5)
    model = build().to(dev)
    ddp = tn.nn.parallel.DistributedDataParallel(model)
    rows = [np.arange(16 * k + 4 * r, 16 * k + 4 * r + 4) for k in range(2)]
    with ddp.no_sync():
        (F.cross_entropy(ddp(tn.tensor(x[rows[0]], device=dev)),
                         tn.tensor(y[rows[0]], device=dev)) / 2).backward()
    local = {n: p.grad.cpu().numpy().copy() for n, p in model.named_parameters()}
    (F.cross_entropy(ddp(tn.tensor(x[rows[1]], device=dev)),
                     tn.tensor(y[rows[1]], device=dev)) / 2).backward()
    write(out, "nosync", r, {"rows": [list(map(int, a)) for a in rows]},
          {**{"init." + k: v for k, v in arrays(model).items()},
           **{"local." + k: v for k, v in local.items()},
           **{"grad." + n: p.grad.cpu().numpy() for n, p in model.named_parameters()}})


class TwoHeads(tn.nn.Module):
    """Rank 0 uses head ``a`` only, rank 1 head ``b`` only: each head's gradient is missing on
    one rank."""

    def __init__(self):
        super().__init__()
        self.body = tn.nn.Linear(FEATURES, 16)
        self.a = tn.nn.Linear(16, CLASSES)
        self.b = tn.nn.Linear(16, CLASSES)

    def forward(self, x, head):
        return (self.a if head == "a" else self.b)(self.body(x).relu())


def phase_unused(out, dev, r, w):
    """Parameters one rank does not use count as zeros there; every parameter ends with the
    average; and the wrapper's state dict is PyTorch DDP's (``module.`` keys), loadable with
    or without the prefix."""
    x, y = data()
    tn.manual_seed(3)
    model = TwoHeads().to(dev)
    ddp = tn.nn.parallel.DistributedDataParallel(model)
    rows = np.arange(4 * r, 4 * r + 4)
    F.cross_entropy(ddp(tn.tensor(x[rows], device=dev), "a" if r == 0 else "b"),
                    tn.tensor(y[rows], device=dev)).backward()
    keys = list(ddp.state_dict())
    before = arrays(model)
    ddp.load_state_dict(model.state_dict())           # without the prefix
    ddp.load_state_dict(ddp.state_dict())             # with it
    same = all(np.array_equal(before[k], v) for k, v in arrays(model).items())
    write(out, "unused", r, {"keys": keys, "model_keys": list(model.state_dict()),
                             "reloaded_same": same},
          {**{"init." + k: v for k, v in before.items()},
           **{"grad." + n: p.grad.cpu().numpy() for n, p in model.named_parameters()}})


def phase_mismatch(out, dev, r, w):
    model = build(width=16 if r == 0 else 17).to(dev)
    try:
        tn.nn.parallel.DistributedDataParallel(model)
        doc = {"error": None}
    except tn.DistributedError as e:
        doc = {"error": str(e)}
    write(out, "mismatch", r, doc)


def phase_collectives(out, dev, r, w):
    d = tn.distributed
    doc = {}
    t = tn.tensor([1.0 + r, 10.0 * r], device=dev)
    d.all_reduce(t)
    doc["sum"] = t.tolist()
    t = tn.tensor([1.0 + r, 3.0], device=dev)
    d.all_reduce(t, op="mean")
    doc["mean"] = t.tolist()
    t = tn.tensor([1.0 + r, -float(r)], device=dev)
    d.all_reduce(t, op="max")
    doc["max"] = t.tolist()
    b = tn.tensor([1.5 + r, 2.0], device=dev).to(tn.bfloat16)
    d.all_reduce(b)
    doc["bf16"] = b.float().tolist()
    m = tn.tensor(np.arange(12, dtype=np.float32).reshape(3, 4) * (r + 1), device=dev)
    view = m[:, 1::2]                     # not contiguous: reduced through a copy
    d.all_reduce(view)
    doc["strided"] = m.tolist()
    s = tn.tensor([float(r), float(r)], device=dev)
    d.broadcast(s, src=1)
    doc["broadcast"] = s.tolist()
    a = tn.tensor([2.0 * r + 1], device=dev)
    h = d.all_reduce(a, async_op=True)
    h.wait()
    doc["async"] = a.tolist()
    try:
        d.all_reduce(tn.tensor([1, 2], device=dev), op="mean")
    except tn.DTypeError as e:
        doc["int_mean"] = str(e)
    try:
        d.broadcast(s, src=w)
    except tn.TritonnnError as e:
        doc["bad_src"] = str(e)
    d.barrier()
    write(out, "collectives", r, doc)


def phase_fail(out, dev, r, w, how):
    """Rank 1 fails at its 4th step (``how``: raise, kill itself, or hang for longer than the
    job's timeout); the others go on."""
    import signal
    x, y = data()
    tn.manual_seed(0)
    step = -1
    try:
        model = build().to(dev)
        ddp = tn.nn.parallel.DistributedDataParallel(model)
        opt = tn.optim.SGD(ddp.parameters(), lr=0.1)
        for step in range(10_000):
            if r == 1 and step == 3:
                if how == "raise":
                    raise ValueError("boom in rank 1's data at step 3")
                if how == "hang":
                    import time
                    time.sleep(7)           # alive, but silent for longer than the timeout
                    sys.exit(0)
                os.kill(os.getpid(), signal.SIGKILL)
            xb = tn.tensor(x[:PER_RANK], device=dev)
            yb = tn.tensor(y[:PER_RANK], device=dev)
            loss = F.cross_entropy(ddp(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    except tn.DistributedError as e:
        write(out, f"fail_{how}", r, {"error": str(e), "step": step})
        raise


def main():
    out, dev, *phases = sys.argv[1:]
    tn.distributed.init()
    r, w = tn.distributed.rank(), tn.distributed.world_size()
    for phase in phases:
        if phase.startswith("fail_"):
            phase_fail(out, dev, r, w, phase[len("fail_"):])
        elif phase.startswith("train_"):
            phase_train(out, dev, r, w, optimizer=phase[len("train_"):])
        else:
            globals()["phase_" + phase](out, dev, r, w)
    tn.distributed.destroy()


if __name__ == "__main__":
    main()
