"""The autograd engine: Tensor, Function, and reverse-mode backpropagation.

How it works.  A :class:`Function` runs its ``forward`` on raw arrays and, when gradients
are wanted, records itself as the ``creator`` of its output tensors.  It keeps its leaf
inputs (they receive ``.grad``) but, for an input some other Function made, only an
:class:`Edge` (that creator and which of its outputs): the graph holds no intermediate
tensor, so an activation's array is freed as soon as nothing needs it, and backward has
only what each ``forward`` chose to save (PyTorch's rule, and its memory use).
Every function gets a *generation*: one more than the newest function that made its
inputs, so a function's generation is always larger than that of every function it
consumes from.  ``loss.backward()`` visits the functions by generation, highest first
(DeZero's rule), with a heap and no recursion: every consumer of a tensor runs before its
creator, so a tensor used several times has the sum of all its gradient contributions
before it propagates further.  Each step (:func:`minires.backward.run_backward`) collects
the gradients of a function's outputs, calls ``Function.backward`` (the chain rule:
gradients of the inputs from those of the outputs) and sends the input gradients on to
their creators, or, for leaves, into ``.grad``.

What it does not do: higher-order gradients.  Backward runs on raw arrays inside
:func:`no_grad`, so a gradient is a plain value, not a graph, and cannot be differentiated
again (there is no ``create_graph``).

Hooks: :meth:`Tensor.register_hook` sees (and may replace) one tensor's gradient;
:func:`register_backward_observer` sees every Function's gradients as backward runs
(``minires.viz.trace`` is built on it).

This file holds the graph (Tensor, Function, Edge, grad mode, hooks); the backward pass
that walks it is :mod:`minires.backward`.  The ops themselves (``+``, ``@``, ``exp``,
``sum``, ``.to``, ...) live in :mod:`minires.ops`, which installs them as Tensor methods;
the engine imports nothing above itself.  Names follow PyTorch so habits transfer both ways.
"""

from __future__ import annotations

import contextlib
import itertools
import weakref

import numpy as np

from minires import backend

# ---------------------------------------------------------------------------- grad mode

_grad_enabled = True


def is_grad_enabled() -> bool:
    """True unless inside :func:`no_grad`."""
    return _grad_enabled


@contextlib.contextmanager
def _set_grad_enabled(mode: bool):
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, mode
    try:
        yield
    finally:
        _grad_enabled = previous


def no_grad():
    """Context manager: ops inside record no graph (evaluation, weight updates)."""
    return _set_grad_enabled(False)


def enable_grad():
    """Context manager: turn graph recording back on inside a :func:`no_grad` block."""
    return _set_grad_enabled(True)


# ---------------------------------------------------------------------------- hooks


class RemovableHandle:
    """Returned when a hook is registered; ``remove()`` takes it away (PyTorch's name).

    Also a context manager: ``with t.register_hook(fn): ...`` removes the hook on exit.
    """

    _ids = itertools.count()

    def __init__(self, hooks: dict):
        self.hooks, self.id = hooks, next(RemovableHandle._ids)

    def remove(self) -> None:
        self.hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.remove()


# ---------------------------------------------------------------------------- Tensor


def as_array(data, dtype=None, device=backend.CPU):
    """Turn Python data or an array into an array on ``device``.

    Python floats (and lists of them) become the default dtype (float32), Python ints
    int64, bools bool; NumPy/CuPy arrays keep their dtype unless ``dtype`` is given.
    """
    if isinstance(data, Tensor):
        data = data.data
    if isinstance(data, (int, float, bool)) and backend.check_device(device) == backend.CUDA:
        # Fill on the device: no host array, no host-to-device copy per op on the GPU.
        kind = np.asarray(data).dtype
        dtype = dtype or (backend.get_default_dtype() if kind.kind == "f" else
                          np.int64 if kind.kind in "iu" else kind)
        return backend.require_cupy().full((), data, dtype)
    if not hasattr(data, "dtype"):  # Python scalar or (nested) list
        data = np.asarray(data)
        if data.dtype.kind == "f" and dtype is None:
            dtype = backend.get_default_dtype()
        elif data.dtype.kind in "iu" and dtype is None:
            dtype = np.int64
    data = backend.to_device(data, device)
    xp = backend.get_array_module(data)
    return xp.asarray(data, dtype=dtype)


