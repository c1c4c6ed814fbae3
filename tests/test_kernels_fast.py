"""Tests for minires.kernels.fast (equal to the teaching kernels) and minires.kernels.use.

* The fast convolution gives the teaching one's forward and gradients (float64, 1e-12) on
  random geometries, with forced small batch chunks, and with buffers reused across calls of
  different shapes (a stale buffer would show as a wrong result).
* ``use(fast=False)`` / ``MINIRES_KERNELS=simple`` switch every layer to the simple kernels,
  and a training run gives the same losses either way.
* ``use(im2col=..., ...)`` routes the layers through the given functions (the exercise stubs'
  signatures): the reference solutions give the built-in losses, a wrong kernel changes them,
  and a plain module attribute (``conv.im2col = f``) takes effect too.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minires
from minires import functional as F
from minires import nn
from minires.kernels import activation, conv, norm, pool, routing
from minires.kernels.fast import conv as fast_conv
from minires.kernels.fast import workspace

SOLUTIONS = Path(__file__).resolve().parent / "exercise_solutions"
ROOT = Path(__file__).resolve().parents[1]


def _assert_conv_equal(x, w, b, geometry, rtol=1e-12):
    y_fast = fast_conv.conv2d_forward(x, w, b, **geometry)
    y_simple = conv.conv2d_forward(x, w, b, **geometry)
    np.testing.assert_allclose(y_fast, y_simple, rtol=rtol, atol=1e-12)
    g = np.random.default_rng(1).standard_normal(y_simple.shape)
    for flags in ({}, {"need_input_grad": False, "need_bias_grad": False}):
        fast = fast_conv.conv2d_backward(g, x, w, **geometry, **flags)
        simple = conv.conv2d_backward(g, x, w, **geometry, **flags)
        for a, s in zip(fast, simple, strict=True):
            assert (a is None) == (s is None)
            if a is not None:
                assert a.shape == s.shape and a.dtype == s.dtype
                np.testing.assert_allclose(a, s, rtol=rtol, atol=1e-12)


# ----------------------------------------------------------------------------- fast == simple


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 3), c_in=st.integers(1, 4), c_out=st.integers(1, 4),
    h=st.integers(1, 9), w=st.integers(1, 9), kh=st.integers(1, 4), kw=st.integers(1, 4),
    sh=st.integers(1, 3), sw=st.integers(1, 3), ph=st.integers(0, 3), pw=st.integers(0, 3),
    dh=st.integers(1, 2), dw=st.integers(1, 2), bias=st.booleans(), seed=st.integers(0, 2**16),
)
def test_fast_conv_equals_simple_on_random_geometries(n, c_in, c_out, h, w, kh, kw, sh, sw, ph,
                                                      pw, dh, dw, bias, seed):
    if h + 2 * ph < dh * (kh - 1) + 1 or w + 2 * pw < dw * (kw - 1) + 1:
        return  # the kernel does not fit: an error in both (tested in test_kernels_conv.py)
    r = np.random.default_rng(seed)
    x = r.standard_normal((n, c_in, h, w))
    wt = r.standard_normal((c_out, c_in, kh, kw))
    b = r.standard_normal(c_out) if bias else None
    _assert_conv_equal(x, wt, b, {"stride": (sh, sw), "padding": (ph, pw),
                                  "dilation": (dh, dw)})


@pytest.mark.parametrize("shape, c_out, stride, padding", [
    ((4, 16, 16, 16), 16, 1, 1),  # ResNet stage 1, shrunk
    ((3, 16, 16, 16), 32, 2, 1),  # the stride-2 stage entry
    ((3, 16, 16, 16), 32, 2, 0),  # 1x1 projection shortcut (kernel 1 below)
])
def test_fast_conv_equals_simple_at_resnet_shapes(rng, shape, c_out, stride, padding):
    kernel = 3 if padding else 1
    x = rng.standard_normal(shape)
    w = rng.standard_normal((c_out, shape[1], kernel, kernel))
    _assert_conv_equal(x, w, None, {"stride": stride, "padding": padding})


def test_fast_conv_float32_stays_float32_and_close(rng):
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    y = fast_conv.conv2d_forward(x, w, None, 1, 1)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, conv.conv2d_forward(x, w, None, 1, 1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("images_per_chunk", [1, 2])
@pytest.mark.parametrize("stride", [1, 2])
def test_batch_chunking_gives_the_same_result(rng, monkeypatch, images_per_chunk, stride):
    """CPU batches are split into chunks of about CHUNK_BYTES of columns.  Force one image
    per chunk, and chunks of 2 images with a smaller last one (5 images)."""
    x = rng.standard_normal((5, 3, 5, 6))
    w = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    column_bytes = 3 * 3 * 27 * 8 if stride == 2 else 5 * 6 * 27 * 8  # one image, float64
    monkeypatch.setattr(fast_conv, "CHUNK_BYTES", images_per_chunk * column_bytes)
    assert len(fast_conv.batch_chunks(np, 5, column_bytes)) == [5, 3][images_per_chunk - 1]
    _assert_conv_equal(x, w, b, {"stride": stride, "padding": 1})


def test_reused_buffers_do_not_leak_between_calls(rng):
    """Calls of different batch sizes, paddings and shapes share the workspace; each result
    must still equal the simple kernel's (a stale border or row would show here)."""
    workspace.clear()
    w = rng.standard_normal((4, 3, 3, 3))
    for n, padding, size in [(3, 1, 6), (2, 1, 6), (3, 0, 6), (3, 2, 6), (1, 1, 8), (3, 1, 6)]:
        x = rng.standard_normal((n, 3, size, size)) * 10
        _assert_conv_equal(x, w, None, {"padding": padding})
    assert workspace.nbytes() > 0


