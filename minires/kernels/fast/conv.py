"""The fast convolution: the same results as :mod:`minires.kernels.conv`, faster on a CPU.

Read :mod:`minires.kernels.conv` first: this module computes exactly its formulas (the tests
compare the two in float64 on many shapes) with three changes, each measured
(``benchmarks/README.md``):

* The batch is processed in chunks whose column matrix (about :data:`CHUNK_BYTES`) stays in
  cache, instead of one whole-batch column matrix (9x the input for a 3x3 kernel).  Backward
  recomputes each chunk's columns rather than keeping them from the forward pass.
* The chunks run on :mod:`minires.kernels.fast.parallel`'s threads (one per allowed BLAS
  thread), each chunk's product single-threaded; the weight gradient sums the chunks'
  parts in chunk order, so the result does not depend on the thread count.
* The chunk buffers (padded image, columns, product) come from
  :mod:`minires.kernels.fast.workspace` and are reused from call to call, so a training
  step does not fault in and zero fresh memory for them.
* For stride 1, ``col2im(G @ W_mat)`` is computed as a convolution of the zero-padded
  ``grad_out`` with the kernel flipped in space and C_in/C_out swapped ("the backward of a
  convolution is a convolution"), which uses the fast im2col copy instead of col2im's
  scatter-add.  Strided convolutions (and padding > dilation*(K-1)) use col2im.

On the GPU (CuPy) the whole batch is one chunk (one big cuBLAS product is best there) and
im2col is the CUDA twin; no buffers are kept.
"""

from __future__ import annotations

from minires.backend import get_array_module
from minires.kernels import conv, geometry
from minires.kernels.fast import parallel, workspace

#: Target size in bytes of one chunk's column matrix on the CPU: small enough to stay in
#: cache, big enough that two threads' hand-offs cost little (benchmarks/README.md: at two
#: threads 2-4 MiB is fastest; at one thread 1-4 MiB are within 3%).
CHUNK_BYTES = 4 * 2**20

# The teaching path's pieces this module calls (module names, so a profiler can wrap them).
col2im, weight_to_matrix = conv.col2im, conv.weight_to_matrix


def _geometry(stride, padding, dilation):
    return (geometry.pair(stride, "stride", 1, "conv2d"),
            geometry.pair(padding, "padding", 0, "conv2d"),
            geometry.pair(dilation, "dilation", 1, "conv2d"))


