"""The host's cost of a GPU training step, measured without a GPU, against PyTorch eager's.

The step of ``bench_train_step`` (a 784-256-128-10 ReLU MLP at batch 128, float32:
forward, cross-entropy, backward, optimizer step, gradients set to None first), with
SGD-momentum and with AdamW, on device "cuda" through the no-op Triton driver
(``tritonnn.perf.noop_driver``): Triton's real launch path (binder, specialisation,
kernel cache, autotuner, compiled sm_90 binaries) and tritonnn's own work run as on a
GPU, and the launches do nothing. So a step's wall time here is what the host spends
per step on a GPU, where the device would need about 0.1 ms.

Beside it, in the same run and sampled alike: PyTorch eager's same step (same layers,
loss, optimizer) on tiny CPU tensors (batch 4, 8-8-8-4), where compute is negligible and
the time is PyTorch's own host cost per step (dispatch, autograd, optimizer); torch runs on
one thread (tiny tensors use no more).

Rows: host time per step for each (the thread's CPU time: median of many steps after
warm-up, p20/p80; wall time in the notes),
ratio t(tritonnn) / t(torch) (target <= 1, stretch <= 0.5); launches, allocations and
host syncs per step (from ``tn.cuda.stats()``); and the kernel binaries loaded after
warm-up, which must be 0 (a new one would mean a compile in steady state).

The driver must be installed before device "cuda" is first used, so when this process
already used it (the interpreter, the sweep), ``run`` runs the measurement in a fresh
Python process and reads its rows back.

    python -m tritonnn.perf.bench_host_overhead [--quick] [--out DIR] [--profile]

``--profile`` prints cProfile's top functions of the tritonnn SGD step instead.
Compiles go to ``TRITON_CACHE_DIR`` (default ~/.triton/cache); the first run compiles
every kernel of the step for sm_90 (``TRITONNN_AUTOTUNE=0``: one GEMM config per key).
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
import tempfile
from dataclasses import asdict

import gc
import time

import numpy as np

import tritonnn as tn
import tritonnn.nn.functional as F

from . import common as C
from . import noop_driver

FAMILY = "host_overhead"
KIND = "noop"                           # device kind of the rows: the no-op driver
TARGET = C.Target("<=", 1.0, stretch=0.5)   # t(tritonnn) / t(torch eager), host time per step
LAYERS = (784, 256, 128, 10)
BATCH = 128
TINY_LAYERS, TINY_BATCH = (8, 8, 8, 4), 4
OPTIMIZERS = ("sgd", "adamw")
_ROWS_FLAG = "--rows-json"


# ----------------------------------------------------------------------------------------------
# the steps
# ----------------------------------------------------------------------------------------------

def _mlp(nn, dims):
    """Linear layers of widths ``dims`` with ReLU between them, from ``nn`` (tn.nn or
    torch.nn: the two libraries' modules share these names)."""
    layers = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _tn_step(opt_name, dims=LAYERS, batch=BATCH, device="cuda"):
    tn.manual_seed(0)
    model = _mlp(tn.nn, dims).to(device)
    opt = _optimizer(tn.optim, opt_name, model.parameters())
    rng = np.random.default_rng(0)
    x = C.to_tn(rng.random((batch, dims[0]), dtype=np.float32), device)
    y = C.to_tn(rng.integers(0, dims[-1], size=batch), device)

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step, opt


def _torch_step(opt_name, dims=TINY_LAYERS, batch=TINY_BATCH):
    import torch

    # one thread: tiny tensors never use more, and idle OpenMP workers spinning between
    # calls would only steal the core from whichever library runs next
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = _mlp(torch.nn, dims)
    opt = _optimizer(torch.optim, opt_name, model.parameters())
    x = torch.rand(batch, dims[0])
    y = torch.randint(0, dims[-1], (batch,))

    def step():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def _optimizer(optim, name, params):
    if name == "sgd":
        return optim.SGD(params, lr=0.01, momentum=0.9)
    return optim.AdamW(params, lr=1e-3, weight_decay=0.01)


def _per_step(step, n):
    """``tn.cuda.stats()`` counts per step over ``n`` steps, and the binaries loaded meanwhile."""
    tn.cuda.reset_stats()
    binaries = noop_driver.STATS["binaries"]
    for _ in range(n):
        step()
    s = tn.cuda.stats()
    per = {k: s[k] / n for k in ("launches", "allocations", "host_syncs", "uploads")}
    return per, noop_driver.STATS["binaries"] - binaries


def _time_alternating(fns: dict, steps: int, clock=time.thread_time) -> dict:
    """Per-step times of each step function, the functions taking turns step by step (so
    load from other processes falls on all of them alike); their medians and p20/p80.

    ``clock`` is the thread's CPU time by default: the host's work per step, without the
    time the thread waited for a core on a loaded machine (which would inflate a longer
    step more than a shorter one); ``time.perf_counter`` gives wall time."""
    samples = {name: [] for name in fns}
    gc.collect()
    for _ in range(steps):
        for name, fn in fns.items():
            t0 = clock()
            fn()
            samples[name].append(clock() - t0)
    return {name: C._from_samples(s) for name, s in samples.items()}


# ----------------------------------------------------------------------------------------------
# the measurement (in a process with the no-op driver)
# ----------------------------------------------------------------------------------------------

def _measure(quick, out):
    noop_driver.install()
    sw = C.Sweep(FAMILY, "cuda", quick)
    sw.kind = sw.meta["device_kind"] = KIND
    warmup = 3 if quick else 20
    counted = 5 if quick else 50
    steps = 30 if quick else 1500
    for name in OPTIMIZERS:
        f_tn, _ = _tn_step(name)
        f_torch = _torch_step(name)
        for _ in range(warmup):         # compiles (or disk-cache loads), autotuning, first calls
            f_tn()
            f_torch()
        per, binaries = _per_step(f_tn, counted)
        fns = {"torch": f_torch, "tritonnn": f_tn}
        timings = _time_alternating(fns, steps)
        wall = _time_alternating(fns, max(10, steps // 5), clock=time.perf_counter)
        note = (f"per step: {per['launches']:g} launches, {per['allocations']:g} allocations, "
                f"{per['host_syncs']:g} host syncs, {per['uploads']:g} uploads")
        walls = {k: f"wall time median {t.median_us:.0f} us" for k, t in wall.items()}
        case = f"{name} step: host time"
        sw.compare(case, (BATCH,) + LAYERS, "float32", timings, "torch", None, TARGET,
                   speedup=False, notes={"tritonnn": f"CPU time; {walls['tritonnn']}; {note}",
                                         "torch": (
                       f"CPU time; {walls['torch']}; eager on CPU tensors of batch {TINY_BATCH}, "
                       f"{'-'.join(map(str, TINY_LAYERS))}: compute negligible")})
        sw.add(f"{name} step: launches per step", (BATCH,) + LAYERS, "float32", "tritonnn",
               throughput=per["launches"], throughput_unit="launches",
               throughput_formula="tn.cuda.stats()['launches'] / steps", note=note)
        sw.add(f"{name} step: binaries loaded after warm-up", (BATCH,) + LAYERS, "float32",
               "tritonnn", throughput=float(binaries), throughput_unit="compiles",
               throughput_formula=f"no-op driver load_binary calls over {counted} steps",
               wrong=binaries != 0,
               note="0 expected: a kernel specialised again in steady state" if binaries else "")
    return C.finish(sw, out)


def _in_child(quick, out):
    """Run ``_measure`` in a fresh process (no interpreter, driver installed first); its rows."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TRITONNN_INTERPRET", "TRITON_INTERPRET")}
    if quick:                   # a smoke run compiles one GEMM config per key
        env.setdefault("TRITONNN_AUTOTUNE", "0")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "rows.json")
        cmd = [sys.executable, "-m", "tritonnn.perf.bench_host_overhead", _ROWS_FLAG, path]
        cmd += ["--quick"] if quick else []
        cmd += ["--out", out] if out else []
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"bench_host_overhead: the no-op driver process failed "
                               f"(exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        with open(path) as f:
            return [C.Row(**d) for d in json.load(f)]


def _can_install_here():
    return noop_driver.installed() or not (
        "tritonnn.kernels" in sys.modules or C.interpreting()
        or os.environ.get("TRITON_INTERPRET", "") not in ("", "0"))


def run(device="auto", quick=False, out=None):
    """Rows of the host-overhead benchmark (``device`` is ignored: always the no-op driver)."""
    if _can_install_here():
        return _measure(quick, out)
    return _in_child(quick, out)


# ----------------------------------------------------------------------------------------------
# profile
# ----------------------------------------------------------------------------------------------

def profile(opt_name="sgd", steps=300, top=30):
    noop_driver.install()
    f_tn, _ = _tn_step(opt_name)
    for _ in range(20):
        f_tn()
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(steps):
        f_tn()
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(top)
    print(s.getvalue())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="ignored: the step always runs on 'cuda' through the no-op driver")
    p.add_argument("--quick", action="store_true", help="few steps (a smoke run)")
    p.add_argument("--out", default=None, help="results folder (default: none written)")
    p.add_argument("--profile", choices=OPTIMIZERS, nargs="?", const="sgd", default=None,
                   help="print cProfile's top functions of the tritonnn step instead")
    p.add_argument(_ROWS_FLAG, dest="rows_json", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.profile:
        profile(args.profile)
        return 0
    rows = run(quick=args.quick, out=args.out)
    if args.rows_json:
        with open(args.rows_json, "w") as f:
            json.dump([asdict(r) for r in rows], f)
        return 0
    print(C.format_table(rows))
    for name in OPTIMIZERS:
        t = {r.impl: r for r in rows if r.case == f"{name} step: host time"}
        if "tritonnn" in t and "torch" in t:
            print(f"{name}: tritonnn {t['tritonnn'].median_us:.0f} us/step, torch eager "
                  f"{t['torch'].median_us:.0f} us/step, ratio {t['tritonnn'].ratio:.2f} "
                  f"(target <= 1, stretch <= 0.5)")
    print(C.summary(rows) + (f" -> {args.out}" if args.out else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
