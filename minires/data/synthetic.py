"""Small synthetic image datasets for tests and quick demonstrations.

They are generated in milliseconds, need no files, and are deterministic for a seed
(each call uses its own ``np.random.default_rng(seed)``, never the global generator).
"""

from __future__ import annotations

import numpy as np

from minires.backend import get_default_dtype

_COLOUR_SEED = 20160610  # fixed: class colours must not change with the seed


def make_blobs_images(
    n: int = 512,
    num_classes: int = 4,
    channels: int = 3,
    size: int = 16,
    seed: int = 0,
    noise: float = 0.5,
    dtype=None,
):
    """Images of one coloured Gaussian blob each, whose position and colour give the class.

    Class ``k``'s blob sits on a ring around the image centre at angle ``2*pi*k/num_classes``
    and has a class colour (a fixed random direction over the channels).  Each image jitters
    the blob by up to one pixel, scales its brightness by 0.75..1.25 and adds Gaussian pixel
    noise of standard deviation ``noise``.  A small CNN (or even a linear model) learns it
    within a few dozen steps; larger ``noise`` makes it harder.

    Args:
        n: number of images.  Classes are balanced (they differ by at most one) and shuffled.
        num_classes: number of classes (at least 2).
        channels: image channels (1 for grey, 3 for colour).
        size: image height and width in pixels (at least 8).
        seed: seed of the generator that draws the samples; same seed, same arrays.  The
            classes themselves (positions, colours) do not depend on it, so e.g. ``seed=0``
            and ``seed=1`` are a training and a test set of the same task.
        noise: standard deviation of the added pixel noise (blob peak is about 1).
        dtype: floating dtype of the images; defaults to
            :func:`minires.backend.get_default_dtype`.

    Returns:
        ``(images, labels)``: images (n, channels, size, size) in ``dtype``, labels int64 (n,)
        in ``0..num_classes-1``.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if channels < 1:
        raise ValueError(f"channels must be at least 1, got {channels}")
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    if noise < 0:
        raise ValueError(f"noise must be non-negative, got {noise}")
    dtype = np.dtype(get_default_dtype() if dtype is None else dtype)
    if dtype.kind != "f":
        raise TypeError(f"dtype must be a floating dtype (float32, float64, ...), got {dtype}")

    # The class colours depend only on (num_classes, channels), not on seed, so two seeds
    # give a training and a test draw of the same task.
    colours = np.random.default_rng([_COLOUR_SEED, num_classes, channels])
    colours = np.abs(colours.normal(size=(num_classes, channels))) + 0.2
    colours /= np.linalg.norm(colours, axis=1, keepdims=True)
    colours *= np.sqrt(channels)  # average channel amplitude about 1
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % num_classes).astype(np.int64)

    angle = 2 * np.pi * labels / num_classes
    radius, centre, sigma = size / 4, (size - 1) / 2, size / 8
    cy = centre + radius * np.sin(angle) + rng.uniform(-1, 1, n)
    cx = centre + radius * np.cos(angle) + rng.uniform(-1, 1, n)
    grid = np.arange(size)
    dy2 = (grid[None, :, None] - cy[:, None, None]) ** 2  # (n, size, 1)
    dx2 = (grid[None, None, :] - cx[:, None, None]) ** 2  # (n, 1, size)
    blob = np.exp(-(dy2 + dx2) / (2 * sigma**2))  # (n, size, size)
    brightness = rng.uniform(0.75, 1.25, n)
    images = brightness[:, None, None, None] * colours[labels][:, :, None, None] * blob[:, None]
    images += noise * rng.normal(size=images.shape)
    return images.astype(dtype), labels
