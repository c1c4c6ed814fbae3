"""Tests for minires.kernels.activation: formulas, PyTorch, gradchecks, properties.

Gradient checks: float64, central differences, tolerance 1e-6 (minires.gradcheck); ReLU
checks keep every input at least 0.1 away from the kink at 0.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minires.gradcheck import check_array_gradients
from minires.kernels.activation import (
    linear_backward,
    linear_forward,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    tanh_backward,
    tanh_forward,
)

GRADCHECK_TOL = 1e-6
TORCH_RTOL = 1e-10

SHAPES = [(7,), (3, 4), (2, 3, 2, 2)]


def _away_from_zero(rng, shape):
    """Values in +-[0.1, 1.1): no eps-perturbation crosses ReLU's kink."""
    return rng.choice([-1.0, 1.0], size=shape) * (0.1 + rng.random(shape))


# ----------------------------------------------------------------------------- ReLU


def test_relu_values_and_gradient_at_zero():
    x = np.array([-2.0, -0.0, 0.0, 1e-300, 3.0])
    np.testing.assert_array_equal(relu_forward(x), [0.0, 0.0, 0.0, 1e-300, 3.0])
    np.testing.assert_array_equal(relu_backward(np.full(5, 7.0), x), [0, 0, 0, 7, 7])


@pytest.mark.parametrize("shape", SHAPES)
def test_relu_gradcheck(rng, shape):
    x = _away_from_zero(rng, shape)
    check_array_gradients(
        relu_forward, lambda g, x: [relu_backward(g, x)], [x], tolerance=GRADCHECK_TOL
    ).assert_ok()


