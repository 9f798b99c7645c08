"""Chunked linear + cross-entropy (the language-model head and its loss) against torch.

tritonnn: ``loss = F.linear_cross_entropy(h, w, y, b)`` and ``tn.grad(loss, [h, w, b])``
(rows in chunks: the (N, V) logits are never whole; the forward computes the gradients of
"mean" while each chunk's softmax is at hand, the backward scales them). torch: the unfused
``F.cross_entropy(F.linear(h, w, b), y)`` and ``torch.autograd.grad``, which hold the full
logits, their log-softmax and their gradient.
cuda: the issue's case alone, 8192 rows x hidden 4096 x vocab 128256 in bf16 (torch's
baseline holds ~2 GB of logits), with its two targets: time <= 1.1x torch's (the ratio is
t(tritonnn) / t(torch)), and a peak of extra memory <= 1/8 of the full logits' bytes (peak
allocated during the step, minus what was allocated before it and minus the gradients
returned). A second vocabulary would cost the GPU check a second set of GEMM
specializations (its chunks' row counts differ) for no target.
cpu: scaled-down float32 shapes beside torch; tritonnn's extra memory from tracemalloc
(numpy's allocations; torch's are not traced). At 8192 x 4096 x 128256 in bf16 a float32
dW accumulator (V * H * 4 bytes) alone would equal the logits' bytes (N = 2H), so dW and db
add up in the returned bf16 gradients instead, one rounding per chunk (9 chunks of 912
rows), and the op holds beyond its inputs and gradients one chunk's logits and the (N,)
loss and lse vectors: 223 MiB on paper, 0.111 of the logits.
TFLOP/s = 6*N*H*V / t (three GEMMs: the logits, dh and dW; the softmax is not counted).
"""
from __future__ import annotations

import sys
import tracemalloc

import numpy as np

import tritonnn as tn
import tritonnn.nn.functional as F
from tritonnn import ops

from . import common as C

FAMILY = "linear_cross_entropy"
SPEED_TARGET = C.Target("<=", 1.1)      # t(tritonnn) / t(torch): within 1.1x of torch's time
MEMORY_TARGET = C.Target("<=", 0.125)   # peak extra bytes (less the gradients) / logits bytes


def _shapes(sw):
    """(rows, hidden, vocab) and dtype name."""
    if sw.tiny:
        return [(37, 64, 1000)], ("bfloat16" if sw.device == "cuda" else "float32")
    if sw.gpu:
        return [(8192, 4096, 128256)], "bfloat16"
    return [(1024, 128, 8192), (512, 128, 32000)], "float32"


def _peak_extra_gpu(fn):
    """Peak bytes allocated by ``fn()`` beyond what was live before it, and its result."""
    from tritonnn.kernels import buffers
    buffers.synchronize()
    before = buffers.memory_allocated()
    buffers.reset_peak_memory_stats()
    res = fn()
    buffers.synchronize()
    return buffers.max_memory_allocated() - before, res


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
    return peak - base, res


def _sums(n, hidden, v, dt):
    """Where dW and db add up at this size (the rule of ``ops.linear_cross_entropy``)."""
    budget = ops.lce_budget(n, v, dt)
    if dt.itemsize == 2 and (v * hidden + v) * 4 > budget // 2:
        return f"dW, db summed in {dt} (one rounding per chunk; budget {budget / 2**20:.1f} MiB)"
    return (f"dW, db summed in {'float32' if dt.itemsize == 2 else dt} "
            f"(budget {budget / 2**20:.1f} MiB)")


def _grad_bytes(res):
    """Bytes of the gradients a call returned (tritonnn or torch tensors)."""
    return sum(int(np.prod(g.shape)) * g.dtype.itemsize for g in res[1])


