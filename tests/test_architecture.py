"""The shape of the house: imports go one way, down the layers of ARCHITECTURE.md.

Reads every module of ``tritonnn/``, ``kernels/``, ``fallback_cpu/`` and ``perf/`` as an
AST (nothing is imported), collects every import, including those inside
functions, and checks that

* no import cycle exists (a cycle would need a placeholder or a lazy import
  to dodge it), and no import sits inside a function except the few that keep
  ``import tritonnn`` free of torch and triton;
* each import goes to a lower layer, or stays within one package of the same
  layer (the op families of a backend, the layers of ``tritonnn.nn``);
* the backends' floors (``kernels/_*.py``, ``kernels/buffers.py``,
  ``fallback_cpu/_*.py``) import no op family, and neither backend imports the
  other; in kernels/ only ``_interpret`` reads the interpreter setting;
* no module binds a name in another module (``ops.Tensor = Tensor``);
* every backward rule the op table records has a rule, and a missing one is a
  clear error.
"""
import ast
import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

import tritonnn as tn
from tritonnn import ops, tape
from conftest import cuda_usable

ROOT = pathlib.Path(__file__).resolve().parent.parent
FOLDERS = {"tritonnn": ROOT / "tritonnn", "tritonnn.kernels": ROOT / "kernels",
           "tritonnn.fallback_cpu": ROOT / "fallback_cpu", "tritonnn.perf": ROOT / "perf"}

# lowest first; a module not listed takes its package's layer (tritonnn.nn.modules -> "tritonnn.nn")
LAYERS = [
    ("tritonnn.errors",),
    ("tritonnn.dtypes", "tritonnn.device", "tritonnn.precision", "tritonnn.contract",
     "tritonnn.philox"),
    ("tritonnn.fallback_cpu", "tritonnn.kernels", "tritonnn.checks",
     "tritonnn.collectives"),       # collectives: every torch.distributed call
    ("tritonnn.backends", "tritonnn.random", "tritonnn.tape", "tritonnn.amp"),
    ("tritonnn.cuda",),             # tn.cuda: graphed() sees tensors (tape) and the seed stream
    ("tritonnn.ops",),
    ("tritonnn.tensor",),
    ("tritonnn.flat",               # flat parameter storage (optimizers, clipping)
     "tritonnn.distributed"),       # tn.distributed: the process group, all_reduce, broadcast
    ("tritonnn.nn", "tritonnn.optim", "tritonnn.data", "tritonnn.io", "tritonnn.datasets"),
    ("tritonnn",),                  # the package's __init__: the public names
    ("tritonnn.perf",),             # the benchmark sweeps (torch is their baseline)
    ("tritonnn.cli",),
]
FLOORS = {"tritonnn.kernels": ("tritonnn.kernels.buffers",), "tritonnn.fallback_cpu": ()}


def _modules():
    mods = {}
    for pkg, folder in FOLDERS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [p for p in path.relative_to(folder).with_suffix("").parts if p != "__init__"]
            mods[".".join([pkg] + parts)] = path
    return mods


MODULES = _modules()


def _targets(mod, node):
    """The project modules an import statement in ``mod`` loads (``from pkg import sub`` -> pkg.sub)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in MODULES]
    base = mod.split(".")
    if MODULES[mod].name != "__init__.py":
        base = base[:-1]
    if node.level:
        base = base[:len(base) - (node.level - 1)]
        src = ".".join(base + ([node.module] if node.module else []))
    else:
        src = node.module or ""
    subs = [f"{src}.{a.name}" for a in node.names if f"{src}.{a.name}" in MODULES]
    return subs + ([src] if len(subs) < len(node.names) and src in MODULES else [])


def _imports(mod):
    """``(target module, line, inside a function)`` for every project import in ``mod``."""
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.extend((t, child.lineno, in_function) for t in _targets(mod, child))
            visit(child, in_function or isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    path = MODULES[mod]
    visit(ast.parse(path.read_text(), filename=str(path)), False)
    return found


IMPORTS = {mod: _imports(mod) for mod in MODULES}
EDGES = {mod: {t for t, _, _ in found if t != mod} for mod, found in IMPORTS.items()}

# the only imports inside functions (module or package prefix, target): each keeps a backend,
# and with it torch and triton, out of ``import tritonnn`` (and out of the sweeps' start) until
# a device needs it, or the sweeps out of the CLI's start until `tritonnn sweep` runs
LAZY_ON_PURPOSE = {("tritonnn.backends", "tritonnn.kernels"),
                   ("tritonnn.backends", "tritonnn.fallback_cpu"),
                   ("tritonnn.cuda", "tritonnn.kernels.buffers"),
                   ("tritonnn.tensor", "tritonnn.kernels.buffers"),     # DLPack: bfloat16
                   ("tritonnn.perf", "tritonnn.kernels.buffers"),
                   ("tritonnn.cli", "tritonnn.perf.sweep"),
                   ("tritonnn.distributed", "tritonnn.collectives")}   # torch, at init()


def _lazy_on_purpose(mod, target):
    return any((mod == src or mod.startswith(src + ".")) and target == dst
               for src, dst in LAZY_ON_PURPOSE)


def _layer(mod):
    name = mod
    while name and (name != "tritonnn" or mod == "tritonnn"):
        for i, group in enumerate(LAYERS):
            if name in group:
                return i, name
        name = name.rpartition(".")[0]
    raise AssertionError(f"{mod} is in no layer of LAYERS: add it (and to ARCHITECTURE.md)")


def test_every_module_has_a_layer():
    for mod in MODULES:
        _layer(mod)


def test_no_import_cycle():
    """Tarjan's strongly connected components over the import graph: all of size one."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in EDGES[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in MODULES:
        if v not in index:
            visit(v)
    assert not cycles, "import cycles (counting imports inside functions): " + "; ".join(
        " <-> ".join(c) for c in cycles)


