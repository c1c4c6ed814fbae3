"""A correct solution with loops over the output pixels."""

import numpy as np


def col2im(cols, x_shape, kernel_h, kernel_w, stride=1, padding=0):
    n, c, h, w = x_shape
    oh = (h + 2 * padding - kernel_h) // stride + 1
    ow = (w + 2 * padding - kernel_w) // stride + 1
    blocks = cols.reshape(n, oh, ow, kernel_h, kernel_w, c)
    x_pad = np.zeros((n, c, h + 2 * padding, w + 2 * padding), dtype=cols.dtype)
    for p in range(oh):
        for q in range(ow):
            top, left = p * stride, q * stride
            # blocks[:, p, q] is (N, KH, KW, C): channel first to match x_pad.
            x_pad[:, :, top:top + kernel_h, left:left + kernel_w] += (
                blocks[:, p, q].transpose(0, 3, 1, 2))
    return x_pad[:, :, padding:padding + h, padding:padding + w]
