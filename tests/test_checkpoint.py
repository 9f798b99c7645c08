"""Nested checkpoints (``tn.save``/``tn.load`` of structures), RNG and DataLoader state, resume.

A checkpoint is one plain safetensors file: tensors under dotted names, the structure
around them as JSON in the metadata. It round-trips every supported type exactly (int
keys, tuples, floats bit for bit), other readers see the tensors, and a hostile structure
is a clear error naming the file. A run resumed from a checkpoint in a fresh process ends
with the very parameters of an uninterrupted run.
"""
import json
import math
import os
import struct
import subprocess
import sys
import textwrap

import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tritonnn as tn
import tritonnn.io as tio
from conftest import skip_without_cuda

KEY = tio.STRUCTURE_KEY


def bits(x):
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def same(a, b, where="root"):
    """``a`` and ``b`` hold the same structure, types and values (tensors by value, dtype and
    shape; floats bit for bit); any mapping (a state_dict's OrderedDict) loads as a dict."""
    if isinstance(a, dict):
        assert type(b) is dict, f"{where}: {type(b).__name__} for a {type(a).__name__}"
    else:
        assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for k in a:
            assert type(k) is type(next(x for x in b if x == k)), f"{where}: key {k!r}"
            same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: {len(a)} != {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, tn.Tensor):
        assert (a.shape, a.dtype) == (b.shape, b.dtype), where
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy(), err_msg=where)
    elif isinstance(a, float):
        assert bits(a) == bits(b), f"{where}: {a!r} != {b!r} (bits)"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def header_of(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n])


def checkpoint(device):
    """A checkpoint with every supported kind of value, as a real training script makes one."""
    tn.manual_seed(0)
    model = tn.nn.Sequential(tn.nn.Linear(4, 3), tn.nn.ReLU(), tn.nn.Linear(3, 2)).to(device)
    nan_payload = struct.unpack("<d", struct.pack("<Q", 0xFFF8_0000_0000_0123))[0]
    return {
        "model": model.state_dict(),
        "optim": {"state": {0: {"step": 7, "exp_avg": tn.ones(4, 3, device=device)},
                            1: {"step": tn.tensor(7.0, device=device)}},
                  "param_groups": [{"params": [0, 1, 2, 3], "lr": 3e-4, "betas": (0.9, 0.999),
                                    "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False,
                                    "foreach": None, "name": "decay"}]},
        "step": 10,
        "floats": [0.1, -0.0, 1e-320, 1.7976931348623157e308, math.inf, -math.inf,
                   float("nan"), nan_payload],
        "ints": (0, -1, 2**63, -2**200, True, False),
        "text": ["", "ünï.😀", "a\0b", "{\"tensor\": \"x\"}"],
        "empty": ({}, [], ()),
        -3: {"": None, 0: tn.tensor([1, 2], dtype=tn.int32, device=device)},
        "dtypes": {str(dt): tn.tensor(np.arange(6).reshape(2, 3) % 2, dtype=dt, device=device)
                   for dt in (tn.float32, tn.float64, tn.float16, tn.bfloat16, tn.int64,
                              tn.uint8, tn.bool)},
        "scalar": tn.tensor(2.5, device=device),
        "view": tn.arange(12, device=device).reshape(3, 4).T,
    }


# ------------------------------------------------------------------------------------------------
# the round trip
# ------------------------------------------------------------------------------------------------

def test_structure_round_trips_exactly(tmp_path, device):
    ckpt = checkpoint(device)
    p = tmp_path / "ckpt.safetensors"
    tn.save(ckpt, p)
    back = tn.load(p, device=device)
    same(ckpt, back)
    assert back["model"]["0.weight"].device == tn.device(device)
    assert all(not t.requires_grad for t in back["model"].values())
    assert tio.load_metadata(p) == {}


