"""Scratch buffers reused from one call to the next (CPU fast kernels only).

A training step runs the same layers at the same shapes every time, so the large temporaries
of a kernel (a chunk's column matrix, its padded image, its matrix-product output) have the
same shapes every step.  A fresh NumPy array that large is a fresh memory mapping, whose
pages the operating system must fault in and zero; keeping one buffer per (purpose, shape,
dtype) and handing it out again avoids that.  A buffer is only scratch: its contents are
overwritten by every caller, and no result handed back to the user ever lives in one.

Each thread has its own buffers, so the chunks that :mod:`minires.kernels.fast.parallel`
runs at once never share scratch memory (and a lookup needs no lock).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict

import numpy as np

#: Most buffers one thread keeps; its least recently used is dropped beyond this.  A ResNet
#: has a handful of distinct convolution shapes, each needing about five buffers.
MAX_BUFFERS = 48



class _Buffers(OrderedDict):
    """One thread's buffers (a class of its own so that :data:`_all` can hold it weakly:
    when the thread ends, its buffers are freed)."""


_local = threading.local()  # .buffers: this thread's _Buffers
_all = weakref.WeakValueDictionary()  # thread id -> that live thread's _Buffers


def _mine() -> _Buffers:
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = _Buffers()
        _all[threading.get_ident()] = buffers
    return buffers


def buffer(tag: str, shape: tuple, dtype, zeros: bool = False) -> np.ndarray:
    """A reusable scratch array of ``shape`` and ``dtype`` for purpose ``tag``, this
    thread's own.

    ``zeros=True`` asks for an array that was zero when created: the caller promises to
    write only where it wrote before (e.g. the inside of a zero-padded image, whose border
    then stays zero), so ``tag`` must say everything that fixes that region (the padding).
    """
    buffers = _mine()
    key = (tag, tuple(shape), np.dtype(dtype).str, zeros)
    array = buffers.get(key)
    if array is None:
        array = buffers[key] = (np.zeros if zeros else np.empty)(shape, dtype=dtype)
        while len(buffers) > MAX_BUFFERS:
            buffers.popitem(last=False)
    else:
        buffers.move_to_end(key)
    return array


def clear() -> None:
    """Drop every kept buffer, every thread's (frees their memory).  Call it while no
    kernel runs."""
    for buffers in list(_all.values()):
        buffers.clear()


def nbytes() -> int:
    """Bytes held by the kept buffers of every thread."""
    return sum(a.nbytes for buffers in list(_all.values()) for a in list(buffers.values()))
