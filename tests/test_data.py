"""Datasets and the DataLoader: batching, epochs, shuffling, collation, errors."""
import numpy as np
import pytest

import tritonnn as tn
from tritonnn.data import DataLoader, Dataset, TensorDataset


def make_ds(n, feat=3):
    x = tn.tensor(np.arange(n * feat, dtype=np.float32).reshape(n, feat))
    y = tn.arange(n)
    return TensorDataset(x, y)


def epoch_ids(loader):
    """The sample ids of one epoch, in order (the label column holds each row's id)."""
    ids = []
    for xb, yb in loader:
        ids.extend(yb.tolist())
        # the features belong to the same rows as the labels
        np.testing.assert_array_equal(xb.numpy()[:, 0], np.array(yb.tolist()) * xb.shape[1])
    return ids


@pytest.mark.parametrize("n, bs", [(10, 3), (10, 5), (1, 4), (7, 7), (7, 1), (8, 3)])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
def test_batch_count_and_coverage(n, bs, drop_last, shuffle):
    loader = DataLoader(make_ds(n), batch_size=bs, shuffle=shuffle, drop_last=drop_last, seed=1)
    expected = n // bs if drop_last else -(-n // bs)
    assert len(loader) == expected
    batches = list(loader)
    assert len(batches) == expected
    sizes = [b[1].shape[0] for b in batches]
    if drop_last:
        assert all(s == bs for s in sizes)
    else:
        assert sizes == [bs] * (n // bs) + ([n % bs] if n % bs else [])
    ids = epoch_ids(loader)
    if drop_last:
        assert len(ids) == expected * bs and len(set(ids)) == len(ids)
        assert set(ids) <= set(range(n))
    else:
        assert sorted(ids) == list(range(n))          # every sample exactly once


def test_batch_shapes_and_dtypes():
    loader = DataLoader(make_ds(10, feat=4), batch_size=4)
    xb, yb = next(iter(loader))
    assert xb.shape == (4, 4) and xb.dtype is tn.float32
    assert yb.shape == (4,) and yb.dtype is tn.int64
    assert isinstance(next(iter(loader)), tuple)


def test_no_shuffle_is_sequential():
    loader = DataLoader(make_ds(9), batch_size=4)
    assert epoch_ids(loader) == list(range(9))
    assert epoch_ids(loader) == list(range(9))


def test_fresh_order_each_epoch():
    loader = DataLoader(make_ds(50), batch_size=8, shuffle=True, seed=3)
    orders = [epoch_ids(loader) for _ in range(4)]
    for o in orders:
        assert sorted(o) == list(range(50))
    assert all(orders[i] != orders[j] for i in range(4) for j in range(i + 1, 4))
    assert orders[0] != list(range(50))


def test_same_seed_same_orders():
    a = DataLoader(make_ds(30), batch_size=4, shuffle=True, seed=42)
    b = DataLoader(make_ds(30), batch_size=4, shuffle=True, seed=42)
    c = DataLoader(make_ds(30), batch_size=4, shuffle=True, seed=43)
    ea = [epoch_ids(a) for _ in range(3)]
    eb = [epoch_ids(b) for _ in range(3)]
    assert ea == eb
    assert epoch_ids(c) != ea[0]


def test_manual_seed_makes_shuffling_reproducible():
    def run():
        tn.manual_seed(7)
        loader = DataLoader(make_ds(30), batch_size=5, shuffle=True)
        return [epoch_ids(loader) for _ in range(2)]
    first, second = run(), run()
    assert first == second
    tn.manual_seed(8)
    other = DataLoader(make_ds(30), batch_size=5, shuffle=True)
    assert epoch_ids(other) != first[0]


class Squares(Dataset):
    """A custom dataset with tuple items: (features tensor, float target, int label)."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return tn.tensor([float(i), float(i) ** 2]), float(i) / 2, i % 3


def test_custom_dataset_collated_by_stacking():
    loader = DataLoader(Squares(7), batch_size=3)
    batches = list(loader)
    assert len(batches) == 3
    x, t, lbl = batches[0]
    assert x.shape == (3, 2) and x.dtype is tn.float32
    np.testing.assert_array_equal(x.numpy(), [[0, 0], [1, 1], [2, 4]])
    assert t.dtype is tn.float32 and t.tolist() == [0.0, 0.5, 1.0]
    assert lbl.dtype is tn.int64 and lbl.tolist() == [0, 1, 2]
    x_last, _, _ = batches[-1]
    assert x_last.shape == (1, 2) and x_last.tolist() == [[6.0, 36.0]]
    shuffled = DataLoader(Squares(7), batch_size=2, shuffle=True, seed=0)
    seen = sorted(int(v) for b in shuffled for v in b[0][:, 0].tolist())
    assert seen == list(range(7))


class Ragged(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return tn.zeros(i + 1), i


def test_items_of_different_shapes_raise():
    with pytest.raises(tn.ShapeError):
        list(DataLoader(Ragged(), batch_size=2))
    # batches of one item each are fine
    assert len(list(DataLoader(Ragged(), batch_size=1))) == 4


@pytest.mark.parametrize("bs", [0, -1, 2.5, True, None])
def test_bad_batch_size(bs):
    with pytest.raises(tn.TritonnnError):
        DataLoader(make_ds(4), batch_size=bs)


def test_tensor_dataset():
    ds = make_ds(5)
    assert len(ds) == 5
    x, y = ds[2]
    assert x.tolist() == [6.0, 7.0, 8.0] and y.item() == 2
    with pytest.raises(tn.ShapeError):
        TensorDataset(tn.zeros(3, 2), tn.zeros(4))
    with pytest.raises(tn.TritonnnError):
        TensorDataset()


def test_tensor_dataset_refuses_tensors_on_different_devices():
    from conftest import skip_without_cuda
    skip_without_cuda()
    with pytest.raises(tn.DeviceError, match=r"TensorDataset: .*cpu.*cuda"):
        tn.data.TensorDataset(tn.zeros(3, 2), tn.zeros(3, device="cuda"))


# -- collation: dict, nested and custom (collate_fn) ----------------------------------------------


class Items(Dataset):
    """``n`` items made by ``make(i)``."""

    def __init__(self, make, n=4):
        self.make, self.n = make, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.make(i)


def test_dict_items_batch_per_key_recursively():
    ds = Items(lambda i: {"x": tn.full((2,), float(i)), "meta": (i, {"name": f"s{i}"})})
    (batch,) = list(DataLoader(ds, batch_size=4))
    assert list(batch) == ["x", "meta"]
    assert batch["x"].shape == (4, 2) and batch["x"][:, 0].tolist() == [0.0, 1.0, 2.0, 3.0]
    ids, names = batch["meta"]
    assert ids.dtype is tn.int64 and ids.tolist() == [0, 1, 2, 3]
    assert names == {"name": ["s0", "s1", "s2", "s3"]}          # strings stay a list, as torch


def test_numpy_items_are_stacked():
    ds = Items(lambda i: np.full((3,), i, dtype=np.float32))
    (batch,) = list(DataLoader(ds, batch_size=4))
    assert batch.dtype is tn.float32 and batch.shape == (4, 3)
    assert batch[:, 0].tolist() == [0.0, 1.0, 2.0, 3.0]


@pytest.mark.parametrize("make, exc, pattern", [
    (lambda i: {"a": 1} if i == 0 else {"b": 1}, tn.TritonnnError, r"item has different keys"),
    (lambda i: (tn.zeros(2), 1) if i == 0 else (tn.zeros(2), None), tn.DTypeError,
     r"item\[1\] is None"),
    (lambda i: tn.zeros(2) if i == 0 else 3, tn.DTypeError, r"item differs in kind.*a tensor in one item, int in another"),
    (lambda i: {"x": object()}, tn.DTypeError, r"item\['x'\] is <object"),
    (lambda i: (1, 2) if i == 0 else (1,), tn.ShapeError, r"numbers of fields.*\[1, 2\]"),
])
def test_items_that_cannot_be_batched(make, exc, pattern):
    with pytest.raises(exc, match=r"DataLoader: .*" + pattern):
        list(DataLoader(Items(make), batch_size=2))


def test_collate_fn_gets_the_items_of_each_batch():
    seen = []

    def collate(items):
        seen.append(items)
        return len(items)

    ds = make_ds(5)
    assert list(DataLoader(ds, batch_size=2, collate_fn=collate)) == [2, 2, 1]
    # a TensorDataset's items reach a custom collate_fn as tuples of rows
    assert len(seen[0]) == 2 and isinstance(seen[0][0], tuple)
    assert seen[0][1][1].item() == 1
    # default_collate is public, so a custom collate_fn can build on it
    loader = DataLoader(ds, batch_size=2, collate_fn=lambda items: tn.data.default_collate(items)[1])
    assert [b.tolist() for b in loader] == [[0, 1], [2, 3], [4]]


@pytest.mark.parametrize("kwargs, exc, pattern", [
    ({"collate_fn": 3}, tn.DTypeError, r"collate_fn must be callable.*int"),
    ({"seed": 1.5}, tn.DTypeError, r"seed must be an int, got 1\.5"),
    ({"batch_size": "2"}, tn.DTypeError, r"batch_size must be an int, got '2'"),
    ({"batch_size": 0}, tn.TritonnnError, r"batch_size must be positive, got 0"),
])
def test_loader_arguments_checked(kwargs, exc, pattern):
    with pytest.raises(exc, match=r"DataLoader: " + pattern):
        DataLoader(make_ds(4), **kwargs)


def test_seed_may_be_a_numpy_int():
    a = DataLoader(make_ds(9), batch_size=3, shuffle=True, seed=np.int64(4))
    b = DataLoader(make_ds(9), batch_size=3, shuffle=True, seed=4)
    assert epoch_ids(a) == epoch_ids(b)


# -- samplers (DistributedSampler's own tests: tests/test_distributed_sampler.py) -----------------


def test_samplers_are_exported():
    for name in ("Sampler", "SequentialSampler", "RandomSampler", "DistributedSampler",
                 "Dataset", "TensorDataset", "DataLoader", "default_collate"):
        assert name in tn.data.__all__ and getattr(tn.data, name) is not None


def test_a_sequential_sampler_gives_the_default_order():
    ds = make_ds(11)
    plain = DataLoader(ds, batch_size=3)
    sampled = DataLoader(ds, batch_size=3, sampler=tn.data.SequentialSampler(ds))
    assert len(sampled) == len(plain) == 4
    assert epoch_ids(sampled) == epoch_ids(plain) == list(range(11))


def test_a_random_sampler_gives_a_new_permutation_each_epoch():
    ds = make_ds(20)
    loader = DataLoader(ds, batch_size=6, sampler=tn.data.RandomSampler(ds, seed=2), drop_last=True)
    assert len(loader) == 3
    first, second = epoch_ids(loader), epoch_ids(loader)
    assert len(first) == len(set(first)) == 18 and first != second
    perm = np.random.default_rng(np.random.SeedSequence([2, 1])).permutation(20)
    assert second == perm[:18].tolist()
