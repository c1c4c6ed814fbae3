// Max and average pooling on the GPU, forward and backward.
//
// CPU twins: max_pool2d_forward / max_pool2d_backward / avg_pool2d_forward /
// avg_pool2d_backward in minires/kernels/pool.py.  Loaded by minires/kernels/cuda/gpu.py
// with cupy.RawModule, each template instantiated for float and double.  No #include.
//
// Shapes (C-contiguous):  x, grad_x (N, C, H, W);  y, grad_y, argmax (N, C, OH, OW).
// The batch and channel axes never mix, so the kernels see N*C independent planes and index
// them by nc = n*C + c.  Window (p, q) covers the padded pixels
//
//   x_pad[p*sh + i, q*sw + j]  for 0 <= i < KH, 0 <= j < KW,   i.e.  x[p*sh - ph + i, q*sw - pw + j]
//
// with OH = (H + 2*ph - KH) / sh + 1 (same for OW); k = i*KW + j numbers the window's offsets
// row by row.
//
// Forward kernels run one thread per output (n, c, p, q).  Backward kernels run one thread
// per INPUT pixel, which gathers from every window that contains it (the CPU scatters, one
// strided add per offset): no atomics, the same bits on every run, and the contributions
// are added in the CPU's order (increasing k).  Indices are int: the Python wrapper refuses
// arrays of more than 2^30 elements.

// Max pooling forward:  y[n, c, p, q] = max over (i, j) of x_pad[n, c, p*sh + i, q*sw + j],
// argmax[n, c, p, q] = the offset k = i*KW + j of that maximum inside its window.
//
// Padding pixels have the value pad_value (-inf, passed in by the wrapper) and never win.
// The running maximum starts at -inf with k = 0 and takes candidate k when
//
//   v > best  (strictly: an equal later value does not steal the win, so the FIRST maximum
//              wins, as in PyTorch)   or   v != v  (v is NaN: a NaN always wins, so NaNs
//              propagate; with several NaNs the last one is recorded),
//
// exactly the CPU's rule "wins = (candidate > y) | isnan(candidate)" applied offset by offset.
template <typename T>
__global__ void max_pool2d_forward_kernel(const T* __restrict__ x, int H, int W,
                                          int KH, int KW, int sh, int sw, int ph, int pw,
                                          int OH, int OW, int total, T pad_value,
                                          T* __restrict__ y, int* __restrict__ argmax)
{
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= total) return;
    // Unravel t = (nc*OH + p)*OW + q.
    const int q = t % OW;
    const int p = (t / OW) % OH;
    const int nc = t / (OW * OH);
    const T* plane = x + nc * H * W;
    T best = pad_value;
    int best_k = 0;
    for (int i = 0; i < KH; ++i) {
        const int h = p * sh - ph + i;
        for (int j = 0; j < KW; ++j) {
            const int w = q * sw - pw + j;
            const bool inside = 0 <= h && h < H && 0 <= w && w < W;
            const T v = inside ? plane[h * W + w] : pad_value;
            if (v > best || v != v) {  // v != v: only NaN is unequal to itself
                best = v;
                best_k = i * KW + j;
            }
        }
    }
    y[t] = best;
    argmax[t] = best_k;
}

// Max pooling backward:  grad_x[pixel] = sum of grad_y[window] over the windows whose
// argmax is that pixel (0 for pixels that never won).
//
// Thread (n, c, h, w) visits the windows containing its pixel: offset (i, j) of window
// (p, q) is the pixel when h + ph = p*sh + i and w + pw = q*sw + j.  As on the CPU, the
// window's gradient is multiplied by the 0/1 mask [argmax == k] (so a NaN gradient spreads
// over its window in both versions).
template <typename T>
__global__ void max_pool2d_backward_kernel(const T* __restrict__ grad_y,
                                           const int* __restrict__ argmax, int H, int W,
                                           int KH, int KW, int sh, int sw, int ph, int pw,
                                           int OH, int OW, int total, T* __restrict__ grad_x)
{
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= total) return;
    // Unravel t = (nc*H + h)*W + w.
    const int w = t % W;
    const int h = (t / W) % H;
    const int nc = t / (W * H);
    T sum = T(0);
    for (int i = 0; i < KH; ++i) {
        const int row = h + ph - i;               // = p*sh if offset i of window row p is h
        if (row < 0 || row % sh != 0) continue;
        const int p = row / sh;
        if (p >= OH) continue;
        for (int j = 0; j < KW; ++j) {
            const int col = w + pw - j;
            if (col < 0 || col % sw != 0) continue;
            const int q = col / sw;
            if (q >= OW) continue;
            const int o = (nc * OH + p) * OW + q;  // window (p, q) of plane nc
            sum += grad_y[o] * static_cast<T>(argmax[o] == i * KW + j);
        }
    }
    grad_x[t] = sum;
}

