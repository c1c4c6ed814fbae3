"""Datasets held in arrays, and a batch iterator that can resume mid-epoch.

::

    loader = DataLoader((images, labels), batch_size=128, shuffle=True, seed=0,
                        transform=Compose([RandomCrop(32, padding=4), RandomHorizontalFlip()]))
    for epoch in range(epochs):
        for x, y in loader:  # x (128, 3, 32, 32), y (128,)
            ...
        checkpoint["loader"] = loader.state_dict()  # resume with load_state_dict()
"""

from __future__ import annotations

import copy
import math
import numbers

import numpy as np

from minires import backend
from minires.backend import get_array_module


class ArrayDataset:
    """A dataset of paired arrays: ``inputs`` (N, ...) and ``targets`` (N, ...).

    ``dataset[index]`` returns ``(inputs[index], targets[index])`` for an int, a slice or an
    integer index array (a batch).  The arrays may be NumPy or CuPy (then batches stay on
    the GPU).
    """

    def __init__(self, inputs, targets):
        if not hasattr(inputs, "shape") or not hasattr(targets, "shape"):
            raise TypeError(
                f"ArrayDataset expects two arrays, got {type(inputs).__name__} and "
                f"{type(targets).__name__}"
            )
        if len(inputs) != len(targets):
            raise ValueError(
                f"inputs and targets must have the same length (one target per input), got "
                f"{len(inputs)} inputs (shape {inputs.shape}) and {len(targets)} targets "
                f"(shape {targets.shape})"
            )
        self.inputs = inputs
        self.targets = targets

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index):
        if isinstance(index, np.ndarray):
            index = get_array_module(self.inputs).asarray(index)
        return self.inputs[index], self.targets[index]

    def __repr__(self):
        return (
            f"ArrayDataset(inputs {tuple(self.inputs.shape)} {self.inputs.dtype}, "
            f"targets {tuple(self.targets.shape)} {self.targets.dtype})"
        )


class DataLoader:
    """Iterate over a dataset in batches: each epoch yields ``(x_batch, y_batch)``.

    Args:
        dataset: a pair of arrays ``(inputs (N, ...), targets (N, ...))``, or any object
            with ``__len__`` and ``__getitem__(index_array) -> (x, y)`` (such as
            :class:`ArrayDataset`).
        batch_size: samples per batch (the last batch may be smaller).
        shuffle: visit the samples in a fresh random order every epoch.
        drop_last: leave out the last batch when it is smaller than ``batch_size``.
        transform: ``transform(x_batch, rng) -> x_batch`` applied to every input batch
            (e.g. :class:`minires.data.transforms.Compose`); ``rng`` is a NumPy Generator
            derived from the loader's seed, the epoch and the batch number.
        seed: seeds the loader's own ``np.random.Generator``; when None, a seed is drawn
            from :func:`minires.backend.rng` at construction, so :func:`minires.manual_seed`
            makes the run reproducible.

    ``len(loader)`` is the number of batches per epoch.  Each ``iter(loader)`` starts a new
    epoch; every sample appears exactly once per epoch (except those left out by
    ``drop_last``).  :meth:`state_dict` / :meth:`load_state_dict` save and restore the
    position, so a run resumed from a checkpoint sees exactly the same batches, augmentation
    included.  One epoch at a time: don't interleave two iterators of one loader.
    """

    def __init__(
        self,
        dataset,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        transform=None,
        seed=None,
    ):
        if isinstance(dataset, (tuple, list)):
            if len(dataset) != 2:
                raise ValueError(
                    f"DataLoader expects a dataset or a pair of arrays (inputs, targets), got "
                    f"a {type(dataset).__name__} of {len(dataset)} items"
                )
            dataset = ArrayDataset(*dataset)
        elif not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(
                "DataLoader expects a pair of arrays (inputs, targets) or a dataset with "
                f"__len__ and __getitem__, got {type(dataset).__name__}"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
            raise TypeError(f"batch_size must be an int, got {batch_size!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable as transform(x, rng), got {transform!r}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.transform = transform
        self.seed = int(backend.rng().integers(2**63)) if seed is None else seed
        self._rng = np.random.default_rng(self.seed)
        self._epochs = 0  # epochs begun
        self._epoch_start_state = None  # generator state before the current epoch's draws
        self._next_batch = None  # position in the current epoch; None between epochs
        self._resume_at = 0  # first batch of the next epoch begun (set by load_state_dict)

    def __len__(self) -> int:
        """Number of batches per epoch."""
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def epoch(self) -> int:
        """Number of epochs begun (1 during the first)."""
        return self._epochs

    def __iter__(self):
        n = len(self.dataset)
        self._epoch_start_state = copy.deepcopy(self._rng.bit_generator.state)
        order = self._rng.permutation(n) if self.shuffle else np.arange(n)
        augment_seed = int(self._rng.integers(2**63))
        self._epochs += 1
        start, self._resume_at = self._resume_at, 0
        self._next_batch = start
        return self._batches(order, augment_seed, start, self._epochs)

    def _batches(self, order, augment_seed, start, epoch):
        for b in range(start, len(self)):
            if self._epochs != epoch:
                raise RuntimeError(
                    "a new epoch of this DataLoader was begun while an older iterator was "
                    "still in use; iterate one epoch at a time"
                )
            x, y = self.dataset[order[b * self.batch_size : (b + 1) * self.batch_size]]
            if self.transform is not None:
                x = self.transform(x, np.random.default_rng([augment_seed, b]))
            self._next_batch = b + 1
            yield x, y
        if self._epochs == epoch:
            self._next_batch = None

    def state_dict(self) -> dict:
        """The loader's position, for a checkpoint (plain Python values, picklable).

        Taken between batches, it restores (with :meth:`load_state_dict`) to yield the rest
        of the current epoch, then the same epochs after it.
        """
        mid_epoch = self._next_batch is not None and self._next_batch < len(self)
        return {
            "rng_state": copy.deepcopy(
                self._epoch_start_state if mid_epoch else self._rng.bit_generator.state
            ),
            "epochs": self._epochs - 1 if mid_epoch else self._epochs,
            "next_batch": self._next_batch if mid_epoch else 0,
            "num_samples": len(self.dataset),
            "batch_size": self.batch_size,
            "shuffle": self.shuffle,
            "drop_last": self.drop_last,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a position saved by :meth:`state_dict`; the next ``iter()`` continues it.

        The loader must be built the same way (dataset length, batch size, shuffle,
        drop_last) as the one saved, otherwise ValueError.
        """
        for key in ("num_samples", "batch_size", "shuffle", "drop_last"):
            current = len(self.dataset) if key == "num_samples" else getattr(self, key)
            if state.get(key, current) != current:
                raise ValueError(
                    f"DataLoader state was saved with {key}={state[key]!r}, but this loader "
                    f"has {key}={current!r}; the batches would not match"
                )
        rng_state = state["rng_state"]
        expected = type(self._rng.bit_generator).__name__
        if rng_state.get("bit_generator") != expected:
            raise ValueError(
                f"DataLoader state holds a {rng_state.get('bit_generator')!r} generator state, "
                f"expected {expected!r}"
            )
        self._rng.bit_generator.state = copy.deepcopy(rng_state)
        self._epochs = int(state["epochs"])
        self._resume_at = int(state["next_batch"])
        self._next_batch = None
        self._epoch_start_state = None

    def __repr__(self):
        return (
            f"DataLoader({len(self.dataset)} samples, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last}, transform={self.transform!r})"
        )
