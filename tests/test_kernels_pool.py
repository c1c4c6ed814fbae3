"""Tests for minires.kernels.pool: naive loop references, PyTorch cross-checks, gradchecks.

Gradient checks use float64, central differences and tolerance 1e-6 (see minires.gradcheck);
max-pool checks use inputs with well-separated distinct values (a random permutation times
0.1), so no eps-perturbation can change which element wins a window.  Ties are tested
separately against PyTorch.
"""

import numpy as np
import pytest

from minires.gradcheck import check_array_gradients
from minires.kernels.pool import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    global_avg_pool_backward,
    global_avg_pool_forward,
    max_pool2d_backward,
    max_pool2d_forward,
    pool_output_size,
)

GRADCHECK_TOL = 1e-6
TORCH_RTOL = 1e-10

# (x shape, kernel_size, stride, padding): kernel 1/2/3, stride 1/2/default, padding 0/1,
# non-square kernels and images, odd sizes, batch 1, windows that tile exactly or leave a
# remainder (the reshape fast path), and overlapping windows.
CASES = [
    ((2, 3, 4, 4), 2, None, 0),  # tiles exactly: fast path
    ((1, 2, 5, 7), 2, 2, 0),  # tiles with a leftover row/column
    ((2, 2, 6, 6), 3, None, 0),  # 3x3 tiles
    ((2, 2, 5, 5), 1, 1, 0),  # identity
    ((1, 2, 5, 6), 2, 1, 0),  # overlapping
    ((2, 1, 5, 5), 2, 2, 1),  # padding
    ((1, 2, 7, 6), 3, 1, 1),  # overlapping + padding
    ((2, 2, 7, 7), 3, 2, 1),  # the ResNet stem pooling
    ((1, 2, 6, 7), 3, 2, 0),
    ((2, 1, 5, 8), (2, 3), (1, 2), (1, 1)),  # non-square everything
    ((1, 1, 4, 9), (1, 3), (1, 3), (0, 1)),
]
CASE_IDS = [f"{s}-k{k}-s{st}-p{p}" for s, k, st, p in CASES]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _distinct(rng, shape):
    """Distinct values 0.1 apart in random order: max-pool winners are unambiguous."""
    return rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 - 1.0


# ----------------------------------------------------------------------------- naive references


def naive_max_pool(x, kernel_size, stride, padding):
    """Loops over every output pixel; returns (y, flat index into H*W of the winner)."""
    (kh, kw), (ph, pw) = _pair(kernel_size), _pair(padding)
    sh, sw = _pair(kernel_size if stride is None else stride)
    n_, c_, h, w = x.shape
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    y = np.empty((n_, c_, oh, ow))
    index = np.empty((n_, c_, oh, ow), dtype=np.int64)
    for n in range(n_):
        for c in range(c_):
            for p in range(oh):
                for q in range(ow):
                    best, where = -np.inf, None
                    for i in range(kh):
                        for j in range(kw):
                            r, s = p * sh - ph + i, q * sw - pw + j
                            inside = 0 <= r < h and 0 <= s < w
                            if inside and (where is None or x[n, c, r, s] > best):
                                best, where = x[n, c, r, s], r * w + s
                    y[n, c, p, q], index[n, c, p, q] = best, where
    return y, index


def naive_avg_pool(x, kernel_size, stride, padding, count_include_pad):
    (kh, kw), (ph, pw) = _pair(kernel_size), _pair(padding)
    sh, sw = _pair(kernel_size if stride is None else stride)
    n_, c_, h, w = x.shape
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    y = np.empty((n_, c_, oh, ow))
    for p in range(oh):
        for q in range(ow):
            total, count = np.zeros((n_, c_)), 0
            for i in range(kh):
                for j in range(kw):
                    r, s = p * sh - ph + i, q * sw - pw + j
                    if 0 <= r < h and 0 <= s < w:
                        total += x[:, :, r, s]
                        count += 1
            y[:, :, p, q] = total / (kh * kw if count_include_pad else count)
    return y


