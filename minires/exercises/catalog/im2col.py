"""im2col in minires's own layout: rows are output pixels, columns (kernel row, kernel
column, channel), so that the student's columns multiply ``weight_to_matrix(w).T``."""

import numpy as np

from minires.exercises import Case
from minires.kernels import conv

NAME = "im2col"
TITLE = "im2col: receptive fields as rows (N*OH*OW, KH*KW*C)"
ORDER = 30
STUB = "im2col.py"
FUNCTION = "im2col"
OUTPUTS = ("cols",)

# (x shape, kernel_h, kernel_w, stride, padding)
SETTINGS = [
    ((1, 1, 3, 3), 2, 2, 1, 0),  # batch 1, one channel: the docstring's example size
    ((2, 3, 5, 5), 3, 3, 1, 1),  # "same" 3x3 convolution
    ((2, 2, 7, 7), 3, 3, 2, 1),  # stride 2 with padding (odd size: 7 -> 4)
    ((1, 3, 6, 5), 2, 3, 2, 0),  # non-square kernel and image; a column left over
    ((3, 4, 4, 4), 1, 1, 1, 0),  # 1x1 kernel: cols is x with channels last
    ((1, 2, 3, 3), 3, 3, 1, 0),  # the kernel covers the whole image: OH = OW = 1
]


def reference(x, kernel_h, kernel_w, stride=1, padding=0):
    return conv.im2col(x, kernel_h, kernel_w, stride=stride, padding=padding)


def _label(shape, kh, kw, stride, padding, dtype=np.float64):
    text = f"x {shape}, kernel {kh}x{kw}, stride {stride}, padding {padding}"
    return text + ("" if dtype == np.float64 else f", {np.dtype(dtype).name}")


def cases(rng):
    for shape, kh, kw, stride, padding in SETTINGS:
        x = rng.standard_normal(shape)
        yield Case(_label(shape, kh, kw, stride, padding), (x, kh, kw),
                   {"stride": stride, "padding": padding})
    shape = (2, 3, 8, 8)
    x = rng.standard_normal(shape).astype(np.float32)
    yield Case(_label(shape, 3, 3, 2, 1, np.float32), (x, 3, 3), {"stride": 2, "padding": 1})


def output_size(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


def diagnose(case, expected, got):
    x, kh, kw = case.args
    stride, padding = case.kwargs["stride"], case.kwargs["padding"]
    n, c, h, w = x.shape
    shape = np.shape(got)
    if shape != expected.shape:
        if shape == expected.shape[::-1]:
            return "transposed"
        if len(shape) != 2:
            return "not_2d"
        oh, ow = output_size(h, kh, stride, padding), output_size(w, kw, stride, padding)
        if shape[1] == expected.shape[1]:
            off_by_one = {n * (oh + d) * (ow + d) for d in (-1, 1)}
            return "output_size" if shape[0] in off_by_one else "rows"
        return None
    rows, width = expected.shape
    channel_first = expected.reshape(rows, kh, kw, c).transpose(0, 3, 1, 2).reshape(rows, width)
    if np.allclose(got, channel_first):
        return "column_order"
    return None


HINTS = {
    "transposed": "you returned the transpose: rows are output pixels (N*OH*OW of them), "
                  "columns the KH*KW*C values of one receptive field.",
    "not_2d": "return a 2-D matrix of shape (N*OH*OW, KH*KW*C): reshape your result.",
    "output_size": "the number of rows is off: OH = (H + 2*padding - KH) // stride + 1 "
                   "(same for OW); the + 1 counts the first window position.",
    "rows": "the number of rows must be N*OH*OW with OH = (H + 2*padding - KH) // stride + 1; "
            "did you use the padded size or forget the stride?",
    "column_order": "your columns are in (channel, kernel row, kernel column) order (PyTorch's "
                    "unfold); minires puts the channel LAST: column (i*KW + j)*C + c holds "
                    "channel c of kernel position (i, j).",
    "mismatch": "row (n*OH + oh)*OW + ow, column (i*KW + j)*C + c must hold "
                "x_padded[n, c, oh*stride + i, ow*stride + j]; check the window start "
                "(oh*stride, not oh*stride + 1) and that the padding is zeros on every side.",
}
