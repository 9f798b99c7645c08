"""Helpers shared by the test files (``from checks import assert_close``, ...)."""
import numpy as np
import torch

import tritonnn as tn


def assert_close(actual, expected, atol=1e-6, rtol=1e-5, what=""):
    """Elementwise closeness in float64; on failure, how many elements differ and the first five.

    NaN matches NaN (a NaN where the reference has one is the right answer).
    """
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != expected {e.shape}"
    bad = ~np.isclose(a, e, atol=atol, rtol=rtol, equal_nan=True)
    if bad.any():
        where = [tuple(int(i) for i in ix) for ix in np.argwhere(bad)[:5]]
        first = ", ".join(f"{ix}: {a[ix]!r} vs {e[ix]!r}" for ix in where)
        raise AssertionError(f"{what}: {int(bad.sum())} of {bad.size} elements differ; first: {first}")


class NeuralNetwork(tn.nn.Module):
    """The seed guide's MLP: two hidden layers (30, 20) with ReLU, 2,213 parameters at 50 -> 3."""

    def __init__(self, num_inputs, num_outputs):
        super().__init__()
        self.layers = tn.nn.Sequential(
            tn.nn.Linear(num_inputs, 30), tn.nn.ReLU(),
            tn.nn.Linear(30, 20), tn.nn.ReLU(),
            tn.nn.Linear(20, num_outputs),
        )

    def forward(self, x):
        return self.layers(x)


class TorchNeuralNetwork(torch.nn.Module):
    """The same architecture in torch, with the same parameter names."""

    def __init__(self, num_inputs, num_outputs):
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(num_inputs, 30), torch.nn.ReLU(),
            torch.nn.Linear(30, 20), torch.nn.ReLU(),
            torch.nn.Linear(20, num_outputs),
        )

    def forward(self, x):
        return self.layers(x)
