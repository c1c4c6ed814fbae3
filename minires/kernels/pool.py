"""Pooling kernels: max, average and global average pooling over (N, C, H, W) arrays.

Pooling slides a small window (``KH x KW``) over each channel's image, ``stride`` pixels at
a time, and summarises the window by one number: its largest value (max pooling) or its
mean (average pooling).  It shrinks the image (a 2x2 window with stride 2 halves H and W),
which makes later layers cheaper and lets them see a larger part of the input, and it has
no weights to learn.  Global average pooling is the extreme case: one window covering the
whole image, so every channel becomes a single number; a ResNet uses it to turn its last
feature map into the vector the classifier reads.

Output size along one axis (for an input of ``size`` pixels padded by ``padding`` on each
side)::

    out = floor((size + 2 * padding - kernel) / stride) + 1

How the kernels are vectorised: instead of looping over output pixels, we loop over the
``KH * KW`` *offsets* ``(i, j)`` inside the window.  For a fixed offset, the input pixels
that sit at that offset in every window form a strided slice of the (padded) input,
``x[:, :, i::stride_h, j::stride_w]`` cut to ``(OH, OW)``, which is one whole-array
operation.  A 3x3 pool therefore costs 9 array operations, whatever the image size.

Backward passes send each output gradient back to the input pixels its window read: for
max pooling only to the pixel that won (the *argmax*), for average pooling equally to every
pixel in the window.  Where windows overlap (stride < kernel) a pixel collects gradient
from several windows and the contributions add up.

On the GPU (CuPy float32/float64 arrays) max and average pooling run the CUDA twins in
``minires/kernels/cuda/pool.cu`` instead (the first two lines of each function): one thread
per window forward, and backward one thread per input pixel that *gathers* from the windows
containing it, rather than a strided scatter per offset.
"""

from __future__ import annotations

from minires.backend import get_array_module
from minires.kernels import cuda
from minires.kernels.geometry import output_size, pair

# ----------------------------------------------------------------------------- geometry


