"""minires models to PyTorch and back: :func:`to_torch` and :func:`from_torch`.

A minires model is a tree of Modules whose names are torchvision's (``conv1``, ``bn1``,
``layer1.0.conv1.weight``, ``downsample.0``, ``fc``), so crossing to PyTorch needs no key
mapping at all, only a twin for each node of the tree:

    minires                      torch
    Conv2d, BatchNorm2d, ...  -> torch.nn.Conv2d, torch.nn.BatchNorm2d, ... (same arguments)
    Sequential                -> torch.nn.Sequential (children '0', '1', ...)
    PadShortcut, BasicBlock,  -> torch.nn.Module twins below, whose forward() is the same
    Bottleneck, PreActBlock,     formula as minires's, line for line
    HighwayBlock, CifarResNet,
    ResNet                    -> torchvision.models.ResNet itself when torchvision imports

:func:`to_torch` walks the minires tree, builds the twin of every node with the same
settings, then copies the state dict (parameters, BN running statistics and
``num_batches_tracked``) with ``strict=True``: the keys match one-to-one or it fails.
:func:`from_torch` goes back, strictly by key and shape.

torch is imported only when one of these functions runs.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import numpy as np

from minires import backend
from minires.interop._imports import optional, require
from minires.models.blocks import BasicBlock, Bottleneck, HighwayBlock, PadShortcut, PreActBlock
from minires.models.cifar import CifarResNet
from minires.models.imagenet import ResNet
from minires.nn import layers
from minires.nn.module import Module


@functools.cache
def torch_classes() -> dict:
    """The torch twins of minires's composite modules, by minires class.

    Each twin takes the minires module's non-module settings in ``__init__`` (its layers
    are attached by :func:`to_torch`, so they are exactly the minires model's, including
    a lesioned block's Identity) and computes the same formula in ``forward``.
    """
    torch = require("torch", "minires.interop")
    nn, F = torch.nn, torch.nn.functional

    class TorchPadShortcut(nn.Module):
        """Option A: x[:, :, ::s, ::s], then (out - in) channels of zeros."""

        def __init__(self, in_planes, out_planes, stride):
            super().__init__()
            self.in_planes, self.out_planes, self.stride = in_planes, out_planes, stride

        def forward(self, x):
            if self.stride != 1:
                x = x[:, :, ::self.stride, ::self.stride]
            extra = self.out_planes - self.in_planes
            return F.pad(x, (0, 0, 0, 0, 0, extra)) if extra else x

    class TorchBasicBlock(nn.Module):
        """y = relu(bn2(conv2(relu(bn1(conv1(x))))) + scale * shortcut(x))."""

        expansion = 1

        def __init__(self, residual, shortcut_scale):
            super().__init__()
            self.residual, self.shortcut_scale = residual, shortcut_scale
            self.downsample = None

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            if self.residual:
                identity = x if self.downsample is None else self.downsample(x)
                if self.shortcut_scale != 1.0:
                    identity = identity * self.shortcut_scale
                out = out + identity
            return self.relu(out)

    class TorchBottleneck(nn.Module):
        """y = relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x))."""

        expansion = 4

        def __init__(self, residual):
            super().__init__()
            self.residual = residual
            self.downsample = None

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            if self.residual:
                out = out + (x if self.downsample is None else self.downsample(x))
            return self.relu(out)

    class TorchPreActBlock(nn.Module):
        """y = conv2(relu(bn2(conv1(relu(bn1(x)))))) + shortcut(x); B projects relu(bn1(x))."""

        def __init__(self, residual, shortcut_type):
            super().__init__()
            self.residual, self.shortcut_type = residual, shortcut_type
            self.downsample = None

        def forward(self, x):
            pre = self.relu(self.bn1(x))
            out = self.conv2(self.relu(self.bn2(self.conv1(pre))))
            if not self.residual:
                return out
            if self.downsample is None:
                return out + x
            return out + self.downsample(pre if self.shortcut_type == "B" else x)

    class TorchHighwayBlock(nn.Module):
        """y = H(x) T(x) + C(x) (1 - T(x)), T = sigmoid(gate(x))."""

        def __init__(self):
            super().__init__()
            self.downsample = None
            self.last_gate_mean = None

        def forward(self, x):
            h = self.relu(self.bn1(self.conv1(x)))
            h = self.relu(self.bn2(self.conv2(h)))
            t = torch.sigmoid(self.gate(x))
            self.last_gate_mean = float(t.detach().mean())
            carry = x if self.downsample is None else self.downsample(x)
            return h * t + carry * (1.0 - t)

    class TorchCifarResNet(nn.Module):
        """conv1 (bn1 relu) layer1-3 (bn_final relu for pre-activation) avgpool fc."""

        def __init__(self, block_type):
            super().__init__()
            self.block_type = block_type

        def forward(self, x):
            x = self.conv1(x)
            if self.block_type != "preact":
                x = self.relu(self.bn1(x))
            x = self.layer3(self.layer2(self.layer1(x)))
            if self.block_type == "preact":
                x = self.relu(self.bn_final(x))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    class TorchResNet(nn.Module):
        """torchvision's ResNet forward: conv1 bn1 relu maxpool layer1-4 avgpool fc."""

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return {
        PadShortcut: (TorchPadShortcut, ("in_planes", "out_planes", "stride")),
        BasicBlock: (TorchBasicBlock, ("residual", "shortcut_scale")),
        Bottleneck: (TorchBottleneck, ("residual",)),
        PreActBlock: (TorchPreActBlock, ("residual", "shortcut_type")),
        HighwayBlock: (TorchHighwayBlock, ()),
        CifarResNet: (TorchCifarResNet, ("block_type",)),
        ResNet: (TorchResNet, ()),
    }