def test_tensors_are_stored_under_dotted_names_other_readers_see(tmp_path):
    ckpt = checkpoint("cpu")
    p = tmp_path / "ckpt.safetensors"
    tn.save(ckpt, p, metadata={"run": "a", "epoch": "3"})
    names = {"model.0.weight", "model.0.bias", "model.2.weight", "model.2.bias",
             "optim.state.0.exp_avg", "optim.state.1.step", "-3.0", "scalar", "view"} | {
        f"dtypes.{dt}" for dt in ckpt["dtypes"]}
    for load_file in (safetensors.torch.load_file, safetensors.numpy.load_file):
        ref = load_file(str(p))
        assert set(ref) == names
    ref = safetensors.torch.load_file(str(p))
    np.testing.assert_array_equal(ref["model.0.weight"].numpy(),
                                  ckpt["model"]["0.weight"].numpy())
    assert ref["dtypes.bfloat16"].dtype == torch.bfloat16
    assert ref["view"].tolist() == ckpt["view"].tolist()
    # a torch model of the same architecture takes the model's part of the checkpoint
    twin = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    twin.load_state_dict({k[len("model."):]: v for k, v in ref.items() if k.startswith("model.")})
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    model = tn.nn.Sequential(tn.nn.Linear(4, 3), tn.nn.ReLU(), tn.nn.Linear(3, 2))
    model.load_state_dict(tn.load(p)["model"])
    np.testing.assert_allclose(twin(torch.from_numpy(x)).detach().numpy(),
                               model(tn.tensor(x)).detach().numpy(), rtol=1e-6, atol=1e-6)
    # the user's metadata round-trips beside the structure
    assert tio.load_metadata(p) == {"run": "a", "epoch": "3"}
    with safetensors.safe_open(str(p), "np") as f:
        meta = f.metadata()
    assert meta["run"] == "a" and json.loads(meta[KEY])["version"] == 1


def test_flat_state_dict_is_exactly_the_plain_file(tmp_path):
    """A dict of str -> tensor is written as before: no structure, names sorted, the header
    padded to 8 bytes, the data in name order."""
    sd = {"b": tn.tensor([1.0, 2.0]), "a.x": tn.tensor([[3]], dtype=tn.uint8)}
    p = tmp_path / "flat.safetensors"
    tn.save(sd, p)
    hdr = json.dumps({"a.x": {"dtype": "U8", "shape": [1, 1], "data_offsets": [0, 1]},
                      "b": {"dtype": "F32", "shape": [2], "data_offsets": [1, 9]}},
                     separators=(",", ":")).encode()
    hdr += b" " * (-len(hdr) % 8)
    want = struct.pack("<Q", len(hdr)) + hdr + b"\x03" + np.array([1, 2], np.float32).tobytes()
    assert p.read_bytes() == want
    back = tn.load(p)
    assert type(back) is dict and list(back) == ["a.x", "b"]


def test_the_structure_is_documented_json(tmp_path):
    p = tmp_path / "c.safetensors"
    tn.save({"w": tn.ones(1), 2: (1.5, None, math.nan), "l": [True, "s"]}, p)
    doc = json.loads(header_of(p)["__metadata__"][KEY])
    assert doc == {"version": 1, "root": {"dict": [
        ["w", {"tensor": "w"}],
        [2, {"tuple": [1.5, None, {"float": "0x7ff8000000000000"}]}],
        ["l", [True, "s"]]]}}


def test_a_list_or_tuple_at_the_top(tmp_path, device):
    for obj in ([tn.ones(2, device=device), {"a": 1}], (tn.zeros(1, device=device), [])):
        p = tmp_path / "top.safetensors"
        tn.save(obj, p)
        same(obj, tn.load(p, device=device))
    assert set(safetensors.numpy.load_file(str(p))) == {"0"}