def run(device="auto", quick=False, out=None):
    import torch

    sw = C.Sweep(FAMILY, device, quick)
    shapes, dname = _shapes(sw)
    dt, tdt = getattr(tn, dname), getattr(torch, dname)
    tdev = sw.torch_device
    rng = np.random.default_rng(0)
    tol = 3e-2 if dname == "bfloat16" else 1e-4
    TF = torch.nn.functional
    for n, hidden, v in shapes:
        h = C.pooled_normal(rng, (n, hidden), dname)
        w = C.pooled_normal(rng, (v, hidden), dname, scale=1.0 / np.sqrt(hidden))
        b = C.pooled_normal(rng, (v,), dname, scale=0.1)
        y = rng.integers(0, v, size=n)
        th, tw, tb = (C.to_tn(a, sw.device, dt, requires_grad=True, rounded=True)
                      for a in (h, w, b))
        ty = C.to_tn(y, sw.device)
        ph, pw, pb = (C.to_torch(a, tdev, tdt, requires_grad=True, rounded=True)
                      for a in (h, w, b))
        py = C.to_torch(y, tdev)
        del h, w, b

        def f_tn():
            loss = F.linear_cross_entropy(th, tw, ty, tb)
            return loss, tn.grad(loss, [th, tw, tb])

        def f_torch():
            loss = TF.cross_entropy(TF.linear(ph, pw, pb), py)
            return loss, torch.autograd.grad(loss, [ph, pw, pb])

        band = min(n, 64)
        (l1, g1), (l2, g2) = f_tn(), f_torch()
        ok, note = C.all_close([C.close_rel(C.host(l1), C.host(l2), tol),
                                C.close_rel(C.host(g1[0][:band]), C.host(g2[0][:band]), tol),
                                C.close_rel(C.host(g1[1][:band]), C.host(g2[1][:band]), tol),
                                C.close_rel(C.host(g1[2]), C.host(g2[2]), tol)])
        del l1, g1, l2, g2
        timings = sw.time({"torch": f_torch, "tritonnn": f_tn})
        work = C.Work(6.0 * n * hidden * v, "TFLOP/s", "6*N*H*V/t")
        shape = (n, hidden, v)
        sw.compare("fwd+bwd", shape, dname, timings, "torch", work,
                   SPEED_TARGET if sw.device == "cuda" else None, speedup=False, wrong=not ok,
                   notes={"tritonnn": note})
        # -- memory -------------------------------------------------------------------------
        mib = 2.0 ** 20
        logit_bytes = n * v * (2 if dname in ("bfloat16", "float16") else 4)
        rdef = "(peak extra - gradients) / logits bytes"
        if sw.gpu:
            for impl, fn in (("torch", f_torch), ("tritonnn", f_tn)):
                extra, res = _peak_extra_gpu(fn)
                extra -= _grad_bytes(res)
                del res
                sw.add("peak extra memory", shape, dname, impl, throughput=extra / mib,
                       throughput_unit="MiB",
                       throughput_formula="max_memory_allocated - before - gradients",
                       ratio=extra / logit_bytes, ratio_def=rdef,
                       target=MEMORY_TARGET if impl == "tritonnn" else None,
                       note=f"full logits {logit_bytes / mib:.1f} MiB; {_sums(n, hidden, v, dt)}"
                       if impl == "tritonnn" else "")
        elif sw.device == "cpu":
            extra, res = _peak_extra_host(f_tn)
            extra -= _grad_bytes(res)
            del res
            sw.add("peak extra memory", shape, dname, "tritonnn", throughput=extra / mib,
                   throughput_unit="MiB", throughput_formula="tracemalloc peak - before - "
                                                             "gradients",
                   ratio=extra / logit_bytes, ratio_def=rdef,
                   note=f"full logits {logit_bytes / mib:.1f} MiB; numpy allocations via "
                        f"tracemalloc (torch's are not traced)")
        del th, tw, tb, ty, ph, pw, pb, py
    return C.finish(sw, out)


if __name__ == "__main__":
    sys.exit(C.script_main(run, __doc__))
