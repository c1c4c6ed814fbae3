"""Planted bug: right products, but not summed over the broadcast batch axes."""

import numpy as np


def matmul_backward(grad_y, a, b):
    return grad_y @ np.swapaxes(b, -1, -2), np.swapaxes(a, -1, -2) @ grad_y
