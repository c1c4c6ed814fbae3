"""Exercises: write a kernel yourself, then let ``python -m minires check NAME`` grade it.

Students: every exercise is one file in ``tutorials/exercises/`` holding a function stub
(``raise NotImplementedError``) whose docstring gives the shapes and the formula.  Fill it
in, then run::

    python -m minires check --list                     # every exercise and its status
    python -m minires check im2col                     # grade tutorials/exercises/im2col.py
    python -m minires check im2col --file my_im2col.py # grade another file

The checker compares your function with minires's own implementation on several random
inputs (odd sizes, stride 2, padding, batch 1, ties ...), runs a numerical gradient check
for backward passes, and says what differs and why it may differ.

Teachers: an exercise is ONE module in ``minires/exercises/catalog/`` (found automatically)
plus its stub in ``tutorials/exercises/``.  See ``minires/exercises/catalog/__init__.py``
for what the module defines.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from pathlib import Path

from minires.exercises.checker import DEFAULT_TOLERANCE, GENERIC_HINTS, Case, GradCheck, check

_REQUIRED = ("NAME", "TITLE", "STUB", "FUNCTION", "reference", "cases")

#: Where the stubs live when minires runs from a checkout: <repo>/tutorials/exercises.
PACKAGE_STUB_DIR = Path(__file__).resolve().parents[2] / "tutorials" / "exercises"


class Exercise:
    """An exercise module with defaults filled in (see the catalog's docstring)."""

    def __init__(self, module):
        missing = [a for a in _REQUIRED if not hasattr(module, a)]
        if missing:
            raise ValueError(f"{module.__name__} must define {', '.join(missing)}")
        self.module = module
        self.name: str = module.NAME
        self.title: str = module.TITLE
        self.order = getattr(module, "ORDER", 1000)
        self.stub: str = module.STUB
        self.function: str = module.FUNCTION
        self.outputs: tuple = tuple(getattr(module, "OUTPUTS", ("result",)))
        self.tolerance = {**DEFAULT_TOLERANCE, **getattr(module, "TOLERANCE", {})}
        self.hints = {**GENERIC_HINTS, **getattr(module, "HINTS", {})}
        self.reference = module.reference
        self.diagnose = getattr(module, "diagnose", None)

    def cases(self, rng):
        return list(self.module.cases(rng))

    def gradchecks(self, rng):
        make = getattr(self.module, "gradchecks", None)
        return [] if make is None else list(make(rng))

    def stub_path(self) -> Path:
        """The student's default file: in the checkout's ``tutorials/exercises`` when
        minires runs from one, else in ``./tutorials/exercises``."""
        packaged = PACKAGE_STUB_DIR / self.stub
        if packaged.is_file():
            return packaged
        return Path("tutorials") / "exercises" / self.stub

    def __repr__(self) -> str:
        return f"Exercise({self.name!r})"


def load_catalog():
    """``(exercises sorted by ORDER then NAME, [(module name, error), ...] for broken
    modules)``; every module of ``minires.exercises.catalog`` is one exercise."""
    from minires.exercises import catalog

    exercises, broken = [], []
    for info in pkgutil.iter_modules(catalog.__path__):
        if info.name.startswith("_"):
            continue
        try:
            module = importlib.import_module(f"{catalog.__name__}.{info.name}")
            exercises.append(Exercise(module))
        except Exception as err:  # one broken definition must not hide the others
            broken.append((info.name, f"{type(err).__name__}: {err}"))
    names = [e.name for e in exercises]
    for name in {n for n in names if names.count(n) > 1}:
        broken.append((name, "two catalog modules define this NAME"))
    exercises.sort(key=lambda e: (e.order, e.name))
    return exercises, broken


def exercise_names() -> list[str]:
    return [e.name for e in load_catalog()[0]]


def get_exercise(name: str) -> Exercise:
    """The exercise called ``name``; KeyError with the list of names (and a suggestion)."""
    exercises, broken = load_catalog()
    for exercise in exercises:
        if exercise.name == name:
            return exercise
    for module_name, message in broken:
        if module_name == name:
            raise KeyError(f"exercise {name!r} is broken: {message}")
    names = [e.name for e in exercises]
    close = difflib.get_close_matches(name, names, n=1)
    suggestion = f" (did you mean {close[0]!r}?)" if close else ""
    raise KeyError(f"unknown exercise {name!r}{suggestion}; available: {', '.join(names)}")


def run_check(name: str, path=None, seed: int = 0) -> int:
    """Check ``path`` (default: the stub) for exercise ``name``, print the report, return
    an exit code (0 only when everything passed).  Stubs call this when run as scripts."""
    return 0 if check(name, path, seed=seed).ok else 1


__all__ = ["Case", "Exercise", "GradCheck", "check", "exercise_names", "get_exercise",
           "load_catalog", "run_check"]
