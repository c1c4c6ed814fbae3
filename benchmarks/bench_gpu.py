"""Time minires on the GPU (CuPy + its CUDA kernels) against PyTorch (cuDNN) in one run.

    python benchmarks/bench_gpu.py [--repeats 20] [--warmup 3] [--batch 128] [--json out.json]
                                   [--only ops|steps] [--no-torch] [--torch-tf32]

Rows, float32, batch 128 (``--batch``) at the ResNet-20 CIFAR shapes (16@32x32, 32@16x16,
64@8x8), each forward + backward through autograd:

* ``conv3x3``    C -> C, stride 1, padding 1, no bias (minires: CUDA im2col + cuBLAS GEMMs);
* ``batchnorm``  BatchNorm2d in training mode (batch statistics, running-average update);
* ``maxpool``    3x3 windows, stride 2, padding 1 (overlapping windows, as a ResNet stem);

and a full training step of ResNet-20 and ResNet-56 on 3x32x32 images: forward,
cross-entropy, backward, SGD (momentum 0.9, weight decay 1e-4).  The PyTorch twin of the
CIFAR ResNet is built by hand below (option-A shortcuts, the same layers as minires's).

Timing: every call runs on an idle GPU between two CUDA events (CuPy's for minires,
torch's for PyTorch) and is synchronised after, so a row's time is the wall time of one
call including Python overhead; ``--warmup`` untimed calls first (minires's first call also
compiles its kernels with NVRTC, or loads them from CuPy's cache: reported separately in the
JSON), then the median of ``--repeats`` calls.  Columns: median milliseconds, images per
second (batch / time) and the ratio minires / torch (> 1: minires is slower).

PyTorch runs eager (no torch.compile), float32, ``cudnn.benchmark = True``; TF32 is OFF
(PyTorch enables it for cuDNN convolutions by default, CuPy does not use it) unless
``--torch-tf32``.  Without torch (or without its CUDA build) minires is timed alone.
Needs CuPy and a GPU; without them the script exits with a message saying what is missing.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

import minires  # noqa: E402
import minires.nn as mnn  # noqa: E402
from minires import backend  # noqa: E402
from minires import functional as F  # noqa: E402
from minires.autograd import Tensor  # noqa: E402
from minires.models import resnet20, resnet56  # noqa: E402
from minires.optim import SGD  # noqa: E402

STAGES = [(16, 32), (32, 16), (64, 8)]  # (channels, height = width) of ResNet-20's stages
DEPTHS = {"resnet20": 20, "resnet56": 56}


# ---------------------------------------------------------------------------- environment


def require_gpu():
    """The cupy module, or exit with what is missing."""
    try:
        cupy = backend._import_cupy()
    except RuntimeError as err:
        sys.exit(f"bench_gpu.py needs CuPy and an NVIDIA GPU: {err}")
    return cupy


def import_torch(enabled: bool, tf32: bool):
    """torch with a usable CUDA device, or (None, reason)."""
    if not enabled:
        return None, "--no-torch"
    try:
        import torch
    except ImportError:
        return None, "torch is not installed"
    if not torch.cuda.is_available():
        return None, f"torch {torch.__version__} has no usable CUDA device (a CPU-only build?)"
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    return torch, None


def environment(cupy, torch) -> dict:
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"]
    info = {
        "gpu": name.decode() if isinstance(name, bytes) else str(name),
        "cupy": cupy.__version__,
        "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
        "cuda_driver": cupy.cuda.runtime.driverGetVersion(),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "minires": minires.__version__,
    }
    if torch is not None:
        info.update(torch=torch.__version__, torch_cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(),
                    cudnn_benchmark=torch.backends.cudnn.benchmark,
                    torch_tf32=torch.backends.cudnn.allow_tf32)
    return info


# ---------------------------------------------------------------------------- timing


def time_calls(fn, events, repeats: int, warmup: int) -> dict:
    """Median milliseconds of ``fn()`` between two CUDA events, plus the first call's time.

    ``events()`` returns (start, end, elapsed_ms(start, end), synchronize).
    """
    start, end, elapsed, synchronize = events()
    synchronize()
    t0 = time.perf_counter()
    fn()
    synchronize()
    first = (time.perf_counter() - t0) * 1e3
    for _ in range(max(0, warmup - 1)):
        fn()
    synchronize()
    times = []
    for _ in range(repeats):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(elapsed(start, end))
    return {"median_ms": statistics.median(times), "min_ms": min(times),
            "max_ms": max(times), "first_call_ms": first}


def cupy_events(cupy):
    def make():
        return (cupy.cuda.Event(), cupy.cuda.Event(), cupy.cuda.get_elapsed_time,
                cupy.cuda.Device().synchronize)
    return make


def torch_events(torch):
    def make():
        return (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True),
                lambda s, e: s.elapsed_time(e), torch.cuda.synchronize)
    return make


# ---------------------------------------------------------------------------- minires side


def minires_layer_step(cupy, layer, shape, rng):
    """forward + backward of one minires layer on a (batch, C, H, W) float32 input."""
    layer.to("cuda")
    x = Tensor(cupy.asarray(rng.standard_normal(shape).astype(np.float32)), requires_grad=True)
    out_shape = layer(x).shape
    g = cupy.asarray(rng.standard_normal(out_shape).astype(np.float32))
    params = list(layer.parameters())

    def step():
        x.grad = None
        for p in params:
            p.grad = None
        layer(x).backward(g)

    return step


def minires_train_step(cupy, depth: int, batch: int, rng):
    minires.manual_seed(0)
    model = (resnet20 if depth == 20 else resnet56)().to("cuda")
    model.train()
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = cupy.asarray(rng.standard_normal((batch, 3, 32, 32)).astype(np.float32))
    y = cupy.asarray(rng.integers(0, 10, size=batch))

    def step():
        loss = F.cross_entropy(model(Tensor(x)), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


# ---------------------------------------------------------------------------- torch side


def torch_layer_step(torch, layer, shape, rng):
    layer = layer.cuda().train()
    x = torch.tensor(rng.standard_normal(shape).astype(np.float32), device="cuda",
                     requires_grad=True)
    with torch.no_grad():
        out_shape = layer(x).shape
    g = torch.tensor(rng.standard_normal(tuple(out_shape)).astype(np.float32), device="cuda")
    params = list(layer.parameters())

    def step():
        x.grad = None
        for p in params:
            p.grad = None
        layer(x).backward(g)

    return step


def torch_cifar_resnet(torch, depth: int):
    """He et al.'s CIFAR ResNet (6n+2 layers, option-A shortcuts), as minires's resnet20/56."""
    nn, tf = torch.nn, torch.nn.functional
    n = (depth - 2) // 6

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.stride, self.extra = stride, cout - cin

        def forward(self, x):
            out = tf.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            shortcut = x[:, :, ::self.stride, ::self.stride] if self.stride != 1 else x
            if self.extra:  # option A: zero channels appended
                shortcut = tf.pad(shortcut, (0, 0, 0, 0, 0, self.extra))
            return tf.relu(out + shortcut)

    class CifarResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(16)
            blocks, cin = [], 16
            for stage, cout in enumerate((16, 32, 64)):
                for index in range(n):
                    blocks.append(Block(cin, cout, 2 if stage and not index else 1))
                    cin = cout
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(64, 10)
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

        def forward(self, x):
            x = self.blocks(tf.relu(self.bn1(self.conv1(x))))
            return self.fc(torch.flatten(tf.adaptive_avg_pool2d(x, 1), 1))

    return CifarResNet()


def torch_train_step(torch, depth: int, batch: int, rng):
    torch.manual_seed(0)
    model = torch_cifar_resnet(torch, depth).cuda().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.tensor(rng.standard_normal((batch, 3, 32, 32)).astype(np.float32), device="cuda")
    y = torch.tensor(rng.integers(0, 10, size=batch), device="cuda")

    def step():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


# ---------------------------------------------------------------------------- the rows


def cases(batch: int, only: str | None):
    """(name, shape text, images per call, minires maker, torch maker) per row."""
    rows = []
    if only in (None, "ops"):
        for channels, size in STAGES:
            shape = (batch, channels, size, size)
            text = f"{channels}@{size}x{size}"
            rows += [
                ("conv3x3", text, batch,
                 lambda cp, rng, c=channels, s=shape: minires_layer_step(
                     cp, mnn.Conv2d(c, c, 3, padding=1, bias=False), s, rng),
                 lambda t, rng, c=channels, s=shape: torch_layer_step(
                     t, t.nn.Conv2d(c, c, 3, padding=1, bias=False), s, rng)),
                ("batchnorm", text, batch,
                 lambda cp, rng, c=channels, s=shape: minires_layer_step(
                     cp, mnn.BatchNorm2d(c), s, rng),
                 lambda t, rng, c=channels, s=shape: torch_layer_step(
                     t, t.nn.BatchNorm2d(c), s, rng)),
                ("maxpool3x3/2", text, batch,
                 lambda cp, rng, s=shape: minires_layer_step(cp, mnn.MaxPool2d(3, 2, 1), s, rng),
                 lambda t, rng, s=shape: torch_layer_step(t, t.nn.MaxPool2d(3, 2, 1), s, rng)),
            ]
    if only in (None, "steps"):
        for name, depth in DEPTHS.items():
            rows.append((f"{name} train step", "3@32x32", batch,
                         lambda cp, rng, d=depth: minires_train_step(cp, d, batch, rng),
                         lambda t, rng, d=depth: torch_train_step(t, d, batch, rng)))
    return rows


def run(args) -> dict:
    cupy = require_gpu()
    torch, torch_missing = import_torch(not args.no_torch, args.torch_tf32)
    backend.set_default_dtype(np.float32)
    rows = []
    for name, shape, images, make_ours, make_theirs in cases(args.batch, args.only):
        rng = np.random.default_rng(0)
        ours = time_calls(make_ours(cupy, rng), cupy_events(cupy), args.repeats, args.warmup)
        row = {"name": name, "shape": shape, "batch": images,
               "minires_ms": ours["median_ms"],
               "minires_images_per_s": images / (ours["median_ms"] / 1e3),
               "minires_detail": ours}
        if torch is not None:
            theirs = time_calls(make_theirs(torch, np.random.default_rng(0)),
                                torch_events(torch), args.repeats, args.warmup)
            row.update(torch_ms=theirs["median_ms"],
                       torch_images_per_s=images / (theirs["median_ms"] / 1e3),
                       ratio=ours["median_ms"] / theirs["median_ms"], torch_detail=theirs)
        rows.append(row)
        print(format_row(row), flush=True)
        cupy.get_default_memory_pool().free_all_blocks()
        if torch is not None:
            torch.cuda.empty_cache()
    return {"environment": environment(cupy, torch), "torch_missing": torch_missing,
            "settings": {"repeats": args.repeats, "warmup": args.warmup, "batch": args.batch,
                         "dtype": "float32", "timing": "CUDA events, median"},
            "rows": rows}


HEADER = (f"{'op':<22}{'shape':<11}{'minires ms':>11}{'torch ms':>10}{'ratio':>8}"
          f"{'minires img/s':>15}{'torch img/s':>13}")


def format_row(row: dict) -> str:
    def number(key, spec):
        return format(row[key], spec) if key in row else "-"

    return (f"{row['name']:<22}{row['shape']:<11}{number('minires_ms', '.3f'):>11}"
            f"{number('torch_ms', '.3f'):>10}{number('ratio', '.2f'):>8}"
            f"{number('minires_images_per_s', ',.0f'):>15}"
            f"{number('torch_images_per_s', ',.0f'):>13}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per row")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first")
    parser.add_argument("--batch", type=int, default=128, help="images per call")
    parser.add_argument("--only", choices=("ops", "steps"), help="just the ops or the steps")
    parser.add_argument("--no-torch", action="store_true", help="time minires alone")
    parser.add_argument("--torch-tf32", action="store_true",
                        help="let cuDNN/cuBLAS use TF32 (PyTorch's default for convolutions)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.batch < 1:
        parser.error("--repeats and --batch must be >= 1")

    require_gpu()  # before printing anything
    print(HEADER)
    results = run(args)
    env = results["environment"]
    print(f"\n{env['gpu']}, CuPy {env['cupy']}, CUDA runtime {env['cuda_runtime']}"
          + (f", torch {env['torch']} (cuDNN {env['cudnn']}, TF32 "
             f"{'on' if env['torch_tf32'] else 'off'})" if "torch" in env
             else f"; no torch: {results['torch_missing']}"))
    print("ratio = minires ms / torch ms (> 1: minires is slower); medians of "
          f"{args.repeats} calls after {args.warmup} warm-up calls")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
