"""Dropout, forward and backward, against torch's ``F.dropout``.

tritonnn: ``y = F.dropout(x, p)`` and ``tn.grad(y, [x], dy)``: one Philox-driven kernel
each way (the backward regenerates the mask from the forward's (seed, offset), four
elements to a Philox counter); torch: ``torch.nn.functional.dropout`` and
``torch.autograd.grad`` (its mask is stored by the forward, or fused on a GPU).
cuda: (8192, 4096) in fp32 and bf16, p = 0.1 and 0.5; target >= 0.8x torch's speed.
cpu: (2048, 2048) fp32, p = 0.1 and 0.5, reported beside torch.
GB/s = 4*N*bytes / t: the forward reads x and writes y, the backward reads dy and writes dx.
Checks (the masks can't equal torch's): the kept fraction within 6 standard errors of
1 - p, y == x / (1 - p) where kept and 0 elsewhere, and dx == dy / (1 - p) on exactly the
forward's kept elements, on the first and last rows.
"""
from __future__ import annotations

import math
import sys

import numpy as np

import tritonnn as tn
import tritonnn.nn.functional as F

from . import common as C

FAMILY = "dropout"
GPU_TARGET = C.Target(">=", 0.8)        # t(torch) / t(tritonnn)
CHECK_ROWS = 64


def _cases(sw):
    """(shape, dtype names, ps)."""
    if sw.tiny:
        return [((37, 1000), ["float32"], (0.5,))]
    if sw.gpu:
        return [((8192, 4096), ["float32", "bfloat16"], (0.1, 0.5))]
    return [((2048, 2048), ["float32"], (0.1, 0.5))]


def _rows(t, k):
    n = t.shape[0]
    return C.host(t) if n <= 2 * k else np.concatenate([C.host(t[:k]), C.host(t[n - k:])])


def _check(x, y, dy, dx, p, dname):
    """(ok, note): the mask's kept fraction, the scaled values, the backward's same mask."""
    kept = y != 0
    frac = float(kept.mean())
    bound = 6 * math.sqrt(p * (1 - p) / kept.size)
    tol = 1e-2 if dname == "bfloat16" else 1e-6
    scale = 1.0 / (1.0 - p)
    ok_frac = abs(frac - (1 - p)) <= bound
    ok_y = bool(np.allclose(y[kept], x[kept] * scale, rtol=tol, atol=0))
    ok_dx = bool(np.array_equal(dx != 0, kept)) and \
        bool(np.allclose(dx[kept], dy[kept] * scale, rtol=tol, atol=0))
    ok = ok_frac and ok_y and ok_dx
    return ok, (f"kept {frac:.4f}" + ("" if ok_frac else " WRONG") +
                ("" if ok_y else "; values WRONG") + ("" if ok_dx else "; backward mask WRONG"))


def _measure(sw, x, dy, dname, p):
    import torch

    n, m = x.shape
    tdev = sw.torch_device
    dt, tdt = getattr(tn, dname), getattr(torch, dname)
    tx = C.to_tn(x, sw.device, dt, requires_grad=True, rounded=True)
    tdy = C.to_tn(dy, sw.device, dt, rounded=True)
    px = C.to_torch(x, tdev, tdt, requires_grad=True, rounded=True)
    pdy = C.to_torch(dy, tdev, tdt, rounded=True)

    def f_tn():
        y = F.dropout(tx, p)
        return y, tn.grad(y, [tx], grad_outputs=tdy)[0]

    def f_torch():
        y = torch.nn.functional.dropout(px, p)
        return y, torch.autograd.grad(y, [px], grad_outputs=pdy)[0]

    y, dx = f_tn()
    k = min(n, CHECK_ROWS)
    ok, note = _check(_rows(tx, k), _rows(y, k), _rows(tdy, k), _rows(dx, k), p, dname)
    del y, dx
    timings = sw.time({"torch": f_torch, "tritonnn": f_tn})
    esize = 2 if dname == "bfloat16" else 4
    sw.compare(f"fwd+bwd p={p}", (n, m), dname, timings, "torch",
               C.Work(4.0 * n * m * esize, "GB/s", "4*N*bytes/t"),
               GPU_TARGET if sw.device == "cuda" else None, speedup=True, wrong=not ok,
               notes={"tritonnn": note})
    del tx, tdy, px, pdy


def run(device="auto", quick=False, out=None):
    sw = C.Sweep(FAMILY, device, quick)
    rng = np.random.default_rng(0)
    for shape, dnames, ps in _cases(sw):
        low = "bfloat16" if "bfloat16" in dnames else None
        x = C.pooled_normal(rng, shape, low) + np.float32(4.0)      # never 0 by itself
        dy = C.pooled_normal(rng, shape, low) + np.float32(4.0)
        for dname in dnames:
            for p in ps:
                _measure(sw, x, dy, dname, p)
    return C.finish(sw, out)


if __name__ == "__main__":
    sys.exit(C.script_main(run, __doc__))
