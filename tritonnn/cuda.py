"""``tn.cuda``: whether a real GPU is there (never true under the interpreter alone).

``tritonnn.kernels`` (and with it torch) is imported by these functions, not by
``import tritonnn``, so the cpu path never loads torch.
"""
import importlib.util
import sys

from .errors import DeviceError


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
    interpreted kernels loaded)."""
    buffers = _loaded_buffers()
    if buffers is not None:
        buffers.synchronize()


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
