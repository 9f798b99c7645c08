"""Softmax cross-entropy, forward and backward, against torch's ``F.cross_entropy``.

tritonnn: ``loss = F.cross_entropy(logits, y)`` and ``tn.grad(loss, [logits])`` (one fused
kernel each way); torch: the same with ``torch.autograd.grad``. The logits are a leaf that
the caller keeps, so neither side may write the gradient into them.
cuda: 8192 rows, vocab 32000 and 128256, bf16: target >= 2x torch's speed, and a peak of
extra memory <= 1.1x the logits' bytes (``buffers.max_memory_allocated()`` after
``reset_peak_memory_stats()``, minus what was allocated before the step: the logits and
targets). cpu: moderate sizes beside torch, and tritonnn's extra memory from tracemalloc.
GB/s = 2*N*V*bytes / t: the least traffic (read the logits, write their gradient).
"""
from __future__ import annotations

import sys
import tracemalloc

import numpy as np

import tritonnn as tn
import tritonnn.nn.functional as F

from . import common as C

FAMILY = "cross_entropy"
SPEED_TARGET = C.Target(">=", 2.0)      # t(torch) / t(tritonnn)
MEMORY_TARGET = C.Target("<=", 1.1)     # peak extra bytes / logits bytes


def _shapes(sw):
    if sw.tiny:
        return [(37, 1000)], ("bfloat16" if sw.device == "cuda" else "float32")
    if sw.gpu:
        return [(8192, 32000), (8192, 128256)], "bfloat16"
    return [(512, 1000), (256, 32000), (2048, 8192)], "float32"


def _peak_extra_gpu(fn):
    """Peak bytes allocated by ``fn()`` beyond what was live before it (results kept)."""
    from tritonnn.kernels import buffers
    buffers.synchronize()
    before = buffers.memory_allocated()
    buffers.reset_peak_memory_stats()
    res = fn()
    buffers.synchronize()
    peak = buffers.max_memory_allocated()
    del res
    return peak - before


def _peak_extra_host(fn):
    """numpy registers its allocations with tracemalloc: tritonnn's cpu path only."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        res = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    del res
    return peak - base


def run(device="auto", quick=False, out=None):
    import torch

    sw = C.Sweep(FAMILY, device, quick)
    shapes, dname = _shapes(sw)
    dt, tdt = getattr(tn, dname), getattr(torch, dname)
    tdev = sw.torch_device
    rng = np.random.default_rng(0)
    tol = 2e-2 if dname == "bfloat16" else 1e-4
    for n, v in shapes:
        logits = (rng.standard_normal((n, v), dtype=np.float32) * 2.0)
        target = rng.integers(0, v, size=n)
        tl = C.to_tn(logits, sw.device, dt, requires_grad=True)
        ty = C.to_tn(target, sw.device)
        pl = C.to_torch(logits, tdev, tdt, requires_grad=True)
        py = C.to_torch(target, tdev)
        del logits

        def f_tn():
            loss = F.cross_entropy(tl, ty)
            return loss, tn.grad(loss, [tl])[0]

        def f_torch():
            loss = torch.nn.functional.cross_entropy(pl, py)
            return loss, torch.autograd.grad(loss, [pl])[0]

        band = min(n, 64)
        (l1, g1), (l2, g2) = f_tn(), f_torch()
        ok, note = C.all_close([C.close_rel(C.host(l1), C.host(l2), tol),
                                C.close_rel(C.host(g1[:band]), C.host(g2[:band]), tol)])
        del l1, g1, l2, g2
        timings = sw.time({"torch": f_torch, "tritonnn": f_tn})
        esize = 2 if dname == "bfloat16" else 4
        logit_bytes = n * v * esize
        work = C.Work(2.0 * logit_bytes, "GB/s", "2*N*V*bytes/t")
        sw.compare("fwd+bwd", (n, v), dname, timings, "torch", work,
                   SPEED_TARGET if sw.device == "cuda" else None, speedup=True, wrong=not ok,
                   notes={"tritonnn": note})
        # -- memory -------------------------------------------------------------------------
        mib = 2.0 ** 20
        if sw.gpu:
            for impl, fn in (("torch", f_torch), ("tritonnn", f_tn)):
                extra = _peak_extra_gpu(fn)
                sw.add("peak extra memory", (n, v), dname, impl, throughput=extra / mib,
                       throughput_unit="MiB",
                       throughput_formula="max_memory_allocated - allocated before",
                       ratio=extra / logit_bytes, ratio_def="peak extra bytes / logits bytes",
                       target=MEMORY_TARGET if impl == "tritonnn" else None)
        elif sw.device == "cpu":
            extra = _peak_extra_host(f_tn)
            sw.add("peak extra memory", (n, v), dname, "tritonnn", throughput=extra / mib,
                   throughput_unit="MiB", throughput_formula="tracemalloc peak - before",
                   ratio=extra / logit_bytes, ratio_def="peak extra bytes / logits bytes",
                   note="numpy allocations via tracemalloc (torch's are not traced)")
        del tl, ty, pl, py
    return C.finish(sw, out)


if __name__ == "__main__":
    sys.exit(C.script_main(run, __doc__))
