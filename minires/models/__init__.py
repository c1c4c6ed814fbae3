"""Models: residual blocks, the CIFAR and ImageNet ResNets of He et al. 2016, their plain,
pre-activation and highway relatives, a registry and ``summary``.

    >>> import minires.models as models
    >>> model = models.get_model("resnet20", num_classes=10, in_channels=1, widths=(8, 16, 32))
    >>> info = models.summary(model, (1, 28, 28), print_fn=None)

Names follow torchvision, so a model's state dict maps one-to-one onto PyTorch's.
"""

from minires.models.blocks import (
    SHORTCUTS,
    BasicBlock,
    Bottleneck,
    HighwayBlock,
    PadShortcut,
    PreActBlock,
    conv1x1,
    conv3x3,
    he_init_,
    make_shortcut,
)
from minires.models.cifar import (
    BLOCK_TYPES,
    CifarResNet,
    cifar_depth_to_n,
    highway,
    highway20,
    highway56,
    plain,
    plain20,
    plain32,
    plain44,
    plain56,
    plain110,
    preact_resnet,
    preact_resnet20,
    preact_resnet56,
    preact_resnet110,
    resnet20,
    resnet32,
    resnet44,
    resnet56,
    resnet110,
    resnet1202,
)
from minires.models.imagenet import ResNet, resnet18, resnet34, resnet50, resnet101, resnet152
from minires.models.summary import (
    LayerSummary,
    ModelSummary,
    StageSummary,
    count_parameters,
    layer_macs,
    summary,
)

_REGISTRY = {
    "resnet20": resnet20, "resnet32": resnet32, "resnet44": resnet44, "resnet56": resnet56,
    "resnet110": resnet110, "resnet1202": resnet1202,
    "plain20": plain20, "plain32": plain32, "plain44": plain44, "plain56": plain56,
    "plain110": plain110,
    "preact_resnet20": preact_resnet20, "preact_resnet56": preact_resnet56,
    "preact_resnet110": preact_resnet110,
    "highway20": highway20, "highway56": highway56,
    "resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50, "resnet101": resnet101,
    "resnet152": resnet152,
}

MODEL_NAMES = tuple(_REGISTRY)
"""Every name :func:`get_model` knows: CIFAR (resnet20..1202, plain20..110,
preact_resnet20/56/110, highway20/56) and ImageNet (resnet18..152)."""

IMAGENET_MODEL_NAMES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
"""The names that build a :class:`ResNet` (224 x 224 ImageNet layout)."""

CIFAR_MODEL_NAMES = tuple(n for n in MODEL_NAMES if n not in IMAGENET_MODEL_NAMES)
"""The names that build a :class:`CifarResNet` (they accept ``widths``)."""


def get_model(name: str, **kwargs):
    """Build a model by name, passing ``kwargs`` to its constructor.

    Example: ``get_model("resnet20", num_classes=10, in_channels=1, widths=(8, 16, 32))``
    (CIFAR models take :class:`CifarResNet`'s arguments, ImageNet ones :class:`ResNet`'s).
    Raises ValueError for an unknown name, listing :data:`MODEL_NAMES`.
    """
    key = name.lower().replace("-", "")
    if key not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}")
    return _REGISTRY[key](**kwargs)


__all__ = [name for name in dir() if not name.startswith("_")]
