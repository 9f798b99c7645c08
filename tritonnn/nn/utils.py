"""``tn.nn.utils``: gradient clipping, ``clip_grad_norm_`` and ``clip_grad_value_``.

Both work on the gradients' device with tensor ops only: no value comes back to the host
(no ``item()``, no Python branch on the norm), so a step that clips stays free of host
syncs on a GPU. ``clip_grad_norm_`` computes the total norm of all gradients together,
``(sum_i sum |g_i|^p)^(1/p)`` (``max |g_i|`` for ``inf``), float16/bfloat16 gradients in
float32, then scales every gradient in place by ``min(1, max_norm / (norm + 1e-6))``, as
``torch.nn.utils.clip_grad_norm_``.

When every gradient is a view of an optimizer's flat gradient buffer (``tritonnn.flat``: the
parameters of an optimizer, after ``backward()``), the norm and the scaling take two launches
per flat buffer (``grad_norm_partials`` into a few partial results, then ``clip_grads_``,
whose every program adds those up in one fixed order, and scales its chunk); otherwise a few
tensor ops per gradient.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

from .. import dtypes as D
from ..checks import number, shown
from ..errors import DeviceError, DTypeError, TritonnnError
from ..flat import home_of
from ..tape import no_grad
from ..tensor import Tensor, stack, zeros


def _params(op, parameters):
    """The tensors of ``parameters`` (one tensor or an iterable of them), as a list."""
    if isinstance(parameters, Tensor):
        return [parameters]
    if isinstance(parameters, (str, bytes)) or not isinstance(parameters, Iterable):
        raise DTypeError(f"{op}: parameters must be a tensor or an iterable of tensors (such as "
                         f"model.parameters()), got {type(parameters).__name__}")
    params = list(parameters)
    for i, p in enumerate(params):
        if not isinstance(p, Tensor):
            raise DTypeError(f"{op}: parameter {i} is {type(p).__name__} {shown(p)}, not a tensor")
    return params


def _one_device(op, params):
    devices = []
    for p in params:
        for d in (p.device,) if p.grad is None else (p.device, p.grad.device):
            if d not in devices:
                devices.append(d)
    if len(devices) > 1:
        raise DeviceError(f"{op}: parameters and gradients are on {len(devices)} devices "
                          f"({', '.join(map(str, devices))}); clip each device's parameters "
                          f"separately")
    return devices[0] if devices else None


def _promoted(dtypes):
    """The dtype PyTorch gives a norm of gradients of these dtypes (one dtype: itself)."""
    kinds = set(dtypes)
    if len(kinds) == 1:
        return kinds.pop()
    if D.float64 in kinds:
        return D.float64
    return D.float32


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False,
                    foreach=None):
    """Scale the gradients of ``parameters`` in place so that their total ``norm_type``-norm
    is at most ``max_norm``; returns the total norm (before clipping) as a 0-d tensor on the
    parameters' device.

    ``norm_type`` is a number > 0 or ``math.inf``. Parameters without a gradient are left
    out; with none at all the norm is 0. ``error_if_nonfinite=True`` raises a TritonnnError
    for a NaN or infinite norm, which needs the norm on the host (one sync, only then).
    ``foreach`` is accepted for PyTorch's signature and changes nothing.
    """
    op = "clip_grad_norm_"
    params = _params(op, parameters)
    max_norm = number(op, max_norm, "max_norm")
    if not max_norm >= 0:
        raise TritonnnError(f"{op}: max_norm must be >= 0, got {max_norm}")
    norm_type = number(op, norm_type, "norm_type")
    if not norm_type > 0:
        raise TritonnnError(f"{op}: norm_type must be > 0 or math.inf, got {norm_type}")
    device = _one_device(op, params)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return zeros((), device=device or "cpu")
    out_dtype = _promoted(g.dtype for g in grads)
    acc = D.float64 if out_dtype is D.float64 else D.float32
    flats = _flat_grads(params)
    if flats is not None:
        total = _clip_flat(flats, max_norm, norm_type, out_dtype, acc)
        if error_if_nonfinite and not math.isfinite(total.item()):
            raise _nonfinite(op, norm_type, total)
        return total
    with no_grad():
        parts = []
        for g in grads:
            if g.numel() == 0:
                continue
            x = (g if g.dtype is acc else g.to(acc)).abs()
            if norm_type == math.inf:
                parts.append(x.amax())
            elif norm_type == 1.0:
                parts.append(x.sum())
            elif norm_type == 2.0:
                parts.append((x * x).sum())
            else:
                parts.append((x ** norm_type).sum())
        if not parts:
            total = zeros((), dtype=acc, device=device)
        elif norm_type == math.inf:
            total = stack(parts).amax()
        else:
            total = stack(parts).sum()
            if norm_type == 2.0:
                total = total.sqrt()
            elif norm_type != 1.0:
                total = total ** (1.0 / norm_type)
        if total.dtype is not out_dtype:
            total = total.to(out_dtype)
        if error_if_nonfinite and not math.isfinite(total.item()):
            raise _nonfinite(op, norm_type, total)
        coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
        by_dtype = {coef.dtype: coef}
        for g in grads:
            c = by_dtype.get(g.dtype)
            if c is None:
                c = by_dtype[g.dtype] = coef.to(g.dtype)
            g.mul_(c)
    return total


def _nonfinite(op, norm_type, total):
    return TritonnnError(f"{op}: the total norm of order {norm_type} of the gradients is "
                         f"{total.item()}, so they cannot be clipped (error_if_nonfinite=True; "
                         f"pass False to scale them anyway)")


_PARTS = 1024
"""The most partial results one flat buffer's norm is split into (one per program)."""


