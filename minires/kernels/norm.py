"""Batch normalisation (BatchNorm) forward and backward.

BatchNorm standardises every channel over the current mini-batch and then lets the network
re-scale it with learned parameters::

    mu    = mean of x over the batch            (per channel)
    var   = mean of (x - mu)^2 over the batch   (per channel, the *biased* variance)
    x_hat = (x - mu) / sqrt(var + eps)          (zero mean, unit variance)
    y     = gamma * x_hat + beta                (gamma, beta: learned, one per channel)

For images ``x`` of shape ``(N, C, H, W)`` "over the batch" means over the ``m = N*H*W``
values of a channel; for ``(N, C)`` features it means over the ``m = N`` rows.

Why it helps: every layer's input keeps a steady scale however the earlier weights drift,
so deep networks train with larger learning rates; in a ResNet each residual branch ends
with a BatchNorm, whose ``gamma`` sets how much the branch adds to the identity path.

At test time the batch may be a single image, so instead of batch statistics we use
*running* averages collected during training (``running_mean``, ``running_var``), updated
after every training batch as in PyTorch.

On the GPU (CuPy float32/float64 ``x``) both functions run the CUDA twins in
``minires/kernels/cuda/batchnorm.cu`` instead (the first two lines of each): per-channel
sums over many blocks, then one elementwise pass; same results, same cache.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from minires.backend import get_array_module
from minires.kernels import cuda


class BatchNormCache(NamedTuple):
    """What :func:`batch_norm_backward` needs from the forward pass.

    Attributes:
        x_hat: the normalised input ``(x - mean) * inv_std``, ``x``'s shape and dtype.
        inv_std: ``1 / sqrt(var + eps)`` per channel, shape ``(C,)``, ``x``'s dtype; from
            the batch variance in training mode, from ``running_var`` in eval mode.
        gamma: the scale as given (``None`` when ``affine=False``).
        has_beta: whether a shift ``beta`` was given (else no ``grad_beta`` is returned).
        training: which statistics normalised ``x``: the batch's (True) or the running
            ones (False).  The backward formulas differ.
        x, eps: the forward input and epsilon, kept only when a student's backward that
            needs them is plugged in with ``minires.kernels.use(batch_norm_backward=...)``
            (None otherwise: keeping ``x`` would hold one more activation per layer).
    """

    x_hat: Any
    inv_std: Any
    gamma: Any
    has_beta: bool
    training: bool
    x: Any = None
    eps: Any = None


def reduce_axes(x):
    """Axes to average over, and the shape that broadcasts a ``(C,)`` vector against ``x``."""
    if x.ndim == 4:  # (N, C, H, W): per channel over batch and pixels
        return (0, 2, 3), (1, -1, 1, 1)
    if x.ndim == 2:  # (N, C): per feature over the batch
        return (0,), (1, -1)
    raise ValueError(f"batch norm expects x of shape (N, C) or (N, C, H, W), got {tuple(x.shape)}")


def check_channel_vector(v, channels: int, name: str):
    """ValueError unless ``v`` is None or has shape ``(channels,)``."""
    if v is not None and tuple(v.shape) != (channels,):
        raise ValueError(f"{name} has shape {tuple(v.shape)}, expected (C,) = ({channels},)")


def update_running_stats(running_mean, running_var, mean, var, momentum, m):
    """In place: ``running = (1 - momentum) running + momentum batch``, with the batch
    variance made unbiased (``var * m / (m - 1)``); None entries are left alone."""
    if running_mean is not None:
        running_mean *= 1 - momentum
        running_mean += momentum * mean
    if running_var is not None:
        running_var *= 1 - momentum
        running_var += (momentum * m / (m - 1)) * var  # unbiased estimate


def batch_norm_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1,
                       eps=1e-5):
    """BatchNorm forward: ``y = gamma * (x - mean) / sqrt(var + eps) + beta`` per channel.

    Training mode (``training=True``) normalises with the batch mean and *biased* variance
    (divide by ``m``) and, when ``running_mean``/``running_var`` are given, updates them IN
    PLACE, PyTorch's convention::

        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var  = (1 - momentum) * running_var  + momentum * var * m / (m - 1)

    i.e. the running variance tracks the *unbiased* batch variance (divide by ``m - 1``).
    A batch with one value per channel (``m == 1``) has no variance to speak of and raises
    ValueError, as in PyTorch.  Eval mode (``training=False``) normalises with the running
    statistics and changes nothing.

    Args:
        x: ``(N, C, H, W)`` or ``(N, C)`` floating-point array.
        gamma, beta: ``(C,)`` scale and shift, or None for ``affine=False`` (scale 1,
            shift 0).
        running_mean, running_var: ``(C,)`` arrays or None (then not tracked; eval mode
            needs them).
        training: bool.
        momentum: weight of the new batch in the running averages.
        eps: added to the variance so a constant channel does not divide by zero.

    Returns:
        ``(y, cache)``: ``y`` with ``x``'s shape and dtype (parameters are cast to it, so
        float32 stays float32) and a :class:`BatchNormCache` for the backward pass.
    """
    if cuda.handles(x):  # CuPy array: the CUDA twin, kernels/cuda/batchnorm.cu
        return cuda.batch_norm_forward(x, gamma, beta, running_mean, running_var, training,
                                       momentum, eps)
    xp = get_array_module(x, gamma, beta, running_mean, running_var)
    if x.dtype.kind != "f":
        raise TypeError(f"batch norm needs a floating-point x, got {x.dtype}")
    axes, vshape = reduce_axes(x)
    channels = x.shape[1]
    for v, name in ((gamma, "gamma"), (beta, "beta"), (running_mean, "running_mean"),
                    (running_var, "running_var")):
        check_channel_vector(v, channels, name)
    m = x.size // channels  # values per channel

    if training:
        if m <= 1:
            raise ValueError(
                "Expected more than 1 value per channel when training, got input size "
                f"{tuple(x.shape)}"
            )
        mean = x.mean(axis=axes)
        x_centered = x - mean.reshape(vshape)
        # Two passes (mean first, then squared deviations) are more accurate in float32
        # than mean(x^2) - mean(x)^2, which cancels badly when |mean| >> std.
        var = (x_centered * x_centered).mean(axis=axes)  # biased: divides by m
        update_running_stats(running_mean, running_var, mean, var, momentum, m)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("eval mode (training=False) needs running_mean and running_var")
        mean = running_mean.astype(x.dtype, copy=False)
        var = running_var.astype(x.dtype, copy=False)
        x_centered = x - mean.reshape(vshape)

    inv_std = 1 / xp.sqrt(var + eps)
    x_hat = x_centered
    x_hat *= inv_std.reshape(vshape)  # in place: x_centered is our own temporary
    if gamma is None:
        y = x_hat.copy()  # a separate array: x_hat is kept for the backward pass
    else:
        y = x_hat * gamma.astype(x.dtype, copy=False).reshape(vshape)
    if beta is not None:
        y += beta.astype(x.dtype, copy=False).reshape(vshape)
    return y, BatchNormCache(x_hat, inv_std, gamma, beta is not None, bool(training))


def batch_norm_backward(grad_y, cache):
    """BatchNorm backward: ``(grad_x, grad_gamma, grad_beta)`` from ``grad_y = dL/dy``.

    Derivation (per channel; sums run over the ``m`` values of that channel, ``dy`` is
    ``grad_y``, and ``s = 1 / sqrt(var + eps)`` is ``cache.inv_std``).

    The parameters: ``y = gamma * x_hat + beta`` gives directly::

        dL/dbeta  = sum(dy)
        dL/dgamma = sum(dy * x_hat)
        dL/dx_hat = gamma * dy

    Eval mode: ``x_hat = (x - running_mean) * s`` with constants ``running_mean`` and ``s``,
    so ``dL/dx = gamma * s * dy``.

    Training mode: ``mu`` and ``var`` depend on every ``x_j`` of the channel, so each ``x_j``
    reaches the loss through its own ``x_hat_j`` *and* through ``mu`` and ``var``.  With
    ``d mu / d x_j = 1/m`` and ``d var / d x_j = 2 (x_j - mu) / m`` (the ``sum(x - mu)``
    term vanishes), differentiating ``x_hat_i = (x_i - mu) s`` gives::

        d x_hat_i / d x_j = s * ([i == j] - 1/m - x_hat_i * x_hat_j / m)

    and summing ``dL/dx_hat_i * d x_hat_i / d x_j`` over ``i`` (with
    ``dL/dx_hat = gamma * dy``)::

        dL/dx = (gamma * s / m) * (m * dy - sum(dy) - x_hat * sum(dy * x_hat))

    The two subtracted terms remove the parts of ``dy`` that only shift or scale the whole
    channel: BatchNorm would normalise those away, so they cannot change the loss.

    Args:
        grad_y: ``dL/dy``, the shape of the forward input.
        cache: the :class:`BatchNormCache` from :func:`batch_norm_forward`.

    Returns:
        ``(grad_x, grad_gamma, grad_beta)``: ``grad_x`` of ``x``'s shape, ``grad_gamma`` and
        ``grad_beta`` of shape ``(C,)``, or None where the forward pass had no
        ``gamma``/``beta``; all in ``grad_y``'s dtype.
    """
    if cuda.handles(grad_y):  # CuPy array: the CUDA twin, kernels/cuda/batchnorm.cu
        return cuda.batch_norm_backward(grad_y, cache)
    x_hat, inv_std, gamma, has_beta, training = cache[:5]
    if tuple(grad_y.shape) != tuple(x_hat.shape):
        raise ValueError(
            f"grad_y has shape {tuple(grad_y.shape)}, expected the input's {tuple(x_hat.shape)}"
        )
    axes, vshape = reduce_axes(grad_y)
    dtype = grad_y.dtype
    sum_dy = grad_y.sum(axis=axes)
    sum_dy_xhat = (grad_y * x_hat).sum(axis=axes)
    scale = inv_std if gamma is None else gamma.astype(dtype, copy=False) * inv_std

    if training:
        m = grad_y.size // grad_y.shape[1]
        # dx = scale * (dy - sum(dy)/m - x_hat * sum(dy*x_hat)/m), built in place in one
        # new array (the 1/m moved inside, same formula as in the docstring).
        grad_x = x_hat * (-sum_dy_xhat / m).reshape(vshape)
        grad_x += grad_y
        grad_x -= (sum_dy / m).reshape(vshape)
        grad_x *= scale.reshape(vshape)
    else:
        grad_x = grad_y * scale.reshape(vshape)

    grad_gamma = None if gamma is None else sum_dy_xhat
    grad_beta = sum_dy if has_beta else None
    return grad_x, grad_gamma, grad_beta
