"""minires.functional: every differentiable NN op through autograd, by numerical gradient
(float64, random upstream gradient) and against torch.nn.functional when torch is here.

The kernels have their own tests; these check the autograd wiring (which inputs get
which gradient, optional bias/affine, hyper-parameters passed through).
"""

import numpy as np
import pytest

import minires
import minires.functional as F
from minires.gradcheck import gradcheck
from tests.torch_check import assert_matches_torch

TORCH_TOLERANCE = 1e-10


def _t(rng, *shape, grad=True):
    return minires.tensor(rng.standard_normal(shape), requires_grad=grad)


def _distinct(rng, *shape):
    values = rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1
    return minires.tensor(values, requires_grad=True)


# (id, minires fn, torch fn taking the torch module, input builders)
CASES = [
    ("conv2d_bias_stride2_pad1",
     lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1),
     lambda T: lambda x, w, b: T.nn.functional.conv2d(x, w, b, stride=2, padding=1),
     lambda rng: [_t(rng, 2, 3, 7, 6), _t(rng, 4, 3, 3, 3), _t(rng, 4)]),
    ("conv2d_nobias_1x1",
     lambda x, w: F.conv2d(x, w),
     lambda T: lambda x, w: T.nn.functional.conv2d(x, w),
     lambda rng: [_t(rng, 1, 5, 4, 4), _t(rng, 2, 5, 1, 1)]),
    ("max_pool2d",
     lambda x: F.max_pool2d(x, 2),
     lambda T: lambda x: T.nn.functional.max_pool2d(x, 2),
     lambda rng: [_distinct(rng, 2, 2, 4, 6)]),
    ("max_pool2d_3x3_s2_p1",
     lambda x: F.max_pool2d(x, 3, 2, 1),
     lambda T: lambda x: T.nn.functional.max_pool2d(x, 3, 2, 1),
     lambda rng: [_distinct(rng, 1, 2, 5, 5)]),
    ("avg_pool2d_pad",
     lambda x: F.avg_pool2d(x, 3, 2, 1),
     lambda T: lambda x: T.nn.functional.avg_pool2d(x, 3, 2, 1),
     lambda rng: [_t(rng, 2, 2, 5, 4)]),
    ("adaptive_avg_pool2d",
     lambda x: F.adaptive_avg_pool2d(x, (1, 1)),
     lambda T: lambda x: T.nn.functional.adaptive_avg_pool2d(x, (1, 1)),
     lambda rng: [_t(rng, 2, 3, 4, 5)]),
    ("batch_norm_train_4d",
     lambda x, w, b: F.batch_norm(x, np.zeros(3), np.ones(3), w, b, training=True),
     lambda T: lambda x, w, b: T.nn.functional.batch_norm(
         x, T.zeros(3), T.ones(3), w, b, training=True),
     lambda rng: [_t(rng, 4, 3, 2, 3), _t(rng, 3), _t(rng, 3)]),
    ("batch_norm_train_2d_no_affine",
     lambda x: F.batch_norm(x, None, None, training=True),
     lambda T: lambda x: T.nn.functional.batch_norm(x, None, None, training=True),
     lambda rng: [_t(rng, 5, 4)]),
    ("batch_norm_eval",
     lambda x, w, b: F.batch_norm(x, np.full(3, 0.2), np.full(3, 1.5), w, b, training=False),
     lambda T: lambda x, w, b: T.nn.functional.batch_norm(
         x, T.full((3,), 0.2), T.full((3,), 1.5), w, b, training=False),
     lambda rng: [_t(rng, 2, 3, 2, 2), _t(rng, 3), _t(rng, 3)]),
    ("linear",
     lambda x, w, b: F.linear(x, w, b),
     lambda T: lambda x, w, b: T.nn.functional.linear(x, w, b),
     lambda rng: [_t(rng, 3, 5), _t(rng, 4, 5), _t(rng, 4)]),
    ("linear_3d_nobias",
     lambda x, w: F.linear(x, w),
     lambda T: lambda x, w: T.nn.functional.linear(x, w),
     lambda rng: [_t(rng, 2, 3, 5), _t(rng, 4, 5)]),
    ("cross_entropy",
     lambda z: F.cross_entropy(z, np.array([0, 2, 1, 2])),
     lambda T: lambda z: T.nn.functional.cross_entropy(z, T.tensor([0, 2, 1, 2])),
     lambda rng: [_t(rng, 4, 3)]),
    ("cross_entropy_smoothing",
     lambda z: F.cross_entropy(z, np.array([1, 0]), label_smoothing=0.2),
     lambda T: lambda z: T.nn.functional.cross_entropy(z, T.tensor([1, 0]),
                                                       label_smoothing=0.2),
     lambda rng: [_t(rng, 2, 5)]),
    ("mse_loss",
     lambda a, b: F.mse_loss(a, b),
     lambda T: lambda a, b: T.nn.functional.mse_loss(a, b),
     lambda rng: [_t(rng, 3, 4), _t(rng, 3, 4)]),
]


@pytest.mark.parametrize("name, fn, torch_fn, make", CASES, ids=[c[0] for c in CASES])
def test_gradcheck(name, fn, torch_fn, make):
    gradcheck(fn, *make(np.random.default_rng(0))).assert_ok()


@pytest.mark.torch
@pytest.mark.parametrize("name, fn, torch_fn, make", CASES, ids=[c[0] for c in CASES])
def test_matches_torch(torch, name, fn, torch_fn, make):
    arrays = [t.numpy() for t in make(np.random.default_rng(1))]
    assert_matches_torch(torch, fn, torch_fn(torch), arrays, name, TORCH_TOLERANCE)


def test_dropout_scales_and_masks_consistently():
    minires.manual_seed(3)
    x = minires.ones(1000, requires_grad=True)
    y = F.dropout(x, p=0.25, training=True)
    kept = y.numpy() != 0
    assert 0.65 < kept.mean() < 0.85
    np.testing.assert_allclose(y.numpy()[kept], 1 / 0.75, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy() != 0, kept)
    assert F.dropout(x, p=0.25, training=False) is x
    with pytest.raises(ValueError, match="probability"):
        F.dropout(x, p=1.0)


def test_batch_norm_needs_weight_and_bias_together():
    x = minires.randn(4, 3)
    with pytest.raises(ValueError, match="both weight and bias"):
        F.batch_norm(x, None, None, weight=minires.ones(3), training=True)


def test_cross_entropy_rejects_bad_labels():
    logits = minires.randn(2, 3)
    with pytest.raises(ValueError):
        F.cross_entropy(logits, np.array([0, 3]))
