"""Data parallelism over torch.distributed (gloo, 2 local ranks): ``tn.distributed`` collectives,
``DistributedDataParallel`` and ``DistributedSampler``, against one process on the global batch;
failures end the job with an error naming the failed rank instead of hanging.

Each job runs ``tests/dist_worker.py`` in two processes, through torchrun or started by hand
with torchrun's environment; the ranks write what they saw and the test compares.
"""
import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import tritonnn as tn
import tritonnn.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import dist_worker as W  # noqa: E402

pytest.importorskip("torch.distributed")
WORKER = pathlib.Path(W.__file__)
ROOT = WORKER.parent.parent


def _env(dev, real_gpu=False):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    if dev == "cpu" or real_gpu:
        env.pop("TRITONNN_INTERPRET", None)
    else:
        env["TRITONNN_INTERPRET"] = "1"
    return env


def torchrun(out, dev, *phases, timeout=300, nproc=2, real_gpu=False):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={nproc}", str(WORKER), str(out), dev, *phases]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                       env=_env(dev, real_gpu))
    return r, time.monotonic() - t0


def by_hand(out, dev, *phases, timeout=90, env_extra=None):
    """Two ranks started without torchrun (so no launcher stops a rank for us)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    t0 = time.monotonic()
    for rank in range(2):
        env = _env(dev)
        env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), **(env_extra or {}))
        procs.append(subprocess.Popen([sys.executable, str(WORKER), str(out), dev, *phases],
                                      env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=timeout)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError(f"a rank still runs after {timeout} s: the job hangs")
    return [p.returncode for p in procs], outs, time.monotonic() - t0


def read(out, name, rank):
    doc = json.loads((out / f"{name}-{rank}.json").read_text())
    npz = out / f"{name}-{rank}.npz"
    arrs = dict(np.load(npz)) if npz.exists() else {}
    return doc, arrs


@pytest.fixture(scope="module")
def cpu_job(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp_cpu")
    r, _ = torchrun(out, "cpu", "collectives", "train_sgd", "train_adamw", "nosync", "unused",
                    "mismatch")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out


def _reference(arrs, batches, optimizer, x, y, dev="cpu"):
    """One process, the same initial weights, each step on the union of the ranks' batches."""
    model = W.build().to(dev)
    model.load_state_dict({k[len("init."):]: tn.tensor(v) for k, v in arrs.items()
                           if k.startswith("init.")})
    if optimizer == "sgd":
        opt = tn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    else:
        opt = tn.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)
    losses = []
    for epoch in range(len(batches[0])):
        per_rank = [b[epoch] for b in batches]
        for s in range(0, len(per_rank[0]), W.PER_RANK):
            rows = np.concatenate([b[s:s + W.PER_RANK] for b in per_rank])
            loss = F.cross_entropy(model(tn.tensor(x[rows], device=dev)),
                                   tn.tensor(y[rows], device=dev))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return W.arrays(model), losses


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_ddp_ranks_agree_bit_for_bit_and_match_one_process(cpu_job, optimizer):
    (d0, a0), (d1, a1) = read(cpu_job, f"train_{optimizer}", 0), read(cpu_job, f"train_{optimizer}", 1)
    # weights started different on each rank (seeded by rank): DDP broadcast rank 0's
    for k in a0:
        assert np.array_equal(a0[k], a1[k]), f"{k} differs between the ranks"
    # the sampler gave each rank its own half of every epoch
    for e0, e1 in zip(d0["batches"], d1["batches"]):
        assert sorted(e0 + e1) == list(range(W.N_SAMPLES))
    x, y = W.data()
    final, losses = _reference(a0, [d0["batches"], d1["batches"]], optimizer, x, y)
    for k, v in final.items():
        np.testing.assert_allclose(a0["final." + k], v, rtol=2e-5, atol=2e-6, err_msg=k)
    # each rank's loss is the mean over its half; their mean is the global batch's loss
    np.testing.assert_allclose((np.array(d0["losses"]) + np.array(d1["losses"])) / 2, losses,
                               rtol=1e-5, atol=1e-6)
    assert d0["buckets"] >= 3
    # the optimizer keeps the gradients in its flat buffer: every bucket starts its all-reduce
    # while the backward is still walking, straight on that buffer
    assert d0["overlapped"] == [d0["buckets"]] * len(d0["losses"]), d0["overlapped"]


