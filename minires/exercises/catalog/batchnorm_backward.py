"""BatchNorm backward in training mode: the mean and variance depend on every input."""

import numpy as np

from minires.exercises import Case, GradCheck
from minires.kernels import norm

NAME = "batchnorm_backward"
TITLE = "BatchNorm backward, training mode (grad_x, grad_gamma, grad_beta)"
ORDER = 70
STUB = "batchnorm_backward.py"
FUNCTION = "batchnorm_backward"
OUTPUTS = ("grad_x", "grad_gamma", "grad_beta")
TOLERANCE = {"float64": (1e-6, 1e-8), "float32": (1e-3, 1e-4)}


def reference(grad_y, x, gamma, eps=1e-5):
    beta = np.zeros_like(gamma)
    _, cache = norm.batch_norm_forward(x, gamma, beta, None, None, training=True, eps=eps)
    return norm.batch_norm_backward(grad_y, cache)


def _case(rng, shape, dtype=np.float64, eps=1e-5):
    c = shape[1]
    # Channels with their own mean and scale, as real activations have.
    vshape = (1, c) + (1,) * (len(shape) - 2)
    x = rng.standard_normal(shape) * rng.uniform(0.5, 3, c).reshape(vshape)
    x = (x + rng.uniform(-2, 2, c).reshape(vshape)).astype(dtype)
    gamma = rng.uniform(0.5, 2, c).astype(dtype)
    grad_y = rng.standard_normal(shape).astype(dtype)
    label = f"x {shape}" + ("" if dtype == np.float64 else f" {np.dtype(dtype).name}")
    if eps != 1e-5:
        label += f", eps {eps:g}"
    return Case(label, (grad_y, x, gamma), {"eps": eps})


def cases(rng):
    yield _case(rng, (4, 3))  # (N, C) features: BatchNorm1d
    yield _case(rng, (8, 1))
    yield _case(rng, (2, 3, 4, 4))  # images: statistics over N, H and W
    yield _case(rng, (1, 2, 3, 3))  # batch 1: still 9 values per channel
    yield _case(rng, (2, 4, 1, 1), eps=0.1)  # two values per channel; a large eps
    yield _case(rng, (4, 3, 5, 5), dtype=np.float32)


def gradchecks(rng):
    x = rng.standard_normal((3, 2, 2, 2)) * 2 + 1
    gamma, beta = rng.uniform(0.5, 2, 2), rng.standard_normal(2)

    def forward(x, gamma, beta):
        return norm.batch_norm_forward(x, gamma, beta, None, None, training=True)[0]

    yield GradCheck("x (3, 2, 2, 2), gamma (2,), beta (2,)", forward, [x, gamma, beta],
                    lambda g, x, gamma, beta: (g, x, gamma),
                    {0: (0, "x"), 1: (1, "gamma"), 2: (2, "beta")})


def _formula(grad_y, x, gamma, eps, axes, part="full", ddof=0):
    """grad_x by the training formula over ``axes``, or by a typical broken variant."""
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True, ddof=ddof)
    inv_std = 1 / np.sqrt(var + eps)
    x_hat = (x - mean) * inv_std
    g = gamma.reshape((1, -1) + (1,) * (x.ndim - 2))
    if part == "constant":
        return g * inv_std * grad_y
    if part == "mean_only":
        return g * inv_std * (grad_y - grad_y.mean(axis=axes, keepdims=True))
    return g * inv_std * (grad_y - grad_y.mean(axis=axes, keepdims=True)
                          - x_hat * (grad_y * x_hat).mean(axis=axes, keepdims=True))


def diagnose(case, expected, got):
    grad_y, x, gamma = case.args
    eps = case.kwargs.get("eps", 1e-5)
    gx, ggamma, gbeta = got
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    if x.ndim == 4 and (np.shape(ggamma) == x.shape[1:] or np.shape(gbeta) == x.shape[1:]):
        return "axes"
    if np.shape(gx) != x.shape:
        return None
    variants = [("stats_constant", dict(part="constant")), ("mean_only", dict(part="mean_only")),
                ("no_gamma", dict(gamma=np.ones_like(gamma))), ("unbiased", dict(ddof=1))]
    if x.ndim == 4:
        variants.append(("axes", dict(axes=(0,))))
    for key, change in variants:
        args = {"grad_y": grad_y, "x": x, "gamma": gamma, "eps": eps, "axes": axes, **change}
        if np.allclose(gx, _formula(**args)):
            return key
    return None


HINTS = {
    "stats_constant": "you treated the batch mean and variance as constants (that is the "
                      "eval-mode gradient gamma * grad_y / sqrt(var + eps)); in training mode "
                      "they depend on every x, which adds the two subtracted terms: grad_x "
                      "= gamma/sqrt(var + eps) * (dy - mean(dy) - x_hat * mean(dy * x_hat)).",
    "mean_only": "you included the path through the mean but not the one through the "
                 "variance: subtract x_hat * mean(dy * x_hat) as well.",
    "axes": "for images (N, C, H, W) every channel has ONE mean and variance over N, H and "
            "W: reduce over axis=(0, 2, 3), and grad_gamma, grad_beta have shape (C,).",
    "no_gamma": "grad_x must be multiplied by gamma (dL/dx_hat = gamma * dy).",
    "unbiased": "BatchNorm normalises with the BIASED variance (divide by m, np.var's "
                "default), not by m - 1.",
    "mismatch": "per channel, with m values, s = 1/sqrt(var + eps) (biased var) and x_hat = "
                "(x - mean) * s: grad_beta = sum(dy), grad_gamma = sum(dy * x_hat), grad_x = "
                "gamma * s * (dy - mean(dy) - x_hat * mean(dy * x_hat)).",
}
