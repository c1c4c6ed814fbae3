"""Run a student's code in its own process, one case at a time, with a timeout.

The checker (:func:`minires.exercises.checker.evaluate`) computes every expected value in
its own process and asks a :class:`Sandbox` for the student's results.  The sandbox starts
``python -m minires.exercises.sandbox``, which

1. builds the exercise's work list (same seed, so the same inputs) before any student code
   is loaded, and notes every function and class of minires (and NumPy's namespace);
2. imports the student's file and finds the function (a syntax error, a failing import or
   ``sys.exit`` while importing is reported with the file and line, no traceback);
3. calls the function on each case and sends the result back as arrays (``.npz`` files,
   never pickle), or the problem: an exception (type, message and the student's own line),
   ``NotImplementedError`` from the stub, ``SystemExit``;
4. after loading and after every call, checks that minires is unchanged: a submission that
   rebinds ``minires.kernels.conv.im2col`` (or any other function or class attribute of
   minires or NumPy) fails with "changed minires", and nothing more of it runs.

The parent waits at most ``timeout`` seconds per case (and for loading); a case that takes
longer, or a process that dies (``os._exit``, a crash), fails that case, the process is
killed, and the remaining cases are reported as not run.  The student's prints are passed
on to ``echo``.  Protocol: one JSON line per event on the child's original stdout; the
student's stdout and stderr go to a log file; stdin is ``/dev/null``.
"""

from __future__ import annotations

import json
import linecache
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import numpy as np

from minires.exercises.checker import StudentProblem, quiet_numpy, student_case, work_items
from minires.exercises.report import display_path

#: Seconds each case (and loading the file) may take.
DEFAULT_TIMEOUT = 10.0

#: Seconds the process may take to start (import minires, build the cases): not the
#: student's time, so generous on a loaded machine.
STARTUP_TIMEOUT = 120.0

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


# ---------------------------------------------------------------------------- results as arrays


def encode(value, arrays: dict):
    """A JSON-able description of a result, its arrays stored in ``arrays`` (for np.savez):
    arrays, tuples and lists of them, None, numbers; anything else by its type's name."""
    data = getattr(value, "data", None)
    if type(value).__name__ == "Tensor" and isinstance(data, np.ndarray):
        value = data  # a minires Tensor: compare its array
    if value is None:
        return {"t": "none"}
    if isinstance(value, (tuple, list)):
        return {"t": type(value).__name__, "items": [encode(v, arrays) for v in value]}
    if isinstance(value, (np.ndarray, np.generic, bool, int, float, complex)):
        array = np.asarray(value)
        if array.dtype.kind in "biufc":
            key = f"a{len(arrays)}"
            arrays[key] = array
            return {"t": "array" if isinstance(value, np.ndarray) else "scalar", "k": key}
    return {"t": "other", "type": type(value).__name__}


def decode(description, arrays):
    """The inverse of :func:`encode`; an unknown object becomes an instance of an empty class
    of the same name (the report only needs its type's name)."""
    kind = description["t"]
    if kind == "none":
        return None
    if kind in ("tuple", "list"):
        items = [decode(d, arrays) for d in description["items"]]
        return tuple(items) if kind == "tuple" else items
    if kind == "array":
        return arrays[description["k"]]
    if kind == "scalar":
        return arrays[description["k"]][()]
    return type(description["type"], (), {})()


# ---------------------------------------------------------------------------- the child


def _same_file(a, b) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def _last_student_frame(err: BaseException, path):
    frames = [f for f in traceback.extract_tb(err.__traceback__) if _same_file(f.filename, path)]
    return frames[-1] if frames else None


def describe_exception(err: BaseException, path, shown=None) -> str:
    """``TypeError: message (at file:line: source)`` pointing at the student's own line."""
    text = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    frame = _last_student_frame(err, path)
    if frame is not None:
        source = (frame.line or linecache.getline(frame.filename, frame.lineno)).strip()
        where = shown if shown and _same_file(frame.filename, path) else display_path(
            frame.filename)
        text += f"\n    at {where}:{frame.lineno}"
        if source:
            text += f":  {source}"
    else:
        text += "\n    (raised when calling your function: keep the stub's signature)"
    return text


