"""What the checker found: one :class:`CaseResult` per check, a :class:`Report` per exercise,
and :func:`format_report`, the text a student reads."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path

#: Hints are wrapped to this many columns.
WIDTH = 100


@dataclass
class CaseResult:
    """One check: its label, whether it passed, what went wrong (one line each), the hint
    and the failure kind (a hint key: "mismatch", "timeout", "tamper", ...)."""

    label: str
    passed: bool
    lines: list = field(default_factory=list)
    hint: str | None = None
    kind: str | None = None


@dataclass
class Report:
    """The outcome of checking one exercise.

    ``status``: "passing", "failing", "timeout", "not started" or "cannot load";
    ``passed`` is True only when every check passed; ``n_passed`` of ``total`` checks
    passed; ``results`` holds one :class:`CaseResult` per check; ``str(report)`` is the
    printed report.
    """

    exercise: object
    path: str | None  # how the solution is named in the report
    results: list = field(default_factory=list)
    status: str = "failing"
    message: str | None = None  # for "not started" / "cannot load" / a timeout while loading
    kind: str | None = None  # the problem's kind when nothing ran
    seconds: float = 0.0
    planned: int = 0  # how many checks the exercise has (counted when none could run)

    @property
    def passed(self) -> bool:
        return self.status == "passing"

    ok = passed  # the older name

    @property
    def n_passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def total(self) -> int:
        return len(self.results) if self.results else self.planned

    def __str__(self) -> str:
        return format_report(self)

    def __repr__(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (f"<Report {self.exercise.name}: {verdict}, {self.n_passed}/{self.total} "
                f"checks, {self.status}>")


def display_path(path) -> str:
    """``path`` relative to the working directory when it lies below it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _wrap(text: str, first: str, rest: str) -> str:
    return textwrap.fill(text, width=WIDTH, initial_indent=first, subsequent_indent=rest,
                         break_on_hyphens=False, break_long_words=False)


def format_report(report: Report) -> str:
    """The report as the student reads it: one PASS/FAIL line per check, what differs, a
    hint (each hint printed once), and a final ``Result:`` line."""
    exercise = report.exercise
    out = [f"Exercise {exercise.name}: {exercise.title}"]
    if report.message and not report.results and report.status != "not started":
        hint = exercise.hints.get(report.kind) if report.kind != "load" else None
        out += [report.message] + ([_wrap(hint, "hint: ", "      ")] if hint else [])
        why = {"timeout": "the file did not finish loading",
               "cannot load": "the file could not be loaded"}.get(report.status,
                                                                  "while loading the file")
        out += ["", f"Result: FAIL ({why})"]
        return "\n".join(out)
    out.append(f"checking {exercise.function}() in {report.path or '?'}")
    out.append("")
    if report.status == "not started":
        out += [report.message, _wrap(exercise.hints["not_implemented"], "hint: ", "      "),
                "", "Result: FAIL (not started)"]
        return "\n".join(out)
    seen_hints: dict[str, int] = {}
    for number, result in enumerate(report.results, 1):
        out.append(f"  {'PASS' if result.passed else 'FAIL'}  {number:2d}. {result.label}")
        for line in result.lines:
            for part in line.split("\n"):
                if part.startswith(" "):  # pre-formatted (a file:line and its source)
                    out.append("           " + part)
                else:
                    out.append(_wrap(part, "           ", "             "))
        if result.hint:
            if result.hint in seen_hints:
                out.append(f"           hint: as for check {seen_hints[result.hint]}")
            else:
                seen_hints[result.hint] = number
                out.append(_wrap(result.hint, "           hint: ", "                 "))
    out.append("")
    if report.passed:
        out.append(f"Result: PASS (all {report.total} checks passed)")
    else:
        timed_out = " (a check timed out)" if report.status == "timeout" else ""
        out.append(f"Result: FAIL ({report.n_passed} of {report.total} checks passed"
                   f"{timed_out})")
    return "\n".join(out)
