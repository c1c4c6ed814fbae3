"""Differentiable tensor operations: arithmetic, reductions, shapes, activations.

Each op is a :class:`~minires.autograd.Function` with a ``forward`` and a ``backward`` on
raw arrays, short enough to read next to the formula in its docstring.  The module-level
functions (``minires.exp(x)``, ``minires.sum(x, axis=1)``) and the Tensor methods and
operators (``x.exp()``, ``x + y``, ``x @ w``), installed at the bottom of this file, all
create these.  Where to read:

* :mod:`minires.ops.arithmetic`: ``+ - * / ** @``, elementwise functions, reductions;
* :mod:`minires.ops.shapes`: reshape, permute, indexing, cat/stack/split, pad, ``.to``;
* :mod:`minires.ops.factories`: ``tensor``, ``zeros``, ``randn``, ...;
* :mod:`minires.ops.common`: broadcasting's gradient (``sum_to``) and dtype promotion.
"""

import numpy as np

from minires import backend
from minires.autograd import Tensor
from minires.ops.arithmetic import (
    Abs,
    Add,
    Clip,
    Div,
    Exp,
    Log,
    LogSoftmax,
    MatMul,
    Max,
    Mean,
    Min,
    Mul,
    Neg,
    Pow,
    ReLU,
    Sigmoid,
    Softmax,
    Sqrt,
    Sub,
    Sum,
    Tanh,
    Where,
    abs,
    add,
    clamp,
    clip,
    div,
    exp,
    log,
    log_softmax,
    matmul,
    max,
    mean,
    min,
    mul,
    neg,
    pow,
    relu,
    sigmoid,
    softmax,
    sqrt,
    sub,
    sum,
    tanh,
    where,
)
from minires.ops.common import (
    promote,
    sum_to,
)
from minires.ops.factories import (
    arange,
    full,
    ones,
    ones_like,
    rand,
    randn,
    tensor,
    zeros,
    zeros_like,
)
from minires.ops.shapes import (
    BroadcastTo,
    Cast,
    Concatenate,
    GetItem,
    Pad,
    Permute,
    Reshape,
    Split,
    Stack,
    ToDevice,
    broadcast_to,
    cat,
    concatenate,
    flatten,
    getitem,
    pad,
    permute,
    reshape,
    split,
    stack,
    to,
    transpose,
)

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
