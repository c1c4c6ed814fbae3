"""minires.models.cifar: the 6n+2-layer CIFAR ResNets, plain twins, pre-activation and
highway variants (He et al. 2016, section 4.2 and Table 6)."""

import math

import numpy as np
import pytest

import minires
import minires.nn as nn
from minires import functional as F
from minires.models import (
    BasicBlock,
    CifarResNet,
    HighwayBlock,
    PreActBlock,
    cifar_depth_to_n,
    get_model,
    highway20,
    plain20,
    plain56,
    preact_resnet20,
    resnet20,
    resnet32,
    resnet44,
    resnet56,
    resnet110,
    resnet1202,
)

SMALL = {"widths": (4, 8, 8)}  # narrow nets for fast forward/backward checks


# ---------------------------------------------------------------------------- Table 6


@pytest.mark.parametrize("constructor, paper_millions, digits", [
    (resnet20, 0.27, 2), (resnet32, 0.46, 2), (resnet44, 0.66, 2), (resnet56, 0.85, 2),
    (resnet110, 1.7, 1), (resnet1202, 19.4, 1),
])
def test_parameter_counts_match_paper_table_6(constructor, paper_millions, digits):
    assert round(constructor().num_parameters() / 1e6, digits) == paper_millions


def test_exact_resnet20_count_and_plain_twins_have_the_same_parameters():
    assert resnet20().num_parameters() == 269_722
    assert plain20().num_parameters() == 269_722
    assert plain56().num_parameters() == resnet56().num_parameters()


