# %% [markdown]
# # Exercise: the backward pass of 2-D max pooling
#
# Write the function in the next cell (its docstring gives the shapes and the
# formula), then check it: run the last cell, or `python -m minires check max_pool_backward`.

# %%
import numpy as np  # noqa: F401  (you will need it)


# %%
def max_pool2d_backward(grad_y, x, kernel_size, stride, padding=0):
    """Gradient of max pooling with respect to its input x.

    Forward pass: every K x K window (K = kernel_size), moved ``stride`` pixels at a time,
    keeps its largest value:

        y[n, c, p, q] = max over i, j in [0, K) of x_pad[n, c, p*stride + i, q*stride + j]

    where x_pad is x padded by ``padding`` pixels of -inf on each side (padding never wins)
    and OH = (H + 2*padding - K) // stride + 1 (OW likewise).

    Backward: only the winning pixel of a window influenced y[n, c, p, q], so
    grad_y[n, c, p, q] goes to that pixel and every other pixel of the window gets nothing.

    * Ties: when a window holds several equal maxima, the winner is the FIRST one in
      row-major order (smallest i, then smallest j), as in PyTorch.
    * Overlap: when stride < K, windows overlap and a pixel can win several of them; it
      then receives the SUM of their gradients.
    * Pixels in no window's winner spot (or in no window at all) get 0.

    Args:
        grad_y: dL/dy, shape (N, C, OH, OW).
        x: the forward input, (N, C, H, W).
        kernel_size, stride, padding: ints.

    Returns:
        grad_x of shape (N, C, H, W), dtype of grad_y.

    Example (one 2x2 window, kernel 2, stride 2):
        x = [[1, 3],      grad_y = [[5]]   ->   grad_x = [[0, 5],
             [3, 0]]                                      [0, 0]]
        (3 appears twice; the first in row-major order, at (0, 1), wins.)
    """
    # Hints:
    # * np.pad(x, ..., constant_values=-np.inf) for the padding.
    # * Loop over n, c, p, q; np.argmax(window) gives the FIRST maximum of the flattened
    #   window, and divmod(k, K) turns it into (i, j).
    raise NotImplementedError


# %%
if __name__ == "__main__":  # run this cell (or this file) to check your function
    from minires.exercises import check_main

    check_main("max_pool_backward", max_pool2d_backward)
