"""The CIFAR-10 networks of He et al. 2016, section 4.2: 6n+2 layers, three stages.

    input (N, C, 32, 32)
    conv3x3(C -> 16), BN, ReLU            1 layer            32 x 32, 16 channels
    layer1: n blocks                       2n layers          32 x 32, 16
    layer2: n blocks (first has stride 2)  2n layers          16 x 16, 32
    layer3: n blocks (first has stride 2)  2n layers           8 x  8, 64
    global average pool, fc (64 -> 10)     1 layer
                                           = 6n + 2 weighted layers

n = 3, 5, 7, 9, 18, 200 gives ResNet-20/32/44/56/110/1202 with 0.27M/0.46M/0.66M/0.85M/
1.7M/19.4M parameters (paper Table 6, option A shortcuts).  Plain twins (``residual=False``)
have exactly the same layers and parameters.  Any input size the two subsamplings allow
works: 28 x 28 MNIST gives 28 -> 14 -> 7.
"""

from __future__ import annotations

import copy
import operator

from minires.models.blocks import BasicBlock, HighwayBlock, PreActBlock, conv3x3, he_init_
from minires.nn.layers import AdaptiveAvgPool2d, BatchNorm2d, Identity, Linear, ReLU, Sequential
from minires.nn.module import Module

BLOCK_TYPES = ("basic", "preact", "highway")


def cifar_depth_to_n(depth: int) -> int:
    """n, the number of blocks per stage, of a 6n+2-layer CIFAR ResNet (20 -> 3)."""
    try:
        layers = operator.index(depth)  # an int (also NumPy's); 20.0 is refused
    except TypeError:
        layers = -1
    if layers < 8 or (layers - 2) % 6:
        raise ValueError(f"CIFAR ResNets have depth 6n+2 with n >= 1 (8, 14, 20, 32, 44, 56, "
                         f"110, 1202: paper section 4.2), got {depth!r}")
    return (layers - 2) // 6


def check_widths(widths) -> tuple:
    """``widths`` as a tuple of 3 positive ints (the channels of the three stages), or a
    ValueError/TypeError naming ``widths``; ints only, so 16.5 is refused, not truncated."""
    try:
        given = tuple(widths)
    except TypeError:
        raise TypeError(f"widths must be 3 positive integers (channels of the 3 stages), got "
                        f"{widths!r}") from None
    if len(given) != 3:
        raise ValueError(f"widths must give the channels of the 3 stages, got {widths!r}")
    try:
        values = tuple(operator.index(w) for w in given)  # an int (also NumPy's), not 16.0
    except TypeError:
        raise TypeError(f"widths must be 3 positive integers, got {widths!r}") from None
    if any(isinstance(w, bool) for w in given) or min(values) < 1:
        raise ValueError(f"widths must be positive integers, got {widths!r}")
    return values


