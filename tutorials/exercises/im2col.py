# %% [markdown]
# # Exercise: im2col, the copy that turns a convolution into one matrix product
#
# Write the function in the next cell (its docstring gives the shapes and the
# formula), then check it: run the last cell, or `python -m minires check im2col`.

# %%
import numpy as np  # noqa: F401  (you will need it)


# %%
def im2col(x, kernel_h, kernel_w, stride=1, padding=0):
    """Copy every receptive field of ``x`` into one ROW of a matrix (minires's layout).

    Args:
        x: images, shape (N, C, H, W).
        kernel_h, kernel_w: the kernel size KH, KW (ints).
        stride: step between windows, the same along H and W (int).
        padding: number of zero rows/columns added on EVERY side of H and W (int).

    Returns:
        cols of shape (N*OH*OW, KH*KW*C), dtype of x, where
        OH = (H + 2*padding - KH) // stride + 1   and   OW = (W + 2*padding - KW) // stride + 1.

    Layout (exactly):  with x_pad = x zero-padded by ``padding`` on each side,

        cols[(n*OH + oh)*OW + ow, (i*KW + j)*C + c] = x_pad[n, c, oh*stride + i, ow*stride + j]

    i.e. one row per output pixel (n, oh, ow) in that order, and inside a row the window's
    values for kernel row i, then kernel column j, then channel c ("channels last": all C
    channels of one pixel are next to each other; PyTorch's unfold puts the channel first
    instead).  A convolution is then  cols @ weight.transpose(0, 2, 3, 1).reshape(C_out, -1).T

    Example (N = C = 1, KH = KW = 2, stride 1, padding 0):

        x[0, 0] = [[1, 2, 3],         OH = OW = 2, cols (4, 4):
                   [4, 5, 6],          [[1, 2, 4, 5],    <- window at (oh, ow) = (0, 0)
                   [7, 8, 9]]           [2, 3, 5, 6],    <- (0, 1)
                                        [4, 5, 7, 8],    <- (1, 0)
                                        [5, 6, 8, 9]]    <- (1, 1)

    With C = 2 channels each row would hold 8 values: (i, j) = (0, 0) for channels 0 and 1,
    then (0, 1) for channels 0 and 1, and so on.
    """
    # Hints:
    # 1. x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    # 2. Loops are fine: for n, oh, ow: window = x_pad[n, :, top:top + KH, left:left + KW]
    #    (shape (C, KH, KW)); window.transpose(1, 2, 0) puts the channel last; ravel it
    #    into the row.
    # 3. Faster: loop over (i, j) only and copy x_pad[:, :, i:i + stride*OH:stride, ...]
    #    for all windows at once.
    raise NotImplementedError


# %%
if __name__ == "__main__":  # run this cell (or this file) to check your function
    from minires.exercises import check_main

    check_main("im2col", im2col)
