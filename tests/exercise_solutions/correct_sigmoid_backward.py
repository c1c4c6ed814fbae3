"""A correct solution (kept for the checker's tests)."""


def sigmoid_backward(grad_y, y):
    return grad_y * y * (1 - y)
