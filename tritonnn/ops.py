"""The op table: every op's checks, its forward, and its backward rule right under it.

An op validates its operands (a tritonnn error that names the op and the
operands' shapes, dtypes or devices), runs its forward through the backend of
its device (``B``: numpy for "cpu", Triton for "cuda"), wraps the result with
``x._new(buffer, dtype)`` and, when an input requires grad, records a tape
node (``_record``). Its backward rule is a function registered under the op's
name with ``@backward_rule`` and written right below the forward:
``rule(node, g)`` reads the node's ``saved`` buffers and ``attrs``, works on
raw backend buffers, never mutates ``g`` and returns one gradient (or None) per
input. Derived ops (squeeze, transpose, min along a dim, 1-D matmul) are built
from the primitives and need no rule of their own.

Operands are tensors (``tape.TensorBase``) or, where the op says so, Python
numbers; the Tensor API and ``nn.functional`` check argument types before
calling in.
"""
from __future__ import annotations

import numbers
import operator
import weakref

import numpy as np

from . import dtypes as D
from . import random as _random
from .backends import backend
from .checks import (INT_RANGE, broadcast_shapes, flag, floating, is_scalar, norm_dim, norm_dims,
                     possible_shape, reduction as check_reduction, same_device, same_float_dtype,
                     scalar_fits, scalar_type)
from .contract import COMPARISONS, RangeCheck
from .errors import DeviceError, DTypeError, IndexOutOfRange, ShapeError, TritonnnError
from .amp import low_dtype, open_regions as autocast_regions
from .tape import ImplicitOnes, Node, TensorBase, backward_rule, grad_mode, no_grad

# ==============================================================================================
# recording
# ==============================================================================================


def _record(out, name, inputs, saved=(), watch=(), attrs=None, donate=None):
    """Attach a tape node to ``out`` when grad mode is on and some input requires grad.

    ``inputs``: the op's tensor inputs, in the order its rule returns gradients
    (None for an argument that takes none); ``saved``: the buffers the rule
    reads; ``watch``: the tensors those buffers belong to (the walk refuses to
    run the rule if one was written in place since); ``attrs``: the rule's other
    arguments; ``donate``: the index in ``saved`` of a buffer the rule may
    overwrite on its last use (``tape.Node``).
    """
    if not grad_mode.enabled:
        return out
    edges = []
    needed = False
    for t in inputs:
        # where its gradient goes: the input's node, the leaf itself, or nowhere
        e = None if t is None else t._node or (t if t.requires_grad else None)
        needed = needed or e is not None
        edges.append(e)
    if not needed:
        return out
    out._node = Node(name, tuple(edges), out._backend, saved, _versions(watch) if watch else (),
                     attrs, donate)
    out.requires_grad = True
    return out


def _versions(tensors):
    versions = []
    for t in tensors:
        if t is not None:
            versions.append((t._version, t._version[0]))
    return tuple(versions)


def _view(out, x):
    """``out`` views ``x``'s memory: in-place writes through either bump one version.

    The version box ``[version, viewers]`` also keeps (weakly) the tensors related by
    views, so an in-place write while recording can tell whether another live tensor
    shows the same memory through the graph (``_sole_owner``).
    """
    box = x._version
    if len(box) == 1:
        box.append({})
    viewers = box[1]           # id -> weak reference (a WeakSet would compare tensors with ==)
    viewers[id(x)] = weakref.ref(x)
    viewers[id(out)] = weakref.ref(out)
    out._version = box
    return out


def _to_operands(node, gx, gy):
    """A binary rule's gradients, summed from the broadcast shape down to each operand's.

    ``node.attrs`` holds the operand shapes, or None when no operand was broadcast;
    a gradient no input wants comes back None.
    """
    ex, ey = node.next
    gx = None if ex is None else gx
    gy = None if ey is None else gy
    if node.attrs is not None:
        B = node.backend
        xs, ys = node.attrs
        gx = None if gx is None else B.sum_to_shape(gx, xs)
        gy = None if gy is None else B.sum_to_shape(gy, ys)
    return gx, gy


# ==============================================================================================
# autocast: the precision an op runs in under tn.autocast (amp.py holds the per-thread state)
# ==============================================================================================
#
# matmul and linear cast their float32/float16/bfloat16 operands to the region's low dtype
# (autocast_low); softmax, log_softmax, the losses (cross_entropy, BCE with logits, mse) and
# sum/mean upcast float16/bfloat16 inputs to float32 (autocast_fp32); every other op runs in
# its input dtype. The casts are recorded ops, so a float32 parameter gets a float32 gradient
# through the cast's backward. Each op asks ``autocast_regions[0]`` first (regions open in
# any thread): one list read when there is none.
#
# layer_norm, var/std and norm upcast too (fp32 statistics); linear_cross_entropy runs its
# matmuls in the low dtype, as linear does, and its softmax in float32, as it always does.

_AUTOCAST_ELIGIBLE = (D.float32, D.float16, D.bfloat16)      # float64 is never cast (as torch)


def autocast_low(device, *tensors):
    """``tensors`` (None allowed) as the autocast region of ``device``'s type runs a matmul:
    eligible floats cast to its low dtype; unchanged when no region covers ``device``."""
    low = low_dtype(device)
    if low is None:
        return tensors
    return tuple(t if t is None or t.dtype is low or t.dtype not in _AUTOCAST_ELIGIBLE
                 else cast(t, low) for t in tensors)


def autocast_fp32(device, *tensors):
    """``tensors`` (None allowed) with float16/bfloat16 ones cast to float32 when an autocast
    region covers ``device``'s type; unchanged otherwise."""
    if low_dtype(device) is None:
        return tensors
    return tuple(cast(t, D.float32) if t is not None and (t.dtype is D.float16 or
                                                           t.dtype is D.bfloat16) else t
                 for t in tensors)


# ==============================================================================================
# elementwise
# ==============================================================================================

SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "div": "/", "floordiv": "//", "mod": "%",
           "pow": "**", "maximum": "maximum", "minimum": "minimum",
           "eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_SAVES_OPERANDS = frozenset({"mul", "div", "pow", "mod", "maximum", "minimum"})
_NOT_FOR_BOOL = frozenset({"sub", "floordiv", "mod", "pow"})    # torch refuses them on bools


def promote(op, a, b):
    """Result dtype of ``a op b`` for a tensor and a tensor or Python scalar: torch's
    ``result_type``, strict on floats.

    Categories rank bool < integer < floating. A Python scalar never widens a tensor of its
    category or a higher one, and a 0-d tensor beside a dimensioned one counts as a scalar
    of its dtype (uint8 tensor + 0-d int64 tensor stays uint8; an integer tensor + a 0-d
    float64 tensor is float64). Two dimensioned (or two 0-d) tensors of different float
    dtypes are an error (tritonnn never silently changes float precision); otherwise a
    float tensor wins over an integer one, and integers promote as numpy. Subtraction with
    a bool operand is refused, as torch refuses it.
    """
    if not isinstance(b, TensorBase):
        st = scalar_type(b)
        if op == "-" and (st is D.bool_ or a.dtype is D.bool_):
            _bool_sub(a, b)
        if a.dtype.is_floating:
            return a.dtype
        if st is D.float32:
            return D.float32
        if a.dtype is D.bool_ and st is D.int64:
            return D.int64
        return a.dtype
    if op == "-" and (a.dtype is D.bool_ or b.dtype is D.bool_):
        _bool_sub(a, b)
    if a.dtype is b.dtype:
        return a.dtype
    a0, b0 = a.ndim == 0, b.ndim == 0
    if a0 != b0:
        dims, zero_d = (b, a) if a0 else (a, b)
        return zero_d.dtype if _kind(zero_d.dtype) > _kind(dims.dtype) else dims.dtype
    fa, fb = a.dtype.is_floating, b.dtype.is_floating
    if fa and fb:
        raise DTypeError(f"{op}: operands have different dtypes {a.dtype} {tuple(a.shape)} and "
                         f"{b.dtype} {tuple(b.shape)}; convert one with .to(dtype)")
    if fa:
        return a.dtype
    if fb:
        return b.dtype
    return D.promote(a.dtype, b.dtype)


def _bool_sub(a, b):
    what = "two bool operands" if a.dtype is D.bool_ and (
        b.dtype is D.bool_ if isinstance(b, TensorBase) else isinstance(b, bool)) else \
        "a bool operand"
    raise DTypeError(f"-: subtraction with {what} is not supported (tensor {tuple(a.shape)} "
                     f"{a.dtype}), as in PyTorch; use ^ (logical xor) for two bools, ~ to "
                     f"invert a mask, or convert with .to(tn.int64)")


def binary(a, b, op, reverse=False):
    """``a op b`` (``b op a`` with ``reverse``) for a tensor ``a`` and a tensor or number ``b``.

    The hottest op: two tensors of one float dtype and shape pass two checks on their way
    to the kernel; what integers and bools need (ranges, division by zero, the refusals)
    runs only when the result dtype is one of theirs.
    """
    bt = isinstance(b, TensorBase)
    if bt:
        if a.device is not b.device and a.device != b.device:
            same_device(SYMBOLS[op], a, b)
        if a._data.shape != b._data.shape:
            broadcast_shapes(SYMBOLS[op], a.shape, b.shape)
        dt = a.dtype if a.dtype is b.dtype else promote(SYMBOLS[op], a, b)
    elif is_scalar(b):
        dt = promote(SYMBOLS[op], a, b)
    elif op in ("eq", "ne"):
        return NotImplemented      # Python falls back to identity, as torch's ``t == None``
    else:
        raise DTypeError(f"{SYMBOLS[op]}: unsupported operand of type {type(b).__name__} with a "
                         f"tensor {a.shape} {a.dtype}; use a tensor or a Python number")
    if not dt.is_floating:
        dt = _integer_operands(op, a, b, bt, reverse, dt)
        if dt is D.bool_ and op == "pow":          # bool tensor ** True / False, as torch
            B = a._backend
            return a._new(B.cast(a._data, dt) if b else B.full(a.shape, 1, dt), dt)
    a_ = a if a.dtype is dt else cast(a, dt)
    if bt:
        b_ = b if b.dtype is dt else cast(b, dt)
    elif dt.is_floating:
        # a Python scalar of the result's kind (a numpy scalar would promote the buffer)
        try:
            b_ = float(b)
        except OverflowError:
            raise DTypeError(f"{SYMBOLS[op]}: the int {b} is too large for a float "
                             f"({dt} tensor)") from None
    else:
        b_ = bool(b) if dt is D.bool_ else int(b)
    B = a._backend
    x, y = (b_, a_) if reverse else (a_, b_)
    xt, yt = (bt, True) if reverse else (True, bt)
    xb = x._data if xt else x
    yb = y._data if yt else y
    if reverse and not xt:
        # scalar on the left: a 0-d constant buffer of the result dtype (no gradient)
        xb = B.full((), x, dt)
    out_buf = B.binary(xb, yb, op)
    if op in COMPARISONS:
        return a._new(out_buf, D.bool_)
    out = a._new(out_buf, dt)
    if not dt.is_floating or not grad_mode.enabled:
        return out
    nx, ny = xt and x.requires_grad, yt and y.requires_grad
    if not (nx or ny):
        return out
    # what _record does, inlined for the hottest op (calling it costs +0.35 us, 15% of an
    # 8-element add): an input that needs a gradient has a node or is a leaf
    oshape = out_buf.shape
    attrs = (xb.shape, yb.shape if yt else ()) if (
        (xt and xb.shape != oshape) or (yt and yb.shape != oshape)) else None
    if op in _SAVES_OPERANDS:
        saved, versions = (xb, yb), _versions((x if xt else None, y if yt else None))
    else:
        saved = versions = ()
    out._node = Node(op, ((x._node or x) if nx else None, (y._node or y) if ny else None), B,
                     saved, versions, attrs)
    out.requires_grad = True
    return out


