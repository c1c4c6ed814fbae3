"""The CUDA emulation's own checks (tests/cudaemu): each one must catch what it is for.

Small kernels written here are built with the emulation's ``RawModule`` (g++) and launched
with a mistake a GPU would not report, or would report only as wrong numbers: the error (or
the NaN) must show.  Needs g++ (skipped, with the reason, without it); no GPU, no option.
"""

import os
import shutil

import numpy as np
import pytest

from tests.cudaemu import array as emu
from tests.cudaemu import kernels

pytestmark = pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None,
                                reason="the CUDA emulation needs g++ (or $CXX)")

CODE = r"""
template <typename T>
__global__ void fill_kernel(T value, int total, T* __restrict__ y)
{
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t > total) return;  // off by one: thread `total` writes y[total]
    y[t] = value;
}

template <typename T>
__global__ void half_fill_kernel(int total, T* __restrict__ y)
{
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t < total && t % 2 == 0) y[t] = T(1);  // odd elements never written
}

// Block sum with a barrier in a divergent branch when `broken` is 1.
__global__ void sum_kernel(const double* __restrict__ x, int broken, double* __restrict__ out)
{
    extern __shared__ double shared[];
    shared[threadIdx.x] = x[blockIdx.x * blockDim.x + threadIdx.x];
    if (broken == 0 || threadIdx.x < 16) __syncthreads();
    if (threadIdx.x == 0) {
        double total = 0.0;
        for (int i = 0; i < blockDim.x; ++i) total += shared[i];
        out[blockIdx.x] = total;
    }
}

// Reads shared memory no thread wrote (garbage on a GPU) when `skip` is 1.
__global__ void uninitialised_shared_kernel(int skip, double* __restrict__ out)
{
    extern __shared__ double shared[];
    if (!skip) shared[threadIdx.x] = 1.0;
    __syncthreads();
    out[blockIdx.x * blockDim.x + threadIdx.x] = shared[(threadIdx.x + 1) % blockDim.x];
}

// Threads waiting at two different barriers.
__global__ void two_barriers_kernel(double* __restrict__ out)
{
    if (threadIdx.x % 2)
        __syncthreads();  // told apart by line number
    else
        __syncthreads();
    out[threadIdx.x] = 1.0;
}

// Writes one double more of shared memory than 8 * blockDim.x bytes.
__global__ void shared_overflow_kernel(double* __restrict__ out)
{
    extern __shared__ double shared[];
    shared[threadIdx.x + 1] = 1.0;
    __syncthreads();
    out[threadIdx.x] = shared[threadIdx.x];
}
"""
NAMES = ["fill_kernel<float>", "fill_kernel<double>", "half_fill_kernel<float>", "sum_kernel",
         "uninitialised_shared_kernel", "two_barriers_kernel", "shared_overflow_kernel"]


@pytest.fixture(scope="module")
def module():
    return kernels.RawModule(code=CODE, name_expressions=NAMES)


def test_a_correct_launch_runs_and_barriers_order_the_threads(module):
    x = emu.asarray(np.arange(256, dtype=np.float64))
    out = emu.empty(2, np.float64)
    module.get_function("sum_kernel")((2,), (128,), (x, np.int32(0), out), shared_mem=128 * 8)
    np.testing.assert_array_equal(out.get(), [np.arange(128).sum(), np.arange(128, 256).sum()])


def test_argument_count_and_types_are_checked_against_the_signature(module):
    kernel = module.get_function("fill_kernel<float>")
    y = emu.empty(300, np.float32)
    with pytest.raises(TypeError, match="takes 3 arguments"):
        kernel((2,), (256,), (np.float32(1), y))
    with pytest.raises(TypeError, match="int64.*CuPy passes as int64"):
        kernel((2,), (256,), (np.float32(1), 299, y))  # a Python int is int64 in CuPy
    with pytest.raises(TypeError, match="needs dtype float32, got float64"):
        kernel((2,), (256,), (np.float64(1), np.int32(299), y))
    with pytest.raises(TypeError, match="array of float32, got float64"):
        kernel((2,), (256,), (np.float32(1), np.int32(299), emu.empty(300, np.float64)))
    with pytest.raises(TypeError, match="needs a device array"):
        kernel((2,), (256,), (np.float32(1), np.int32(299), np.zeros(300, np.float32)))
    with pytest.raises(TypeError, match="C-contiguous"):
        kernel((2,), (256,), (np.float32(1), np.int32(150), emu.empty(600, np.float32)[::2]))


