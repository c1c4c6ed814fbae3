"""DataLoader / ArrayDataset batching, shuffling and resuming; the synthetic dataset."""

import json
import pickle

import numpy as np
import pytest

import minires.backend as backend
from minires.data import ArrayDataset, DataLoader, make_blobs_images


def arrays(n):
    """inputs (n, 2) whose first column is the sample index; targets = index too."""
    idx = np.arange(n)
    return np.stack([idx, -idx], axis=1).astype(np.float32), idx.astype(np.int64)


def epoch(loader):
    return [(x.copy(), y.copy()) for x, y in loader]


def seen(batches):
    return np.concatenate([y for _, y in batches])


def add_noise(x, rng):
    return x + rng.normal(size=x.shape).astype(x.dtype)


@pytest.mark.parametrize(
    "n, batch_size, drop_last, sizes",
    [
        (10, 3, False, [3, 3, 3, 1]),
        (10, 3, True, [3, 3, 3]),
        (9, 3, False, [3, 3, 3]),
        (9, 3, True, [3, 3, 3]),
        (2, 5, False, [2]),
        (2, 5, True, []),
    ],
)
def test_batch_counts(n, batch_size, drop_last, sizes):
    loader = DataLoader(arrays(n), batch_size, drop_last=drop_last)
    assert len(loader) == len(sizes)
    batches = epoch(loader)
    assert [len(y) for _, y in batches] == sizes
    assert all(len(x) == len(y) for x, y in batches)


def test_without_shuffle_order_is_sequential():
    x, y = arrays(10)
    batches = epoch(DataLoader((x, y), 4))
    np.testing.assert_array_equal(seen(batches), y)
    np.testing.assert_array_equal(np.concatenate([b for b, _ in batches]), x)


def test_every_sample_once_per_epoch_and_pairs_kept():
    loader = DataLoader(arrays(103), 10, shuffle=True, seed=1)
    orders = []
    for _ in range(3):
        batches = epoch(loader)
        for x, y in batches:
            np.testing.assert_array_equal(x[:, 0], y)  # inputs stay with their targets
        order = seen(batches)
        assert sorted(order.tolist()) == list(range(103))
        orders.append(order)
    assert not np.array_equal(orders[0], orders[1])  # a fresh order each epoch
    assert not np.array_equal(orders[0], np.arange(103))
    assert loader.epoch == 3

    dropped = seen(epoch(DataLoader(arrays(103), 10, shuffle=True, drop_last=True, seed=1)))
    assert len(dropped) == 100 and len(set(dropped.tolist())) == 100


def test_same_seed_same_order():
    a = DataLoader(arrays(50), 7, shuffle=True, seed=42)
    b = DataLoader(arrays(50), 7, shuffle=True, seed=42)
    c = DataLoader(arrays(50), 7, shuffle=True, seed=43)
    for _ in range(2):
        ya, yb, yc = seen(epoch(a)), seen(epoch(b)), seen(epoch(c))
        np.testing.assert_array_equal(ya, yb)
        assert not np.array_equal(ya, yc)


def test_seed_none_follows_manual_seed():
    backend.manual_seed(7)
    a = seen(epoch(DataLoader(arrays(50), 8, shuffle=True)))
    backend.manual_seed(7)
    b = seen(epoch(DataLoader(arrays(50), 8, shuffle=True)))
    backend.manual_seed(8)
    c = seen(epoch(DataLoader(arrays(50), 8, shuffle=True)))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_transform_gets_whole_batches_and_a_generator():
    calls = []

    def transform(x, rng):
        calls.append((x.shape, type(rng)))
        return x * 0

    loader = DataLoader(arrays(10), 4, transform=transform, seed=0)
    batches = epoch(loader)
    assert calls == [((4, 2), np.random.Generator)] * 2 + [((2, 2), np.random.Generator)]
    assert all(np.all(x == 0) for x, _ in batches)
    np.testing.assert_array_equal(seen(batches), np.arange(10))  # targets untouched


def test_augmentation_is_reproducible_and_differs_between_epochs():
    a = DataLoader(arrays(20), 5, shuffle=True, transform=add_noise, seed=3)
    b = DataLoader(arrays(20), 5, shuffle=True, transform=add_noise, seed=3)
    ea1, ea2 = epoch(a), epoch(a)
    eb1 = epoch(b)
    for (xa, _), (xb, _) in zip(ea1, eb1, strict=True):
        np.testing.assert_array_equal(xa, xb)
    assert not np.array_equal(ea1[0][0] - ea1[0][1][:, None], ea2[0][0] - ea2[0][1][:, None])


@pytest.mark.parametrize("roundtrip", ["none", "pickle", "json"])
def test_state_dict_resumes_mid_epoch(roundtrip):
    def make(seed):
        return DataLoader(arrays(23), 4, shuffle=True, transform=add_noise, seed=seed)

    a = make(5)
    epoch(a)  # epoch 1
    it = iter(a)  # epoch 2: take two batches, then checkpoint
    next(it), next(it)
    state = a.state_dict()
    if roundtrip == "pickle":
        state = pickle.loads(pickle.dumps(state))
    elif roundtrip == "json":
        state = json.loads(json.dumps(state))
    rest = [(x.copy(), y.copy()) for x, y in it]
    following = epoch(a)  # epoch 3

    b = make(999)  # a different seed: everything must come from the state
    b.load_state_dict(state)
    assert b.epoch == 1
    resumed = epoch(b)
    assert b.epoch == 2
    assert len(resumed) == len(rest) == len(b) - 2
    for (xa, ya), (xb, yb) in zip(rest + following, resumed + epoch(b), strict=True):
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(xa, xb)


