"""A correct solution with plain loops, as a student would write it."""

import numpy as np


def im2col(x, kernel_h, kernel_w, stride=1, padding=0):
    n, c, h, w = x.shape
    oh = (h + 2 * padding - kernel_h) // stride + 1
    ow = (w + 2 * padding - kernel_w) // stride + 1
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    cols = np.zeros((n * oh * ow, kernel_h * kernel_w * c), dtype=x.dtype)
    for b in range(n):
        for p in range(oh):
            for q in range(ow):
                top, left = p * stride, q * stride
                window = x_pad[b, :, top:top + kernel_h, left:left + kernel_w]
                cols[(b * oh + p) * ow + q] = window.transpose(1, 2, 0).ravel()
    return cols
