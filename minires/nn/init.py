"""Weight initialisation, as ``torch.nn.init``: each function fills a tensor in place.

Why it matters (He et al. 2015, "Delving Deep into Rectifiers"): a layer y = W x with
fan_in inputs multiplies the signal's variance by fan_in * Var(W); a ReLU halves it.
Choosing Var(W) = 2 / fan_in (He/Kaiming) keeps the variance constant through a deep
ReLU net, so signals neither explode nor vanish.  Xavier/Glorot (2010) uses
Var(W) = 2 / (fan_in + fan_out), the analogue for tanh/sigmoid-like units near zero.
All draws come from minires's seeded generator (``minires.manual_seed``).
"""

from __future__ import annotations

import math

import numpy as np

from minires import backend

_GAINS = {"linear": 1.0, "conv2d": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3, "relu": math.sqrt(2.0)}


def calculate_gain(nonlinearity: str, param=None) -> float:
    """The factor that keeps the signal's scale through ``nonlinearity`` (PyTorch's values)."""
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity not in _GAINS:
        raise ValueError(f"unknown nonlinearity {nonlinearity!r}; expected one of "
                         f"{sorted(_GAINS) + ['leaky_relu']}")
    return _GAINS[nonlinearity]


def calculate_fan_in_and_fan_out(tensor) -> tuple[int, int]:
    """fan_in = in_features * kernel area, fan_out = out_features * kernel area.

    Shapes: Linear weight (out, in); Conv2d weight (out, in, KH, KW).
    """
    shape = tensor.shape
    if len(shape) < 2:
        raise ValueError(f"fan in/out needs a weight with at least 2 dimensions, got {shape}")
    receptive = int(np.prod(shape[2:], dtype=np.int64))
    return shape[1] * receptive, shape[0] * receptive


def _is_empty(tensor) -> bool:
    """Zero-element tensors (a layer with 0 channels) are left alone, as in PyTorch: their
    fans may be 0, and there is nothing to fill."""
    return int(np.prod(tensor.shape, dtype=np.int64)) == 0


def _fill(tensor, values):
    xp = backend.get_array_module(tensor.data)
    tensor.data[...] = xp.asarray(backend.to_device(values, tensor.device), dtype=tensor.dtype)
    return tensor


def uniform_(tensor, a: float = 0.0, b: float = 1.0):
    """Fill with U(a, b)."""
    return _fill(tensor, backend.rng().uniform(a, b, size=tensor.shape))


def normal_(tensor, mean: float = 0.0, std: float = 1.0):
    """Fill with N(mean, std^2)."""
    return _fill(tensor, backend.rng().normal(mean, std, size=tensor.shape))


def constant_(tensor, value: float):
    """Fill with ``value``."""
    tensor.data[...] = value
    return tensor


def zeros_(tensor):
    return constant_(tensor, 0.0)


def ones_(tensor):
    return constant_(tensor, 1.0)


def _fan(tensor, mode: str) -> int:
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    return fan_in if mode == "fan_in" else fan_out


def kaiming_normal_(tensor, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu"):
    """He initialisation: N(0, std^2) with std = gain / sqrt(fan).

    torchvision's ResNet uses ``mode='fan_out', nonlinearity='relu'``: std = sqrt(2 / fan_out).
    """
    if _is_empty(tensor):
        return tensor
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    return normal_(tensor, 0.0, std)


def kaiming_uniform_(tensor, a: float = 0.0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu"):
    """He initialisation, uniform: U(-bound, bound) with bound = gain * sqrt(3 / fan).

    PyTorch's default for Conv2d and Linear weights is ``a = sqrt(5)``, which gives
    bound = 1 / sqrt(fan_in).
    """
    if _is_empty(tensor):
        return tensor
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / _fan(tensor, mode))
    return uniform_(tensor, -bound, bound)


def xavier_uniform_(tensor, gain: float = 1.0):
    """Glorot initialisation: U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out))."""
    if _is_empty(tensor):
        return tensor
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor, gain: float = 1.0):
    """Glorot initialisation: N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    if _is_empty(tensor):
        return tensor
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))
