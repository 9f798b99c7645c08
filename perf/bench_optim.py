"""Optimizer steps: one SGD-momentum step and one AdamW step over a 4-layer MLP's parameters.

Parameters shaped like a 4-layer MLP of width W (four W x W weights and four W biases,
float32): W = 1024 on cpu, 8192 on cuda (1 GiB of parameters). Gradients are set once (for
tritonnn into the optimizer's flat gradient buffer, where ``backward()`` writes them);
every call is one ``opt.step()`` (tritonnn: one launch over the flat buffers) against
``torch.optim`` with ``foreach=True`` (the baseline), and on the GPU also AdamW with
``fused=True``, beside. Hyper-parameters: SGD lr 0.01, momentum 0.9; AdamW lr 1e-3,
betas (0.9, 0.999), eps 1e-8, weight decay 0.01. Check: the change of the parameters over
the first two steps (momentum/moments initialised, then used) equals torch's, on the first
and last rows of every parameter.
cuda target: >= 1x torch foreach; cpu: reported.
GB/s = bytes touched / t: SGD-momentum 5*P*b (read p, g, buf; write p, buf), AdamW 7*P*b
(read p, g, m, v; write p, m, v); P the parameter count, b the element size.
"""
from __future__ import annotations

import sys

import numpy as np

import tritonnn as tn

from . import common as C

FAMILY = "optim"
GPU_TARGET = C.Target(">=", 1.0)        # t(torch foreach) / t(tritonnn)
SGD_KW = dict(lr=0.01, momentum=0.9)
ADAMW_KW = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
CHECK_ROWS = 8


def _dims(sw):
    if sw.tiny:
        return (50, 64, 33, 17, 10)
    return (8192,) * 5 if sw.gpu else (1024,) * 5


def _arrays(dims, rng):
    """(parameters, gradients) as float32 numpy arrays: per layer a weight and a bias."""
    shapes = [s for a, b in zip(dims[:-1], dims[1:]) for s in ((b, a), (b,))]
    params = [C.pooled_normal(rng, s, scale=0.05) for s in shapes]
    grads = [C.pooled_normal(rng, s, scale=0.01) for s in shapes]
    return params, grads


def _bands(params):
    """Host copies of the first and last rows of every parameter."""
    out = []
    for p in params:
        p = p.detach()
        if p.ndim == 1 or p.shape[0] <= 2 * CHECK_ROWS:
            out.append(C.host(p))
        else:
            out += [C.host(p[:CHECK_ROWS]), C.host(p[p.shape[0] - CHECK_ROWS:])]
    return out


def _delta_check(impls, steps=2):
    """Take ``steps`` steps with each (params, step); compare tritonnn's parameter change
    with the baseline's (the first entry)."""
    deltas = []
    for params, step in impls:
        before = _bands(params)
        for _ in range(steps):
            step()
        deltas.append([a - b for a, b in zip(_bands(params), before)])
    tol, errs = 1e-4, []
    for t, b in zip(deltas[1], deltas[0]):
        scale = max(float(np.max(np.abs(b))), 1e-30)
        finite = bool(np.all(np.isfinite(t)))
        errs.append(C.max_abs_diff(t, b) / scale if finite and t.shape == b.shape else np.inf)
    ok = max(errs) <= tol
    return ok, (f"max rel err of the update {max(errs):.2g} over {len(errs)} bands"
                + ("" if ok else " WRONG"))


def run(device="auto", quick=False, out=None):
    import torch

    sw = C.Sweep(FAMILY, device, quick)
    tdev = sw.torch_device
    dims = _dims(sw)
    params, grads = _arrays(dims, np.random.default_rng(0))
    count = sum(p.size for p in params)
    shape = "x".join(str(d) for d in dims)          # layer widths, as the train_step sweep

    def tn_params():
        ps = [C.to_tn(p, sw.device, requires_grad=True) for p in params]
        for p, g in zip(ps, grads):
            p.grad = C.to_tn(g, sw.device)
        return ps

    def torch_params():
        ps = [C.to_torch(p, tdev, requires_grad=True) for p in params]
        for p, g in zip(ps, grads):
            p.grad = C.to_torch(g, tdev)
        return ps

    for case, tn_opt, torch_opt, kw, arrays in (   # arrays: read or written per element
            ("sgd momentum step", tn.optim.SGD, torch.optim.SGD, SGD_KW, 5),
            ("adamw step", tn.optim.AdamW, torch.optim.AdamW, ADAMW_KW, 7)):
        tp, pp = tn_params(), torch_params()
        opt, topt = tn_opt(tp, **kw), torch_opt(pp, foreach=True, **kw)
        # the gradients into the flat buffer (zero_grad(set_to_none=False) makes each one
        # its view), as backward() leaves them: no copy per parameter at each step
        mine = [p.grad for p in tp]
        opt.zero_grad(set_to_none=False)
        for p, g in zip(tp, mine):
            p.grad.copy_(g)
        impls = [(pp, topt.step), (tp, opt.step)]
        fns = {"torch (foreach)": topt.step, "tritonnn": opt.step}
        fused = None
        if sw.gpu and case == "adamw step":
            fused = torch_opt(torch_params(), fused=True, **kw)
            fns["torch (fused)"] = fused.step
        ok, note = _delta_check(impls)
        timings = sw.time(fns)
        work = C.Work(float(arrays * count * 4), "GB/s", f"{arrays}*P*b/t")
        sw.compare(case, shape, "float32", timings, "torch (foreach)", work,
                   GPU_TARGET if sw.device == "cuda" else None, speedup=True, wrong=not ok,
                   notes={"tritonnn": note, "torch (foreach)": f"P = {count} parameters"})
        del tp, pp, opt, topt, impls, fns, fused
    return C.finish(sw, out)


if __name__ == "__main__":
    sys.exit(C.script_main(run, __doc__))
