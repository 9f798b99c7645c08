"""``tn.cuda.graphed(fn)``: a training step captured once as a CUDA graph and replayed.

Three groups:
  fallback   on "cpu" and under Triton's interpreter ``step`` simply calls ``fn`` (same
             results as calling ``fn``), after checking the arguments make a key; bad input
             (a non-callable fn, bad options, an unhashable argument) is a tritonnn error.
  machinery  the warm-up / capture / replay bookkeeping, run under the interpreter with a
             stand-in for torch's CUDAGraph (``FakeGraphs``: a "capture" runs fn, a "replay"
             runs it again on the graph's input buffers and writes the results into the
             captured outputs). Pure functions only, so running fn at capture does no harm.
             Checks keys, input buffers, static outputs, limits and every refusal.
  gpu        the real thing (marker ``gpu``, skipped without a GPU): graphed training steps
             equal eager ones bit for bit over several steps with an lr schedule (SGD
             momentum and AdamW), per batch size; a step that waits for the device is
             refused; the replay's cost beside the eager step's.
"""
import os
import time

import numpy as np
import pytest

import tritonnn as tn
import tritonnn.nn.functional as F
from conftest import GPU_SUBSET_STALE, gpu_present, skip_without_cuda, skip_without_gpu


# ==============================================================================================
# fallback: cpu and the interpreter call fn
# ==============================================================================================


def _mlp(device, seed=0, sizes=(20, 16, 12, 5)):
    tn.manual_seed(seed)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [tn.nn.Linear(a, b), tn.nn.ReLU()]
    return tn.nn.Sequential(*layers[:-1]).to(device)


def _batches(device, n, rows=8, features=20, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    return [(tn.tensor(rng.standard_normal((rows, features)).astype(np.float32), device=device),
             tn.tensor(rng.integers(0, classes, rows), device=device)) for _ in range(n)]


def _trainer(model, opt):
    def train_step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return train_step


@pytest.mark.parametrize("opt_name", ["sgd", "adamw"])
def test_graphed_step_is_the_eager_step_on_cpu_and_interpreter(device, opt_name):
    """Five steps with a cosine schedule, graphed and not: the same losses and parameters."""
    results = []
    for wrap in (lambda f: f, tn.cuda.graphed):
        model = _mlp(device)
        opt = (tn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9) if opt_name == "sgd"
               else tn.optim.AdamW(model.parameters(), lr=0.01))
        sched = tn.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=5)
        step = wrap(_trainer(model, opt))
        losses = []
        for x, y in _batches(device, 5):
            losses.append(step(x, y).clone())
            sched.step()
        results.append(([v.item() for v in losses],
                        [p.detach().numpy() for p in model.parameters()]))
        if wrap is tn.cuda.graphed and not gpu_present():
            assert (step.graphs, step.replays) == (0, 0), "captured without a GPU"
    (eager_losses, eager_params), (graphed_losses, graphed_params) = results
    assert graphed_losses == eager_losses
    for a, b in zip(graphed_params, eager_params):
        np.testing.assert_array_equal(a, b)


def test_fallback_returns_what_fn_returns_and_passes_every_argument():
    seen = []

    def fn(x, scale, *, opts=None):
        seen.append((x, scale, opts))
        return {"out": x * scale, "extra": opts}

    step = tn.cuda.graphed(fn)
    x = tn.tensor([1.0, 2.0])
    for _ in range(4):
        out = step(x, 3, opts=("a", [1, 2]))
        assert out["extra"] == ("a", [1, 2])
        np.testing.assert_array_equal(out["out"].numpy(), [3.0, 6.0])
    assert len(seen) == 4 and all(s[0] is x and s[1] == 3 for s in seen)


def test_graphed_wraps_fn():
    def train_step(x):
        """Doc of the step."""
        return x

    step = tn.cuda.graphed(train_step, warmup=3, max_graphs=2)
    assert step.__name__ == "train_step" and step.__doc__ == "Doc of the step."
    assert step.__wrapped__ is train_step and (step.warmup, step.max_graphs) == (3, 2)
    assert "graphed(" in repr(step) and "train_step" in repr(step)
    assert tn.cuda.graphed(lambda x: x)(5) == 5          # a lambda, a plain value


