"""Per-op overhead: ``a + b`` on two 8-element float32 tensors that require grad (tape on).

The work is nothing; the time is the framework's dispatch, tape recording and, on a GPU,
the kernel launch. cpu target: tritonnn no slower than torch eager (ratio >= 1). cuda:
the host's wall time per call (a loop of calls, synchronised at the end of each sample)
reported beside torch's; do_bench's device-side time is in the "device time" rows.
"""
from __future__ import annotations

import sys

import numpy as np

from . import common as C

FAMILY = "tiny_op"
CPU_TARGET = C.Target(">=", 1.0)        # t(torch) / t(tritonnn)


def run(device="auto", quick=False, out=None):
    sw = C.Sweep(FAMILY, device, quick)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(8, dtype=np.float32), rng.standard_normal(8, dtype=np.float32)
    ta, tb = C.to_tn(a, sw.device, requires_grad=True), C.to_tn(b, sw.device, requires_grad=True)
    pa = C.to_torch(a, sw.torch_device, requires_grad=True)
    pb = C.to_torch(b, sw.torch_device, requires_grad=True)
    ok, note = C.close(C.host(ta + tb), a.astype(np.float64) + b, 1e-6, 1e-6)
    fns = {"torch": lambda: pa + pb, "tritonnn": lambda: ta + tb}
    work = None
    if sw.gpu:
        timings = sw.time_host_loop(fns)
        sw.compare("add, tape on: host time per call", (8,), "float32", timings, "torch", work,
                   None, speedup=True, wrong=not ok, notes={"tritonnn": note})
        sw.compare("add, tape on: device time (do_bench)", (8,), "float32", sw.time(fns),
                   "torch", work, None, speedup=True)
    else:
        timings = sw.time(fns)
        sw.compare("add, tape on", (8,), "float32", timings, "torch", work,
                   CPU_TARGET if sw.device == "cpu" else None, speedup=True, wrong=not ok,
                   notes={"tritonnn": note})
    return C.finish(sw, out)


if __name__ == "__main__":
    sys.exit(C.script_main(run, __doc__))
