"""The op table: every differentiable op, its checks, its forward and its backward rule.

Each op validates its operands (raising a tritonnn error that names the op and
the operands), runs its forward through the backend of its device (numpy for
"cpu", Triton for "cuda"), and, when an input requires grad, records a tape
node whose backward rule is written right under the forward. Backward rules
work on raw backend buffers, never mutate the gradient they are handed, and
return one gradient (or None) per input.
"""
from __future__ import annotations

import numbers
import operator

from . import dtypes as D
from .errors import DeviceError, DTypeError, IndexOutOfRange, ShapeError, TritonnnError
from .tape import Node, _GradMode

Tensor = None   # tritonnn.tensor.Tensor, bound by tensor.py once it is defined (import cycle)

# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def _wrap(buf, dtype, device, backend):
    return Tensor._make(buf, dtype, device, backend)


def _record(out, name, backward, inputs, saved=()):
    """Attach a node to ``out`` when grad mode is on and some input requires grad.

    ``saved``: the tensors whose buffers ``backward`` reads; their versions are
    checked before it runs (an in-place write in between is an error, not a wrong
    gradient).
    """
    if _GradMode.enabled:
        edges = []
        needed = False
        for t in inputs:
            # where its gradient goes: the input's node, the leaf itself, or nowhere
            e = None if t is None else (t._node or (t if t.requires_grad else None))
            needed = needed or e is not None
            edges.append(e)
        if needed:
            out._node = Node(name, backward, tuple(edges), _versions(saved))
            out.requires_grad = True
    return out


def _versions(tensors):
    return tuple((t._version, t._version[0]) for t in tensors if t is not None)


def _view(out, x):
    """``out`` views ``x``'s memory: in-place writes through either bump one version."""
    out._version = x._version
    return out


def _same_device(op, *ts):
    dev = ts[0].device
    for t in ts[1:]:
        if t.device != dev:
            raise DeviceError(f"{op}: operands are on different devices: "
                              + ", ".join(f"{tuple(x.shape)} on {x.device}" for x in ts)
                              + "; move them with .to(device) first")
    return dev


def _norm_dim(op, dim, ndim):
    if not isinstance(dim, numbers.Integral) or isinstance(dim, bool):
        raise TritonnnError(f"{op}: dim must be an int, got {dim!r}")
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexOutOfRange(f"{op}: dim {dim} is out of range for a tensor of {ndim} "
                              f"dimension(s) (expected in [{-n}, {n - 1}])")
    return dim % n


def broadcast_shapes(op, a, b):
    """numpy's broadcasting of two shapes, or a ShapeError naming both."""
    out = []
    for i in range(max(len(a), len(b))):
        x = a[len(a) - 1 - i] if i < len(a) else 1
        y = b[len(b) - 1 - i] if i < len(b) else 1
        if x != y and x != 1 and y != 1:
            raise ShapeError(f"{op}: shapes {tuple(a)} and {tuple(b)} cannot be broadcast together "
                             f"(dimension {-1 - i}: {x} vs {y})")
        out.append(max(x, y) if x != 0 and y != 0 else 0)
    return tuple(reversed(out))


def _float_ops(op, t):
    if not t.dtype.is_floating:
        raise DTypeError(f"{op}: expected a floating-point tensor, got {t.dtype} "
                         f"(convert with .to(tn.float32))")


# ----------------------------------------------------------------------------------------------
# elementwise
# ----------------------------------------------------------------------------------------------

_ARITH = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**",
          "maximum": "maximum", "minimum": "minimum"}
_CMP = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def _scalar_type(s):
    if isinstance(s, bool):
        return D.bool_
    if isinstance(s, numbers.Integral):
        return D.int64
    if isinstance(s, numbers.Real):
        return D.float32
    raise DTypeError(f"unsupported operand of type {type(s).__name__}")


def _promote(op, a, b):
    """Result dtype of a tensor op with a tensor or a Python scalar, PyTorch-style, strict on floats."""
    if not isinstance(b, Tensor):
        st = _scalar_type(b)
        if a.dtype.is_floating:
            return a.dtype
        if st is D.float32:
            return D.float32
        if a.dtype is D.bool_ and st is D.int64:
            return D.int64
        return a.dtype
    if a.dtype is b.dtype:
        return a.dtype
    fa, fb = a.dtype.is_floating, b.dtype.is_floating
    if fa and fb:
        raise DTypeError(f"{op}: operands have different dtypes {a.dtype} {tuple(a.shape)} and "
                         f"{b.dtype} {tuple(b.shape)}; convert one with .to(dtype)")
    if fa:
        return a.dtype
    if fb:
        return b.dtype
    return D.promote(a.dtype, b.dtype)


