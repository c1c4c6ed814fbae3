"""The CUDA kernels of minires/kernels/cuda: compile checks everywhere, GPU twins on a GPU.

(a) Without a GPU: every ``.cu`` file is compiled to PTX with nvcc, every kernel template
    instantiated for float and double exactly as gpu.py asks NVRTC for them, so a syntax or
    type error fails CI on any machine with the CUDA toolkit (skipped, with the reason,
    where nvcc is missing).  Where NVRTC itself can be found (CuPy's compiler; the CUDA
    toolkit or the ``nvidia-cuda-nvrtc`` wheel), the sources are also compiled with it, with
    gpu.py's name expressions and options.
(b) With CuPy and a GPU: every GPU kernel against its CPU twin on random inputs (float64 to
    1e-10, float32 to 1e-5, relative to the largest magnitude), including stride 2,
    padding, batch 1 and max-pool ties; a ResNet-20 training step on the GPU against the
    same step on the CPU; and a ResNet-20 step that copies nothing between host and device
    except the loss scalar it is asked for.  Skipped, with the reason, without CuPy or GPU.
    ``--device cuda-emulated`` runs (b) on the CPU instead: the same .cu files built by g++
    (tests/cudaemu, docs/cuda-emulation.md).
"""

import contextlib
import copy
import ctypes
import ctypes.util
import importlib.util
import math
import os
import re
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np
import pytest

import minires
from minires import backend
from minires import functional as F
from minires.autograd import Tensor
from minires.kernels import activation, conv, cuda, norm, pool
from minires.models import resnet20
from minires.optim import SGD

TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}
DTYPES = [np.float32, np.float64]
ROOT = Path(__file__).resolve().parents[1]


# ============================================================================ (a) compiling


def _template_names(text: str) -> list:
    return re.findall(r"__global__\s+void\s+(\w+)\s*\(", text)


def test_every_cuda_source_and_kernel_is_registered():
    """gpu.py compiles (and the compile tests below instantiate) exactly the KERNELS table:
    a new .cu file or kernel must be added there."""
    on_disk = sorted(p.name for p in cuda.SOURCE_DIR.glob("*.cu"))
    assert on_disk == sorted(cuda.KERNELS)
    for filename, kernels in cuda.KERNELS.items():
        assert sorted(_template_names(cuda.source(filename))) == sorted(kernels), filename


def test_cuda_package_imports_neither_cupy_nor_the_wrappers():
    """NumPy-only installs import the dispatch helpers only: no CuPy, no gpu.py, no compile."""
    code = ("import sys, numpy as np, minires, minires.kernels.cuda as cuda; "
            "assert not cuda.handles(np.zeros(3, np.float32)); "
            "assert 'cupy' not in sys.modules, 'cupy imported'; "
            "assert 'minires.kernels.cuda.gpu' not in sys.modules, 'gpu.py imported'")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def _find_nvcc():
    candidates = [shutil.which("nvcc")]
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            candidates.append(os.path.join(os.environ[var], "bin", "nvcc"))
    candidates.append("/usr/local/cuda/bin/nvcc")
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    pytest.skip("nvcc not found (no CUDA toolkit on PATH, CUDA_HOME or /usr/local/cuda): "
                "the compile check of the .cu files needs it")


def _instantiating_wrapper(filename: str) -> str:
    """A translation unit that includes the source and takes the address of every kernel
    template for float and double, which instantiates them as NVRTC's name expressions
    (gpu.py's ``name_expressions``) do."""
    refs = ",\n".join(f"    (void*)&{kernel}<{c_type}>" for kernel in cuda.KERNELS[filename]
                      for c_type in cuda.C_TYPES.values())
    return (f'#include "{cuda.SOURCE_DIR / filename}"\n\n'
            f"void* minires_instantiated_kernels[] = {{\n{refs}\n}};\n")


