"""``import tritonnn`` wall time in a fresh interpreter, against ``import torch``.

Each run starts a new ``python -c`` that times only the import statement
(``time.perf_counter`` around it; interpreter start-up is excluded), median of 7 runs.
``import numpy`` is timed beside them (tritonnn's floor). Quick mode: 3 runs, and numpy
stands in for torch as the baseline (torch takes seconds). Target: under 0.2 s. The same child reports whether the import pulled
in torch or triton (it must not: they load on first use of "cuda").
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from . import common as C

FAMILY = "import"
TARGET = C.Target("<", 0.2, on="seconds")
_CHILD = ("import json, sys, time; t0 = time.perf_counter(); import {mod}; "
          "t = time.perf_counter() - t0; "
          "print(json.dumps([t, 'torch' in sys.modules, 'triton' in sys.modules]))")


def import_seconds(module, runs):
    """Per-run import times of ``module`` and whether torch/triton came with it."""
    times, heavy = [], set()
    # as a user's shell has it: bytecode caches written and used (a first, untimed run warms them)
    env = {k: v for k, v in os.environ.items()
           if k not in ("TRITONNN_INTERPRET", "TRITON_INTERPRET", "PYTHONDONTWRITEBYTECODE")}
    subprocess.run([sys.executable, "-c", f"import {module}"], env=env, capture_output=True,
                   timeout=120, check=True)
    for _ in range(runs):
        res = subprocess.run([sys.executable, "-c", _CHILD.format(mod=module)], env=env,
                             capture_output=True, text=True, timeout=120, check=True)
        t, torch_loaded, triton_loaded = json.loads(res.stdout.strip().splitlines()[-1])
        times.append(t)
        heavy |= {m for m, on in (("torch", torch_loaded), ("triton", triton_loaded)) if on}
    return times, heavy


def run(device="auto", quick=False, out=None):
    sw = C.Sweep(FAMILY, device, quick)
    runs = 3 if sw.quick else 7
    timings, notes = {}, {}
    # quick mode skips torch (seconds per import) and measures against numpy's import,
    # the floor under tritonnn's (which imports numpy)
    for mod in (("numpy",) if sw.quick else ("torch", "numpy")):
        times, _ = import_seconds(mod, runs)
        timings[mod] = C._from_samples(times)
    tn_times, tn_heavy = import_seconds("tritonnn", runs)
    timings["tritonnn"] = C._from_samples(tn_times)
    notes["tritonnn"] = (("also imported: " + ", ".join(sorted(tn_heavy))) if tn_heavy
                         else "loads neither torch nor triton")
    notes["numpy"] = "the floor: tritonnn imports numpy"
    sw.compare("import (fresh process)", "-", "-", timings, "numpy" if sw.quick else "torch",
               None, TARGET, speedup=False, wrong=bool(tn_heavy), notes=notes)
    return C.finish(sw, out)


if __name__ == "__main__":
    sys.exit(C.script_main(run, __doc__))
