"""The embedded MNIST subset: integrity, split, normalisation, determinism."""

import hashlib
from pathlib import Path

import numpy as np
import pytest

import minires.backend as backend
from minires.data import mnist
from minires.data.mnist import (
    MNIST_CLASSES,
    MNIST_MEAN,
    MNIST_SHA256,
    MNIST_STD,
    load_mnist,
)

NPZ_PATH = Path(mnist.__file__).with_name(mnist.MNIST_FILE)
SHIPPED_SHA256 = "223a64f5c84f720ffc53027b253d4bfe6315a5dc3af7bfd2800ad78fc662177c"


@pytest.fixture
def clear_caches():
    mnist._load_raw.cache_clear()
    mnist._split_indices.cache_clear()
    yield
    mnist._load_raw.cache_clear()
    mnist._split_indices.cache_clear()


def test_shipped_npz_sha256():
    digest = hashlib.sha256(NPZ_PATH.read_bytes()).hexdigest()
    assert digest == SHIPPED_SHA256 == MNIST_SHA256
    assert MNIST_SHA256 in NPZ_PATH.with_name("DATA.md").read_text()


def test_npz_contents():
    with np.load(NPZ_PATH, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["images", "labels"]
        images, labels = npz["images"], npz["labels"]
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (5000,) and labels.dtype == np.int64
    assert np.bincount(labels).tolist() == [500] * 10
    assert images.max() == 255 and images.min() == 0


@pytest.mark.parametrize("split, per_class", [("train", 400), ("test", 100), ("all", 500)])
def test_split_sizes_and_stratification(split, per_class):
    x, y = load_mnist(split)
    assert x.shape == (10 * per_class, 1, 28, 28)
    assert y.shape == (10 * per_class,) and y.dtype == np.int64
    assert np.bincount(y, minlength=10).tolist() == [per_class] * 10
    assert len(MNIST_CLASSES) == 10


def test_splits_disjoint_and_cover_everything():
    train, test = mnist._split_indices()
    assert len(set(train.tolist())) == 4000 and len(set(test.tolist())) == 1000
    assert not set(train.tolist()) & set(test.tolist())
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(5000))
    # and by content: no training image reappears in the test split
    x_train, _ = load_mnist("train", normalize=False)
    x_test, _ = load_mnist("test", normalize=False)
    train_rows = {row.tobytes() for row in x_train.reshape(4000, -1)}
    assert not any(row.tobytes() in train_rows for row in x_test.reshape(1000, -1))


def test_prefixes_are_class_balanced():
    _, y = load_mnist("train")
    for k in (1, 7, 40):
        assert np.bincount(y[: 10 * k], minlength=10).tolist() == [k] * 10


def test_labels_match_images():
    # Ones have the least ink, zeros and eights among the most: labels are not shuffled.
    x, y = load_mnist("all", normalize=False)
    ink = np.array([x[y == c].mean() for c in range(10)])
    assert ink.argmin() == 1 and ink[0] > 1.5 * ink[1]


def test_split_does_not_depend_on_global_seed(clear_caches):
    x1, y1 = load_mnist("train")
    t1, _ = load_mnist("test")
    backend.manual_seed(12345)
    backend.rng().random(100)
    mnist._load_raw.cache_clear()
    mnist._split_indices.cache_clear()
    x2, y2 = load_mnist("train")
    t2, _ = load_mnist("test")
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(t1, t2)


def test_normalisation_constants_are_the_train_statistics():
    x, _ = load_mnist("train", normalize=False, dtype=np.float64)
    assert x.min() == 0.0 and x.max() == 1.0
    assert x.mean() == pytest.approx(MNIST_MEAN, abs=1e-7)
    assert x.std() == pytest.approx(MNIST_STD, abs=1e-7)
    z, _ = load_mnist("train", dtype=np.float64)
    assert abs(z.mean()) < 1e-6 and z.std() == pytest.approx(1.0, abs=1e-6)
    zt, _ = load_mnist("test")
    assert abs(zt.mean()) < 0.05 and zt.std() == pytest.approx(1.0, abs=0.05)


def test_dtype():
    assert load_mnist("test")[0].dtype == np.float32
    assert load_mnist("test", dtype=np.float64)[0].dtype == np.float64
    with backend.default_dtype(np.float64):
        assert load_mnist("test")[0].dtype == np.float64
    with pytest.raises(TypeError, match="floating dtype"):
        load_mnist("test", dtype=np.int32)


def test_bad_split():
    with pytest.raises(ValueError, match="'valid'.*'train', 'test', 'all'"):
        load_mnist("valid")


def test_returns_fresh_arrays():
    x, y = load_mnist("test")
    x[:] = 0
    y[:] = 0
    x2, y2 = load_mnist("test")
    assert x2.std() > 0.5 and y2.max() == 9


def test_corrupted_file_is_refused(monkeypatch, clear_caches):
    data = bytearray(NPZ_PATH.read_bytes())
    data[1000] ^= 0xFF
    monkeypatch.setattr(mnist, "_read_npz_bytes", lambda: bytes(data))
    with pytest.raises(ValueError, match="corrupted.*sha256.*rebuild"):
        load_mnist()


def test_missing_file_is_explained(monkeypatch, clear_caches):
    def missing():
        raise FileNotFoundError(mnist.MNIST_FILE)

    monkeypatch.setattr(mnist, "_read_npz_bytes", missing)
    with pytest.raises(FileNotFoundError, match="mnist_5k.npz is missing.*reinstall"):
        load_mnist()
