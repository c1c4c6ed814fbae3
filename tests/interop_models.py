"""The model families that the interop tests convert: one small instance of each kind
that minires.models builds, and BN statistics that make eval mode worth testing."""

import numpy as np

import minires
from minires import models
from minires.models import Bottleneck, ResNet

# (id, constructor, input shape): every family minires.models builds, small and quick.
# ImageNet nets get 64 x 64 inputs: layer4 is then 2 x 2, so its train-mode BN normalises
# 8 values per channel (at 32 x 32 and batch 2 only 2, and rounding is amplified 1e4-fold).
SMALL = {"widths": (4, 8, 16)}
FAMILIES = [
    ("resnet8-A", lambda: models.CifarResNet(8, **SMALL), (3, 3, 12, 12)),
    ("resnet20-A", lambda: models.resnet20(**SMALL), (2, 3, 16, 16)),
    ("resnet14-B", lambda: models.CifarResNet(14, shortcut="B", **SMALL), (2, 3, 12, 12)),
    ("resnet8-C", lambda: models.CifarResNet(8, shortcut="C", **SMALL), (2, 3, 12, 12)),
    ("plain20", lambda: models.plain20(**SMALL), (2, 3, 16, 16)),
    ("preact20-A", lambda: models.preact_resnet20(**SMALL), (2, 3, 16, 16)),
    ("preact8-B", lambda: models.CifarResNet(8, block="preact", shortcut="B", **SMALL),
     (2, 3, 12, 12)),
    ("preact-plain8", lambda: models.CifarResNet(8, block="preact", residual=False, **SMALL),
     (2, 3, 12, 12)),
    ("highway20", lambda: models.highway20(**SMALL), (2, 3, 16, 16)),
    ("resnet8-scale0.5-mnist", lambda: models.CifarResNet(8, shortcut_scale=0.5,
                                                          in_channels=1, **SMALL),
     (2, 1, 28, 28)),
    ("resnet20-lesioned", lambda: models.resnet20(**SMALL).without_block("layer2.1"),
     (2, 3, 16, 16)),
    ("resnet-basic-1111", lambda: ResNet("basic", (1, 1, 1, 1), num_classes=10),
     (2, 3, 64, 64)),  # resnet18's layout with 1 block per stage (resnet18 itself: below)
    ("bottleneck-1111", lambda: ResNet(Bottleneck, (1, 1, 1, 1), num_classes=10),
     (2, 3, 64, 64)),
    ("bottleneck-v1-plain", lambda: ResNet(Bottleneck, (1, 1, 1, 1), num_classes=5,
                                           stride_in_1x1=True, residual=False), (2, 3, 64, 64)),
]
IDS = [family[0] for family in FAMILIES]


def randomise_batch_norm(model, rng):
    """Non-trivial BN parameters and running statistics, so eval mode tests something."""
    for module in model.modules():
        if isinstance(module, minires.nn.BatchNorm2d):
            c = module.num_features
            module.weight.data[...] = rng.uniform(0.5, 1.5, c)
            module.bias.data[...] = rng.normal(0, 0.2, c)
            module.running_mean.data[...] = rng.normal(0, 0.2, c)
            module.running_var.data[...] = rng.uniform(0.5, 2.0, c)
            module.num_batches_tracked.data[...] = 3
        if isinstance(module, models.HighwayBlock):  # gates that depend on x
            module.gate.weight.data[...] = rng.normal(0, 0.1, module.gate.weight.shape)


def build(constructor, dtype, seed=0):
    """constructor() in ``dtype`` with seeded random BN statistics."""
    rng = np.random.default_rng(seed)
    with minires.default_dtype(dtype):
        model = constructor()
    randomise_batch_norm(model, rng)
    return model
