"""Memory movement: a transposed copy, a join, a row gather and its backward (scatter-add).

tritonnn's Tensor API (no tape) against the same call in the baseline library:

* ``transpose copy``: ``t.T.contiguous()`` of a square fp32 matrix (a strided copy);
  (4096, 4096) on the GPU, (2048, 2048) on the host. GB/s = 2*bytes/t.
* ``cat dim=1``: ``tn.cat([a, b], dim=1)`` of two (4096, 2048) fp32 matrices.
  GB/s = 2*out_bytes/t.
* ``gather rows``: ``t[idx]``, ``idx`` an int64 index tensor of random rows (drawn with
  repeats) of a (262144, 256) fp32 table on the GPU ((32768, 256) and 8192 rows on the host).
  GB/s = 2*gathered_bytes/t. The Tensor API checks the index values on the host first
  (``ops._check_index_values``); the ``tritonnn backend`` row, beside it, times the
  backend's ``getitem`` alone (the gather kernels), so the two can be told apart.
* ``index_add``: the gather's backward, ``B.index_add(dst, (idx,), g)`` (the call the
  getitem backward makes), into a zero table allocated once (the kernel, not the zero fill;
  it accumulates across timed calls on every side alike); once with the gather's repeated
  rows (sorted segment sums), once with distinct rows (the direct scatter-add).
  GB/s = 3*gathered_bytes/t (read g, read and write the rows of dst).

cuda: against torch eager (``.contiguous()``, ``torch.cat``, indexing, ``index_add_``);
target >= 0.8x torch's speed for the copy, the join and the Tensor-API gather; index_add
reported. cpu: against numpy (``np.ascontiguousarray(a.T)``, ``np.concatenate``, ``a[idx]``,
``np.add.at``), torch beside. Every result is checked against the baseline's: the copies
exactly, index_add to 1e-5 of the largest magnitude (the order of the sums differs).
"""
from __future__ import annotations

import sys

import numpy as np

import tritonnn as tn

from . import common as C

FAMILY = "memory"
GPU_TARGET = C.Target(">=", 0.8)        # t(torch) / t(tritonnn)
ESIZE = 4                               # float32 everywhere


def _sizes(sw):
    """transpose (n, n), cat halves (rows, cols), gather table (rows, cols), gathered rows."""
    if sw.tiny:
        return dict(transpose=(67, 45), cat=(37, 20), table=(300, 24), nidx=50)
    if sw.gpu:
        return dict(transpose=(4096, 4096), cat=(4096, 2048), table=(262144, 256), nidx=65536)
    return dict(transpose=(2048, 2048), cat=(4096, 2048), table=(32768, 256), nidx=8192)


def _same(got, ref):
    """Exact agreement of two float32 host arrays (a copy moves bits, it computes nothing)."""
    got, ref = np.asarray(got), np.asarray(ref)
    if got.shape != ref.shape:
        return False, f"shape {got.shape} != {ref.shape} WRONG"
    bad = int(np.count_nonzero(got != ref))
    return bad == 0, (f"{bad} elements differ WRONG" if bad else "equal")


def _near(got, ref, tol=1e-5):
    """max|got - ref| <= tol * max|ref|, in float32 (the tables are large)."""
    got, ref = np.asarray(got, np.float32), np.asarray(ref, np.float32)
    if got.shape != ref.shape:
        return False, f"shape {got.shape} != {ref.shape} WRONG"
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    err = (float(np.max(np.abs(got - ref))) if ref.size else 0.0) / max(scale, 1e-30)
    ok = err <= tol and bool(np.all(np.isfinite(got)))
    return ok, f"rel err {err:.2g}" + ("" if ok else " WRONG")


def _np(t):
    """float32 host values of a tritonnn or torch tensor."""
    if hasattr(t, "_backend"):
        return t.detach().to("cpu").numpy()
    return t.detach().cpu().numpy()


