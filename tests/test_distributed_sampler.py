"""DistributedSampler (each rank its shard, as PyTorch), the other samplers, and a DataLoader
driven by a sampler: its batches, its length, its errors, and resuming it mid-epoch."""
import math
from collections import Counter

import numpy as np
import pytest

import tritonnn as tn
from tritonnn.data import (DataLoader, DistributedSampler, RandomSampler, Sampler,
                           SequentialSampler, TensorDataset)

SIZES = [0, 1, 2, 5, 7, 10, 16]
WORLDS = [1, 2, 3, 4, 7, 11]


def shards(n, world, **kwargs):
    """Every rank's indices of one epoch, rank 0 first."""
    return [list(DistributedSampler(range(n), num_replicas=world, rank=r, **kwargs))
            for r in range(world)]


def expected_num_samples(n, world, drop_last):
    """PyTorch's formula, written as it writes it."""
    if drop_last and n % world != 0:
        return math.ceil((n - world) / world)
    return math.ceil(n / world)


def interleave(parts):
    """The epoch's whole (padded or cut) order: position k of rank r is entry r + k * world."""
    world = len(parts)
    out = [None] * sum(map(len, parts))
    for r, part in enumerate(parts):
        out[r::world] = part
    return out


# -- the shards: sizes, coverage, padding --------------------------------------------------------


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("n", SIZES)
def test_shards_cover_the_dataset(n, world, drop_last, shuffle):
    parts = shards(n, world, drop_last=drop_last, shuffle=shuffle, seed=3)
    num = expected_num_samples(n, world, drop_last)
    sampler = DistributedSampler(range(n), num_replicas=world, rank=0, drop_last=drop_last)
    assert len(sampler) == sampler.num_samples == num
    assert sampler.total_size == num * world
    assert [len(p) for p in parts] == [num] * world            # every rank as many
    assert all(0 <= i < n for p in parts for i in p)
    whole = interleave(parts)
    if drop_last:
        # nothing repeated: disjoint shards, the tail of the order (fewer than `world`) dropped
        assert len(set(whole)) == len(whole) == n - n % world
    else:
        # every index at least once; the padding repeats the order from its start, cyclically
        assert set(whole) == set(range(n))
        assert whole == [whole[k % n] for k in range(len(whole))]
        counts = Counter(whole)
        assert sum(counts.values()) == n + (-n) % world
        if n % world == 0:
            assert all(c == 1 for c in counts.values())      # disjoint shards
    if not shuffle:
        assert whole == [k % n for k in range(len(whole))] if n else whole == []


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("n", SIZES + [23])
def test_unshuffled_shards_are_pytorchs(n, world, drop_last):
    torch = pytest.importorskip("torch")
    for rank in range(world):
        ours = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=False,
                                  drop_last=drop_last)
        theirs = torch.utils.data.DistributedSampler(range(n), num_replicas=world, rank=rank,
                                                     shuffle=False, drop_last=drop_last)
        assert list(ours) == list(theirs), (n, world, rank)
        assert len(ours) == len(theirs) and ours.total_size == theirs.total_size


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("world", [1, 3, 4, 11])
@pytest.mark.parametrize("n", [1, 7, 16, 23])
def test_shuffled_shards_have_pytorchs_structure(n, world, drop_last):
    """The permutations differ (numpy's generator, not torch's); the shard sizes, the set of
    indices an epoch holds and how many are repeated by padding do not."""
    torch = pytest.importorskip("torch")
    ours = shards(n, world, drop_last=drop_last, seed=5)
    theirs = [list(torch.utils.data.DistributedSampler(range(n), num_replicas=world, rank=r,
                                                       seed=5, drop_last=drop_last))
              for r in range(world)]
    assert [len(p) for p in ours] == [len(p) for p in theirs]
    whole_ours, whole_theirs = interleave(ours), interleave(theirs)
    if drop_last:
        assert len(set(whole_ours)) == len(set(whole_theirs)) == len(whole_ours)
    else:
        assert set(whole_ours) == set(whole_theirs) == set(range(n))
        # as many indices seen once, twice, ... in an epoch
        assert (sorted(Counter(whole_ours).values()) ==
                sorted(Counter(whole_theirs).values()))


