"""The ``check`` and ``grade`` subcommands of ``python -m minires`` (argument parsing lives in
``minires/__main__.py``; the work in :mod:`minires.exercises` and its grader)."""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from minires.exercises import check, display_path, exercise_names, load_catalog


class UsageError(Exception):
    """A mistake on the command line: printed as ``error: ...``, exit code 2."""


def status_table(seed: int = 0, directory=None, out=None, timeout=None, catalogs=()) -> list:
    """Run every exercise quietly and print one line each: name, title and status."""
    out = sys.stdout if out is None else out
    exercises, broken = load_catalog(catalogs)
    rows = []
    extra = {} if timeout is None else {"timeout": timeout}

    def run(exercise):
        path = None if directory is None else Path(directory) / exercise.stub
        return check(exercise.name, path, seed=seed, quiet=True, catalogs=catalogs, **extra)

    # Each check is a separate process: run a few at once (the reports are independent).
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        reports = list(pool.map(run, exercises))
    for exercise, report in zip(exercises, reports, strict=True):
        path = None if directory is None else Path(directory) / exercise.stub
        if report.status in ("failing", "timeout"):
            status = f"{report.status} ({report.n_passed}/{report.total})"
        elif report.status == "cannot load":
            missing = path is not None and not path.is_file() or (
                path is None and not exercise.stub_path().is_file())
            status = "not started (no file)" if missing else "failing (cannot load)"
        else:
            status = report.status
        rows.append((exercise, report, status))
    where = display_path(Path(directory) if directory is not None else _stub_dir(exercises))
    print(f"Exercises (solutions in {where}; check one with "
          f"`python -m minires check NAME`):", file=out)
    name_w = max((len(e.name) for e, _, _ in rows), default=4)
    status_w = max((len(s) for _, _, s in rows), default=6)
    for exercise, _, status in rows:
        print(f"  {exercise.name:<{name_w}}  {status:<{status_w}}  {exercise.title}", file=out)
    for module_name, message in broken:
        print(f"  {module_name:<{name_w}}  BROKEN EXERCISE DEFINITION: {message}", file=out)
    passing = sum(r.passed for _, r, _ in rows)
    print(f"{passing} of {len(rows)} passing", file=out, flush=True)
    return [(e.name, s) for e, _, s in rows]


def _stub_dir(exercises) -> Path:
    return exercises[0].stub_path().parent if exercises else Path("tutorials/exercises")


def _catalogs(args) -> list:
    folders = list(getattr(args, "catalog", None) or [])
    for folder in folders:
        if not Path(folder).is_dir():
            raise UsageError(f"--catalog {folder}: no such folder (expected a folder of "
                             f"exercise modules, one .py file each)")
    return folders


def _timeout(args):
    timeout = getattr(args, "timeout", None)
    if timeout is not None and not timeout > 0:
        raise UsageError(f"--timeout must be a positive number of seconds, got {timeout:g}")
    return timeout


def check_main(args) -> int:
    """The ``check`` subcommand; ``args`` has exercise, file, dir, list, seed, timeout,
    catalog.  Exit code 0 only when every check passed (for ``--list``: every exercise
    passes), 1 when something failed; raises UsageError for a command-line mistake."""
    catalogs, timeout = _catalogs(args), _timeout(args)
    if args.list:
        if args.exercise or args.file:
            raise UsageError("--list checks every exercise; give no EXERCISE or --file")
        rows = status_table(seed=args.seed, directory=args.dir, timeout=timeout,
                            catalogs=catalogs)
        return 0 if rows and all(status == "passing" for _, status in rows) else 1
    if not args.exercise:
        raise UsageError("name an exercise, or use --list to see them all with their "
                         "status: " + ", ".join(exercise_names(catalogs)))
    extra = {} if timeout is None else {"timeout": timeout}
    try:
        report = check(args.exercise, args.file, seed=args.seed, directory=args.dir,
                       catalogs=catalogs, **extra)
    except KeyError as err:
        raise UsageError(err.args[0]) from err
    except BrokenPipeError:  # the report was piped into `head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0 if report.passed else 1


def grade_main(args) -> int:
    """The ``grade`` subcommand: grade every student folder of ``args.submissions``; exit
    code 0 whenever grading ran, whatever the students scored."""
    from minires.exercises.grader import grade_class, write_csv, write_json

    catalogs, timeout = _catalogs(args), _timeout(args)
    submissions = Path(args.submissions)
    if not submissions.is_dir():
        raise UsageError(f"{submissions}: no such folder (expected one folder per student)")
    names = None
    if args.exercises:
        names = [n.strip() for n in args.exercises.split(",") if n.strip()]
        known = exercise_names(catalogs)
        unknown = [n for n in names if n not in known]
        if unknown:
            raise UsageError(f"unknown exercise(s) {', '.join(unknown)}; available: "
                             f"{', '.join(known)}")
    try:
        rows = grade_class(submissions, names, timeout=timeout, catalogs=catalogs,
                           seed=args.seed, progress=sys.stderr, jobs=args.jobs)
    except ValueError as err:
        raise UsageError(str(err)) from err
    write_csv(rows, args.csv)
    written = [str(args.csv)]
    if args.json:
        write_json(rows, args.json)
        written.append(str(args.json))
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    summary = ", ".join(f"{counts[s]} {s}" for s in ("pass", "fail", "error", "timeout",
                                                      "missing") if s in counts)
    students = len({row["student"] for row in rows})
    print(f"graded {students} students x {len(rows) // max(students, 1)} exercises: "
          f"{summary or 'nothing to grade'}; wrote {' and '.join(written)}")
    return 0
