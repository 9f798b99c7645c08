"""DistributedSampler (each rank its shard, as PyTorch) and the other samplers."""
import math
import sys
import types
from collections import Counter

import numpy as np
import pytest

import tritonnn as tn
from tritonnn.data import DistributedSampler, RandomSampler, Sampler, SequentialSampler

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
    key = "tritonnn.distributed"
    monkeypatch.delitem(sys.modules, key, raising=False)
    message = (r"^DistributedSampler: num_replicas and rank not given and tn.distributed is not "
               r"initialized; call tn.distributed.init\(\) first or pass them$")
    for kwargs in ({}, {"num_replicas": 2}, {"rank": 0}):
        with pytest.raises(tn.TritonnnError, match=message):
            DistributedSampler(range(8), **kwargs)
    # a stand-in for tn.distributed: first not initialized, then a world of 4 where we are rank 3
    fake = types.SimpleNamespace(initialized=False, is_initialized=lambda: fake.initialized,
                                 world_size=lambda: 4, rank=lambda: 3)
    monkeypatch.setitem(sys.modules, key, fake)
    with pytest.raises(tn.TritonnnError, match=message):
        DistributedSampler(range(8))
    fake.initialized = True
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
