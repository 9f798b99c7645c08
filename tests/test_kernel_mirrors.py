"""One contract, two backends: every backend function exists in both, with one signature.

``tritonnn/contract.py`` lists every function a backend provides, family by
family, each a documented stub with its parameter list. Both backend packages
and each of their op-family modules are checked against it both ways (nothing
missing, no parameter list different, no public function the contract does
not know). The layering of ``kernels/`` and ``fallback_cpu/`` is checked from
their source: imports only at module top, no import cycle, neither backend
importing the other, floor modules importing no op family, the interpreter
setting read in one place. Also checks the ``KERNELS`` ahead-of-time compile
lists are well formed (every parameter typed, every constexpr given), without
compiling anything.
"""
import ast
import importlib
import inspect
import os
import pathlib
import subprocess
import sys

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
             and not name.startswith("_") and name not in ("problems", "table")}
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
    fake.HELPERS = ("helper",)
    assert not any("helper" in p for p in contract.problems(fake, ("unary", "binary")))


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
    helpers are private, live in the backend's floor modules, or are declared in the
    module's ``HELPERS`` (as ``fallback_cpu.random.philox``, which ``tritonnn.random`` uses)."""
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
# layering of kernels/ and fallback_cpu/
# ----------------------------------------------------------------------------------------------


def _modules():
    """``{module name: path}`` of every module of both backend packages."""
    out = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).glob("*.py")):
            out[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return out


def _imports(name, path, known):
    """``[(target, line, inside_function)]`` for each import in module ``name``.

    Relative imports are resolved; ``from P import m`` counts as importing the
    module ``P.m`` when that is one of ``known``.
    """
    package = name if path.stem == "__init__" else name.rsplit(".", 1)[0]
    out = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                       ast.Lambda))
            if isinstance(child, ast.Import):
                out.extend((a.name, child.lineno, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")
                    parent = ".".join(parts[:len(parts) - child.level + 1])
                    base = f"{parent}.{base}" if base else parent
                for a in child.names:
                    sub = f"{base}.{a.name}"
                    out.append((sub if sub in known else base, child.lineno, in_function))
            visit(child, nested)

    visit(ast.parse(path.read_text()), False)
    return out


def _graph():
    mods = _modules()
    return mods, {name: _imports(name, path, mods) for name, path in mods.items()}


def test_no_import_inside_a_function():
    mods, graph = _graph()
    inside = [f"{mods[m].relative_to(ROOT)}:{line} imports {target}"
              for m, imports in graph.items() for target, line, fn in imports if fn]
    assert not inside, "imports inside functions (move them to the top):\n" + "\n".join(inside)


def test_no_import_cycle():
    mods, graph = _graph()
    edges = {m: sorted({t for t, _, _ in imports if t in mods and t != m})
             for m, imports in graph.items()}
    state, cycles = {}, []

    def walk(m, path):
        state[m] = "open"
        for t in edges[m]:
            if state.get(t) == "open":
                cycles.append(" -> ".join(path[path.index(t):] + [t]))
            elif t not in state:
                walk(t, path + [t])
        state[m] = "done"

    for m in mods:
        if m not in state:
            walk(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_backends_and_floors_import_downward_only():
    """Neither backend imports the other; a floor module (``_name`` or ``buffers``) imports
    no op family."""
    mods, graph = _graph()
    bad = []
    for m, imports in graph.items():
        own = next(p for p in PACKAGES.values() if m == p or m.startswith(p + "."))
        other = next(p for p in PACKAGES.values() if p != own)
        stem = m.rsplit(".", 1)[-1]
        floor = m != own and (stem.startswith("_") or stem == "buffers")
        for target, line, _ in imports:
            if target == other or target.startswith(other + "."):
                bad.append(f"{m}:{line} imports the other backend ({target})")
            if floor and target.rsplit(".", 1)[-1] in FAMILIES and target.startswith(own):
                bad.append(f"{m}:{line}: a floor module imports the op family {target}")
    assert not bad, "\n".join(bad)


def test_interpreter_setting_read_in_one_kernel_module():
    """Only kernels/_interpret.py calls tritonnn.device.interpreting(); the rest use INTERPRET."""
    readers = []
    for path in sorted(_modules().values()):
        tree = ast.parse(path.read_text())
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        if "interpreting" in names:
            readers.append(str(path.relative_to(ROOT)))
    assert readers == ["kernels/_interpret.py"], readers


def test_a_kernel_module_imported_directly_runs_interpreted():
    """Importing one kernel module first (not through tritonnn.backends) still sets
    TRITON_INTERPRET before triton builds the kernels."""
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITONNN_INTERPRET"] = "1"
    code = ("import os, tritonnn.kernels.softmax as s; "
            "print(os.environ.get('TRITON_INTERPRET'), type(s._ce_fwd_kernel).__name__)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["1", "InterpretedFunction"], proc.stdout


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
        pointers = [k for k, v in sig.items() if v.startswith("*")]
        assert pointers == [k for k in params if k.endswith("_ptr") and k not in ce], \
            f"{entry['name']}: pointer parameters typed {pointers}"
