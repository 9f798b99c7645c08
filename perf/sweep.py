"""Run the perf sweeps: ``tritonnn sweep`` or ``python -m tritonnn.perf.sweep``.

Options: ``--device auto|cpu|cuda``, ``--kernels FAMILY ...`` (or ``--family FAMILY ...``;
all by default), ``--quick``, ``--out DIR``. Each family (one ``bench_<family>.py`` of this
package) runs in turn; its CSV and PNG are written into the results folder (``--out``, by
default ``./perf_results/<device>`` under the current folder) as soon as it finishes, so a
time limit still leaves the finished ones; then the whole table is printed and saved as
``sweep-<device kind>.csv`` / ``.txt`` / ``.md``. A family that crashes is reported and the
sweep goes on.
``python -m tritonnn.perf.sweep --summarize DIR`` prints the table of the CSVs already in DIR.
"""
from __future__ import annotations

import argparse
import glob
import importlib
import os
import sys
import time
import traceback

from . import common as C

FAMILIES = ("matmul", "linear", "cross_entropy", "linear_cross_entropy", "softmax", "layer_norm",
            "relu", "gelu", "elementwise", "reduction", "memory", "embedding", "optim", "random",
            "dropout", "train_step", "allreduce", "tiny_op", "import")


def _family(name):
    name = name.removeprefix("bench_").removesuffix(".py")
    if name not in FAMILIES:
        raise ValueError(f"unknown kernel family {name!r}; choose from {', '.join(FAMILIES)}")
    return name


def write_summary(rows, out, kind):
    """The combined table of a sweep: CSV, fixed-width text and markdown."""
    base = os.path.join(out, f"sweep-{kind}")
    C.write_csv(rows, base + ".csv")
    head = ""
    if rows:
        r = rows[0]
        head = (f"{r.device} ({r.device_kind}; threads: {r.threads}), {r.date}\n"
                f"python {r.python}, numpy {r.numpy}, torch {r.torch}, triton {r.triton}, "
                f"tritonnn {r.tritonnn}\n")
    with open(base + ".txt", "w") as f:
        f.write(head + "\n" + C.format_table(rows) + "\n\n" + C.summary(rows) + "\n")
    with open(base + ".md", "w") as f:
        f.write(head.replace("\n", "  \n") + "\n" + C.format_markdown(rows) + "\n")


def main(device="auto", kernels=None, quick=False, out=None) -> int:
    """Run the chosen families (all by default); 0 when every family ran, 1 otherwise.

    Targets missed are reported (FAIL rows) but do not change the exit status: they are
    goals, not tests. A wrong result (checked in every case) does.
    """
    device = C.resolve_device(device)
    families = [_family(k) for k in kernels] if kernels else list(FAMILIES)
    if device == "cuda":
        problem = C.cuda_problem()
        if problem:
            print(f"sweep: device cuda is not usable here ({problem})", file=sys.stderr)
            return 1
    out = out or C.default_out(device)
    os.makedirs(out, exist_ok=True)
    print(f"sweep: {', '.join(families)} on {C.device_name(device)}"
          f"{' (quick)' if quick else ''} -> {out}", flush=True)
    rows, failed = [], []
    for fam in families:
        t0 = time.perf_counter()
        try:
            mod = importlib.import_module(f".bench_{fam}", __package__)
            fam_rows = mod.run(device=device, quick=quick, out=out)
        except Exception:  # noqa: BLE001  (report, go on with the next family)
            failed.append(fam)
            print(f"\n== {fam}: CRASHED\n{traceback.format_exc()}", file=sys.stderr, flush=True)
            continue
        rows += fam_rows
        print(f"\n== {fam} ({time.perf_counter() - t0:.1f} s)\n{C.format_table(fam_rows)}",
              flush=True)
    if rows:
        write_summary(rows, out, rows[0].device_kind)
    wrong = [r for r in rows if "wrong" in r.status]
    print(f"\nsweep: {C.summary(rows)}; {len(families) - len(failed)}/{len(families)} families ran"
          + (f"; crashed: {', '.join(failed)}" if failed else "") + f" -> {out}")
    return 1 if (failed or wrong) else 0


def summarize(folder) -> int:
    """Print (and save as sweep-*.txt/.md/.csv) the table of the family CSVs in ``folder``."""
    paths = sorted(p for p in glob.glob(os.path.join(folder, "*.csv"))
                   if not os.path.basename(p).startswith("sweep-"))
    rows = [r for p in paths for r in C.read_csv(p)]
    if not rows:
        print(f"summarize: no family CSVs in {folder}", file=sys.stderr)
        return 1
    order = {f: i for i, f in enumerate(FAMILIES)}
    rows.sort(key=lambda r: order.get(r.family, len(order)))
    write_summary(rows, folder, rows[0].device_kind)
    print(C.format_table(rows))
    print(C.summary(rows))
    return 0


def _family_arg(text):
    try:
        return _family(text)
    except ValueError as e:                 # a usage error, reported by the parser
        raise argparse.ArgumentTypeError(str(e)) from None


def cli(argv=None, prog="python -m tritonnn.perf.sweep", parser_class=argparse.ArgumentParser):
    """``[--device ...] [--kernels ...] [--quick] [--out DIR]`` or ``--summarize DIR``: this
    module's command line, and ``tritonnn sweep``'s (which passes its own parser class)."""
    p = parser_class(prog=prog, description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--kernels", nargs="*", default=None, type=_family_arg,
                   help=f"families to run (default: all): {' '.join(FAMILIES)}")
    p.add_argument("--family", nargs="*", dest="kernels", type=_family_arg, metavar="FAMILY",
                   help="the same as --kernels")
    p.add_argument("--quick", action="store_true", help="tiny sizes, a smoke test")
    p.add_argument("--out", default=None,
                   help=f"results folder (default ./{C.DEFAULT_RESULTS}/<device>, under the "
                        "current folder)")
    p.add_argument("--summarize", metavar="DIR", default=None,
                   help="print and save the table of the family CSVs already in DIR")
    args = p.parse_args(argv)
    if args.summarize:
        return summarize(args.summarize)
    return main(args.device, args.kernels, args.quick, args.out)


if __name__ == "__main__":
    sys.exit(cli())
