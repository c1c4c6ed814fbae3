"""Whole-batch transforms: Normalize, RandomCrop, RandomHorizontalFlip, Compose."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minires.backend as backend
from minires.data.transforms import (
    Compose,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    downsample,
)


def images(n=16, c=3, h=32, w=32, seed=0, dtype=np.float32):
    # distinct random values: every sub-window and every flip is unique
    return np.random.default_rng(seed).normal(size=(n, c, h, w)).astype(dtype)


def find_window(padded, crop):
    """All offsets (top, left) where crop equals a window of padded."""
    th, tw = crop.shape[-2:]
    return [
        (i, j)
        for i in range(padded.shape[-2] - th + 1)
        for j in range(padded.shape[-1] - tw + 1)
        if np.array_equal(padded[:, i : i + th, j : j + tw], crop)
    ]


def test_random_crop_shape_dtype_and_windows():
    x = images(64)
    out = RandomCrop(32, padding=4)(x, np.random.default_rng(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = np.pad(x, ((0, 0), (0, 0), (4, 4), (4, 4)))
    offsets = []
    for i in range(len(x)):
        found = find_window(padded[i], out[i])
        assert len(found) == 1, f"image {i} is not a sub-window of its padded image"
        offsets.append(found[0])
    assert len(set(offsets)) > 20  # independent offsets per image
    tops, lefts = zip(*offsets, strict=True)
    assert min(tops) >= 0 and max(tops) <= 8 and min(lefts) >= 0 and max(lefts) <= 8


def test_random_crop_is_reproducible_and_uses_the_rng():
    x = images(8)
    crop = RandomCrop(32, padding=4)
    a = crop(x, np.random.default_rng(5))
    b = crop(x, np.random.default_rng(5))
    c = crop(x, np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    backend.manual_seed(3)
    d = crop(x)  # rng=None: the global generator
    backend.manual_seed(3)
    np.testing.assert_array_equal(d, crop(x))


def test_random_crop_rectangular_and_without_padding():
    x = images(4, c=2, h=10, w=12)
    out = RandomCrop((6, 8))(x, np.random.default_rng(0))
    assert out.shape == (4, 2, 6, 8)
    for i in range(4):
        assert find_window(x[i], out[i])
    np.testing.assert_array_equal(RandomCrop((10, 12))(x, np.random.default_rng(0)), x)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 4),
    c=st.integers(1, 3),
    h=st.integers(1, 7),
    w=st.integers(1, 7),
    padding=st.integers(0, 3),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_random_crop_property(n, c, h, w, padding, seed, data):
    th = data.draw(st.integers(1, h + 2 * padding))
    tw = data.draw(st.integers(1, w + 2 * padding))
    x = images(n, c, h, w, seed=seed % 1000, dtype=np.float64)
    out = RandomCrop((th, tw), padding=padding, fill=-7.0)(x, np.random.default_rng(seed))
    assert out.shape == (n, c, th, tw)
    padded = np.pad(x, ((0, 0), (0, 0), (padding,) * 2, (padding,) * 2), constant_values=-7.0)
    for i in range(n):
        assert find_window(padded[i], out[i])


def test_random_crop_errors():
    with pytest.raises(ValueError, match="larger than the padded images"):
        RandomCrop(40, padding=2)(images(2), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        RandomCrop(8)(np.zeros((3, 32, 32)), np.random.default_rng(0))
    with pytest.raises(ValueError, match="size"):
        RandomCrop(0)
    with pytest.raises(TypeError, match="Generator"):
        RandomCrop(8)(images(2), 42)


def test_flip_flips_exactly_the_chosen_images():
    x = images(200)
    out = RandomHorizontalFlip(0.5)(x, np.random.default_rng(11))
    flipped = np.array([np.array_equal(o, xi[..., ::-1]) for o, xi in zip(out, x, strict=True)])
    kept = np.array([np.array_equal(o, xi) for o, xi in zip(out, x, strict=True)])
    assert np.all(flipped ^ kept)  # each image is exactly one of the two
    assert 60 < flipped.sum() < 140
    expected = np.random.default_rng(11).random(200) < 0.5  # one uniform draw per image
    np.testing.assert_array_equal(flipped, expected)
    np.testing.assert_array_equal(RandomHorizontalFlip(0.0)(x, np.random.default_rng(0)), x)
    np.testing.assert_array_equal(
        RandomHorizontalFlip(1.0)(x, np.random.default_rng(0)), x[..., ::-1]
    )
    assert out.dtype == x.dtype and out.shape == x.shape
    with pytest.raises(ValueError, match="probability"):
        RandomHorizontalFlip(1.5)


def test_normalize_per_channel():
    x = images(8, c=3, dtype=np.float64)
    mean, std = [1.0, -2.0, 0.5], [2.0, 4.0, 0.25]
    out = Normalize(mean, std)(x, None)
    for ch in range(3):
        np.testing.assert_allclose(out[:, ch], (x[:, ch] - mean[ch]) / std[ch])
    # standardising with the batch's own channel statistics gives mean 0, std 1 per channel
    y = x * np.array([1, 5, 9])[None, :, None, None] + np.array([3, -1, 7])[None, :, None, None]
    z = Normalize(y.mean(axis=(0, 2, 3)), y.std(axis=(0, 2, 3)))(y)
    np.testing.assert_allclose(z.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=(0, 2, 3)), 1, atol=1e-12)


def test_normalize_dtype_and_errors():
    x = images(2, c=1)
    assert Normalize(0.5, 2.0)(x).dtype == np.float32
    assert Normalize(0.5, 2.0)(np.zeros((1, 1, 2, 2), np.uint8)).dtype == np.float32
    with pytest.raises(ValueError, match="3 channel means.*2 channels"):
        Normalize([0, 0, 0], [1, 1, 1])(images(2, c=2))
    with pytest.raises(ValueError, match="equal-length"):
        Normalize([0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match="positive"):
        Normalize([0], [0])


def test_compose_applies_in_order_with_one_rng():
    x = images(16)
    crop, flip = RandomCrop(32, padding=4), RandomHorizontalFlip()
    norm = Normalize([0.1, 0.2, 0.3], [1.0, 2.0, 3.0])
    out = Compose([crop, flip, norm])(x, np.random.default_rng(9))
    rng = np.random.default_rng(9)
    expected = norm(flip(crop(x, rng), rng), rng)
    np.testing.assert_array_equal(out, expected)
    assert "RandomCrop" in repr(Compose([crop, flip]))
    with pytest.raises(TypeError, match="callables"):
        Compose([crop, 3])


@pytest.mark.skipif(not backend.is_cuda_available(), reason="needs CuPy and a GPU")
def test_transforms_on_gpu_match_cpu():
    cupy = backend._import_cupy()
    x = images(8)
    t = Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(), Normalize([0] * 3, [2] * 3)])
    cpu = t(x, np.random.default_rng(4))
    gpu = t(cupy.asarray(x), np.random.default_rng(4))
    assert backend.device_of(gpu) == "cuda"
    np.testing.assert_allclose(backend.to_numpy(gpu), cpu, rtol=1e-6)


def test_downsample_is_the_block_mean():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 7, 9)).astype(np.float32)
    out = downsample(x, 2)
    assert out.shape == (3, 2, 3, 4) and out.dtype == np.float32
    naive = np.empty(out.shape, np.float64)
    for n, c, i, j in np.ndindex(*out.shape):  # the formula, pixel block by pixel block
        naive[n, c, i, j] = x[n, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2].astype(np.float64).mean()
    np.testing.assert_allclose(out, naive, rtol=1e-6, atol=1e-7)  # float32 sums
    assert downsample(x, 1) is x
    assert downsample(x, 3).shape == (3, 2, 2, 3)


def test_downsample_errors():
    x = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(ValueError, match="positive integer"):
        downsample(x, 0)
    with pytest.raises(ValueError, match="positive integer"):
        downsample(x, 1.5)
    with pytest.raises(ValueError, match="smaller than one 5x5 block"):
        downsample(x, 5)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        downsample(np.zeros((4, 4)), 2)
