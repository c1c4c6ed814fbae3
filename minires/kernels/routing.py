"""Which kernel runs: the fast path, the simple (teaching) path, or a student's own.

:mod:`minires.functional` and the ReLU op call the kernels through the functions below.
Each one looks at two things, at call time:

* the switch ``fast`` (on by default; ``MINIRES_KERNELS=simple`` in the environment or
  ``minires.kernels.use(fast=False)`` turns it off): whether the fast twins in
  :mod:`minires.kernels.fast` run, or the one-screen kernels in ``conv.py``, ``pool.py``,
  ``norm.py``, ``activation.py``.  Both give the same numbers (the tests compare them);
* the simple kernels' module attributes: ``conv.im2col = mine`` (or, better,
  ``with minires.kernels.use(im2col=mine):``) takes effect, because the simple
  ``conv2d_forward`` looks ``im2col`` up in its module when it runs, and a replaced
  attribute sends the convolution down the simple path.

:class:`use` also adapts the exercise stubs' signatures (``tutorials/exercises/*.py``: ints
instead of (h, w) pairs, the forward input instead of a cache) to the kernels' own.
A student's kernel only ever sees NumPy arrays: CuPy arrays keep the built-in kernels.
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple

from minires.backend import CUDA, device_of, get_array_module
from minires.kernels import activation, conv, norm, pool
from minires.kernels.fast import activation as fast_activation
from minires.kernels.fast import conv as fast_conv
from minires.kernels.fast import norm as fast_norm
from minires.kernels.geometry import pair

#: The environment variable read once at import: ``fast`` (default) or ``simple``.
ENV_VAR = "MINIRES_KERNELS"


def _fast_from_environment() -> bool:
    value = os.environ.get(ENV_VAR, "fast").strip().lower() or "fast"
    if value not in ("fast", "simple"):
        raise ValueError(f"{ENV_VAR} must be 'fast' or 'simple', got {value!r}")
    return value == "fast"


_fast = _fast_from_environment()

#: The replaceable kernels: name -> (module, attribute), with the built-in function.
#: (``use()`` plugs in the ones with an exercise stub, :data:`_ADAPTERS`; the ReLU kernels
#: are replaced as module attributes only.)
SEAMS = {
    "im2col": (conv, "im2col"),
    "col2im": (conv, "col2im"),
    "conv2d_forward": (conv, "conv2d_forward"),
    "conv2d_backward": (conv, "conv2d_backward"),
    "batch_norm_backward": (norm, "batch_norm_backward"),
    "max_pool2d_backward": (pool, "max_pool2d_backward"),
    "sigmoid_backward": (activation, "sigmoid_backward"),
    "relu_forward": (activation, "relu_forward"),
    "relu_backward": (activation, "relu_backward"),
}
BUILTIN = {name: getattr(module, attr) for name, (module, attr) in SEAMS.items()}


def fast_enabled() -> bool:
    """True when the fast kernels run (no ``use(fast=False)``, no ``MINIRES_KERNELS=simple``)."""
    return _fast


def replaced(name: str) -> bool:
    """True when kernel ``name`` (a key of :data:`SEAMS`) is not the built-in one now."""
    module, attr = SEAMS[name]
    return getattr(module, attr) is not BUILTIN[name]


# ---------------------------------------------------------------------------- the switch


class use:
    """Choose the kernels: ``use(fast=False)`` and/or replace kernels by name.

    Called plainly it takes effect at once and stays; as a context manager it is undone on
    exit (whatever happened inside)::

        minires.kernels.use(fast=False)                  # simple kernels from now on
        with minires.kernels.use(im2col=my_im2col, sigmoid_backward=my_sigmoid_backward):
            train_a_few_steps()                          # the layers call my functions

    Keyword arguments (each a function with the exercise stub's signature, see
    ``tutorials/exercises/``): ``im2col(x, kernel_h, kernel_w, stride, padding)``,
    ``col2im(cols, x_shape, kernel_h, kernel_w, stride, padding)``,
    ``conv2d_backward(grad_y, x, weight, stride, padding) -> (grad_x, grad_w, grad_b)``,
    ``batch_norm_backward(grad_y, x, gamma, eps) -> (grad_x, grad_gamma, grad_beta)``
    (training mode), ``max_pool2d_backward(grad_y, x, kernel_size, stride, padding)`` and
    ``sigmoid_backward(grad_y, y)``.  ``conv2d_forward`` takes the kernel's own signature.
    Any replaced kernel also turns the fast convolution off (the simple one calls it).
    """

    def __init__(self, fast: bool | None = None, **kernels):
        unknown = sorted(set(kernels) - set(_ADAPTERS))
        if unknown:
            raise TypeError(f"use(): unknown kernel(s) {unknown}; replaceable kernels are "
                            f"{sorted(_ADAPTERS)}")
        for name, function in kernels.items():
            if not callable(function):
                raise TypeError(f"use(): {name} must be a function, got "
                                f"{type(function).__name__}")
        if fast is not None and not isinstance(fast, bool):
            raise TypeError(f"use(): fast must be True or False, got {fast!r}")
        global _fast
        self._previous_fast = _fast
        self._previous = {name: getattr(*SEAMS[name]) for name in kernels}
        if fast is not None:
            _fast = fast
        for name, function in kernels.items():
            module, attr = SEAMS[name]
            setattr(module, attr, _ADAPTERS[name](function))

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        global _fast
        _fast = self._previous_fast
        for name, function in self._previous.items():
            module, attr = SEAMS[name]
            setattr(module, attr, function)
        return False


def _on_gpu(*arrays) -> bool:
    return any(a is not None and device_of(a) == CUDA for a in arrays)


def _one_int(value, name: str) -> int:
    """The stubs take one int for both axes: a square (h, w) pair -> that int."""
    h, w = pair(value, name)
    if h != w:
        raise ValueError(f"a student kernel takes one int {name} for H and W; this layer has "
                         f"{name}={value!r}")
    return h


def _no_dilation(dilation):
    if pair(dilation, "dilation") != (1, 1):
        raise ValueError(f"a student kernel has no dilation; this layer has {dilation!r}")


def _adapt_im2col(student):
    builtin = BUILTIN["im2col"]

    @functools.wraps(student)
    def im2col(x, kernel_h, kernel_w, stride=1, padding=0, dilation=1):
        if _on_gpu(x):
            return builtin(x, kernel_h, kernel_w, stride, padding, dilation)
        _no_dilation(dilation)
        return student(x, kernel_h, kernel_w, _one_int(stride, "stride"),
                       _one_int(padding, "padding"))
    return im2col


def _adapt_col2im(student):
    builtin = BUILTIN["col2im"]

    @functools.wraps(student)
    def col2im(cols, x_shape, kernel_h, kernel_w, stride=1, padding=0, dilation=1):
        if _on_gpu(cols):
            return builtin(cols, x_shape, kernel_h, kernel_w, stride, padding, dilation)
        _no_dilation(dilation)
        return student(cols, tuple(x_shape), kernel_h, kernel_w, _one_int(stride, "stride"),
                       _one_int(padding, "padding"))
    return col2im


def _adapt_conv2d_backward(student):
    builtin = BUILTIN["conv2d_backward"]

    @functools.wraps(student)
    def conv2d_backward(grad_out, x, weight, stride=1, padding=0, dilation=1,
                        need_input_grad=True, need_bias_grad=True):
        if _on_gpu(grad_out, x, weight):
            return builtin(grad_out, x, weight, stride, padding, dilation, need_input_grad,
                           need_bias_grad)
        _no_dilation(dilation)
        grad_x, grad_w, grad_b = student(grad_out, x, weight, _one_int(stride, "stride"),
                                         _one_int(padding, "padding"))
        return (grad_x if need_input_grad else None), grad_w, (
            grad_b if need_bias_grad else None)
    return conv2d_backward


def _adapt_batch_norm_backward(student):
    builtin = BUILTIN["batch_norm_backward"]

    @functools.wraps(student)
    def batch_norm_backward(grad_y, cache):
        if _on_gpu(grad_y) or not cache.training:  # the stub is training mode only
            return builtin(grad_y, cache)
        if cache.x is None:
            raise ValueError("a student batch_norm_backward needs the forward input: call it "
                             "through minires.functional.batch_norm (which keeps x)")
        gamma = cache.gamma if cache.gamma is not None else get_array_module(
            cache.inv_std).ones_like(cache.inv_std)  # affine=False: scale 1
        grad_x, grad_gamma, grad_beta = student(grad_y, cache.x, gamma, cache.eps)
        return (grad_x, grad_gamma if cache.gamma is not None else None,
                grad_beta if cache.has_beta else None)
    return batch_norm_backward


class MaxPoolSaved(NamedTuple):
    """What max pooling keeps for its backward when a student's backward (which reads the
    forward input) is plugged in: the argmax and the input ``x``."""

    argmax: object
    x: object


def _adapt_max_pool2d_backward(student):
    builtin = BUILTIN["max_pool2d_backward"]

    @functools.wraps(student)
    def max_pool2d_backward(grad_y, argmax, x_shape, kernel_size, stride=None, padding=0):
        saved = argmax
        if not isinstance(saved, MaxPoolSaved):
            raise ValueError("a student max_pool2d_backward needs the forward input: call it "
                             "through minires.functional.max_pool2d (which keeps x)")
        if _on_gpu(grad_y):
            return builtin(grad_y, saved.argmax, x_shape, kernel_size, stride, padding)
        stride = kernel_size if stride is None else stride
        return student(grad_y, saved.x, _one_int(kernel_size, "kernel_size"),
                       _one_int(stride, "stride"), _one_int(padding, "padding"))
    return max_pool2d_backward


def _adapt_sigmoid_backward(student):
    builtin = BUILTIN["sigmoid_backward"]

    @functools.wraps(student)
    def sigmoid_backward(grad_y, y):
        return builtin(grad_y, y) if _on_gpu(grad_y, y) else student(grad_y, y)
    return sigmoid_backward


_ADAPTERS = {
    "im2col": _adapt_im2col,
    "col2im": _adapt_col2im,
    "conv2d_forward": lambda function: function,  # the kernel's own signature
    "conv2d_backward": _adapt_conv2d_backward,
    "batch_norm_backward": _adapt_batch_norm_backward,
    "max_pool2d_backward": _adapt_max_pool2d_backward,
    "sigmoid_backward": _adapt_sigmoid_backward,
}


# ---------------------------------------------------------------------------- the calls


def _fast_conv() -> bool:
    return _fast and not any(
        replaced(name) for name in ("im2col", "col2im", "conv2d_forward", "conv2d_backward"))


def conv2d_forward(x, weight, bias, stride, padding, dilation):
    """:func:`minires.kernels.conv.conv2d_forward`, fast or simple (see the module doc)."""
    kernels = fast_conv if _fast_conv() else conv
    return kernels.conv2d_forward(x, weight, bias, stride, padding, dilation)


def conv2d_backward(grad_out, x, weight, stride, padding, dilation, need_input_grad,
                    need_bias_grad):
    """:func:`minires.kernels.conv.conv2d_backward`, fast or simple."""
    kernels = fast_conv if _fast_conv() else conv
    return kernels.conv2d_backward(grad_out, x, weight, stride, padding, dilation,
                                   need_input_grad=need_input_grad,
                                   need_bias_grad=need_bias_grad)


def batch_norm_forward(x, gamma, beta, running_mean, running_var, training, momentum, eps):
    """:func:`minires.kernels.norm.batch_norm_forward`, fast or simple; the cache also
    keeps ``x`` and ``eps`` while a student's backward (which needs them) is plugged in."""
    kernels = fast_norm if _fast else norm
    y, cache = kernels.batch_norm_forward(x, gamma, beta, running_mean, running_var, training,
                                          momentum, eps)
    if replaced("batch_norm_backward"):
        cache = cache._replace(x=x, eps=eps)
    return y, cache


