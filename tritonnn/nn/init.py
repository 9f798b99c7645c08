"""``tn.nn.init``: fill a tensor in place, under no_grad, as ``torch.nn.init`` does.

The random fills draw from the global Philox stream (``tn.manual_seed``), so a seeded run
initializes the same on every device: ``uniform_`` is ``a + (b - a) * u`` with ``u`` from
``tn.rand``, ``normal_`` is ``mean + std * z`` with ``z`` from ``tn.randn``; float16 and
bfloat16 tensors draw in float32 and round once. The Kaiming (He) and Xavier (Glorot) fills
pick their bound or standard deviation from the tensor's fans, computed as PyTorch's
``_calculate_fan_in_and_fan_out``: ``(size(1) * r, size(0) * r)`` with ``r`` the product of
the sizes past the second (a convolution's receptive field).
"""
from __future__ import annotations

import math

from .. import dtypes as D
from ..checks import number, shown
from ..errors import DTypeError, ShapeError, TritonnnError
from ..tape import no_grad
from ..tensor import Tensor, rand, randn

_LINEAR_GAIN = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                "conv_transpose3d", "sigmoid")


def _target(op, t, random=True):
    if not isinstance(t, Tensor):
        raise DTypeError(f"{op}: expected a tensor to fill, got {type(t).__name__} {shown(t)}")
    if random and not t.dtype.is_floating:
        raise DTypeError(f"{op}: a random fill needs a floating-point tensor, got {t.dtype}")
    return t


def _draw_dtype(dtype):
    return D.float32 if dtype in (D.float16, D.bfloat16) else dtype


def calculate_gain(nonlinearity, param=None):
    """The gain PyTorch recommends for ``nonlinearity``: 1 for linear, convolutions and
    sigmoid, 5/3 for tanh, sqrt(2) for relu, sqrt(2 / (1 + slope^2)) for leaky_relu (slope
    ``param``, 0.01 by default), 3/4 for selu."""
    if not isinstance(nonlinearity, str):
        raise DTypeError(f"calculate_gain: nonlinearity must be a str, got {shown(nonlinearity)}")
    if nonlinearity in _LINEAR_GAIN:
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else number("calculate_gain", param, "negative_slope")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise TritonnnError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r} (one of "
                        f"{', '.join(_LINEAR_GAIN)}, tanh, relu, leaky_relu, selu)")


def _calculate_fan_in_and_fan_out(tensor):
    """``(fan_in, fan_out)`` of a weight of 2 or more dims, as PyTorch's function of that name."""
    t = _target("fan", tensor, random=False)
    if t.ndim < 2:
        raise ShapeError(f"fan_in and fan_out need a tensor of 2 or more dims, got shape "
                         f"{t.shape}")
    receptive = 1
    for s in t.shape[2:]:
        receptive *= s
    return t.shape[1] * receptive, t.shape[0] * receptive


def _fan(op, t, mode):
    if not isinstance(mode, str) or mode.lower() not in ("fan_in", "fan_out"):
        raise TritonnnError(f"{op}: mode must be 'fan_in' or 'fan_out', got {shown(mode)}")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(t)
    return fan_in if mode.lower() == "fan_in" else fan_out


# ==============================================================================================
# the fills
# ==============================================================================================


def uniform_(tensor, a=0.0, b=1.0):
    """Fill with numbers drawn uniformly from [a, b)."""
    t = _target("uniform_", tensor)
    a, b = number("uniform_", a, "a"), number("uniform_", b, "b")
    if not a <= b:
        raise TritonnnError(f"uniform_: expects a <= b, got a={a}, b={b}")
    if t.numel() == 0:
        return t
    with no_grad():
        u = rand(*t.shape, dtype=_draw_dtype(t.dtype), device=t.device)
        t.copy_(u * (b - a) + a)
    return t


def normal_(tensor, mean=0.0, std=1.0):
    """Fill with numbers drawn from the normal distribution N(mean, std^2)."""
    t = _target("normal_", tensor)
    mean, std = number("normal_", mean, "mean"), number("normal_", std, "std")
    if not std >= 0:
        raise TritonnnError(f"normal_: expects std >= 0, got {std}")
    if t.numel() == 0:
        return t
    with no_grad():
        z = randn(*t.shape, dtype=_draw_dtype(t.dtype), device=t.device)
        t.copy_(z * std + mean)
    return t


def constant_(tensor, val):
    """Fill with ``val``."""
    t = _target("constant_", tensor, random=False)
    with no_grad():
        t.fill_(val)
    return t


def zeros_(tensor):
    """Fill with 0."""
    _target("zeros_", tensor, random=False)
    return constant_(tensor, 0)


def ones_(tensor):
    """Fill with 1."""
    _target("ones_", tensor, random=False)
    return constant_(tensor, 1)


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """He initialization: uniform in +-gain * sqrt(3 / fan), the gain of ``nonlinearity`` with
    slope ``a``. ``nn.Linear`` is ``kaiming_uniform_(w, a=math.sqrt(5))``: +-1/sqrt(fan_in)."""
    t = _target("kaiming_uniform_", tensor)
    if t.numel() == 0:                      # as PyTorch: nothing to fill, no fan needed
        return t
    fan = _fan("kaiming_uniform_", t, mode)
    bound = math.sqrt(3.0) * calculate_gain(nonlinearity, a) / math.sqrt(fan)
    return uniform_(t, -bound, bound)


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """He initialization: normal with std gain / sqrt(fan)."""
    t = _target("kaiming_normal_", tensor)
    if t.numel() == 0:                      # as PyTorch: nothing to fill, no fan needed
        return t
    fan = _fan("kaiming_normal_", t, mode)
    return normal_(t, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(fan))


def xavier_uniform_(tensor, gain=1.0):
    """Glorot initialization: uniform in +-gain * sqrt(6 / (fan_in + fan_out))."""
    t = _target("xavier_uniform_", tensor)
    fan_in, fan_out = _calculate_fan_in_and_fan_out(t)
    if t.numel() == 0:
        return t
    std = number("xavier_uniform_", gain, "gain") * math.sqrt(2.0 / float(fan_in + fan_out))
    bound = math.sqrt(3.0) * std
    return uniform_(t, -bound, bound)


def xavier_normal_(tensor, gain=1.0):
    """Glorot initialization: normal with std gain * sqrt(2 / (fan_in + fan_out))."""
    t = _target("xavier_normal_", tensor)
    fan_in, fan_out = _calculate_fan_in_and_fan_out(t)
    if t.numel() == 0:
        return t
    std = number("xavier_normal_", gain, "gain") * math.sqrt(2.0 / float(fan_in + fan_out))
    return normal_(t, 0.0, std)


__all__ = ["calculate_gain", "uniform_", "normal_", "constant_", "zeros_", "ones_",
           "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_", "xavier_normal_"]
