"""Planted bug: grad_weight reshaped from the (C_out, KH*KW*C) matrix in the wrong order."""

from minires.kernels.conv import col2im, im2col


def conv2d_backward(grad_y, x, weight, stride=1, padding=0):
    c_out, c, kh, kw = weight.shape
    cols = im2col(x, kh, kw, stride, padding)
    w_mat = weight.transpose(0, 2, 3, 1).reshape(c_out, -1)
    g = grad_y.transpose(0, 2, 3, 1).reshape(-1, c_out)
    grad_w = (g.T @ cols).reshape(c_out, c, kh, kw)  # bug: columns are (i, j, c)
    grad_x = col2im(g @ w_mat, x.shape, kh, kw, stride, padding)
    return grad_x, grad_w, grad_y.sum(axis=(0, 2, 3))