def binary(a, b, op, reverse=False):
    """``a op b`` (``b op a`` with ``reverse``) for a tensor ``a`` and a tensor or scalar ``b``."""
    bt = isinstance(b, Tensor)
    if bt:
        if a.device is not b.device and a.device != b.device:
            _same_device(_ARITH.get(op) or _CMP[op], a, b)
        if a._data.shape != b._data.shape:
            broadcast_shapes(_ARITH.get(op) or _CMP[op], a.shape, b.shape)
        if op == "pow":
            raise TritonnnError("**: only a scalar exponent is supported (tensor ** number)")
    elif not isinstance(b, numbers.Number) or isinstance(b, complex):
        if op in ("eq", "ne"):
            return NotImplemented      # Python falls back to identity, as torch's ``t == None``
        raise DTypeError(f"{_ARITH.get(op) or _CMP[op]}: unsupported operand of type "
                         f"{type(b).__name__} with a tensor {a.shape} {a.dtype}; use a tensor or "
                         f"a Python number")
    dt = a.dtype if (bt and a.dtype is b.dtype) else _promote(_ARITH.get(op) or _CMP[op], a, b)
    if not dt.is_floating:
        if op in ("div", "pow"):
            dt = D.float32
        elif op in _CMP and not bt and _scalar_type(b) is D.float32:
            dt = D.float32
    a_ = a if a.dtype is dt else a.to(dt)
    if bt:
        b_ = b if b.dtype is dt else b.to(dt)
    else:
        # a Python scalar of the result's kind (a numpy scalar would promote the buffer)
        b_ = float(b) if dt.is_floating else (bool(b) if dt is D.bool_ else int(b))
    B = a._backend
    x, y = (b_, a_) if reverse else (a_, b_)
    xt, yt = (bt, True) if reverse else (True, bt)
    xb = x._data if xt else x
    yb = y._data if yt else y
    if reverse and not xt:
        if op == "pow":
            raise TritonnnError("**: a number raised to a tensor power is not supported")
        # scalar on the left: materialize it as a 0-d buffer of the result dtype
        xb = B.full((), x, dt)
        xt = None      # a constant: no gradient, but a buffer for the rules
    out_buf = B.binary(xb, yb, op)
    if op in _CMP:
        return Tensor._make(out_buf, D.bool_, a.device, B)
    out = Tensor._make(out_buf, dt, a.device, B)
    if not dt.is_floating or not _GradMode.enabled:
        return out
    nx, ny = bool(xt) and x.requires_grad, bool(yt) and y.requires_grad
    if not (nx or ny):
        return out
    rule = _BINARY_RULES[op](B, xb, yb, dt, nx, ny)
    xs, ys = xb.shape if xt else (), yb.shape if yt else ()
    if xs == ys:
        backward = rule
    else:
        def backward(g):
            gx, gy = rule(g)
            return (None if gx is None else B.sum_to_shape(gx, xs),
                    None if gy is None else B.sum_to_shape(gy, ys))
    # _record, inlined for the hottest op: an input that needs a gradient has a node or is a leaf
    saved = _versions((x if xt else None, y if yt else None)) if op in _SAVES_OPERANDS else ()
    out._node = Node(op, backward, ((x._node or x) if nx else None, (y._node or y) if ny else None),
                     saved)
    out.requires_grad = True
    return out


# The backward rules of the binary ops: op -> factory(backend, x, y, dtype, need_x, need_y)
# returning ``backward(g) -> (dx, dy)`` on the broadcast shape (``binary`` sums them back
# down); a gradient that is not needed is None.
def _add_rule(B, xb, yb, dt, nx, ny):
    return _ADD_BACKWARD[nx, ny]


_ADD_BACKWARD = {(True, True): lambda g: (g, g), (True, False): lambda g: (g, None),
                 (False, True): lambda g: (None, g)}


def _sub_rule(B, xb, yb, dt, nx, ny):
    return lambda g: (g if nx else None, B.unary(g, "neg") if ny else None)


def _mul_rule(B, xb, yb, dt, nx, ny):
    return lambda g: (B.binary(g, yb, "mul") if nx else None,
                      B.binary(g, xb, "mul") if ny else None)


def _div_rule(B, xb, yb, dt, nx, ny):
    def backward(g):
        gx = B.binary(g, yb, "div")
        # d(x/y)/dy = -x/y^2, computed as -(g/y) * (x/y)
        gy = B.unary(B.binary(gx, B.binary(xb, yb, "div"), "mul"), "neg") if ny else None
        return (gx if nx else None), gy
    return backward


def _pow_rule(B, xb, yb, dt, nx, ny):
    e = float(yb)
    if e == 1.0:
        return lambda g: (g, None)
    if e == 0.0:                       # d(x**0)/dx = 0 everywhere, also at x == 0
        return lambda g: (B.binary(g, 0.0, "mul"), None)
    return lambda g: (B.binary(g, B.binary(B.binary(xb, e - 1.0, "pow"), e, "mul"), "mul"), None)