def test_no_import_inside_a_function():
    """A lazy import may not hide a cycle: only the ones that keep a backend out of the
    import until its device is used are allowed."""
    bad = [f"{MODULES[m].relative_to(ROOT)}:{line} imports {t}"
           for m, found in IMPORTS.items()
           for t, line, inside in found if inside and not _lazy_on_purpose(m, t)]
    assert not bad, "imports inside functions (move them to the top):\n" + "\n".join(bad)


def test_imports_go_down_the_layers():
    bad = []
    for mod, targets in EDGES.items():
        lm, gm = _layer(mod)
        for t in sorted(targets):
            lt, gt = _layer(t)
            if lt > lm or (lt == lm and gm != gt):
                bad.append(f"{mod} (layer {lm}) imports {t} (layer {lt})")
    assert not bad, "imports that go up or sideways:\n" + "\n".join(bad)


@pytest.mark.parametrize("pkg", sorted(FLOORS))
def test_backend_floors_import_no_op_family(pkg):
    floors = [m for m in MODULES if m.startswith(pkg + ".") and
              (m.rpartition(".")[2].startswith("_") or m in FLOORS[pkg])]
    assert floors, f"{pkg} has no floor modules"
    families = {m for m in MODULES if m.startswith(pkg + ".") and m not in floors}
    bad = [f"{m} imports {t}" for m in floors for t in sorted(EDGES[m] & families)]
    assert not bad, "a floor module imports an op family: " + "; ".join(bad)


def test_interpreter_setting_read_in_one_kernel_module():
    """``device.interpreting()`` reads TRITONNN_INTERPRET; in kernels/ only ``_interpret``
    asks it, and every other kernel module uses its ``INTERPRET``."""
    readers = []
    for mod, path in MODULES.items():
        if not mod.startswith("tritonnn.kernels"):
            continue
        tree = ast.parse(path.read_text())
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        if "interpreting" in names:
            readers.append(mod)
    assert readers == ["tritonnn.kernels._interpret"], readers


