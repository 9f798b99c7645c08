"""``tn.nn.utils``: gradient clipping, ``clip_grad_norm_`` and ``clip_grad_value_``.

Both work on the gradients' device with tensor ops only: no value comes back to the host
(no ``item()``, no Python branch on the norm), so a step that clips stays free of host
syncs on a GPU. ``clip_grad_norm_`` computes the total norm of all gradients together,
``(sum_i sum |g_i|^p)^(1/p)`` (``max |g_i|`` for ``inf``), float16/bfloat16 gradients in
float32, then scales every gradient in place by ``min(1, max_norm / (norm + 1e-6))``, as
``torch.nn.utils.clip_grad_norm_``.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

from .. import dtypes as D
from ..checks import number, shown
from ..errors import DeviceError, DTypeError, TritonnnError
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
            raise TritonnnError(f"{op}: the total norm of order {norm_type} of the gradients is "
                                f"{total.item()}, so they cannot be clipped (error_if_nonfinite"
                                f"=True; pass False to scale them anyway)")
        coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
        by_dtype = {coef.dtype: coef}
        for g in grads:
            c = by_dtype.get(g.dtype)
            if c is None:
                c = by_dtype[g.dtype] = coef.to(g.dtype)
            g.mul_(c)
    return total


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