def test_nesting_up_to_the_limit(tmp_path):
    deep = tn.ones(1)
    for i in range(tio.MAX_DEPTH):
        deep = {"k": deep} if i % 2 else [deep]
    p = tmp_path / "deep.safetensors"
    tn.save(deep, p)
    same(deep, tn.load(p))
    with pytest.raises(tn.TritonnnError, match=r"save: containers nest deeper than 64 levels"):
        tn.save([deep], p)


def test_a_nested_save_is_atomic_and_checked_first(tmp_path):
    p = tmp_path / "c.safetensors"
    tn.save({"old": tn.ones(2)}, p)
    before = p.read_bytes()
    looped = {"a": [1, 2]}
    looped["a"].append(looped)
    cases = [
        (looped, r"the dict at 'a.2' contains itself"),
        ({"a.b": tn.ones(1), "a": {"b": tn.zeros(1)}}, r"both be stored under the name 'a.b'"),
        ({1: tn.ones(1), "1": tn.zeros(1)}, r"both be stored under the name '1'"),
        ({"m": {"x": [1, 2**20000]}}, r"the int at 'm.x.1' has too many digits"),
        ({"s": ["ok", "bad\ud800"]}, r"the string at 's.1' is not valid Unicode"),
        ({"m": {"k\udc00": 1}}, r"key 'k\\udc00' in 'm' is not valid Unicode"),
        ({"w": tn.ones(1)}, None),         # with a reserved metadata key, below
    ]
    for obj, why in cases:
        if why is None:
            with pytest.raises(tn.TritonnnError, match=r"'tritonnn.structure' is reserved"):
                tn.save(obj, p, metadata={KEY: "{}"})
        else:
            with pytest.raises(tn.TritonnnError, match=r"^save: .*" + why + r".*nothing written"):
                tn.save(obj, p)
        assert p.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["c.safetensors"]


def test_a_checkpoint_saved_on_cpu_loads_on_cuda(tmp_path):
    skip_without_cuda()
    ckpt = checkpoint("cpu")
    p = tmp_path / "c.safetensors"
    tn.save(ckpt, p)
    back = tn.load(p, device="cuda")
    assert back["model"]["0.weight"].device == tn.device("cuda")
    same(ckpt["model"], {k: v.cpu() for k, v in back["model"].items()})
    same(ckpt["optim"]["param_groups"], back["optim"]["param_groups"])


# ------------------------------------------------------------------------------------------------
# hostile structures: a clear error naming the file, before any tensor is read
# ------------------------------------------------------------------------------------------------

def write(path, structure, tensors=None, version=1, raw=None):
    """A safetensors file written by safetensors itself, with ``structure`` as the root (or
    ``raw``, the metadata text, as is)."""
    tensors = {"w": np.ones(2, np.float32)} if tensors is None else tensors
    text = raw if raw is not None else json.dumps({"version": version, "root": structure})
    safetensors.numpy.save_file(tensors, str(path), metadata={KEY: text})
    return str(path)


def nest(depth):
    s = {"tensor": "w"}
    for _ in range(depth):
        s = [s]
    return s


