"""The cuda backend: every function of ``tritonnn.contract``, as Triton kernels.

Each function has a numpy twin of the same name and signature in
``tritonnn.fallback_cpu`` (the reference the kernels are tested against); the
contract says what each computes. Buffers are torch tensors on
``buffers.DEVICE`` used as raw device memory: torch allocates, views and copies
to and from the host (``kernels/buffers.py``, the only module that touches
torch); every computation is a Triton kernel. Without a GPU,
``TRITONNN_INTERPRET=1`` runs the same kernels through Triton's interpreter on
torch CPU tensors.

Layers, each importing only those below it:

* the floor: ``_interpret`` (interpreted or compiled, read once; imported
  first, so ``TRITON_INTERPRET`` is set before triton loads), ``buffers``,
  ``_launch`` (block sizes and warps, strided layouts and their launcher, the
  ahead-of-time compile entries and their format) and ``_jitlib`` (the
  ``@triton.jit`` helpers several families share);
* the op families, one module each, kernels and launchers together:
  ``memory`` (creation, casts, strided copies, in-place writes,
  gather/scatter, joins), ``random``, ``elementwise``, ``matmul`` (GEMMs and
  the fused linear layer), ``optim`` (fused SGD and AdamW steps) on the floor
  alone; ``reduction`` on ``memory``; ``softmax`` (softmax family, fused
  cross-entropy, BCE) and ``norm`` (LayerNorm, variance, vector norms, MSE)
  on ``memory`` and ``reduction``.

``KERNELS`` concatenates every family's ahead-of-time compile list.
"""
from . import _interpret  # noqa: F401  (first: sets TRITON_INTERPRET before triton is imported)
# buffers, then the op families (found by name by contract.family_modules)
from . import (buffers, elementwise, embedding, matmul, memory, norm, optim,  # noqa: F401
               random, reduction, softmax)
from ..contract import OPS, family_modules, table  # noqa: F401  (OPS re-exported)

NAME = "triton"

_FAMILIES = family_modules(globals())

KERNELS = [entry for family in _FAMILIES for entry in family.KERNELS]

# the op table: every contract function, from the family that owns it (this rebinds the
# name ``matmul`` from the module to its function; import the module by its full name)
globals().update(table(*_FAMILIES))
