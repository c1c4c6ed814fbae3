"""The autograd engine: Tensor, Function, and reverse-mode backpropagation.

How it works, in three sentences.  A :class:`Function` runs its ``forward`` on raw arrays
and, when gradients are wanted, records itself as the ``creator`` of its output tensors,
keeping its inputs.  ``loss.backward()`` walks this graph from the loss back to the
leaves in *topological order* (every consumer of a tensor before its creator), so a tensor
used several times has the sum of all its gradient contributions before it propagates
further.  Each step calls ``Function.backward`` with the gradient of the function's
outputs and receives the gradients of its inputs (the chain rule).

The ops themselves (``+``, ``@``, ``exp``, ``sum``, ...) live in :mod:`minires.ops`; this
file is the engine only.  Names follow PyTorch so habits transfer both ways.
"""

from __future__ import annotations

import contextlib
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


# ---------------------------------------------------------------------------- Tensor


def _as_array(data, dtype=None, device=backend.CPU):
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

    def __init__(self, data, requires_grad: bool = False, name: str | None = None):
        if isinstance(data, Tensor):
            data = data.data
        if not hasattr(data, "dtype"):
            data = _as_array(data)
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
            grad = _as_array(grad, dtype=self.dtype, device=self.device)
            if grad.shape != self.data.shape:
                raise ValueError(
                    f"backward(): gradient shape {tuple(grad.shape)} does not match "
                    f"tensor shape {self.shape}"
                )
        run_backward(self, grad, retain_graph)

    # ------------------------------------------------------------------ devices, export
    def to(self, device=None, dtype=None) -> Tensor:
        """Move to ``device`` ('cpu' or 'cuda') and/or cast to ``dtype``; differentiable."""
        result = self
        if device is not None and backend.check_device(device) != self.device:
            from minires.ops import ToDevice  # ops builds on this module

            result = ToDevice(backend.check_device(device))(result)
        if dtype is not None and np.dtype(dtype) != result.dtype:
            from minires.ops import Cast

            result = Cast(np.dtype(dtype))(result)
        return result

    def cpu(self) -> Tensor:
        return self.to(backend.CPU)

    def cuda(self) -> Tensor:
        return self.to(backend.CUDA)

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


def as_tensor(value, like: Tensor | None = None) -> Tensor:
    """Wrap ``value`` as a Tensor; Python numbers take ``like``'s dtype and device.

    Taking the dtype of the tensor they meet keeps ``x * 2`` in float32 for a float32
    ``x`` (a Python scalar does not promote, as in NumPy and PyTorch).
    """
    if isinstance(value, Tensor):
        return value
    if like is not None and isinstance(value, (int, float, bool, np.number)):
        dtype = like.dtype if backend.is_floating(like.dtype) or isinstance(value, int) else None
        return Tensor(_as_array(value, dtype=dtype, device=like.device))
    return Tensor(_as_array(value, device=like.device if like is not None else backend.CPU))


class Function:
    """One differentiable operation.  Subclasses implement, on raw arrays:

    * ``forward(self, *arrays) -> array or tuple of arrays``; store on ``self`` whatever
      backward needs (inputs, outputs, masks).  Non-tensor settings go to ``__init__``.
    * ``backward(self, *grad_outputs) -> gradient or tuple of gradients``, one per
      forward input, each shaped like that input (``None`` where none is needed;
      ``self.needs_input_grad[i]`` says which are).

    Use: ``y = Exp()(x)``.  Calling a Function runs forward and, when any input requires
    grad and grad mode is on, records the graph.
    """

    def __call__(self, *inputs):
        tensors = [as_tensor(x, like=_first_tensor(inputs)) for x in inputs]
        _check_same_device(tensors, type(self).__name__)
        outputs = self.forward(*(t.data for t in tensors))
        single = not isinstance(outputs, tuple)
        outputs = [Tensor(y) for y in ((outputs,) if single else outputs)]

        if is_grad_enabled() and any(t.requires_grad for t in tensors):
            self.inputs = tensors
            self.needs_input_grad = tuple(t.requires_grad for t in tensors)
            self.generation = max(t.generation for t in tensors)
            self._freed = False
            for index, y in enumerate(outputs):
                y.requires_grad = backend.is_floating(y.dtype)
                y.creator, y.generation, y._output_index = self, self.generation + 1, index
            # Outputs are held weakly: the graph lives as long as its last tensor does.
            self.outputs = [weakref.ref(y) for y in outputs]
        return outputs[0] if single else tuple(outputs)

    def forward(self, *arrays):
        raise NotImplementedError(f"{type(self).__name__}.forward is not implemented")

    def backward(self, *grad_outputs):
        raise NotImplementedError(f"{type(self).__name__}.backward is not implemented")

    def _release(self) -> None:
        """Drop inputs and saved arrays once backward has run (frees the graph)."""
        for key in list(vars(self)):
            if key not in ("generation", "outputs"):
                delattr(self, key)
        self._freed = True


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


