"""torch is device infrastructure, used in exactly two modules: kernels/buffers.py (raw device
buffers) and tritonnn/collectives.py (torch.distributed's collectives).

Walks the AST of every library module and fails on any ``import torch`` or
``torch.`` use elsewhere; and checks ``import tritonnn`` loads neither torch
nor triton (the cpu path must work without either).
"""
import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
ALLOWED = {ROOT / "kernels" / "buffers.py", ROOT / "tritonnn" / "collectives.py"}


def _library_files():
    for folder in ("tritonnn", "kernels", "fallback_cpu"):
        yield from sorted((ROOT / folder).rglob("*.py"))


def _torch_uses(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "torch" or alias.name.startswith("torch."):
                    yield node.lineno, f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom):
            if node.module and (node.module == "torch" or node.module.startswith("torch.")):
                yield node.lineno, f"from {node.module} import ..."
        elif isinstance(node, ast.Name) and node.id == "torch":
            yield node.lineno, "torch"
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
            if node.args and isinstance(node.args[0], ast.Constant) and \
                    str(node.args[0].value).startswith("torch"):
                yield node.lineno, "__import__('torch')"


def test_torch_only_in_buffers_and_collectives():
    files = list(_library_files())
    assert any(p.parent.name == "kernels" for p in files), "no kernel modules found"
    bad = []
    for path in files:
        if path in ALLOWED:
            continue
        for line, what in _torch_uses(path):
            bad.append(f"{path.relative_to(ROOT)}:{line}: {what}")
    assert not bad, "torch used outside kernels/buffers.py and tritonnn/collectives.py:\n" + "\n".join(bad)


def test_the_allowed_modules_do_use_torch():
    # the walk above would pass vacuously if it could not see torch at all
    for path in ALLOWED:
        assert list(_torch_uses(path)), path


def test_import_tritonnn_loads_neither_torch_nor_triton():
    code = ("import sys, tritonnn as tn\n"
            "x = (tn.tensor([1.0, 2.0], requires_grad=True) * 3).sum()\n"
            "x.backward()\n"
            "bad = [m for m in ('torch', 'triton') if m in sys.modules]\n"
            "print(','.join(bad))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"import tritonnn loaded {r.stdout.strip()}"