def test_no_sync_accumulates_locally_then_averages_the_sum(cpu_job):
    (d0, a0), (d1, a1) = read(cpu_job, "nosync", 0), read(cpu_job, "nosync", 1)
    x, y = W.data()
    model = W.build()
    model.load_state_dict({k[5:]: tn.tensor(v) for k, v in a0.items() if k.startswith("init.")})
    rows = np.concatenate(d0["rows"] + d1["rows"])          # the global batch of 16
    F.cross_entropy(model(tn.tensor(x[rows])), tn.tensor(y[rows])).backward()
    for n, p in model.named_parameters():
        assert np.array_equal(a0["grad." + n], a1["grad." + n])
        np.testing.assert_allclose(a0["grad." + n], p.grad.numpy(), rtol=1e-5, atol=1e-7)
        # inside no_sync the ranks' gradients were their own
        assert not np.array_equal(a0["local." + n], a1["local." + n])


def test_a_parameter_unused_on_a_rank_counts_as_zero_there(cpu_job):
    (_, a0), (_, a1) = read(cpu_job, "unused", 0), read(cpu_job, "unused", 1)
    x, y = W.data()
    grads = []
    for rank, head in ((0, "a"), (1, "b")):     # each rank's own gradients, one process
        model = W.TwoHeads()
        model.load_state_dict({k[5:]: tn.tensor(v) for k, v in a0.items()
                               if k.startswith("init.")})
        rows = np.arange(4 * rank, 4 * rank + 4)
        F.cross_entropy(model(tn.tensor(x[rows]), head), tn.tensor(y[rows])).backward()
        grads.append({n: (p.grad.numpy() if p.grad is not None else 0 * p.detach().numpy())
                      for n, p in model.named_parameters()})
    for n in grads[0]:
        assert np.array_equal(a0["grad." + n], a1["grad." + n]), n
        np.testing.assert_allclose(a0["grad." + n], (grads[0][n] + grads[1][n]) / 2,
                                   rtol=1e-6, atol=1e-7, err_msg=n)
    assert np.abs(a0["grad.a.weight"]).max() > 0 and np.abs(a0["grad.b.weight"]).max() > 0


def test_the_wrapper_state_dict_is_pytorch_ddp_s(cpu_job):
    doc, _ = read(cpu_job, "unused", 0)
    assert doc["keys"] == ["module." + k for k in doc["model_keys"]]
    assert doc["reloaded_same"]


def test_mismatched_models_are_an_error_on_every_rank(cpu_job):
    for rank in range(2):
        doc, _ = read(cpu_job, "mismatch", rank)
        assert doc["error"] is not None
        assert "ranks wrap different models" in doc["error"]
        assert "'0.weight' (16, 8)" in doc["error"] and "(17, 8)" in doc["error"]


def test_collectives_in_place(cpu_job):
    for rank in range(2):
        doc, _ = read(cpu_job, "collectives", rank)
        assert doc["sum"] == [3.0, 10.0]
        assert doc["mean"] == [1.5, 3.0]
        assert doc["max"] == [2.0, 0.0]
        assert doc["bf16"] == [4.0, 4.0]
        m = np.arange(12, dtype=np.float32).reshape(3, 4) * (rank + 1)
        m[:, 1::2] = np.arange(12, dtype=np.float32).reshape(3, 4)[:, 1::2] * 3
        assert doc["strided"] == m.tolist()
        assert doc["broadcast"] == [1.0, 1.0]
        assert doc["async"] == [4.0]
        assert "op 'mean' needs a floating tensor" in doc["int_mean"]
        assert "src must be a rank in [0, 2)" in doc["bad_src"]


def test_ddp_on_interpreted_cuda(tmp_path):
    """The same DDP run on "cuda" (Triton's interpreter; gloo carries its CPU buffers)."""
    r, _ = torchrun(tmp_path, "cuda", "collectives", "train_sgd")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (d0, a0), (d1, a1) = read(tmp_path, "train_sgd", 0), read(tmp_path, "train_sgd", 1)
    for k in a0:
        assert np.array_equal(a0[k], a1[k]), k
    x, y = W.data()
    final, _ = _reference(a0, [d0["batches"], d1["batches"]], "sgd", x, y)
    for k, v in final.items():
        np.testing.assert_allclose(a0["final." + k], v, rtol=2e-5, atol=2e-6, err_msg=k)
    assert read(tmp_path, "collectives", 1)[0]["strided"][0] == [0.0, 3.0, 4.0, 9.0]


