"""col2im, the adjoint of im2col: scatter the rows back and ADD overlapping copies.

The gradient check is the definition: col2im(G) is the gradient of sum(G * im2col(x))."""

import numpy as np

from minires.exercises import Case, GradCheck
from minires.kernels import conv

NAME = "col2im"
TITLE = "col2im: scatter-add the rows back (the adjoint of im2col)"
ORDER = 40
STUB = "col2im.py"
FUNCTION = "col2im"
OUTPUTS = ("x",)

# (x shape, kernel_h, kernel_w, stride, padding)
SETTINGS = [
    ((1, 1, 3, 3), 2, 2, 1, 0),  # batch 1; the middle pixel is in all 4 windows
    ((2, 3, 5, 5), 3, 3, 1, 1),  # overlapping 3x3 windows with padding
    ((2, 2, 7, 7), 3, 3, 2, 1),  # stride 2 with padding: rows/columns shared by 2 windows
    ((1, 2, 6, 6), 3, 3, 2, 0),  # the last row/column is in no window: gradient 0
    ((2, 3, 4, 6), 2, 2, 2, 0),  # stride = kernel: no overlap at all
    ((3, 4, 4, 4), 1, 1, 1, 0),  # 1x1 kernel
]


def reference(cols, x_shape, kernel_h, kernel_w, stride=1, padding=0):
    return conv.col2im(cols, x_shape, kernel_h, kernel_w, stride=stride, padding=padding)


def _rows(shape, kh, kw, stride, padding):
    n, c, h, w = shape
    oh = (h + 2 * padding - kh) // stride + 1
    ow = (w + 2 * padding - kw) // stride + 1
    return n * oh * ow, kh * kw * c


def _label(shape, kh, kw, stride, padding, dtype=np.float64):
    text = f"x {shape}, kernel {kh}x{kw}, stride {stride}, padding {padding}"
    return text + ("" if dtype == np.float64 else f", {np.dtype(dtype).name}")


def cases(rng):
    for shape, kh, kw, stride, padding in SETTINGS:
        cols = rng.standard_normal(_rows(shape, kh, kw, stride, padding))
        yield Case(_label(shape, kh, kw, stride, padding), (cols, shape, kh, kw),
                   {"stride": stride, "padding": padding})
    shape = (2, 3, 8, 8)
    cols = rng.standard_normal(_rows(shape, 3, 3, 2, 1)).astype(np.float32)
    yield Case(_label(shape, 3, 3, 2, 1, np.float32), (cols, shape, 3, 3),
               {"stride": 2, "padding": 1})


def gradchecks(rng):
    shape, kh, kw, stride, padding = (1, 2, 5, 5), 3, 3, 2, 1
    x = rng.standard_normal(shape)

    def forward(x):
        return conv.im2col(x, kh, kw, stride=stride, padding=padding)

    yield GradCheck(f"x {shape}, kernel 3x3, stride 2, padding 1 (adjoint of im2col)", forward,
                    [x], lambda g, x: (g, x.shape, kh, kw, stride, padding), {0: (None, "x")})


def diagnose(case, expected, got):
    cols, x_shape, kh, kw = case.args[:4]
    stride = case.kwargs.get("stride", case.args[4] if len(case.args) > 4 else 1)
    padding = case.kwargs.get("padding", case.args[5] if len(case.args) > 5 else 0)
    n, c, h, w = x_shape
    shape = np.shape(got)
    if shape == (n, c, h + 2 * padding, w + 2 * padding) and padding:
        return "padding_kept"
    if shape != tuple(x_shape):
        return None
    counts = conv.col2im(np.ones_like(cols), x_shape, kh, kw, stride=stride, padding=padding)
    close = np.isclose(got, expected)
    if not close.all() and close[counts <= 1].all():
        return "overwrite"
    if np.allclose(got * np.maximum(counts, 1), expected):
        return "averaged"
    return None


HINTS = {
    "overwrite": "the pixels covered by one window are right, those shared by several "
                 "windows are wrong: ADD each copy's value (+=) instead of assigning (=); "
                 "col2im sums the gradients of all copies of a pixel.",
    "averaged": "you divided by the number of windows covering a pixel: col2im SUMS the "
                "copies, it does not average them.",
    "padding_kept": "you returned the padded image: cut the padding off, "
                    "x_pad[:, :, padding:padding + H, padding:padding + W].",
    "gradcheck": "col2im must be the adjoint of im2col: x[n, c, h, w] is the sum of every "
                 "cols entry that im2col copied from x_pad[n, c, h + padding, w + padding].",
    "mismatch": "cols[(n*OH + oh)*OW + ow, (i*KW + j)*C + c] belongs to "
                "x_pad[n, c, oh*stride + i, ow*stride + j]: add it there, then drop the "
                "padding.",
}
