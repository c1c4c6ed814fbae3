"""Data augmentation and preprocessing on whole batches.

Every transform takes a batch ``x`` of shape (N, C, H, W) (NumPy or CuPy; the result stays
on the same device) and a NumPy ``np.random.Generator`` and returns a new batch::

    augment = Compose([RandomCrop(32, padding=4), RandomHorizontalFlip()])
    x = augment(x, rng)

There are no per-image Python loops: random choices are drawn for the whole batch at once
(on the CPU, from ``rng``, so a seed gives the same augmentation on either device) and
applied with array operations.  ``rng=None`` uses :func:`minires.backend.rng`.
:class:`minires.data.DataLoader` passes each batch its own generator, so augmentation is
reproducible and resumes exactly from a checkpoint.
"""

from __future__ import annotations

import numpy as np

from minires import backend
from minires.backend import get_array_module
from minires.kernels.geometry import pair


def _generator(rng) -> np.random.Generator:
    if rng is None:
        return backend.rng()
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator or None, got {type(rng).__name__}")
    return rng


def _check_batch(x, name: str) -> None:
    if getattr(x, "ndim", None) != 4:
        raise ValueError(
            f"{name} expects a batch of images of shape (N, C, H, W), got shape "
            f"{getattr(x, 'shape', type(x).__name__)}"
        )


class Normalize:
    """Standardise each channel: ``x[:, c] -> (x[:, c] - mean[c]) / std[c]``.

    Args:
        mean, std: one number per channel (sequences of length C), or single numbers used
            for every channel.

    Input (N, C, H, W); output the same shape, in ``x``'s dtype when it is floating (else
    the default dtype).  Deterministic: ``rng`` is accepted and ignored.
    """

    def __init__(self, mean, std):
        self.mean = np.atleast_1d(np.asarray(mean, dtype=np.float64))
        self.std = np.atleast_1d(np.asarray(std, dtype=np.float64))
        if self.mean.ndim != 1 or self.std.ndim != 1 or self.mean.shape != self.std.shape:
            raise ValueError(
                f"mean and std must be numbers or equal-length sequences (one per channel), "
                f"got shapes {self.mean.shape} and {self.std.shape}"
            )
        if np.any(self.std <= 0):
            raise ValueError(f"std must be positive, got {self.std.tolist()}")

    def __call__(self, x, rng=None):
        _check_batch(x, "Normalize")
        channels = len(self.mean)
        if channels != 1 and x.shape[1] != channels:
            raise ValueError(
                f"Normalize has {channels} channel means, but the batch has {x.shape[1]} "
                f"channels (shape {x.shape})"
            )
        xp = get_array_module(x)
        dtype = x.dtype if np.dtype(x.dtype).kind == "f" else backend.get_default_dtype()
        mean = xp.asarray(self.mean, dtype=dtype).reshape(1, -1, 1, 1)
        std = xp.asarray(self.std, dtype=dtype).reshape(1, -1, 1, 1)
        return (x.astype(dtype, copy=False) - mean) / std

    def __repr__(self):
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


class RandomCrop:
    """Pad each image by ``padding`` on every side, then crop a random ``size`` window.

    The CIFAR-10 augmentation of He et al. (2016) is ``RandomCrop(32, padding=4)``: each
    32x32 image is zero-padded to 40x40 and a 32x32 window is taken at a random offset
    (one of 9 x 9), independently per image.

    Args:
        size: output height and width (an int, or a pair ``(h, w)``).
        padding: pixels added on each side before cropping.
        fill: value of the padding (0; for normalised inputs 0 is the mean).

    Input (N, C, H, W); output (N, C, size_h, size_w), same dtype and device.
    """

    def __init__(self, size, padding: int = 0, fill: float = 0.0):
        self.size = pair(size, "size", 0)
        if min(self.size) < 1:
            raise ValueError(f"size must be positive, got {size!r}")
        self.padding = pair(padding, "padding", 0)
        self.fill = fill

    def __call__(self, x, rng=None):
        _check_batch(x, "RandomCrop")
        rng = _generator(rng)
        xp = get_array_module(x)
        n, c, h, w = x.shape
        ph, pw = self.padding
        if ph or pw:
            x = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=self.fill)
        th, tw = self.size
        if th > h + 2 * ph or tw > w + 2 * pw:
            raise ValueError(
                f"RandomCrop size {self.size} is larger than the padded images "
                f"({h + 2 * ph}, {w + 2 * pw}) (input {h}x{w}, padding {self.padding})"
            )
        top = rng.integers(0, h + 2 * ph - th + 1, size=n)
        left = rng.integers(0, w + 2 * pw - tw + 1, size=n)
        rows = xp.asarray(top)[:, None] + xp.arange(th)  # (N, th)
        cols = xp.asarray(left)[:, None] + xp.arange(tw)  # (N, tw)
        return x[
            xp.arange(n)[:, None, None, None],
            xp.arange(c)[None, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ]

    def __repr__(self):
        return f"RandomCrop(size={self.size}, padding={self.padding}, fill={self.fill})"


class RandomHorizontalFlip:
    """Mirror each image left-right with probability ``p``, independently per image.

    Input (N, C, H, W); output the same shape, dtype and device.
    """

    def __init__(self, p: float = 0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
        self.p = float(p)

    def __call__(self, x, rng=None):
        _check_batch(x, "RandomHorizontalFlip")
        rng = _generator(rng)
        xp = get_array_module(x)
        flip = xp.asarray(rng.random(x.shape[0]) < self.p)[:, None, None, None]
        return xp.where(flip, x[..., ::-1], x)

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"


class Compose:
    """Apply transforms in order, all drawing from the same generator.

    ``Compose([RandomCrop(32, 4), RandomHorizontalFlip()])(x, rng)``; shapes as the
    transforms in it give.
    """

    def __init__(self, transforms):
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"Compose expects callables t(x, rng), got {t!r}")

    def __call__(self, x, rng=None):
        rng = _generator(rng)
        for t in self.transforms:
            x = t(x, rng)
        return x

    def __repr__(self):
        return "Compose([" + ", ".join(map(repr, self.transforms)) + "])"


def downsample(x, factor: int):
    """Average ``factor x factor`` blocks of pixels: (N, C, H, W) -> (N, C, H // f, W // f).

    ``out[n, c, i, j] = mean(x[n, c, f*i : f*i + f, f*j : f*j + f])``; rows and columns that
    do not fill a whole block are dropped.  ``factor = 1`` returns ``x`` itself.  The quick
    demonstrations train on MNIST at 14x14 (factor 2): a quarter of the arithmetic per image,
    digits still legible.
    """
    _check_batch(x, "downsample")
    if not isinstance(factor, int) or factor < 1:
        raise ValueError(f"downsample factor must be a positive integer, got {factor!r}")
    if factor == 1:
        return x
    n, c, h, w = x.shape
    if h < factor or w < factor:
        raise ValueError(f"cannot downsample {h}x{w} images by {factor}: they are smaller "
                         f"than one {factor}x{factor} block")
    h, w = h // factor, w // factor
    blocks = x[:, :, :h * factor, :w * factor].reshape(n, c, h, factor, w, factor)
    return blocks.mean(axis=(3, 5)).astype(x.dtype, copy=False)
