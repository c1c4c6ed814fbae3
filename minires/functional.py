"""Neural-network operations as differentiable functions (PyTorch's ``torch.nn.functional``).

Each class here is the bridge between a hand-written kernel in :mod:`minires.kernels`
(pure array arithmetic: a forward and a backward) and the autograd graph: ``forward``
calls the kernel's forward and keeps what the backward needs, ``backward`` calls the
kernel's backward.  Open a kernel file to see the arithmetic; open this one to see how
arithmetic becomes differentiable.  Signatures follow ``torch.nn.functional``.
"""

from __future__ import annotations

import numpy as np

from minires import backend
from minires.autograd import Function, Tensor, as_tensor
from minires.kernels import activation as act_kernels
from minires.kernels import loss as loss_kernels
from minires.kernels import pool as pool_kernels
from minires.kernels import routing as kernels

# The elementwise activations are tensor ops; re-exported so `F.relu` etc. work.
from minires.ops import log_softmax, relu, sigmoid, softmax, tanh

__all__ = [
    "adaptive_avg_pool2d", "avg_pool2d", "batch_norm", "conv2d", "cross_entropy", "dropout",
    "global_avg_pool2d", "linear", "log_softmax", "max_pool2d", "mse_loss", "relu", "sigmoid",
    "softmax", "tanh",
]


def _array(value):
    """The raw array of a Tensor (running statistics may be passed either way)."""
    return value.data if isinstance(value, Tensor) else value


def check_input_dtype(op_name: str, x, **params) -> None:
    """One dtype rule for every layer with parameters (conv2d, linear, batch_norm).

    The input must be floating point and have the dtype of every given parameter (``None``
    ones are skipped): float32 parameters never silently turn a float64 input into float64
    work, nor the reverse.  Raises TypeError naming the input's and the parameter's dtype.
    """
    dtype = _array(x).dtype if hasattr(_array(x), "dtype") else None
    if dtype is None or not backend.is_floating(dtype):
        raise TypeError(f"{op_name}: input must be a floating-point tensor, got "
                        f"{dtype if dtype is not None else type(x).__name__}; convert it "
                        f"with x.to(dtype=minires.float32)")
    for name, value in params.items():
        if value is not None and _array(value).dtype != dtype:
            raise TypeError(
                f"{op_name}: input dtype {dtype} does not match the parameters' dtype "
                f"{_array(value).dtype} ({name}); convert one side, e.g. "
                f"x.to(dtype=minires.{_array(value).dtype}) or model.to(dtype=minires.{dtype})")


def _check_positive_ints(op_name: str, **values) -> None:
    """Kernel sizes, strides (>= 1) and paddings (>= 0), each an int or a pair of ints."""
    for name, value in values.items():
        if value is None:
            continue
        pair = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
        minimum = 0 if name == "padding" else 1
        if len(pair) != 2 or not all(isinstance(v, (int, np.integer))
                                     and not isinstance(v, bool) for v in pair):
            raise TypeError(f"{op_name}: {name} must be an int or a pair of ints, got "
                            f"{value!r}")
        if min(pair) < minimum:
            raise ValueError(f"{op_name}: {name} must be >= {minimum}, got {value!r}")


def _check_nchw(op_name: str, x) -> None:
    if not hasattr(x, "ndim"):
        raise TypeError(f"{op_name}: input must be a Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{op_name}: input must be 4-D (N, C, H, W), got shape "
                         f"{tuple(x.shape)}")


# ---------------------------------------------------------------------------- convolution


class Conv2d(Function):
    """y = conv2d(x, w) + b via im2col and one matrix product (see kernels/conv.py)."""

    def __init__(self, stride, padding, dilation):
        self.stride, self.padding, self.dilation = stride, padding, dilation

    def forward(self, x, weight, bias=None):
        self.x, self.weight, self.has_bias = x, weight, bias is not None
        return kernels.conv2d_forward(x, weight, bias, self.stride, self.padding,
                                      self.dilation)

    def backward(self, grad_y):
        grad_x, grad_w, grad_b = kernels.conv2d_backward(
            grad_y, self.x, self.weight, self.stride, self.padding, self.dilation,
            need_input_grad=self.needs_input_grad[0], need_bias_grad=self.has_bias)
        return (grad_x, grad_w, grad_b) if self.has_bias else (grad_x, grad_w)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1) -> Tensor:
    """2-D cross-correlation, as ``torch.nn.functional.conv2d``.

    Shapes: x (N, C_in, H, W), weight (C_out, C_in, KH, KW), bias (C_out,) ->
    (N, C_out, OH, OW) with OH = floor((H + 2 padding - dilation (KH - 1) - 1) / stride) + 1.
    """
    check_input_dtype("conv2d", x, weight=weight, bias=bias)
    _check_positive_ints("conv2d", stride=stride, padding=padding, dilation=dilation)
    if getattr(weight, "ndim", 0) == 4 and weight.shape[0] == 0:  # PyTorch refuses it too
        raise ValueError(f"conv2d: weight of shape {tuple(weight.shape)} has 0 output "
                         "channels; out_channels must be >= 1 to run a convolution")
    inputs = (x, weight) if bias is None else (x, weight, bias)
    return Conv2d(stride, padding, dilation)(*inputs)


