"""Layers: Modules holding parameters and calling :mod:`minires.functional`.

Constructor arguments, parameter names and default initialisations follow ``torch.nn``,
so a model built here has the same state-dict keys and shapes as its PyTorch twin.
"""

from __future__ import annotations

import math

import numpy as np

from minires import backend
from minires import functional as F
from minires.kernels.geometry import is_int, pair
from minires.nn import init
from minires.nn.module import Module
from minires.nn.parameter import Parameter


def _size(value, name: str) -> int:
    """A layer's width (features, channels): an int >= 0 (0 builds an empty layer, as in
    PyTorch)."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return int(value)


def _empty(*shape) -> Parameter:
    return Parameter(np.zeros(shape, dtype=backend.get_default_dtype()))


def _check_input(layer: Module, x, ndims: tuple, channels: int | None, what: str) -> None:
    """Raise a clear error when ``x`` does not have the dimensions/channels the layer needs."""
    if x.ndim not in ndims:
        expected = " or ".join(f"{n}-D" for n in ndims)
        raise ValueError(f"{type(layer).__name__} expects {expected} input ({what}), got "
                         f"shape {x.shape}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{type(layer).__name__} expects {channels} channels at dimension 1 "
                         f"({what}), got input of shape {x.shape}")


class Linear(Module):
    """y = x W^T + b;  W (out_features, in_features), b (out_features,).

    Initialised like PyTorch: W and b ~ U(-1/sqrt(in_features), 1/sqrt(in_features)).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features = _size(in_features, "in_features")
        self.out_features = _size(out_features, "out_features")
        self.weight = _empty(out_features, in_features)
        self.register_parameter("bias", _empty(out_features) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:  # bound 0 for in_features = 0, as PyTorch
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear expects input with {self.in_features} features in its "
                             f"last dimension, got shape {x.shape}")
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Conv2d(Module):
    """2-D convolution; weight (out_channels, in_channels, KH, KW), bias (out_channels,).

    Output size per spatial dimension: floor((H + 2 padding - dilation (K - 1) - 1) / stride) + 1.
    Initialised like PyTorch (U(-1/sqrt(fan_in), 1/sqrt(fan_in))); ResNets re-initialise
    with Kaiming normal.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, bias: bool = True):
        super().__init__()
        self.in_channels = _size(in_channels, "in_channels")
        self.out_channels = _size(out_channels, "out_channels")
        # PyTorch accepts these and fails at the first forward; here the constructor says.
        self.kernel_size = pair(kernel_size, "kernel_size", minimum=1)
        self.stride = pair(stride, "stride", minimum=1)
        self.padding = pair(padding, "padding", minimum=0)
        self.dilation = pair(dilation, "dilation", minimum=1)
        self.weight = _empty(out_channels, in_channels, *self.kernel_size)
        self.register_parameter("bias", _empty(out_channels) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        fan_in, _ = init.calculate_fan_in_and_fan_out(self.weight)
        if self.bias is not None and fan_in > 0:  # fan_in 0: bias stays 0 (PyTorch skips it)
            init.uniform_(self.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))

    def forward(self, x):
        _check_input(self, x, (4,), self.in_channels, "N, C, H, W")
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}")
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        return text + ("" if self.bias is not None else ", bias=False")


class _BatchNorm(Module):
    """Shared by BatchNorm1d/2d: gamma (``weight``) = 1, beta (``bias``) = 0, running
    mean 0 and variance 1; ``num_batches_tracked`` counts training steps (kept for
    state-dict compatibility with PyTorch)."""

    _ndims: tuple = ()
    _layout: str = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True, track_running_stats: bool = True):
        super().__init__()
        num_features = _size(num_features, "num_features")
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        dtype = backend.get_default_dtype()
        if affine:
            self.weight = Parameter(np.ones(num_features, dtype=dtype))
            self.bias = Parameter(np.zeros(num_features, dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype=dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype=dtype))
            self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)

    def forward(self, x):
        _check_input(self, x, self._ndims, self.num_features, self._layout)
        use_batch_stats = self.training or not self.track_running_stats
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data = self.num_batches_tracked.data + 1
        running_mean = self.running_mean if self.track_running_stats else None
        running_var = self.running_var if self.track_running_stats else None
        return F.batch_norm(x, running_mean, running_var, self.weight, self.bias,
                            use_batch_stats, self.momentum, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalisation per feature of (N, C) input."""

    _ndims, _layout = (2,), "N, C"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation per channel of (N, C, H, W) input, statistics over N, H, W."""

    _ndims, _layout = (4,), "N, C, H, W"


class ReLU(Module):
    """y = max(x, 0)."""

    def forward(self, x):
        return F.relu(x)


class Sigmoid(Module):
    """y = 1 / (1 + e^-x)."""

    def forward(self, x):
        return F.sigmoid(x)


class Tanh(Module):
    """y = tanh(x)."""

    def forward(self, x):
        return F.tanh(x)


class Identity(Module):
    """y = x (a placeholder, e.g. an identity shortcut)."""

    def forward(self, x):
        return x


class Flatten(Module):
    """Merge dimensions start_dim..end_dim: (N, C, H, W) -> (N, C H W) by default."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return x.flatten(self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Dropout(Module):
    """Zero each element with probability p in training (scaling the others by 1/(1-p))."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class MaxPool2d(Module):
    """Max over kernel_size windows (stride defaults to kernel_size)."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.padding = kernel_size, padding
        # None means kernel_size; an explicit 0 must reach the check, not become the default
        self.stride = kernel_size if stride is None else stride

    def forward(self, x):
        _check_input(self, x, (4,), None, "N, C, H, W")
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(Module):
    """Mean over kernel_size windows (zero padding counted, as PyTorch's default)."""

    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad=True):
        super().__init__()
        self.kernel_size, self.padding = kernel_size, padding
        # None means kernel_size; an explicit 0 must reach the check, not become the default
        self.stride = kernel_size if stride is None else stride
        self.count_include_pad = count_include_pad

    def forward(self, x):
        _check_input(self, x, (4,), None, "N, C, H, W")
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding,
                            self.count_include_pad)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Global average pooling to (N, C, 1, 1); only output_size (1, 1) is supported."""

    def __init__(self, output_size=(1, 1)):
        super().__init__()
        self.output_size = pair(output_size, "output_size")
        if self.output_size != (1, 1):
            raise ValueError(f"AdaptiveAvgPool2d supports output_size (1, 1) only, got "
                             f"{output_size}")

    def forward(self, x):
        _check_input(self, x, (4,), None, "N, C, H, W")
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class Sequential(Module):
    """Modules applied in order; children are named '0', '1', ... as in PyTorch."""

    def __init__(self, *modules: Module):
        super().__init__()
        for index, module in enumerate(modules):
            self.add_module(str(index), module)

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x

    def append(self, module: Module) -> Sequential:
        self.add_module(str(len(self._modules)), module)
        return self

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        modules = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*modules[index])
        return modules[index]