@pytest.mark.parametrize("fn,kwargs,cls,pattern", [
    (3, {}, tn.DTypeError, r"cuda\.graphed: fn must be callable, got int 3"),
    (None, {}, tn.DTypeError, r"fn must be callable, got NoneType None"),
    ("step", {}, tn.DTypeError, r"fn must be callable, got str 'step'"),
    (print, {"warmup": 0}, tn.TritonnnError, r"warmup must be >= 1, got 0 \(kernels compile"),
    (print, {"warmup": -2}, tn.TritonnnError, r"warmup must be >= 1, got -2"),
    (print, {"warmup": 1.5}, tn.DTypeError, r"warmup must be an int, got float 1\.5"),
    (print, {"warmup": True}, tn.DTypeError, r"warmup must be an int, got bool True"),
    (print, {"max_graphs": -1}, tn.TritonnnError, r"max_graphs must be >= 0, got -1"),
    (print, {"max_graphs": "4"}, tn.DTypeError, r"max_graphs must be an int, got str '4'"),
])
def test_bad_arguments_are_refused(fn, kwargs, cls, pattern):
    with pytest.raises(cls, match=pattern):
        tn.cuda.graphed(fn, **kwargs)


def test_positional_options_are_refused():
    with pytest.raises(TypeError):
        tn.cuda.graphed(print, 2)


@pytest.mark.parametrize("call,pattern", [
    (lambda step, x: step(x, np.zeros(3)),
     r"args\[1\] is a ndarray array\(\[0\., 0\., 0\.\]\), neither a tensor nor hashable"),
    (lambda step, x: step(x, opts={"a": [1, {2}]}),
     r"kwargs\['opts'\]\['a'\]\[1\] is a set \{2\}, neither a tensor nor hashable"),
    (lambda step, x: step([x, [x, bytearray(b"ab")]]),
     r"args\[0\]\[1\]\[1\] is a bytearray"),
])
def test_unhashable_arguments_are_named(device, call, pattern):
    """A call's key holds its non-tensor arguments: one that cannot be hashed is refused on
    every device alike, naming where it sits."""
    calls = []
    step = tn.cuda.graphed(lambda *a, **k: calls.append(1))
    with pytest.raises(tn.DTypeError, match=pattern):
        call(step, tn.ones(2, device=device))
    assert not calls, "fn ran despite the refused key"


# ==============================================================================================
# machinery: warm-up, capture and replay with a stand-in graph, under the interpreter
# ==============================================================================================


class FakeGraphs:
    """Stands in for kernels.buffers' graph section: a capture runs fn once (a real capture
    records fn's kernels instead), a replay runs fn again on the graph's input buffers and
    writes its tensors into the outputs the capture returned (a real replay writes them in
    place). Counts what the machinery asked."""

    def __init__(self, monkeypatch):
        from tritonnn.kernels import buffers
        self.buffers, self.captures, self.replays, self.side = buffers, 0, 0, 0
        self.fail_with = None
        monkeypatch.setattr(buffers, "GRAPHS", True)
        monkeypatch.setattr(buffers, "on_side_stream", self.on_side_stream)
        monkeypatch.setattr(buffers, "capture", self.capture)
        monkeypatch.setattr(buffers, "replay", self.replay)

    def on_side_stream(self, fn, *args, **kwargs):
        self.side += 1
        return fn(*args, **kwargs)

    def capture(self, fn, *args, **kwargs):
        self.captures += 1
        if self.fail_with is not None:
            raise self.buffers.CaptureError(self.fail_with)
        result = fn(*args, **kwargs)
        return (fn, args, kwargs, result), result

    def replay(self, graph):
        self.replays += 1
        fn, args, kwargs, result = graph
        capturing = tn.cuda._CAPTURING[0]
        tn.cuda._CAPTURING[0] = True            # a real replay runs no Python: graphed fns
        try:                                    # called by fn do nothing of their own
            fresh = fn(*args, **kwargs)
        finally:
            tn.cuda._CAPTURING[0] = capturing
        _write_into(fresh, result)