def load_function(path, function_name: str, shown=None):
    """Import ``path`` as a fresh module and return its ``function_name``; raises
    StudentProblem("load", message) for a missing file, a syntax error, an exception (or
    ``sys.exit``) while importing, or a missing function."""
    import importlib.util

    path = Path(path)
    shown = shown or display_path(path)
    if not path.is_file():
        raise StudentProblem("load", f"no such file: {shown}")
    module_name = f"_minires_student_{path.stem}"
    # The file's folder is importable, so a solution may import another
    # (conv2d_backward.py: `from im2col import im2col`).
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # as for any import (dataclasses need it)
        with quiet_numpy():
            spec.loader.exec_module(module)
    except SyntaxError as err:
        where = f"{shown if _same_file(err.filename or path, path) else err.filename}:{err.lineno}"
        text = (err.text or "").rstrip("\n")
        lines = [f"cannot load {shown}: {type(err).__name__}: {err.msg} ({where})"]
        if text.strip():
            lines.append(f"    {text.strip()}")
            if err.offset and err.offset > 0:
                indent = len(text) - len(text.lstrip())
                lines.append("    " + " " * max(err.offset - 1 - indent, 0) + "^")
        raise StudentProblem("load", "\n".join(lines)) from None
    except BaseException as err:  # SystemExit and KeyboardInterrupt included
        raise StudentProblem(
            "load", f"cannot load {shown}: {describe_exception(err, path, shown)}") from None
    function = getattr(module, function_name, None)
    if function is None:
        raise StudentProblem("load", f"{shown} has no function named {function_name}(); "
                                     f"keep the name and signature of the stub")
    if not callable(function):
        raise StudentProblem("load", f"{function_name} in {shown} is not a function")
    return function


def call_student(case, function, path, function_name: str, shown=None):
    """The student's result for ``case``, or StudentProblem with the student's own line."""
    shown = shown or display_path(path)
    try:
        with quiet_numpy():
            return case.call(function)
    except NotImplementedError as err:
        tb = traceback.extract_tb(err.__traceback__)
        if tb and _same_file(tb[-1].filename, path):
            raise StudentProblem("not_implemented", f"not implemented yet: fill in "
                                                    f"{function_name}() in {shown}") from None
        raise StudentProblem("exception", describe_exception(err, path, shown)) from None
    except SystemExit as err:
        where = describe_exception(err, path, shown).partition("\n")[2]
        raise StudentProblem("exit", f"your code called sys.exit({err.code!r})\n{where}") from None
    except BaseException as err:  # any error in the student's code is part of the report
        kind = "exception" if _last_student_frame(err, path) is not None else "signature"
        raise StudentProblem(kind, describe_exception(err, path, shown)) from None


def _watched_modules():
    return [(name, module) for name, module in list(sys.modules.items())
            if module is not None and (name == "numpy" or name == "minires"
                                       or name.startswith("minires."))]


def namespace_snapshot() -> dict:
    """``{"module.attr": object}`` for every public and private name of minires's modules
    (and of its classes) and of NumPy's top level."""
    snapshot = {}
    for name, module in _watched_modules():
        for attr, value in list(vars(module).items()):
            if attr.startswith("__"):
                continue
            snapshot[f"{name}.{attr}"] = value
            if isinstance(value, type) and value.__module__ == name:
                for key, member in list(vars(value).items()):
                    if not key.startswith("__") or key in ("__init__", "__call__"):
                        snapshot[f"{name}.{attr}.{key}"] = member
    return snapshot


def changed_names(snapshot: dict) -> list[str]:
    """The names of ``snapshot`` that are now bound to another object, or gone."""
    now = namespace_snapshot()
    return sorted(k for k, v in snapshot.items() if k not in now or now[k] is not v)


