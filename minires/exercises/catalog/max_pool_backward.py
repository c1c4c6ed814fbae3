"""Max-pool backward: route each window's gradient to its winner; ties go to the FIRST
maximum in row-major order (PyTorch's and minires's rule); overlapping windows add up."""

import numpy as np

from minires.exercises import Case, GradCheck
from minires.kernels import pool

NAME = "max_pool_backward"
TITLE = "Max-pool backward (ties, overlap, padding)"
ORDER = 60
STUB = "max_pool_backward.py"
FUNCTION = "max_pool2d_backward"
OUTPUTS = ("grad_x",)

# (x shape, kernel, stride, padding, values): "ties" draws integers 0..2, so most windows
# hold several equal maxima; "distinct" draws normal numbers.
SETTINGS = [
    ((1, 1, 4, 4), 2, 2, 0, "ties"),  # batch 1, tiling windows
    ((2, 3, 5, 5), 2, 2, 0, "ties"),  # odd size: the last row and column are in no window
    ((2, 2, 7, 7), 3, 2, 1, "ties"),  # overlapping 3x3 stride 2 with padding (ResNet stem)
    ((1, 2, 4, 6), 3, 1, 0, "ties"),  # stride 1: a pixel can win several windows
    ((2, 2, 4, 4), 2, 1, 0, "equal"),  # every value equal: every window is one big tie
    ((2, 3, 6, 6), 2, 2, 0, "distinct"),
]


def reference(grad_y, x, kernel_size, stride, padding=0):
    _, argmax = pool.max_pool2d_forward(x, kernel_size, stride, padding)
    return pool.max_pool2d_backward(grad_y, argmax, x.shape, kernel_size, stride, padding)


def _x(rng, shape, values, dtype=np.float64):
    if values == "ties":
        return rng.integers(0, 3, shape).astype(dtype)
    if values == "equal":
        return np.ones(shape, dtype=dtype)
    return rng.standard_normal(shape).astype(dtype)


def _case(rng, shape, kernel, stride, padding, values, dtype=np.float64):
    x = _x(rng, shape, values, dtype)
    y, _ = pool.max_pool2d_forward(x, kernel, stride, padding)
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    label = (f"x {shape}, kernel {kernel}, stride {stride}, padding {padding}"
             + {"ties": ", with ties", "equal": ", all values equal", "distinct": ""}[values]
             + ("" if dtype == np.float64 else f", {np.dtype(dtype).name}"))
    return Case(label, (grad_y, x, kernel, stride), {"padding": padding})


def cases(rng):
    for setting in SETTINGS:
        yield _case(rng, *setting)
    yield _case(rng, (2, 2, 6, 6), 3, 2, 1, "ties", dtype=np.float32)


def gradchecks(rng):
    # Distinct values far apart (compared with the finite-difference step): no ties, no kinks.
    x = rng.permutation(50).reshape(1, 2, 5, 5) * 0.1

    def forward(x):
        return pool.max_pool2d_forward(x, 3, 2, 1)[0]

    yield GradCheck("x (1, 2, 5, 5), kernel 3, stride 2, padding 1, no ties", forward, [x],
                    lambda g, x: (g, x, 3, 2, 1), {0: (None, "x")})


def _route(grad_y, x, kernel, stride, padding, rule):
    """Loops: send each window's gradient by ``rule`` ("first", "last" or "all")."""
    n, c, h, w = x.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)),
                   constant_values=-np.inf)
    grad = np.zeros(x_pad.shape)
    _, _, oh, ow = grad_y.shape
    for b in range(n):
        for ch in range(c):
            for p in range(oh):
                for q in range(ow):
                    window = x_pad[b, ch, p * stride:p * stride + kernel,
                                   q * stride:q * stride + kernel]
                    winners = np.argwhere(window == window.max())
                    if rule == "first":
                        winners = winners[:1]
                    elif rule == "last":
                        winners = winners[-1:]
                    for i, j in winners:
                        grad[b, ch, p * stride + i, q * stride + j] += grad_y[b, ch, p, q]
    return grad[:, :, padding:padding + h, padding:padding + w]


def diagnose(case, expected, got):
    grad_y, x, kernel, stride = case.args
    padding = case.kwargs.get("padding", 0)
    if np.shape(got) != x.shape:
        return None
    if np.allclose(got, _route(grad_y, x, kernel, stride, padding, "last")):
        return "ties_last"
    if np.allclose(got, _route(grad_y, x, kernel, stride, padding, "all")):
        return "ties_all"
    if np.allclose(got, _route(np.ones_like(grad_y), x, kernel, stride, padding, "first")):
        return "not_weighted"
    if stride < kernel:
        # pixels that win at most one window are right, the others wrong: overwritten
        wins = _route(np.ones_like(grad_y), x, kernel, stride, padding, "first")
        close = np.isclose(got, expected)
        if not close.all() and close[wins <= 1].all():
            return "overwrite"
    return None


HINTS = {
    "ties_last": "with several equal maxima in a window, the gradient goes to the LAST one "
                 "in your code; it must go to the FIRST in row-major order (scan rows top "
                 "to bottom, each left to right, and keep a candidate only if it is strictly "
                 "greater: > rather than >=; np.argmax also returns the first).",
    "ties_all": "every tied maximum got the gradient: only ONE pixel per window (the first "
                "maximum in row-major order) receives it; a mask `window == window.max()` "
                "selects them all.",
    "not_weighted": "the winners got 1 instead of the upstream gradient: add grad_y[n, c, p, q] "
                    "to the winning pixel.",
    "overwrite": "a pixel that wins several (overlapping) windows must receive the SUM of "
                 "their gradients: use += rather than =.",
    "mismatch": "each window (p, q) covers x_pad[p*stride : p*stride + K, q*stride : q*stride "
                "+ K] (padding is -inf, never a winner); add grad_y[n, c, p, q] to its first "
                "maximum, then drop the padding.",
}
