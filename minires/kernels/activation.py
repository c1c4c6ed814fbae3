"""Elementwise activations and the fully connected (linear) layer, forward and backward.

A network that only multiplies by weight matrices is still one big linear map, however
deep; the *activation* between layers bends it.  ReLU (``max(x, 0)``) is what ResNets use:
cheap, and its gradient is exactly 1 where the unit is on, so it does not shrink the signal
flowing backwards.  Sigmoid and tanh squash their input into (0, 1) and (-1, 1); their
gradients vanish for large ``|x|``, one reason very deep plain networks were hard to train.

Backward kernels take ``grad_y = dL/dy`` and return ``dL/dx`` by the chain rule:
``dL/dx = dL/dy * dy/dx`` elementwise.  Sigmoid and tanh compute ``dy/dx`` from the
*output* ``y`` (``y (1 - y)`` and ``1 - y^2``), so the forward pass need only keep ``y``.

The linear layer is ``y = x @ W.T + b`` with ``W`` of shape ``(out_features, in_features)``
(PyTorch's layout: row ``o`` of ``W`` holds the weights of output unit ``o``).

On the GPU (CuPy float32/float64 arrays) ReLU, sigmoid and the tanh backward run the CUDA
twins in ``minires/kernels/cuda/elementwise.cu`` instead (the first two lines of each).
"""

from __future__ import annotations

from minires.backend import get_array_module
from minires.kernels import cuda

# ----------------------------------------------------------------------------- ReLU


def relu_forward(x):
    """ReLU: ``y = max(x, 0)`` elementwise; same shape and dtype as ``x`` (NaN stays NaN)."""
    if cuda.handles(x):  # CuPy array: the CUDA twin, kernels/cuda/elementwise.cu
        return cuda.relu_forward(x)
    xp = get_array_module(x)
    return xp.maximum(x, 0)


def relu_backward(grad_y, x):
    """``dL/dx = grad_y * [x > 0]``: the gradient passes where the unit was on.

    At exactly ``x == 0`` ReLU has no derivative; like PyTorch we use 0 there.  Both arrays
    have ``x``'s shape; the result has ``grad_y``'s dtype (a boolean mask does not upcast).
    """
    if cuda.handles(grad_y, x):  # CuPy arrays: the CUDA twin, kernels/cuda/elementwise.cu
        return cuda.relu_backward(grad_y, x)
    check_same_shape(grad_y, x, "grad_y", "x")
    return grad_y * (x > 0)


# ----------------------------------------------------------------------------- sigmoid, tanh


def sigmoid_forward(x):
    """Sigmoid: ``y = 1 / (1 + exp(-x))`` elementwise, in [0, 1]; same shape and dtype.

    Computed without overflow: with ``e = exp(-|x|)``, which lies in (0, 1],
    ``y = 1 / (1 + e)`` for ``x >= 0`` and ``y = e / (1 + e)`` for ``x < 0`` (multiply the
    top and bottom of the formula by ``exp(x)``).  ``exp(-x)`` itself would overflow for
    ``x < -89`` in float32.
    """
    if cuda.handles(x):  # CuPy array: the CUDA twin, kernels/cuda/elementwise.cu
        return cuda.sigmoid_forward(x)
    xp = get_array_module(x)
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_backward(grad_y, y):
    """``dL/dx = grad_y * y * (1 - y)`` where ``y = sigmoid(x)`` is the forward OUTPUT.

    (From ``d/dx 1/(1 + e^-x) = e^-x / (1 + e^-x)^2 = y (1 - y)``.)
    """
    if cuda.handles(grad_y, y):  # CuPy arrays: the CUDA twin, kernels/cuda/elementwise.cu
        return cuda.sigmoid_backward(grad_y, y)
    check_same_shape(grad_y, y, "grad_y", "y")
    return grad_y * (y * (1 - y))


def tanh_forward(x):
    """``y = tanh(x)`` elementwise, in [-1, 1]; same shape and dtype."""
    xp = get_array_module(x)
    return xp.tanh(x)


def tanh_backward(grad_y, y):
    """``dL/dx = grad_y * (1 - y^2)`` where ``y = tanh(x)`` is the forward OUTPUT."""
    if cuda.handles(grad_y, y):  # CuPy arrays: the CUDA twin, kernels/cuda/elementwise.cu
        return cuda.tanh_backward(grad_y, y)
    check_same_shape(grad_y, y, "grad_y", "y")
    return grad_y * (1 - y * y)


# ----------------------------------------------------------------------------- linear


def linear_forward(x, weight, bias=None):
    """Fully connected layer: ``y = x @ weight.T + bias``.

    Args:
        x: ``(..., in_features)``, usually ``(N, in_features)``.
        weight: ``(out_features, in_features)``.
        bias: ``(out_features,)`` or None.

    Returns:
        ``y`` of shape ``(..., out_features)``.
    """
    _check_linear_shapes(x, weight, bias)
    y = x @ weight.T
    if bias is not None:
        y += bias  # in place: y is a fresh array, and this keeps its dtype
    return y


def linear_backward(grad_y, x, weight, need_bias_grad=True):
    """Gradients of ``y = x @ W.T + b``.

    Writing ``y[n, o] = sum_i x[n, i] W[o, i] + b[o]``::

        dL/dx[n, i] = sum_o grad_y[n, o] W[o, i]   ->  grad_x = grad_y @ W
        dL/dW[o, i] = sum_n grad_y[n, o] x[n, i]   ->  grad_W = grad_y.T @ x
        dL/db[o]    = sum_n grad_y[n, o]           ->  grad_b = grad_y.sum(0)

    Extra leading dimensions of ``x`` (``(..., in)``) act like more rows ``n``.

    Args:
        grad_y: ``(..., out_features)``.
        x: ``(..., in_features)``, the forward input.
        weight: ``(out_features, in_features)``.
        need_bias_grad: False when the layer has no bias (``grad_bias`` is then None).

    Returns:
        ``(grad_x, grad_weight, grad_bias)`` with the shapes of ``x``, ``weight`` and
        ``(out_features,)``.
    """
    _check_linear_shapes(x, weight, None)
    out_features, in_features = weight.shape
    expected = tuple(x.shape[:-1]) + (out_features,)
    if tuple(grad_y.shape) != expected:
        raise ValueError(f"grad_y has shape {tuple(grad_y.shape)}, expected {expected}")
    grad_x = grad_y @ weight
    # Flatten the leading dimensions so the sums over "rows" are one matrix product.
    grad_y_2d = grad_y.reshape(-1, out_features)
    x_2d = x.reshape(-1, in_features)
    grad_weight = grad_y_2d.T @ x_2d
    grad_bias = grad_y_2d.sum(axis=0) if need_bias_grad else None
    return grad_x, grad_weight, grad_bias


# ----------------------------------------------------------------------------- checks


def check_same_shape(a, b, name_a: str, name_b: str):
    """ValueError unless ``a`` and ``b`` have the same shape (names in the message)."""
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(
            f"{name_a} has shape {tuple(a.shape)} but {name_b} has shape {tuple(b.shape)}; "
            "they must match"
        )


def _check_linear_shapes(x, weight, bias):
    if weight.ndim != 2:
        raise ValueError(
            f"weight must be (out_features, in_features), got shape {tuple(weight.shape)}"
        )
    if x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"x of shape {tuple(x.shape)} does not fit weight of shape {tuple(weight.shape)}: "
            f"x's last dimension must be in_features = {weight.shape[1]}"
        )
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(
            f"bias has shape {tuple(bias.shape)}, expected (out_features,) = ({weight.shape[0]},)"
        )
