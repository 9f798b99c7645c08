"""``tn.distributed``: several processes, one job: collectives over ``torch.distributed``.

Launch a script with ``torchrun --nproc-per-node N script.py`` and call ``init()`` first: it
reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``), joins the process group (gloo for "cpu" tensors; on a GPU machine NCCL
for "cuda" tensors as well) and binds "cuda" to ``cuda:LOCAL_RANK``. ``all_reduce`` and
``broadcast`` work in place on tritonnn tensors of either device, without a copy: the
collective reads and writes the tensor's own memory (``tritonnn.collectives``, the one
module that calls torch.distributed).

Failures do not hang. A rank whose script raises records the error in the job's store
before it exits; a collective that fails on another rank (its peer's connection closed, or
nothing heard within ``timeout`` seconds) raises a ``tn.DistributedError`` naming the rank
that failed and why, when it can be known (a rank killed by a signal leaves no record: it
is named when it ran on this host, from its process id). Under torchrun the launcher also
stops every rank when one exits with an error.
"""
from __future__ import annotations

import os
import re
import socket
import sys
import time

from .checks import shown
from .device import interpreting
from .errors import DistributedError, DTypeError, TritonnnError
from .tensor import Tensor

DEFAULT_TIMEOUT_S = 600.0
"""How long a collective waits for the other ranks before it fails (``init(timeout=)``,
``TRITONNN_DIST_TIMEOUT``)."""

_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
_REDUCE_OPS = ("sum", "mean", "max", "min", "product")
_state = {"c": None, "timeout": DEFAULT_TIMEOUT_S, "hook": None}


_NS = "tn.distributed."


def _c(op):
    """The collectives module, once the process group exists; a clear error naming ``op``
    (the caller's full name) before."""
    c = _state["c"]
    if c is None or not c.is_initialized():
        raise DistributedError(f"{op}: the process group is not initialized; "
                               f"call tn.distributed.init() first, in a script launched with "
                               f"torchrun --nproc-per-node N")
    return c


def init(*, timeout=None):
    """Join the job torchrun started this process in.

    ``timeout``: seconds a collective waits for the other ranks (default
    ``TRITONNN_DIST_TIMEOUT``, else 600). Call it before the first use of "cuda": on a GPU
    machine "cuda" then means ``cuda:LOCAL_RANK`` in this process.
    """
    op = "tn.distributed.init"
    if _state["c"] is not None and _state["c"].is_initialized():
        raise DistributedError(f"{op}: already initialized (rank {rank()} of "
                               f"{world_size()}); call tn.distributed.destroy() first")
    missing = [k for k in _ENV if not os.environ.get(k)]
    if missing:
        raise DistributedError(
            f"{op}: the environment lacks {', '.join(missing)}: launch the script with "
            f"torchrun (torchrun --nproc-per-node N script.py), which sets them")
    values = {}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"):
        text = os.environ.get(k, os.environ["RANK"] if k == "LOCAL_RANK" else "")
        if not text.isdigit():
            raise DistributedError(f"{op}: {k}={text!r} is not a non-negative integer")
        values[k] = int(text)
    if not values["RANK"] < values["WORLD_SIZE"]:
        raise DistributedError(f"{op}: RANK={values['RANK']} is not below "
                               f"WORLD_SIZE={values['WORLD_SIZE']}")
    if timeout is None:
        timeout = os.environ.get("TRITONNN_DIST_TIMEOUT", DEFAULT_TIMEOUT_S)
    if hasattr(timeout, "total_seconds"):
        timeout = timeout.total_seconds()
    try:
        timeout = float(timeout)
    except (TypeError, ValueError):
        raise DTypeError(f"{op}: timeout must be a number of seconds, got "
                         f"{shown(timeout)}") from None
    if not timeout > 0:
        raise DistributedError(f"{op}: timeout must be > 0 seconds, got {timeout}")
    try:
        from . import collectives as c
    except ImportError as e:
        raise DistributedError(f"{op}: tn.distributed needs torch installed "
                               f"(pip install torch): {e}") from None
    if not c.available():
        raise DistributedError(f"{op}: this torch build has no torch.distributed")
    with_cuda = not interpreting() and c.gpu_present()
    try:
        c.init(timeout, with_cuda, values["LOCAL_RANK"])
    except (RuntimeError, ValueError) as e:
        raise DistributedError(f"{op}: could not join the job of {values['WORLD_SIZE']} "
                               f"ranks at {os.environ['MASTER_ADDR']}:"
                               f"{values['MASTER_PORT']} as rank {values['RANK']}: {e}") from e
    _state["c"], _state["timeout"] = c, timeout
    c.store_set(f"tritonnn/pid/{values['RANK']}", f"{socket.gethostname()} {os.getpid()}")
    if _state["hook"] is None:
        previous = sys.excepthook

        def record_failure(kind, value, tb):
            _record_failure(kind, value)
            previous(kind, value, tb)

        _state["hook"] = previous
        sys.excepthook = record_failure


