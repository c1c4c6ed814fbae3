# %% [markdown]
# # Exercise: the backward pass of batch normalisation (training mode)
#
# Write the function in the next cell (its docstring gives the shapes and the
# formula), then check it: run the last cell, or `python -m minires check batchnorm_backward`.

# %%
import numpy as np  # noqa: F401  (you will need it)


# %%
def batchnorm_backward(grad_y, x, gamma, eps=1e-5):
    """Gradients of BatchNorm in TRAINING mode (normalised with the batch's statistics).

    Forward pass, per channel c, over the m values of that channel (m = N for x of shape
    (N, C); m = N*H*W for images (N, C, H, W), whose statistics run over axes 0, 2 and 3):

        mean  = average of x                      (one number per channel)
        var   = average of (x - mean)^2           (BIASED: divide by m, like np.var)
        s     = 1 / sqrt(var + eps)
        x_hat = (x - mean) * s
        y     = gamma * x_hat + beta

    Backward, with dy = grad_y and sums/means over the m values of each channel:

        grad_beta  = sum(dy)                                    shape (C,)
        grad_gamma = sum(dy * x_hat)                            shape (C,)
        grad_x     = gamma * s * (dy - mean(dy) - x_hat * mean(dy * x_hat))

    The two subtracted terms exist because mean and var depend on every x of the channel:
    shifting or scaling a whole channel does not change x_hat.  (Treating mean and var as
    constants gives gamma * s * dy, the EVAL-mode gradient, which is wrong here.)

    Args:
        grad_y: dL/dy, shape (N, C) or (N, C, H, W).
        x: the forward input, same shape.
        gamma: (C,), the scale.  (beta does not appear in the gradients.)
        eps: added to the variance.

    Returns:
        (grad_x, grad_gamma, grad_beta) with shapes x.shape, (C,) and (C,), dtype of x.

    Sanity check: if grad_y is the same number everywhere, grad_x is 0 (up to rounding):
    adding a constant to every y changes nothing BatchNorm's input could have caused.
    """
    # Hints:
    # * axes = (0,) for 2-D x, (0, 2, 3) for 4-D x; use keepdims=True to broadcast back.
    # * gamma has shape (C,): reshape it to (1, C) or (1, C, 1, 1) before multiplying.
    raise NotImplementedError


# %%
if __name__ == "__main__":  # run this cell (or this file) to check your function
    from minires.exercises import check_main

    check_main("batchnorm_backward", batchnorm_backward)
