"""How often each demonstration's verdict holds over seeds and BLAS thread counts.

    python tools/verdict_stability.py                   # quick demos, seeds 0, 3, 6, threads 1, 2
    python tools/verdict_stability.py --seeds 1 --runs 2 --tiny --demos vanishing   # smoke run

Every (seed, thread count) pair is one run: a subprocess of this script (``--child``) with
``OPENBLAS_NUM_THREADS`` set, which runs the chosen demonstrations in order into its own
output directory (so trained nets are shared between the demonstrations of one run, as in
``demo all``, and never between runs).  The seeds are 0, 3, 6, ...: ``demo --seed S``
trains the degradation nets with seeds S, S+1 and S+2, so runs never share a seed.  As
``demo all`` does, a run first trains its nets in parallel processes, as many as there
are cores per BLAS thread (``--cores`` // threads: two of one thread, or one of two, on a
2-core machine), so that every process really uses the run's thread count.

The parent reads each run's ``NAME.json`` files and writes ``stability.json`` and
``stability.md`` into ``--out``: per verdict, in how many runs it held.  The summary order:
seed-major, so ``--runs 2`` is seed 0 at both thread counts.

The library never sets ``OPENBLAS_CORETYPE``; this tool leaves it as the caller has it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout, installed or not
from minires.experiments.common import DEMO_ORDER, write_text  # noqa: E402

GOAL = 0.9  # issue 12.3: every verdict should hold in at least 90% of the runs


def plan(seeds, threads, runs=None) -> list:
    """The (seed, threads) pairs to run, seed-major, cut to the first ``runs``."""
    pairs = [(s, t) for s in seeds for t in threads]
    return pairs if runs is None else pairs[:runs]


def child_command(demos, seed: int, out: Path, tiny: bool, jobs: int = 1) -> list:
    """The command line of one run (this script in ``--child`` mode)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--seed", str(seed),
           "--out", str(out), "--jobs", str(jobs), "--demos", *demos]
    return cmd + (["--tiny"] if tiny else [])


