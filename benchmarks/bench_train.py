"""Time a training step of the CIFAR ResNets, minires vs PyTorch CPU, each in its own process.

    python benchmarks/bench_train.py [--models resnet20,resnet56] [--rounds 5] [--steps 3]
        [--batch 128] [--blas-env inherited|unset|both] [--json out.json] [--docs docs/perf]

One step is the plain loop a tutorial writes (see ``twins.py``): ``model(x)``,
``cross_entropy``, ``backward()``, ``opt.step()`` with SGD momentum 0.9 and weight decay
1e-4, batch 128 of 3x32x32 float32 images.  Every (round, model, system) runs in a fresh
subprocess that builds the net, runs ``--warmup`` steps and times ``--steps`` more; rounds
alternate which system goes first, so a change in the machine's load hits both alike.  A
worker reports its step times, its minor page faults per timed step (``/proc/self/stat``:
each is a fresh page the kernel had to map and zero), its peak RSS (``getrusage``), and the
BLAS library, CPU kernel and thread count in use (threadpoolctl).  The torch twin loads
minires's initial weights and must give the same first loss.

``--blas-env unset`` removes OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE (together, for the
worker subprocesses only); ``inherited`` keeps the environment as it is; ``both`` runs
both.  The table gives medians over rounds of each system's median step, and the median
over rounds of the per-round ratio minires / torch (the number to trust on a shared
machine), against the goals of issue 11.  ``--docs DIR`` also writes ``DIR/README.md``
(the table) and ``DIR/train_step.png`` (a bar chart): the one command that regenerates them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for path in (ROOT, HERE):  # run as a script from a checkout
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

SYSTEMS = ("minires", "torch")
BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
GOALS = {"inherited": 1.3, "unset": 1.0}  # step time minires / torch, issue 11
DEPTH_GOAL = 3.3  # ResNet-56 step / ResNet-20 step


# ---------------------------------------------------------------------------- worker


def minor_faults() -> int:
    """This process's minor page faults so far (field 10 of /proc/self/stat; Linux)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[7])
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def blas_pools() -> list:
    """The BLAS / OpenMP libraries loaded in this process, with kernel and threads."""
    try:
        import threadpoolctl
    except ImportError:
        return [{"note": "threadpoolctl not installed"}]
    return [{k: p.get(k) for k in ("user_api", "internal_api", "version", "architecture",
                                   "num_threads", "prefix")}
            for p in threadpoolctl.threadpool_info()]


def worker(system: str, model: str, batch: int, warmup: int, steps: int,
           malloc: str = "default") -> dict:
    """Build one system's net, run warm-up and timed steps, report times and memory.
    ``malloc="keep"`` calls :func:`minires.backend.keep_freed_memory` first (either system:
    it is a setting of the process's C allocator)."""
    import numpy as np
    from twins import make_batch, minires_step_fn, torch_step_fn

    import minires

    kept = minires.backend.keep_freed_memory() if malloc == "keep" else False
    x, y = make_batch(batch)
    minires.manual_seed(0)
    net, step = minires_step_fn(model, x, y)
    threads = None
    if system == "torch":
        import torch
        from bench_kernels import blas_info
        threads = blas_info()["threads"]
        torch.set_num_threads(threads)
        initial = {k: np.array(v) for k, v in net.state_dict().items()}
        del net, step
        net, step = torch_step_fn(torch, model, x, y, initial)
        threads = torch.get_num_threads()
    losses, times = [], []
    for _ in range(warmup):
        losses.append(step()[0])
    faults = minor_faults()
    for _ in range(steps):
        loss, split, cpu_s = step()
        losses.append(loss)
        times.append((sum(split), *split, cpu_s))
    faults = minor_faults() - faults
    return {
        "system": system, "model": model, "batch": batch, "steps": steps,
        "step_ms": [1e3 * t[0] for t in times],
        "fwd_ms": 1e3 * statistics.median(t[1] for t in times),
        "bwd_ms": 1e3 * statistics.median(t[2] for t in times),
        "opt_ms": 1e3 * statistics.median(t[3] for t in times),
        "cpu_ms": 1e3 * statistics.median(t[4] for t in times),
        "faults_per_step": faults / max(steps, 1),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "first_loss": losses[0], "blas": blas_pools(), "torch_threads": threads,
        "kernels": "fast" if minires.kernels.fast_enabled() else "simple",
        "malloc": "keep freed memory (mallopt)" if kept else "glibc default",
        "env": {k: os.environ.get(k) for k in (*BLAS_VARS, "OPENBLAS_NUM_THREADS",
                                               "MINIRES_KERNELS")},
    }


# ---------------------------------------------------------------------------- runner


def blas_env(kind: str) -> dict:
    """The environment for a worker: as inherited, or with both OpenBLAS settings unset."""
    env = dict(os.environ)
    if kind == "unset":
        for var in BLAS_VARS:
            env.pop(var, None)
    return env


