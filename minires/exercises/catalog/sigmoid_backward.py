"""Sigmoid backward: the chain rule through an elementwise function, from its output."""

import numpy as np

from minires.exercises import Case, GradCheck
from minires.kernels.activation import sigmoid_backward, sigmoid_forward

NAME = "sigmoid_backward"
TITLE = "Sigmoid backward (from the forward output y)"
ORDER = 10
STUB = "sigmoid_backward.py"
FUNCTION = "sigmoid_backward"
OUTPUTS = ("grad_x",)


def reference(grad_y, y):
    return sigmoid_backward(grad_y, y)


def _case(rng, shape, dtype=np.float64, scale=3.0):
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    grad_y = rng.standard_normal(shape).astype(dtype)
    label = f"shape {shape}" + ("" if dtype == np.float64 else f" {np.dtype(dtype).name}")
    return Case(label, (grad_y, sigmoid_forward(x)))


def cases(rng):
    yield _case(rng, (5,))
    yield _case(rng, (3, 4))
    yield _case(rng, (1, 1))
    yield _case(rng, (2, 3, 4, 4), scale=8.0)  # saturated units: y close to 0 or 1
    yield _case(rng, (4, 6), dtype=np.float32)


def gradchecks(rng):
    x = rng.standard_normal((3, 4)) * 2
    yield GradCheck("x (3, 4)", sigmoid_forward, [x],
                    lambda g, x: (g, sigmoid_forward(x)), {0: (None, "x")})


def diagnose(case, expected, got):
    grad_y, y = case.args
    got = np.asarray(got, dtype=np.float64)
    if got.shape != y.shape:
        return None
    if np.allclose(got, y * (1 - y)):
        return "not_weighted"
    s = sigmoid_forward(y)
    if np.allclose(got, grad_y * s * (1 - s)):
        return "sigmoid_of_y"
    if np.allclose(got, -expected):
        return "sign"
    if np.allclose(got, grad_y * y):
        return "missing_factor"
    return None


HINTS = {
    "not_weighted": "you returned dy/dx = y (1 - y) alone: the chain rule multiplies it by "
                    "the upstream gradient, grad_x = grad_y * y * (1 - y).",
    "sigmoid_of_y": "y is already sigmoid(x) (the forward OUTPUT): do not apply sigmoid to "
                    "it again; use y * (1 - y) directly.",
    "sign": "your result has the wrong sign: d sigmoid/dx = y (1 - y) is positive.",
    "missing_factor": "dy/dx = y * (1 - y): both factors are needed.",
    "mismatch": "grad_x = grad_y * y * (1 - y), elementwise, with y the forward output.",
}
