"""``tn.nn.Module`` and the standard layers, named and initialised as in PyTorch."""
from __future__ import annotations

import math
import numbers
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

from ..checks import as_int, dtype_and_device, shown
from ..errors import DTypeError, IndexOutOfRange, ShapeError, TritonnnError
from ..tensor import Tensor, rand, tensor
from ..tape import no_grad
from . import functional as F


class Parameter(Tensor):
    """A tensor that requires grad and is registered by assignment to a Module attribute."""

    __slots__ = ()

    def __new__(cls, data, requires_grad=True):
        if not isinstance(data, Tensor):
            raise DTypeError(f"Parameter: expected a tensor, got {type(data).__name__} (wrap "
                             f"it with tn.tensor(...) first)")
        # the same memory and version box as ``data``, as torch's Parameter: a write to one is
        # a write to the other, and a pending backward that saved either catches it
        p = Tensor._make.__func__(cls, data._data, data.dtype, data.device, data._backend)
        p._version = data._version
        if requires_grad:
            p.requires_grad_(True)
        return p

    def __init__(self, data, requires_grad=True):
        pass

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of layers: registers Parameters and sub-Modules by attribute assignment."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise TritonnnError(f"{type(self).__name__}: call super().__init__() before "
                                f"assigning attributes")
        params, mods = self.__dict__["_parameters"], self.__dict__["_modules"]
        params.pop(name, None)
        mods.pop(name, None)
        if isinstance(value, Parameter):
            params[name] = value
        elif isinstance(value, Module):
            mods[name] = value
        else:
            object.__setattr__(self, name, value)
            return
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        d = self.__dict__
        if "_parameters" in d and name in d["_parameters"]:
            return d["_parameters"][name]
        if "_modules" in d and name in d["_modules"]:
            return d["_modules"][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        if name in self._parameters:
            del self._parameters[name]
        elif name in self._modules:
            del self._modules[name]
        else:
            object.__delattr__(self, name)

    def forward(self, *args, **kwargs):
        raise TritonnnError(f"{type(self).__name__}: forward() is not implemented")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- traversal -----------------------------------------------------------------------------
    def named_modules(self, prefix=""):
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (m for _, m in self.named_modules())

    def children(self):
        return iter(self._modules.values())

    def named_parameters(self, prefix=""):
        """``(dotted name, Parameter)`` in definition order, each parameter once."""
        seen = set()
        for mod_name, m in self.named_modules(prefix):
            for name, p in m._parameters.items():
                if id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def state_dict(self):
        """An ordered name -> tensor mapping (detached, sharing the parameters' buffers)."""
        return OrderedDict((n, p.detach()) for n, p in self.named_parameters())

    def load_state_dict(self, state_dict, strict=True):
        """Copy values into the parameters; with ``strict`` every problem is listed in one error.

        Values are tensors (numpy arrays are taken too); anything else is a DTypeError naming
        the entries, raised before any parameter is written.
        """
        where = f"load_state_dict for {type(self).__name__}"
        if not isinstance(state_dict, Mapping):
            raise DTypeError(f"{where}: expected a mapping of names to tensors (what "
                             f"state_dict() returns), got {type(state_dict).__name__}")
        own = OrderedDict(self.named_parameters())
        wrong = [f"{n} is {type(state_dict[n]).__name__}" for n in own
                 if n in state_dict and not isinstance(state_dict[n], (Tensor, np.ndarray))]
        if wrong:
            raise DTypeError(f"{where}: values must be tensors: " + ", ".join(wrong))
        missing = [n for n in own if n not in state_dict]
        unexpected = [n for n in state_dict if n not in own]
        mismatched = []
        for n, p in own.items():
            if n in state_dict:
                v = state_dict[n]
                shape = tuple(v.shape) if hasattr(v, "shape") else None
                if shape != p.shape:
                    mismatched.append(f"{n}: checkpoint {shape} vs model {p.shape}")
        if mismatched or (strict and (missing or unexpected)):
            parts = []
            if missing:
                parts.append("missing keys: " + ", ".join(missing))
            if unexpected:
                parts.append("unexpected keys: " + ", ".join(unexpected))
            if mismatched:
                parts.append("shape mismatches: " + "; ".join(mismatched))
            raise ShapeError(f"{where}: " + " | ".join(parts))
        with no_grad():
            for n, p in own.items():
                if n not in state_dict:
                    continue
                v = state_dict[n]
                if not isinstance(v, Tensor):
                    v = tensor(v)
                v = v.detach().to(p.device, p.dtype)
                p._backend.copy_(p._data, v._data)
                p._version[0] += 1
        return missing, unexpected

    # -- modes and placement -------------------------------------------------------------------
    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def to(self, *args, device=None, dtype=None):
        """Move (``to(device)``) or convert (``to(dtype)``) every parameter in place.

        All or nothing: every parameter (and gradient) is converted before any is replaced, so
        a refused dtype or a failed copy leaves the module as it was.
        """
        dtype, device = dtype_and_device("Module.to", args, dtype, device)
        if dtype is not None and not dtype.is_floating:
            raise DTypeError(f"Module.to: parameters must stay floating point, not {dtype}")
        where = tuple(x for x in (device, dtype) if x is not None)
        moved = [(p, p.detach().to(*where), None if p.grad is None else p.grad.to(*where))
                 for p in self.parameters()]
        for p, new, grad in moved:
            p._data, p.dtype, p.device, p._backend = new._data, new.dtype, new.device, new._backend
            if grad is not None:
                p.grad = grad
        return self

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = []
        for name, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n" + "\n".join(lines) + "\n)"