// The number average pooling divides window (p, q)'s sum by: KH*KW when count_include_pad
// (padding zeros count as pixels, PyTorch's default), else the number of real pixels in the
// window.  Those form a rectangle: rows [top, top + KH) cut to [0, H), columns likewise.
__device__ inline int avg_pool_divisor(int p, int q, int H, int W, int KH, int KW,
                                       int sh, int sw, int ph, int pw, int count_include_pad)
{
    if (count_include_pad) return KH * KW;
    const int top = p * sh - ph;
    const int left = q * sw - pw;
    const int rows = min(top + KH, H) - max(top, 0);
    const int cols = min(left + KW, W) - max(left, 0);
    return rows * cols;
}

// Average pooling forward:
//   y[n, c, p, q] = (sum over (i, j) of x_pad[n, c, p*sh + i, q*sw + j]) / divisor(p, q)
// with zero padding.
template <typename T>
__global__ void avg_pool2d_forward_kernel(const T* __restrict__ x, int H, int W,
                                          int KH, int KW, int sh, int sw, int ph, int pw,
                                          int OH, int OW, int count_include_pad, int total,
                                          T* __restrict__ y)
{
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= total) return;
    const int q = t % OW;
    const int p = (t / OW) % OH;
    const int nc = t / (OW * OH);
    const T* plane = x + nc * H * W;
    T sum = T(0);
    for (int i = 0; i < KH; ++i) {
        const int h = p * sh - ph + i;
        if (h < 0 || h >= H) continue;            // a padding row adds 0
        for (int j = 0; j < KW; ++j) {
            const int w = q * sw - pw + j;
            if (w < 0 || w >= W) continue;
            sum += plane[h * W + w];
        }
    }
    y[t] = sum / static_cast<T>(avg_pool_divisor(p, q, H, W, KH, KW, sh, sw, ph, pw,
                                                  count_include_pad));
}

// Average pooling backward:
//   grad_x[pixel] = sum over the windows (p, q) containing the pixel of
//                   grad_y[p, q] / divisor(p, q)
// (the CPU first forms share = grad_y / divisor, then adds it offset by offset).
template <typename T>
__global__ void avg_pool2d_backward_kernel(const T* __restrict__ grad_y, int H, int W,
                                           int KH, int KW, int sh, int sw, int ph, int pw,
                                           int OH, int OW, int count_include_pad, int total,
                                           T* __restrict__ grad_x)
{
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= total) return;
    const int w = t % W;
    const int h = (t / W) % H;
    const int nc = t / (W * H);
    T sum = T(0);
    for (int i = 0; i < KH; ++i) {
        const int row = h + ph - i;
        if (row < 0 || row % sh != 0) continue;
        const int p = row / sh;
        if (p >= OH) continue;
        for (int j = 0; j < KW; ++j) {
            const int col = w + pw - j;
            if (col < 0 || col % sw != 0) continue;
            const int q = col / sw;
            if (q >= OW) continue;
            const int divisor = avg_pool_divisor(p, q, H, W, KH, KW, sh, sw, ph, pw,
                                                 count_include_pad);
            sum += grad_y[(nc * OH + p) * OW + q] / static_cast<T>(divisor);
        }
    }
    grad_x[t] = sum;
}
