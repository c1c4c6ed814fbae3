"""Planted bug: ReLU applied to F(x) before the addition instead of after it."""

import numpy as np

from minires.kernels.activation import relu_forward
from minires.kernels.conv import conv2d_forward
from minires.kernels.norm import batch_norm_forward


def basic_block_forward(x, conv1_weight, bn1_gamma, bn1_beta, conv2_weight, bn2_gamma,
                        bn2_beta, stride=1):
    out = conv2d_forward(x, conv1_weight, None, stride, 1)
    out = relu_forward(batch_norm_forward(out, bn1_gamma, bn1_beta, None, None, True)[0])
    out = conv2d_forward(out, conv2_weight, None, 1, 1)
    out = relu_forward(batch_norm_forward(out, bn2_gamma, bn2_beta, None, None, True)[0])
    shortcut = x
    planes = conv1_weight.shape[0]
    if stride != 1 or x.shape[1] != planes:
        shortcut = np.pad(x[:, :, ::stride, ::stride],
                          ((0, 0), (0, planes - x.shape[1]), (0, 0), (0, 0)))
    return out + shortcut