# ---------------------------------------------------------------------------- pooling


class MaxPool2d(Function):
    """y = max over each window; the gradient flows to each window's (first) maximum."""

    def __init__(self, kernel_size, stride, padding):
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x):
        self.x_shape = x.shape
        y, self.saved = kernels.max_pool2d_forward(x, self.kernel_size, self.stride,
                                                   self.padding)  # the argmax (see routing)
        return y

    def backward(self, grad_y):
        return kernels.max_pool2d_backward(grad_y, self.saved, self.x_shape, self.kernel_size,
                                           self.stride, self.padding)


def max_pool2d(x, kernel_size, stride=None, padding=0) -> Tensor:
    """Max pooling, as ``torch.nn.functional.max_pool2d`` (stride defaults to kernel_size).

    Shapes: (N, C, H, W) -> (N, C, OH, OW), OH = floor((H + 2 padding - KH) / stride) + 1.
    """
    _check_nchw("max_pool2d", x)
    _check_positive_ints("max_pool2d", kernel_size=kernel_size, stride=stride, padding=padding)
    return MaxPool2d(kernel_size, stride, padding)(x)


class AvgPool2d(Function):
    """y = mean over each window; each input gets grad / window size from every window."""

    def __init__(self, kernel_size, stride, padding, count_include_pad):
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.count_include_pad = count_include_pad

    def forward(self, x):
        self.x_shape = x.shape
        return pool_kernels.avg_pool2d_forward(x, self.kernel_size, self.stride, self.padding,
                                               self.count_include_pad)

    def backward(self, grad_y):
        return pool_kernels.avg_pool2d_backward(grad_y, self.x_shape, self.kernel_size,
                                                self.stride, self.padding,
                                                self.count_include_pad)


def avg_pool2d(x, kernel_size, stride=None, padding=0, count_include_pad=True) -> Tensor:
    """Average pooling, as ``torch.nn.functional.avg_pool2d`` (padding counts by default)."""
    _check_nchw("avg_pool2d", x)
    _check_positive_ints("avg_pool2d", kernel_size=kernel_size, stride=stride, padding=padding)
    return AvgPool2d(kernel_size, stride, padding, count_include_pad)(x)


class GlobalAvgPool(Function):
    """y[n, c] = mean of x[n, c] over H and W;  dx = g / (H W) everywhere."""

    def forward(self, x):
        self.x_shape = x.shape
        return pool_kernels.global_avg_pool_forward(x)

    def backward(self, grad_y):
        return pool_kernels.global_avg_pool_backward(grad_y, self.x_shape)


def global_avg_pool2d(x) -> Tensor:
    """(N, C, H, W) -> (N, C): each channel's mean, the ResNet head's pooling."""
    _check_nchw("global_avg_pool2d", x)
    if x.shape[2] * x.shape[3] == 0:  # the mean of no pixels is undefined
        raise ValueError(f"global_avg_pool2d: input of shape {tuple(x.shape)} is empty in H "
                         "or W; it needs at least one pixel per channel")
    return GlobalAvgPool()(x)


def adaptive_avg_pool2d(x, output_size=(1, 1)) -> Tensor:
    """``torch.nn.functional.adaptive_avg_pool2d`` for output size 1: (N, C, 1, 1)."""
    sizes = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size,)
    if sizes not in ((1, 1), (1,)):
        raise ValueError(f"adaptive_avg_pool2d supports output_size (1, 1) only, got "
                         f"{output_size}")
    n, c = x.shape[:2]
    return global_avg_pool2d(x).reshape(n, c, 1, 1)


# ---------------------------------------------------------------------------- batch norm