def _record_failure(kind, value):
    c = _state["c"]
    if c is None or not c.is_initialized():
        return
    text = f"{kind.__name__}: {value}".strip()
    if len(text) > 500:
        text = text[:500] + "..."
    c.store_set(f"tritonnn/failed/{c.rank()}", text)


def is_initialized() -> bool:
    c = _state["c"]
    return c is not None and c.is_initialized()


def rank() -> int:
    """This process's rank, in [0, world_size())."""
    return _c(_NS + "rank").rank()


def world_size() -> int:
    return _c(_NS + "world_size").world_size()


def barrier() -> None:
    """Wait until every rank reaches its ``barrier()``."""
    c = _c(_NS + "barrier")
    _run(_NS + "barrier", c.barrier)


def destroy() -> None:
    """Leave the process group (the end of a script; ``init()`` may follow again)."""
    c = _c(_NS + "destroy")
    c.destroy()
    _state["c"] = None
    if _state["hook"] is not None and sys.excepthook is not _state["hook"]:
        sys.excepthook = _state["hook"]
    _state["hook"] = None


def _tensor(op, t):
    if not isinstance(t, Tensor):
        raise DTypeError(f"{op}: expected a tensor, got {type(t).__name__}")
    return t


def all_reduce(t, op="sum", *, async_op=False):
    """Reduce ``t`` in place across the ranks: every rank ends with the same values.

    ``op``: "sum", "mean" (floating dtypes), "max", "min" or "product". With ``async_op``
    returns a handle whose ``wait()`` completes it (do not read or write ``t`` before);
    else None.
    """
    name = _NS + "all_reduce"
    t = _tensor(name, t)
    if op not in _REDUCE_OPS:
        raise TritonnnError(f"{name}: op must be one of "
                            f"{', '.join(map(repr, _REDUCE_OPS))}, got {shown(op)}")
    if op == "mean" and not t.dtype.is_floating:
        raise DTypeError(f"{name}: op 'mean' needs a floating tensor, got "
                         f"{t.dtype} {t.shape}")
    _c(name)
    t._version[0] += 1
    return _finish(reduce_buffer(t._data, t._backend, t.dtype, op, async_op=True), async_op)


def broadcast(t, src=0, *, async_op=False):
    """Overwrite ``t`` on every rank with rank ``src``'s values (in place)."""
    name = _NS + "broadcast"
    t = _tensor(name, t)
    c = _c(name)
    if isinstance(src, bool) or not isinstance(src, int) or not 0 <= src < c.world_size():
        raise TritonnnError(f"{name}: src must be a rank in [0, "
                            f"{c.world_size()}), got {shown(src)}")
    t._version[0] += 1
    return _finish(broadcast_buffer(t._data, t._backend, src, async_op=True), async_op)


def _finish(handle, async_op):
    if async_op:
        return handle
    handle.wait()
    return None


