"""Smoke test of the perf/ sweeps: every family in quick mode writes sane rows, a CSV and a PNG.

Runs on "cpu", and on "cuda" (through Triton's interpreter without a GPU: tiny sizes, the
results checked, no timing judged). Timings are never asserted here: speed goals live in
the sweeps' tables.
"""
import importlib
import math
import os
import re

import pytest

from tritonnn.perf import common as C
from tritonnn.perf import sweep

from conftest import skip_without_cuda

pytest.importorskip("torch")     # the baselines

# the source folder (gpu_check.sh and README.md live there, not in the installed package)
PERF_SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "perf")

STATUSES = {"info", "not judged (quick)", "not judged (interpreter)", "FAIL (wrong result)"}

# (family, case) of the rows that time nothing: the cross-entropies' peak extra memory, a size
# in MiB held in the throughput column. Every other row carries a median and its p20/p80.
UNTIMED = {("cross_entropy", "peak extra memory"),
           ("linear_cross_entropy", "peak extra memory")}

NUMERIC = ("median_us", "p20_us", "p80_us", "throughput", "ratio")


@pytest.fixture(scope="module")
def outdir(tmp_path_factory):
    return tmp_path_factory.mktemp("perf")


def _check_rows(rows, family, device):
    assert rows, f"{family}: no rows"
    kind = rows[0].device_kind
    assert kind == ("cpu" if device == "cpu" else ("interpreter" if C.interpreting() else "gpu"))
    assert any(r.impl == "tritonnn" for r in rows)
    for r in rows:
        where = f"{family} {r.case} {r.shape} {r.impl}"
        assert r.family == family and r.impl and r.case, where
        assert r.device and r.date and r.python and r.numpy and r.tritonnn, where
        assert r.status in STATUSES, f"{where}: status {r.status!r} ({r.note})"
        if (family, r.case) in UNTIMED:
            assert r.median_us is None and r.p20_us is None and r.p80_us is None, where
            assert r.throughput is not None and r.throughput_unit == "MiB", where
        else:
            assert r.median_us is not None, f"{where}: no timing"
            assert all(math.isfinite(v) and v > 0 for v in (r.median_us, r.p20_us, r.p80_us)), where
            assert r.p20_us <= r.median_us <= r.p80_us, where
        if r.throughput is not None:
            assert math.isfinite(r.throughput) and r.throughput >= 0, where
            assert r.throughput_unit and r.throughput_formula, where
        if r.ratio is not None:
            assert math.isfinite(r.ratio) and r.ratio >= 0 and r.ratio_def, where
        if r.baseline:
            assert any(b.impl == r.baseline and b.case == r.case and b.shape == r.shape
                       for b in rows), f"{where}: baseline {r.baseline} missing"
        if r.target:
            assert r.impl == "tritonnn", where


