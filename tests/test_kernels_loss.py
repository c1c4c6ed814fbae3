"""Tests for minires.kernels.loss: softmax helpers and cross-entropy with label smoothing.

Gradient checks: float64, central differences, tolerance 1e-6 (minires.gradcheck), with a
random upstream gradient ``grad_loss``.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minires.gradcheck import check_array_gradients
from minires.kernels.loss import (
    log_softmax,
    softmax,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_forward,
)

GRADCHECK_TOL = 1e-6
TORCH_RTOL = 1e-10
SMOOTHING = [0.0, 0.1, 1.0]


def naive_cross_entropy(logits, labels, s):
    """Per-sample loops with the textbook formulas."""
    n, k = logits.shape
    total = 0.0
    for i in range(n):
        log_p = logits[i] - np.log(np.sum(np.exp(logits[i])))
        target = np.full(k, s / k)
        target[labels[i]] += 1 - s
        total += -np.sum(target * log_p)
    return total / n


# ----------------------------------------------------------------------------- softmax helpers


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_and_log_softmax(rng, axis):
    x = rng.standard_normal((3, 4, 5))
    p = softmax(x, axis=axis)
    expected = np.exp(x) / np.exp(x).sum(axis=axis, keepdims=True)
    np.testing.assert_allclose(p, expected, rtol=1e-12)
    np.testing.assert_allclose(log_softmax(x, axis=axis), np.log(expected), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(p.sum(axis=axis), 1, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_stable_for_huge_logits(dtype):
    x = np.array([[1e4, 0.0, -1e4], [1e4, 1e4, 1e4], [-1e4, -1e4 + 1, -1e4]], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        p = softmax(x)
        log_p = log_softmax(x)
    assert p.dtype == dtype and log_p.dtype == dtype
    np.testing.assert_allclose(p[0], [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(p[1], [1 / 3] * 3, rtol=1e-6)
    np.testing.assert_allclose(log_p[0], [0, -1e4, -2e4], rtol=1e-6)
    assert np.isfinite(log_p).all()


@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 6)),
                  elements=st.floats(-1e4, 1e4)))
def test_softmax_property_is_a_distribution(x):
    p = softmax(x)
    assert np.all((p >= 0) & (p <= 1))
    np.testing.assert_allclose(p.sum(axis=-1), 1, rtol=1e-12)
    # Adding a constant to every logit changes nothing (what makes the max-shift legal).
    np.testing.assert_allclose(softmax(x + 3.0), p, atol=1e-12)
    assert np.all(log_softmax(x) <= 0)


@pytest.mark.torch
def test_log_softmax_matches_torch(torch, rng):
    x = rng.standard_normal((4, 7)) * 10
    np.testing.assert_allclose(log_softmax(x), torch.log_softmax(torch.tensor(x), dim=-1).numpy(),
                               rtol=TORCH_RTOL)
    np.testing.assert_allclose(softmax(x, 0), torch.softmax(torch.tensor(x), dim=0).numpy(),
                               rtol=TORCH_RTOL)


# ----------------------------------------------------------------------------- cross-entropy


@pytest.mark.parametrize("s", SMOOTHING)
@pytest.mark.parametrize("n, k", [(1, 2), (5, 3), (8, 10)])
def test_forward_matches_naive(rng, n, k, s):
    logits = rng.standard_normal((n, k)) * 3
    labels = rng.integers(0, k, size=n)
    loss, probs = softmax_cross_entropy_forward(logits, labels, s)
    assert loss.shape == () and probs.shape == (n, k)
    np.testing.assert_allclose(float(loss), naive_cross_entropy(logits, labels, s), rtol=1e-12)
    np.testing.assert_allclose(probs, softmax(logits), rtol=1e-12)


@pytest.mark.parametrize("s", SMOOTHING)
@pytest.mark.parametrize("n, k", [(1, 2), (4, 3), (6, 5)])
def test_gradcheck(rng, n, k, s):
    logits = rng.standard_normal((n, k)) * 2
    labels = rng.integers(0, k, size=n)

    def forward(logits):
        return softmax_cross_entropy_forward(logits, labels, s)[0]

    def backward(grad_loss, logits):
        _, probs = softmax_cross_entropy_forward(logits, labels, s)
        return [softmax_cross_entropy_backward(probs, labels, s, grad_loss=grad_loss)]

    check_array_gradients(forward, backward, [logits], tolerance=GRADCHECK_TOL).assert_ok()


@pytest.mark.torch
@pytest.mark.parametrize("s", SMOOTHING + [0.35])
@pytest.mark.parametrize("scale", [1.0, 1e4])  # 1e4: log-sum-exp stability
def test_matches_torch(torch, rng, s, scale):
    n, k = 6, 4
    logits = rng.standard_normal((n, k)) * scale
    labels = rng.integers(0, k, size=n)
    grad_loss = 0.7
    loss, probs = softmax_cross_entropy_forward(logits, labels, s)
    grad = softmax_cross_entropy_backward(probs, labels, s, grad_loss=grad_loss)
    lt = torch.tensor(logits, requires_grad=True)
    loss_t = torch.nn.functional.cross_entropy(lt, torch.tensor(labels), label_smoothing=s)
    (loss_t * grad_loss).backward()
    assert np.isfinite(float(loss))
    np.testing.assert_allclose(float(loss), loss_t.item(), rtol=TORCH_RTOL)
    np.testing.assert_allclose(grad, lt.grad.numpy(), rtol=TORCH_RTOL, atol=1e-15)


def test_huge_logits_do_not_overflow():
    logits = np.array([[1e4, -1e4, 0.0], [0.0, 1e4, 1e4]])
    labels = np.array([0, 2])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss, probs = softmax_cross_entropy_forward(logits, labels)
        grad = softmax_cross_entropy_backward(probs, labels)
    np.testing.assert_allclose(float(loss), np.log(2) / 2, rtol=1e-12)  # sample 2: p = 1/2
    assert np.isfinite(grad).all()


def test_perfect_prediction_has_zero_loss_and_gradient():
    logits = np.array([[50.0, 0.0], [0.0, 50.0]])
    labels = np.array([0, 1])
    loss, probs = softmax_cross_entropy_forward(logits, labels)
    assert float(loss) < 1e-20
    np.testing.assert_allclose(softmax_cross_entropy_backward(probs, labels), 0, atol=1e-20)


def test_float32_stays_float32(rng):
    logits = rng.standard_normal((4, 5)).astype(np.float32)
    labels = np.array([0, 4, 2, 2], dtype=np.int32)
    loss, probs = softmax_cross_entropy_forward(logits, labels, 0.1)
    assert loss.dtype == np.float32 and probs.dtype == np.float32
    grad = softmax_cross_entropy_backward(probs, labels, 0.1, grad_loss=np.float64(2.0))
    assert grad.dtype == np.float32
    assert softmax(logits).dtype == np.float32 and log_softmax(logits).dtype == np.float32


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "logits, labels, smoothing, error, message",
    [
        (np.zeros((2, 3)), np.array([0, 3]), 0.0, ValueError, r"\[0, 3\).*from 0 to 3"),
        (np.zeros((2, 3)), np.array([-1, 0]), 0.0, ValueError, r"from -1 to 0"),
        (np.zeros((2, 3)), np.array([0.0, 1.0]), 0.0, TypeError, "integer array"),
        (np.zeros((2, 3)), np.array([True, False]), 0.0, TypeError, "integer array"),
        (np.zeros((2, 3)), np.array([0, 1, 2]), 0.0, ValueError, r"shape \(N,\) = \(2,\)"),
        (np.zeros((2, 3)), np.array([[0], [1]]), 0.0, ValueError, r"got \(2, 1\)"),
        (np.zeros(3), np.array([0]), 0.0, ValueError, r"2-D array \(N, K\)"),
        (np.zeros((2, 3), dtype=np.int64), np.array([0, 1]), 0.0, TypeError, "floating"),
        (np.zeros((2, 3)), np.array([0, 1]), 1.5, ValueError, "label_smoothing"),
        (np.zeros((0, 3)), np.zeros(0, dtype=np.int64), 0.0, ValueError, "empty batch"),
    ],
)
def test_bad_inputs_raise_clear_errors(logits, labels, smoothing, error, message):
    with pytest.raises(error, match=message):
        softmax_cross_entropy_forward(logits, labels, smoothing)
