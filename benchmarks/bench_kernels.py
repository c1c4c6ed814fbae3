"""Time minires's CPU kernels at ResNet-20 CIFAR shapes and compare with PyTorch.

    python benchmarks/bench_kernels.py [--repeats N] [--batch B] [--json out.json]

Prints the NumPy version and BLAS, this machine's float32 matmul throughput (measured in the
same run: the reference for "% of peak"), then one row per kernel: median milliseconds of
forward + backward, GFLOP/s (convolutions: 2 FLOPs per multiply-add; backward counts twice
the forward), the fraction of the measured matmul throughput, and, when torch is importable,
torch's CPU median for the same op (same thread count, float32, autograd backward) and the
ratio ours / torch.  The "GEMMs" column times the convolution's three matrix products alone
on ready-made matrices: the part of the time that BLAS, not minires, decides.  The
convolution runs through ``minires.kernels.routing``, i.e. the fast kernels unless
``MINIRES_KERNELS=simple``.  Goals (issue 11): conv <= 1.5x torch, BatchNorm2d <= 1.2x,
max-pool <= 1.5x.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

import minires.kernels  # noqa: E402
from minires.kernels.routing import conv2d_backward, conv2d_forward  # noqa: E402

# ResNet-20 on CIFAR-10: three stages of 3x3, stride 1, padding 1 convolutions.
CONV_STAGES = [(16, 32), (32, 16), (64, 8)]  # (channels, height = width)
MATMUL_SIZE = 1024


# ---------------------------------------------------------------------------- environment


def blas_info() -> dict:
    """Name, version and thread count of the BLAS NumPy uses."""
    try:
        import threadpoolctl

        pools = [p for p in threadpoolctl.threadpool_info() if p.get("user_api") == "blas"]
        if pools:
            p = pools[0]
            return {"name": p.get("internal_api"), "version": p.get("version"),
                    "threads": p.get("num_threads"), "source": "threadpoolctl"}
    except ImportError:
        pass
    config = np.show_config(mode="dicts")
    blas = config.get("Build Dependencies", {}).get("blas", {})
    return {"name": blas.get("name"), "version": blas.get("version"),
            "threads": _default_blas_threads(), "source": "numpy.show_config"}


def _default_blas_threads() -> int:
    """OpenBLAS uses one thread per usable core unless an environment variable says less."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def import_torch(threads: int):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


# ---------------------------------------------------------------------------- timing


def median_ms(fn, repeats: int) -> float:
    """Median wall time of fn() in milliseconds, after one warm-up call.

    The pause first lets the other library's worker threads (OpenBLAS, torch's OpenMP) stop
    spin-waiting: on 2 cores they would otherwise steal time from the code being timed.
    """
    time.sleep(0.2)
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def measure_matmul(repeats: int, rng) -> dict:
    a = rng.standard_normal((MATMUL_SIZE, MATMUL_SIZE), dtype=np.float32)
    b = rng.standard_normal((MATMUL_SIZE, MATMUL_SIZE), dtype=np.float32)
    out = np.empty_like(a)
    ms = median_ms(lambda: np.matmul(a, b, out=out), max(repeats, 10))
    return {"shape": [MATMUL_SIZE] * 3, "ms": ms, "gflops": 2 * MATMUL_SIZE**3 / ms / 1e6}


def bench_conv(batch, channels, size, repeats, rng, torch, peak) -> dict:
    x = rng.standard_normal((batch, channels, size, size), dtype=np.float32)
    w = (rng.standard_normal((channels, channels, 3, 3), dtype=np.float32) * 0.1)
    g = rng.standard_normal((batch, channels, size, size), dtype=np.float32)

    def ours():
        conv2d_forward(x, w, None, 1, 1, 1)
        conv2d_backward(g, x, w, 1, 1, 1, True, False)

    # The three products alone, at full-batch shapes: cols @ W.T, G.T @ cols, cols_g @ W'.
    rows, k = batch * size * size, 9 * channels
    cols = rng.standard_normal((rows, k), dtype=np.float32)
    w_mat = rng.standard_normal((channels, k), dtype=np.float32)
    g_mat = rng.standard_normal((rows, channels), dtype=np.float32)

    def gemms():
        cols @ w_mat.T
        g_mat.T @ cols
        cols @ w_mat.T  # grad_x: same shapes (stride 1, C_in == C_out)

    macs = batch * size * size * channels * channels * 9
    flops = 3 * 2 * macs  # forward 2*MACs, backward twice that
    row = {"op": f"conv3x3 {channels}ch {size}x{size}",
           "shape": [batch, channels, size, size], "flops": flops,
           "ms": median_ms(ours, repeats), "gemm_ms": median_ms(gemms, repeats)}
    row["gflops"] = flops / row["ms"] / 1e6
    row["frac_peak"] = row["gflops"] / peak
    if torch is not None:
        xt = torch.from_numpy(x).requires_grad_()
        wt = torch.from_numpy(w).requires_grad_()
        gt = torch.from_numpy(g)

        def theirs():
            torch.nn.functional.conv2d(xt, wt, None, 1, 1).backward(gt)

        row["torch_ms"] = median_ms(theirs, repeats)
    return row


