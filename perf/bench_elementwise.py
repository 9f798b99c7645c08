"""Elementwise ops: unary (exp, sigmoid, tanh), binary (add, mul and mod by a broadcast row
vector, the comparison gt) and casts (float32 -> bfloat16 / float16), bound by memory
bandwidth.

Operands: ``x``, ``y`` of shape (n / 1024, 1024) and a row vector ``r`` of shape (1024,);
tritonnn's Tensor API (no tape) against the same expression in the baseline library.
cuda: against torch eager, fp32 and bf16; target >= 0.9x torch's speed for add and exp
(2^16, 2^20, 2^24 elements); the other ops at 2^24 elements, reported. cpu: against bare
numpy (``1 / (1 + exp(-x))`` for sigmoid, ``astype(ml_dtypes.bfloat16)`` for the cast),
torch beside; 2^16, 2^20, 2^24 elements, float32.
GB/s = bytes moved / t: unary 2*n*b, add 3*n*b, mul and mod (2*n + cols)*b, gt 2*n*b + n (bool
out), cast n*(b_in + b_out); b the element size.
"""
from __future__ import annotations

import sys
from typing import Callable, NamedTuple

import numpy as np

import tritonnn as tn

from . import common as C

FAMILY = "elementwise"
GPU_TARGET = C.Target(">=", 0.9)        # t(torch) / t(tritonnn)
TARGETED = ("add", "exp")               # the ops judged on the GPU
COLS = 1024
CHECK_ROWS = 1 << 10                    # GPU: compare this many head and tail rows


def _sigmoid_np(a):
    return 1.0 / (1.0 + np.exp(-a))


class Op(NamedTuple):
    call: Callable                  # call(lib, x, y, r), lib "tritonnn", "numpy" or "torch"
    nbytes: Callable                # nbytes(n, cols, b, b_out): bytes one call moves
    formula: str
    out_dtype: str | None = None    # None: the input's dtype


def _ops() -> dict:
    import ml_dtypes
    import torch

    unary = {"exp": (lambda t: t.exp(), np.exp, torch.exp),
             "sigmoid": (lambda t: t.sigmoid(), _sigmoid_np, torch.sigmoid),
             "tanh": (lambda t: t.tanh(), np.tanh, torch.tanh)}
    ops = {}
    for name, (f_tn, f_np, f_pt) in unary.items():
        fns = {"tritonnn": f_tn, "numpy": f_np, "torch": f_pt}
        ops[name] = Op(lambda lib, x, y, r, f=fns: f[lib](x),
                       lambda n, c, b, bo: 2 * n * b, "2*n*b/t")
    ops["add"] = Op(lambda lib, x, y, r: x + y, lambda n, c, b, bo: 3 * n * b, "3*n*b/t")
    ops["mul (row broadcast)"] = Op(lambda lib, x, y, r: x * r,
                                    lambda n, c, b, bo: (2 * n + c) * b, "(2*n+cols)*b/t")
    ops["mod (row broadcast)"] = Op(
        lambda lib, x, y, r: np.remainder(x, r) if lib == "numpy" else x % r,
        lambda n, c, b, bo: (2 * n + c) * b, "(2*n+cols)*b/t")
    ops["gt"] = Op(lambda lib, x, y, r: x > y, lambda n, c, b, bo: 2 * n * b + n,
                   "(2*n*b+n)/t", "bool")
    for low in ("bfloat16", "float16"):
        to = {"tritonnn": getattr(tn, low), "torch": getattr(torch, low),
              "numpy": ml_dtypes.bfloat16 if low == "bfloat16" else np.float16}

        def cast(lib, x, y, r, to=to):
            return x.astype(to[lib]) if lib == "numpy" else x.to(to[lib])
        ops[f"cast to {low}"] = Op(cast, lambda n, c, b, bo: n * (b + bo), "n*(b_in+b_out)/t",
                                   low)
    return ops


