"""Compile every kernel in ``kernels/`` ahead of time, for sm_80 and sm_90, without a GPU.

Run as a script in a process where the Triton interpreter is OFF (an interpreted
``@triton.jit`` function cannot be compiled):

    env -u TRITON_INTERPRET -u TRITONNN_INTERPRET python tests/aot_helpers.py OUT.json
    python tests/aot_helpers.py --csv perf/results/aot_resources.csv

The first writes the raw records as JSON (what ``tests/test_aot_compile.py``
reads); the second refreshes the committed resource table and prints it.

It gathers the ``KERNELS`` list of every module in ``tritonnn.kernels`` (format:
``kernels/_launch.py``), builds each entry with ``triton.compile(ASTSource(...),
target=GPUTarget("cuda", arch, 32))`` in a pool of worker processes, and writes
one JSON record per (kernel, arch): registers, spilled bytes, stack frame,
shared memory, whether the PTX holds the required instructions, the error if
any. Register and spill counts come from ptxas's own ``-v`` report
(``TRITON_DUMP_PTXAS_LOG``, a fresh cache so ptxas really runs), or failing
that from ``cuobjdump --dump-resource-usage`` on the cubin.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import importlib
import io
import json
import os
import pathlib
import pkgutil
import re
import subprocess
import sys
import tempfile
import time

ARCHS = (80, 90)


def kernel_modules():
    """Every module of tritonnn.kernels, imported (the package's own list may miss one)."""
    import tritonnn.kernels as pkg
    names = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__))
    return [importlib.import_module(f"tritonnn.kernels.{n}") for n in names]


def all_entries():
    out, seen = [], set()
    for mod in kernel_modules():
        for e in getattr(mod, "KERNELS", ()):
            if e["name"] in seen:
                raise ValueError(f"duplicate KERNELS name {e['name']!r} in {mod.__name__}")
            seen.add(e["name"])
            out.append(e)
    return out


def jit_kernels():
    """Names of the launchable ``*_kernel`` jit functions defined in each kernel module."""
    import triton
    found = set()
    for mod in kernel_modules():
        for name, obj in vars(mod).items():
            fn = obj
            while not isinstance(fn, triton.runtime.JITFunction) and hasattr(fn, "fn"):
                fn = fn.fn          # unwrap triton.autotune / heuristics
            if isinstance(fn, triton.runtime.JITFunction) and fn.__module__ == mod.__name__ \
                    and name.endswith("_kernel"):
                found.add(f"{mod.__name__.rsplit('.', 1)[-1]}.{fn.__name__}")
    return found


def _ptxas_numbers(log):
    """(registers, spill stores, spill loads, stack bytes) from a ptxas -v report, or None."""
    regs = re.findall(r"Used (\d+) registers", log)
    if not regs:
        return None
    stores = re.findall(r"(\d+) bytes spill stores", log)
    loads = re.findall(r"(\d+) bytes spill loads", log)
    stack = re.findall(r"(\d+) bytes stack frame", log)
    first = lambda xs: int(xs[0]) if xs else 0   # noqa: E731
    return int(regs[0]), first(stores), first(loads), first(stack)


def _cuobjdump_numbers(cubin):
    import triton
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(cubin)
    try:
        text = subprocess.run([tool, "--dump-resource-usage", f.name], capture_output=True,
                              text=True, timeout=60).stdout
    finally:
        os.unlink(f.name)
    get = lambda key: int(re.search(rf"{key}:(\d+)", text).group(1))  # noqa: E731
    # without ptxas's report a stack frame is the sign of spilled registers
    return get("REG"), get("STACK"), get("STACK"), get("STACK")


def compile_one(job):
    """Compile entry ``index`` for ``arch``; a JSON-able record (never raises)."""
    index, arch = job
    import triton
    from triton.backends.compiler import GPUTarget
    e = all_entries()[index]
    rec = {"kernel": e["name"], "module": e["fn"].__module__.rsplit(".", 1)[-1],
           "fn": e["fn"].__name__, "target": f"sm_{arch}", "ok": False,
           "error": "", "registers": None, "spill_stores": None, "spill_loads": None,
           "stack_bytes": None, "shared_bytes": None, "ptx_missing": [], "seconds": 0.0}
    t0 = time.perf_counter()
    try:
        fn = e["fn"]
        constexprs = {(fn.arg_names.index(k),): v for k, v in e.get("constexprs", {}).items()}
        attrs = {(fn.arg_names.index(k),): [["tt.divisibility", 16]]
                 for k in e.get("divisible_by_16", ())}
        src = triton.compiler.ASTSource(fn=fn, signature=e["signature"], constexprs=constexprs,
                                        attrs=attrs)
        options = {"num_warps": e.get("num_warps", 4), "num_stages": e.get("num_stages", 3)}
        log = io.StringIO()
        with contextlib.redirect_stdout(log):
            compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)
        nums = _ptxas_numbers(log.getvalue()) or _cuobjdump_numbers(compiled.asm["cubin"])
        rec["registers"], rec["spill_stores"], rec["spill_loads"], rec["stack_bytes"] = nums
        rec["shared_bytes"] = int(compiled.metadata.shared)
        ptx = compiled.asm["ptx"]
        want = e.get("ptx_contains", {})
        rec["ptx_missing"] = [s for s in want.get(arch, want.get(str(arch), [])) if s not in ptx]
        rec["ok"] = True
    except Exception as exc:  # reported, not raised: one bad kernel must not hide the rest
        rec["error"] = f"{type(exc).__name__}: {str(exc)[-2000:]}"
    rec["seconds"] = round(time.perf_counter() - t0, 2)
    return rec