def test_launch_limits_are_cuda_s(module):
    kernel = module.get_function("fill_kernel<float>")
    y = emu.empty(10, np.float32)
    args = (np.float32(1), np.int32(9), y)
    with pytest.raises(kernels.LaunchError, match="1025 threads, more than CUDA's 1024"):
        kernel((1,), (1025,), args)
    with pytest.raises(kernels.LaunchError, match="gridDim.y = 65536 exceeds"):
        kernel((1, 65536), (1,), args)
    with pytest.raises(kernels.LaunchError, match=">= 1"):
        kernel((0,), (32,), args)
    with pytest.raises(kernels.LaunchError, match="shared_mem"):
        kernel((1,), (32,), args, shared_mem=49 * 1024)


def test_an_out_of_bounds_write_is_caught(module):
    y = emu.empty(300, np.float32)  # 2 blocks of 256 threads: thread 300 writes y[300]
    with pytest.raises(kernels.LaunchError, match="out of bounds of argument float\\* y.*past "
                                                  "the end"):
        module.get_function("fill_kernel<float>")((2,), (256,), (np.float32(1), np.int32(300),
                                                                 y))


def test_new_arrays_are_nan_so_unwritten_elements_show(module):
    y = emu.empty(8, np.float32)
    assert np.isnan(y.get()).all() and (emu.empty(3, np.int32).get() != 0).all()
    assert np.isnan(emu.empty_like(y).get()).all()
    module.get_function("half_fill_kernel<float>")((1,), (8,), (np.int32(8), y))
    got = y.get()
    np.testing.assert_array_equal(got[::2], 1)
    assert np.isnan(got[1::2]).all()


def test_a_barrier_in_a_divergent_branch_is_caught(module):
    x = emu.asarray(np.ones(64))
    with pytest.raises(kernels.LaunchError, match="reached by only 16 of the 64 threads"):
        module.get_function("sum_kernel")((1,), (64,), (x, np.int32(1), emu.empty(1)),
                                          shared_mem=64 * 8)
    with pytest.raises(kernels.LaunchError, match="different __syncthreads"):
        module.get_function("two_barriers_kernel")((1,), (4,), (emu.empty(4),))


def test_shared_memory_starts_as_garbage_and_its_size_is_enforced(module):
    out = emu.empty(64)
    kernel = module.get_function("uninitialised_shared_kernel")
    kernel((1,), (64,), (np.int32(0), out), shared_mem=64 * 8)
    np.testing.assert_array_equal(out.get(), 1.0)
    kernel((2,), (64,), (np.int32(1), emu.empty(128)), shared_mem=64 * 8)
    # the second block must not see the first block's ones either
    again = emu.empty(128)
    kernel((2,), (64,), (np.int32(1), again), shared_mem=64 * 8)
    assert np.isnan(again.get()).all()
    with pytest.raises(kernels.LaunchError, match="past the 512 bytes"):
        module.get_function("shared_overflow_kernel")((1,), (64,), (emu.empty(64),),
                                                      shared_mem=64 * 8)


def test_warp_intrinsics_are_left_undefined_so_they_do_not_build():
    code = r"""__global__ void warp_sum(float* x)
    { x[threadIdx.x] = __shfl_down_sync(0xffffffff, x[threadIdx.x], 1); }"""
    with pytest.raises(kernels.CompileError, match="__shfl_down_sync"):
        kernels.RawModule(code=code, name_expressions=["warp_sum"])


def test_the_device_arrays_refuse_host_arrays_as_cupy_does():
    a = emu.asarray(np.ones(3))
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(a)
    with pytest.raises(TypeError, match="NumPy array in an operation"):
        a + np.ones(3)
    with pytest.raises(TypeError, match="NumPy array in an operation"):
        np.ones(3) * a
    assert isinstance(a.sum(), emu.ndarray) and a.sum().item() == 3.0  # 0-d on the device
    np.testing.assert_array_equal((a + 1).get(), 2.0)


def test_the_emulation_never_runs_beside_a_real_cupy(monkeypatch):
    """install() refuses where a real CuPy is importable (it would be mixed with the
    stand-in), and registers nothing under the name ``cupy``."""
    import importlib.util
    import sys

    from minires import backend
    from tests import cudaemu

    monkeypatch.setattr(backend, "_cupy", None)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "cupy" else real_find_spec(name, *a))
    with pytest.raises(RuntimeError, match="does not run beside a real CuPy"):
        cudaemu.install()
    assert backend._cupy is None
    assert "cupy" not in sys.modules or sys.modules["cupy"] is not cudaemu.module