def test_worked_example():
    # 10 samples over 4 ranks: 3 each, padded with indices 0 and 1 (PyTorch's layout)
    assert shards(10, 4, shuffle=False) == [[0, 4, 8], [1, 5, 9], [2, 6, 0], [3, 7, 1]]
    assert shards(10, 4, shuffle=False, drop_last=True) == [[0, 4], [1, 5], [2, 6], [3, 7]]
    # more ranks than samples: the order repeats as often as needed
    assert shards(2, 5, shuffle=False) == [[0], [1], [0], [1], [0]]
    assert shards(2, 5, shuffle=False, drop_last=True) == [[]] * 5
    assert shards(0, 3) == [[], [], []]


# -- the shuffled order: a function of (seed, epoch) alone ---------------------------------------


def full_order(n, world, seed, epoch):
    parts = []
    for r in range(world):
        s = DistributedSampler(range(n), num_replicas=world, rank=r, seed=seed)
        s.set_epoch(epoch)
        parts.append(list(s))
    return interleave(parts)


def test_order_is_the_same_on_every_rank_and_changes_with_the_epoch():
    n, world = 24, 4
    first = full_order(n, world, seed=0, epoch=0)
    assert sorted(first) == list(range(n))          # 24 = 4 * 6: a permutation, no padding
    assert first != list(range(n))
    # another process (other instances, other global RNG states) computes the same
    np.random.seed(123)
    tn.manual_seed(99)
    assert full_order(n, world, seed=0, epoch=0) == first
    orders = [full_order(n, world, seed=0, epoch=e) for e in range(4)]
    assert orders[0] == first
    assert all(sorted(o) == list(range(n)) for o in orders)
    assert len({tuple(o) for o in orders}) == 4
    assert full_order(n, world, seed=1, epoch=0) != first


def test_set_epoch_is_what_changes_the_order():
    s = DistributedSampler(range(20), num_replicas=2, rank=1, seed=7)
    a, b = list(s), list(s)
    assert a == b                                   # no set_epoch: the same order again
    s.set_epoch(3)
    c = list(s)
    assert c != a and s.epoch == 3
    s.set_epoch(0)
    assert list(s) == a
    # the documented seeding: numpy's Generator on SeedSequence([seed, epoch])
    perm = np.random.default_rng(np.random.SeedSequence([7, 3])).permutation(20)
    assert c == perm[1::2].tolist()


def test_unshuffled_ignores_seed_and_epoch():
    s = DistributedSampler(range(9), num_replicas=2, rank=0, shuffle=False, seed=11)
    s.set_epoch(5)
    assert list(s) == [0, 2, 4, 6, 8]


# -- arguments ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, exc, pattern", [
    ({"num_replicas": 4, "rank": 4}, tn.IndexOutOfRange,
     r"rank must be in \[0, 4\) for num_replicas=4, got 4"),
    ({"num_replicas": 4, "rank": -1}, tn.IndexOutOfRange, r"rank must be in \[0, 4\).*got -1"),
    ({"num_replicas": 0, "rank": 0}, tn.TritonnnError, r"num_replicas must be at least 1, got 0"),
    ({"num_replicas": -2, "rank": 0}, tn.TritonnnError, r"num_replicas must be at least 1, got -2"),
    ({"num_replicas": 2.0, "rank": 0}, tn.DTypeError, r"num_replicas must be an int, got 2\.0"),
    ({"num_replicas": 2, "rank": "1"}, tn.DTypeError, r"rank must be an int, got '1'"),
    ({"num_replicas": 2, "rank": True}, tn.DTypeError, r"rank must be an int, got True"),
    ({"num_replicas": 2, "rank": 0, "seed": 0.5}, tn.DTypeError, r"seed must be an int, got 0\.5"),
])
def test_bad_arguments_are_named(kwargs, exc, pattern):
    with pytest.raises(exc, match=r"^DistributedSampler: " + pattern):
        DistributedSampler(range(8), **kwargs)


