"""CUDA twins of minires's CPU kernels, for CuPy arrays.

Each ``.cu`` file here is the GPU version of one CPU kernel file; read them side by side::

    CPU (NumPy, whole-array operations)      GPU (one CUDA thread per output element)
    minires/kernels/conv.py   im2col/col2im  im2col.cu       im2col_kernel, col2im_kernel
    minires/kernels/pool.py   max/avg pool   pool.cu         max_pool2d_*_kernel, avg_pool2d_*
    minires/kernels/norm.py   batch norm     batchnorm.cu    batch_norm_*_kernel
    minires/kernels/activation.py  relu ...  elementwise.cu  relu_*, sigmoid_*, tanh_backward

:mod:`minires.kernels.cuda.gpu` compiles them (with CuPy's ``RawModule``, i.e. NVRTC, the
first time a kernel is needed, then cached) and wraps them in Python functions with exactly
the signatures and return values of the CPU ones.  The convolution's matrix products stay
``xp.matmul`` (cuBLAS on the GPU); only the im2col/col2im copies are hand-written.

How a call reaches the GPU: every public CPU kernel begins with::

    if cuda.handles(x):            # a CuPy float32/float64 array
        return cuda.relu_forward(x)

so NumPy arrays (and other dtypes, e.g. float16 on the GPU, which keep CuPy's generic
array code) never get here.  Importing this package imports neither CuPy nor the wrappers:
``cuda.relu_forward`` loads :mod:`~minires.kernels.cuda.gpu` on first use.
"""

from __future__ import annotations

from pathlib import Path

from minires.backend import CUDA, device_of

#: Where the ``.cu`` sources live (shipped as package data, see setup.cfg).
SOURCE_DIR = Path(__file__).resolve().parent

#: Every kernel template of every source file.  gpu.py instantiates each one for float and
#: double (``"im2col_kernel<float>"``); the tests compile exactly these with nvcc.
KERNELS = {
    "im2col.cu": ("im2col_kernel", "col2im_kernel"),
    "pool.cu": ("max_pool2d_forward_kernel", "max_pool2d_backward_kernel",
                "avg_pool2d_forward_kernel", "avg_pool2d_backward_kernel"),
    "batchnorm.cu": ("batch_norm_partial_stats_kernel", "batch_norm_stats_kernel",
                     "batch_norm_forward_kernel", "batch_norm_backward_partial_kernel",
                     "batch_norm_backward_sums_kernel", "batch_norm_backward_input_kernel"),
    "elementwise.cu": ("relu_forward_kernel", "relu_backward_kernel", "sigmoid_forward_kernel",
                       "sigmoid_backward_kernel", "tanh_backward_kernel"),
}

#: NumPy dtype name -> the C type a kernel template is instantiated with.
C_TYPES = {"float32": "float", "float64": "double"}

#: The Python functions gpu.py provides, each with its CPU twin's signature.
FUNCTIONS = (
    "im2col", "col2im",
    "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
    "batch_norm_forward", "batch_norm_backward",
    "relu_forward", "relu_backward", "sigmoid_forward", "sigmoid_backward", "tanh_backward",
)

__all__ = ["C_TYPES", "FUNCTIONS", "KERNELS", "SOURCE_DIR", "handles", "source", *FUNCTIONS]


def source(filename: str) -> str:
    """The CUDA C++ text of one of the :data:`KERNELS` files."""
    if filename not in KERNELS:
        raise ValueError(f"unknown CUDA source {filename!r}; expected one of {sorted(KERNELS)}")
    return (SOURCE_DIR / filename).read_text(encoding="utf-8")


def handles(*arrays) -> bool:
    """True when the CUDA kernels take this call: the first array is a CuPy array of float32
    or float64, and every other array given (``None`` is skipped) has that dtype too.

    Anything else (NumPy arrays, other dtypes) stays on the array code of the CPU file, which
    is also what raises the usual errors for bad inputs.
    """
    first = arrays[0]
    if device_of(first) != CUDA or first.dtype.name not in C_TYPES:
        return False
    return all(a is None or getattr(a, "dtype", None) == first.dtype for a in arrays[1:])


def __getattr__(name: str):
    """``cuda.im2col`` etc.: import the wrappers (gpu.py) the first time one is asked for."""
    if name in FUNCTIONS:
        from minires.kernels.cuda import gpu

        for function in FUNCTIONS:  # later look-ups find them directly
            globals()[function] = getattr(gpu, function)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