@pytest.mark.gpu
def test_one_process_nccl_job_trains_as_the_plain_loop(tmp_path):
    """On a GPU machine (one GPU): a one-rank NCCL job through torchrun. Its all-reduces
    average over one rank, so the weights are the plain loop's, bit for bit when the GEMM
    tiles are pinned (TRITONNN_AUTOTUNE=0, as gpu_check sets)."""
    from conftest import skip_without_gpu
    skip_without_gpu()
    r, took = torchrun(tmp_path, "cuda", "collectives", "train_sgd", nproc=1, real_gpu=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    doc, _ = read(tmp_path, "collectives", 0)
    assert doc["sum"] == [1.0, 0.0] and doc["mean"] == [1.0, 3.0] and doc["bf16"] == [1.5, 2.0]
    d0, a0 = read(tmp_path, "train_sgd", 0)
    assert d0["overlapped"] == [d0["buckets"]] * len(d0["losses"])
    x, y = W.data()
    final, losses = _reference(a0, [d0["batches"]], "sgd", x, y, dev="cuda")
    exact = os.environ.get("TRITONNN_AUTOTUNE") == "0"
    for k, v in final.items():
        if exact:
            assert np.array_equal(a0["final." + k], v), k
        else:
            np.testing.assert_allclose(a0["final." + k], v, rtol=1e-5, atol=1e-6, err_msg=k)
    print(f"one-rank NCCL job: {took:.1f} s with torchrun")


def test_a_rank_that_raises_stops_the_other_with_its_name(tmp_path):
    codes, outs, took = by_hand(tmp_path, "cpu", "fail_raise")
    assert codes[1] != 0 and "boom in rank 1's data" in outs[1]
    assert codes[0] != 0, outs[0]
    doc, _ = read(tmp_path, "fail_raise", 0)
    assert "rank 1 failed: ValueError: boom in rank 1's data at step 3" in doc["error"]
    assert "rank 0 of 2 stops here" in doc["error"]
    assert took < 60


def test_a_killed_rank_is_named_by_the_survivor(tmp_path):
    codes, outs, took = by_hand(tmp_path, "cpu", "fail_kill")
    assert codes[1] == -9
    assert codes[0] != 0, outs[0]
    doc, _ = read(tmp_path, "fail_kill", 0)
    assert "rank 1 (pid" in doc["error"] and "exited without raising" in doc["error"]
    assert "tn.distributed" in outs[0] or "DistributedError" in outs[0]
    assert took < 60


def test_a_silent_rank_times_out_instead_of_hanging(tmp_path):
    codes, outs, took = by_hand(tmp_path, "cpu", "fail_hang",
                                env_extra={"TRITONNN_DIST_TIMEOUT": "3"})
    assert codes[0] != 0, outs[0]
    doc, _ = read(tmp_path, "fail_hang", 0)
    assert "no answer within 3 s" in doc["error"], doc["error"]
    assert "rank 0 of 2 stops here" in doc["error"]


def test_a_killed_rank_ends_the_torchrun_job(tmp_path):
    r, took = torchrun(tmp_path, "cpu", "fail_kill", timeout=120)
    assert r.returncode != 0
    assert took < 60
    text = r.stdout + r.stderr
    assert "local_rank: 1" in text and "-9" in text, text[-3000:]


def test_before_init_collectives_are_a_clear_error():
    assert not tn.distributed.is_initialized()
    for call in (lambda: tn.distributed.rank(), lambda: tn.distributed.world_size(),
                 lambda: tn.distributed.barrier(),
                 lambda: tn.distributed.all_reduce(tn.tensor([1.0])),
                 lambda: tn.distributed.broadcast(tn.tensor([1.0])),
                 lambda: tn.nn.parallel.DistributedDataParallel(W.build())):
        with pytest.raises(tn.DistributedError, match="not initialized"):
            call()


def test_init_outside_torchrun_names_the_missing_variables(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(tn.DistributedError, match="lacks RANK, WORLD_SIZE, MASTER_ADDR, "
                                                  "MASTER_PORT.*torchrun"):
        tn.distributed.init()
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29999")
    with pytest.raises(tn.DistributedError, match="RANK=2 is not below WORLD_SIZE=2"):
        tn.distributed.init()


def test_a_ddp_state_dict_loads_into_the_plain_model_and_back():
    model = W.build()
    prefixed = {"module." + k: v for k, v in model.state_dict().items()}
    other = W.build()
    other.load_state_dict(prefixed)
    for k, v in model.state_dict().items():
        assert np.array_equal(other.state_dict()[k].numpy(), v.numpy())


def test_torch_ddp_checkpoints_load_here_and_ours_load_in_torch(tmp_path):
    """A PyTorch DDP state dict (``module.`` keys, saved with safetensors) loads into the plain
    tritonnn model; ours loads into a torch model with torch's own prefix helper."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file
    tmodel = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
                                 torch.nn.Linear(16, 16), torch.nn.ReLU(),
                                 torch.nn.Linear(16, 3))
    save_file({"module." + k: v.contiguous() for k, v in tmodel.state_dict().items()},
              str(tmp_path / "torch_ddp.safetensors"))
    mine = W.build()
    mine.load_state_dict(tn.load(tmp_path / "torch_ddp.safetensors"))
    for k, v in tmodel.state_dict().items():
        assert np.array_equal(mine.state_dict()[k].numpy(), v.numpy()), k
    tn.save({"module." + k: v for k, v in W.build().state_dict().items()},
            tmp_path / "ours.safetensors")
    from safetensors.torch import load_file
    state = load_file(str(tmp_path / "ours.safetensors"))
    torch.nn.modules.utils.consume_prefix_in_state_dict_if_present(state, "module.")
    tmodel.load_state_dict(state)


# -- the command line and the example under torchrun ----------------------------------------------


def _cli(tmp_path, *args, timeout=300):
    cmd = [sys.executable, "-m", "tritonnn.cli", "train", "--device", "cpu", "--epochs", "2",
           *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=tmp_path,
                          env=_env("cpu"))


def test_cli_nproc_2_trains_as_one_process_on_the_global_batch(tmp_path):
    """--batch-size is the global batch: each step's two shards together are the one-process
    run's batch, so the weights agree to float32 rounding; rank 0 alone logs and saves; a
    checkpoint taken mid-epoch resumes, under 2 processes, to the same weights bit for bit."""
    one = _cli(tmp_path, "--out", "one.safetensors")
    assert one.returncode == 0, one.stderr
    two = _cli(tmp_path, "--nproc", "2", "--out", "two.safetensors", "--checkpoint-every", "50",
               "--checkpoint", "ckpt.safetensors")
    assert two.returncode == 0, two.stdout + two.stderr
    assert "x 2 processes" in two.stdout
    assert two.stdout.count("saved the model") == 1
    assert two.stderr.count("epoch 2/2: train loss") == 1           # rank 0's lines only
    a, b = tn.load(tmp_path / "one.safetensors"), tn.load(tmp_path / "two.safetensors")
    for k in a:
        np.testing.assert_allclose(b[k].numpy(), a[k].numpy(), rtol=0, atol=1e-5, err_msg=k)
    # the last checkpoint is step 50 of 90 (45 batches an epoch): mid-epoch 2
    resumed = _cli(tmp_path, "--nproc", "2", "--out", "resumed.safetensors",
                   "--checkpoint-every", "50", "--resume", "ckpt.safetensors")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resumed from ckpt.safetensors at step 50" in resumed.stdout
    c = tn.load(tmp_path / "resumed.safetensors")
    for k in b:
        assert np.array_equal(c[k].numpy(), b[k].numpy()), k
    # a resume with another number of processes would not end where the run did
    other = _cli(tmp_path, "--out", "", "--checkpoint-every", "50",
                 "--resume", "ckpt.safetensors")
    assert other.returncode == 2
    assert "made with --nproc 2, this run has --nproc 1" in other.stderr


def test_cli_nproc_needs_a_batch_that_splits(tmp_path):
    r = _cli(tmp_path, "--nproc", "3", "--batch-size", "32", "--out", "")
    assert r.returncode == 2
    assert "argument --batch-size: the global batch must be a multiple of --nproc 3 (32)" \
        in r.stderr


def test_the_example_runs_unchanged_under_torchrun(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           str(ROOT / "examples" / "train_digits.py"), "--device", "cpu", "--epochs", "2",
           "--checkpoint", str(tmp_path / "ex.safetensors")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       env=_env("cpu"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.count("epoch  2/2: train loss") == 1
    assert "final test accuracy" in r.stdout and "2 processes" in r.stdout
    acc = float(r.stdout.split("final test accuracy ")[1].split("%")[0])
    assert acc > 85.0
    state = tn.load(tmp_path / "ex.safetensors")
    assert state["step"] == 90


def test_collectives_see_numpy_buffers_without_a_copy():
    """A "cpu" tensor reaches gloo as a torch view of its numpy memory (bfloat16 included)."""
    from tritonnn import collectives
    for dtype in (tn.float32, tn.float64, tn.bfloat16, tn.int64, tn.float16):
        t = tn.zeros(5, dtype=dtype)
        view = collectives.as_torch(t._data)
        assert view.data_ptr() == t._data.ctypes.data and view.numel() == 5
        view.fill_(3)
        assert t.float().tolist() == [3.0] * 5, dtype