def _write_into(fresh, target):
    if isinstance(fresh, tn.Tensor):
        target._backend.copy_(target._data, fresh._data)
    elif isinstance(fresh, (tuple, list)):
        for a, b in zip(fresh, target):
            _write_into(a, b)
    elif isinstance(fresh, dict):
        for k in fresh:
            _write_into(fresh[k], target[k])


@pytest.fixture
def fake(monkeypatch):
    skip_without_cuda()
    tn.zeros(1, device="cuda")                  # loads the kernels backend (and buffers)
    return FakeGraphs(monkeypatch)


def _cuda(values, dtype=tn.float32):
    return tn.tensor(np.asarray(values, dtype=np.float32), device="cuda").to(dtype)


def test_warm_up_then_capture_then_replays_into_static_outputs(fake):
    got = []

    def fn(x, y):
        got.append((x, y))
        return (x * y).sum(), x + y

    step = tn.cuda.graphed(fn)                  # warmup=2
    inputs = [(_cuda([1, 2, 3]), _cuda([4, 5, 6])), (_cuda([0, 1, 0]), _cuda([7, 8, 9])),
              (_cuda([2, 2, 2]), _cuda([1, 1, 1])), (_cuda([1, 0, 1]), _cuda([3, 3, 3])),
              (_cuda([-1, 1, 2]), _cuda([5, 6, 7]))]
    outs = []
    for k, (x, y) in enumerate(inputs):
        total, added = step(x, y)
        assert total.item() == float((x.numpy() * y.numpy()).sum()), f"call {k}"
        np.testing.assert_array_equal(added.numpy(), x.numpy() + y.numpy())
        outs.append((total, added, total._version[0]))
    # calls 1-2 eager on the capture stream with the caller's tensors; call 3 captures with
    # the graph's own input buffers and replays; calls 4-5 replay
    assert (fake.side, fake.captures, fake.replays) == (2, 1, 3)
    assert (step.graphs, step.replays) == (1, 3)
    assert got[0][0] is inputs[0][0] and got[1][1] is inputs[1][1]
    static = got[2]
    assert static[0] is not inputs[2][0] and all(g[0] is static[0] for g in got[2:])
    # the replays hand back the same tensors, overwritten (and their versions bumped)
    assert outs[2][0] is outs[3][0] is outs[4][0] and outs[3][1] is outs[4][1]
    assert outs[2][0].item() == float((inputs[4][0].numpy() * inputs[4][1].numpy()).sum())
    assert outs[2][2] < outs[3][2] < outs[4][2]
    assert outs[0][0] is not outs[2][0] and outs[2][0]._node is None   # cut from the tape


def test_each_key_warms_up_and_captures_alone_up_to_max_graphs(fake):
    step = tn.cuda.graphed(lambda x: x * 2, warmup=1, max_graphs=2)
    a, b, c = _cuda([1, 2]), _cuda([1, 2, 3]), _cuda([[1.0]])
    for x in (a, a, b, a, b, c, c, c):
        np.testing.assert_array_equal(step(x).numpy(), x.numpy() * 2)
    # a: warm-up, capture; b: warm-up, capture; c: eager forever (two graphs already)
    assert (step.graphs, fake.captures, fake.side) == (2, 2, 2)
    assert step.replays == 3                    # a: capture + 1, b: capture (each replays once)
    step.reset()
    assert step.graphs == 0
    step(c)                                     # c warms up now that the graphs are gone
    assert fake.side == 3


@pytest.mark.parametrize("variants,graphs", [
    ([2.0, 3.0, 2.0], 2),                       # another value: another key
    ([1, 1.0, True], 3),                        # equal but of other types: other keys
    ([None, None], 1),
])
def test_non_tensor_arguments_are_part_of_the_key(fake, variants, graphs):
    step = tn.cuda.graphed(lambda x, s: x * (2.0 if s is None else s), warmup=1)
    x = _cuda([1, 2])
    for s in variants:
        for _ in range(2):
            np.testing.assert_array_equal(step(x, s).numpy(),
                                          x.numpy() * (2.0 if s is None else s))
    assert step.graphs == graphs


