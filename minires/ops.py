"""Differentiable tensor operations: arithmetic, reductions, shapes, activations.

Each op is a :class:`~minires.autograd.Function` with a ``forward`` and a ``backward`` on
raw arrays, short enough to read next to the formula in its docstring.  The module-level
functions (``minires.exp(x)``, ``minires.sum(x, axis=1)``) and the Tensor methods and
operators (``x.exp()``, ``x + y``, ``x @ w``) defined at the bottom all create these.

Broadcasting: when ``a + b`` broadcasts ``b`` from shape (3,) to (2, 3), the gradient of
``b`` is the upstream gradient *summed* over the broadcast axes (:func:`sum_to`), because
every copy of ``b[j]`` contributed to the result.
"""

from __future__ import annotations

import builtins

import numpy as np

from minires import backend
from minires.autograd import Function, Tensor, as_array, as_tensor
from minires.kernels import activation as act_kernels
from minires.kernels import loss as loss_kernels

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


def _normalize_axes(axis, ndim: int):
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


def _check_dim(op_name: str, dim, ndim: int, extra: int = 0) -> int:
    """``dim`` as a non-negative axis of a tensor with ``ndim`` dimensions (+ ``extra`` new
    ones, for stack).  A 0-d tensor accepts 0 and -1, as in PyTorch."""
    size = builtins.max(ndim + extra, 1)
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
        raise TypeError(f"{op_name}: dim must be an int, got {dim!r}")
    if not -size <= dim < size:
        raise ValueError(f"{op_name}: dim {dim} is out of range for a tensor with {ndim} "
                         f"dimensions (expected {-size} <= dim < {size})")
    return int(dim) % size


def _reduction_args(axis, dim, keepdims, keepdim):
    """Accept NumPy's (axis, keepdims) and PyTorch's (dim, keepdim) spellings."""
    if dim is not None:
        if axis is not None:
            raise TypeError("give either axis= (NumPy) or dim= (PyTorch), not both")
        axis = dim
    return axis, bool(keepdims or keepdim)


def _check_broadcastable(op_name, a: Tensor, b: Tensor) -> None:
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


# ---------------------------------------------------------------------------- arithmetic


class Add(Function):
    """y = a + b;  da = g, db = g (each summed back to its shape)."""

    def forward(self, a, b):
        self.a_shape, self.b_shape = a.shape, b.shape
        return a + b

    def backward(self, g):
        return (sum_to(g, self.a_shape) if self.needs_input_grad[0] else None,
                sum_to(g, self.b_shape) if self.needs_input_grad[1] else None)


class Sub(Function):
    """y = a - b;  da = g, db = -g."""

    def forward(self, a, b):
        self.a_shape, self.b_shape = a.shape, b.shape
        return a - b

    def backward(self, g):
        return (sum_to(g, self.a_shape) if self.needs_input_grad[0] else None,
                sum_to(-g, self.b_shape) if self.needs_input_grad[1] else None)


class Mul(Function):
    """y = a * b;  da = g * b, db = g * a."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, g):
        grad_a = sum_to(g * self.b, self.a.shape) if self.needs_input_grad[0] else None
        grad_b = sum_to(g * self.a, self.b.shape) if self.needs_input_grad[1] else None
        return grad_a, grad_b


class Div(Function):
    """y = a / b;  da = g / b, db = -g * a / b^2."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, g):
        grad_a = sum_to(g / self.b, self.a.shape) if self.needs_input_grad[0] else None
        grad_b = None
        if self.needs_input_grad[1]:
            grad_b = sum_to(-g * self.a / (self.b * self.b), self.b.shape)
        return grad_a, grad_b


class Neg(Function):
    """y = -x;  dx = -g."""

    def forward(self, x):
        return -x

    def backward(self, g):
        return -g


