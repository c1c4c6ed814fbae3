"""Planted bug: dy/dx alone, not multiplied by the upstream gradient."""


def sigmoid_backward(grad_y, y):
    return y * (1 - y)