def jobs_for(threads: int, cores: int) -> int:
    """Training processes of a run at ``threads`` BLAS threads on ``cores`` cores."""
    return max(1, cores // threads)


def subprocess_runner(demos, seed: int, threads: int, out: Path, tiny: bool,
                      cores: int = 1) -> dict:
    """Run one (seed, threads) pair in a subprocess; return its run record."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads))
    start = time.perf_counter()
    command = child_command(demos, seed, out, tiny, jobs_for(threads, cores))
    done = subprocess.run(command, env=env, cwd=ROOT,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        return {"seed": seed, "threads": threads, "seconds": seconds, "error":
                (done.stderr or done.stdout)[-2000:], "verdicts": []}
    return read_run(out, demos, seed, threads, seconds)


def read_run(out: Path, demos, seed: int, threads: int, seconds: float) -> dict:
    """The verdicts a run wrote (NAME.json per demonstration) as one record."""
    verdicts = []
    info = json.loads((out / "child.json").read_text()) if (out / "child.json").exists() else {}
    for name in demos:
        data = json.loads((out / f"{name}.json").read_text())
        for i, v in enumerate(data["verdicts"]):
            verdicts.append({"demo": name, "index": i, "claim": v["claim"],
                             "holds": bool(v["holds"]), "evidence": v["evidence"]})
    return {"seed": seed, "threads": threads, "seconds": seconds, "verdicts": verdicts,
            "child_threads": info.get("OPENBLAS_NUM_THREADS"), "jobs": info.get("jobs"),
            "coretype": info.get("OPENBLAS_CORETYPE")}


def summarise(records: list) -> list:
    """Per verdict (demo, index): claim, runs held, runs in all, fraction, the runs where it
    failed.  A run that crashed counts as a failure of every verdict it did not write."""
    table, order = {}, []
    for record in records:
        for v in record["verdicts"]:
            key = (v["demo"], v["index"])
            if key not in table:
                table[key] = {"demo": v["demo"], "index": v["index"], "claim": v["claim"],
                              "held": 0, "failed_in": []}
                order.append(key)
    for entry in table.values():
        entry["runs"] = len(records)
    for record in records:
        seen = {(v["demo"], v["index"]): v["holds"] for v in record["verdicts"]}
        for key, entry in table.items():
            if seen.get(key, False):
                entry["held"] += 1
            else:
                entry["failed_in"].append(f"seed {record['seed']}, {record['threads']} "
                                          f"thread(s)")
    rows = [table[k] for k in order]
    for row in rows:
        row["fraction"] = row["held"] / row["runs"] if row["runs"] else float("nan")
        row["meets_goal"] = row["fraction"] >= GOAL
    return rows


def markdown(rows: list, records: list, tiny: bool) -> str:
    """The stability table in Markdown."""
    seeds = sorted({r["seed"] for r in records})
    threads = sorted({r["threads"] for r in records})
    total = sum(r["seconds"] for r in records)
    lines = [f"Verdict stability: {len(records)} runs of the {'tiny' if tiny else 'quick'} "
             f"demonstrations (seeds {', '.join(map(str, seeds))}; OPENBLAS_NUM_THREADS "
             f"{', '.join(map(str, threads))}; OPENBLAS_CORETYPE "
             f"{os.environ.get('OPENBLAS_CORETYPE', 'unset')}), {total / 60:.1f} minutes in all.",
             "", "| demonstration | claim | held | failed in |", "|---|---|---|---|"]
    for row in rows:
        claim = row["claim"].replace("|", "\\|")
        failed = "; ".join(row["failed_in"]) or "-"
        lines.append(f"| {row['demo']} | {claim} | {row['held']}/{row['runs']} "
                     f"({100 * row['fraction']:.0f}%) | {failed} |")
    errors = [r for r in records if r.get("error")]
    if errors:
        lines += ["", f"{len(errors)} run(s) crashed: "
                  + "; ".join(f"seed {r['seed']}, {r['threads']} thread(s)" for r in errors)]
    return "\n".join(lines) + "\n"


def stability(demos, seeds, threads, out: Path, runs=None, tiny=False,
              runner=subprocess_runner, cores: int = 1) -> dict:
    """Run every planned pair with ``runner(demos, seed, threads, out_dir, tiny, cores) ->
    record``, write stability.json / stability.md into ``out``; return the JSON payload."""
    out = Path(out)
    records = []
    for seed, n_threads in plan(seeds, threads, runs):
        run_out = out / f"seed{seed}-threads{n_threads}"
        print(f"run: seed {seed}, OPENBLAS_NUM_THREADS={n_threads} -> {run_out}", flush=True)
        records.append(runner(demos, seed, n_threads, run_out, tiny, cores))
    rows = summarise(records)
    payload = {"demos": list(demos), "tiny": tiny, "goal": GOAL, "verdicts": rows,
               "runs": [{k: v for k, v in r.items() if k != "verdicts"}
                        | {"holds": [v["holds"] for v in r["verdicts"]]} for r in records]}
    write_text(out / "stability.json", json.dumps(payload, indent=2))
    write_text(out / "stability.md", markdown(rows, records, tiny))
    return payload


def child(args) -> int:
    """One run, in this process: the demonstrations in order into ``args.out``."""
    from minires.experiments import pretrain, run_demo
    from minires.experiments.common import DemoConfig

    config = DemoConfig(seed=args.seed, out=Path(args.out), progress=False, tiny=args.tiny)
    config.out.mkdir(parents=True, exist_ok=True)
    write_text(config.out / "child.json", json.dumps(
        {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE")}
        | {"jobs": args.jobs}))
    pretrain(args.demos, config, args.jobs)
    for name in args.demos:
        run_demo(name, config)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demos", nargs="+", default=list(DEMO_ORDER), choices=DEMO_ORDER)
    parser.add_argument("--seeds", type=int, default=3,
                        help="this many seeds: 0, 3, 6, ... (default 3)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=None, help="at most this many runs")
    parser.add_argument("--tiny", action="store_true", help="the test-suite sizes (seconds)")
    parser.add_argument("--out", default=str(ROOT / "build" / "stability"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1,
                        help="cores to use (default: all); a run trains its nets in "
                        "cores // threads processes")
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--jobs", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    if args.seeds < 1 or (args.runs is not None and args.runs < 1):
        parser.error("--seeds and --runs must be at least 1")
    if any(t < 1 for t in args.threads) or args.cores < 1:
        parser.error("--threads and --cores must be at least 1")
    payload = stability(args.demos, [3 * i for i in range(args.seeds)], args.threads,
                        Path(args.out), args.runs, args.tiny, cores=args.cores)
    print((Path(args.out) / "stability.md").read_text())
    return 0 if all(r["meets_goal"] for r in payload["verdicts"]) else 1


if __name__ == "__main__":
    sys.exit(main())
