"""``tn.cuda.stats()``: launches, host syncs, allocations, uploads and bytes of device "cuda",
counted the same under the interpreter as on a GPU (CI asserts step costs with them)."""
import subprocess
import sys

import pytest

import tritonnn as tn
from conftest import skip_without_cuda

KEYS = {"launches", "host_syncs", "allocations", "uploads", "allocated_bytes",
        "peak_allocated_bytes"}


@pytest.fixture(autouse=True)
def _cuda():
    skip_without_cuda()


def test_each_counter_counts_what_it_names():
    a = tn.ones(64, 64, device="cuda")
    b = tn.ones(64, 64, device="cuda")
    tn.cuda.synchronize()
    tn.cuda.reset_stats()
    base = tn.cuda.stats()
    assert set(base) == KEYS
    assert {k: base[k] for k in ("launches", "host_syncs", "allocations", "uploads")} == dict.fromkeys(
        ("launches", "host_syncs", "allocations", "uploads"), 0)
    c = a + b                                       # one kernel into one new buffer
    s = tn.cuda.stats()
    assert (s["launches"], s["allocations"], s["host_syncs"], s["uploads"]) == (1, 1, 0, 0)
    assert s["allocated_bytes"] - base["allocated_bytes"] >= 64 * 64 * 4
    assert s["peak_allocated_bytes"] >= s["allocated_bytes"]
    assert c.sum().item() == 2 * 64 * 64            # a reduction, then one wait for the value
    s = tn.cuda.stats()
    assert s["host_syncs"] == 1 and s["launches"] >= 2
    tn.tensor([1.0, 2.0], device="cuda")             # a host-to-device copy
    tn.cuda.synchronize()
    s = tn.cuda.stats()
    assert s["uploads"] == 1 and s["host_syncs"] == 2


def test_bytes_are_returned_when_buffers_die_and_the_peak_resets():
    tn.cuda.reset_stats()
    before = tn.cuda.stats()["allocated_bytes"]
    big = tn.empty(1024, 1024, device="cuda")      # 4 MiB
    grown = tn.cuda.stats()
    assert grown["allocated_bytes"] - before >= 4 << 20
    del big
    after = tn.cuda.stats()
    assert after["allocated_bytes"] <= grown["allocated_bytes"] - (4 << 20)
    assert after["peak_allocated_bytes"] >= grown["allocated_bytes"]
    tn.cuda.reset_stats()
    assert tn.cuda.stats()["peak_allocated_bytes"] == tn.cuda.stats()["allocated_bytes"]


def test_stats_without_cuda_work_are_zeros_and_load_no_torch():
    code = ("import sys, tritonnn as tn; s = tn.cuda.stats(); tn.cuda.reset_stats(); "
            "tn.cuda.synchronize(); assert not any(s.values()), s; "
            "assert 'torch' not in sys.modules and 'triton' not in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
