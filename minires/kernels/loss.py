"""Softmax cross-entropy: the classification loss, and stable softmax helpers.

A classifier outputs one score ("logit") ``z_k`` per class.  Softmax turns the scores into
probabilities, and cross-entropy charges ``-log`` of the probability given to the true
class::

    p_k  = exp(z_k) / sum_j exp(z_j)
    loss = -log p_y = -z_y + log sum_j exp(z_j)         (one sample, true class y)

averaged over the N samples of the batch.  The loss is 0 only when the model puts all its
probability on the right class, and grows without bound as that probability goes to 0.

Numerical stability: ``exp(1000)`` overflows, but softmax does not change when the same
constant is subtracted from every score, so we subtract the row maximum first; then every
exponent is <= 0 and the largest term is exactly 1 ("log-sum-exp trick").

Label smoothing (PyTorch's definition) trains against a softened target instead of the
one-hot vector: ``target = (1 - s) * onehot(y) + s / K``, and
``loss = -sum_k target_k log p_k``; it discourages over-confident logits.

The gradient is famously simple: ``dloss/dz = p - target`` per sample (divided by N for
the mean).
"""

from __future__ import annotations

import numbers

from minires.backend import get_array_module


def log_softmax(x, axis=-1):
    """``log_softmax(x)_k = x_k - log sum_j exp(x_j)`` along ``axis``, without overflow.

    Same shape and dtype as ``x``.  Computed as ``(x - max) - log sum exp(x - max)``.
    """
    xp = get_array_module(x)
    shifted = x - x.max(axis=axis, keepdims=True)  # every entry <= 0, the max is 0
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(x, axis=-1):
    """``softmax(x)_k = exp(x_k) / sum_j exp(x_j)`` along ``axis``, without overflow.

    Same shape and dtype as ``x``; entries in [0, 1] summing to 1 along ``axis``.
    """
    xp = get_array_module(x)
    e = xp.exp(x - x.max(axis=axis, keepdims=True))  # shift by the max: no overflow
    e /= e.sum(axis=axis, keepdims=True)
    return e


def _check_inputs(logits, labels, label_smoothing):
    """Validate shapes, dtypes and values; return ``(N, K)``."""
    if getattr(logits, "ndim", None) != 2:
        raise ValueError(
            f"logits must be a 2-D array (N, K), got shape {getattr(logits, 'shape', None)}"
        )
    if logits.dtype.kind != "f":
        raise TypeError(f"logits must be floating point, got {logits.dtype}")
    n, k = logits.shape
    if getattr(labels, "dtype", None) is None or labels.dtype.kind not in "iu":
        raise TypeError(
            "labels must be an integer array of class indices, got "
            f"{getattr(labels, 'dtype', type(labels).__name__)}"
        )
    if labels.shape != (n,):
        raise ValueError(
            f"labels must have shape (N,) = ({n},) to match logits of shape {(n, k)}, "
            f"got {tuple(labels.shape)}"
        )
    if n == 0:
        raise ValueError("cross-entropy of an empty batch (N = 0) is undefined")
    # The range check reads two numbers back from the array.  On the GPU that would be a
    # device-to-host copy (and a synchronisation) every step, so it runs on the CPU only.
    if get_array_module(labels).__name__ != "numpy":
        return n, k
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= k:
        raise ValueError(
            f"labels must be class indices in [0, K) = [0, {k}), got values from {low} to {high}"
        )
    if not isinstance(label_smoothing, numbers.Real) or not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be a number in [0, 1], got {label_smoothing!r}")
    return n, k


def softmax_cross_entropy_forward(logits, labels, label_smoothing=0.0):
    """Mean softmax cross-entropy over the batch.

    ``loss = -(1/N) sum_n sum_k target[n, k] * log_softmax(logits)[n, k]`` with
    ``target = (1 - s) * onehot(labels) + s / K``; for ``s = 0`` this is
    ``mean_n(-log p[n, labels[n]])``.

    Args:
        logits: ``(N, K)`` floating-point scores.
        labels: ``(N,)`` integer class indices in ``[0, K)``.
        label_smoothing: ``s`` in [0, 1].

    Returns:
        ``(loss, probs)``: ``loss`` a 0-d array (``logits``' dtype and device; ``float(loss)``
        for a Python number) and ``probs = softmax(logits)`` of shape ``(N, K)``, which the
        backward pass needs.
    """
    n, k = _check_inputs(logits, labels, label_smoothing)
    xp = get_array_module(logits, labels)
    log_probs = log_softmax(logits, axis=1)
    # -log p of the true class, per sample: pick column labels[n] of row n.
    nll = -log_probs[xp.arange(n), labels]
    if label_smoothing:
        # The uniform part of the target: -(1/K) sum_k log p_k per sample.
        uniform = -log_probs.mean(axis=1)
        per_sample = (1 - label_smoothing) * nll + label_smoothing * uniform
    else:
        per_sample = nll
    loss = per_sample.mean()
    return xp.asarray(loss, dtype=logits.dtype), xp.exp(log_probs)


def softmax_cross_entropy_backward(probs, labels, label_smoothing=0.0, grad_loss=1.0):
    """Gradient of the mean softmax cross-entropy w.r.t. the logits.

    ``dloss/dlogits = grad_loss * (probs - target) / N``, ``target`` as in the forward pass.
    (Per sample, ``d/dz_j [-sum_k t_k log p_k] = sum_k t_k (p_j - [j == k]) = p_j - t_j``
    because the targets sum to 1.)

    Args:
        probs: ``(N, K)`` softmax probabilities from :func:`softmax_cross_entropy_forward`.
        labels: ``(N,)`` integer class indices, as given to the forward pass.
        label_smoothing: as given to the forward pass.
        grad_loss: upstream gradient ``dL/dloss``, a number or 0-d array (1 when the loss
            is the final objective).

    Returns:
        ``grad_logits`` of shape ``(N, K)``, ``probs``' dtype.
    """
    n, k = _check_inputs(probs, labels, label_smoothing)
    xp = get_array_module(probs, labels)
    grad = probs - label_smoothing / k  # subtract the uniform part of the target...
    grad[xp.arange(n), labels] -= 1 - label_smoothing  # ...and the one-hot part
    grad *= grad_loss / n  # in place: keeps probs' dtype even if grad_loss is float64
    return grad
