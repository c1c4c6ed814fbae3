"""A correct solution, written from the formula."""


def batchnorm_backward(grad_y, x, gamma, eps=1e-5):
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    s = 1 / (var + eps) ** 0.5
    x_hat = (x - mean) * s
    grad_beta = grad_y.sum(axis=axes)
    grad_gamma = (grad_y * x_hat).sum(axis=axes)
    grad_x = gamma.reshape(shape) * s * (grad_y - grad_y.mean(axis=axes, keepdims=True)
                                         - x_hat * (grad_y * x_hat).mean(axis=axes,
                                                                         keepdims=True))
    return grad_x, grad_gamma, grad_beta