def test_dataset_needs_a_length():
    with pytest.raises(tn.DTypeError, match=r"DistributedSampler: dataset must have __len__.*"
                                            r"got generator"):
        DistributedSampler((i for i in range(3)), num_replicas=1, rank=0)


def test_set_epoch_wants_an_int():
    s = DistributedSampler(range(4), num_replicas=1, rank=0)
    with pytest.raises(tn.DTypeError, match=r"DistributedSampler.set_epoch: epoch must be an int, "
                                            r"got 1\.0"):
        s.set_epoch(1.0)
    assert s.epoch == 0


def test_numpy_ints_are_accepted():
    s = DistributedSampler(range(10), num_replicas=np.int64(3), rank=np.int32(2), seed=np.uint8(1))
    assert (s.num_replicas, s.rank, s.seed) == (3, 2, 1) and type(s.rank) is int
    assert len(list(s)) == 4


def test_a_dataset_that_changed_size_is_refused():
    data = list(range(6))
    s = DistributedSampler(data, num_replicas=2, rank=0)
    data.append(6)
    with pytest.raises(tn.TritonnnError, match=r"had 6 samples when the sampler was made and "
                                               r"has 7 now"):
        list(s)


def test_defaults_need_an_initialized_tn_distributed(monkeypatch):
    import tritonnn.distributed as dist
    message = (r"^DistributedSampler: num_replicas and rank not given and tn.distributed is not "
               r"initialized; call tn.distributed.init\(\) first or pass them$")
    for kwargs in ({}, {"num_replicas": 2}, {"rank": 0}):
        with pytest.raises(tn.TritonnnError, match=message):
            DistributedSampler(range(8), **kwargs)
    # stand-ins for a process group: a world of 4 where we are rank 3
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "world_size", lambda: 4)
    monkeypatch.setattr(dist, "rank", lambda: 3)
    s = DistributedSampler(range(8), shuffle=False)
    assert (s.num_replicas, s.rank, list(s)) == (4, 3, [3, 7])
    s = DistributedSampler(range(8), rank=1, shuffle=False)        # one given, one looked up
    assert (s.num_replicas, s.rank, list(s)) == (4, 1, [1, 5])


# -- the other samplers ---------------------------------------------------------------------------


def test_sequential_sampler():
    s = SequentialSampler([10, 20, 30])
    assert isinstance(s, Sampler) and len(s) == 3 and list(s) == [0, 1, 2]
    assert list(SequentialSampler([])) == []


def test_random_sampler_passes():
    s = RandomSampler(range(12), seed=4)
    passes = [list(s) for _ in range(3)]
    assert all(sorted(p) == list(range(12)) for p in passes)
    assert len({tuple(p) for p in passes}) == 3 and s.epoch == 3
    s.set_epoch(1)
    assert list(s) == passes[1]
    assert passes[0] == np.random.default_rng(np.random.SeedSequence([4, 0])).permutation(12).tolist()
    tn.manual_seed(5)
    a = list(RandomSampler(range(12)))
    tn.manual_seed(5)
    assert list(RandomSampler(range(12))) == a
    with pytest.raises(tn.DTypeError, match=r"RandomSampler: seed must be an int, got 'x'"):
        RandomSampler(range(3), seed="x")


# -- a DataLoader with a sampler ----------------------------------------------------------------


def make_ds(n, device="cpu"):
    x = tn.tensor(np.arange(2 * n, dtype=np.float32).reshape(n, 2), device=device)
    return TensorDataset(x, tn.arange(n).to(device))


def batch_ids(loader):
    out = []
    for xb, yb in loader:
        ids = yb.tolist()
        np.testing.assert_array_equal(xb.numpy()[:, 0], 2 * np.array(ids, dtype=np.float32))
        out.append(ids)
    return out


@pytest.mark.parametrize("drop_last", [False, True])
def test_each_rank_loads_its_shard(device, drop_last):
    n, world, bs = 23, 3, 4
    seen = []
    for rank in range(world):
        sampler = DistributedSampler(make_ds(n, device), num_replicas=world, rank=rank, seed=2)
        loader = DataLoader(make_ds(n, device), batch_size=bs, sampler=sampler,
                            drop_last=drop_last)
        sampler.set_epoch(1)
        got = batch_ids(loader)
        shard = list(sampler)                           # 8 indices (23 padded to 24)
        assert len(shard) == 8
        want = [shard[k:k + bs] for k in range(0, 8, bs)]
        assert got == want and len(loader) == 2
        seen.extend(i for b in got for i in b)
    assert sorted(set(seen)) == list(range(n)) and len(seen) == 24