HOSTILE = {
    "not_json": (None, "{'version': 1", r"is not valid JSON"),
    "json_too_deep_to_parse": (None, "[" * 100_000 + "]" * 100_000, r"is nested too deeply"),
    "deeper_than_the_limit": (nest(tio.MAX_DEPTH + 1), None,
                              r"nests containers deeper than 64 levels"),
    "not_an_object": (None, "[1, 2]", r"must be a JSON object with exactly 'version' and 'root'"),
    "extra_field": (None, '{"version": 1, "root": [], "x": 0}', r"exactly 'version' and 'root'"),
    "newer_version": (None, '{"version": 2, "root": []}', r"has version 2; this tritonnn reads "
                                                           r"version 1"),
    "bool_version": (None, '{"version": true, "root": []}', r"has version True"),
    "missing_tensor": ({"dict": [["a", {"tensor": "w"}], ["b", {"tensor": "nope"}]]}, None,
                       r"refers to a tensor 'nope' that the file does not hold"),
    "tensor_named_by_a_number": ([{"tensor": 3}], None, r"refers to a tensor 3 that"),
    "tensor_twice": ([{"tensor": "w"}, {"tensor": "w"}], None, r"refers to the tensor 'w' twice"),
    "tensor_left_out": ([1, 2], None, r"does not place the tensor\(s\) 'w'"),
    "unknown_tag": ([{"tensor": "w"}, {"set": [1]}], None,
                    r"the object at the root\[1\] must have exactly one of the keys"),
    "two_tags": ({"tuple": [], "dict": []}, None, r"must have exactly one of the keys"),
    "dict_not_pairs": ({"dict": [["a", {"tensor": "w"}, 3]]}, None, r"a \[key, value\] pair"),
    "dict_body_not_a_list": ({"dict": {"a": 1}}, None, r"a list for 'tuple' and 'dict'"),
    "float_key": ({"dict": [[1.5, {"tensor": "w"}]]}, None, r"has a key 1.5; keys are str or int"),
    "bool_key": ({"dict": [[True, {"tensor": "w"}]]}, None, r"has a key True"),
    "duplicate_key": ({"dict": [[1, {"tensor": "w"}], [1, 2]]}, None, r"has the key 1 twice"),
    "bad_float_bits": ([{"tensor": "w"}, {"float": "nan"}], None,
                       r"must be '0x' and 16 lowercase hex digits, got 'nan'"),
    "bare_nan": (None, '{"version": 1, "root": [{"tensor": "w"}, NaN]}',
                 r"a NaN or infinity at the root\[1\] must be written as"),
    "huge_int": (None, '{"version": 1, "root": [{"tensor": "w"}, ' + "9" * 5000 + "]}",
                 r"is not valid JSON"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_structure_is_a_clear_error(tmp_path, name):
    structure, raw, why = HOSTILE[name]
    path = write(tmp_path / f"{name}.safetensors", structure, raw=raw)
    with pytest.raises(tn.TritonnnError, match=r"^load: .*not a valid safetensors file: its "
                                               r"checkpoint structure .*" + why) as info:
        tn.load(path)
    assert repr(path) in str(info.value)
    # safetensors itself reads the tensors; load_metadata gives the user's part
    assert set(safetensors.numpy.load_file(path)) == {"w"}
    assert tio.load_metadata(path) == {}


def test_hostile_structure_fails_before_any_tensor_is_read(tmp_path, monkeypatch):
    path = write(tmp_path / "h.safetensors", [{"tensor": "w"}, {"tensor": "gone"}])
    reads = []
    real = tio.np.empty
    monkeypatch.setattr(tio.np, "empty", lambda *a, **k: reads.append(a) or real(*a, **k))
    with pytest.raises(tn.TritonnnError, match="'gone'"):
        tn.load(path)
    assert reads == []


def test_structure_and_tensor_dtypes_are_any_the_file_holds(tmp_path):
    t = {"a": np.arange(3, dtype=np.int32), "b": np.ones((2, 2), dtype=ml_dtypes.bfloat16)}
    path = write(tmp_path / "ok.safetensors",
                 {"dict": [[0, {"tensor": "a"}], ["x", {"tuple": [{"tensor": "b"}, 0.5]}]]}, t)
    back = tn.load(path)
    assert list(back) == [0, "x"] and back[0].dtype is tn.int32
    assert back["x"][0].dtype is tn.bfloat16 and back["x"][1] == 0.5


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10) | st.floats(allow_nan=False) |
    st.sampled_from(["w", "tensor", "dict", "tuple", "float", "0x7ff8000000000000"]) |
    st.just({"tensor": "w"}),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
        st.sampled_from(["tensor", "dict", "tuple", "float", "x"]), kids, max_size=2) |
    st.lists(st.tuples(st.integers(-2, 2) | st.sampled_from(["a", "b"]), kids),
             max_size=3).map(lambda pairs: {"dict": [list(p) for p in pairs]}),
    max_leaves=12)


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(root=JSON, with_tensor=st.booleans())
def test_fuzz_structures_load_or_fail_clearly(tmp_path, root, with_tensor):
    """Any JSON as the structure, with or without a tensor "w" in the file: a load, or a
    TritonnnError naming the file."""
    path = write(tmp_path / "fuzz.safetensors", root,
                 {"w": np.ones(2, np.float32)} if with_tensor else {})
    try:
        back = tn.load(path)
    except tn.TritonnnError as e:
        assert str(path) in str(e)
        return
    OUTCOMES.add(type(back).__name__)
    # what loaded saves again to the same structure (unless two of its keys read alike)
    try:
        tn.save(back, tmp_path / "again.safetensors")
    except tn.TritonnnError as e:
        assert "both be stored under the name" in str(e) or "expected a dict, list" in str(e)
        return
    same(back, tn.load(tmp_path / "again.safetensors"))


