"""Every torch call tritonnn makes, in one place: torch is only the device-buffer allocator.

Allocation, host <-> device copies, views (reshape/permute/expand/slicing),
strides and data pointers, synchronisation and memory statistics. No math:
every computation on a "cuda" buffer is a Triton kernel. Under
``TRITONNN_INTERPRET=1`` buffers are torch CPU tensors and the Triton
interpreter runs the kernels on them; so they are with the no-op driver
(``TRITONNN_NOOP_DRIVER=1``), which compiles every kernel and launches nothing.
"""
from __future__ import annotations

import sys
import weakref

import ml_dtypes
import numpy as np
import torch

from .. import dtypes as D
from ._interpret import INTERPRET, NOOP_DRIVER, SYNC_CHECKS

# host memory stands in for the GPU's under the interpreter and the no-op driver
DEVICE = torch.device("cpu") if (INTERPRET or NOOP_DRIVER) else torch.device("cuda")

TORCH_DTYPE = {
    D.float32: torch.float32, D.float64: torch.float64, D.float16: torch.float16,
    D.bfloat16: torch.bfloat16, D.int64: torch.int64, D.int32: torch.int32,
    D.uint32: torch.uint32, D.uint8: torch.uint8, D.bool_: torch.bool,
}
_FROM_TORCH = {v: k for k, v in TORCH_DTYPE.items()}


def gpu_available() -> bool:
    return NOOP_DRIVER or torch.cuda.is_available()


def device_count() -> int:
    return 1 if NOOP_DRIVER else torch.cuda.device_count()


def device_name() -> str:
    if NOOP_DRIVER:
        return "no-op driver (sm_90 target, nothing launched)"
    return torch.cuda.get_device_name() if gpu_available() and not INTERPRET else "interpreter"


_SM_COUNT = []
# an H100's or H200's streaming multiprocessors: what GEMM tiles are sized for without a GPU
SM_COUNT_DEFAULT = 132


def sm_count() -> int:
    """The current GPU's streaming multiprocessors (``SM_COUNT_DEFAULT`` without one).

    Asked once per process; the GEMM launcher sizes small outputs' tiles by it.
    """
    if not _SM_COUNT:
        on_gpu = DEVICE.type == "cuda" and torch.cuda.is_available()
        _SM_COUNT.append(torch.cuda.get_device_properties(torch.cuda.current_device())
                         .multi_processor_count if on_gpu else SM_COUNT_DEFAULT)
    return _SM_COUNT[0]


def synchronize() -> None:
    COUNTS["host_syncs"] += 1
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
    raise_deferred()


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
    """Count the new buffer ``t`` (under the interpreter, also its bytes until it dies; not
    with the no-op driver, which measures the host's cost of a GPU step and so leaves out
    what a GPU would not do)."""
    COUNTS["allocations"] += 1
    if INTERPRET:
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


def upload_into(dst, a: np.ndarray) -> None:
    """Copy host array ``a`` (``dst``'s shape and dtype, not bfloat16) into the device buffer
    ``dst`` without waiting for the device: through pinned memory, queued on the current
    stream (torch's pinned-memory allocator keeps the staging block until the copy ran), so
    kernels queued later read the new values and the host does not stop. Counted as an
    upload."""
    host = torch.from_numpy(np.ascontiguousarray(a).reshape(a.shape))
    COUNTS["uploads"] += 1
    if DEVICE.type == "cpu":
        dst.copy_(host)
    else:
        dst.copy_(host.pin_memory(), non_blocking=True)


def download(buf) -> np.ndarray:
    """A host numpy copy of a device buffer (bfloat16 as ml_dtypes.bfloat16)."""
    COUNTS["host_syncs"] += 1
    t = buf.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    if t.dtype == torch.bfloat16:
        out = t.contiguous().view(torch.int16).numpy().copy().view(ml_dtypes.bfloat16)
    elif t.dtype == torch.uint32:
        out = t.contiguous().view(torch.int32).numpy().copy().view(np.uint32)
    else:
        out = t.contiguous().numpy().copy() if t.device.type == DEVICE.type else t.numpy()
    raise_deferred()            # the device is done with everything queued before: report it
    return out