def test_workspace_hands_back_the_same_buffer():
    workspace.clear()
    a = workspace.buffer("t", (4, 5), np.float32)
    assert workspace.buffer("t", (4, 5), np.float32) is a
    assert workspace.buffer("t", (4, 5), np.float64) is not a
    z = workspace.buffer("z", (3,), np.float32, zeros=True)
    assert not z.any()
    workspace.clear()
    assert workspace.nbytes() == 0


# ----------------------------------------------------------------------------- the switch


def _small_cnn():
    minires.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.Sigmoid(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))


def _train_losses(steps=3, dtype=np.float64):
    """Losses of a few SGD steps of a small CNN with every routed layer in it."""
    with minires.default_dtype(dtype):
        model = _small_cnn()
        r = np.random.default_rng(0)
        x = minires.tensor(r.standard_normal((4, 3, 8, 8)).astype(dtype))
        labels = r.integers(0, 3, size=4)
        opt = minires.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        losses = []
        for _ in range(steps):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), labels)
            loss.backward()
            opt.step()
            losses.append(float(loss.item()))
    return np.array(losses)


def test_use_fast_false_gives_the_same_training(monkeypatch):
    assert routing.fast_enabled()
    fast = _train_losses()
    with minires.kernels.use(fast=False) as switch:
        assert not routing.fast_enabled() and isinstance(switch, minires.kernels.use)
        simple = _train_losses()
    assert routing.fast_enabled()
    np.testing.assert_allclose(simple, fast, rtol=1e-12)
    assert not np.allclose(fast[0], fast[-1])  # it did train


def test_use_called_plainly_stays_until_undone():
    minires.kernels.use(fast=False)
    try:
        assert not minires.kernels.fast_enabled()
    finally:
        minires.kernels.use(fast=True)
    assert minires.kernels.fast_enabled()


def test_simple_path_really_runs_when_switched(monkeypatch):
    calls = []
    monkeypatch.setattr(fast_conv, "conv2d_forward",
                        lambda *a, **k: calls.append("fast") or conv.conv2d_forward(*a, **k))
    _train_losses(steps=1)
    assert "fast" in calls
    calls.clear()
    with minires.kernels.use(fast=False):
        _train_losses(steps=1)
    assert calls == []


