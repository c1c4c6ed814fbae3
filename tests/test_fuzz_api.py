"""Fuzz the public API (``minires.functional``, ``minires.nn``) with random arguments.

Hypothesis draws shapes, dtypes, memory layouts (non-contiguous views), kernel sizes,
strides, paddings and dilations, valid and invalid alike.  The rule checked:

* a valid call returns the output shape of the formula in the docstring, and, when
  PyTorch is installed, the same shape and values as ``torch.nn.functional``;
* an invalid call raises ValueError, TypeError or RuntimeError whose message names the
  offending argument; never ZeroDivisionError, IndexError, AttributeError or a crash.

Derandomized and without an example database, so every run (and CI) draws the same cases;
``max_examples`` keeps the whole file to a few seconds.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minires
import minires.functional as F
import minires.nn as nn

try:  # optional: the cross-checks run where torch is installed
    import torch
    import torch.nn.functional as torch_F
except ImportError:  # pragma: no cover - torch is installed in CI
    torch = None

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
ALLOWED = (ValueError, TypeError, RuntimeError)
DTYPES = st.sampled_from(["float32", "float64", "int64"])
SMALL = st.integers(-1, 4)  # kernel sizes, strides, paddings: valid and invalid


def _array(draw, shape, dtype):
    """Random values of ``shape`` and ``dtype``, sometimes as a non-contiguous view."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    layout = draw(st.sampled_from(["contiguous", "strided", "transposed"]))
    if layout == "strided":  # every other element of a twice-as-wide array
        big = rng.standard_normal(shape[:-1] + (2 * shape[-1],)) if shape else rng.random(())
        values = big[..., ::2] if shape else big
    elif layout == "transposed" and len(shape) >= 2:  # same shape, last two axes swapped
        values = rng.standard_normal(shape[:-2] + shape[::-1][:2]).swapaxes(-1, -2)
    else:
        values = rng.standard_normal(shape)
    if dtype == "int64":
        values = np.round(values * 3)
    return values.astype(dtype, copy=False) if values.dtype != dtype else values


def _expect_failure(call, *names):
    """``call()`` must raise an allowed error naming one of ``names``."""
    with pytest.raises(ALLOWED) as info:
        call()
    message = str(info.value).lower()
    assert any(name.lower() in message for name in names), (
        f"{type(info.value).__name__}: {info.value!r} names none of {names}")


def _out(size, kernel, stride, padding, dilation=1):
    """The output size formula of conv and pooling along one axis (None: too small)."""
    span = dilation * (kernel - 1) + 1
    return (size + 2 * padding - span) // stride + 1 if size + 2 * padding >= span else None


def _torch_values(fn, *arrays):
    with torch.no_grad():
        return fn(*[torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]).numpy()


# ---------------------------------------------------------------------------- conv2d


@st.composite
def conv_cases(draw):
    n, c_in, c_out = draw(st.integers(0, 2)), draw(st.integers(0, 3)), draw(st.integers(0, 3))
    h, w = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    kernel, stride, padding = draw(SMALL), draw(SMALL), draw(SMALL)
    dilation = draw(st.integers(0, 3))
    x_dtype, w_dtype = draw(DTYPES), draw(DTYPES)
    x = _array(draw, (n, c_in, h, w), x_dtype)
    weight = _array(draw, (c_out, c_in, max(kernel, 0), max(kernel, 0)), w_dtype)
    bias = _array(draw, (c_out,), w_dtype) if draw(st.booleans()) else None
    return x, weight, bias, kernel, stride, padding, dilation


