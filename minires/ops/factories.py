"""Factories: new leaf tensors (``tensor``, ``zeros``, ``randn``, ...), as in PyTorch."""

from __future__ import annotations

import numpy as np

from minires import backend
from minires.autograd import Tensor, as_array
from minires.ops.common import shape_args

# ---------------------------------------------------------------------------- factories


def tensor(data, requires_grad=False, dtype=None, device="cpu", name=None) -> Tensor:
    """A new leaf tensor holding ``data`` (copied), like ``torch.tensor``.

    Python floats become the default dtype (float32); NumPy arrays keep their dtype
    unless ``dtype`` is given.
    """
    array = as_array(data, dtype=dtype, device=device)
    if array is data or (isinstance(data, Tensor) and array is data.data):
        array = array.copy()
    return Tensor(array, requires_grad=requires_grad, name=name)


def _filled(fill, shape, dtype, device, requires_grad):
    device = backend.check_device(device)
    xp = backend.get_array_module(backend.to_device(np.zeros(0), device))
    data = xp.full(shape_args(shape), fill, dtype=dtype or backend.get_default_dtype())
    return Tensor(data, requires_grad=requires_grad)


def zeros(*shape, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    """A tensor of zeros."""
    return _filled(0, shape, dtype, device, requires_grad)


def ones(*shape, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    """A tensor of ones."""
    return _filled(1, shape, dtype, device, requires_grad)


def full(shape, fill_value, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    """A tensor filled with ``fill_value``."""
    return _filled(fill_value, (shape,), dtype, device, requires_grad)


def zeros_like(x: Tensor, requires_grad=False) -> Tensor:
    return zeros(x.shape, dtype=x.dtype, device=x.device, requires_grad=requires_grad)


def ones_like(x: Tensor, requires_grad=False) -> Tensor:
    return ones(x.shape, dtype=x.dtype, device=x.device, requires_grad=requires_grad)


def randn(*shape, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    """Standard normal samples from minires's seeded generator (see ``manual_seed``)."""
    data = backend.rng().standard_normal(shape_args(shape))
    return tensor(data, requires_grad, dtype or backend.get_default_dtype(), device)


def rand(*shape, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    """Uniform [0, 1) samples from minires's seeded generator."""
    data = backend.rng().random(shape_args(shape))
    return tensor(data, requires_grad, dtype or backend.get_default_dtype(), device)


def arange(start, stop=None, step=1, dtype=None, device="cpu") -> Tensor:
    """Evenly spaced values in [start, stop), like ``torch.arange``."""
    if stop is None:
        start, stop = 0, start
    return tensor(np.arange(start, stop, step), dtype=dtype, device=device)


