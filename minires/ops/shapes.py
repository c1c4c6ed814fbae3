"""Shape ops (reshape, permute, indexing, joining, splitting, padding) and moves between
devices and dtypes: each a Function whose backward puts the gradient back in place."""

from __future__ import annotations

import builtins

import numpy as np

from minires import backend
from minires.autograd import Function, Tensor, as_tensor
from minires.ops.common import check_dim, first_tensor, promote, shape_args, sum_to

# ---------------------------------------------------------------------------- shapes


class Reshape(Function):
    """y = x viewed with a new shape;  dx = g reshaped back."""

    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        self.x_shape = x.shape
        try:
            return x.reshape(self.shape)
        except ValueError:
            raise ValueError(
                f"cannot reshape a tensor of shape {x.shape} ({x.size} elements) into "
                f"shape {tuple(self.shape)}"
            ) from None

    def backward(self, g):
        return g.reshape(self.x_shape)


class Permute(Function):
    """y = x with axes reordered by ``dims``;  dx = g with the inverse order."""

    def __init__(self, dims):
        self.dims = tuple(dims)

    def forward(self, x):
        if sorted(d % builtins.max(x.ndim, 1) for d in self.dims) != list(range(x.ndim)):
            raise ValueError(f"permute: {self.dims} is not a permutation of {x.ndim} axes")
        return x.transpose(self.dims)

    def backward(self, g):
        return g.transpose(np.argsort([d % g.ndim for d in self.dims]))


class BroadcastTo(Function):
    """y = x broadcast to ``shape``;  dx = g summed back over the broadcast axes."""

    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, x):
        self.x_shape = x.shape
        return backend.get_array_module(x).broadcast_to(x, self.shape).copy()

    def backward(self, g):
        return sum_to(g, self.x_shape)


def _is_advanced_index(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return any(hasattr(p, "shape") or isinstance(p, (list, bool)) for p in parts)


class GetItem(Function):
    """y = x[index] (basic or integer-array indexing);  dx = zeros with g added at
    ``index`` (repeated indices add up, since each copy received its own gradient)."""

    def __init__(self, index):
        self.index = index

    def forward(self, x):
        self.x_shape, self.x_dtype = x.shape, x.dtype
        return x[self.index]

    def backward(self, g):
        xp = backend.get_array_module(g)
        grad = xp.zeros(self.x_shape, dtype=g.dtype)
        if not _is_advanced_index(self.index):
            grad[self.index] = g  # plain slices never repeat an element
        elif xp is np:
            np.add.at(grad, self.index, g)
        else:
            import cupyx

            cupyx.scatter_add(grad, self.index, g)
        return grad


class Concatenate(Function):
    """y = inputs joined along ``axis``;  each input's gradient is its slice of g."""

    def __init__(self, axis=0):
        self.axis = axis

    def forward(self, *arrays):
        xp = backend.get_array_module(*arrays)
        self.sizes = [a.shape[self.axis] for a in arrays]
        return xp.concatenate(arrays, axis=self.axis)

    def backward(self, g):
        xp = backend.get_array_module(g)
        return tuple(xp.split(g, np.cumsum(self.sizes)[:-1].tolist(), axis=self.axis))


class Stack(Function):
    """y = inputs stacked along a new ``axis``;  input i's gradient is g's slice i."""

    def __init__(self, axis=0):
        self.axis = axis

    def forward(self, *arrays):
        return backend.get_array_module(*arrays).stack(arrays, axis=self.axis)

    def backward(self, g):
        xp = backend.get_array_module(g)
        return tuple(xp.take(g, i, axis=self.axis) for i in range(g.shape[self.axis]))


class Split(Function):
    """(y_0, y_1, ...) = consecutive pieces of x along ``axis``, of the given ``sizes``;
    dx = the pieces' gradients joined back (a piece nothing used contributes zeros)."""

    def __init__(self, sizes, axis=0):
        self.sizes, self.axis = list(sizes), axis

    def forward(self, x):
        xp = backend.get_array_module(x)
        pieces = xp.split(x, np.cumsum(self.sizes)[:-1].tolist(), axis=self.axis)
        return tuple(p.copy() for p in pieces)  # copies: no piece aliases x's memory

    def backward(self, *grads):
        return backend.get_array_module(*grads).concatenate(grads, axis=self.axis)


class Pad(Function):
    """y = x padded with a constant (NumPy's ``pad_width``: one (before, after) per axis);
    dx = the slice of g where x sits."""

    def __init__(self, pad_width, value=0.0):
        self.pad_width, self.value = pad_width, value

    def forward(self, x):
        self.pad_width = [tuple(p) for p in np.broadcast_to(
            np.asarray(self.pad_width, dtype=np.int64), (x.ndim, 2))]
        xp = backend.get_array_module(x)
        return xp.pad(x, self.pad_width, mode="constant", constant_values=self.value)

    def backward(self, g):
        return g[tuple(slice(before, g.shape[i] - after)
                       for i, (before, after) in enumerate(self.pad_width))]


class ToDevice(Function):
    """y = x copied to another device;  dx = g copied back."""

    def __init__(self, device):
        self.device = device

    def forward(self, x):
        self.source = backend.device_of(x)
        return backend.to_device(x, self.device)

    def backward(self, g):
        return backend.to_device(g, self.source)


class Cast(Function):
    """y = x converted to ``dtype``;  dx = g converted back to x's dtype."""

    def __init__(self, dtype):
        self.dtype = dtype

    def forward(self, x):
        self.source = x.dtype
        return x.astype(self.dtype)

    def backward(self, g):
        return g.astype(self.source)


def reshape(x, *shape):
    """The same values in a new shape (one dimension may be -1)."""
    return Reshape(shape_args(shape))(x)


def flatten(x, start_dim=0, end_dim=-1):
    """Merge axes start_dim..end_dim into one (PyTorch's flatten)."""
    start = check_dim("flatten", start_dim, x.ndim)
    end = check_dim("flatten", end_dim, x.ndim)
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    shape = x.shape[:start] + (-1,) + x.shape[end + 1:]
    return Reshape(shape)(x)


def permute(x, *dims):
    """Reorder the axes: ``x.permute(0, 2, 3, 1)`` turns NCHW into NHWC."""
    return Permute(shape_args(dims))(x)


def transpose(x, dim0, dim1):
    """Swap two axes (PyTorch's transpose; for NumPy's use :func:`permute`)."""
    dim0, dim1 = check_dim("transpose", dim0, x.ndim), check_dim("transpose", dim1, x.ndim)
    if x.ndim == 0:
        return Permute(())(x)
    dims = list(range(x.ndim))
    dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
    return Permute(dims)(x)


def broadcast_to(x, *shape):
    """Repeat x along size-1 (or missing leading) axes to ``shape``.  Alias: ``expand``."""
    return BroadcastTo(shape_args(shape))(x)


def concatenate(tensors, axis=0, *, dim=None):
    """Join tensors along an existing axis.  Alias: ``cat``."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("concatenate needs at least one tensor")
    like = first_tensor(tensors)
    tensors = promote(*[as_tensor(t, like) for t in tensors])
    if builtins.any(t.ndim == 0 for t in tensors):
        raise ValueError("concatenate: zero-dimensional tensors cannot be concatenated (dim "
                         "has nothing to join along); use stack")
    axis = check_dim("concatenate", axis if dim is None else dim, tensors[0].ndim)
    return Concatenate(axis)(*tensors)


cat = concatenate


def stack(tensors, axis=0, *, dim=None):
    """Join same-shaped tensors along a new axis."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack needs at least one tensor")
    shapes = {as_tensor(t).shape for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"stack needs tensors of one shape, got {sorted(shapes)}")
    like = first_tensor(tensors)
    tensors = promote(*[as_tensor(t, like) for t in tensors])
    axis = check_dim("stack", axis if dim is None else dim, tensors[0].ndim, extra=1)
    return Stack(axis)(*tensors)