def batch_chunks(xp, batch: int, bytes_per_item: int) -> list:
    """Slices covering the batch, each holding about CHUNK_BYTES of columns (CPU only;
    a GPU gets the whole batch at once)."""
    if xp.__name__ != "numpy":
        return [slice(0, batch)]
    size = max(1, CHUNK_BYTES // max(1, bytes_per_item))
    return [slice(start, min(start + size, batch)) for start in range(0, batch, size)] or [
        slice(0, 0)]


def _unfold(padded, kernel, stride, dilation, out_hw, cols):
    """Columns (B*OH*OW, KH*KW*C) of a padded channels-last image (B, Hp, Wp, C), copied into
    the first rows of ``cols``: the strided view of :func:`minires.kernels.conv.im2col`."""
    xp = get_array_module(padded)
    n, _, _, c = padded.shape
    s_n, s_h, s_w, s_c = padded.strides
    windows = xp.lib.stride_tricks.as_strided(
        padded, shape=(n, *out_hw, *kernel, c),
        strides=(s_n, s_h * stride[0], s_w * stride[1], s_h * dilation[0], s_w * dilation[1],
                 s_c))
    cols = cols[:n * out_hw[0] * out_hw[1]]
    xp.copyto(cols.reshape(windows.shape), windows)
    return cols


class _ChunkIm2col:
    """im2col for successive batch chunks of at most ``chunk`` images, into reused buffers
    (``role`` keeps two unfolds of one call apart).  On the GPU: the CUDA im2col."""

    def __init__(self, xp, dtype, chunk, channels, h, w, kernel, stride, padding, dilation,
                 role):
        self.kernel, self.stride, self.padding, self.dilation = kernel, stride, padding, dilation
        self.out_hw = geometry.output_hw(h, w, kernel, stride, padding, dilation)
        self.rows = chunk * self.out_hw[0] * self.out_hw[1]
        self.gpu = xp.__name__ != "numpy"
        if not self.gpu:
            ph, pw = padding
            self.padded = workspace.buffer(f"conv.{role}.padded{padding}",
                                           (chunk, h + 2 * ph, w + 2 * pw, channels), dtype,
                                           zeros=True)
            self.cols = workspace.buffer(f"conv.{role}.cols",
                                         (self.rows, kernel[0] * kernel[1] * channels), dtype)

    def __call__(self, x, x_channels_last=None):
        """Columns of ``x`` (B, C, H, W); ``x_channels_last``, the same images already as
        (B, H, W, C), if the caller has them (a cheaper copy than transposing ``x``)."""
        if self.gpu:
            return conv.im2col(x, *self.kernel, self.stride, self.padding, self.dilation)
        n, _, h, w = x.shape
        ph, pw = self.padding
        padded = self.padded[:n]
        padded[:, ph:ph + h, pw:pw + w, :] = (  # the border stays zero
            x.transpose(0, 2, 3, 1) if x_channels_last is None else x_channels_last)
        return _unfold(padded, self.kernel, self.stride, self.dilation, self.out_hw, self.cols)


def conv2d_forward(x, weight, bias=None, stride=1, padding=0, dilation=1):
    """Same arguments, result and formula as :func:`minires.kernels.conv.conv2d_forward`."""
    xp = get_array_module(x, weight, bias)
    conv.check_conv_args(x, weight, bias)
    stride, padding, dilation = _geometry(stride, padding, dilation)
    n, c_in, h, w = x.shape
    c_out, _, kernel_h, kernel_w = weight.shape
    out_h, out_w = geometry.output_hw(h, w, (kernel_h, kernel_w), stride, padding, dilation)

    w_mat_t = weight_to_matrix(weight).T  # (KH*KW*C_in, C_out)
    y = xp.empty((n, c_out, out_h, out_w), dtype=x.dtype)
    chunks = batch_chunks(xp, n, out_h * out_w * kernel_h * kernel_w * c_in * x.dtype.itemsize)
    chunk = chunks[0].stop

    def forward_chunk(batch):  # y[batch] from x[batch], in this thread's buffers
        unfold = _ChunkIm2col(xp, x.dtype, chunk, c_in, h, w, (kernel_h, kernel_w), stride,
                              padding, dilation, "x")
        cols = unfold(x[batch])
        product = _scratch(xp, "conv.product", (unfold.rows, c_out), x.dtype)
        out = xp.matmul(cols, w_mat_t, out=product[:len(cols)])  # (B*OH*OW, C_out)
        out = out.reshape(-1, out_h, out_w, c_out).transpose(0, 3, 1, 2)
        if bias is None:  # copied to (B, C_out, OH, OW), adding the bias in the same pass
            y[batch] = out
        else:
            xp.add(out, bias.reshape(c_out, 1, 1), out=y[batch])

    parallel.map_chunks(forward_chunk, chunks)
    return y


def conv2d_backward(grad_out, x, weight, stride=1, padding=0, dilation=1,
                    need_input_grad=True, need_bias_grad=True):
    """Same arguments, results and formulas as :func:`minires.kernels.conv.conv2d_backward`."""
    xp = get_array_module(grad_out, x, weight)
    conv.check_conv_args(x, weight, None)
    stride, padding, dilation = _geometry(stride, padding, dilation)
    n, c_in, h, w = x.shape
    c_out, _, kernel_h, kernel_w = weight.shape
    kernel = (kernel_h, kernel_w)
    out_h, out_w = geometry.output_hw(h, w, kernel, stride, padding, dilation)
    conv.check_grad_out(grad_out, x, (n, c_out, out_h, out_w))

    w_mat = weight_to_matrix(weight)  # (C_out, KH*KW*C_in)
    grad_x = xp.empty(x.shape, dtype=x.dtype) if need_input_grad else None

    # Stride 1: col2im(G @ W_mat) is the convolution of grad_out, zero-padded by
    # dilation*(K - 1) - padding, with the kernel flipped in space and C_in/C_out swapped:
    # grad_x[n, c, h, w] = sum_{o,i,j} grad_out_pad[n, o, h + i*dh, w + j*dw]
    #                                  * weight[o, c, KH-1-i, KW-1-j].
    full_pad = (dilation[0] * (kernel_h - 1) - padding[0],
                dilation[1] * (kernel_w - 1) - padding[1])
    as_convolution = need_input_grad and stride == (1, 1) and min(full_pad) >= 0
    if as_convolution:  # rows (i, j, o) in im2col's column order; columns c
        w_flipped = weight[:, :, ::-1, ::-1].transpose(2, 3, 0, 1).reshape(-1, c_in)

    item_bytes = max(out_h * out_w * c_in, h * w * c_out) * kernel_h * kernel_w
    chunks = batch_chunks(xp, n, item_bytes * x.dtype.itemsize)
    chunk = chunks[0].stop

    def backward_chunk(batch):  # grad_x[batch]; returns this chunk's G.T @ cols
        unfold_x = _ChunkIm2col(xp, x.dtype, chunk, c_in, h, w, kernel, stride, padding,
                                dilation, "x")
        # G: (B*OH*OW, C_out), output pixels as rows like the columns.
        g = _scratch(xp, "conv.g", (chunk * out_h * out_w, c_out), x.dtype)
        g = g[:(batch.stop - batch.start) * out_h * out_w]
        g_channels_last = g.reshape(-1, out_h, out_w, c_out)
        g_channels_last[...] = grad_out[batch].transpose(0, 2, 3, 1)
        grad_w_part = g.T @ unfold_x(x[batch])
        if as_convolution:
            unfold_g = _ChunkIm2col(xp, x.dtype, chunk, c_out, out_h, out_w, kernel, (1, 1),
                                    full_pad, dilation, "g")
            g_cols = unfold_g(grad_out[batch], g_channels_last)
            gx_buf = _scratch(xp, "conv.gx", (chunk * h * w, c_in), x.dtype)
            gx = xp.matmul(g_cols, w_flipped, out=gx_buf[:len(g_cols)])
            grad_x[batch] = gx.reshape(-1, h, w, c_in).transpose(0, 3, 1, 2)
        elif need_input_grad:
            grad_x[batch] = col2im(g @ w_mat, (len(g) // (out_h * out_w), c_in, h, w),
                                   kernel_h, kernel_w, stride, padding, dilation)
        return grad_w_part

    grad_w_mat = xp.zeros_like(w_mat)
    for grad_w_part in parallel.map_chunks(backward_chunk, chunks):
        grad_w_mat += grad_w_part  # in chunk order, whatever the thread count

    grad_weight = xp.ascontiguousarray(
        grad_w_mat.reshape(c_out, kernel_h, kernel_w, c_in).transpose(0, 3, 1, 2))
    grad_bias = grad_out.sum(axis=(0, 2, 3)) if need_bias_grad else None
    return grad_x, grad_weight, grad_bias


def _scratch(xp, tag, shape, dtype):
    """A reused workspace buffer on the CPU; a plain new array on the GPU."""
    return workspace.buffer(tag, shape, dtype) if xp.__name__ == "numpy" else xp.empty(
        shape, dtype=dtype)
