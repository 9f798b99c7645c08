"""Softmax and log-softmax along the last dim, forward and backward, against torch eager.

tritonnn: ``y = tn.softmax(x, -1)`` (or ``tn.log_softmax``) and ``tn.grad(y, [x], dy)``;
torch: ``torch.softmax`` / ``torch.log_softmax`` and ``torch.autograd.grad`` with the same
upstream gradient ``dy`` (random, so that the backward's row sum is not trivial); inputs
hold bf16 values when a bf16 case shares them. Both results (y and dx) are checked on the
first and last rows.
cuda: (4096, 4096) and (8192, 32000), bf16 and fp32: target >= 1x torch's speed.
cpu: moderate sizes, float32, reported beside torch.
GB/s = 5*N*V*bytes / t: the least traffic (forward reads x and writes y; backward reads y
and dy and writes dx).
"""
from __future__ import annotations

import sys

import numpy as np

import tritonnn as tn

from . import common as C

FAMILY = "softmax"
GPU_TARGET = C.Target(">=", 1.0)        # t(torch) / t(tritonnn)
CHECK_ROWS = 64                         # head and tail rows compared


def _cases(sw):
    """(shape, dtype names)."""
    if sw.tiny:
        return [((37, 1000), ["float32"])] + ([((5, 3001), ["bfloat16"])]
                                              if sw.device == "cuda" else [])
    if sw.gpu:
        return [(s, ["bfloat16", "float32"]) for s in ((4096, 4096), (8192, 32000))]
    return [(s, ["float32"]) for s in ((512, 1000), (2048, 2048), (256, 32000))]


def _bands(t, k):
    n = t.shape[0]
    return [C.host(t)] if n <= 2 * k else [C.host(t[:k]), C.host(t[n - k:])]


def _measure(sw, x, dy, dname):
    """Both ops, fwd+bwd, on one dtype's copies of ``x`` and ``dy``: check, time, add rows."""
    import torch

    n, v = x.shape
    tdev = sw.torch_device
    dt, tdt = getattr(tn, dname), getattr(torch, dname)
    tx = C.to_tn(x, sw.device, dt, requires_grad=True, rounded=True)
    tdy = C.to_tn(dy, sw.device, dt, rounded=True)
    px = C.to_torch(x, tdev, tdt, requires_grad=True, rounded=True)
    pdy = C.to_torch(dy, tdev, tdt, rounded=True)
    tol = 2e-2 if dname == "bfloat16" else 1e-5
    k = min(n, CHECK_ROWS)
    for op, f_tn_op, f_pt_op in (("softmax", tn.softmax, torch.softmax),
                                 ("log_softmax", tn.log_softmax, torch.log_softmax)):

        def f_tn(f=f_tn_op):
            y = f(tx, -1)
            return y, tn.grad(y, [tx], grad_outputs=tdy)[0]

        def f_torch(f=f_pt_op):
            y = f(px, -1)
            return y, torch.autograd.grad(y, [px], grad_outputs=pdy)[0]

        (y1, g1), (y2, g2) = f_tn(), f_torch()
        ok, note = C.all_close([C.close_rel(a, b, tol)
                                for a, b in zip(_bands(y1, k) + _bands(g1, k),
                                                _bands(y2, k) + _bands(g2, k))])
        del y1, g1, y2, g2
        timings = sw.time({"torch": f_torch, "tritonnn": f_tn})
        esize = 2 if dname == "bfloat16" else 4
        work = C.Work(5.0 * n * v * esize, "GB/s", "5*N*V*bytes/t")
        sw.compare(f"{op} fwd+bwd", (n, v), dname, timings, "torch", work,
                   GPU_TARGET if sw.device == "cuda" else None, speedup=True, wrong=not ok,
                   notes={"tritonnn": note})
    del tx, tdy, px, pdy


def run(device="auto", quick=False, out=None):
    sw = C.Sweep(FAMILY, device, quick)
    rng = np.random.default_rng(0)
    for (n, v), dnames in _cases(sw):
        # one set of inputs per shape, holding bf16 values when any case is bf16
        low = "bfloat16" if "bfloat16" in dnames else None
        x = C.pooled_normal(rng, (n, v), low, scale=2.0)
        dy = C.pooled_normal(rng, (n, v), low)
        for dname in dnames:
            _measure(sw, x, dy, dname)
    return C.finish(sw, out)

if __name__ == "__main__":
    sys.exit(C.script_main(run, __doc__))