def test_dtype_and_shape_are_part_of_the_key(fake):
    step = tn.cuda.graphed(lambda x: x + 1, warmup=1)
    for x in (_cuda([1, 2]), _cuda([1, 2], tn.bfloat16), _cuda([1, 2, 3]), _cuda([[1, 2]])):
        step(x)
        step(x)
    assert step.graphs == 4


def test_nested_arguments_and_keyword_order(fake):
    seen = []

    def fn(batch, *, scale, shift):
        seen.append(batch)
        x, (y, label) = batch["x"], batch["pair"]
        assert label == "tag"
        return {"out": x * scale + y + shift}

    step = tn.cuda.graphed(fn, warmup=1)
    for k in range(4):
        x, y = _cuda([k, 1]), _cuda([2, k])
        batch = {"x": x, "pair": (y, "tag")}
        out = step(batch, shift=1.0, scale=2) if k % 2 else step(batch, scale=2, shift=1.0)
        np.testing.assert_array_equal(out["out"].numpy(), x.numpy() * 2 + y.numpy() + 1)
    assert step.graphs == 1                     # keyword order does not make a new key
    static = seen[1]
    assert static["pair"][1] == "tag" and isinstance(static["pair"], tuple)
    assert static["x"] is not seen[0]["x"] and seen[3]["x"] is static["x"]


def test_a_step_without_kernels_is_never_captured(fake):
    """fn working on "cpu" tensors only launches nothing: it runs eagerly every time."""
    step = tn.cuda.graphed(lambda x: x * 2)
    x = tn.tensor([1.0, 2.0])
    for _ in range(5):
        np.testing.assert_array_equal(step(x).numpy(), [2.0, 4.0])
    assert (step.graphs, fake.captures) == (0, 0)


@pytest.mark.parametrize("body,pattern", [
    (lambda x: (x * 2).sum().item(),
     r"its last warm-up call waited for the device 1 time\(s\) \(item\(\), numpy\(\)"),
    (lambda x: x * tn.tensor([2.0], device="cuda"),
     r"its last warm-up call copied host data to the device 1 time\(s\)"),
    (lambda x: x * tn.rand(2, device="cuda"),
     r"its last warm-up call drew random numbers \(dropout"),
    (lambda x: F.dropout(x, 0.5, training=True),
     r"its last warm-up call drew random numbers"),
])
def test_what_a_replay_cannot_repeat_is_refused(fake, body, pattern):
    def fn(x):
        body(x)
        return x + 1

    step = tn.cuda.graphed(fn)
    x = _cuda([1, 2])
    step(x)
    step(x)
    with pytest.raises(tn.TritonnnError, match=r"cuda\.graphed\(.*fn\): cannot capture fn "
                                              r"as a CUDA graph: " + pattern):
        step(x)
    assert fake.captures == 0                   # refused before capturing anything
    step(x)                                     # the key warms up again, eagerly
    assert step.graphs == 0


def test_a_sync_seen_only_during_the_capture_is_refused(fake):
    calls = []

    def fn(x):
        calls.append(1)
        y = x * 2
        if len(calls) == 3:                     # the capture call
            y.numpy()
        return y

    step = tn.cuda.graphed(fn)
    x = _cuda([1, 2])
    step(x)
    step(x)
    with pytest.raises(tn.TritonnnError, match=r"the capture waited for the device 1 time"):
        step(x)
    assert step.graphs == 0


def test_torch_refusing_the_capture_is_a_tritonnn_error(fake):
    step = tn.cuda.graphed(lambda x: x + 1, warmup=1)
    x = _cuda([1, 2])
    step(x)
    fake.fail_with = "operation not permitted when stream is capturing"
    with pytest.raises(tn.TritonnnError, match=r"CUDA graph capture failed: operation not "
                                              r"permitted when stream is capturing\. A graphed "
                                              r"fn may not wait for the device"):
        step(x)
    fake.fail_with = None
    step(x)
    step(x)
    assert step.graphs == 1