def _extreme_rule(win):
    def factory(B, xb, yb, dt, nx, ny):
        def backward(g):
            # the winner takes the gradient; ties split it evenly, as torch does
            zero = B.full((), 0, dt)
            win_x = B.binary(xb, yb, win)
            tie = B.binary(xb, yb, "eq")
            half = B.binary(g, 0.5, "mul")
            return (B.where(win_x, g, B.where(tie, half, zero)),
                    B.where(win_x, zero, B.where(tie, half, g)))
        return backward
    return factory


_SAVES_OPERANDS = frozenset({"mul", "div", "pow", "maximum", "minimum"})

_BINARY_RULES = {
    "add": _add_rule, "sub": _sub_rule, "mul": _mul_rule, "div": _div_rule, "pow": _pow_rule,
    "maximum": _extreme_rule("gt"), "minimum": _extreme_rule("lt"),
}


def _one_minus(B, y):
    return B.binary(B.unary(y, "neg"), 1, "add")


def _sign(B, x):
    dt = B.dtype_of(x)
    one, zero = B.full((), 1, dt), B.full((), 0, dt)
    pos = B.where(B.binary(x, 0, "gt"), one, zero)
    neg = B.where(B.binary(x, 0, "lt"), one, zero)
    return B.binary(pos, neg, "sub")


# op -> gradient of its input, given (backend, upstream g, input x, output y)
_UNARY_RULES = {
    "neg": lambda B, g, x, y: B.unary(g, "neg"),
    "exp": lambda B, g, x, y: B.binary(g, y, "mul"),
    "log": lambda B, g, x, y: B.binary(g, x, "div"),
    "sqrt": lambda B, g, x, y: B.binary(B.binary(g, y, "div"), 0.5, "mul"),
    "abs": lambda B, g, x, y: B.binary(g, _sign(B, x), "mul"),
    "tanh": lambda B, g, x, y: B.binary(g, _one_minus(B, B.binary(y, y, "mul")), "mul"),
    "sigmoid": lambda B, g, x, y: B.binary(g, B.binary(y, _one_minus(B, y), "mul"), "mul"),
}


def unary(x, op):
    if op != "neg" or x.dtype is D.bool_:
        _float_ops(op, x)
    elif not (x.dtype.is_floating or x.dtype.is_integer):
        raise DTypeError(f"neg: unsupported dtype {x.dtype}")
    B = x._backend
    xb = x._data
    yb = B.unary(xb, op)
    out = _wrap(yb, x.dtype, x.device, B)
    if not x.dtype.is_floating:
        return out
    rule = _UNARY_RULES[op]
    return _record(out, op, lambda g: (rule(B, g, xb, yb),), (x,), (x, out))


def relu(x):
    if not (x.dtype.is_floating or x.dtype.is_integer):
        raise DTypeError(f"relu: unsupported dtype {x.dtype}")
    B = x._backend
    yb = B.relu_fwd(x._data)
    out = _wrap(yb, x.dtype, x.device, B)
    return _record(out, "relu", lambda g: (B.relu_bwd(g, yb),), (x,), (out,))


def where(cond, a, b):
    from .tensor import tensor
    if not isinstance(cond, Tensor) or cond.dtype is not D.bool_:
        raise DTypeError("where: condition must be a bool tensor")

    def operand(v, other):   # a Python scalar takes the tensor operand's dtype, as in torch
        if isinstance(v, Tensor):
            return v
        like = isinstance(other, Tensor) and (other.dtype.is_floating or not isinstance(v, float))
        return tensor(v, dtype=other.dtype if like else None, device=cond.device)
    a, b = operand(a, b), operand(b, a)
    _same_device("where", cond, a, b)
    dt = _promote("where", a, b)
    a, b = a.to(dt), b.to(dt)
    broadcast_shapes("where", broadcast_shapes("where", cond.shape, a.shape), b.shape)  # or raise
    B = a._backend
    out = _wrap(B.where(cond._data, a._data, b._data), dt, a.device, B)
    cb = cond._data
    zero = B.full((), 0, dt)

    def backward(g):
        return (B.sum_to_shape(B.where(cb, g, zero), a.shape),
                B.sum_to_shape(B.where(cb, zero, g), b.shape))
    return _record(out, "where", backward, (a, b), (cond,))


# ----------------------------------------------------------------------------------------------
# reductions
# ----------------------------------------------------------------------------------------------


