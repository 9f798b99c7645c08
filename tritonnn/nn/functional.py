"""Stateless layer functions (``tn.nn.functional``, imported as ``F``) over the op table."""
from __future__ import annotations

from .. import ops
from ..tensor import expect_tensor


def linear(x, weight, bias=None, activation=None):
    """``x @ weight.T + bias``, with ``activation="relu"`` fused into the same kernel."""
    expect_tensor("linear", x, "input")
    expect_tensor("linear", weight, "weight")
    if bias is not None:
        expect_tensor("linear", bias, "bias")
    return ops.linear(x, weight, bias, activation)


def relu(x):
    return ops.relu(expect_tensor("relu", x))


def sigmoid(x):
    return ops.unary(expect_tensor("sigmoid", x), "sigmoid")


def tanh(x):
    return ops.unary(expect_tensor("tanh", x), "tanh")


def softmax(x, dim=-1):
    return ops.softmax(expect_tensor("softmax", x), dim)


def log_softmax(x, dim=-1):
    return ops.softmax(expect_tensor("log_softmax", x), dim, log=True)


def cross_entropy(logits, target, reduction="mean", ignore_index=-100, label_smoothing=0.0):
    """Softmax cross-entropy of (N, C) logits and (N,) integer targets, in one fused op."""
    expect_tensor("cross_entropy", logits, "for the logits")
    expect_tensor("cross_entropy", target, "for the target")
    return ops.cross_entropy(logits, target, ignore_index=ignore_index, reduction=reduction,
                             label_smoothing=label_smoothing)


def binary_cross_entropy_with_logits(input, target, reduction="mean"):  # noqa: A002
    """Sigmoid + binary cross-entropy, stable for any logit."""
    op = "binary_cross_entropy_with_logits"
    expect_tensor(op, input, "for the input")
    expect_tensor(op, target, "for the target")
    return ops.binary_cross_entropy_with_logits(input, target, reduction)


def mse_loss(input, target, reduction="mean"):  # noqa: A002
    d = input - target
    sq = d * d
    if reduction == "none":
        return sq
    return sq.mean() if reduction == "mean" else sq.sum()
