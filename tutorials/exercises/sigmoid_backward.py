# %% [markdown]
# # Exercise: the backward pass of the sigmoid
#
# Write the function in the next cell (its docstring gives the shapes and the
# formula), then check it: run the last cell, or `python -m minires check sigmoid_backward`.

# %%
import numpy as np  # noqa: F401  (you will need it, or not)


# %%
def sigmoid_backward(grad_y, y):
    """Gradient of the loss with respect to the sigmoid's INPUT x.

    The forward pass computed, elementwise, ``y = sigmoid(x) = 1 / (1 + exp(-x))`` and kept
    only its output ``y``.  Its derivative can be written with ``y`` alone::

        dy/dx = y * (1 - y)

    and the chain rule multiplies it by the upstream gradient ``grad_y = dL/dy``::

        grad_x = dL/dx = grad_y * y * (1 - y)        (elementwise)

    Args:
        grad_y: dL/dy, any shape, e.g. (N, D).
        y: the forward OUTPUT sigmoid(x), same shape as grad_y, values in (0, 1).

    Returns:
        grad_x: dL/dx, same shape and dtype as grad_y.

    Example:
        y = [0.5, 0.9], grad_y = [2.0, 1.0]
        -> grad_x = [2.0 * 0.5 * 0.5, 1.0 * 0.9 * 0.1] = [0.5, 0.09]
    """
    # Hint: this is one line of NumPy; no loop needed (operations are elementwise).
    raise NotImplementedError


# %%
if __name__ == "__main__":  # run this cell (or this file) to check your function
    from minires.exercises import check_main

    check_main("sigmoid_backward", sigmoid_backward)
