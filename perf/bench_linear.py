"""Fused linear + bias + ReLU, forward and backward, against torch eager.

tritonnn: ``y = F.linear(x, w, b, activation="relu")`` then the gradients of x, w and b
for an upstream gradient dy (``tn.grad``). torch: ``relu(x @ w.T + b)`` then
``torch.autograd.grad`` with the same dy. cuda: bf16 MLP layers, batch 4096-16384, width
1024-8192, target >= 1.1x torch's speed; cpu: float32 small layers, reported beside torch.
TFLOP/s = 6*B*IN*OUT / t (forward 2*B*IN*OUT, dx and dw 2*B*IN*OUT each; bias and ReLU
are not counted).
"""
from __future__ import annotations

import sys

import numpy as np

import tritonnn as tn
import tritonnn.nn.functional as F

from . import common as C

FAMILY = "linear"
GPU_TARGET = C.Target(">=", 1.1)        # t(torch) / t(tritonnn)


def _shapes(sw):
    """(batch, in, out) and dtype name."""
    if sw.tiny:
        return [(32, 48, 40)], ("bfloat16" if sw.device == "cuda" else "float32")
    if sw.gpu:
        return [(4096, 1024, 1024), (8192, 2048, 2048), (8192, 4096, 4096),
                (16384, 4096, 4096), (16384, 8192, 8192)], "bfloat16"
    return [(128, 256, 256), (256, 784, 256), (512, 512, 512), (1024, 1024, 1024)], "float32"


def run(device="auto", quick=False, out=None):
    import torch

    sw = C.Sweep(FAMILY, device, quick)
    shapes, dname = _shapes(sw)
    dt, tdt = getattr(tn, dname), getattr(torch, dname)
    tdev = sw.torch_device
    rng = np.random.default_rng(0)
    tol = 2e-2 if dname == "bfloat16" else 1e-4
    for bsz, n_in, n_out in shapes:
        bound = 1.0 / np.sqrt(n_in)
        x = rng.standard_normal((bsz, n_in), dtype=np.float32)
        w = rng.uniform(-bound, bound, (n_out, n_in)).astype(np.float32)
        b = rng.uniform(-bound, bound, (n_out,)).astype(np.float32)
        dy = rng.standard_normal((bsz, n_out), dtype=np.float32)
        tx, tw, tb = (C.to_tn(a, sw.device, dt, requires_grad=True) for a in (x, w, b))
        tdy = C.to_tn(dy, sw.device, dt)
        px, pw, pb = (C.to_torch(a, tdev, tdt, requires_grad=True) for a in (x, w, b))
        pdy = C.to_torch(dy, tdev, tdt)

        def f_tn():
            y = F.linear(tx, tw, tb, activation="relu")
            return (y,) + tn.grad(y, [tx, tw, tb], grad_outputs=tdy)

        def f_torch():
            y = torch.relu(px @ pw.T + pb)
            return (y,) + torch.autograd.grad(y, [px, pw, pb], pdy)

        band = min(bsz, 64)
        got, ref = f_tn(), f_torch()
        ok, note = C.all_close([C.close_rel(C.host(g[:band]), C.host(r[:band]), tol)
                                for g, r in zip(got, ref)])
        del got, ref
        timings = sw.time({"torch": f_torch, "tritonnn": f_tn})
        work = C.Work(6.0 * bsz * n_in * n_out, "TFLOP/s", "6*B*IN*OUT/t")
        sw.compare("linear+relu fwd+bwd", (bsz, n_in, n_out), dname, timings, "torch", work,
                   GPU_TARGET if sw.device == "cuda" else None, speedup=True, wrong=not ok,
                   notes={"tritonnn": note})
        del tx, tw, tb, tdy, px, pw, pb, pdy
    return C.finish(sw, out)


if __name__ == "__main__":
    sys.exit(C.script_main(run, __doc__))
