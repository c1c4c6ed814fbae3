"""Helpers shared by the ops: broadcasting's gradient (sum_to), dtype promotion, and
the checks of axes and shapes."""

from __future__ import annotations

import builtins

import numpy as np

from minires import backend
from minires.autograd import Tensor

# ---------------------------------------------------------------------------- helpers


def sum_to(grad, shape):
    """Sum ``grad`` over the axes broadcasting created, so it has ``shape`` again.

    Example: ``shape`` (3,) broadcast to (2, 3) -> sum over axis 0; ``shape`` (2, 1)
    broadcast to (2, 3) -> sum over axis 1 keeping it.
    """
    shape = tuple(shape)
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)  # axes broadcasting prepended
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1
    )
    return grad.sum(axis=axes, keepdims=True).reshape(shape)


def normalize_axes(axis, ndim: int):
    """Reduction axes as a sorted tuple of non-negative ints (None -> all axes)."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    for a in axes:  # a 0-d tensor accepts axis 0 and -1, as in PyTorch
        if not -builtins.max(ndim, 1) <= a < builtins.max(ndim, 1):
            raise ValueError(f"axis {a} is out of range for a tensor with {ndim} dimensions")
    if ndim == 0:
        return ()
    return tuple(sorted(int(a) % ndim for a in axes))


def check_dim(op_name: str, dim, ndim: int, extra: int = 0) -> int:
    """``dim`` as a non-negative axis of a tensor with ``ndim`` dimensions (+ ``extra`` new
    ones, for stack).  A 0-d tensor accepts 0 and -1, as in PyTorch."""
    size = builtins.max(ndim + extra, 1)
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
        raise TypeError(f"{op_name}: dim must be an int, got {dim!r}")
    if not -size <= dim < size:
        raise ValueError(f"{op_name}: dim {dim} is out of range for a tensor with {ndim} "
                         f"dimensions (expected {-size} <= dim < {size})")
    return int(dim) % size


def reduction_args(axis, dim, keepdims, keepdim):
    """Accept NumPy's (axis, keepdims) and PyTorch's (dim, keepdim) spellings."""
    if dim is not None:
        if axis is not None:
            raise TypeError("give either axis= (NumPy) or dim= (PyTorch), not both")
        axis = dim
    return axis, bool(keepdims or keepdim)


def check_broadcastable(op_name, a: Tensor, b: Tensor) -> None:
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"{op_name}: shapes {a.shape} and {b.shape} cannot be broadcast together"
        ) from None


def promote(*tensors) -> list:
    """Integer and bool tensors meeting a floating one take its dtype, as in PyTorch.

    ``float32 * int64`` stays float32 (NumPy would give float64); floats of different
    widths still promote (float32 + float64 -> float64).  Integer tensors never require
    grad, so the conversion is a plain copy, not a graph node.
    """
    floats = [t.dtype for t in tensors if backend.is_floating(t.dtype)]
    if not floats or len(floats) == len(tensors):
        return list(tensors)
    dtype = np.result_type(*floats)
    return [t if backend.is_floating(t.dtype) else Tensor(t.data.astype(dtype))
            for t in tensors]



def shape_args(shape):
    """Accept ``f(2, 3)`` and ``f((2, 3))``."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


def first_tensor(tensors):
    """The first Tensor among ``tensors`` (None if there is none)."""
    return next((t for t in tensors if isinstance(t, Tensor)), None)