class Tensor:
    """An n-dimensional array that remembers how it was computed.

    Attributes:
        data: the NumPy (CPU) or CuPy (GPU) array holding the values.
        grad: a Tensor of the same shape holding d(loss)/d(self) after ``backward``
            (leaf tensors, and others that called :meth:`retain_grad`), else ``None``.
        requires_grad: whether gradients flow to this tensor.
        creator: the :class:`Function` that produced it (``None`` for leaves).
        name: optional label, shown in ``repr`` and error messages.
    """

    # NumPy defers to Tensor's reflected operators (np.float32(2) * t -> Tensor).
    __array_priority__ = 1000
    _hooks = None  # {id: fn} once register_hook is called (a class default costs nothing)

    def __init__(self, data, requires_grad: bool = False, name: str | None = None):
        if isinstance(data, Tensor):
            data = data.data
        if not hasattr(data, "dtype"):
            data = as_array(data)
        self.data = data
        self.grad: Tensor | None = None
        self.creator: Function | None = None
        self.generation = 0  # depth in the graph; creator's generation + 1
        self.name = name
        self._output_index = 0  # which output of its creator this tensor is
        self._retain_grad = False
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # ------------------------------------------------------------------ properties
    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def device(self) -> str:
        return backend.device_of(self.data)

    @property
    def size(self) -> int:
        """Number of elements (NumPy's ``size``; PyTorch's ``numel()``)."""
        return int(self.data.size)

    def numel(self) -> int:
        return self.size

    def dim(self) -> int:
        return self.ndim

    @property
    def is_leaf(self) -> bool:
        return self.creator is None

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        values = np.array2string(backend.to_numpy(self.data), precision=4, separator=", ",
                                 prefix="tensor(")
        extras = []
        if self.device != backend.CPU:
            extras.append(f"device='{self.device}'")
        if self.dtype != backend.get_default_dtype() and self.dtype.kind == "f":
            extras.append(f"dtype={self.dtype}")
        if self.creator is not None:
            extras.append(f"grad_fn=<{type(self.creator).__name__}>")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        if self.name:
            extras.append(f"name='{self.name}'")
        return "tensor(" + ", ".join([values] + extras) + ")"

    # ------------------------------------------------------------------ gradients
    def requires_grad_(self, mode: bool = True) -> Tensor:
        """Set ``requires_grad`` in place; only floating-point tensors can require grad."""
        if mode and not backend.is_floating(self.dtype):
            raise TypeError(
                f"only floating-point tensors can require gradients, got dtype {self.dtype}"
                f"{f' ({self.name})' if self.name else ''}"
            )
        self.requires_grad = bool(mode)
        return self

    def register_hook(self, hook) -> RemovableHandle:
        """Call ``hook(grad)`` with this tensor's gradient during backward, as in PyTorch.

        ``grad`` is a Tensor shaped like this one, holding the *full* gradient (all
        contributions summed).  The hook may return a replacement (a Tensor or array of the
        same shape), which is what flows on to the rest of the graph and into ``.grad``;
        returning ``None`` keeps the gradient.  Do not modify ``grad`` in place.  Hooks run
        in the order they were registered; on a leaf, before the gradient is added to
        ``.grad``.  Returns a handle whose ``remove()`` takes the hook away.
        """
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that does not require grad")
        if not callable(hook):
            raise TypeError(f"register_hook needs a callable, got {type(hook).__name__}")
        if self._hooks is None:
            self._hooks = {}
        if self.creator is not None:
            self.creator.hold_output(self)
        handle = RemovableHandle(self._hooks)
        self._hooks[handle.id] = hook
        return handle

    def retain_grad(self) -> None:
        """Keep ``.grad`` for this non-leaf tensor after backward (leaves always keep it)."""
        self._retain_grad = True

    def zero_grad(self) -> None:
        """Forget the accumulated gradient (``.grad = None``)."""
        self.grad = None

    def detach(self) -> Tensor:
        """A tensor sharing this one's data but cut from the graph (no gradient flows)."""
        return Tensor(self.data, name=self.name)

    def backward(self, grad=None, retain_graph: bool = False) -> None:
        """Backpropagate: add d(self)/d(leaf) * grad into every leaf's ``.grad``.

        Args:
            grad: the upstream gradient, shaped like ``self``; may be omitted only when
                ``self`` has one element (a scalar loss), where it defaults to 1.
            retain_graph: keep the graph so backward can run through it again; by
                default it is freed as it is used, so memory does not grow across steps.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() called on a tensor that does not require grad "
                "(no input of the computation had requires_grad=True, or it ran in no_grad)"
            )
        xp = backend.get_array_module(self.data)
        if grad is None:
            if self.size != 1:
                raise RuntimeError(
                    f"backward() without a gradient argument needs a scalar (1-element) "
                    f"tensor, but this one has shape {self.shape}; pass grad= of that shape"
                )
            grad = xp.ones_like(self.data)
        else:
            grad = as_array(grad, dtype=self.dtype, device=self.device)
            if grad.shape != self.data.shape:
                raise ValueError(
                    f"backward(): gradient shape {tuple(grad.shape)} does not match "
                    f"tensor shape {self.shape}"
                )
        run_backward(self, grad, retain_graph)

    # ------------------------------------------------------------------ export
    # ``to``, ``cpu`` and ``cuda`` (differentiable moves and casts) are installed by
    # minires.ops, with the operators.
    def numpy(self) -> np.ndarray:
        """The values as a NumPy array (a copy when on the GPU; shares memory on the CPU)."""
        return backend.to_numpy(self.data)

    def item(self):
        """The value of a one-element tensor as a Python number."""
        if self.size != 1:
            raise ValueError(f"item() needs a 1-element tensor, got shape {self.shape}")
        return self.data.reshape(()).item()

    def tolist(self):
        return backend.to_numpy(self.data).tolist()


# ---------------------------------------------------------------------------- Function


class Edge:
    """Where a non-leaf input's gradient goes: output ``output_index`` of ``creator``.

    A Function keeps this instead of the input tensor, so that the tensor (and its array)
    is freed when nothing else holds it: memory is then what the forwards saved, not
    every intermediate of the pass.  ``shape`` checks the gradient backward returns;
    ``name``, ``shape`` and ``dtype`` label the input in traces and graph drawings.
    """

    __slots__ = ("creator", "output_index", "shape", "dtype", "name")
    requires_grad = True  # only inputs that need a gradient become edges

    def __init__(self, tensor: Tensor):
        self.creator, self.output_index = tensor.creator, tensor._output_index
        self.shape, self.dtype, self.name = tensor.shape, tensor.dtype, tensor.name

    @property
    def generation(self) -> int:
        """The input tensor's generation (its creator's plus one), as on the tensor."""
        return self.creator.generation + 1

    def tensor(self) -> Tensor | None:
        """The input tensor itself while something still holds it, else ``None``."""
        return self.creator.outputs[self.output_index]()


def _graph_input(tensor: Tensor):
    """What a Function keeps of one input: an :class:`Edge` for an intermediate that
    needs a gradient, else the tensor (a leaf receives ``.grad``; the rest is constants)."""
    return Edge(tensor) if tensor.creator is not None and tensor.requires_grad else tensor


def as_tensor(value, like: Tensor | None = None) -> Tensor:
    """Wrap ``value`` as a Tensor; Python numbers take ``like``'s dtype and device.

    Taking the dtype of the tensor they meet keeps ``x * 2`` in float32 for a float32
    ``x`` (a Python scalar does not promote, as in NumPy and PyTorch).
    """
    if isinstance(value, Tensor):
        return value
    if like is not None and isinstance(value, (int, float, bool, np.number)):
        dtype = like.dtype if backend.is_floating(like.dtype) or isinstance(value, int) else None
        return Tensor(as_array(value, dtype=dtype, device=like.device))
    return Tensor(as_array(value, device=like.device if like is not None else backend.CPU))


class Function:
    """One differentiable operation.  Subclasses implement, on raw arrays:

    * ``forward(self, *arrays) -> array or tuple of arrays``; store on ``self`` whatever
      backward needs (inputs, outputs, masks).  Non-tensor settings go to ``__init__``.
    * ``backward(self, *grad_outputs) -> gradient or tuple of gradients``, one per
      forward input, each shaped like that input (``None`` where none is needed;
      ``self.needs_input_grad[i]`` says which are).  An output that nothing used gets a
      zero gradient of its shape, dtype and device, even after it was garbage-collected.

    Use: ``y = Exp()(x)``.  Calling a Function runs forward and, when any input requires
    grad and grad mode is on, records the graph: ``inputs`` (leaf tensors, and an
    :class:`Edge` for each intermediate), ``needs_input_grad``, ``generation`` (max of the
    inputs' generations; each output gets one more) and weak references to the
    ``outputs``.  Since intermediates are not kept, a backward that needs its input's
    values must save them in ``forward``; one that can work from its output (ReLU,
    sigmoid, tanh) should save that, which the next op usually holds anyway.
    """

    def __call__(self, *inputs):
        tensors = [as_tensor(x, like=_first_tensor(inputs)) for x in inputs]
        _check_same_device(tensors, type(self).__name__)
        outputs = self.forward(*(t.data for t in tensors))
        single = not isinstance(outputs, tuple)
        outputs = [Tensor(y) for y in ((outputs,) if single else outputs)]

        if is_grad_enabled() and any(t.requires_grad for t in tensors):
            self.inputs = [_graph_input(t) for t in tensors]
            self.needs_input_grad = tuple(t.requires_grad for t in tensors)
            self.generation = max(t.generation for t in tensors)
            self._freed = False
            for index, y in enumerate(outputs):
                y.requires_grad = backend.is_floating(y.dtype)
                y.creator, y.generation, y._output_index = self, self.generation + 1, index
            # Outputs are held weakly: the graph lives as long as its last tensor does.
            self.outputs = [weakref.ref(y) for y in outputs]
            if not single:  # what a dropped output's zero gradient looks like
                self._output_specs = [(y.shape, y.dtype, y.device) for y in outputs]
        return outputs[0] if single else tuple(outputs)

    def forward(self, *arrays):
        raise NotImplementedError(f"{type(self).__name__}.forward is not implemented")

    def backward(self, *grad_outputs):
        raise NotImplementedError(f"{type(self).__name__}.backward is not implemented")

    def hold_output(self, output: Tensor) -> None:
        """Keep ``output`` alive until backward reaches this Function.

        Outputs are held weakly and consumers keep only edges, so a tensor with hooks
        could otherwise be gone before its hooks run (``x.sigmoid().register_hook(h)``
        in a loop); PyTorch likewise keeps such hooks on the graph.  Released with the
        rest of this Function's state once backward has used it.
        """
        self.__dict__.setdefault("_held_outputs", []).append(output)

    def _release(self) -> None:
        """Drop inputs and saved arrays once backward has run (frees the graph); keep only
        what a later look at the graph (or a second backward's error) needs."""
        self.__dict__ = {"generation": self.generation, "outputs": self.outputs,
                         "_freed": True}


def _first_tensor(values) -> Tensor | None:
    return next((v for v in values if isinstance(v, Tensor)), None)


def _check_same_device(tensors, op_name: str) -> None:
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        described = ", ".join(f"{t.name or 'tensor'} on {t.device} {t.shape}" for t in tensors)
        raise RuntimeError(
            f"{op_name}: expected all tensors on the same device, but got {described}; "
            "move them with .to('cuda') or .to('cpu') first"
        )


# The backward pass lives in minires/backward.py, imported last because it uses the classes
# above; register_backward_observer stays importable from here, where it was first public.
from minires.backward import register_backward_observer, run_backward  # noqa: E402, F401