def test_loader_over_a_custom_dataset_follows_the_sampler():
    items = [{"id": i} for i in range(7)]
    loader = DataLoader(items, batch_size=2, sampler=[6, 0, 3, 3, 5])
    assert len(loader) == 3
    assert [b["id"].tolist() for b in loader] == [[6, 0], [3, 3], [5]]
    loader = DataLoader(items, batch_size=2, sampler=[6, 0, 3, 3, 5], drop_last=True)
    assert len(loader) == 2 and [b["id"].tolist() for b in loader] == [[6, 0], [3, 3]]


def test_order_is_taken_when_the_epoch_starts():
    ds = make_ds(12)
    sampler = DistributedSampler(ds, num_replicas=2, rank=0, seed=9)
    loader = DataLoader(ds, batch_size=6, sampler=sampler)
    it = iter(loader)                   # nothing read yet: set_epoch still counts
    sampler.set_epoch(4)
    assert [yb.tolist() for _, yb in it] == [list(sampler)]
    assert list(sampler) != list(DistributedSampler(ds, num_replicas=2, rank=0, seed=9))


def test_sampler_and_shuffle_exclude_each_other():
    with pytest.raises(tn.TritonnnError, match=r"DataLoader: sampler and shuffle=True exclude "
                                               r"each other"):
        DataLoader(make_ds(4), shuffle=True, sampler=SequentialSampler(range(4)))


@pytest.mark.parametrize("sampler, exc, pattern", [
    (True, tn.DTypeError, r"sampler must be an iterable of indices with __len__.*got True "
                          r"\(bool\) \(drop_last comes after sampler: pass it as drop_last=\)"),
    (3, tn.DTypeError, r"sampler must be an iterable of indices.*got 3 \(int\)$"),
    ((i for i in range(3)), tn.DTypeError, r"sampler must be .*\(generator\)"),
])
def test_what_is_not_a_sampler(sampler, exc, pattern):
    with pytest.raises(exc, match=r"^DataLoader: " + pattern):
        DataLoader(make_ds(4), 2, False, sampler)


class Lying(Sampler):
    def __iter__(self):
        return iter([0, 1, 2])

    def __len__(self):
        return 4


class BadLength(Sampler):
    def __iter__(self):
        return iter([])

    def __len__(self):
        return -1


@pytest.mark.parametrize("sampler, exc, pattern", [
    ([0, 1, 9], tn.IndexOutOfRange, r"the sampler gave index 9 at position 2; the dataset has 4 "
                                     r"samples \(indices in \[0, 4\)\)"),
    ([0, -1], tn.IndexOutOfRange, r"the sampler gave index -1 at position 1"),
    ([0, 1.0], tn.DTypeError, r"the sampler gave 1\.0 \(float\) at position 1; indices must be "
                              r"ints"),
    ([2, True], tn.DTypeError, r"the sampler gave True \(bool\) at position 1"),
    ([np.bool_(False)], tn.DTypeError, r"the sampler gave np.False_ \(bool\) at position 0"),
    ([1, [2, 3]], tn.DTypeError, r"the sampler gave \[2, 3\] \(list\) at position 1"),
    ([None], tn.DTypeError, r"the sampler gave None \(NoneType\) at position 0"),
    (Lying(), tn.TritonnnError, r"the sampler yielded 3 indices but its len\(\) is 4"),
])
def test_bad_indices_are_named(device, sampler, exc, pattern):
    loader = DataLoader(make_ds(4, device), batch_size=2, sampler=sampler)
    with pytest.raises(exc, match=r"^DataLoader: " + pattern):
        list(loader)
    assert loader.epoch == 0                # the epoch never began


