"""The cuda backend: every op tritonnn runs, as Triton kernels.

Each name here has a numpy twin of the same name and signature in
``tritonnn.fallback_cpu`` (the reference the kernels are tested against).
Buffers are torch tensors on ``buffers.DEVICE`` used as raw device memory:
torch allocates, views and copies to and from the host (``kernels/buffers.py``,
the only module that touches torch); every computation is a Triton kernel.
Without a GPU, ``TRITONNN_INTERPRET=1`` runs the same kernels through Triton's
interpreter on torch CPU tensors.

One module per op family: ``memory`` (creation, casts, strided copies,
gather/scatter, joins), ``elementwise``, ``reduction``, ``random``,
``softmax`` (softmax family, fused cross-entropy, BCE), ``optim`` (fused SGD
and AdamW steps) and ``matmul`` (GEMMs and the fused linear layer); block
sizes and warps for the non-GEMM kernels come from ``_launch``.

Ahead-of-time compile list
--------------------------
Every kernel module has a list ``KERNELS`` of example specializations, and
``KERNELS`` here is their concatenation, for ``tests/test_aot_compile.py`` to
build each with ``triton.compile(ASTSource(fn, signature, constexprs),
target=GPUTarget("cuda", 80 or 90, 32))`` on a machine without a GPU. Each
entry is a dict:

``name``        a unique label, e.g. ``"ce_fwd_bf16_smooth1"``
``fn``          the ``@triton.jit`` function (``kernel.fn`` under ``triton.autotune``)
``signature``   ``{arg name: type}`` for EVERY parameter, in order: ``"*fp32"``,
                ``"*bf16"``, ``"*i64"``, ``"*i1"`` (bool buffers), ``"i64"``,
                ``"fp32"``..., and ``"constexpr"`` for meta-parameters
``constexprs``  ``{name: value}`` for every ``"constexpr"`` in ``signature``
                (strings, ints, bools, floats such as ``float("-inf")``, and
                ``tl.float32``-style dtypes)
``num_warps``, ``num_stages``   optional launch options (defaults 4 and 3)
``ptx_contains`` optional ``{arch: [substring, ...]}`` the PTX must contain
"""
import os

from ..device import interpreting

if interpreting():
    # Triton reads TRITON_INTERPRET when it is first imported (also when this package is
    # imported directly rather than through tritonnn.device.backend)
    os.environ["TRITON_INTERPRET"] = "1"

from . import buffers  # noqa: E402
from .elementwise import (accumulate_, binary, relu_bwd, relu_fwd, sum_to_shape, unary,  # noqa: E402
                          where)
from .matmul import linear_bwd, linear_fwd, matmul  # noqa: E402
from .memory import (arange, cast, cat, contiguous, copy_, dtype_of, empty,  # noqa: E402
                     exclusively_owned, expand, from_numpy, full, getitem, index_add,
                     permute, reshape, setitem, stack, to_numpy)
from .optim import adamw_step, sgd_step  # noqa: E402
from .random import rand, randn  # noqa: E402
from .reduction import argmax, max_bwd, reduce  # noqa: E402
from .softmax import (bce_with_logits_bwd, bce_with_logits_fwd, first_bad_target,  # noqa: E402
                      log_softmax_bwd, log_softmax_fwd, softmax_bwd, softmax_cross_entropy_bwd,
                      softmax_cross_entropy_fwd, softmax_fwd)

NAME = "triton"

# the backend contract: one list of function names, kept by the numpy backend
from ..fallback_cpu import OPS  # noqa: E402


def _all_kernels():
    import importlib
    out = []
    # import_module, not ``from . import``: ``matmul`` is also the name of a function here
    for name in ("memory", "elementwise", "reduction", "random", "softmax", "optim", "matmul"):
        out.extend(getattr(importlib.import_module(f".{name}", __name__), "KERNELS", ()))
    return out


KERNELS = _all_kernels()