class CifarResNet(Module):
    """ResNet / plain / pre-activation / highway network for CIFAR-sized images (section 4.2).

    Forward: (N, in_channels, H, W) -> logits (N, num_classes).

    Args:
        depth: 6n+2 (20, 32, 44, 56, 110, 1202); a ValueError says so otherwise.
        block: "basic" (:class:`BasicBlock`, the paper's), "preact" (:class:`PreActBlock`,
            Identity Mappings) or "highway" (:class:`HighwayBlock`).
        residual: False gives the plain net (same layers, no shortcuts; basic/preact).
        shortcut: "A" (the paper's CIFAR choice), "B" or "C" (basic), "A"/"B" (preact).
        widths: channels of the three stages (16, 32, 64); smaller for quick demos.
        num_classes, in_channels: 10 and 3 for CIFAR-10; in_channels=1 for MNIST.
        zero_init_residual: start every BasicBlock at the identity (bn2.weight = 0).
        shortcut_scale: constant scaling of every shortcut (basic blocks only).
        gate_bias: initial transform-gate bias of highway blocks.

    Structure and names: ``conv1``, ``bn1``, ``relu``, ``layer1``..``layer3`` (Sequential of
    n blocks, stride 2 at the first block of layers 2 and 3), ``avgpool``, ``fc``.  A
    pre-activation net has no ``bn1`` after conv1 (the first unit's BN-ReLU follows it) and
    instead ends with ``bn_final`` + ReLU before the pooling ("Identity Mappings",
    section 4.1 and their appendix).

    Initialisation as torchvision: every convolution He normal (fan_out, ReLU gain), BN
    weight 1 and bias 0, fc PyTorch's default uniform (highway gates: see HighwayBlock).
    """

    def __init__(self, depth: int, block: str = "basic", residual: bool = True,
                 shortcut: str = "A", widths=(16, 32, 64), num_classes: int = 10,
                 in_channels: int = 3, zero_init_residual: bool = False,
                 shortcut_scale: float = 1.0, gate_bias: float = -2.0):
        super().__init__()
        n = cifar_depth_to_n(depth)
        depth = 6 * n + 2
        if block not in BLOCK_TYPES:
            raise ValueError(f"block must be one of {BLOCK_TYPES}, got {block!r}")
        widths = check_widths(widths)
        if block == "highway" and (not residual or shortcut != "A"):
            raise ValueError("a highway block's gated carry is its shortcut: use "
                             "residual=True and shortcut='A' (option A where shapes change)")
        if zero_init_residual and block != "basic":
            raise ValueError("zero_init_residual zeroes bn2.weight of basic blocks; "
                             f"{block!r} blocks have no BN at the end of the branch")
        if shortcut_scale != 1.0 and block != "basic":
            raise ValueError("shortcut_scale is implemented for basic blocks only")
        self.depth, self.n, self.block_type, self.residual = depth, n, block, residual
        self.widths = widths

        self.conv1 = he_init_(conv3x3(in_channels, widths[0]))
        if block != "preact":
            self.bn1 = BatchNorm2d(widths[0])
        self.relu = ReLU()
        in_planes = widths[0]
        for stage, planes in enumerate(widths, start=1):
            blocks = []
            for index in range(n):
                stride = 2 if stage > 1 and index == 0 else 1
                if block == "basic":
                    unit = BasicBlock(in_planes, planes, stride, residual, shortcut,
                                      zero_init_residual, shortcut_scale)
                elif block == "preact":
                    unit = PreActBlock(in_planes, planes, stride, residual, shortcut)
                else:
                    unit = HighwayBlock(in_planes, planes, stride, gate_bias)
                blocks.append(unit)
                in_planes = planes
            setattr(self, f"layer{stage}", Sequential(*blocks))
        if block == "preact":
            self.bn_final = BatchNorm2d(widths[2])
        self.avgpool = AdaptiveAvgPool2d((1, 1))
        self.fc = Linear(widths[2], num_classes)

    def forward(self, x):
        x = self.conv1(x)
        if self.block_type != "preact":
            x = self.relu(self.bn1(x))
        x = self.layer3(self.layer2(self.layer1(x)))
        if self.block_type == "preact":
            x = self.relu(self.bn_final(x))
        x = self.avgpool(x).flatten(1)  # (N, C, 1, 1) -> (N, C)
        return self.fc(x)

    def blocks(self) -> list:
        """[(name, block)] in forward order, e.g. [("layer1.0", BasicBlock), ...]; a
        lesioned (deleted) block appears as its Identity."""
        return [(f"layer{stage}.{index}", unit)
                for stage in (1, 2, 3)
                for index, unit in enumerate(getattr(self, f"layer{stage}"))]

    def without_block(self, *names: str) -> CifarResNet:
        """A deep copy of this model with the named blocks deleted (replaced by Identity).

        The lesion experiment of Veit et al. 2016 ("Residual Networks Behave Like Ensembles
        of Relatively Shallow Networks"): deleting one block of a trained ResNet barely
        hurts, deleting one layer of a plain net is catastrophic.  Only blocks that keep the
        shape (stride 1, same channels) can be deleted: a ValueError names the others.
        The original model is not changed.

        Example: ``lesioned = model.without_block("layer2.3")``.
        """
        if not names:
            raise ValueError("without_block needs at least one block name, e.g. 'layer1.0'")
        known = dict(self.blocks())
        for name in names:
            if name not in known:
                raise KeyError(f"no block {name!r}; blocks are {list(known)}")
            unit = known[name]
            if not isinstance(unit, Identity) and not unit.keeps_shape:
                raise ValueError(f"block {name!r} changes the shape ({unit.in_planes} -> "
                                 f"{unit.planes} channels, stride {unit.stride}) and cannot be "
                                 f"replaced by the identity")
        lesioned = copy.deepcopy(self)
        for name in names:
            stage, index = name.split(".")
            getattr(lesioned, stage).add_module(index, Identity())
        return lesioned

    def extra_repr(self) -> str:
        kind = self.block_type if self.residual else f"plain {self.block_type}"
        return f"depth={self.depth}, n={self.n}, block={kind}, widths={self.widths}"


