"""Step through a backward pass: which Function ran when, and how big its gradients were.

Use::

    with minires.viz.trace() as t:
        loss.backward()
    print(t.table())

Each row is one Function in the order backward ran it (highest generation first), with
the L2 norm ||g|| of the gradient arriving at each of its outputs and of the gradient it
sent to each input.  For a one-input, one-output function the last column is the gain
||g_in|| / ||g_out||: a sigmoid's is at most 1/4, since sigma'(x) = sigma(x)(1 - sigma(x))
<= 1/4, which is why gradients vanish through a deep sigmoid net (He et al. 2016, sec. 1).

Built on :func:`minires.backward.register_backward_observer`; ``t.records`` holds the
rows as data (:class:`TraceRecord`).
"""

from __future__ import annotations

from dataclasses import dataclass

from minires import backend
from minires.backward import register_backward_observer


def _norm(grad) -> float | None:
    """||grad||_2 = sqrt(sum of squares), or None where no gradient was sent."""
    if grad is None:
        return None
    xp = backend.get_array_module(grad)
    return float(xp.sqrt(xp.sum(xp.square(grad.astype(xp.float64)))))


@dataclass
class TraceRecord:
    """One Function's step in a backward pass.

    Attributes:
        step: 1 for the first Function backward ran, 2 for the next, ...
        function: the Function's class name (``Mul``, ``Conv2d``, ...).
        generation: its generation (backward runs the highest first).
        inputs: a label per input: the tensor's name, else its shape.
        grad_out_norms: ||dL/d output|| per output.
        grad_in_norms: ||dL/d input|| per input (``None`` where no gradient was needed).
    """

    step: int
    function: str
    generation: int
    inputs: tuple
    grad_out_norms: tuple
    grad_in_norms: tuple

    @property
    def gain(self) -> float | None:
        """||g_in|| / ||g_out|| for one input and one output, else None."""
        if len(self.grad_in_norms) != 1 or len(self.grad_out_norms) != 1:
            return None
        g_in, g_out = self.grad_in_norms[0], self.grad_out_norms[0]
        if g_in is None or not g_out:
            return None
        return g_in / g_out


def _number(value) -> str:
    return "-" if value is None else f"{value:.4g}"


class Trace:
    """Records every Function's gradients while active (a context manager)."""

    def __init__(self):
        self.records: list[TraceRecord] = []
        self._handle = None

    def _observe(self, function, grad_outputs, grad_inputs) -> None:
        labels = tuple(t.name or str(t.shape) for t in function.inputs)
        self.records.append(TraceRecord(
            step=len(self.records) + 1, function=type(function).__name__,
            generation=function.generation, inputs=labels,
            grad_out_norms=tuple(_norm(g) for g in grad_outputs),
            grad_in_norms=tuple(_norm(g) for g in grad_inputs)))

    def __enter__(self) -> Trace:
        if self._handle is not None:
            raise RuntimeError("this trace is already recording")
        self._handle = register_backward_observer(self._observe)
        return self

    def __exit__(self, *exc_info) -> None:
        self._handle.remove()
        self._handle = None

    def table(self) -> str:
        """The records as a text table, one row per Function in the order they ran."""
        header = ("step", "function", "gen", "inputs", "|grad out|", "|grad in|", "in/out")
        rows = [header]
        for r in self.records:
            gain = r.gain
            rows.append((str(r.step), r.function, str(r.generation), ", ".join(r.inputs),
                         ", ".join(_number(n) for n in r.grad_out_norms),
                         ", ".join(_number(n) for n in r.grad_in_norms),
                         "" if gain is None else f"{gain:.4g}"))
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                 for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        if not self.records:
            lines.append("(no backward pass ran inside the trace)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Trace({len(self.records)} records)"


def trace() -> Trace:
    """A context manager recording the backward passes run inside it; see the module doc."""
    return Trace()
