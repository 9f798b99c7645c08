"""Stateless layer functions (``tn.nn.functional``, imported as ``F``) over the op table."""
from __future__ import annotations

import warnings

from .. import ops
from ..checks import (broadcast_shapes, flag, integer, number, reduction as check_reduction,
                      same_device)
from ..errors import DTypeError, TritonnnError
from ..tensor import expect_tensor


def linear(x, weight, bias=None, activation=None):
    """``x @ weight.T + bias``, with ``activation="relu"`` fused into the same kernel."""
    expect_tensor("linear", x, "input")
    expect_tensor("linear", weight, "weight")
    if bias is not None:
        expect_tensor("linear", bias, "bias")
    return ops.linear(x, weight, bias, activation)


# ----------------------------------------------------------------------------------------------
# embedding, dropout, one-hot (issue 11)
# ----------------------------------------------------------------------------------------------


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0,  # noqa: A002
              scale_grad_by_freq=False, sparse=False):
    """Rows of ``weight`` (num_embeddings, embedding_dim) at the int64/int32 indices ``input``:
    ``input.shape + (embedding_dim,)``; row ``padding_idx`` takes no gradient.

    PyTorch's other options are refused unless left at their defaults (``max_norm``
    renormalises the table in place, ``scale_grad_by_freq`` and ``sparse`` change the
    gradient): tritonnn has none of them yet.
    """
    op = "embedding"
    expect_tensor(op, input, "for the indices")
    expect_tensor(op, weight, "for the weight")
    if padding_idx is not None:
        padding_idx = integer(op, padding_idx, "padding_idx")
    for name, value, default in (("max_norm", max_norm, None),
                                 ("scale_grad_by_freq", scale_grad_by_freq, False),
                                 ("sparse", sparse, False)):
        if value is not default and value != default:
            raise TritonnnError(f"{op}: {name}={value!r} is not supported (only the default "
                                f"{default!r})")
    return ops.embedding(input, weight, padding_idx)


def dropout(input, p=0.5, training=True, inplace=False):  # noqa: A002
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)`` when
    ``training``; otherwise (and for ``p == 0``) return ``input`` itself. The mask comes from
    ``tn.manual_seed``'s stream, the same on "cpu" and "cuda"; the backward regenerates it."""
    op = "dropout"
    expect_tensor(op, input, "for the input")
    p = number(op, p, "p")
    training = flag(op, "training", training)
    inplace = flag(op, "inplace", inplace)
    return (ops.dropout_ if inplace else ops.dropout)(input, p, training)


def one_hot(tensor, num_classes=-1):
    """int64 one-hot codes of integer class indices: ``tensor.shape + (num_classes,)``;
    ``num_classes=-1`` counts them as the largest value + 1 (a read back to the host)."""
    op = "one_hot"
    expect_tensor(op, tensor, "of class indices")
    return ops.one_hot(tensor, integer(op, num_classes, "num_classes"))


def relu(x):
    return ops.relu(expect_tensor("relu", x))


def sigmoid(x):
    return ops.unary(expect_tensor("sigmoid", x), "sigmoid")


def tanh(x):
    return ops.unary(expect_tensor("tanh", x), "tanh")


def gelu(x, approximate="none"):
    """``x * Phi(x)`` (erf form), or PyTorch's tanh form with ``approximate="tanh"``."""
    return ops.gelu(expect_tensor("gelu", x), approximate)


def silu(x):
    """``x * sigmoid(x)`` (Swish)."""
    return ops.silu(expect_tensor("silu", x))


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """LayerNorm over the trailing dims ``normalized_shape`` (an int or a tuple of ints), then
    ``* weight + bias`` when given; statistics in float32 (float64 for float64)."""
    op = "layer_norm"
    expect_tensor(op, x, "input")
    for what, t in (("weight", weight), ("bias", bias)):
        if t is not None:
            expect_tensor(op, t, what)
    return ops.layer_norm(x, normalized_shape, weight, bias, number(op, eps, "eps"))


def softmax(x, dim=-1):
    return ops.softmax(expect_tensor("softmax", x), dim)


