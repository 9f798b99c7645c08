"""``tn.cuda``: whether a real GPU is there (never true under the interpreter alone).

``tritonnn.kernels`` (and with it torch) is imported by these functions, not by
``import tritonnn``, so the cpu path never loads torch.
"""
import functools
import importlib.util
import numbers
import sys

from . import random
from .errors import DeviceError, DTypeError, TritonnnError
from .tape import TensorBase


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


# ==============================================================================================
# graphed: a whole training step captured once as a CUDA graph, then replayed
# ==============================================================================================
# A replay is one launch of everything the step queued at capture: the same kernels with the
# same arguments on the same buffers. So the host's part of the step must not change between
# calls: no waits for the device (a replay cannot hand a value back to Python mid-step), no
# uploads (a replay would copy from host memory long gone), no draws from the seed stream (a
# replay would draw the same numbers again). graphed() checks these with the counters of
# stats() and the seed stream's offset, on the last warm-up call and around the capture.


def graphed(fn, *, warmup=2, max_graphs=4):
    """``step = tn.cuda.graphed(fn)``: ``step(*args, **kwargs)`` does what ``fn`` does, the
    whole of it (forward, backward, optimizer step) replayed from one CUDA graph once warm.

    The tensors among the arguments (also inside tuples, lists and dicts) and every other
    argument's value make a call's key: per key, the first ``warmup`` calls run ``fn``
    eagerly (compiling and autotuning its kernels, making the optimizer's state), the next
    one captures ``fn`` into a CUDA graph and replays it, and every later call copies its
    tensors into the graph's own input buffers and replays the graph. A new key (another
    batch size, say) warms up and gets a graph of its own, up to ``max_graphs`` (each holds
    the memory of one step); calls with keys beyond those run eagerly.

    What a replay returns: the tensors ``fn`` returned at capture (cut from the tape), whose
    memory every replay overwrites, as PyTorch's CUDA graphs do. Copy (``loss.clone()``) what
    must outlive the next call. The host side of ``fn`` runs at warm-up and capture only: a
    learning-rate schedule must move values the optimizer reads from device memory (call
    ``scheduler.step()`` outside ``fn``), and Python counters in ``fn`` stop counting.

    Refused with a ``TritonnnError`` when found on the last warm-up call or during the
    capture: waiting for the device inside ``fn`` (``item()``, ``numpy()``, ``tolist()``,
    printing a tensor, ``tn.cuda.synchronize()``), uploading host data, drawing random
    numbers (dropout, ``rand``), returning something other than tensors and None, input
    tensors not on "cuda" or requiring grad. Call ``step.reset()`` after replacing buffers the
    graph writes (``load_state_dict``, ``model.to(...)``). ``step.graphs`` and
    ``step.replays`` count captures and replays.

    On "cpu", under Triton's interpreter and for a ``fn`` that launches no kernel, ``step``
    simply calls ``fn`` (after checking the arguments make a key, as on a GPU).
    """
    if not callable(fn):
        raise DTypeError(f"cuda.graphed: fn must be callable, got {type(fn).__name__} "
                         f"{_shown(fn)}")
    for name, value, low in (("warmup", warmup, 1), ("max_graphs", max_graphs, 0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise DTypeError(f"cuda.graphed: {name} must be an int, got "
                             f"{type(value).__name__} {_shown(value)}")
        if value < low:
            raise TritonnnError(f"cuda.graphed: {name} must be >= {low}, got {value}"
                                + (" (kernels compile and optimizer state appears on the "
                                   "first eager call, never inside a capture)"
                                   if name == "warmup" else ""))
    return Graphed(fn, int(warmup), int(max_graphs))


_EAGER = -1                     # a key whose warm-up launched no kernel: nothing to capture
_MAX_KEYS = 64                  # keys warming up at once; more (a float argument that changes
                                # every call) run eagerly without being counted
_CAPTURING = [False]            # a graphed fn called while another captures: plain call


class _Graph:
    """One captured graph, its input buffers and what a replay returns."""

    __slots__ = ("graph", "inputs", "outputs", "written")

    def __init__(self, graph, inputs, outputs, written):
        self.graph, self.inputs, self.outputs, self.written = graph, inputs, outputs, written


class Graphed:
    """What ``tn.cuda.graphed(fn)`` returns: call it as ``fn``."""

    def __init__(self, fn, warmup, max_graphs):
        self.fn, self.warmup, self.max_graphs = fn, warmup, max_graphs
        self.replays = 0
        self._graphs = {}       # key -> _Graph
        self._calls = {}        # key -> eager calls so far (or _EAGER)
        self._last = {}         # key -> what the last warm-up call did (_effects deltas)
        functools.update_wrapper(self, fn, updated=())

    @property
    def graphs(self) -> int:
        """How many graphs are captured."""
        return len(self._graphs)

    def reset(self) -> None:
        """Drop every graph and warm-up count (after a parameter's or optimizer state's buffer
        was replaced): the next calls warm up and capture again."""
        self._graphs.clear()
        self._calls.clear()
        self._last.clear()

    def __repr__(self):
        return (f"graphed({_name(self.fn)}, warmup={self.warmup}, max_graphs="
                f"{self.max_graphs}: {self.graphs} graph(s), {self.replays} replay(s))")

    def __call__(self, *args, **kwargs):
        if kwargs:
            kwargs = dict(sorted(kwargs.items()))
        tensors = []
        key = (_key(args, tensors), _key(kwargs, tensors) if kwargs else None)
        try:
            g = self._graphs.get(key)
        except TypeError:
            raise _unhashable(args, kwargs) from None
        if g is not None:
            return self._replay(g, tensors)
        buffers = _loaded_buffers()
        if buffers is None or not buffers.GRAPHS or _CAPTURING[0]:
            return self.fn(*args, **kwargs)
        calls = self._calls.get(key, 0)
        if calls == _EAGER or len(self._graphs) >= self.max_graphs or \
                (calls == 0 and len(self._calls) >= _MAX_KEYS):
            return self.fn(*args, **kwargs)
        if calls < self.warmup:
            before = _effects(buffers)
            out = buffers.on_side_stream(self.fn, *args, **kwargs)
            self._calls[key] = calls + 1
            self._last[key] = _moved(buffers, before)
            return out
        try:
            return self._capture(buffers, key, tensors, args, kwargs)
        except BaseException:
            self._calls.pop(key, None)          # refused: the key warms up again from scratch
            raise

    # -- capture and replay --------------------------------------------------------------------
    def _capture(self, buffers, key, tensors, args, kwargs):
        where = f"cuda.graphed({_name(self.fn)})"
        moved = self._last.pop(key)
        self._refuse(where, moved, "its last warm-up call")
        if moved["launches"] == 0:              # fn ran on the host only
            self._calls[key] = _EAGER
            return self.fn(*args, **kwargs)
        for path, t in _tensor_paths(args, kwargs):
            if t.device.type != "cuda":
                raise DeviceError(f"{where}: {path} is a {t.device} tensor {t.shape}: a CUDA "
                                  f"graph replays device work only; pass \"cuda\" tensors")
            if t.requires_grad:
                raise TritonnnError(f"{where}: {path} {t.shape} requires grad: a graph reads "
                                    f"its inputs from buffers of its own, so no gradient "
                                    f"would reach this tensor; pass data (detach() it)")
        inputs = []
        for t in tensors:                       # the graph's input buffers, filled once now
            static = t._new(t._backend.empty(t.shape, t.dtype), t.dtype)
            t._backend.copy_(static._data, t._data)
            inputs.append(static)
        feed = iter(inputs)
        static_args, static_kwargs = _rebuild(args, feed), _rebuild(kwargs, feed)
        before = _effects(buffers)
        _CAPTURING[0] = True
        try:
            graph, out = buffers.capture(self.fn, *static_args, **static_kwargs)
        except buffers.CaptureError as e:
            seen = _problems(_moved(buffers, before))
            raise TritonnnError(
                f"{where}: CUDA graph capture failed: {e}"
                + (f"; during the capture fn {'; '.join(seen)}" if seen else "")
                + ". A graphed fn may not wait for the device, upload host data, or compile or "
                  "autotune a kernel for the first time (warm up with the same shapes)"
            ) from None
        finally:
            _CAPTURING[0] = False
        self._refuse(where, _moved(buffers, before), "the capture")
        written = []
        outputs = _outputs(out, written, where, "the result")
        g = self._graphs[key] = _Graph(graph, inputs, outputs, written)
        self._calls.pop(key, None)
        return self._run(g)

    @staticmethod
    def _refuse(where, moved, when):
        problems = _problems(moved)
        if problems:
            raise TritonnnError(
                f"{where}: cannot capture fn as a CUDA graph: {when} {'; '.join(problems)}. "
                f"A replay runs the device work alone: no value comes back to Python "
                f"mid-step, no host data is copied again, the same random numbers would be "
                f"drawn every step. Move item()/printing/uploads/random draws out of fn, or "
                f"call fn without graphed()")

    def _replay(self, g, tensors):
        for static, t in zip(g.inputs, tensors):
            static._backend.copy_(static._data, t._data)
        return self._run(g)

    def _run(self, g):
        _loaded_buffers().replay(g.graph)
        for t in g.written:                     # overwritten in place, as an in-place op would
            t._version[0] += 1
        self.replays += 1
        return g.outputs


# -- what a call did, from the counters ---------------------------------------------------------

def _effects(buffers):
    c = buffers.COUNTS
    return c["launches"], c["host_syncs"], c["uploads"], random.get_rng_state()


def _moved(buffers, before):
    launches, syncs, uploads, rng = _effects(buffers)
    return {"launches": launches - before[0], "host_syncs": syncs - before[1],
            "uploads": uploads - before[2],
            "random": rng["offset"] - before[3]["offset"] if rng["seed"] == before[3]["seed"]
            else 1}


def _problems(moved) -> list:
    """What a call did that a replay cannot repeat, in words (empty: nothing)."""
    said = []
    if moved["host_syncs"]:
        said.append(f"waited for the device {moved['host_syncs']} time(s) (item(), numpy(), "
                    f"tolist(), printing a tensor, tn.cuda.synchronize())")
    if moved["uploads"]:
        said.append(f"copied host data to the device {moved['uploads']} time(s) (tn.tensor, "
                    f".to(\"cuda\"), a host array)")
    if moved["random"]:
        said.append("drew random numbers (dropout, rand, randn, randperm, a shuffle)")
    return said


# -- keys, input buffers and outputs ------------------------------------------------------------
# A key is the structure of the arguments with each tensor replaced by (shape, dtype, device
# type, device index) and every other value by (type, value): 1, 1.0 and True are different
# keys. (Containers and other values give pairs, tensors quadruples: they never collide.)

def _key(obj, tensors):
    if isinstance(obj, TensorBase):
        tensors.append(obj)
        device = obj.device
        return obj._data.shape, obj.dtype, device.type, device.index
    if type(obj) is tuple:                      # the common case: the positional arguments
        return tuple, tuple([_key(o, tensors) for o in obj])
    if isinstance(obj, (tuple, list)):
        return type(obj), tuple([_key(o, tensors) for o in obj])
    if isinstance(obj, dict):
        return type(obj), tuple([(k, _key(v, tensors)) for k, v in obj.items()])
    return type(obj), obj


def _rebuild(obj, feed):
    """``obj`` with each tensor replaced by the next one of ``feed``."""
    if isinstance(obj, TensorBase):
        return next(feed)
    if isinstance(obj, (tuple, list)):
        items = [_rebuild(o, feed) for o in obj]
        if isinstance(obj, tuple) and hasattr(obj, "_fields"):        # a namedtuple
            return type(obj)(*items)
        return type(obj)(items)
    if isinstance(obj, dict):
        return type(obj)((k, _rebuild(v, feed)) for k, v in obj.items())
    return obj


def _leaves(obj, path):
    if isinstance(obj, (tuple, list)):
        for i, o in enumerate(obj):
            yield from _leaves(o, f"{path}[{i}]")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, f"{path}[{k!r}]")
    else:
        yield path, obj


def _tensor_paths(args, kwargs):
    for path, leaf in (*_leaves(args, "args"), *_leaves(kwargs, "kwargs")):
        if isinstance(leaf, TensorBase):
            yield path, leaf


def _unhashable(args, kwargs):
    for path, leaf in (*_leaves(args, "args"), *_leaves(kwargs, "kwargs")):
        if not isinstance(leaf, TensorBase):
            try:
                hash(leaf)
            except TypeError:
                return DTypeError(
                    f"cuda.graphed: {path} is a {type(leaf).__name__} {_shown(leaf)}, neither "
                    f"a tensor nor hashable: a graphed call's key holds the values of its "
                    f"non-tensor arguments; pass data as tritonnn tensors")
    return DTypeError("cuda.graphed: an argument's key is not hashable")   # (a dict key's)


def _outputs(obj, written, where, path):
    """What replays return: ``fn``'s result with its tensors cut from the tape."""
    if obj is None:
        return None
    if isinstance(obj, TensorBase):
        if obj.device.type != "cuda":
            raise DeviceError(f"{where}: {path} is a {obj.device} tensor: a replay would hand "
                              f"back the value of the capture; return \"cuda\" tensors only")
        out = obj.detach()
        written.append(out)
        return out
    if isinstance(obj, (tuple, list)):
        items = [_outputs(o, written, where, f"{path}[{i}]") for i, o in enumerate(obj)]
        if isinstance(obj, tuple) and hasattr(obj, "_fields"):
            return type(obj)(*items)
        return type(obj)(items)
    if isinstance(obj, dict):
        return type(obj)((k, _outputs(v, written, where, f"{path}[{k!r}]"))
                         for k, v in obj.items())
    raise DTypeError(f"{where}: {path} is a {type(obj).__name__} {_shown(obj)}: a value the "
                     f"host computed at capture, which a replay would hand back unchanged; "
                     f"return tensors (or None) only")


def _name(fn) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
