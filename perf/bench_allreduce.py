"""Data parallel: all_reduce bandwidth by message size, and the DDP step on 1 and 2 ranks.

The ranks are separate processes: this script starts them with torchrun's launcher
(``python -m torch.distributed.run --standalone --nproc-per-node W -m
tritonnn.perf.dist_worker``), one job after the other, and reads what rank 0 writes (a JSON
file). On "cpu" (gloo) every rank runs on one thread (``OMP/OPENBLAS/MKL_NUM_THREADS=1``
unless set: one core per rank, as one GPU per rank); a job of 2 ranks runs both parts below,
then a job of 1 rank (not in quick mode: each job costs seconds of process start-up) gives
the all_reduce's cost without a peer to wait for (our wrapper's overhead, measured clear of
the network) and the step's speed-up. On a GPU (NCCL) the ranks are min(2, GPUs); with one
GPU, one job of 1 rank.
Timing: host loops, in lockstep across the ranks (``dist_worker.Lockstep``), synchronized
at the end of each sample on a GPU.

all_reduce  ``tn.distributed.all_reduce(t, op)``, op "sum" and "mean", float32 tensors of
    4 KiB ... 64 MiB (quick: 4 and 64 KiB), against ``torch.distributed.all_reduce`` of a
    torch tensor of the same size on the same process group (the ratio t(torch) / t(tritonnn)
    is our wrapper's overhead: ~1x). Both results checked against the exact sums.
    busBW = 2*(W-1)/W * bytes / t (NCCL's convention: what each rank's link carries in a
    ring), algBW = bytes / t in the note; with one rank the throughput column is algBW.
ddp step    one SGD-momentum step (lr 0.01, momentum 0.9) of the 784-256-128-10 ReLU MLP,
    global batch 128 (64 per rank on 2 ranks), wrapped in
    ``tn.nn.parallel.DistributedDataParallel`` against torch's DDP of twin weights and the
    same shards: with the default buckets (25 MB: the whole gradient in one), with small
    ones (the second layer's weight fills one: 4 buckets, two of which can start during
    the first layer's backward), and with the all-reduce skipped (``no_sync()``).
    Communication share = (t(step) - t(no_sync step)) / t(step): the all-reduce time the
    backward does not hide. TFLOP/s = 6*B*weights/t, B the global batch. Checked: the losses
    of the first steps against torch's on every rank (and small buckets against default
    ones), every rank's parameters identical, and the 2-rank job's global losses (mean over
    the ranks) against the 1-rank job's.
Nothing is judged (no target): reported.

Where torch.distributed, its backend or a second process cannot run, the family gives one
``skipped`` row saying why, instead of failing the sweep.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile

from . import common as C
from .dist_worker import size_label

FAMILY = "allreduce"
RANKS = 2
WORKER = "tritonnn.perf.dist_worker"
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
LOSS_TOL = 1e-4


# ==============================================================================================
# launching the ranks
# ==============================================================================================


def why_not(sw) -> str | None:
    """Why the ranks cannot run here (None when they can)."""
    try:
        import torch.distributed as dist
        import torch.distributed.run  # noqa: F401  (the launcher)
    except ImportError as e:
        return f"torch.distributed cannot be imported: {e}"
    if not dist.is_available():
        return "this torch build has no torch.distributed"
    if sw.gpu and not dist.is_nccl_available():
        return "this torch build has no NCCL"
    if not dist.is_gloo_available():
        return "this torch build has no gloo"
    return None


def ranks_here(sw) -> int:
    if sw.gpu:
        import torch
        return max(1, min(RANKS, torch.cuda.device_count()))
    return RANKS


def launch(sw, world, parts, folder):
    """Run ``dist_worker``'s ``parts`` on ``world`` ranks under torchrun and wait for them:
    rank 0's JSON, or a string saying why the ranks could not run (a skip). Ranks that ran
    and failed raise, with the tail of their output."""
    path = os.path.join(folder, f"ranks{world}.json")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc-per-node", str(world), "-m", WORKER, "--device", sw.device,
           "--result", path, "--parts", ",".join(parts)] + (["--quick"] if sw.tiny else [])
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for v in THREAD_VARS:
        env.setdefault(v, "1")
    limit = 600 if sw.tiny else 1800
    what = f"{world} rank{'s' * (world > 1)}"
    with open(os.path.join(folder, f"ranks{world}.log"), "w+") as log:
        try:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
        except OSError as e:
            return f"could not start torchrun: {e}"
        try:
            rc = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            rc = None
        finally:
            if proc.poll() is None:         # timed out or interrupted: the launcher and its
                os.killpg(proc.pid, signal.SIGKILL)     # ranks, the session we started
                proc.wait()
        log.seek(0)
        tail = log.read()[-3000:]
    if rc is None:
        raise RuntimeError(f"{what} ran past {limit} s: {' '.join(cmd)}\n{tail}")
    if os.path.exists(path):
        with open(path) as f:
            data = json.load(f)
        if "skipped" in data:
            return data["skipped"]
        if rc == 0:
            return data
    if not any(os.path.exists(f"{path}.started{r}") for r in range(world)):
        last = tail.strip().splitlines()[-1:] or ["no output"]
        return f"torchrun could not start {what} (exit {rc}): {last[0]}"
    raise RuntimeError(f"{what} failed (exit {rc}): {' '.join(cmd)}\n{tail}")


# ==============================================================================================
# rows
# ==============================================================================================


def _timings(case, names=None):
    t = {k: C.Timing(*v) for k, v in case["timings"].items()}
    return t if names is None else {short: t[k] for short, k in names.items()}


def allreduce_rows(sw, data):
    world, backend = data["world_size"], data["backend"]
    for c in data["cases"]:
        if c["part"] != "allreduce":
            continue
        nbytes = c["bytes"]
        if world > 1:
            work = C.Work(2 * (world - 1) / world * nbytes, "GB/s", "busBW = 2*(W-1)/W*bytes/t")
        else:
            work = C.Work(float(nbytes), "GB/s", "algBW = bytes/t (1 rank: busBW is 0)")
        timings = _timings(c)
        notes = {impl: f"algBW {nbytes / t.seconds / 1e9:.3g} GB/s; {c['notes'][impl]}"
                 for impl, t in timings.items()}
        sw.compare(f"all_reduce {c['op']}, {world} rank{'s' * (world > 1)} ({backend})",
                   size_label(nbytes), "float32", timings, "torch", work, speedup=True,
                   wrong=not c["ok"], notes=notes)


def step_rows(sw, jobs):
    """The DDP step of every job (world size -> data), fewest ranks first: default buckets,
    small buckets, and the all-reduce skipped."""
    steps = {w: next(c for c in d["cases"] if c["part"] == "step")
             for w, d in jobs.items() if any(c["part"] == "step" for c in d["cases"])}
    for world in sorted(steps):
        c, backend = steps[world], jobs[world]["backend"]
        dims, batch = c["dims"], c["batch"]
        shape = f"{batch} ({c['per_rank']}/rank) x {'-'.join(map(str, dims))}"
        weights = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
        work = C.Work(6.0 * batch * weights, "TFLOP/s", "6*B*weights/t, B the global batch")
        t = _timings(c)
        ok = c["ok"]
        ranks = f"{world} rank{'s' * (world > 1)} ({backend})"
        if world > 1 and 1 in steps:
            same, how = C.close_rel(c["global_losses"], steps[1]["global_losses"], LOSS_TOL)
            ok = ok and same
        overlapped = c.get("overlapped") or [None, None]
        for variant, suffix, cap, buckets, early in (
                ("default", "", c["cap_mb"], c["buckets"], overlapped[0]),
                ("small", " small buckets", c["small_cap_mb"], c["small_buckets"],
                 overlapped[1])):
            notes = {}
            for lib, sizes in zip(("tritonnn", "torch"), buckets):
                mine = t[lib + suffix].seconds
                share = (mine - t[lib + " no_sync"].seconds) / mine
                notes[lib] = f"comm share {100 * share:.0f}% = (t - t(no_sync)) / t"
                if world > 1 and 1 in steps:
                    one = _timings(steps[1])[lib + suffix].seconds
                    notes[lib] += f"; {one / mine:.2f}x the 1-rank step's speed"
                notes[lib] += (f"; bucket_cap_mb {cap:.3g}: "
                               + (f"{len(sizes)} bucket(s) of {'+'.join(map(str, sizes))} B"
                                  if sizes else "buckets not reported"))
            if early is not None:
                notes["tritonnn"] += (f"; {early} of {len(buckets[0])} started during the "
                                      f"backward walk")
            if variant == "default":
                notes["tritonnn"] += "; " + c["note"]
                if world > 1 and 1 in steps:
                    notes["tritonnn"] += f"; global losses vs the 1-rank job {how}"
            case = f"ddp step, {ranks}" if variant == "default" else \
                f"ddp step, small buckets, {ranks}"
            sw.compare(case, shape, "float32",
                       _timings(c, {"torch": "torch" + suffix, "tritonnn": "tritonnn" + suffix}),
                       "torch", work, speedup=True, wrong=not ok, notes=notes)
        sw.compare(f"ddp step no_sync (all-reduce skipped), {ranks}", shape, "float32",
                   _timings(c, {"torch": "torch no_sync", "tritonnn": "tritonnn no_sync"}),
                   "torch", work, speedup=True, wrong=not ok,
                   notes={"tritonnn": "the same step inside ddp.no_sync(): no all-reduce"})


def bandwidth_png(rows, path):
    """Time per call (every job) and busBW (the job with the most ranks; algBW with one rank)
    against message size, log-log, per op and implementation: the latency-bound and the
    bandwidth-bound ends of the curve."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    ar = [r for r in rows if r.case.startswith("all_reduce") and r.median_us is not None]
    if not ar:
        return None
    curves = {}
    for r in ar:
        op, ranks = r.case.removeprefix("all_reduce ").split(", ", 1)
        curves.setdefault((ranks, r.impl, op), []).append((_bytes(r.shape), r))
    most = max((ranks for ranks, _, _ in curves), key=lambda r: int(r.split()[0]))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for (ranks, impl, op), pts in curves.items():
        pts.sort(key=lambda p: p[0])
        xs = [b for b, _ in pts]
        style = dict(marker="o", label=f"{impl}, {op}, {ranks}",
                     linestyle="--" if impl == "torch" else "-")
        axes[0].plot(xs, [r.median_us for _, r in pts], **style)
        if ranks == most:
            axes[1].plot(xs, [r.throughput for _, r in pts], **style)
    sizes = sorted({b for pts in curves.values() for b, _ in pts})
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sizes)
        ax.set_xticklabels([size_label(b) for b in sizes], fontsize=8)
        ax.set_xlabel("message size (float32)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("median time per all_reduce (us)")
    formula = next(r.throughput_formula for r in ar if r.case.endswith(most))
    axes[1].set_ylabel(f"GB/s: {formula}")
    r0 = ar[0]
    fig.suptitle(f"all_reduce on {r0.device}, {r0.threads}, {r0.date}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _bytes(label):
    for unit, shift in (("MiB", 20), ("KiB", 10), ("B", 0)):
        if label.endswith(unit):
            return int(label[:-len(unit)]) << shift
    raise ValueError(label)


# ==============================================================================================
# the family
# ==============================================================================================


def run(device="auto", quick=False, out=None):
    sw = C.Sweep(FAMILY, device, quick)
    why = why_not(sw)
    jobs = {}
    if why is None:
        world = ranks_here(sw)
        # the 1-rank job (the wrapper's overhead without a peer to wait for, the step's
        # speed-up) only in full runs: each job costs seconds of process start-up (torch
        # imported by the launcher and every rank), too many for a smoke test
        plan = [(world, ("allreduce", "step"))] + \
            ([(1, ("allreduce", "step"))] if world > 1 and not sw.tiny else [])
        with tempfile.TemporaryDirectory(prefix="tritonnn-allreduce-") as folder:
            for w, parts in plan:       # one after the other: each has the machine to itself
                got = launch(sw, w, parts, folder)
                if isinstance(got, str):
                    why = got
                    break
                jobs[w] = got
    if why is not None:
        print(f"{FAMILY}: skipped{' the 1-rank job' if jobs else ''}: {why}", file=sys.stderr)
    if not jobs:
        row = sw.add("skipped", "", "", "tritonnn", note=why)
        row.status = "skipped"
        return C.finish(sw, out)
    sw.meta["threads"] = f"{jobs[max(jobs)]['threads']} (each rank)"
    for w in sorted(jobs):
        allreduce_rows(sw, jobs[w])
    step_rows(sw, jobs)
    rows = C.finish(sw, out)
    if out is not None:
        bandwidth_png(rows, os.path.join(out, f"{FAMILY}-{sw.kind}-bandwidth.png"))
    return rows


if __name__ == "__main__":
    sys.exit(C.script_main(run, __doc__))
