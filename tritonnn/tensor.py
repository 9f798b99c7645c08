"""The Tensor: the user API over a buffer on a device, the factories, and autograd's entry points.

Tensor methods check argument types and dispatch: the math lives in the op
table (``ops.py``) and, below it, in the device's backend (``fallback_cpu``
for "cpu", ``kernels`` for "cuda"). ``backward`` and ``grad`` run the tape's
walk (``tape.walk``) and wrap the gradient buffers it returns.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import numpy as np

from . import dtypes as D
from . import ops
from . import random as _random
from .backends import backend
from .checks import (INT_RANGE, array_fits, dtype_and_device, flag, integer, is_scalar, norm_dim,
                     scalar_fits, scalar_type, sizes)
from .device import as_device
from .errors import DeviceError, DTypeError, ShapeError, TritonnnError
from .tape import ImplicitOnes, TensorBase, freed_error, is_freed, observers, walk


class Tensor(TensorBase):
    """An n-dimensional array on "cpu" or "cuda" that can take part in autograd."""

    __slots__ = ()
    __array_priority__ = 1000   # numpy scalars on the left defer to our operators

    @classmethod
    def _make(cls, data, dtype, device, backend_mod):
        t = object.__new__(cls)
        t._data = data
        t.dtype = dtype
        t.device = device
        t.requires_grad = False
        t._grad = None
        t._node = None
        t._backend = backend_mod
        t._version = [0]
        return t

    def _new(self, buf, dtype):
        return Tensor._make(buf, dtype, self.device, self._backend)

    def __init__(self, *args, **kwargs):
        raise TritonnnError("Tensor: create tensors with tn.tensor(...), tn.zeros(...), "
                            "tn.from_numpy(...) and the other factories")

    # -- metadata ------------------------------------------------------------------------------
    def dim(self) -> int:
        return self.ndim

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[norm_dim("size", dim, self.ndim)]

    def __len__(self):
        if self.ndim == 0:
            raise DTypeError("len: a 0-d tensor has no length (use numel() or item())")
        return self.shape[0]

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    # -- autograd ------------------------------------------------------------------------------
    @property
    def grad(self):
        """The gradient ``backward`` accumulated here (None until then)."""
        return self._grad

    @grad.setter
    def grad(self, g):
        if g is not None:
            if not isinstance(g, Tensor):
                raise DTypeError(f"grad: expected a tensor or None, got {type(g).__name__}")
            if g.shape != self.shape:
                raise ShapeError(f"grad: a gradient of shape {g.shape} for a tensor of shape "
                                 f"{self.shape}")
            if g.dtype is not self.dtype:
                raise DTypeError(f"grad: a gradient of dtype {g.dtype} for a tensor of dtype "
                                 f"{self.dtype}")
            if g.device != self.device:
                raise DeviceError(f"grad: a gradient on {g.device} for a tensor on {self.device}")
        self._grad = g

    def requires_grad_(self, requires_grad=True):
        if requires_grad and not self.dtype.is_floating:
            raise DTypeError(f"requires_grad: only floating-point tensors can require gradients, "
                             f"got {self.dtype}")
        if not requires_grad and self._node is not None:
            raise TritonnnError("requires_grad_(False): only leaves can stop requiring grad; "
                                "use detach()")
        self.requires_grad = bool(requires_grad)
        return self

    @property
    def data(self):
        """This tensor's values, cut from the tape: ``p.data -= lr * g`` updates ``p`` (in-place
        writes are still counted, so a pending backward that saved ``p`` catches them)."""
        return self.detach()

    @data.setter
    def data(self, value):
        if not isinstance(value, Tensor):
            raise TritonnnError(f"data: expected a tensor, got {type(value).__name__}")
        if self.requires_grad and not value.dtype.is_floating:
            raise DTypeError(f"data: a tensor that requires grad can't hold {value.dtype} values")
        self._data, self.dtype, self.device, self._backend = (value._data, value.dtype,
                                                               value.device, value._backend)
        self._version = value._version

    def detach(self):
        """The same buffer, cut from the tape (in-place writes to it are seen by both)."""
        out = Tensor._make(self._data, self.dtype, self.device, self._backend)
        out._version = self._version
        return out

    def backward(self, gradient=None, retain_graph=False):
        """Walk the tape back from here; returns a ``tn.Gradients`` and accumulates leaves' ``.grad``."""
        return _backward(self, gradient, retain_graph)

    # -- conversion ----------------------------------------------------------------------------
    def to(self, *args, dtype=None, device=None):
        """``to(dtype)``, ``to(device)`` or ``to(device, dtype)``."""
        dtype, device = dtype_and_device("to", args, dtype, device)
        out = self
        if device is not None:
            out = ops.to_device(out, device)
        if dtype is not None:
            out = ops.cast(out, dtype)
        return out

    def to_dtype(self, dtype):
        return self.to(dtype=dtype)

    def float(self):
        return self.to(D.float32)

    def double(self):
        return self.to(D.float64)

    def long(self):
        return self.to(D.int64)

    def int(self):
        return self.to(D.int32)

    def bool(self):
        return self.to(D.bool_)

    def half(self):
        return self.to(D.float16)

    def bfloat16(self):
        return self.to(D.bfloat16)

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def numpy(self) -> np.ndarray:
        """The values as a numpy array (a copy when on a GPU)."""
        if self.requires_grad:
            raise TritonnnError("numpy: can't call numpy() on a tensor that requires grad; "
                                "use tensor.detach().numpy()")
        return self._backend.to_numpy(self._data)

    # -- DLPack: zero-copy exchange with numpy, torch and other consumers -----------------------
    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        """A DLPack capsule of this tensor's memory (no copy): ``numpy.from_dlpack(t)`` and
        ``torch.from_dlpack(t)`` see, and write, the very elements. A "cuda" tensor exports
        device memory (host memory under the interpreter); a "cpu" bfloat16 tensor goes
        through torch, as numpy's DLPack has no bfloat16. Refused, as ``numpy()`` is, for a
        tensor that requires grad."""
        if self.requires_grad:
            raise TritonnnError("__dlpack__: can't export a tensor that requires grad; use "
                                "tensor.detach()")
        kwargs = {"stream": stream}
        for name, value in (("max_version", max_version), ("dl_device", dl_device),
                            ("copy", copy)):
            if value is not None:
                kwargs[name] = value
        buf = self._data
        if self.dtype is D.bfloat16 and self.device.type == "cpu":
            buf = _dlpack_buffers("__dlpack__", "export a bfloat16 tensor").host_tensor(
                buf, self.dtype)
        return buf.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        """``(DLPack device type, index)``: (1, 0) for host memory ("cpu", and "cuda" under
        the interpreter), (2, index) for a GPU's."""
        if self.device.type == "cpu":
            return (_DL_CPU, 0)
        kind, index = self._data.__dlpack_device__()
        return (int(kind), int(index))

    def tolist(self):
        a = self._backend.to_numpy(self._data)
        if self.dtype is D.bfloat16 or self.dtype is D.float16:
            a = a.astype(np.float32)
        return a.tolist()

    def item(self):
        if self.numel() != 1:
            raise ShapeError(f"item: only a one-element tensor can be converted to a Python "
                             f"scalar, got shape {self.shape}")
        a = self._backend.to_numpy(self._data)
        if self.dtype is D.bfloat16:
            a = a.astype(np.float32)
        return a.reshape(()).item()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        if self.numel() != 1:
            raise TritonnnError(f"bool: the truth value of a tensor with {self.numel()} elements "
                                f"is ambiguous; use .any() or .all()")
        return bool(self.item())

    def __index__(self):
        if self.dtype.is_integer and self.numel() == 1:
            return int(self.item())
        raise DTypeError(f"index: only an integer tensor of one element can be used as an int, "
                         f"got {self.dtype} of shape {self.shape}")

    def __array__(self, dtype=None, copy=None):
        """numpy's array protocol: a copy unless ``copy=False`` (then no conversion is allowed)."""
        a = self.detach().numpy()
        if dtype is not None and np.dtype(dtype) != a.dtype:
            if copy is False:
                raise ValueError("tensor.__array__: a dtype conversion needs a copy")
            return a.astype(dtype)
        return a.copy() if copy or (copy is None and self.device.type == "cpu") else a

    def __repr__(self):
        a = self._backend.to_numpy(self._data)
        if self.dtype is D.bfloat16:
            a = a.astype(np.float32)
        body = np.array2string(a, separator=", ", threshold=1000, edgeitems=3, precision=4,
                               prefix="tensor(", floatmode="maxprec")
        extra = ", requires_grad=True" if self.requires_grad else ""
        return (f"tensor({body}, shape={self.shape}, dtype={self.dtype}, "
                f"device={self.device}{extra})")

    __str__ = __repr__

    def __hash__(self):
        return id(self)

    def __iter__(self):
        if self.ndim == 0:
            raise DTypeError("iter: a 0-d tensor has no dimension to iterate over (use item())")
        return (self[i] for i in range(self.shape[0]))

    # -- views and indexing --------------------------------------------------------------------
    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return ops.reshape(self, shape)

    def view(self, *shape):
        """A view with ``shape`` (never a copy: a layout that needs one is a ShapeError)."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return ops.reshape(self, shape, "view")

    def flatten(self, start_dim=0, end_dim=-1):
        if self.ndim == 0:
            return self.reshape(1)
        s = norm_dim("flatten", start_dim, self.ndim)
        e = norm_dim("flatten", end_dim, self.ndim)
        if s > e:
            raise TritonnnError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
        return self.reshape(self.shape[:s] + (-1,) + self.shape[e + 1:])

    def t(self):
        if self.ndim > 2:
            raise ShapeError(f"t: expects a tensor with <= 2 dimensions, got {self.shape}; "
                             f"use transpose(d0, d1)")
        return ops.transpose(self, 0, 1) if self.ndim == 2 else self

    @property
    def T(self):
        return self.t() if self.ndim <= 2 else ops.permute(self, tuple(reversed(range(self.ndim))))

    def transpose(self, dim0, dim1):
        return ops.transpose(self, dim0, dim1)

    def permute(self, *dims):
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        return ops.permute(self, dims)

    def unsqueeze(self, dim):
        return ops.unsqueeze(self, dim)

    def squeeze(self, dim=None):
        return ops.squeeze(self, dim)

    def expand(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return ops.expand(self, shape)

    def contiguous(self):
        return ops.contiguous(self)

    def __getitem__(self, index):
        return ops.getitem(self, index)

    def __setitem__(self, index, value):
        ops.setitem(self, index, value)

    # -- arithmetic ----------------------------------------------------------------------------
    def __add__(self, o):
        return ops.binary(self, o, "add")

    def __radd__(self, o):
        return ops.binary(self, o, "add", reverse=True)

    def __sub__(self, o):
        return ops.binary(self, o, "sub")

    def __rsub__(self, o):
        return ops.binary(self, o, "sub", reverse=True)

    def __mul__(self, o):
        return ops.binary(self, o, "mul")

    def __rmul__(self, o):
        return ops.binary(self, o, "mul", reverse=True)

    def __truediv__(self, o):
        return ops.binary(self, o, "div")

    def __rtruediv__(self, o):
        return ops.binary(self, o, "div", reverse=True)

    def __pow__(self, o):
        return ops.binary(self, o, "pow")

    def __rpow__(self, o):
        return ops.binary(self, o, "pow", reverse=True)

    def __floordiv__(self, o):
        return ops.binary(self, o, "floordiv")

    def __rfloordiv__(self, o):
        return ops.binary(self, o, "floordiv", reverse=True)

    def __mod__(self, o):
        return ops.binary(self, o, "mod")

    def __rmod__(self, o):
        return ops.binary(self, o, "mod", reverse=True)

    def __neg__(self):
        return ops.unary(self, "neg")

    def __pos__(self):
        return self

    def __abs__(self):
        return ops.unary(self, "abs")

    def __matmul__(self, o):
        return ops.matmul(self, expect_tensor("matmul", o))

    def __rmatmul__(self, o):
        return NotImplemented

    def matmul(self, o):
        return self @ o

    def add(self, o, alpha=1):
        return self + (o if alpha == 1 else o * alpha)

    def sub(self, o, alpha=1):
        return self - (o if alpha == 1 else o * alpha)

    def mul(self, o):
        return self * o

    def div(self, o):
        return self / o

    def pow(self, o):
        return self ** o

    def floor_divide(self, o):
        return self // o

    def remainder(self, o):
        return self % o

    # -- in place: the buffer itself is written, so every alias and view sees it ---------------
    def __iadd__(self, o):
        return ops.binary_(self, o, "add")

    def __isub__(self, o):
        return ops.binary_(self, o, "sub")

    def __imul__(self, o):
        return ops.binary_(self, o, "mul")

    def __itruediv__(self, o):
        return ops.binary_(self, o, "div")

    def __ifloordiv__(self, o):
        return ops.binary_(self, o, "floordiv")

    def __imod__(self, o):
        return ops.binary_(self, o, "mod")

    def add_(self, o, alpha=1):
        return ops.binary_(self, o, "add", "add_", alpha)

    def sub_(self, o, alpha=1):
        return ops.binary_(self, o, "sub", "sub_", alpha)

    def mul_(self, o):
        return ops.binary_(self, o, "mul", "mul_")

    def div_(self, o):
        return ops.binary_(self, o, "div", "div_")

    def zero_(self):
        return ops.fill_(self, 0, "zero_")

    def fill_(self, value):
        return ops.fill_(self, value)

    def copy_(self, src):
        return ops.copy_(self, src)

    def clamp_(self, min=None, max=None):  # noqa: A002  (PyTorch's names)
        return ops.clamp_(self, min, max)

    def clamp(self, min=None, max=None):  # noqa: A002
        return ops.clamp(self, min, max)

    def clone(self):
        return ops.clone(self)

    def maximum(self, o):
        return ops.binary(self, o, "maximum")

    def minimum(self, o):
        return ops.binary(self, o, "minimum")

    def __eq__(self, o):
        return ops.binary(self, o, "eq")

    def __ne__(self, o):
        return ops.binary(self, o, "ne")

    def __lt__(self, o):
        return ops.binary(self, o, "lt")

    def __le__(self, o):
        return ops.binary(self, o, "le")

    def __gt__(self, o):
        return ops.binary(self, o, "gt")

    def __ge__(self, o):
        return ops.binary(self, o, "ge")

    eq, ne, lt, le, gt, ge = __eq__, __ne__, __lt__, __le__, __gt__, __ge__

    # -- elementwise functions -----------------------------------------------------------------
    def exp(self):
        return ops.unary(self, "exp")

    def log(self):
        return ops.unary(self, "log")

    def sqrt(self):
        return ops.unary(self, "sqrt")

    def abs(self):
        return ops.unary(self, "abs")

    def tanh(self):
        return ops.unary(self, "tanh")

    def sigmoid(self):
        return ops.unary(self, "sigmoid")

    def relu(self):
        return ops.relu(self)

    def neg(self):
        return ops.unary(self, "neg")

    def rsqrt(self):
        return ops.rsqrt(self)

    def softmax(self, dim=-1):
        return ops.softmax(self, dim)

    def log_softmax(self, dim=-1):
        return ops.softmax(self, dim, log=True)

    # -- reductions ----------------------------------------------------------------------------
    def sum(self, dim=None, keepdim=False):
        return ops.reduce(self, "sum", dim, keepdim)

    def mean(self, dim=None, keepdim=False):
        return ops.reduce(self, "mean", dim, keepdim)

    def max(self, dim=None, keepdim=False):
        """The maximum (dim None), or ``(values, indices)`` along ``dim`` as torch.max."""
        if dim is None:
            return ops.reduce(self, "max")
        return ops.max_dim(self, dim, keepdim)

    def min(self, dim=None, keepdim=False):
        """The minimum (dim None), or ``(values, indices)`` along ``dim`` as torch.min."""
        if dim is None:
            return ops.reduce(self, "min")
        return ops.min_dim(self, dim, keepdim)

    def amin(self, dim=None, keepdim=False):
        return ops.reduce(self, "min", dim, keepdim)

    def amax(self, dim=None, keepdim=False):
        return ops.reduce(self, "max", dim, keepdim)

    def argmax(self, dim=None, keepdim=False):
        return ops.argmax(self, dim, keepdim)

    def var(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
        """Variance over ``dim`` (None: all), unbiased by default; ``correction=`` as PyTorch
        (``unbiased=False`` is ``correction=0``); ``t.var(False)`` is the biased variance."""
        return ops.var(self, dim, correction, keepdim, unbiased=unbiased)

    def std(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
        """``sqrt(var(...))``, with ``var``'s arguments."""
        return ops.std(self, dim, correction, keepdim, unbiased=unbiased)

    def norm(self, p="fro", dim=None, keepdim=False):
        """The vector ``p``-norm over ``dim`` (None: every element): 2 ("fro", the default),
        1, any number >= 0, ``inf`` (max |x|), ``-inf`` (min |x|), 0 (non-zeros)."""
        return ops.norm(self, p, dim, keepdim)

    def any(self):
        return self.to(D.bool_).sum().item() > 0

    def all(self):
        return self.to(D.bool_).sum().item() == self.numel()


