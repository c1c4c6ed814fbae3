"""Both cores: run a kernel's batch chunks on a small pool of threads (CPU fast kernels).

A fast kernel already works in batch chunks (a convolution's column matrix per few images,
BatchNorm's and ReLU's passes per slice of the batch).  :func:`map_chunks` hands those
chunks to a pool of threads instead of a Python loop.  That pays because NumPy releases the
GIL inside ``matmul``, ``copyto`` and large ufuncs, so the threads really run at once, each
chunk's matrix product is single-threaded BLAS (OpenBLAS's own threads spin on products
this small), and the copies, BatchNorm and ReLU, which BLAS never threads, are split too.

How many threads: as many as BLAS is allowed *now* (``OPENBLAS_NUM_THREADS``,
``threadpoolctl.threadpool_limits``; OpenBLAS's default is one per core), read at every
call.  With one (or without ``threadpoolctl`` installed, or on any thread but the main one)
every chunk runs in order on the calling thread, exactly as a loop would.  While the pool
works, BLAS is limited to one thread and restored afterwards.

Results do not depend on the thread count: each chunk writes its own slice of the output,
and anything summed over chunks is summed by the caller, in chunk order, from the per-chunk
results this function returns in order.  The tests check 1 and 2 threads bit for bit.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import os
import threading

#: Arrays smaller than this are not split: a pool hand-off costs tens of microseconds.
MIN_PARALLEL_BYTES = 2**20

_lock = threading.Lock()
_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_size = 0
_blas = None  # threadpoolctl's controller for NumPy's BLAS; False when unavailable


def _blas_controller():
    global _blas
    if _blas is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _blas = False
        else:
            _blas = ThreadpoolController().select(user_api="blas") or False
    return _blas


def threads() -> int:
    """How many threads :func:`map_chunks` uses now: BLAS's current thread count (1
    without ``threadpoolctl``)."""
    blas = _blas_controller()
    if not blas:
        return 1
    return max(1, min(lib.num_threads for lib in blas.lib_controllers))


def _executor(size: int) -> concurrent.futures.ThreadPoolExecutor:
    """The pool of ``size`` helper threads (made again when the size changes); call with
    ``_lock`` held."""
    global _pool, _pool_size
    if _pool is None or _pool_size != size:
        if _pool is not None:
            _pool.shutdown(wait=True)  # its helpers only ever run kernel chunks: brief
        _pool = concurrent.futures.ThreadPoolExecutor(size, thread_name_prefix="minires-kernel")
        _pool_size = size
    return _pool


def _forget_threads_after_fork():
    """A forked child has only the forking thread: the pool's threads are gone, and a lock
    may have been held by one of them."""
    global _lock, _pool, _pool_size
    _lock, _pool, _pool_size = threading.Lock(), None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_threads_after_fork)


def map_chunks(task, chunks, nbytes: int | None = None) -> list:
    """``[task(chunk) for chunk in chunks]``, the calls spread over :func:`threads` threads.

    ``task`` must write only its own chunk's part of any shared output.  ``nbytes``, the
    size of the data the chunks cover, keeps small arrays on the calling thread
    (:data:`MIN_PARALLEL_BYTES`).  An exception in any chunk is raised here.

    Only the main thread spreads chunks out; any other thread (a pool thread running a
    kernel inside a kernel, or a user's own thread) runs them in order itself.  That keeps
    the BLAS limit set and restored by one thread: OpenBLAS ignores a request from another
    thread to raise its thread count again (measured: 1 stays 1).
    """
    chunks = list(chunks)
    count = 1
    if (len(chunks) > 1 and (nbytes is None or nbytes >= MIN_PARALLEL_BYTES)
            and threading.current_thread() is threading.main_thread()):
        count = threads()
    if count == 1:
        return [task(chunk) for chunk in chunks]
    results = [None] * len(chunks)
    next_index = itertools.count().__next__  # atomic under the GIL: each index taken once

    def work():  # take the next chunk until none is left (dynamic: a slow thread does less)
        while (i := next_index()) < len(chunks):
            results[i] = task(chunks[i])

    blas = _blas_controller()
    with blas.limit(limits=1) if blas else contextlib.nullcontext():
        with _lock:
            pool = _executor(count - 1)
            helpers = [pool.submit(work) for _ in range(count - 1)]
        try:
            work()  # the calling thread works too
        finally:
            for helper in helpers:
                helper.result()  # waits; re-raises a helper's exception
    return results


#: Target size of one slice of an elementwise pass (:func:`batch_slices`).  BatchNorm
#: forward+backward at 128x16x32x32, 2 threads: 32 KiB 13.9 ms, 256 KiB 7.1, 1 MiB 5.4,
#: 8 MiB (one slice per thread) 5.8: big enough that the hand-offs cost little, and
#: several slices per thread so that a slow thread does fewer.
SLICE_BYTES = 2**20


def batch_slices(batch: int, nbytes: int) -> list:
    """Contiguous slices of ``range(batch)`` for elementwise passes over an array of
    ``nbytes`` whose first axis is the batch: about :data:`SLICE_BYTES` each, and at least
    one per thread, e.g. ``[slice(0, 8), slice(8, 16), ...]``; one slice for an array
    too small to split (:data:`MIN_PARALLEL_BYTES`)."""
    if nbytes < MIN_PARALLEL_BYTES:
        return [slice(0, batch)]
    pieces = max(1, min(batch, max(threads(), nbytes // SLICE_BYTES)))
    bounds = [batch * i // pieces for i in range(pieces + 1)]
    return [slice(lo, hi) for lo, hi in itertools.pairwise(bounds)]


def each_slice(task, array) -> None:
    """``task(batch)`` for the :func:`batch_slices` of ``array``'s first axis, on the kernel
    threads; an array under :data:`MIN_PARALLEL_BYTES` is one slice, one call, here."""
    map_chunks(task, batch_slices(len(array), array.nbytes))