@FUZZ
@given(conv_cases())
def test_conv2d(case):
    x, weight, bias, kernel, stride, padding, dilation = case
    call = lambda: F.conv2d(minires.tensor(x), minires.tensor(weight),  # noqa: E731
                            None if bias is None else minires.tensor(bias),
                            stride, padding, dilation)
    problems = []
    if x.dtype.kind != "f" or x.dtype != weight.dtype:
        problems.append("dtype")
    if stride < 1:
        problems.append("stride")
    if padding < 0:
        problems.append("padding")
    if dilation < 1:
        problems.append("dilation")
    if kernel < 1:
        problems += ["kernel", "weight"]
    if weight.shape[0] == 0:
        problems += ["output channels", "out_channels"]
    if not problems and _out(x.shape[2], kernel, stride, padding, dilation) is None:
        problems += ["kernel", "input"]
    if not problems and _out(x.shape[3], kernel, stride, padding, dilation) is None:
        problems += ["kernel", "input"]
    if problems:
        _expect_failure(call, *problems)
        return
    y = call()
    oh = _out(x.shape[2], kernel, stride, padding, dilation)
    ow = _out(x.shape[3], kernel, stride, padding, dilation)
    assert y.shape == (x.shape[0], weight.shape[0], oh, ow)
    assert y.dtype == x.dtype
    if torch is not None and x.shape[1] > 0:  # torch drops C_out for C_in = 0
        expected = _torch_values(
            lambda a, b, *c: torch_F.conv2d(a, b, c[0] if c else None, stride, padding,
                                            dilation), x, weight, *([] if bias is None else [bias]))
        tol = 1e-4 if x.dtype == np.float32 else 1e-10
        np.testing.assert_allclose(y.numpy(), expected, rtol=tol, atol=tol)
    elif x.shape[1] == 0:  # no input channels: the output is the bias
        expected = 0.0 if bias is None else bias.reshape(1, -1, 1, 1)
        np.testing.assert_allclose(y.numpy(), np.broadcast_to(expected, y.shape))


# ---------------------------------------------------------------------------- pooling


@st.composite
def pool_cases(draw):
    n, c = draw(st.integers(0, 2)), draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    kernel, padding = draw(SMALL), draw(SMALL)
    stride = draw(st.one_of(st.none(), SMALL))
    dtype = draw(st.sampled_from(["float32", "float64", "int64"]))
    ndim = draw(st.sampled_from([4, 4, 4, 3]))
    shape = (n, c, h, w) if ndim == 4 else (c, h, w)
    return _array(draw, shape, dtype), kernel, stride, padding, draw(st.booleans())


@FUZZ
@given(pool_cases(), st.sampled_from(["max", "avg"]))
def test_pooling(case, kind):
    x, kernel, stride, padding, count_include_pad = case
    if kind == "max":
        call = lambda: F.max_pool2d(minires.tensor(x), kernel, stride, padding)  # noqa: E731
    else:
        call = lambda: F.avg_pool2d(minires.tensor(x), kernel, stride, padding,  # noqa: E731
                                    count_include_pad)
    s = kernel if stride is None else stride
    problems = []
    if x.ndim != 4:
        problems += ["4-d", "(n, c, h, w)"]
    if kernel < 1:
        problems.append("kernel")
    if stride is not None and stride < 1:
        problems.append("stride")
    if padding < 0:
        problems.append("padding")
    if kernel >= 1 and 2 * padding > kernel:
        problems.append("padding")
    if x.dtype.kind != "f":
        problems += ["floating", "dtype"]
    if not problems and None in (_out(x.shape[2], kernel, s, padding),
                                 _out(x.shape[3], kernel, s, padding)):
        problems += ["kernel", "input", "output"]
    if problems:
        _expect_failure(call, *problems)
        return
    y = call()
    assert y.shape == (x.shape[0], x.shape[1], _out(x.shape[2], kernel, s, padding),
                       _out(x.shape[3], kernel, s, padding))
    if torch is not None:
        if kind == "max":
            fn = lambda a: torch_F.max_pool2d(a, kernel, s, padding)  # noqa: E731
        else:
            fn = lambda a: torch_F.avg_pool2d(a, kernel, s, padding,  # noqa: E731
                                              count_include_pad=count_include_pad)
        tol = 1e-5 if x.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(y.numpy(), _torch_values(fn, x), rtol=tol, atol=tol)


# ---------------------------------------------------------------------------- linear, batch norm


