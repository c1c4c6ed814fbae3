"""A correct solution."""


def sgd_momentum_step(param, grad, momentum_buffer, lr, momentum, weight_decay):
    g = grad + weight_decay * param
    buf = g.copy() if momentum_buffer is None else momentum * momentum_buffer + g
    return param - lr * buf, buf
