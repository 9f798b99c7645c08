"""One op, three faces, one name: every backend function exists in both backends with one signature.

Also checks the ``KERNELS`` ahead-of-time compile lists are well formed (every
parameter typed, every constexpr given), without compiling anything.
"""
import inspect

import pytest

from tritonnn import fallback_cpu
from conftest import cuda_usable

pytestmark = pytest.mark.skipif(not cuda_usable(), reason="no GPU and no Triton interpreter")


def _kernels():
    from tritonnn.backends import backend
    from tritonnn.device import as_device
    return backend(as_device("cuda"))


def test_same_op_table():
    K = _kernels()
    assert K.OPS == fallback_cpu.OPS, (
        f"only in kernels: {sorted(set(K.OPS) - set(fallback_cpu.OPS))}; "
        f"only in fallback_cpu: {sorted(set(fallback_cpu.OPS) - set(K.OPS))}")
    assert len(set(K.OPS)) == len(K.OPS), "an op is listed twice"
    assert K.NAME == "triton" and fallback_cpu.NAME == "numpy"


@pytest.mark.parametrize("name", fallback_cpu.OPS)
def test_mirror_signature(name):
    K = _kernels()
    assert hasattr(K, name), f"kernels has no {name}"
    assert hasattr(fallback_cpu, name), f"fallback_cpu has no {name}"
    ks = inspect.signature(getattr(K, name))
    fs = inspect.signature(getattr(fallback_cpu, name))
    assert list(ks.parameters) == list(fs.parameters), \
        f"{name}: kernels{ks} vs fallback_cpu{fs}"


def test_no_public_function_without_a_mirror():
    """Public functions of the op-family modules are ops (in OPS) or helpers in both backends."""
    import importlib
    K = _kernels()
    for family in ("memory", "elementwise", "reduction", "random", "softmax", "optim", "matmul"):
        kmod = importlib.import_module(f"tritonnn.kernels.{family}")
        fmod = importlib.import_module(f"tritonnn.fallback_cpu.{family}")
        for mod, other in ((kmod, fmod), (fmod, kmod)):
            for name, fn in vars(mod).items():
                if name.startswith("_") or not inspect.isfunction(fn) or fn.__module__ != mod.__name__:
                    continue
                if name in K.OPS:
                    assert hasattr(other, name), f"{mod.__name__}.{name} has no twin in {other.__name__}"


def test_aot_compile_lists_are_well_formed():
    K = _kernels()
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
