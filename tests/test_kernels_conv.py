"""Tests for minires.kernels.conv: loop reference, adjointness, gradchecks, PyTorch, errors.

* Forward against ``conv2d_naive`` (explicit loops) and against PyTorch (float64, rel 1e-10).
* ``im2col`` against its documented layout written out with loops, and ``col2im`` as its
  adjoint: ``<im2col(x), c> == <x, col2im(c)>`` for random x and c.
* Backward by central differences (minires.gradcheck, float64, random upstream gradient,
  tolerance 1e-7: a convolution is linear in each input, so a correct backward gives
  ~1e-10) and against torch autograd (rel 1e-10).
* Every convolution test runs twice: on the teaching kernels (``conv.py``) and on the fast
  twins (``fast/conv.py``: both grad_x paths, stride 1 as a convolution of grad_out, otherwise
  col2im).  ``test_kernels_fast.py`` compares the two directly.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minires.kernels.conv as conv_module
import minires.kernels.fast.conv as fast_conv_module
from minires.gradcheck import check_array_gradients
from minires.kernels.conv import (
    col2im,
    conv2d_backward,
    conv2d_forward,
    conv2d_naive,
    conv_output_size,
    im2col,
    weight_to_matrix,
)

GRADCHECK_TOL = 1e-7


@pytest.fixture(autouse=True, params=["simple", "fast"])
def kernels(request, monkeypatch):
    """Run each test with this file's conv2d_forward/backward bound to one implementation."""
    module = {"simple": conv_module, "fast": fast_conv_module}[request.param]
    for name in ("conv2d_forward", "conv2d_backward"):
        monkeypatch.setitem(globals(), name, getattr(module, name))
    return request.param
TORCH_RTOL = 1e-10

# (x shape, C_out, kernel, stride, padding, dilation)
CASES = [
    ((2, 3, 5, 5), 4, 3, 1, 1, 1),  # 3x3 "same", the ResNet block conv
    ((1, 1, 7, 5), 2, 3, 2, 1, 1),  # stride 2, batch 1, one channel, non-square, odd
    ((2, 2, 6, 9), 3, 1, 1, 0, 1),  # 1x1
    ((1, 2, 4, 6), 2, 1, 2, 0, 1),  # 1x1 stride 2 (a projection shortcut)
    ((2, 2, 9, 8), 3, 7, 1, 3, 1),  # 7x7 padding 3
    ((1, 3, 11, 9), 2, 7, 2, 3, 1),  # 7x7 stride 2 padding 3 (ImageNet stem)
    ((2, 2, 4, 5), 2, 3, 1, 3, 1),  # padding 3 > K-1: stride 1 but the col2im path
    ((2, 2, 9, 9), 3, 3, 1, 2, 2),  # dilation 2
    ((1, 2, 9, 10), 2, 3, 2, 1, 2),  # dilation 2 + stride 2
    ((1, 2, 7, 8), 3, (3, 1), (2, 1), (1, 0), (1, 2)),  # (h, w) pairs everywhere
    ((2, 1, 3, 3), 1, 3, 1, 0, 1),  # kernel as large as the input: 1x1 output
]
# Wider layers: too many parameters for a quick gradcheck, so forward/torch checks only.
WIDE_CASES = [
    ((1, 64, 4, 4), 8, 3, 1, 1, 1),  # 64 input channels
    ((2, 5, 5, 3), 64, 3, 2, 1, 1),  # 64 output channels
    ((1, 16, 6, 6), 16, 3, 1, 1, 1),
]


