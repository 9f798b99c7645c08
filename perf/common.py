"""Shared machinery of the perf/ sweeps: timers, result rows, targets, CSV/PNG/table writers.

Timing
    "cuda" on a real GPU: ``triton.testing.do_bench`` (CUDA events, L2 flushed before each
    run), its 50th/20th/80th percentiles. triton is imported only on that path.
    "cpu", and "cuda" through the Triton interpreter: ``time.perf_counter`` around a loop
    of calls long enough to dwarf the timer, after a warm-up; the implementations of one
    case are sampled round-robin so that load from other processes hits them alike.

Every row carries the device name, the versions and the date, so a CSV stands on its
own. torch appears in perf/ only as the baseline being measured against.
"""
from __future__ import annotations

import argparse
import csv
import datetime as _dt
import gc
import math
import os
import platform
import re
import sys
import time
from dataclasses import asdict, dataclass, fields
from importlib.metadata import PackageNotFoundError, version as _pkg_version

import numpy as np

import tritonnn as tn
from tritonnn.device import interpreting

# where results go without --out: a folder in the current working directory (the package
# itself may sit in a read-only site-packages; the results committed with the sources are
# refreshed with an explicit --out perf/results/<device>)
DEFAULT_RESULTS = "perf_results"

# ==============================================================================================
# machine and versions
# ==============================================================================================


def package_version(pkg) -> str:
    """The installed version of distribution ``pkg``, or "not installed"."""
    try:
        return _pkg_version(pkg)
    except PackageNotFoundError:
        return "not installed"


def versions() -> dict:
    return {"python": platform.python_version(), "numpy": np.__version__,
            "torch": package_version("torch"), "triton": package_version("triton"),
            "tritonnn": tn.__version__}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def resolve_device(device: str) -> str:
    """``auto`` -> "cuda" with a real GPU, else "cpu"; "cuda" is kept (interpreter or GPU)."""
    if device in (None, "auto"):
        return "cuda" if tn.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    return device


def cuda_problem() -> str | None:
    """Why device "cuda" can't run here (None when it can: real GPU or interpreter)."""
    try:
        tn.zeros(1, device="cuda").numpy()
    except Exception as e:  # noqa: BLE001  (DeviceError, or kernels not importable)
        return f"{type(e).__name__}: {e}"
    return None


def device_name(device: str) -> str:
    if device == "cuda":
        from tritonnn.kernels import buffers
        return buffers.device_name()        # the GPU's name, or "interpreter"
    return f"{cpu_model()} ({os.cpu_count()} cores)"


def slug(name: str) -> str:
    name = re.sub(r"\(.*?\)", "", name)     # drop "(2 cores)"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown"


_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def thread_settings() -> str:
    """The thread-count environment the host libraries run under, e.g. "default, 2 cores"."""
    set_ = [f"{v}={os.environ[v]}" for v in _THREAD_VARS if os.environ.get(v)]
    return f"{' '.join(set_) or 'default'}, {os.cpu_count()} cores"


def default_out(device: str) -> str:
    """``./perf_results/<device slug>``, absolute, under the current working directory."""
    name = device_name("cuda") if device == "cuda" else cpu_model()
    return os.path.join(os.path.abspath(DEFAULT_RESULTS), slug(name))


# ==============================================================================================
# timing
# ==============================================================================================


@dataclass
class Timing:
    median_us: float
    p20_us: float
    p80_us: float
    samples: int = 0

    @property
    def seconds(self):
        return self.median_us * 1e-6


def _from_samples(per_call_s) -> Timing:
    us = np.asarray(per_call_s, dtype=np.float64) * 1e6
    p20, p50, p80 = np.percentile(us, [20, 50, 80])
    return Timing(float(p50), float(p20), float(p80), len(us))


def _loop_seconds(fn, n):
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return time.perf_counter() - t0


