"""Tests for minires.kernels.fast.parallel (the kernel threads) and the fast ReLU.

* ``map_chunks`` returns every chunk's result once, in chunk order; really runs chunks at
  once on two threads (a barrier that only two concurrent chunks can pass); re-raises a
  chunk's error; runs calls from other threads and small arrays on the calling thread;
  follows the BLAS thread limit and restores it; works in a forked child.
* The fast kernels give bit-identical results on one thread and on two (the weight
  gradient and BatchNorm's sums are summed in an order that does not depend on threads).
* The fast ReLU equals the simple one, and falls back to it (and its errors) off its path;
  the ReLU op runs it unless the kernels are switched to simple or replaced.
* The fast BatchNorm is right for inputs of any memory layout; each thread has its own
  scratch buffers, freed when the thread ends.
"""

import itertools
import os
import signal
import threading
import time

import numpy as np
import pytest

from minires.kernels import activation
from minires.kernels.fast import activation as fast_activation
from minires.kernels.fast import conv as fast_conv
from minires.kernels.fast import norm as fast_norm
from minires.kernels.fast import parallel


@pytest.fixture
def two_threads(monkeypatch):
    """Pretend BLAS allows two threads, whatever this machine has."""
    monkeypatch.setattr(parallel, "threads", lambda: 2)


def test_map_chunks_returns_each_result_once_in_order(two_threads):
    calls = []

    def task(i):
        calls.append(i)
        return i * i

    assert parallel.map_chunks(task, range(50)) == [i * i for i in range(50)]
    assert sorted(calls) == list(range(50))


def test_map_chunks_runs_chunks_at_once_on_two_threads(two_threads):
    barrier = threading.Barrier(2, timeout=10)  # broken (an error) unless 2 chunks meet
    idents = parallel.map_chunks(lambda _: (barrier.wait(), threading.get_ident())[1],
                                 range(2))
    assert len(set(idents)) == 2


def test_map_chunks_reraises_a_chunks_error(two_threads):
    def task(i):
        if i == 7:
            raise ValueError("chunk 7 failed")
        return i

    with pytest.raises(ValueError, match="chunk 7 failed"):
        parallel.map_chunks(task, range(20))
    assert parallel.map_chunks(lambda i: i, range(3)) == [0, 1, 2]  # the pool still works


def test_other_threads_and_small_arrays_stay_on_the_calling_thread(two_threads):
    """Only the main thread spreads chunks (OpenBLAS lets only it raise the BLAS thread
    count back); inside a chunk on a pool thread, or on a user's thread, they run in order."""
    def own_thread_only(_):
        here = threading.get_ident()
        return set(parallel.map_chunks(lambda _: threading.get_ident(), range(8))) == {here}

    results = parallel.map_chunks(lambda i: (threading.get_ident(), own_thread_only(i)),
                                  range(8))
    main = threading.get_ident()
    assert all(ok for ident, ok in results if ident != main)
    assert any(ident != main for ident, _ in results)
    seen = []
    user = threading.Thread(target=lambda: seen.append(own_thread_only(0)))
    user.start()
    user.join(10)
    assert seen == [True]
    small = parallel.map_chunks(lambda _: threading.get_ident(), range(8), nbytes=1000)
    assert set(small) == {main}


def test_threads_follow_the_blas_limit():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(1):
        assert parallel.threads() == 1
        caller = threading.get_ident()
        assert set(parallel.map_chunks(lambda _: threading.get_ident(), range(8))) == {caller}


