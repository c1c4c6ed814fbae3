"""minires.models.blocks: residual, plain, bottleneck, pre-activation and highway blocks."""

import math

import numpy as np
import pytest

import minires
import minires.nn as nn
from minires.gradcheck import gradcheck
from minires.models import (
    BasicBlock,
    Bottleneck,
    HighwayBlock,
    PadShortcut,
    PreActBlock,
    make_shortcut,
)


def _randn(rng, *shape, dtype=np.float32, requires_grad=False):
    return minires.tensor(rng.standard_normal(shape).astype(dtype), requires_grad=requires_grad)


# ---------------------------------------------------------------------------- option A


@pytest.mark.parametrize("size, out_size", [(32, 16), (28, 14), (14, 7), (7, 4)])
def test_pad_shortcut_subsamples_and_zero_pads_exactly(rng, size, out_size):
    x = _randn(rng, 2, 3, size, size)
    y = PadShortcut(3, 8, stride=2)(x).numpy()
    assert y.shape == (2, 8, out_size, out_size)
    np.testing.assert_array_equal(y[:, :3], x.numpy()[:, :, ::2, ::2])
    np.testing.assert_array_equal(y[:, 3:], 0.0)
    # Its output size agrees with the 3x3 stride-2 convolution it runs beside.
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
    assert conv(x).shape == y.shape


def test_pad_shortcut_gradient_reaches_only_kept_positions(rng):
    x = _randn(rng, 1, 2, 4, 4, requires_grad=True)
    PadShortcut(2, 4, stride=2)(x).sum().backward()
    expected = np.zeros((1, 2, 4, 4), dtype=np.float32)
    expected[:, :, ::2, ::2] = 1.0
    np.testing.assert_array_equal(x.grad.numpy(), expected)


def test_pad_shortcut_cannot_reduce_channels():
    with pytest.raises(ValueError, match="cannot reduce"):
        PadShortcut(8, 4)


def test_shortcut_options_where_shapes_change():
    assert make_shortcut("A", 16, 16, 1) is None
    assert make_shortcut("B", 16, 16, 1) is None
    assert isinstance(make_shortcut("A", 16, 32, 2), PadShortcut)
    projection = make_shortcut("B", 16, 32, 2)
    assert [type(m).__name__ for m in projection] == ["Conv2d", "BatchNorm2d"]
    assert projection[0].kernel_size == (1, 1) and projection[0].stride == (2, 2)
    assert isinstance(make_shortcut("C", 16, 16, 1), nn.Sequential)
    with pytest.raises(ValueError, match="shortcut must be one of"):
        make_shortcut("D", 16, 16, 1)


def test_option_b_and_c_add_parameters_and_torchvision_names():
    a, b, c = (BasicBlock(16, 32, 2, shortcut=s) for s in "ABC")
    assert a.num_parameters() == BasicBlock(16, 32, 2, residual=False).num_parameters()
    projection = 16 * 32 + 2 * 32
    assert b.num_parameters() == a.num_parameters() + projection
    assert c.num_parameters() == b.num_parameters()
    assert BasicBlock(16, 16, shortcut="B").num_parameters() == \
        BasicBlock(16, 16, shortcut="A").num_parameters()
    assert BasicBlock(16, 16, shortcut="C").num_parameters() == \
        BasicBlock(16, 16, shortcut="A").num_parameters() + 16 * 16 + 2 * 16
    assert list(b.state_dict()) == [
        "conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
        "bn1.num_batches_tracked", "conv2.weight", "bn2.weight", "bn2.bias",
        "bn2.running_mean", "bn2.running_var", "bn2.num_batches_tracked",
        "downsample.0.weight", "downsample.1.weight", "downsample.1.bias",
        "downsample.1.running_mean", "downsample.1.running_var",
        "downsample.1.num_batches_tracked"]


# ---------------------------------------------------------------------------- shapes, grads