def expect_tensor(op, value, what="operand"):
    """``value`` itself if it is a tensor, else a DTypeError (a TypeError, as PyTorch raises)
    naming ``op``: the API layer's one test of "is this a tensor"."""
    if not isinstance(value, Tensor):
        raise DTypeError(f"{op}: expected a tensor {what}, got {type(value).__name__}")
    return value


# ----------------------------------------------------------------------------------------------
# factories
# ----------------------------------------------------------------------------------------------

def _infer(data):
    """numpy array and tritonnn dtype for the data of ``tn.tensor``: Python data (float ->
    float32, int -> int64, bool -> bool), a numpy array or a torch tensor (their dtype)."""
    if isinstance(data, np.ndarray):
        return data, D.from_numpy(data.dtype)
    if isinstance(data, np.generic):
        return np.asarray(data), D.from_numpy(data.dtype)
    if not isinstance(data, (list, tuple, numbers.Number)) and _is_torch_tensor(data):
        a = _torch_values(data)
        return a, D.from_numpy(a.dtype)
    try:
        a = np.asarray(data)
    except ValueError as e:
        raise ShapeError(f"tensor: nested sequences must be rectangular ({e})") from None
    if a.dtype == object or a.dtype == np.uint64 or a.dtype == np.float64:
        _ints_fit_int64(data, a)
    if a.dtype == object:
        if any(isinstance(x, Tensor) for x in _flat(data)):
            raise TritonnnError("tensor: use tn.stack() to join tensors")
        raise DTypeError(f"tensor: can't make a tensor from {type(data).__name__} data")
    if a.dtype.kind == "f":
        return a, D.float32
    if a.dtype.kind in "iu":
        return a, D.int64
    if a.dtype.kind == "b":
        return a, D.bool_
    raise DTypeError(f"tensor: unsupported data of numpy kind {a.dtype}")


