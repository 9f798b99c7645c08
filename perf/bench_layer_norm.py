"""LayerNorm over the last dim with weight and bias, forward and backward, against torch eager.

tritonnn: ``y = F.layer_norm(x, (N,), w, b)`` and ``tn.grad(y, [x, w, b], dy)``; torch:
``torch.nn.functional.layer_norm`` and ``torch.autograd.grad`` with the same upstream
gradient ``dy`` (random: the backward's row sums are not trivial). Outputs and all three
gradients are checked (y and dx on the first and last rows, dw and db whole).
cuda: (M, N) in (8192, 768), (8192, 4096), (4096, 8192), bf16 and fp32: target >= 1x torch's
speed (forward + backward). cpu: moderate sizes, float32, reported beside torch.
GB/s = (5*M*N*bytes) / t: the least traffic (forward reads x, writes y; backward reads x and
dy and writes dx; the weight, bias and per-row statistics are negligible).
"""
from __future__ import annotations

import sys

import numpy as np

import tritonnn as tn
import tritonnn.nn.functional as F

from . import common as C

FAMILY = "layer_norm"
GPU_TARGET = C.Target(">=", 1.0)        # t(torch) / t(tritonnn)
CHECK_ROWS = 64                         # head and tail rows compared


def _cases(sw):
    """(shape, dtype names)."""
    if sw.tiny:
        return [((37, 1000), ["float32"])] + ([((5, 3001), ["bfloat16"])]
                                              if sw.device == "cuda" else [])
    if sw.gpu:
        return [(s, ["bfloat16", "float32"]) for s in ((8192, 768), (8192, 4096), (4096, 8192))]
    return [(s, ["float32"]) for s in ((512, 768), (2048, 1024), (256, 8192))]


def _bands(t, k):
    n = t.shape[0]
    return [C.host(t)] if n <= 2 * k else [C.host(t[:k]), C.host(t[n - k:])]


def _measure(sw, x, dy, w, b, dname):
    """fwd+bwd on one dtype's copies of the inputs: check, time, add rows."""
    import torch

    m, n = x.shape
    tdev = sw.torch_device
    dt, tdt = getattr(tn, dname), getattr(torch, dname)
    tx = C.to_tn(x, sw.device, dt, requires_grad=True, rounded=True)
    tdy = C.to_tn(dy, sw.device, dt, rounded=True)
    tw = C.to_tn(w, sw.device, dt, requires_grad=True)
    tb = C.to_tn(b, sw.device, dt, requires_grad=True)
    px = C.to_torch(x, tdev, tdt, requires_grad=True, rounded=True)
    pdy = C.to_torch(dy, tdev, tdt, rounded=True)
    pw = C.to_torch(w, tdev, tdt, requires_grad=True)
    pb = C.to_torch(b, tdev, tdt, requires_grad=True)
    tol = 3e-2 if dname == "bfloat16" else 2e-4
    k = min(m, CHECK_ROWS)

    def f_tn():
        y = F.layer_norm(tx, (n,), tw, tb)
        return (y,) + tuple(tn.grad(y, [tx, tw, tb], grad_outputs=tdy))

    def f_torch():
        y = torch.nn.functional.layer_norm(px, (n,), pw, pb)
        return (y,) + tuple(torch.autograd.grad(y, [px, pw, pb], grad_outputs=pdy))

    (y1, dx1, dw1, db1), (y2, dx2, dw2, db2) = f_tn(), f_torch()
    checks = [C.close_rel(a, c, tol) for a, c in zip(_bands(y1, k) + _bands(dx1, k),
                                                     _bands(y2, k) + _bands(dx2, k))]
    # dw, db sum M rows: compare relative to their scale
    checks += [C.close_rel(C.host(dw1), C.host(dw2), tol * 4),
               C.close_rel(C.host(db1), C.host(db2), tol * 4)]
    ok, note = C.all_close(checks)
    del y1, dx1, dw1, db1, y2, dx2, dw2, db2
    timings = sw.time({"torch": f_torch, "tritonnn": f_tn})
    esize = 2 if dname == "bfloat16" else 4
    work = C.Work(5.0 * m * n * esize, "GB/s", "5*M*N*bytes/t")
    sw.compare("layer_norm fwd+bwd", (m, n), dname, timings, "torch", work,
               GPU_TARGET if sw.device == "cuda" else None, speedup=True, wrong=not ok,
               notes={"tritonnn": note})


def run(device="auto", quick=False, out=None):
    sw = C.Sweep(FAMILY, device, quick)
    rng = np.random.default_rng(0)
    for (m, n), dnames in _cases(sw):
        low = "bfloat16" if "bfloat16" in dnames else None
        x = C.pooled_normal(rng, (m, n), low, scale=2.0)
        dy = C.pooled_normal(rng, (m, n), low)
        w = rng.uniform(0.5, 1.5, n).astype(np.float32)
        b = rng.standard_normal(n).astype(np.float32)
        for dname in dnames:
            _measure(sw, x, dy, w, b, dname)
    return C.finish(sw, out)


if __name__ == "__main__":
    sys.exit(C.script_main(run, __doc__))
