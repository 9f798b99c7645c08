"""What ``pip install .`` ships, and the perf sweeps run from an installed package.

The folders kernels/, fallback_cpu/ and perf/ install as ``tritonnn.kernels``,
``tritonnn.fallback_cpu`` and ``tritonnn.perf`` (setuptools ``package-dir``), never as
top-level modules; perf/results/ (measured tables) stays in the repository. A wheel is
built from a copy of the sources, so a stale build/ folder of the checkout cannot leak
into it and nothing is written into the checkout. The sweep is then run as a user of the
package runs it: ``python -m tritonnn.perf.sweep`` / ``tritonnn sweep`` from an unrelated
folder, results in ``--out`` or under that folder, and the source tree untouched.
"""
import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# never copied into the build: VCS data, build outputs, caches, and local results or models
_NOT_SOURCES = (".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                ".hypothesis", "gpu_out", "perf_results", "out", "*.safetensors")


def _run(cmd, cwd, timeout):
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, (f"{' '.join(cmd)} exited {res.returncode}\n"
                                 f"--- stdout\n{res.stdout[-3000:]}\n--- stderr\n{res.stderr[-3000:]}")
    return res


def _source_files(folder):
    """{path: (size, mtime)} of the files under ``folder``, bytecode caches aside."""
    seen = {}
    for base, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in (".git", "__pycache__", ".pytest_cache",
                                                ".hypothesis")]
        for name in files:
            p = os.path.join(base, name)
            st = os.stat(p)
            seen[os.path.relpath(p, folder)] = (st.st_size, st.st_mtime_ns)
    return seen


def _changed(before, after):
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


# ------------------------------------------------------------------------------------------------
# the wheel
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory):
    """The file names inside a wheel built (offline, no isolation) from a copy of the sources."""
    setuptools = pytest.importorskip("setuptools")
    version = tuple(int(p) for p in setuptools.__version__.split(".")[:2] if p.isdigit())
    if version < (70, 1) and importlib.util.find_spec("wheel") is None:
        pytest.skip(f"setuptools {setuptools.__version__} builds wheels only with 'wheel' installed")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*_NOT_SOURCES))
    _run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation",
          "--no-index", "-q", "-w", str(tmp / "dist")], cwd=src, timeout=300)
    (wheel,) = (tmp / "dist").glob("tritonnn-*.whl")
    with zipfile.ZipFile(wheel) as z:
        return set(z.namelist())


def _modules(folder):
    return sorted(f for f in os.listdir(os.path.join(ROOT, folder)) if f.endswith(".py"))


@pytest.mark.parametrize("folder,package", [("perf", "tritonnn/perf"),
                                            ("kernels", "tritonnn/kernels"),
                                            ("fallback_cpu", "tritonnn/fallback_cpu")])
def test_wheel_maps_each_folder_into_the_package(wheel_names, folder, package):
    modules = _modules(folder)
    assert "__init__.py" in modules, f"{folder}/ is not a package"
    missing = [m for m in modules if f"{package}/{m}" not in wheel_names]
    assert not missing, f"{folder}/ modules missing from the wheel's {package}/: {missing}"


def test_wheel_holds_the_perf_harness(wheel_names):
    for name in ("sweep.py", "common.py"):
        assert f"tritonnn/perf/{name}" in wheel_names, name
    benches = [m for m in _modules("perf") if m.startswith("bench_")]
    assert len(benches) >= 10
    for m in benches:
        assert f"tritonnn/perf/{m}" in wheel_names, m
    assert "tritonnn/cli.py" in wheel_names


def test_wheel_has_no_top_level_source_folders_nor_results(wheel_names):
    tops = {n.split("/", 1)[0] for n in wheel_names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"tritonnn"}, tops
    for folder in ("perf", "kernels", "fallback_cpu", "tests", "examples"):
        assert not any(n.startswith(f"{folder}/") for n in wheel_names), folder
    # measured tables and the GPU machine's script stay in the repository
    leaked = sorted(n for n in wheel_names if n.startswith("tritonnn/perf/")
                    and (n.startswith("tritonnn/perf/results/") or not n.endswith(".py")))
    assert not leaked, leaked


def test_no_sys_path_edits_in_the_harness():
    """perf/ and the CLI import the harness as a package, never by editing sys.path."""
    paths = [os.path.join(ROOT, "perf", m) for m in _modules("perf")]
    paths.append(os.path.join(ROOT, "tritonnn", "cli.py"))
    for p in paths:
        with open(p) as f:
            assert "sys.path" not in f.read(), p


# ------------------------------------------------------------------------------------------------
# running the sweep from elsewhere
# ------------------------------------------------------------------------------------------------


def test_sweep_module_writes_only_into_out(tmp_path):
    cwd, out = tmp_path / "elsewhere", tmp_path / "results"
    cwd.mkdir()
    before = _source_files(ROOT)
    res = _run([sys.executable, "-m", "tritonnn.perf.sweep", "--quick", "--device", "cpu",
                "--kernels", "relu", "--out", str(out)], cwd=cwd, timeout=300)
    assert "1/1 families ran" in res.stdout, res.stdout
    for name in ("relu-cpu.csv", "sweep-cpu.csv", "sweep-cpu.txt", "sweep-cpu.md"):
        assert (out / name).is_file(), name
    with open(out / "relu-cpu.csv") as f:
        head, *rows = f.read().splitlines()
    assert head.startswith("family,case,shape,dtype,impl,median_us,p20_us,p80_us") and rows
    assert _changed(before, _source_files(ROOT)) == [], "the sweep wrote into the source tree"
    assert list(cwd.iterdir()) == [], "results must go to --out only"


def test_cli_sweep_defaults_to_the_current_folder(tmp_path):
    before = _source_files(ROOT)
    res = _run([sys.executable, "-m", "tritonnn.cli", "sweep", "--quick", "--device", "cpu",
                "--kernels", "tiny_op"], cwd=tmp_path, timeout=300)
    assert _changed(before, _source_files(ROOT)) == [], "the sweep wrote into the source tree"
    (folder,) = (tmp_path / "perf_results").iterdir()       # perf_results/<device slug>
    assert (folder / "tiny_op-cpu.csv").is_file() and (folder / "sweep-cpu.csv").is_file()
    assert str(folder) in res.stdout, res.stdout