def _dims(op, dim, ndim):
    """Normalized reduction dims; None or an empty list means every dim, as in torch."""
    if dim is None or (isinstance(dim, (tuple, list)) and not dim):
        return tuple(range(ndim))
    if isinstance(dim, (tuple, list)):
        ds = tuple(_norm_dim(op, d, ndim) for d in dim)
        if len(set(ds)) != len(ds):
            raise TritonnnError(f"{op}: dim {tuple(dim)} names a dimension twice")
        return ds
    return (_norm_dim(op, dim, ndim),)


def _keep_shape(shape, dims):
    return tuple(1 if i in dims else s for i, s in enumerate(shape))


def reduce(x, op, dim=None, keepdim=False):
    """sum / mean / max / min over ``dim`` (None: all dims)."""
    if op == "mean" and not x.dtype.is_floating:
        raise DTypeError(f"mean: expected a floating-point tensor, got {x.dtype}")
    dims = _dims(op, dim, x.ndim)          # validates ``dim`` for a 0-d tensor too
    if x.ndim == 0:
        dims = ()
    if op in ("max", "min") and any(x.shape[d] == 0 for d in dims):
        raise ShapeError(f"{op}: cannot reduce an empty dimension of shape {x.shape}")
    B = x._backend
    yb = B.reduce(x._data, dims, keepdim, op)
    out_dt = D.int64 if (op == "sum" and not x.dtype.is_floating) else x.dtype
    out = _wrap(yb, out_dt, x.device, B)
    if not x.dtype.is_floating:
        return out
    shape, kshape = x.shape, _keep_shape(x.shape, dims)
    count = 1
    for d in dims:
        count *= shape[d]
    xb = x._data

    if op in ("sum", "mean"):
        def backward(g):
            g = B.reshape(g, kshape)
            if op == "mean":
                g = B.binary(g, 1.0 / max(count, 1), "mul")
            return (B.expand(g, shape),)
    else:
        def backward(g):
            # every element equal to the extreme shares the gradient evenly (torch's amax rule)
            y = B.reshape(yb, kshape)
            hit = B.cast(B.binary(xb, y, "eq"), x.dtype)
            n = B.reduce(hit, dims, True, "sum")
            return (B.binary(hit, B.binary(B.reshape(g, kshape), n, "div"), "mul"),)
    return _record(out, op, backward, (x,), (x, out) if op in ("max", "min") else ())


def max_dim(x, dim, keepdim=False):
    """``(values, indices)`` of the maximum along ``dim``, as torch.max(x, dim)."""
    d = _norm_dim("max", dim, x.ndim)
    if x.ndim and x.shape[d] == 0:
        raise ShapeError(f"max: cannot reduce an empty dimension of shape {x.shape}")
    B = x._backend
    idx = B.argmax(x._data, d, keepdim)
    vals = B.reduce(x._data, (d,) if x.ndim else (), keepdim, "max")
    v = _wrap(vals, x.dtype, x.device, B)
    i = _wrap(idx, D.int64, x.device, B)
    if x.dtype.is_floating:
        xb = x._data
        v = _record(v, "max", lambda g: (B.max_bwd(g, xb, idx, d, keepdim),), (x,), (x,))
    return v, i


def min_dim(x, dim, keepdim=False):
    """``(values, indices)`` of the minimum along ``dim``, as torch.min(x, dim).

    Built from max_dim on the negated input (exact for floats and signed ints;
    first index on ties, as argmax), so the gradient needs no rule of its own.
    """
    if not x.dtype.is_floating and x.dtype is not D.int64:
        x = x.to(D.int64)          # negating unsigned or bool values would wrap
    v, i = max_dim(-x, dim, keepdim)
    return -v, i


def argmax(x, dim=None, keepdim=False):
    d = None if dim is None else _norm_dim("argmax", dim, x.ndim)
    if x.numel() == 0:
        raise ShapeError(f"argmax: cannot take the argmax of an empty tensor of shape {x.shape}")
    if x.dtype is D.bool_:
        x = x.to(D.uint8)
    B = x._backend
    return _wrap(B.argmax(x._data, d, keepdim), D.int64, x.device, B)


# ----------------------------------------------------------------------------------------------
# products
# ----------------------------------------------------------------------------------------------


def _check_float_pair(op, a, b):
    if a.dtype is not b.dtype:
        raise DTypeError(f"{op}: operands have different dtypes {a.dtype} {a.shape} and {b.dtype} "
                         f"{b.shape}; convert one with .to(dtype)")
    if not a.dtype.is_floating:
        raise DTypeError(f"{op}: expected floating-point operands, got {a.dtype}")


def _swap_last(B, buf, ndim):
    dims = list(range(ndim))
    dims[-1], dims[-2] = dims[-2], dims[-1]
    return B.permute(buf, tuple(dims))


