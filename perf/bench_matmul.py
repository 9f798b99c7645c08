"""Matrix multiplication: tritonnn ``a @ b`` (Tensor API, no tape) against the baselines.

cpu   float32 squares 256..2048: tritonnn vs bare ``numpy.matmul`` on the same arrays
      (target: tritonnn time <= 1.1x numpy's), and torch CPU beside them.
cuda  bf16 cubes 4096 and 8192 vs ``torch.matmul`` (cuBLAS), target >= 90% of its
      throughput; float32 with TF32 allowed on both sides; MLP-layer shapes ``x @ w.T``.
TFLOP/s = 2*M*N*K / t.
"""
from __future__ import annotations

import sys

import numpy as np

import tritonnn as tn

from . import common as C

FAMILY = "matmul"
CPU_TARGET = C.Target("<=", 1.1)        # t(tritonnn) / t(numpy)
GPU_TARGET = C.Target(">=", 0.9)        # t(torch) / t(tritonnn) = throughput ratio


def _work(m, n, k):
    return C.Work(2.0 * m * n * k, "TFLOP/s", "2*M*N*K/t")


def _cases_cpu(quick):
    sizes = (64, 128) if quick else (256, 512, 1024, 2048)
    return [("square", n, n, n, False) for n in sizes]


def _cases_gpu(tiny):
    """(case, M, N, K, b transposed (x @ w.T), dtype name)."""
    if tiny:
        return [("square", 32, 32, 32, False, "bfloat16"), ("square tf32", 32, 32, 32, False, "float32"),
                ("mlp x@w.T", 48, 40, 24, True, "bfloat16")]
    cases = []
    for n in (4096, 8192):
        cases.append(("square", n, n, n, False, "bfloat16"))
    for n in (4096, 8192):
        cases.append(("square tf32", n, n, n, False, "float32"))
    for m, n, k in ((8192, 4096, 1024), (16384, 1024, 4096), (8192, 8192, 8192)):
        cases.append(("mlp x@w.T", m, n, k, True, "bfloat16"))
    return cases


def run_cpu(sw):
    import torch

    rng = np.random.default_rng(0)
    for case, m, n, k, _ in _cases_cpu(sw.quick):
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        ta, tb = tn.from_numpy(a), tn.from_numpy(b)      # the same arrays numpy multiplies
        pa, pb = torch.from_numpy(a), torch.from_numpy(b)

        def f_tn():
            with tn.no_grad():
                return ta @ tb
        ok, note = C.close(f_tn().numpy(), a.astype(np.float64) @ b, rtol=1e-3, atol=1e-3 * k ** 0.5)
        timings = sw.time({"numpy": lambda: np.matmul(a, b), "tritonnn": f_tn,
                           "torch": lambda: torch.matmul(pa, pb)})
        sw.compare(case, (m, n, k), "float32", timings, "numpy", _work(m, n, k), CPU_TARGET,
                   speedup=False, wrong=not ok, notes={"tritonnn": note})


def run_gpu(sw):
    import torch

    rng = np.random.default_rng(0)
    tdev = sw.torch_device
    for case, m, n, k, b_t, dname in _cases_gpu(sw.tiny):
        tf32 = dname == "float32"
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((n, k) if b_t else (k, n), dtype=np.float32)
        dt, tdt = getattr(tn, dname), getattr(torch, dname)
        ta, tb = C.to_tn(a, "cuda", dt), C.to_tn(b, "cuda", dt)
        pa, pb = C.to_torch(a, tdev, tdt), C.to_torch(b, tdev, tdt)
        tbm = tb.T if b_t else tb
        pbm = pb.T if b_t else pb
        prev_tn = tn.get_float32_matmul_precision()
        prev_torch = torch.get_float32_matmul_precision()
        try:
            if tf32:        # TF32 tensor cores allowed on both sides
                tn.set_float32_matmul_precision("high")
                torch.set_float32_matmul_precision("high")

            def f_tn():
                with tn.no_grad():
                    return ta @ tbm
            rows = min(m, 64)   # check a band of rows against float64 on the host
            got = C.host(f_tn()[:rows])
            ref = C.host(pa[:rows]) @ C.host(pbm)
            # bf16 output rounding (~2^-8 relative) and TF32 inputs (~2^-11) over K terms
            ok, note = C.close(got, ref, rtol=2e-2, atol=2e-2 * k ** 0.5)
            timings = sw.time({"torch": lambda: torch.matmul(pa, pbm), "tritonnn": f_tn})
        finally:
            tn.set_float32_matmul_precision(prev_tn)
            torch.set_float32_matmul_precision(prev_torch)
        shape = (m, n, k)
        sw.compare(case, shape, dname + (" (tf32)" if tf32 else ""), timings, "torch",
                   _work(m, n, k), GPU_TARGET, speedup=True, wrong=not ok, notes={"tritonnn": note})
        del ta, tb, pa, pb


def run(device="auto", quick=False, out=None):
    sw = C.Sweep(FAMILY, device, quick)
    (run_gpu if sw.device == "cuda" else run_cpu)(sw)
    return C.finish(sw, out)


if __name__ == "__main__":
    sys.exit(C.script_main(run, __doc__))
