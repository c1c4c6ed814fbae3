# %% [markdown]
# # Exercise: one step of SGD with momentum and weight decay, as PyTorch computes it
#
# Write the function in the next cell (its docstring gives the shapes and the
# formula), then check it: run the last cell, or `python -m minires check sgd_momentum`.

# %%
import numpy as np  # noqa: F401  (you may need it)


# %%
def sgd_momentum_step(param, grad, momentum_buffer, lr, momentum, weight_decay):
    """One update of one parameter array by SGD with momentum and weight decay.

    PyTorch's formulas (torch.optim.SGD with dampening 0, nesterov False):

        g   = grad + weight_decay * param            (L2 weight decay, added to the gradient)
        buf = g                                      on the first step (momentum_buffer None)
        buf = momentum * buf + g                     on every later step
        param_new = param - lr * buf

    Momentum makes steps along a direction the gradient keeps pointing to grow (up to
    1 / (1 - momentum) times, 10x for momentum 0.9) while components that flip sign from
    step to step cancel out.

    Args:
        param: the parameter's values, any shape.
        grad: dL/dparam, same shape.
        momentum_buffer: the buffer returned by the previous step, or None on the first step.
        lr, momentum, weight_decay: floats (momentum > 0).

    Returns:
        (param_new, buf_new): the updated parameter and the new momentum buffer, both of
        param's shape and dtype.  (You may update param in place and return it.)

    Example: param = [1.0], grad = [0.5], lr = 0.1, momentum = 0.9, weight_decay = 0.1:
        first step:   g = 0.5 + 0.1 * 1.0 = 0.6, buf = [0.6], param_new = [1 - 0.06] = [0.94]
        second step (same grad): g = 0.5 + 0.094 = 0.594, buf = 0.9 * 0.6 + 0.594 = [1.134],
                      param_new = [0.94 - 0.1134] = [0.8266]
    """
    raise NotImplementedError


# %%
if __name__ == "__main__":  # run this cell (or this file) to check your function
    from minires.exercises import check_main

    check_main("sgd_momentum", sgd_momentum_step)
