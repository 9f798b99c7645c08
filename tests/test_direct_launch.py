"""Direct launches (kernels/_launch.py) and the host-overhead benchmark on the no-op driver.

Compiled kernels are launched by ``_launch._Direct``, not through ``kernel[grid](...)``; it
must hand Triton's launcher exactly what Triton's own path would (the same compiled
binary, grid and arguments), launch as often, take the direct path on the installed Triton,
and never compile again in steady state. Without a GPU this is checked on the no-op driver
(``tritonnn.perf.noop_driver``: real specialisation and compiles for sm_90, launches that
record their arguments instead of running), in a fresh process, since a process decides
between the interpreter and compiled kernels once. The first run compiles the kernels of
the MLP step for sm_90 into Triton's cache (``TRITONNN_AUTOTUNE=0``: one GEMM config per
key); later runs load them.

The key of a call (which compiled kernel it needs) is checked in this process too.
"""
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import tritonnn as tn
import tritonnn.nn.functional as F

HERE = pathlib.Path(__file__).resolve().parent

needs_triton = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None or importlib.util.find_spec("torch") is None,
    reason="needs triton and torch")


def _noop_env():
    env = {k: v for k, v in os.environ.items()
           if k not in ("TRITONNN_INTERPRET", "TRITON_INTERPRET")}
    env["TRITONNN_AUTOTUNE"] = "0"
    return env


@pytest.fixture(scope="module")
def probe():
    """What tests/direct_launch_probe.py saw on the no-op driver."""
    proc = subprocess.run([sys.executable, str(HERE / "direct_launch_probe.py")], cwd=HERE.parent,
                          env=_noop_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@needs_triton
def test_direct_launches_hand_the_launcher_what_triton_would(probe):
    """Same binaries, grids and arguments, launch by launch, as ``kernel[grid](...)``, over
    MLP steps (SGD, AdamW; autotuned GEMMs) and elementwise ops on misaligned views with
    scalars Triton specialises (1, 16) or must not (16.0's bits)."""
    assert probe["records"] > 100
    assert probe["same_launches"], f"first difference: {probe['first_difference']}"


@needs_triton
def test_launch_counts_are_the_same_both_ways(probe):
    direct, through_triton = probe["launches"]
    assert direct == through_triton == probe["records"]


@needs_triton
def test_the_installed_triton_takes_the_direct_path(probe):
    assert probe["direct_kinds"] == ["_Direct"], probe["direct_kinds"]
    stats = probe["direct_stats"]
    assert stats["direct"] > 3 * stats["through_triton"] > 0, stats


@needs_triton
def test_adamw_hyper_parameters_compile_nothing_new(probe):
    """lr (and so the step size and bias corrections) through values whose float64 bits are
    divisible by 16, or equal 1.0, over 60 steps: no kernel is specialised again."""
    assert probe["adamw_new_binaries"] == 0


@pytest.fixture(scope="module")
def bench_rows():
    """``bench_host_overhead`` in quick mode (it runs in its own process, on the no-op driver)."""
    from tritonnn.perf import bench_host_overhead as B
    return {(r.case, r.impl): r for r in B.run(quick=True)}


@needs_triton
def test_host_overhead_benchmark_quick(bench_rows):
    """Host times for both libraries, launches per step, and no compile after warm-up."""
    from tritonnn.perf import bench_host_overhead as B
    for name in B.OPTIMIZERS:
        for impl in ("torch", "tritonnn"):
            r = bench_rows[(f"{name} step: host time", impl)]
            assert r.median_us > 0 and r.p20_us <= r.median_us <= r.p80_us, r
            assert r.device_kind == B.KIND
        assert bench_rows[(f"{name} step: host time", "tritonnn")].ratio > 0
        compiles = bench_rows[(f"{name} step: binaries loaded after warm-up", "tritonnn")]
        assert compiles.throughput == 0 and "FAIL" not in compiles.status, compiles
        assert bench_rows[(f"{name} step: launches per step", "tritonnn")].throughput > 0


@needs_triton
@pytest.mark.parametrize("opt_name", ["sgd", "adamw"])
def test_the_no_op_driver_counts_launches_as_the_interpreter(bench_rows, opt_name):
    """The benchmark's launches per step are what ``tn.cuda.stats()`` counts for the same
    step in this process (the interpreter, or a GPU)."""
    launches = bench_rows[(f"{opt_name} step: launches per step", "tritonnn")].throughput
    assert launches == _interpreter_launches_per_step(opt_name)


def _interpreter_launches_per_step(opt_name):
    """Launches of one MLP step on "cuda" in this process (the interpreter, or a GPU).

    The benchmark's step (784-256-128-10 at batch 128) with smaller widths and batch, each
    but the 10 classes past one of the interpreter's 64-wide GEMM tiles: a step's launches do
    not depend on the sizes (tests/test_sync_free.py), and the interpreter's time does."""
    from conftest import skip_without_cuda
    skip_without_cuda()
    tn.manual_seed(0)
    model = tn.nn.Sequential(tn.nn.Linear(100, 80), tn.nn.ReLU(), tn.nn.Linear(80, 70),
                             tn.nn.ReLU(), tn.nn.Linear(70, 10)).to("cuda")
    opt = (tn.optim.SGD(model.parameters(), lr=0.01, momentum=0.9) if opt_name == "sgd"
           else tn.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01))
    rng = np.random.default_rng(0)
    x = tn.tensor(rng.random((72, 100), dtype=np.float32), device="cuda")
    y = tn.tensor(rng.integers(0, 10, 72), device="cuda")

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    step()
    tn.cuda.reset_stats()
    step()
    return tn.cuda.stats()["launches"]


# ----------------------------------------------------------------------------------------------
# the call key (no compile needed)
# ----------------------------------------------------------------------------------------------

@needs_triton
def test_call_key_separates_what_triton_specialises_and_nothing_else():
    """The key of a call: tensors by dtype and 16-byte alignment, specialised scalars by
    value, ``do_not_specialize`` scalars and floats by type and width only."""
    import torch
    from tritonnn.kernels import _launch

    key = _launch._key_function(4, tensors=[0], loose=[2, 3], exact=[1])
    t = torch.zeros(16)

    def k(*args, **kw):
        return key(0, args, kw)
    base = k(t, 5, 7, 0.5, BLOCK=64)
    assert base == k(torch.ones(16), 5, 7, 0.5, BLOCK=64)           # other data, same layout
    assert base == k(t[4:], 5, 7, 0.5, BLOCK=64)                    # 16 bytes in: aligned
    assert base != k(t[1:], 5, 7, 0.5, BLOCK=64)                    # 4 bytes in: not
    assert base != k(t.double(), 5, 7, 0.5, BLOCK=64)
    assert base != k(t, 16, 7, 0.5, BLOCK=64) != k(t, 1, 7, 0.5, BLOCK=64)
    assert base == k(t, 5, 16, 2.0, BLOCK=64) == k(t, 5, 1, 1.0, BLOCK=64)   # values: no
    assert base != k(t, 5, 1 << 40, 0.5, BLOCK=64)                  # i64, not i32
    assert base != k(t, 5, 7, 0.5, BLOCK=128)
    assert base != key(1, (t, 5, 7, 0.5), {"BLOCK": 64})            # another device
