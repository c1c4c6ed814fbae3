"""The exercises: every module of ``minires.exercises.catalog`` is one, and a course adds its
own with ``catalogs=[DIR]`` (every ``*.py`` file in DIR is one exercise; see
``minires/exercises/catalog/__init__.py`` for what a module defines)."""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import pkgutil
import sys
from pathlib import Path

from minires.exercises.checker import DEFAULT_TOLERANCE, GENERIC_HINTS

_REQUIRED = ("NAME", "TITLE", "STUB", "FUNCTION", "reference", "cases")

#: Where the stubs live when minires runs from a checkout: <repo>/tutorials/exercises.
PACKAGE_STUB_DIR = Path(__file__).resolve().parents[2] / "tutorials" / "exercises"


class Exercise:
    """An exercise module with defaults filled in (see the catalog's docstring)."""

    def __init__(self, module, catalog: str | None = None):
        missing = [a for a in _REQUIRED if not hasattr(module, a)]
        if missing:
            raise ValueError(f"{module.__name__} must define {', '.join(missing)}")
        self.module = module
        self.catalog = catalog  # the course folder it came from; None for a built-in one
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
        minires runs from one (or in the course folder for a course's exercise), else in
        ``./tutorials/exercises``."""
        for folder in (PACKAGE_STUB_DIR, self.catalog):
            if folder is not None and (Path(folder) / self.stub).is_file():
                return Path(folder) / self.stub
        return Path("tutorials") / "exercises" / self.stub

    def __repr__(self) -> str:
        return f"Exercise({self.name!r})"


def _course_module(path: Path):
    """Import a course's exercise file under a name unique to its path."""
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    name = f"minires_course_{path.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def load_catalog(catalogs=()):
    """``(exercises sorted by ORDER then NAME, [(module name, error), ...] for broken
    modules)``: the built-in catalog, then each folder of ``catalogs`` (a course's exercise
    with the NAME of a built-in one replaces it)."""
    from minires.exercises import catalog

    found, broken = {}, []
    sources = [(info.name, None) for info in pkgutil.iter_modules(catalog.__path__)]
    for folder in catalogs:
        folder = Path(folder)
        if not folder.is_dir():
            raise ValueError(f"--catalog {folder}: not a folder (expected a folder of "
                             f"exercise modules, one .py file each)")
        sources += [(p, folder) for p in sorted(folder.glob("*.py"))]
    names_seen: dict[str, list] = {}
    for source, folder in sources:
        label = source if folder is None else source.stem
        if label.startswith("_"):
            continue
        try:
            if folder is None:
                module = importlib.import_module(f"{catalog.__name__}.{source}")
            else:
                module = _course_module(source)
            exercise = Exercise(module, None if folder is None else str(folder))
        except Exception as err:  # one broken definition must not hide the others
            broken.append((label, f"{type(err).__name__}: {err}"))
            continue
        names_seen.setdefault((exercise.name, folder), []).append(label)
        found[exercise.name] = exercise
    for (name, _), labels in names_seen.items():
        if len(labels) > 1:
            broken.append((name, "two catalog modules define this NAME"))
    exercises = sorted(found.values(), key=lambda e: (e.order, e.name))
    return exercises, broken


def exercise_names(catalogs=()) -> list[str]:
    return [e.name for e in load_catalog(catalogs)[0]]


def get_exercise(name: str, catalogs=()) -> Exercise:
    """The exercise called ``name``; KeyError with the list of names (and a suggestion)."""
    exercises, broken = load_catalog(catalogs)
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