def _integer_operands(op, a, b, bt, reverse, dt):
    """The checks of ``a op b`` (``b op a`` with ``reverse``) whose promoted dtype ``dt`` is an
    integer or bool, and the dtype it computes in (off the float path).

    A Python int the dtype cannot hold is refused (PyTorch wraps it); so are what torch
    refuses: bool operands of ``- // % **`` (``**`` keeps a Python bool exponent), a negative
    Python int exponent, and integer division by zero. A zero in a divisor tensor is found
    by reading it on the host for now (a later issue moves the check onto the device).
    """
    name = SYMBOLS[op]
    if op == "div":
        return D.float32
    if not bt:
        scalar_fits(name, b, dt)
    if dt is D.bool_:
        if op == "sub":
            _bool_sub(a, b)
        if op in _NOT_FOR_BOOL and (op != "pow" or bt or reverse):
            raise DTypeError(f"{name}: not supported for bool operands (tensor "
                             f"{tuple(a.shape)} {a.dtype}), as in PyTorch; convert with "
                             f".to(tn.int64) first")
        return dt
    if op == "pow" and not bt and not reverse and b < 0:
        raise TritonnnError(f"**: integers to negative integer powers are not allowed "
                            f"({a.dtype} tensor ** {b}), as in PyTorch; use a float tensor "
                            f"(x.float() ** {b})")
    if op in ("floordiv", "mod"):
        divisor = a if reverse else b
        if isinstance(divisor, TensorBase):
            zero = bool((divisor._backend.to_numpy(divisor._data) == 0).any())
        else:
            zero = divisor == 0
        if zero:
            raise TritonnnError(f"{name}: integer division by zero (a {dt} divisor holds 0), "
                                f"as PyTorch's ZeroDivisionError; a float divisor gives inf "
                                f"or NaN instead")
    return dt


@backward_rule("add")
def _add_backward(node, g):
    return _to_operands(node, g, g)


@backward_rule("sub")
def _sub_backward(node, g):
    return _to_operands(node, g, node.backend.unary(g, "neg") if node.needs(1) else None)


@backward_rule("mul")
def _mul_backward(node, g):
    B, (xb, yb) = node.backend, node.saved
    return _to_operands(node, B.binary(g, yb, "mul") if node.needs(0) else None,
                        B.binary(g, xb, "mul") if node.needs(1) else None)


@backward_rule("div")
def _div_backward(node, g):
    B, (xb, yb) = node.backend, node.saved
    gx = B.binary(g, yb, "div")
    # d(x/y)/dy = -x/y^2, computed as -(g/y) * (x/y)
    gy = B.unary(B.binary(gx, B.binary(xb, yb, "div"), "mul"), "neg") if node.needs(1) else None
    return _to_operands(node, gx, gy)


@backward_rule("floordiv")
def _floordiv_backward(node, g):
    # floor(x / y) is a step function: zero gradient for both operands, as torch takes it
    B = node.backend
    zero = B.full(g.shape, 0, B.dtype_of(g))
    return _to_operands(node, zero, zero)


@backward_rule("mod")
def _mod_backward(node, g):
    # x % y = x - y * floor(x / y): d/dx = 1, d/dy = -floor(x / y)
    B, (xb, yb) = node.backend, node.saved
    gy = B.unary(B.binary(g, B.binary(xb, yb, "floordiv"), "mul"), "neg") if node.needs(1) \
        else None
    return _to_operands(node, g, gy)


@backward_rule("pow")
def _pow_backward(node, g):
    B, (xb, e) = node.backend, node.saved
    if isinstance(e, numbers.Number):      # a Python exponent: only x takes a gradient
        if e == 1.0:
            return g, None
        if e == 0.0:                       # d(x**0)/dx = 0 everywhere, also at x == 0
            return B.binary(g, 0.0, "mul"), None
        return B.binary(g, B.binary(B.binary(xb, e - 1.0, "pow"), e, "mul"), "mul"), None
    # a tensor exponent (or a Python base, xb then a 0-d constant), with torch's conventions
    zero = B.full((), 0, B.dtype_of(g))
    gx = gy = None
    if node.needs(0):
        # d(x**e)/dx = e * x**(e - 1); 0 where e == 0, x == 0 included
        d = B.binary(e, B.binary(xb, B.binary(e, 1.0, "sub"), "pow"), "mul")
        gx = B.where(B.binary(e, 0.0, "eq"), zero, B.binary(g, d, "mul"))
    if node.needs(1):
        # d(x**e)/de = x**e * log(x); 0 where x == 0 and e >= 0 (the limit, not 0 * -inf)
        d = B.binary(B.binary(xb, e, "pow"), B.unary(xb, "log"), "mul")
        limit = B.binary(B.binary(xb, 0.0, "eq"), B.binary(e, 0.0, "ge"), "mul")   # and
        gy = B.where(limit, zero, B.binary(g, d, "mul"))
    return _to_operands(node, gx, gy)


@backward_rule("maximum", "minimum")
def _extreme_backward(node, g):
    # the winner takes the gradient; ties split it evenly, as torch does
    B, (xb, yb) = node.backend, node.saved
    zero = B.full((), 0, B.dtype_of(g))
    win_x = B.binary(xb, yb, "gt" if node.name == "maximum" else "lt")
    tie = B.binary(xb, yb, "eq")
    half = B.binary(g, 0.5, "mul")
    gx = B.where(win_x, g, B.where(tie, half, zero)) if node.needs(0) else None
    gy = B.where(win_x, zero, B.where(tie, half, g)) if node.needs(1) else None
    return _to_operands(node, gx, gy)


_UNARY_READS_INPUT = frozenset({"log", "abs"})   # the other rules read the output (neg: nothing)


def unary(x, op):
    """``op(x)`` for op in neg, exp, log, sqrt, abs, tanh, sigmoid."""
    if op != "neg" or x.dtype is D.bool_:
        floating(op, x)
    elif not (x.dtype.is_floating or x.dtype.is_integer):
        raise DTypeError(f"neg: unsupported dtype {x.dtype}")
    B = x._backend
    xb = x._data
    yb = B.unary(xb, op)
    out = x._new(yb, x.dtype)
    if not x.dtype.is_floating:
        return out
    if op == "neg":
        return _record(out, op, (x,))
    if op in _UNARY_READS_INPUT:
        return _record(out, op, (x,), (xb,), (x,))
    return _record(out, op, (x,), (yb,), (out,))


@backward_rule("neg")
def _neg_backward(node, g):
    return (node.backend.unary(g, "neg"),)


@backward_rule("exp")
def _exp_backward(node, g):
    (y,) = node.saved
    return (node.backend.binary(g, y, "mul"),)


@backward_rule("log")
def _log_backward(node, g):
    (x,) = node.saved
    return (node.backend.binary(g, x, "div"),)


@backward_rule("sqrt")
def _sqrt_backward(node, g):
    (y,) = node.saved
    return (node.backend.unary_bwd(g, y, "sqrt"),)


@backward_rule("abs")
def _abs_backward(node, g):
    B, (x,) = node.backend, node.saved
    dt = B.dtype_of(x)
    one, zero = B.full((), 1, dt), B.full((), 0, dt)
    sign = B.binary(B.where(B.binary(x, 0, "gt"), one, zero),
                    B.where(B.binary(x, 0, "lt"), one, zero), "sub")
    return (B.binary(g, sign, "mul"),)


@backward_rule("tanh", "sigmoid")
def _tanh_sigmoid_backward(node, g):
    # g * (1 - y^2) and g * y * (1 - y), from the output y, in one launch
    (y,) = node.saved
    return (node.backend.unary_bwd(g, y, node.name),)


def relu(x):
    """max(x, 0); NaN stays NaN."""
    if not (x.dtype.is_floating or x.dtype.is_integer):
        raise DTypeError(f"relu: unsupported dtype {x.dtype}")
    yb = x._backend.relu_fwd(x._data)
    out = x._new(yb, x.dtype)
    return _record(out, "relu", (x,), (yb,), (out,)) if x.dtype.is_floating else out


@backward_rule("relu")
def _relu_backward(node, g):
    (y,) = node.saved
    return (node.backend.relu_bwd(g, y),)


def where(cond, a, b):
    """``a`` where ``cond`` else ``b``, all three broadcast; ``a`` and ``b`` are tensors."""
    if cond.dtype is not D.bool_:
        raise DTypeError(f"where: condition must be a bool tensor, got {cond.dtype}")
    same_device("where", cond, a, b)
    dt = promote("where", a, b)
    a, b = cast(a, dt), cast(b, dt)
    broadcast_shapes("where", broadcast_shapes("where", cond.shape, a.shape), b.shape)  # or raise
    B = a._backend
    out = a._new(B.where(cond._data, a._data, b._data), dt)
    return _record(out, "where", (a, b), (cond._data,), (cond,), (a.shape, b.shape))


@backward_rule("where")
def _where_backward(node, g):
    B, (cb,), (a_shape, b_shape) = node.backend, node.saved, node.attrs
    zero = B.full((), 0, B.dtype_of(g))
    return (B.sum_to_shape(B.where(cb, g, zero), a_shape) if node.needs(0) else None,
            B.sum_to_shape(B.where(cb, zero, g), b_shape) if node.needs(1) else None)


# ==============================================================================================
# reductions
# ==============================================================================================


def _keep_shape(shape, dims):
    return tuple(1 if i in dims else s for i, s in enumerate(shape))