def pad(x, pad_width, value=0.0):
    """Constant padding with NumPy's ``pad_width`` ((before, after) per axis)."""
    return Pad(pad_width, value)(x)


def getitem(x, index):
    """``x[index]``: basic slicing and integer-array indexing (Tensors allowed)."""
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return GetItem(index)(x)


def split(x, split_size_or_sections, dim=0):
    """Cut ``x`` into pieces along ``dim``, as ``torch.split``: an int gives pieces of that
    size (the last may be smaller), a list gives each piece's size (they must add up).

    Shapes: x (..., n, ...) -> a tuple of (..., n_i, ...) with sum(n_i) = n.
    """
    if not -builtins.max(x.ndim, 1) <= dim < builtins.max(x.ndim, 1) or x.ndim == 0:
        raise ValueError(f"split: dim {dim} is out of range for a tensor of shape {x.shape}")
    n = x.shape[dim]
    if isinstance(split_size_or_sections, (int, np.integer)):
        size = int(split_size_or_sections)
        if size < 0 or (size == 0 and n > 0):
            raise ValueError(f"split: split_size must be >= 1 (0 only for an empty "
                             f"dimension), got {size}")
        sizes = [builtins.min(size, n - start) for start in range(0, n, size)] if n else [0]
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if builtins.any(s < 0 for s in sizes) or builtins.sum(sizes) != n:
            raise ValueError(f"split: split_size_or_sections {sizes} must be sizes >= 0 that "
                             f"add up to the dimension's size {n}")
    return Split(sizes, dim)(x)


def to(x, device=None, dtype=None) -> Tensor:
    """Move to ``device`` ('cpu' or 'cuda') and/or cast to ``dtype``; differentiable."""
    result = x
    if device is not None and backend.check_device(device) != x.device:
        result = ToDevice(backend.check_device(device))(result)
    if dtype is not None and np.dtype(dtype) != result.dtype:
        result = Cast(np.dtype(dtype))(result)
    return result