def test_options_b_and_c_add_projection_parameters():
    a = resnet20().num_parameters()
    # B: a 1x1 conv + BN at the two stage transitions (16 -> 32, 32 -> 64).
    projections = (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert resnet20(shortcut="B").num_parameters() == a + projections
    # C: a projection on all 9 blocks.
    every_block = 3 * (16 * 16 + 2 * 16) + (16 * 32 + 2 * 32) + 2 * (32 * 32 + 2 * 32) + \
        (32 * 64 + 2 * 64) + 2 * (64 * 64 + 2 * 64)
    assert resnet20(shortcut="C").num_parameters() == a + every_block


# ---------------------------------------------------------------------------- structure


@pytest.mark.parametrize("depth", [21, 18, 2, 0, 20.0])
def test_depth_must_be_6n_plus_2(depth):
    with pytest.raises(ValueError, match="6n\\+2"):
        CifarResNet(depth)


def test_depth_to_n():
    assert [cifar_depth_to_n(d) for d in (8, 20, 56, 110, 1202)] == [1, 3, 9, 18, 200]


def test_layout_names_strides_and_blocks():
    model = resnet20()
    names = [name for name, _ in model.blocks()]
    assert names == [f"layer{s}.{i}" for s in (1, 2, 3) for i in range(3)]
    strides = [block.stride for _, block in model.blocks()]
    assert strides == [1, 1, 1, 2, 1, 1, 2, 1, 1]
    assert [name for name, _ in model.named_children()] == [
        "conv1", "bn1", "relu", "layer1", "layer2", "layer3", "avgpool", "fc"]
    assert model.fc.in_features == 64 and model.fc.out_features == 10
    weighted = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(weighted) == 20  # 6n + 2 with option A (no projection layers)


@pytest.mark.parametrize("in_channels, size, stage_sizes", [(1, 28, (28, 14, 7)),
                                                            (3, 32, (32, 16, 8))])
def test_forward_shapes_on_mnist_and_cifar_sizes(rng, in_channels, size, stage_sizes):
    model = get_model("resnet20", num_classes=10, in_channels=in_channels, widths=(8, 16, 32))
    seen = {}
    for stage in ("layer1", "layer2", "layer3"):
        getattr(model, stage).register_forward_hook(
            lambda module, inputs, out, stage=stage: seen.__setitem__(stage, out.shape))
    x = minires.tensor(rng.standard_normal((2, in_channels, size, size)).astype(np.float32))
    assert model(x).shape == (2, 10)
    widths = (8, 16, 32)
    assert seen == {f"layer{i + 1}": (2, widths[i], s, s) for i, s in enumerate(stage_sizes)}


@pytest.mark.parametrize("name", ["resnet20", "plain20", "preact_resnet20", "highway20"])
def test_backward_reaches_every_parameter(rng, name):
    model = get_model(name, in_channels=1, **SMALL)
    x = minires.tensor(rng.standard_normal((3, 1, 12, 12)).astype(np.float32))
    F.cross_entropy(model(x), np.array([0, 3, 9])).backward()
    for param_name, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, param_name


def test_plain_versus_residual_switch():
    residual, plain = resnet20(), plain20()
    assert all(b.residual for _, b in residual.blocks())
    assert not any(b.residual or b.downsample is not None for _, b in plain.blocks())
    assert residual.layer2[0].downsample is not None  # option A's zero-pad shortcut
    assert "plain" in repr(plain.layer1[0])


def test_preact_and_highway_structure():
    pre = preact_resnet20()
    assert all(isinstance(b, PreActBlock) for _, b in pre.blocks())
    assert not hasattr(pre, "bn1") and isinstance(pre.bn_final, nn.BatchNorm2d)
    assert round(pre.num_parameters() / 1e6, 2) == 0.27
    hw = highway20(gate_bias=-3.0)
    assert all(isinstance(b, HighwayBlock) for _, b in hw.blocks())
    for _, block in hw.blocks():  # the model's He initialisation leaves the gates alone
        np.testing.assert_array_equal(block.gate.bias.numpy(), -3.0)
        np.testing.assert_array_equal(block.gate.weight.numpy(), 0.0)


def test_highway_reports_the_mean_gate_per_block(rng):
    model = highway20(**SMALL)
    x = minires.tensor(rng.standard_normal((2, 3, 8, 8)).astype(np.float32))
    model(x)
    gates = [block.last_gate_mean for _, block in model.blocks()]
    assert len(gates) == 9
    np.testing.assert_allclose(gates, 1 / (1 + math.exp(2.0)), rtol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    ({"block": "dense"}, "block must be one of"),
    ({"widths": (16, 32)}, "3 stages"),
    ({"block": "highway", "residual": False}, "highway"),
    ({"block": "preact", "zero_init_residual": True}, "zero_init_residual"),
    ({"block": "preact", "shortcut_scale": 0.5}, "shortcut_scale"),
    ({"shortcut": "Z"}, "shortcut must be one of"),
])
def test_invalid_configurations_say_why(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CifarResNet(20, **kwargs)


@pytest.mark.parametrize("widths, error", [
    ((0, 16, 32), ValueError),
    ((16, -4, 32), ValueError),
    ((True, 16, 32), ValueError),
    ((16, 32.5, 64), TypeError),
    (("16", 32, 64), TypeError),
    (16, TypeError),
])
def test_bad_widths_fail_at_construction_naming_widths(widths, error):
    # Before: (0, 16, 32) built and only failed at forward, naming out_channels.
    with pytest.raises(error, match=r"widths must be (3 )?positive integers") as info:
        CifarResNet(20, widths=widths)
    assert repr(widths) in str(info.value)
    with pytest.raises(error, match="widths"):
        get_model("resnet20", widths=widths)


def test_widths_accept_numpy_integers():
    model = CifarResNet(8, widths=np.array([2, 3, 4]))
    assert model.widths == (2, 3, 4) and all(type(w) is int for w in model.widths)


def test_he_initialisation_and_zero_init_residual():
    model = resnet20(zero_init_residual=True)
    std = model.layer3[1].conv1.weight.numpy().std()
    assert abs(std - math.sqrt(2 / (64 * 9))) < 0.1 * math.sqrt(2 / (64 * 9))
    assert all(np.all(b.bn2.weight.numpy() == 0) for _, b in model.blocks())
    assert np.all(model.bn1.weight.numpy() == 1)
    bound = 1 / math.sqrt(64)  # fc keeps PyTorch's default U(-1/sqrt(in), 1/sqrt(in))
    assert np.abs(model.fc.weight.numpy()).max() <= bound


def test_shortcut_scale_reaches_every_block():
    assert {b.shortcut_scale for _, b in resnet20(shortcut_scale=0.5).blocks()} == {0.5}


# ---------------------------------------------------------------------------- lesions


def test_without_block_deletes_a_copy_and_leaves_the_original(rng):
    model = resnet20(**SMALL).eval()
    x = minires.tensor(rng.standard_normal((2, 3, 8, 8)).astype(np.float32))
    before = model(x).numpy()
    lesioned = model.without_block("layer2.1")
    assert isinstance(lesioned.layer2[1], nn.Identity)
    assert isinstance(model.layer2[1], BasicBlock)
    np.testing.assert_array_equal(model(x).numpy(), before)
    # The lesioned net is the same computation with that block skipped.
    with minires.no_grad():
        h = model.relu(model.bn1(model.conv1(x)))
        h = model.layer1(h)
        h = model.layer2[2](model.layer2[0](h))
        expected = model.fc(model.avgpool(model.layer3(h)).flatten(1))
    np.testing.assert_allclose(lesioned(x).numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    assert dict(lesioned.blocks())["layer2.1"] is lesioned.layer2[1]


def test_deleting_a_zero_initialised_block_changes_nothing(rng):
    model = resnet20(zero_init_residual=True, **SMALL).eval()
    x = minires.tensor(rng.standard_normal((2, 3, 8, 8)).astype(np.float32))
    np.testing.assert_array_equal(model.without_block("layer1.1", "layer3.2")(x).numpy(),
                                  model(x).numpy())


def test_without_block_refuses_shape_changing_and_unknown_blocks():
    model = resnet20(**SMALL)
    with pytest.raises(ValueError, match="changes the shape"):
        model.without_block("layer2.0")
    with pytest.raises(KeyError, match="no block"):
        model.without_block("layer4.0")
    with pytest.raises(ValueError, match="at least one"):
        model.without_block()
