"""ReLU, an elementwise op bound by memory bandwidth, against a plain copy.

cuda: tritonnn ``x.relu()`` (no tape) against a device-to-device copy measured in the same
run (``torch.clone``, the baseline: what moving the bytes costs), target >= 90% of the
copy's bandwidth; ``torch.relu`` beside them. cpu: against ``numpy.maximum(x, 0)`` (the
baseline), ``numpy.copy`` and ``torch.relu``.
GB/s = 2*bytes/t (read x, write the result).
"""
from __future__ import annotations

import sys

import numpy as np

import tritonnn as tn

from . import common as C

FAMILY = "relu"
GPU_TARGET = C.Target(">=", 0.9)        # t(copy) / t(tritonnn) = bandwidth ratio


def _cases(sw):
    """(elements, dtype name)."""
    if sw.tiny:
        return [(4096 + 3, "float32")] + ([(1000, "bfloat16")] if sw.device == "cuda" else [])
    if sw.gpu:
        return [(n, d) for d in ("float32", "bfloat16") for n in (1 << 24, 1 << 26, 1 << 28)]
    return [(1 << 16, "float32"), (1 << 20, "float32"), (1 << 24, "float32")]


def run(device="auto", quick=False, out=None):
    import torch

    sw = C.Sweep(FAMILY, device, quick)
    rng = np.random.default_rng(0)
    for n, dname in _cases(sw):
        x = rng.standard_normal(n, dtype=np.float32)
        dt, tdt = getattr(tn, dname), getattr(torch, dname)
        tx = C.to_tn(x, sw.device, dt)
        px = C.to_torch(x, sw.torch_device, tdt)
        if sw.device == "cuda":
            # head and tail (the masked last block) against the baseline's input
            k = min(n, 1 << 20)
            y = tx.relu()
            ok, note = C.all_close([C.close(C.host(y[:k]), C.host(px[:k]).clip(min=0), 0, 0),
                                    C.close(C.host(y[n - k:]), C.host(px[n - k:]).clip(min=0), 0, 0)])
            del y

            def f_tn():
                with tn.no_grad():
                    return tx.relu()
            fns = {"copy (torch.clone)": px.clone, "tritonnn": f_tn,
                   "torch": lambda: torch.relu(px)}
            base, target = "copy (torch.clone)", GPU_TARGET
        else:
            ok, note = C.close(tx.relu().numpy(), np.maximum(x, 0), 0, 0)

            def f_tn():
                with tn.no_grad():
                    return tx.relu()
            fns = {"numpy": lambda: np.maximum(x, 0), "tritonnn": f_tn,
                   "copy (numpy.copy)": x.copy, "torch": lambda: torch.relu(px)}
            base, target = "numpy", None
        timings = sw.time(fns)
        nbytes = n * (2 if dname == "bfloat16" else 4)
        work = C.Work(2.0 * nbytes, "GB/s", "2*bytes/t")
        sw.compare("relu", (n,), dname, timings, base, work, target, speedup=True, wrong=not ok,
                   notes={"tritonnn": note})
        del tx, px
    return C.finish(sw, out)


if __name__ == "__main__":
    sys.exit(C.script_main(run, __doc__))
