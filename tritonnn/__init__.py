"""tritonnn: a small, fast, GPU-first deep-learning framework.

Its math runs in Triton kernels on "cuda" and in numpy on "cpu"; a tape-based
autograd, layers, optimizers, data loading and safetensors I/O sit on top.
``import tritonnn`` loads neither torch nor triton: they are imported on first
use of the "cuda" device.
"""
from . import cuda, dtypes
from .device import Device
from .device import Device as device
from .dtypes import (DType, bfloat16, bool_, float16, float32, float64, int32, int64, uint8,
                     uint32)
from .errors import (DeviceError, DistributedError, DTypeError, IndexOutOfRange, ShapeError,
                     TritonnnError)
from .random import get_rng_state, initial_seed, manual_seed, set_rng_state
from . import amp
from .amp import autocast, get_autocast_dtype, is_autocast_enabled
from .tape import is_grad_enabled, no_grad
from .tensor import (Gradients, Tensor, arange, cat, empty, from_dlpack, from_numpy, full, grad,
                     maximum, minimum, ones, ones_like, rand, randn, stack, tensor, where, zeros,
                     zeros_like)
from .tensor import multinomial, randint, randperm  # issue 11: integer draws, sampling
from .precision import get_float32_matmul_precision, set_float32_matmul_precision
from .io import load, save
from . import distributed, nn, optim, data  # noqa: E402  (layers need the tensor API above)
from .nn.functional import softmax, log_softmax, sigmoid, relu  # noqa: E402

bool = bool_  # noqa: A001  (tn.bool, as in torch)
__version__ = "0.1.0"

__all__ = [
    "Tensor", "tensor", "from_numpy", "from_dlpack", "zeros", "ones", "empty", "full", "arange",
    "rand", "randn", "stack", "cat", "where", "maximum", "minimum", "zeros_like", "ones_like",
    "DType", "float32", "float64", "float16", "bfloat16", "int64", "int32", "uint32", "uint8",
    "bool", "device", "Device", "manual_seed", "initial_seed", "get_rng_state", "set_rng_state",
    "Gradients", "grad", "no_grad",
    "is_grad_enabled", "save", "load", "nn", "optim", "data", "cuda", "softmax", "log_softmax",
    "sigmoid", "relu", "set_float32_matmul_precision", "get_float32_matmul_precision",
    "TritonnnError", "ShapeError", "DTypeError", "DeviceError", "IndexOutOfRange", "dtypes",
    "amp", "autocast", "is_autocast_enabled", "get_autocast_dtype",
    "randint", "randperm", "multinomial", "distributed", "DistributedError",
]