OUTCOMES = set()


def test_fuzz_reached_good_loads():
    if not OUTCOMES:
        pytest.skip("run with the fuzz test")
    assert OUTCOMES & {"dict", "list", "tuple"}, OUTCOMES


VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5) |
    st.builds(lambda a: tn.tensor(np.asarray(a, np.float32)),
              st.lists(st.floats(width=32), max_size=3)),
    lambda kids: st.lists(kids, max_size=3) | st.tuples(kids, kids) |
    st.dictionaries(st.integers(-3, 3) | st.text(max_size=3), kids, max_size=3),
    max_leaves=15)


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(obj=st.lists(VALUES, max_size=3) | st.dictionaries(st.text(max_size=3), VALUES,
                                                          max_size=3))
def test_fuzz_round_trip(tmp_path, obj):
    p = tmp_path / "rt.safetensors"
    try:
        tn.save(obj, p)
    except tn.TritonnnError as e:      # keys like 1 and "1", or "a.b" beside "a" -> "b"
        assert "both be stored under the name" in str(e) or "not valid Unicode" in str(e), e
        return
    same(obj, tn.load(p))


# ------------------------------------------------------------------------------------------------
# the random stream's state
# ------------------------------------------------------------------------------------------------

def test_rng_state_replays_the_draws_that_followed(device, tmp_path):
    tn.manual_seed(3)
    tn.rand(5, device=device)
    state = tn.get_rng_state()
    assert state == {"seed": 3, "offset": 8}
    want = [tn.rand(7, device=device).numpy(), tn.randn(2, 3, device=device).numpy()]
    p = tmp_path / "rng.safetensors"
    tn.save({"rng": state}, p)
    tn.manual_seed(99)
    tn.rand(100)
    tn.set_rng_state(tn.load(p)["rng"])
    got = [tn.rand(7, device=device).numpy(), tn.randn(2, 3, device=device).numpy()]
    for w, g in zip(want, got):
        np.testing.assert_array_equal(w, g)
    assert tn.get_rng_state() == {"seed": 3, "offset": 8 + 8 + 8}
    tn.set_rng_state({"seed": 2**64 - 1, "offset": 0})
    assert tn.initial_seed() == 2**64 - 1


@pytest.mark.parametrize("state, error, why", [
    ((3, 0), tn.DTypeError, r"expected the dict get_rng_state\(\) returns .*got tuple"),
    ({"seed": 1}, tn.TritonnnError, r"expected exactly the keys 'seed' and 'offset'"),
    ({"seed": 1, "offset": 0, "x": 2}, tn.TritonnnError, r"exactly the keys"),
    ({"seed": 1.0, "offset": 0}, tn.DTypeError, r"seed must be an int, got float 1.0"),
    ({"seed": 1, "offset": True}, tn.DTypeError, r"offset must be an int, got bool"),
    ({"seed": -1, "offset": 0}, tn.TritonnnError, r"seed must be in \[0, 2\*\*64\), got -1"),
    ({"seed": 0, "offset": 2**64}, tn.TritonnnError, r"offset must be in \[0, 2\*\*64\)"),
])
def test_set_rng_state_refuses_what_get_rng_state_never_gives(state, error, why):
    tn.manual_seed(5)
    with pytest.raises(error, match=r"^set_rng_state: .*" + why):
        tn.set_rng_state(state)
    assert tn.get_rng_state() == {"seed": 5, "offset": 0}