def compile_all():
    """Compile every entry for every arch in a process pool; the result as a JSON-able dict."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    import triton
    entries = all_entries()
    jobs = [(i, arch) for i in range(len(entries)) for arch in ARCHS]
    # the largest kernels first, so the pool does not end waiting on one GEMM
    jobs.sort(key=lambda j: -len(entries[j[0]]["signature"]))
    workers = max(1, min(len(os.sched_getaffinity(0)), 8))
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        records = list(pool.map(compile_one, jobs, chunksize=1))
    covered = {f"{e['fn'].__module__.rsplit('.', 1)[-1]}.{e['fn'].__name__}" for e in entries}
    return {"triton": triton.__version__, "workers": workers,
            "seconds": round(time.perf_counter() - t0, 1), "records": records,
            "uncovered": sorted(jit_kernels() - covered)}


def table(result) -> str:
    """The resource table of a ``compile_all`` result, one line per build."""
    recs = result["records"]
    head = f"{'kernel':<44} {'target':<6} {'regs':>4} {'spill st/ld':>11} {'stack':>5} {'smem':>7} {'s':>5}"
    lines = [f"AOT compile: {len(recs)} builds, triton {result['triton']}, "
             f"{result['workers']} workers, {result['seconds']} s", head, "-" * len(head)]
    for r in recs:
        if r["ok"]:
            lines.append(f"{r['kernel']:<44} {r['target']:<6} {r['registers']:>4} "
                         f"{str(r['spill_stores']) + '/' + str(r['spill_loads']):>11} "
                         f"{r['stack_bytes']:>5} {r['shared_bytes']:>7} {r['seconds']:>5}")
        else:
            lines.append(f"{r['kernel']:<44} {r['target']:<6} FAILED: {r['error'][:60]}")
    return "\n".join(lines)


def write_csv(result, path) -> None:
    """The resource table as CSV (the format of ``perf/results/aot_resources.csv``)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kernel", "module", "function", "target", "registers", "spill_stores_bytes",
                    "spill_loads_bytes", "stack_bytes", "shared_bytes", "compiled", "device",
                    "triton"])
        for r in result["records"]:
            w.writerow([r["kernel"], r["module"], r["fn"], r["target"], r["registers"],
                        r["spill_stores"], r["spill_loads"], r["stack_bytes"], r["shared_bytes"],
                        r["ok"], "none (ahead-of-time, ptxas)", result["triton"]])


# ----------------------------------------------------------------------------------------------
# the build as a background job of a test session
# ----------------------------------------------------------------------------------------------
# The build is CPU-bound in its worker processes while a test session mostly runs on one core.
# tests/conftest.py starts it when the session's tests are collected, at the lowest scheduling
# priority (on the core the tests leave idle), and runs test_aot_compile.py's tests last;
# their fixture then only waits for what is left of it.


def _lowest_priority():
    """This process (and the workers it starts) runs only on CPU time nothing else wants:
    Linux's SCHED_IDLE policy, else the highest niceness."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(19)


class Build:
    """``python tests/aot_helpers.py OUT.json`` in a subprocess of its own: the interpreter
    off, a fresh Triton cache (so ptxas runs for every kernel and prints its -v report)."""

    def __init__(self, work, idle=False):
        self.work = pathlib.Path(work)
        self.out = self.work / "aot.json"
        env = {k: v for k, v in os.environ.items()
               if k not in ("TRITON_INTERPRET", "TRITONNN_INTERPRET")}
        env["TRITON_CACHE_DIR"] = str(self.work / "cache")
        env["TRITON_DUMP_PTXAS_LOG"] = "1"
        self._stderr = open(self.work / "stderr.txt", "w+")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), str(self.out)], env=env,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            stdout=subprocess.DEVNULL, stderr=self._stderr, start_new_session=True,
            preexec_fn=_lowest_priority if idle else None)

    def result(self, timeout=900):
        """The records (``compile_all``'s dict), once the build is over; RuntimeError if it
        failed, with the end of its stderr."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise RuntimeError(f"the compile subprocess ran past {timeout} s") from None
        if rc != 0 or not self.out.exists():
            self._stderr.seek(0)
            raise RuntimeError(f"the compile subprocess failed (rc={rc}):\n"
                               f"{self._stderr.read()[-4000:]}")
        return json.loads(self.out.read_text())

    def stop(self):
        """End the build and its workers if it is still running."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 9)
            self.proc.wait()
        self._stderr.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Compile every tritonnn kernel for sm_80 and sm_90.")
    p.add_argument("json", nargs="?", help="write the raw records here")
    p.add_argument("--csv", help="write the resource table here (and print it)")
    args = p.parse_args(argv)
    if not (args.json or args.csv):
        p.error("give a JSON path, --csv PATH, or both")
    if os.environ.get("TRITON_INTERPRET") or os.environ.get("TRITONNN_INTERPRET"):
        sys.exit("aot_helpers: unset TRITON_INTERPRET and TRITONNN_INTERPRET first")
    # ptxas reports registers and spills only when it runs: a fresh cache unless one is given
    os.environ["TRITON_DUMP_PTXAS_LOG"] = "1"
    with tempfile.TemporaryDirectory() as cache:
        os.environ.setdefault("TRITON_CACHE_DIR", cache)
        result = compile_all()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if args.csv:
        write_csv(result, args.csv)
        print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
