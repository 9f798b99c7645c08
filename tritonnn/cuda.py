"""``tn.cuda``: whether a real GPU is there (never true under the interpreter alone).

``tritonnn.kernels`` (and with it torch) is imported by these functions, not by
``import tritonnn``, so the cpu path never loads torch.
"""
import importlib.util

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
    if is_available():
        from .kernels import buffers
        buffers.synchronize()
