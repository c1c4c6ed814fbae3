"""A correct solution (kept for the checker's tests)."""

import numpy as np


def _sum_to(g, shape):
    lead = g.ndim - len(shape)
    g = g.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True)


def matmul_backward(grad_y, a, b):
    grad_a = grad_y @ np.swapaxes(b, -1, -2)
    grad_b = np.swapaxes(a, -1, -2) @ grad_y
    return _sum_to(grad_a, a.shape), _sum_to(grad_b, b.shape)
