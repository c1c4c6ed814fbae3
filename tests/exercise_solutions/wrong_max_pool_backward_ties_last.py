"""Planted bug: ties go to the LAST maximum (>= in the running comparison)."""

import numpy as np


def max_pool2d_backward(grad_y, x, kernel_size, stride, padding=0):
    n, c, h, w = x.shape
    k = kernel_size
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)),
                   constant_values=-np.inf)
    grad = np.zeros(x_pad.shape, dtype=grad_y.dtype)
    _, _, oh, ow = grad_y.shape
    for b in range(n):
        for ch in range(c):
            for p in range(oh):
                for q in range(ow):
                    best, where = -np.inf, None
                    for i in range(k):
                        for j in range(k):
                            value = x_pad[b, ch, p * stride + i, q * stride + j]
                            if value >= best:
                                best, where = value, (p * stride + i, q * stride + j)
                    grad[b, ch, where[0], where[1]] += grad_y[b, ch, p, q]
    return grad[:, :, padding:padding + h, padding:padding + w]
