"""Python wrappers of the CUDA kernels: same signatures and results as the CPU kernels.

Each function here checks its arguments with the CPU file's own helpers (so both devices
raise the same errors), allocates its outputs on the GPU and launches one kernel from a
``.cu`` file of this folder.  Nothing leaves the GPU: no NumPy array is created, and kernel
arguments that are numbers are passed as NumPy *scalars* (``np.int32(C)``), which CuPy
hands to the kernel by value, like C arguments.

Compilation: ``_module("pool.cu")`` compiles a whole source file with CuPy's
``RawModule`` (NVRTC) the first time one of its kernels is needed, instantiating every
template of :data:`~minires.kernels.cuda.KERNELS` for float and double; CuPy keeps the
binary in its kernel cache (``~/.cupy/kernel_cache``), so later runs skip the compiler.

Launch shapes: elementwise-style kernels run one thread per output element in blocks of
:data:`THREADS`; BatchNorm's per-channel sums run a grid of (channels, parts) blocks of
:data:`REDUCE_THREADS` (see batchnorm.cu).  Indices inside the kernels are 32-bit ints, so
arrays of more than 2**30 elements (4 GiB of float32) are refused with a ValueError: that
leaves every index computed inside a kernel well below 2**31.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from minires import backend
from minires.backend import get_array_module
from minires.kernels import activation as _act
from minires.kernels import conv as _conv
from minires.kernels import pool as _pool
from minires.kernels.cuda import C_TYPES, KERNELS, source
from minires.kernels.geometry import output_hw, pair
from minires.kernels.norm import BatchNormCache, check_channel_vector, reduce_axes

#: Threads per block for the one-thread-per-element kernels.
THREADS = 256
#: Threads per block for the per-channel partial sums (a power of two, see batchnorm.cu).
REDUCE_THREADS = 256
#: Values of one channel that one block of the partial sums adds (16 per thread).
REDUCE_CHUNK = 16 * REDUCE_THREADS
#: Extra NVRTC options: none.  The sources are plain C++14 templates without #include (the
#: nvcc test compiles them with -std=c++14); NVRTC's default dialect (C++17) takes them.
OPTIONS: tuple = ()

#: The largest array the kernels take (their int indices then never overflow).
MAX_ELEMENTS = 2**30
#: gridDim.y may not exceed this (CUDA's limit).
_MAX_GRID_Y = 65535
_FILE_OF = {kernel: filename for filename, kernels in KERNELS.items() for kernel in kernels}


# ---------------------------------------------------------------------------- loading


@functools.cache
def _module(filename: str):
    """The compiled RawModule of one .cu file, with every template instantiated."""
    cupy = backend._import_cupy()
    names = tuple(f"{kernel}<{c_type}>" for kernel in KERNELS[filename]
                  for c_type in C_TYPES.values())
    return cupy.RawModule(code=source(filename), options=OPTIONS, name_expressions=names)


@functools.cache
def _kernel(name: str, dtype_name: str):
    """The kernel ``name<float>`` or ``name<double>`` for a NumPy dtype name."""
    return _module(_FILE_OF[name]).get_function(f"{name}<{C_TYPES[dtype_name]}>")


def _ints(*values) -> tuple:
    """Python ints (or bools) as C ints for kernel arguments."""
    return tuple(np.int32(v) for v in values)


def _check_sizes(*arrays) -> None:
    """The kernels index with 32-bit ints: refuse arrays they cannot address."""
    for array in arrays:
        if array.size > MAX_ELEMENTS:
            raise ValueError(f"the CUDA kernels take arrays of at most 2**30 elements, got one "
                             f"of shape {tuple(array.shape)} ({array.size} elements); split "
                             "the batch")


def _launch(name: str, dtype, total: int, *args) -> None:
    """Run ``name<T>`` with one thread per element: ``total`` threads in blocks of THREADS."""
    if total > 0:
        blocks = (total + THREADS - 1) // THREADS
        _kernel(name, dtype.name)((blocks,), (THREADS,), args)


def _channel_sums(name: str, xp, dtype, n: int, channels: int, hw: int, *arrays):
    """Step 1 of a per-channel reduction (batchnorm.cu): a grid of (channels, parts) blocks,
    each adding one chunk of a channel's m = n*hw values; returns the (channels, parts, 2)
    float64 partial sums and the number of parts."""
    m = n * hw
    parts = min(_MAX_GRID_Y, max(1, -(-m // REDUCE_CHUNK)))
    chunk = -(-m // parts)
    partial = xp.empty((channels, parts, 2), dtype=xp.float64)
    if channels > 0:
        _kernel(name, dtype.name)((channels, parts), (REDUCE_THREADS,),
                                  (*arrays, *_ints(n, channels, hw, chunk), partial),
                                  shared_mem=REDUCE_THREADS * 8)
    return partial, parts


# ---------------------------------------------------------------------------- im2col


def im2col(x, kernel_h: int, kernel_w: int, stride=1, padding=0, dilation=1):
    """GPU twin of :func:`minires.kernels.conv.im2col` (im2col.cu, ``im2col_kernel``).

    Returns ``cols`` of shape ``(N*OH*OW, KH*KW*C)`` with
    ``cols[(n*OH + oh)*OW + ow, (i*KW + j)*C + c] = x_pad[n, c, oh*sh + i*dh, ow*sw + j*dw]``;
    one thread per entry of ``cols``.
    """
    _conv.check_4d(x, "input", "(N, C, H, W)")
    stride, padding = pair(stride, "stride", 1, "conv2d"), pair(padding, "padding", 0, "conv2d")
    dilation = pair(dilation, "dilation", 1, "conv2d")
    n, c, h, w = x.shape
    out_h, out_w = output_hw(h, w, (kernel_h, kernel_w), stride, padding, dilation)
    xp = get_array_module(x)
    x = xp.ascontiguousarray(x)
    cols = xp.empty((n * out_h * out_w, kernel_h * kernel_w * c), dtype=x.dtype)
    _check_sizes(x, cols)
    _launch("im2col_kernel", x.dtype, cols.size, x,
            *_ints(c, h, w, kernel_h, kernel_w, *stride, *padding, *dilation, out_h, out_w,
                   cols.size), cols)
    return cols


def col2im(cols, x_shape, kernel_h: int, kernel_w: int, stride=1, padding=0, dilation=1):
    """GPU twin of :func:`minires.kernels.conv.col2im` (im2col.cu, ``col2im_kernel``).

    Returns an array of shape ``x_shape`` whose entry (n, c, h, w) is the sum of every
    ``cols`` entry that im2col copied from it: one thread per pixel GATHERS those entries
    (no atomics, deterministic), where the CPU scatter-adds one kernel tap at a time.
    """
    xp = get_array_module(cols)
    if len(x_shape) != 4:
        raise ValueError(f"col2im: x_shape must be (N, C, H, W), got {tuple(x_shape)}")
    n, c, h, w = (int(v) for v in x_shape)
    stride, padding = pair(stride, "stride", 1, "conv2d"), pair(padding, "padding", 0, "conv2d")
    dilation = pair(dilation, "dilation", 1, "conv2d")
    out_h, out_w = output_hw(h, w, (kernel_h, kernel_w), stride, padding, dilation)
    expected = (n * out_h * out_w, kernel_h * kernel_w * c)
    if tuple(cols.shape) != expected:
        raise ValueError(f"col2im: cols must have shape {expected} for x_shape {tuple(x_shape)}, "
                         f"got {tuple(cols.shape)}")
    cols = xp.ascontiguousarray(cols)
    x = xp.empty((n, c, h, w), dtype=cols.dtype)
    _check_sizes(cols, x)
    _launch("col2im_kernel", cols.dtype, x.size, cols,
            *_ints(c, h, w, kernel_h, kernel_w, *stride, *padding, *dilation, out_h, out_w,
                   x.size), x)
    return x


# ---------------------------------------------------------------------------- pooling


def _pool_geometry_args(geo) -> tuple:
    """H, W, KH, KW, sh, sw, ph, pw, OH, OW as C ints, in the pool.cu kernels' order."""
    _, _, h, w = geo.x_shape
    return _ints(h, w, geo.kh, geo.kw, geo.sh, geo.sw, geo.ph, geo.pw, geo.oh, geo.ow)


