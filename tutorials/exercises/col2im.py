# %% [markdown]
# # Exercise: col2im, the backward pass of im2col
#
# Write the function in the next cell (its docstring gives the shapes and the
# formula), then check it: run the last cell, or `python -m minires check col2im`.

# %%
import numpy as np  # noqa: F401  (you will need it)


# %%
def col2im(cols, x_shape, kernel_h, kernel_w, stride=1, padding=0):
    """Scatter the rows of ``cols`` back into an image, ADDING values that land on the
    same pixel.  This is the adjoint (transpose) of ``im2col``, and exactly its backward
    pass: if cols = im2col(x) and G = dL/dcols, then dL/dx = col2im(G).

    Args:
        cols: shape (N*OH*OW, KH*KW*C), in im2col's layout (see im2col.py):
              cols[(n*OH + oh)*OW + ow, (i*KW + j)*C + c]  belongs to
              x_pad[n, c, oh*stride + i, ow*stride + j].
        x_shape: (N, C, H, W), the shape of the image im2col was applied to.
        kernel_h, kernel_w, stride, padding: as for im2col (ints);
              OH = (H + 2*padding - KH) // stride + 1, OW likewise.

    Returns:
        x of shape (N, C, H, W) and the dtype of cols, where x[n, c, h, w] is the SUM of
        every cols entry that belongs to x_pad[n, c, h + padding, w + padding].  Entries
        that belong to the zero padding are dropped; pixels in no window get 0.

    Why a sum: each input pixel was copied into several rows (one per window that contains
    it); each copy's gradient is a contribution to the pixel's gradient.

    Example (N = C = 1, H = W = 3, KH = KW = 2, stride 1, padding 0, so OH = OW = 2):
        cols = np.ones((4, 4))  ->  x[0, 0] = [[1, 2, 1],
                                               [2, 4, 2],     (the centre pixel is in all
                                               [1, 2, 1]]      four 2x2 windows)
    """
    # Hints:
    # 1. Start from x_pad = np.zeros((N, C, H + 2*padding, W + 2*padding), dtype=cols.dtype)
    # 2. Reshape cols to (N, OH, OW, KH, KW, C) to get at the indices easily.
    # 3. Add (+=) each window back, then return x_pad[:, :, padding:padding + H, ...].
    raise NotImplementedError


# %%
if __name__ == "__main__":  # run this cell (or this file) to check your function
    from minires.exercises import check_main

    check_main("col2im", col2im)
