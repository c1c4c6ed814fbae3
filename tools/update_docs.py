"""Regenerate the figures and the verdict table shown in README.md from a `demo all` run.

    python tools/update_docs.py            # run `python -m minires demo all`, then copy
    python tools/update_docs.py --from DIR [--seconds S]  # reuse an existing run
    python tools/update_docs.py ... --stability build/stability/stability.md

Copies ``report.md`` and every PNG into ``docs/demo/`` and rewrites the part of README.md
between the ``<!-- DEMO-RESULTS -->`` markers with the verdict table, the machine (CPU,
cores, platform), the BLAS thread count, the wall time and the main figures, and, with
``--stability``, the table that tools/verdict_stability.py wrote.  Everything shown comes
from the run's own files: the README's table is never edited by hand.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout, installed or not
from minires.experiments.common import DEMO_ORDER, verdict_rows  # noqa: E402

DOCS = ROOT / "docs" / "demo"
MARKER = "<!-- DEMO-RESULTS -->"


def run_demos(out: Path) -> float:
    """Run the main job into ``out``; return its wall time in seconds."""
    import time

    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "minires", "demo", "all", "--out", str(out)],
                   check=True, cwd=ROOT)
    return time.perf_counter() - start


def machine() -> str:
    """The CPU model, core count and platform of this machine, in words."""
    import os
    import platform

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.platform()}"


def run_record(out: Path) -> dict:
    """What ``demo`` wrote about the whole run (run.json: seconds, jobs), or {}."""
    path = out / "run.json"
    return json.loads(path.read_text()) if path.exists() else {}


def run_seconds(out: Path) -> float:
    """The run's wall time: run.json's, else the sum of the demonstrations' own wall times
    (their JSON files; these miss the nets trained before the demonstrations ran)."""
    if "seconds" in run_record(out):
        return float(run_record(out)["seconds"])
    return sum(json.loads((out / f"{n}.json").read_text())["wall_time_s"]
               for n in DEMO_ORDER if (out / f"{n}.json").exists())


def results_section(out: Path, total_seconds: float | None, threads: str | None = None,
                    stability: str | None = None) -> str:
    """The README block: where and how long the run was, verdicts per demonstration,
    the stability table (when given) and the figures."""
    lines = [MARKER, "", "### What the default run measured", ""]
    seconds = run_seconds(out) if total_seconds is None else total_seconds
    jobs = run_record(out).get("jobs")
    trained = f", nets trained in {jobs} processes of one BLAS thread" if jobs else ""
    lines += [f"`python -m minires demo all` took {seconds / 60:.1f} minutes (quick mode, "
              f"embedded MNIST) on {machine()}, OPENBLAS_NUM_THREADS={threads or 'unset'}"
              f"{trained}.  "
              "The full report with every table is "
              "[docs/demo/report.md](docs/demo/report.md).", ""]
    lines += ["| demonstration | claim | verdict |", "|---|---|---|"]
    lines += verdict_rows(out)
    if stability:
        lines += ["", "#### How stable the verdicts are", "", stability.strip()]
    figures = []
    for name in DEMO_ORDER:
        path = out / f"{name}.json"
        if path.exists():
            figures += json.loads(path.read_text())["figures"]
    lines += [""]
    for figure in figures:
        lines += [f"![{Path(figure).stem}](docs/demo/{figure})", ""]
    lines.append(MARKER)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", default=None,
                        help="an existing `demo all` output directory (default: run it)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="with --from: the wall time that run took, for the README")
    parser.add_argument("--threads", default=None,
                        help="with --from: the OPENBLAS_NUM_THREADS that run used")
    parser.add_argument("--stability", default=None,
                        help="stability.md written by tools/verdict_stability.py")
    args = parser.parse_args()
    import os

    stability = Path(args.stability).read_text() if args.stability else None
    if args.source:
        out, seconds = Path(args.source), args.seconds
    else:
        out = ROOT / "build" / "demo"
        seconds = run_demos(out)
    threads = (args.threads or run_record(out).get("OPENBLAS_NUM_THREADS")
               or os.environ.get("OPENBLAS_NUM_THREADS"))
    if not (out / "report.md").exists():
        print(f"error: no report.md in {out}; run `python -m minires demo all --out {out}`")
        return 2
    DOCS.mkdir(parents=True, exist_ok=True)
    for old in DOCS.glob("*.png"):
        old.unlink()
    for png in out.glob("*.png"):
        shutil.copy2(png, DOCS / png.name)
    shutil.copy2(out / "report.md", DOCS / "report.md")

    readme = (ROOT / "README.md").read_text()
    parts = readme.split(MARKER)
    if len(parts) not in (2, 3):
        print(f"error: README.md needs one {MARKER} marker (or a pair around the results)")
        return 2
    head, tail = parts[0], parts[-1]
    (ROOT / "README.md").write_text(head + results_section(out, seconds, threads, stability) + tail)
    print(f"updated README.md and {DOCS.relative_to(ROOT)}/ from {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
