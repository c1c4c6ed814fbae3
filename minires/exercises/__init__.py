"""Exercises: write a kernel yourself, then let the checker grade it.

Students: every exercise is one file in ``tutorials/exercises/`` holding a function stub
(``raise NotImplementedError``) whose docstring gives the shapes and the formula.  Fill it
in, then run::

    python -m minires check --list                     # every exercise and its status
    python -m minires check im2col                     # grade tutorials/exercises/im2col.py
    python -m minires check im2col --file my_im2col.py # grade another file

or, in a notebook, ``minires.exercises.check("im2col", im2col)`` with the function you wrote
in a cell.  The checker compares your function with minires's own implementation on several
random inputs (odd sizes, stride 2, padding, batch 1, ties ...), runs a numerical gradient
check for backward passes, and says what differs and why it may differ.  Your code runs in
its own process with a time limit, so an endless loop or ``sys.exit`` cannot hang or fool it.

Teachers: an exercise is ONE module in ``minires/exercises/catalog/`` (or in a course folder
passed as ``--catalog DIR``) plus its stub; ``python -m minires grade`` grades a class.  See
``docs/teaching.md``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from minires.exercises.checker import DEFAULT_TOLERANCE, GENERIC_HINTS, Case, GradCheck, evaluate
from minires.exercises.registry import Exercise, exercise_names, get_exercise, load_catalog
from minires.exercises.report import CaseResult, Report, display_path, format_report
from minires.exercises.sandbox import DEFAULT_TIMEOUT, Sandbox
from minires.exercises.source import function_file_text


def check(name: str, solution=None, *, seed: int = 0, timeout: float = DEFAULT_TIMEOUT,
          directory=None, catalogs=(), out=None, quiet: bool = False) -> Report:
    """Check a solution of exercise ``name`` and return its :class:`Report`.

    ``solution``: your function (written in a notebook cell, say), or the path of your file
    (default: the exercise's stub, or ``directory/<stub name>``).  Your code runs in its own
    process; each case may take ``timeout`` seconds.  The report is printed to ``out``
    (default stdout) unless ``quiet``; ``report.passed`` is True only when every check
    passed, ``report.results`` holds the per-check details.  ``catalogs``: course folders
    with more exercises.  Raises KeyError for an unknown exercise, TypeError for a solution
    that is neither a function nor a path.
    """
    import time

    exercise = get_exercise(name, catalogs)
    out = sys.stdout if out is None else out
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="minires-solution-") as folder:
        if callable(solution):
            path = Path(folder) / exercise.stub
            path.write_text(function_file_text(solution, exercise.function))
            shown = "your code"
        elif solution is None or isinstance(solution, (str, Path)):
            if solution is None:
                path = (Path(directory) / exercise.stub if directory is not None
                        else exercise.stub_path())
            else:
                path = Path(solution)
            shown = display_path(path)
        else:
            raise TypeError(f"check() takes your function or the path of your file, got "
                            f"{type(solution).__name__}")
        with Sandbox(exercise.name, path, seed=seed, timeout=timeout, catalogs=catalogs,
                     shown=shown, echo=None if quiet else out) as student:
            report = evaluate(exercise, student, seed=seed, shown=shown)
    report.seconds = time.perf_counter() - start
    if not quiet:
        print(format_report(report), file=out, flush=True)
    return report


def run_check(name: str, solution=None, seed: int = 0) -> int:
    """Check ``solution`` (a path or a function; default: the stub) for exercise ``name``,
    print the report, return an exit code (0 only when everything passed)."""
    return 0 if check(name, solution, seed=seed).passed else 1


def check_main(name: str, function) -> Report | None:
    """The last cell of a stub: check ``function``.  In a notebook, return the report; run
    as a script (``python im2col.py``), check the script's file (so that it may import
    its sibling solutions) and exit with 0 when every check passed, else 1."""
    main = sys.modules.get("__main__")
    script = getattr(main, "__file__", None)
    if "ipykernel" in sys.modules or script is None or \
            getattr(function, "__code__", None) is None or \
            Path(function.__code__.co_filename).resolve() != Path(script).resolve():
        return check(name, function)
    sys.exit(run_check(name, script))


__all__ = ["DEFAULT_TIMEOUT", "DEFAULT_TOLERANCE", "GENERIC_HINTS", "Case", "CaseResult",
           "Exercise", "GradCheck", "Report", "check", "check_main", "exercise_names",
           "format_report", "get_exercise", "load_catalog", "run_check"]