def _tolerance(op, dname):
    """(rtol, atol) of tritonnn's result against the baseline's."""
    if op.startswith("cast") or op == "gt":
        return 0.0, 0.0                         # both round to nearest even / exact
    if op in ("add", "mul (row broadcast)", "mod (row broadcast)"):
        return (0.0, 0.0) if dname == "float32" else (2.0 ** -8, 0.0)   # one bf16 rounding
    return (1e-5, 1e-6) if dname == "float32" else (1e-2, 1e-3)        # exp, sigmoid, tanh


def _cases(sw):
    """(elements, dtype name, op names)."""
    ops = list(_ops())
    if sw.tiny:
        cases = [(7 * 999, "float32", ops)]
        if sw.device == "cuda":
            cases.append((3 * 999, "bfloat16", [o for o in ops if not o.startswith("cast")]))
        return cases
    if sw.gpu:
        cases = []
        for dname in ("float32", "bfloat16"):
            kinds = [o for o in ops if dname == "float32" or not o.startswith("cast")]
            for n in (1 << 16, 1 << 20, 1 << 24):
                cases.append((n, dname, kinds if n == 1 << 24 else list(TARGETED)))
        return cases
    return [(n, "float32", ops) for n in (1 << 16, 1 << 20, 1 << 24)]


def _check(got, ref, tol):
    """tritonnn's tensor ``got`` against the baseline's ``ref`` (numpy or torch)."""
    rtol, atol = tol
    if isinstance(ref, np.ndarray):
        return C.close(C.host(got), np.asarray(ref, dtype=np.float64), rtol, atol)
    rows, k = got.shape[0], CHECK_ROWS          # head and tail rows (the masked last block)
    if rows <= 2 * k:
        return C.close(C.host(got), C.host(ref), rtol, atol)
    return C.all_close([C.close(C.host(got[:k]), C.host(ref[:k]), rtol, atol),
                        C.close(C.host(got[rows - k:]), C.host(ref[rows - k:]), rtol, atol)])


def run(device="auto", quick=False, out=None):
    import torch

    sw = C.Sweep(FAMILY, device, quick)
    ops = _ops()
    rng = np.random.default_rng(0)
    for n, dname, names in _cases(sw):
        cols = COLS if n % COLS == 0 else 999
        shape = (n // cols, cols)
        args = [C.pooled_normal(rng, s, dname) for s in (shape, shape, (cols,))]   # x, y, r
        dt, tdt = getattr(tn, dname), getattr(torch, dname)
        tn_args = [C.to_tn(a, sw.device, dt, rounded=True) for a in args]
        pt_args = [C.to_torch(a, sw.torch_device, tdt, rounded=True) for a in args]
        esize = 2 if dname == "bfloat16" else 4
        for name in names:
            op = ops[name]

            def f_tn(call=op.call):
                with tn.no_grad():
                    return call("tritonnn", *tn_args)

            def f_torch(call=op.call):
                return call("torch", *pt_args)

            def f_np(call=op.call):
                return call("numpy", *args)

            if sw.device == "cuda":
                ref = f_torch()
                fns = {"torch": f_torch, "tritonnn": f_tn}
                base = "torch"
                target = GPU_TARGET if name in TARGETED else None
            else:
                ref = f_np()
                fns = {"numpy": f_np, "tritonnn": f_tn, "torch": f_torch}
                base, target = "numpy", None
            ok, note = _check(f_tn(), ref, _tolerance(name, dname))
            del ref
            out_esize = {"bool": 1, "bfloat16": 2, "float16": 2, None: esize}[op.out_dtype]
            work = C.Work(float(op.nbytes(n, cols, esize, out_esize)), "GB/s", op.formula)
            timings = sw.time(fns)
            sw.compare(name, shape, dname, timings, base, work, target, speedup=True,
                       wrong=not ok, notes={"tritonnn": note})
        del tn_args, pt_args
    return C.finish(sw, out)


if __name__ == "__main__":
    sys.exit(C.script_main(run, __doc__))