class Linear(Module):
    """``y = x @ weight.T + bias``; weight (out, in) and bias (out,) uniform in +-1/sqrt(in)."""

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        super().__init__()
        for what, n in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n <= 0:
                raise ShapeError(f"Linear: {what} must be a positive int, got {shown(n)} "
                                 f"(Linear({shown(in_features)}, {shown(out_features)}))")
        self.in_features, self.out_features = int(in_features), int(out_features)
        bound = 1.0 / math.sqrt(in_features)
        self.weight = Parameter(_uniform((out_features, in_features), bound, device, dtype))
        self.bias = Parameter(_uniform((out_features,), bound, device, dtype)) if bias else None

    def forward(self, x, activation=None):
        return F.linear(x, self.weight, self.bias, activation)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


def _uniform(shape, bound, device, dtype):
    with no_grad():
        u = rand(*shape, device=device)
        u = u * (2.0 * bound) - bound
        return u if dtype is None else u.to(dtype)


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Identity(Module):
    def forward(self, x):
        return x


class Sequential(Module):
    """Modules applied in order, named "0", "1", ...; Linear then ReLU runs as one fused op."""

    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise DTypeError(f"Sequential: argument {i} is {type(m).__name__} "
                                 f"{shown(m)}, not a Module")
            setattr(self, str(i), m)

    def __getitem__(self, i):
        if isinstance(i, slice):
            # a slice keeps its children's names ("2", "3", ...), as torch does
            sub = Sequential()
            for name in list(self._modules)[i]:
                setattr(sub, name, self._modules[name])
            return sub
        k = as_int(i)
        if k is None:
            raise DTypeError(f"Sequential: an index must be an int or a slice, got "
                             f"{type(i).__name__} {shown(i)}")
        n = len(self._modules)
        if not -n <= k < n:
            raise IndexOutOfRange(f"Sequential: index {k} is out of range for {n} module(s)")
        return list(self._modules.values())[k]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, m):
        setattr(self, str(len(self)), m)
        return self

    def forward(self, x):
        mods = list(self._modules.values())
        i = 0
        while i < len(mods):
            m = mods[i]
            if type(m) is Linear and i + 1 < len(mods) and type(mods[i + 1]) is ReLU:
                x = m(x, activation="relu")
                i += 2
            else:
                x = m(x)
                i += 1
        return x
