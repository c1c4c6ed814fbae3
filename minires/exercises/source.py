"""Turn a function written in a notebook cell into a file the checker's process can import.

The function's own source (``inspect.getsource``) goes first, preceded by what it uses from
the notebook: the modules it names (``import numpy as np``), functions imported from a module
(``from minires.kernels.conv import im2col``), helper functions defined in the notebook (their
source, recursively) and simple constants (numbers, strings).  Nothing is pickled: the
student's process runs the same text the student wrote.
"""

from __future__ import annotations

import inspect
import textwrap
import types

_SIMPLE = (int, float, complex, str, bytes, bool, type(None))


def _names(code: types.CodeType) -> set[str]:
    """Global names used by ``code`` and the functions and comprehensions inside it."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _simple(value) -> bool:
    if isinstance(value, (tuple, list)):
        return all(_simple(v) for v in value)
    return isinstance(value, _SIMPLE)


def _source(function) -> str:
    if function.__name__ == "<lambda>":
        raise TypeError("check() needs a function defined with `def` (a lambda's source "
                        "cannot be read back reliably)")
    try:
        return textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError) as err:
        raise TypeError(f"cannot read the source of {function.__name__}(): {err}; save it in "
                        f"a .py file and pass the file's path instead") from None


def function_file_text(function, name: str) -> str:
    """The text of a module defining ``name`` as ``function`` (see the module docstring).

    Raises TypeError for something that is not a plain Python function, or whose source
    cannot be read (a lambda, a function typed into a bare interpreter).
    """
    if not isinstance(function, types.FunctionType):
        raise TypeError(f"check() takes your function (or the path of your file), got "
                        f"{type(function).__name__}")
    header, bodies, done = [], [], set()

    def add(fn):
        if fn.__name__ in done:
            return
        done.add(fn.__name__)
        globals_ = fn.__globals__
        for used in sorted(_names(fn.__code__)):
            if used in done or used not in globals_:
                continue
            value = globals_[used]
            if isinstance(value, types.ModuleType):
                header.append(f"import {value.__name__} as {used}" if value.__name__ != used
                              else f"import {used}")
            elif isinstance(value, types.FunctionType) and value.__module__ == fn.__module__:
                add(value)  # a helper from the same notebook
            elif callable(value) and getattr(value, "__module__", None) and \
                    getattr(value, "__qualname__", "").isidentifier():
                line = f"from {value.__module__} import {value.__qualname__}"
                header.append(line + (f" as {used}" if used != value.__qualname__ else ""))
            elif _simple(value):
                header.append(f"{used} = {value!r}")
        bodies.append(_source(fn))

    add(function)
    text = "\n".join(dict.fromkeys(header)) + "\n\n\n" + "\n\n".join(bodies)
    if function.__name__ != name:
        text += f"\n\n{name} = {function.__name__}\n"
    return text
