# %% [markdown]
# # Exercise: the backward pass of a 2-D convolution
#
# Write the function in the next cell (its docstring gives the shapes and the
# formula), then check it: run the last cell, or `python -m minires check conv2d_backward`.

# %%
import numpy as np  # noqa: F401  (you will need it)

# You may use minires's im2col/col2im (same layout as the im2col and col2im exercises):
from minires.kernels.conv import col2im, im2col  # noqa: F401


# %%
def conv2d_backward(grad_y, x, weight, stride=1, padding=0):
    """Gradients of a convolution ``y = conv2d(x, weight, bias, stride, padding)``.

    Forward pass (a cross-correlation, as in PyTorch: no kernel flip):

        y[n, o, oh, ow] = bias[o] + sum over c, i, j of
                          weight[o, c, i, j] * x_pad[n, c, oh*stride + i, ow*stride + j]

    with x_pad = x zero-padded by ``padding`` on each side and
    OH = (H + 2*padding - KH) // stride + 1 (OW likewise).  With im2col this is one matrix
    product:

        cols  = im2col(x, KH, KW, stride, padding)                  (N*OH*OW, KH*KW*C)
        W_mat = weight.transpose(0, 2, 3, 1).reshape(C_out, -1)     (C_out, KH*KW*C)
        Y     = cols @ W_mat.T                                      (N*OH*OW, C_out)
        y     = Y.reshape(N, OH, OW, C_out).transpose(0, 3, 1, 2) + bias

    Backward, with G = grad_y laid out like Y (rows are output pixels):

        G           = grad_y.transpose(0, 2, 3, 1).reshape(-1, C_out)
        grad_W_mat  = G.T @ cols                   -> back to (C_out, C, KH, KW)
        grad_cols   = G @ W_mat                    -> grad_x = col2im(grad_cols, x.shape, ...)
        grad_bias   = grad_y summed over n, oh and ow

    Args:
        grad_y: dL/dy, shape (N, C_out, OH, OW).
        x: the forward input, (N, C, H, W).
        weight: (C_out, C, KH, KW).
        stride, padding: ints, as in the forward pass.

    Returns:
        (grad_x, grad_weight, grad_bias) of shapes (N, C, H, W), (C_out, C, KH, KW) and
        (C_out,), in the dtype of x.

    Tiny example (N = C = C_out = 1, 2x2 image, 1x1 kernel w = [[[[3]]]], stride 1):
        y = 3 x, so grad_x = 3 * grad_y, grad_weight = [[[[sum(grad_y * x)]]]],
        grad_bias = [sum(grad_y)].
    """
    # Hints:
    # * Undo W_mat's layout carefully: reshape (C_out, KH, KW, C), then transpose(0, 3, 1, 2).
    # * Loops over (n, o, oh, ow) also work (slowly) if you prefer to follow the formula.
    raise NotImplementedError


# %%
if __name__ == "__main__":  # run this cell (or this file) to check your function
    from minires.exercises import check_main

    check_main("conv2d_backward", conv2d_backward)