class BatchNorm(Function):
    """y = gamma (x - mean) / sqrt(var + eps) + beta, per channel (see kernels/norm.py)."""

    def __init__(self, running_mean, running_var, training, momentum, eps, affine):
        self.running_mean, self.running_var = running_mean, running_var
        self.training, self.momentum, self.eps, self.affine = training, momentum, eps, affine

    def forward(self, x, weight=None, bias=None):
        y, self.cache = kernels.batch_norm_forward(
            x, weight, bias, self.running_mean, self.running_var, self.training,
            self.momentum, self.eps)
        return y

    def backward(self, grad_y):
        grad_x, grad_gamma, grad_beta = kernels.batch_norm_backward(grad_y, self.cache)
        return (grad_x, grad_gamma, grad_beta) if self.affine else grad_x


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5) -> Tensor:
    """Batch normalisation, as ``torch.nn.functional.batch_norm``.

    Shapes: x (N, C, H, W) or (N, C); running_mean, running_var, weight, bias (C,).
    Training normalises with the batch's mean and biased variance and updates the running
    statistics in place: running = (1 - momentum) running + momentum batch_stat (unbiased
    variance); eval normalises with the running statistics.
    """
    if (weight is None) != (bias is None):
        raise ValueError("batch_norm: give both weight and bias, or neither")
    # Running statistics join the arithmetic only in eval mode; in training they are just
    # updated in place (in their own floating dtype).
    stats = {"running_mean": running_mean, "running_var": running_var}
    check_input_dtype("batch_norm", x, weight=weight, bias=bias,
                      **({} if training else stats))
    for name, value in stats.items():
        if value is not None and not backend.is_floating(_array(value).dtype):
            raise TypeError(f"batch_norm: {name} must be floating point, got "
                            f"{_array(value).dtype}")
    if x.ndim >= 2 and x.shape[1] == 0:  # PyTorch fails on it too (with an IndexError)
        raise ValueError(f"batch_norm: input of shape {x.shape} has 0 channels; "
                         "num_features must be >= 1 to normalise")
    function = BatchNorm(_array(running_mean), _array(running_var), training, momentum, eps,
                         affine=weight is not None)
    return function(x) if weight is None else function(x, weight, bias)


# ---------------------------------------------------------------------------- linear, losses


class Linear(Function):
    """y = x W^T + b with W of shape (out_features, in_features), as PyTorch."""

    def forward(self, x, weight, bias=None):
        self.x, self.weight, self.has_bias = x, weight, bias is not None
        return act_kernels.linear_forward(x, weight, bias)

    def backward(self, grad_y):
        grads = act_kernels.linear_backward(grad_y, self.x, self.weight,
                                            need_bias_grad=self.has_bias)
        return grads if self.has_bias else grads[:2]


def linear(x, weight, bias=None) -> Tensor:
    """Affine map, as ``torch.nn.functional.linear``: (..., in) -> (..., out)."""
    check_input_dtype("linear", x, weight=weight, bias=bias)
    return Linear()(x, weight) if bias is None else Linear()(x, weight, bias)


class CrossEntropy(Function):
    """loss = mean_n -log softmax(logits_n)[label_n] (with optional label smoothing)."""

    def __init__(self, labels, label_smoothing):
        self.labels, self.label_smoothing = labels, label_smoothing

    def forward(self, logits):
        loss, self.probs = loss_kernels.softmax_cross_entropy_forward(
            logits, self.labels, self.label_smoothing)
        return loss

    def backward(self, grad_loss):
        return loss_kernels.softmax_cross_entropy_backward(
            self.probs, self.labels, self.label_smoothing, grad_loss)


def cross_entropy(logits, target, label_smoothing=0.0) -> Tensor:
    """Softmax cross-entropy with integer class targets and mean reduction.

    Shapes: logits (N, K) float, target (N,) integer in [0, K) -> scalar.
    """
    return CrossEntropy(_array(target), label_smoothing)(logits)


def mse_loss(prediction, target) -> Tensor:
    """Mean squared error: mean((prediction - target)^2), built from tensor ops."""
    difference = prediction - as_tensor(target, like=prediction)
    return (difference * difference).mean()


# ---------------------------------------------------------------------------- dropout


class Dropout(Function):
    """y = x * mask / (1 - p), mask ~ Bernoulli(1 - p), so E[y] = x;  dx = g * mask / (1 - p)."""

    def __init__(self, p):
        self.p = p

    def forward(self, x):
        xp = backend.get_array_module(x)
        if xp.__name__ == "numpy":
            keep = backend.rng().random(x.shape) >= self.p
        else:  # draw on the GPU, seeded by manual_seed through cupy.random
            keep = xp.random.random(x.shape) >= self.p
        self.scale = (keep / (1.0 - self.p)).astype(x.dtype)
        return x * self.scale

    def backward(self, grad_y):
        return grad_y * self.scale


def dropout(x, p=0.5, training=True) -> Tensor:
    """Zero each element with probability ``p`` in training (scaling the rest by 1/(1-p));
    the identity in evaluation."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x
    return Dropout(p)(x)
