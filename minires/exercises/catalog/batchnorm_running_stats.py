"""BatchNorm forward in training mode, with the running-statistics update (PyTorch's
convention: momentum weighs the NEW batch, and the running variance is unbiased)."""

import numpy as np

from minires.exercises import Case
from minires.kernels import norm

NAME = "batchnorm_running_stats"
TITLE = "BatchNorm forward, training mode, with the running-statistics update"
ORDER = 80
STUB = "batchnorm_running_stats.py"
FUNCTION = "batchnorm_forward_train"
OUTPUTS = ("y", "running_mean", "running_var")
TOLERANCE = {"float64": (1e-6, 1e-8), "float32": (1e-4, 1e-5)}


def reference(x, gamma, beta, running_mean, running_var, momentum=0.1, eps=1e-5):
    running_mean, running_var = running_mean.copy(), running_var.copy()
    y, _ = norm.batch_norm_forward(x, gamma, beta, running_mean, running_var, training=True,
                                   momentum=momentum, eps=eps)
    return y, running_mean, running_var


def _case(rng, shape, momentum=0.1, dtype=np.float64):
    c = shape[1]
    vshape = (1, c) + (1,) * (len(shape) - 2)
    x = rng.standard_normal(shape) * rng.uniform(0.5, 3, c).reshape(vshape)
    x = (x + rng.uniform(-2, 2, c).reshape(vshape)).astype(dtype)
    gamma = rng.uniform(0.5, 2, c).astype(dtype)
    beta = rng.standard_normal(c).astype(dtype)
    running_mean = rng.standard_normal(c).astype(dtype)
    running_var = rng.uniform(0.5, 2, c).astype(dtype)
    label = f"x {shape}, momentum {momentum:g}"
    label += "" if dtype == np.float64 else f", {np.dtype(dtype).name}"
    return Case(label, (x, gamma, beta, running_mean, running_var), {"momentum": momentum})


def cases(rng):
    yield _case(rng, (4, 3))  # (N, C) features
    yield _case(rng, (2, 3, 4, 4))  # images: statistics over N, H and W
    yield _case(rng, (1, 2, 3, 3))  # batch 1: m = 9 values per channel
    yield _case(rng, (2, 4, 1, 1), momentum=0.5)  # m = 2: m / (m - 1) = 2
    yield _case(rng, (5, 2), momentum=1.0)  # momentum 1: the running stats ARE the batch's
    yield _case(rng, (8, 4, 2, 2), dtype=np.float32)


def _stats(x):
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    return x.mean(axis=axes), x.var(axis=axes), x.size // x.shape[1], axes


def diagnose(case, expected, got):
    x, gamma, beta, running_mean, running_var = case.args
    momentum = case.kwargs.get("momentum", 0.1)
    y, got_mean, got_var = got
    mean, var, m, axes = _stats(x)
    if x.ndim == 4 and (np.shape(got_mean) == x.shape[1:] or np.shape(got_var) == x.shape[1:]):
        return "axes"
    same_mean = np.shape(got_mean) == running_mean.shape and np.allclose(got_mean, running_mean)
    same_var = np.shape(got_var) == running_var.shape and np.allclose(got_var, running_var)
    if momentum != 0 and (same_mean or same_var):
        return "not_updated"
    if np.shape(got_var) == running_var.shape:
        if np.allclose(got_var, (1 - momentum) * running_var + momentum * var):
            return "biased_running_var"
    if np.shape(got_mean) == running_mean.shape and momentum != 0.5:
        if np.allclose(got_mean, momentum * running_mean + (1 - momentum) * mean):
            return "momentum_swapped"
    if np.shape(y) == x.shape:
        vshape = (1, -1) + (1,) * (x.ndim - 2)
        for key, mu, v in (("normalised_with_running", running_mean, running_var),
                           ("normalised_with_updated", expected[1], expected[2]),
                           ("unbiased_in_y", mean, var * m / (m - 1))):
            guess = (gamma.reshape(vshape) * (x - mu.reshape(vshape))
                     / np.sqrt(v.reshape(vshape) + 1e-5) + beta.reshape(vshape))
            if np.allclose(y, guess, rtol=1e-4, atol=1e-6):
                return key
    return None


HINTS = {
    "not_updated": "the running statistics came back unchanged: training mode must update "
                   "them, running_mean = (1 - momentum) * running_mean + momentum * mean "
                   "(and the same for the variance), and return the new values.",
    "biased_running_var": "the running variance tracks the UNBIASED batch variance: use "
                          "var * m / (m - 1) (m = values per channel) in its update, while y "
                          "is normalised with the biased var.",
    "momentum_swapped": "PyTorch's momentum is the weight of the NEW batch: running = "
                        "(1 - momentum) * running + momentum * batch_statistic (the opposite "
                        "of the usual exponential-average convention).",
    "normalised_with_running": "in training mode y is normalised with the BATCH mean and "
                               "variance; the running statistics are only for eval mode.",
    "normalised_with_updated": "normalise y with the batch's own statistics, not with the "
                               "freshly updated running ones.",
    "unbiased_in_y": "normalise y with the BIASED batch variance (divide by m); only the "
                     "running variance uses m / (m - 1).",
    "axes": "for images (N, C, H, W) the statistics are per channel over N, H and W: "
            "axis=(0, 2, 3), giving vectors of shape (C,).",
    "mismatch": "y = gamma * (x - mean) / sqrt(var + eps) + beta with the batch mean and "
                "biased var; running_mean = (1 - momentum) * running_mean + momentum * mean; "
                "running_var = (1 - momentum) * running_var + momentum * var * m / (m - 1).",
}