def time_host(fns: dict, quick=False, budget_s=None, sync=None) -> dict:
    """Wall-clock timings of each callable in ``fns`` (name -> fn).

    Warm-up: two calls (one if quick; first-call costs: allocation, caches), then a timed call sizes an
    inner loop so that a sample lasts at least ``min_sample`` (timer noise << 1%). Samples
    are taken in passes; in each pass every implementation gets a chunk of consecutive
    samples, after one untimed call. Chunks (rather than switching every sample) keep one
    library's idle BLAS/OpenMP threads, which spin for a while after a call, from
    stealing the cores of the next one; passes spread load drift over all of them alike.
    ``sync`` (if given) is called at the end of every sample, for asynchronous devices.
    """
    min_sample = 2e-4 if quick else 2e-3
    passes, min_chunk, max_chunk = (1, 3, 8) if quick else (3, 3, 60)
    budget_s = (0.05 if quick else 1.5) if budget_s is None else budget_s
    sync = sync or (lambda: None)
    inner, chunk = {}, {}
    for name, fn in fns.items():
        for _ in range(1 if quick else 2):
            fn()
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        once = max(time.perf_counter() - t0, 1e-7)
        inner[name] = max(1, int(math.ceil(min_sample / once)))
        per_sample = once * inner[name]
        chunk[name] = int(min(max_chunk, max(min_chunk,
                                             budget_s / (passes * len(fns) * per_sample))))
    samples = {name: [] for name in fns}
    gc.collect()
    for _ in range(passes):
        for name, fn in fns.items():
            n = inner[name]
            if passes > 1:          # this library's first call after another's
                fn()
                sync()
            for _ in range(chunk[name]):
                t0 = time.perf_counter()
                for _ in range(n):
                    fn()
                sync()
                samples[name].append((time.perf_counter() - t0) / n)
    return {name: _from_samples(s) for name, s in samples.items()}


def time_gpu(fns: dict, quick=False) -> dict:
    """``triton.testing.do_bench`` of each callable: 50th, 20th, 80th percentiles (ms -> us)."""
    import triton.testing  # only on a real GPU
    warmup, rep = (5, 20) if quick else (25, 150)
    out = {}
    for name, fn in fns.items():
        q = triton.testing.do_bench(fn, warmup=warmup, rep=rep, quantiles=[0.5, 0.2, 0.8])
        if not isinstance(q, (list, tuple)):
            q = [q, q, q]
        p50, p20, p80 = (float(v) * 1e3 for v in q)
        out[name] = Timing(p50, p20, p80)
    return out


# ==============================================================================================
# rows, targets, throughput
# ==============================================================================================


@dataclass(frozen=True)
class Target:
    """A goal: ``on`` ("ratio" or "seconds") compared with ``op`` to ``value``."""
    op: str                 # ">=", "<=", "<"
    value: float
    on: str = "ratio"
    stretch: float | None = None

    def text(self):
        unit = " s" if self.on == "seconds" else "x"
        s = f"{self.op} {self.value:g}{unit}"
        return s + (f" (stretch {self.stretch:g}{unit})" if self.stretch is not None else "")

    def met(self, x, value=None) -> bool:
        v = self.value if value is None else value
        return {">=": x >= v, "<=": x <= v, "<": x < v, ">": x > v}[self.op]


@dataclass(frozen=True)
class Work:
    """What one call does, for throughput: ``amount`` FLOPs or bytes, and the formula used."""
    amount: float
    unit: str               # "TFLOP/s" or "GB/s"
    formula: str

    def rate(self, seconds):
        scale = 1e12 if self.unit.startswith("TFLOP") else 1e9
        return self.amount / seconds / scale


FIELDS = ("family", "case", "shape", "dtype", "impl", "median_us", "p20_us", "p80_us",
          "throughput", "throughput_unit", "throughput_formula", "baseline", "ratio",
          "ratio_def", "target", "status", "note", "device", "device_kind", "threads", "date",
          "python", "numpy", "torch", "triton", "tritonnn")