def run_worker(system, model, args, env) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", system,
               "--models", model, "--batch", str(args.batch), "--warmup", str(args.warmup),
               "--steps", str(args.steps), "--malloc", args.malloc]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False,
                          timeout=args.timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{system} {model} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(results: list, models: list) -> dict:
    """Per model: median over rounds of each system's median step, of the per-round ratio,
    faults per step and peak RSS; and the ResNet-56 / ResNet-20 ratio per system."""
    summary = {}
    for model in models:
        by_round = {}
        for r in results:
            if r["model"] == model:
                by_round.setdefault(r["round"], {})[r["system"]] = r
        row = {"model": model, "rounds": len(by_round)}
        for system in SYSTEMS:
            runs = [rs[system] for rs in by_round.values() if system in rs]
            if not runs:
                continue
            row[system] = {
                "ms": statistics.median(statistics.median(r["step_ms"]) for r in runs),
                "min_ms": min(min(r["step_ms"]) for r in runs),
                "fwd_ms": statistics.median(r["fwd_ms"] for r in runs),
                "bwd_ms": statistics.median(r["bwd_ms"] for r in runs),
                "opt_ms": statistics.median(r["opt_ms"] for r in runs),
                "cpu_ms": statistics.median(r["cpu_ms"] for r in runs),
                "faults_per_step": statistics.median(r["faults_per_step"] for r in runs),
                "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
                "first_loss": runs[0]["first_loss"],
            }
        paired = [statistics.median(rs["minires"]["step_ms"])
                  / statistics.median(rs["torch"]["step_ms"])
                  for rs in by_round.values() if set(SYSTEMS) <= set(rs)]
        if paired:
            row["ratio"] = statistics.median(paired)
            row["ratio_range"] = (min(paired), max(paired))
            a, b = row["minires"]["first_loss"], row["torch"]["first_loss"]
            row["same_first_loss"] = abs(a - b) <= 1e-4 * abs(b)
        summary[model] = row
    if "resnet20" in summary and "resnet56" in summary:
        summary["depth_ratio"] = {
            s: summary["resnet56"][s]["ms"] / summary["resnet20"][s]["ms"]
            for s in SYSTEMS if s in summary["resnet20"] and s in summary["resnet56"]}
    return summary


def describe_blas(pools: list) -> str:
    blas = [p for p in pools if p.get("user_api") == "blas"]
    return ", ".join(f"{p.get('internal_api')} {p.get('version')} {p.get('architecture')} "
                     f"x{p.get('num_threads')}" for p in blas) or "unknown"


def print_report(env_kind, summary, workers) -> list:
    """Print one environment's table; return its lines (for the docs)."""
    goal = GOALS[env_kind]
    lines = [f"### BLAS environment: {env_kind}", ""]
    for system in SYSTEMS:
        sample = next((w for w in workers if w["system"] == system), None)
        if sample:
            lines.append(f"- {system}: BLAS {describe_blas(sample['blas'])}"
                         + (f", torch threads {sample['torch_threads']}"
                            if sample["torch_threads"] else f", kernels {sample['kernels']}")
                         + f", malloc: {sample['malloc']}")
    env = workers[0]["env"] if workers else {}
    lines.append(f"- environment: {', '.join(f'{k}={v}' for k, v in env.items())}")
    lines += ["", "| net | minires ms | torch ms | ratio (range) | goal | minires faults/step "
              "| torch faults/step | minires peak RSS MB | torch peak RSS MB |",
              "|---|---|---|---|---|---|---|---|---|"]
    for model, row in summary.items():
        if model == "depth_ratio" or "ratio" not in row:
            continue
        m, t = row["minires"], row["torch"]
        lo, hi = row["ratio_range"]
        verdict = "met" if row["ratio"] <= goal else "missed"
        lines.append(f"| {model} | {m['ms']:.0f} | {t['ms']:.0f} | {row['ratio']:.2f} "
                     f"({lo:.2f}-{hi:.2f}) | <= {goal} ({verdict}) | {m['faults_per_step']:.0f} "
                     f"| {t['faults_per_step']:.0f} | {m['peak_rss_mb']:.0f} "
                     f"| {t['peak_rss_mb']:.0f} |")
    if "depth_ratio" in summary:
        d = summary["depth_ratio"]
        lines += ["", "ResNet-56 / ResNet-20 step: " + ", ".join(
            f"{s} {v:.2f}" for s, v in d.items()) + f" (goal for minires <= {DEPTH_GOAL})"]
    for model, row in summary.items():
        if model != "depth_ratio" and "same_first_loss" in row and not row["same_first_loss"]:
            lines.append(f"WARNING: {model}: first losses differ, the twin is not the same net")
    print("\n".join(lines) + "\n")
    return lines


