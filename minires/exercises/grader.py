"""Grade a class: every student's solution of every exercise, with the safe checker.

``SUBMISSIONS_DIR`` holds one folder per student (the folder's name is the student's),
each with files named like the stubs (``im2col.py``, ``col2im.py``, ...).  Each (student,
exercise) runs in its own process with a per-case timeout, so one endless loop, ``sys.exit``
or monkeypatched kernel affects that row only.  A row's status is

    pass     every check passed
    fail     some check failed (a wrong value, an exception, ``sys.exit``, a change to minires,
             an untouched stub)
    error    the file could not be loaded (syntax error, failing import), or its process died
    timeout  a case (or loading the file) took longer than the timeout
    missing  no file for this exercise in the student's folder
"""

from __future__ import annotations

import csv
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from minires.exercises import check, load_catalog
from minires.exercises.checker import work_items
from minires.serialization import atomic_write

FIELDS = ("student", "exercise", "status", "passed", "total", "seconds", "note")


def _status(report) -> str:
    if report.status == "passing":
        return "pass"
    if report.status == "timeout":
        return "timeout"
    if report.status == "cannot load" or any(r.kind == "crash" for r in report.results):
        return "error"
    return "fail"


def _note(report) -> str:
    """The first problem, on one line (for the teacher's table)."""
    if report.message:
        return report.message.split("\n")[0]
    failed = next((r for r in report.results if not r.passed), None)
    if failed is None or not failed.lines:
        return ""
    return f"check {report.results.index(failed) + 1}: {failed.lines[0].splitlines()[0]}"


def _grade_one(folder: Path, exercise, seed, catalogs, extra) -> dict:
    path = folder / exercise.stub
    row = {"student": folder.name, "exercise": exercise.name}
    if not path.is_file():
        row.update(status="missing", passed=0, total=len(work_items(exercise, seed)),
                   seconds=0.0, note=f"no {exercise.stub}")
        return row
    report = check(exercise.name, path, seed=seed, catalogs=catalogs, quiet=True, **extra)
    row.update(status=_status(report), passed=report.n_passed, total=report.total,
               seconds=round(report.seconds, 2), note=_note(report))
    return row


def grade_class(submissions, names=None, *, timeout=None, catalogs=(), seed: int = 0,
                progress=None, jobs: int = 1) -> list[dict]:
    """One row (a dict with :data:`FIELDS`) per student folder of ``submissions`` and
    exercise (``names``, default every exercise), students in alphabetical order.

    ``progress``: a stream for one line per student as grading goes (None: silent).
    ``jobs``: how many of a student's exercises are checked at once (each in its own
    process; more jobs than cores makes the per-case timeouts less fair).
    """
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive int, got {jobs!r}")
    exercises, _ = load_catalog(catalogs)
    if names is not None:
        by_name = {e.name: e for e in exercises}
        exercises = [by_name[n] for n in names]
    students = sorted(p for p in Path(submissions).iterdir()
                      if p.is_dir() and not p.name.startswith("."))
    if not students:
        raise ValueError(f"{submissions} holds no student folders (expected one folder per "
                         f"student, each with files named like the stubs)")
    extra = {} if timeout is None else {"timeout": timeout}
    rows = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for number, folder in enumerate(students, 1):
            start = time.perf_counter()
            mine = list(pool.map(lambda e, f=folder: _grade_one(f, e, seed, catalogs, extra),
                                 exercises))
            rows += mine
            if progress is not None:
                _progress_line(progress, number, len(students), folder.name, mine,
                               time.perf_counter() - start)
    return rows


def _progress_line(progress, number: int, count: int, student: str, mine: list,
                   seconds: float):
    done = sum(r["status"] == "pass" for r in mine)
    others = ", ".join(f"{r['exercise']} {r['status']}" for r in mine if r["status"] != "pass")
    print(f"[{number}/{count}] {student}: {done}/{len(mine)} pass"
          f"{'; ' + others if others else ''} ({seconds:.1f} s)", file=progress, flush=True)


def write_csv(rows, path):
    """The rows as CSV (header :data:`FIELDS`), written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, lambda f: f.write(buffer.getvalue().encode("utf-8")))


def write_json(rows, path):
    """The rows as a JSON list of objects, written atomically."""
    text = json.dumps(rows, indent=1) + "\n"
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