def _argmax_to_flat(argmax, x_shape, kernel_size, stride, padding):
    """Convert our window-relative argmax to PyTorch's flat index into H*W."""
    (_, kw), (ph, pw) = _pair(kernel_size), _pair(padding)
    sh, sw = _pair(kernel_size if stride is None else stride)
    _, _, oh, ow = argmax.shape
    i, j = np.divmod(argmax, kw)
    rows = np.arange(oh)[:, None] * sh - ph + i
    cols = np.arange(ow)[None, :] * sw - pw + j
    return rows * x_shape[3] + cols


# ----------------------------------------------------------------------------- output size


@pytest.mark.parametrize(
    "size, kernel, stride, padding, expected",
    [(32, 2, 2, 0, 16), (7, 3, 2, 1, 4), (5, 1, 1, 0, 5), (5, 2, 2, 0, 2), (1, 1, 1, 0, 1)],
)
def test_pool_output_size(size, kernel, stride, padding, expected):
    assert pool_output_size(size, kernel, stride, padding) == expected


def test_pool_output_size_rejects_window_that_does_not_fit():
    with pytest.raises(ValueError, match="does not fit"):
        pool_output_size(2, 3, 1, 0)
    with pytest.raises(ValueError, match="stride"):
        pool_output_size(4, 2, 0, 0)


# ----------------------------------------------------------------------------- max pooling


@pytest.mark.parametrize("shape, kernel, stride, padding", CASES, ids=CASE_IDS)
def test_max_pool_forward_matches_naive(rng, shape, kernel, stride, padding):
    x = rng.standard_normal(shape)
    y, argmax = max_pool2d_forward(x, kernel, stride, padding)
    y_ref, index_ref = naive_max_pool(x, kernel, stride, padding)
    np.testing.assert_array_equal(y, y_ref)
    index = _argmax_to_flat(argmax, shape, kernel, stride, padding)
    np.testing.assert_array_equal(index, index_ref)


@pytest.mark.parametrize("shape, kernel, stride, padding", CASES, ids=CASE_IDS)
def test_max_pool_backward_matches_naive_scatter(rng, shape, kernel, stride, padding):
    x = rng.standard_normal(shape)
    y, argmax = max_pool2d_forward(x, kernel, stride, padding)
    grad_y = rng.standard_normal(y.shape)
    grad_x = max_pool2d_backward(grad_y, argmax, shape, kernel, stride, padding)
    _, index = naive_max_pool(x, kernel, stride, padding)
    expected = np.zeros(shape)
    flat = expected.reshape(shape[0], shape[1], -1)
    for n in range(shape[0]):
        for c in range(shape[1]):
            np.add.at(flat[n, c], index[n, c].ravel(), grad_y[n, c].ravel())
    np.testing.assert_allclose(grad_x, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape, kernel, stride, padding", CASES, ids=CASE_IDS)
def test_max_pool_gradcheck(rng, shape, kernel, stride, padding):
    x = _distinct(rng, shape)

    def forward(x):
        return max_pool2d_forward(x, kernel, stride, padding)[0]

    def backward(grad_y, x):
        _, argmax = max_pool2d_forward(x, kernel, stride, padding)
        return [max_pool2d_backward(grad_y, argmax, x.shape, kernel, stride, padding)]

    check_array_gradients(forward, backward, [x], tolerance=GRADCHECK_TOL).assert_ok()


def _torch_max_pool(torch, x, grad_y, kernel, stride, padding):
    xt = torch.tensor(x, requires_grad=True)
    yt, index = torch.nn.functional.max_pool2d(
        xt, kernel, stride=stride, padding=padding, return_indices=True
    )
    yt.backward(torch.tensor(grad_y))
    return yt.detach().numpy(), index.numpy(), xt.grad.numpy()


@pytest.mark.torch
@pytest.mark.parametrize("inputs", ["normal", "integers", "all_equal"])
@pytest.mark.parametrize("shape, kernel, stride, padding", CASES, ids=CASE_IDS)
def test_max_pool_matches_torch_including_ties(torch, rng, inputs, shape, kernel, stride, padding):
    """Ties (all-equal windows, small integers) must go to the FIRST maximal element."""
    if inputs == "normal":
        x = rng.standard_normal(shape)
    elif inputs == "integers":
        x = rng.integers(0, 3, size=shape).astype(np.float64)
    else:
        x = np.full(shape, 0.5)
    y, argmax = max_pool2d_forward(x, kernel, stride, padding)
    grad_y = rng.standard_normal(y.shape)
    grad_x = max_pool2d_backward(grad_y, argmax, shape, kernel, stride, padding)
    y_t, index_t, grad_x_t = _torch_max_pool(torch, x, grad_y, kernel, stride, padding)
    np.testing.assert_allclose(y, y_t, rtol=TORCH_RTOL)
    np.testing.assert_array_equal(_argmax_to_flat(argmax, shape, kernel, stride, padding), index_t)
    np.testing.assert_allclose(grad_x, grad_x_t, rtol=TORCH_RTOL, atol=1e-15)


@pytest.mark.torch
def test_max_pool_propagates_nan_like_torch(torch, rng):
    x = rng.standard_normal((1, 2, 6, 6))
    x[0, 0, 1, 1] = x[0, 1, 0, 0] = x[0, 1, 0, 1] = x[0, 1, 2, 3] = np.nan
    for kernel, stride, padding in [(2, 2, 0), (3, 1, 1)]:
        y, argmax = max_pool2d_forward(x, kernel, stride, padding)
        grad_y = rng.standard_normal(y.shape)
        y_t, index_t, grad_x_t = _torch_max_pool(torch, x, grad_y, kernel, stride, padding)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(y_t))
        np.testing.assert_allclose(y, y_t, rtol=TORCH_RTOL)
        np.testing.assert_array_equal(
            _argmax_to_flat(argmax, x.shape, kernel, stride, padding), index_t
        )
        grad_x = max_pool2d_backward(grad_y, argmax, x.shape, kernel, stride, padding)
        np.testing.assert_allclose(grad_x, grad_x_t, rtol=TORCH_RTOL)