# ------------------------------------------------------------------------------------------------
# DataLoader state: resume mid-epoch
# ------------------------------------------------------------------------------------------------

class Squares(tn.data.Dataset):
    """A plain dataset (no TensorDataset fast path): dict items."""

    def __len__(self):
        return 11

    def __getitem__(self, i):
        return {"x": float(i), "id": i}


def ids(batch):
    return batch["id"].tolist() if isinstance(batch, dict) else batch[1].tolist()


LOADERS = {
    "shuffled": lambda seed: tn.data.DataLoader(
        tn.data.TensorDataset(tn.arange(10).to(tn.float32), tn.arange(10)), batch_size=3,
        shuffle=True, seed=seed),
    "shuffled_drop_last": lambda seed: tn.data.DataLoader(
        tn.data.TensorDataset(tn.arange(10).to(tn.float32), tn.arange(10)), batch_size=3,
        shuffle=True, drop_last=True, seed=seed),
    "sequential": lambda seed: tn.data.DataLoader(
        tn.data.TensorDataset(tn.arange(10).to(tn.float32), tn.arange(10)), batch_size=4,
        seed=seed),
    "dataset_and_collate": lambda seed: tn.data.DataLoader(
        Squares(), batch_size=2, shuffle=True, seed=seed,
        collate_fn=lambda items: {"id": tn.tensor([it["id"] for it in items])}),
}


@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_a_resumed_loader_yields_what_an_uninterrupted_one_would(kind, tmp_path):
    make = LOADERS[kind]
    straight = make(7)
    n = len(straight)
    want = [ids(b) for _ in range(3) for b in straight]
    assert len(want) == 3 * n
    for stop in range(0, 2 * n + 1):           # every batch of two epochs, boundaries included
        loader, seen = make(7), []
        if stop:
            for _ in range(2):
                for b in loader:
                    seen.append(ids(b))
                    if len(seen) == stop:
                        break
                if len(seen) == stop:
                    break
        state = loader.state_dict()            # taken in the loop's body, after batch `stop`
        if stop % 5 == 1:                      # some go through a file
            tn.save({"loader": state}, tmp_path / "l.safetensors")
            state = tn.load(tmp_path / "l.safetensors")["loader"]
        resumed = make(12345)                  # another seed: the state brings its own
        resumed.load_state_dict(state)
        rest = [ids(b) for _ in range(3) for b in resumed]
        assert seen + rest[:len(want) - stop] == want, (kind, stop)


def test_loader_state_is_plain_values():
    loader = LOADERS["shuffled"](7)
    it = iter(loader)
    next(it)
    s = loader.state_dict()
    order = s.pop("order")
    assert s == {"seed": 7, "epoch": 0, "batch": 1, "samples": 10, "batch_size": 3,
                 "shuffle": True, "drop_last": False}
    assert order.dtype is tn.int64 and sorted(order.tolist()) == list(range(10))
    list(it)
    assert loader.state_dict() == {"seed": 7, "epoch": 1, "batch": 0, "order": None,
                                   "samples": 10, "batch_size": 3, "shuffle": True,
                                   "drop_last": False}


def _state(**changes):
    loader = LOADERS["shuffled"](7)
    it = iter(loader)
    next(it)
    s = loader.state_dict()
    s.update(changes)
    return s