def test_a_bad_length_is_named():
    with pytest.raises(tn.DTypeError, match=r"DataLoader: len\(sampler\) must give a "
                                            r"non-negative int"):
        DataLoader(make_ds(4), sampler=BadLength())


def test_numpy_indices_work_as_a_sampler():
    loader = DataLoader(make_ds(6), batch_size=4, sampler=np.array([5, 4, 0], dtype=np.uint8))
    assert batch_ids(loader) == [[5, 4, 0]]


# -- resuming a loader with a sampler ------------------------------------------------------------


def make_loader(rank, world=3, seed=17, bs=2, drop_last=False, n=19):
    ds = make_ds(n)
    sampler = DistributedSampler(ds, num_replicas=world, rank=rank, seed=seed)
    return DataLoader(ds, batch_size=bs, sampler=sampler, drop_last=drop_last, seed=1)


def run_epochs(loader, first_epoch, last_epoch, seen, stop=None):
    """Train-script style: set the sampler's epoch, then loop; stop after `stop` batches."""
    for epoch in range(first_epoch, last_epoch):
        loader.sampler.set_epoch(epoch)
        for b in loader:
            seen.append(b[1].tolist())
            if len(seen) == stop:
                return True
    return False


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("rank", [0, 2])
def test_a_resumed_loader_with_a_sampler_yields_the_remaining_batches(rank, drop_last, tmp_path):
    epochs = 3
    straight = []
    run_epochs(make_loader(rank, drop_last=drop_last), 0, epochs, straight)
    per_epoch = len(make_loader(rank, drop_last=drop_last))     # 7 indices: 4 batches, or 3
    assert per_epoch == (3 if drop_last else 4) and len(straight) == epochs * per_epoch
    for stop in range(1, 2 * per_epoch + 1):
        loader, seen = make_loader(rank, drop_last=drop_last), []
        assert run_epochs(loader, 0, epochs, seen, stop)
        state = loader.state_dict()
        assert state["sampler"] is True and state["order"] is None
        if stop % 3 == 0:
            tn.save({"loader": state}, tmp_path / "l.safetensors")
            state = tn.load(tmp_path / "l.safetensors")["loader"]
        resumed = make_loader(rank, drop_last=drop_last)       # a fresh loader and sampler
        resumed.load_state_dict(state)
        rest = []
        run_epochs(resumed, state["epoch"], epochs, rest)
        assert seen + rest == straight, (rank, stop)


def test_resume_state_values():
    loader = make_loader(1)
    loader.sampler.set_epoch(0)
    it = iter(loader)
    next(it)
    assert loader.state_dict() == {"seed": 1, "epoch": 0, "batch": 1, "order": None,
                                   "samples": 19, "batch_size": 2, "shuffle": False,
                                   "drop_last": False, "sampler": True}
    list(it)
    assert loader.state_dict()["epoch"] == 1 and loader.state_dict()["batch"] == 0


def test_a_state_must_match_the_presence_of_a_sampler():
    with_sampler = make_loader(0)
    next(iter(with_sampler))
    state = with_sampler.state_dict()
    plain = DataLoader(make_ds(19), batch_size=2, seed=1)
    with pytest.raises(tn.TritonnnError, match=r"load_state_dict: the state is of a loader with a "
                                               r"sampler; this one has none"):
        plain.load_state_dict(state)
    next(iter(plain))
    old_style = plain.state_dict()                 # no "sampler" key: as states were before
    assert "sampler" not in old_style
    with pytest.raises(tn.TritonnnError, match=r"the state is of a loader without a sampler; this "
                                               r"one has one"):
        make_loader(0).load_state_dict(old_style)
    with pytest.raises(tn.DTypeError, match=r"load_state_dict: sampler must be a bool, got 1"):
        make_loader(0).load_state_dict({**state, "sampler": 1})
    with pytest.raises(tn.TritonnnError, match=r"order must be None at an epoch's start or for an "
                                               r"unshuffled loader"):
        make_loader(0).load_state_dict({**state, "order": tn.arange(19)})
    fresh = make_loader(0)
    fresh.load_state_dict(state)
    fresh.sampler.set_epoch(0)
    assert len(list(fresh)) == len(fresh) - 1      # the batch done is skipped
