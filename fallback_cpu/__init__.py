"""The cpu backend: every op tritonnn runs, in numpy.

Each name here has a Triton twin of the same name and signature in
``tritonnn.kernels``; the numpy version is the reference the kernels are
tested against. Buffers are ``numpy.ndarray``.

Like torch, ops here turn overflow and 0/0 into inf and NaN silently. Rather
than pay for ``np.errstate`` on every call, numpy's floating-point
RuntimeWarnings are ignored when raised from this package's own modules
(users' numpy code keeps its warnings).
"""
import warnings

warnings.filterwarnings("ignore", category=RuntimeWarning,
                        message=r"(overflow|invalid value|divide by zero|underflow) encountered",
                        module=r"tritonnn\.fallback_cpu")
from .elementwise import (accumulate_, binary, relu_bwd, relu_fwd, sum_to_shape, unary,
                          where)
from .matmul import linear_bwd, linear_fwd, matmul
from .memory import (arange, cast, cat, contiguous, copy_, dtype_of, empty,
                     exclusively_owned, expand, from_numpy, full, getitem, index_add,
                     permute, reshape, setitem, stack, to_numpy)
from .optim import adamw_step, sgd_step
from .random import rand, randn
from .reduction import argmax, max_bwd, reduce
from .softmax import (bce_with_logits_bwd, bce_with_logits_fwd, first_bad_target,
                      log_softmax_bwd, log_softmax_fwd, softmax_bwd, softmax_cross_entropy_bwd,
                      softmax_cross_entropy_fwd, softmax_fwd)

NAME = "numpy"

OPS = (
    "from_numpy", "to_numpy", "dtype_of", "empty", "full", "arange", "cast", "contiguous", "copy_",
    "reshape", "permute", "expand", "getitem", "setitem", "index_add", "exclusively_owned",
    "cat", "stack", "rand", "randn",
    "unary", "binary", "where", "accumulate_", "sum_to_shape", "relu_fwd", "relu_bwd",
    "reduce", "argmax", "max_bwd", "matmul", "linear_fwd", "linear_bwd",
    "softmax_fwd", "softmax_bwd", "log_softmax_fwd", "log_softmax_bwd",
    "softmax_cross_entropy_fwd", "softmax_cross_entropy_bwd", "first_bad_target",
    "bce_with_logits_fwd", "bce_with_logits_bwd", "sgd_step", "adamw_step",
)

