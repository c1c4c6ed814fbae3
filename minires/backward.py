"""The backward pass: walk the graph that :mod:`minires.autograd` recorded, by generation.

``loss.backward()`` calls :func:`run_backward`.  It keeps a heap of Functions keyed by
generation, highest first, so every consumer of a tensor runs before its creator and a
tensor used several times has all its gradient contributions summed before it propagates.
Each step has three parts, one function each:

1. :func:`collect_output_grads`: the summed gradients of the function's outputs (zeros for
   an output nobody used), passed through that output's hooks;
2. :func:`_call_backward`: ``Function.backward`` -- the chain rule, input gradients from
   output gradients;
3. :func:`send_input_grads`: each input gradient goes to its creator's slot (queued the
   first time that creator is reached) or, for a leaf, to the leaf's running total.

Leaf ``.grad`` is written only after the whole pass has succeeded.
:func:`register_backward_observer` lets a tool watch every step (``minires.viz.trace``).
"""

from __future__ import annotations

import heapq
import itertools

import numpy as np

from minires import backend
from minires.autograd import Edge, Function, RemovableHandle, Tensor, as_array, no_grad

# ---------------------------------------------------------------------------- observers

_backward_observers: dict = {}


def register_backward_observer(observer) -> RemovableHandle:
    """Call ``observer(function, grad_outputs, grad_inputs)`` after every
    ``Function.backward`` in every backward pass, until the handle's ``remove()``.

    ``grad_outputs`` and ``grad_inputs`` are tuples of raw arrays (``None`` where an
    input needs no gradient), in the order of ``function.outputs`` and
    ``function.inputs``; ``function.inputs`` (tensors and :class:`Edge` s, both with
    ``name`` and ``shape``) is still readable.  Observers must not
    modify the arrays.  ``minires.viz.trace`` records a backward pass with this.
    """
    if not callable(observer):
        raise TypeError(f"an observer must be callable, got {type(observer).__name__}")
    handle = RemovableHandle(_backward_observers)
    _backward_observers[handle.id] = observer
    return handle


# ---------------------------------------------------------------------------- backward

# Ties in generation are broken by arrival order; the count also keeps the heap from ever
# comparing two Functions.
_arrival = itertools.count()


def _run_hooks(tensor: Tensor, grad):
    """Pass ``grad`` through ``tensor``'s hooks; each may return a replacement."""
    for hook in list(tensor._hooks.values()):
        result = hook(Tensor(grad))
        if result is not None:
            replacement = as_array(result, dtype=grad.dtype, device=tensor.device)
            if replacement.shape != grad.shape:
                raise RuntimeError(
                    f"hook {getattr(hook, '__name__', hook)!r} returned a gradient of shape "
                    f"{tuple(replacement.shape)} for a tensor of shape {tensor.shape}")
            grad = replacement
    return grad


def _add(totals: dict, tensor: Tensor, grad) -> None:
    """``totals[tensor] += grad``, keyed by identity (Tensor defines no hash of its own)."""
    entry = totals.get(id(tensor))
    if entry is None:
        totals[id(tensor)] = [tensor, grad]
    else:
        entry[1] = entry[1] + grad


def _accumulate(tensor: Tensor, grad) -> None:
    """``tensor.grad += grad`` (creating it), keeping the gradient off the graph."""
    if tensor.grad is None:  # a copy in the tensor's dtype: the caller may reuse `grad`
        tensor.grad = Tensor(grad.astype(tensor.dtype, copy=True))
    else:
        tensor.grad.data = tensor.grad.data + grad


def collect_output_grads(function: Function, grads: list, retained: dict) -> tuple:
    """The gradients of ``function``'s outputs, ready for its backward.

    ``grads`` holds the summed contributions per output (``None`` where nothing used that
    output: it becomes zeros of the output's shape, dtype and device).  An output's hooks
    run here and may replace its gradient; outputs that asked for ``retain_grad`` have it
    noted in ``retained``.
    """
    for index, grad in enumerate(grads):
        if grad is None:  # an unused output, perhaps already garbage-collected
            shape, dtype, device = function._output_specs[index]
            xp = np if device == backend.CPU else backend.require_cupy()
            grads[index] = xp.zeros(shape, dtype=dtype)
            continue
        output = function.outputs[index]()
        if output is not None:
            if output._hooks:
                grads[index] = grad = _run_hooks(output, grad)
            if output._retain_grad:
                _add(retained, output, grad)
    return tuple(grads)


def _call_backward(function: Function, grad_outputs: tuple) -> tuple:
    """``function.backward(*grad_outputs)`` as a tuple with one entry per input."""
    grad_inputs = function.backward(*grad_outputs)
    if not isinstance(grad_inputs, tuple):
        grad_inputs = (grad_inputs,)
    if len(grad_inputs) != len(function.inputs):
        raise RuntimeError(
            f"{type(function).__name__}.backward returned {len(grad_inputs)} "
            f"gradients for {len(function.inputs)} inputs"
        )
    return grad_inputs


def send_input_grads(function: Function, grad_inputs: tuple, pending: dict, queue: list,
                     leaves: dict) -> None:
    """Send each input's gradient to where it waits: its creator's slot in ``pending``
    (queued by generation when first reached) or, for a leaf, ``leaves``."""
    for source, grad in zip(function.inputs, grad_inputs, strict=True):
        if grad is None or not source.requires_grad:
            continue
        if tuple(grad.shape) != source.shape:
            raise RuntimeError(
                f"{type(function).__name__}.backward returned a gradient of shape "
                f"{tuple(grad.shape)} for an input of shape {source.shape}"
            )
        if not isinstance(source, Edge):  # a leaf tensor
            _add(leaves, source, grad)
            continue
        creator = source.creator
        slots = pending.get(creator)
        if slots is None:  # first reached: queue it, newest generation first
            slots = pending[creator] = [None] * len(creator.outputs)
            heapq.heappush(queue, (-creator.generation, next(_arrival), creator))
        index = source.output_index
        slots[index] = grad if slots[index] is None else slots[index] + grad


def run_backward(root: Tensor, grad, retain_graph: bool = False) -> None:
    """Propagate ``grad`` (d loss / d root) from ``root`` back to the leaves.

    Functions run highest generation first, so each runs once, after all its outputs'
    consumers.  Nothing is written to any ``.grad`` until the whole pass has succeeded
    (a failed backward, e.g. through a freed graph, leaves the gradients as they were).
    """
    leaves, retained = {}, {}  # id -> [tensor, summed gradient], written at the end
    with no_grad():  # backward arithmetic on arrays builds no new graph
        if root.creator is None:
            _add(leaves, root, grad)
        else:
            pending = {root.creator: [None] * len(root.creator.outputs)}
            pending[root.creator][root._output_index] = grad
            queue = [(-root.creator.generation, next(_arrival), root.creator)]
            while queue:
                function = heapq.heappop(queue)[-1]
                if function._freed:
                    raise RuntimeError(
                        "trying to backward through the graph a second time (its saved "
                        "values were freed by the first backward); call "
                        "backward(retain_graph=True) the first time if you need to")
                grad_outputs = collect_output_grads(function, pending.pop(function), retained)
                grad_inputs = _call_backward(function, grad_outputs)
                for observer in list(_backward_observers.values()):
                    observer(function, grad_outputs, grad_inputs)
                send_input_grads(function, grad_inputs, pending, queue, leaves)
                if not retain_graph:
                    function._release()
        for tensor, total in leaves.values():
            _accumulate(tensor, _run_hooks(tensor, total) if tensor._hooks else total)
        for tensor, total in retained.values():
            _accumulate(tensor, total)
