"""A correct solution with explicit loops over the output pixels (no im2col)."""

import numpy as np


def conv2d_backward(grad_y, x, weight, stride=1, padding=0):
    n, c, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    _, _, oh, ow = grad_y.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    grad_x_pad = np.zeros_like(x_pad)
    grad_w = np.zeros_like(weight)
    for p in range(oh):
        for q in range(ow):
            top, left = p * stride, q * stride
            window = x_pad[:, :, top:top + kh, left:left + kw]  # (N, C, KH, KW)
            g = grad_y[:, :, p, q]  # (N, C_out)
            grad_w += np.einsum("no,nckl->ockl", g, window)
            grad_x_pad[:, :, top:top + kh, left:left + kw] += np.einsum("no,ockl->nckl", g,
                                                                         weight)
    grad_x = grad_x_pad[:, :, padding:padding + h, padding:padding + w]
    return grad_x, grad_w, grad_y.sum(axis=(0, 2, 3))