@pytest.mark.torch
def test_relu_matches_torch_including_zeros(torch, rng):
    x = rng.integers(-2, 3, size=(4, 5)).astype(np.float64)  # plenty of exact zeros
    grad_y = rng.standard_normal(x.shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.relu(xt)
    yt.backward(torch.tensor(grad_y))
    np.testing.assert_array_equal(relu_forward(x), yt.detach().numpy())
    np.testing.assert_array_equal(relu_backward(grad_y, x), xt.grad.numpy())


# ----------------------------------------------------------------------------- sigmoid, tanh

ELEMENTWISE = [
    (sigmoid_forward, sigmoid_backward, "sigmoid"),
    (tanh_forward, tanh_backward, "tanh"),
]


@pytest.mark.parametrize("forward, backward, name", ELEMENTWISE, ids=["sigmoid", "tanh"])
@pytest.mark.parametrize("shape", SHAPES)
def test_gradcheck_output_based_backward(rng, forward, backward, name, shape):
    x = rng.standard_normal(shape) * 2
    check_array_gradients(
        forward, lambda g, x: [backward(g, forward(x))], [x], tolerance=GRADCHECK_TOL
    ).assert_ok()


@pytest.mark.torch
@pytest.mark.parametrize("forward, backward, name", ELEMENTWISE, ids=["sigmoid", "tanh"])
def test_matches_torch(torch, rng, forward, backward, name):
    x = np.concatenate([rng.standard_normal(20) * 3, [-800.0, -40.0, 0.0, 40.0, 800.0]])
    grad_y = rng.standard_normal(x.shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = getattr(torch, name)(xt)
    yt.backward(torch.tensor(grad_y))
    y = forward(x)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=TORCH_RTOL, atol=1e-300)
    # 1 - y^2 and y (1 - y) cancel where y is near +-1 (or 1): a one-ulp difference between
    # our y and torch's (~1e-16 absolute) then shows as a larger *relative* difference in a
    # tiny gradient, hence the small absolute tolerance.
    np.testing.assert_allclose(backward(grad_y, y), xt.grad.numpy(), rtol=TORCH_RTOL,
                               atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_extremes_without_overflow(dtype):
    x = np.array([-1e4, -800, -100, -30, 0, 30, 100, 800, 1e4, -np.inf, np.inf], dtype=dtype)
    # Overflow, 0/0 or inf/inf would warn; make them errors.  (Underflow of exp(-|x|) to 0
    # is harmless and NumPy ignores it by default.)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = sigmoid_forward(x)
    assert y.dtype == dtype
    assert np.all((y >= 0) & (y <= 1))
    assert y[0] == 0 and y[-1] == 1 and y[4] == 0.5 and y[-2] == 0
    np.testing.assert_allclose(y[3] + y[5], 1, rtol=1e-6)  # sigmoid(-x) = 1 - sigmoid(x)


@given(hnp.arrays(np.float64, hnp.array_shapes(max_dims=2, max_side=8),
                  elements=st.floats(allow_nan=False, allow_infinity=True)))
def test_sigmoid_property_range_and_formula(x):
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = sigmoid_forward(x)
    assert y.shape == x.shape
    assert np.all((y >= 0) & (y <= 1))
    moderate = np.abs(x) <= 30  # here the result is strictly inside (0, 1) in float64
    assert np.all((y[moderate] > 0) & (y[moderate] < 1))
    safe = np.abs(x) <= 700  # exp(-x) does not overflow
    np.testing.assert_allclose(y[safe], 1 / (1 + np.exp(-x[safe])), rtol=1e-13)


@given(hnp.arrays(np.float64, hnp.array_shapes(max_dims=2, max_side=8),
                  elements=st.floats(-50, 50)))
def test_tanh_property_odd_and_bounded(x):
    y = tanh_forward(x)
    assert np.all(np.abs(y) <= 1)
    np.testing.assert_array_equal(tanh_forward(-x), -y)
    np.testing.assert_allclose(2 * sigmoid_forward(2 * x) - 1, y, atol=1e-14)


@given(hnp.arrays(np.float64, hnp.array_shapes(max_dims=2, max_side=8),
                  elements=st.floats(-1e6, 1e6)))
def test_relu_property(x):
    y = relu_forward(x)
    assert np.all(y >= 0)
    np.testing.assert_array_equal(y - relu_forward(-x), x)  # relu(x) - relu(-x) = x


# ----------------------------------------------------------------------------- linear


@pytest.mark.parametrize("x_shape", [(4, 3), (1, 3), (2, 2, 3), (3,)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_forward_and_gradcheck(rng, x_shape, with_bias):
    x = rng.standard_normal(x_shape)
    weight = rng.standard_normal((5, 3))
    bias = rng.standard_normal(5) if with_bias else None
    y = linear_forward(x, weight, bias)
    expected = np.einsum("...i,oi->...o", x, weight) + (bias if with_bias else 0)
    np.testing.assert_allclose(y, expected, rtol=1e-12)

    if with_bias:
        def forward(x, w, b):
            return linear_forward(x, w, b)

        def backward(g, x, w, b):
            return linear_backward(g, x, w)

        inputs = [x, weight, bias]
    else:
        def forward(x, w):
            return linear_forward(x, w)

        def backward(g, x, w):
            grad_x, grad_w, grad_b = linear_backward(g, x, w, need_bias_grad=False)
            assert grad_b is None
            return grad_x, grad_w

        inputs = [x, weight]
    check_array_gradients(forward, backward, inputs, tolerance=GRADCHECK_TOL).assert_ok()


@pytest.mark.torch
@pytest.mark.parametrize("x_shape", [(4, 3), (2, 3, 3)])
def test_linear_matches_torch(torch, rng, x_shape):
    x, weight = rng.standard_normal(x_shape), rng.standard_normal((6, 3))
    bias = rng.standard_normal(6)
    grad_y = rng.standard_normal(x_shape[:-1] + (6,))
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, weight, bias))
    yt = torch.nn.functional.linear(xt, wt, bt)
    yt.backward(torch.tensor(grad_y))
    y = linear_forward(x, weight, bias)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=TORCH_RTOL)
    for ours, theirs in zip(linear_backward(grad_y, x, weight), (xt, wt, bt), strict=True):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=TORCH_RTOL)


# ----------------------------------------------------------------------------- dtype and errors


def test_float32_stays_float32(rng):
    x = rng.standard_normal((4, 3)).astype(np.float32)
    for forward, backward, _ in ELEMENTWISE:
        y = forward(x)
        assert y.dtype == np.float32 and backward(np.ones_like(y), y).dtype == np.float32
    assert relu_forward(x).dtype == np.float32
    assert relu_backward(np.ones_like(x), x).dtype == np.float32
    weight, bias = np.ones((2, 3), np.float32), np.ones(2, np.float32)
    y = linear_forward(x, weight, bias)
    assert y.dtype == np.float32
    assert all(g.dtype == np.float32 for g in linear_backward(np.ones_like(y), x, weight))


def test_bad_shapes_raise_clear_errors():
    with pytest.raises(ValueError, match="in_features = 4"):
        linear_forward(np.zeros((2, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match=r"bias has shape \(4,\)"):
        linear_forward(np.zeros((2, 3)), np.zeros((5, 3)), np.zeros(4))
    with pytest.raises(ValueError, match="out_features, in_features"):
        linear_forward(np.zeros((2, 3)), np.zeros(3))
    with pytest.raises(ValueError, match=r"grad_y has shape \(2, 4\), expected \(2, 5\)"):
        linear_backward(np.zeros((2, 4)), np.zeros((2, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="must match"):
        relu_backward(np.zeros(3), np.zeros(4))
