"""The fast BatchNorm: :mod:`minires.kernels.norm`'s formulas in fewer passes over memory.

Same arguments, results and cache as :func:`minires.kernels.norm.batch_norm_forward` and
:func:`~minires.kernels.norm.batch_norm_backward` (the tests compare them in float64).
Changes, each measured (``benchmarks/README.md``):

* Per-channel sums run over a ``(N, C, H*W)`` view, the last axis first (contiguous), and
  the sums of products (``sum((x - mean)^2)``, ``sum(dy * x_hat)``) are ``einsum``
  contractions, which need no temporary array the size of ``x``.  They are summed per
  image first, then over the batch, so the result is the same however the batch is split.
  A slice's sums are taken in the pass that has it in cache (the centring; both sums of
  the backward together).
* The backward is fused into four in-place passes over one new array:
  ``dx = scale * (dy - (sum(dy) + x_hat * sum(dy * x_hat)) / m)``.
* Every pass runs over slices of the batch on the kernel threads
  (:mod:`minires.kernels.fast.parallel`); a chain of passes over one slice finds it in
  cache.

2-D ``(N, C)`` inputs, eval mode and GPU arrays use the simple kernels unchanged.
"""

from __future__ import annotations

import numpy as np

from minires.kernels import norm
from minires.kernels.fast import parallel

#: The simple kernels, for the cases this module does not speed up.
simple_forward, simple_backward = norm.batch_norm_forward, norm.batch_norm_backward


def _sums_per_image(out, batch, a3, b3=None):
    """``out[batch]`` = per-image, per-channel sums of ``a`` (or of ``a * b``) over an
    ``(N, C, H*W)`` view.  Summing these rows over the batch afterwards (in image order)
    gives the same per-channel sums however the batch was split into slices."""
    if b3 is None:
        a3[batch].sum(axis=2, out=out[batch])
    else:
        np.einsum("nch,nch->nc", a3[batch], b3[batch], out=out[batch])


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
    x3 = x.reshape(n, channels, -1)
    per_image = np.empty((n, channels), dtype=x.dtype)
    parallel.each_slice(lambda batch: _sums_per_image(per_image, batch, x3), x)
    mean = per_image.sum(axis=0) / m
    x_hat = np.empty(x.shape, dtype=x.dtype)  # C order: the reshape below is a view
    centred = x_hat.reshape(n, channels, -1)
    mean_b = mean.astype(x.dtype, copy=False).reshape(vshape)

    def centre_slice(batch):  # centred first (two passes, accurate in float32), then its
        np.subtract(x[batch], mean_b, out=x_hat[batch])  # squares while still in cache
        _sums_per_image(per_image, batch, centred, centred)

    parallel.each_slice(centre_slice, x)
    var = per_image.sum(axis=0) / m  # biased
    norm.update_running_stats(running_mean, running_var, mean, var, momentum, m)
    inv_std = (1 / (var + eps) ** 0.5).astype(x.dtype, copy=False)
    inv_std_b = inv_std.reshape(vshape)
    gamma_b = None if gamma is None else gamma.astype(x.dtype, copy=False).reshape(vshape)
    beta_b = None if beta is None else beta.astype(x.dtype, copy=False).reshape(vshape)
    y = np.empty_like(x)

    def normalise_slice(batch):  # x_hat *= inv_std;  y = gamma * x_hat + beta
        x_hat[batch] *= inv_std_b
        if gamma_b is None:
            y[batch] = x_hat[batch]
        else:
            np.multiply(x_hat[batch], gamma_b, out=y[batch])
        if beta_b is not None:
            y[batch] += beta_b

    parallel.each_slice(normalise_slice, x)
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
    g3, x_hat3 = grad_y.reshape(n, channels, -1), x_hat.reshape(n, channels, -1)
    per_image_dy = np.empty((n, channels), dtype=grad_y.dtype)
    per_image_dy_xhat = np.empty((n, channels), dtype=np.result_type(grad_y, x_hat))

    def sums_slice(batch):  # both sums in one pass over each slice of dy
        _sums_per_image(per_image_dy, batch, g3)
        _sums_per_image(per_image_dy_xhat, batch, g3, x_hat3)

    parallel.each_slice(sums_slice, grad_y)
    sum_dy, sum_dy_xhat = per_image_dy.sum(axis=0), per_image_dy_xhat.sum(axis=0)
    scale = inv_std if gamma is None else gamma.astype(grad_y.dtype, copy=False) * inv_std
    scale = scale.reshape(vshape)
    mean_dy, mean_dy_xhat = (sum_dy / m).reshape(vshape), (sum_dy_xhat / m).reshape(vshape)
    grad_x = np.empty_like(x_hat)

    def grad_slice(batch):  # dx = scale * (dy - mean(dy) - x_hat * mean(dy * x_hat))
        gx = grad_x[batch]
        np.multiply(x_hat[batch], mean_dy_xhat, out=gx)
        gx += mean_dy
        np.subtract(grad_y[batch], gx, out=gx)
        gx *= scale

    parallel.each_slice(grad_slice, grad_y)
    return (grad_x, None if gamma is None else sum_dy_xhat.astype(grad_y.dtype, copy=False),
            sum_dy if has_beta else None)
