"""Random numbers: ``tn.rand`` / ``tn.randn`` (Philox) against the baseline's generator.

cuda: against ``torch.rand`` / ``torch.randn`` on the GPU, 2^20, 2^23 and 2^26 float32
numbers; target >= 0.8x torch's speed. cpu: against numpy's ``Generator.random`` /
``standard_normal`` (float32), torch beside; 2^20 and 2^22 numbers (tritonnn's numpy Philox
costs ~0.2 us a number: 2^26 would take minutes per case).
Checks (the values can't equal another generator's): mean and standard deviation within
6 standard errors of U[0, 1)'s / N(0, 1)'s, rand inside [0, 1), everything finite;
``tn.manual_seed`` reproduces a draw and the next draw differs; on cuda, the head and the
tail (the masked last block) equal the cpu device's draw of the same counters.
GB/s = n*b / t (the numbers written).
"""
from __future__ import annotations

import math
import sys

import numpy as np

import tritonnn as tn

from . import common as C

FAMILY = "random"
GPU_TARGET = C.Target(">=", 0.8)        # t(torch) / t(tritonnn)
SEED = 1234
BAND = 1 << 16                          # cuda: numbers compared at each end
STATS = 1 << 22                         # cuda: numbers in each end's statistics
MOMENTS = {"rand": (0.5, math.sqrt(1 / 12)), "randn": (0.0, 1.0)}


def _sizes(sw):
    if sw.tiny:
        return [4096 + 3]
    if sw.gpu:
        return [1 << 20, 1 << 23, 1 << 26]
    return [1 << 20, 1 << 22]


def _stats_check(op, a):
    """Moments of the host sample ``a`` against the distribution's; range; finiteness."""
    mu, sigma = MOMENTS[op]
    k = a.size
    m, s = float(a.mean()), float(a.std())
    bound = 6.0 * sigma / math.sqrt(k)
    ok = bool(np.all(np.isfinite(a))) and abs(m - mu) <= bound and abs(s - sigma) <= bound
    if op == "rand":
        ok = ok and float(a.min()) >= 0.0 and float(a.max()) < 1.0
    return ok, f"mean {m:.4f} std {s:.4f}" + ("" if ok else " WRONG")


def _ends(t, k):
    """Host float64 copies of the first and last ``k`` numbers (all, when short)."""
    n = t.shape[0]
    return [C.host(t)] if n <= 2 * k else [C.host(t[:k]), C.host(t[n - k:])]


def _checks(sw, op, n, draw):
    """(ok, note) of the statistics, the seeding and (cuda) the cpu twin of an n-number draw."""
    tn.manual_seed(SEED)
    a = draw(n)
    tn.manual_seed(SEED)
    b = draw(n)
    c = draw(n)
    k = n if sw.device == "cpu" else min(n, STATS)
    ea, eb, ec = _ends(a, k), _ends(b, k), _ends(c, k)
    checks = [_stats_check(op, np.concatenate(ea))]
    same = all(np.array_equal(x, y) for x, y in zip(ea, eb))
    differ = not any(np.array_equal(x, y) for x, y in zip(eb, ec))
    checks.append((same and differ, "manual_seed reproduces" if same and differ else
                   f"manual_seed: same draw {same}, next draw differs {differ} WRONG"))
    if sw.device == "cuda":
        # the same counters on the cpu device: the first numbers, then (after a cuda draw that
        # advances the stream by a multiple of 4) the last ones
        head = min(n, BAND)
        tail = n - (n - head) // 4 * 4
        tn.manual_seed(SEED)
        cpu_head = C.host(draw(head, "cpu"))
        tn.manual_seed(SEED)
        if n > tail:
            draw(n - tail)
        cpu_tail = C.host(draw(tail, "cpu"))
        atol = 1e-6 if op == "rand" else 1e-4      # randn: device log/cos/sqrt may differ
        for where, got, want in (("head", a[:head], cpu_head), ("tail", a[n - tail:], cpu_tail)):
            ok, what = C.close(C.host(got), want, 0, atol)
            checks.append((ok, f"{where} = cpu draw: {what}"))
    return C.all_close(checks)


def run(device="auto", quick=False, out=None):
    import torch

    sw = C.Sweep(FAMILY, device, quick)
    tdev = sw.torch_device
    gen = np.random.default_rng(0)
    torch.manual_seed(0)
    for n in _sizes(sw):
        for op, np_fn, torch_fn in (("rand", gen.random, torch.rand),
                                    ("randn", gen.standard_normal, torch.randn)):
            tn_fn = getattr(tn, op)

            def draw(m, dev=sw.device, tn_fn=tn_fn):
                return tn_fn(m, device=dev)

            def f_tn(tn_fn=tn_fn):
                return tn_fn(n, device=sw.device)

            def f_torch(torch_fn=torch_fn):
                return torch_fn(n, device=tdev)

            ok, note = _checks(sw, op, n, draw)
            if sw.device == "cuda":
                fns = {"torch": f_torch, "tritonnn": f_tn}
                base, target = "torch", GPU_TARGET
            else:
                fns = {"numpy": lambda np_fn=np_fn: np_fn(n, dtype=np.float32),
                       "tritonnn": f_tn, "torch": f_torch}
                base, target = "numpy", None
            timings = sw.time(fns)
            work = C.Work(4.0 * n, "GB/s", "n*b/t")
            sw.compare(op, (n,), "float32", timings, base, work, target, speedup=True,
                       wrong=not ok, notes={"tritonnn": note})
    return C.finish(sw, out)


if __name__ == "__main__":
    sys.exit(C.script_main(run, __doc__))