@pytest.mark.parametrize("state, error, why", [
    ([1, 2], tn.DTypeError, r"expected the dict state_dict\(\) returns, got list"),
    ({"seed": 1}, tn.TritonnnError, r"expected the keys \['batch', "),
    (_state(samples=11), tn.TritonnnError, r"the state is of a loader over 11 samples in "
                                           r"batches of 3 .*this one is over 10"),
    (_state(shuffle=False), tn.TritonnnError, r"shuffle=False"),
    (_state(shuffle=1), tn.DTypeError, r"shuffle must be a bool, got 1"),
    (_state(batch=4), tn.TritonnnError, r"epoch 0 and batch 4 are out of range"),
    (_state(epoch=-1), tn.TritonnnError, r"epoch -1 and batch 1 are out of range"),
    (_state(seed="7"), tn.DTypeError, r"seed must be an int, got '7'"),
    (_state(order=None), tn.TritonnnError, r"order must be an integer tensor of shape \(10,\)"),
    (_state(order=tn.zeros(10)), tn.TritonnnError, r"order must be an integer tensor"),
    (_state(order=tn.arange(9)), tn.TritonnnError, r"of shape \(10,\)"),
    (_state(order=tn.tensor([0] * 10)), tn.TritonnnError, r"not a permutation of the 10"),
    (_state(order=tn.arange(10) - 1), tn.TritonnnError, r"not a permutation"),
    (_state(batch=0), tn.TritonnnError, r"order must be None at an epoch's start"),
])
def test_loader_refuses_a_state_it_cannot_continue(state, error, why):
    loader = LOADERS["shuffled"](7)
    before = [ids(b) for b in LOADERS["shuffled"](7)]
    with pytest.raises(error, match=r"^DataLoader.load_state_dict: .*" + why):
        loader.load_state_dict(state)
    assert [ids(b) for b in loader] == before           # left as it was


# ------------------------------------------------------------------------------------------------
# the resume test: k steps, a checkpoint, a fresh process for the rest == N steps straight
# ------------------------------------------------------------------------------------------------

# The training both processes run. Dropout joins the model once tn.nn.Dropout exists (another
# change adds it), and the optimizer's state joins the checkpoint once optimizers have
# state_dict(); until then the optimizer is plain SGD, which keeps no state, so the resumed
# run is still exact. Noise from tn.randn on every batch draws from the global stream either
# way, so the stream's state is always part of what must resume.
TRAINING = '''
import numpy as np
import tritonnn as tn
import tritonnn.nn.functional as F

HAS_DROPOUT = hasattr(tn.nn, "Dropout")
HAS_OPTIM_STATE = hasattr(tn.optim.SGD, "state_dict")


def build(device):
    tn.manual_seed(2024)
    layers = [tn.nn.Linear(6, 16), tn.nn.ReLU()]
    if HAS_DROPOUT:
        layers.append(tn.nn.Dropout(0.25))
    layers.append(tn.nn.Linear(16, 3))
    model = tn.nn.Sequential(*layers).to(device)
    if HAS_OPTIM_STATE:
        opt = tn.optim.AdamW(model.parameters(), lr=1e-2)
    else:
        opt = tn.optim.SGD(model.parameters(), lr=0.1)
    rng = np.random.default_rng(0)
    x = tn.tensor(rng.standard_normal((29, 6)).astype(np.float32), device=device)
    y = tn.tensor(rng.integers(0, 3, 29), device=device)
    loader = tn.data.DataLoader(tn.data.TensorDataset(x, y), batch_size=4, shuffle=True)
    return model, opt, loader


def train(model, opt, loader, steps):
    model.train()
    done = 0
    while done < steps:
        for xb, yb in loader:
            xb = xb + 0.05 * tn.randn(*xb.shape, device=xb.device)
            opt.backward_step(F.cross_entropy(model(xb), yb))
            done += 1
            if done == steps:
                return


def checkpoint(model, opt, loader, step):
    return {"model": model.state_dict(),
            "optim": opt.state_dict() if HAS_OPTIM_STATE else None,
            "rng": tn.get_rng_state(), "loader": loader.state_dict(), "step": step}


def resume(model, opt, loader, ckpt):
    model.load_state_dict(ckpt["model"])
    if HAS_OPTIM_STATE:
        opt.load_state_dict(ckpt["optim"])
    tn.set_rng_state(ckpt["rng"])
    loader.load_state_dict(ckpt["loader"])
    return ckpt["step"]
'''