def test_kernel_switches_read_in_one_kernel_module():
    """The environment (TRITONNN_NOOP_DRIVER, TRITONNN_AUTOTUNE, TRITONNN_DIRECT_LAUNCH, ...) is
    read by ``kernels/_interpret`` alone, once, at import; the other kernel modules use its
    constants."""
    readers = []
    for mod, path in MODULES.items():
        if not mod.startswith("tritonnn.kernels"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv") \
                    and isinstance(node.value, ast.Name) and node.value.id == "os":
                readers.append(mod)
                break
    assert readers == ["tritonnn.kernels._interpret"], readers


def test_every_kernel_launch_goes_through_one_function():
    """``kernel[grid](...)`` appears only in ``_launch.launch``, the one place that can lock
    (interpreter), count or cache launches."""
    calls = []
    for mod, path in MODULES.items():
        if not mod.startswith("tritonnn.kernels"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Subscript):
                calls.append(f"{mod}:{node.lineno}")
    assert len(calls) == 2 and all(c.startswith("tritonnn.kernels._launch:") for c in calls), \
        f"kernel launches outside _launch.launch: {calls}"


def test_a_kernel_module_imported_directly_runs_interpreted():
    """Importing one kernel module first (not through tritonnn.backends) still sets
    TRITON_INTERPRET before triton builds the kernels."""
    if importlib.util.find_spec("triton") is None:     # (importing it here would load it
        pytest.skip("triton is not installed")          # uninterpreted for this process)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITONNN_INTERPRET"] = "1"
    code = ("import os, tritonnn.kernels.softmax as s; "
            "print(os.environ.get('TRITON_INTERPRET'), type(s._ce_fwd_kernel).__name__)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["1", "InterpretedFunction"], proc.stdout


def test_interpreter_works_when_triton_was_imported_first():
    """A script that imports triton before tritonnn still runs device "cuda" interpreted,
    including ops whose kernels call Triton's own helpers (tl.sum, tl.rand, tl.max)."""
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITONNN_INTERPRET"] = "1"
    code = ("import triton, triton.language\n"
            "import tritonnn as tn, tritonnn.nn.functional as F\n"
            "x = tn.arange(6, dtype=tn.float32, device='cuda').reshape(2, 3)\n"
            "y = tn.tensor([2, 0], device='cuda')\n"
            "tn.manual_seed(0); a = tn.rand(4, device='cuda').numpy()\n"
            "tn.manual_seed(0); b = tn.rand(4).numpy()\n"
            "print((x + 1).sum().item(), x.amax().item(), F.cross_entropy(x, y).item() > 0,\n"
            "      bool((a == b).all()))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["21.0", "5.0", "True", "True"], proc.stdout


# the interpreter's hooks, set on purpose (tn.distributed records a rank's failure for the others)
HOOKS_MEANT_TO_BE_SET = {("sys", "excepthook")}


def test_no_module_binds_a_name_in_another():
    """The ``ops.Tensor = Tensor`` pattern: a module-level placeholder bound from outside."""
    bad = []
    for mod, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                imported.update(a.asname or a.name for a in node.names)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Assign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and \
                            t.value.id in imported and t.value.id not in ("os",) and \
                            (t.value.id, t.attr) not in HOOKS_MEANT_TO_BE_SET:
                        bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: "
                                   f"{t.value.id}.{t.attr} = ...")
    assert not bad, "modules binding names in other modules:\n" + "\n".join(bad)


def test_an_op_without_a_rule_is_a_clear_error():
    x = tn.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(tn.TritonnnError, match="frobnicate: this op has no backward rule"):
        ops._record(x._new(x._data, x.dtype), "frobnicate", (x,))


def _graph_of_every_op():
    """Loss tensors that together record every differentiable op of the op table on "cpu"."""
    F = tn.nn.functional
    x = tn.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]], requires_grad=True)
    w = tn.tensor([[0.1, 0.2, 0.3], [0.4, -0.5, 0.6]], requires_grad=True)
    y = tn.tensor([0, 1])
    p = x.abs() + 1.0
    elementwise = (x + w - x * w / p) ** 2 + (-x).exp() + p.log() + p.sqrt() + x.tanh() \
        + x.sigmoid() + x.relu() + x.maximum(w) + x.minimum(w) + tn.where(x > 0, x, w) \
        + x.clamp(-1.0, 1.0) + x.clone() + x // p + x % p + p ** w
    values, _ = x.max(dim=1)
    reductions = x.sum() + x.mean() + x.max() + x.min() + values.sum()
    views = x.reshape(3, 2).permute(1, 0).expand(2, 2, 3).contiguous()[0, 1:] \
        + tn.cat([x, w])[1] + tn.stack([x, w])[0, 0] + x.to(tn.float64).to(tn.float32)[0]
    if cuda_usable():       # a copy to another device and back
        views = views + x.to("cuda").to("cpu")[1]
    written = x * 1.0
    written[0] = w[1]                                   # setitem while recording: index_put
    views = views + written[1]
    products = (x @ w.T).sum() + F.linear(x, w).sum() + F.linear(x, w, activation="relu").sum()
    losses = x.softmax(dim=1).sum() + x.log_softmax(dim=0).sum() + F.cross_entropy(x, y) \
        + F.binary_cross_entropy_with_logits(x, w)
    losses = losses + F.linear_cross_entropy(x, w, y)   # chunked linear + cross-entropy
    # normalization and activations (issue 11)
    normed = F.layer_norm(x, 3, w[0], w[1]) + F.gelu(x) + F.gelu(x, approximate="tanh") \
        + F.silu(x) + p.rsqrt()
    moments = x.var() + x.std(dim=1).sum() + x.norm() + F.mse_loss(x, w)
    # embedding, dropout (issue 11)
    drawn = F.embedding(tn.tensor([[1, 0], [1, 1]]), w).sum() + F.dropout(x, 0.5).sum()
    return [elementwise.sum(), reductions, views.sum(), products, losses, normed.sum(), moments,
            drawn]


def test_every_rule_is_recorded_by_some_op():
    """The rule table and the ops that record nodes name the same ops: no rule is dead, no
    recorded op lacks one (recording it would raise)."""
    names, stack, seen = set(), [t._node for t in _graph_of_every_op()], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        names.add(node.name)
        stack.extend(n for n in node.next if isinstance(n, tape.Node))
    rules = set(tape.RULES) - (set() if cuda_usable() else {"to"})
    assert names == rules, (f"rules no op records: {sorted(rules - names)}; "
                            f"recorded without a rule: {sorted(names - rules)}")