@pytest.mark.parametrize("filename", sorted(cuda.KERNELS))
def test_cuda_source_compiles_to_ptx_with_nvcc(filename, tmp_path):
    nvcc = _find_nvcc()
    wrapper = tmp_path / f"instantiate_{filename}"
    wrapper.write_text(_instantiating_wrapper(filename))
    ptx = tmp_path / f"{filename}.ptx"
    command = [nvcc, "--ptx", "-std=c++14", "-arch=compute_80", "-Werror", "all-warnings",
               "-o", str(ptx), str(wrapper)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}\n{result.stderr}"

    entries = re.findall(r"\.entry\s+(\w+)", ptx.read_text())
    assert len(entries) == 2 * len(cuda.KERNELS[filename]), entries
    for kernel in cuda.KERNELS[filename]:
        for code in ("f", "d"):  # Itanium mangling: name<float> -> ...nameIfE..., double: IdE
            assert any(f"{len(kernel)}{kernel}I{code}E" in e for e in entries), (kernel, code)

    # ptxas (next to nvcc) turns the PTX into H100 machine code: resource errors show here.
    ptxas = Path(nvcc).with_name("ptxas")
    if ptxas.exists():
        result = subprocess.run([str(ptxas), "-arch=sm_90", "-o", os.devnull, str(ptx)],
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------- NVRTC


def _find_nvrtc():
    """libnvrtc, the compiler CuPy's RawModule uses, or None."""
    names = []
    spec = importlib.util.find_spec("nvidia.cuda_nvrtc") if importlib.util.find_spec(
        "nvidia") else None
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            names += sorted(Path(folder, "lib").glob("libnvrtc.so*"))
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            names += sorted(Path(os.environ[var], "lib64").glob("libnvrtc.so*"))
    names += sorted(Path("/usr/local/cuda/lib64").glob("libnvrtc.so*"))
    found = ctypes.util.find_library("nvrtc")
    if found:
        names.append(found)
    for name in names:
        if "builtins" in str(name) or ".alt." in str(name):
            continue
        try:
            return ctypes.CDLL(str(name))
        except OSError:
            continue
    return None


@pytest.mark.parametrize("filename", sorted(cuda.KERNELS))
def test_cuda_source_compiles_with_nvrtc_as_cupy_does(filename):
    """NVRTC, unlike nvcc, includes no headers implicitly: compile with it when it is here."""
    lib = _find_nvrtc()
    if lib is None:
        pytest.skip("libnvrtc not found (CUDA toolkit lib64, or `pip install "
                    "nvidia-cuda-nvrtc-cu12`): the NVRTC compile check needs it")
    from minires.kernels.cuda import gpu

    def check(status, what):
        if status != 0:
            lib.nvrtcGetErrorString.restype = ctypes.c_char_p
            raise AssertionError(f"{what}: {lib.nvrtcGetErrorString(status).decode()}")

    program = ctypes.c_void_p()
    check(lib.nvrtcCreateProgram(ctypes.byref(program), cuda.source(filename).encode(),
                                 filename.encode(), 0, None, None), "nvrtcCreateProgram")
    try:
        names = [f"{k}<{c}>" for k in cuda.KERNELS[filename] for c in cuda.C_TYPES.values()]
        for name in names:
            check(lib.nvrtcAddNameExpression(program, name.encode()), name)
        options = [b"-arch=compute_80"] + [o.encode() for o in gpu.OPTIONS]
        status = lib.nvrtcCompileProgram(program, len(options),
                                         (ctypes.c_char_p * len(options))(*options))
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(program, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(program, log)
        assert status == 0, f"NVRTC failed on {filename}:\n{log.value.decode()}"
        for name in names:
            lowered = ctypes.c_char_p()
            check(lib.nvrtcGetLoweredName(program, name.encode(), ctypes.byref(lowered)), name)
            assert lowered.value.startswith(b"_Z"), (name, lowered.value)
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(program))


# ============================================================================ (b) on a GPU


@pytest.fixture(scope="module")
def cp():
    """The cupy module, or a skip that says what is missing (CuPy, driver, GPU)."""
    try:
        return backend._import_cupy()
    except RuntimeError as err:
        pytest.skip(f"GPU kernel checks need CuPy and a GPU: {err}")


def _gpu(cp, array):
    return cp.asarray(array)


def assert_close(gpu, cpu, dtype=None, tol=None, what=""):
    """GPU result == CPU result to TOL[dtype], relative to the CPU result's largest magnitude
    (NaNs must sit at the same places); same shape and dtype."""
    assert backend.device_of(gpu) == backend.CUDA, f"{what}: result is not on the GPU"
    got = gpu.get()
    assert got.shape == cpu.shape and got.dtype == cpu.dtype, (what, got.shape, got.dtype,
                                                               cpu.shape, cpu.dtype)
    tol = TOL[np.dtype(dtype or cpu.dtype)] if tol is None else tol
    finite = np.abs(cpu[np.isfinite(cpu)]) if cpu.dtype.kind == "f" else np.abs(cpu)
    scale = float(finite.max()) if finite.size else 0.0
    np.testing.assert_allclose(got, cpu, rtol=tol, atol=tol * scale, equal_nan=True,
                               err_msg=what)


# ---------------------------------------------------------------------------- dispatch


def test_public_kernels_dispatch_to_cuda_for_cupy_arrays(cp, monkeypatch):
    """Each public CPU kernel hands CuPy float32/float64 arrays to its CUDA twin."""
    from minires.kernels.cuda import gpu

    launched = []
    original = gpu._launch
    monkeypatch.setattr(gpu, "_launch", lambda name, *a: (launched.append(name),
                                                          original(name, *a)))
    rng = np.random.default_rng(0)
    x = _gpu(cp, rng.standard_normal((2, 3, 6, 6)).astype(np.float32))
    cols = conv.im2col(x, 3, 3, 1, 1)
    conv.col2im(cols, x.shape, 3, 3, 1, 1)
    y, argmax = pool.max_pool2d_forward(x, 2)
    pool.max_pool2d_backward(y, argmax, x.shape, 2)
    pool.avg_pool2d_backward(pool.avg_pool2d_forward(x, 2), x.shape, 2)
    out, cache = norm.batch_norm_forward(x, None, None, None, None, True)
    norm.batch_norm_backward(out, cache)
    activation.relu_backward(x, activation.relu_forward(x))
    activation.sigmoid_backward(x, activation.sigmoid_forward(x))
    activation.tanh_backward(x, x)
    expected = {"im2col_kernel", "col2im_kernel", "max_pool2d_forward_kernel",
                "max_pool2d_backward_kernel", "avg_pool2d_forward_kernel",
                "avg_pool2d_backward_kernel", "batch_norm_stats_kernel",
                "batch_norm_forward_kernel", "batch_norm_backward_sums_kernel",
                "batch_norm_backward_input_kernel", "relu_forward_kernel",
                "relu_backward_kernel", "sigmoid_forward_kernel", "sigmoid_backward_kernel",
                "tanh_backward_kernel"}
    assert expected <= set(launched), expected - set(launched)


def test_other_dtypes_keep_the_generic_array_code(cp):
    """float16 (no CUDA kernels) still works on the GPU, through CuPy's array code."""
    x = _gpu(cp, np.linspace(-2, 2, 24, dtype=np.float16).reshape(1, 2, 3, 4))
    assert not cuda.handles(x) and cuda.handles(x.astype(np.float32))
    assert_close(activation.relu_forward(x), np.maximum(x.get(), 0), tol=0)
    y, argmax = pool.max_pool2d_forward(x, 2, 1)
    y_cpu, argmax_cpu = pool.max_pool2d_forward(x.get(), 2, 1)
    assert_close(y, y_cpu, tol=0)
    np.testing.assert_array_equal(argmax.get(), argmax_cpu)


# ---------------------------------------------------------------------------- im2col


# (x shape, (KH, KW), stride, padding, dilation)
CONV_CASES = [
    ((2, 3, 7, 7), (3, 3), 1, 1, 1),
    ((2, 3, 8, 8), (3, 3), 2, 1, 1),  # stride 2 (ResNet downsampling)
    ((1, 16, 32, 32), (3, 3), 1, 1, 1),  # batch 1, a ResNet-20 shape
    ((3, 4, 9, 9), (1, 1), 2, 0, 1),  # option-B 1x1 projection
    ((1, 4, 5, 6), (2, 3), (2, 1), (1, 0), (1, 2)),  # non-square, dilation
    ((2, 2, 7, 8), (3, 3), 3, 2, 1),  # stride > 1, padding 2
    ((1, 1, 4, 4), (4, 4), 1, 0, 1),  # one window
]
CONV_IDS = [f"{s}-k{k}-s{st}-p{p}-d{d}" for s, k, st, p, d in CONV_CASES]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, kernel, stride, padding, dilation", CONV_CASES, ids=CONV_IDS)
def test_im2col_and_col2im_match_cpu(cp, shape, kernel, stride, padding, dilation, dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(dtype)
    cols_cpu = conv.im2col(x, *kernel, stride, padding, dilation)
    assert_close(conv.im2col(_gpu(cp, x), *kernel, stride, padding, dilation), cols_cpu,
                 what="im2col")
    g = rng.standard_normal(cols_cpu.shape).astype(dtype)
    assert_close(conv.col2im(_gpu(cp, g), shape, *kernel, stride, padding, dilation),
                 conv.col2im(g, shape, *kernel, stride, padding, dilation), what="col2im")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, kernel, stride, padding, dilation", CONV_CASES, ids=CONV_IDS)
def test_conv2d_forward_and_backward_match_cpu(cp, shape, kernel, stride, padding, dilation,
                                               dtype):
    """The whole convolution: CUDA im2col/col2im plus cuBLAS matrix products."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((5, shape[1], *kernel)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    y = conv.conv2d_forward(x, w, b, stride, padding, dilation)
    assert_close(conv.conv2d_forward(_gpu(cp, x), _gpu(cp, w), _gpu(cp, b), stride, padding,
                                     dilation), y, what="y")
    g = rng.standard_normal(y.shape).astype(dtype)
    grads = conv.conv2d_backward(g, x, w, stride, padding, dilation)
    gpu_grads = conv.conv2d_backward(_gpu(cp, g), _gpu(cp, x), _gpu(cp, w), stride, padding,
                                     dilation)
    for name, got, want in zip(("grad_x", "grad_w", "grad_b"), gpu_grads, grads, strict=True):
        assert_close(got, want, what=name)


def test_col2im_is_deterministic(cp):
    rng = np.random.default_rng(3)
    cols = _gpu(cp, rng.standard_normal((2 * 16 * 16, 9 * 8)).astype(np.float32))
    first = conv.col2im(cols, (2, 8, 32, 32), 3, 3, 2, 1).get()
    for _ in range(3):
        np.testing.assert_array_equal(conv.col2im(cols, (2, 8, 32, 32), 3, 3, 2, 1).get(),
                                      first)


# ---------------------------------------------------------------------------- pooling

# (x shape, kernel_size, stride, padding), as in test_kernels_pool.py
POOL_CASES = [
    ((2, 3, 4, 4), 2, None, 0),
    ((1, 2, 5, 7), 2, 2, 0),
    ((2, 2, 6, 6), 3, None, 0),
    ((2, 2, 5, 5), 1, 1, 0),
    ((1, 2, 5, 6), 2, 1, 0),
    ((2, 1, 5, 5), 2, 2, 1),
    ((1, 2, 7, 6), 3, 1, 1),
    ((2, 2, 7, 7), 3, 2, 1),
    ((1, 2, 6, 7), 3, 2, 0),
    ((2, 1, 5, 8), (2, 3), (1, 2), (1, 1)),
    ((1, 1, 4, 9), (1, 3), (1, 3), (0, 1)),
    ((4, 16, 32, 32), 3, 2, 1),
]
POOL_IDS = [f"{s}-k{k}-s{st}-p{p}" for s, k, st, p in POOL_CASES]


def _check_max_pool(cp, x, kernel_size, stride, padding, rng):
    y, argmax = pool.max_pool2d_forward(x, kernel_size, stride, padding)
    y_gpu, argmax_gpu = pool.max_pool2d_forward(_gpu(cp, x), kernel_size, stride, padding)
    assert_close(y_gpu, y, tol=0, what="y")  # a max is exact
    assert argmax_gpu.dtype == np.int32
    np.testing.assert_array_equal(argmax_gpu.get(), argmax)
    g = rng.standard_normal(y.shape).astype(x.dtype)
    want = pool.max_pool2d_backward(g, argmax, x.shape, kernel_size, stride, padding)
    got = pool.max_pool2d_backward(_gpu(cp, g), argmax_gpu, x.shape, kernel_size, stride,
                                   padding)
    assert_close(got, want, what="grad_x")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, kernel_size, stride, padding", POOL_CASES, ids=POOL_IDS)
def test_max_pool_matches_cpu(cp, shape, kernel_size, stride, padding, dtype):
    rng = np.random.default_rng(4)
    _check_max_pool(cp, rng.standard_normal(shape).astype(dtype), kernel_size, stride, padding,
                    rng)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, kernel_size, stride, padding", POOL_CASES, ids=POOL_IDS)
def test_max_pool_ties_nan_and_inf_match_cpu(cp, shape, kernel_size, stride, padding, dtype):
    """Many ties (values from {0, 1, 2}: the first maximum must win), NaNs (they win) and
    -inf entries (which tie with the -inf padding)."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 3, size=shape).astype(dtype)
    _check_max_pool(cp, x, kernel_size, stride, padding, rng)
    x[rng.random(shape) < 0.1] = np.nan
    x[rng.random(shape) < 0.2] = -np.inf
    _check_max_pool(cp, x, kernel_size, stride, padding, rng)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, kernel_size, stride, padding", POOL_CASES, ids=POOL_IDS)
def test_avg_pool_matches_cpu(cp, shape, kernel_size, stride, padding, dtype,
                              count_include_pad):
    rng = np.random.default_rng(6)
    x = rng.standard_normal(shape).astype(dtype)
    args = (kernel_size, stride, padding, count_include_pad)
    y = pool.avg_pool2d_forward(x, *args)
    assert_close(pool.avg_pool2d_forward(_gpu(cp, x), *args), y, what="y")
    g = rng.standard_normal(y.shape).astype(dtype)
    assert_close(pool.avg_pool2d_backward(_gpu(cp, g), x.shape, *args),
                 pool.avg_pool2d_backward(g, x.shape, *args), what="grad_x")


def test_pool_backward_is_deterministic(cp):
    rng = np.random.default_rng(7)
    x = _gpu(cp, rng.standard_normal((4, 8, 16, 16)).astype(np.float32))
    y, argmax = pool.max_pool2d_forward(x, 3, 1, 1)
    first = pool.max_pool2d_backward(y, argmax, x.shape, 3, 1, 1).get()
    for _ in range(3):
        np.testing.assert_array_equal(
            pool.max_pool2d_backward(y, argmax, x.shape, 3, 1, 1).get(), first)


# ---------------------------------------------------------------------------- batch norm

BN_SHAPES = [(4, 3, 5, 5), (2, 16, 8, 8), (1, 4, 3, 3), (8, 5), (2, 3, 1, 1),
             (16, 16, 32, 32)]


def _bn_inputs(rng, shape, dtype, affine=True):
    channels = shape[1]
    x = rng.normal(3.0, 2.0, size=shape).astype(dtype)  # |mean| > std: tests the shift
    gamma = rng.uniform(0.5, 1.5, channels).astype(dtype) if affine else None
    beta = rng.standard_normal(channels).astype(dtype) if affine else None
    running_mean = rng.standard_normal(channels).astype(dtype)
    running_var = rng.uniform(0.5, 2.0, channels).astype(dtype)
    return x, gamma, beta, running_mean, running_var


def _to(cp, value):
    return None if value is None else _gpu(cp, value)


def _check_batch_norm(cp, rng, x, gamma, beta, running_mean, running_var, training):
    cpu_running = [None if v is None else v.copy() for v in (running_mean, running_var)]
    gpu_running = [_to(cp, v) for v in (running_mean, running_var)]
    y, cache = norm.batch_norm_forward(x, gamma, beta, *cpu_running, training)
    y_gpu, cache_gpu = norm.batch_norm_forward(_gpu(cp, x), _to(cp, gamma), _to(cp, beta),
                                               *gpu_running, training)
    dtype = x.dtype
    assert_close(y_gpu, y, dtype, what="y")
    assert_close(cache_gpu.x_hat, cache.x_hat, dtype, what="x_hat")
    assert_close(cache_gpu.inv_std, cache.inv_std, dtype, what="inv_std")
    assert (cache_gpu.has_beta, cache_gpu.training) == (cache.has_beta, cache.training)
    assert (cache_gpu.gamma is None) == (cache.gamma is None)
    for name, got, want in zip(("running_mean", "running_var"), gpu_running, cpu_running,
                               strict=True):
        if want is not None:
            assert_close(got, want, dtype, what=name)

    g = rng.standard_normal(x.shape).astype(dtype)
    grads = norm.batch_norm_backward(g, cache)
    gpu_grads = norm.batch_norm_backward(_gpu(cp, g), cache_gpu)
    for name, got, want in zip(("grad_x", "grad_gamma", "grad_beta"), gpu_grads, grads,
                               strict=True):
        assert (got is None) == (want is None), name
        if want is not None:
            assert_close(got, want, dtype, what=name)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
def test_batch_norm_matches_cpu(cp, shape, dtype, training):
    rng = np.random.default_rng(8)
    _check_batch_norm(cp, rng, *_bn_inputs(rng, shape, dtype), training)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_variants_match_cpu(cp, dtype):
    """affine=False, no running statistics, running statistics in another dtype or not
    contiguous (updated by array code instead of the kernel), parameters in float64."""
    rng = np.random.default_rng(9)
    x, gamma, beta, rm, rv = _bn_inputs(rng, (4, 6, 3, 3), dtype, affine=False)
    _check_batch_norm(cp, rng, x, None, None, rm, rv, True)
    _check_batch_norm(cp, rng, x, None, None, None, None, True)
    x, gamma, beta, rm, rv = _bn_inputs(rng, (4, 6, 3, 3), dtype)
    _check_batch_norm(cp, rng, x, gamma, beta, rm.astype(np.float64), rv.astype(np.float64),
                      True)
    _check_batch_norm(cp, rng, x, gamma.astype(np.float64), beta, rm, None, True)
    wide_var = np.repeat(rv, 2)  # running_var = wide_var[::2], a strided view
    cpu_var, gpu_var = wide_var.copy(), _gpu(cp, wide_var)
    norm.batch_norm_forward(x, gamma, beta, rm.copy(), cpu_var[::2], True)
    norm.batch_norm_forward(_gpu(cp, x), _gpu(cp, gamma), _gpu(cp, beta), _gpu(cp, rm),
                            gpu_var[::2], True)
    assert_close(gpu_var, cpu_var, what="strided running_var")


def _bn_with_non_finite(dtype):
    """(4, 3, 2, 2) input whose channel 0 holds a NaN, channel 1 a +inf at the channel's
    first position (the shift of the GPU's sums), channel 2 only finite values."""
    x = np.random.default_rng(14).normal(1.0, 2.0, size=(4, 3, 2, 2)).astype(dtype)
    x[1, 0, 1, 0] = np.nan
    x[0, 1, 0, 0] = np.inf
    return x


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_cpu_gives_nan_for_nan_and_inf_like_torch(torch, dtype):
    """The CPU kernel (the GPU twin's reference) on NaN and inf input, against PyTorch: NaN
    output, x_hat and running variance for the channels holding them; running mean NaN for
    the NaN channel and inf for the inf one; the finite channel unaffected."""
    x = _bn_with_non_finite(dtype)
    running_mean, running_var = np.zeros(3, dtype), np.ones(3, dtype)
    with np.errstate(invalid="ignore"):  # inf - inf: the NaN this test is about
        y, _ = norm.batch_norm_forward(x, None, None, running_mean, running_var, True)
    t_mean, t_var = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    want = torch.nn.functional.batch_norm(torch.tensor(x.astype(np.float64)), t_mean, t_var,
                                          training=True, momentum=0.1, eps=1e-5).numpy()
    assert np.isnan(y[:, :2]).all() and np.isfinite(y[:, 2]).all()
    np.testing.assert_allclose(y, want, rtol=TOL[np.dtype(dtype)] * 10, atol=1e-5,
                               equal_nan=True)
    np.testing.assert_allclose(running_mean, t_mean.numpy(), rtol=1e-5, equal_nan=True)
    np.testing.assert_allclose(running_var, t_var.numpy(), rtol=1e-5, equal_nan=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_nan_and_inf_match_cpu(cp, dtype):
    """NaN and inf input: the GPU twin gives NaN where the CPU does (it used to clamp a NaN
    variance to 0, giving inv_std = 1/sqrt(eps) and -inf or finite outputs), in the
    output, x_hat, inv_std, the running statistics and every gradient."""
    rng = np.random.default_rng(15)
    x = _bn_with_non_finite(dtype)
    _, gamma, beta, running_mean, running_var = _bn_inputs(rng, x.shape, dtype)
    with np.errstate(invalid="ignore"):  # the CPU's inf - inf
        _check_batch_norm(cp, rng, x, gamma, beta, running_mean, running_var, True)
    y, cache = norm.batch_norm_forward(_gpu(cp, x), None, None, None, None, True)
    assert np.isnan(y.get()[:, :2]).all() and np.isnan(cache.inv_std.get()[:2]).all()


def test_batch_norm_errors_match_cpu(cp):
    x = _gpu(cp, np.ones((1, 3), np.float32))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        norm.batch_norm_forward(x, None, None, None, None, True)
    with pytest.raises(ValueError, match="eval mode"):
        norm.batch_norm_forward(x, None, None, None, None, False)
    with pytest.raises(ValueError, match="expected"):
        norm.batch_norm_forward(x, _gpu(cp, np.ones(2, np.float32)), None, None, None, False)


def test_batch_norm_is_deterministic(cp):
    rng = np.random.default_rng(10)
    x = _gpu(cp, rng.standard_normal((32, 16, 32, 32)).astype(np.float32))
    g = _gpu(cp, rng.standard_normal(x.shape).astype(np.float32))
    outputs = []
    for _ in range(3):
        y, cache = norm.batch_norm_forward(x, None, None, None, None, True)
        grad_x, _, _ = norm.batch_norm_backward(g, cache)
        outputs.append((y.get(), cache.inv_std.get(), grad_x.get()))
    for later in outputs[1:]:
        for a, b in zip(outputs[0], later, strict=True):
            np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------- activations


@pytest.mark.parametrize("dtype", DTYPES)
def test_activations_match_cpu(cp, dtype):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 4, 5, 6)).astype(dtype) * 4
    x.flat[:6] = [0.0, -0.0, 100.0, -100.0, 1000.0, -1000.0]  # kinks and saturation
    g = rng.standard_normal(x.shape).astype(dtype)
    xg, gg = _gpu(cp, x), _gpu(cp, g)
    assert_close(activation.relu_forward(xg), activation.relu_forward(x), what="relu")
    assert_close(activation.relu_backward(gg, xg), activation.relu_backward(g, x),
                 what="relu backward")
    y = activation.sigmoid_forward(x)
    assert_close(activation.sigmoid_forward(xg), y, what="sigmoid")
    assert_close(activation.sigmoid_backward(gg, _gpu(cp, y)), activation.sigmoid_backward(g, y),
                 what="sigmoid backward")
    t = np.tanh(x)
    assert_close(activation.tanh_backward(gg, _gpu(cp, t)), activation.tanh_backward(g, t),
                 what="tanh backward")
    # NaN propagates through ReLU, as NumPy's maximum; non-contiguous inputs work.
    x[0, 0, 0, :2] = np.nan
    assert_close(activation.relu_forward(_gpu(cp, x)[:, ::2]), activation.relu_forward(x[:, ::2]),
                 what="relu, NaN and strided")


# ---------------------------------------------------------------------------- ResNet-20 step


def _train_step(model, optimizer, x, y):
    loss = F.cross_entropy(model(Tensor(x)), y)
    optimizer.zero_grad()
    loss.backward()
    grads = {name: backend.to_numpy(p.grad.data).copy() for name, p in model.named_parameters()}
    optimizer.step()
    return loss, grads


def _relative_error(got, want):
    return float(np.linalg.norm((got - want).ravel()) / max(np.linalg.norm(want.ravel()), 1e-30))


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-9), (np.float32, 1e-4)],
                         ids=["float64", "float32"])
