"""``tn.cuda``: whether a real GPU is there (never true under the interpreter alone).

``tritonnn.kernels`` (and with it torch) is imported by these functions, not by
``import tritonnn``, so the cpu path never loads torch.
"""
import importlib.util
import sys

from .errors import DeviceError, DTypeError


def is_available() -> bool:
    """True when torch sees a CUDA GPU. Imports torch only if it is installed."""
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("triton") is None:
        return False
    from .kernels import buffers
    return buffers.gpu_available()


def device_count() -> int:
    if not is_available():
        return 0
    from .kernels import buffers
    return buffers.device_count()


def get_device_name() -> str:
    """The GPU's name, as torch.cuda.get_device_name (a DeviceError without one)."""
    if not is_available():
        raise DeviceError("cuda.get_device_name: no GPU is available")
    from .kernels import buffers
    return buffers.device_name()


def synchronize() -> None:
    """Wait for the device's queued work (counted as a host sync; nothing without a GPU or
    interpreted kernels loaded), then raise any error the kernels recorded meanwhile: a class
    target or an index out of range (``tn.IndexOutOfRange``, as the op would have raised it),
    which "cuda" reports at the next synchronization instead of syncing inside the op."""
    buffers = _loaded_buffers()
    if buffers is not None:
        buffers.synchronize()


def set_sync_checks(enabled: bool) -> None:
    """With ``True``, an op on "cuda" that meets a bad class target or index raises itself, as
    on "cpu" (a host sync after each such kernel: for debugging); with ``False`` (the default,
    unless ``TRITONNN_SYNC_CHECKS=1``) the error is raised at the next synchronization
    (``item()``, ``numpy()``, ``tolist()``, printing, ``tn.cuda.synchronize()``, any copy to
    the host), so a training step never waits for the device."""
    if not isinstance(enabled, bool):
        raise DTypeError(f"cuda.set_sync_checks: expected True or False, got {enabled!r}")
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("triton") is None:
        return                              # no "cuda" device can run here: nothing to check
    from .kernels import buffers
    buffers.set_sync_checks(enabled)


def sync_checks() -> bool:
    """Whether ops on "cuda" raise bad targets and indices themselves (``set_sync_checks``)."""
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("triton") is None:
        return False
    from .kernels import buffers
    return buffers.sync_checks()


_ZERO_STATS = {"launches": 0, "host_syncs": 0, "allocations": 0, "uploads": 0,
               "allocated_bytes": 0, "peak_allocated_bytes": 0}


def _loaded_buffers():
    """The buffers module when device "cuda" has been used (GPU or interpreter), else None:
    asking for counters never loads torch."""
    if "tritonnn.kernels.buffers" not in sys.modules:
        return None
    from .kernels import buffers
    return buffers


def stats() -> dict:
    """What the host asked of device "cuda" since the last ``reset_stats``: ``launches``
    (kernel launches), ``host_syncs`` (waits for the device: copies to the host, ``item()``,
    ``synchronize()``), ``allocations`` and ``uploads`` (host-to-device copies) counted;
    ``allocated_bytes`` and ``peak_allocated_bytes`` of device buffers (torch's caching
    allocator on a GPU; the interpreter's host buffers counted alike)."""
    buffers = _loaded_buffers()
    return dict(_ZERO_STATS) if buffers is None else buffers.stats()


def reset_stats() -> None:
    """Zero the counters of ``stats()`` and restart the peak from the bytes allocated now."""
    buffers = _loaded_buffers()
    if buffers is not None:
        buffers.reset_stats()