def reduce(x, op, dim=None, keepdim=False):
    """sum / mean / max / min over ``dim`` (None: all dims); max and min return the values."""
    keepdim = flag(op, "keepdim", keepdim)
    if op == "mean" and not x.dtype.is_floating:
        raise DTypeError(f"mean: expected a floating-point tensor, got {x.dtype}")
    if autocast_regions[0] and (op == "sum" or op == "mean"):      # autocast: accumulate
        (x,) = autocast_fp32(x.device, x)                               # in float32
    dims = norm_dims(op, dim, x.ndim)          # validates ``dim`` for a 0-d tensor too
    if x.ndim == 0:
        dims = ()
    if op in ("max", "min") and any(x.shape[d] == 0 for d in dims):
        raise ShapeError(f"{op}: cannot reduce an empty dimension of shape {x.shape}")
    B = x._backend
    yb = B.reduce(x._data, dims, keepdim, op)
    out_dt = D.int64 if (op == "sum" and not x.dtype.is_floating) else x.dtype
    out = x._new(yb, out_dt)
    if not x.dtype.is_floating:
        return out
    shape, kshape = x.shape, _keep_shape(x.shape, dims)
    if op in ("sum", "mean"):
        count = 1
        for d in dims:
            count *= shape[d]
        return _record(out, op, (x,), attrs=(shape, kshape, count))
    return _record(out, op, (x,), (x._data, yb), (x, out), (dims, kshape))


@backward_rule("sum", "mean")
def _sum_backward(node, g):
    B, (shape, kshape, count) = node.backend, node.attrs
    g = B.reshape(g, kshape)
    if node.name == "mean":
        g = B.binary(g, 1.0 / max(count, 1), "mul")
    return (B.expand(g, shape),)


@backward_rule("max", "min")
def _extreme_value_backward(node, g):
    # every element equal to the extreme shares the gradient evenly (torch's amax rule)
    B, (xb, yb), (dims, kshape) = node.backend, node.saved, node.attrs
    hit = B.cast(B.binary(xb, B.reshape(yb, kshape), "eq"), B.dtype_of(g))
    n = B.reduce(hit, dims, True, "sum")
    return (B.binary(hit, B.binary(B.reshape(g, kshape), n, "div"), "mul"),)


def max_dim(x, dim, keepdim=False):
    """``(values, indices)`` of the maximum along ``dim``, as torch.max(x, dim)."""
    keepdim = flag("max", "keepdim", keepdim)
    d = norm_dim("max", dim, x.ndim)
    if x.ndim and x.shape[d] == 0:
        raise ShapeError(f"max: cannot reduce an empty dimension of shape {x.shape}")
    B = x._backend
    idx = B.argmax(x._data, d, keepdim)
    vals = B.reduce(x._data, (d,) if x.ndim else (), keepdim, "max")
    v = x._new(vals, x.dtype)
    i = x._new(idx, D.int64)
    if x.dtype.is_floating:
        v = _record(v, "max_dim", (x,), (x._data, idx), (x,), (d, keepdim))
    return v, i


@backward_rule("max_dim")
def _max_dim_backward(node, g):
    (xb, idx), (d, keepdim) = node.saved, node.attrs
    return (node.backend.max_bwd(g, xb, idx, d, keepdim),)


def min_dim(x, dim, keepdim=False):
    """``(values, indices)`` of the minimum along ``dim``, as torch.min(x, dim).

    Built from max_dim on an order-reversing map of the input, so the gradient needs no rule
    of its own and ties keep the first index (as argmax): ``-x`` for floats, and for
    integers ``-1 - x`` (signed) or ``max - x`` (unsigned, bool as uint8), which never
    overflow and are their own inverse; the values keep ``x``'s dtype.
    """
    if x.dtype.is_floating:
        v, i = max_dim(unary(x, "neg"), dim, keepdim)
        return unary(v, "neg"), i
    src = cast(x, D.uint8) if x.dtype is D.bool_ else x
    lo, hi = INT_RANGE[src.dtype]
    top = -1 if lo < 0 else hi
    v, i = max_dim(binary(src, top, "sub", reverse=True), dim, keepdim)
    return cast(binary(v, top, "sub", reverse=True), x.dtype), i


def argmax(x, dim=None, keepdim=False):
    """int64 index of the first maximum along ``dim`` (of the flattened tensor when None)."""
    keepdim = flag("argmax", "keepdim", keepdim)
    d = None if dim is None else norm_dim("argmax", dim, x.ndim)
    if d is None or x.ndim == 0:
        if x.numel() == 0:
            raise ShapeError(f"argmax: cannot take the argmax of an empty tensor of shape "
                             f"{x.shape} (give a dim whose size is not 0)")
    elif x.shape[d] == 0:
        raise ShapeError(f"argmax: cannot reduce dim {d} of size 0 (tensor of shape {x.shape})")
    if x.dtype is D.bool_:
        x = cast(x, D.uint8)
    return x._new(x._backend.argmax(x._data, d, keepdim), D.int64)


# -- variance, standard deviation, vector norms ------------------------------------------------


def _reduced(op, x, dim, keepdim):
    """``(dims, kept shape, result shape)`` of a floating-point reduction over ``dim``."""
    keepdim = flag(op, "keepdim", keepdim)
    floating(op, x)
    dims = norm_dims(op, dim, x.ndim)          # validates ``dim`` for a 0-d tensor too
    if x.ndim == 0:
        dims = ()
    kshape = _keep_shape(x.shape, dims)
    return dims, kshape, kshape if keepdim else tuple(
        s for i, s in enumerate(x.shape) if i not in dims)


def _var_args(op, dim, unbiased, correction):
    """``(dim, correction)`` from PyTorch's ways of asking: ``var(dim, unbiased)``,
    ``var(unbiased)`` (a bool first) and ``var(dim, correction=c)``; the default is 1."""
    if isinstance(dim, bool):                    # t.var(False): the overload without a dim
        dim, unbiased = None, dim if unbiased is None else unbiased
    if unbiased is not None:
        unbiased = flag(op, "unbiased", unbiased)
        if correction is not None:
            raise TritonnnError(f"{op}: give either unbiased or correction, not both")
        return dim, 1 if unbiased else 0
    if correction is None:
        return dim, 1
    if isinstance(correction, bool) or not isinstance(correction, numbers.Real):
        raise DTypeError(f"{op}: correction must be a number, got {correction!r} "
                         f"({type(correction).__name__})")
    return dim, correction


def _moments(op, x, dim, correction, keepdim, unbiased):
    """The variance (op "var") or standard deviation ("std") and what their rules read."""
    dim, correction = _var_args(op, dim, unbiased, correction)
    if autocast_regions[0]:
        (x,) = autocast_fp32(x.device, x)
    dims, kshape, oshape = _reduced(op, x, dim, keepdim)
    B = x._backend
    vb, mb = B.var_mean(x._data, dims, correction)
    sb = B.unary(vb, "sqrt") if op == "std" else None
    rb = vb if sb is None else sb
    out = x._new(rb if oshape == kshape else B.reshape(rb, oshape), x.dtype)
    watch = (x,) if sb is None else (x, out)              # std's rule reads the output
    return _record(out, op, (x,), (x._data, mb, sb), watch, (dims, correction, kshape))


def var(x, dim=None, correction=None, keepdim=False, unbiased=None):
    """Variance over ``dim`` (None: every dim) with ``correction`` (default 1: unbiased, as
    PyTorch; 0: biased, also ``unbiased=False``); NaN (0 / 0) where the reduced count is at
    most ``correction``."""
    return _moments("var", x, dim, correction, keepdim, unbiased)


def std(x, dim=None, correction=None, keepdim=False, unbiased=None):
    """``sqrt(var(...))``; its gradient is 0 where it is 0 (a constant row), as PyTorch's."""
    return _moments("std", x, dim, correction, keepdim, unbiased)


@backward_rule("var", "std")
def _moments_backward(node, g):
    # d var / dx = 2 (x - mean) / (K - correction); std: that times grad / (2 std), one launch
    B, (xb, mb, sb), (dims, correction, kshape) = node.backend, node.saved, node.attrs
    return (B.var_bwd(B.reshape(g, kshape), xb, mb, sb, dims, correction),)


def norm(x, p=2, dim=None, keepdim=False):
    """``torch.linalg.vector_norm`` (``Tensor.norm``'s vector cases): ``p`` a number >= 0,
    ``inf``, ``-inf`` or "fro" (2) over ``dim`` (None: every element)."""
    op = "norm"
    if p == "fro":
        p = 2.0
    elif isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise DTypeError(f"norm: p must be a number, inf, -inf or 'fro', got {p!r}")
    p = float(p)
    if p != p or (p < 0 and p != -np.inf):
        raise TritonnnError(f"norm: p must be >= 0, inf or -inf, got {p} (tensor {x.shape})")
    if autocast_regions[0]:
        (x,) = autocast_fp32(x.device, x)
    dims, kshape, oshape = _reduced(op, x, dim, keepdim)
    if np.isinf(p) and any(x.shape[d] == 0 for d in dims):
        raise ShapeError(f"norm: the {p} norm of an empty dimension is undefined (tensor of "
                         f"shape {x.shape}, dim {dim})")
    B = x._backend
    nb = B.vector_norm(x._data, dims, p, keepdim)
    out = x._new(nb, x.dtype)
    return _record(out, "norm", (x,), (x._data, nb), (x, out), (dims, p, kshape))


@backward_rule("norm")
def _norm_backward(node, g):
    B, (xb, nb), (dims, p, kshape) = node.backend, node.saved, node.attrs
    return (B.vector_norm_bwd(B.reshape(g, kshape), xb, B.reshape(nb, kshape), dims, p),)


# ==============================================================================================
# products
# ==============================================================================================


def _swap_last(B, buf, ndim):
    dims = list(range(ndim))
    dims[-1], dims[-2] = dims[-2], dims[-1]
    return B.permute(buf, tuple(dims))