def _ints_fit_int64(data, a):
    """Refuse a Python int of ``data`` beyond int64, as torch does, however numpy held it
    (``a``: uint64, float64 or object). A float64 array is searched only when its magnitude
    says a big int may have made it (few elements are looked at directly)."""
    if a.dtype == np.float64:
        # a float64 made from Python ints holds one in [2**63, 2**64); NaN never passes >=
        if not (any(v >= 2.0 ** 63 for v in a.ravel().tolist()) if a.size <= 64
                else (a >= 2.0 ** 63).any()):
            return
    lo, hi = INT_RANGE[D.int64]
    for x in _flat(data):
        if type(x) is int and not lo <= x <= hi:
            scalar_fits("tensor", x, D.int64)


def _is_torch_tensor(x) -> bool:
    """A ``torch.Tensor`` (or subclass), recognised without importing torch."""
    return any(c.__name__ == "Tensor" and c.__module__ == "torch" for c in type(x).__mro__)


def _torch_values(t):
    """A torch tensor's values as a numpy array of its dtype (bfloat16, which numpy lacks,
    through float32: it holds every bfloat16 exactly); any tritonnn dtype, and a tensor
    that requires grad (its values, as ``torch.tensor(t)`` copies them)."""
    name = str(t.dtype).removeprefix("torch.")
    if name not in D.NAMES:
        raise DTypeError(f"tensor: torch dtype {t.dtype} has no tritonnn dtype; supported: "
                         f"{', '.join(sorted(D.NAMES))}")
    try:
        t = t.detach().cpu()
        if name == "bfloat16":
            return t.float().numpy().astype(D.bfloat16.np)
        return t.numpy()
    except Exception as e:       # noqa: BLE001  (a sparse, meta or other layout: torch's words)
        raise TritonnnError(f"tensor: can't read the values of this torch tensor "
                            f"({t.layout}, device {t.device}): {e}") from None


