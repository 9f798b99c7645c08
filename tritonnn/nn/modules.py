"""``tn.nn.Module`` and the standard layers, named and initialised as in PyTorch."""
from __future__ import annotations

import itertools
import math
import numbers
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

from .. import dtypes as D
from ..checks import as_int, dtype_and_device, flag, shown
from ..errors import DTypeError, IndexOutOfRange, ShapeError, TritonnnError
from ..flat import home_of
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


def _ddp_prefix_matched(state_dict, own):
    """``state_dict`` with its keys brought to the form of ``own``'s where the two differ only
    by a data-parallel wrapper's ``module.`` prefix: taken off when every key has it and no
    key of the model has, put on when no key has it and every key of the model has (the
    wrapper itself loading its model's state dict)."""
    prefix = "module."
    keys, own = list(state_dict), list(own)
    if not keys or not own or not all(isinstance(k, str) for k in keys):
        return state_dict
    theirs = [k.startswith(prefix) for k in keys]
    ours = [k.startswith(prefix) for k in own]
    if all(theirs) and not any(ours):
        return OrderedDict((k[len(prefix):], v) for k, v in state_dict.items())
    if not any(theirs) and all(ours):
        return OrderedDict((prefix + k, v) for k, v in state_dict.items())
    return state_dict


class Module:
    """Base class of layers: registers Parameters, sub-Modules and buffers by attribute
    assignment (buffers with ``register_buffer``), as PyTorch's ``nn.Module``."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers_set", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise TritonnnError(f"{type(self).__name__}: call super().__init__() before "
                                f"assigning attributes")
        d = self.__dict__
        params, mods, bufs = d["_parameters"], d["_modules"], d.get("_buffers", {})
        if name in bufs and not isinstance(value, (Parameter, Module)):
            # a buffer stays a buffer: a new tensor (or None) replaces its value, as torch
            if value is not None and not isinstance(value, Tensor):
                raise DTypeError(f"{type(self).__name__}: buffer {name!r} takes a tensor or "
                                 f"None, got {type(value).__name__} {shown(value)}")
            bufs[name] = value
            return
        params.pop(name, None)
        mods.pop(name, None)
        if isinstance(value, (Parameter, Module)):
            bufs.pop(name, None)
            d.get("_non_persistent_buffers_set", set()).discard(name)
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
        for table in ("_parameters", "_buffers", "_modules"):
            if table in d and name in d[table]:
                return d[table][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        if name in self._parameters:
            del self._parameters[name]
        elif name in self._buffers:
            del self._buffers[name]
            self._non_persistent_buffers_set.discard(name)
        elif name in self._modules:
            del self._modules[name]
        else:
            object.__delattr__(self, name)

    def forward(self, *args, **kwargs):
        raise TritonnnError(f"{type(self).__name__}: forward() is not implemented")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- registration --------------------------------------------------------------------------
    def _new_name(self, op, name):
        if "_parameters" not in self.__dict__:
            raise TritonnnError(f"{type(self).__name__}.{op}: call super().__init__() first")
        if not isinstance(name, str):
            raise DTypeError(f"{type(self).__name__}.{op}: the name must be a str, got "
                             f"{type(name).__name__} {shown(name)}")
        if not name or "." in name:
            raise TritonnnError(f"{type(self).__name__}.{op}: the name must be non-empty and "
                                f"have no '.', got {name!r}")

    def register_buffer(self, name, tensor, persistent=True):
        """A tensor that is state but not a parameter (running statistics, a mask): in
        ``state_dict`` (unless ``persistent=False``), moved by ``to()``, never optimized."""
        self._new_name("register_buffer", name)
        if hasattr(self, name) and name not in self._buffers:
            raise TritonnnError(f"{type(self).__name__}.register_buffer: attribute {name!r} "
                                f"already exists")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise DTypeError(f"{type(self).__name__}.register_buffer: {name!r} must be a tensor "
                             f"or None, got {type(tensor).__name__} {shown(tensor)}")
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers_set.discard(name)
        else:
            self._non_persistent_buffers_set.add(name)

    def register_parameter(self, name, param):
        """``setattr(self, name, param)`` with the checks of PyTorch's method of this name."""
        self._new_name("register_parameter", name)
        if param is not None and not isinstance(param, Parameter):
            raise DTypeError(f"{type(self).__name__}.register_parameter: {name!r} must be a "
                             f"tn.nn.Parameter or None, got {type(param).__name__}")
        if hasattr(self, name) and name not in self._parameters:
            raise TritonnnError(f"{type(self).__name__}.register_parameter: attribute {name!r} "
                                f"already exists")
        if param is None:
            self._parameters.pop(name, None)
            object.__setattr__(self, name, None)
        else:
            setattr(self, name, param)

    def add_module(self, name, module):
        """``setattr(self, name, module)`` with the checks of PyTorch's method of this name."""
        self._new_name("add_module", name)
        if not isinstance(module, Module):
            raise DTypeError(f"{type(self).__name__}.add_module: {name!r} must be a Module, got "
                             f"{type(module).__name__}")
        if hasattr(self, name) and name not in self._modules:
            raise TritonnnError(f"{type(self).__name__}.add_module: attribute {name!r} already "
                                f"exists")
        setattr(self, name, module)

    register_module = add_module

    # -- traversal -----------------------------------------------------------------------------
    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        """``(dotted name, module)`` for this module and every one below it, depth first in
        definition order; a module reachable twice is listed once (``remove_duplicate``)."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(memo, f"{prefix}.{name}" if prefix else name,
                                       remove_duplicate)

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_children(self):
        """``(name, module)`` of the direct sub-modules, each once."""
        seen = set()
        for name, m in self._modules.items():
            if id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self):
        return (m for _, m in self.named_children())

    def _named_members(self, table, prefix, recurse, remove_duplicate):
        seen = set()
        mods = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse \
            else [(prefix, self)]
        for mod_name, m in mods:
            for name, t in m.__dict__[table].items():
                if t is None or (remove_duplicate and id(t) in seen):
                    continue
                seen.add(id(t))
                yield (f"{mod_name}.{name}" if mod_name else name), t

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        """``(dotted name, Parameter)`` in definition order, each parameter once."""
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        return [p for _, p in self.named_parameters(recurse=recurse)]

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        """``(dotted name, buffer)`` in definition order, each buffer once."""
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse=True):
        return [b for _, b in self.named_buffers(recurse=recurse)]

    def apply(self, fn):
        """Call ``fn`` on every sub-module (children first, depth first), then on this one;
        returns this module (``model.apply(init_weights)``)."""
        if not callable(fn):
            raise DTypeError(f"{type(self).__name__}.apply: fn must be callable, got "
                             f"{type(fn).__name__} {shown(fn)}")
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # -- state ---------------------------------------------------------------------------------
    def _state_entries(self, prefix=""):
        """PyTorch's state_dict order: this module's parameters, then its persistent buffers,
        then each child's entries under ``name.``; a tensor reachable under two names is
        listed under both (as torch's)."""
        for name, p in self._parameters.items():
            if p is not None:
                yield prefix + name, p
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers_set:
                yield prefix + name, b
        for name, m in self._modules.items():
            if m is not None:
                yield from m._state_entries(f"{prefix}{name}.")

    def state_dict(self, prefix="", keep_vars=False):
        """An ordered name -> tensor mapping of the parameters and persistent buffers, with
        PyTorch's names and order (detached, sharing the module's buffers, unless
        ``keep_vars``)."""
        return OrderedDict((n, t if keep_vars else t.detach())
                           for n, t in self._state_entries(prefix))

    def load_state_dict(self, state_dict, strict=True):
        """Copy values into the parameters and persistent buffers; with ``strict`` every
        problem is listed in one error.

        Values are tensors (numpy arrays are taken too); anything else is a DTypeError naming
        the entries, raised before any parameter is written. A ``DistributedDataParallel``
        state dict (every key prefixed ``module.``) loads into the model it wrapped, and the
        model's into the wrapper.
        """
        where = f"load_state_dict for {type(self).__name__}"
        if not isinstance(state_dict, Mapping):
            raise DTypeError(f"{where}: expected a mapping of names to tensors (what "
                             f"state_dict() returns), got {type(state_dict).__name__}")
        own = OrderedDict(self._state_entries())
        state_dict = _ddp_prefix_matched(state_dict, own)
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

    def requires_grad_(self, requires_grad=True):
        """Set ``requires_grad`` of every parameter (freeze a part with False)."""
        flag_value = flag(f"{type(self).__name__}.requires_grad_", "requires_grad", requires_grad)
        for p in self.parameters():
            p.requires_grad_(flag_value)
        return self

    def to(self, *args, device=None, dtype=None):
        """Move (``to(device)``) or convert (``to(dtype)``) every parameter and buffer in place
        (a dtype applies to the floating-point ones, as PyTorch's).

        All or nothing: every tensor (and gradient) is converted before any is replaced, so
        a refused dtype or a failed copy leaves the module as it was.
        """
        dtype, device = dtype_and_device("Module.to", args, dtype, device)
        if dtype is not None and not dtype.is_floating:
            raise DTypeError(f"Module.to: parameters must stay floating point, not {dtype}")
        where = tuple(x for x in (device, dtype) if x is not None)
        moved = [(p, p.detach().to(*where), None if p.grad is None else p.grad.to(*where))
                 for p in self.parameters()]
        params = {id(p) for p, _, _ in moved}
        for b in self.buffers():
            if id(b) in params:
                continue
            to = tuple(x for x in (device, dtype if b.dtype.is_floating else None)
                       if x is not None)
            moved.append((b, b.detach().to(*to) if to else b,
                          None if b.grad is None else b.grad.to(*to)))
        for p, new, grad in moved:
            p._data, p.dtype, p.device, p._backend = new._data, new.dtype, new.device, new._backend
            if grad is not None:
                p.grad = grad
        return self

    def cuda(self, device=None):
        return self.to("cuda" if device is None else device)

    def cpu(self):
        return self.to("cpu")

    def float(self):
        return self.to(D.float32)

    def double(self):
        return self.to(D.float64)

    def half(self):
        return self.to(D.float16)

    def bfloat16(self):
        return self.to(D.bfloat16)

    def zero_grad(self, set_to_none=True):
        """Drop every parameter's gradient (the default, as torch), or fill it with zeros (in
        an optimizer's flat gradient buffer when the parameter lives in one)."""
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
                continue
            home = home_of(p)
            if home is None:
                p.grad = Tensor._make(p._backend.full(p.shape, 0, p.dtype), p.dtype, p.device,
                                      p._backend)
            else:
                p._backend.setitem(home.grad, (Ellipsis,), 0)
                if p._grad._data is not home.grad:
                    p._grad = home.flat.grad_tensor(home.index)

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
    """Returns its input; takes (and ignores) any constructor arguments, as PyTorch's."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x


def _child_index(container, i, n):
    """The position (0 to n - 1) the int ``i`` names among a container's ``n`` children,
    negative counting from the end; a clear error for anything else."""
    k = as_int(i)
    if k is None:
        raise DTypeError(f"{container}: an index must be an int or a slice, got "
                         f"{type(i).__name__} {shown(i)}")
    if not -n <= k < n:
        raise IndexOutOfRange(f"{container}: index {k} is out of range for {n} module(s)")
    return k + n if k < 0 else k


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
        return list(self._modules.values())[_child_index("Sequential", i, len(self._modules))]

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


# ==============================================================================================
# containers and shape layers (issue 11): ModuleList, Flatten
# ==============================================================================================


def _module(op, i, m):
    if not isinstance(m, Module):
        raise DTypeError(f"{op}: element {i} is {type(m).__name__} {shown(m)}, not a Module")
    return m


class ModuleList(Module):
    """A list of modules, registered as children named "0", "1", ... (so parameter names
    match PyTorch's: ``blocks.3.weight``): index, slice (a new ModuleList, renumbered),
    ``append``, ``extend``, ``insert``, ``pop``, ``del``, ``len``, iteration. It has no
    ``forward``: the owner decides how to call its modules."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _index(self, i):
        return _child_index("ModuleList", i, len(self._modules))

    def _renumber(self, mods):
        self._modules.clear()
        for i, m in enumerate(mods):
            self._modules[str(i)] = m

    def __getitem__(self, i):
        if isinstance(i, slice):
            return ModuleList(list(self._modules.values())[i])
        return self._modules[str(self._index(i))]

    def __setitem__(self, i, m):
        setattr(self, str(self._index(i)), _module("ModuleList", i, m))

    def __delitem__(self, i):
        mods = list(self._modules.values())
        if isinstance(i, slice):
            del mods[i]
        else:
            del mods[self._index(i)]
        self._renumber(mods)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(list(self._modules.values()))

    def __iadd__(self, modules):
        return self.extend(modules)

    def __add__(self, other):
        if not isinstance(other, ModuleList):
            raise DTypeError(f"ModuleList: can only add a ModuleList, got {type(other).__name__}")
        return ModuleList(list(self) + list(other))

    def append(self, module):
        setattr(self, str(len(self)), _module("ModuleList.append", len(self), module))
        return self

    def extend(self, modules):
        if isinstance(modules, Module) and not isinstance(modules, (ModuleList, Sequential)):
            raise DTypeError(f"ModuleList.extend: expected an iterable of Modules, got a "
                             f"{type(modules).__name__} (use append)")
        try:
            mods = list(modules)
        except TypeError:
            raise DTypeError(f"ModuleList: expected an iterable of Modules, got "
                             f"{type(modules).__name__} {shown(modules)}") from None
        for i, m in enumerate(mods):
            _module("ModuleList", i, m)
        for m in mods:
            setattr(self, str(len(self)), m)
        return self

    def insert(self, index, module):
        """Insert before ``index`` (as ``list.insert``: a negative index counts from the end,
        one past either end clamps); the modules after it are renumbered."""
        k = as_int(index)
        if k is None:
            raise DTypeError(f"ModuleList.insert: index must be an int, got {shown(index)}")
        mods = list(self._modules.values())
        mods.insert(k, _module("ModuleList.insert", k, module))
        self._renumber(mods)

    def pop(self, index=-1):
        m = self[index]
        del self[index]
        return m

    def __repr__(self):
        # runs of equal children print once, as PyTorch's: "(0-11): 12 x Block(...)"
        if not self._modules:
            return "ModuleList()"
        lines, i = [], 0
        for text, run in itertools.groupby(repr(m) for m in self._modules.values()):
            n = len(list(run))
            label = f"({i}): " if n == 1 else f"({i}-{i + n - 1}): {n} x "
            lines.append("  " + (label + text).replace("\n", "\n  "))
            i += n
        return "ModuleList(\n" + "\n".join(lines) + "\n)"


class Flatten(Module):
    """``x.flatten(start_dim, end_dim)``: by default every dim after the batch dim."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim = as_int(start_dim)
        self.end_dim = as_int(end_dim)
        if self.start_dim is None or self.end_dim is None:
            raise DTypeError(f"Flatten: start_dim and end_dim must be ints, got "
                             f"{shown(start_dim)} and {shown(end_dim)}")

    def forward(self, x):
        return x.flatten(self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
