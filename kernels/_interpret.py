"""Compiled on a GPU or run by Triton's interpreter: decided once, here, for every kernel module.

``INTERPRET`` is ``tritonnn.device.interpreting()`` read at import; every other
module of the package uses this constant and none reads the setting again. The
package's other switches are read here too, once, and nowhere else:

``NOOP_DRIVER`` (``TRITONNN_NOOP_DRIVER=1``, compiled mode only): no GPU, but the
    real compile and launch path against a Triton driver that launches nothing
    (``tritonnn.perf.noop_driver`` installs it and sets this before the kernels
    load): buffers are torch CPU tensors, as under the interpreter, and every
    kernel is specialised, compiled to a cubin and "launched" as on an sm_90
    GPU. It measures the host's cost of a step without a GPU.
``AUTOTUNE`` (``TRITONNN_AUTOTUNE``, default on; ``0`` turns it off): off, an
    autotuned kernel runs one pinned config per tuning key (the first its prune
    hook keeps) instead of compiling and timing every candidate, so a cold GPU
    run compiles one GEMM per key (tests, the GPU check).
``DIRECT_LAUNCH`` (``TRITONNN_DIRECT_LAUNCH``, default on; ``0`` turns it off): off,
    every compiled launch goes through Triton's own ``kernel[grid](...)`` path instead of
    ``_launch``'s direct one (for comparing the two, or a Triton this path misreads).
``SYNC_CHECKS`` (``TRITONNN_SYNC_CHECKS=1``): errors only the device sees are raised by the op
    that met them (a host sync after each such launch), not at the next synchronization.

Triton reads ``TRITON_INTERPRET`` when a function is decorated with
``@triton.jit``, so this module sets it before any kernel module is imported
(``kernels/__init__.py`` imports it first, and every kernel module is imported
through that package).

Triton's own ``@triton.jit`` helpers (``tl.sum``, ``tl.max``, ``tl.rand``,
``tl.cdiv``, ...) are decorated when triton is first imported. If something
imported triton before the interpreter was asked for, they were built for
compilation, and an interpreted kernel cannot call them;
``_interpret_triton_helpers`` then rebuilds each of them as an interpreted
function, so device "cuda" runs the same whatever was imported first.
"""
import os
import sys

from ..device import interpreting

INTERPRET = interpreting()
NOOP_DRIVER = not INTERPRET and os.environ.get("TRITONNN_NOOP_DRIVER", "") not in ("", "0")
AUTOTUNE = os.environ.get("TRITONNN_AUTOTUNE", "1") not in ("", "0")
DIRECT_LAUNCH = os.environ.get("TRITONNN_DIRECT_LAUNCH", "1") not in ("", "0")

SYNC_CHECKS = os.environ.get("TRITONNN_SYNC_CHECKS", "") not in ("", "0")
"""``TRITONNN_SYNC_CHECKS=1``: errors only the device sees (a class target or an index out of
range) are raised by the op that met them, at the cost of a host sync after each such
launch, instead of at the next synchronization (``buffers.set_sync_checks`` changes it)."""


def _interpret_triton_helpers():
    """Swap every compiled-mode ``JITFunction`` in triton's modules for an interpreted twin."""
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction
    twins = {}
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "triton" or name.startswith("triton.")):
            continue
        for attr, value in list(vars(module).items()):
            if type(value) is JITFunction:
                twin = twins.get(id(value))
                if twin is None:
                    twin = twins[id(value)] = InterpretedFunction(value.fn)
                setattr(module, attr, twin)


if INTERPRET:
    os.environ["TRITON_INTERPRET"] = "1"
    if "triton" in sys.modules:         # imported before us, for compiled kernels
        _interpret_triton_helpers()