def test_the_blas_limit_comes_back_after_the_pool_ran():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(2):
        before = parallel.threads()
        inside = parallel.map_chunks(lambda _: parallel.threads(), range(4))
        assert parallel.threads() == before
        if before > 1:  # the chunks ran with single-threaded BLAS
            assert inside == [1, 1, 1, 1]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_a_new_pool(two_threads):
    """The pool's threads do not survive fork: a child that used the parent's pool object
    would wait forever for them."""
    parallel.map_chunks(lambda i: i, range(4))  # the parent's pool exists now
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if two-thread chunks still run
        try:
            ok = parallel.map_chunks(lambda i: i * 2, range(6)) == [0, 2, 4, 6, 8, 10]
        finally:
            os._exit(0 if ok else 1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung in map_chunks")


@pytest.mark.parametrize("batch, nbytes", [(1, 10), (5, 10), (128, 8 * 2**20), (3, 2**30)])
def test_batch_slices_cover_the_batch_in_order(batch, nbytes):
    slices = parallel.batch_slices(batch, nbytes)
    assert slices[0].start == 0 and slices[-1].stop == batch
    assert all(a.stop == b.start for a, b in itertools.pairwise(slices))
    assert all(s.stop > s.start for s in slices)


# ------------------------------------------------------------------ one thread == two, bit for bit


def _fast_results(rng):
    """Forward and backward of the fast conv (several chunks), BatchNorm and ReLU."""
    x = rng.standard_normal((12, 8, 16, 16)).astype(np.float32)
    w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    gamma = rng.standard_normal(8).astype(np.float32)
    beta = rng.standard_normal(8).astype(np.float32)
    y = fast_conv.conv2d_forward(x, w, None, 1, 1)
    conv_grads = fast_conv.conv2d_backward(g, x, w, 1, 1)
    strided_grads = fast_conv.conv2d_backward(g[:, :, ::2, ::2], x, w, 2, 1)
    bn_y, cache = fast_norm.batch_norm_forward(y, gamma, beta, None, None, True)
    bn_grads = fast_norm.batch_norm_backward(g, cache)
    relu_y = fast_activation.relu_forward(bn_y)
    relu_grad = fast_activation.relu_backward(g, relu_y)
    return [y, *conv_grads[:2], *strided_grads[:2], bn_y, *bn_grads, relu_y, relu_grad]


def test_one_thread_and_two_give_the_same_bits(monkeypatch):
    monkeypatch.setattr(fast_conv, "CHUNK_BYTES", 16 * 16 * 72 * 4 * 3)  # 4 chunks of 3
    monkeypatch.setattr(parallel, "MIN_PARALLEL_BYTES", 0)
    monkeypatch.setattr(parallel, "threads", lambda: 1)
    one = _fast_results(np.random.default_rng(3))
    monkeypatch.setattr(parallel, "threads", lambda: 2)
    two = _fast_results(np.random.default_rng(3))
    for a, b in zip(one, two, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)


# ----------------------------------------------------------------------------- the fast ReLU


@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (64, 16, 8, 8), (6, 7)])
@pytest.mark.parametrize("split", [True, False])
def test_fast_relu_equals_simple(rng, two_threads, monkeypatch, shape, split):
    """Split into slices on two threads (``split``), and as one small array (which the
    fast kernel hands to the simple one)."""
    monkeypatch.setattr(parallel, "MIN_PARALLEL_BYTES", 0 if split else 2**40)
    x = rng.standard_normal(shape)
    x.flat[::7] = 0.0  # ReLU's kink: gradient 0 there in both
    g = rng.standard_normal(shape)
    y = fast_activation.relu_forward(x)
    np.testing.assert_array_equal(y, activation.relu_forward(x))
    np.testing.assert_array_equal(fast_activation.relu_backward(g, y),
                                  activation.relu_backward(g, y))
    assert fast_activation.relu_backward(g.astype(np.float32), y).dtype == np.float32


def test_fast_relu_falls_back_and_keeps_the_errors(rng):
    v = rng.standard_normal(5)  # no batch axis: the simple kernel
    np.testing.assert_array_equal(fast_activation.relu_forward(v), np.maximum(v, 0))
    with pytest.raises(ValueError, match="grad_y has shape"):
        fast_activation.relu_backward(np.ones((2, 3)), np.ones((2, 4)))


def test_the_relu_op_runs_the_fast_kernel_unless_switched_off(monkeypatch):
    import minires
    from minires.ops.arithmetic import relu

    calls = []
    for name in ("relu_forward", "relu_backward"):
        fast = getattr(fast_activation, name)
        monkeypatch.setattr(fast_activation, name,
                            lambda *a, _f=fast, _n=name: calls.append(_n) or _f(*a))
    x = minires.Tensor(np.linspace(-1, 1, 24).reshape(2, 3, 4), requires_grad=True)
    relu(x).sum().backward()
    assert calls == ["relu_forward", "relu_backward"]
    calls.clear()
    with minires.kernels.use(fast=False):
        relu(x).sum().backward()
    assert calls == []
    # A plain module attribute takes effect, as for the other kernels (routing.py).
    monkeypatch.setattr(activation, "relu_backward", lambda g, y: g * 0 + 7)
    x.grad = None
    relu(x).sum().backward()
    assert calls == ["relu_forward"] and np.all(x.grad.numpy() == 7)


@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_fast_batch_norm_on_any_memory_layout(rng, two_threads, monkeypatch, layout):
    """The fast BatchNorm writes x_hat slice by slice and sums it in the same pass: that
    must hold for inputs that are not C-contiguous too."""
    from minires.kernels import norm

    monkeypatch.setattr(parallel, "MIN_PARALLEL_BYTES", 0)
    base = rng.standard_normal((6, 3, 5, 8)) * 3 + 1
    x = {"C": base, "F": np.asfortranarray(base), "strided": base[:, :, :, ::2]}[layout]
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    g = rng.standard_normal(x.shape)
    y_fast, cache_fast = fast_norm.batch_norm_forward(x, gamma, beta, None, None, True)
    y_simple, cache_simple = norm.batch_norm_forward(x, gamma, beta, None, None, True)
    np.testing.assert_allclose(y_fast, y_simple, rtol=1e-12, atol=1e-12)
    for a, b in zip(fast_norm.batch_norm_backward(g, cache_fast),
                    norm.batch_norm_backward(g, cache_simple), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_each_thread_has_its_own_buffers_freed_with_it():
    from minires.kernels.fast import workspace

    workspace.clear()
    mine = workspace.buffer("t", (1000,), np.float32)
    theirs = []
    worker = threading.Thread(target=lambda: theirs.append(
        workspace.buffer("t", (1000,), np.float32)))
    worker.start()
    worker.join(10)
    assert theirs[0] is not mine and workspace.buffer("t", (1000,), np.float32) is mine
    del theirs[:]
    import gc

    gc.collect()
    assert workspace.nbytes() == mine.nbytes  # the ended thread's buffers are gone
    workspace.clear()
    assert workspace.nbytes() == 0
