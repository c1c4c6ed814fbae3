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

Rows are output pixels and columns run over (kernel row, kernel column, channel), i.e.
"channels last": each row is then KH runs of KW*C values that are contiguous in a
channels-last padded copy of the input, so im2col is ONE strided copy.

This file is the teaching path: whole-batch functions of one screen each, and
:func:`conv2d_naive`, the same convolution as explicit loops.  Training normally runs the
fast twins in :mod:`minires.kernels.fast.conv` (batch chunks, reused buffers, backward as a
convolution), which the tests hold equal to these; ``minires.kernels.use(fast=False)``
(or ``MINIRES_KERNELS=simple``) runs these everywhere instead, and
``minires.kernels.use(im2col=mine)`` routes the layers through a student's im2col.

All functions take NumPy or CuPy arrays (``xp = get_array_module(...)``) and keep the input
dtype (float32 stays float32).  On the GPU (CuPy float32/float64 arrays) im2col and col2im
run the CUDA twins in ``minires/kernels/cuda/im2col.cu`` (the first two lines of each),
where col2im *gathers*, one thread per pixel; the matrix products stay ``xp.matmul``, i.e.
cuBLAS.
"""

from __future__ import annotations

from minires.backend import get_array_module
from minires.kernels import cuda
from minires.kernels.geometry import output_hw, output_size, pair

#: Output length of a convolution along one axis (see :mod:`minires.kernels.geometry`).
conv_output_size = output_size

# ---------------------------------------------------------------------------- checks


def _geometry(stride, padding, dilation):
    """Each of stride, padding, dilation as an (h, w) pair, checked."""
    return (pair(stride, "stride", 1, "conv2d"), pair(padding, "padding", 0, "conv2d"),
            pair(dilation, "dilation", 1, "conv2d"))


def check_4d(array, name: str, layout: str):
    """TypeError unless ``array`` is an array; ValueError unless it is 4-D (``layout``)."""
    if not hasattr(array, "ndim"):
        raise TypeError(f"conv2d: {name} must be an array, got {type(array).__name__}")
    if array.ndim != 4:
        raise ValueError(f"conv2d: {name} must be 4-D {layout}, "
                         f"got ndim={array.ndim} with shape {tuple(array.shape)}")


def check_conv_args(x, weight, bias):
    """Shapes and dtypes shared by forward, backward and the naive reference."""
    check_4d(x, "input", "(N, C, H, W)")
    check_4d(weight, "weight", "(C_out, C_in, KH, KW)")
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


def check_grad_out(grad_out, x, expected_shape):
    """ValueError unless grad_out has the forward output's shape, TypeError unless x's dtype."""
    if tuple(grad_out.shape) != tuple(expected_shape):
        raise ValueError(f"conv2d: grad_out must have the output's shape "
                         f"{tuple(expected_shape)}, got {tuple(grad_out.shape)}")
    if grad_out.dtype != x.dtype:
        raise TypeError(f"conv2d: grad_out dtype {grad_out.dtype} != input dtype {x.dtype}")


# ---------------------------------------------------------------------------- im2col


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
    check_4d(x, "input", "(N, C, H, W)")
    xp = get_array_module(x)
    (sh, sw), (ph, pw), (dh, dw) = _geometry(stride, padding, dilation)
    n, c, h, w = x.shape
    out_h, out_w = output_hw(h, w, (kernel_h, kernel_w), (sh, sw), (ph, pw), (dh, dw))
    padded = xp.zeros((n, h + 2 * ph, w + 2 * pw, c), dtype=x.dtype)  # channels last
    padded[:, ph:ph + h, pw:pw + w, :] = x.transpose(0, 2, 3, 1)
    # A view, no copy: windows[n, oh, ow, i, j, c] = padded[n, oh*sh + i*dh, ow*sw + j*dw, c]
    # (strides are in bytes: one step along oh jumps sh image rows, and so on).
    s_n, s_h, s_w, s_c = padded.strides
    windows = xp.lib.stride_tricks.as_strided(
        padded, shape=(n, out_h, out_w, kernel_h, kernel_w, c),
        strides=(s_n, s_h * sh, s_w * sw, s_h * dh, s_w * dw, s_c))
    return windows.reshape(n * out_h * out_w, kernel_h * kernel_w * c)  # the one copy


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
    (sh, sw), (ph, pw), (dh, dw) = _geometry(stride, padding, dilation)
    out_h, out_w = output_hw(h, w, (kernel_h, kernel_w), (sh, sw), (ph, pw), (dh, dw))
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
    check_conv_args(x, weight, bias)
    n, _, h, w = x.shape
    c_out, _, kernel_h, kernel_w = weight.shape
    out_h, out_w = output_hw(h, w, (kernel_h, kernel_w), *_geometry(stride, padding, dilation))
    cols = im2col(x, kernel_h, kernel_w, stride, padding, dilation)  # (N*OH*OW, KH*KW*C_in)
    y = cols @ weight_to_matrix(weight).T                             # (N*OH*OW, C_out)
    y = y.reshape(n, out_h, out_w, c_out).transpose(0, 3, 1, 2)       # back to NCHW
    if bias is not None:
        y = y + bias.reshape(1, c_out, 1, 1)
    return xp.ascontiguousarray(y)


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
        (C_out,); None for those not asked for.  With ``G`` = grad_out as (N*OH*OW, C_out)
        and ``W = weight_to_matrix(weight)``:

        * ``grad_W = G.T @ im2col(x)`` (reshaped back to the weight's shape),
        * ``grad_x = col2im(G @ W)``,
        * ``grad_bias[o] = sum over n, oh, ow of grad_out[n, o, oh, ow]``.
    """
    check_conv_args(x, weight, None)
    n, c_in, h, w = x.shape
    c_out, _, kernel_h, kernel_w = weight.shape
    out_h, out_w = output_hw(h, w, (kernel_h, kernel_w), *_geometry(stride, padding, dilation))
    check_grad_out(grad_out, x, (n, c_out, out_h, out_w))
    G = grad_out.transpose(0, 2, 3, 1).reshape(-1, c_out)  # (N*OH*OW, C_out), like im2col's rows
    W = weight_to_matrix(weight)                            # (C_out, KH*KW*C_in)
    cols = im2col(x, kernel_h, kernel_w, stride, padding, dilation)
    grad_W = G.T @ cols                                     # (C_out, KH*KW*C_in)
    grad_weight = grad_W.reshape(c_out, kernel_h, kernel_w, c_in).transpose(0, 3, 1, 2)
    grad_x = None
    if need_input_grad:
        grad_x = col2im(G @ W, x.shape, kernel_h, kernel_w, stride, padding, dilation)
    grad_bias = grad_out.sum(axis=(0, 2, 3)) if need_bias_grad else None
    return grad_x, grad_weight.copy(), grad_bias


def conv2d_naive(x, weight, bias=None, stride=1, padding=0, dilation=1):
    """Reference convolution with explicit loops over every output value (small inputs only).

    Same arguments, result and formula as :func:`conv2d_forward`:
    ``y[n, o, oh, ow] = bias[o] + sum(window * weight[o])`` where ``window`` is the
    (C_in, KH, KW) block of the padded input that output pixel (oh, ow) sees.
    """
    xp = get_array_module(x, weight, bias)
    check_conv_args(x, weight, bias)
    (sh, sw), (ph, pw), (dh, dw) = _geometry(stride, padding, dilation)
    n, _, h, w = x.shape
    c_out, _, kernel_h, kernel_w = weight.shape
    out_h, out_w = output_hw(h, w, (kernel_h, kernel_w), (sh, sw), (ph, pw), (dh, dw))
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