# -- errors only the device sees: class targets and index values out of range -------------------
# A kernel that reads such values checks them itself (``_jitlib.report_out_of_range``, for
# one ``contract.RangeCheck``, its *site*): the first launch in stream order that meets a bad
# value claims the record ``[claim, lowest value below the range, highest value above it, 0]``
# with an atomic compare-and-swap of its claim (the launch's number, then its site, in one
# int64), and only that launch's programs add their values to it, so the record is the same
# whatever the scheduling. The host reads the record at its next synchronization (every
# download, ``synchronize``), when the device has run every earlier launch, and raises the
# site's error; nothing is read when no checking kernel ran since. Sites are numbered once
# per distinct check (its bounds and message), so the table stays as small as the program.

_NO_LOW, _NO_HIGH = (1 << 63) - 1, -(1 << 63)
_RECORD_INIT = (0, _NO_LOW, _NO_HIGH, 0)
_SITE_BITS = 24                     # a claim: 2**62 | (launch number << 24) | site: never 0,
                                    # and always an int64 kernel argument (one compiled variant)
_RECORD = []                        # the int64 (4,) record, allocated by the first check
_SITES = {}                         # RangeCheck -> its site number (1, 2, ...)
_CHECKS = [None]                    # site number -> RangeCheck
_LAUNCHES = [0]                     # checking launches numbered (mod 2**38)
_ARMED = [False]                    # a checking kernel ran since the host last read the record
_SYNC_CHECKS = [SYNC_CHECKS]


def error_args(check, unused):
    """The launch arguments ``(record, claim, CHECK)`` of a kernel that checks values as
    ``check`` (a ``contract.RangeCheck``) says; for None, ``(unused, 0, False)``: nothing to
    check (``unused`` stands in for the record pointer)."""
    if check is None:
        return unused, 0, False
    return (*error_site(check), True)


def error_site(check):
    """``(record buffer, claim)`` for a launch that checks values as ``check`` says: the claim
    numbers the launch and names the check's site."""
    site = _SITES.get(check)
    if site is None:
        if len(_CHECKS) == 1 << _SITE_BITS:         # (a program with 16M distinct messages)
            _SITES.clear()
            del _CHECKS[1:]
        site = _SITES[check] = len(_CHECKS)
        _CHECKS.append(check)
    if not _RECORD:
        COUNTS["uploads"] += 1
        _RECORD.append(_track(torch.tensor(_RECORD_INIT, dtype=torch.int64, device=DEVICE)))
    _ARMED[0] = True
    launch = _LAUNCHES[0] = (_LAUNCHES[0] + 1) & ((1 << 38) - 1)
    return _RECORD[0], (1 << 62) | (launch << _SITE_BITS) | site


def checked_launch() -> None:
    """After a launch that checked values: with sync checks on, raise its error now."""
    if _SYNC_CHECKS[0]:
        COUNTS["host_syncs"] += 1
        raise_deferred()


def raise_deferred() -> None:
    """Raise the error a kernel recorded since the last look, and clear the record (call it
    when the device has finished the launches queued so far)."""
    if not _ARMED[0]:
        return
    _ARMED[0] = False
    claim, below, above, _ = _RECORD[0].tolist()
    if claim == 0:
        return
    _RECORD[0].copy_(torch.tensor(_RECORD_INIT, dtype=torch.int64))
    raise _CHECKS[claim & ((1 << _SITE_BITS) - 1)].exception(None if below == _NO_LOW else below,
                                  None if above == _NO_HIGH else above)


def set_sync_checks(enabled: bool) -> None:
    _SYNC_CHECKS[0] = bool(enabled)


def sync_checks() -> bool:
    return _SYNC_CHECKS[0]


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
