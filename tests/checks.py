"""Assertions shared by the test files (imported as ``from checks import assert_close``)."""
import numpy as np


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
