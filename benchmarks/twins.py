"""The networks and training steps the training benchmarks time, minires and its torch twin.

Shared by ``bench_train.py`` (the timing, in subprocesses) and ``profile_train.py`` (where
a minires step's time goes).  One training step = zero_grad, forward, softmax
cross-entropy, backward, SGD step (lr 0.1, momentum 0.9, weight decay 1e-4) on a fixed
batch of random 3x32x32 float32 images, in train mode: the plain loop a tutorial writes
(``model(x)``, ``F.cross_entropy``, ``loss.backward()``, ``opt.step()``).  The torch twin is
written by hand (option-A shortcut = subsample + zero channels, BN, ReLU, global pool, fc;
no torchvision) with minires's module names, so minires's state dict loads into it.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

import minires
from minires import functional as F
from minires.models import get_model
from minires.optim import SGD

MODELS = ("resnet20", "resnet56", "plain20", "plain56")
DEPTHS = {"resnet20": (20, True), "resnet56": (56, True), "plain20": (20, False),
          "plain56": (56, False)}
WIDTHS = (16, 32, 64)
NUM_CLASSES = 10
LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 1e-4
PAUSE_S = 0.3  # between libraries: lets the other one's worker threads stop spinning


# ---------------------------------------------------------------------------- the torch twin


def torch_twin(torch, depth: int, residual: bool):
    """torch.nn twin of ``CifarResNet(depth, residual=residual, shortcut="A")`` with the
    same module names, so minires's state dict loads into it with strict=True."""
    nn = torch.nn

    class PadShortcut(nn.Module):  # option A: subsample, then append zero channels
        def __init__(self, extra, stride):
            super().__init__()
            self.extra, self.stride = extra, stride

        def forward(self, x):
            x = x[:, :, ::self.stride, ::self.stride]
            return nn.functional.pad(x, (0, 0, 0, 0, 0, self.extra))

    class BasicBlock(nn.Module):
        def __init__(self, in_planes, planes, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.relu = nn.ReLU()
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            reshapes = stride != 1 or in_planes != planes
            self.downsample = (PadShortcut(planes - in_planes, stride)
                               if residual and reshapes else None)

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            if residual:
                out = out + (x if self.downsample is None else self.downsample(x))
            return self.relu(out)

    class CifarNet(nn.Module):
        def __init__(self):
            super().__init__()
            n = (depth - 2) // 6
            self.conv1 = nn.Conv2d(3, WIDTHS[0], 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(WIDTHS[0])
            self.relu = nn.ReLU()
            in_planes = WIDTHS[0]
            for stage, planes in enumerate(WIDTHS, start=1):
                blocks = []
                for index in range(n):
                    blocks.append(BasicBlock(in_planes, planes,
                                             2 if stage > 1 and index == 0 else 1))
                    in_planes = planes
                setattr(self, f"layer{stage}", nn.Sequential(*blocks))
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(WIDTHS[2], NUM_CLASSES)

        def forward(self, x):
            x = self.relu(self.bn1(self.conv1(x)))
            x = self.layer3(self.layer2(self.layer1(x)))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return CifarNet()


# ---------------------------------------------------------------------------- steps


def minires_step_fn(name: str, x: np.ndarray, y: np.ndarray):
    """(model, step): step() runs one training step and returns (loss, (forward,
    backward, optimizer) wall seconds, CPU seconds of the whole process)."""
    model = get_model(name, num_classes=NUM_CLASSES, in_channels=x.shape[1], widths=WIDTHS)
    model.train()
    optimizer = SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    inputs = minires.Tensor(x)

    return model, _timed_step(optimizer.zero_grad,
                              lambda: F.cross_entropy(model(inputs), y), optimizer.step)


def torch_step_fn(torch, name: str, x: np.ndarray, y: np.ndarray, state_dict=None):
    """Same as :func:`minires_step_fn` for the torch twin (optionally loading minires's
    initial weights, so that both start from the same network)."""
    depth, residual = DEPTHS[name]
    model = torch_twin(torch, depth, residual)
    if state_dict is not None:
        model.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()},
                              strict=True)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM,
                                weight_decay=WEIGHT_DECAY)
    inputs, labels = torch.from_numpy(x), torch.from_numpy(y)

    return model, _timed_step(lambda: optimizer.zero_grad(set_to_none=True),
                              lambda: torch.nn.functional.cross_entropy(model(inputs), labels),
                              optimizer.step)


def _timed_step(zero_grad, forward_loss, optimizer_step):
    """step() -> (loss, (forward, backward, optimizer) wall seconds, process CPU seconds)
    for the plain loop: zero_grad(); loss = forward_loss(); loss.backward(); step()."""

    def step():
        c0, t0 = time.process_time(), time.perf_counter()
        zero_grad()
        loss = forward_loss()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        optimizer_step()
        t3, c3 = time.perf_counter(), time.process_time()
        return loss.item(), (t1 - t0, t2 - t1, t3 - t2), c3 - c0

    return step


def run_steps(step, warmup: int, repeats: int) -> dict:
    """Median step time and phase split (ms) over ``repeats`` steps after ``warmup`` steps;
    also the loss of the very first step.

    ``cpu_ms`` is the process's CPU time per step (all its threads).  With one thread it
    hardly depends on the machine's load, unlike the wall time: the number to compare
    between runs on a shared machine.  With more threads it also counts their spinning.
    """
    time.sleep(PAUSE_S)
    first_loss = None
    for _ in range(warmup):
        loss, _, _ = step()
        first_loss = loss if first_loss is None else first_loss
    phases, cpu = [], []
    for _ in range(repeats):
        loss, split, cpu_s = step()
        first_loss = loss if first_loss is None else first_loss
        phases.append(split)
        cpu.append(cpu_s)
    totals = [sum(p) for p in phases]
    return {"ms": 1e3 * statistics.median(totals),
            "min_ms": 1e3 * min(totals), "max_ms": 1e3 * max(totals),
            "fwd_ms": 1e3 * statistics.median(p[0] for p in phases),
            "bwd_ms": 1e3 * statistics.median(p[1] for p in phases),
            "opt_ms": 1e3 * statistics.median(p[2] for p in phases),
            "cpu_ms": 1e3 * statistics.median(cpu), "first_loss": first_loss}


def make_batch(batch: int, size: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 3, size, size), dtype=np.float32)
    y = rng.integers(0, NUM_CLASSES, batch, dtype=np.int64)
    return x, y