RESUME = '''
import sys
import tritonnn as tn
from training import build, resume, train

ckpt_path, out_path, device, total = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
model, opt, loader = build(device)
step = resume(model, opt, loader, tn.load(ckpt_path, device=device))
train(model, opt, loader, total - step)
tn.save(model.state_dict(), out_path)
'''

# 8 batches an epoch (29 samples, 4 a batch): each run crosses an epoch's end


@pytest.fixture
def training(tmp_path, monkeypatch):
    (tmp_path / "training.py").write_text(TRAINING)
    (tmp_path / "resume.py").write_text(RESUME)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("training", None)
    import training as module
    yield module
    sys.modules.pop("training", None)


def params_bits(sd):
    return {k: v.detach().cpu().numpy().view(np.uint32).copy() for k, v in sd.items()}


# what TRAINING will use, shown in the test ids (e.g. "k11-no_dropout-no_optim_state")
_WITH = ("dropout" if hasattr(tn.nn, "Dropout") else "no_dropout") + "-" + (
    "optim_state" if hasattr(tn.optim.SGD, "state_dict") else "no_optim_state")


@pytest.mark.parametrize("device, k, total", [
    pytest.param("cpu", 11, 19, id=f"cpu-k11-{_WITH}"),      # mid-epoch
    pytest.param("cpu", 8, 19, id=f"cpu-k8-{_WITH}"),        # at an epoch's end
    pytest.param("cuda", 10, 12, id=f"cuda-k10-{_WITH}"),    # (interpreted: short)
])
def test_resume_in_a_fresh_process_is_bit_identical(training, tmp_path, device, k, total):
    """N steps straight == k steps, a checkpoint, and N - k steps in a new process, bit for bit.

    The model has Dropout when ``tn.nn.Dropout`` exists, and the checkpoint the optimizer's
    state when optimizers have ``state_dict()`` (see TRAINING; until then SGD without
    momentum, which has none); the test ids say which ran.
    """
    if device == "cuda":
        skip_without_cuda()
    model, opt, loader = training.build(device)
    training.train(model, opt, loader, total)
    straight = params_bits(model.state_dict())

    model, opt, loader = training.build(device)
    training.train(model, opt, loader, k)
    at_k = params_bits(model.state_dict())
    ckpt = tmp_path / "ckpt.safetensors"
    tn.save(training.checkpoint(model, opt, loader, k), ckpt)

    out = tmp_path / "resumed.safetensors"
    proc = subprocess.run([sys.executable, str(tmp_path / "resume.py"), str(ckpt), str(out),
                           device, str(total)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = params_bits(tn.load(out))
    assert sorted(resumed) == sorted(straight)
    for name in straight:
        np.testing.assert_array_equal(resumed[name], straight[name], err_msg=name)
        assert not np.array_equal(at_k[name], straight[name]), name   # it did train on

    if device != "cpu":
        return
    # the control: the same resume, but the stream left where building put it, goes elsewhere
    model, opt, loader = training.build(device)
    ckpt_values = tn.load(ckpt, device=device)
    ckpt_values["rng"] = tn.get_rng_state()
    step = training.resume(model, opt, loader, ckpt_values)
    training.train(model, opt, loader, total - step)
    assert any(not np.array_equal(v, straight[n])
               for n, v in params_bits(model.state_dict()).items())