def test_resnet20_train_step_on_gpu_matches_cpu(cp, dtype, tol):
    """Forward, loss, backward and an SGD step (momentum, weight decay) of a ResNet-20 on
    both devices from the same weights; every gradient, weight and running statistic
    agrees (relative error of each whole tensor)."""
    with backend.default_dtype(dtype):
        minires.manual_seed(0)
        cpu_model = resnet20()
    gpu_model = copy.deepcopy(cpu_model).to("cuda")
    rng = np.random.default_rng(12)
    x = rng.standard_normal((4, 3, 32, 32)).astype(dtype)
    y = rng.integers(0, 10, size=4)
    results = []
    for model, move in ((cpu_model, lambda a: a), (gpu_model, cp.asarray)):
        optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        for _ in range(2):  # the second step also uses the momentum buffers
            loss, grads = _train_step(model, optimizer, move(x), move(y))
        results.append((loss.item(), grads, model.state_dict()))
    (cpu_loss, cpu_grads, cpu_state), (gpu_loss, gpu_grads, gpu_state) = results
    assert math.isclose(gpu_loss, cpu_loss, rel_tol=tol)
    for name in cpu_grads:
        assert _relative_error(gpu_grads[name], cpu_grads[name]) < tol, f"grad of {name}"
    for name in cpu_state:
        assert _relative_error(gpu_state[name], cpu_state[name]) < tol, name


