"""Time a full training step of the CIFAR ResNets and plain nets, minires vs PyTorch CPU.

    python benchmarks/bench_train.py [--models resnet20,plain20] [--repeats N] [--batch B]
                                     [--profile] [--json out.json]

One training step = zero_grad, forward, softmax cross-entropy, backward, SGD step (lr 0.1,
momentum 0.9, weight decay 1e-4) on a fixed batch of random 3x32x32 float32 images, in
train mode (BatchNorm with batch statistics).  For every model the script builds the
minires network with :func:`minires.models.get_model` and a PyTorch twin written by hand
below (option-A shortcut = subsample + zero channels, BN, ReLU, global pool, fc; no
torchvision), copies minires's initial weights into the twin and checks that both give the
same first loss (so the two really are the same network), then times ``--repeats`` steps of
each after ``--warmup`` steps, in the same process and with the same thread count.  Prints
the NumPy version and BLAS, the measured float32 matmul throughput, the load average, and
one row per model: median wall ms/step (with its forward / backward / optimizer split),
the process's CPU ms/step, images/s, the same for torch, and the ratios ours / torch of
wall and of CPU time.  On a shared machine compare CPU times: with one BLAS thread they
hardly depend on what else runs, while wall times do.

``--profile`` breaks a ResNet-20 step (``--profile-model``) into GEMM (the matrix products
inside the convolutions and the fc layer), im2col/col2im copies, the convolutions'
NCHW <-> NHWC layout copies, BatchNorm, ReLU, other ops (residual adds, option-A
slicing/padding, pooling, loss), gradient accumulation, the optimizer, and the rest:
Python/autograd overhead (Module and Function calls, graph building and traversal).  It
does so by wrapping minires's kernel functions with timers, inside this script only
(exclusive times, so nested calls are not counted twice), and adds the step time at a tiny
batch (the per-step floor of Python and NumPy call overhead), the top Python functions by
own time (cProfile) and torch's top operators (torch.profiler) for comparison.
``--profile-clock cpu`` times the categories by process CPU time instead of wall time.

Thread count: NumPy's BLAS uses one thread per core unless OPENBLAS_NUM_THREADS (or
OMP_NUM_THREADS) says otherwise, and torch is set to the same number.  On a loaded machine
(load average above the core count) multithreaded BLAS can be many times slower than one
thread; compare ``OPENBLAS_NUM_THREADS=1 python benchmarks/bench_train.py``.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import json
import os
import platform
import pstats
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for path in (ROOT, HERE):  # run as a script from a checkout; share bench_kernels' helpers
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from bench_kernels import MATMUL_SIZE, blas_info, import_torch, measure_matmul  # noqa: E402

import minires  # noqa: E402
from minires import autograd  # noqa: E402
from minires import functional as F  # noqa: E402
from minires.kernels import activation as act_kernels  # noqa: E402
from minires.kernels import conv as conv_kernels  # noqa: E402
from minires.kernels import loss as loss_kernels  # noqa: E402
from minires.kernels import norm as norm_kernels  # noqa: E402
from minires.kernels import pool as pool_kernels  # noqa: E402
from minires.models import get_model  # noqa: E402
from minires.optim import SGD  # noqa: E402

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

    def step():
        c0, t0 = time.process_time(), time.perf_counter()
        optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs), y)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        optimizer.step()
        t3, c3 = time.perf_counter(), time.process_time()
        return loss.item(), (t1 - t0, t2 - t1, t3 - t2), c3 - c0

    return model, step


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

    def step():
        c0, t0 = time.process_time(), time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(inputs), labels)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        optimizer.step()
        t3, c3 = time.perf_counter(), time.process_time()
        return loss.item(), (t1 - t0, t2 - t1, t3 - t2), c3 - c0

    return model, step


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


def bench_model(name, batch, warmup, repeats, torch) -> dict:
    x, y = make_batch(batch)
    model, step = minires_step_fn(name, x, y)
    initial = model.state_dict()  # before any step: the twin starts from these weights
    row = {"model": name, "batch": batch, "ours": run_steps(step, warmup, repeats)}
    row["ours"]["images_per_s"] = 1e3 * batch / row["ours"]["ms"]
    del model, step
    if torch is not None:
        _, step = torch_step_fn(torch, name, x, y, initial)
        row["torch"] = run_steps(step, warmup, repeats)
        row["torch"]["images_per_s"] = 1e3 * batch / row["torch"]["ms"]
        row["ratio"] = row["ours"]["ms"] / row["torch"]["ms"]
        ours_loss, torch_loss = row["ours"]["first_loss"], row["torch"]["first_loss"]
        row["same_first_loss"] = bool(abs(ours_loss - torch_loss) <= 1e-4 * abs(torch_loss))
        if not row["same_first_loss"]:
            print(f"WARNING: {name}: first loss {ours_loss:.6f} (minires) != {torch_loss:.6f} "
                  "(torch twin): the twin is not the same network")
    return row


# ---------------------------------------------------------------------------- profile


class _Timers:
    """Exclusive ("self") wall time per category of wrapped functions: time spent in a
    wrapped function minus the time spent in wrapped functions it called."""

    def __init__(self, clock=time.perf_counter):
        self.clock = clock
        self.self_s = defaultdict(float)
        self.calls = defaultdict(int)
        self._children = []  # per open call: time of wrapped calls made inside it

    def wrap(self, category: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            self._children.append(0.0)
            start = self.clock()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = self.clock() - start
                children = self._children.pop()
                self.self_s[category] += elapsed - children
                self.calls[category] += 1
                if self._children:
                    self._children[-1] += elapsed

        return timed

    def reset(self):
        self.self_s.clear()
        self.calls.clear()


GEMM = "GEMM (conv + fc matrix products)"
IM2COL = "im2col / col2im copies"
LAYOUT = "conv: NCHW<->NHWC copies, other"
BATCHNORM = "BatchNorm (fwd + bwd)"
RELU = "ReLU (fwd + bwd)"
OTHER_OPS = "other ops: add, pad, slice, pool, loss"
ACCUMULATE = "autograd: leaf-gradient copies"
OPTIMIZER = "optimizer (zero_grad + SGD step)"
OVERHEAD = "Python/autograd overhead (rest)"
GLUE = "_glue"  # a Function's own code around a wrapped kernel: counted as overhead
CATEGORIES = (GEMM, IM2COL, LAYOUT, BATCHNORM, RELU, OTHER_OPS, ACCUMULATE, OPTIMIZER,
              OVERHEAD)


class _Patches:
    """setattr that remembers the original values, undone by :meth:`restore`."""

    def __init__(self):
        self._saved = []

    def set(self, owner, name, value):
        self._saved.append((owner, name, owner.__dict__[name]))
        setattr(owner, name, value)

    def restore(self):
        while self._saved:
            owner, name, value = self._saved.pop()
            setattr(owner, name, value)


def _gemm_array_type(timers: _Timers):
    """An ndarray subclass whose matrix products are timed as GEMM.

    conv.py multiplies the im2col columns and the weight matrix with ``xp.matmul(...)`` and
    with ``@``; both reach ``__array_ufunc__`` when an operand is of this type.  Every ufunc
    result is returned as a plain ndarray, so the type does not spread beyond the kernel.
    """

    def plain(value):
        return value.view(np.ndarray) if isinstance(value, np.ndarray) else value

    class GemmTimed(np.ndarray):
        def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
            inputs = tuple(plain(v) for v in inputs)
            if "out" in kwargs:
                kwargs["out"] = tuple(plain(v) for v in kwargs["out"])
            call = getattr(ufunc, method)
            if ufunc is np.matmul and method == "__call__":
                call = timers.wrap(GEMM, call)
            return call(*inputs, **kwargs)

    return GemmTimed


def instrument(timers: _Timers) -> _Patches:
    """Wrap minires's kernels and every Function's forward/backward with timers."""
    patches = _Patches()
    gemm_type = _gemm_array_type(timers)

    def as_gemm(category, fn):
        timed = timers.wrap(category, fn)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            return timed(*args, **kwargs).view(gemm_type)

        return wrapper

    # Convolution: the kernel's own code (layout copies, grad bias), the column copies, and
    # (through the array type) the matrix products of columns and weight matrices.
    for name in ("conv2d_forward", "conv2d_backward"):
        patches.set(conv_kernels, name, timers.wrap(LAYOUT, getattr(conv_kernels, name)))
    patches.set(conv_kernels, "col2im", timers.wrap(IM2COL, conv_kernels.col2im))
    patches.set(conv_kernels._ChunkIm2col, "__call__",
                as_gemm(IM2COL, conv_kernels._ChunkIm2col.__call__))
    patches.set(conv_kernels, "weight_to_matrix",
                as_gemm(LAYOUT, conv_kernels.weight_to_matrix))
    for name in ("linear_forward", "linear_backward"):
        patches.set(act_kernels, name, timers.wrap(GEMM, getattr(act_kernels, name)))
    for name in ("batch_norm_forward", "batch_norm_backward"):
        patches.set(norm_kernels, name, timers.wrap(BATCHNORM, getattr(norm_kernels, name)))
    for name in ("relu_forward", "relu_backward"):
        patches.set(act_kernels, name, timers.wrap(RELU, getattr(act_kernels, name)))
    for name in ("softmax_cross_entropy_forward", "softmax_cross_entropy_backward"):
        patches.set(loss_kernels, name, timers.wrap(OTHER_OPS, getattr(loss_kernels, name)))
    for name in ("global_avg_pool_forward", "global_avg_pool_backward"):
        patches.set(pool_kernels, name, timers.wrap(OTHER_OPS, getattr(pool_kernels, name)))
    # Every Function's forward/backward: the code around a wrapped kernel is glue (counted
    # as overhead); the others (Add, GetItem, Pad, Reshape, ...) do their array work inline.
    kernel_functions = {F.Conv2d, F.BatchNorm, F.Linear, F.CrossEntropy, F.GlobalAvgPool,
                        minires.ops.ReLU}
    pending, seen = [autograd.Function], set()
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            if sub in seen:
                continue
            seen.add(sub)
            pending.append(sub)
            category = GLUE if sub in kernel_functions else OTHER_OPS
            for method in ("forward", "backward"):
                if method in sub.__dict__:
                    patches.set(sub, method, timers.wrap(category, sub.__dict__[method]))
    patches.set(autograd, "_accumulate", timers.wrap(ACCUMULATE, autograd._accumulate))
    return patches


def profile_minires(name, batch, warmup, repeats, clock_name="wall") -> dict:
    """Per-category exclusive time of a training step, medians over ``repeats`` steps.

    Plain and instrumented steps alternate, so that a change in the machine's load affects
    both alike.  ``clock_name`` "cpu" measures the process's CPU time instead of wall time
    (robust to other processes' load with one BLAS thread)."""
    clock = time.process_time if clock_name == "cpu" else time.perf_counter
    x, y = make_batch(batch)
    model = get_model(name, num_classes=NUM_CLASSES, in_channels=3, widths=WIDTHS)
    model.train()
    optimizer = SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    inputs = minires.Tensor(x)

    timers = _Timers(clock)
    zero_grad, sgd_step = optimizer.zero_grad, optimizer.step
    timed_zero_grad = timers.wrap(OPTIMIZER, zero_grad)
    timed_sgd_step = timers.wrap(OPTIMIZER, sgd_step)

    def step(timed=False):
        (timed_zero_grad if timed else zero_grad)()
        F.cross_entropy(model(inputs), y).backward()
        (timed_sgd_step if timed else sgd_step)()

    time.sleep(PAUSE_S)
    for _ in range(warmup):
        step()
    plain_s, per_step = [], []
    for _ in range(repeats):
        start = clock()
        step()
        plain_s.append(clock() - start)
        patches = instrument(timers)
        try:
            timers.reset()
            start = clock()
            step(timed=True)
            total = clock() - start
        finally:
            patches.restore()
        shares = {c: timers.self_s.get(c, 0.0) for c in CATEGORIES if c != OVERHEAD}
        shares[OVERHEAD] = total - sum(shares.values())
        per_step.append((total, shares, dict(timers.calls)))

    total_ms = 1e3 * statistics.median(t for t, _, _ in per_step)
    rows = [{"category": c, "ms": 1e3 * statistics.median(s[c] for _, s, _ in per_step)}
            for c in CATEGORIES]
    for r in rows:
        r["percent"] = 100 * r["ms"] / total_ms
    calls = per_step[-1][2]
    return {"model": name, "batch": batch, "clock": clock_name,
            "uninstrumented_ms": 1e3 * statistics.median(plain_s),
            "instrumented_ms": total_ms, "rows": rows,
            "wrapped_calls_per_step": int(sum(calls.values()))}


def floor_ms(step, repeats) -> float:
    time.sleep(PAUSE_S)
    step()
    times = []
    for _ in range(max(repeats, 5)):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def tiny_step_floor(name, repeats, torch) -> dict:
    """Step time at batch 2 on 8x8 images: almost no arithmetic, the same number of layers
    and ops, so what remains is the per-step cost of Python, NumPy and autograd calls."""
    x, y = make_batch(2, size=8)
    _, step = minires_step_fn(name, x, y)
    result = {"batch": 2, "size": 8, "ours_ms": floor_ms(step, repeats)}
    if torch is not None:
        _, step = torch_step_fn(torch, name, x, y)
        result["torch_ms"] = floor_ms(step, repeats)
    return result


def cprofile_top(name, batch, top: int = 15) -> list:
    """Top functions by own time over one step under cProfile (adds its own overhead)."""
    x, y = make_batch(batch)
    _, step = minires_step_fn(name, x, y)
    step()
    profiler = cProfile.Profile()
    profiler.enable()
    step()
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    entries = []
    for (filename, line, function), (_, ncalls, tottime, cumtime, _) in stats.stats.items():
        where = f"{Path(filename).name}:{line}" if line else "builtin"
        entries.append({"function": f"{function} ({where})", "calls": ncalls,
                        "own_ms": 1e3 * tottime, "cum_ms": 1e3 * cumtime})
    entries.sort(key=lambda e: -e["own_ms"])
    total = sum(e["own_ms"] for e in entries)
    for e in entries:
        e["percent"] = 100 * e["own_ms"] / total
    return entries[:top]


def torch_profile_top(torch, name, batch, top: int = 12) -> list:
    """torch's operators by self CPU time over one step (torch.profiler)."""
    x, y = make_batch(batch)
    _, step = torch_step_fn(torch, name, x, y)
    time.sleep(PAUSE_S)
    step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step()
    events = [(e.key, e.count, e.self_cpu_time_total / 1e3) for e in prof.key_averages()]
    total = sum(ms for _, _, ms in events)
    events.sort(key=lambda e: -e[2])
    return [{"op": k, "calls": c, "self_ms": ms, "percent": 100 * ms / total}
            for k, c, ms in events[:top]]


# ---------------------------------------------------------------------------- report


def print_table(rows) -> None:
    header = (f"{'model':<10}{'ms/step':>8}{'fwd/bwd/opt':>17}{'cpu ms':>8}{'img/s':>7}"
              f"{'torch ms':>10}{'fwd/bwd/opt':>17}{'cpu ms':>8}{'img/s':>7}"
              f"{'ours/torch':>11}{'(cpu)':>7}")
    print(header)
    print("-" * len(header))

    def cells(o, width):
        return (f"{o['ms']:>{width}.0f}{o['fwd_ms']:>7.0f}/{o['bwd_ms']:>5.0f}/"
                f"{o['opt_ms']:>3.0f}{o['cpu_ms']:>8.0f}{o['images_per_s']:>7.0f}")

    for r in rows:
        line = f"{r['model']:<10}{cells(r['ours'], 8)}"
        if "torch" in r:
            line += (f"{cells(r['torch'], 10)}{r['ratio']:>11.2f}"
                     f"{r['ours']['cpu_ms'] / r['torch']['cpu_ms']:>7.2f}")
        print(line)
    print("(ms: median wall time per step; cpu ms: the process's CPU time per step, all "
          "threads)")


def print_profile(profile, floor, cprof, tprof) -> None:
    print(f"\nprofile of one {profile['model']} step, batch {profile['batch']} "
          f"(exclusive {profile['clock']} times, medians): "
          f"{profile['instrumented_ms']:.0f} ms instrumented, "
          f"{profile['uninstrumented_ms']:.0f} ms without timers, "
          f"{profile['wrapped_calls_per_step']} timed calls")
    header = f"{'category':<40}{'ms':>9}{'%':>7}"
    print(header)
    print("-" * len(header))
    for r in profile["rows"]:
        print(f"{r['category']:<40}{r['ms']:>9.1f}{r['percent']:>6.1f}%")
    line = f"\nper-step floor (batch 2, 8x8 images): minires {floor['ours_ms']:.1f} ms"
    if "torch_ms" in floor:
        line += f", torch {floor['torch_ms']:.1f} ms"
    print(line)
    print("\ntop functions by own time, one step under cProfile:")
    for e in cprof:
        print(f"  {e['own_ms']:>8.1f} ms {e['percent']:>5.1f}% {e['calls']:>6} calls  "
              f"{e['function']}")
    if tprof:
        print("\ntorch: top operators by self CPU time, one step (torch.profiler):")
        for e in tprof:
            print(f"  {e['self_ms']:>8.1f} ms {e['percent']:>5.1f}% {e['calls']:>6} calls  "
                  f"{e['op']}")


def load_average() -> list | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"comma-separated, from {', '.join(MODELS)}")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per model (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--profile", action="store_true",
                        help="also break one step of --profile-model into categories")
    parser.add_argument("--profile-model", default="resnet20", choices=MODELS)
    parser.add_argument("--profile-clock", default="wall", choices=("wall", "cpu"),
                        help="time the profile's categories by wall or process CPU time")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch twins")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    if args.repeats < 1 or args.warmup < 0 or args.batch < 2:
        parser.error("need --repeats >= 1, --warmup >= 0 and --batch >= 2")

    blas = blas_info()
    torch = None if args.no_torch else import_torch(blas["threads"])
    print(f"python {platform.python_version()}, numpy {np.__version__}, "
          f"BLAS {blas['name']} {blas['version']} ({blas['threads']} threads, via "
          f"{blas['source']}), {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs")
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads)" if torch else
          "torch not used: no comparison column")
    load_before = load_average()
    if load_before:
        print(f"load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}"
              + (" (other processes share the CPU: timings will be noisy)"
                 if load_before[0] > 1.0 else ""))
    matmul = measure_matmul(5, np.random.default_rng(0))
    print(f"float32 matmul {MATMUL_SIZE}^3: {matmul['ms']:.2f} ms = "
          f"{matmul['gflops']:.1f} GFLOP/s")
    print(f"training step: batch {args.batch}, 3x32x32 float32, SGD lr {LR} momentum "
          f"{MOMENTUM} wd {WEIGHT_DECAY}; median of {args.repeats} steps after {args.warmup} "
          "warm-up\n")

    rows = []
    for name in models:
        rows.append(bench_model(name, args.batch, args.warmup, args.repeats, torch))
        print(f"  {name}: {rows[-1]['ours']['ms']:.0f} ms"
              + (f" vs torch {rows[-1]['torch']['ms']:.0f} ms" if torch else ""), flush=True)
    print()
    print_table(rows)
    checked = [r for r in rows if "same_first_loss" in r]
    if checked:
        same = all(r["same_first_loss"] for r in checked)
        print(f"(torch twins loaded with minires's initial weights: first-step losses "
              f"{'agree' if same else 'DIFFER'} to 1e-4)")

    result = {"numpy": np.__version__, "blas": blas, "matmul": matmul,
              "torch": torch.__version__ if torch else None, "batch": args.batch,
              "repeats": args.repeats, "warmup": args.warmup, "load_before": load_before,
              "rows": rows}
    if args.profile:
        profile = profile_minires(args.profile_model, args.batch, args.warmup, args.repeats,
                                  args.profile_clock)
        floor = tiny_step_floor(args.profile_model, args.repeats, torch)
        cprof = cprofile_top(args.profile_model, args.batch)
        tprof = torch_profile_top(torch, args.profile_model, args.batch) if torch else []
        print_profile(profile, floor, cprof, tprof)
        result.update(profile=profile, floor=floor, cprofile=cprof, torch_profile=tprof)
    result["load_after"] = load_average()
    if result["load_after"]:
        print(f"\nload average at the end: {result['load_after'][0]:.2f}")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
