"""The exceptions tritonnn raises.

Every error names the operation and the offending operands, so that a user
reading the message knows which call failed and why.
"""


class TritonnnError(Exception):
    """Base class of every error tritonnn raises on purpose."""


class ShapeError(TritonnnError, ValueError):
    """Operands whose shapes do not fit the operation."""


class DTypeError(TritonnnError, TypeError):
    """Operands whose dtypes the operation does not accept."""


class DeviceError(TritonnnError, RuntimeError):
    """A device that is unknown, unavailable, or mixed within one operation."""


class IndexOutOfRange(ShapeError, IndexError):
    """An index or dimension outside a tensor's bounds (also an IndexError, as in PyTorch)."""


class DistributedError(TritonnnError, RuntimeError):
    """A collective that cannot complete: no process group, another rank failed or went
    silent, or ranks that disagree (``tn.distributed``, ``DistributedDataParallel``)."""
