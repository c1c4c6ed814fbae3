"""The fast BatchNorm: :mod:`minires.kernels.norm`'s formulas in fewer passes over memory.

Same arguments, results and cache as :func:`minires.kernels.norm.batch_norm_forward` and
:func:`~minires.kernels.norm.batch_norm_backward` (the tests compare them in float64).
Changes, each measured (``benchmarks/README.md``):

* Per-channel sums run over a ``(N, C, H*W)`` view, the last axis first (contiguous), and
  the sums of products (``sum((x - mean)^2)``, ``sum(dy * x_hat)``) are ``einsum``
  contractions, which need no temporary array the size of ``x``.
* The backward is fused into four in-place passes over one new array:
  ``dx = scale * (dy - (sum(dy) + x_hat * sum(dy * x_hat)) / m)``.

2-D ``(N, C)`` inputs, eval mode and GPU arrays use the simple kernels unchanged.
"""

from __future__ import annotations

import numpy as np

from minires.kernels import norm

#: The simple kernels, for the cases this module does not speed up.
simple_forward, simple_backward = norm.batch_norm_forward, norm.batch_norm_backward


def _channel_sums(a3, b3=None):
    """Per-channel sum of ``a`` (or of ``a * b``) over a ``(N, C, H*W)`` view."""
    if b3 is None:
        return a3.sum(axis=2).sum(axis=0)
    return np.einsum("nch,nch->c", a3, b3)


def _fast(x) -> bool:
    return isinstance(x, np.ndarray) and x.ndim == 4


def batch_norm_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1,
                       eps=1e-5):
    """Same as :func:`minires.kernels.norm.batch_norm_forward`."""
    if not (training and _fast(x)):
        return simple_forward(x, gamma, beta, running_mean, running_var, training, momentum,
                              eps)
    if x.dtype.kind != "f":
        raise TypeError(f"batch norm needs a floating-point x, got {x.dtype}")
    n, channels = x.shape[:2]
    for v, name in ((gamma, "gamma"), (beta, "beta"), (running_mean, "running_mean"),
                    (running_var, "running_var")):
        norm.check_channel_vector(v, channels, name)
    m = x.size // channels
    if m <= 1:
        raise ValueError("Expected more than 1 value per channel when training, got input "
                         f"size {tuple(x.shape)}")
    vshape = (1, channels, 1, 1)
    mean = _channel_sums(x.reshape(n, channels, -1)) / m
    x_hat = x - mean.reshape(vshape)  # centred first: two passes, accurate in float32
    centred = x_hat.reshape(n, channels, -1)
    var = _channel_sums(centred, centred) / m  # biased
    norm.update_running_stats(running_mean, running_var, mean, var, momentum, m)
    inv_std = (1 / (var + eps) ** 0.5).astype(x.dtype, copy=False)
    x_hat *= inv_std.reshape(vshape)
    if gamma is None:
        y = x_hat.copy()
    else:
        y = x_hat * gamma.astype(x.dtype, copy=False).reshape(vshape)
    if beta is not None:
        y += beta.astype(x.dtype, copy=False).reshape(vshape)
    return y, norm.BatchNormCache(x_hat, inv_std, gamma, beta is not None, True)


def batch_norm_backward(grad_y, cache):
    """Same as :func:`minires.kernels.norm.batch_norm_backward`."""
    x_hat, inv_std, gamma, has_beta, training = cache[:5]
    if not (training and _fast(grad_y)):
        return simple_backward(grad_y, cache)
    if tuple(grad_y.shape) != tuple(x_hat.shape):
        raise ValueError(f"grad_y has shape {tuple(grad_y.shape)}, expected the input's "
                         f"{tuple(x_hat.shape)}")
    n, channels = grad_y.shape[:2]
    m = grad_y.size // channels
    vshape = (1, channels, 1, 1)
    g3 = grad_y.reshape(n, channels, -1)
    sum_dy = _channel_sums(g3)
    sum_dy_xhat = _channel_sums(g3, x_hat.reshape(n, channels, -1))
    scale = inv_std if gamma is None else gamma.astype(grad_y.dtype, copy=False) * inv_std
    grad_x = x_hat * (sum_dy_xhat / m).reshape(vshape)
    grad_x += (sum_dy / m).reshape(vshape)
    np.subtract(grad_y, grad_x, out=grad_x)
    grad_x *= scale.reshape(vshape)
    return (grad_x, None if gamma is None else sum_dy_xhat.astype(grad_y.dtype, copy=False),
            sum_dy if has_beta else None)
