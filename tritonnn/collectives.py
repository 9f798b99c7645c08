"""Every ``torch.distributed`` call tritonnn makes, in one place: torch moves the bytes.

``tn.distributed`` (the public functions, their checks and errors) and
``tn.nn.parallel.DistributedDataParallel`` stand on this module. It works on backend
buffers: a numpy array ("cpu") reaches gloo as a torch tensor sharing its memory
(``torch.from_numpy``; bfloat16 through an int16 view), a "cuda" buffer already is a torch
tensor (a CUDA one for NCCL, a CPU one for gloo under the interpreter). Nothing is copied,
and no arithmetic is done here: a mean is the collective's own ``AVG`` where the backend
has it, otherwise the caller divides with a kernel (``avg_supported``).

torch is imported with this module, which ``tn.distributed.init()`` loads: ``import
tritonnn`` stays free of it.
"""
from __future__ import annotations

import datetime

import ml_dtypes
import numpy as np
import torch
import torch.distributed as dist

# numpy's bfloat16 (ml_dtypes): torch.from_numpy does not know it, an int16 view carries it
_BF16 = np.dtype(ml_dtypes.bfloat16)


def available() -> bool:
    """Whether this torch build has torch.distributed at all."""
    return dist.is_available()


def gpu_present() -> bool:
    """A real CUDA device is here (NCCL can be used)."""
    return torch.cuda.is_available()


def init(timeout_s: float, with_cuda: bool, local_rank: int) -> None:
    """Join the process group described by torchrun's environment (``env://``).

    gloo serves CPU tensors; with ``with_cuda`` NCCL serves CUDA tensors too and this
    process's current CUDA device becomes ``cuda:local_rank``.
    """
    if with_cuda:
        torch.cuda.set_device(local_rank)
    backend = "cpu:gloo,cuda:nccl" if with_cuda else "gloo"
    kwargs = {"backend": backend, "init_method": "env://",
              "timeout": datetime.timedelta(seconds=timeout_s)}
    if with_cuda:
        kwargs["device_id"] = torch.device("cuda", local_rank)
    try:
        dist.init_process_group(**kwargs)
    except TypeError:               # a torch without device_id: bound lazily instead
        kwargs.pop("device_id", None)
        dist.init_process_group(**kwargs)


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank()


def world_size() -> int:
    return dist.get_world_size()


def barrier() -> None:
    dist.barrier()


def destroy() -> None:
    dist.destroy_process_group()


def as_torch(buf):
    """``buf`` (a numpy array or a torch tensor) as a torch tensor sharing its memory."""
    if isinstance(buf, torch.Tensor):
        return buf
    if buf.dtype == _BF16:
        return torch.from_numpy(buf.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(buf)


_OPS = {"sum": dist.ReduceOp.SUM, "mean": dist.ReduceOp.AVG, "max": dist.ReduceOp.MAX,
        "min": dist.ReduceOp.MIN, "product": dist.ReduceOp.PRODUCT}
_avg = {}


def avg_supported(buf) -> bool:
    """Whether the backend serving ``buf`` averages itself (NCCL does; gloo from torch 2.7
    on); asked once per backend with a one-element probe every rank makes alike."""
    key = "cpu" if isinstance(buf, np.ndarray) else buf.device.type
    if key not in _avg:
        probe = torch.zeros(1, dtype=torch.float32, device=as_torch(buf).device)
        try:
            dist.all_reduce(probe, op=dist.ReduceOp.AVG)
            _avg[key] = True
        except (RuntimeError, ValueError):
            _avg[key] = False
    return _avg[key]


def all_reduce(buf, op: str, async_op: bool = False):
    """Reduce ``buf`` in place across the ranks (a contiguous buffer); with ``async_op``
    returns a handle whose ``wait()`` finishes it."""
    return dist.all_reduce(as_torch(buf), op=_OPS[op], async_op=async_op)


def broadcast(buf, src: int, async_op: bool = False):
    return dist.broadcast(as_torch(buf), src=src, async_op=async_op)


def all_gather_int64(values) -> np.ndarray:
    """Every rank's ``values`` (a short list of ints, the same length everywhere), as a
    (world_size, len) array, through gloo (CPU)."""
    mine = torch.tensor(list(values), dtype=torch.int64)
    out = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(out, mine)
    return np.stack([o.numpy() for o in out])


def all_gather_object(obj) -> list:
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


# -- the store: what a failing rank leaves for the others to read ---------------------------------

def _store():
    get = getattr(dist.distributed_c10d, "_get_default_store", None)
    try:
        return get() if get is not None else None
    except (RuntimeError, ValueError):
        return None


def store_set(key: str, value: str) -> bool:
    """Write ``key`` in the process group's store; False when there is no store to reach."""
    store = _store()
    if store is None:
        return False
    try:
        store.set(key, value)
        return True
    except (RuntimeError, ValueError, OSError):
        return False


def store_get(key: str):
    """The value of ``key`` if it was set, else None (never waits for it)."""
    store = _store()
    if store is None:
        return None
    try:
        if not store.check([key]):
            return None
        return store.get(key).decode(errors="replace")
    except (RuntimeError, ValueError, OSError):
        return None