def test_max_pool_all_equal_window_picks_first_element():
    x = np.ones((1, 1, 4, 4))
    y, argmax = max_pool2d_forward(x, 2)
    np.testing.assert_array_equal(argmax, 0)
    grad_x = max_pool2d_backward(np.ones_like(y), argmax, x.shape, 2)
    expected = np.zeros((4, 4))
    expected[::2, ::2] = 1.0  # the top-left pixel of every window
    np.testing.assert_array_equal(grad_x[0, 0], expected)


def test_max_pool_padding_never_wins():
    x = -np.arange(1.0, 10.0).reshape(1, 1, 3, 3) * 1e30  # very negative, still > -inf
    y, _ = max_pool2d_forward(x, 3, 1, 1)
    assert np.isfinite(y).all()


# ----------------------------------------------------------------------------- average pooling


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("shape, kernel, stride, padding", CASES, ids=CASE_IDS)
def test_avg_pool_forward_matches_naive(rng, shape, kernel, stride, padding, count_include_pad):
    x = rng.standard_normal(shape)
    y = avg_pool2d_forward(x, kernel, stride, padding, count_include_pad)
    y_ref = naive_avg_pool(x, kernel, stride, padding, count_include_pad)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("shape, kernel, stride, padding", CASES, ids=CASE_IDS)
def test_avg_pool_gradcheck(rng, shape, kernel, stride, padding, count_include_pad):
    x = rng.standard_normal(shape)

    def forward(x):
        return avg_pool2d_forward(x, kernel, stride, padding, count_include_pad)

    def backward(grad_y, x):
        return [avg_pool2d_backward(grad_y, x.shape, kernel, stride, padding, count_include_pad)]

    check_array_gradients(forward, backward, [x], tolerance=GRADCHECK_TOL).assert_ok()


