"""The fast ReLU: :mod:`minires.kernels.activation`'s formulas, in batch slices on both cores.

Same arguments and results as :func:`minires.kernels.activation.relu_forward` and
:func:`~minires.kernels.activation.relu_backward`.  The one change: the batch is cut into
slices (:func:`minires.kernels.fast.parallel.batch_slices`) that the kernel threads process
at once, each writing its slice of one output array; the boolean mask of the backward then
exists only one cache-sized slice at a time.  Anything but NumPy arrays with a batch axis
(and equal shapes) of at least ``MIN_PARALLEL_BYTES`` goes to the simple kernels, which also
raise their errors.
"""

from __future__ import annotations

import numpy as np

from minires.kernels import activation
from minires.kernels.fast import parallel


def _batched(*arrays) -> bool:
    """NumPy arrays with a batch axis, big enough to split (small ones: the simple kernel,
    the same numbers without the slicing's call overhead)."""
    return all(isinstance(a, np.ndarray) and a.ndim >= 2
               and a.nbytes >= parallel.MIN_PARALLEL_BYTES for a in arrays)


def relu_forward(x):
    """Same as :func:`minires.kernels.activation.relu_forward`: ``y = max(x, 0)``."""
    if not _batched(x):
        return activation.relu_forward(x)
    y = np.empty_like(x)

    def forward_slice(batch):
        np.maximum(x[batch], 0, out=y[batch])

    parallel.each_slice(forward_slice, x)
    return y


def relu_backward(grad_y, x):
    """Same as :func:`minires.kernels.activation.relu_backward`: ``grad_y * [x > 0]``."""
    if not (_batched(grad_y, x) and grad_y.shape == x.shape):
        return activation.relu_backward(grad_y, x)
    grad_x = np.empty(grad_y.shape, dtype=np.result_type(grad_y.dtype, np.bool_))

    def backward_slice(batch):
        np.multiply(grad_y[batch], x[batch] > 0, out=grad_x[batch])

    parallel.each_slice(backward_slice, grad_x)
    return grad_x
