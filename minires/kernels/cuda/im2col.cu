// im2col and col2im on the GPU, in minires's channels-last column layout.
//
// CPU twins: im2col / col2im in minires/kernels/conv.py (read the two side by side).
// Loaded by minires/kernels/cuda/gpu.py with cupy.RawModule; each template is instantiated
// for float and double there ("im2col_kernel<float>", ...).  No #include: NVRTC compiles
// this file as it is.
//
// Shapes (every array C-contiguous, row-major):
//
//   x     (N, C, H, W)                 images
//   cols  (N*OH*OW, KH*KW*C)           one row per output pixel (n, oh, ow),
//                                      columns over kernel row i, kernel column j, channel c
//
//   cols[(n*OH + oh)*OW + ow, (i*KW + j)*C + c] = x_pad[n, c, oh*sh + i*dh, ow*sw + j*dw]
//
// x_pad is x with ph rows and pw columns of zeros on every side:
// x_pad[n, c, h + ph, w + pw] = x[n, c, h, w], and 0 outside the image.
// OH = (H + 2*ph - dh*(KH - 1) - 1) / sh + 1, and the same for OW.
//
// Both kernels run one thread per OUTPUT element, and every thread writes only its own
// element: no atomics, and the same bits on every run.  Indices are int: the Python wrapper
// refuses arrays of more than 2^30 elements.

// im2col: cols (N*OH*OW, KH*KW*C) from x (N, C, H, W).
//
// Thread t computes cols.flat[t]: consecutive threads write consecutive columns (channel
// fastest), so the writes of a warp are coalesced.
template <typename T>
__global__ void im2col_kernel(const T* __restrict__ x, int C, int H, int W,
                              int KH, int KW, int sh, int sw, int ph, int pw, int dh, int dw,
                              int OH, int OW, int total, T* __restrict__ cols)
{
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= total) return;
    // Unravel t = ((((n*OH + oh)*OW + ow)*KH + i)*KW + j)*C + c, last index first.
    int rest = t;
    const int c = rest % C;   rest /= C;
    const int j = rest % KW;  rest /= KW;
    const int i = rest % KH;  rest /= KH;
    const int ow = rest % OW; rest /= OW;
    const int oh = rest % OH;
    const int n = rest / OH;
    // Kernel tap (i, j) of output pixel (oh, ow) reads x_pad[oh*sh + i*dh, ow*sw + j*dw],
    // which is x[h, w] with h, w below (or padding, outside the image).
    const int h = oh * sh - ph + i * dh;
    const int w = ow * sw - pw + j * dw;
    const bool inside = 0 <= h && h < H && 0 <= w && w < W;
    cols[t] = inside ? x[((n * C + c) * H + h) * W + w] : T(0);
}

// col2im: the adjoint of im2col, grad_x (N, C, H, W) from cols (N*OH*OW, KH*KW*C).
//
//   x[n, c, h, w] = sum of every cols entry that im2col copied from x[n, c, h, w]
//
// The CPU scatters: it adds each kernel tap's columns into a padded image.  Here each thread
// GATHERS instead: it owns one pixel (n, c, h, w) and finds the entries that read it.  Tap
// (i, j) of output pixel (oh, ow) read it when
//
//   h + ph = oh*sh + i*dh   and   w + pw = ow*sw + j*dw,
//
// so for each tap (i, j): oh = (h + ph - i*dh) / sh must divide exactly and lie in [0, OH),
// and the same for ow.  The taps are visited in the CPU's order (i, then j), so the sum is
// also formed in the same order.
template <typename T>
__global__ void col2im_kernel(const T* __restrict__ cols, int C, int H, int W,
                              int KH, int KW, int sh, int sw, int ph, int pw, int dh, int dw,
                              int OH, int OW, int total, T* __restrict__ x)
{
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= total) return;
    // Unravel t = ((n*C + c)*H + h)*W + w.
    int rest = t;
    const int w = rest % W; rest /= W;
    const int h = rest % H; rest /= H;
    const int c = rest % C;
    const int n = rest / C;
    T sum = T(0);
    for (int i = 0; i < KH; ++i) {
        const int row = h + ph - i * dh;          // = oh*sh if tap i of row oh read (h, w)
        if (row < 0 || row % sh != 0) continue;
        const int oh = row / sh;
        if (oh >= OH) continue;
        for (int j = 0; j < KW; ++j) {
            const int col = w + pw - j * dw;      // = ow*sw if tap j of column ow read it
            if (col < 0 || col % sw != 0) continue;
            const int ow = col / sw;
            if (ow >= OW) continue;
            const int r = (n * OH + oh) * OW + ow;  // the row of output pixel (oh, ow)
            sum += cols[((r * KH + i) * KW + j) * C + c];
        }
    }
    x[t] = sum;
}
