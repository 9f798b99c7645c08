"""``tn.cuda``: whether a real GPU is there (never true under the interpreter alone)."""
import importlib.util


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


def synchronize() -> None:
    if is_available():
        from .kernels import buffers
        buffers.synchronize()