# ---------------------------------------------------------------------------- backward


def _topological_order(root_function: Function) -> list:
    """Functions reachable from ``root_function``, every consumer before its producer.

    Kahn's algorithm on the reversed graph, iteratively (no recursion, so a chain of any
    depth works) and in time linear in the number of edges: first count, for every
    function, how many reachable functions consume its outputs; then release a function
    once all its consumers have been visited.
    """
    consumers = {root_function: 0}
    stack = [root_function]
    while stack:  # pass 1: discover the graph and count consumers
        function = stack.pop()
        if function._freed:
            raise RuntimeError(
                "trying to backward through the graph a second time (its saved values were "
                "freed by the first backward); call backward(retain_graph=True) the first "
                "time if you need to"
            )
        for tensor in function.inputs:
            producer = tensor.creator
            if producer is None:
                continue
            if producer not in consumers:
                consumers[producer] = 0
                stack.append(producer)
            consumers[producer] += 1

    order, ready = [], [root_function]
    while ready:  # pass 2: emit a function when all its consumers are done
        function = ready.pop()
        order.append(function)
        for tensor in function.inputs:
            producer = tensor.creator
            if producer is None:
                continue
            consumers[producer] -= 1
            if consumers[producer] == 0:
                ready.append(producer)
    return order


def _accumulate(tensor: Tensor, grad) -> None:
    """``tensor.grad += grad`` (creating it), keeping the gradient off the graph."""
    if tensor.grad is None:  # a copy in the tensor's dtype: the caller may reuse `grad`
        tensor.grad = Tensor(grad.astype(tensor.dtype, copy=True))
    else:
        tensor.grad.data = tensor.grad.data + grad


def run_backward(root: Tensor, grad, retain_graph: bool = False) -> None:
    """Propagate ``grad`` (d loss / d root) from ``root`` back to the leaves."""
    if root.creator is None:  # a leaf: its gradient is the upstream gradient itself
        _accumulate(root, grad)
        return
    # Gradients wait here, per function and output, until all contributions arrived.
    pending = {root.creator: [None] * len(root.creator.outputs)}
    pending[root.creator][root._output_index] = grad

    with no_grad():  # backward arithmetic on arrays builds no new graph
        for function in _topological_order(root.creator):
            grad_outputs = pending.pop(function)
            for index, ref in enumerate(function.outputs):
                output = ref()
                if grad_outputs[index] is None:  # an unused output: its gradient is zero
                    data = output.data if output is not None else None
                    if data is None:
                        raise RuntimeError(f"{type(function).__name__}: output {index} lost")
                    grad_outputs[index] = backend.get_array_module(data).zeros_like(data)
                elif output is not None and output._retain_grad:
                    _accumulate(output, grad_outputs[index])

            grad_inputs = function.backward(*grad_outputs)
            if not isinstance(grad_inputs, tuple):
                grad_inputs = (grad_inputs,)
            if len(grad_inputs) != len(function.inputs):
                raise RuntimeError(
                    f"{type(function).__name__}.backward returned {len(grad_inputs)} "
                    f"gradients for {len(function.inputs)} inputs"
                )
            for tensor, grad_input in zip(function.inputs, grad_inputs, strict=True):
                if grad_input is None or not tensor.requires_grad:
                    continue
                if grad_input.shape != tensor.data.shape:
                    raise RuntimeError(
                        f"{type(function).__name__}.backward returned a gradient of shape "
                        f"{tuple(grad_input.shape)} for an input of shape {tensor.shape}"
                    )
                if tensor.creator is None:
                    _accumulate(tensor, grad_input)
                else:
                    slots = pending.setdefault(
                        tensor.creator, [None] * len(tensor.creator.outputs))
                    index = tensor._output_index
                    slots[index] = grad_input if slots[index] is None else slots[index] + grad_input
            if not retain_graph:
                function._release()