def reduce_buffer(buf, B, dtype, op, *, async_op, name=_NS + "all_reduce", then=None):
    """All-reduce backend buffer ``buf`` (of backend ``B``, dtype ``dtype``) in place; a
    ``Handle`` (``async_op``) or None once done, ``then()`` run last (the caller's own
    finishing step, e.g. unpacking a packed buffer). What ``all_reduce`` and
    ``DistributedDataParallel`` run: a mean is the backend's own average when it has one,
    else a sum and one division by the world size."""
    c = _c(name)
    divide = op == "mean" and not c.avg_supported(buf)

    def call(dense, a):
        return c.all_reduce(dense, "sum" if divide else op, a)

    def after(dense):
        if divide:
            w = B.full((), c.world_size(), dtype)
            B.copy_(dense, B.binary(dense, w, "div"))
    return _start(name, B, buf, call, after, async_op, then)


def broadcast_buffer(buf, B, src, *, async_op, name=_NS + "broadcast"):
    c = _c(name)
    return _start(name, B, buf, lambda dense, a: c.broadcast(dense, src, a), None, async_op)


class Handle:
    """A collective under way: ``wait()`` completes it (a ``tn.DistributedError`` when a rank
    failed) and finishes its host-side part (a division, a copy back into a tensor that was
    not contiguous)."""

    def __init__(self, name, work, after):
        self.name, self._work, self._after = name, work, after

    def wait(self):
        work, after = self._work, self._after
        self._work = self._after = None
        if work is not None:
            _run(self.name, work.wait)
        if after is not None:
            after()

    def is_completed(self):
        return self._work is None and self._after is None


def _start(name, B, buf, call, after, async_op, then=None):
    """Run ``call(dense, async_op)`` on ``buf`` itself, or on a contiguous copy of it that
    ``wait()`` copies back; ``after(dense)`` runs once the collective is done, ``then()``
    last."""
    dense = buf if _contiguous(buf) else B.contiguous(buf)

    def finish():
        if after is not None:
            after(dense)
        if dense is not buf:
            B.copy_(buf, dense)
        if then is not None:
            then()
    handle = Handle(name, _run(name, call, dense, True), finish)
    if not async_op:
        handle.wait()
        return None
    return handle


def _contiguous(buf):
    flags = getattr(buf, "flags", None)
    return flags.c_contiguous if flags is not None else buf.is_contiguous()


def _run(name, fn, *args):
    """``fn(*args)``, a collective: a failure becomes a DistributedError naming the rank
    that failed when the job's store or this host knows it."""
    try:
        return fn(*args)
    except DistributedError:
        raise
    except (RuntimeError, ValueError) as e:
        raise DistributedError(f"{name}: {_who_failed(str(e))}") from e


def _who_failed(detail):
    c = _state["c"]
    me, n = c.rank(), c.world_size()
    found = []
    # the failing rank writes its record before its process exits (and its sockets close)
    for _ in range(10):
        for r in range(n):
            if r != me:
                text = c.store_get(f"tritonnn/failed/{r}")
                if text is not None:
                    found.append(f"rank {r} failed: {text}")
        if found:
            break
        time.sleep(0.05)
    if not found:
        host = socket.gethostname()
        for r in range(n):
            rec = c.store_get(f"tritonnn/pid/{r}") if r != me else None
            if rec is None:
                continue
            where, _, pid = rec.rpartition(" ")
            if where == host and pid.isdigit() and not _alive(int(pid)):
                found.append(f"rank {r} (pid {pid}) exited without raising an error (killed?)")
    who = "; ".join(found) if found else "another rank stopped answering"
    if "timed out" in detail.lower() or "timeout" in detail.lower():
        who += f" (no answer within {_state['timeout']:g} s)"
    first = detail.strip().splitlines()[0] if detail.strip() else ""
    first = re.sub(r"^\[[^\]]*\.(cc|cpp|h):\d+\]\s*", "", first)     # gloo's source line
    first = first.split(". This is typically")[0]
    return f"{who}; rank {me} of {n} stops here ({first})"


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (exited, not yet reaped by its launcher) is gone for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


__all__ = ["init", "is_initialized", "rank", "world_size", "barrier", "destroy", "all_reduce",
           "broadcast", "Handle", "DEFAULT_TIMEOUT_S"]