class Pow(Function):
    """y = a ** b;  da = g * b * a^(b-1), db = g * y * log(a) (needs a > 0)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        self.y = a**b
        return self.y

    def backward(self, g):
        grad_a = grad_b = None
        if self.needs_input_grad[0]:
            grad_a = sum_to(g * self.b * self.a ** (self.b - 1), self.a.shape)
        if self.needs_input_grad[1]:
            xp = backend.get_array_module(self.a)
            grad_b = sum_to(g * self.y * xp.log(self.a), self.b.shape)
        return grad_a, grad_b


class MatMul(Function):
    """y = a @ b (NumPy's matmul: batched and broadcast over leading axes).

    da = g @ b^T, db = a^T @ g, each summed back over broadcast batch axes.  1-D
    operands are treated as a row (a) or column (b) vector, as matmul does.
    """

    def forward(self, a, b):
        self.a, self.b = a, b
        return a @ b

    def backward(self, g):
        a, b = self.a, self.b
        if a.ndim == 1 and b.ndim == 1:  # dot product: y is a scalar
            return g * b, g * a
        # Promote 1-D operands to matrices as matmul does, and put the axis it removed
        # from the result back into g.
        a2 = a[None, :] if a.ndim == 1 else a  # (K,) -> (1, K)
        b2 = b[:, None] if b.ndim == 1 else b  # (K,) -> (K, 1)
        g2 = g[..., None, :] if a.ndim == 1 else g
        g2 = g2[..., None] if b.ndim == 1 else g2
        grad_a = grad_b = None
        if self.needs_input_grad[0]:
            grad_a = sum_to(g2 @ b2.swapaxes(-1, -2), a2.shape).reshape(a.shape)
        if self.needs_input_grad[1]:
            grad_b = sum_to(a2.swapaxes(-1, -2) @ g2, b2.shape).reshape(b.shape)
        return grad_a, grad_b


# ---------------------------------------------------------------------------- elementwise


class Exp(Function):
    """y = exp(x);  dx = g * y."""

    def forward(self, x):
        self.y = backend.get_array_module(x).exp(x)
        return self.y

    def backward(self, g):
        return g * self.y


class Log(Function):
    """y = log(x);  dx = g / x."""

    def forward(self, x):
        self.x = x
        return backend.get_array_module(x).log(x)

    def backward(self, g):
        return g / self.x


class Sqrt(Function):
    """y = sqrt(x);  dx = g / (2 y)."""

    def forward(self, x):
        self.y = backend.get_array_module(x).sqrt(x)
        return self.y

    def backward(self, g):
        return g / (2 * self.y)


class Abs(Function):
    """y = |x|;  dx = g * sign(x) (0 at x = 0, as PyTorch)."""

    def forward(self, x):
        self.x = x
        return builtins.abs(x)

    def backward(self, g):
        return g * backend.get_array_module(self.x).sign(self.x)


class Clip(Function):
    """y = min(max(x, low), high);  dx = g where low <= x <= high, else 0 (as torch.clamp)."""

    def __init__(self, low, high):
        self.low, self.high = low, high

    def forward(self, x):
        xp = backend.get_array_module(x)
        self.inside = xp.ones(x.shape, dtype=bool)
        if self.low is not None:
            self.inside &= x >= self.low
        if self.high is not None:
            self.inside &= x <= self.high
        return xp.clip(x, self.low, self.high)

    def backward(self, g):
        return g * self.inside


class Sigmoid(Function):
    """y = 1 / (1 + exp(-x));  dx = g * y * (1 - y)  (so |dy/dx| <= 1/4)."""

    def forward(self, x):
        self.y = act_kernels.sigmoid_forward(x)
        return self.y

    def backward(self, g):
        return act_kernels.sigmoid_backward(g, self.y)


class Tanh(Function):
    """y = tanh(x);  dx = g * (1 - y^2)."""

    def forward(self, x):
        self.y = act_kernels.tanh_forward(x)
        return self.y

    def backward(self, g):
        return act_kernels.tanh_backward(g, self.y)


class ReLU(Function):
    """y = max(x, 0);  dx = g where x > 0, else 0."""

    def forward(self, x):
        self.x = x
        return act_kernels.relu_forward(x)

    def backward(self, g):
        return act_kernels.relu_backward(g, self.x)


class Softmax(Function):
    """y = exp(x) / sum(exp(x), axis);  dx = y * (g - sum(g * y, axis))."""

    def __init__(self, axis):
        self.axis = axis

    def forward(self, x):
        self.y = loss_kernels.softmax(x, axis=self.axis)
        return self.y

    def backward(self, g):
        return self.y * (g - (g * self.y).sum(axis=self.axis, keepdims=True))


class LogSoftmax(Function):
    """y = x - logsumexp(x, axis);  dx = g - softmax(x) * sum(g, axis)."""

    def __init__(self, axis):
        self.axis = axis

    def forward(self, x):
        self.y = loss_kernels.log_softmax(x, axis=self.axis)
        return self.y

    def backward(self, g):
        xp = backend.get_array_module(g)
        return g - xp.exp(self.y) * g.sum(axis=self.axis, keepdims=True)


class Where(Function):
    """y = a where condition else b;  da = g where condition, db = g elsewhere."""

    def __init__(self, condition):
        self.condition = condition

    def forward(self, a, b):
        self.a_shape, self.b_shape = a.shape, b.shape
        return backend.get_array_module(a, b).where(self.condition, a, b)

    def backward(self, g):
        zero = g.dtype.type(0)
        xp = backend.get_array_module(g)
        return (sum_to(xp.where(self.condition, g, zero), self.a_shape),
                sum_to(xp.where(self.condition, zero, g), self.b_shape))


# ---------------------------------------------------------------------------- reductions


class Sum(Function):
    """y = sum of x over ``axis``;  dx = g broadcast back over the summed axes."""

    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.x_shape = x.shape
        self.axes = _normalize_axes(self.axis, x.ndim)
        return x.sum(axis=self.axes, keepdims=self.keepdims)

    def backward(self, g):
        xp = backend.get_array_module(g)
        kept = tuple(1 if i in self.axes else n for i, n in enumerate(self.x_shape))
        return xp.broadcast_to(g.reshape(kept), self.x_shape).copy()


class Mean(Sum):
    """y = mean of x over ``axis``;  dx = g / n broadcast back (n = number averaged).

    The mean of nothing (n = 0) is nan, as in NumPy and PyTorch; integer and bool inputs
    average in the default float dtype.
    """

    def forward(self, x):
        if not backend.is_floating(x.dtype):
            x = x.astype(backend.get_default_dtype())
        total = super().forward(x)
        self.count = int(np.prod([x.shape[i] for i in self.axes], dtype=np.int64))
        if self.count == 0:  # filled, not 0/0: no RuntimeWarning
            return backend.get_array_module(x).full(total.shape, np.nan, dtype=x.dtype)
        return total / x.dtype.type(self.count)

    def backward(self, g):
        return super().backward(g) / g.dtype.type(builtins.max(self.count, 1))


class Max(Function):
    """y = max of x over ``axis``;  dx = g split equally among the maximal elements
    (as torch.amax; the gradient of a max flows to the winner)."""

    reduce = "max"

    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.x = x
        self.axes = _normalize_axes(self.axis, x.ndim)
        if x.size == 0:
            raise ValueError(f"{self.reduce}() of an empty tensor of shape {x.shape}")
        self.y = getattr(x, self.reduce)(axis=self.axes, keepdims=True)
        return self.y if self.keepdims else self.y.reshape(
            [n for i, n in enumerate(x.shape) if i not in self.axes])

    def backward(self, g):
        winners = self.x == self.y
        count = winners.sum(axis=self.axes, keepdims=True)
        return winners * (g.reshape(self.y.shape) / count).astype(g.dtype)


class Min(Max):
    """y = min of x over ``axis``;  dx = g split equally among the minimal elements."""

    reduce = "min"


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


# ---------------------------------------------------------------------------- public API


def _binary(cls, name):
    def op(a, b):
        a = as_tensor(a, like=b if isinstance(b, Tensor) else None)
        b = as_tensor(b, like=a)
        _check_broadcastable(name, a, b)
        if cls is Div and not (backend.is_floating(a.dtype) or backend.is_floating(b.dtype)):
            # true division of integers gives the default float dtype, as in PyTorch
            dtype = backend.get_default_dtype()
            a, b = Tensor(a.data.astype(dtype)), Tensor(b.data.astype(dtype))
        return cls()(*promote(a, b))

    op.__name__ = name
    op.__doc__ = cls.__doc__
    return op


add = _binary(Add, "add")
sub = _binary(Sub, "sub")
mul = _binary(Mul, "mul")
div = _binary(Div, "div")
pow = _binary(Pow, "pow")  # noqa: A001 - PyTorch's name


def matmul(a, b):
    """a @ b with NumPy's matmul rules; see :class:`MatMul`."""
    a, b = as_tensor(a), as_tensor(b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul needs tensors with at least 1 dimension, got {a.shape} @ "
                         f"{b.shape}; use * for scalars")
    k_a, k_b = a.shape[-1], b.shape[0] if b.ndim == 1 else b.shape[-2]
    if k_a != k_b:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not match "
                         f"(inner dimensions {k_a} != {k_b})")
    return MatMul()(*promote(a, b))


