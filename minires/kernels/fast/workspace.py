"""Scratch buffers reused from one call to the next (CPU fast kernels only).

A training step runs the same layers at the same shapes every time, so the large temporaries
of a kernel (a chunk's column matrix, its padded image, its matrix-product output) have the
same shapes every step.  A fresh NumPy array that large is a fresh memory mapping, whose
pages the operating system must fault in and zero; keeping one buffer per (purpose, shape,
dtype) and handing it out again avoids that.  A buffer is only scratch: its contents are
overwritten by every caller, and no result handed back to the user ever lives in one.

Each thread gets its own buffers (the key includes the thread), so the chunks that
:mod:`minires.kernels.fast.parallel` runs at once never share scratch memory.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

import numpy as np

#: Most buffers kept at once; the least recently used is dropped beyond this.  A ResNet
#: has a handful of distinct convolution shapes, each needing about five buffers per thread.
MAX_BUFFERS = 128

_buffers: OrderedDict = OrderedDict()
_lock = threading.Lock()


def _new_lock_after_fork():  # a forked child's lock may have been held by a gone thread
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_after_fork)


def buffer(tag: str, shape: tuple, dtype, zeros: bool = False) -> np.ndarray:
    """A reusable scratch array of ``shape`` and ``dtype`` for purpose ``tag``.

    ``zeros=True`` asks for an array that was zero when created: the caller promises to
    write only where it wrote before (e.g. the inside of a zero-padded image, whose border
    then stays zero), so ``tag`` must say everything that fixes that region (the padding).
    """
    key = (tag, tuple(shape), np.dtype(dtype).str, zeros, threading.get_ident())
    with _lock:
        array = _buffers.get(key)
        if array is not None:
            _buffers.move_to_end(key)
            return array
    array = (np.zeros if zeros else np.empty)(shape, dtype=dtype)  # outside the lock
    with _lock:
        _buffers[key] = array
        while len(_buffers) > MAX_BUFFERS:
            _buffers.popitem(last=False)  # a thread still using it keeps its reference
    return array


def clear() -> None:
    """Drop every kept buffer (frees their memory)."""
    with _lock:
        _buffers.clear()


def nbytes() -> int:
    """Bytes held by the kept buffers."""
    with _lock:
        return sum(a.nbytes for a in _buffers.values())