def test_fn_errors_during_capture_pass_through(fake):
    calls = []

    def fn(x):
        calls.append(1)
        if len(calls) == 2:
            raise tn.ShapeError("fn: my own error")
        return x + 1

    step = tn.cuda.graphed(fn, warmup=1)
    x = _cuda([1, 2])
    step(x)
    with pytest.raises(tn.ShapeError, match="fn: my own error"):
        step(x)


@pytest.mark.parametrize("make,cls,pattern", [
    (lambda: (tn.tensor([1.0, 2.0]), _cuda([1, 2])), tn.DeviceError,
     r"args\[0\] is a cpu tensor \(2,\): a CUDA graph replays device work only"),
    (lambda: (_cuda([1, 2]).requires_grad_(), _cuda([1, 2])), tn.TritonnnError,
     r"args\[0\] \(2,\) requires grad: a graph reads its inputs from buffers of its own"),
])
def test_inputs_a_graph_cannot_take_are_refused(fake, make, cls, pattern):
    step = tn.cuda.graphed(lambda a, b: b * 2, warmup=1)
    a, b = make()
    step(a, b)
    with pytest.raises(cls, match=pattern):
        step(a, b)


@pytest.mark.parametrize("result,cls,pattern", [
    (lambda y: (y, 3), tn.DTypeError,
     r"the result\[1\] is a int 3: a value the host computed at capture"),
    (lambda y: {"loss": y, "cpu": tn.tensor([1.0])}, tn.DeviceError,
     r"the result\['cpu'\] is a cpu tensor"),
])
def test_outputs_a_replay_cannot_refresh_are_refused(fake, result, cls, pattern):
    step = tn.cuda.graphed(lambda x: result(x * 2), warmup=1)
    x = _cuda([1, 2])
    step(x)
    with pytest.raises(cls, match=pattern):
        step(x)


def test_a_graphed_fn_called_during_a_capture_runs_inside_it(fake):
    inner = tn.cuda.graphed(lambda x: x * 3, warmup=1)
    outer = tn.cuda.graphed(lambda x: inner(x) + 1, warmup=1)
    x = _cuda([1, 2])
    for _ in range(4):                          # outer: warm-up (inner warms up), capture
        np.testing.assert_array_equal(outer(x).numpy(), [4.0, 7.0])
    assert (outer.graphs, inner.graphs) == (1, 0)   # inner ran inside outer's capture
    assert (fake.side, fake.captures, fake.replays) == (2, 1, 3)


def test_gpu_subset_names_exist():
    """Every entry of conftest's GPU_SUBSET (the `gpu` marker's tests) names collected tests."""
    if not GPU_SUBSET_STALE:
        pytest.skip("checked when the whole suite is collected")
    stale = GPU_SUBSET_STALE[:-1]
    assert not stale, f"GPU_SUBSET entries that match no test (renamed?): {stale}"


# ==============================================================================================
# gpu: real CUDA graphs
# ==============================================================================================

MLP = (784, 256, 128, 10)


def _gpu_run(opt_name, graphed, batches, steps):
    """``steps`` training steps of the 784-256-128-10 MLP over ``batches`` (cycled) with a
    warm-up + cosine schedule moved outside the step: the losses and the final weights."""
    model = _mlp("cuda", seed=3, sizes=MLP)
    opt = (tn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
           if opt_name == "sgd" else tn.optim.AdamW(model.parameters(), lr=3e-3))
    sched = tn.optim.lr_scheduler.SequentialLR(
        opt, [tn.optim.lr_scheduler.LinearLR(opt, 0.2, 1.0, total_iters=3),
              tn.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)], milestones=[3])
    step = _trainer(model, opt)
    if graphed:
        step = tn.cuda.graphed(step)
    losses = []
    for k in range(steps):
        x, y = batches[k % len(batches)]
        losses.append(step(x, y).clone())       # the graph's loss is overwritten next step
        sched.step()
    return ([v.item() for v in losses], [p.detach().numpy() for p in model.parameters()],
            step)