@FUZZ
@given(st.data())
def test_linear_layer(data):
    in_features = data.draw(st.integers(-1, 4), "in_features")
    out_features = data.draw(st.integers(-1, 4), "out_features")
    batch = data.draw(st.lists(st.integers(0, 3), max_size=2), "batch shape")
    features = data.draw(st.integers(0, 4), "input features")
    dtype = data.draw(DTYPES, "input dtype")
    if in_features < 0 or out_features < 0:
        name = "in_features" if in_features < 0 else "out_features"
        _expect_failure(lambda: nn.Linear(in_features, out_features), name)
        return
    layer = nn.Linear(in_features, out_features, bias=data.draw(st.booleans(), "bias"))
    x = minires.tensor(_array(data.draw, tuple(batch) + (features,), dtype))
    if features != in_features:
        _expect_failure(lambda: layer(x), "features")
    elif dtype != "float32":
        _expect_failure(lambda: layer(x), "dtype")
    else:
        y = layer(x)
        assert y.shape == tuple(batch) + (out_features,)
        if torch is not None:
            args = [x.numpy(), layer.weight.numpy()]
            args += [] if layer.bias is None else [layer.bias.numpy()]
            np.testing.assert_allclose(y.numpy(), _torch_values(torch_F.linear, *args),
                                       rtol=1e-5, atol=1e-5)