def batch_norm_backward(grad_y, cache):
    """:func:`minires.kernels.norm.batch_norm_backward`, fast or simple (or the plugged-in
    one)."""
    kernels = fast_norm if _fast and not replaced("batch_norm_backward") else norm
    return kernels.batch_norm_backward(grad_y, cache)


def max_pool2d_forward(x, kernel_size, stride, padding):
    """:func:`minires.kernels.pool.max_pool2d_forward` -> ``(y, saved)``: ``saved`` is the
    argmax, plus ``x`` while a student's backward (which needs it) is plugged in."""
    y, argmax = pool.max_pool2d_forward(x, kernel_size, stride, padding)
    return y, (MaxPoolSaved(argmax, x) if replaced("max_pool2d_backward") else argmax)


def max_pool2d_backward(grad_y, saved, x_shape, kernel_size, stride, padding):
    """:func:`minires.kernels.pool.max_pool2d_backward` given ``max_pool2d_forward``'s saved."""
    if isinstance(saved, MaxPoolSaved) and not replaced("max_pool2d_backward"):
        saved = saved.argmax  # the student's kernel was unplugged between forward and backward
    return pool.max_pool2d_backward(grad_y, saved, x_shape, kernel_size, stride, padding)



def relu_forward(x):
    """:func:`minires.kernels.activation.relu_forward`, fast or simple (a replaced module
    attribute, ``activation.relu_forward = mine``, takes effect as for the other kernels)."""
    fast = _fast and not replaced("relu_forward")
    return (fast_activation if fast else activation).relu_forward(x)


def relu_backward(grad_y, x):
    """:func:`minires.kernels.activation.relu_backward`, fast or simple (or a replaced one)."""
    fast = _fast and not replaced("relu_backward")
    return (fast_activation if fast else activation).relu_backward(grad_y, x)
