"""One training step of a 784-256-128-10 ReLU MLP at batch 128, float32, against PyTorch.

A step is: forward, cross-entropy, backward, SGD update with momentum 0.9 (gradients set
to None first, as both libraries' ``zero_grad`` does by default). Both start from the same
weights and see the same batch; their losses are compared over the first steps.
cpu target: >= 1.5x PyTorch CPU eager's speed (stretch 2x); cuda: reported beside torch.
TFLOP/s = 6*B*P_w / t, P_w the weight count (forward, dx and dw matmuls).

``python -m tritonnn.perf.bench_train_step --profile [--device cpu]`` times the step's
phases and prints cProfile's top functions: where tritonnn spends the step.
"""
from __future__ import annotations

import cProfile
import io
import pstats
import sys
import time

import numpy as np

import tritonnn as tn
import tritonnn.nn.functional as F

from . import common as C

FAMILY = "train_step"
CPU_TARGET = C.Target(">=", 1.5, stretch=2.0)     # t(torch) / t(tritonnn)
LAYERS = (784, 256, 128, 10)
BATCH = 128
LR, MOMENTUM = 0.01, 0.9


def _dims(tiny):
    return ((100, 32, 16, 10), 16) if tiny else (LAYERS, BATCH)


def build(device, dims, batch, seed=0):
    """The tritonnn model, its SGD, a torch twin with the same weights, and one batch."""
    import torch

    tn.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(tn.nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(tn.nn.ReLU())
    model = tn.nn.Sequential(*layers).to(device)
    opt = tn.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    tdev = "cuda" if (device == "cuda" and not C.interpreting()) else "cpu"
    tlayers = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        tlayers.append(torch.nn.Linear(a, b))
        if i < len(dims) - 2:
            tlayers.append(torch.nn.ReLU())
    tmodel = torch.nn.Sequential(*tlayers).to(tdev)
    with torch.no_grad():
        for (name, p), (tname, tp) in zip(model.named_parameters(), tmodel.named_parameters()):
            assert name == tname, (name, tname)
            tp.copy_(torch.from_numpy(p.detach().to("cpu").numpy()))
    topt = torch.optim.SGD(tmodel.parameters(), lr=LR, momentum=MOMENTUM)
    rng = np.random.default_rng(seed)
    x = rng.random((batch, dims[0]), dtype=np.float32)
    y = rng.integers(0, dims[-1], size=batch)
    tx, ty = C.to_tn(x, device), C.to_tn(y, device)
    px, py = C.to_torch(x, tdev), C.to_torch(y, tdev)
    return (model, opt, tx, ty), (tmodel, topt, px, py)


def step_fns(tn_parts, torch_parts):
    import torch

    model, opt, tx, ty = tn_parts
    tmodel, topt, px, py = torch_parts

    def f_tn():
        loss = F.cross_entropy(model(tx), ty)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    def f_torch():
        loss = torch.nn.functional.cross_entropy(tmodel(px), py)
        topt.zero_grad(set_to_none=True)
        loss.backward()
        topt.step()
        return loss
    return f_tn, f_torch


def run(device="auto", quick=False, out=None):
    sw = C.Sweep(FAMILY, device, quick)
    dims, batch = _dims(sw.tiny)
    # same start, same batch: the losses of the first steps must agree
    f_tn, f_torch = step_fns(*build(sw.device, dims, batch))
    checks = [C.close_rel(C.host(f_tn()), C.host(f_torch()), 1e-4) for _ in range(3)]
    ok, note = C.all_close(checks[-1:])
    ok = ok and all(c[0] for c in checks)
    timings = sw.time({"torch": f_torch, "tritonnn": f_tn}, budget_s=None if sw.tiny else 3.0)
    n_weights = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    work = C.Work(6.0 * batch * n_weights, "TFLOP/s", "6*B*weights/t")
    sw.compare("sgd momentum step", (batch,) + tuple(dims), "float32", timings, "torch", work,
               CPU_TARGET if sw.device == "cpu" else None, speedup=True, wrong=not ok,
               notes={"tritonnn": "loss after 3 steps " + note})
    return C.finish(sw, out)


# ==============================================================================================
# profile: where the tritonnn step spends its time
# ==============================================================================================


def profile(device="cpu", steps=300, top=25):
    device = C.resolve_device(device)
    (model, opt, tx, ty), _ = build(device, LAYERS, BATCH)
    gpu = device == "cuda" and not C.interpreting()

    def sync():
        if gpu:
            from tritonnn.kernels import buffers
            buffers.synchronize()
    phases = {"forward (model)": [], "cross_entropy": [], "zero_grad": [], "backward": [],
              "optimizer step": [], "whole step": []}

    def timed(name, fn):
        t0 = time.perf_counter()
        r = fn()
        sync()
        phases[name].append(time.perf_counter() - t0)
        return r

    for i in range(steps + 20):
        t0 = time.perf_counter()
        logits = timed("forward (model)", lambda: model(tx))
        loss = timed("cross_entropy", lambda: F.cross_entropy(logits, ty))
        timed("zero_grad", opt.zero_grad)
        timed("backward", loss.backward)
        timed("optimizer step", opt.step)
        phases["whole step"].append(time.perf_counter() - t0)
        del logits, loss
        if i == 19:         # drop the warm-up steps
            for v in phases.values():
                v.clear()
    whole = np.median(phases["whole step"])
    print(f"tritonnn train step on {device}, {'-'.join(map(str, LAYERS))} MLP, batch {BATCH} "
          f"({C.thread_settings()}), median of {steps} steps:")
    for name, v in phases.items():
        med = np.median(v)
        print(f"  {name:<16} {med * 1e6:9.1f} us  {100 * med / whole:5.1f}%")

    f_tn, _ = step_fns((model, opt, tx, ty), (None, None, None, None))
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(steps):
        f_tn()
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(top)
    print(s.getvalue())
    return phases


if __name__ == "__main__":
    if "--profile" in sys.argv:
        argv = [a for a in sys.argv[1:] if a != "--profile"]
        args = C.parse_args(argv)
        profile(args.device)
        sys.exit(0)
    sys.exit(C.script_main(run, __doc__))
