"""A BasicBlock's forward pass on arrays, with option A's parameter-free shortcut; the
reference is minires's own :class:`~minires.models.blocks.BasicBlock` in training mode."""

import numpy as np

from minires.autograd import Tensor, no_grad
from minires.exercises import Case
from minires.kernels.activation import relu_forward
from minires.kernels.conv import conv2d_forward
from minires.kernels.norm import batch_norm_forward
from minires.models.blocks import BasicBlock

NAME = "basic_block_forward"
TITLE = "ResNet BasicBlock forward with the option-A shortcut (arrays)"
ORDER = 90
STUB = "basic_block_forward.py"
FUNCTION = "basic_block_forward"
OUTPUTS = ("y",)
TOLERANCE = {"float64": (1e-6, 1e-8), "float32": (1e-3, 1e-4)}

# (x shape, planes, stride)
SETTINGS = [
    ((2, 4, 6, 6), 4, 1),  # identity shortcut
    ((2, 4, 6, 6), 8, 2),  # a new stage: subsample and pad channels
    ((1, 3, 7, 7), 6, 2),  # batch 1, odd size: 7 -> 4
    ((2, 2, 5, 5), 4, 1),  # more channels without a stride
]


def reference(x, conv1_weight, bn1_gamma, bn1_beta, conv2_weight, bn2_gamma, bn2_beta,
              stride=1):
    in_planes, planes = x.shape[1], conv1_weight.shape[0]
    block = BasicBlock(in_planes, planes, stride=stride, shortcut="A")
    for param, value in ((block.conv1.weight, conv1_weight), (block.bn1.weight, bn1_gamma),
                         (block.bn1.bias, bn1_beta), (block.conv2.weight, conv2_weight),
                         (block.bn2.weight, bn2_gamma), (block.bn2.bias, bn2_beta)):
        param.data = value.copy()
    block.train()
    with no_grad():
        return block(Tensor(x)).data


def _case(rng, shape, planes, stride, dtype=np.float64):
    c = shape[1]
    x = rng.standard_normal(shape).astype(dtype)
    arrays = (rng.standard_normal((planes, c, 3, 3)) * 0.5, rng.uniform(0.5, 1.5, planes),
              rng.standard_normal(planes) * 0.5, rng.standard_normal((planes, planes, 3, 3)) * 0.3,
              rng.uniform(0.5, 1.5, planes), rng.standard_normal(planes) * 0.5)
    label = f"x {shape} -> {planes} planes, stride {stride}"
    if stride != 1 or c != planes:
        label += " (option-A shortcut)"
    label += "" if dtype == np.float64 else f", {np.dtype(dtype).name}"
    return Case(label, (x, *(a.astype(dtype) for a in arrays)), {"stride": stride})


def cases(rng):
    for setting in SETTINGS:
        yield _case(rng, *setting)
    yield _case(rng, (2, 4, 8, 8), 8, 2, dtype=np.float32)


def _parts(x, w1, g1, b1, w2, g2, b2, stride, conv_strides=None):
    """F(x) (bn2's output) with the stride on conv1 (or as ``conv_strides`` says)."""
    s1, s2 = conv_strides or (stride, 1)
    h = conv2d_forward(x, w1, None, s1, 1)
    h = relu_forward(batch_norm_forward(h, g1, b1, None, None, True)[0])
    h = conv2d_forward(h, w2, None, s2, 1)
    return batch_norm_forward(h, g2, b2, None, None, True)[0]


def _shortcut(x, planes, stride, offset=0, split=False):
    s = x[:, :, offset::stride, offset::stride]
    extra = planes - x.shape[1]
    before = extra // 2 if split else 0
    return np.pad(s, ((0, 0), (before, extra - before), (0, 0), (0, 0)))


def diagnose(case, expected, got):
    x, w1, g1, b1, w2, g2, b2 = case.args
    stride = case.kwargs.get("stride", 1)
    planes = w1.shape[0]
    if np.shape(got) != expected.shape:
        return None
    f = _parts(x, w1, g1, b1, w2, g2, b2, stride)
    shortcut = _shortcut(x, planes, stride)
    variants = {  # computed lazily: some do not exist for every shape
        "pad_both_sides": lambda: np.maximum(f + _shortcut(x, planes, stride, split=True), 0),
        "relu_before_add": lambda: np.maximum(f, 0) + shortcut,
        "no_final_relu": lambda: f + shortcut,
        "missing_shortcut": lambda: np.maximum(f, 0),
        "subsample_offset": lambda: np.maximum(
            f + _shortcut(x, planes, stride, offset=1), 0),
        "stride_on_conv2": lambda: np.maximum(
            _parts(x, w1, g1, b1, w2, g2, b2, stride, conv_strides=(1, stride)) + shortcut, 0),
    }
    for key, make in variants.items():
        try:
            guess = make()
        except ValueError:  # shapes that do not fit: not this mistake
            continue
        if guess.shape == expected.shape and np.allclose(got, guess, rtol=1e-4, atol=1e-6):
            return key
    return None


HINTS = {
    "pad_both_sides": "you put zero channels on both sides of x; minires's option A (like "
                      "the paper's description) keeps x in the FIRST in_planes channels and "
                      "appends the zero channels after them.",
    "relu_before_add": "the last ReLU comes AFTER the addition: y = relu(F(x) + shortcut(x)), "
                       "with F(x) ending at bn2 (no ReLU of its own).",
    "no_final_relu": "you forgot the ReLU after the addition: y = relu(F(x) + shortcut(x)).",
    "missing_shortcut": "the shortcut is missing: add x (or its option-A version) to F(x) "
                        "before the final ReLU.",
    "subsample_offset": "the shortcut keeps pixels 0, stride, 2*stride, ...: x[:, :, ::stride, "
                        "::stride] (starting at 0, which is also where conv1's windows are "
                        "centred).",
    "stride_on_conv2": "the stride belongs to the FIRST convolution (conv1), the second always "
                       "has stride 1.",
    "shape": "y has shape (N, planes, ceil(H/stride), ceil(W/stride)): both 3x3 convolutions "
             "use padding 1; only conv1 has the stride.",
    "mismatch": "y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); convolutions 3x3 "
                "with padding 1 (conv1 with the stride), BatchNorm in training mode (batch "
                "statistics, eps 1e-5); shortcut(x) = x, or x[:, :, ::s, ::s] followed by "
                "zero channels.",
}
