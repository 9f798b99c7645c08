"""GELU (exact and tanh) and SiLU, forward and backward, against torch eager.

tritonnn: ``y = F.gelu(x)`` (``approximate="tanh"``, ``F.silu``) and ``tn.grad(y, [x], dy)``:
one kernel each way (the backward is one fused ``unary_bwd`` launch); torch: the same
functions and ``torch.autograd.grad`` with the same upstream ``dy``. Both results are
checked (y and dx, head and tail).
cuda: 2^24 and 2^26 elements, bf16 and fp32: target >= 1x torch's speed (fwd + bwd).
cpu: moderate sizes, float32, reported beside torch.
GB/s = 5*n*bytes / t: the least traffic (forward reads x and writes y; backward reads x and
dy and writes dx).
"""
from __future__ import annotations

import sys

import numpy as np

import tritonnn as tn
import tritonnn.nn.functional as F

from . import common as C

FAMILY = "gelu"
GPU_TARGET = C.Target(">=", 1.0)        # t(torch) / t(tritonnn)
CHECK = 1 << 16                         # head and tail elements compared


def _cases(sw):
    """(elements, dtype names)."""
    if sw.tiny:
        return [(4096 + 3, ["float32"])] + ([(1000, ["bfloat16"])] if sw.device == "cuda" else [])
    if sw.gpu:
        return [(n, ["bfloat16", "float32"]) for n in (1 << 24, 1 << 26)]
    return [(n, ["float32"]) for n in (1 << 16, 1 << 20, 1 << 22)]


def _ops():
    import torch
    tf = torch.nn.functional
    return [("gelu", F.gelu, tf.gelu),
            ("gelu_tanh", lambda x: F.gelu(x, approximate="tanh"),
             lambda x: tf.gelu(x, approximate="tanh")),
            ("silu", F.silu, tf.silu)]


def _bands(t, k):
    n = t.shape[0]
    return [C.host(t)] if n <= 2 * k else [C.host(t[:k]), C.host(t[n - k:])]


def _measure(sw, x, dy, dname):
    import torch

    n = x.shape[0]
    dt, tdt = getattr(tn, dname), getattr(torch, dname)
    tx = C.to_tn(x, sw.device, dt, requires_grad=True, rounded=True)
    tdy = C.to_tn(dy, sw.device, dt, rounded=True)
    px = C.to_torch(x, sw.torch_device, tdt, requires_grad=True, rounded=True)
    pdy = C.to_torch(dy, sw.torch_device, tdt, rounded=True)
    tol = 2e-2 if dname == "bfloat16" else 1e-5
    k = min(n, CHECK)
    for op, f_tn_op, f_pt_op in _ops():

        def f_tn(f=f_tn_op):
            y = f(tx)
            return y, tn.grad(y, [tx], grad_outputs=tdy)[0]

        def f_torch(f=f_pt_op):
            y = f(px)
            return y, torch.autograd.grad(y, [px], grad_outputs=pdy)[0]

        (y1, g1), (y2, g2) = f_tn(), f_torch()
        ok, note = C.all_close([C.close(a, b, tol, tol)
                                for a, b in zip(_bands(y1, k) + _bands(g1, k),
                                                _bands(y2, k) + _bands(g2, k))])
        del y1, g1, y2, g2
        timings = sw.time({"torch": f_torch, "tritonnn": f_tn})
        esize = 2 if dname == "bfloat16" else 4
        work = C.Work(5.0 * n * esize, "GB/s", "5*n*bytes/t")
        sw.compare(f"{op} fwd+bwd", (n,), dname, timings, "torch", work,
                   GPU_TARGET if sw.device == "cuda" else None, speedup=True, wrong=not ok,
                   notes={"tritonnn": note})


def run(device="auto", quick=False, out=None):
    sw = C.Sweep(FAMILY, device, quick)
    rng = np.random.default_rng(0)
    for n, dnames in _cases(sw):
        low = "bfloat16" if "bfloat16" in dnames else None
        x = C.pooled_normal(rng, (n,), low, scale=3.0)
        dy = C.pooled_normal(rng, (n,), low)
        for dname in dnames:
            _measure(sw, x, dy, dname)
    return C.finish(sw, out)


if __name__ == "__main__":
    sys.exit(C.script_main(run, __doc__))
