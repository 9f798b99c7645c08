"""The cpu backend: every function of ``tritonnn.contract``, in numpy.

Each function has a Triton twin of the same name and signature in
``tritonnn.kernels``; the numpy version is the reference the kernels are
tested against. Buffers are ``numpy.ndarray``. One module per op family, as in
``kernels/``, all on the floor ``_arrays`` (low-precision helpers, scratch
arrays, masked gradients); none imports another family.

Like torch, ops here turn overflow and 0/0 into inf and NaN silently. Rather
than pay for ``np.errstate`` on every call, numpy's floating-point
RuntimeWarnings are ignored when raised from this package's own modules
(users' numpy code keeps its warnings).
"""
import warnings

warnings.filterwarnings("ignore", category=RuntimeWarning,
                        message=r"(overflow|invalid value|divide by zero|underflow) encountered",
                        module=r"tritonnn\.fallback_cpu")
# the op families, found by name by contract.family_modules
from . import (elementwise, embedding, matmul, memory, norm, optim, random,  # noqa: E402, F401
               reduction, softmax)
from ..contract import OPS, family_modules, table  # noqa: E402, F401  (OPS re-exported)

NAME = "numpy"

# the op table: every contract function, from the family that owns it (this rebinds the
# name ``matmul`` from the module to its function; import the module by its full name)
globals().update(table(*family_modules(globals())))
