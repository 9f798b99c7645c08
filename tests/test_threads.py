"""Threads: grad mode is per thread, and two threads training two models get the results of
the same runs done one after the other, bit for bit, on each device."""
import threading

import numpy as np
import pytest

import tritonnn as tn
import tritonnn.nn.functional as F


def _setup(device, seed):
    """A model, its optimizer and a dataset, made in the calling thread (the init draws from
    the global random stream, whose order is the main thread's).

    On "cpu" the layers are wide enough (256) that numpy releases the GIL inside the
    optimizer's passes, so the two threads really overlap there (with scratch arrays shared
    between threads this run differs from the sequential one); the interpreter is slow, so
    "cuda" trains a small model.
    """
    width, rows = (256, 128) if device == "cpu" else (12, 48)
    tn.manual_seed(seed)
    model = tn.nn.Sequential(tn.nn.Linear(width, width), tn.nn.ReLU(),
                             tn.nn.Linear(width, 3)).to(device)
    rng = np.random.default_rng(seed)
    x = tn.tensor(rng.standard_normal((rows, width)).astype(np.float32), device=device)
    y = tn.tensor(rng.integers(0, 3, rows), device=device)
    loader = tn.data.DataLoader(tn.data.TensorDataset(x, y), batch_size=16, shuffle=True,
                                seed=seed)
    opt = (tn.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, dampening=0.1,
                        weight_decay=1e-4) if seed % 2 else
           tn.optim.AdamW(model.parameters(), lr=1e-3))
    return model, opt, loader


def _train(model, opt, loader, epochs, out, barrier=None):
    try:
        losses = []
        for _ in range(epochs):
            for xb, yb in loader:
                if barrier is not None:
                    barrier.wait(timeout=120)     # keep the two threads in step
                loss = F.cross_entropy(model(xb), yb)
                opt.backward_step(loss)
                with tn.no_grad():                # a no_grad block in one thread, mid-training
                    losses.append(loss.item())
        out[:] = losses + [p.detach().numpy().copy() for p in model.parameters()]
    except BaseException as e:                    # reported by the test, not lost in a thread
        out[:] = [e]
        if barrier is not None:
            barrier.abort()


def test_two_threads_train_two_models_as_sequential_runs(device):
    epochs = 3 if device == "cpu" else 1
    sequential = []
    for seed in (1, 3):                          # two SGD runs: the same scratch arrays
        out = []
        _train(*_setup(device, seed), epochs, out)
        sequential.append(out)
    runs = [_setup(device, seed) for seed in (1, 3)]
    outs = [[], []]
    barrier = threading.Barrier(2)
    threads = [threading.Thread(target=_train, args=(*run, epochs, out, barrier))
               for run, out in zip(runs, outs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    for want, got in zip(sequential, outs):
        if got and isinstance(got[0], BaseException):
            raise got[0]
        assert len(got) == len(want)
        for a, b in zip(want, got):
            np.testing.assert_array_equal(np.asarray(b), np.asarray(a))


def test_grad_mode_is_per_thread():
    x = tn.tensor([1.0, 2.0], requires_grad=True)
    inside, started, done = {}, threading.Event(), threading.Event()

    def hold_no_grad():
        with tn.no_grad():
            started.set()
            done.wait(30)
            inside["other"] = (x * 2).requires_grad

    t = threading.Thread(target=hold_no_grad)
    t.start()
    started.wait(30)
    inside["main"] = (x * 2).requires_grad       # while the other thread is in no_grad
    done.set()
    t.join(30)
    assert inside == {"main": True, "other": False}
    assert tn.is_grad_enabled()
    fresh = {}
    with tn.no_grad():                            # a thread started inside no_grad records
        t = threading.Thread(target=lambda: fresh.setdefault("rg", (x * 2).requires_grad))
        t.start()
        t.join(30)
    assert fresh == {"rg": True}


def test_no_grad_decorates_bare_and_generators():
    x = tn.tensor([1.0, 2.0], requires_grad=True)

    @tn.no_grad
    def bare():
        return (x * 2).requires_grad

    @tn.no_grad()
    def steps():
        got = yield (x * 2).requires_grad
        yield (x * got).requires_grad

    gen = steps()
    first = next(gen)
    between = (x * 3).requires_grad              # the caller's code between steps records
    second = gen.send(4.0)
    assert (bare(), first, between, second) == (False, False, True, False)
    assert tn.is_grad_enabled()
    with pytest.raises(StopIteration):
        next(gen)
    with pytest.raises(tn.TritonnnError, match="no_grad"):
        tn.no_grad()(3)
