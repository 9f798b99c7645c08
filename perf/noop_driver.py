"""A Triton driver that compiles for an sm_90 GPU and launches nothing: host cost without a GPU.

Installed with ``install()`` before device "cuda" is first used, it makes tritonnn's
"cuda" device take Triton's real launch path end to end (the argument binder,
specialisation, the in-memory kernel cache, the autotuner, and the compiler down to a
cubin through ptxas, kept in ``TRITON_CACHE_DIR`` like any compile), with torch CPU
tensors as the device buffers, while the driver itself does the least it can:

* ``get_current_target()`` is ``GPUTarget("cuda", 90, 32)`` (an H100/H200);
* ``utils.load_binary`` hands back dummy module/function handles (and counts the
  binaries loaded: one per kernel specialisation the process compiles or takes from the
  disk cache);
* ``launcher_cls`` makes launchers that do nothing when called (and count the calls);
* a few kernels whose results the host reads back to decide what to do (the target check
  of cross-entropy) get their "all is well" answer written, so a step goes on;
* the benchmarker the autotuner asks for runs each candidate once (so it is compiled, as
  on a GPU) and times it by a fixed rule, so a tuned choice is the same from run to run.

So the time a training step takes under this driver is the host's share of a GPU step
(Python, tritonnn, Triton's launch path), without the C launcher's own few microseconds
per launch nor any device time. ``tritonnn.perf.bench_host_overhead`` measures that.

Nothing here touches a GPU or needs one, and no kernel runs: the buffers' contents are
whatever the host wrote into them (initial weights, uploads), never a kernel's result.

    from tritonnn.perf import noop_driver
    noop_driver.install()           # before the first use of device "cuda"
    ...                             # run steps on "cuda"
    noop_driver.STATS               # {"binaries": ..., "launches": ...}

Or around any Python program, to count the kernel specialisations it needs (with an empty
``TRITON_CACHE_DIR``, every one is a fresh compile), e.g. a test stage::

    TRITON_CACHE_DIR=$(mktemp -d) python -m tritonnn.perf.noop_driver -m pytest -q tests/x.py
    python -m tritonnn.perf.noop_driver script.py args...

which prints the counts when the program ends (results computed on device "cuda" are
meaningless there: nothing runs; ``TRITONNN_INTERPRET`` is set to 0 for the program).
"""
from __future__ import annotations

import atexit
import os
import runpy
import sys

from tritonnn.device import interpreting

# the sm_90 limits that Triton's launch path checks before loading a binary
_SM90 = {"max_shared_mem": 232448, "max_num_regs": 65536, "multiprocessor_count": 132,
         "warpSize": 32, "sm_clock_rate": 1980000, "mem_clock_rate": 2619000,
         "mem_bus_width": 6144}
_MAX_THREADS = 1024

STATS = {"binaries": 0, "launches": 0}


def reset_stats():
    for k in STATS:
        STATS[k] = 0


class _Utils:
    """The driver's utilities: what Triton's CompiledKernel and autotuner call on ``utils``."""

    def load_binary(self, name, kernel, shared, device):
        """``(module, function, n_regs, n_spills, n_max_threads)`` for a compiled kernel."""
        STATS["binaries"] += 1
        handle = STATS["binaries"]
        return handle, handle, 0, 0, _MAX_THREADS

    def unload_module(self, module):
        pass

    def get_device_properties(self, device):
        return dict(_SM90)

    def get_current_device(self):
        return 0

    def set_current_device(self, device):
        pass

    def get_device_capability(self, device):
        return (9, 0)

    def get_default_stream(self, device):
        return 0

    def is_stream_capturing(self, stream):
        return False

    def set_printf_fifo_size(self, size):
        pass


def _no_bad_target(arg_names):
    """``first_bad_target``'s kernel: the answer "none" (index N), which the host reads back."""
    out, n = arg_names.index("out_ptr"), arg_names.index("N")

    def emulate(args):
        args[out].numpy()[0] = args[n]
    return emulate


# kernels whose result the host downloads to decide what to do next: their "all is well"
# answer is written into the buffer (cheaply: it is no cost a GPU's host would pay), so a
# step goes on as it would with good input
_EMULATED = {"_first_bad_target_kernel": _no_bad_target}

# a launcher's arguments: grid x/y/z, stream, function, packed metadata, launch metadata,
# enter and exit hooks, then the kernel's own arguments (every parameter, in order)
_FIXED_ARGS = 9


