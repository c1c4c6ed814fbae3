"""Tests for minires.kernels.norm (BatchNorm): naive formulas, PyTorch, gradchecks.

Gradient checks: float64, central differences, tolerance 1e-6 (minires.gradcheck), with a
random upstream gradient (checking sum(y) would hide BatchNorm bugs: its gradient is 0).
"""

import numpy as np
import pytest

from minires.gradcheck import check_array_gradients
from minires.kernels.norm import BatchNormCache, batch_norm_backward, batch_norm_forward

GRADCHECK_TOL = 1e-6
TORCH_RTOL = 1e-10

# 4-D and 2-D, batch 1 with pixels.  (Not N = 2 for 2-D in gradchecks: with two values per
# channel x_hat is always +-1, the x-gradient is ~eps-sized and its relative error noise.)
SHAPES = [(4, 3, 3, 2), (1, 2, 3, 3), (5, 3), (3, 4)]


def _axes(x):
    return (0, 2, 3) if x.ndim == 4 else (0,)


def _vec(v, x):
    return v.reshape((1, -1, 1, 1) if x.ndim == 4 else (1, -1))


def _params(rng, c, affine=True):
    if not affine:
        return None, None
    return rng.standard_normal(c) + 1.0, rng.standard_normal(c)


# ----------------------------------------------------------------------------- forward


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("affine", [True, False])
def test_training_forward_matches_formula_and_updates_running_stats(rng, shape, affine):
    x = rng.standard_normal(shape) * 3 + 2
    c = shape[1]
    gamma, beta = _params(rng, c, affine)
    running_mean, running_var = rng.standard_normal(c), rng.random(c) + 0.5
    rm0, rv0 = running_mean.copy(), running_var.copy()
    rm_id, rv_id = id(running_mean), id(running_var)

    y, cache = batch_norm_forward(x, gamma, beta, running_mean, running_var, True, 0.2, 1e-3)

    m = x.size // c
    mean = x.mean(axis=_axes(x))
    var = ((x - _vec(mean, x)) ** 2).mean(axis=_axes(x))  # biased
    expected = (x - _vec(mean, x)) / np.sqrt(_vec(var, x) + 1e-3)
    if affine:
        expected = expected * _vec(gamma, x) + _vec(beta, x)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    # Updated in place, with the unbiased variance.
    assert id(running_mean) == rm_id and id(running_var) == rv_id
    np.testing.assert_allclose(running_mean, 0.8 * rm0 + 0.2 * mean, rtol=1e-12)
    np.testing.assert_allclose(running_var, 0.8 * rv0 + 0.2 * var * m / (m - 1), rtol=1e-12)
    assert isinstance(cache, BatchNormCache) and cache.training


@pytest.mark.parametrize("shape", SHAPES)
def test_eval_forward_uses_running_stats_and_leaves_them_alone(rng, shape):
    x = rng.standard_normal(shape)
    c = shape[1]
    gamma, beta = _params(rng, c)
    running_mean, running_var = rng.standard_normal(c), rng.random(c) + 0.5
    rm0, rv0 = running_mean.copy(), running_var.copy()
    y, cache = batch_norm_forward(x, gamma, beta, running_mean, running_var, False)
    expected = (x - _vec(rm0, x)) / np.sqrt(_vec(rv0, x) + 1e-5) * _vec(gamma, x) + _vec(beta, x)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(running_mean, rm0)
    np.testing.assert_array_equal(running_var, rv0)
    assert not cache.training


def test_training_without_running_stats(rng):
    x = rng.standard_normal((3, 2, 2, 2))
    y, _ = batch_norm_forward(x, None, None, None, None, True)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, rtol=1e-4)  # eps shrinks it a bit


@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (1, 3)])
def test_single_value_per_channel_in_training_raises(shape):
    x = np.ones(shape)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        batch_norm_forward(x, None, None, np.zeros(3), np.ones(3), True)
    y, _ = batch_norm_forward(x, None, None, np.zeros(3), np.ones(3), False)  # eval is fine
    assert y.shape == shape


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", SHAPES)
def test_gradcheck_affine(rng, shape, training):
    c = shape[1]
    x = rng.standard_normal(shape) * 2 + 1
    gamma, beta = _params(rng, c)
    running_mean, running_var = rng.standard_normal(c), rng.random(c) + 0.5
    stats = (None, None) if training else (running_mean, running_var)

    def forward(x, gamma, beta):
        return batch_norm_forward(x, gamma, beta, *stats, training)[0]

    def backward(grad_y, x, gamma, beta):
        _, cache = batch_norm_forward(x, gamma, beta, *stats, training)
        return batch_norm_backward(grad_y, cache)

    check_array_gradients(forward, backward, [x, gamma, beta], tolerance=GRADCHECK_TOL,
                          names=["x", "gamma", "beta"]).assert_ok()


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", [(3, 2, 2, 3), (4, 3)])
def test_gradcheck_without_affine(rng, shape, training):
    c = shape[1]
    x = rng.standard_normal(shape)
    stats = (None, None) if training else (rng.standard_normal(c), rng.random(c) + 0.5)

    def forward(x):
        return batch_norm_forward(x, None, None, *stats, training)[0]

    def backward(grad_y, x):
        _, cache = batch_norm_forward(x, None, None, *stats, training)
        grad_x, grad_gamma, grad_beta = batch_norm_backward(grad_y, cache)
        assert grad_gamma is None and grad_beta is None
        return [grad_x]

    check_array_gradients(forward, backward, [x], tolerance=GRADCHECK_TOL).assert_ok()