def _flat_grads(params):
    """``{flat: indices}`` when every gradient of ``params`` is its flat gradient home's view
    (and at least one exists), else None."""
    flats = {}
    for p in params:
        g = p.grad
        if g is None:
            continue
        home = home_of(p)
        if home is None or g._data is not home.grad:
            return None
        flats.setdefault(home.flat, []).append(home.index)
    return flats or None


def _clip_flat(flats, max_norm, norm_type, out_dtype, acc):
    """``clip_grad_norm_`` over flat gradient buffers: per buffer one launch of partial
    results, then one that sums them all (every program in the same order) and scales."""
    first = next(iter(flats))
    B, device = first.backend, first.device
    plan = []
    for flat, indices in flats.items():
        n = min(flat.n_chunks, _PARTS) or 1
        plan.append((flat, flat.select(tuple(sorted(indices))), n))
    size = sum(n for _, _, n in plan)
    key = ("clip partials", acc, size, tuple(id(flat) for flat in flats))
    partials = first.cached(key, lambda: B.empty((size,), acc))
    total = B.empty((), out_dtype)
    at = 0
    for flat, select, n in plan:
        B.grad_norm_partials(flat.grad, flat.chunks, select, norm_type,
                             B.getitem(partials, slice(at, at + n)))
        at += n
    scaled = [(flat, select) for flat, select, _ in plan if flat.n_chunks]
    if not scaled:                          # only empty gradients: the norm is 0
        total = B.full((), 0, out_dtype)
    for flat, select in scaled:
        B.clip_grads_(flat.grad, flat.chunks, select, partials, norm_type, max_norm, total)
    return Tensor._make(total, out_dtype, device, B)


def clip_grad_value_(parameters, clip_value, foreach=None):
    """Clamp every gradient of ``parameters`` in place into ``[-clip_value, clip_value]``."""
    op = "clip_grad_value_"
    params = _params(op, parameters)
    clip_value = number(op, clip_value, "clip_value")
    if not clip_value >= 0:
        raise TritonnnError(f"{op}: clip_value must be >= 0, got {clip_value}")
    _one_device(op, params)
    with no_grad():
        for p in params:
            if p.grad is not None:
                p.grad.clamp_(-clip_value, clip_value)


__all__ = ["clip_grad_norm_", "clip_grad_value_"]