# ---------------------------------------------------------------------------- no host copies


@contextlib.contextmanager
def record_host_transfers(cp):
    """Record every copy between host and device while the block runs (stack included).

    Device -> host: every such copy CuPy makes goes through ``ndarray.get`` (also
    ``.item()``, ``int()``, ``float()``, ``bool()``, ``.tolist()``, ``cupy.asnumpy``), which
    first calls ``cupy._core.syncdetect._declare_synchronize()``: the hook of CuPy's
    (deprecated) ``cupyx.allow_synchronize``, looked up at run time.  Replacing it with a
    recorder sees every such copy (and explicit stream/device synchronisations) without
    changing what the code does, unlike ``allow_synchronize(False)``, which would stop at
    the first one.  CuPy's ndarray is a compiled type, so its methods cannot be patched.
    Host -> device: minires moves data with ``backend.to_device``, and host data enters
    CuPy through ``cupy.asarray``/``cupy.array``; calls of those with anything but a CuPy
    array are recorded.  (A NumPy array handed to a CuPy function is refused by CuPy itself.)
    """
    try:
        from cupy._core import syncdetect
    except ImportError:  # the emulation (tests/cudaemu) has the same hook, not importable
        syncdetect = getattr(getattr(cp, "_core", None), "syncdetect", None)
    if syncdetect is None:  # pragma: no cover - depends on the CuPy version
        pytest.skip("this CuPy has no cupy._core.syncdetect hook: device->host copies "
                    "cannot be counted")
    records = []

    def record(kind):
        frames = [f for f in traceback.extract_stack()[:-2]
                  if "minires" in f.filename or "tests" in f.filename]
        records.append((kind, "".join(traceback.format_list(frames[-6:]))))

    original_declare = syncdetect._declare_synchronize
    original_to_device = backend.to_device

    def declare():
        record("device->host copy or synchronisation")
        original_declare()

    def uploader(name):
        original = getattr(cp, name)

        def upload(a, *args, **kwargs):
            if not isinstance(a, cp.ndarray):
                record(f"host->device: cupy.{name}({type(a).__name__})")
            return original(a, *args, **kwargs)

        return upload

    def to_device(array, device):
        if backend.device_of(array) != backend.check_device(device):
            record(f"backend.to_device({type(array).__name__}, {device!r})")
        return original_to_device(array, device)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(syncdetect, "_declare_synchronize", declare)
        for name in ("asarray", "array"):
            patch.setattr(cp, name, uploader(name))
        patch.setattr(backend, "to_device", to_device)
        yield records


