"""2-D convolution kernels: im2col + one matrix product (pure array functions, no autograd).

The im2col idea
---------------
A convolution slides a ``C x KH x KW`` filter over the image and takes a dot product at
every position.  Dot products of many vectors with many vectors are a matrix product, which
BLAS (CPU) or cuBLAS (GPU) runs near the machine's peak.  So we *copy* every receptive field
into one row of a matrix ``cols`` ("image to columns"):

    cols[(n, oh, ow), (i, j, c)] = x_padded[n, c, oh*stride + i*dilation, ow*stride + j*dilation]

    y[(n, oh, ow), o]  = sum over (i, j, c) of  cols[(n, oh, ow), (i, j, c)] * w[o, c, i, j]
                       = (cols @ W_mat.T)[(n, oh, ow), o]       with W_mat = weight_to_matrix(w)

The price is memory: every input pixel is copied up to KH*KW times (9x for 3x3 kernels).

Backward, with ``G`` = grad_out as a ``(N*OH*OW, C_out)`` matrix:

    grad_W_mat = G.T @ cols                 (one matrix product)
    grad_cols  = G @ W_mat, then grad_x = col2im(grad_cols)

``col2im`` is the *adjoint* (transpose) of ``im2col``: each pixel was copied into several
rows, so its gradient is the *sum* of the gradients of all its copies.

Layout and speed (measured with ``benchmarks/bench_kernels.py`` on a 2-core AVX-512 CPU,
OpenBLAS, float32, ResNet-20 shapes at batch 128):

* Rows are output pixels and columns run over (kernel row, kernel column, channel), i.e.
  "channels last".  Each row is then KH runs of KW*C values that are contiguous in a
  channels-last padded copy of the input, so im2col is ONE strided copy, and all three
  matrix products have the long N*OH*OW side as rows.  The other common layout,
  (C*KH*KW, N*OH*OW), needs large transposes and was 5-20% slower overall.
* On the CPU the batch is processed in chunks whose column matrix (about
  :data:`CHUNK_BYTES`) stays in cache, and the chunk buffers are reused; each chunk is
  still im2col + one matrix product.  Materialising the whole 75 MB column matrix (first
  stage) was 1.6-1.9x slower.  For the same reason the columns are not kept from forward
  to backward (that would also hold KH*KW times every layer's input in memory): backward
  recomputes them, chunk by chunk.
* For stride 1, ``col2im(G @ W_mat)`` equals a convolution of the zero-padded ``grad_out``
  with the kernel flipped in space and with C_in and C_out swapped ("the backward of a
  convolution is a convolution").  That form uses the fast im2col copy; col2im's
  scatter-add moves only C values per NumPy inner loop, and made the whole backward pass
  1.1-1.6x slower.  Strided convolutions (and padding > dilation*(K-1)) use col2im.

All functions take NumPy or CuPy arrays (``xp = get_array_module(...)``) and keep the input
dtype (float32 stays float32).  On the GPU (CuPy float32/float64 arrays) im2col and col2im
run the CUDA twins in ``minires/kernels/cuda/im2col.cu`` (the first two lines of each; the
convolution's chunked im2col uses it too), where col2im *gathers*, one thread per pixel;
the matrix products stay ``xp.matmul``, i.e. cuBLAS, with the whole batch as one chunk.
"""

from __future__ import annotations

import numbers

from minires.backend import get_array_module
from minires.kernels import cuda

#: Target size in bytes of one chunk's column matrix on the CPU: small enough to stay in
#: cache (4 MB measured best of 1-16 MB here; the whole batch at once was slowest).
CHUNK_BYTES = 4 * 2**20


