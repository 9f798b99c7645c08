"""Embedding lookups: ``F.embedding`` forward, and forward + the table's gradient, against torch.

tritonnn: ``out = F.embedding(idx, w)`` and ``tn.grad(out, [w], dy)``; torch:
``torch.nn.functional.embedding`` and ``torch.autograd.grad`` with the same ``dy``. The
token ids follow a Zipf law over the vocabulary (a few rows used thousands of times, most
rarely or never: what a language model's batch looks like), so the backward's sums of
repeated rows are exercised.

cuda: a 50,000 x 512 table, 8192 tokens (a (4, 2048) batch) and 32768 tokens, fp32 and
bf16; target >= 0.8x torch's speed for the forward (one gather). The backward groups the
tokens by row on the host for now (a sync, a counting sort, two uploads; issue 12 moves it
onto the device): reported, not judged. cpu: the same table in fp32, 8192 tokens, against
torch (numpy's ``w[idx]`` and ``np.add.at`` beside it).
GB/s = (2*T*D + [T*D + V*D])*bytes / t: the forward reads and writes T rows of D; the
backward reads T gradient rows and writes the whole V x D table.
Checks: the forward exactly; the gradient within 1e-5 of the largest magnitude (the order
of the sums differs from torch's) in fp32, 2e-2 in bf16, on the table's most used rows and
over the whole table.
"""
from __future__ import annotations

import sys

import numpy as np

import tritonnn as tn
import tritonnn.nn.functional as F

from . import common as C

FAMILY = "embedding"
GPU_TARGET = C.Target(">=", 0.8)        # t(torch) / t(tritonnn), forward only


def _cases(sw):
    """(vocab, dim, tokens, dtype names)."""
    if sw.tiny:
        return [(1000, 64, 300, ["float32"])]
    if sw.gpu:
        return [(50_000, 512, t, ["float32", "bfloat16"]) for t in (8192, 32768)]
    return [(50_000, 512, 8192, ["float32"])]


def _tokens(rng, vocab, n):
    """Zipf-distributed ids (exponent 1.1), shuffled over the vocabulary."""
    ranks = (rng.zipf(1.1, n) - 1) % vocab
    return rng.permutation(vocab)[ranks].astype(np.int64)


def _measure(sw, table, idx, dy, dname):
    import torch

    vocab, dim = table.shape
    n = idx.size
    tdev = sw.torch_device
    dt, tdt = getattr(tn, dname), getattr(torch, dname)
    esize = 2 if dname == "bfloat16" else 4
    tw = C.to_tn(table, sw.device, dt, requires_grad=True, rounded=True)
    ti = tn.tensor(idx, device=sw.device)
    tdy = C.to_tn(dy, sw.device, dt, rounded=True)
    pw = C.to_torch(table, tdev, tdt, requires_grad=True, rounded=True)
    pi = torch.from_numpy(idx).to(tdev)
    pdy = C.to_torch(dy, tdev, tdt, rounded=True)

    def fwd_tn():
        with tn.no_grad():
            return F.embedding(ti, tw)

    def fwd_torch():
        with torch.no_grad():
            return torch.nn.functional.embedding(pi, pw)

    def both_tn():
        out = F.embedding(ti, tw)
        return out, tn.grad(out, [tw], grad_outputs=tdy)[0]

    def both_torch():
        out = torch.nn.functional.embedding(pi, pw)
        return out, torch.autograd.grad(out, [pw], grad_outputs=pdy)[0]

    # checks: the forward moves bits; the gradient's sums may add in another order
    (y1, g1), (y2, g2) = both_tn(), both_torch()
    tol = 2e-2 if dname == "bfloat16" else 1e-5
    busy = np.unique(idx)[:: max(1, len(np.unique(idx)) // 256)]
    ok, note = C.all_close([C.close(C.host(y1), C.host(y2), 0, 0),
                            C.close_rel(C.host(g1)[busy], C.host(g2)[busy], tol),
                            C.close_rel(C.host(g1), C.host(g2), tol)])
    del y1, g1, y2, g2
    shape = (vocab, dim, n)
    rows = float(n * dim * esize)
    fns = {"torch": fwd_torch, "tritonnn": fwd_tn}
    if not sw.gpu:
        host_table = tw.detach().to(tn.float32).numpy()

        def fwd_np():
            return host_table[idx]
        fns = {"torch": fwd_torch, "numpy": fwd_np, "tritonnn": fwd_tn}
    sw.compare("forward", shape, dname, sw.time(fns), "torch",
               C.Work(2.0 * rows, "GB/s", "2*T*D*bytes/t"),
               GPU_TARGET if sw.gpu else None, speedup=True, wrong=not ok,
               notes={"tritonnn": note})
    fns = {"torch": both_torch, "tritonnn": both_tn}
    if not sw.gpu:
        host_dy = tdy.to(tn.float32).numpy()

        def both_np():
            y = host_table[idx]
            g = np.zeros((vocab, dim), np.float32)
            np.add.at(g, idx, host_dy)
            return y, g
        fns = {"torch": both_torch, "numpy": both_np, "tritonnn": both_tn}
    sw.compare("forward+backward", shape, dname, sw.time(fns), "torch",
               C.Work(3.0 * rows + float(vocab * dim * esize), "GB/s",
                      "(3*T*D + V*D)*bytes/t"),
               None, speedup=True, wrong=not ok,
               notes={"tritonnn": note + "; backward groups tokens on the host (issue 12)"})
    del tw, ti, tdy, pw, pi, pdy


def run(device="auto", quick=False, out=None):
    sw = C.Sweep(FAMILY, device, quick)
    rng = np.random.default_rng(0)
    for vocab, dim, n, dnames in _cases(sw):
        low = "bfloat16" if "bfloat16" in dnames else None
        table = C.pooled_normal(rng, (vocab, dim), low)
        idx = _tokens(rng, vocab, n)
        dy = C.pooled_normal(rng, (n, dim), low)
        for dname in dnames:
            _measure(sw, table, idx, dy, dname)
    return C.finish(sw, out)


if __name__ == "__main__":
    sys.exit(C.script_main(run, __doc__))