def _describe(records) -> str:
    return "\n".join(f"--- {kind}\n{where}" for kind, where in records)


def test_resnet20_train_step_copies_only_the_loss_scalar(cp):
    """A full training step on the GPU (forward, cross-entropy, backward, SGD with momentum
    and weight decay) moves nothing between host and device; reading the loss with
    ``.item()`` afterwards is the one device->host copy."""
    minires.manual_seed(0)
    model = resnet20().to("cuda")
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    rng = np.random.default_rng(13)
    x = cp.asarray(rng.standard_normal((8, 3, 32, 32)).astype(np.float32))
    y = cp.asarray(rng.integers(0, 10, size=8))
    _train_step(model, optimizer, x, y)  # warm-up: compiles kernels, creates cuBLAS handles

    with record_host_transfers(cp) as records:  # the recorder records ...
        cp.arange(3).sum().item()
        # (not minires.tensor(1.0, device="cuda"): that fills on the device, copying nothing)
        backend.to_device(np.ones(3), "cuda")
    assert len(records) >= 2, "the transfer recorder saw nothing: it is not hooked in"

    def step():
        loss = F.cross_entropy(model(Tensor(x)), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    with record_host_transfers(cp) as records:
        loss = step()
    assert not records, ("host<->device copies during a GPU training step:\n"
                         + _describe(records))
    with record_host_transfers(cp) as records:
        value = loss.item()
    assert len(records) == 1 and math.isfinite(value), _describe(records)
