"""Arithmetic, elementwise functions and reductions: each a Function with its formula.

Broadcasting: when ``a + b`` broadcasts ``b`` from shape (3,) to (2, 3), the gradient of
``b`` is the upstream gradient *summed* over the broadcast axes (:func:`sum_to`), because
every copy of ``b[j]`` contributed to the result.
"""

from __future__ import annotations

import builtins

import numpy as np

from minires import backend
from minires.autograd import Function, Tensor, as_tensor
from minires.kernels import activation as act_kernels
from minires.kernels import loss as loss_kernels
from minires.kernels import routing
from minires.ops.common import (
    check_broadcastable,
    check_dim,
    normalize_axes,
    promote,
    reduction_args,
    sum_to,
)

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
    """y = max(x, 0);  dx = g where x > 0, else 0.

    Saves the output, not the input: y > 0 exactly where x > 0 (NaN stays NaN, and is
    not > 0, in both), and the next op usually keeps y anyway, so x can be freed.
    """

    def forward(self, x):
        self.y = routing.relu_forward(x)  # the fast or the simple kernel (kernels/routing.py)
        return self.y

    def backward(self, g):
        return routing.relu_backward(g, self.y)


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
        self.axes = normalize_axes(self.axis, x.ndim)
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
        self.axes = normalize_axes(self.axis, x.ndim)
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


# ---------------------------------------------------------------------------- public API


def _binary(cls, name):
    def op(a, b):
        a = as_tensor(a, like=b if isinstance(b, Tensor) else None)
        b = as_tensor(b, like=a)
        check_broadcastable(name, a, b)
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
    axis = check_dim("softmax", axis if dim is None else dim, x.ndim)
    return Softmax(axis if x.ndim else None)(x)


def log_softmax(x, axis=-1, dim=None):
    """log(softmax(x)) computed stably as x - logsumexp(x)."""
    axis = check_dim("log_softmax", axis if dim is None else dim, x.ndim)
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
    axis, keepdims = reduction_args(axis, dim, keepdims, keepdim)
    return Sum(axis, keepdims)(x)


def mean(x, axis=None, keepdims=False, *, dim=None, keepdim=False):
    """Mean over ``axis``/``dim`` (all axes by default)."""
    axis, keepdims = reduction_args(axis, dim, keepdims, keepdim)
    return Mean(axis, keepdims)(x)


def max(x, axis=None, keepdims=False, *, dim=None, keepdim=False):  # noqa: A001
    """Maximum over ``axis``/``dim``: the values only (like ``torch.amax``)."""
    axis, keepdims = reduction_args(axis, dim, keepdims, keepdim)
    return Max(axis, keepdims)(x)


def min(x, axis=None, keepdims=False, *, dim=None, keepdim=False):  # noqa: A001
    """Minimum over ``axis``/``dim``: the values only (like ``torch.amin``)."""
    axis, keepdims = reduction_args(axis, dim, keepdims, keepdim)
    return Min(axis, keepdims)(x)


