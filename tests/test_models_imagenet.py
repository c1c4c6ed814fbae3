"""minires.models.imagenet: torchvision-layout ResNet-18..152 (He et al. 2016, Table 1).

Multiply-accumulates (MACs) at 224 x 224.  torchvision puts a downsampling Bottleneck's
stride on its 3x3 convolution ("v1.5"); the paper's v1 puts it on the first 1x1, which then
runs at a quarter of the positions, so the paper's Table 1 counts fewer for ResNet-50/101/152:

    model       torchvision (v1.5)   paper Table 1 (v1)
    ResNet-18   1.81 G               1.8 G
    ResNet-34   3.66 G               3.6 G
    ResNet-50   4.09 G               3.8 G    (v1 here: 3.86 G)
    ResNet-101  7.80 G               7.6 G
    ResNet-152  11.51 G              11.3 G

Counting without a 224 x 224 forward: the five halvings of a 224 input give 112/56/28/14/7
and those of a 32 input 16/8/4/2/1, exactly 7 times smaller, so every convolution's MACs
(proportional to OH x OW) are exactly 49 times those at 32 x 32; only the fc layer (after
the global pooling) does not scale.  The default suite counts at 32 x 32 and scales; the
slow test runs the real 224 x 224 pass and checks that the two agree.
"""

import numpy as np
import pytest

import minires
from minires import functional as F
from minires.models import (
    BasicBlock,
    Bottleneck,
    ResNet,
    get_model,
    resnet18,
    resnet50,
    summary,
)

TABLE_1 = [
    # name, params (M, paper/torchvision), GMACs torchvision, GMACs paper Table 1
    ("resnet18", 11.7, 1.81, 1.8),
    ("resnet34", 21.8, 3.66, 3.6),
    ("resnet50", 25.6, 4.09, 3.8),
    ("resnet101", 44.5, 7.80, 7.6),
    ("resnet152", 60.2, 11.51, 11.3),
]


def macs_at_224_from_32(model) -> int:
    """MACs per 224 x 224 sample from a cheap 32 x 32 summary (see the module docstring)."""
    info = summary(model, (3, 32, 32), print_fn=None)
    fc = sum(row.macs for row in info.layers if row.type == "Linear")
    return 49 * (info.macs - fc) + fc


@pytest.mark.parametrize("name, params_m, gmacs_torchvision, gmacs_paper", TABLE_1)
def test_parameters_and_macs_match_table_1(name, params_m, gmacs_torchvision, gmacs_paper):
    model = get_model(name)
    assert round(model.num_parameters() / 1e6, 1) == params_m
    macs = macs_at_224_from_32(model)
    gmacs = macs / 1e9
    assert round(gmacs, 2) == gmacs_torchvision
    if name == "resnet50":
        assert macs == 4_089_184_256
    assert abs(gmacs - gmacs_paper) / gmacs_paper < 0.10


def test_paper_v1_stride_placement_gives_the_papers_resnet50_count():
    v1 = macs_at_224_from_32(resnet50(stride_in_1x1=True))
    assert round(v1 / 1e9, 2) == 3.86 and abs(v1 / 1e9 - 3.8) / 3.8 < 0.02
    # The difference: the first 1x1 of layer2/3/4's first block runs at 4x the positions
    # in v1.5: 256 -> 128 channels at 56x56 instead of 28x28, and likewise (the same 77M
    # each) in layers 3 and 4.
    v15 = 4_089_184_256  # resnet50()'s count, checked in test_parameters_and_macs...
    assert v15 - v1 == 3 * 256 * 128 * (56 * 56 - 28 * 28)


def test_scaling_shortcut_agrees_with_a_real_224_forward_for_resnet18():
    model = resnet18()
    assert summary(model, (3, 224, 224), print_fn=None).macs == macs_at_224_from_32(model)


@pytest.mark.slow
@pytest.mark.parametrize("name", [row[0] for row in TABLE_1])
def test_real_224_forward_macs(name):
    model = get_model(name)
    gmacs = summary(model, (3, 224, 224), print_fn=None).macs
    assert gmacs == macs_at_224_from_32(model)


def test_torchvision_names_and_structure():
    model = resnet18()
    assert [name for name, _ in model.named_children()] == [
        "conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4",
        "avgpool", "fc"]
    keys = list(model.state_dict())
    assert "layer2.0.downsample.0.weight" in keys and "layer2.0.downsample.1.running_var" in keys
    assert "layer1.0.downsample.0.weight" not in keys  # option B: identity where it can
    assert model.conv1.kernel_size == (7, 7) and model.conv1.stride == (2, 2)
    assert [len(getattr(model, f"layer{i}")) for i in (1, 2, 3, 4)] == [2, 2, 2, 2]
    big = ResNet(Bottleneck, (2, 1, 1, 1))
    assert isinstance(big.layer1[0], Bottleneck) and big.layer1[0].downsample is not None
    assert big.layer1[1].downsample is None and big.fc.in_features == 2048
    assert [name for name, _ in big.blocks()] == ["layer1.0", "layer1.1", "layer2.0",
                                                  "layer3.0", "layer4.0"]


def test_small_forward_backward_and_plain_twin(rng):
    model = ResNet("basic", (1, 1, 1, 1), num_classes=5, in_channels=1)
    x = minires.tensor(rng.standard_normal((2, 1, 32, 32)).astype(np.float32))
    logits = model(x)
    assert logits.shape == (2, 5)
    F.cross_entropy(logits, np.array([1, 4])).backward()
    assert all(p.grad is not None for p in model.parameters())
    plain = ResNet(BasicBlock, (1, 1, 1, 1), num_classes=5, in_channels=1, residual=False)
    projections = sum(p.size for name, p in model.named_parameters() if "downsample" in name)
    assert plain.num_parameters() == model.num_parameters() - projections


def test_zero_init_residual_and_invalid_arguments():
    model = ResNet(Bottleneck, (1, 1, 1, 1), zero_init_residual=True)
    assert all(np.all(b.bn3.weight.numpy() == 0) for _, b in model.blocks())
    with pytest.raises(ValueError, match="block must be"):
        ResNet("dense", (2, 2, 2, 2))
    with pytest.raises(ValueError, match="4 stages"):
        ResNet(BasicBlock, (2, 2, 2))
    with pytest.raises(ValueError, match="Bottleneck"):
        ResNet(BasicBlock, (2, 2, 2, 2), stride_in_1x1=True)