# ---------------------------------------------------------------------------- geometry


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _pair(value, name: str, minimum: int) -> tuple[int, int]:
    """An int or an (h, w) pair -> (h, w), checked to be ints >= minimum."""
    if _is_int(value):
        pair = (value, value)
    else:
        pair = tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(pair) != 2 or not all(_is_int(v) for v in pair):
        raise TypeError(f"conv2d: {name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"conv2d: {name} must be >= {minimum}, got {value!r}")
    return int(pair[0]), int(pair[1])


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0,
                     dilation: int = 1) -> int:
    """Output length of a convolution along one axis.

    ``out = floor((size + 2*padding - dilation*(kernel - 1) - 1) / stride) + 1``

    ``dilation*(kernel - 1) + 1`` is the span of the dilated kernel; it must fit in the padded
    input, otherwise a ValueError names both sizes.
    """
    if kernel < 1 or stride < 1 or dilation < 1 or padding < 0:
        raise ValueError(f"conv2d: need kernel, stride, dilation >= 1 and padding >= 0, got "
                         f"kernel={kernel}, stride={stride}, dilation={dilation}, "
                         f"padding={padding}")
    span = dilation * (kernel - 1) + 1
    padded = size + 2 * padding
    if padded < span:
        raise ValueError(
            f"conv2d: kernel of size {kernel} (span {span} with dilation {dilation}) is larger "
            f"than the padded input of size {padded} ({size} + 2*{padding})"
        )
    return (padded - span) // stride + 1


def _output_hw(h, w, kernel_h, kernel_w, stride, padding, dilation) -> tuple[int, int]:
    return (conv_output_size(h, kernel_h, stride[0], padding[0], dilation[0]),
            conv_output_size(w, kernel_w, stride[1], padding[1], dilation[1]))


def _check_4d(array, name: str, layout: str):
    if not hasattr(array, "ndim"):
        raise TypeError(f"conv2d: {name} must be an array, got {type(array).__name__}")
    if array.ndim != 4:
        raise ValueError(f"conv2d: {name} must be 4-D {layout}, "
                         f"got ndim={array.ndim} with shape {tuple(array.shape)}")


def _check_conv_args(x, weight, bias):
    """Shapes and dtypes shared by forward, backward and the naive reference."""
    _check_4d(x, "input", "(N, C, H, W)")
    _check_4d(weight, "weight", "(C_out, C_in, KH, KW)")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"conv2d: input has {x.shape[1]} channels but weight expects "
                         f"{weight.shape[1]} (weight shape {tuple(weight.shape)})")
    # Mixed dtypes would silently upcast float32 work to float64 (2x slower): refuse them.
    if x.dtype != weight.dtype or x.dtype.kind != "f":
        raise TypeError(f"conv2d: input and weight must have the same floating dtype, "
                        f"got {x.dtype} and {weight.dtype}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"conv2d: bias must have shape ({weight.shape[0]},) for "
                         f"{weight.shape[0]} output channels, got {tuple(bias.shape)}")


# ---------------------------------------------------------------------------- im2col