def write_docs(directory: Path, header: list, sections: list, summaries: dict) -> None:
    """DIR/README.md (the tables) and DIR/train_step.png (bars: ms per step)."""
    directory.mkdir(parents=True, exist_ok=True)
    text = ["# minires vs PyTorch: training-step benchmark", "",
            "Regenerate with `python benchmarks/bench_train.py --blas-env both --docs "
            "docs/perf` (see benchmarks/README.md).", "", *header, ""]
    for lines in sections:
        text += [*lines, ""]
    tmp = directory / "README.md.tmp"
    tmp.write_text("\n".join(text))
    tmp.replace(directory / "README.md")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no bar chart")
        return
    labels, ours, theirs, ratios = [], [], [], []
    for env_kind, summary in summaries.items():
        for model, row in summary.items():
            if model != "depth_ratio" and "ratio" in row:
                labels.append(f"{model}\n({env_kind})")
                ours.append(row["minires"]["ms"])
                theirs.append(row["torch"]["ms"])
                ratios.append(row["ratio"])
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(labels), 3.2))
    xs = range(len(labels))
    ax.bar([i - 0.2 for i in xs], ours, 0.4, label="minires")
    ax.bar([i + 0.2 for i in xs], theirs, 0.4, label="PyTorch")
    for i, (a, b, ratio) in enumerate(zip(ours, theirs, ratios, strict=True)):
        ax.text(i, max(a, b), f"{ratio:.2f}x", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs), labels, fontsize=8)
    ax.set_ylabel("ms per training step (median)")
    ax.set_title("labels: median over rounds of the paired ratio minires / torch", fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = directory / "train_step.tmp.png"
    fig.savefig(tmp, dpi=120)
    tmp.replace(directory / "train_step.png")
    print(f"wrote {directory / 'README.md'} and {directory / 'train_step.png'}")


def save_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def report(header: list, workers: list, models: list, docs: Path | None) -> None:
    """Tables per BLAS environment from the workers' results (and the docs, if asked)."""
    sections, summaries = [], {}
    for env_kind in dict.fromkeys(w["blas_env"] for w in workers):
        results = [w for w in workers if w["blas_env"] == env_kind]
        summaries[env_kind] = summarise(results, models)
        sections.append(print_report(env_kind, summaries[env_kind], results))
    if docs:
        write_docs(docs, header, sections, summaries)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet20,resnet56")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (median)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per worker")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per worker")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--blas-env", default="inherited", choices=("inherited", "unset", "both"))
    parser.add_argument("--systems", default="minires,torch")
    parser.add_argument("--threads", type=int,
                        help="BLAS and torch threads in the workers (OPENBLAS_NUM_THREADS); "
                             "default: as inherited (OpenBLAS: one per core)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per worker")
    parser.add_argument("--json", type=Path, help="also write every worker's result here")
    parser.add_argument("--docs", type=Path, help="write README.md and train_step.png here")
    parser.add_argument("--from-json", type=Path,
                        help="no new runs: report (and --docs) from a saved --json file")
    parser.add_argument("--malloc", default="default", choices=("default", "keep"),
                        help="keep: both workers call minires.backend.keep_freed_memory() "
                             "(glibc keeps freed memory: no fresh pages per step)")
    parser.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.worker:
        print(json.dumps(worker(args.worker, models[0], args.batch, args.warmup, args.steps,
                                args.malloc)))
        return 0
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        report(saved["header"], saved["workers"], models, args.docs)
        return 0
    if args.rounds < 1 or args.steps < 1 or args.warmup < 0 or args.batch < 2:
        parser.error("need --rounds >= 1, --steps >= 1, --warmup >= 0 and --batch >= 2")
    systems = [s for s in args.systems.split(",") if s]
    envs = ("inherited", "unset") if args.blas_env == "both" else (args.blas_env,)
    header = [f"- command: `python benchmarks/bench_train.py {' '.join(argv or sys.argv[1:])}`",
              f"- machine: {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} CPUs, python {platform.python_version()}; load average "
              f"{os.getloadavg()[0]:.2f} at start",
              f"- inherited {', '.join(f'{v}={os.environ.get(v)!r}' for v in BLAS_VARS)}",
              f"- batch {args.batch}, {args.rounds} alternating rounds x {args.steps} timed "
              f"steps after {args.warmup} warm-up, each system in its own subprocess",
              f"- threads: {args.threads or 'inherited'}; malloc: {args.malloc}"]
    print("\n".join(header) + "\n")
    all_results = []
    for env_kind in envs:
        env = blas_env(env_kind)
        if args.threads:
            env["OPENBLAS_NUM_THREADS"] = str(args.threads)
        for rnd in range(args.rounds):
            order = systems if rnd % 2 == 0 else systems[::-1]
            for model in models:
                for system in order:
                    r = run_worker(system, model, args, env)
                    r.update(round=rnd, blas_env=env_kind)
                    all_results.append(r)
                    print(f"  [{env_kind} round {rnd + 1}/{args.rounds}] {system:8} {model}: "
                          f"{statistics.median(r['step_ms']):7.0f} ms/step, "
                          f"{r['faults_per_step']:8.0f} faults/step, "
                          f"peak RSS {r['peak_rss_mb']:5.0f} MB", flush=True)
                    if args.json:  # after every worker: a cut-short run keeps its data
                        save_json(args.json, {"header": header, "workers": all_results})
                    time.sleep(0.5)  # let the other system's threads go quiet
    if os.getloadavg()[0] > (os.cpu_count() or 1):
        print(f"note: load average {os.getloadavg()[0]:.2f} > {os.cpu_count()} CPUs: other "
              "processes shared the machine; trust the paired ratios over absolute times")
    report(header, all_results, models, args.docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
