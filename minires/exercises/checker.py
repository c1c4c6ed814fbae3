"""Compare a student's results with the reference and explain what differs (no student code
runs here).

:func:`evaluate` is the checker's parent side.  It builds the exercise's cases, computes every
expected value itself with the reference implementation (minires's own kernels), and asks a
*student* object for the student's result of each case; :mod:`minires.exercises.sandbox`
provides that object, which runs the student's code in a separate process with a timeout.  So
a submission can neither hang the checker nor change the reference it is compared with.

For each case the checker reports, in words: a missing ``return``, a wrong number of results,
a wrong shape or dtype, and the first value that differs (index, expected, got, relative
error); the exercise's gradient checks compare the student's backward pass with central
differences of the reference forward pass; every failure gets a hint, and an exercise's
``diagnose`` turns "differs" into a named mistake ("ties go to the last maximum", ...).

Comparison: an output value passes when ``|got - expected| <= atol * max(1, max|expected|) +
rtol * |expected|`` with the exercise's ``(rtol, atol)`` for the expected dtype
(:data:`DEFAULT_TOLERANCE` unless the exercise sets ``TOLERANCE``).
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from minires.exercises.report import CaseResult, Report
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
    "timeout": "your function did not finish in time: look for a loop that never ends (a "
               "`while` whose condition never changes), or loop over fewer elements.",
    "exit": "your code stopped the program (sys.exit, exit() or quit()): return the result "
            "instead.",
    "crash": "the process running your code ended abruptly (os._exit, a crash, or running "
             "out of memory): return the result instead.",
    "tamper": "a solution must not change minires itself (no assignments to its functions or "
              "classes): write your own function and leave the library as it is.",
    "not_run": "fix the problem of the earlier check first.",
}

_KIND_ORDER = ("none", "count", "type", "shape", "dtype", "nan", "mismatch")

#: Failures after which the student's process is gone or untrustworthy: the rest is not run.
FATAL_KINDS = ("timeout", "crash", "tamper")


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


class StudentProblem(Exception):
    """The student's code could not run or misbehaved: ``kind`` is a hint key
    ("not_implemented", "exception", "signature", "load", "timeout", "exit", "crash",
    "tamper"); the message is ready to print."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


# ---------------------------------------------------------------------------- the work list


def work_items(exercise, seed: int) -> list:
    """``[(kind, item), ...]``: the exercise's cases ("case", :class:`Case`), then its
    gradient checks ("gradcheck", :class:`GradCheck`), from one generator seeded with
    ``seed``, so that the checker and the student's process build the same list."""
    rng = np.random.default_rng(seed)
    items = [("case", c) for c in exercise.cases(rng)]
    return items + [("gradcheck", g) for g in exercise.gradchecks(rng)]


def _gradcheck_inputs(check: GradCheck, seed: int):
    """(float64 inputs, random upstream gradient grad_y) of a gradient check."""
    inputs = [np.array(a, dtype=np.float64) for a in check.inputs]
    y = check.forward(*inputs)
    grad_y = np.random.default_rng((seed, 0x5EED)).standard_normal(np.shape(y))
    return inputs, grad_y


def student_case(kind: str, item, seed: int) -> Case:
    """The call the student's function gets for one work item: the case itself, or for a
    gradient check ``Case(label, student_args(grad_y, *inputs))``."""
    if kind == "case":
        return item
    inputs, grad_y = _gradcheck_inputs(item, seed)
    return Case(f"gradcheck {item.label}", item.student_args(grad_y, *copy.deepcopy(inputs)))