# ----------------------------------------------------------------------------- PyTorch


@pytest.mark.torch
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_torch_over_training_steps_then_eval(torch, rng, shape, affine):
    """Several training steps (running stats must track PyTorch's), then eval; forward and
    backward compared at every step."""
    F = torch.nn.functional
    c = shape[1]
    gamma, beta = _params(rng, c, affine)
    running_mean, running_var = np.zeros(c), np.ones(c)
    rm_t, rv_t = torch.zeros(c), torch.ones(c)
    momentum, eps = 0.3, 1e-4
    for step, training in enumerate([True, True, True, False, False]):
        x = rng.standard_normal(shape) * (step + 1) + step
        grad_y = rng.standard_normal(shape)
        y, cache = batch_norm_forward(x, gamma, beta, running_mean, running_var, training,
                                      momentum, eps)
        grad_x, grad_gamma, grad_beta = batch_norm_backward(grad_y, cache)

        xt = torch.tensor(x, requires_grad=True)
        gt = torch.tensor(gamma, requires_grad=True) if affine else None
        bt = torch.tensor(beta, requires_grad=True) if affine else None
        yt = F.batch_norm(xt, rm_t, rv_t, gt, bt, training, momentum, eps)
        yt.backward(torch.tensor(grad_y))

        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=TORCH_RTOL, atol=1e-12)
        np.testing.assert_allclose(running_mean, rm_t.numpy(), rtol=TORCH_RTOL, atol=1e-14)
        np.testing.assert_allclose(running_var, rv_t.numpy(), rtol=TORCH_RTOL)
        np.testing.assert_allclose(grad_x, xt.grad.numpy(), rtol=TORCH_RTOL, atol=1e-12)
        if affine:
            np.testing.assert_allclose(grad_gamma, gt.grad.numpy(), rtol=TORCH_RTOL, atol=1e-12)
            np.testing.assert_allclose(grad_beta, bt.grad.numpy(), rtol=TORCH_RTOL, atol=1e-12)
        else:
            assert grad_gamma is None and grad_beta is None


@pytest.mark.torch
def test_single_value_error_message_matches_torch(torch):
    with pytest.raises(ValueError, match="Expected more than 1 value per channel") as ours:
        batch_norm_forward(np.ones((1, 3, 1, 1)), None, None, None, None, True)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel") as theirs:
        torch.nn.functional.batch_norm(torch.ones(1, 3, 1, 1), None, None, training=True)
    assert str(ours.value).split(",")[0] == str(theirs.value).split(",")[0]


# ----------------------------------------------------------------------------- dtype and errors


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (6, 3)])
def test_float32_stays_float32(rng, shape, training):
    x = rng.standard_normal(shape).astype(np.float32)
    gamma, beta = np.ones(3, np.float32), np.zeros(3, np.float32)
    # float64 running stats (np.zeros/np.ones default) must not upcast the output either.
    running_mean, running_var = np.zeros(3), np.ones(3)
    y, cache = batch_norm_forward(x, gamma, beta, running_mean, running_var, training)
    assert y.dtype == np.float32 and cache.x_hat.dtype == np.float32
    grads = batch_norm_backward(np.ones_like(y), cache)
    assert all(g.dtype == np.float32 for g in grads)
    assert running_mean.dtype == np.float64  # updated in place, dtype unchanged


def test_float32_close_to_float64(rng):
    x = rng.standard_normal((8, 4, 6, 6)) * 5 + 10
    grad_y = rng.standard_normal(x.shape)
    g, b = np.full(4, 1.5), np.full(4, 0.5)
    y64, c64 = batch_norm_forward(x, g, b, None, None, True)
    y32, c32 = batch_norm_forward(x.astype(np.float32), g.astype(np.float32),
                                  b.astype(np.float32), None, None, True)
    np.testing.assert_allclose(y32, y64, atol=1e-4)
    for a32, a64 in zip(batch_norm_backward(grad_y.astype(np.float32), c32),
                        batch_norm_backward(grad_y, c64), strict=True):
        np.testing.assert_allclose(a32, a64, rtol=1e-4, atol=1e-4)


def test_bad_arguments_raise_clear_errors():
    x = np.zeros((2, 3, 2, 2))
    with pytest.raises(ValueError, match=r"\(N, C\) or \(N, C, H, W\)"):
        batch_norm_forward(np.zeros((2, 3, 4)), None, None, None, None, True)
    with pytest.raises(ValueError, match=r"gamma has shape \(2,\), expected \(C,\) = \(3,\)"):
        batch_norm_forward(x, np.ones(2), None, None, None, True)
    with pytest.raises(ValueError, match="eval mode"):
        batch_norm_forward(x, None, None, None, None, False)
    with pytest.raises(TypeError, match="floating-point"):
        batch_norm_forward(x.astype(np.int64), None, None, None, None, True)
    _, cache = batch_norm_forward(x + np.arange(2.0)[:, None, None, None], None, None, None,
                                  None, True)
    with pytest.raises(ValueError, match="grad_y has shape"):
        batch_norm_backward(np.zeros((2, 3)), cache)