def _flat(data):
    if isinstance(data, (list, tuple)):
        for x in data:
            yield from _flat(x)
    else:
        yield data


def _finish(buf, dt, dev, B, requires_grad):
    t = Tensor._make(buf, dt, dev, B)
    if requires_grad:
        t.requires_grad_(True)
    return t


def tensor(data, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A new tensor from a scalar, nested lists, a numpy array or another tensor (copied)."""
    if isinstance(data, Tensor):
        out = data.detach().to(device or data.device, dtype or data.dtype)
        if out._data is data._data:
            out = Tensor._make(out._backend.contiguous(out._backend.cast(out._data, out.dtype)),
                               out.dtype, out.device, out._backend)
        return _finish(out._data, out.dtype, out.device, out._backend, requires_grad)
    arr, dt = _infer(data)
    if dtype is not None:
        dt = D.as_dtype(dtype)
        array_fits("tensor", arr, dt)         # 300 into uint8, NaN into int64: refused
    dev = as_device(device)
    B = backend(dev)
    return _finish(B.from_numpy(arr, dt), dt, dev, B, requires_grad)


def from_numpy(a: np.ndarray) -> Tensor:
    if not isinstance(a, np.ndarray):
        raise DTypeError(f"from_numpy: expected a numpy array, got {type(a).__name__}")
    return tensor(a)


_DL_CPU, _DL_CUDA = 1, 2           # DLPack's device types for host and CUDA memory
_DL_DEVICES = {3: "CUDA pinned host", 4: "OpenCL", 7: "Vulkan", 8: "Metal", 9: "VPI",
               10: "ROCm", 11: "ROCm pinned host", 13: "CUDA managed", 14: "oneAPI"}


def _dlpack_buffers(op, what):
    """``kernels.buffers`` (torch), imported here on first need: numpy's DLPack knows no
    bfloat16, and device memory is torch's."""
    try:
        from .kernels import buffers
    except ImportError as e:
        raise TritonnnError(f"{op}: to {what} tritonnn needs torch, which is not installed "
                            f"({e})") from None
    return buffers


def from_dlpack(x) -> Tensor:
    """A tensor viewing the memory of ``x``, anything that speaks DLPack (a numpy array, a
    torch tensor, ...): no copy, so writes through either side are seen by the other.

    Host memory becomes a "cpu" tensor, a GPU's a "cuda" tensor on that GPU. bfloat16
    (through torch, as numpy lacks it) and bool come as they are; a read-only producer (a
    numpy array with ``writeable=False``) is copied, since tritonnn tensors are writable. A
    tritonnn tensor gives ``x.detach()``: the same memory, no graph.
    """
    op = "from_dlpack"
    if isinstance(x, Tensor):
        return x.detach()
    if not (hasattr(x, "__dlpack__") and hasattr(x, "__dlpack_device__")):
        raise DTypeError(f"{op}: expected an object that speaks DLPack (__dlpack__ and "
                         f"__dlpack_device__: a numpy array, a torch tensor, ...), got "
                         f"{_producer(x)}")
    try:
        kind, index = (int(v) for v in x.__dlpack_device__())
    except Exception as e:       # noqa: BLE001  (a foreign producer may raise anything)
        raise TritonnnError(f"{op}: {_producer(x)}.__dlpack_device__() failed: "
                            f"{e}") from None
    if kind == _DL_CPU:
        try:
            a = np.from_dlpack(x)
        except Exception as e:   # noqa: BLE001  (numpy has no bfloat16, for one)
            buffers = _dlpack_buffers(op, f"read this {_producer(x)} (numpy could not: {e})")
            a = buffers.host_array(_dlpack_import(op, x, buffers))
            if a is None:
                raise DTypeError(f"{op}: the {_producer(x)} holds a dtype tritonnn does not "
                                 f"have (numpy: {e})") from None
        if not a.flags.writeable:
            a = a.copy()
        dev = as_device("cpu")
    elif kind == _DL_CUDA:
        dev = as_device(f"cuda:{index}")
        buffers = _dlpack_buffers(op, "read device memory")
        a = _dlpack_import(op, x, buffers)
    else:
        raise DeviceError(f"{op}: the {_producer(x)} lives in DLPack device type {kind} "
                          f"({_DL_DEVICES.get(kind, 'unknown')} memory); tritonnn takes host "
                          f"(1) and CUDA (2) memory")
    B = backend(dev)
    try:
        dt = B.dtype_of(a)
    except (DTypeError, KeyError):
        raise DTypeError(f"{op}: the {_producer(x)} of dtype {a.dtype} has no tritonnn dtype; "
                         f"supported: {', '.join(sorted(D.NAMES))}") from None
    return Tensor._make(a, dt, dev, B)


def _dlpack_import(op, x, buffers):
    try:
        return buffers.from_dlpack(x)
    except Exception as e:       # noqa: BLE001  (the producer's or torch's refusal, as is)
        raise TritonnnError(f"{op}: the {_producer(x)} could not be read over DLPack: "
                            f"{e}") from None


def _producer(x):
    t = type(x)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _factory(op, shape, dtype, device, requires_grad, make):
    dt = D.as_dtype(dtype) if dtype is not None else D.float32
    shape = sizes(op, shape, dt.itemsize)
    dev = as_device(device)
    B = backend(dev)
    return _finish(_allocate(op, shape, dt, lambda: make(B, shape, dt)), dt, dev, B,
                   requires_grad)


def _allocate(op, shape, dt, make):
    """``make()``, a new buffer; running out of memory is a TritonnnError naming the size."""
    try:
        return make()
    except MemoryError as e:
        n = dt.itemsize
        for s in shape:
            n *= s
        raise TritonnnError(f"{op}: not enough memory for a tensor of shape {shape} "
                            f"({n} bytes): {e}") from None


def zeros(*shape, dtype=None, device=None, requires_grad=False):
    return _factory("zeros", shape, dtype, device, requires_grad, lambda B, s, d: B.full(s, 0, d))


def ones(*shape, dtype=None, device=None, requires_grad=False):
    return _factory("ones", shape, dtype, device, requires_grad, lambda B, s, d: B.full(s, 1, d))


def empty(*shape, dtype=None, device=None, requires_grad=False):
    return _factory("empty", shape, dtype, device, requires_grad, lambda B, s, d: B.empty(s, d))


def full(shape, value, dtype=None, device=None, requires_grad=False):
    if not is_scalar(value):
        raise DTypeError(f"full: the fill value must be a number, got {type(value).__name__} "
                         f"{value!r}")
    dt = scalar_type(value) if dtype is None else D.as_dtype(dtype)
    scalar_fits("full", value, dt)
    if isinstance(shape, numbers.Integral):
        shape = (shape,)
    return _factory("full", tuple(shape), dt, device, requires_grad,
                    lambda B, s, d: B.full(s, value, d))


def zeros_like(t, dtype=None):
    return zeros(*t.shape, dtype=dtype or t.dtype, device=t.device)


def ones_like(t, dtype=None):
    return ones(*t.shape, dtype=dtype or t.dtype, device=t.device)


def arange(start, end=None, step=1, dtype=None, device=None):
    """``start, start + step, ...`` up to ``end`` (exclusive): int64 when every bound is an
    int (counted exactly), float32 otherwise, as torch."""
    if end is None:
        start, end = 0, start
    ints = type(start) is int and type(end) is int and type(step) is int      # the usual case
    if not ints:
        for name, v in (("start", start), ("end", end), ("step", step)):
            if not is_scalar(v):
                raise DTypeError(f"arange: {name} must be a number, got {type(v).__name__} "
                                 f"{v!r}")
            if not math.isfinite(v):
                raise TritonnnError(f"arange: {name} must be finite, got {v} (range {start} "
                                    f"to {end}, step {step})")
        ints = all(isinstance(v, numbers.Integral) for v in (start, end, step))
    if step == 0:
        raise TritonnnError(f"arange: step must be non-zero (range {start} to {end})")
    if (end - start) * step < 0:
        raise TritonnnError(f"arange: the range from {start} to {end} runs against the sign of "
                            f"step {step}")
    if ints:
        start, end, step = int(start), int(end), int(step)
        lo, hi = INT_RANGE[D.int64]
        if not (lo <= min(start, end, step) and max(start, end, step) <= hi):
            for v in (start, end, step):    # torch reads each bound as an int64
                scalar_fits("arange", v, D.int64)
        n = max(0, -(-(end - start) // step))
    else:
        start, end, step = float(start), float(end), float(step)
        n = max(0, math.ceil((end - start) / step))
    dt = D.as_dtype(dtype) if dtype is not None else (D.int64 if ints else D.float32)
    if n * dt.itemsize >= 2 ** 63:
        raise ShapeError(f"arange: {start} to {end} by {step} is {n} elements, more than any "
                         f"tensor can hold")
    if n and dt in INT_RANGE and not (ints and dt is D.int64):
        scalar_fits("arange", start, dt)    # the first and the last value land in dt
        scalar_fits("arange", start + (n - 1) * step, dt)
    dev = as_device(device)
    B = backend(dev)
    return Tensor._make(B.arange(start, end, step, dt), dt, dev, B)


def _random_factory(op, shape, dtype, device, requires_grad, normal):
    dt = D.as_dtype(dtype) if dtype is not None else D.float32
    shape = sizes(op, shape, dt.itemsize)
    if not dt.is_floating:
        raise DTypeError(f"{op}: expects a floating-point dtype, got {dt}")
    dev = as_device(device)
    B = backend(dev)
    n = 1
    for s in shape:
        n *= s
    seed, offset = _random.take(n)
    buf = _allocate(op, shape, dt, lambda: (B.randn if normal else B.rand)(shape, dt, seed,
                                                                           offset))
    return _finish(buf, dt, dev, B, requires_grad)


def rand(*shape, dtype=None, device=None, requires_grad=False):
    """Uniform [0, 1) numbers (Philox; reproducible from tn.manual_seed on every device)."""
    return _random_factory("rand", shape, dtype, device, requires_grad, normal=False)


def randn(*shape, dtype=None, device=None, requires_grad=False):
    """Standard normal numbers (Philox + Box-Muller)."""
    return _random_factory("randn", shape, dtype, device, requires_grad, normal=True)


# -- integer draws and sampling (issue 11): Philox on the device, the same on every device ---


def randint(low, high=None, size=None, *, dtype=None, device=None, requires_grad=False):
    """Integers uniform in ``[low, high)`` of shape ``size``, int64 unless ``dtype`` says
    otherwise; ``randint(high, size)`` draws from ``[0, high)``, as torch.

    Each number is a 64-bit Philox word reduced modulo ``high - low`` (exact integer math),
    so ``tn.manual_seed`` reproduces a draw and "cpu" and "cuda" draw the same numbers.
    """
    op = "randint"
    if size is None and isinstance(high, (tuple, list)):        # randint(high, size)
        low, high, size = 0, low, high
    elif high is None:                                          # randint(high, size=...)
        low, high = 0, low
    if size is None:
        raise ShapeError(f"{op}: a size is needed, e.g. tn.randint(0, 10, (3,))")
    low, high = integer(op, low, "low"), integer(op, high, "high")
    for bound in (low, high):
        scalar_fits(op, bound, D.int64)
    if low >= high:
        raise TritonnnError(f"{op}: low must be below high, got low={low} and high={high} "
                            f"(the numbers are drawn from [low, high))")
    dt = D.int64 if dtype is None else D.as_dtype(dtype)
    if dt is D.bool_ and (low < 0 or high > 2):
        raise DTypeError(f"{op}: bool holds 0 and 1 only; [{low}, {high}) does not fit it")
    if dt in INT_RANGE:
        scalar_fits(op, low, dt)                # every number drawn must fit dt, as torch
        scalar_fits(op, high - 1, dt)
    shape = sizes(op, (size,), dt.itemsize)
    dev = as_device(device)
    B = backend(dev)
    seed, offset = _random.take(math.prod(shape))
    buf = _allocate(op, shape, D.int64, lambda: B.randint(shape, low, high, seed, offset))
    return _finish(buf if dt is D.int64 else B.cast(buf, dt), dt, dev, B, requires_grad)


def randperm(n, *, dtype=None, device=None, requires_grad=False):
    """A random permutation of ``0 .. n-1`` (int64 unless ``dtype`` says otherwise).

    The indices sorted by distinct random Philox keys, on the device (a merge sort on
    "cuda"): ``tn.manual_seed`` reproduces it and "cpu" and "cuda" give the same one.
    """
    op = "randperm"
    n = integer(op, n, "n")
    if n < 0:
        raise ShapeError(f"{op}: n must be >= 0, got {n}")
    dt = D.int64 if dtype is None else D.as_dtype(dtype)
    if n and dt in INT_RANGE:
        scalar_fits(op, n - 1, dt)
    shape = sizes(op, (n,), dt.itemsize)
    dev = as_device(device)
    B = backend(dev)
    seed, offset = _random.take(n)
    buf = _allocate(op, shape, D.int64, lambda: B.randperm(n, seed, offset))
    return _finish(buf if dt is D.int64 else B.cast(buf, dt), dt, dev, B, requires_grad)


def multinomial(probs, num_samples, replacement=False):
    """``num_samples`` indices drawn from each row of the non-negative weights ``probs`` (1-D
    or 2-D), with or without replacement, as ``torch.multinomial``; int64."""
    op = "multinomial"
    expect_tensor(op, probs, "for the weights")
    return ops.multinomial(probs, integer(op, num_samples, "num_samples"),
                           flag(op, "replacement", replacement))


# ----------------------------------------------------------------------------------------------
# functions of several tensors
# ----------------------------------------------------------------------------------------------


def _tensor_list(op, tensors):
    if isinstance(tensors, Tensor) or not isinstance(tensors, (list, tuple)):
        raise DTypeError(f"{op}: expected a list or tuple of tensors, got a "
                         f"{type(tensors).__name__}")
    tensors = list(tensors)
    for t in tensors:
        expect_tensor(op, t, "in the list")
    return tensors


def stack(tensors, dim=0):
    return ops.cat(_tensor_list("stack", tensors), dim, op="stack")


def cat(tensors, dim=0):
    return ops.cat(_tensor_list("cat", tensors), dim)


def where(cond, a, b):
    """``a`` where ``cond`` else ``b``; a Python number takes the other operand's dtype, as torch."""
    if not isinstance(cond, Tensor) or cond.dtype is not D.bool_:
        raise DTypeError("where: condition must be a bool tensor")

    def operand(v, other):
        if isinstance(v, Tensor):
            return v
        if not is_scalar(v):
            raise DTypeError(f"where: expected a tensor or a number, got {type(v).__name__}")
        like = isinstance(other, Tensor) and (other.dtype.is_floating or not isinstance(v, float))
        if like:
            scalar_fits("where", v, other.dtype)
        return tensor(v, dtype=other.dtype if like else None, device=cond.device)
    return ops.where(cond, operand(a, b), operand(b, a))


def maximum(a, b):
    return ops.binary(expect_tensor("maximum", a), b, "maximum")


def minimum(a, b):
    return ops.binary(expect_tensor("minimum", a), b, "minimum")


# ----------------------------------------------------------------------------------------------
# autograd entry points: the tape walks buffers, these wrap them
# ----------------------------------------------------------------------------------------------


class Gradients(Mapping):
    """Gradients of one backward walk, keyed by tensor (``g[w]``, the seed's ``grads.get(&w)``)."""

    def __init__(self):
        self._by_id = {}    # id(tensor) -> (tensor, gradient tensor)

    def _put(self, t, g):
        self._by_id[id(t)] = (t, g)

    def __getitem__(self, t):
        try:
            return self._by_id[id(t)][1]
        except KeyError:
            raise KeyError(f"Gradients: no gradient for tensor of shape {tuple(t.shape)}; "
                           f"it does not require grad or the loss does not depend on it") from None

    def get(self, t, default=None):
        entry = self._by_id.get(id(t))
        return default if entry is None else entry[1]

    def __contains__(self, t):
        return id(t) in self._by_id

    def __iter__(self):
        return (t for t, _ in self._by_id.values())

    def __len__(self):
        return len(self._by_id)

    def __repr__(self):
        return f"Gradients({len(self)} tensors)"


def _seed(t, gradient, op):
    """What starts a backward walk from ``t``: ``ImplicitOnes`` for a one-element ``t`` (a
    buffer of ones only if the first rule needs one), else ``gradient``'s buffer."""
    if not t.requires_grad:
        raise TritonnnError(f"{op}: the tensor of shape {t.shape} does not require grad and "
                            f"has no graph (call requires_grad_() on a leaf it depends on)")
    if t._node is not None and is_freed(t._node):
        raise freed_error(t._node)
    if gradient is None:
        if t.numel() != 1:
            raise ShapeError(f"{op}: gradient can be implicitly created only for a scalar "
                             f"output, got shape {t.shape}; pass gradient= of that shape")
        return ImplicitOnes(t.shape, t.dtype)       # a loss's rule folds the 1 in (no fill)
    if not isinstance(gradient, Tensor):
        raise DTypeError(f"{op}: gradient must be a tensor, got {type(gradient).__name__}")
    if gradient.shape != t.shape:
        raise ShapeError(f"{op}: gradient shape {gradient.shape} does not match output shape {t.shape}")
    if gradient.device != t.device:
        raise DeviceError(f"{op}: gradient on {gradient.device}, output on {t.device}")
    return gradient.to(t.dtype)._data


def _walk(root, seed, retain_graph, keep=(), homes=False):
    """The tape's walk from tensor ``root``; a leaf root is its own gradient."""
    if root._node is None:
        if type(seed) is ImplicitOnes:
            seed = seed.materialize(root._backend)
        return {id(root): [root, seed]}, {}
    return walk(root._node, seed, retain_graph, keep, homes)


class _Wrapper:
    """Wraps the walk's gradient buffers in tensors, each with a buffer of its own.

    A rule may pass one buffer to several inputs (add), or the caller's own seed
    through: every gradient handed out gets its own buffer, so none aliases another.
    """

    def __init__(self, seed):
        self.handed = {id(seed)}

    def __call__(self, like, buf):
        B = like._backend
        buf = B.contiguous(buf)
        if id(buf) in self.handed:
            buf = B.cast(buf, like.dtype)          # a private copy
        self.handed.add(id(buf))
        return Tensor._make(buf, like.dtype, like.device, B)


def _backward(root, gradient, retain_graph):
    """``root.backward()``: every leaf's gradient, added into its ``.grad`` too.

    A parameter an optimizer keeps in flat storage has a gradient home (``_home``): the
    walk writes its gradient there when its ``.grad`` is None, and a gradient that is
    already that home's view is added to in place (one launch, no new buffer), so that
    ``.grad`` stays a view of the optimizer's flat gradient buffer.
    """
    seed = _seed(root, gradient, "backward")
    leaf_grads, _ = _walk(root, seed, retain_graph, homes=True)
    wrap = _Wrapper(seed)
    grads = Gradients()
    for leaf, buf in leaf_grads.values():
        home = getattr(leaf, "_home", None)
        if home is not None and buf is home.grad:       # written there by the walk
            wrap.handed.add(id(buf))
            gt = leaf._grad = Tensor._make(buf, leaf.dtype, leaf.device, leaf._backend)
            grads._put(leaf, gt)
            continue
        gt = wrap(leaf, buf)
        grads._put(leaf, gt)
        old = leaf._grad
        if old is None:
            leaf.grad = gt
        elif home is not None and old._data is home.grad and home.data is leaf._data:
            leaf._backend.accumulate_(home.grad, gt._data)
        else:
            leaf.grad = Tensor._make(leaf._backend.binary(old._data, gt._data, "add"),
                                     leaf.dtype, leaf.device, leaf._backend)
    for watcher in observers():
        watcher.backward_done()
    return grads


def grad(outputs, inputs, grad_outputs=None, retain_graph=False):
    """Gradients of ``outputs`` with respect to each of ``inputs``, as a tuple; ``.grad`` untouched."""
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    for t in inputs:
        if not isinstance(t, Tensor) or not t.requires_grad:
            raise TritonnnError("grad: every input must be a tensor that requires grad")
    seed = _seed(expect_tensor("grad", outputs, "output"), grad_outputs, "grad")
    keep = {t._node for t in inputs if t._node is not None}
    leaf_grads, kept = _walk(outputs, seed, retain_graph, keep)
    wrap = _Wrapper(seed)
    out = []
    for t in inputs:
        if t._node is not None:
            buf = kept.get(t._node)
        else:
            slot = leaf_grads.get(id(t))
            buf = None if slot is None else slot[1]
        out.append(None if buf is None else wrap(t, buf))
    return tuple(out)


__all__ = ["Tensor", "tensor", "from_numpy", "zeros", "ones", "empty", "full", "arange", "rand",
           "randn", "randint", "randperm", "multinomial", "stack", "cat", "where", "zeros_like", "ones_like", "maximum", "minimum",
           "Gradients", "grad"]
