"""One contract, two backends: every backend function exists in both, with one signature.

``tritonnn/contract.py`` lists every function a backend provides, family by
family, each a documented stub with its parameter list. Both backend packages
and each of their op-family modules are checked against it both ways (nothing
missing, no parameter list different, no public function the contract does
not know). Also checks the ``KERNELS`` ahead-of-time compile lists are well
formed (every parameter typed, every constexpr given), without compiling
anything. How the backends import (their floors, neither importing the other)
is checked with the rest of the project's layering in ``test_architecture.py``.
"""
import ast
import importlib
import inspect
import pathlib

import pytest

from tritonnn import contract, fallback_cpu
from conftest import cuda_usable

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = {"kernels": "tritonnn.kernels", "fallback_cpu": "tritonnn.fallback_cpu"}
FAMILIES = tuple(contract.FAMILY_NAMES)
BACKENDS = ("fallback_cpu", "kernels")

needs_kernels = pytest.mark.skipif(not cuda_usable(), reason="no GPU and no Triton interpreter")


def _backend(name):
    """The backend package; the cuda one through tritonnn.backends, as the op table loads it."""
    if name == "fallback_cpu":
        return fallback_cpu
    if not cuda_usable():
        pytest.skip("no GPU and no Triton interpreter")
    from tritonnn.backends import backend
    from tritonnn.device import as_device
    return backend(as_device("cuda"))


# ----------------------------------------------------------------------------------------------
# the contract itself
# ----------------------------------------------------------------------------------------------


def test_contract_lists_every_stub_once():
    stubs = {name for name, fn in vars(contract).items()
             if inspect.isfunction(fn) and fn.__module__ == contract.__name__
             and not name.startswith("_") and name not in ("problems", "table", "family_modules")}
    assert len(set(contract.OPS)) == len(contract.OPS), "an op is listed twice"
    ops = set(contract.OPS)
    assert ops == stubs, (f"stubs in no family: {sorted(stubs - ops)}; "
                          f"listed without a stub: {sorted(ops - stubs)}")
    for name in contract.OPS:
        assert (getattr(contract, name).__doc__ or "").strip(), f"contract.{name} has no docstring"


def test_contract_imports_only_light_standard_modules():
    """It is loaded on ``import tritonnn``'s cpu path: no numpy, no torch, no triton."""
    tree = ast.parse((ROOT / "tritonnn" / "contract.py").read_text())
    imported = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for a in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "inspect", "types"}, sorted(imported)


def test_problems_reports_each_kind_of_mismatch():
    import types
    fake = types.ModuleType("fake_backend")
    fake.unary = lambda x, how: x               # parameter list differs
    fake.helper = lambda: None                  # public, not in the contract
    fake.helper.__module__ = fake.unary.__module__ = "fake_backend"
    found = contract.problems(fake, ("unary", "binary"))
    assert any("lacks binary" in p for p in found), found
    assert any("unary" in p and "differs" in p for p in found), found
    assert any("helper" in p and "public" in p for p in found), found


# ----------------------------------------------------------------------------------------------
# both backends against it
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BACKENDS)
def test_backend_namespace_matches_the_contract(name):
    B = _backend(name)
    assert contract.problems(B) == []
    assert B.OPS == contract.OPS
    assert B.NAME == {"kernels": "triton", "fallback_cpu": "numpy"}[name]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", BACKENDS)
def test_family_owns_exactly_its_contract_functions(name, family):
    """Each family module defines its contract functions and no other public function:
    helpers are private or live in the backend's floor modules."""
    _backend(name)
    mod = importlib.import_module(f"{PACKAGES[name]}.{family}")
    assert contract.problems(mod, contract.FAMILY_NAMES[family]) == []


@needs_kernels
@pytest.mark.parametrize("name", contract.OPS)
def test_mirror_signature(name):
    K = _backend("kernels")
    ks = inspect.signature(getattr(K, name))
    fs = inspect.signature(getattr(fallback_cpu, name))
    cs = inspect.signature(getattr(contract, name))
    assert list(ks.parameters) == list(fs.parameters) == list(cs.parameters), \
        f"{name}: kernels{ks} vs fallback_cpu{fs} vs contract{cs}"


# ----------------------------------------------------------------------------------------------
# ahead-of-time compile lists
# ----------------------------------------------------------------------------------------------


@needs_kernels
def test_aot_compile_lists_are_well_formed():
    K = _backend("kernels")
    names = set()
    assert K.KERNELS, "no kernels listed for ahead-of-time compilation"
    for entry in K.KERNELS:
        fn, sig, ce = entry["fn"], entry["signature"], entry["constexprs"]
        assert entry["name"] not in names, f"duplicate KERNELS name {entry['name']}"
        names.add(entry["name"])
        params = list(inspect.signature(fn.fn).parameters)
        assert list(sig) == params, f"{entry['name']}: signature keys {list(sig)} != {params}"
        marked = [k for k, v in sig.items() if v == "constexpr"]
        assert sorted(marked) == sorted(ce), f"{entry['name']}: constexprs {sorted(ce)} != {marked}"
        # every parameter the kernel annotates tl.constexpr is given (others may be specialised)
        annotated = [k for k, p in inspect.signature(fn.fn).parameters.items()
                     if "constexpr" in str(p.annotation)]
        assert annotated and set(annotated) <= set(ce), \
            f"{entry['name']}: meta-parameters without a value: {sorted(set(annotated) - set(ce))}"
        pointers = [k for k, v in sig.items() if v.startswith("*")]
        assert pointers == [k for k in params if k.endswith("_ptr") and k not in ce], \
            f"{entry['name']}: pointer parameters typed {pointers}"