def neg(x):
    return Neg()(x)


def exp(x):
    """Elementwise e^x."""
    return Exp()(x)


def log(x):
    """Elementwise natural logarithm."""
    return Log()(x)


def sqrt(x):
    """Elementwise square root."""
    return Sqrt()(x)


def abs(x):  # noqa: A001 - PyTorch's name
    """Elementwise |x|."""
    return Abs()(x)


def clip(x, min=None, max=None):  # noqa: A002 - PyTorch's argument names
    """Clamp values into [min, max]; either bound may be None.  Alias: ``clamp``."""
    if min is None and max is None:
        raise ValueError("clip needs at least one of min and max")
    return Clip(min, max)(x)


clamp = clip


def sigmoid(x):
    """Elementwise logistic sigmoid 1 / (1 + e^-x)."""
    return Sigmoid()(x)


def tanh(x):
    """Elementwise hyperbolic tangent."""
    return Tanh()(x)


def relu(x):
    """Elementwise max(x, 0)."""
    return ReLU()(x)


def softmax(x, axis=-1, dim=None):
    """exp(x) normalised to sum to 1 along ``axis`` (or ``dim``)."""
    axis = _check_dim("softmax", axis if dim is None else dim, x.ndim)
    return Softmax(axis if x.ndim else None)(x)