def bench_batch_norm(batch, channels, size, repeats, rng, torch) -> dict | None:
    try:
        from minires.kernels.routing import batch_norm_backward, batch_norm_forward
    except ImportError as err:
        print(f"note: skipping BatchNorm2d row ({err})")
        return None
    x = rng.standard_normal((batch, channels, size, size), dtype=np.float32)
    g = rng.standard_normal(x.shape, dtype=np.float32)
    gamma, beta = np.ones(channels, np.float32), np.zeros(channels, np.float32)
    mean, var = np.zeros(channels, np.float32), np.ones(channels, np.float32)

    def ours():
        _, cache = batch_norm_forward(x, gamma, beta, mean, var, True, 0.1, 1e-5)
        batch_norm_backward(g, cache)

    row = {"op": f"batchnorm2d {channels}ch {size}x{size}",
           "shape": list(x.shape), "ms": median_ms(ours, repeats)}
    if torch is not None:
        xt = torch.from_numpy(x).requires_grad_()
        gt, bt = torch.from_numpy(gamma).requires_grad_(), torch.from_numpy(beta).requires_grad_()
        mt, vt = torch.from_numpy(mean.copy()), torch.from_numpy(var.copy())

        def theirs():
            torch.nn.functional.batch_norm(xt, mt, vt, gt, bt, training=True).backward(
                torch.from_numpy(g))

        row["torch_ms"] = median_ms(theirs, repeats)
    return row


def bench_max_pool(batch, channels, size, repeats, rng, torch) -> dict | None:
    try:
        from minires.kernels.pool import max_pool2d_backward, max_pool2d_forward
    except ImportError as err:
        print(f"note: skipping max-pool row ({err})")
        return None
    x = rng.standard_normal((batch, channels, size, size), dtype=np.float32)
    g = rng.standard_normal((batch, channels, size // 2, size // 2), dtype=np.float32)

    def ours():
        _, argmax = max_pool2d_forward(x, 2, 2)
        max_pool2d_backward(g, argmax, x.shape, 2, 2)

    row = {"op": f"maxpool2x2/2 {channels}ch {size}x{size}",
           "shape": list(x.shape), "ms": median_ms(ours, repeats)}
    if torch is not None:
        xt = torch.from_numpy(x).requires_grad_()

        def theirs():
            torch.nn.functional.max_pool2d(xt, 2, 2).backward(torch.from_numpy(g))

        row["torch_ms"] = median_ms(theirs, repeats)
    return row


# ---------------------------------------------------------------------------- report


def print_table(rows, peak) -> None:
    header = (f"{'op (fwd+bwd)':<30}{'ms':>9}{'GEMMs ms':>10}{'GFLOP/s':>9}{'% peak':>8}"
              f"{'torch ms':>10}{'ours/torch':>11}")
    print(header)
    print("-" * len(header))
    def cell(r, key, fmt, width):
        return f"{r[key]:{width}{fmt}}" if key in r else f"{'-':>{width}}"

    for r in rows:
        ratio = f"{r['ms'] / r['torch_ms']:>11.2f}" if "torch_ms" in r else f"{'-':>11}"
        pct = f"{100 * r['frac_peak']:>7.0f}%" if "frac_peak" in r else f"{'-':>8}"
        print(f"{r['op']:<30}{r['ms']:>9.2f}{cell(r, 'gemm_ms', '.2f', 10)}"
              f"{cell(r, 'gflops', '.1f', 9)}{pct}{cell(r, 'torch_ms', '.2f', 10)}{ratio}")
    print(f"(% peak: of the measured {peak:.1f} GFLOP/s float32 matmul)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per row (median)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    blas = blas_info()
    torch = import_torch(blas["threads"])
    print(f"python {platform.python_version()}, numpy {np.__version__}, "
          f"BLAS {blas['name']} {blas['version']} ({blas['threads']} threads, via "
          f"{blas['source']}), {platform.processor() or platform.machine()}")
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads)" if torch else
          "torch not installed: no comparison column")
    print(f"minires kernels: {'fast' if minires.kernels.fast_enabled() else 'simple'} "
          f"(MINIRES_KERNELS={os.environ.get('MINIRES_KERNELS', '')!r})")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > 1.0:
        print(f"note: load average {load:.1f} before starting: other processes share the CPU, "
              "so timings will be noisy")
    matmul = measure_matmul(args.repeats, rng)
    peak = matmul["gflops"]
    print(f"float32 matmul {MATMUL_SIZE}^3: {matmul['ms']:.2f} ms = {peak:.1f} GFLOP/s\n")

    rows = [bench_conv(args.batch, c, s, args.repeats, rng, torch, peak)
            for c, s in CONV_STAGES]
    for bench in (bench_batch_norm, bench_max_pool):
        row = bench(args.batch, 16, 32, args.repeats, rng, torch)
        if row is not None:
            rows.append(row)
    print_table(rows, peak)

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        result = {"numpy": np.__version__, "blas": blas, "matmul": matmul,
                  "torch": torch.__version__ if torch else None, "repeats": args.repeats,
                  "rows": rows}
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
