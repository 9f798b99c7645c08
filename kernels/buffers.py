"""Every torch call tritonnn makes, in one place: torch is only the device-buffer allocator.

Allocation, host <-> device copies, views (reshape/permute/expand/slicing),
strides and data pointers, synchronisation and memory statistics. No math:
every computation on a "cuda" buffer is a Triton kernel. Under
``TRITONNN_INTERPRET=1`` buffers are torch CPU tensors and the Triton
interpreter runs the kernels on them.
"""
from __future__ import annotations

import sys
import weakref

import ml_dtypes
import numpy as np
import torch

from .. import dtypes as D
from ._interpret import INTERPRET

DEVICE = torch.device("cpu") if INTERPRET else torch.device("cuda")

TORCH_DTYPE = {
    D.float32: torch.float32, D.float64: torch.float64, D.float16: torch.float16,
    D.bfloat16: torch.bfloat16, D.int64: torch.int64, D.int32: torch.int32,
    D.uint32: torch.uint32, D.uint8: torch.uint8, D.bool_: torch.bool,
}
_FROM_TORCH = {v: k for k, v in TORCH_DTYPE.items()}


def gpu_available() -> bool:
    return torch.cuda.is_available()


def device_count() -> int:
    return torch.cuda.device_count()


def device_name() -> str:
    return torch.cuda.get_device_name() if gpu_available() and not INTERPRET else "interpreter"


def synchronize() -> None:
    COUNTS["host_syncs"] += 1
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


# -- counters: what the host asked of the device (tn.cuda.stats) --------------------------------
# Kernel launches (counted by kernels._launch.launch), host waits for the device (downloads and
# synchronize), buffer allocations and uploads. On a GPU the bytes come from torch's caching
# allocator; under the interpreter buffers are host tensors, so their bytes are counted here
# (a finalizer per allocation subtracts them again), and the counts are the same as a GPU's.

COUNTS = {"launches": 0, "host_syncs": 0, "allocations": 0, "uploads": 0}
_HOST_BYTES = [0, 0]                            # interpreter: bytes live now, and the peak


def _freed(nbytes):
    _HOST_BYTES[0] -= nbytes


def _track(t):
    """Count the new buffer ``t`` (under the interpreter, also its bytes until it dies)."""
    COUNTS["allocations"] += 1
    if DEVICE.type == "cpu":
        nbytes = t.untyped_storage().nbytes()
        live = _HOST_BYTES[0] = _HOST_BYTES[0] + nbytes
        if live > _HOST_BYTES[1]:
            _HOST_BYTES[1] = live
        weakref.finalize(t, _freed, nbytes)
    return t


def memory_allocated() -> int:
    return torch.cuda.memory_allocated() if DEVICE.type == "cuda" else _HOST_BYTES[0]


def max_memory_allocated() -> int:
    return torch.cuda.max_memory_allocated() if DEVICE.type == "cuda" else _HOST_BYTES[1]


def reset_peak_memory_stats() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    _HOST_BYTES[1] = _HOST_BYTES[0]


def stats() -> dict:
    return {**COUNTS, "allocated_bytes": memory_allocated(),
            "peak_allocated_bytes": max_memory_allocated()}


def reset_stats() -> None:
    for k in COUNTS:
        COUNTS[k] = 0
    reset_peak_memory_stats()


def dtype_of(buf):
    return _FROM_TORCH[buf.dtype]


# -- allocation and copies ---------------------------------------------------------------------

def empty(shape, dtype):
    try:
        return _track(torch.empty(tuple(shape), dtype=TORCH_DTYPE[dtype], device=DEVICE))
    except RuntimeError as e:           # torch's out-of-memory errors, as Python's own
        raise MemoryError(str(e).splitlines()[0]) from None


def upload(a: np.ndarray, dtype):
    """A device buffer with a copy of host array ``a`` (already of ``dtype``)."""
    a = np.ascontiguousarray(a).reshape(a.shape)     # (ascontiguousarray makes 0-d 1-d)
    if dtype is D.bfloat16:
        host = torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    elif dtype is D.uint32:
        host = torch.from_numpy(a.view(np.int32)).view(torch.uint32)
    else:
        host = torch.from_numpy(a)
    COUNTS["uploads"] += 1
    if DEVICE.type == "cpu":
        return _track(host.clone())
    return _track(host.to(DEVICE, non_blocking=False))


def download(buf) -> np.ndarray:
    """A host numpy copy of a device buffer (bfloat16 as ml_dtypes.bfloat16)."""
    COUNTS["host_syncs"] += 1
    t = buf.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    if t.dtype == torch.bfloat16:
        return t.contiguous().view(torch.int16).numpy().copy().view(ml_dtypes.bfloat16)
    if t.dtype == torch.uint32:
        return t.contiguous().view(torch.int32).numpy().copy().view(np.uint32)
    return t.contiguous().numpy().copy() if t.device.type == DEVICE.type else t.numpy()


# -- views and metadata ------------------------------------------------------------------------

def reshape(buf, shape):
    return buf.reshape(tuple(shape))


def permute(buf, dims):
    return buf.permute(tuple(dims))


def expand(buf, shape):
    return buf.expand(tuple(shape))


def view_shape(buf, shape):
    """``buf`` seen with ``shape`` without a copy, or None when its strides don't allow it."""
    try:
        return buf.view(tuple(shape))
    except RuntimeError:
        return None


