"""Run by tests/test_direct_launch.py in a fresh process: device "cuda" on the no-op driver.

Prints one JSON object: what each launch handed Triton's launcher (the compiled binary, the
grid, every argument, tensors described by dtype, shape, strides and alignment) over a
workload run with direct launches and again through Triton's own path; the launch
counts; and the binaries loaded while AdamW's learning rate and step move through values
whose float bits are divisible by 16.
"""
import json
import sys

import numpy as np

from tritonnn.perf import noop_driver

noop_driver.install()

import tritonnn as tn  # noqa: E402
import tritonnn.nn.functional as F  # noqa: E402
from tritonnn.kernels import _launch  # noqa: E402

LAYERS, BATCH = (784, 256, 128, 10), 128      # bench_host_overhead's step: shares its compiles
RECORDS = []


def _describe(a):
    if hasattr(a, "data_ptr") and hasattr(a, "dtype"):
        return ["tensor", str(a.dtype), list(a.shape), list(a.stride()), a.data_ptr() % 16]
    if isinstance(a, float):
        return ["float", a.hex()]
    if type(a) is int and a >> 62 == 1:
        # a deferred-error claim, 2**62 | (launch number << 24) | site: the launch numbers of
        # the two runs differ by design (they keep counting), the site must not
        return ["claim", a & ((1 << 24) - 1)]
    return [type(a).__name__, repr(a)]


def _record(launcher_call):
    def call(self, *args):
        grid, function, kernel_args = args[:3], args[4], args[9:]
        RECORDS.append([function, list(grid),
                        [_describe(a) for a in kernel_args]])
        return launcher_call(self, *args)
    return call


noop_driver._Launcher.__call__ = _record(noop_driver._Launcher.__call__)


def model_and_batch(opt_name):
    tn.manual_seed(0)
    model = tn.nn.Sequential(tn.nn.Linear(LAYERS[0], LAYERS[1]), tn.nn.ReLU(),
                             tn.nn.Linear(LAYERS[1], LAYERS[2]), tn.nn.ReLU(),
                             tn.nn.Linear(LAYERS[2], LAYERS[3])).to("cuda")
    opt = (tn.optim.SGD(model.parameters(), lr=0.01, momentum=0.9) if opt_name == "sgd"
           else tn.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01))
    rng = np.random.default_rng(0)
    x = tn.tensor(rng.random((BATCH, LAYERS[0]), dtype=np.float32), device="cuda")
    y = tn.tensor(rng.integers(0, LAYERS[-1], BATCH), device="cuda")
    return model, opt, x, y


def step(model, opt, x, y):
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()


def workload():
    """MLP steps with both optimizers, and elementwise ops on aligned and misaligned views
    with scalars that Triton would specialise (1, 16) and that it must not (16.0 as bits)."""
    for name in ("sgd", "adamw"):
        parts = model_and_batch(name)
        for _ in range(3):
            step(*parts)
    base = tn.arange(48, dtype=tn.float32, device="cuda")
    for scalar in (1, 16, 3, 16.0, 0.5):
        for start in (0, 1, 4, 2, 8):           # 32 elements starting 0, 4, 16, 8, 32 bytes in
            base[start:start + 32] * scalar
        base[:16] + scalar, base[:17] + scalar, base[:1] + scalar


def run_counted(direct):
    """The workload's launcher records and launch counts, direct or through Triton's path."""
    _launch._DIRECT.clear()
    _launch.DIRECT_LAUNCH = direct
    RECORDS.clear()
    tn.cuda.reset_stats()
    workload()
    return list(RECORDS), tn.cuda.stats()["launches"]


def adamw_compiles():
    """Binaries loaded over AdamW steps whose lr (and so step size, bias corrections) take
    values with float bits divisible by 16, after one warm-up step."""
    model, opt, x, y = model_and_batch("adamw")
    step(model, opt, x, y)
    before = noop_driver.STATS["binaries"]
    for i, lr in enumerate([0.5, 0.25, 2.0 ** -4, 1.0, 1e-3, 16.0] * 10):
        for group in opt.param_groups:
            group["lr"] = lr
        step(model, opt, x, y)
    return noop_driver.STATS["binaries"] - before


def main():
    direct_records, direct_launches = run_counted(True)
    direct_kinds = sorted({type(launcher).__name__ for _, launcher in _launch._DIRECT.values()})
    stats = _launch.direct_stats()
    triton_records, triton_launches = run_counted(False)
    _launch.DIRECT_LAUNCH = True
    _launch._DIRECT.clear()
    compiles = adamw_compiles()
    json.dump({"same_launches": direct_records == triton_records,
               "first_difference": next(([i, a, b] for i, (a, b) in enumerate(
                   zip(direct_records, triton_records)) if a != b), None),
               "records": len(direct_records), "launches": [direct_launches, triton_launches],
               "direct_kinds": direct_kinds, "direct_stats": stats,
               "adamw_new_binaries": compiles}, sys.stdout)


if __name__ == "__main__":
    main()
