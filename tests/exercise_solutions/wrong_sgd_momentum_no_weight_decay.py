"""Planted bug: momentum without weight decay."""


def sgd_momentum_step(param, grad, momentum_buffer, lr, momentum, weight_decay):
    buf = grad.copy() if momentum_buffer is None else momentum * momentum_buffer + grad
    return param - lr * buf, buf