def _torch_layer(nn, module: Module):
    """The torch.nn twin of a minires layer (no children), or None for an unknown type."""
    kind = type(module)
    if kind is layers.Conv2d:
        return nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size,
                         module.stride, module.padding, module.dilation,
                         bias=module.bias is not None)
    if kind in (layers.BatchNorm1d, layers.BatchNorm2d):
        twin = nn.BatchNorm1d if kind is layers.BatchNorm1d else nn.BatchNorm2d
        return twin(module.num_features, module.eps, module.momentum, module.affine,
                    module.track_running_stats)
    if kind is layers.Linear:
        return nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
    if kind is layers.MaxPool2d:
        return nn.MaxPool2d(module.kernel_size, module.stride, module.padding)
    if kind is layers.AvgPool2d:
        return nn.AvgPool2d(module.kernel_size, module.stride, module.padding,
                            count_include_pad=module.count_include_pad)
    if kind is layers.AdaptiveAvgPool2d:
        return nn.AdaptiveAvgPool2d(module.output_size)
    if kind is layers.Flatten:
        return nn.Flatten(module.start_dim, module.end_dim)
    if kind is layers.Dropout:
        return nn.Dropout(module.p)
    simple = {layers.ReLU: nn.ReLU, layers.Sigmoid: nn.Sigmoid, layers.Tanh: nn.Tanh,
              layers.Identity: nn.Identity, layers.Sequential: nn.Sequential}
    return simple[kind]() if kind in simple else None


def _convert(nn, module: Module, name: str = "model"):
    """The torch twin of ``module`` and, recursively, of all its children."""
    twin = _torch_layer(nn, module)
    if twin is None:
        classes = torch_classes()
        if type(module) not in classes:
            known = sorted(c.__name__ for c in classes) + ["the layers of minires.nn"]
            raise TypeError(f"to_torch: no PyTorch twin for {name} ({type(module).__name__}); "
                            f"supported: {', '.join(known)}")
        cls, settings = classes[type(module)]
        twin = cls(**{key: getattr(module, key) for key in settings})
    for child_name, child in module.named_children():
        setattr(twin, child_name, _convert(nn, child, f"{name}.{child_name}"))
    return twin


def _torchvision_resnet(model: ResNet):
    """torchvision's own ResNet for ``model``, or (None, reason) where it cannot be used."""
    torchvision = optional("torchvision")
    if torchvision is None:
        return None, "torchvision is not installed (or does not import beside this torch)"
    units = [unit for _, unit in model.blocks()]
    if not model.residual or any(getattr(u, "shortcut_type", None) != "B" for u in units):
        return None, "torchvision's ResNet has option-B shortcuts only"
    if any(getattr(u, "stride_in_1x1", False) for u in units):
        return None, "torchvision's ResNet puts the stride on the 3x3 (v1.5)"
    if model.conv1.in_channels != 3:
        return None, "torchvision's ResNet takes 3 input channels"
    tv = torchvision.models.resnet
    block = tv.Bottleneck if isinstance(units[0], Bottleneck) else tv.BasicBlock
    return tv.ResNet(block, list(model.layers), num_classes=model.fc.out_features), ""


def torch_dtype(torch, model: Module):
    """The torch dtype of ``model``'s floating parameters (float32 by default)."""
    for p in model.parameters():
        return getattr(torch, np.dtype(p.dtype).name)
    return torch.get_default_dtype()


