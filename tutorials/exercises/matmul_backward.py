# %% [markdown]
# # Exercise: the backward pass of a (batched, broadcasting) matrix product
#
# Write the function in the next cell (its docstring gives the shapes and the
# formula), then check it: run the last cell, or `python -m minires check matmul_backward`.

# %%
import numpy as np  # noqa: F401  (you will need it)


# %%
def matmul_backward(grad_y, a, b):
    """Gradients of ``y = a @ b`` (NumPy's matmul) with respect to a and b.

    Shapes: ``a`` is (..., M, K) and ``b`` is (..., K, N), both with at least 2 axes;
    the leading "batch" axes ``...`` broadcast as in NumPy, so ``y`` is (..., M, N) with the
    broadcast batch shape.  ``grad_y = dL/dy`` has y's shape.

    For plain matrices, y[m, n] = sum_k a[m, k] b[k, n] gives::

        grad_a = grad_y @ b^T        (M, N) @ (N, K) -> (M, K)
        grad_b = a^T @ grad_y        (K, M) @ (M, N) -> (K, N)

    For batched arrays the same holds per batch entry; "transpose" then means swapping the
    LAST TWO axes only: np.swapaxes(b, -1, -2).

    Broadcasting: if ``b`` of shape (4, 5) was used by every entry of a batch ``a`` of shape
    (2, 3, 4), each copy of b contributed to y, so grad_b is the SUM over the batch of the
    per-entry gradients: compute a^T @ grad_y of shape (2, 4, 5), then sum over axis 0 to
    get (4, 5).  Likewise a size-1 batch axis that was stretched to size n must be summed
    over with keepdims=True, e.g. (2, 1, 3, 4) @ (5, 4, 2) gives y of shape (2, 5, 3, 2) and
    grad_a of shape (2, 1, 3, 4).

    Args:
        grad_y: dL/dy, shape (..., M, N).
        a: (..., M, K).
        b: (..., K, N).

    Returns:
        ``(grad_a, grad_b)``: arrays with exactly the shapes (and dtype) of a and b.

    Example:
        a = [[1, 2]] (1, 2), b = [[3], [4]] (2, 1), grad_y = [[1]]:
        grad_a = [[1]] @ [[3, 4]] = [[3, 4]],  grad_b = [[1], [2]] @ [[1]] = [[1], [2]]
    """
    # Hint: write a helper sum_to(g, shape) that sums g over the leading axes that `shape`
    # does not have, then over the axes where `shape` has 1 (keepdims=True).
    raise NotImplementedError


# %%
if __name__ == "__main__":  # run this cell (or this file) to check your function
    from minires.exercises import check_main

    check_main("matmul_backward", matmul_backward)