@pytest.mark.torch
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("shape, kernel, stride, padding", CASES, ids=CASE_IDS)
def test_avg_pool_matches_torch(torch, rng, shape, kernel, stride, padding, count_include_pad):
    x = rng.standard_normal(shape)
    y = avg_pool2d_forward(x, kernel, stride, padding, count_include_pad)
    grad_y = rng.standard_normal(y.shape)
    grad_x = avg_pool2d_backward(grad_y, shape, kernel, stride, padding, count_include_pad)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.avg_pool2d(
        xt, kernel, stride=stride, padding=padding, count_include_pad=count_include_pad
    )
    yt.backward(torch.tensor(grad_y))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=TORCH_RTOL, atol=1e-15)
    np.testing.assert_allclose(grad_x, xt.grad.numpy(), rtol=TORCH_RTOL, atol=1e-15)


# ----------------------------------------------------------------------------- global average


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 4, 5), (1, 4, 7, 3)])
def test_global_avg_pool_forward_and_gradcheck(rng, shape):
    x = rng.standard_normal(shape)
    y = global_avg_pool_forward(x)
    expected = np.array([[x[n, c].sum() / (shape[2] * shape[3]) for c in range(shape[1])]
                         for n in range(shape[0])])
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    check_array_gradients(
        global_avg_pool_forward,
        lambda grad_y, x: [global_avg_pool_backward(grad_y, x.shape)],
        [x],
        tolerance=GRADCHECK_TOL,
    ).assert_ok()


@pytest.mark.torch
def test_global_avg_pool_matches_torch(torch, rng):
    x = rng.standard_normal((2, 3, 5, 4))
    grad_y = rng.standard_normal((2, 3))
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.adaptive_avg_pool2d(xt, 1).flatten(1)
    yt.backward(torch.tensor(grad_y))
    np.testing.assert_allclose(global_avg_pool_forward(x), yt.detach().numpy(), rtol=TORCH_RTOL)
    np.testing.assert_allclose(
        global_avg_pool_backward(grad_y, x.shape), xt.grad.numpy(), rtol=TORCH_RTOL
    )


# ----------------------------------------------------------------------------- dtype and errors


def test_float32_stays_float32(rng):
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    for kernel, stride, padding in [(2, None, 0), (3, 2, 1)]:
        y, argmax = max_pool2d_forward(x, kernel, stride, padding)
        assert y.dtype == np.float32
        grad = max_pool2d_backward(np.ones_like(y), argmax, x.shape, kernel, stride, padding)
        assert grad.dtype == np.float32 and grad.shape == x.shape
        for include in (True, False):
            y = avg_pool2d_forward(x, kernel, stride, padding, include)
            assert y.dtype == np.float32
            grad = avg_pool2d_backward(np.ones_like(y), x.shape, kernel, stride, padding, include)
            assert grad.dtype == np.float32 and grad.shape == x.shape
    y = global_avg_pool_forward(x)
    assert y.dtype == np.float32
    assert global_avg_pool_backward(np.ones_like(y), x.shape).dtype == np.float32


def test_bad_arguments_raise_clear_errors():
    x = np.zeros((1, 1, 4, 4))
    with pytest.raises(ValueError, match="at most half"):
        max_pool2d_forward(x, 2, 1, 2)
    with pytest.raises(ValueError, match="at most half"):
        avg_pool2d_forward(x, (3, 2), 1, (1, 2))
    with pytest.raises(ValueError, match="does not fit"):
        max_pool2d_forward(x, 5)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        max_pool2d_forward(np.zeros((4, 4)), 2)
    with pytest.raises(TypeError, match="kernel_size"):
        max_pool2d_forward(x, 2.0)
    with pytest.raises(TypeError, match="floating-point"):
        max_pool2d_forward(np.zeros((1, 1, 4, 4), dtype=np.int64), 2)
    y, argmax = max_pool2d_forward(x, 2)
    with pytest.raises(ValueError, match="grad_y has shape"):
        max_pool2d_backward(np.zeros((1, 1, 3, 3)), argmax, x.shape, 2)
    with pytest.raises(ValueError, match="grad_y has shape"):
        global_avg_pool_backward(np.zeros((2, 1)), x.shape)
