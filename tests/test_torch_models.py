"""Cross-check the models against hand-built PyTorch twins (no torchvision needed).

Each twin is written here in plain ``torch.nn`` with torchvision's names.  The minires
model's state dict (parameters, BN running statistics, ``num_batches_tracked``) is loaded
into the twin with ``strict=True``, which proves the keys map one-to-one; then logits, every
parameter gradient and the updated running statistics are compared in float64, in train
mode and in eval mode.
"""

import numpy as np
import pytest

import minires
from minires.models import Bottleneck, ResNet, resnet18, resnet20

RTOL = 1e-8


def _twins(torch):
    """torch.nn twins of CifarResNet (option A) and torchvision's ResNet."""
    nn, F = torch.nn, torch.nn.functional

    class PadShortcut(nn.Module):  # option A: subsample, append zero channels
        def __init__(self, extra):
            super().__init__()
            self.extra = extra

        def forward(self, x):
            return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 0, self.extra))

    class BasicBlock(nn.Module):
        expansion = 1

        def __init__(self, in_planes, planes, stride, option):
            super().__init__()
            self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.relu = nn.ReLU()
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.downsample = None
            if stride != 1 or in_planes != planes:
                self.downsample = PadShortcut(planes - in_planes) if option == "A" else \
                    nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                  nn.BatchNorm2d(planes))

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            identity = x if self.downsample is None else self.downsample(x)
            return self.relu(out + identity)

    class TorchBottleneck(nn.Module):  # torchvision v1.5: stride on the 3x3
        expansion = 4

        def __init__(self, in_planes, planes, stride, option):
            super().__init__()
            self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(planes * 4)
            self.relu = nn.ReLU()
            self.downsample = None
            if stride != 1 or in_planes != planes * 4:
                self.downsample = nn.Sequential(
                    nn.Conv2d(in_planes, planes * 4, 1, stride, bias=False),
                    nn.BatchNorm2d(planes * 4))

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            identity = x if self.downsample is None else self.downsample(x)
            return self.relu(out + identity)

    def make_stages(model, block, widths, counts, first_stride, option, in_planes):
        for stage, (planes, count) in enumerate(zip(widths, counts, strict=True), start=1):
            blocks = []
            for index in range(count):
                stride = (first_stride if stage == 1 else 2) if index == 0 else 1
                blocks.append(block(in_planes, planes, stride, option))
                in_planes = planes * block.expansion
            setattr(model, f"layer{stage}", nn.Sequential(*blocks))
        return in_planes

    class CifarResNet(nn.Module):
        def __init__(self, n, widths=(16, 32, 64), num_classes=10):
            super().__init__()
            self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(widths[0])
            self.relu = nn.ReLU()
            out = make_stages(self, BasicBlock, widths, (n, n, n), 1, "A", widths[0])
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(out, num_classes)

        def forward(self, x):
            x = self.relu(self.bn1(self.conv1(x)))
            x = self.layer3(self.layer2(self.layer1(x)))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    class TorchResNet(nn.Module):
        def __init__(self, block, layers, num_classes=1000):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU()
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            out = make_stages(self, block, (64, 128, 256, 512), layers, 1, "B", 64)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(out, num_classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return {"cifar": CifarResNet, "resnet": TorchResNet, "basic": BasicBlock,
            "bottleneck": TorchBottleneck}


def _randomise_batch_norm(model, rng):
    """Non-trivial BN parameters and running statistics, so eval mode tests something."""
    for module in model.modules():
        if type(module).__name__ == "BatchNorm2d":
            c = module.num_features
            module.weight.data[...] = rng.uniform(0.5, 1.5, c)
            module.bias.data[...] = rng.normal(0, 0.2, c)
            module.running_mean.data[...] = rng.normal(0, 0.2, c)
            module.running_var.data[...] = rng.uniform(0.5, 2.0, c)
            module.num_batches_tracked.data[...] = 3


def _relative_error(a, b) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _compare(torch, ours, twin, x, rng):
    """Copy ours into twin; compare logits, gradients and running stats in both modes."""
    state = ours.state_dict()
    twin_keys = set(twin.state_dict())
    assert set(state) == twin_keys, (set(state) ^ twin_keys)
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    for name, value in twin.state_dict().items():
        assert tuple(value.shape) == state[name].shape, name

    for mode in ("train", "eval"):
        ours.train(mode == "train")
        twin.train(mode == "train")
        ours.zero_grad()
        twin.zero_grad(set_to_none=True)
        x_ours = minires.tensor(x, requires_grad=True)
        x_twin = torch.tensor(x, requires_grad=True)
        logits, logits_twin = ours(x_ours), twin(x_twin)
        assert _relative_error(logits.numpy(), logits_twin.detach().numpy()) < RTOL, mode
        g = rng.standard_normal(logits.shape)
        logits.backward(g)
        logits_twin.backward(torch.tensor(g))
        assert _relative_error(x_ours.grad.numpy(), x_twin.grad.numpy()) < RTOL, mode
        twin_params = dict(twin.named_parameters())
        assert set(twin_params) == {name for name, _ in ours.named_parameters()}
        for name, p in ours.named_parameters():
            error = _relative_error(p.grad.numpy(), twin_params[name].grad.numpy())
            assert error < RTOL, f"{mode}: gradient of {name}: relative error {error:.2e}"
        twin_state = twin.state_dict()
        for name, value in ours.state_dict().items():  # running stats updated alike
            np.testing.assert_allclose(value, twin_state[name].numpy(), rtol=1e-10,
                                       atol=1e-12, err_msg=f"{mode}: {name}")


def test_cifar_resnet20_option_a_matches_torch(torch):
    rng = np.random.default_rng(0)
    with minires.default_dtype(np.float64):
        ours = resnet20()
    _randomise_batch_norm(ours, rng)
    twin = _twins(torch)["cifar"](n=3)
    x = rng.standard_normal((4, 3, 32, 32))
    _compare(torch, ours, twin, x, rng)


def test_torchvision_resnet18_matches_torch(torch):
    rng = np.random.default_rng(1)
    with minires.default_dtype(np.float64):
        ours = resnet18()
    _randomise_batch_norm(ours, rng)
    twins = _twins(torch)
    twin = twins["resnet"](twins["basic"], (2, 2, 2, 2))
    x = rng.standard_normal((2, 3, 64, 64))
    _compare(torch, ours, twin, x, rng)


@pytest.mark.parametrize("layers", [(1, 1, 1, 1)])
def test_torchvision_bottleneck_resnet_matches_torch(torch, layers):
    rng = np.random.default_rng(2)
    with minires.default_dtype(np.float64):
        ours = ResNet(Bottleneck, layers, num_classes=10)
    _randomise_batch_norm(ours, rng)
    twins = _twins(torch)
    twin = twins["resnet"](twins["bottleneck"], layers, num_classes=10)
    x = rng.standard_normal((2, 3, 32, 32))
    _compare(torch, ours, twin, x, rng)