def _ids(cases):
    return [f"x{s}-o{o}-k{k}-s{st}-p{p}-d{d}" for s, o, k, st, p, d in cases]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _make(rng, case, dtype=np.float64):
    x_shape, c_out, kernel, _, _, _ = case
    kh, kw = _pair(kernel)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((c_out, x_shape[1], kh, kw)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    return x, w, b


def _geometry(case):
    return {"stride": case[3], "padding": case[4], "dilation": case[5]}


# ----------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("args, expected", [
    ((32, 3, 1, 1), 32),  # (32 + 2 - 2 - 1) // 1 + 1
    ((32, 3, 2, 1), 16),  # (32 + 2 - 2 - 1) // 2 + 1 = 15 + 1
    ((7, 7, 2, 3), 4),  # (7 + 6 - 6 - 1) // 2 + 1
    ((5, 3, 1, 0, 2), 1),  # dilated span 5 fills the input exactly
    ((9, 1, 2, 0), 5),
    ((4, 3, 3, 0), 1),
])
def test_conv_output_size(args, expected):
    assert conv_output_size(*args) == expected


def test_conv_output_size_names_sizes_when_kernel_too_large():
    with pytest.raises(ValueError, match=r"size 7 .*padded input of size 6 \(4 \+ 2\*1\)"):
        conv_output_size(4, 7, 1, 1)
    with pytest.raises(ValueError, match="span 5 with dilation 2"):
        conv_output_size(4, 3, 1, 0, 2)


# ----------------------------------------------------------------------------- im2col / col2im


def test_im2col_layout_matches_docstring(rng):
    """cols[(n*OH + oh)*OW + ow, (i*KW + j)*C + c] = x_pad[n, c, oh*sh + i*dh, ow*sw + j*dw]."""
    n, c, h, w = 2, 3, 6, 7
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (2, 3), (2, 1), (1, 2), (2, 1)
    x = rng.standard_normal((n, c, h, w))
    cols = im2col(x, kh, kw, (sh, sw), (ph, pw), (dh, dw))
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh_n = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow_n = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    assert cols.shape == (n * oh_n * ow_n, kh * kw * c)
    for b in range(n):
        for oh in range(oh_n):
            for ow in range(ow_n):
                for i in range(kh):
                    for j in range(kw):
                        for ch in range(c):
                            row, col = (b * oh_n + oh) * ow_n + ow, (i * kw + j) * c + ch
                            pixel = x_pad[b, ch, oh * sh + i * dh, ow * sw + j * dw]
                            assert cols[row, col] == pixel


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_col2im_is_the_adjoint_of_im2col(rng, case):
    x, w, _ = _make(rng, case)
    kh, kw = w.shape[2:]
    geometry = _geometry(case)
    cols = im2col(x, kh, kw, **geometry)
    c = rng.standard_normal(cols.shape)
    back = col2im(c, x.shape, kh, kw, **geometry)
    assert back.shape == x.shape
    np.testing.assert_allclose(np.vdot(cols, c), np.vdot(x, back), rtol=1e-12)


def test_col2im_sums_overlapping_copies():
    """A 3x3 'same' im2col of ones copies each pixel once per window covering it, so col2im
    of all-ones columns counts the windows: 4 in a corner, 6 on an edge, 9 inside."""
    counts = col2im(np.ones((16, 9)), (1, 1, 4, 4), 3, 3, 1, 1)[0, 0]
    expected = np.array([[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]])
    np.testing.assert_array_equal(counts, expected)


# ----------------------------------------------------------------------------- forward


@pytest.mark.parametrize("case", CASES + WIDE_CASES, ids=_ids(CASES + WIDE_CASES))
def test_forward_matches_naive_loops(rng, case):
    x, w, b = _make(rng, case)
    y = conv2d_forward(x, w, b, **_geometry(case))
    np.testing.assert_allclose(y, conv2d_naive(x, w, b, **_geometry(case)), rtol=1e-12,
                               atol=1e-12)
    # The documented matrix form gives the same numbers.
    kh, kw = w.shape[2:]
    rows = im2col(x, kh, kw, **_geometry(case)) @ weight_to_matrix(w).T + b
    np.testing.assert_allclose(rows.reshape(y.shape[0], y.shape[2], y.shape[3], -1),
                               y.transpose(0, 2, 3, 1), rtol=1e-12, atol=1e-12)