def matmul(a, b):
    """Matrix product with numpy's rules for 1-D and batched operands."""
    same_device("matmul", a, b)
    if autocast_regions[0]:
        a, b = autocast_low(a.device, a, b)
    same_float_dtype("matmul", a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul: both operands need at least 1 dimension, got {a.shape} @ {b.shape}")
    k_a, k_b = a.shape[-1], b.shape[0] if b.ndim == 1 else b.shape[-2]
    if k_a != k_b:      # checked here so the message shows the caller's shapes, not unsqueezed ones
        raise ShapeError(f"matmul: inner dimensions differ: {a.shape} @ {b.shape} ({k_a} != {k_b})")
    if a.ndim == 1:
        out = matmul(unsqueeze(a, 0), b)
        return squeeze(out, -2) if b.ndim > 1 else squeeze(out, 0)   # 1-D @ 1-D: a 0-d dot
    if b.ndim == 1:
        return squeeze(matmul(a, unsqueeze(b, 1)), -1)
    try:
        broadcast_shapes("matmul", a.shape[:-2], b.shape[:-2])
    except ShapeError:
        raise ShapeError(f"matmul: batch dimensions of {a.shape} @ {b.shape} cannot be broadcast "
                         f"together") from None
    ab, bb = a._data, b._data
    out = a._new(a._backend.matmul(ab, bb), a.dtype)
    return _record(out, "matmul", (a, b), (ab, bb), (a, b), (a.shape, b.shape))


@backward_rule("matmul")
def _matmul_backward(node, g):
    B, (ab, bb), (sa, sb) = node.backend, node.saved, node.attrs
    ga = B.sum_to_shape(B.matmul(g, _swap_last(B, bb, len(sb))), sa) if node.needs(0) else None
    gb = B.sum_to_shape(B.matmul(_swap_last(B, ab, len(sa)), g), sb) if node.needs(1) else None
    return ga, gb


def linear(x, weight, bias=None, activation=None):
    """``x @ weight.T + bias``, then ReLU when ``activation == "relu"``: one fused op."""
    if activation not in (None, "relu"):
        raise TritonnnError(f"linear: activation must be None or 'relu', got {activation!r}")
    operands = (x, weight) if bias is None else (x, weight, bias)
    same_device("linear", *operands)
    if autocast_regions[0]:
        x, weight, bias = autocast_low(x.device, x, weight, bias)
        operands = (x, weight) if bias is None else (x, weight, bias)
    for t in operands[1:]:
        if t.dtype is not x.dtype:
            raise DTypeError(f"linear: input is {x.dtype} but weight/bias is {t.dtype}")
    floating("linear", x)
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
    x2 = x if x.ndim == 2 else reshape(x, (-1, x.shape[-1]))
    relu_ = activation == "relu"
    xb, wb = x2._data, weight._data
    yb = x._backend.linear_fwd(xb, wb, None if bias is None else bias._data, relu_)
    out = x._new(yb, x.dtype)
    if relu_:        # the ReLU mask is the output itself
        out = _record(out, "linear_relu", (x2, weight, bias), (xb, wb, yb), (x2, weight, out))
    else:
        out = _record(out, "linear", (x2, weight, bias), (xb, wb, None), (x2, weight))
    return out if x.ndim == 2 else reshape(out, lead + (weight.shape[0],))


@backward_rule("linear", "linear_relu")
def _linear_backward(node, g):
    xb, wb, yb = node.saved
    into = node.into          # the weight's and bias's gradient homes, if the walk offers them
    return node.backend.linear_bwd(g, xb, wb, yb, node.name == "linear_relu", node.needs(0),
                                   node.needs(1), node.needs(2),
                                   None if into is None else into[1],
                                   None if into is None else into[2])


# ==============================================================================================
# views, indexing and joins
# ==============================================================================================


def reshape(x, shape, op="reshape"):
    """``x`` with ``shape`` (one -1 allowed): a view when the strides allow it, as torch;
    ``op="view"``: a view or a ShapeError, as ``torch.Tensor.view``."""
    try:
        shape = tuple(operator.index(s) for s in shape)
    except TypeError:
        raise ShapeError(f"{op}: sizes must be ints, got {tuple(shape)} for a tensor of shape "
                         f"{x.shape}") from None
    if shape.count(-1) > 1:
        raise ShapeError(f"{op}: only one dimension can be -1, got {shape}")
    if any(s < -1 for s in shape):
        raise ShapeError(f"{op}: invalid size in {shape}")
    n = x.numel()
    if -1 in shape:
        known = 1
        for s in shape:
            if s != -1:
                known *= s
        if known == 0 or n % known:
            raise ShapeError(f"{op}: cannot reshape {x.shape} ({n} elements) into {shape}")
        shape = tuple(n // known if s == -1 else s for s in shape)
    possible_shape(op, shape)
    total = 1
    for s in shape:
        total *= s
    if total != n:
        raise ShapeError(f"{op}: cannot reshape {x.shape} ({n} elements) into {shape} "
                         f"({total} elements)")
    if shape == x.shape:
        return x
    B = x._backend
    if op == "view":
        buf = B.view(x._data, shape)
        if buf is None:
            raise ShapeError(f"view: a tensor of shape {x.shape} laid out in memory as this one "
                             f"(transposed or sliced) can't be seen as {shape} without a copy; "
                             f"use reshape(), or contiguous() first")
    else:
        buf = B.reshape(x._data, shape)
    out = _view(x._new(buf, x.dtype), x)
    return _record(out, "reshape", (x,), attrs=x.shape)


@backward_rule("reshape")
def _reshape_backward(node, g):
    B = node.backend
    return (B.reshape(B.contiguous(g), node.attrs),)


def permute(x, dims):
    """A view of ``x`` with its dims reordered."""
    dims = tuple(norm_dim("permute", d, x.ndim) for d in dims)
    if sorted(dims) != list(range(x.ndim)):
        raise ShapeError(f"permute: {dims} is not a permutation of the {x.ndim} dims of {x.shape}")
    out = _view(x._new(x._backend.permute(x._data, dims), x.dtype), x)
    inverse = [0] * len(dims)
    for i, d in enumerate(dims):
        inverse[d] = i
    return _record(out, "permute", (x,), attrs=tuple(inverse))


@backward_rule("permute")
def _permute_backward(node, g):
    return (node.backend.permute(g, node.attrs),)


def transpose(x, d0, d1):
    d0 = norm_dim("transpose", d0, x.ndim)
    d1 = norm_dim("transpose", d1, x.ndim)
    if x.ndim < 2:
        return x
    dims = list(range(x.ndim))
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return permute(x, dims)


def expand(x, shape):
    """A broadcast view of ``x`` with ``shape`` (-1 keeps a dim's size)."""
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
    out = _view(x._new(x._backend.expand(x._data, shape), x.dtype), x)
    return _record(out, "expand", (x,), attrs=x.shape)


@backward_rule("expand")
def _expand_backward(node, g):
    return (node.backend.sum_to_shape(g, node.attrs),)


def squeeze(x, dim=None):
    if dim is None:
        return reshape(x, tuple(s for s in x.shape if s != 1))
    d = norm_dim("squeeze", dim, x.ndim)
    if x.ndim == 0 or x.shape[d] != 1:
        return x
    return reshape(x, x.shape[:d] + x.shape[d + 1:])


def unsqueeze(x, dim):
    d = norm_dim("unsqueeze", dim, x.ndim + 1)
    return reshape(x, x.shape[:d] + (1,) + x.shape[d:], "unsqueeze")


def contiguous(x):
    """``x`` itself when row-major contiguous, else a contiguous copy."""
    c = x._backend.contiguous(x._data)
    if c is x._data:
        return x
    return _record(x._new(c, x.dtype), "contiguous", (x,))


@backward_rule("contiguous", "clone")
def _identity_backward(node, g):
    return (g,)


def _index_buffer(x, values, dim):
    """A Python list used as an index, as an int64 or bool buffer on ``x``'s device; its
    values are on the host, so they are checked here (on every device)."""
    try:
        a = np.asarray(values)
    except ValueError as e:
        raise ShapeError(f"index: nested index lists must be rectangular ({e})") from None
    if a.size == 0 or a.dtype.kind in "iu":
        dt = D.int64
        if a.size:
            check = _index_check(x, dim)
            lo, hi = int(a.min()), int(a.max())
            if lo < check.low or hi >= check.high:
                raise check.exception(lo if lo < check.low else None, hi)
    elif a.dtype.kind == "b":
        dt = D.bool_
    else:
        raise DTypeError(f"index: index lists must hold ints or bools, got {a.dtype}")
    return x._backend.from_numpy(a, dt), dt


def _index_check(x, dim):
    """The values an integer index along ``dim`` of ``x`` may take, and the error for others."""
    size = x.shape[dim]
    return RangeCheck(-size, size, None, IndexOutOfRange,
                      f"index: index {{}} is out of bounds for dimension {dim} with size {size} "
                      f"(shape {x.shape})")


def _consumed(i):
    """How many of the indexed tensor's dims the index component ``i`` takes."""
    if i is None or i is Ellipsis or isinstance(i, bool):
        return 0
    if isinstance(i, TensorBase) and i.dtype is D.bool_:
        return max(i.ndim, 1)
    return 1


def _norm_index(x, index):
    """Check basic/advanced indices against ``x``'s shape; return what the backend takes:
    ``(index, checks)``, ``checks`` None or a ``RangeCheck`` per component for the integer
    index tensors, whose values the backend checks (on "cuda" in the kernel that reads
    them, raised at the next synchronization: reading them here would be a host sync)."""
    if not isinstance(index, tuple):
        index = (index,)
    if sum(1 for i in index if i is Ellipsis) > 1:
        raise IndexOutOfRange(f"index: an index can only have a single ellipsis (...), "
                              f"tensor of shape {x.shape}")
    n_explicit = sum(_consumed(i) for i in index)
    if n_explicit > x.ndim:
        raise IndexOutOfRange(f"index: too many indices ({n_explicit}) for a tensor of shape "
                              f"{x.shape}")
    out = []
    checks = None
    advanced = []           # the integer index buffers' shapes: they must broadcast together
    dim = 0
    for i in index:
        if i is None or i is True:          # True adds a dim of size 1, as None (torch, numpy)
            out.append(None)
            continue
        if i is Ellipsis:
            out.append(Ellipsis)
            dim += x.ndim - n_explicit
            continue
        size = x.shape[dim]
        if isinstance(i, (list, TensorBase)):
            if isinstance(i, list):
                buf, dt = _index_buffer(x, i, dim)
            elif i.dtype is D.bool_ or i.dtype.is_integer:
                if i.device != x.device:
                    raise DeviceError(f"index: index tensor on {i.device}, tensor on {x.device}")
                buf, dt = i._data, i.dtype
                if dt is not D.bool_:
                    checks = checks or [None] * len(index)
                    checks[len(out)] = _index_check(x, dim)
            else:
                raise DTypeError(f"index: index tensors must be integer or bool, got {i.dtype}")
            if dt is D.bool_:
                _check_mask_shape(x, buf, dim)
            out.append(buf)
            if dt is D.bool_:
                dim += max(len(buf.shape), 1) - 1   # a k-D mask consumes k dims
            else:
                advanced.append(tuple(buf.shape))
        elif isinstance(i, numbers.Integral) and not isinstance(i, bool):
            if not -size <= i < size:
                raise IndexOutOfRange(f"index: index {i} is out of bounds for dimension {dim} "
                                      f"with size {size} (shape {x.shape})")
            out.append(int(i))
        elif isinstance(i, slice):
            for part in (i.start, i.stop, i.step):
                if part is not None and (isinstance(part, bool) or
                                         not isinstance(part, numbers.Integral)):
                    raise DTypeError(f"index: slice indices must be ints or None, got {part!r} "
                                     f"in {i} (tensor of shape {x.shape})")
            if i.step is not None and i.step <= 0:
                raise TritonnnError(f"index: slice step must be positive, got {i.step}")
            out.append(i)
        elif i is False:
            raise TritonnnError(f"index: the index False (an empty new dim) is not supported, "
                                f"tensor of shape {x.shape}")
        else:
            raise DTypeError(f"index: unsupported index {i!r} of type {type(i).__name__} "
                             f"(ints, slices, None, ..., and integer or bool tensors index)")
        dim += 1
    for shape in advanced[1:]:
        try:
            broadcast_shapes("index", advanced[0], shape)
        except ShapeError:
            raise ShapeError(f"index: index lists or tensors of shapes "
                             f"{', '.join(str(a) for a in advanced)} cannot be broadcast "
                             f"together (tensor of shape {x.shape})") from None
    return tuple(out), (None if checks is None else tuple(checks))


def _check_mask_shape(x, buf, dim):
    """A boolean mask's shape against the dims of ``x`` it covers."""
    shape = tuple(buf.shape)
    covered = x.shape[dim:dim + len(shape)]
    if shape and shape != covered:
        raise IndexOutOfRange(f"index: boolean mask of shape {shape} does not match "
                              f"dims {dim}.. of the indexed tensor of shape {x.shape}")


def _is_advanced(index, buf_type):
    return any(isinstance(i, buf_type) for i in index)


def getitem(x, index):
    """``x[index]``: basic indexing is a view; index tensors and lists gather."""
    idx, checks = _norm_index(x, index)
    B = x._backend
    xb = x._data
    out = x._new(B.getitem(xb, idx, checks), x.dtype)
    if not _is_advanced(idx, type(xb)):
        _view(out, x)
    if not x.dtype.is_floating:
        return out
    return _record(out, "index", (x,), attrs=(idx, x.shape))


@backward_rule("index")
def _index_backward(node, g):
    B, (idx, shape) = node.backend, node.attrs
    return (B.index_add(B.full(shape, 0, B.dtype_of(g)), idx, g),)


def setitem(x, index, value):
    """``x[index] = value`` in place (a tensor broadcast to the indexed shape, or a number);
    while recording, ``x`` carries the write into its graph (the value's gradient is its
    slice of ``x``'s, the overwritten elements get none)."""
    _check_writable("setitem", x)
    idx, checks = _norm_index(x, index)
    B = x._backend
    if isinstance(value, TensorBase):
        if value.device != x.device:
            raise DeviceError(f"setitem: value on {value.device}, tensor on {x.device}")
        target_shape = tuple(B.getitem(x._data, idx).shape)
        if broadcast_shapes("setitem", value.shape, target_shape) != target_shape:
            raise ShapeError(f"setitem: a value of shape {value.shape} does not fit the "
                             f"indexed shape {target_shape}")
        if value.dtype is not x.dtype:
            value = cast(value, x.dtype)
    elif not is_scalar(value):
        raise DTypeError(f"setitem: value must be a tensor or a number, "
                         f"got {type(value).__name__}")
    else:
        scalar_fits("setitem", value, x.dtype)         # 2**40 into int32, NaN into int64
    if _recording(x, value):
        _sole_owner("setitem", x)
        _assign("setitem", x, _index_put(clone(x), idx, value, checks))
        return
    B.setitem(x._data, idx, value._data if isinstance(value, TensorBase) else value, checks)
    x._version[0] += 1


def _index_put(c, idx, value, checks):
    """``c`` (a private copy) with ``value`` written at ``idx``, recorded as one op."""
    B = c._backend
    tensor_value = isinstance(value, TensorBase)
    B.setitem(c._data, idx, value._data if tensor_value else value, checks)
    out = c._new(c._data, c.dtype)
    return _record(out, "index_put", (c, value if tensor_value else None),
                   attrs=(idx, value.shape if tensor_value else None))


@backward_rule("index_put")
def _index_put_backward(node, g):
    B, (idx, value_shape) = node.backend, node.attrs
    gc = None
    if node.needs(0):
        gc = B.cast(g, B.dtype_of(g))              # a copy, zeroed where the write landed
        B.setitem(gc, idx, 0)
    gv = B.sum_to_shape(B.getitem(g, idx), value_shape) if node.needs(1) else None
    return gc, gv


def cat(tensors, dim=0, op="cat"):
    """Join tensors along an existing dim (``cat``) or a new one (``op="stack"``)."""
    if not tensors:
        raise TritonnnError(f"{op}: expected a non-empty list of tensors")
    same_device(op, *tensors)
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
        d = norm_dim("stack", dim, first.ndim + 1)
        out = first._new(B.stack(bufs, d), first.dtype)
        # the gradient of each input is its slice of g along the new dim
        pieces = tuple((slice(None),) * d + (i,) for i in range(len(tensors)))
    else:
        if first.ndim == 0:
            raise ShapeError("cat: zero-dimensional tensors cannot be concatenated; use tn.stack")
        d = norm_dim("cat", dim, first.ndim)
        for t in tensors[1:]:
            if t.ndim != first.ndim or any(a != b for i, (a, b) in enumerate(zip(t.shape, first.shape))
                                           if i != d):
                raise ShapeError(f"cat: shapes {first.shape} and {t.shape} differ outside dim {d}")
        out = first._new(B.cat(bufs, d), first.dtype)
        pieces, start = [], 0
        for t in tensors:
            pieces.append((slice(None),) * d + (slice(start, start + t.shape[d]),))
            start += t.shape[d]
        pieces = tuple(pieces)
    if not first.dtype.is_floating:
        return out
    return _record(out, op, tuple(tensors), attrs=pieces)


@backward_rule("cat", "stack")
def _cat_backward(node, g):
    B = node.backend
    return tuple(B.getitem(g, piece) for piece in node.attrs)


# ==============================================================================================
# normalization and activations
# ==============================================================================================


def _activation(x, op, name):
    """``op`` (silu, gelu, gelu_tanh) of ``x``, saving the input for the fused backward."""
    floating(name, x)
    xb = x._data
    out = x._new(x._backend.unary(xb, op), x.dtype)
    return _record(out, op, (x,), (xb,), (x,))


def gelu(x, approximate="none"):
    """``x * Phi(x)`` (``approximate="none"``, with erf) or PyTorch's tanh form ("tanh")."""
    if approximate not in ("none", "tanh"):
        raise TritonnnError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _activation(x, "gelu" if approximate == "none" else "gelu_tanh", "gelu")


def silu(x):
    """``x * sigmoid(x)``."""
    return _activation(x, "silu", "silu")


@backward_rule("gelu", "gelu_tanh", "silu")
def _activation_backward(node, g):
    (xb,) = node.saved
    return (node.backend.unary_bwd(g, xb, node.name),)


def rsqrt(x):
    """``1 / sqrt(x)`` (inf at 0, NaN below); saves the output for the backward."""
    return unary(x, "rsqrt")


@backward_rule("rsqrt")
def _rsqrt_backward(node, g):
    # d x^(-1/2) / dx = -y^3 / 2, from the output y
    (y,) = node.saved
    return (node.backend.unary_bwd(g, y, "rsqrt"),)


def _normalized_shape(op, normalized_shape):
    """``normalized_shape`` (an int or a sequence of ints) as a non-empty tuple of ints."""
    shape = (normalized_shape,) if isinstance(normalized_shape, numbers.Integral) else \
        normalized_shape
    try:
        shape = tuple(shape)
    except TypeError:
        raise ShapeError(f"{op}: normalized_shape must be an int or a sequence of ints, got "
                         f"{normalized_shape!r}") from None
    if not shape or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 0
                        for s in shape):
        raise ShapeError(f"{op}: normalized_shape must be one or more non-negative ints, got "
                         f"{normalized_shape!r}")
    return tuple(int(s) for s in shape)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """LayerNorm over the trailing dims ``normalized_shape``: one fused kernel each way."""
    op = "layer_norm"
    shape = _normalized_shape(op, normalized_shape)
    k = len(shape)
    operands = [t for t in (x, weight, bias) if t is not None]
    same_device(op, *operands)
    floating(op, x)
    if autocast_regions[0]:
        x, weight, bias = autocast_fp32(x.device, x, weight, bias)
    if x.ndim < k or x.shape[x.ndim - k:] != shape:
        raise ShapeError(f"{op}: normalized_shape {shape} does not match the trailing dims of "
                         f"the input {x.shape} (expected input of shape (*, "
                         f"{', '.join(map(str, shape))}))")
    for what, t in (("weight", weight), ("bias", bias)):
        if t is None:
            continue
        if t.dtype is not x.dtype:
            raise DTypeError(f"{op}: input is {x.dtype} but {what} is {t.dtype}; convert one "
                             f"with .to(dtype)")
        if t.shape != shape:
            raise ShapeError(f"{op}: {what} of shape {t.shape} does not match normalized_shape "
                             f"{shape}")
    eps = float(eps)
    if not eps >= 0:
        raise TritonnnError(f"{op}: eps must be >= 0, got {eps}")
    B = x._backend
    xb = x._data
    wb = None if weight is None else weight._data
    yb, mean, rstd = B.layer_norm_fwd(xb, wb, None if bias is None else bias._data, k, eps)
    out = x._new(yb, x.dtype)
    return _record(out, op, (x, weight, bias), (xb, wb, mean, rstd), (x, weight), k)


@backward_rule("layer_norm")
def _layer_norm_backward(node, g):
    xb, wb, mean, rstd = node.saved
    return node.backend.layer_norm_bwd(g, xb, wb, mean, rstd, node.attrs, node.needs(0),
                                       node.needs(1), node.needs(2))


def mse_loss(x, y, reduction="mean"):
    """``(x - y)^2`` broadcast, its sum or its mean: one fused kernel each way. An integer or
    bool operand takes the other's float dtype (``nn.functional`` checks the rest)."""
    op = "mse_loss"
    check_reduction(op, reduction)
    same_device(op, x, y)
    if x.dtype is not y.dtype:
        if x.dtype.is_floating and y.dtype.is_floating:
            raise DTypeError(f"{op}: input is {x.dtype} but target is {y.dtype}; convert one "
                             f"with .to(dtype)")
        x, y = (x, cast(y, x.dtype)) if x.dtype.is_floating else (cast(x, y.dtype), y)
    floating(op, x)
    if x.shape != y.shape:
        broadcast_shapes(op, x.shape, y.shape)
    xb, yb = x._data, y._data
    out = x._new(x._backend.mse_loss_fwd(xb, yb, reduction), x.dtype)
    return _record(out, op, (x, y), (xb, yb), (x, y), (reduction, x.shape, y.shape))


@backward_rule("mse_loss")
def _mse_loss_backward(node, g):
    B, (xb, yb), (reduction, xs, ys) = node.backend, node.saved, node.attrs
    dx, dy = B.mse_loss_bwd(g, xb, yb, reduction, node.needs(0), node.needs(1))
    return (None if dx is None else B.sum_to_shape(dx, xs),
            None if dy is None else B.sum_to_shape(dy, ys))


# ==============================================================================================
# in-place writes
# ==============================================================================================

_KIND = {D.bool_: 0}            # bool < integer < floating: a result may not move up a kind


def _kind(dt):
    return 2 if dt.is_floating else _KIND.get(dt, 1)


def _related(x):
    """The live tensors that show ``x``'s memory through views (``x`` excluded)."""
    box = x._version
    if len(box) == 1:
        return []
    return [t for t in (r() for r in box[1].values()) if t is not None and t is not x]


def _check_writable(op, x):
    """What no in-place write may do, recording or not (PyTorch's rules)."""
    if grad_mode.enabled:
        if x.requires_grad and x._node is None:
            raise TritonnnError(f"{op}: a leaf tensor of shape {x.shape} that requires grad "
                                f"can't be written in place while gradients are recorded; do "
                                f"it under tn.no_grad() (as an optimizer step does), or on a "
                                f"copy")
        if any(t.requires_grad and t._node is None for t in _related(x)):
            raise TritonnnError(f"{op}: the tensor of shape {x.shape} is a view of a leaf that "
                                f"requires grad; it can't be written in place while gradients "
                                f"are recorded (do it under tn.no_grad())")
    if x._backend.overlapping(x._data):
        raise TritonnnError(f"{op}: several elements of the tensor of shape {x.shape} share one "
                            f"memory location (a broadcast view, from expand); write into a "
                            f"copy (clone() or contiguous())")


def _sole_owner(op, x):
    """Recording an in-place write into ``x`` rewires ``x`` alone in the graph: refused while
    another live tensor views the same memory (its graph would miss the write)."""
    if _related(x):
        raise TritonnnError(f"{op}: the tensor of shape {x.shape} shares its memory with a view "
                            f"(or is one) and is part of a graph; writing it in place would "
                            f"leave the other's gradient stale: write it out of place "
                            f"(y = y * v), or under tn.no_grad()")


def _no_partial_overlap(op, x, other):
    """A source that is another view of ``x``'s memory would be read while it is written."""
    if isinstance(other, TensorBase) and other._version is x._version and \
            other._data is not x._data and len(x._version) > 1:
        raise TritonnnError(f"{op}: the source of shape {other.shape} is another view of the "
                            f"memory it is written into (overlapping views); use a copy of it "
                            f"(clone())")


def _assign(op, x, y, any_kind=False):
    """Write the result ``y`` into ``x``'s buffer: every alias and view of ``x`` sees it.

    ``y`` has ``x``'s shape; its dtype is converted to ``x``'s, as PyTorch's in-place ops
    do, but never up a kind (a float result into an integer tensor is an error) unless
    ``any_kind`` (``copy_``). While recording, ``x`` takes ``y``'s place in the graph.
    """
    if not any_kind and _kind(y.dtype) > _kind(x.dtype):
        raise DTypeError(f"{op}: the result is {y.dtype} and can't be written into a tensor of "
                         f"dtype {x.dtype} in place")
    x._backend.copy_(x._data, y._data)
    x._version[0] += 1
    if y._node is not None:
        x._node = y._node
        x.requires_grad = True
    return x


def _recording(x, *others):
    return grad_mode.enabled and (x.requires_grad or any(
        isinstance(o, TensorBase) and o.requires_grad for o in others))


def _inplace(op, x, compute, *others, any_kind=False):
    """``x = compute(x)`` in place; while recording, ``compute`` sees a copy of ``x`` (its
    rule may read the old values, which the write overwrites) and ``x`` joins the graph."""
    _check_writable(op, x)
    for o in others:
        _no_partial_overlap(op, x, o)
    if _recording(x, *others):
        _sole_owner(op, x)
        return _assign(op, x, compute(clone(x)), any_kind)
    with no_grad():
        return _assign(op, x, compute(x), any_kind)


def binary_(x, other, op, name=None, alpha=None):
    """``x op= other`` in place (``+= -= *= /=``, ``add_`` ...), ``other`` broadcast to ``x``;
    ``alpha`` scales ``other`` first (``add_(other, alpha=...)``, as PyTorch's)."""
    name = name or SYMBOLS[op] + "="
    if isinstance(other, TensorBase):
        if other.device != x.device:
            same_device(name, x, other)
        if broadcast_shapes(name, x.shape, other.shape) != x.shape:
            raise ShapeError(f"{name}: an operand of shape {other.shape} does not fit the "
                             f"tensor of shape {x.shape} written in place")
    elif not is_scalar(other):
        raise DTypeError(f"{name}: unsupported operand of type {type(other).__name__} with a "
                         f"tensor {x.shape} {x.dtype}; use a tensor or a Python number")
    elif x.dtype.is_integer and isinstance(other, numbers.Integral):
        scalar_fits(name, other, x.dtype)           # uint8 += 300: refused, not wrapped
    if alpha is not None and alpha != 1:
        if not is_scalar(alpha):
            raise DTypeError(f"{name}: alpha must be a number, got {type(alpha).__name__}")
        if isinstance(other, TensorBase):
            other = binary(other, alpha, "mul")
        else:
            other = other * alpha
    return _inplace(name, x, lambda v: binary(v, other, op), other)


def fill_(x, value, name="fill_"):
    """Every element of ``x`` set to the number (or 0-d tensor) ``value``; ``zero_`` is
    ``fill_(0)``."""
    if isinstance(value, TensorBase):
        if value.ndim:
            raise ShapeError(f"{name}: the value must be a number or a 0-d tensor, got a "
                             f"tensor of shape {value.shape}")
        return copy_(x, value, name)
    if not is_scalar(value):
        raise DTypeError(f"{name}: expected a number, got {type(value).__name__}")
    scalar_fits(name, value, x.dtype)
    return _inplace(name, x, lambda v: v._new(v._backend.full(v.shape, value, v.dtype),
                                               v.dtype), any_kind=True)


def copy_(x, src, name="copy_"):
    """``src``'s values (broadcast, converted to ``x``'s dtype, copied from another device if
    need be) written into ``x``; the gradient flows to ``src``."""
    if not isinstance(src, TensorBase):
        raise DTypeError(f"{name}: expected a tensor to copy from, got {type(src).__name__}")
    if broadcast_shapes(name, src.shape, x.shape) != x.shape:
        raise ShapeError(f"{name}: a source of shape {src.shape} does not broadcast to the "
                         f"destination's shape {x.shape}")

    def converted(_):
        v = to_device(src, x.device)
        v = expand(v, x.shape) if v.shape != x.shape else v
        return cast(v, x.dtype) if x.dtype.is_floating and v.dtype.is_floating else v
    return _inplace(name, x, converted, src, any_kind=True)


def clamp_(x, lo=None, hi=None):
    """``x`` clamped in place (``clamp`` of it, written back)."""
    return _inplace("clamp_", x, lambda v: clamp(v, lo, hi))


def clamp(x, lo=None, hi=None):
    """``x`` limited to ``[lo, hi]`` (either may be None); NaN stays NaN; the gradient passes
    where ``lo <= x <= hi``, as PyTorch's."""
    if lo is None and hi is None:
        raise TritonnnError("clamp: at least one of min and max must be given")
    for bound in (lo, hi):
        if bound is not None and not is_scalar(bound):
            raise DTypeError(f"clamp: bounds must be numbers, got {type(bound).__name__} "
                             f"(for tensor bounds use tn.maximum / tn.minimum)")
    if isinstance(lo, bool) or isinstance(hi, bool):
        raise DTypeError("clamp: bounds must be numbers, not bools")
    dt = x.dtype
    if not dt.is_floating and any(isinstance(b, float) for b in (lo, hi)):
        dt = D.float32                  # an integer tensor clamped by a float: as torch
    for bound in (lo, hi):
        if bound is not None:
            scalar_fits("clamp", bound, dt)          # -1 for uint8: refused, as torch
    B = x._backend
    v = cast(x, dt)
    yb = v._data
    if lo is not None:
        yb = B.binary(yb, lo, "maximum")
    if hi is not None:
        yb = B.binary(yb, hi, "minimum")
    out = v._new(yb, dt)
    if not dt.is_floating:
        return out
    return _record(out, "clamp", (v,), (v._data,), (v,), (lo, hi))


@backward_rule("clamp")
def _clamp_backward(node, g):
    B, (xb,), (lo, hi) = node.backend, node.saved, node.attrs
    inside = None
    for bound, cmp in ((lo, "ge"), (hi, "le")):
        if bound is not None:
            m = B.binary(xb, bound, cmp)
            inside = m if inside is None else B.where(m, inside, m)     # m and inside
    return (B.where(inside, g, B.full((), 0, B.dtype_of(g))),)


def clone(x):
    """A copy of ``x`` in a buffer of its own; the gradient passes through unchanged."""
    out = x._new(x._backend.cast(x._data, x.dtype), x.dtype)
    return _record(out, "clone", (x,)) if x.dtype.is_floating else out


# ==============================================================================================
# conversions
# ==============================================================================================


def cast(x, dtype):
    """``x`` converted to ``dtype`` (a new buffer); gradients flow back between float dtypes."""
    if dtype is x.dtype:
        return x
    out = x._new(x._backend.cast(x._data, dtype), dtype)
    if not (x.dtype.is_floating and dtype.is_floating):
        return out
    return _record(out, "cast", (x,), attrs=x.dtype)


@backward_rule("cast")
def _cast_backward(node, g):
    return (node.backend.cast(g, node.attrs),)


def to_device(x, device):
    """``x`` copied to ``device`` through the host; gradients copy back."""
    if device == x.device:
        return x
    dst = backend(device)
    out = x._new(dst.from_numpy(x._backend.to_numpy(x._data), x.dtype), x.dtype)
    out.device, out._backend = device, dst
    return _record(out, "to", (x,), attrs=(x._backend, x.dtype))


@backward_rule("to")
def _to_backward(node, g):
    src, dtype = node.attrs
    return (src.from_numpy(node.backend.to_numpy(g), dtype),)


# ==============================================================================================
# embedding, dropout and random draws
# ==============================================================================================


def embedding(idx, weight, padding_idx=None):
    """Rows of the 2-D table ``weight`` (num, dim) at the int64 or int32 indices ``idx`` (any
    shape): a tensor of ``idx.shape + (dim,)``.

    The table's gradient adds each row's uses in position order (deterministic, no
    atomics) and leaves row ``padding_idx`` (as PyTorch's: may count from the end) at 0.
    Indices are checked to lie in ``[0, num)``, negative ones refused as PyTorch does.
    """
    op = "embedding"
    same_device(op, idx, weight)
    if idx.dtype is not D.int64 and idx.dtype is not D.int32:
        raise DTypeError(f"{op}: indices must be int64 or int32, got {idx.dtype} (indices "
                         f"{idx.shape}); convert with .long()")
    if weight.ndim != 2:
        raise ShapeError(f"{op}: the weight must be 2-D (num_embeddings, embedding_dim), got "
                         f"{weight.shape}")
    num, dim = weight.shape
    if padding_idx is not None:
        if not -num <= padding_idx < num:
            raise IndexOutOfRange(f"{op}: padding_idx {padding_idx} is out of range for "
                                  f"{num} embeddings (weight {weight.shape})")
        padding_idx %= num
    possible_shape(op, idx.shape + (dim,), weight.dtype.itemsize)
    # the indices are checked by the backend as it reads them ("cuda": in the kernel, raised
    # at the next synchronization, so the step needs no host sync)
    check = RangeCheck(0, num, None, IndexOutOfRange,
                       f"{op}: index {{}} is out of range for a table of {num} rows (weight "
                       f"{weight.shape}, indices {idx.shape}); indices must lie in [0, {num})")
    B = weight._backend
    out = weight._new(B.embedding_fwd(idx._data, weight._data, check), weight.dtype)
    if not weight.dtype.is_floating:
        return out
    return _record(out, op, (weight,), (idx._data,), (idx,), (num, padding_idx))


@backward_rule("embedding")
def _embedding_backward(node, g):
    (ib,), (num, padding_idx) = node.saved, node.attrs
    return (node.backend.embedding_bwd(g, ib, num, padding_idx),)


def dropout(x, p=0.5, training=True):
    """Each element zeroed with probability ``p``, the others scaled by ``1 / (1 - p)``.

    Outside training, for ``p == 0`` and for an empty tensor it is ``x`` itself (as
    PyTorch). The mask is drawn from the global Philox stream (``tn.manual_seed``): the
    node keeps the draw's ``(seed, offset)``, and the backward regenerates the mask from
    them instead of storing it.
    """
    op = "dropout"
    if not 0.0 <= p <= 1.0:
        raise TritonnnError(f"{op}: p must be a probability in [0, 1], got {p}")
    if not training or p == 0.0 or x.numel() == 0:
        return x
    floating(op, x)
    seed, offset = _random.take((x.numel() + 3) // 4)      # four elements to a counter
    out = x._new(x._backend.dropout(x._data, p, seed, offset), x.dtype)
    return _record(out, op, (x,), attrs=(p, seed, offset))


@backward_rule("dropout")
def _dropout_backward(node, g):
    p, seed, offset = node.attrs
    return (node.backend.dropout(g, p, seed, offset),)


def dropout_(x, p=0.5, training=True):
    """``dropout`` written into ``x`` in place (PyTorch's ``inplace=True``)."""
    if not 0.0 <= p <= 1.0 or not training or p == 0.0 or x.numel() == 0:
        return dropout(x, p, training)
    return _inplace("dropout_", x, lambda v: dropout(v, p, True))


def one_hot(idx, num_classes=-1):
    """int64 one-hot codes of the integer class indices ``idx``: ``idx.shape + (num_classes,)``.

    ``num_classes=-1`` counts the classes as the largest value + 1, which reads the values
    back to the host (a sync on "cuda"); with a given ``num_classes`` the backend checks the
    range as it reads them (on "cuda" raised at the next synchronization).
    """
    op = "one_hot"
    if not idx.dtype.is_integer:
        raise DTypeError(f"{op}: expected a tensor of integer class indices, got {idx.dtype} "
                         f"{idx.shape}; convert with .long()")
    B = idx._backend
    check = None
    if num_classes == -1:
        if idx.numel() == 0:
            raise TritonnnError(f"{op}: can't infer the number of classes from an empty "
                                f"tensor {idx.shape}; pass num_classes")
        vals = B.to_numpy(idx._data)
        lo, hi = int(vals.min()), int(vals.max())
        if lo < 0:
            raise IndexOutOfRange(f"{op}: class values must be non-negative, got {lo} "
                                  f"(indices {idx.shape})")
        num_classes = hi + 1
    elif num_classes < 0:
        raise TritonnnError(f"{op}: num_classes must be -1 (infer it) or >= 0, got "
                            f"{num_classes}")
    else:
        check = RangeCheck(0, num_classes, None, IndexOutOfRange,
                           f"{op}: class value {{}} is out of range for {num_classes} classes "
                           f"(indices {idx.shape}); values must lie in [0, {num_classes})")
    possible_shape(op, idx.shape + (num_classes,), D.int64.itemsize)
    return idx._new(B.one_hot(idx._data, num_classes, check), D.int64)


def multinomial(probs, num_samples, replacement=False):
    """``num_samples`` category indices (int64) drawn from each row of the non-negative weights
    ``probs`` (1-D: one distribution, (num_samples,); 2-D: one per row, (rows, num_samples)),
    with or without replacement, as ``torch.multinomial``.

    The weights are read back to the host once to check them (finite, >= 0, a positive
    sum): PyTorch's errors, raised before any draw. The draws run on the device, from the
    global Philox stream. Without replacement and with fewer positive weights than samples,
    the zero-weight categories come last, in index order (PyTorch draws them too, in no
    stated order).
    """
    op = "multinomial"
    if not probs.dtype.is_floating:
        raise DTypeError(f"{op}: expected floating-point weights, got {probs.dtype} "
                         f"{probs.shape}; convert with .float()")
    if probs.ndim not in (1, 2):
        raise ShapeError(f"{op}: probs must be 1-D (one distribution) or 2-D (one per row), "
                         f"got {probs.shape}")
    if num_samples <= 0:
        raise TritonnnError(f"{op}: num_samples must be positive, got {num_samples}")
    rows, c = (1, probs.shape[0]) if probs.ndim == 1 else probs.shape
    if not replacement and num_samples > c:
        raise TritonnnError(f"{op}: can't draw {num_samples} samples without replacement from "
                            f"{c} categories (probs {probs.shape})")
    possible_shape(op, (rows, num_samples), D.int64.itemsize)
    B = probs._backend
    w = np.asarray(B.to_numpy(probs._data), np.float64).reshape(rows, c)
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        r, j = (int(i) for i in np.argwhere(bad)[0])
        raise TritonnnError(f"{op}: weights must be finite and non-negative; row {r} holds "
                            f"{w[r, j]} at {j} (probs {probs.shape} {probs.dtype})")
    positive = (w > 0).sum(axis=1)
    if rows and positive.min() == 0:
        r = int(np.argmin(positive))
        raise TritonnnError(f"{op}: row {r} of the weights sums to 0: nothing to draw from "
                            f"(probs {probs.shape})")
    seed, offset = _random.take(rows * (num_samples if replacement else c))
    pb = probs._data if probs.ndim == 2 else B.reshape(probs._data, (1, c))
    out = B.multinomial(pb, num_samples, replacement, seed, offset)
    if probs.ndim == 1:
        out = B.reshape(out, (num_samples,))
    return probs._new(out, D.int64)


# ==============================================================================================
# softmax family and losses
# ==============================================================================================


def softmax(x, dim=-1, log=False):
    """softmax (``log``: log_softmax) along ``dim``, with float32 statistics for 16-bit floats."""
    op = "log_softmax" if log else "softmax"
    floating(op, x)
    if autocast_regions[0]:
        (x,) = autocast_fp32(x.device, x)
    d = norm_dim(op, dim, x.ndim)
    B = x._backend
    fwd = B.log_softmax_fwd if log else B.softmax_fwd
    if x.ndim == 0:          # one element: softmax 1, log_softmax 0, gradient 0 (attrs None)
        yb = B.reshape(fwd(B.reshape(x._data, (1,)), 0), ())
        return _record(x._new(yb, x.dtype), op, (x,))
    # an empty tensor has nothing to normalise (and no row maximum to take)
    yb = fwd(x._data, d) if x.numel() else B.empty(x.shape, x.dtype)
    out = x._new(yb, x.dtype)
    return _record(out, op, (x,), (yb,), (out,), d)


@backward_rule("softmax", "log_softmax")
def _softmax_backward(node, g):
    B = node.backend
    if node.attrs is None:
        return (B.full((), 0, B.dtype_of(g)),)
    bwd = B.log_softmax_bwd if node.name == "log_softmax" else B.softmax_bwd
    return (bwd(g, node.saved[0], node.attrs),)


def cross_entropy(logits, target, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Fused softmax-cross-entropy of (N, C) logits against (N,) integer class indices."""
    op = "cross_entropy"
    same_device(op, logits, target)
    if autocast_regions[0]:
        (logits,) = autocast_fp32(logits.device, logits)
    check_reduction(op, reduction)
    if not 0.0 <= float(label_smoothing) <= 1.0:
        raise TritonnnError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing}")
    floating(op, logits)
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
    tgt = cast(target, D.int64)
    B = logits._backend
    lb, tb = logits._data, tgt._data
    smoothing = float(label_smoothing)
    # the targets are checked by the backend as it reads them ("cuda": in the kernel, raised at
    # the next synchronization, so the step needs no host sync)
    check = _target_check(op, c, ignore_index)
    loss_b, lse = B.softmax_cross_entropy_fwd(lb, tb, ignore_index, smoothing, reduction, check)
    out = logits._new(loss_b, logits.dtype)
    # the rule may write the gradient into the logits buffer (saved[0]) when the walk finds
    # that buffer is no one else's: no other node saved it, no view, no user tensor holds it
    return _record(out, op, (logits, None), (lb, tb, lse), (logits, tgt),
                   (ignore_index, smoothing, reduction), donate=0)


@backward_rule("cross_entropy", implicit_ones=True)
def _cross_entropy_backward(node, g):
    (lb, tb, lse), (ignore_index, smoothing, reduction) = node.saved, node.attrs
    # ``loss.backward()``'s upstream 1 is folded into the kernel (None): nothing to fill
    g = None if type(g) is ImplicitOnes else g
    return (node.backend.softmax_cross_entropy_bwd(g, lb, tb, lse, ignore_index, smoothing,
                                                   reduction, node.last_use), None)


def _target_check(op, classes, ignore_index):
    """The values a class target may take (``ignore_index`` too), and the error for others."""
    return RangeCheck(0, classes, ignore_index, IndexOutOfRange,
                      f"{op}: target {{}} is out of range for {classes} classes (and is not "
                      f"ignore_index={ignore_index})")


def binary_cross_entropy_with_logits(x, y, reduction="mean"):
    """Sigmoid + binary cross-entropy of ``x`` against targets ``y`` of the same shape."""
    op = "binary_cross_entropy_with_logits"
    same_device(op, x, y)
    if autocast_regions[0]:
        x, y = autocast_fp32(x.device, x, y)
    check_reduction(op, reduction)
    floating(op, x)
    if y.dtype is not x.dtype:
        if y.dtype.is_floating:
            raise DTypeError(f"{op}: input is {x.dtype} but target is {y.dtype}")
        y = cast(y, x.dtype)
    if x.shape != y.shape:
        raise ShapeError(f"{op}: target shape {y.shape} must equal input shape {x.shape}")
    xb, yb = x._data, y._data
    out = x._new(x._backend.bce_with_logits_fwd(xb, yb, reduction), x.dtype)
    return _record(out, op, (x, y), (xb, yb), (x, y), reduction)


@backward_rule("binary_cross_entropy_with_logits")
def _bce_with_logits_backward(node, g):
    xb, yb = node.saved
    return node.backend.bce_with_logits_bwd(g, xb, yb, node.attrs)


# ==============================================================================================
# chunked linear + cross-entropy
# ==============================================================================================

LCE_FRACTION = 8
"""A chunk's working set takes at most 1/8 of the bytes of the full (N, V) logits..."""
LCE_MIN_BUDGET = 4 << 20
"""...but never less than 4 MiB (small problems run in one or two chunks)..."""
LCE_MAX_BUDGET = 1 << 30
"""...and never more than 1 GiB, however large N * V is."""


def lce_budget(n, v, dtype):
    """The bytes a chunk of ``linear_cross_entropy`` may work in, for N rows and V classes.

    ``clamp(N * V * itemsize / 8, 4 MiB, 1 GiB)``. An eighth of the logits keeps the extra
    memory a small part of what the unchunked op holds (the logits and their gradient)
    while chunks keep about N/8 rows (N/16 on numpy, whose working arrays are two float32
    ones), so the GEMMs stay large and dW is read and written about eight times per call,
    not once per small chunk;
    below 4 MiB chunking saves nothing worth its per-chunk overhead; 1 GiB caps the working
    set whatever N * V is. The budget is all the op holds beyond its inputs and the
    gradients it returns: the (N,) loss and lse vectors and, for 16-bit dtypes, float32
    accumulators of dW and db come out of it first (those only when they take at most
    half of it, see ``linear_cross_entropy``; a huge batch over a few classes, whose
    vectors alone pass 3/4 of it, keeps a quarter for its chunks, as chunking cannot
    shrink the vectors), and each backend turns the rest into rows
    from its own working set per row: the Triton kernels hold a chunk's logits in h's
    dtype, V * itemsize bytes a row (dh's rows are written in place), in equal chunks of a
    multiple of 16 rows where that fits; numpy works in float32 (float64) and holds the
    logits, a product block as large, and two (rows, H) arrays, (2V + 2H) * 4 (8) bytes a
    row.
    """
    return min(LCE_MAX_BUDGET, max(LCE_MIN_BUDGET, n * v * dtype.itemsize // LCE_FRACTION))


def linear_cross_entropy(h, weight, target, bias=None, ignore_index=-100, reduction="mean",
                         label_smoothing=0.0):
    """``cross_entropy(h @ weight.T + bias, target)`` with the (N, V) logits never whole.

    h (..., H) (leading dims flattened to N rows), weight (V, H), bias (V,) or None, one
    float dtype; target of h's leading shape or (N,), integer class indices. The loss,
    ``ignore_index``, label smoothing and the reductions are exactly ``cross_entropy``'s.

    Derivation. Row i has logits z_i = W h_i + b and loses
        l_i = lse(z_i) - (1 - eps) z_i[t_i] - eps / V * sum_c z_i[c],
    so, as d lse(z) / dz = softmax(z) = p,
        d l_i / d z_i[c] = p_i[c] - (1 - eps) [c == t_i] - eps / V.
    The loss L = sum_i s_i l_i weighs row i by s_i (1 for "sum", 1 / (rows not ignored,
    over ALL rows) for "mean", the upstream g_i for "none"; 0 on ignored rows), so
    dZ_i = s_i * d l_i / d z_i, and through z = h W^T + b:
        dh_i = dZ_i W,   dW = sum_i dZ_i^T h_i,   db = sum_i dZ_i.
    Row i needs only its own logits (its lse is a row statistic), so any split of the rows
    into chunks is exact: a chunk's logits Z_c = H_c W^T + b give its losses, its lse and
    dZ_c, then dh_c = dZ_c W (written into dh's rows), and dW += dZ_c^T H_c,
    db += colsum(dZ_c) add up over the chunks in order. For 16-bit dtypes Z_c and dZ_c are
    stored in h's dtype, as torch's unfused linear + cross_entropy stores them.

    Where dW and db add up, for float16/bfloat16 (float32 and float64 add up in the
    returned buffers). Float32 accumulators ((V*H + V) * 4 bytes) would be as large as the
    16-bit logits themselves at N = 2H, so they are used only when they take at most half
    of the memory budget (``lce_budget``; small vocabularies and hidden sizes): one
    rounding at the end, as torch's dW. Otherwise dW and db add up in the returned 16-bit
    gradients: each chunk's product is summed in float32 inside the GEMM, added in float32
    to the stored value and rounded to nearest even, once per chunk. With k chunks (as
    few as the budget allows: 9 on the GPU at 8192 rows x 128256 classes in bf16, about 4x
    as many on numpy) the result differs from the exact sum of the float32 chunk products
    by at most k half-ulps of the largest running sum (k * 2**-8 * max |running sum| in
    bf16, 2**-11 in f16), where float32 accumulation gives one half-ulp of the final value;
    independent roundings spread about 0.29 * sqrt(k) ulps.

    Where the gradient is computed. For "sum" and "mean" the upstream gradient g is one
    number and the gradient is linear in it: d(g L) = g dL. So the forward, when a
    gradient will be wanted, computes dL for g = 1 while each chunk's softmax is at hand
    (written over its logits) and keeps dh, dW, db; the backward multiplies them by g
    (exact for g = 1, as ``loss.backward()`` seeds it; another rounding in 16-bit dtypes
    for other g).
    That is three GEMMs in all, as the unchunked forward and backward; recomputing the
    logits in the backward would be a fourth. For "none" g is a vector that weighs each
    row before the sum over rows in dW, so it cannot be factored out: the forward keeps
    the rows' lse (N numbers) and the backward computes each chunk's logits again.
    Under ``tn.no_grad()`` (or with no input requiring grad) the forward computes the loss
    alone. One tape node for the whole op; its rule returns (dh, dW, db).

    Memory: beyond the inputs and the gradients returned (dh, dW, db, in h's dtype), at
    most ``lce_budget`` bytes (while the (N,) vectors take at most 3/4 of it): one chunk's
    working set, the (N,) loss and lse vectors, and the float32 accumulators when used; no
    other temporary of the gradients' size (dh is written chunk by chunk in place, the
    16-bit sums need no final cast; numpy, for 16-bit dtypes, also widens the weight to
    float32 once per call, for BLAS). Between forward and backward the gradients
    (sum/mean: scaled in place by the backward when the graph is not retained) or the lse
    (none). The full logits exist at no point.
    """
    op = "linear_cross_entropy"
    same_device(op, *((h, weight, target) if bias is None else (h, weight, bias, target)))
    check_reduction(op, reduction)
    smoothing = float(label_smoothing)
    if not 0.0 <= smoothing <= 1.0:
        raise TritonnnError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing}")
    floating(op, h)
    low = autocast_regions[0] and low_dtype(h.device)
    if low:         # bf16/f16 matmuls (as linear); the loss comes back float32 (as losses do)
        h, weight, bias = autocast_low(h.device, h, weight, bias)
    for what, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.dtype is not h.dtype:
            raise DTypeError(f"{op}: h is {h.dtype} but {what} is {t.dtype} {t.shape}; convert "
                             f"one with .to(dtype)")
    if not target.dtype.is_integer:
        raise DTypeError(f"{op}: target must hold integer class indices, got {target.dtype} "
                         f"(convert with .to(tn.int64))")
    if h.ndim < 2 or weight.ndim != 2:
        raise ShapeError(f"{op}: h must be (rows, hidden) or (..., hidden) and weight 2-D "
                         f"(classes, hidden), got h {h.shape} and weight {weight.shape}")
    hidden, v = h.shape[-1], weight.shape[0]
    if weight.shape[1] != hidden:
        raise ShapeError(f"{op}: h {h.shape} has {hidden} features but weight {weight.shape} "
                         f"expects {weight.shape[1]}")
    if bias is not None and bias.shape != (v,):
        raise ShapeError(f"{op}: bias {bias.shape} does not match weight {weight.shape} "
                         f"(expected ({v},))")
    lead = h.shape[:-1]
    n = 1
    for s in lead:
        n *= s
    if target.shape != lead and target.shape != (n,):
        raise ShapeError(f"{op}: target {target.shape} does not match h {h.shape} (expected "
                         f"{lead}" + (f" or ({n},))" if len(lead) > 1 else ")"))
    if n == 0:
        raise ShapeError(f"{op}: empty batch (h {h.shape})")
    if v == 0:
        raise ShapeError(f"{op}: weight {weight.shape} has no classes")
    h2 = h if h.ndim == 2 else reshape(h, (n, hidden))
    tgt = cast(target, D.int64)
    tgt = tgt if tgt.ndim == 1 else reshape(tgt, (n,))
    B = h._backend
    hb, wb, tb = h2._data, weight._data, tgt._data
    bb = None if bias is None else bias._data
    budget = lce_budget(n, v, h.dtype)
    needs = tuple(grad_mode.enabled and t is not None and t.requires_grad
                  for t in (h2, weight, bias))
    eager = reduction != "none" and any(needs)
    loss_b, lse, dh, dw, db = B.linear_cross_entropy_fwd(
        hb, wb, bb, tb, ignore_index, smoothing, reduction, budget,
        *(needs if eager else (False, False, False)), _target_check(op, v, ignore_index))
    out = h._new(loss_b, h.dtype)
    if eager:
        # the gradients for an upstream 1 are ready: the rule only scales them, in place when
        # the walk grants it (they are this node's alone unless the graph is retained)
        saved = (dh, dw, db)
        out = _record(out, op, (h2, weight, bias), saved,
                      donate=next(i for i, d in enumerate(saved) if d is not None))
    else:
        out = _record(out, op, (h2, weight, bias), (hb, wb, bb, tb, lse),
                      (h2, weight, bias, tgt), (ignore_index, smoothing, reduction, budget))
    out = out if reduction != "none" or target.ndim == 1 else reshape(out, target.shape)
    # under autocast: the float32 loss of the low-precision pass (its value rounded once to
    # the low dtype on the way; its gradients were computed from float32 softmax values)
    return cast(out, D.float32) if low and out.dtype is not D.float32 else out


@backward_rule("linear_cross_entropy", implicit_ones=True)
def _linear_cross_entropy_backward(node, g):
    B = node.backend
    if node.attrs is None:            # "sum"/"mean": d(g L) = g dL, dL from the forward
        if type(g) is ImplicitOnes:   # ``loss.backward()``: dL itself (copies if it is kept)
            return tuple(d if d is None or node.last_use else B.cast(d, B.dtype_of(d))
                         for d in node.saved)
        if node.last_use:
            return B.linear_cross_entropy_scale_(g, *node.saved)
        return tuple(None if d is None else B.binary(d, g, "mul") for d in node.saved)
    hb, wb, bb, tb, lse = node.saved
    ignore_index, smoothing, reduction, budget = node.attrs
    if type(g) is ImplicitOnes:
        g = g.materialize(B)
    return B.linear_cross_entropy_bwd(g, hb, wb, bb, tb, lse, ignore_index, smoothing,
                                      reduction, budget, node.needs(0), node.needs(1),
                                      node.needs(2))
