"""Conv2d backward: grad_x, grad_weight and grad_bias of a strided, padded convolution."""

import numpy as np

from minires.exercises import Case, GradCheck
from minires.kernels import conv

NAME = "conv2d_backward"
TITLE = "Conv2d backward (grad_x, grad_weight, grad_bias)"
ORDER = 50
STUB = "conv2d_backward.py"
FUNCTION = "conv2d_backward"
OUTPUTS = ("grad_x", "grad_weight", "grad_bias")

# (x shape, weight shape, stride, padding)
SETTINGS = [
    ((1, 1, 4, 4), (1, 1, 3, 3), 1, 0),  # batch 1, one channel in and out
    ((2, 3, 5, 5), (4, 3, 3, 3), 1, 1),  # "same" 3x3 convolution
    ((2, 2, 7, 7), (3, 2, 3, 3), 2, 1),  # stride 2 with padding (7 -> 4)
    ((1, 3, 6, 5), (2, 3, 1, 1), 2, 0),  # 1x1 stride-2 projection (option B shortcut)
    ((2, 2, 5, 6), (2, 2, 2, 3), 1, 0),  # non-square kernel
]


def reference(grad_y, x, weight, stride=1, padding=0):
    return conv.conv2d_backward(grad_y, x, weight, stride=stride, padding=padding)


def _case(rng, x_shape, w_shape, stride, padding, dtype=np.float64):
    x = rng.standard_normal(x_shape).astype(dtype)
    weight = rng.standard_normal(w_shape).astype(dtype)
    grad_y = rng.standard_normal(conv.conv2d_forward(x, weight, None, stride, padding).shape)
    label = (f"x {x_shape}, weight {w_shape}, stride {stride}, padding {padding}"
             + ("" if dtype == np.float64 else f", {np.dtype(dtype).name}"))
    return Case(label, (grad_y.astype(dtype), x, weight), {"stride": stride, "padding": padding})


def cases(rng):
    for setting in SETTINGS:
        yield _case(rng, *setting)
    yield _case(rng, (2, 3, 8, 8), (4, 3, 3, 3), 2, 1, dtype=np.float32)


def gradchecks(rng):
    x, w, b = (rng.standard_normal(s) for s in ((1, 2, 5, 5), (2, 2, 3, 3), (2,)))

    def forward(x, w, b):
        return conv.conv2d_forward(x, w, b, stride=2, padding=1)

    yield GradCheck("x (1, 2, 5, 5), weight (2, 2, 3, 3), bias (2,), stride 2, padding 1",
                    forward, [x, w, b], lambda g, x, w, b: (g, x, w, 2, 1),
                    {0: (0, "x"), 1: (1, "weight"), 2: (2, "bias")})


def diagnose(case, expected, got):
    grad_y, x, weight = case.args[:3]
    padding = case.kwargs.get("padding", 0)
    gx, gw, gb = got
    ex, ew, eb = expected
    n, c, h, w = x.shape
    if np.shape(gx) == (n, c, h + 2 * padding, w + 2 * padding) and padding:
        return "padding_kept"
    if np.shape(gb) != eb.shape and np.shape(gb) in (grad_y.shape[1:], grad_y.shape[:2],
                                                     (grad_y.shape[0],)):
        return "bias_axes"
    if np.shape(gw) == ew.shape and not np.allclose(gw, ew):
        c_out, c_in, kh, kw = ew.shape
        # the (C_out, KH*KW*C) matrix reshaped straight to (C_out, C, KH, KW)
        flat = ew.transpose(0, 2, 3, 1).reshape(c_out, c_in, kh, kw)
        if np.allclose(gw, flat):
            return "weight_layout"
        if np.allclose(gw, ew[:, :, ::-1, ::-1]):
            return "flipped"
    if np.shape(gx) == ex.shape and np.allclose(gx, 0):
        return "zero_grad_x"
    return None


HINTS = {
    "weight_layout": "grad_weight has the right numbers in the wrong places: im2col's columns "
                     "run over (i, j, c), so G.T @ cols is (C_out, KH*KW*C) in that order; "
                     "reshape it to (C_out, KH, KW, C) and then transpose(0, 3, 1, 2).",
    "flipped": "grad_weight is flipped in space: the forward pass is a cross-correlation (no "
               "kernel flip), and so is grad_weight = G.T @ im2col(x).",
    "bias_axes": "grad_bias has one value per output channel: sum grad_y over the batch and "
                 "both spatial axes, grad_y.sum(axis=(0, 2, 3)).",
    "padding_kept": "grad_x must have x's shape: col2im (or your own scatter) must cut the "
                    "padding off again.",
    "zero_grad_x": "grad_x is all zeros: did you fill a new array but return another one?",
    "shape": "shapes: grad_x like x (N, C, H, W), grad_weight like weight (C_out, C, KH, KW), "
             "grad_bias (C_out,).",
    "mismatch": "with G = grad_y as (N*OH*OW, C_out) (channels last, like im2col's rows): "
                "grad_weight = G.T @ im2col(x), grad_x = col2im(G @ W_mat), grad_bias = "
                "grad_y.sum(axis=(0, 2, 3)); the stride and padding must be those of the "
                "forward pass.",
}