# ---------------------------------------------------------------------------- constructors


def resnet20(**kwargs) -> CifarResNet:
    """ResNet-20 (n = 3), 0.27M parameters, 8.75% CIFAR-10 error (paper Table 6)."""
    return CifarResNet(20, **kwargs)


def resnet32(**kwargs) -> CifarResNet:
    """ResNet-32 (n = 5), 0.46M parameters, 7.51% error (Table 6)."""
    return CifarResNet(32, **kwargs)


def resnet44(**kwargs) -> CifarResNet:
    """ResNet-44 (n = 7), 0.66M parameters, 7.17% error (Table 6)."""
    return CifarResNet(44, **kwargs)


def resnet56(**kwargs) -> CifarResNet:
    """ResNet-56 (n = 9), 0.85M parameters, 6.97% error (Table 6)."""
    return CifarResNet(56, **kwargs)


def resnet110(**kwargs) -> CifarResNet:
    """ResNet-110 (n = 18), 1.7M parameters, 6.43% error (Table 6; warm-up lr 0.01)."""
    return CifarResNet(110, **kwargs)


def resnet1202(**kwargs) -> CifarResNet:
    """ResNet-1202 (n = 200), 19.4M parameters, 7.93% error: overfits (Table 6, section 4.2)."""
    return CifarResNet(1202, **kwargs)


def plain(depth: int, **kwargs) -> CifarResNet:
    """Plain net of ``depth`` = 6n+2 layers: the ResNet's layers without shortcuts (Fig. 6
    left: deeper plain nets have *higher* training error, the degradation problem)."""
    return CifarResNet(depth, residual=False, **kwargs)


def plain20(**kwargs) -> CifarResNet:
    """Plain-20: ResNet-20 without shortcuts (paper Fig. 6 left)."""
    return plain(20, **kwargs)


def plain32(**kwargs) -> CifarResNet:
    """Plain-32 (Fig. 6 left)."""
    return plain(32, **kwargs)


def plain44(**kwargs) -> CifarResNet:
    """Plain-44 (Fig. 6 left)."""
    return plain(44, **kwargs)


def plain56(**kwargs) -> CifarResNet:
    """Plain-56 (Fig. 6 left, and Fig. 1: higher training error than plain-20)."""
    return plain(56, **kwargs)


def plain110(**kwargs) -> CifarResNet:
    """Plain-110 (Fig. 6: "fails to converge"-scale degradation beyond 100 layers)."""
    return plain(110, **kwargs)


def preact_resnet(depth: int, **kwargs) -> CifarResNet:
    """Pre-activation ResNet of ``depth`` = 6n+2 layers (He et al. 2016, Identity Mappings)."""
    return CifarResNet(depth, block="preact", **kwargs)


def preact_resnet20(**kwargs) -> CifarResNet:
    """Pre-activation ResNet-20 (Identity Mappings), 0.27M parameters."""
    return preact_resnet(20, **kwargs)


def preact_resnet56(**kwargs) -> CifarResNet:
    """Pre-activation ResNet-56 (Identity Mappings), 0.85M parameters."""
    return preact_resnet(56, **kwargs)


def preact_resnet110(**kwargs) -> CifarResNet:
    """Pre-activation ResNet-110: 6.37% CIFAR-10 error (Identity Mappings, Table 3)."""
    return preact_resnet(110, **kwargs)


def highway(depth: int, **kwargs) -> CifarResNet:
    """Highway network of ``depth`` = 6n+2 layers, blocks y = H T + x (1 - T)."""
    return CifarResNet(depth, block="highway", **kwargs)


def highway20(**kwargs) -> CifarResNet:
    """Highway-20: ResNet-20's layout with gated shortcuts (Srivastava et al. 2015)."""
    return highway(20, **kwargs)


def highway56(**kwargs) -> CifarResNet:
    """Highway-56: ResNet-56's layout with gated shortcuts."""
    return highway(56, **kwargs)
