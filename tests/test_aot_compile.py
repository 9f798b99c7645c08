"""Ahead-of-time compilation of every Triton kernel for sm_80 and sm_90, no GPU needed.

Each kernel module lists example specializations in ``KERNELS`` (format:
``kernels/_launch.py``). One subprocess, with the Triton interpreter switched
off, compiles them all for ``GPUTarget("cuda", 80, 32)`` and
``GPUTarget("cuda", 90, 32)`` (``tests/aot_helpers.py``) with ptxas from the
Triton wheel; a test session starts it as soon as it has collected this file, at
the lowest CPU priority, beside the other tests, and runs this file last
(``tests/conftest.py``). The tests then check that everything compiled, that every
``*_kernel`` jit function is in some list, that the PTX holds the instructions
an entry asks for (the 16-bit GEMMs use ``wgmma.mma_async`` on sm_90), and that
no kernel spills registers. ``pytest -s`` prints the resource table; a run
writes it as CSV into pytest's temporary directory only. The committed table
is refreshed by an explicit command, when kernels or launch settings change:

    python tests/aot_helpers.py --csv perf/results/aot_resources.csv
"""
import pathlib

import pytest

import aot_helpers

pytestmark = pytest.mark.slow
ROOT = pathlib.Path(__file__).resolve().parent.parent
MODULES = sorted(p.stem for p in (ROOT / "kernels").glob("*.py")
                 if not p.stem.startswith("_") and p.stem != "buffers")


@pytest.fixture(scope="module")
def aot(tmp_path_factory):
    """The build's records: from the build tests/conftest.py started in the background when
    the session collected this file (these tests run last), else from one started here."""
    pytest.importorskip("triton")
    from conftest import aot_build
    work = tmp_path_factory.mktemp("aot")
    build = aot_build() or aot_helpers.Build(work)
    try:
        result = build.result(timeout=900)
    except RuntimeError as e:
        pytest.fail(str(e))
    finally:
        if build is not aot_build():
            build.stop()
    print("\n" + aot_helpers.table(result))
    aot_helpers.write_csv(result, work / "aot_resources.csv")
    return result


def test_every_kernel_compiles_for_sm80_and_sm90(aot):
    bad = [r for r in aot["records"] if not r["ok"]]
    assert not bad, f"{len(bad)} of {len(aot['records'])} builds failed; first: " + "; ".join(
        f"{r['kernel']} {r['target']}: {r['error'][:400]}" for r in bad[:3])
    assert {r["target"] for r in aot["records"]} == {"sm_80", "sm_90"}


def test_every_jit_kernel_is_in_a_compile_list(aot):
    assert not aot["uncovered"], ("these @triton.jit kernels are in no module's KERNELS list: "
                                  + ", ".join(aot["uncovered"]))


def test_ptx_holds_the_required_instructions(aot):
    missing = [f"{r['kernel']} {r['target']}: {r['ptx_missing']}" for r in aot["records"]
               if r["ok"] and r["ptx_missing"]]
    assert not missing, "PTX without the instructions its entry requires: " + "; ".join(missing)


def test_bf16_gemm_uses_wgmma_on_sm90(aot):
    """The tensor-core path on Hopper is the asynchronous warpgroup MMA, not mma.sync."""
    gemms = [r for r in aot["records"] if r["fn"] == "_gemm_kernel" and "bf16" in r["kernel"]
             and r["target"] == "sm_90"]
    assert gemms, "no bfloat16 GEMM in kernels/matmul.py's KERNELS"
    for r in gemms:
        assert r["ok"] and not r["ptx_missing"], f"{r['kernel']}: {r['ptx_missing'] or r['error']}"
    from_matmul = [r for r in gemms if r["module"] == "matmul"]
    assert from_matmul


@pytest.mark.parametrize("module", MODULES)
def test_no_register_spills(aot, module):
    recs = [r for r in aot["records"] if r["module"] == module and r["ok"]]
    spilled = [f"{r['kernel']} {r['target']}: {r['registers']} regs, {r['spill_stores']} B stored/"
               f"{r['spill_loads']} B loaded" for r in recs
               if r["spill_stores"] or r["spill_loads"]]
    assert not spilled, (f"{len(spilled)} of {len(recs)} builds of kernels/{module}.py spill "
                         f"registers: " + "; ".join(spilled))