def test_naive_reference_on_a_hand_computed_example():
    # 1 image, 1 channel 3x3, a 2x2 kernel of ones: each output sums a 2x2 block.
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    w = np.ones((1, 1, 2, 2))
    expected = np.array([[0 + 1 + 3 + 4, 1 + 2 + 4 + 5], [3 + 4 + 6 + 7, 4 + 5 + 7 + 8]])
    np.testing.assert_array_equal(conv2d_naive(x, w)[0, 0], expected)
    np.testing.assert_allclose(conv2d_forward(x, w)[0, 0], expected)
    # No kernel flip (cross-correlation, like PyTorch): a one-hot kernel picks one tap.
    w = np.zeros((1, 1, 2, 2))
    w[0, 0, 0, 1] = 1.0
    np.testing.assert_array_equal(conv2d_forward(x, w)[0, 0], [[1, 2], [4, 5]])


def test_float32_stays_float32(rng):
    case = CASES[0]
    x, w, b = _make(rng, case)
    x32, w32, b32 = (a.astype(np.float32) for a in (x, w, b))
    y = conv2d_forward(x32, w32, b32, **_geometry(case))
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, conv2d_forward(x, w, b, **_geometry(case)), rtol=1e-4,
                               atol=1e-4)
    grads = conv2d_backward(np.ones_like(y), x32, w32, **_geometry(case))
    assert all(g.dtype == np.float32 for g in grads)


# ----------------------------------------------------------------------------- backward


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_backward_gradcheck(rng, case):
    x, w, b = _make(rng, case)
    geometry = _geometry(case)
    report = check_array_gradients(
        lambda x, w, b: conv2d_forward(x, w, b, **geometry),
        lambda g, x, w, b: conv2d_backward(g, x, w, **geometry),
        [x, w, b],
        tolerance=GRADCHECK_TOL,
        names=["x", "weight", "bias"],
    )
    report.assert_ok()


def test_backward_skips_unneeded_gradients(rng):
    case = CASES[0]
    x, w, b = _make(rng, case)
    g = rng.standard_normal(conv2d_forward(x, w, b, **_geometry(case)).shape)
    grad_x, grad_w, grad_b = conv2d_backward(g, x, w, **_geometry(case))
    none_x, grad_w2, none_b = conv2d_backward(g, x, w, **_geometry(case),
                                              need_input_grad=False, need_bias_grad=False)
    assert none_x is None and none_b is None
    np.testing.assert_allclose(grad_w2, grad_w, rtol=1e-12)


# ----------------------------------------------------------------------------- PyTorch


@pytest.mark.torch
@pytest.mark.parametrize("case", CASES + WIDE_CASES, ids=_ids(CASES + WIDE_CASES))
def test_matches_torch_forward_and_backward(torch, rng, case):
    x, w, b = _make(rng, case)
    geometry = _geometry(case)
    y = conv2d_forward(x, w, b, **geometry)
    g = rng.standard_normal(y.shape)
    grad_x, grad_w, grad_b = conv2d_backward(g, x, w, **geometry)

    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = torch.nn.functional.conv2d(xt, wt, bt, **geometry)
    yt.backward(torch.tensor(g))
    for ours, theirs in [(y, yt), (grad_x, xt.grad), (grad_w, wt.grad), (grad_b, bt.grad)]:
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=TORCH_RTOL, atol=1e-12)