@FUZZ
@given(st.data())
def test_batch_norm_layer(data):
    two_d = data.draw(st.booleans(), "2-D")
    num_features = data.draw(st.integers(-1, 3), "num_features")
    if num_features < 0:
        _expect_failure(lambda: nn.BatchNorm2d(num_features), "num_features")
        return
    layer = (nn.BatchNorm2d if two_d else nn.BatchNorm1d)(
        num_features, affine=data.draw(st.booleans(), "affine"))
    training = data.draw(st.booleans(), "training")
    layer.train(training)
    n, c = data.draw(st.integers(0, 3), "N"), data.draw(st.integers(0, 3), "C")
    shape = (n, c) + ((data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))) if two_d
                      else ())
    dtype = data.draw(DTYPES, "dtype")
    x = minires.tensor(_array(data.draw, shape, dtype))
    values_per_channel = n * int(np.prod(shape[2:], dtype=int))
    if c != num_features:
        _expect_failure(lambda: layer(x), "channels")
    elif dtype == "int64" or (dtype == "float64" and (layer.affine or not training)):
        # float32 weights, or float32 running statistics used to normalise (eval mode)
        _expect_failure(lambda: layer(x), "dtype", "floating")
    elif c == 0:
        _expect_failure(lambda: layer(x), "channels", "num_features")
    elif training and values_per_channel <= 1:
        _expect_failure(lambda: layer(x), "value per channel")
    else:
        y = layer(x)
        assert y.shape == shape and y.dtype == x.dtype
        if torch is not None:  # (torch refuses float32 running statistics for float64 x)
            theirs = (torch.nn.BatchNorm2d if two_d else torch.nn.BatchNorm1d)(
                num_features, affine=layer.affine,
                dtype=getattr(torch, dtype)).train(training)
            np.testing.assert_allclose(y.numpy(), _torch_values(theirs, x.numpy()),
                                       rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------- layer constructors

ARGUMENT = st.one_of(st.integers(-2, 4), st.floats(-1, 3, allow_nan=False), st.booleans(),
                     st.tuples(st.integers(-1, 3), st.integers(-1, 3)),
                     st.tuples(st.integers(1, 3)), st.just("3"), st.none())


@FUZZ
@given(st.data())
def test_conv2d_layer_constructor(data):
    names = ["in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation"]
    values = [data.draw(ARGUMENT, name) for name in names]
    try:
        layer = nn.Conv2d(*values)
    except ALLOWED as error:
        assert any(name in str(error) for name in names), repr(error)
        return
    # it built: every argument must have been a valid one
    assert layer.in_channels >= 0 and layer.out_channels >= 0
    assert min(layer.kernel_size + layer.stride + layer.dilation) >= 1
    assert min(layer.padding) >= 0
    assert layer.weight.shape == (layer.out_channels, layer.in_channels, *layer.kernel_size)


def _valid_pool_arguments(kernel, stride, padding) -> bool:
    """Whether pooling a 6 x 6 image with these arguments is well defined."""
    def pair(value):
        ok = isinstance(value, int) and not isinstance(value, bool)
        if isinstance(value, tuple) and len(value) == 2:
            return value if all(isinstance(v, int) for v in value) else None
        return (value, value) if ok else None
    k, s, p = pair(kernel), pair(kernel if stride is None else stride), pair(padding)
    if None in (k, s, p) or min(k) < 1 or min(s) < 1 or min(p) < 0:
        return False
    return all(2 * p[i] <= k[i] and _out(6, k[i], s[i], p[i]) for i in range(2))


@FUZZ
@given(st.data())
def test_pool_and_dropout_layer_constructors(data):
    kernel, stride, padding = (data.draw(ARGUMENT, n) for n in ("kernel", "stride", "padding"))
    x = minires.randn(1, 2, 6, 6)
    for cls in (nn.MaxPool2d, nn.AvgPool2d):
        try:
            y = cls(kernel, stride, padding)(x)
        except ALLOWED as error:
            assert any(name in str(error) for name in ("kernel", "stride", "padding")), \
                repr(error)
        else:
            assert y.ndim == 4 and y.shape[:2] == (1, 2)
            assert _valid_pool_arguments(kernel, stride, padding), (kernel, stride, padding)
    p = data.draw(st.floats(-1, 2, allow_nan=False), "p")
    if 0 <= p < 1:
        assert nn.Dropout(p)(x).shape == x.shape
    else:
        _expect_failure(lambda: nn.Dropout(p), "probability")


# ---------------------------------------------------------------------------- losses, misc


@FUZZ
@given(st.data())
def test_cross_entropy(data):
    n, k = data.draw(st.integers(0, 4), "N"), data.draw(st.integers(1, 4), "K")
    label_dtype = data.draw(st.sampled_from(["int64", "int32", "float32"]), "label dtype")
    labels = np.asarray(data.draw(st.lists(st.integers(-1, k), min_size=n, max_size=n)),
                        dtype=label_dtype)
    logits = minires.tensor(_array(data.draw, (n, k), "float64"))
    smoothing = data.draw(st.sampled_from([0.0, 0.1, 1.0, -0.1, 1.5]), "label_smoothing")
    call = lambda: F.cross_entropy(logits, labels, label_smoothing=smoothing)  # noqa: E731
    if label_dtype == "float32":
        _expect_failure(call, "labels")
    elif n == 0:
        _expect_failure(call, "empty batch")
    elif labels.min() < 0 or labels.max() >= k:
        _expect_failure(call, "labels")
    elif not 0 <= smoothing <= 1:
        _expect_failure(call, "label_smoothing")
    else:
        loss = call()
        assert loss.shape == ()
        if torch is not None:
            expected = torch_F.cross_entropy(torch.from_numpy(logits.numpy()),
                                             torch.from_numpy(labels.astype(np.int64)),
                                             label_smoothing=smoothing)
            assert loss.item() == pytest.approx(expected.item(), rel=1e-10, abs=1e-12)


@FUZZ
@given(st.data())
def test_mean_and_global_pooling_of_any_shape(data):
    shape = tuple(data.draw(st.lists(st.integers(0, 3), max_size=4), "shape"))
    x = minires.tensor(_array(data.draw, shape, data.draw(DTYPES, "dtype")))
    axis = data.draw(st.one_of(st.none(), st.integers(-5, 4)), "axis")
    if axis is not None and not -max(len(shape), 1) <= axis < max(len(shape), 1):
        _expect_failure(lambda: x.mean(axis=axis), "axis")
    else:
        y = x.mean(axis=axis)
        expected_shape = () if axis is None or not shape else (
            shape[:axis % len(shape)] + shape[axis % len(shape) + 1:])
        assert y.shape == expected_shape
        assert backend_is_float(y.dtype)
        if x.size and (axis is None or not shape or shape[axis]):
            reference = x.numpy().mean(axis=axis if shape else None)
            np.testing.assert_allclose(y.numpy(), reference, rtol=1e-5)
        elif y.size:
            assert np.isnan(y.numpy()).all()  # the mean of nothing
    problems = [] if len(shape) == 4 else ["(n, c, h, w)"]
    problems += [] if x.dtype.kind == "f" else ["floating"]
    problems += ["empty in h or w"] if len(shape) == 4 and 0 in shape[2:] else []
    if problems:
        _expect_failure(lambda: F.global_avg_pool2d(x), *problems)
    else:
        assert F.global_avg_pool2d(x).shape == shape[:2]


def backend_is_float(dtype) -> bool:
    return np.dtype(dtype).kind == "f"


# ---------------------------------------------------------------------------- pairs, functional


@FUZZ
@given(st.data())
def test_conv2d_with_pair_arguments(data):
    pair = st.tuples(st.integers(-1, 3), st.integers(-1, 3))
    kernel, stride, padding, dilation = (data.draw(pair, n) for n in
                                         ("kernel", "stride", "padding", "dilation"))
    h, w = data.draw(st.integers(1, 6), "H"), data.draw(st.integers(1, 6), "W")
    x = minires.tensor(_array(data.draw, (1, 2, h, w), "float64"))
    weight = minires.tensor(_array(data.draw, (3, 2, max(kernel[0], 0), max(kernel[1], 0)),
                                   "float64"))
    call = lambda: F.conv2d(x, weight, None, stride, padding, dilation)  # noqa: E731
    problems = [name for name, value, low in (("stride", stride, 1), ("padding", padding, 0),
                                              ("dilation", dilation, 1)) if min(value) < low]
    if min(kernel) < 1:
        problems += ["kernel", "weight"]
    sizes = [None] * 2 if problems else [
        _out(n, kernel[i], stride[i], padding[i], dilation[i]) for i, n in enumerate((h, w))]
    if not problems and None in sizes:
        problems += ["kernel", "input"]
    if problems:
        _expect_failure(call, *problems)
        return
    y = call()
    assert y.shape == (1, 3, *sizes)
    if torch is not None:
        expected = _torch_values(lambda a, b: torch_F.conv2d(a, b, None, stride, padding,
                                                             dilation), x.numpy(), weight.numpy())
        np.testing.assert_allclose(y.numpy(), expected, rtol=1e-10, atol=1e-10)


@FUZZ
@given(st.data())
def test_functional_batch_norm_arguments(data):
    c = data.draw(st.integers(1, 3), "C")
    x = minires.tensor(_array(data.draw, (4, c, 2, 2), "float32"))
    stat_size = data.draw(st.sampled_from([c, c + 1]), "running size")
    running_mean = np.zeros(stat_size, dtype=data.draw(DTYPES, "running dtype"))
    running_var = np.ones(stat_size, dtype=running_mean.dtype)
    affine = data.draw(st.sampled_from(["both", "weight only", "none"]), "affine")
    weight = minires.ones(c) if affine != "none" else None
    bias = minires.zeros(c) if affine == "both" else None
    training = data.draw(st.booleans(), "training")
    call = lambda: F.batch_norm(x, running_mean, running_var, weight, bias,  # noqa: E731
                                training=training)
    if affine == "weight only":
        _expect_failure(call, "weight and bias")
    elif running_mean.dtype.kind != "f" or (running_mean.dtype != np.float32 and not training):
        _expect_failure(call, "running_mean")
    elif stat_size != c:
        _expect_failure(call, "running_mean", "running_var")
    else:
        assert call().shape == x.shape


@FUZZ
@given(st.data())
def test_dropout_and_adaptive_pool(data):
    x = minires.randn(2, 3, 4, 4)
    p = data.draw(st.floats(-0.5, 1.5, allow_nan=False), "p")
    training = data.draw(st.booleans(), "training")
    if 0 <= p < 1:
        y = F.dropout(x, p, training)
        assert y.shape == x.shape
        if not training or p == 0:
            assert y is x
    else:
        _expect_failure(lambda: F.dropout(x, p, training), "probability")
    size = data.draw(st.sampled_from([1, (1, 1), 2, (2, 1), (1,)]), "output_size")
    if size in (1, (1, 1), (1,)):
        assert F.adaptive_avg_pool2d(x, size).shape == (2, 3, 1, 1)
    else:
        _expect_failure(lambda: F.adaptive_avg_pool2d(x, size), "output_size")


@FUZZ
@given(st.data())
def test_linear_functional_shapes(data):
    x_shape = tuple(data.draw(st.lists(st.integers(0, 3), min_size=0, max_size=3), "x"))
    w_shape = tuple(data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=3), "weight"))
    b_shape = data.draw(st.one_of(st.none(), st.tuples(st.integers(0, 3))), "bias")
    x = minires.tensor(_array(data.draw, x_shape, "float64"))
    weight = minires.tensor(_array(data.draw, w_shape, "float64"))
    bias = None if b_shape is None else minires.tensor(_array(data.draw, b_shape, "float64"))
    call = lambda: F.linear(x, weight, bias)  # noqa: E731
    if len(w_shape) != 2:
        _expect_failure(call, "weight")
    elif len(x_shape) < 1 or x_shape[-1] != w_shape[1]:
        _expect_failure(call, "in_features", "x of shape")
    elif b_shape is not None and b_shape != (w_shape[0],):
        _expect_failure(call, "bias")
    else:
        y = call()
        assert y.shape == x_shape[:-1] + (w_shape[0],)
        if torch is not None:
            args = [x.numpy(), weight.numpy()] + ([] if bias is None else [bias.numpy()])
            np.testing.assert_allclose(y.numpy(), _torch_values(torch_F.linear, *args),
                                       rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------- shape ops


@FUZZ
@given(st.data())
def test_shape_ops_name_bad_dimensions(data):
    shape = tuple(data.draw(st.lists(st.integers(1, 3), min_size=0, max_size=4), "shape"))
    x = minires.tensor(_array(data.draw, shape, "float32"))
    ndim = max(len(shape), 1)
    dim = data.draw(st.integers(-5, 5), "dim")
    other = data.draw(st.integers(-5, 5), "other dim")
    ok = -ndim <= dim < ndim
    both_ok = ok and -ndim <= other < ndim
    # (name, our call, torch's on a tensor, valid, names an error must mention)
    checks = [
        ("softmax", lambda: x.softmax(axis=dim), lambda t: t.softmax(dim), ok, ("dim",)),
        ("log_softmax", lambda: x.log_softmax(dim=dim), lambda t: t.log_softmax(dim), ok,
         ("dim",)),
        ("flatten", lambda: x.flatten(dim), lambda t: t.flatten(dim), ok, ("dim",)),
        ("transpose", lambda: x.transpose(dim, other), lambda t: t.transpose(dim, other),
         both_ok, ("dim",)),
        ("cat", lambda: minires.cat([x, x], dim=dim), lambda t: torch.cat([t, t], dim=dim),
         ok and len(shape) > 0, ("dim",)),
        ("stack", lambda: minires.stack([x, x], dim=dim),
         lambda t: torch.stack([t, t], dim=dim), -len(shape) - 1 <= dim <= len(shape),
         ("axis", "dim")),
        ("sum", lambda: x.sum(axis=dim), lambda t: t.sum(dim), ok, ("axis",)),
    ]
    for name, call, torch_call, valid, names in checks:
        if not valid:
            _expect_failure(call, *names)
            continue
        y = call()
        if torch is not None:
            expected = torch_call(torch.from_numpy(x.numpy()))
            assert y.shape == tuple(expected.shape), name
            np.testing.assert_allclose(y.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6,
                                       err_msg=name)


@FUZZ
@given(st.data())
def test_flatten_and_adaptive_pool_layers(data):
    x = minires.randn(2, 3, 2, 2)
    start, end = data.draw(st.integers(-6, 5), "start_dim"), data.draw(st.integers(-6, 5), "end")
    valid = -4 <= start < 4 and -4 <= end < 4 and start % 4 <= end % 4
    if valid:
        expected = torch.from_numpy(x.numpy()).flatten(start, end).shape if torch else None
        y = nn.Flatten(start, end)(x)
        assert expected is None or y.shape == tuple(expected)
    else:
        _expect_failure(lambda: nn.Flatten(start, end)(x), "dim")
    size = data.draw(ARGUMENT, "output_size")
    try:
        layer = nn.AdaptiveAvgPool2d(size)
    except ALLOWED as error:
        assert "output_size" in str(error), repr(error)
    else:
        assert layer(x).shape == (2, 3, 1, 1)