def test_state_dict_between_epochs_and_after_break():
    a = DataLoader(arrays(12), 4, shuffle=True, seed=1)
    epoch(a)
    state = a.state_dict()
    assert state["next_batch"] == 0
    for _ in a:  # consume every batch but break before the iterator finishes
        pass
    it = iter(a)
    for _ in range(len(a)):
        next(it)
    state_after = a.state_dict()  # all batches seen: the next epoch is a fresh one
    assert state_after["next_batch"] == 0 and state_after["epochs"] == 3
    expected = seen(epoch(a))

    b = DataLoader(arrays(12), 4, shuffle=True, seed=2)
    b.load_state_dict(state_after)
    np.testing.assert_array_equal(seen(epoch(b)), expected)

    c = DataLoader(arrays(12), 4, shuffle=True, seed=2)
    c.load_state_dict(state)  # saved after epoch 1: next is epoch 2
    epoch_2 = seen(epoch(c))
    d = DataLoader(arrays(12), 4, shuffle=True, seed=1)
    epoch(d)
    np.testing.assert_array_equal(epoch_2, seen(epoch(d)))


def test_load_state_dict_rejects_a_different_loader():
    state = DataLoader(arrays(12), 4, shuffle=True, seed=1).state_dict()
    with pytest.raises(ValueError, match="batch_size=4.*batch_size=3"):
        DataLoader(arrays(12), 3, shuffle=True).load_state_dict(state)
    with pytest.raises(ValueError, match="num_samples=12"):
        DataLoader(arrays(13), 4, shuffle=True).load_state_dict(state)


def test_two_epochs_at_once_is_an_error():
    loader = DataLoader(arrays(12), 4, shuffle=True, seed=0)
    first = iter(loader)
    next(first)
    second = iter(loader)
    next(second)
    with pytest.raises(RuntimeError, match="one epoch at a time"):
        next(first)


def test_custom_dataset_and_array_dataset():
    class Squares:
        def __len__(self):
            return 9

        def __getitem__(self, index):
            return np.asarray(index) ** 2, np.asarray(index)

    batches = epoch(DataLoader(Squares(), 4, shuffle=True, seed=0))
    assert sorted(seen(batches).tolist()) == list(range(9))
    for x, y in batches:
        np.testing.assert_array_equal(x, y**2)

    ds = ArrayDataset(*arrays(6))
    assert len(ds) == 6
    x, y = ds[np.array([4, 1])]
    np.testing.assert_array_equal(y, [4, 1])
    assert x.shape == (2, 2)
    assert "ArrayDataset" in repr(ds)


def test_bad_arguments():
    with pytest.raises(ValueError, match="same length.*5 inputs.*4 targets"):
        ArrayDataset(np.zeros((5, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="pair of arrays"):
        DataLoader((np.zeros(3),), 2)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        DataLoader(arrays(4), 2.0)
    with pytest.raises(ValueError, match="at least 1"):
        DataLoader(arrays(4), 0)
    with pytest.raises(TypeError, match="__len__ and __getitem__"):
        DataLoader(42, 2)
    with pytest.raises(TypeError, match="transform must be callable"):
        DataLoader(arrays(4), 2, transform="flip")


# --------------------------------------------------------------------------- synthetic


def test_blobs_shapes_balance_and_determinism():
    x, y = make_blobs_images(103, num_classes=4, channels=3, size=16, seed=0)
    assert x.shape == (103, 3, 16, 16) and x.dtype == np.float32
    assert y.shape == (103,) and y.dtype == np.int64
    counts = np.bincount(y, minlength=4)
    assert counts.max() - counts.min() <= 1
    backend.manual_seed(99)  # the global seed plays no part
    x2, y2 = make_blobs_images(103, num_classes=4, channels=3, size=16, seed=0)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    x3, _ = make_blobs_images(103, num_classes=4, channels=3, size=16, seed=1)
    assert not np.array_equal(x, x3)
    assert make_blobs_images(8, 2, 1, 8, dtype=np.float64)[0].dtype == np.float64


def test_blobs_are_learnable_and_seeds_share_the_task():
    # Nearest class mean, fitted on seed 0 and tested on seed 1, is already near perfect.
    x, y = make_blobs_images(400, num_classes=10, channels=3, size=16, seed=0)
    xt, yt = make_blobs_images(400, num_classes=10, channels=3, size=16, seed=1)
    means = np.stack([x[y == k].mean(0).ravel() for k in range(10)])
    dist = ((xt.reshape(len(xt), -1)[:, None] - means[None]) ** 2).sum(-1)
    assert (dist.argmin(1) == yt).mean() > 0.95


def test_blobs_bad_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        make_blobs_images(10, num_classes=1)
    with pytest.raises(ValueError, match="size"):
        make_blobs_images(10, size=4)
    with pytest.raises(TypeError, match="floating"):
        make_blobs_images(10, dtype=np.int8)