def run(device="auto", quick=False, out=None):
    import torch

    sw = C.Sweep(FAMILY, device, quick)
    gpu_dev = sw.device == "cuda"
    tdev = sw.torch_device
    sz = _sizes(sw)
    rng = np.random.default_rng(0)
    base = "torch" if gpu_dev else "numpy"
    target = GPU_TARGET if gpu_dev else None

    def measure(case, shape, fns, ok_note, work, judged=True, extra=None):
        """Time ``fns`` (impl -> callable; numpy dropped on cuda) and add the case's rows."""
        if gpu_dev:
            fns = {k: v for k, v in fns.items() if k != "numpy"}
            fns = {"torch": fns.pop("torch"), **fns}
        timings = sw.time(fns)
        ok, note = ok_note
        notes = {"tritonnn": note, **(extra or {})}
        sw.compare(case, shape, "float32", timings, base, work, target if judged else None,
                   speedup=True, wrong=not ok, notes=notes)

    def ref_of(f_np, f_torch):
        """The baseline's result as a float32 host array."""
        return _np(f_torch()) if gpu_dev else np.asarray(f_np())

    # -- (a) transposed copy ---------------------------------------------------------------------
    shape = sz["transpose"]
    x = C.pooled_normal(rng, shape)
    tx, px = C.to_tn(x, sw.device), C.to_torch(x, tdev)

    def f_tn():
        with tn.no_grad():
            return tx.T.contiguous()

    def f_torch():
        return px.T.contiguous()

    def f_np():
        return np.ascontiguousarray(x.T)

    ok_note = _same(_np(f_tn()), ref_of(f_np, f_torch))
    measure("transpose copy (.T.contiguous())", shape,
            {"numpy": f_np, "tritonnn": f_tn, "torch": f_torch}, ok_note,
            C.Work(2.0 * x.size * ESIZE, "GB/s", "2*bytes/t"))
    del tx, px, x

    # -- (b) cat along dim 1 ---------------------------------------------------------------------
    shape = sz["cat"]
    a, b = C.pooled_normal(rng, shape), C.pooled_normal(rng, shape, scale=2.0)
    ta, tb = C.to_tn(a, sw.device), C.to_tn(b, sw.device)
    pa, pb = C.to_torch(a, tdev), C.to_torch(b, tdev)

    def f_tn():
        with tn.no_grad():
            return tn.cat([ta, tb], dim=1)

    def f_torch():
        return torch.cat([pa, pb], dim=1)

    def f_np():
        return np.concatenate([a, b], axis=1)

    ok_note = _same(_np(f_tn()), ref_of(f_np, f_torch))
    measure("cat dim=1", (2,) + shape, {"numpy": f_np, "tritonnn": f_tn, "torch": f_torch},
            ok_note, C.Work(2.0 * 2 * a.size * ESIZE, "GB/s", "2*out_bytes/t"))
    del ta, tb, pa, pb, a, b

    # -- (c) row gather ----------------------------------------------------------------------------
    rows, cols = sz["table"]
    nidx = sz["nidx"]
    table = C.pooled_normal(rng, (rows, cols))
    idx = rng.integers(0, rows, nidx, dtype=np.int64)             # with repeats
    tt, pt = C.to_tn(table, sw.device), C.to_torch(table, tdev)
    ti = tn.tensor(idx, device=sw.device)
    pi = torch.from_numpy(idx).to(tdev)
    B = tt._backend
    gathered = float(nidx * cols * ESIZE)

    def f_tn():
        with tn.no_grad():
            return tt[ti]

    def f_tn_backend():
        return B.getitem(tt._data, (ti._data,))

    def f_torch():
        return pt[pi]

    def f_np():
        return table[idx]

    ref = ref_of(f_np, f_torch)
    ok_note = C.all_close([_same(_np(f_tn()), ref), _same(B.to_numpy(f_tn_backend()), ref)])
    del ref
    measure("gather rows t[idx]", (rows, cols, nidx),
            {"numpy": f_np, "tritonnn": f_tn, "tritonnn backend": f_tn_backend,
             "torch": f_torch}, ok_note,
            C.Work(2.0 * gathered, "GB/s", "2*gathered_bytes/t"),
            extra={"tritonnn backend": "backend getitem, no host index check"})

    # -- (d) the gather's backward: index_add into zeros -----------------------------------------
    g = C.pooled_normal(rng, (nidx, cols))
    tg, pg = C.to_tn(g, sw.device), C.to_torch(g, tdev)
    distinct = rng.permutation(rows)[:nidx].astype(np.int64)
    for label, ix in (("repeated rows", idx), ("distinct rows", distinct)):
        ti = tn.tensor(ix, device=sw.device)
        pi = torch.from_numpy(ix).to(tdev)
        # the check: each side once on a fresh zero table (numpy's only where it is the baseline)
        z_np = None
        if not gpu_dev:
            z_np = np.zeros((rows, cols), np.float32)
            np.add.at(z_np, ix, g)
        z_tn = B.index_add(B.full((rows, cols), 0, tn.float32), (ti._data,), tg._data)
        z_pt = torch.zeros((rows, cols), device=tdev).index_add_(0, pi, pg)
        ref = _np(z_pt) if gpu_dev else z_np
        ok_note = _near(B.to_numpy(z_tn), ref)
        del ref

        def f_tn(z=z_tn, ti=ti):
            return B.index_add(z, (ti._data,), tg._data)

        def f_torch(z=z_pt, pi=pi):
            return z.index_add_(0, pi, pg)

        def f_np(z=z_np, ix=ix):
            np.add.at(z, ix, g)
            return z

        measure(f"index_add ({label})", (rows, cols, nidx),
                {"numpy": f_np, "tritonnn": f_tn, "torch": f_torch}, ok_note,
                C.Work(3.0 * gathered, "GB/s", "3*gathered_bytes/t"), judged=False)
        del z_tn, z_pt, z_np
    del tt, pt, tg, pg
    return C.finish(sw, out)


if __name__ == "__main__":
    sys.exit(C.script_main(run, __doc__))