def _to_padded_nhwc(x, ph: int, pw: int, out=None):
    """(N, C, H, W) -> zero-padded channels-last copy (N, H + 2*ph, W + 2*pw, C).

    ``out``: a buffer from an earlier call with the same padding (its border is still
    zero), reused so that batch chunks do not each fault in fresh memory.
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    if out is None:
        out = xp.zeros((n, h + 2 * ph, w + 2 * pw, c), dtype=x.dtype)
    out = out[:n]
    out[:, ph:ph + h, pw:pw + w, :] = x.transpose(0, 2, 3, 1)
    return out


def _unfold(padded, kernel_h, kernel_w, stride, dilation, out_h, out_w, out=None):
    """Columns (N*OH*OW, KH*KW*C) from a padded channels-last image (N, Hp, Wp, C).

    ``as_strided`` builds, without copying, the 6-D view
    ``windows[n, oh, ow, i, j, c] = padded[n, oh*sh + i*dh, ow*sw + j*dw, c]``
    (strides are in bytes: one step along ``oh`` jumps ``sh`` image rows, and so on).
    The one copy into ``out`` (a new array, or the first rows of a reused buffer) makes it
    a matrix.
    """
    xp = get_array_module(padded)
    n, _, _, c = padded.shape
    s_n, s_h, s_w, s_c = padded.strides
    windows = xp.lib.stride_tricks.as_strided(
        padded,
        shape=(n, out_h, out_w, kernel_h, kernel_w, c),
        strides=(s_n, s_h * stride[0], s_w * stride[1], s_h * dilation[0], s_w * dilation[1],
                 s_c),
    )
    rows, width = n * out_h * out_w, kernel_h * kernel_w * c
    cols = xp.empty((rows, width), dtype=padded.dtype) if out is None else out[:rows]
    xp.copyto(cols.reshape(windows.shape), windows)
    return cols


def im2col(x, kernel_h: int, kernel_w: int, stride=1, padding=0, dilation=1):
    """Copy every receptive field of ``x`` into one row of a matrix.

    Args:
        x: images, shape (N, C, H, W).
        kernel_h, kernel_w: kernel size KH, KW.
        stride, padding, dilation: an int or an (h, w) pair each (zero padding).

    Returns:
        ``cols`` of shape ``(N*OH*OW, KH*KW*C)`` with
        ``cols[(n*OH + oh)*OW + ow, (i*KW + j)*C + c] = x_pad[n, c, oh*sh + i*dh, ow*sw + j*dw]``,
        where ``OH = floor((H + 2*ph - dh*(KH - 1) - 1) / sh) + 1`` (same for OW).
        Rows are output pixels; columns run over kernel row, kernel column, then channel
        (channels last, unlike PyTorch's ``unfold``, which puts the channel first).
        Multiply by :func:`weight_to_matrix` ``(w).T`` to convolve.
    """
    if cuda.handles(x):  # CuPy array: the CUDA twin, kernels/cuda/im2col.cu
        return cuda.im2col(x, kernel_h, kernel_w, stride, padding, dilation)
    _check_4d(x, "input", "(N, C, H, W)")
    stride, padding = _pair(stride, "stride", 1), _pair(padding, "padding", 0)
    dilation = _pair(dilation, "dilation", 1)
    out_h, out_w = _output_hw(x.shape[2], x.shape[3], kernel_h, kernel_w, stride, padding,
                              dilation)
    return _unfold(_to_padded_nhwc(x, *padding), kernel_h, kernel_w, stride, dilation,
                   out_h, out_w)


def col2im(cols, x_shape, kernel_h: int, kernel_w: int, stride=1, padding=0, dilation=1):
    """The adjoint of :func:`im2col`: scatter the rows back and *sum* overlapping copies.

    Args:
        cols: shape (N*OH*OW, KH*KW*C), laid out as :func:`im2col` returns it.
        x_shape: (N, C, H, W) of the image that im2col was (or would be) applied to.

    Returns:
        An array of shape ``x_shape`` with ``<im2col(x), cols> == <x, col2im(cols)>``:
        entry (n, c, h, w) is the sum of every ``cols`` entry that im2col copied from it
        (entries copied from the zero padding are dropped).
    """
    if cuda.handles(cols):  # CuPy array: the CUDA twin, kernels/cuda/im2col.cu
        return cuda.col2im(cols, x_shape, kernel_h, kernel_w, stride, padding, dilation)
    xp = get_array_module(cols)
    if len(x_shape) != 4:
        raise ValueError(f"col2im: x_shape must be (N, C, H, W), got {tuple(x_shape)}")
    n, c, h, w = x_shape
    stride, padding = _pair(stride, "stride", 1), _pair(padding, "padding", 0)
    dilation = _pair(dilation, "dilation", 1)
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    out_h, out_w = _output_hw(h, w, kernel_h, kernel_w, stride, padding, dilation)
    expected = (n * out_h * out_w, kernel_h * kernel_w * c)
    if tuple(cols.shape) != expected:
        raise ValueError(f"col2im: cols must have shape {expected} for x_shape {tuple(x_shape)}, "
                         f"got {tuple(cols.shape)}")
    blocks = cols.reshape(n, out_h, out_w, kernel_h, kernel_w, c)
    padded = xp.zeros((n, h + 2 * ph, w + 2 * pw, c), dtype=cols.dtype)
    # One strided add per kernel position (never np.add.at, which is ~100x slower):
    # kernel tap (i, j) of output pixel (oh, ow) read x_pad[oh*sh + i*dh, ow*sw + j*dw].
    for i in range(kernel_h):
        for j in range(kernel_w):
            rows = slice(i * dh, i * dh + sh * (out_h - 1) + 1, sh)
            columns = slice(j * dw, j * dw + sw * (out_w - 1) + 1, sw)
            padded[:, rows, columns, :] += blocks[:, :, :, i, j, :]
    return xp.ascontiguousarray(padded[:, ph:ph + h, pw:pw + w, :].transpose(0, 3, 1, 2))


def weight_to_matrix(weight):
    """(C_out, C_in, KH, KW) -> (C_out, KH*KW*C_in), columns in :func:`im2col` order."""
    c_out = weight.shape[0]
    return weight.transpose(0, 2, 3, 1).reshape(c_out, -1)


def _batch_chunks(xp, batch: int, bytes_per_item: int):
    """Slices covering the batch, each holding about CHUNK_BYTES of columns (CPU only;
    a GPU gets the whole batch at once, where one big matrix product is best)."""
    if xp.__name__ != "numpy":
        return [slice(0, batch)]
    size = max(1, CHUNK_BYTES // max(1, bytes_per_item))
    return [slice(start, min(start + size, batch)) for start in range(0, batch, size)] or [
        slice(0, 0)]


class _ChunkIm2col:
    """im2col for successive batch chunks of at most ``chunk`` images, reusing one padded
    image buffer and one column buffer (fresh memory costs page faults).  On the GPU (one
    chunk, the whole batch) it calls the CUDA :func:`im2col` and keeps no buffers."""

    def __init__(self, xp, dtype, chunk, channels, h, w, kernel, stride, padding, dilation):
        self.kernel, self.stride, self.padding, self.dilation = kernel, stride, padding, dilation
        self.out_hw = _output_hw(h, w, *kernel, stride, padding, dilation)
        self.rows = chunk * self.out_hw[0] * self.out_hw[1]  # of the largest chunk's columns
        self.gpu = xp.__name__ != "numpy" and dtype.name in cuda.C_TYPES  # as cuda.handles
        if not self.gpu:
            ph, pw = padding
            self.padded = xp.zeros((chunk, h + 2 * ph, w + 2 * pw, channels), dtype=dtype)
            self.cols = xp.empty((self.rows, kernel[0] * kernel[1] * channels), dtype=dtype)

    def __call__(self, x):
        if self.gpu:
            return im2col(x, *self.kernel, self.stride, self.padding, self.dilation)
        padded = _to_padded_nhwc(x, *self.padding, out=self.padded)
        return _unfold(padded, *self.kernel, self.stride, self.dilation, *self.out_hw,
                       out=self.cols)


# ---------------------------------------------------------------------------- convolution


def conv2d_forward(x, weight, bias=None, stride=1, padding=0, dilation=1):
    """Cross-correlation as in PyTorch (no kernel flip), via im2col + one matrix product.

    Args:
        x: (N, C_in, H, W).
        weight: (C_out, C_in, KH, KW), same dtype as x.
        bias: (C_out,) or None.
        stride, padding, dilation: an int or an (h, w) pair each.

    Returns:
        y of shape (N, C_out, OH, OW), with OH, OW from :func:`conv_output_size`::

            y[n, o, oh, ow] = bias[o] + sum over c, i, j of
                              w[o, c, i, j] * x_pad[n, c, oh*sh + i*dh, ow*sw + j*dw]
    """
    xp = get_array_module(x, weight, bias)
    _check_conv_args(x, weight, bias)
    stride, padding = _pair(stride, "stride", 1), _pair(padding, "padding", 0)
    dilation = _pair(dilation, "dilation", 1)
    n, c_in, h, w = x.shape
    c_out, _, kernel_h, kernel_w = weight.shape
    out_h, out_w = _output_hw(h, w, kernel_h, kernel_w, stride, padding, dilation)

    w_mat_t = weight_to_matrix(weight).T  # (KH*KW*C_in, C_out)
    y = xp.empty((n, c_out, out_h, out_w), dtype=x.dtype)
    chunks = _batch_chunks(xp, n, out_h * out_w * kernel_h * kernel_w * c_in * x.dtype.itemsize)
    unfold = _ChunkIm2col(xp, x.dtype, chunks[0].stop, c_in, h, w, (kernel_h, kernel_w),
                          stride, padding, dilation)
    product = xp.empty((unfold.rows, c_out), dtype=x.dtype)
    for batch in chunks:
        cols = unfold(x[batch])
        # (B*OH*OW, K) @ (K, C_out): rows are output pixels, channels last ...
        out = xp.matmul(cols, w_mat_t, out=product[:len(cols)])
        out = out.reshape(-1, out_h, out_w, c_out).transpose(0, 3, 1, 2)
        # ... copied to (B, C_out, OH, OW), adding the bias in the same pass.
        if bias is None:
            y[batch] = out
        else:
            xp.add(out, bias.reshape(c_out, 1, 1), out=y[batch])
    return y


def conv2d_backward(grad_out, x, weight, stride=1, padding=0, dilation=1,
                    need_input_grad=True, need_bias_grad=True):
    """Gradients of :func:`conv2d_forward` with respect to x, weight and bias.

    Args:
        grad_out: dL/dy, shape (N, C_out, OH, OW).
        x, weight, stride, padding, dilation: as given to the forward pass.
        need_input_grad, need_bias_grad: skip work that nobody needs (e.g. grad_x of the
            first layer, grad_bias of a bias-free conv).

    Returns:
        ``(grad_x, grad_weight, grad_bias)``, shapes (N, C_in, H, W), (C_out, C_in, KH, KW),
        (C_out,); None for those not asked for.  With ``G`` = grad_out as (N*OH*OW, C_out):

        * ``grad_weight = G.T @ im2col(x)`` (reshaped back to the weight's shape),
        * ``grad_x = col2im(G @ weight_to_matrix(weight))``,
        * ``grad_bias[o] = sum over n, oh, ow of grad_out[n, o, oh, ow]``.
    """
    xp = get_array_module(grad_out, x, weight)
    _check_conv_args(x, weight, None)
    stride, padding = _pair(stride, "stride", 1), _pair(padding, "padding", 0)
    dilation = _pair(dilation, "dilation", 1)
    n, c_in, h, w = x.shape
    c_out, _, kernel_h, kernel_w = weight.shape
    kernel = (kernel_h, kernel_w)
    out_h, out_w = _output_hw(h, w, kernel_h, kernel_w, stride, padding, dilation)
    if tuple(grad_out.shape) != (n, c_out, out_h, out_w):
        raise ValueError(f"conv2d: grad_out must have the output's shape "
                         f"{(n, c_out, out_h, out_w)}, got {tuple(grad_out.shape)}")
    if grad_out.dtype != x.dtype:
        raise TypeError(f"conv2d: grad_out dtype {grad_out.dtype} != input dtype {x.dtype}")

    w_mat = weight_to_matrix(weight)  # (C_out, KH*KW*C_in)
    grad_w_mat = xp.zeros_like(w_mat)
    grad_x = xp.empty(x.shape, dtype=x.dtype) if need_input_grad else None

    # Stride 1: col2im(G @ W_mat) is the convolution of grad_out, zero-padded by
    # dilation*(K - 1) - padding, with the kernel flipped in space and C_in/C_out swapped:
    # grad_x[n, c, h, w] = sum_{o,i,j} grad_out_pad[n, o, h + i*dh, w + j*dw]
    #                                  * weight[o, c, KH-1-i, KW-1-j].
    full_pad = (dilation[0] * (kernel_h - 1) - padding[0],
                dilation[1] * (kernel_w - 1) - padding[1])
    as_convolution = need_input_grad and stride == (1, 1) and min(full_pad) >= 0

    item_bytes = max(out_h * out_w * c_in, h * w * c_out) * kernel_h * kernel_w
    chunks = _batch_chunks(xp, n, item_bytes * x.dtype.itemsize)
    chunk = chunks[0].stop
    unfold_x = _ChunkIm2col(xp, x.dtype, chunk, c_in, h, w, kernel, stride, padding, dilation)
    g_buf = xp.empty((chunk * out_h * out_w, c_out), dtype=x.dtype)
    if as_convolution:
        # Rows (i, j, o) in im2col's column order; columns c.
        w_flipped = weight[:, :, ::-1, ::-1].transpose(2, 3, 0, 1).reshape(-1, c_in)
        unfold_g = _ChunkIm2col(xp, x.dtype, chunk, c_out, out_h, out_w, kernel, (1, 1),
                                full_pad, dilation)
        gx_buf = xp.empty((chunk * h * w, c_in), dtype=x.dtype)

    for batch in chunks:
        # G: (B*OH*OW, C_out), output pixels as rows like the columns.
        g = g_buf[:(batch.stop - batch.start) * out_h * out_w]
        g.reshape(-1, out_h, out_w, c_out)[...] = grad_out[batch].transpose(0, 2, 3, 1)
        grad_w_mat += g.T @ unfold_x(x[batch])
        if as_convolution:
            g_cols = unfold_g(grad_out[batch])
            gx = xp.matmul(g_cols, w_flipped, out=gx_buf[:len(g_cols)])
            grad_x[batch] = gx.reshape(-1, h, w, c_in).transpose(0, 3, 1, 2)
        elif need_input_grad:
            grad_x[batch] = col2im(g @ w_mat, (len(g) // (out_h * out_w), c_in, h, w),
                                   kernel_h, kernel_w, stride, padding, dilation)

    grad_weight = xp.ascontiguousarray(
        grad_w_mat.reshape(c_out, kernel_h, kernel_w, c_in).transpose(0, 3, 1, 2))
    grad_bias = grad_out.sum(axis=(0, 2, 3)) if need_bias_grad else None
    return grad_x, grad_weight, grad_bias


def conv2d_naive(x, weight, bias=None, stride=1, padding=0, dilation=1):
    """Reference convolution with explicit loops over every output value (small inputs only).

    Same arguments, result and formula as :func:`conv2d_forward`:
    ``y[n, o, oh, ow] = bias[o] + sum(window * weight[o])`` where ``window`` is the
    (C_in, KH, KW) block of the padded input that output pixel (oh, ow) sees.
    """
    xp = get_array_module(x, weight, bias)
    _check_conv_args(x, weight, bias)
    (sh, sw), (ph, pw) = _pair(stride, "stride", 1), _pair(padding, "padding", 0)
    dh, dw = _pair(dilation, "dilation", 1)
    n, _, h, w = x.shape
    c_out, _, kernel_h, kernel_w = weight.shape
    out_h, out_w = _output_hw(h, w, kernel_h, kernel_w, (sh, sw), (ph, pw), (dh, dw))
    x_pad = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = xp.zeros((n, c_out, out_h, out_w), dtype=x.dtype)
    for b in range(n):
        for o in range(c_out):
            for oh in range(out_h):
                for ow in range(out_w):
                    top, left = oh * sh, ow * sw
                    window = x_pad[b, :, top:top + dh * (kernel_h - 1) + 1:dh,
                                   left:left + dw * (kernel_w - 1) + 1:dw]
                    y[b, o, oh, ow] = xp.sum(window * weight[o])
            if bias is not None:
                y[b, o] += bias[o]
    return y