def to_torch(model: Module, use_torchvision: bool | None = None):
    """A ``torch.nn.Module`` computing what ``model`` computes, with the same state dict.

    Every model :mod:`minires.models` builds is supported: CIFAR ResNets and plain nets at
    any depth, shortcuts A/B/C, pre-activation, highway, lesioned models, and the ImageNet
    ResNets.  The twin has the same state-dict keys and shapes (parameters, running_mean,
    running_var, num_batches_tracked as int64), the same dtype (float32 or float64), the
    same train/eval mode per module, and lives on the CPU (move it with ``.to("cuda")``).

    Args:
        model: a minires Module.
        use_torchvision: for an ImageNet :class:`~minires.models.ResNet`, use
            ``torchvision.models.ResNet`` itself.  None (default): when torchvision imports
            and the model fits its class (option B, v1.5, 3 input channels); True: require
            it (ValueError/ImportError saying why not); False: never.

    Raises ImportError (with the install command) without torch, TypeError for a module
    type without a twin.
    """
    torch = require("torch", "minires.interop.to_torch")
    if not isinstance(model, Module):
        raise TypeError(f"to_torch expects a minires Module, got {type(model).__name__}")
    twin = None
    if isinstance(model, ResNet) and use_torchvision is not False:
        twin, reason = _torchvision_resnet(model)
        if twin is None and use_torchvision:
            if optional("torchvision") is None:
                require("torchvision", "to_torch(use_torchvision=True)")
            raise ValueError(f"to_torch(use_torchvision=True): {reason}")
    if twin is None:
        twin = _convert(torch.nn, model)
    twin.to(torch_dtype(torch, model))
    state = {key: torch.from_numpy(np.array(value, order="C"))
             for key, value in model.state_dict().items()}
    twin.load_state_dict(state, strict=True)
    modes = dict(model.named_modules())
    for name, module in twin.named_modules():  # torchvision's twin has no minires "relu" etc.
        if name in modes:
            module.training = modes[name].training
        else:
            module.training = model.training
    return twin


def _to_numpy(value, key: str) -> np.ndarray:
    """A NumPy copy of a torch tensor, NumPy or CuPy array."""
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach().cpu()
        if str(value.dtype) in ("torch.bfloat16",):  # NumPy has no bfloat16
            value = value.float()
        return value.numpy().copy()
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return np.array(backend.to_numpy(value))
    raise TypeError(f"from_torch: {key!r} is a {type(value).__name__}, not a tensor or array")


def from_torch(source, model: Module) -> Module:
    """Copy a torch module's (or state dict's) weights into the minires ``model``; returns it.

    ``source``: a ``torch.nn.Module`` (a DistributedDataParallel / DataParallel wrapper is
    unwrapped to its ``.module``) or a mapping {key: tensor or array}.  Strict: the keys
    must be exactly ``model.state_dict()``'s and every shape must match, otherwise a
    ValueError lists the missing, unexpected and mismatched keys and nothing is changed.
    Values are cast to the model's dtypes and devices (``num_batches_tracked`` stays int64).
    """
    if not isinstance(model, Module):
        raise TypeError(f"from_torch: model must be a minires Module, got {type(model).__name__}")
    if hasattr(source, "module") and hasattr(source, "state_dict") and \
            type(source).__name__ in ("DistributedDataParallel", "DataParallel"):
        source = source.module
    if hasattr(source, "state_dict") and callable(source.state_dict):
        source = source.state_dict()
    if not isinstance(source, Mapping):
        raise TypeError(f"from_torch expects a torch.nn.Module or a state dict, got "
                        f"{type(source).__name__}")
    state = {str(key): _to_numpy(value, key) for key, value in source.items()}
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k}: source {tuple(state[k].shape)}, model {tuple(own[k].shape)}"
                  for k in own if k in state and tuple(state[k].shape) != own[k].shape]
    if missing or unexpected or mismatched:
        lines = [f"from_torch: the weights do not fit {type(model).__name__} "
                 f"({len(own)} keys, {len(state)} given)"]
        for title, keys in (("missing", missing), ("unexpected", unexpected),
                            ("shape mismatch", mismatched)):
            if keys:
                shown = ", ".join(keys[:20]) + (f", ... ({len(keys)} in all)"
                                                 if len(keys) > 20 else "")
                lines.append(f"  {title}: {shown}")
        if unexpected and all(k.startswith("module.") for k in unexpected):
            lines.append("  (keys start with 'module.': a DistributedDataParallel state dict; "
                         "pass ddp.module or strip the prefix)")
        raise ValueError("\n".join(lines))
    model.load_state_dict(state, strict=True)
    return model