BLOCKS = {
    "basic A": lambda i, o, s: BasicBlock(i, o, s, shortcut="A"),
    "basic B": lambda i, o, s: BasicBlock(i, o, s, shortcut="B"),
    "basic C": lambda i, o, s: BasicBlock(i, o, s, shortcut="C"),
    "basic scaled": lambda i, o, s: BasicBlock(i, o, s, shortcut_scale=0.5),
    "plain": lambda i, o, s: BasicBlock(i, o, s, residual=False),
    "bottleneck": lambda i, o, s: Bottleneck(i, o // 4, s),
    "bottleneck v1": lambda i, o, s: Bottleneck(i, o // 4, s, stride_in_1x1=True),
    "bottleneck A": lambda i, o, s: Bottleneck(i, o // 4, s, shortcut="A"),
    "preact A": lambda i, o, s: PreActBlock(i, o, s, shortcut="A"),
    "preact B": lambda i, o, s: PreActBlock(i, o, s, shortcut="B"),
    "highway": lambda i, o, s: HighwayBlock(i, o, s),
}


@pytest.mark.parametrize("kind", list(BLOCKS))
@pytest.mark.parametrize("stride, size, out_size", [(1, 7, 7), (2, 7, 4), (2, 8, 4)])
def test_block_shapes_and_backward_reach_every_parameter(rng, kind, stride, size, out_size):
    # 8 channels at stride 1: a bottleneck then has 2 planes.  With 1 plane, bn1's gamma
    # only scales the single channel that bn2 normalises again, so its gradient is 0 up to
    # rounding (exactly 0.0 with some summation orders), which this test cannot check.
    in_channels, out_channels = (4, 8) if stride == 2 else (8, 8)
    block = BLOCKS[kind](in_channels, out_channels, stride)
    x = _randn(rng, 2, in_channels, size, size, requires_grad=True)
    y = block(x)
    assert y.shape == (2, out_channels, out_size, out_size)
    assert block.keeps_shape == (stride == 1)
    (y * _randn(rng, *y.shape)).sum().backward()
    assert x.grad is not None
    for name, p in block.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name
        assert np.abs(p.grad.numpy()).sum() > 0, name


@pytest.mark.parametrize("kind, stride", [
    ("basic A", 2), ("basic B", 2), ("basic C", 1), ("basic scaled", 1), ("plain", 1),
    ("bottleneck", 2), ("preact A", 2), ("preact B", 2), ("highway", 2), ("highway", 1),
])
def test_block_gradcheck_float64_with_parameters_as_inputs(kind, stride):
    rng = np.random.default_rng(7)
    out_channels = 8 if stride == 2 else 4
    with minires.default_dtype(np.float64):
        block = BLOCKS[kind](4, out_channels, stride)
    if kind == "highway":  # give the gate non-trivial weights to check
        block.gate.weight.data[...] = 0.3 * rng.standard_normal(block.gate.weight.shape)
    params = list(block.parameters())
    x = _randn(rng, 2, 4, 5, 5, dtype=np.float64, requires_grad=True)
    gradcheck(lambda x, *_params: block(x), x, *params).assert_ok()


# ---------------------------------------------------------------------------- identity


def test_hundred_zero_initialised_residual_blocks_are_exactly_the_identity(rng):
    residual = nn.Sequential(*[BasicBlock(4, 4, zero_init_residual=True) for _ in range(100)])
    plain = nn.Sequential(*[BasicBlock(4, 4, residual=False, zero_init_residual=True)
                            for _ in range(100)])
    x = minires.tensor(np.abs(rng.standard_normal((2, 4, 5, 5))).astype(np.float32))
    np.testing.assert_array_equal(residual(x).numpy(), x.numpy())  # relu(0 + x) = x
    np.testing.assert_array_equal(plain(x).numpy(), 0.0)  # relu(0): the signal is gone
    plain_he = nn.Sequential(*[BasicBlock(4, 4, residual=False) for _ in range(100)])
    assert not np.allclose(plain_he(x).numpy(), x.numpy(), atol=0.1)


def test_zero_init_residual_zeroes_the_last_bn_and_shortcut_scale_scales(rng):
    x = minires.tensor(np.abs(rng.standard_normal((2, 4, 5, 5))).astype(np.float32))
    assert np.all(BasicBlock(4, 4, zero_init_residual=True).bn2.weight.numpy() == 0)
    assert np.all(Bottleneck(16, 4, zero_init_residual=True).bn3.weight.numpy() == 0)
    half = BasicBlock(4, 4, zero_init_residual=True, shortcut_scale=0.5)
    np.testing.assert_allclose(half(x).numpy(), 0.5 * x.numpy(), rtol=1e-6)


def test_response_layer_hook_sees_f_of_x(rng):
    block = BasicBlock(4, 4)
    seen = []
    handle = getattr(block, block.response_layer).register_forward_hook(
        lambda module, inputs, output: seen.append(output.numpy()))
    x = _randn(rng, 2, 4, 5, 5)
    y = block(x)
    handle.remove()
    np.testing.assert_allclose(y.numpy(), np.maximum(seen[0] + x.numpy(), 0), rtol=1e-6)


def test_preact_block_has_nothing_after_the_addition(rng):
    block = PreActBlock(4, 4)
    with minires.no_grad():
        init = minires.nn.init
        init.zeros_(block.conv2.weight)
    x = _randn(rng, 2, 4, 5, 5)  # negative values pass: no ReLU after the addition
    np.testing.assert_array_equal(block(x).numpy(), x.numpy())


# ---------------------------------------------------------------------------- details


def test_he_initialisation_std():
    block = BasicBlock(64, 64)
    std = block.conv1.weight.numpy().std()
    assert abs(std - math.sqrt(2 / (64 * 9))) < 0.05 * math.sqrt(2 / (64 * 9))
    assert np.all(block.bn1.weight.numpy() == 1) and np.all(block.bn1.bias.numpy() == 0)


def test_bottleneck_stride_on_3x3_v15_or_1x1_v1():
    v15, v1 = Bottleneck(64, 32, 2), Bottleneck(64, 32, 2, stride_in_1x1=True)
    assert v15.conv1.stride == (1, 1) and v15.conv2.stride == (2, 2)
    assert v1.conv1.stride == (2, 2) and v1.conv2.stride == (1, 1)
    assert v15.conv3.out_channels == 128 and v15.downsample[0].stride == (2, 2)
    assert Bottleneck(128, 32).downsample is None  # 4 * 32 = 128: identity


def test_preact_rejects_option_c():
    with pytest.raises(ValueError, match="shortcut must be one of"):
        PreActBlock(4, 4, shortcut="C")


def test_highway_gate_starts_at_sigmoid_of_its_bias(rng):
    block = HighwayBlock(4, 8, stride=2, gate_bias=-2.0)
    np.testing.assert_array_equal(block.gate.bias.numpy(), -2.0)
    assert block.last_gate_mean is None
    x = _randn(rng, 3, 4, 6, 6)
    block(x)
    assert isinstance(block.last_gate_mean, float)
    assert block.last_gate_mean == pytest.approx(1 / (1 + math.exp(2.0)), rel=1e-6)
    # With (small) random gate weights the mean stays near sigmoid(b_T).
    block.gate.weight.data[...] = 0.05 * rng.standard_normal(block.gate.weight.shape)
    y = block(x)
    assert block.last_gate_mean == pytest.approx(0.119, abs=0.03)
    assert y.creator is not None  # the gate's mean is recorded without breaking the graph


def test_highway_carry_and_transform_limits(rng):
    x = _randn(rng, 2, 4, 6, 6)
    carry = HighwayBlock(4, 8, stride=2, gate_bias=-40.0)  # T = 0: y = C(x)
    np.testing.assert_allclose(carry(x).numpy(), PadShortcut(4, 8, 2)(x).numpy(), atol=1e-6)
    transform = HighwayBlock(4, 4, gate_bias=40.0)  # T = 1: y = H(x) >= 0, a plain layer
    y = transform(x).numpy()
    assert y.min() >= 0 and not np.allclose(y, x.numpy())