def max_pool2d_forward(x, kernel_size, stride=None, padding=0):
    """GPU twin of :func:`minires.kernels.pool.max_pool2d_forward` (pool.cu,
    ``max_pool2d_forward_kernel``, one thread per window).

    Returns ``(y, argmax)``, both ``(N, C, OH, OW)``: ``y`` the window maxima and ``argmax``
    (int32) the window-local offset ``k = i*KW + j`` of each; the first maximum wins, a NaN
    always wins, padding is -inf.
    """
    _pool.check_float(x, "x")
    xp = get_array_module(x)
    geo = _pool.PoolGeometry(x.shape, kernel_size, stride, padding)
    x = xp.ascontiguousarray(x)
    y = xp.empty(geo.out_shape, dtype=x.dtype)
    argmax = xp.empty(geo.out_shape, dtype=xp.int32)
    _check_sizes(x, y)
    _launch("max_pool2d_forward_kernel", x.dtype, y.size, x, *_pool_geometry_args(geo),
            np.int32(y.size), x.dtype.type(-np.inf), y, argmax)
    return y, argmax


def max_pool2d_backward(grad_y, argmax, x_shape, kernel_size, stride=None, padding=0):
    """GPU twin of :func:`minires.kernels.pool.max_pool2d_backward` (pool.cu,
    ``max_pool2d_backward_kernel``, one thread per input pixel).

    ``grad_x[pixel] = sum of grad_y[window] * [argmax[window] == the pixel's offset]`` over
    the windows containing the pixel; shape ``x_shape``, ``grad_y``'s dtype.
    """
    _pool.check_float(grad_y, "grad_y")
    xp = get_array_module(grad_y, argmax)
    geo = _pool.PoolGeometry(x_shape, kernel_size, stride, padding)
    _pool.check_shape(grad_y, geo.out_shape, "grad_y")
    _pool.check_shape(argmax, geo.out_shape, "argmax")
    grad_y = xp.ascontiguousarray(grad_y)
    argmax = xp.ascontiguousarray(argmax, dtype=xp.int32)
    grad_x = xp.empty(geo.x_shape, dtype=grad_y.dtype)
    _check_sizes(grad_y, grad_x)
    _launch("max_pool2d_backward_kernel", grad_y.dtype, grad_x.size, grad_y, argmax,
            *_pool_geometry_args(geo), np.int32(grad_x.size), grad_x)
    return grad_x


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    """GPU twin of :func:`minires.kernels.pool.avg_pool2d_forward` (pool.cu,
    ``avg_pool2d_forward_kernel``, one thread per window).

    ``y[n, c, p, q] = sum of the window of x_padded (zeros) / divisor``, divisor ``KH*KW``
    or, without ``count_include_pad``, the window's number of real pixels.
    """
    _pool.check_float(x, "x")
    xp = get_array_module(x)
    geo = _pool.PoolGeometry(x.shape, kernel_size, stride, padding)
    x = xp.ascontiguousarray(x)
    y = xp.empty(geo.out_shape, dtype=x.dtype)
    _check_sizes(x, y)
    _launch("avg_pool2d_forward_kernel", x.dtype, y.size, x, *_pool_geometry_args(geo),
            *_ints(bool(count_include_pad), y.size), y)
    return y


