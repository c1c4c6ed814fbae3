"""Run a student's solution of an exercise against the reference and explain what differs.

``python -m minires check NAME`` ends up in :func:`check`, which

1. loads the student's file (default: ``tutorials/exercises/<STUB>``) and finds the function
   (a syntax error or a failing import is reported with the file and line, no traceback);
2. calls it on every case of the exercise, each time on fresh copies of the inputs, and
   compares the results with the reference implementation (minires's own kernels):
   missing ``return``, wrong number of results, wrong shape or dtype, and the first value
   that differs (index, expected, got, relative error) are reported in words;
3. runs the exercise's gradient checks, if it has any: the student's backward pass against
   central differences of the (reference) forward pass;
4. prints a hint for each kind of failure; exercises recognise typical mistakes (a
   ``diagnose`` function turns "differs" into "ties go to the last maximum", ...).

An exception in the student's code is shown as its type, message and the student's own line
(``file:line``), never as a traceback; ``NotImplementedError`` raised there means the stub is
untouched: "not implemented yet: fill in FUNCTION in FILE".

Comparison: an output value passes when ``|got - expected| <= atol * max(1, max|expected|) +
rtol * |expected|`` with the exercise's ``(rtol, atol)`` for the expected dtype
(:data:`DEFAULT_TOLERANCE` unless the exercise sets ``TOLERANCE``).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import linecache
import os
import sys
import textwrap
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from minires.gradcheck import DEFAULT_TOLERANCE as GRADCHECK_TOLERANCE
from minires.gradcheck import compare_gradients, numerical_gradient

#: (rtol, atol) per expected dtype; exercises may override with a TOLERANCE dict.
DEFAULT_TOLERANCE = {"float64": (1e-7, 1e-9), "float32": (1e-4, 1e-5)}

#: Hints for the failure kinds every exercise shares; an exercise's HINTS override them.
GENERIC_HINTS = {
    "not_implemented": "remove the `raise NotImplementedError` line and write your code "
                       "there; the docstring gives the shapes and the formula.",
    "exception": "the error happened on the line shown; print the shapes of the arrays you "
                 "use there (print(x.shape)) and compare them with the docstring.",
    "signature": "the call itself failed: keep the function's name and arguments exactly as "
                 "in the stub in tutorials/exercises/.",
    "none": "your function returned None: did you forget the `return` statement?",
    "count": "return exactly the results the docstring lists, in that order, as a tuple: "
             "`return a, b`.",
    "type": "return NumPy arrays (np.ndarray); build lists into one with np.array(...).",
    "shape": "compare the shape you return with the one the docstring gives; "
             "print(result.shape) just before the return.",
    "dtype": "keep the input's dtype: create new arrays with np.zeros_like(x) or "
             "np.zeros(shape, dtype=x.dtype); np.zeros(shape) alone is float64.",
    "nan": "NaN or inf appeared: look for a division by zero, a log of 0 or an overflow.",
    "mismatch": "the values differ: work the smallest failing case out by hand (or print "
                "both arrays) and compare with the formula in the docstring.",
    "gradcheck": "your gradient disagrees with the numerical derivative of the forward pass "
                 "(central differences): the formula, not the shape, is wrong.",
}

#: Hints are wrapped to this many columns.
WIDTH = 100

_KIND_ORDER = ("none", "count", "type", "shape", "dtype", "nan", "mismatch")


# ---------------------------------------------------------------------------- case types


@dataclass
class Case:
    """One set of inputs for the student's function.

    Attributes:
        label: a short description shown in the report ("x (2, 3, 5, 5), stride 2").
        args, kwargs: passed to the student's function and to the reference (deep-copied
            for each, so neither sees the other's in-place changes).
        runner: optional ``runner(function, *args, **kwargs) -> result`` used instead of a
            plain call, for cases that call the function several times (e.g. several
            optimizer steps in a row); used for the student and the reference alike.
        info: anything the exercise's ``diagnose`` wants to know about the case.
    """

    label: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    runner: Callable | None = None
    info: dict = field(default_factory=dict)

    def call(self, function):
        args, kwargs = copy.deepcopy(self.args), copy.deepcopy(self.kwargs)
        if self.runner is not None:
            return self.runner(function, *args, **kwargs)
        return function(*args, **kwargs)


@dataclass
class GradCheck:
    """A gradient check of the student's backward pass against central differences.

    Attributes:
        label: a short description of the inputs.
        forward: ``forward(*inputs) -> y``, the reference forward pass on float64 arrays.
        inputs: the float64 arrays that ``forward`` takes.
        student_args: ``student_args(grad_y, *inputs) -> tuple`` of the arguments to call
            the student's backward function with.
        checks: ``{input index: (index of the student's result, name)}``: which of the
            student's results is the gradient of which input (index ``None`` when the
            function returns one array).
        tolerance: largest relative error accepted (minires.gradcheck's default).
    """

    label: str
    forward: Callable
    inputs: list
    student_args: Callable
    checks: dict
    tolerance: float = GRADCHECK_TOLERANCE


# ---------------------------------------------------------------------------- results


@dataclass
class CaseResult:
    label: str
    passed: bool
    lines: list = field(default_factory=list)  # what went wrong, one line each
    hint: str | None = None
    kind: str | None = None  # failure kind (a GENERIC_HINTS key or an exercise's own key)


@dataclass
class Report:
    """The outcome of checking one exercise."""

    exercise: object
    path: Path | None
    results: list = field(default_factory=list)
    status: str = "failing"  # "passing", "failing", "not started", "cannot load"
    message: str | None = None  # for "not started" / "cannot load"

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def total(self) -> int:
        return len(self.results)

    @property
    def ok(self) -> bool:
        return self.status == "passing"


class _StudentProblem(Exception):
    """The student's code could not run: ``kind`` is "not_implemented", "exception" or
    "load"; the message is ready to print."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


# ---------------------------------------------------------------------------- paths


def display_path(path) -> str:
    """``path`` relative to the working directory when it lies below it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _same_file(a, b) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


# ---------------------------------------------------------------------------- loading


def load_function(path, function_name: str):
    """Import ``path`` as a fresh module and return its ``function_name``.

    Raises _StudentProblem("load", message) for a missing file, a syntax error, an
    exception while importing, or a missing function.
    """
    path = Path(path)
    shown = display_path(path)
    if not path.is_file():
        raise _StudentProblem("load", f"no such file: {shown}")
    module_name = f"_minires_student_{abs(hash(str(path.resolve())))}"
    folder = str(path.resolve().parent)
    # The file's folder is importable while it loads, so a solution may import another
    # (conv2d_backward.py: `from im2col import im2col`).
    sys.path.insert(0, folder)
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # as for any import (dataclasses need it)
        with _quiet_numpy():
            spec.loader.exec_module(module)
    except SyntaxError as err:
        sys.modules.pop(module_name, None)
        where = f"{display_path(err.filename or path)}:{err.lineno}"
        text = (err.text or "").rstrip("\n")
        lines = [f"cannot load {shown}: {type(err).__name__}: {err.msg} ({where})"]
        if text.strip():
            lines.append(f"    {text.strip()}")
            if err.offset and err.offset > 0:
                indent = len(text) - len(text.lstrip())
                lines.append("    " + " " * max(err.offset - 1 - indent, 0) + "^")
        raise _StudentProblem("load", "\n".join(lines)) from None
    except Exception as err:
        sys.modules.pop(module_name, None)
        raise _StudentProblem(
            "load", f"cannot load {shown}: {_describe_exception(err, path)}") from None
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    function = getattr(module, function_name, None)
    if function is None:
        raise _StudentProblem("load", f"{shown} has no function named {function_name}(); "
                                      f"keep the name and signature of the stub")
    if not callable(function):
        raise _StudentProblem("load", f"{function_name} in {shown} is not a function")
    return function


def _describe_exception(err: BaseException, path) -> str:
    """``TypeError: message (at file:line: source)`` pointing at the student's own line."""
    text = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    frame = _last_student_frame(err, path)
    if frame is not None:
        source = (frame.line or linecache.getline(frame.filename, frame.lineno)).strip()
        text += f"\n    at {display_path(frame.filename)}:{frame.lineno}"
        if source:
            text += f":  {source}"
    else:
        text += "\n    (raised when calling your function: keep the stub's signature)"
    return text


def _last_student_frame(err: BaseException, path):
    frames = [f for f in traceback.extract_tb(err.__traceback__) if _same_file(f.filename, path)]
    return frames[-1] if frames else None


@contextlib.contextmanager
def _quiet_numpy():
    """No NumPy warnings (overflow, invalid value) in the middle of the report: NaNs are
    reported as values."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


def _call_student(case: Case, function, path, function_name: str):
    try:
        with _quiet_numpy():
            return case.call(function)
    except NotImplementedError as err:
        tb = traceback.extract_tb(err.__traceback__)
        if tb and _same_file(tb[-1].filename, path):
            raise _StudentProblem(
                "not_implemented",
                f"not implemented yet: fill in {function_name}() in {display_path(path)}",
            ) from None
        raise _StudentProblem("exception", _describe_exception(err, path)) from None
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as err:  # any error in the student's code is part of the report
        kind = "exception" if _last_student_frame(err, path) is not None else "signature"
        raise _StudentProblem(kind, _describe_exception(err, path)) from None


# ---------------------------------------------------------------------------- comparing


def _fmt(value) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    return repr(value.item() if isinstance(value, np.generic) else value)


def _fmt_index(index) -> str:
    """``(0, 2)`` -> ``"[0, 2]"``, as one indexes the array."""
    return "[" + ", ".join(str(int(i)) for i in index) + "]"


def _as_array(value):
    """Unwrap a minires Tensor; anything else is returned as it is."""
    data = getattr(value, "data", None)
    if type(value).__name__ == "Tensor" and isinstance(data, np.ndarray):
        return data
    return value


def compare_output(name: str, expected, got, tolerance: dict) -> tuple[str, str] | None:
    """``None`` when ``got`` matches ``expected``, else ``(kind, message)``."""
    got = _as_array(got)
    if expected is None:
        if got is None:
            return None
        return "type", f"{name} should be None, got {type(got).__name__}"
    if got is None:
        return "none", f"{name} is None (expected an array of shape {tuple(expected.shape)})"
    if not isinstance(got, np.ndarray):
        kind = type(got).__name__
        if np.isscalar(got) and expected.ndim > 0:
            return "type", (f"{name} is a single number ({kind}), expected an array of shape "
                            f"{tuple(expected.shape)}")
        if not np.isscalar(got):
            return "type", f"{name} is a {kind}, expected a NumPy array"
        got = np.asarray(got)
    if got.shape != expected.shape:
        return "shape", (f"{name} has shape {tuple(got.shape)}, expected "
                         f"{tuple(expected.shape)}")
    if got.dtype.kind not in "fiub":
        return "dtype", f"{name} has dtype {got.dtype}, expected {expected.dtype}"
    rtol, atol = tolerance.get(expected.dtype.name, tolerance.get("float64"))
    exp = expected.astype(np.float64)
    val = got.astype(np.float64)
    scale = float(np.max(np.abs(exp), initial=0.0)) if exp.size else 0.0
    with np.errstate(all="ignore"):
        diff = np.abs(val - exp)
        bad = ~(diff <= atol * max(1.0, scale) + rtol * np.abs(exp))
    bad &= ~(np.isnan(exp) & np.isnan(val))
    if bad.any():
        index = tuple(np.argwhere(bad)[0])
        e, g = exp[index], val[index]
        if not np.isfinite(g):
            error = ""
        elif e == 0:
            error = f"absolute error {abs(g - e):.1e}; "
        else:
            error = f"relative error {abs(g - e) / abs(e):.1e}; "
        kind = "nan" if not np.isfinite(g) and np.isfinite(e) else "mismatch"
        where = name + (_fmt_index(index) if exp.ndim else "")
        message = (f"first difference at {where}: expected {_fmt(e)}, got {_fmt(g)}\n"
                   f"{error}{int(bad.sum())} of {bad.size} values of {name} differ")
        return kind, message
    if got.dtype != expected.dtype:
        return "dtype", (f"{name} has dtype {got.dtype}, expected {expected.dtype} (the "
                         f"dtype of the inputs)")
    return None


def _compare_all(exercise, expected, got) -> list[tuple[str, str]]:
    """Problems of one case, as (kind, message) pairs, at most one per output."""
    names = exercise.outputs
    if len(names) == 1:
        if isinstance(got, (tuple, list)) and not isinstance(expected, (tuple, list)):
            return [("count", f"returned a {type(got).__name__} of {len(got)} items; return "
                              f"the array {names[0]} itself")]
        expected, got = (expected,), (got,)
    else:
        listed = ", ".join(names)
        if got is None:
            return [("none", f"returned None, expected {len(names)} results ({listed})")]
        if not isinstance(got, (tuple, list)):
            return [("count", f"returned a single {type(got).__name__}, expected a tuple of "
                              f"{len(names)} results ({listed})")]
        if len(got) != len(names):
            return [("count", f"returned {len(got)} results, expected {len(names)} ({listed})")]
    problems = []
    for name, e, g in zip(names, expected, got, strict=True):
        problem = compare_output(name, e, g, exercise.tolerance)
        if problem is not None:
            problems.append(problem)
    return problems


# ---------------------------------------------------------------------------- running


def _hint(exercise, key: str | None) -> str | None:
    if key is None:
        return None
    return exercise.hints.get(key)


def _run_case(exercise, case: Case, function, path) -> CaseResult:
    expected = case.call(exercise.reference)
    got = _call_student(case, function, path, exercise.function)
    problems = _compare_all(exercise, expected, got)
    if not problems:
        return CaseResult(case.label, True)
    kind = min((k for k, _ in problems), key=lambda k: _KIND_ORDER.index(k)
               if k in _KIND_ORDER else len(_KIND_ORDER))
    diagnosis = None
    if exercise.diagnose is not None:
        try:
            with _quiet_numpy():
                diagnosis = exercise.diagnose(case, expected, got)
        except Exception:  # a diagnosis is a bonus: never let it break the report
            diagnosis = None
    key = diagnosis if diagnosis in exercise.hints else kind
    return CaseResult(case.label, False, [m for _, m in problems], _hint(exercise, key), key)


def _run_gradcheck(exercise, check: GradCheck, function, path, seed: int) -> CaseResult:
    label = f"gradcheck {check.label}"
    inputs = [np.array(a, dtype=np.float64) for a in check.inputs]
    y = check.forward(*inputs)
    grad_y = np.random.default_rng((seed, 0x5EED)).standard_normal(np.shape(y))
    case = Case(label, check.student_args(grad_y, *copy.deepcopy(inputs)))
    got = _call_student(case, function, path, exercise.function)
    lines, kind = [], None
    single = len(exercise.outputs) == 1
    if not single and not (isinstance(got, (tuple, list)) and len(got) == len(exercise.outputs)):
        lines.append(f"expected a tuple of {len(exercise.outputs)} results "
                     f"({', '.join(exercise.outputs)}), got {type(got).__name__}")
        kind = "none" if got is None else "count"
    else:
        numeric = numerical_gradient(check.forward, inputs, grad_y,
                                     wrt=sorted(check.checks))
        for index, (out_index, name) in check.checks.items():
            g = _as_array(got if single or out_index is None else got[out_index])
            if not isinstance(g, np.ndarray) or g.shape != inputs[index].shape:
                shape = getattr(g, "shape", None)
                lines.append(f"dL/d{name}: expected an array of shape "
                             f"{tuple(inputs[index].shape)}, got "
                             f"{type(g).__name__ if shape is None else tuple(shape)}")
                kind = kind or ("none" if g is None else "shape")
                continue
            cmp = compare_gradients(g.astype(np.float64), numeric[index], name)
            if not cmp.relative_error <= check.tolerance:  # NaN fails too
                lines.append(f"dL/d{name}: relative error {cmp.relative_error:.1e} (tolerance "
                             f"{check.tolerance:g})\n  worst at {name}"
                             f"{_fmt_index(cmp.worst_index)}: yours {_fmt(cmp.analytic)}, "
                             f"numerical {_fmt(cmp.numeric)}")
                kind = kind or "gradcheck"
    if not lines:
        return CaseResult(label, True)
    if exercise.diagnose is not None and kind not in ("count", "none"):
        try:  # the reference takes the student's arguments: diagnose as for a case
            with _quiet_numpy():
                expected = case.call(exercise.reference)
                diagnosis = exercise.diagnose(case, expected, got)
            if diagnosis in exercise.hints:
                kind = diagnosis
        except Exception:
            pass
    return CaseResult(label, False, lines, _hint(exercise, kind), kind)


def run(exercise, path=None, seed: int = 0) -> Report:
    """Check the student's file ``path`` (default: the exercise's stub) and return a
    :class:`Report`; prints nothing (the student's own prints go through)."""
    path = Path(path) if path is not None else exercise.stub_path()
    report = Report(exercise, path)
    try:
        function = load_function(path, exercise.function)
    except _StudentProblem as problem:
        report.status, report.message = "cannot load", str(problem)
        return report
    rng = np.random.default_rng(seed)
    checks = [("case", c) for c in exercise.cases(rng)]
    checks += [("gradcheck", g) for g in exercise.gradchecks(rng)]
    for kind, item in checks:
        try:
            if kind == "case":
                result = _run_case(exercise, item, function, path)
            else:
                result = _run_gradcheck(exercise, item, function, path, seed)
        except _StudentProblem as problem:
            if problem.kind == "not_implemented" and not report.results:
                report.status, report.message = "not started", str(problem)
                return report
            result = CaseResult(_label(kind, item), False, str(problem).split("\n"),
                                _hint(exercise, problem.kind), problem.kind)
        report.results.append(result)
    report.status = "passing" if all(r.passed for r in report.results) else "failing"
    return report


def _label(kind: str, item) -> str:
    return item.label if kind == "case" else f"gradcheck {item.label}"


# ---------------------------------------------------------------------------- printing


def format_report(report: Report) -> str:
    exercise = report.exercise
    out = [f"Exercise {exercise.name}: {exercise.title}"]
    shown = display_path(report.path) if report.path is not None else "?"
    if report.status == "cannot load":
        out += [report.message, "", "Result: FAIL (the file could not be loaded)"]
        return "\n".join(out)
    out.append(f"checking {exercise.function}() in {shown}")
    out.append("")
    if report.status == "not started":
        hint = textwrap.fill(exercise.hints["not_implemented"], width=WIDTH,
                             initial_indent="hint: ", subsequent_indent="      ")
        out += [report.message, hint, "", "Result: FAIL (not started)"]
        return "\n".join(out)
    seen_hints: dict[str, int] = {}
    for number, result in enumerate(report.results, 1):
        verdict = "PASS" if result.passed else "FAIL"
        out.append(f"  {verdict}  {number:2d}. {result.label}")
        for line in result.lines:
            for part in line.split("\n"):
                if part.startswith(" "):  # pre-formatted (a file:line and its source)
                    out.append("           " + part)
                    continue
                out.append(textwrap.fill(part, width=WIDTH, initial_indent="           ",
                                         subsequent_indent="             ",
                                         break_on_hyphens=False, break_long_words=False))
        if result.hint:
            if result.hint in seen_hints:
                out.append(f"           hint: as for check {seen_hints[result.hint]}")
            else:
                seen_hints[result.hint] = number
                out.append(textwrap.fill(result.hint, width=WIDTH,
                                         initial_indent="           hint: ",
                                         subsequent_indent="                 ",
                                         break_on_hyphens=False))
    out.append("")
    if report.ok:
        out.append(f"Result: PASS (all {report.total} checks passed)")
    else:
        out.append(f"Result: FAIL ({report.passed} of {report.total} checks passed)")
    return "\n".join(out)


def check(name: str, path=None, seed: int = 0, out=None, directory=None) -> Report:
    """Check exercise ``name`` and print the report to ``out`` (default stdout).

    ``path``: the student's file; ``directory``: a folder holding the student's files
    under the stubs' names (default: ``tutorials/exercises``).  Raises ``KeyError`` with a
    readable message for an unknown exercise.
    """
    from minires.exercises import get_exercise

    exercise = get_exercise(name)
    if path is None and directory is not None:
        path = Path(directory) / exercise.stub
    out = sys.stdout if out is None else out
    report = run(exercise, path, seed=seed)
    print(format_report(report), file=out, flush=True)
    return report


def status_table(seed: int = 0, directory=None, out=None) -> list:
    """Run every exercise quietly and print one line each: name, title and status."""
    from minires.exercises import load_catalog

    out = sys.stdout if out is None else out
    exercises, broken = load_catalog()
    rows = []
    for exercise in exercises:
        path = None if directory is None else Path(directory) / exercise.stub
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            report = run(exercise, path, seed=seed)
        if report.status == "failing":
            status = f"failing ({report.passed}/{report.total})"
        elif report.status == "cannot load":
            missing = report.path is not None and not Path(report.path).is_file()
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
    passing = sum(r.ok for _, r, _ in rows)
    print(f"{passing} of {len(rows)} passing", file=out, flush=True)
    return [(e.name, s) for e, _, s in rows]


def _stub_dir(exercises) -> Path:
    return exercises[0].stub_path().parent if exercises else Path("tutorials/exercises")


def main(args) -> int:
    """The ``check`` subcommand; ``args`` has exercise, file, dir, list, seed.

    Exit code 0 only when every check passed (for ``--list``: every exercise passes),
    1 when something failed, 2 for a command-line mistake.
    """
    from minires.exercises import exercise_names

    if args.list:
        if args.exercise or args.file:
            print("error: --list checks every exercise; give no EXERCISE or --file",
                  file=sys.stderr)
            return 2
        rows = status_table(seed=args.seed, directory=args.dir)
        return 0 if rows and all(status == "passing" for _, status in rows) else 1
    if not args.exercise:
        print("error: name an exercise, or use --list to see them all with their status: "
              + ", ".join(exercise_names()), file=sys.stderr)
        return 2
    try:
        report = check(args.exercise, args.file, seed=args.seed, directory=args.dir)
    except KeyError as err:
        print(f"error: {err.args[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # e.g. a student's endless loop
        print("\ninterrupted (does your function finish on a small input?)", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the report was piped into `head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0 if report.ok else 1