def view_index(buf, index):
    """Basic indexing (ints, slices, None, Ellipsis): a strided view."""
    return buf[index]


def is_contiguous(buf) -> bool:
    return buf.is_contiguous()


def strides(buf):
    return buf.stride()


def shape(buf):
    return tuple(buf.shape)


def shares_memory(a, b) -> bool:
    """True when two buffers live in the same allocation (a conservative overlap test)."""
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def overlapping(x) -> bool:
    """True when a dim longer than 1 has stride 0 (a broadcast view)."""
    return any(st == 0 and n > 1 for st, n in zip(x.stride(), x.shape))


def exclusively_owned(buf, extra_refs) -> bool:
    """No view and no other Python reference holds ``buf``'s memory besides ``extra_refs``.

    A torch view keeps a Python reference to its base, so the reference count
    also counts views (as numpy's ``.base`` does on the cpu path).
    """
    # this function's parameter and getrefcount's own argument add two references
    return buf._base is None and sys.getrefcount(buf) <= extra_refs + 2


# ----------------------------------------------------------------------------------------------
# DLPack: zero-copy exchange (tn.from_dlpack, Tensor.__dlpack__); numpy reads and writes
# DLPack itself, torch is needed for device memory and for bfloat16, which numpy lacks
# ----------------------------------------------------------------------------------------------

def from_dlpack(x):
    """A torch tensor viewing the memory of DLPack producer ``x`` (no copy)."""
    return torch.from_dlpack(x)


def host_array(t):
    """A numpy array viewing the memory of host torch tensor ``t`` (no copy; bfloat16 as
    ml_dtypes.bfloat16, uint32 through int32), or None when tritonnn has no dtype for it."""
    if t.dtype not in _FROM_TORCH or t.device.type != "cpu":
        return None
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    if t.dtype == torch.uint32:
        return t.view(torch.int32).numpy().view(np.uint32)
    return t.numpy()


def host_tensor(a, dtype):
    """A host torch tensor viewing numpy array ``a`` of tritonnn ``dtype`` (no copy; it keeps
    ``a`` alive): how a "cpu" bfloat16 tensor exports over DLPack."""
    if dtype is D.bfloat16:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    if dtype is D.uint32:
        return torch.from_numpy(a.view(np.int32)).view(torch.uint32)
    return torch.from_numpy(a)


# ----------------------------------------------------------------------------------------------
# CUDA graphs (tn.cuda.graphed): torch's CUDAGraph records the kernels queued on a stream and
# its caching allocator serves the buffers allocated meanwhile from the graph's own pool, so a
# replay writes to the very addresses the capture saw. Captures need a real GPU: the
# interpreter's host buffers have no stream to record (GRAPHS is False there).
# ----------------------------------------------------------------------------------------------

GRAPHS = DEVICE.type == "cuda"
_SIDE_STREAM = []                               # made on first use: a capture stream of our own


class CaptureError(Exception):
    """torch (or the CUDA driver) refused something ``fn`` did while its graph was captured."""


def _side_stream():
    if not _SIDE_STREAM:
        _SIDE_STREAM.append(torch.cuda.Stream())
    return _SIDE_STREAM[0]


def on_side_stream(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` with the capture stream current, ordered after the work already
    queued on the current stream and before any queued later: torch asks that the eager
    warm-up runs on the stream that will capture (lazily made per-stream state, such as
    allocator blocks, then already exists when the capture starts)."""
    side, current = _side_stream(), torch.cuda.current_stream()
    side.wait_stream(current)
    try:
        with torch.cuda.stream(side):
            return fn(*args, **kwargs)
    finally:
        current.wait_stream(side)


def capture(fn, *args, **kwargs):
    """``(graph, result)``: the kernels that ``fn(*args, **kwargs)`` queues recorded, not run,
    into a new CUDA graph on the capture stream; the buffers it allocates come from a memory
    pool of the graph's own (one pool per graph: graphs replayed in any order never write
    into each other's live buffers). Anything torch refuses while capturing (a copy to the
    host, a synchronize, a blocking upload) raises ``CaptureError`` with torch's message;
    ``fn``'s own exceptions pass through."""
    graph = torch.cuda.CUDAGraph()
    side, current = _side_stream(), torch.cuda.current_stream()
    side.wait_stream(current)
    own = []                                    # an exception fn itself raised
    try:
        # "thread_local": another thread's CUDA calls (a data loader's) do not void the capture
        with torch.cuda.graph(graph, pool=torch.cuda.graph_pool_handle(), stream=side,
                              capture_error_mode="thread_local"):
            try:
                result = fn(*args, **kwargs)
            except BaseException as e:
                own.append(e)
                raise
    except BaseException as e:
        first = own[0] if own else e            # capture_end fails too after a refused call
        if own and not _from_torch(first):
            raise first                         # fn's own error: pass it on as it is
        message = str(first).strip()
        raise CaptureError(message.splitlines()[0] if message else type(first).__name__) \
            from None
    finally:
        current.wait_stream(side)
    return graph, result


def _from_torch(e) -> bool:
    """True for torch's own errors (plain RuntimeError, torch.AcceleratorError, ...)."""
    return type(e) is RuntimeError or type(e).__module__.split(".")[0] == "torch"


def replay(graph) -> None:
    """Queue one replay of ``graph`` on the current stream."""
    graph.replay()