def log_softmax(x, axis=-1, dim=None):
    """log(softmax(x)) computed stably as x - logsumexp(x)."""
    axis = _check_dim("log_softmax", axis if dim is None else dim, x.ndim)
    return LogSoftmax(axis if x.ndim else None)(x)


def where(condition, a, b):
    """Elementwise choice: a where ``condition`` is true, else b (broadcasting)."""
    if isinstance(condition, Tensor):
        condition = condition.data
    like = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else None
    a, b = as_tensor(a, like=like), as_tensor(b, like=like)
    return Where(condition)(*promote(a, b))


def sum(x, axis=None, keepdims=False, *, dim=None, keepdim=False):  # noqa: A001
    """Sum over ``axis``/``dim`` (all axes by default)."""
    axis, keepdims = _reduction_args(axis, dim, keepdims, keepdim)
    return Sum(axis, keepdims)(x)


def mean(x, axis=None, keepdims=False, *, dim=None, keepdim=False):
    """Mean over ``axis``/``dim`` (all axes by default)."""
    axis, keepdims = _reduction_args(axis, dim, keepdims, keepdim)
    return Mean(axis, keepdims)(x)


def max(x, axis=None, keepdims=False, *, dim=None, keepdim=False):  # noqa: A001
    """Maximum over ``axis``/``dim``: the values only (like ``torch.amax``)."""
    axis, keepdims = _reduction_args(axis, dim, keepdims, keepdim)
    return Max(axis, keepdims)(x)


def min(x, axis=None, keepdims=False, *, dim=None, keepdim=False):  # noqa: A001
    """Minimum over ``axis``/``dim``: the values only (like ``torch.amin``)."""
    axis, keepdims = _reduction_args(axis, dim, keepdims, keepdim)
    return Min(axis, keepdims)(x)