def _check_files(rows, out, family):
    base = os.path.join(out, f"{family}-{rows[0].device_kind}")
    back = C.read_csv(base + ".csv")
    assert [(r.case, r.impl) for r in back] == [(r.case, r.impl) for r in rows]
    for r, b in zip(rows, back):
        where = f"{family} {r.case} {r.shape} {r.impl}"
        for k in NUMERIC:            # written with 6 significant digits, read back as floats
            want, got = getattr(r, k), getattr(b, k)
            if want is None:
                assert got is None, f"{where}: {k} {got!r} read back, none written"
            else:
                assert got == pytest.approx(want, rel=1e-5, abs=1e-9), f"{where}: {k}"
        text = [k for k in C.FIELDS if k not in NUMERIC]
        assert [getattr(b, k) for k in text] == [getattr(r, k) for k in text], where
    pytest.importorskip("matplotlib")
    with open(base + ".png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("family", sweep.FAMILIES)
def test_quick_sweep(family, device, outdir):
    if device == "cuda":
        if family == "import":
            pytest.skip("import time does not depend on the device")
        if family == "allreduce" and os.environ.get("TRITONNN_INTERPRET") == "1":
            pytest.skip("two interpreted ranks take 15 s here; tests/test_distributed.py runs "
                        "data parallelism on the interpreted cuda")
        skip_without_cuda()
    mod = importlib.import_module(f"tritonnn.perf.bench_{family}")
    out = str(outdir / device)
    rows = mod.run(device=device, quick=True, out=out)
    if rows and all(r.status == "skipped" for r in rows):
        pytest.skip(f"{family} cannot run here: {rows[0].note}")
    _check_rows(rows, family, device)
    _check_files(rows, out, family)
    wrong = [f"{r.case} {r.shape} {r.dtype}: {r.note}" for r in rows if "wrong" in r.status]
    assert not wrong, f"tritonnn gave a wrong result on {device}: " + " | ".join(wrong)


def test_sweep_main_and_summary(tmp_path, capsys):
    assert sweep.main(device="cpu", kernels=["relu", "bench_tiny_op"], quick=True,
                      out=str(tmp_path)) == 0
    for name in ("relu-cpu.csv", "tiny_op-cpu.csv", "sweep-cpu.csv", "sweep-cpu.txt",
                 "sweep-cpu.md"):
        assert (tmp_path / name).exists(), name
    text = capsys.readouterr().out
    assert "relu" in text and "tiny_op" in text and "families ran" in text
    assert sweep.summarize(str(tmp_path)) == 0
    with pytest.raises(ValueError, match="unknown kernel family"):
        sweep.main(device="cpu", kernels=["nope"], quick=True, out=str(tmp_path))


def test_sweep_cli_family_option(tmp_path, capsys):
    """``--family`` names families as ``--kernels`` does; an unknown one is a usage error."""
    assert sweep.cli(["--device", "cpu", "--family", "relu", "--quick", "--out",
                      str(tmp_path)]) == 0
    assert (tmp_path / "relu-cpu.csv").exists()
    assert not (tmp_path / "tiny_op-cpu.csv").exists()
    with pytest.raises(SystemExit):
        sweep.cli(["--device", "cpu", "--family", "nope", "--quick", "--out", str(tmp_path)])
    assert "unknown kernel family 'nope'" in capsys.readouterr().err


def test_every_family_is_registered():
    """Each bench_<family>.py is a sweep family, run by gpu_check.sh's sweep stage (every
    family, --quick) and in the README."""
    for folder in (os.path.dirname(sweep.__file__), PERF_SRC):     # installed, and the sources
        scripts = {f[len("bench_"):-len(".py")] for f in os.listdir(folder)
                   if f.startswith("bench_") and f.endswith(".py")}
        # host_overhead is no sweep family: it installs the no-op Triton driver, which needs a
        # process of its own (tests/test_direct_launch.py runs it)
        assert scripts - {"host_overhead"} == set(sweep.FAMILIES), folder
    with open(os.path.join(PERF_SRC, "gpu_check.sh")) as f:
        check = f.read()
    with open(os.path.join(PERF_SRC, "README.md")) as f:
        readme = f.read()
    # the sweep stage names no --kernels: it runs every family of sweep.FAMILIES
    assert re.search(r"^stage sweep \d+ python3 -m tritonnn\.perf\.sweep --device cuda --quick "
                     r"--out \S+$", check, re.M), "gpu_check.sh's sweep stage must run every family"
    for fam in sweep.FAMILIES:
        assert f"| `bench_{fam}.py` |" in readme, f"{fam} missing from perf/README.md's table"


def test_gpu_check_budgets_fit_six_minutes():
    """gpu_check.sh's stage budgets are the ones its header table lists, and they sum to its
    stated total, at most its DEADLINE, which is under 6 minutes (issue 12)."""
    with open(os.path.join(PERF_SRC, "gpu_check.sh")) as f:
        check = f.read()
    deadline = int(re.search(r"GPU_CHECK_SECONDS:-(\d+)", check).group(1))
    stages = dict(re.findall(r"^\s*stage (\S+) (\d+) ", check, re.M))
    table = dict(re.findall(r"^#   (\w+)\s+(\d+)  ", check, re.M))
    total = int(table.pop("total"))
    assert stages == table, (stages, table)
    assert sum(int(b) for n, b in stages.items() if n != "sweep_rest") == total
    assert total <= deadline < 360


def test_judging():
    """PASS/FAIL only outside quick mode and the interpreter; wrong results always fail."""
    sw = C.Sweep.__new__(C.Sweep)
    sw.interpreter, sw.quick = False, False
    ge, le, secs = C.Target(">=", 1.1), C.Target("<=", 1.1), C.Target("<", 0.2, on="seconds")
    assert sw._status(ge, 1.2, False) == "PASS" and sw._status(ge, 1.0, False) == "FAIL"
    assert sw._status(le, 1.0, False) == "PASS" and sw._status(le, 1.2, False) == "FAIL"
    assert sw._status(secs, 0.1, False) == "PASS" and sw._status(None, 5.0, False) == "info"
    assert sw._status(ge, 2.0, True) == "FAIL (wrong result)"
    sw.quick = True
    assert sw._status(ge, 0.1, False) == "not judged (quick)"
    sw.quick, sw.interpreter = False, True
    assert sw._status(ge, 0.1, False) == "not judged (interpreter)"
    assert ge.text() == ">= 1.1x" and secs.text() == "< 0.2 s"
    assert C.Target(">=", 1.5, stretch=2.0).text() == ">= 1.5x (stretch 2x)"
    assert C.slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert C.slug("AMD EPYC (2 cores)") == "amd-epyc"


def test_timer_orders_quantiles():
    t = C.time_host({"a": lambda: sum(range(100)), "b": lambda: None}, quick=True)
    for v in t.values():
        assert 0 < v.p20_us <= v.median_us <= v.p80_us and v.samples >= 3