def log_softmax(x, dim=-1):
    return ops.softmax(expect_tensor("log_softmax", x), dim, log=True)


def cross_entropy(logits, target, reduction="mean", ignore_index=-100, label_smoothing=0.0):
    """Softmax cross-entropy of (N, C) logits and (N,) integer targets, in one fused op."""
    op = "cross_entropy"
    expect_tensor(op, logits, "for the logits")
    expect_tensor(op, target, "for the target")
    ignore_index = integer(op, ignore_index, "ignore_index")
    label_smoothing = number(op, label_smoothing, "label_smoothing")
    return ops.cross_entropy(logits, target, ignore_index=ignore_index, reduction=reduction,
                             label_smoothing=label_smoothing)


# -- chunked linear + cross-entropy -----------------------------------------------------------


def linear_cross_entropy(h, weight, target, bias=None, ignore_index=-100, reduction="mean",
                         label_smoothing=0.0):
    """``cross_entropy(h @ weight.T + bias, target)`` computed in chunks of rows.

    The language-model head and its loss: h (N, H) or (..., H), weight (V, H), bias (V,),
    target (N,) or h's leading shape; gradients for h, weight and bias; ``ignore_index``,
    ``label_smoothing`` and the reductions as ``cross_entropy``. The full (N, V) logits are
    never in memory, forward or backward (``tritonnn.ops.linear_cross_entropy`` has the
    algorithm and the chunk size rule).
    """
    op = "linear_cross_entropy"
    expect_tensor(op, h, "for h")
    expect_tensor(op, weight, "for the weight")
    expect_tensor(op, target, "for the target")
    if bias is not None:
        expect_tensor(op, bias, "for the bias")
    ignore_index = integer(op, ignore_index, "ignore_index")
    label_smoothing = number(op, label_smoothing, "label_smoothing")
    return ops.linear_cross_entropy(h, weight, target, bias, ignore_index=ignore_index,
                                    reduction=reduction, label_smoothing=label_smoothing)


def binary_cross_entropy_with_logits(input, target, reduction="mean"):  # noqa: A002
    """Sigmoid + binary cross-entropy, stable for any logit."""
    op = "binary_cross_entropy_with_logits"
    expect_tensor(op, input, "for the input")
    expect_tensor(op, target, "for the target")
    return ops.binary_cross_entropy_with_logits(input, target, reduction)


def mse_loss(input, target, reduction="mean"):  # noqa: A002
    """Mean (or summed, or per-element) squared error of floating-point tensors.

    Shapes broadcast as PyTorch's: a target whose shape differs from the input's is
    broadcast against it, with a warning (an (N, 1) prediction against an (N,) target
    makes an (N, N) loss, rarely what was meant); shapes that cannot broadcast are a
    ShapeError. An integer or bool operand mixes in when the other is floating (PyTorch
    promotes it); two integer operands, or two different float dtypes (tritonnn mixes no
    float dtypes), are a DTypeError.
    """
    op = "mse_loss"
    expect_tensor(op, input, "for the input")
    expect_tensor(op, target, "for the target")
    check_reduction(op, reduction)
    same_device(op, input, target)
    input, target = ops.autocast_fp32(input.device, input, target)     # autocast: in float32
    if not (input.dtype.is_floating or target.dtype.is_floating):
        raise DTypeError(f"{op}: expected floating-point tensors, got input {input.dtype} and "
                         f"target {target.dtype} (convert with .to(tn.float32))")
    if input.dtype.is_floating and target.dtype.is_floating and input.dtype is not target.dtype:
        raise DTypeError(f"{op}: input is {input.dtype} but target is {target.dtype}; convert one "
                         f"with .to(dtype)")
    if input.shape != target.shape:
        shape = broadcast_shapes(op, input.shape, target.shape)
        warnings.warn(f"{op}: the target's shape {target.shape} differs from the input's "
                      f"{input.shape}; both are broadcast to {shape}. Reshape one of them if "
                      f"that is not intended.", UserWarning, stacklevel=2)
    return ops.mse_loss(input, target, reduction)
