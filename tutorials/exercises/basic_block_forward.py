# %% [markdown]
# # Exercise: the forward pass of a ResNet BasicBlock with option A's shortcut
#
# Write the function in the next cell (its docstring gives the shapes and the
# formula), then check it: run the last cell, or `python -m minires check basic_block_forward`.

# %%
import numpy as np  # noqa: F401  (you will need it)

# You may use minires's kernels (plain NumPy arrays in and out):
#   conv2d_forward(x, weight, bias, stride, padding) -> y
#   batch_norm_forward(x, gamma, beta, None, None, training=True) -> (y, cache)
#   relu_forward(x) -> max(x, 0)
from minires.kernels.activation import relu_forward  # noqa: F401
from minires.kernels.conv import conv2d_forward  # noqa: F401
from minires.kernels.norm import batch_norm_forward  # noqa: F401


# %%
def basic_block_forward(x, conv1_weight, bn1_gamma, bn1_beta, conv2_weight, bn2_gamma,
                        bn2_beta, stride=1):
    """The residual block of He et al. (2016), Fig. 2, on NumPy arrays (not Tensors):

        x ─┬─ conv3x3(stride) ─ BN ─ ReLU ─ conv3x3 ─ BN ─(+)─ ReLU ─> y
           └─────────────── shortcut(x) ─────────────────┘

        F(x) = bn2(conv2(relu(bn1(conv1(x)))))
        y    = relu(F(x) + shortcut(x))

    * conv1: 3x3, stride ``stride``, padding 1, no bias: (N, C, H, W) -> (N, P, H', W')
      with P = planes = conv1_weight.shape[0] and H' = ceil(H / stride) (W' likewise).
    * conv2: 3x3, stride 1, padding 1, no bias: (N, P, H', W') -> (N, P, H', W').
    * bn1, bn2: BatchNorm in TRAINING mode (batch mean and biased variance per channel,
      over N, H and W; eps = 1e-5), then gamma * x_hat + beta.
    * shortcut, option A (no parameters):
        - if stride == 1 and C == P: the identity, shortcut(x) = x;
        - otherwise: keep every stride-th pixel, x[:, :, ::stride, ::stride], then append
          P - C channels of zeros AFTER the C channels of x, giving (N, P, H', W').

    Args:
        x: (N, C, H, W).
        conv1_weight: (P, C, 3, 3);  bn1_gamma, bn1_beta: (P,).
        conv2_weight: (P, P, 3, 3);  bn2_gamma, bn2_beta: (P,).
        stride: 1 or 2.

    Returns:
        y: (N, P, ceil(H / stride), ceil(W / stride)), dtype of x.

    Example of the shortcut: x of shape (2, 16, 32, 32), P = 32, stride 2 ->
    x[:, :, ::2, ::2] has shape (2, 16, 16, 16); 16 zero channels follow -> (2, 32, 16, 16).
    """
    # Hint: np.pad(s, ((0, 0), (0, extra), (0, 0), (0, 0))) appends `extra` zero channels.
    raise NotImplementedError


# %%
if __name__ == "__main__":  # run this cell (or this file) to check your function
    from minires.exercises import check_main

    check_main("basic_block_forward", basic_block_forward)
