"""A correct solution: loops, np.argmax picks the first maximum."""

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
                    window = x_pad[b, ch, p * stride:p * stride + k, q * stride:q * stride + k]
                    i, j = divmod(int(np.argmax(window)), k)
                    grad[b, ch, p * stride + i, q * stride + j] += grad_y[b, ch, p, q]
    return grad[:, :, padding:padding + h, padding:padding + w]