class _Launcher:
    """Made once per compiled kernel (``launcher_cls(src, metadata)``); a call launches nothing."""

    def __init__(self, src, metadata):
        fn = getattr(src, "fn", None)
        emulated = _EMULATED.get(getattr(fn, "__name__", ""))
        self.emulate = None if emulated is None else emulated(list(fn.arg_names))

    def __call__(self, *args):
        STATS["launches"] += 1
        if self.emulate is not None:
            self.emulate(args[_FIXED_ARGS:])


def _benchmarker(kernel_call, quantiles=None, **kwargs):
    """What the autotuner times a candidate with: one call (it compiles it, as on a GPU),
    and a fixed time for each, so the first candidate the prune hook keeps wins."""
    kernel_call()
    _benchmarker.calls += 1
    t = 1.0 + 1e-3 * _benchmarker.calls
    return [t, t, t] if quantiles else t


_benchmarker.calls = 0


def _driver_class():
    from triton.backends.compiler import GPUTarget
    from triton.backends.driver import DriverBase

    class NoopDriver(DriverBase):
        """An sm_90 target whose launches do nothing (see the module's docstring)."""

        def __init__(self):
            self.utils = _Utils()
            self.launcher_cls = _Launcher
            self.target = GPUTarget("cuda", 90, 32)

        @classmethod
        def is_active(cls):         # never picked by Triton on its own
            return False

        def get_current_target(self):
            return self.target

        def get_current_device(self):
            return 0

        def set_current_device(self, device):
            pass

        def get_current_stream(self, device=None):
            return 0

        def get_device_capability(self, device=None):
            return (9, 0)

        def get_active_torch_device(self):
            import torch
            return torch.device("cpu")

        def get_device_interface(self):
            import torch
            return torch.cpu

        def map_python_to_cpp_type(self, ty: str) -> str:
            from triton.backends.nvidia.driver import ty_to_cpp
            return ty_to_cpp(ty)

        def get_benchmarker(self):
            _benchmarker.calls = 0
            return _benchmarker

        def get_empty_cache_for_benchmark(self):
            import torch
            return torch.empty(16, dtype=torch.int32)

        def clear_cache(self, cache):
            pass

        def allocate_default_profile_scratch(self, size, alignment, stream):
            return None

        def assemble_tensormap_to_arg(self, tensormaps_info, args):
            return args

    return NoopDriver


def installed() -> bool:
    """True when this process runs device "cuda" on the no-op driver."""
    mod = sys.modules.get("triton.runtime.driver")
    return mod is not None and type(mod.driver._active).__name__ == "NoopDriver"


def install():
    """Make device "cuda" compile for sm_90 and launch nothing, for this process.

    Call it before device "cuda" is first used (before ``tritonnn.kernels`` is imported);
    it sets ``TRITONNN_NOOP_DRIVER=1``, which the kernels read when they load, and
    installs the driver with ``triton.runtime.driver.set_active``. It refuses to mix with
    the interpreter (``TRITONNN_INTERPRET``), whose kernels are not compiled at all.
    """
    if installed():
        return
    if interpreting() or os.environ.get("TRITON_INTERPRET", "") not in ("", "0"):
        raise RuntimeError("noop_driver.install: TRITONNN_INTERPRET / TRITON_INTERPRET is set; "
                           "the no-op driver runs the compiled path, so unset them first")
    if "tritonnn.kernels" in sys.modules:
        raise RuntimeError("noop_driver.install: device 'cuda' was already used in this "
                           "process; install the no-op driver before its first use")
    os.environ["TRITONNN_NOOP_DRIVER"] = "1"
    from triton.runtime import driver
    driver.set_active(_driver_class()())


def main(argv=None):
    """``python -m tritonnn.perf.noop_driver (-m module | script.py) [args...]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or (argv[0] == "-m" and len(argv) < 2):
        print(main.__doc__)
        return 2
    os.environ["TRITONNN_INTERPRET"] = "0"      # (a test suite's conftest would set it)
    install()
    atexit.register(lambda: print(f"no-op driver: {STATS['binaries']} kernel binaries loaded "
                                  f"(compiled, or from TRITON_CACHE_DIR), {STATS['launches']} "
                                  f"launches", file=sys.stderr))
    if argv[0] == "-m":
        sys.argv[:] = argv[1:]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv[:] = argv
        runpy.run_path(argv[0], run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