def test_environment_variable_selects_the_simple_kernels():
    code = "import minires.kernels as k; print(k.fast_enabled())"
    for value, expected in (("simple", "False"), ("fast", "True"), ("", "True")):
        env = dict(os.environ, MINIRES_KERNELS=value)
        out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
        assert out.stdout.strip() == expected, out.stderr
    env = dict(os.environ, MINIRES_KERNELS="turbo")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "MINIRES_KERNELS must be 'fast' or 'simple'" in out.stderr


def test_use_rejects_unknown_names_and_non_functions():
    with pytest.raises(TypeError, match=r"unknown kernel\(s\) \['im2cool'\]"):
        minires.kernels.use(im2cool=print)
    with pytest.raises(TypeError, match="im2col must be a function"):
        minires.kernels.use(im2col=3)
    with pytest.raises(TypeError, match="fast must be True or False"):
        minires.kernels.use(fast="no")
    assert not any(routing.replaced(name) for name in routing.SEAMS)


# ----------------------------------------------------------------------------- student kernels


def _solution(name):
    spec = importlib.util.spec_from_file_location(f"solution_{name}", SOLUTIONS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _reference_kernels():
    """The exercises' correct solutions (loops), keyed by use()'s names."""
    return {
        "im2col": _solution("correct_im2col").im2col,
        "col2im": _solution("correct_col2im").col2im,
        "batch_norm_backward": _solution("correct_batchnorm_backward").batchnorm_backward,
        "max_pool2d_backward": _solution("correct_max_pool_backward").max_pool2d_backward,
        "sigmoid_backward": _solution("correct_sigmoid_backward").sigmoid_backward,
    }


def _counting(functions):
    calls = dict.fromkeys(functions, 0)

    def wrap(name, function):
        def counted(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return counted
    return {name: wrap(name, f) for name, f in functions.items()}, calls


def test_student_kernels_give_the_built_in_losses():
    built_in = _train_losses()
    kernels, calls = _counting(_reference_kernels())
    with minires.kernels.use(**kernels):
        routed = _train_losses()
    np.testing.assert_allclose(routed, built_in, rtol=1e-10)
    assert all(count > 0 for count in calls.values()), calls  # each one really ran
    assert not any(routing.replaced(name) for name in routing.SEAMS)  # undone on exit


def test_student_conv2d_backward_gives_the_built_in_losses():
    built_in = _train_losses()
    kernels, calls = _counting(
        {"conv2d_backward": _solution("correct_conv2d_backward").conv2d_backward})
    with minires.kernels.use(**kernels):
        routed = _train_losses()
    np.testing.assert_allclose(routed, built_in, rtol=1e-10)
    assert calls["conv2d_backward"] > 0


@pytest.mark.parametrize("name, wrong", [
    ("im2col", lambda x, kh, kw, stride, padding:
        routing.BUILTIN["im2col"](x, kh, kw, stride, padding) * 1.5),
    ("col2im", lambda cols, shape, kh, kw, stride, padding:
        routing.BUILTIN["col2im"](cols, shape, kh, kw, stride, padding) * 0),
    ("sigmoid_backward", lambda grad_y, y: grad_y * y),
    ("batch_norm_backward", lambda grad_y, x, gamma, eps:
        (grad_y, (grad_y * x).sum(axis=(0, 2, 3)), grad_y.sum(axis=(0, 2, 3)))),
    ("max_pool2d_backward", lambda grad_y, x, k, s, p:
        np.repeat(np.repeat(grad_y, k, axis=2), k, axis=3)),
])
def test_a_wrong_student_kernel_changes_the_training(name, wrong):
    built_in = _train_losses()
    with minires.kernels.use(**{name: wrong}):
        routed = _train_losses()
    assert routed[0] == pytest.approx(built_in[0], rel=1e-12) or name == "im2col"
    assert not np.allclose(routed, built_in, rtol=1e-6)


def test_a_plain_module_attribute_takes_effect(monkeypatch):
    built_in = _train_losses()
    calls = []

    def my_im2col(*args, **kwargs):
        calls.append(args[1:3])
        return routing.BUILTIN["im2col"](*args, **kwargs) * 2  # wrong on purpose
    monkeypatch.setattr(conv, "im2col", my_im2col)
    assert routing.replaced("im2col")
    routed = _train_losses()
    assert calls and not np.allclose(routed, built_in)
    monkeypatch.setattr(activation, "sigmoid_backward", lambda g, y: g * 0)
    assert not np.allclose(_train_losses(), routed)


def test_student_kernels_reject_what_their_signature_cannot_express():
    def student_im2col(x, kh, kw, stride, padding):
        return routing.BUILTIN["im2col"](x, kh, kw, stride, padding)
    x = np.zeros((1, 1, 6, 6))
    with minires.kernels.use(im2col=student_im2col):
        with pytest.raises(ValueError, match="one int stride"):
            conv.im2col(x, 3, 3, (1, 2), 1)
        with pytest.raises(ValueError, match="no dilation"):
            conv.im2col(x, 3, 3, 1, 1, 2)
    assert conv.im2col is routing.BUILTIN["im2col"]


def test_kernels_plugged_in_stay_in_their_modules_only_inside_use():
    before = (conv.im2col, norm.batch_norm_backward, pool.max_pool2d_backward)
    with pytest.raises(RuntimeError, match="inside"), minires.kernels.use(
            **_reference_kernels()):
        assert conv.im2col is not before[0]
        raise RuntimeError("inside")
    assert (conv.im2col, norm.batch_norm_backward, pool.max_pool2d_backward) == before


# ----------------------------------------------------------------------------- BatchNorm


@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (2, 16, 8, 8), (1, 2, 3, 1), (8, 5, 1, 1),
                                   (3, 4)])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_fast_batch_norm_equals_simple(rng, shape, affine, training):
    from minires.kernels.fast import norm as fast_norm
    x = rng.standard_normal(shape) * 3 + 5
    c = shape[1]
    gamma = rng.standard_normal(c) if affine else None
    beta = rng.standard_normal(c) if affine else None
    stats = [(rng.random(c), rng.random(c) + 0.5) for _ in range(2)]
    run_fast, run_simple = [a.copy() for a in stats[0]], [a.copy() for a in stats[0]]
    y_f, cache_f = fast_norm.batch_norm_forward(x, gamma, beta, *run_fast, training, 0.1)
    y_s, cache_s = norm.batch_norm_forward(x, gamma, beta, *run_simple, training, 0.1)
    np.testing.assert_allclose(y_f, y_s, rtol=1e-12, atol=1e-12)
    for a, b in zip(run_fast, run_simple, strict=True):  # running stats updated alike
        np.testing.assert_allclose(a, b, rtol=1e-12)
    g = rng.standard_normal(shape)
    for a, b in zip(fast_norm.batch_norm_backward(g, cache_f),
                    norm.batch_norm_backward(g, cache_s), strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_fast_batch_norm_float32_and_errors(rng):
    from minires.kernels.fast import norm as fast_norm
    x = (rng.standard_normal((4, 3, 6, 6)) * 2 + 100).astype(np.float32)
    gamma, beta = np.ones(3, np.float32), np.zeros(3, np.float32)
    y, cache = fast_norm.batch_norm_forward(x, gamma, beta, None, None, True)
    assert y.dtype == np.float32 and cache.inv_std.dtype == np.float32
    np.testing.assert_allclose(y, norm.batch_norm_forward(x, gamma, beta, None, None, True)[0],
                               rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        fast_norm.batch_norm_forward(np.zeros((1, 3, 1, 1)), None, None, None, None, True)
    with pytest.raises(ValueError, match="gamma has shape"):
        fast_norm.batch_norm_forward(x, np.ones(4, np.float32), None, None, None, True)
    with pytest.raises(ValueError, match="grad_y has shape"):
        fast_norm.batch_norm_backward(np.zeros((4, 3, 6, 5), np.float32), cache)