def _shape_args(shape):
    """Accept ``f(2, 3)`` and ``f((2, 3))``."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


def reshape(x, *shape):
    """The same values in a new shape (one dimension may be -1)."""
    return Reshape(_shape_args(shape))(x)


def flatten(x, start_dim=0, end_dim=-1):
    """Merge axes start_dim..end_dim into one (PyTorch's flatten)."""
    start = _check_dim("flatten", start_dim, x.ndim)
    end = _check_dim("flatten", end_dim, x.ndim)
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    shape = x.shape[:start] + (-1,) + x.shape[end + 1:]
    return Reshape(shape)(x)


def permute(x, *dims):
    """Reorder the axes: ``x.permute(0, 2, 3, 1)`` turns NCHW into NHWC."""
    return Permute(_shape_args(dims))(x)


def transpose(x, dim0, dim1):
    """Swap two axes (PyTorch's transpose; for NumPy's use :func:`permute`)."""
    dim0, dim1 = _check_dim("transpose", dim0, x.ndim), _check_dim("transpose", dim1, x.ndim)
    if x.ndim == 0:
        return Permute(())(x)
    dims = list(range(x.ndim))
    dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
    return Permute(dims)(x)


def broadcast_to(x, *shape):
    """Repeat x along size-1 (or missing leading) axes to ``shape``.  Alias: ``expand``."""
    return BroadcastTo(_shape_args(shape))(x)


def concatenate(tensors, axis=0, *, dim=None):
    """Join tensors along an existing axis.  Alias: ``cat``."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("concatenate needs at least one tensor")
    like = _first(tensors)
    tensors = promote(*[as_tensor(t, like) for t in tensors])
    if builtins.any(t.ndim == 0 for t in tensors):
        raise ValueError("concatenate: zero-dimensional tensors cannot be concatenated (dim "
                         "has nothing to join along); use stack")
    axis = _check_dim("concatenate", axis if dim is None else dim, tensors[0].ndim)
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
    like = _first(tensors)
    tensors = promote(*[as_tensor(t, like) for t in tensors])
    axis = _check_dim("stack", axis if dim is None else dim, tensors[0].ndim, extra=1)
    return Stack(axis)(*tensors)


def _first(tensors):
    return next((t for t in tensors if isinstance(t, Tensor)), None)


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
    data = xp.full(_shape_args(shape), fill, dtype=dtype or backend.get_default_dtype())
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
    data = backend.rng().standard_normal(_shape_args(shape))
    return tensor(data, requires_grad, dtype or backend.get_default_dtype(), device)


def rand(*shape, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    """Uniform [0, 1) samples from minires's seeded generator."""
    data = backend.rng().random(_shape_args(shape))
    return tensor(data, requires_grad, dtype or backend.get_default_dtype(), device)


def arange(start, stop=None, step=1, dtype=None, device="cpu") -> Tensor:
    """Evenly spaced values in [start, stop), like ``torch.arange``."""
    if stop is None:
        start, stop = 0, start
    return tensor(np.arange(start, stop, step), dtype=dtype, device=device)


# ---------------------------------------------------------------------------- Tensor methods


def _compare(op):
    def method(self, other):
        other = other.data if isinstance(other, Tensor) else other
        return Tensor(op(self.data, other))

    return method


def _install_tensor_methods() -> None:
    """Give Tensor its operators and methods (``x + y``, ``x.sum()``), all via the ops."""
    T = Tensor
    T.__add__ = lambda a, b: add(a, b)
    T.__radd__ = lambda a, b: add(b, a)
    T.__sub__ = lambda a, b: sub(a, b)
    T.__rsub__ = lambda a, b: sub(b, a)
    T.__mul__ = lambda a, b: mul(a, b)
    T.__rmul__ = lambda a, b: mul(b, a)
    T.__truediv__ = lambda a, b: div(a, b)
    T.__rtruediv__ = lambda a, b: div(b, a)
    T.__pow__ = lambda a, b: pow(a, b)
    T.__rpow__ = lambda a, b: pow(b, a)
    T.__matmul__ = lambda a, b: matmul(a, b)
    T.__rmatmul__ = lambda a, b: matmul(b, a)
    T.__neg__ = neg
    T.__getitem__ = getitem
    T.__gt__, T.__lt__ = _compare(np.greater), _compare(np.less)
    T.__ge__, T.__le__ = _compare(np.greater_equal), _compare(np.less_equal)
    T.eq = _compare(np.equal)
    T.exp, T.log, T.sqrt, T.abs = exp, log, sqrt, abs
    T.sigmoid, T.tanh, T.relu = sigmoid, tanh, relu
    T.softmax, T.log_softmax = softmax, log_softmax
    T.clip = T.clamp = clip
    T.sum, T.mean, T.max, T.min = sum, mean, max, min
    T.amax, T.amin = max, min
    T.reshape = T.view = reshape
    T.flatten, T.permute, T.transpose = flatten, permute, transpose
    T.broadcast_to = T.expand = broadcast_to
    T.pow, T.matmul, T.split = pow, matmul, split
    T.to = to
    T.cpu = lambda self: to(self, backend.CPU)
    T.cuda = lambda self: to(self, backend.CUDA)
    T.T = property(lambda self: Permute(tuple(reversed(range(self.ndim))))(self))
    T.argmax = lambda self, axis=None, dim=None: Tensor(
        self.data.argmax(axis=axis if dim is None else dim))


_install_tensor_methods()