@pytest.mark.gpu
@pytest.mark.parametrize("opt_name", ["sgd", "adamw"])
def test_gpu_graphed_training_matches_eager_bit_for_bit(opt_name):
    skip_without_gpu()
    batches = (_batches("cuda", 3, rows=128, features=784, classes=10, seed=1)
               + _batches("cuda", 2, rows=96, features=784, classes=10, seed=2))
    batches = [batches[0], batches[3], batches[1], batches[4], batches[2]]   # 128, 96, ...
    eager_losses, eager_params, _ = _gpu_run(opt_name, False, batches, 12)
    losses, params, step = _gpu_run(opt_name, True, batches, 12)
    assert step.graphs == 2, "one graph per batch size"
    assert step.replays >= 6
    assert losses == eager_losses
    for a, b in zip(params, eager_params):
        np.testing.assert_array_equal(a, b)


@pytest.mark.gpu
def test_gpu_a_step_that_waits_for_the_device_is_refused():
    skip_without_gpu()
    model = _mlp("cuda", sizes=MLP)
    opt = tn.optim.SGD(model.parameters(), lr=0.1)
    train = _trainer(model, opt)
    calls = []

    def logged(x, y):
        loss = train(x, y)
        calls.append(1)
        if len(calls) >= 3:
            print(loss.item())                  # a sync only from the capture call on
        return loss

    step = tn.cuda.graphed(logged)
    x, y = _batches("cuda", 1, rows=64, features=784, classes=10)[0]
    step(x, y)
    step(x, y)
    with pytest.raises(tn.TritonnnError, match=r"cuda\.graphed\(.*logged\): CUDA graph capture "
                                              r"failed: .*waited for the device 1 time"):
        step(x, y)
    step_sync = tn.cuda.graphed(lambda x, y: train(x, y).item())
    step_sync(x, y)
    step_sync(x, y)
    with pytest.raises(tn.TritonnnError, match=r"last warm-up call waited for the device"):
        step_sync(x, y)
    loss = train(x, y)                          # the device is fine after a refused capture
    assert np.isfinite(loss.item())


@pytest.mark.gpu
def test_gpu_replay_cost():
    """Host time per step, eager vs replayed, the device synchronized once per 50 steps; the
    numbers go to the log (and to $TRITONNN_REPORT_DIR/graph_replay.csv when set)."""
    skip_without_gpu()
    model = _mlp("cuda", sizes=MLP)
    opt = tn.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    eager = _trainer(model, opt)
    step = tn.cuda.graphed(eager)
    x, y = _batches("cuda", 1, rows=128, features=784, classes=10)[0]
    for _ in range(5):
        step(x, y)
        eager(x, y)
    tn.cuda.synchronize()
    n, rows = 50, []
    for name, fn in (("eager", eager), ("graphed", step), ("eager", eager), ("graphed", step)):
        t0 = time.perf_counter()
        for _ in range(n):
            fn(x, y)
        host = time.perf_counter() - t0
        tn.cuda.synchronize()
        rows.append((name, host / n * 1e6, (time.perf_counter() - t0) / n * 1e6))
    best = {name: min(r[2] for r in rows if r[0] == name) for name in ("eager", "graphed")}
    host = {name: min(r[1] for r in rows if r[0] == name) for name in ("eager", "graphed")}
    text = (f"graph replay, MLP 784-256-128-10 batch 128 SGD-momentum: eager {best['eager']:.1f} "
            f"us/step (host {host['eager']:.1f}), graphed {best['graphed']:.1f} us/step "
            f"(host {host['graphed']:.1f}), {best['eager'] / best['graphed']:.2f}x")
    print(text)
    out = os.environ.get("TRITONNN_REPORT_DIR")
    if out:
        with open(os.path.join(out, "graph_replay.csv"), "w") as f:
            f.write("mode,host_us_per_step,wall_us_per_step\n")
            f.writelines(f"{r[0]},{r[1]:.2f},{r[2]:.2f}\n" for r in rows)
    assert step.graphs == 1
    assert best["graphed"] <= best["eager"] * 1.1, text
