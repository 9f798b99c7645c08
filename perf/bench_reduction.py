"""Reductions: sum, mean and max along the last dim and along dim 0, argmax along the last dim.

Shapes (4096, 4096) (square: rows long enough for one block each) and (64, 2^20) (few very
long rows: the last-dim reductions must split a row, dim 0 is a short column), float32;
on the GPU the sums also in bf16 (fp32 accumulation on both sides). tritonnn's Tensor API
(``x.sum(d)``, ``x.mean(d)``, ``x.amax(d)``, ``x.argmax(-1)``; no tape) against the same
call in the baseline library.
cuda: against torch eager, target >= 0.9x torch's speed. cpu: against numpy, torch beside.
GB/s = (in_bytes + out_bytes) / t: the input read once, the result written once.
"""
from __future__ import annotations

import sys

import numpy as np

import tritonnn as tn

from . import common as C

FAMILY = "reduction"
GPU_TARGET = C.Target(">=", 0.9)        # t(torch) / t(tritonnn)
# name -> (method, dim): the same method name in tritonnn, numpy and torch
OPS = {"sum dim=-1": ("sum", -1), "mean dim=-1": ("mean", -1), "max dim=-1": ("amax", -1),
       "sum dim=0": ("sum", 0), "mean dim=0": ("mean", 0), "max dim=0": ("amax", 0),
       "argmax dim=-1": ("argmax", -1)}
BF16_OPS = ("sum dim=-1", "sum dim=0")


def _cases(sw):
    """(shape, dtype name, op names)."""
    if sw.tiny:
        cases = [((37, 1000), "float32", list(OPS)), ((5, 3001), "float32", list(OPS))]
        if sw.device == "cuda":
            cases.append(((37, 1000), "bfloat16", list(BF16_OPS)))
        return cases
    shapes = ((4096, 4096), (64, 1 << 20))
    cases = [(s, "float32", list(OPS)) for s in shapes]
    if sw.gpu:
        cases += [(s, "bfloat16", list(BF16_OPS)) for s in shapes]
    return cases


def _call(lib, a, method, dim):
    if lib == "numpy":
        return getattr(a, "max" if method == "amax" else method)(axis=dim)
    return getattr(a, method)(dim)


def _check(got, ref, x, method, dname):
    """tritonnn's result against the baseline's (host arrays, float64)."""
    if method == "argmax":
        # equal indices, or indices of equal values (a tie broken differently)
        rows = np.arange(x.shape[0])
        same = (got == ref) | (x[rows, got.astype(np.int64)] == x[rows, ref.astype(np.int64)])
        bad = int((~same).sum())
        return bad == 0, (f"{bad} rows differ WRONG" if bad else "indices equal")
    if method == "amax":
        return C.close(got, ref, 0, 0)
    return C.close_rel(got, ref, 1e-5 if dname == "float32" else 1e-2)


def run(device="auto", quick=False, out=None):
    import torch

    sw = C.Sweep(FAMILY, device, quick)
    rng = np.random.default_rng(0)
    for shape, dname, names in _cases(sw):
        x = C.pooled_normal(rng, shape, dname)
        dt, tdt = getattr(tn, dname), getattr(torch, dname)
        tx = C.to_tn(x, sw.device, dt, rounded=True)
        px = C.to_torch(x, sw.torch_device, tdt, rounded=True)
        esize = 2 if dname == "bfloat16" else 4
        for name in names:
            method, dim = OPS[name]

            def f_tn(method=method, dim=dim):
                with tn.no_grad():
                    return _call("tritonnn", tx, method, dim)

            def f_torch(method=method, dim=dim):
                return _call("torch", px, method, dim)

            def f_np(method=method, dim=dim):
                return _call("numpy", x, method, dim)

            if sw.device == "cuda":
                ref = C.host(f_torch())
                fns = {"torch": f_torch, "tritonnn": f_tn}
                base, target = "torch", GPU_TARGET
            else:
                ref = np.asarray(f_np(), dtype=np.float64)
                fns = {"numpy": f_np, "tritonnn": f_tn, "torch": f_torch}
                base, target = "numpy", None
            ok, note = _check(C.host(f_tn()), ref, x, method, dname)
            out_elems = shape[0] if dim == -1 else shape[1]
            out_esize = 8 if method == "argmax" else esize
            work = C.Work(float(x.size * esize + out_elems * out_esize), "GB/s",
                          "(in_bytes+out_bytes)/t")
            timings = sw.time(fns)
            sw.compare(name, shape, dname, timings, base, work, target, speedup=True,
                       wrong=not ok, notes={"tritonnn": note})
        del tx, px
    return C.finish(sw, out)


if __name__ == "__main__":
    sys.exit(C.script_main(run, __doc__))
