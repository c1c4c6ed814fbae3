# %% [markdown]
# # Exercise: BatchNorm's forward pass in training mode, with the running statistics
#
# Write the function in the next cell (its docstring gives the shapes and the
# formula), then check it: run the last cell, or `python -m minires check batchnorm_running_stats`.

# %%
import numpy as np  # noqa: F401  (you will need it)


# %%
def batchnorm_forward_train(x, gamma, beta, running_mean, running_var, momentum=0.1,
                            eps=1e-5):
    """BatchNorm in TRAINING mode, and the update of its running statistics (PyTorch's).

    Per channel c, over its m values (m = N for x of shape (N, C); m = N*H*W for images
    (N, C, H, W), whose statistics run over axes 0, 2 and 3):

        mean = average of x,   var = average of (x - mean)^2     (BIASED: divide by m)
        y    = gamma * (x - mean) / sqrt(var + eps) + beta

    The running statistics (used later, in eval mode, when there is no batch to average
    over) are exponential moving averages.  PyTorch's convention: ``momentum`` is the
    weight of the NEW batch, and the running variance tracks the UNBIASED variance:

        running_mean_new = (1 - momentum) * running_mean + momentum * mean
        running_var_new  = (1 - momentum) * running_var  + momentum * var * m / (m - 1)

    Args:
        x: (N, C) or (N, C, H, W).
        gamma, beta: (C,) scale and shift.
        running_mean, running_var: (C,), the statistics before this batch.
        momentum: weight of this batch in the running averages (0.1 in PyTorch).
        eps: added to the variance before the square root.

    Returns:
        (y, running_mean_new, running_var_new): y with x's shape, the running statistics
        with shape (C,), all in x's dtype.  You may update running_mean/running_var in
        place (as PyTorch does) and return them, or return new arrays.

    Example (x of shape (4, 1), one channel):
        x = [[1], [2], [3], [6]]: mean = 3, var = (4 + 1 + 0 + 9) / 4 = 3.5,
        unbiased var = 14 / 3; with running_mean = [0], running_var = [1], momentum 0.1:
        running_mean_new = [0.3], running_var_new = [0.9 + 0.1 * 14/3] = [1.3667]
    """
    # Hint: axes = (0,) for 2-D x, (0, 2, 3) for 4-D x; m = x.size // x.shape[1].
    raise NotImplementedError


# %%
if __name__ == "__main__":  # run this cell (or this file) to check your function
    from minires.exercises import check_main

    check_main("batchnorm_running_stats", batchnorm_forward_train)