def pool_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Number of window positions along one axis: ``(size + 2*padding - kernel) // stride + 1``.

    :func:`minires.kernels.geometry.output_size` with dilation 1, the convolution's formula.
    Raises ValueError when the window does not fit even once.
    """
    return output_size(size, kernel, stride, padding, 1, where="pooling")


class PoolGeometry:
    """Kernel, stride, padding and output size of one 2-D pooling, validated once."""

    def __init__(self, x_shape, kernel_size, stride, padding):
        if len(x_shape) != 4:
            raise ValueError(f"pooling expects x of shape (N, C, H, W), got shape {tuple(x_shape)}")
        self.kh, self.kw = pair(kernel_size, "kernel_size")
        # PyTorch's default: stride = kernel_size, i.e. windows tile the image without overlap.
        self.sh, self.sw = pair(kernel_size if stride is None else stride, "stride")
        self.ph, self.pw = pair(padding, "padding")
        if 2 * self.ph > self.kh or 2 * self.pw > self.kw:
            # PyTorch's rule: with more padding a window could hold padding only.
            raise ValueError(
                f"padding should be at most half of kernel size, got padding=({self.ph}, "
                f"{self.pw}) for kernel_size=({self.kh}, {self.kw})"
            )
        self.x_shape = tuple(x_shape)
        _, _, h, w = self.x_shape
        self.oh = pool_output_size(h, self.kh, self.sh, self.ph)
        self.ow = pool_output_size(w, self.kw, self.sw, self.pw)

    @property
    def out_shape(self) -> tuple:
        n, c, _, _ = self.x_shape
        return (n, c, self.oh, self.ow)

    @property
    def tiles(self) -> bool:
        """True when windows neither overlap nor touch padding (stride == kernel, no padding):
        then pooling is a plain reshape of the image into blocks."""
        return (self.sh, self.sw) == (self.kh, self.kw) and (self.ph, self.pw) == (0, 0)

    def offsets(self):
        """Yield ``(k, rows, cols)`` for every offset ``(i, j)`` in the window, row-major:
        ``k = i * KW + j`` and ``x_padded[:, :, rows, cols]`` is the ``(N, C, OH, OW)`` array
        of the pixels at that offset in every window."""
        for i in range(self.kh):
            rows = slice(i, i + self.sh * (self.oh - 1) + 1, self.sh)
            for j in range(self.kw):
                cols = slice(j, j + self.sw * (self.ow - 1) + 1, self.sw)
                yield i * self.kw + j, rows, cols

    def pad(self, xp, x, value):
        """``x`` with ``padding`` pixels of ``value`` added on every side of H and W."""
        if (self.ph, self.pw) == (0, 0):
            return x
        widths = ((0, 0), (0, 0), (self.ph, self.ph), (self.pw, self.pw))
        return xp.pad(x, widths, mode="constant", constant_values=value)

    def scatter(self, xp, window_grad, dtype):
        """Gradient w.r.t. x from the gradients at each window offset.

        ``window_grad(k)`` returns the ``(N, C, OH, OW)`` gradient reaching the pixel at
        offset ``k`` of every window; the result adds these into an array of ``x``'s shape.
        """
        n, c, h, w = self.x_shape
        if self.tiles:
            # Fast path: view the image as blocks (N, C, OH, KH, OW, KW); every pixel belongs
            # to at most one window, so each offset's gradient is written once, no adding
            # (and every block entry is written, so the array can start uninitialised).
            blocks = xp.empty((n, c, self.oh, self.kh, self.ow, self.kw), dtype=dtype)
            for k, _, _ in self.offsets():
                blocks[:, :, :, k // self.kw, :, k % self.kw] = window_grad(k)
            covered = blocks.reshape(n, c, self.oh * self.kh, self.ow * self.kw)
            if covered.shape[2:] == (h, w):
                return covered
            # Rows/columns past the last whole window were never read: gradient 0.
            grad_x = xp.zeros(self.x_shape, dtype=dtype)
            grad_x[:, :, : covered.shape[2], : covered.shape[3]] = covered
            return grad_x
        # General path: windows may overlap, so accumulate with += into a padded array
        # (within one offset's slice the pixels are distinct, so += is exact), then drop
        # the padding, whose gradient goes nowhere.
        grad_padded = xp.zeros((n, c, h + 2 * self.ph, w + 2 * self.pw), dtype=dtype)
        for k, rows, cols in self.offsets():
            grad_padded[:, :, rows, cols] += window_grad(k)
        return xp.ascontiguousarray(grad_padded[:, :, self.ph : self.ph + h, self.pw : self.pw + w])


def check_float(x, name: str):
    """TypeError unless ``x`` is a floating-point array."""
    if getattr(x, "dtype", None) is None or x.dtype.kind != "f":
        got = getattr(x, "dtype", type(x).__name__)
        raise TypeError(f"{name} must be a floating-point array, got {got}")


def check_shape(array, expected, name: str):
    """ValueError unless ``array`` has shape ``expected``."""
    if tuple(array.shape) != tuple(expected):
        raise ValueError(f"{name} has shape {tuple(array.shape)}, expected {tuple(expected)}")


# ----------------------------------------------------------------------------- max pooling


def max_pool2d_forward(x, kernel_size, stride=None, padding=0):
    """Max pooling: ``y[n, c, p, q] = max over (i, j) of x_padded[n, c, p*sh + i, q*sw + j]``.

    Args:
        x: ``(N, C, H, W)`` floating-point array.
        kernel_size, stride, padding: int or ``(h, w)`` pair; ``stride`` defaults to
            ``kernel_size``.  Padding pixels are ``-inf`` (they never win) and may be at
            most half the kernel, as in PyTorch.

    Returns:
        ``(y, argmax)``: ``y`` of shape ``(N, C, OH, OW)`` and ``argmax``, an int32 array of
        the same shape holding, for every window, the row-major position ``k = i * KW + j``
        of its maximum inside the window.  The winning input pixel is
        ``x[n, c, p*sh - ph + i, q*sw - pw + j]`` with ``i, j = divmod(k, KW)``.
        Ties go to the FIRST maximal element in row-major order (as in PyTorch); a NaN
        wins over any number, so NaNs propagate.
    """
    if cuda.handles(x):  # CuPy array: the CUDA twin, kernels/cuda/pool.cu
        return cuda.max_pool2d_forward(x, kernel_size, stride, padding)
    check_float(x, "x")
    xp = get_array_module(x)
    geo = PoolGeometry(x.shape, kernel_size, stride, padding)
    x_padded = geo.pad(xp, x, -xp.inf)
    y = argmax = None
    for k, rows, cols in geo.offsets():
        candidate = x_padded[:, :, rows, cols]
        if y is None:  # offset (0, 0): the running maximum starts here
            y = candidate.copy()
            argmax = xp.zeros(y.shape, dtype=xp.int32)
            continue
        # Strictly greater, so an equal later value does not steal the win (first max wins).
        wins = (candidate > y) | xp.isnan(candidate)
        # Offsets come in increasing k, so "argmax = k where wins" is a maximum; this
        # arithmetic form avoids a slow masked write (np.where) on random masks.
        xp.maximum(argmax, wins * xp.int32(k), out=argmax)
        xp.maximum(y, candidate, out=y)  # maximum also propagates NaN
    return y, argmax


def max_pool2d_backward(grad_y, argmax, x_shape, kernel_size, stride=None, padding=0):
    """Gradient of max pooling: each ``grad_y`` entry goes to the pixel that won its window.

    ``dL/dx[pixel] = sum of grad_y[window] over the windows whose argmax is that pixel``
    (0 for pixels that never won).

    Args:
        grad_y: ``(N, C, OH, OW)`` upstream gradient.
        argmax: the array returned by :func:`max_pool2d_forward`.
        x_shape: the forward input's shape ``(N, C, H, W)``.
        kernel_size, stride, padding: as given to the forward pass.

    Returns:
        ``grad_x`` of shape ``x_shape`` and ``grad_y``'s dtype.
    """
    if cuda.handles(grad_y):  # CuPy array: the CUDA twin, kernels/cuda/pool.cu
        return cuda.max_pool2d_backward(grad_y, argmax, x_shape, kernel_size, stride, padding)
    check_float(grad_y, "grad_y")
    xp = get_array_module(grad_y, argmax)
    geo = PoolGeometry(x_shape, kernel_size, stride, padding)
    check_shape(grad_y, geo.out_shape, "grad_y")
    check_shape(argmax, geo.out_shape, "argmax")
    # Multiplying by the boolean mask keeps grad_y's dtype and gives exact zeros elsewhere.
    return geo.scatter(xp, lambda k: grad_y * (argmax == k), grad_y.dtype)


# ----------------------------------------------------------------------------- average pooling


def _avg_divisor(xp, geo: PoolGeometry, count_include_pad: bool, dtype):
    """What each window's sum is divided by: ``KH * KW``, or, with
    ``count_include_pad=False``, the number of real (non-padding) pixels in the window,
    an ``(OH, OW)`` array."""
    if count_include_pad or (geo.ph, geo.pw) == (0, 0):
        return geo.kh * geo.kw
    _, _, h, w = geo.x_shape
    # A window's real pixels form a rectangle, so count rows and columns separately:
    # window p covers padded rows [p*sh, p*sh + kh), i.e. real rows [start, start + kh).
    top = xp.arange(geo.oh) * geo.sh - geo.ph
    left = xp.arange(geo.ow) * geo.sw - geo.pw
    rows = xp.minimum(top + geo.kh, h) - xp.maximum(top, 0)
    cols = xp.minimum(left + geo.kw, w) - xp.maximum(left, 0)
    return (rows[:, None] * cols[None, :]).astype(dtype)


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    """Average pooling: ``y[n, c, p, q] = sum over (i, j) of x_padded[n, c, p*sh + i,
    q*sw + j] / divisor``.

    Padding pixels are zeros.  ``divisor`` is ``KH * KW`` when ``count_include_pad`` (the
    padding zeros count as pixels, PyTorch's default), else the number of real pixels in
    that window.

    Args:
        x: ``(N, C, H, W)`` floating-point array.
        kernel_size, stride, padding: int or ``(h, w)`` pair, as for max pooling.

    Returns:
        ``y`` of shape ``(N, C, OH, OW)``, ``x``'s dtype.
    """
    if cuda.handles(x):  # CuPy array: the CUDA twin, kernels/cuda/pool.cu
        return cuda.avg_pool2d_forward(x, kernel_size, stride, padding, count_include_pad)
    check_float(x, "x")
    xp = get_array_module(x)
    geo = PoolGeometry(x.shape, kernel_size, stride, padding)
    x_padded = geo.pad(xp, x, 0)
    total = None
    for _, rows, cols in geo.offsets():
        if total is None:
            total = x_padded[:, :, rows, cols].copy()
        else:
            total += x_padded[:, :, rows, cols]
    total /= _avg_divisor(xp, geo, count_include_pad, x.dtype)  # in place: keeps the dtype
    return total


def avg_pool2d_backward(grad_y, x_shape, kernel_size, stride=None, padding=0,
                        count_include_pad=True):
    """Gradient of average pooling: every pixel of a window gets ``grad_y[window] / divisor``.

    ``dL/dx[pixel] = sum over the windows containing the pixel of grad_y[window] / divisor``.

    Args:
        grad_y: ``(N, C, OH, OW)`` upstream gradient.
        x_shape: the forward input's shape; the other arguments as in the forward pass.

    Returns:
        ``grad_x`` of shape ``x_shape`` and ``grad_y``'s dtype.
    """
    if cuda.handles(grad_y):  # CuPy array: the CUDA twin, kernels/cuda/pool.cu
        return cuda.avg_pool2d_backward(grad_y, x_shape, kernel_size, stride, padding,
                                        count_include_pad)
    check_float(grad_y, "grad_y")
    xp = get_array_module(grad_y)
    geo = PoolGeometry(x_shape, kernel_size, stride, padding)
    check_shape(grad_y, geo.out_shape, "grad_y")
    share = grad_y / _avg_divisor(xp, geo, count_include_pad, grad_y.dtype)
    return geo.scatter(xp, lambda k: share, grad_y.dtype)


def global_avg_pool_forward(x):
    """Global average pooling: ``y[n, c] = mean over (h, w) of x[n, c, h, w]``.

    Args:
        x: ``(N, C, H, W)`` floating-point array.

    Returns:
        ``y`` of shape ``(N, C)``, ``x``'s dtype.
    """
    check_float(x, "x")
    if x.ndim != 4:
        raise ValueError(f"global_avg_pool expects x of shape (N, C, H, W), got {tuple(x.shape)}")
    return x.mean(axis=(2, 3))


def global_avg_pool_backward(grad_y, x_shape):
    """Gradient of global average pooling: ``dL/dx[n, c, h, w] = grad_y[n, c] / (H * W)``.

    Args:
        grad_y: ``(N, C)`` upstream gradient.
        x_shape: the forward input's shape ``(N, C, H, W)``.

    Returns:
        ``grad_x`` of shape ``x_shape`` and ``grad_y``'s dtype.
    """
    check_float(grad_y, "grad_y")
    if len(x_shape) != 4:
        raise ValueError(f"x_shape must be (N, C, H, W), got {tuple(x_shape)}")
    n, c, h, w = x_shape
    check_shape(grad_y, (n, c), "grad_y")
    xp = get_array_module(grad_y)
    grad_x = xp.empty(tuple(x_shape), dtype=grad_y.dtype)
    grad_x[...] = (grad_y / (h * w))[:, :, None, None]  # broadcast over every pixel
    return grad_x
