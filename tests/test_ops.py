"""Every tensor op: forward against NumPy, backward against numerical gradients (float64).

Cases are rows of one table: add an op by adding a line.  Inputs are random, include
broadcasting, size-1 dimensions and batch size 1, and stay away from kinks (|x| > 0.1)
and from log/sqrt's domain edge (positive inputs where needed).
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minires
from minires.gradcheck import gradcheck


def _normal(rng, shape):
    return rng.standard_normal(shape)


def _positive(rng, shape):
    return rng.uniform(0.5, 2.0, size=shape)


def _away_from_zero(rng, shape):
    x = rng.uniform(0.1, 2.0, size=shape)
    return x * rng.choice([-1.0, 1.0], size=shape)


def _distinct(rng, shape):
    # a permutation of well-separated values: no ties for max/min
    return rng.permutation(np.prod(shape, dtype=int)).reshape(shape) * 0.37 - 1.0


def _log_softmax_np(x, axis):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


# (id, minires function of tensors, numpy reference of arrays, input makers and shapes)
CASES = [
    ("add", lambda a, b: a + b, np.add, [(_normal, (2, 3)),
                                          (_normal, (3,))]),
    ("add_size1", lambda a, b: a + b, np.add, [(_normal, (4, 1)),
                                                (_normal, (1, 5))]),
    ("sub", lambda a, b: a - b, np.subtract,
     [(_normal, (1, 3)), (_normal, (2, 3))]),
    ("mul", lambda a, b: a * b, np.multiply,
     [(_normal, (2, 1, 4)), (_normal, (3, 1))]),
    ("div", lambda a, b: a / b, np.divide,
     [(_normal, (2, 3)), (_positive, (2, 3))]),
    ("neg", lambda a: -a, np.negative, [(_normal, (3,))]),
    ("pow_scalar", lambda a: a**3, lambda a: a**3, [(_normal, (2, 3))]),
    ("pow_tensor", lambda a, b: a**b, np.power, [(_positive, (2, 3)), (_positive, (3,))]),
    ("rpow", lambda a: 2.0**a, lambda a: 2.0**a, [(_normal, (4,))]),
    ("exp", lambda a: a.exp(), np.exp, [(_normal, (2, 3))]),
    ("log", lambda a: a.log(), np.log, [(_positive, (2, 3))]),
    ("sqrt", lambda a: a.sqrt(), np.sqrt, [(_positive, (1, 4))]),
    ("abs", lambda a: a.abs(), np.abs, [(_away_from_zero, (3, 2))]),
    ("clip", lambda a: a.clip(-0.5, 0.5), lambda a: np.clip(a, -0.5, 0.5),
     [(_away_from_zero, (4, 4))]),
    ("sigmoid", lambda a: a.sigmoid(), lambda a: 1 / (1 + np.exp(-a)),
     [(_normal, (2, 5))]),
    ("tanh", lambda a: a.tanh(), np.tanh, [(_normal, (2, 5))]),
    ("relu", lambda a: a.relu(), lambda a: np.maximum(a, 0), [(_away_from_zero, (3, 4))]),
    ("softmax", lambda a: a.softmax(axis=1),
     lambda a: np.exp(_log_softmax_np(a, 1)), [(_normal, (3, 4))]),
    ("log_softmax", lambda a: a.log_softmax(dim=0), lambda a: _log_softmax_np(a, 0),
     [(_normal, (3, 4))]),
    ("matmul", lambda a, b: a @ b, np.matmul,
     [(_normal, (2, 3)), (_normal, (3, 4))]),
    ("matmul_batched_broadcast", lambda a, b: a @ b, np.matmul,
     [(_normal, (2, 1, 3, 4)),
      (_normal, (5, 4, 2))]),
    ("matmul_vec_mat", lambda a, b: a @ b, np.matmul,
     [(_normal, (3,)), (_normal, (2, 3, 4))]),
    ("matmul_mat_vec", lambda a, b: a @ b, np.matmul,
     [(_normal, (2, 3)), (_normal, (3,))]),
    ("matmul_dot", lambda a, b: a @ b, np.matmul,
     [(_normal, (3,)), (_normal, (3,))]),
    ("sum_all", lambda a: a.sum(), np.sum, [(_normal, (2, 3))]),
    ("sum_axis", lambda a: a.sum(axis=(0, 2)), lambda a: a.sum(axis=(0, 2)),
     [(_normal, (2, 3, 4))]),
    ("sum_dim_keepdim", lambda a: a.sum(dim=1, keepdim=True),
     lambda a: a.sum(axis=1, keepdims=True), [(_normal, (1, 3, 2))]),
    ("mean", lambda a: a.mean(axis=-1), lambda a: a.mean(axis=-1),
     [(_normal, (2, 5))]),
    ("max", lambda a: a.max(axis=1), lambda a: a.max(axis=1), [(_distinct, (3, 4))]),
    ("min_keepdims", lambda a: a.min(axis=0, keepdims=True),
     lambda a: a.min(axis=0, keepdims=True), [(_distinct, (3, 4))]),
    ("max_all", lambda a: a.max(), np.max, [(_distinct, (2, 3))]),
    ("reshape", lambda a: a.reshape(3, -1), lambda a: a.reshape(3, -1),
     [(_normal, (2, 3, 2))]),
    ("flatten", lambda a: a.flatten(1), lambda a: a.reshape(a.shape[0], -1),
     [(_normal, (2, 3, 2))]),
    ("transpose", lambda a: a.transpose(0, 2), lambda a: a.swapaxes(0, 2),
     [(_normal, (2, 3, 4))]),
    ("permute", lambda a: a.permute(2, 0, 1), lambda a: a.transpose(2, 0, 1),
     [(_normal, (2, 3, 4))]),
    ("T", lambda a: a.T, lambda a: a.T, [(_normal, (2, 3))]),
    ("expand", lambda a: a.expand(4, 2, 3), lambda a: np.broadcast_to(a, (4, 2, 3)),
     [(_normal, (2, 1))]),
    ("getitem_slice", lambda a: a[1:, ::2], lambda a: a[1:, ::2],
     [(_normal, (3, 5))]),
    ("getitem_int_array_repeats", lambda a: a[np.array([0, 2, 0, 0])],
     lambda a: a[np.array([0, 2, 0, 0])], [(_normal, (3, 2))]),
    ("getitem_pairs", lambda a: a[np.arange(3), np.array([1, 0, 1])],
     lambda a: a[np.arange(3), np.array([1, 0, 1])], [(_normal, (3, 2))]),
    ("concatenate", lambda a, b: minires.concatenate([a, b, a], axis=1),
     lambda a, b: np.concatenate([a, b, a], axis=1),
     [(_normal, (2, 1)), (_normal, (2, 3))]),
    ("stack", lambda a, b: minires.stack([a, b], dim=1), lambda a, b: np.stack([a, b], axis=1),
     [(_normal, (2, 3)), (_normal, (2, 3))]),
    ("pad", lambda a: minires.pad(a, ((0, 0), (1, 2))), lambda a: np.pad(a, ((0, 0), (1, 2))),
     [(_normal, (2, 3))]),
    ("where", lambda a, b: minires.where(a > 0, a, b), lambda a, b: np.where(a > 0, a, b),
     [(_away_from_zero, (3, 4)), (_normal, (4,))]),
]


def _make_inputs(makers, seed=0):
    rng = np.random.default_rng(seed)
    return [np.asarray(maker(rng, shape), dtype=np.float64) for maker, shape in makers]


@pytest.mark.parametrize("name, fn, reference, makers", CASES, ids=[c[0] for c in CASES])
def test_forward_matches_numpy(name, fn, reference, makers):
    arrays = _make_inputs(makers)
    out = fn(*[minires.tensor(a) for a in arrays])
    np.testing.assert_allclose(out.numpy(), reference(*arrays), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name, fn, reference, makers", CASES, ids=[c[0] for c in CASES])
def test_backward_matches_numerical_gradient(name, fn, reference, makers):
    tensors = [minires.tensor(a, requires_grad=True) for a in _make_inputs(makers, seed=1)]
    gradcheck(fn, *tensors).assert_ok()


def test_float32_ops_stay_float32():
    x = minires.randn(3, 4, requires_grad=True)
    w = minires.randn(4, 2, requires_grad=True)
    y = ((x @ w).sigmoid() * 2 + 1).log().mean()
    assert y.dtype == np.float32
    y.backward()
    assert x.grad.dtype == np.float32 and w.grad.dtype == np.float32


def test_max_splits_gradient_between_ties():
    x = minires.tensor([[1.0, 3.0, 3.0]], requires_grad=True)
    x.max(axis=1).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0.0, 0.5, 0.5]])


def test_reduction_rejects_both_spellings_and_bad_axis():
    x = minires.ones(2, 3)
    with pytest.raises(TypeError, match="axis"):
        x.sum(axis=0, dim=0)
    with pytest.raises(ValueError, match="axis 2"):
        x.sum(axis=2)


def test_reshape_error_names_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 2\)"):
        minires.ones(2, 3).reshape(4, 2)


def test_comparisons_and_argmax_carry_no_gradient():
    x = minires.tensor([[0.5, -1.0, 2.0]], requires_grad=True)
    assert (x > 0).numpy().tolist() == [[True, False, True]]
    assert x.argmax(dim=1).numpy().tolist() == [2]
    assert not (x > 0).requires_grad


# ------------------------------------------------------------------------ property tests

shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)


@settings(max_examples=25, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_elementwise_ops_gradcheck_on_any_shape(shape, seed):
    rng = np.random.default_rng(seed)
    x = minires.tensor(rng.uniform(0.5, 2.0, size=shape), requires_grad=True)
    # scaled into tanh's linear range, so the gradient is not ~0 (where only noise compares)
    gradcheck(lambda t: (t.exp() * t.sqrt() / (t.log().abs() + 1) * 0.2).tanh(), x).assert_ok()


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_broadcast_binary_ops_gradcheck(data):
    shape = data.draw(shapes)
    # a second shape broadcastable to the first: drop leading axes, set some to 1
    other = list(shape[data.draw(st.integers(0, len(shape) - 1)):])
    other = [1 if data.draw(st.booleans()) else n for n in other]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    a = minires.tensor(rng.standard_normal(shape), requires_grad=True)
    b = minires.tensor(rng.uniform(0.5, 2.0, size=other), requires_grad=True)
    gradcheck(lambda x, y: x * y + x / y - y, a, b).assert_ok()


@settings(max_examples=25, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**16), keepdims=st.booleans())
def test_reductions_match_numpy_on_any_shape(shape, seed, keepdims):
    rng = np.random.default_rng(seed)
    data = rng.standard_normal(shape)
    axis = int(rng.integers(0, len(shape)))
    x = minires.tensor(data, requires_grad=True)
    for name in ("sum", "mean", "max", "min"):
        out = getattr(x, name)(axis=axis, keepdims=keepdims)
        np.testing.assert_allclose(out.numpy(), getattr(np, name)(data, axis=axis,
                                                                  keepdims=keepdims))
    gradcheck(lambda t: t.mean(axis=axis, keepdims=keepdims) * t.sum(axis=axis,
                                                                     keepdims=keepdims), x
              ).assert_ok()