@contextlib.contextmanager
def quiet_numpy():
    """No NumPy warnings (overflow, invalid value) in the middle of the report: NaNs are
    reported as values."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


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
    return None if key is None else exercise.hints.get(key)


def _diagnose(exercise, case, expected, got):
    if exercise.diagnose is None:
        return None
    try:
        with quiet_numpy():
            return exercise.diagnose(case, expected, got)
    except Exception:  # a diagnosis is a bonus: never let it break the report
        return None


def _run_case(exercise, case: Case, got) -> CaseResult:
    with quiet_numpy():
        expected = case.call(exercise.reference)
    problems = _compare_all(exercise, expected, got)
    if not problems:
        return CaseResult(case.label, True)
    kind = min((k for k, _ in problems), key=lambda k: _KIND_ORDER.index(k)
               if k in _KIND_ORDER else len(_KIND_ORDER))
    diagnosis = _diagnose(exercise, case, expected, got)
    key = diagnosis if diagnosis in exercise.hints else kind
    return CaseResult(case.label, False, [m for _, m in problems], _hint(exercise, key), key)


def _run_gradcheck(exercise, check: GradCheck, got, seed: int) -> CaseResult:
    inputs, grad_y = _gradcheck_inputs(check, seed)
    case = student_case("gradcheck", check, seed)
    lines, kind = [], None
    single = len(exercise.outputs) == 1
    if not single and not (isinstance(got, (tuple, list)) and len(got) == len(exercise.outputs)):
        lines.append(f"expected a tuple of {len(exercise.outputs)} results "
                     f"({', '.join(exercise.outputs)}), got {type(got).__name__}")
        kind = "none" if got is None else "count"
    else:
        numeric = numerical_gradient(check.forward, inputs, grad_y, wrt=sorted(check.checks))
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
        return CaseResult(case.label, True)
    if kind not in ("count", "none"):  # the reference takes the student's arguments
        try:
            with quiet_numpy():
                expected = case.call(exercise.reference)
        except Exception:
            expected = None
        diagnosis = _diagnose(exercise, case, expected, got)
        if diagnosis in exercise.hints:
            kind = diagnosis
    return CaseResult(case.label, False, lines, _hint(exercise, kind), kind)


def evaluate(exercise, student, seed: int = 0, shown: str | None = None) -> Report:
    """Check a student's solution of ``exercise`` and return a :class:`Report`.

    ``student`` runs the student's code: ``student.load()`` and ``student.call(index) ->
    result`` for the ``index``-th item of :func:`work_items`, both raising
    :class:`StudentProblem` when the code cannot run.  Expected values and gradient checks
    are computed here, never in the student's process.  ``shown``: how the report names the
    solution (a file path, "your function im2col").
    """
    items = work_items(exercise, seed)
    report = Report(exercise, shown, planned=len(items))
    try:
        student.load()
    except StudentProblem as problem:
        report.status = {"timeout": "timeout", "load": "cannot load",
                         "crash": "cannot load"}.get(problem.kind, "failing")
        report.message, report.kind = str(problem), problem.kind  # tamper, exit: failing
        return report
    for index, (kind, item) in enumerate(items):
        label = item.label if kind == "case" else f"gradcheck {item.label}"
        try:
            got = student.call(index)
            if kind == "case":
                result = _run_case(exercise, item, got)
            else:
                result = _run_gradcheck(exercise, item, got, seed)
        except StudentProblem as problem:
            if problem.kind == "not_implemented" and not report.results:
                report.status, report.message = "not started", str(problem)
                report.kind = problem.kind
                return report
            result = CaseResult(label, False, str(problem).split("\n"),
                                _hint(exercise, problem.kind), problem.kind)
            if problem.kind in FATAL_KINDS:
                report.results.append(result)
                report.results += [
                    CaseResult(i.label if k == "case" else f"gradcheck {i.label}", False,
                               [f"not run: check {len(report.results)} "
                                f"{'timed out' if problem.kind == 'timeout' else 'failed'}"],
                               _hint(exercise, "not_run"), "not_run")
                    for k, i in items[index + 1:]]
                break
        report.results.append(result)
    if any(r.kind == "timeout" for r in report.results):
        report.status = "timeout"
    else:
        report.status = "passing" if all(r.passed for r in report.results) else "failing"
    return report