def avg_pool2d_backward(grad_y, x_shape, kernel_size, stride=None, padding=0,
                        count_include_pad=True):
    """GPU twin of :func:`minires.kernels.pool.avg_pool2d_backward` (pool.cu,
    ``avg_pool2d_backward_kernel``, one thread per input pixel).

    ``grad_x[pixel] = sum over the windows containing it of grad_y[window] / divisor``.
    """
    _pool.check_float(grad_y, "grad_y")
    xp = get_array_module(grad_y)
    geo = _pool.PoolGeometry(x_shape, kernel_size, stride, padding)
    _pool.check_shape(grad_y, geo.out_shape, "grad_y")
    grad_y = xp.ascontiguousarray(grad_y)
    grad_x = xp.empty(geo.x_shape, dtype=grad_y.dtype)
    _check_sizes(grad_y, grad_x)
    _launch("avg_pool2d_backward_kernel", grad_y.dtype, grad_x.size, grad_y,
            *_pool_geometry_args(geo), *_ints(bool(count_include_pad), grad_x.size), grad_x)
    return grad_x


# ---------------------------------------------------------------------------- batch norm


def _updatable_in_kernel(running, dtype) -> bool:
    """Whether batch_norm_stats_kernel can update ``running`` in place: present, of x's
    dtype and C-contiguous (otherwise the wrapper updates it with array arithmetic)."""
    return running is not None and running.dtype == dtype and running.flags.c_contiguous