# ----------------------------------------------------------------------------- property test


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 2), c_in=st.integers(1, 3), c_out=st.integers(1, 3),
    h=st.integers(1, 7), w=st.integers(1, 7), kh=st.integers(1, 4), kw=st.integers(1, 4),
    sh=st.integers(1, 3), sw=st.integers(1, 3), ph=st.integers(0, 3), pw=st.integers(0, 3),
    dh=st.integers(1, 2), dw=st.integers(1, 2), seed=st.integers(0, 2**16),
)
def test_random_geometries(n, c_in, c_out, h, w, kh, kw, sh, sw, ph, pw, dh, dw, seed):
    """Forward vs loops and im2col/col2im adjointness wherever the kernel fits."""
    if h + 2 * ph < dh * (kh - 1) + 1 or w + 2 * pw < dw * (kw - 1) + 1:
        return  # kernel larger than the padded input: an error, tested below
    r = np.random.default_rng(seed)
    x = r.standard_normal((n, c_in, h, w))
    wt = r.standard_normal((c_out, c_in, kh, kw))
    geometry = {"stride": (sh, sw), "padding": (ph, pw), "dilation": (dh, dw)}
    y = conv2d_forward(x, wt, None, **geometry)
    np.testing.assert_allclose(y, conv2d_naive(x, wt, None, **geometry), rtol=1e-12,
                               atol=1e-12)
    cols = im2col(x, kh, kw, **geometry)
    c = r.standard_normal(cols.shape)
    np.testing.assert_allclose(np.vdot(cols, c), np.vdot(x, col2im(c, x.shape, kh, kw, **geometry)),
                               rtol=1e-10, atol=1e-12)
    # grad_x is the adjoint of x -> conv(x): <conv(x), g> == <x, grad_x>.
    g = r.standard_normal(y.shape)
    grad_x, _, _ = conv2d_backward(g, x, wt, **geometry)
    np.testing.assert_allclose(np.vdot(y, g), np.vdot(x, grad_x), rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- errors


FUNCTIONS = {
    "forward": lambda x, w, **kw: conv2d_forward(x, w, **kw),
    "naive": lambda x, w, **kw: conv2d_naive(x, w, **kw),
    "backward": lambda x, w, **kw: conv2d_backward(np.zeros((2, w.shape[0], 8, 8)), x, w, **kw),
}


@pytest.mark.parametrize("fn", FUNCTIONS.values(), ids=FUNCTIONS.keys())
def test_channel_mismatch_names_both_counts(fn):
    x, w = np.zeros((2, 3, 8, 8)), np.zeros((4, 16, 3, 3))
    with pytest.raises(ValueError, match=r"input has 3 channels but weight expects 16 "
                                         r"\(weight shape \(4, 16, 3, 3\)\)"):
        fn(x, w, padding=1)


@pytest.mark.parametrize("fn", FUNCTIONS.values(), ids=FUNCTIONS.keys())
def test_kernel_larger_than_padded_input(fn):
    x, w = np.zeros((2, 1, 4, 4)), np.zeros((1, 1, 7, 7))
    with pytest.raises(ValueError, match="larger than the padded input of size 6"):
        fn(x, w, padding=1)


@pytest.mark.parametrize("fn", FUNCTIONS.values(), ids=FUNCTIONS.keys())
def test_non_4d_input_says_ndim_and_shape(fn):
    with pytest.raises(ValueError, match=r"input must be 4-D .*ndim=3 with shape \(3, 8, 8\)"):
        fn(np.zeros((3, 8, 8)), np.zeros((4, 3, 3, 3)))
    with pytest.raises(ValueError, match=r"weight must be 4-D .*ndim=2"):
        fn(np.zeros((2, 3, 8, 8)), np.zeros((4, 27)))


def test_other_argument_errors():
    x, w = np.zeros((2, 3, 8, 8)), np.zeros((4, 3, 3, 3))
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\).*got \(3,\)"):
        conv2d_forward(x, w, np.zeros(3))
    with pytest.raises(TypeError, match="same floating dtype, got float32 and float64"):
        conv2d_forward(x.astype(np.float32), w)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        conv2d_forward(x, w, stride=0)
    with pytest.raises(TypeError, match="stride must be an int or a pair"):
        conv2d_forward(x, w, stride=1.5)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        conv2d_forward(x, w, padding=(1, -1))
    with pytest.raises(ValueError, match=r"grad_out must have the output's shape "
                                         r"\(2, 4, 6, 6\), got \(2, 4, 8, 8\)"):
        conv2d_backward(np.zeros((2, 4, 8, 8)), x, w)
    with pytest.raises(ValueError, match=r"cols must have shape \(128, 27\)"):
        col2im(np.zeros((128, 28)), x.shape, 3, 3, 1, 1)