def matmul(a, b):
    """Matrix product with numpy's rules for 1-D and batched operands."""
    if not isinstance(b, Tensor):
        raise TritonnnError(f"matmul: expected a tensor operand, got {type(b).__name__}")
    _same_device("matmul", a, b)
    _check_float_pair("matmul", a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul: both operands need at least 1 dimension, got {a.shape} @ {b.shape}")
    k_a, k_b = a.shape[-1], b.shape[0] if b.ndim == 1 else b.shape[-2]
    if k_a != k_b:      # checked here so the message shows the caller's shapes, not unsqueezed ones
        raise ShapeError(f"matmul: inner dimensions differ: {a.shape} @ {b.shape} ({k_a} != {k_b})")
    if a.ndim == 1:
        out = matmul(a.unsqueeze(0), b)
        return out.squeeze(-2) if b.ndim > 1 else out.squeeze(0)   # 1-D @ 1-D: a 0-d dot
    if b.ndim == 1:
        return matmul(a, b.unsqueeze(1)).squeeze(-1)
    try:
        broadcast_shapes("matmul", a.shape[:-2], b.shape[:-2])
    except ShapeError:
        raise ShapeError(f"matmul: batch dimensions of {a.shape} @ {b.shape} cannot be broadcast "
                         f"together") from None
    B = a._backend
    ab, bb = a._data, b._data
    out = _wrap(B.matmul(ab, bb), a.dtype, a.device, B)
    sa, sb = a.shape, b.shape
    need_a, need_b = a.requires_grad, b.requires_grad

    def backward(g):
        ga = B.sum_to_shape(B.matmul(g, _swap_last(B, bb, len(sb))), sa) if need_a else None
        gb = B.sum_to_shape(B.matmul(_swap_last(B, ab, len(sa)), g), sb) if need_b else None
        return ga, gb
    return _record(out, "matmul", backward, (a, b), (a, b))


def linear(x, weight, bias=None, activation=None):
    """``x @ weight.T + bias``, then ReLU when ``activation == "relu"``: one fused op."""
    if activation not in (None, "relu"):
        raise TritonnnError(f"linear: activation must be None or 'relu', got {activation!r}")
    ops = (x, weight) if bias is None else (x, weight, bias)
    for t in ops:
        if not isinstance(t, Tensor):
            raise TritonnnError(f"linear: expected tensors, got {type(t).__name__}")
    _same_device("linear", *ops)
    for t in ops[1:]:
        if t.dtype is not x.dtype:
            raise DTypeError(f"linear: input is {x.dtype} but weight/bias is {t.dtype}")
    _float_ops("linear", x)
    if weight.ndim != 2 or x.ndim < 1:
        raise ShapeError(f"linear: weight must be 2-D (out, in) and input at least 1-D, "
                         f"got input {x.shape} and weight {weight.shape}")
    if x.shape[-1] != weight.shape[1]:
        raise ShapeError(f"linear: input {x.shape} has {x.shape[-1]} features but weight "
                         f"{weight.shape} expects {weight.shape[1]}")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ShapeError(f"linear: bias {bias.shape} does not match weight {weight.shape} "
                         f"(expected ({weight.shape[0]},))")
    lead = x.shape[:-1]
    x2 = x if x.ndim == 2 else x.reshape(-1, x.shape[-1])
    B = x._backend
    relu_ = activation == "relu"
    xb, wb = x2._data, weight._data
    yb = B.linear_fwd(xb, wb, None if bias is None else bias._data, relu_)
    out = _wrap(yb, x.dtype, x.device, B)
    need = (x2.requires_grad, weight.requires_grad, bias is not None and bias.requires_grad)
    if any(need) and _GradMode.enabled:
        saved_out = yb if relu_ else None      # the ReLU mask is the output itself

        def backward(g):
            dx, dw, db = B.linear_bwd(g, xb, wb, saved_out, relu_, *need)
            return dx, dw, db
        out = _record(out, "linear_relu" if relu_ else "linear", backward,
                      (x2, weight, bias) if bias is not None else (x2, weight),
                      (x2, weight, out) if relu_ else (x2, weight))
    return out if x.ndim == 2 else out.reshape(*lead, weight.shape[0])


# ----------------------------------------------------------------------------------------------
# views and joins
# ----------------------------------------------------------------------------------------------


def reshape(x, shape):
    try:
        shape = tuple(operator.index(s) for s in shape)
    except TypeError:
        raise ShapeError(f"reshape: sizes must be ints, got {tuple(shape)} for a tensor of shape "
                         f"{x.shape}") from None
    if shape.count(-1) > 1:
        raise ShapeError(f"reshape: only one dimension can be -1, got {shape}")
    if any(s < -1 for s in shape):
        raise ShapeError(f"reshape: invalid size in {shape}")
    n = x.numel()
    if -1 in shape:
        known = 1
        for s in shape:
            if s != -1:
                known *= s
        if known == 0 or n % known:
            raise ShapeError(f"reshape: cannot reshape {x.shape} ({n} elements) into {shape}")
        shape = tuple(n // known if s == -1 else s for s in shape)
    total = 1
    for s in shape:
        total *= s
    if total != n:
        raise ShapeError(f"reshape: cannot reshape {x.shape} ({n} elements) into {shape} "
                         f"({total} elements)")
    if shape == x.shape:
        return x
    B = x._backend
    out = _view(_wrap(B.reshape(x._data, shape), x.dtype, x.device, B), x)
    src = x.shape
    return _record(out, "reshape", lambda g: (B.reshape(B.contiguous(g), src),), (x,))


def permute(x, dims):
    dims = tuple(_norm_dim("permute", d, x.ndim) for d in dims)
    if sorted(dims) != list(range(x.ndim)):
        raise ShapeError(f"permute: {dims} is not a permutation of the {x.ndim} dims of {x.shape}")
    B = x._backend
    out = _view(_wrap(B.permute(x._data, dims), x.dtype, x.device, B), x)
    inv = [0] * len(dims)
    for i, d in enumerate(dims):
        inv[d] = i
    inv = tuple(inv)
    return _record(out, "permute", lambda g: (B.permute(g, inv),), (x,))


def transpose(x, d0, d1):
    d0 = _norm_dim("transpose", d0, x.ndim)
    d1 = _norm_dim("transpose", d1, x.ndim)
    if x.ndim < 2:
        return x
    dims = list(range(x.ndim))
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return permute(x, dims)


def expand(x, shape):
    shape = tuple(shape)
    if len(shape) < x.ndim:
        raise ShapeError(f"expand: cannot expand {x.shape} to fewer dims {shape}")
    lead = len(shape) - x.ndim
    if any(s == -1 for s in shape[:lead]):
        raise ShapeError(f"expand: -1 is not allowed in the new leading dims of {shape} "
                         f"(tensor of shape {x.shape})")
    shape = tuple(x.shape[i - lead] if s == -1 else s for i, s in enumerate(shape))
    if broadcast_shapes("expand", x.shape, shape) != shape:
        raise ShapeError(f"expand: cannot expand {x.shape} to {shape}")
    B = x._backend
    out = _view(_wrap(B.expand(x._data, shape), x.dtype, x.device, B), x)
    src = x.shape
    return _record(out, "expand", lambda g: (B.sum_to_shape(g, src),), (x,))


def _norm_index(x, index):
    """Check basic/advanced indices against ``x``'s shape; return what the backend takes."""
    if not isinstance(index, tuple):
        index = (index,)
    out = []
    dim = 0
    n_explicit = sum(1 for i in index if i is not None and i is not Ellipsis)
    if sum(1 for i in index if i is Ellipsis) > 1:
        raise IndexOutOfRange(f"index: an index can only have a single ellipsis (...), "
                              f"tensor of shape {x.shape}")
    for i in index:
        if i is None:
            out.append(None)
            continue
        if i is Ellipsis:
            out.append(Ellipsis)
            dim += x.ndim - n_explicit
            continue
        if dim >= x.ndim:
            raise IndexOutOfRange(f"index: too many indices for a tensor of shape {x.shape}")
        size = x.shape[dim]
        if isinstance(i, list):
            from .tensor import tensor
            i = tensor(i, dtype=None if i else D.int64, device=x.device)
        if isinstance(i, Tensor):
            if i.dtype is D.bool_ or i.dtype.is_integer:
                if i.device != x.device:
                    raise DeviceError(f"index: index tensor on {i.device}, tensor on {x.device}")
                _check_index_values(x, i, dim)
                out.append(i._data)
                if i.dtype is D.bool_ and i.ndim > 1:
                    dim += i.ndim - 1       # a k-D mask consumes k dims
            else:
                raise DTypeError(f"index: index tensors must be integer or bool, got {i.dtype}")
        elif isinstance(i, numbers.Integral) and not isinstance(i, bool):
            if not -size <= i < size:
                raise IndexOutOfRange(f"index: index {i} is out of bounds for dimension {dim} "
                                      f"with size {size} (shape {x.shape})")
            out.append(int(i))
        elif isinstance(i, slice):
            if i.step is not None and i.step <= 0:
                raise TritonnnError(f"index: slice step must be positive, got {i.step}")
            out.append(i)
        else:
            raise TritonnnError(f"index: unsupported index {i!r} of type {type(i).__name__}")
        dim += 1
    return tuple(out)


def _check_index_values(x, idx, dim):
    """An index tensor's values (or a mask's shape) against ``x``'s dims, read on the host."""
    if idx.dtype is D.bool_:
        covered = x.shape[dim:dim + idx.ndim]
        if idx.ndim and idx.shape != covered:
            raise IndexOutOfRange(f"index: boolean mask of shape {idx.shape} does not match "
                                  f"dims {dim}.. of the indexed tensor of shape {x.shape}")
        return
    vals = idx._backend.to_numpy(idx._data)
    if vals.size == 0:
        return
    size = x.shape[dim]
    lo, hi = int(vals.min()), int(vals.max())
    if lo < -size or hi >= size:
        raise IndexOutOfRange(f"index: index {lo if lo < -size else hi} is out of bounds for "
                              f"dimension {dim} with size {size} (shape {x.shape})")


def getitem(x, index):
    idx = _norm_index(x, index)
    B = x._backend
    yb = B.getitem(x._data, idx)
    out = _wrap(yb, x.dtype, x.device, B)
    if not any(isinstance(i, type(x._data)) for i in idx):     # basic indexing: a view
        _view(out, x)
    if not x.dtype.is_floating:
        return out
    src, dt = x.shape, x.dtype

    def backward(g):
        z = B.full(src, 0, dt)
        return (B.index_add(z, idx, g),)
    return _record(out, "index", backward, (x,))


def squeeze(x, dim=None):
    if dim is None:
        return reshape(x, tuple(s for s in x.shape if s != 1))
    d = _norm_dim("squeeze", dim, x.ndim)
    if x.ndim == 0 or x.shape[d] != 1:
        return x
    return reshape(x, x.shape[:d] + x.shape[d + 1:])


def unsqueeze(x, dim):
    d = _norm_dim("unsqueeze", dim, x.ndim + 1)
    return reshape(x, x.shape[:d] + (1,) + x.shape[d:])


def cat(tensors, dim=0, op="cat"):
    """Join tensors along an existing dim (``cat``) or a new one (``op="stack"``)."""
    tensors = list(tensors)
    if not tensors:
        raise TritonnnError(f"{op}: expected a non-empty list of tensors")
    for t in tensors:
        if not isinstance(t, Tensor):
            raise TritonnnError(f"{op}: expected tensors, got {type(t).__name__}")
    _same_device(op, *tensors)
    first = tensors[0]
    for t in tensors[1:]:
        if t.dtype is not first.dtype:
            raise DTypeError(f"{op}: tensors have different dtypes {first.dtype} and {t.dtype}")
    B = first._backend
    bufs = [t._data for t in tensors]
    if op == "stack":
        for t in tensors[1:]:
            if t.shape != first.shape:
                raise ShapeError(f"stack: tensors must have the same shape, got {first.shape} "
                                 f"and {t.shape}")
        d = _norm_dim("stack", dim, first.ndim + 1)
        out = _wrap(B.stack(bufs, d), first.dtype, first.device, B)
        # the gradient of each input is its slice of g along the new dim
        pieces = [(slice(None),) * d + (i,) for i in range(len(tensors))]
    else:
        if first.ndim == 0:
            raise ShapeError("cat: zero-dimensional tensors cannot be concatenated; use tn.stack")
        d = _norm_dim("cat", dim, first.ndim)
        for t in tensors[1:]:
            if t.ndim != first.ndim or any(a != b for i, (a, b) in enumerate(zip(t.shape, first.shape))
                                           if i != d):
                raise ShapeError(f"cat: shapes {first.shape} and {t.shape} differ outside dim {d}")
        out = _wrap(B.cat(bufs, d), first.dtype, first.device, B)
        pieces, start = [], 0
        for t in tensors:
            pieces.append((slice(None),) * d + (slice(start, start + t.shape[d]),))
            start += t.shape[d]
    if not first.dtype.is_floating:
        return out
    return _record(out, op, lambda g: tuple(B.getitem(g, idx) for idx in pieces), tuple(tensors))


def cast(x, dtype):
    """``x`` converted to ``dtype`` (a new buffer); gradients flow back between float dtypes."""
    if dtype is x.dtype:
        return x
    B = x._backend
    out = _wrap(B.cast(x._data, dtype), dtype, x.device, B)
    if not (x.dtype.is_floating and dtype.is_floating):
        return out
    src = x.dtype
    return _record(out, "cast", lambda g: (B.cast(g, src),), (x,))


def to_device(x, device):
    """``x`` copied to ``device`` through the host; gradients copy back."""
    from .device import backend
    if device == x.device:
        return x
    src_B, dst_B = x._backend, backend(device)
    host = src_B.to_numpy(x._data)
    out = _wrap(dst_B.from_numpy(host, x.dtype), x.dtype, device, dst_B)
    dt = x.dtype

    def backward(g):
        return (src_B.from_numpy(dst_B.to_numpy(g), dt),)
    return _record(out, "to", backward, (x,))


# ----------------------------------------------------------------------------------------------
# softmax family and losses
# ----------------------------------------------------------------------------------------------


def softmax(x, dim=-1, log=False):
    op = "log_softmax" if log else "softmax"
    _float_ops(op, x)
    d = _norm_dim(op, dim, x.ndim)
    B = x._backend
    fwd, bwd = (B.log_softmax_fwd, B.log_softmax_bwd) if log else (B.softmax_fwd, B.softmax_bwd)
    if x.ndim == 0:
        yb = fwd(B.reshape(x._data, (1,)), 0)
        yb = B.reshape(yb, ())
    else:
        yb = fwd(x._data, d)
    out = _wrap(yb, x.dtype, x.device, B)
    if x.ndim == 0:
        return _record(out, op, lambda g: (B.full((), 0, x.dtype),), (x,))
    return _record(out, op, lambda g: (bwd(g, yb, d),), (x,), (out,))


_REDUCTIONS = ("mean", "sum", "none")


def cross_entropy(logits, target, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Fused softmax-cross-entropy of (N, C) logits against (N,) integer class indices."""
    op = "cross_entropy"
    if not isinstance(logits, Tensor) or not isinstance(target, Tensor):
        raise TritonnnError(f"{op}: expected tensors for logits and target")
    _same_device(op, logits, target)
    if reduction not in _REDUCTIONS:
        raise TritonnnError(f"{op}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if not 0.0 <= float(label_smoothing) <= 1.0:
        raise TritonnnError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing}")
    _float_ops(op, logits)
    if not target.dtype.is_integer:
        raise DTypeError(f"{op}: target must hold integer class indices, got {target.dtype} "
                         f"(convert with .to(tn.int64))")
    if logits.ndim != 2:
        raise ShapeError(f"{op}: logits must be 2-D (batch, classes), got {logits.shape}; "
                         f"flatten leading dims with reshape(-1, classes)")
    if target.shape != (logits.shape[0],):
        raise ShapeError(f"{op}: target {target.shape} does not match logits {logits.shape} "
                         f"(expected ({logits.shape[0]},))")
    n, c = logits.shape
    if n == 0:
        raise ShapeError(f"{op}: empty batch (logits {logits.shape})")
    if c == 0:
        raise ShapeError(f"{op}: logits {logits.shape} have no classes")
    tgt = target if target.dtype is D.int64 else target.to(D.int64)
    B = logits._backend
    tb = tgt._data
    _check_targets(op, B, tb, c, ignore_index)
    lb = logits._data
    loss_b, lse = B.softmax_cross_entropy_fwd(lb, tb, ignore_index, float(label_smoothing), reduction)
    out = _wrap(loss_b, logits.dtype, logits.device, B)
    if not (_GradMode.enabled and logits.requires_grad):
        return out
    saved = [lb]    # a list, so the rule can drop its reference before asking who else holds it
    del lb

    def backward(g):
        logits_buf = saved.pop()
        # in place into the logits buffer only if this rule holds the last reference to it
        # and the walk frees the graph (retain_graph=True may run this rule again)
        inplace = not _GradMode.retaining and B.exclusively_owned(logits_buf, 1)
        if not inplace:
            saved.append(logits_buf)
        return (B.softmax_cross_entropy_bwd(g, logits_buf, tb, lse, ignore_index,
                                            float(label_smoothing), reduction, inplace), None)
    return _record(out, op, backward, (logits, None), (logits, tgt))


def _check_targets(op, B, tb, c, ignore_index):
    v = B.first_bad_target(tb, c, ignore_index)
    if v is not None:
        raise IndexOutOfRange(f"{op}: target {v} is out of range for {c} classes "
                              f"(and is not ignore_index={ignore_index})")


def binary_cross_entropy_with_logits(x, y, reduction="mean"):
    op = "binary_cross_entropy_with_logits"
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TritonnnError(f"{op}: expected tensors for input and target")
    _same_device(op, x, y)
    if reduction not in _REDUCTIONS:
        raise TritonnnError(f"{op}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    _float_ops(op, x)
    if y.dtype is not x.dtype:
        if y.dtype.is_floating:
            raise DTypeError(f"{op}: input is {x.dtype} but target is {y.dtype}")
        y = y.to(x.dtype)
    if x.shape != y.shape:
        raise ShapeError(f"{op}: target shape {y.shape} must equal input shape {x.shape}")
    B = x._backend
    xb, yb = x._data, y._data
    out = _wrap(B.bce_with_logits_fwd(xb, yb, reduction), x.dtype, x.device, B)

    def backward(g):
        return B.bce_with_logits_bwd(g, xb, yb, reduction)
    return _record(out, op, backward, (x, y), (x, y))