def batch_norm_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1,
                       eps=1e-5):
    """GPU twin of :func:`minires.kernels.norm.batch_norm_forward` (batchnorm.cu).

    ``y = gamma * (x - mean) / sqrt(var + eps) + beta`` per channel, for x of shape
    ``(N, C, H, W)`` or ``(N, C)``.  Training mode: the batch's mean and biased variance,
    from per-channel sum / sum of squares (``batch_norm_partial_stats_kernel`` over
    (C, parts) blocks, then ``batch_norm_stats_kernel``, which also updates the running
    statistics in place); eval mode: the running statistics.  Then
    ``batch_norm_forward_kernel`` writes ``x_hat`` and ``y`` in one pass.

    Returns ``(y, BatchNormCache(x_hat, inv_std, gamma, has_beta, training))``, exactly as
    the CPU version.
    """
    xp = get_array_module(x, gamma, beta, running_mean, running_var)
    if x.dtype.kind != "f":
        raise TypeError(f"batch norm needs a floating-point x, got {x.dtype}")
    reduce_axes(x)  # checks the number of dimensions
    n, channels = x.shape[0], x.shape[1]
    for v, name in ((gamma, "gamma"), (beta, "beta"), (running_mean, "running_mean"),
                    (running_var, "running_var")):
        check_channel_vector(v, channels, name)
    hw = math.prod(x.shape[2:])
    m = n * hw  # values per channel
    dtype = x.dtype
    x = xp.ascontiguousarray(x)
    _check_sizes(x)

    if training:
        if m <= 1:
            raise ValueError(
                "Expected more than 1 value per channel when training, got input size "
                f"{tuple(x.shape)}"
            )
        partial, parts = _channel_sums("batch_norm_partial_stats_kernel", xp, dtype, n,
                                       channels, hw, x)
        mean, var, inv_std = (xp.empty(channels, dtype=dtype) for _ in range(3))
        fuse_mean = _updatable_in_kernel(running_mean, dtype)
        fuse_var = _updatable_in_kernel(running_var, dtype)
        _launch("batch_norm_stats_kernel", dtype, channels, x, partial,
                *_ints(parts, channels, hw, m), np.float64(eps), np.float64(1 - momentum),
                np.float64(momentum), np.float64(momentum * m / (m - 1)),
                *_ints(fuse_mean, fuse_var),
                running_mean if fuse_mean else mean, running_var if fuse_var else var,
                mean, var, inv_std)
        # Running statistics the kernel could not update in place: the CPU's arithmetic.
        if running_mean is not None and not fuse_mean:
            running_mean *= 1 - momentum
            running_mean += momentum * mean
        if running_var is not None and not fuse_var:
            running_var *= 1 - momentum
            running_var += (momentum * m / (m - 1)) * var
    else:
        if running_mean is None or running_var is None:
            raise ValueError("eval mode (training=False) needs running_mean and running_var")
        mean = xp.ascontiguousarray(running_mean.astype(dtype, copy=False))
        var = running_var.astype(dtype, copy=False)
        inv_std = 1 / xp.sqrt(var + eps)

    scale = mean if gamma is None else xp.ascontiguousarray(gamma.astype(dtype, copy=False))
    shift = mean if beta is None else xp.ascontiguousarray(beta.astype(dtype, copy=False))
    x_hat = xp.empty(x.shape, dtype=dtype)
    y = xp.empty(x.shape, dtype=dtype)
    _launch("batch_norm_forward_kernel", dtype, x.size, x, mean, inv_std, scale, shift,
            *_ints(gamma is not None, beta is not None, channels, hw, x.size), x_hat, y)
    return y, BatchNormCache(x_hat, inv_std, gamma, beta is not None, bool(training))


