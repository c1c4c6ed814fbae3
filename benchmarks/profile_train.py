"""Where a minires training step's time goes, next to torch's operators.

    python benchmarks/profile_train.py [--model resnet20] [--batch 128] [--repeats 3]
                                       [--clock wall|cpu] [--json out.json]

Breaks a step into GEMM (the matrix products inside the convolutions and the fc layer),
im2col/col2im copies, the convolutions' NCHW <-> NHWC layout copies, BatchNorm, ReLU, other
ops (residual adds, option-A slicing/padding, pooling, loss), gradient accumulation, the
optimizer, and the rest: Python/autograd overhead (Module and Function calls, graph
building and traversal).  It does so by wrapping minires's kernel functions with timers,
inside this script only (exclusive times, so nested calls are not counted twice), and adds
the step time at a tiny batch (the per-step floor of Python and NumPy call overhead), the
top Python functions by own time (cProfile) and torch's top operators (torch.profiler).
The fast kernels are profiled (``kernels/fast/``); run with ``MINIRES_KERNELS=simple`` for
the teaching ones (the timers then see fewer categories).

The kernels run on one thread here (``threadpool_limits(1)``, also for torch): the
categories are the step's work, which the kernel threads
(``minires/kernels/fast/parallel.py``) then share out; ``bench_train.py`` times the
multi-threaded step.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import json
import pstats
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for path in (ROOT, HERE):  # run as a script from a checkout
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from bench_kernels import blas_info, import_torch  # noqa: E402
from twins import (  # noqa: E402
    LR,
    MODELS,
    MOMENTUM,
    NUM_CLASSES,
    PAUSE_S,
    WEIGHT_DECAY,
    WIDTHS,
    make_batch,
    minires_step_fn,
    torch_step_fn,
)

import minires  # noqa: E402
from minires import autograd, backward  # noqa: E402
from minires import functional as F  # noqa: E402
from minires.kernels import activation as act_kernels  # noqa: E402
from minires.kernels import loss as loss_kernels  # noqa: E402
from minires.kernels import norm as norm_kernels  # noqa: E402
from minires.kernels import pool as pool_kernels  # noqa: E402
from minires.kernels.fast import activation as fast_activation  # noqa: E402
from minires.kernels.fast import conv as fast_conv  # noqa: E402
from minires.kernels.fast import norm as fast_norm  # noqa: E402
from minires.models import get_model  # noqa: E402
from minires.optim import SGD  # noqa: E402

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
    # (The fast kernels' module attributes: patching conv.py's would route to the simple
    # path, see minires/kernels/routing.py.)
    for name in ("conv2d_forward", "conv2d_backward"):
        patches.set(fast_conv, name, timers.wrap(LAYOUT, getattr(fast_conv, name)))
    patches.set(fast_conv, "col2im", timers.wrap(IM2COL, fast_conv.col2im))
    patches.set(fast_conv._ChunkIm2col, "__call__",
                as_gemm(IM2COL, fast_conv._ChunkIm2col.__call__))
    patches.set(fast_conv, "weight_to_matrix", as_gemm(LAYOUT, fast_conv.weight_to_matrix))
    for name in ("linear_forward", "linear_backward"):
        patches.set(act_kernels, name, timers.wrap(GEMM, getattr(act_kernels, name)))
    for module in (norm_kernels, fast_norm):
        for name in ("batch_norm_forward", "batch_norm_backward"):
            patches.set(module, name, timers.wrap(BATCHNORM, getattr(module, name)))
    for module in (act_kernels, fast_activation):
        for name in ("relu_forward", "relu_backward"):
            patches.set(module, name, timers.wrap(RELU, getattr(module, name)))
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
    patches.set(backward, "_accumulate", timers.wrap(ACCUMULATE, backward._accumulate))
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




def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20", choices=MODELS)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--clock", default="wall", choices=("wall", "cpu"))
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # the timers follow one thread's calls (see the docstring)
        return _profile(args)


def _profile(args) -> int:
    blas = blas_info()
    torch = None if args.no_torch else import_torch(blas["threads"])
    print(f"BLAS {blas['name']} {blas['version']} ({blas['threads']} threads); kernels "
          f"{'fast' if minires.kernels.fast_enabled() else 'simple'}")
    profile = profile_minires(args.model, args.batch, args.warmup, args.repeats, args.clock)
    floor = tiny_step_floor(args.model, args.repeats, torch)
    cprof = cprofile_top(args.model, args.batch)
    tprof = torch_profile_top(torch, args.model, args.batch) if torch else []
    print_profile(profile, floor, cprof, tprof)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"blas": blas, "profile": profile, "floor": floor,
                                         "cprofile": cprof, "torch_profile": tprof},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
