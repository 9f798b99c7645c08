"""One rank of the allreduce sweep: ``bench_allreduce`` starts W of them under torchrun.

    python -m torch.distributed.run --standalone --nproc-per-node W \\
        -m tritonnn.perf.dist_worker --device cpu --result R.json [--parts allreduce,step] [--quick]

Never run alone: it joins the job with ``tn.distributed.init()``. Rank 0 writes what the
ranks measured to ``R.json`` (``R.json.started<rank>`` marks that a rank began, so the
launcher can tell "the ranks never ran" from "they failed"). Two parts:

``allreduce``  ``tn.distributed.all_reduce`` (ops "sum" and "mean") of float32 tensors of
    4 KiB ... 64 MiB against ``torch.distributed.all_reduce`` of a torch tensor of the same
    size on the same process group; both checked against the exact reduced values.
``step``       one SGD-momentum step of the MLP of ``bench_train_step`` (global batch split
    over the ranks) wrapped in ``tn.nn.parallel.DistributedDataParallel``, against torch's
    ``DistributedDataParallel`` of its twin (same weights, same shards): default buckets,
    small buckets, and the gradient all-reduce skipped (``no_sync()``; the difference is
    the communication the step does not hide). Checked: both libraries' losses over the
    first steps, and every rank's tritonnn parameters identical afterwards.

Timing in lockstep. Every rank must issue the same collectives in the same order, so the
loop counts cannot come from each rank's own clock (as ``common.time_host`` does): one timed
call is agreed on (the slowest rank's), every rank derives the same counts from it, each
sample starts after a barrier, and a sample's time is the slowest rank's (a collective ends
when its last rank does).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time

import numpy as np

import tritonnn as tn

from . import bench_train_step as TS
from . import common as C

# message sizes of the all-reduce sweep, in bytes (float32: bytes / 4 elements)
SIZES = tuple(4 << (10 + 2 * k) for k in range(8))          # 4 KiB, 16 KiB, ..., 64 MiB
QUICK_SIZES = (4 << 10, 64 << 10)
OPS = ("sum", "mean")
CHECK_STEPS = 3         # quick: 2 (the second step's loss follows an averaged update)
LOSS_TOL = 1e-4         # relative, as bench_train_step's check
PATTERN = 251           # rank r contributes (i % PATTERN) + r: small integers, sums exact


def size_label(nbytes):
    for unit, shift in (("MiB", 20), ("KiB", 10)):
        if nbytes >= 1 << shift and nbytes % (1 << shift) == 0:
            return f"{nbytes >> shift}{unit}"
    return f"{nbytes}B"


# ==============================================================================================
# timing in lockstep
# ==============================================================================================


class Lockstep:
    """Times callables that run collectives, with the same loop counts on every rank."""

    def __init__(self, quick, sync):
        import torch
        import torch.distributed as dist
        self.torch, self.dist = torch, dist
        self.quick, self.sync = quick, sync

    def max_over_ranks(self, values):
        """Element-wise maximum over the ranks of a list of floats (on the host, gloo)."""
        t = self.torch.tensor(values, dtype=self.torch.float64)
        self.dist.all_reduce(t, op=self.dist.ReduceOp.MAX)
        return t.tolist()

    def time(self, fns: dict, budget_s=None) -> dict:
        """name -> (median, p20, p80, samples) in microseconds per call.

        The same plan as ``common.time_host`` (warm-up, a sample of at least ``min_sample``,
        chunks of samples per implementation in passes), its counts agreed on by every rank.
        """
        min_sample = 2e-4 if self.quick else 2e-3
        passes, min_chunk, max_chunk = (1, 3, 8) if self.quick else (3, 3, 60)
        budget_s = (0.05 if self.quick else 1.5) if budget_s is None else budget_s
        inner, chunk = {}, {}
        for name, fn in fns.items():
            for _ in range(0 if self.quick else 2):
                fn()
            self.sync()
            self.dist.barrier()
            t0 = time.perf_counter()        # quick: the warm-up call sizes the loop
            fn()
            self.sync()
            once = self.max_over_ranks([max(time.perf_counter() - t0, 1e-7)])[0]
            inner[name] = max(1, math.ceil(min_sample / once))
            per_sample = once * inner[name]
            chunk[name] = int(min(max_chunk, max(min_chunk,
                                                 budget_s / (passes * len(fns) * per_sample))))
        samples = {name: [] for name in fns}
        for _ in range(passes):
            for name, fn in fns.items():
                n = inner[name]
                if passes > 1:          # this library's first call after another's
                    fn()
                    self.sync()
                for _ in range(chunk[name]):
                    self.dist.barrier()
                    t0 = time.perf_counter()
                    for _ in range(n):
                        fn()
                    self.sync()
                    samples[name].append((time.perf_counter() - t0) / n)
        out = {}
        for name, s in samples.items():
            us = np.asarray(self.max_over_ranks(s)) * 1e6     # each sample: the slowest rank's
            p20, p50, p80 = np.percentile(us, [20, 50, 80])
            out[name] = [float(p50), float(p20), float(p80), len(us)]
        return out


# ==============================================================================================
# part 1: all_reduce by message size
# ==============================================================================================


def _torch_mean(dist, tdev):
    """How a torch user averages over the ranks: ``ReduceOp.AVG`` where the backend has it
    (NCCL; gloo in recent torch), else a sum and a division. Probed alike on every rank."""
    import torch
    probe = torch.ones(1, device=tdev)
    try:
        dist.all_reduce(probe, op=dist.ReduceOp.AVG)
        return "avg"
    except (RuntimeError, ValueError):
        return "sum+div"


def allreduce_part(args, world, device, tdev, timer):
    import torch
    import torch.distributed as dist

    rank = dist.get_rank()
    mean_how = _torch_mean(dist, tdev)

    def torch_reduce(t, op):
        if op == "sum":
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        elif mean_how == "avg":
            dist.all_reduce(t, op=dist.ReduceOp.AVG)
        else:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            t.div_(world)

    def calls(x, xt, op):
        return {"torch": lambda: torch_reduce(xt, op),
                "tritonnn": lambda: tn.distributed.all_reduce(x, op)}

    cases = []
    for op in OPS:
        for nbytes in (QUICK_SIZES if args.quick else SIZES):
            n = nbytes // 4
            base = (np.arange(n, dtype=np.int64) % PATTERN).astype(np.float32)
            mine = base + np.float32(rank)
            shift = world * (world - 1) / 2
            want = world * base + shift if op == "sum" else base + shift / world
            # the check: one reduction of known values by each library
            x = tn.tensor(mine, device=device)
            tn.distributed.all_reduce(x, op)
            xt = torch.from_numpy(mine.copy()).to(tdev)
            torch_reduce(xt, op)
            ok_tn, note_tn = C.close(x.numpy(), want, rtol=1e-6, atol=0)
            ok_t, note_t = C.close(xt.cpu().numpy(), want, rtol=1e-6, atol=0)
            # every rank's verdict: a wrong result on any rank is wrong
            bad = timer.max_over_ranks([float(not ok_tn), float(not ok_t)])
            ok_tn, ok_t = bad[0] == 0, bad[1] == 0
            timings = timer.time(calls(x, xt, op), budget_s=None if args.quick else 1.5)
            how = f"mean as {mean_how}; " if op == "mean" else ""
            cases.append({"part": "allreduce", "op": op, "bytes": nbytes,
                          "timings": timings, "ok": ok_tn and ok_t,
                          "notes": {"tritonnn": f"values (rank 0) {note_tn}"
                                                + ("" if ok_tn else " WRONG on some rank"),
                                    "torch": f"{how}values (rank 0) {note_t}"
                                             + ("" if ok_t else " WRONG on some rank")}})
    return cases


# ==============================================================================================
# part 2: the data-parallel step, all-reduce on and skipped
# ==============================================================================================


def _param_digest(model):
    h = hashlib.blake2b(digest_size=8)
    for p in model.parameters():
        h.update(np.ascontiguousarray(p.detach().to("cpu").numpy()).tobytes())
    return h.hexdigest()


def bucket_bytes(ddp, tddp):
    """The gradient bytes of each bucket, in the order they are reduced: tritonnn's (from its
    wrapper's bucket lists) and torch's (its DDP logging data, after the rebuild that
    follows the first step; empty if this torch has no such record)."""
    mine = [sum(ddp._named[i][1].numel() * ddp._named[i][1].dtype.itemsize for i in b)
            for b in ddp._buckets]
    try:
        data = tddp._get_ddp_logging_data()
        text = data.get("rebuilt_bucket_sizes") or data.get("bucket_sizes") or ""
        theirs = [int(v) for v in str(text).replace(",", " ").split()]
    except (AttributeError, RuntimeError, ValueError):
        theirs = []
    return mine, theirs


def step_part(args, world, device, gpu, timer):
    import torch
    import torch.distributed as dist

    rank = dist.get_rank()
    dims, batch = TS._dims(args.quick)
    if batch % world:
        raise ValueError(f"global batch {batch} does not split over {world} ranks")
    per = batch // world
    rows = slice(rank * per, (rank + 1) * per)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    # small buckets: the second layer's weight fills one, so the buckets of the later layers
    # can start while the first layer's backward still runs (both libraries' MB is 2^20 B)
    small_mb = dims[1] * dims[2] * 4 / (1 << 20)

    def replicas(bucket_cap_mb):
        """A tritonnn DDP step and a torch DDP step of twin models. The same seed on every
        rank: the same weights and the same global batch, of which each rank keeps its own
        rows (DDP's broadcast from rank 0 then changes nothing)."""
        (model, opt, tx, ty), (tmodel, topt, px, py) = TS.build(device, dims, batch)
        ddp = tn.nn.parallel.DistributedDataParallel(model, bucket_cap_mb=bucket_cap_mb)
        tddp = torch.nn.parallel.DistributedDataParallel(
            tmodel, device_ids=[local] if gpu else None, bucket_cap_mb=bucket_cap_mb)
        f_tn, f_torch = TS.step_fns((ddp, opt, tx[rows], ty[rows]),
                                    (tddp, topt, px[rows], py[rows]))
        return ddp, tddp, f_tn, f_torch

    ddp, tddp, f_tn, f_torch = replicas(25.0)       # both libraries' default
    ddp_s, tddp_s, f_tn_s, f_torch_s = replicas(small_mb)

    def skipped(wrapper, f):
        def step():
            with wrapper.no_sync():
                return f()
        return step

    # checks: the first steps' losses, tritonnn against torch (and each library's small
    # buckets against its default ones: the same averages, so the same losses), on every
    # rank; the mean over the ranks (the global batch's loss, compared by the launcher with
    # the 1-rank job); every rank's tritonnn parameters alike
    losses, errs, errs_s = [], [], []

    def rel(a, b):
        return abs(a - b) / max(abs(b), 1e-30) if math.isfinite(a) else math.inf
    for _ in range(2 if args.quick else CHECK_STEPS):
        a, b = float(C.host(f_tn())), float(C.host(f_torch()))
        a_s, b_s = float(C.host(f_tn_s())), float(C.host(f_torch_s()))
        losses.append(a)
        errs.append(rel(a, b))
        errs_s += [rel(a_s, a), rel(b_s, b)]
    ok = max(errs + errs_s) <= LOSS_TOL
    total = torch.tensor(losses, dtype=torch.float64)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    digests = [None] * world
    dist.all_gather_object(digests, _param_digest(ddp.module))
    same = len(set(digests)) == 1
    ok = timer.max_over_ranks([float(not ok)])[0] == 0 and same
    note = (f"losses of {len(losses)} steps vs torch DDP: max rel err {max(errs):.2g}, "
            f"small buckets vs default {max(errs_s):.2g}"
            + ("" if ok else " WRONG (on some rank)")
            + ("; replicas identical" if same else "; replicas DIFFER WRONG"))

    # how many buckets the last synced backward started while it was still walking (the
    # rest start when it returns); None where the wrapper does not count them
    overlapped = [getattr(d, "overlapped", None) for d in (ddp, ddp_s)]
    timings = timer.time({"torch": f_torch, "tritonnn": f_tn,
                          "torch small buckets": f_torch_s, "tritonnn small buckets": f_tn_s,
                          "torch no_sync": skipped(tddp, f_torch),
                          "tritonnn no_sync": skipped(ddp, f_tn)},
                         budget_s=None if args.quick else 4.0)
    return [{"part": "step", "dims": list(dims), "batch": batch, "per_rank": per,
             "cap_mb": 25.0, "buckets": bucket_bytes(ddp, tddp),
             "small_cap_mb": small_mb, "small_buckets": bucket_bytes(ddp_s, tddp_s),
             "overlapped": overlapped,
             "timings": timings, "ok": ok, "note": note,
             "global_losses": (total / world).tolist()}]


# ==============================================================================================
# the rank's main
# ==============================================================================================


def _write(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--result", required=True)
    p.add_argument("--parts", default="allreduce,step")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--timeout", type=float, default=300.0)
    args = p.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    open(f"{args.result}.started{rank}", "w").close()
    try:
        tn.distributed.init(timeout=args.timeout)
    except tn.DistributedError as e:
        if rank == 0:
            _write(args.result, {"skipped": f"tn.distributed.init failed: {e}"})
        return 0 if rank == 0 else 1
    import torch

    world = tn.distributed.world_size()
    gpu = args.device == "cuda" and not C.interpreting()
    tdev = "cuda" if gpu else "cpu"

    def sync():
        if gpu:
            tn.cuda.synchronize()
            torch.cuda.synchronize()
    timer = Lockstep(args.quick, sync)
    backend = "nccl" if gpu else "gloo"         # what serves this device's tensors
    cases = []
    parts = args.parts.split(",")
    if "allreduce" in parts:
        cases += allreduce_part(args, world, args.device, tdev, timer)
    if "step" in parts:
        cases += step_part(args, world, args.device, gpu, timer)
    if rank == 0:
        _write(args.result, {"world_size": world, "backend": backend,
                             "threads": C.thread_settings(), "cases": cases})
    tn.distributed.barrier()
    tn.distributed.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