def batch_norm_backward(grad_y, cache):
    """GPU twin of :func:`minires.kernels.norm.batch_norm_backward` (batchnorm.cu).

    ``sum_dy`` and ``sum_dy_xhat`` per channel (``batch_norm_backward_partial_kernel`` over
    (C, parts) blocks, then ``batch_norm_backward_sums_kernel``), then one elementwise pass
    (``batch_norm_backward_input_kernel``) with ``scale = gamma * inv_std``::

        training:  dx = scale * (dy - sum_dy / m - x_hat * sum_dy_xhat / m)
        eval:      dx = scale * dy

    Returns ``(grad_x, grad_gamma, grad_beta)`` = ``(dx, sum_dy_xhat, sum_dy)``, with None
    where the forward pass had no gamma/beta, as the CPU version.
    """
    x_hat, inv_std, gamma, has_beta, training = cache[:5]
    if tuple(grad_y.shape) != tuple(x_hat.shape):
        raise ValueError(
            f"grad_y has shape {tuple(grad_y.shape)}, expected the input's {tuple(x_hat.shape)}"
        )
    reduce_axes(grad_y)  # checks the number of dimensions
    xp = get_array_module(grad_y, x_hat, inv_std, gamma)
    dtype = grad_y.dtype
    n, channels = grad_y.shape[0], grad_y.shape[1]
    hw = math.prod(grad_y.shape[2:])
    grad_y = xp.ascontiguousarray(grad_y)
    x_hat = xp.ascontiguousarray(x_hat.astype(dtype, copy=False))
    _check_sizes(grad_y)

    partial, parts = _channel_sums("batch_norm_backward_partial_kernel", xp, dtype, n, channels,
                                   hw, grad_y, x_hat)
    sum_dy = xp.empty(channels, dtype=dtype)
    sum_dy_xhat = xp.empty(channels, dtype=dtype)
    _launch("batch_norm_backward_sums_kernel", dtype, channels, partial,
            *_ints(parts, channels), sum_dy, sum_dy_xhat)

    inv_std = inv_std.astype(dtype, copy=False)
    scale = inv_std if gamma is None else gamma.astype(dtype, copy=False) * inv_std
    scale = xp.ascontiguousarray(scale)
    grad_x = xp.empty(grad_y.shape, dtype=dtype)
    _launch("batch_norm_backward_input_kernel", dtype, grad_x.size, grad_y, x_hat, sum_dy,
            sum_dy_xhat, scale, *_ints(channels, hw, n * hw, bool(training), grad_x.size),
            grad_x)

    grad_gamma = None if gamma is None else sum_dy_xhat
    grad_beta = sum_dy if has_beta else None
    return grad_x, grad_gamma, grad_beta


# ---------------------------------------------------------------------------- activations


def _unary(name: str, x):
    """``y = f(x)`` by kernel ``name``: a new C-contiguous array of x's shape and dtype."""
    xp = get_array_module(x)
    x = xp.ascontiguousarray(x)
    y = xp.empty(x.shape, dtype=x.dtype)
    _check_sizes(x)
    _launch(name, x.dtype, x.size, x, np.int32(x.size), y)
    return y


def _backward(name: str, grad_y, saved, saved_name: str):
    """``dL/dx = grad_y * f'(...)`` by kernel ``name`` from grad_y and a saved array."""
    _act.check_same_shape(grad_y, saved, "grad_y", saved_name)
    xp = get_array_module(grad_y, saved)
    grad_y = xp.ascontiguousarray(grad_y)
    saved = xp.ascontiguousarray(saved.astype(grad_y.dtype, copy=False))
    grad_x = xp.empty(grad_y.shape, dtype=grad_y.dtype)
    _check_sizes(grad_y)
    _launch(name, grad_y.dtype, grad_y.size, grad_y, saved, np.int32(grad_y.size), grad_x)
    return grad_x


def relu_forward(x):
    """GPU twin of :func:`minires.kernels.activation.relu_forward`: ``y = max(x, 0)``
    (elementwise.cu, ``relu_forward_kernel``); NaN stays NaN."""
    return _unary("relu_forward_kernel", x)


def relu_backward(grad_y, x):
    """GPU twin of :func:`minires.kernels.activation.relu_backward`:
    ``dL/dx = grad_y * [x > 0]`` (``relu_backward_kernel``)."""
    return _backward("relu_backward_kernel", grad_y, x, "x")


def sigmoid_forward(x):
    """GPU twin of :func:`minires.kernels.activation.sigmoid_forward`: with
    ``e = exp(-|x|)``, ``y = 1 / (1 + e)`` for x >= 0 and ``e / (1 + e)`` otherwise
    (``sigmoid_forward_kernel``)."""
    return _unary("sigmoid_forward_kernel", x)


def sigmoid_backward(grad_y, y):
    """GPU twin of :func:`minires.kernels.activation.sigmoid_backward`:
    ``dL/dx = grad_y * y * (1 - y)`` from the forward output (``sigmoid_backward_kernel``)."""
    return _backward("sigmoid_backward_kernel", grad_y, y, "y")


def tanh_backward(grad_y, y):
    """GPU twin of :func:`minires.kernels.activation.tanh_backward`:
    ``dL/dx = grad_y * (1 - y^2)`` from the forward output (``tanh_backward_kernel``)."""
    return _backward("tanh_backward_kernel", grad_y, y, "y")
