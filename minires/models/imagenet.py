"""The ImageNet ResNets of He et al. 2016, paper Table 1, with torchvision's structure and names.

    input (N, 3, 224, 224)
    conv1 7x7/2, 64, bn1, relu             112 x 112
    maxpool 3x3/2 (padding 1)               56 x 56
    layer1  (stride 1)  64 planes           56 x 56
    layer2  (stride 2) 128 planes           28 x 28
    layer3  (stride 2) 256 planes           14 x 14
    layer4  (stride 2) 512 planes            7 x  7
    avgpool, fc (512 * expansion -> 1000)

    name        block       blocks per stage   params   GMACs (torchvision)   paper "FLOPs"
    resnet18    BasicBlock  2, 2, 2, 2         11.7M    1.81                  1.8e9
    resnet34    BasicBlock  3, 4, 6, 3         21.8M    3.66                  3.6e9
    resnet50    Bottleneck  3, 4, 6, 3         25.6M    4.09                  3.8e9
    resnet101   Bottleneck  3, 4, 23, 3        44.5M    7.80                  7.6e9
    resnet152   Bottleneck  3, 8, 36, 3        60.2M    11.51                 11.3e9

The paper's FLOPs are multiply-adds.  Bottleneck nets differ because torchvision (and
this file) put the stride of a downsampling block on its 3x3 convolution ("v1.5"), while
the paper's v1 puts it on the first 1x1, which then runs at the lower resolution
(``stride_in_1x1=True`` reproduces v1: ResNet-50 3.86 GMACs).

Shortcuts are option B (projection where the shape changes: ``downsample.0`` = 1x1
convolution, ``downsample.1`` = BN); state-dict keys are torchvision's, one-to-one.
"""

from __future__ import annotations

from minires.models.blocks import BasicBlock, Bottleneck, he_init_
from minires.nn.layers import (
    AdaptiveAvgPool2d,
    BatchNorm2d,
    Conv2d,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
)
from minires.nn.module import Module

_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(Module):
    """torchvision's ``ResNet`` (paper Table 1): (N, in_channels, H, W) -> (N, num_classes).

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck` (or "basic" / "bottleneck").
        layers: blocks per stage, e.g. (3, 4, 6, 3) for ResNet-34/50.
        num_classes, in_channels: 1000 and 3 for ImageNet.
        zero_init_residual: zero the last BN's weight of every block (torchvision's flag).
        residual: False gives the plain nets of Table 2 (plain-18/34, no shortcuts at all).
        shortcut: "B" (torchvision, the paper's default for ImageNet), "A" or "C" (Table 3).
        stride_in_1x1: Bottleneck only; True gives the paper's v1 (see the module docstring).

    Any input of at least 32 x 32 works (the five halvings give 1 x 1 before the pooling).
    Initialisation as torchvision: convolutions He normal (fan_out), BN 1 / 0, fc default.
    """

    def __init__(self, block, layers, num_classes: int = 1000, in_channels: int = 3,
                 zero_init_residual: bool = False, residual: bool = True, shortcut: str = "B",
                 stride_in_1x1: bool = False):
        super().__init__()
        block = _BLOCKS.get(block, block) if isinstance(block, str) else block
        if block not in (BasicBlock, Bottleneck):
            raise ValueError(f"block must be BasicBlock or Bottleneck ('basic' / "
                             f"'bottleneck'), got {block!r}")
        layers = tuple(int(n) for n in layers)
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"layers must give >= 1 block for each of 4 stages, got {layers}")
        extra = {"stride_in_1x1": stride_in_1x1} if block is Bottleneck else {}
        if stride_in_1x1 and block is not Bottleneck:
            raise ValueError("stride_in_1x1 applies to Bottleneck blocks only")
        self.layers, self.residual = layers, residual

        self.conv1 = he_init_(Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3,
                                     bias=False))
        self.bn1 = BatchNorm2d(64)
        self.relu = ReLU()
        self.maxpool = MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_planes = 64
        for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), layers, strict=True),
                                                 start=1):
            blocks = []
            for index in range(count):
                stride = 2 if stage > 1 and index == 0 else 1
                blocks.append(block(in_planes, planes, stride, residual=residual,
                                    shortcut=shortcut, zero_init_residual=zero_init_residual,
                                    **extra))
                in_planes = planes * block.expansion
            setattr(self, f"layer{stage}", Sequential(*blocks))
        self.avgpool = AdaptiveAvgPool2d((1, 1))
        self.fc = Linear(512 * block.expansion, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))

    def blocks(self) -> list:
        """[(name, block)] in forward order, e.g. [("layer1.0", BasicBlock), ...]."""
        return [(f"layer{stage}.{index}", unit)
                for stage in (1, 2, 3, 4)
                for index, unit in enumerate(getattr(self, f"layer{stage}"))]

    def extra_repr(self) -> str:
        return f"layers={self.layers}" + ("" if self.residual else ", plain")


def resnet18(**kwargs) -> ResNet:
    """ResNet-18: BasicBlock (2, 2, 2, 2), 11.7M parameters, 1.8 GMACs (Table 1)."""
    return ResNet(BasicBlock, (2, 2, 2, 2), **kwargs)


def resnet34(**kwargs) -> ResNet:
    """ResNet-34: BasicBlock (3, 4, 6, 3), 21.8M parameters, 3.6 GMACs (Table 1)."""
    return ResNet(BasicBlock, (3, 4, 6, 3), **kwargs)


def resnet50(**kwargs) -> ResNet:
    """ResNet-50: Bottleneck (3, 4, 6, 3), 25.6M parameters, 4.1 GMACs (v1.5; paper 3.8)."""
    return ResNet(Bottleneck, (3, 4, 6, 3), **kwargs)


def resnet101(**kwargs) -> ResNet:
    """ResNet-101: Bottleneck (3, 4, 23, 3), 44.5M parameters, 7.8 GMACs (paper 7.6)."""
    return ResNet(Bottleneck, (3, 4, 23, 3), **kwargs)


def resnet152(**kwargs) -> ResNet:
    """ResNet-152: Bottleneck (3, 8, 36, 3), 60.2M parameters, 11.5 GMACs (paper 11.3)."""
    return ResNet(Bottleneck, (3, 8, 36, 3), **kwargs)