@dataclass
class Row:
    family: str
    case: str
    shape: str
    dtype: str
    impl: str                           # "tritonnn", "torch", "numpy", ...
    median_us: float | None = None
    p20_us: float | None = None
    p80_us: float | None = None
    throughput: float | None = None
    throughput_unit: str = ""
    throughput_formula: str = ""
    baseline: str = ""
    ratio: float | None = None
    ratio_def: str = ""
    target: str = ""
    status: str = "info"                # PASS, FAIL, info, not judged (...), FAIL (wrong result)
    note: str = ""
    device: str = ""
    device_kind: str = ""               # cpu, gpu, interpreter
    threads: str = ""                   # thread-count settings in force (env), cores
    date: str = ""
    python: str = ""
    numpy: str = ""
    torch: str = ""
    triton: str = ""
    tritonnn: str = ""


assert tuple(f.name for f in fields(Row)) == FIELDS


def max_abs_diff(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def close(a, b, rtol, atol) -> tuple[bool, str]:
    """Whether two results agree, and a short note ("max|diff| 1.2e-06")."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return False, f"shape {a.shape} != {b.shape}"
    ok = bool(np.allclose(a, b, rtol=rtol, atol=atol))
    return ok, f"max|diff| {max_abs_diff(a, b):.2g}" + ("" if ok else " WRONG")


def close_rel(a, b, tol) -> tuple[bool, str]:
    """Agreement relative to the reference's largest magnitude: max|a-b| <= tol * max|b|."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return False, f"shape {a.shape} != {b.shape}"
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    err = max_abs_diff(a, b) / max(scale, 1e-30)
    ok = bool(err <= tol) and bool(np.all(np.isfinite(a)))
    return ok, f"rel err {err:.2g}" + ("" if ok else " WRONG")


def all_close(checks) -> tuple[bool, str]:
    """Combine (ok, note) pairs: ok if all are, notes joined."""
    oks, notes = zip(*checks)
    return all(oks), "; ".join(notes)


# ==============================================================================================
# a sweep's context
# ==============================================================================================


class Sweep:
    """One family's run on one device: picks sizes, times, and collects rows.

    ``tiny`` is true in quick mode and under the interpreter (which is slow): sizes shrink
    and nothing is judged against a target (``status`` says so); results are still checked.
    """

    def __init__(self, family, device, quick):
        self.family = family
        self.device = resolve_device(device)
        self.interpreter = self.device == "cuda" and interpreting()
        self.gpu = self.device == "cuda" and not self.interpreter
        self.kind = "gpu" if self.gpu else ("interpreter" if self.interpreter else "cpu")
        self.quick = bool(quick)
        self.tiny = self.quick or self.interpreter
        if self.device == "cuda":
            problem = cuda_problem()
            if problem:
                raise RuntimeError(f"device cuda is not usable here: {problem}")
        self.meta = dict(device=device_name(self.device), device_kind=self.kind,
                         threads=thread_settings(),
                         date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                         **versions())
        self.rows: list[Row] = []

    # -- devices ----------------------------------------------------------------------------
    @property
    def torch_device(self):
        """Where the torch baseline runs: the GPU, or the host when there is none."""
        return "cuda" if self.gpu else "cpu"

    def sync(self):
        if self.gpu:
            from tritonnn.kernels import buffers
            buffers.synchronize()

    # -- timing ------------------------------------------------------------------------------
    def time(self, fns: dict, budget_s=None) -> dict:
        if self.gpu:
            return time_gpu(fns, quick=self.quick)
        return time_host(fns, quick=self.tiny, budget_s=budget_s)

    def time_host_loop(self, fns: dict, budget_s=None) -> dict:
        """Host wall clock even on a GPU (synchronising after each sample): launch overhead."""
        return time_host(fns, quick=self.tiny, budget_s=budget_s, sync=self.sync)

    # -- rows --------------------------------------------------------------------------------
    def _status(self, target, x, wrong):
        if wrong:
            return "FAIL (wrong result)"
        if target is None:
            return "info"
        if self.interpreter:
            return "not judged (interpreter)"
        if self.quick:
            return "not judged (quick)"
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return "FAIL (no value)"
        return "PASS" if target.met(x) else "FAIL"

    def add(self, case, shape, dtype, impl, timing: Timing | None = None, work: Work | None = None,
            baseline="", ratio=None, ratio_def="", target: Target | None = None, wrong=False,
            note="", throughput=None, throughput_unit="", throughput_formula=""):
        if timing is not None and work is not None:
            throughput = work.rate(timing.seconds)
            throughput_unit, throughput_formula = work.unit, work.formula
        judged = timing.seconds if (target is not None and target.on == "seconds") else ratio
        status = self._status(target, judged, wrong)
        if target is not None and target.stretch is not None and status == "PASS":
            status = "PASS (stretch met)" if target.met(judged, target.stretch) else "PASS"
        row = Row(family=self.family, case=case, shape=_shape_str(shape), dtype=str(dtype),
                  impl=impl,
                  median_us=None if timing is None else timing.median_us,
                  p20_us=None if timing is None else timing.p20_us,
                  p80_us=None if timing is None else timing.p80_us,
                  throughput=throughput, throughput_unit=throughput_unit,
                  throughput_formula=throughput_formula, baseline=baseline, ratio=ratio,
                  ratio_def=ratio_def, target="" if target is None else target.text(),
                  status=status, note=note, **self.meta)
        self.rows.append(row)
        return row

    def compare(self, case, shape, dtype, timings: dict, baseline: str, work: Work | None = None,
                target: Target | None = None, speedup=True, subject="tritonnn", wrong=False,
                notes=None):
        """Rows for every implementation of one case; ratios against ``baseline``'s time.

        ``speedup`` True: ratio = t(baseline) / t(impl) (above 1: faster than the baseline;
        for equal work this is also the throughput ratio). False: ratio = t(impl) /
        t(baseline) (below 1: faster). ``target`` applies to ``subject``'s row only.
        """
        notes = notes or {}
        tb = timings[baseline].seconds
        rdef = (f"t({baseline}) / t(impl)" if speedup else f"t(impl) / t({baseline})")
        for impl, t in timings.items():
            if impl == baseline:
                self.add(case, shape, dtype, impl, t, work, baseline="", note=notes.get(impl, ""))
                continue
            ratio = tb / t.seconds if speedup else t.seconds / tb
            self.add(case, shape, dtype, impl, t, work, baseline=baseline, ratio=ratio,
                     ratio_def=rdef, target=target if impl == subject else None,
                     wrong=wrong and impl == subject, note=notes.get(impl, ""))


def _shape_str(shape):
    if isinstance(shape, (tuple, list)):
        return "x".join(str(s) for s in shape)
    return str(shape)


# ==============================================================================================
# writers
# ==============================================================================================


def _fmt(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def write_csv(rows, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt(v) for k, v in asdict(r).items()})
    os.replace(tmp, path)
    return path


def read_csv(path) -> list[Row]:
    rows = []
    numeric = {"median_us", "p20_us", "p80_us", "throughput", "ratio"}
    with open(path, newline="") as f:
        for d in csv.DictReader(f):
            kw = {}
            for k in FIELDS:
                v = d.get(k, "")
                kw[k] = (float(v) if v not in ("", None) else None) if k in numeric else (v or "")
            rows.append(Row(**kw))
    return rows


def write_png(rows, path, title=None) -> str | None:
    """Median time per case and implementation (p20-p80 bars) and the subject's ratios.

    Returns the path, or None when matplotlib is missing (the CSV is the record).
    """
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"  (matplotlib not installed: no {os.path.basename(path)})", file=sys.stderr)
        return None
    timed = [r for r in rows if r.median_us is not None]
    cases = list(dict.fromkeys(f"{r.case}\n{r.shape} {r.dtype}" for r in timed))
    impls = list(dict.fromkeys(r.impl for r in timed))
    judged = [r for r in rows if r.ratio is not None and r.target]
    fig, axes = plt.subplots(1, 2, figsize=(max(9, 1.6 * len(cases) + 5), 4.8),
                             gridspec_kw={"width_ratios": [2, 1]})
    ax = axes[0]
    width = 0.8 / max(1, len(impls))
    for i, impl in enumerate(impls):
        xs, ys, lo, hi = [], [], [], []
        for j, c in enumerate(cases):
            for r in timed:
                if r.impl == impl and f"{r.case}\n{r.shape} {r.dtype}" == c:
                    xs.append(j + (i - (len(impls) - 1) / 2) * width)
                    ys.append(r.median_us)
                    lo.append(max(0.0, r.median_us - (r.p20_us or r.median_us)))
                    hi.append(max(0.0, (r.p80_us or r.median_us) - r.median_us))
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, label=impl)
    ax.set_xticks(range(len(cases)))
    ax.set_xticklabels(cases, fontsize=7, rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("median time per call (us), bars p20-p80")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax = axes[1]
    if judged:
        labels = [f"{r.case}\n{r.shape} {r.dtype}" for r in judged]
        colors = ["tab:green" if r.status.startswith("PASS") else
                  ("tab:red" if r.status.startswith("FAIL") else "tab:gray") for r in judged]
        ax.scatter(range(len(judged)), [r.ratio for r in judged], c=colors, zorder=3)
        for j, r in enumerate(judged):
            m = re.search(r"([<>]=?)\s*([0-9.]+)", r.target)
            if m and not r.target.endswith(" s"):
                ax.hlines(float(m.group(2)), j - 0.35, j + 0.35, colors="k", linestyles="--")
        ax.set_xticks(range(len(judged)))
        ax.set_xticklabels(labels, fontsize=7, rotation=30, ha="right")
        ax.set_ylabel("ratio (see ratio_def); dashes: target")
        ax.grid(alpha=0.3)
    else:
        ax.text(0.5, 0.5, "no targets", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    r0 = rows[0] if rows else None
    fig.suptitle(title or (f"{r0.family} on {r0.device} ({r0.device_kind}), {r0.date}"
                           if r0 else "empty"), fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _num(v, spec):
    return "" if v is None else format(v, spec)


def format_table(rows) -> str:
    """A fixed-width table: one line per row, ratio, target and pass/fail last."""
    head = ("family", "case", "shape", "dtype", "impl", "median us", "p20-p80 us",
            "throughput", "ratio", "target", "status")
    body = []
    for r in rows:
        thr = "" if r.throughput is None else f"{r.throughput:.4g} {r.throughput_unit}"
        spread = ("" if r.p20_us is None else f"{r.p20_us:.4g}-{r.p80_us:.4g}")
        ratio = "" if r.ratio is None else f"{r.ratio:.3f}"
        body.append((r.family, r.case, r.shape, r.dtype, r.impl, _num(r.median_us, ".4g"), spread,
                     thr, ratio, r.target, r.status))
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = [line(head), line(["-" * w for w in widths])] + [line(b) for b in body]
    return "\n".join(out)


def format_markdown(rows) -> str:
    head = ("family", "case", "shape", "dtype", "impl", "median us (p20-p80)", "throughput",
            "ratio", "target", "status")
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        t = "" if r.median_us is None else f"{r.median_us:.4g} ({r.p20_us:.4g}-{r.p80_us:.4g})"
        thr = "" if r.throughput is None else f"{r.throughput:.4g} {r.throughput_unit}"
        ratio = "" if r.ratio is None else f"{r.ratio:.3f} ({r.ratio_def})"
        out.append("| " + " | ".join((r.family, r.case, r.shape, r.dtype, r.impl, t, thr, ratio,
                                      r.target, r.status)) + " |")
    return "\n".join(out)


def summary(rows) -> str:
    judged = [r for r in rows if r.status.startswith(("PASS", "FAIL"))]
    passed = sum(r.status.startswith("PASS") for r in judged)
    wrong = sum("wrong" in r.status for r in rows)
    s = f"{passed}/{len(judged)} targets met"
    if wrong:
        s += f", {wrong} WRONG RESULTS"
    return s


def write_family(rows, out, family, device_kind) -> list[str]:
    """``<out>/<family>-<device kind>.csv`` and ``.png``; returns the paths written."""
    base = os.path.join(out, f"{family}-{device_kind}")
    paths = [write_csv(rows, base + ".csv")]
    png = write_png(rows, base + ".png")
    if png:
        paths.append(png)
    return paths


# ==============================================================================================
# running one script
# ==============================================================================================


def parse_args(argv=None, description=""):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--quick", action="store_true", help="tiny sizes, few repetitions")
    p.add_argument("--out", default=None,
                   help=f"results folder (default ./{DEFAULT_RESULTS}/<device>, under the "
                        "current folder)")
    return p.parse_args(argv)


def script_main(run, description="", argv=None) -> int:
    """``python -m tritonnn.perf.bench_X [--device auto|cpu|cuda] [--quick] [--out DIR]``."""
    args = parse_args(argv, description)
    device = resolve_device(args.device)
    out = args.out or default_out(device)
    rows = run(device=device, quick=args.quick, out=out)
    print(format_table(rows))
    print(summary(rows), f"-> {out}")
    return 0


def finish(sweep: Sweep, out) -> list[Row]:
    """Write the family's CSV and PNG into ``out`` (when given) and return its rows."""
    if out is not None and sweep.rows:
        write_family(sweep.rows, out, sweep.family, sweep.kind)
    return sweep.rows


def exact_in(a: np.ndarray, dtype) -> np.ndarray:
    """``a`` rounded (to nearest even) to ``dtype``'s values, kept as float32, so that every
    library's cast of it is exact and both sides of a comparison see the same inputs."""
    name = str(dtype).replace("torch.", "")
    if a.dtype != np.float32 or name not in ("bfloat16", "float16"):
        return a
    import ml_dtypes
    low = ml_dtypes.bfloat16 if name == "bfloat16" else np.float16
    return a.astype(low).astype(np.float32)


def pooled_normal(rng, shape, dtype=None, scale=1.0) -> np.ndarray:
    """float32 standard-normal-looking numbers of ``shape`` for large inputs, fast.

    A pool of 2^20 + 7 numbers (rounded to ``dtype``'s values, as ``exact_in``) is drawn
    and repeated (drawing a GiB of numbers one by one would dominate a GPU run); its odd
    length shifts every repetition, so rows of a power-of-two width differ from each other.
    Pass ``rounded=True`` to ``to_tn`` / ``to_torch`` to skip their own rounding pass over
    the (already exact) result.
    """
    pool = exact_in(rng.standard_normal((1 << 20) + 7, dtype=np.float32) * np.float32(scale),
                    dtype if dtype is not None else "float32")
    return np.resize(pool, shape)


def to_tn(a: np.ndarray, device, dtype=None, requires_grad=False, rounded=False):
    """A tritonnn tensor with a copy of ``a`` on ``device`` (cast on the device to ``dtype``).

    ``rounded``: ``a`` already holds ``dtype``'s values (skip ``exact_in``'s host pass)."""
    if dtype is not None and not rounded:
        a = exact_in(a, dtype)
    t = tn.tensor(np.ascontiguousarray(a), device=device)
    if dtype is not None and t.dtype is not dtype:
        t = t.to(dtype)
    if requires_grad:
        t.requires_grad_()
    return t


def to_torch(a: np.ndarray, device, dtype=None, requires_grad=False, rounded=False):
    """The torch baseline's copy of ``a`` (torch only ever runs as the baseline)."""
    import torch
    if dtype is not None and not rounded:
        a = exact_in(a, dtype)
    t = torch.from_numpy(np.ascontiguousarray(a)).to(device)
    if dtype is not None:
        t = t.to(dtype)
    if requires_grad:
        t.requires_grad_()
    return t


def host(t) -> np.ndarray:
    """float64 numpy values of a tritonnn or torch tensor (for result checks)."""
    if hasattr(t, "_backend"):          # tritonnn
        return t.detach().to("cpu").to(tn.float32).numpy().astype(np.float64)
    return t.detach().float().cpu().numpy().astype(np.float64)