def _child(config: dict) -> int:
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    log = os.open(config["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)

    def send(**message):
        sys.stdout.flush()
        sys.stderr.flush()
        protocol.write(json.dumps(message) + "\n")
        protocol.flush()

    from minires.exercises.registry import get_exercise

    exercise = get_exercise(config["exercise"], config["catalogs"])
    seed, path, shown = config["seed"], config["path"], config["shown"]
    work = [student_case(kind, item, seed) for kind, item in work_items(exercise, seed)]
    snapshot = namespace_snapshot()
    send(event="ready")

    def tampered() -> bool:
        changed = changed_names(snapshot)
        if changed:
            more = f" (and {len(changed) - 3} more)" if len(changed) > 3 else ""
            send(event="problem", kind="tamper",
                 message=f"your code changed minires itself: {', '.join(changed[:3])}{more}")
        return bool(changed)

    try:
        function = load_function(path, exercise.function, shown)
    except StudentProblem as problem:
        send(event="problem", kind=problem.kind, message=str(problem))
        return 0
    if tampered():
        return 0
    send(event="loaded")
    for index, case in enumerate(work):
        try:
            result = call_student(case, function, path, exercise.function, shown)
        except StudentProblem as problem:
            message = {"event": "problem", "kind": problem.kind, "message": str(problem)}
        else:
            arrays: dict = {}
            description = encode(result, arrays)
            file = os.path.join(config["dir"], f"result{index}.npz")
            np.savez(file, **arrays)
            message = {"event": "result", "value": description, "file": file}
        if tampered():
            return 0
        send(**message)
    return 0


# ---------------------------------------------------------------------------- the parent


class Sandbox:
    """The student's side of :func:`~minires.exercises.checker.evaluate`: a process that
    runs ``path``'s function on the work list of exercise ``name``.

    Use as a context manager (the process and its files are removed on exit).
    """

    def __init__(self, name: str, path, *, seed: int = 0, timeout: float = DEFAULT_TIMEOUT,
                 catalogs=(), shown: str | None = None, echo=None):
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.name, self.path, self.seed, self.timeout = name, Path(path), seed, float(timeout)
        self.catalogs = [str(Path(c).resolve()) for c in catalogs]
        self.shown = shown or display_path(path)
        self.echo = echo
        self._process = None
        self._dir = tempfile.TemporaryDirectory(prefix="minires-check-")
        self._log = Path(self._dir.name) / "output.log"
        self._log_offset = 0
        self._lines: queue.Queue = queue.Queue()
        self._last = time.monotonic()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        self._dir.cleanup()

    def _start(self):
        config = {"exercise": self.name, "catalogs": self.catalogs, "seed": self.seed,
                  "path": str(self.path.resolve()), "shown": self.shown,
                  "dir": self._dir.name, "log": str(self._log)}
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH"))
                                            if p)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "minires.exercises.sandbox", json.dumps(config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=env, text=True, start_new_session=(os.name == "posix"))
        threading.Thread(target=self._read, args=(self._process.stdout,), daemon=True).start()

    def _read(self, stream):
        for line in stream:
            self._lines.put((time.monotonic(), line))
        self._lines.put((time.monotonic(), None))

    def _next(self, timeout: float, what: str) -> dict:
        """The next message, at most ``timeout`` s after the previous one arrived."""
        try:
            arrived, line = self._lines.get(timeout=max(self._last + timeout - time.monotonic(),
                                                        0.01))
        except queue.Empty:
            self.close()
            raise StudentProblem("timeout", f"{what} did not finish within {timeout:g} s "
                                            f"(stopped)") from None
        finally:
            self._pass_output()
        if line is None:
            code = self._process.wait()
            self.close()
            raise StudentProblem("crash", f"the process running your code ended while {what} "
                                          f"was running (exit code {code})")
        self._last = arrived
        message = json.loads(line)
        if message["event"] == "problem":
            if message["kind"] in ("tamper",):
                self.close()
            raise StudentProblem(message["kind"], message["message"])
        return message

    def _pass_output(self):
        if self.echo is None or not self._log.exists():
            return
        with open(self._log, encoding="utf-8", errors="replace") as f:
            f.seek(self._log_offset)
            text = f.read()
            self._log_offset = f.tell()
        if text:
            self.echo.write(text)
            self.echo.flush()

    def load(self):
        """Start the process and import the student's file (StudentProblem on failure)."""
        self._start()
        self._last = time.monotonic()
        self._next(STARTUP_TIMEOUT, "starting the checker")
        self._next(self.timeout, "loading your file")

    def call(self, index: int):
        """The student's result for work item ``index`` (items arrive in order)."""
        message = self._next(self.timeout, "your function")
        with np.load(message["file"], allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        return decode(message["value"], arrays)

    def close(self):
        """Stop the process (if it still runs) and pass on what it printed."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            try:
                if os.name == "posix":
                    os.killpg(process.pid, signal.SIGKILL)
                else:
                    process.kill()
            except (ProcessLookupError, PermissionError):
                pass
            process.wait()
        self._pass_output()


def _main() -> int:
    return _child(json.loads(sys.argv[1]))


if __name__ == "__main__":
    sys.exit(_main())
