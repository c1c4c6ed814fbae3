"""MatMul backward with broadcasting: two matrix products, then undo the broadcast."""

import numpy as np

from minires.autograd import Tensor
from minires.exercises import Case, GradCheck

NAME = "matmul_backward"
TITLE = "MatMul backward with batch broadcasting"
ORDER = 20
STUB = "matmul_backward.py"
FUNCTION = "matmul_backward"
OUTPUTS = ("grad_a", "grad_b")


def reference(grad_y, a, b):
    """minires's own MatMul (ops.MatMul) through autograd."""
    ta, tb = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    (ta @ tb).backward(grad_y)
    return ta.grad.data, tb.grad.data


def _case(rng, a_shape, b_shape, dtype=np.float64):
    a = rng.standard_normal(a_shape).astype(dtype)
    b = rng.standard_normal(b_shape).astype(dtype)
    grad_y = rng.standard_normal(np.matmul(a, b).shape).astype(dtype)
    label = f"a {a_shape} @ b {b_shape}" + ("" if dtype == np.float64 else " float32")
    return Case(label, (grad_y, a, b))


def cases(rng):
    yield _case(rng, (3, 4), (4, 5))  # plain matrices
    yield _case(rng, (1, 1), (1, 1))
    yield _case(rng, (2, 3, 4), (4, 5))  # b shared by every batch entry
    yield _case(rng, (3, 4), (2, 4, 5))  # a shared
    yield _case(rng, (2, 1, 3, 4), (5, 4, 2))  # (2, 1) and (5,) broadcast to (2, 5)
    yield _case(rng, (6, 3, 2), (6, 2, 3), dtype=np.float32)


def gradchecks(rng):
    a, b = rng.standard_normal((2, 1, 2, 3)), rng.standard_normal((3, 3, 2))
    yield GradCheck("a (2, 1, 2, 3) @ b (3, 3, 2)", np.matmul, [a, b],
                    lambda g, a, b: (g, a, b), {0: (0, "a"), 1: (1, "b")})


def diagnose(case, expected, got):
    grad_y, a, b = case.args
    full_a = grad_y @ np.swapaxes(b, -1, -2)
    full_b = np.swapaxes(a, -1, -2) @ grad_y
    for g, e, full in zip(got, expected, (full_a, full_b), strict=True):
        shape = np.shape(g)
        if shape != e.shape and shape == full.shape:
            return "not_summed"
        if shape != e.shape and len(shape) == len(e.shape) + 1:
            return "not_summed"
    for g, e in zip(got, expected, strict=True):
        if np.shape(g) == e.shape and np.shape(g) != () and e.ndim >= 2:
            swapped = np.swapaxes(e, -1, -2)
            if swapped.shape == e.shape and np.allclose(g, swapped) and not np.allclose(g, e):
                return "transposed"
    return None


HINTS = {
    "not_summed": "your gradient has the shape of the broadcast product: an input that was "
                  "broadcast (reused) along a batch axis must get the SUM of the gradients "
                  "of all its copies. Sum over the leading axes it lacks, and with "
                  "keepdims=True over the axes where it has size 1.",
    "transposed": "your gradient is the transpose of the right one: for y = a @ b, "
                  "grad_a = grad_y @ b^T and grad_b = a^T @ grad_y (transpose only the last "
                  "two axes: np.swapaxes(b, -1, -2), not b.T, for batched arrays).",
    "shape": "grad_a must have a's shape and grad_b b's shape, even when they were "
             "broadcast; see the docstring's 'Broadcasting' paragraph.",
    "mismatch": "grad_a = grad_y @ b^T and grad_b = a^T @ grad_y (last two axes transposed), "
                "each then summed over the axes along which that input was broadcast.",
}
