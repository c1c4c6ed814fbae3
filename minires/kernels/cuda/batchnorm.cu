// Batch normalisation on the GPU: per-channel statistics, normalisation, backward.
//
// CPU twins: batch_norm_forward / batch_norm_backward in minires/kernels/norm.py, whose
// docstrings derive the formulas.  Loaded by minires/kernels/cuda/gpu.py with
// cupy.RawModule, each template instantiated for float and double.  No #include.
//
// Layout: x is (N, C, H, W) seen as (N, C, HW) with HW = H*W, or (N, C) with HW = 1,
// C-contiguous.  Channel c owns the m = N*HW values at flat indices (n*C + c)*HW + i,
// 0 <= n < N, 0 <= i < HW.  Elementwise kernels find an element's channel as
// c = (t / HW) % C.
//
// Per-channel sums (the statistics, and the two sums of the backward pass) are split over
// many blocks, because a ResNet has few channels (16 to 64) but many values per channel
// (m = 131072 at batch 128, 32x32): one block per channel would leave most of the GPU idle.
// Block (c, part) = (blockIdx.x, blockIdx.y) adds the values k in [part*chunk, (part+1)*chunk)
// of channel c (k = n*HW + i counts the channel's values in memory order) and writes its
// partial sums, in double precision, to partial[(c*P + part)*2 + {0, 1}] with P = gridDim.y.
// A second kernel, one thread per channel, adds the P partial sums in order.  Every sum is formed in
// the same order on every run: the same bits every time, no atomics.  Launch the partial
// kernels with blockDim.x a power of two and blockDim.x * sizeof(double) bytes of dynamic
// shared memory.  Indices are int: the wrapper refuses more than 2^30 elements.

// The sum of `value` over the threads of the block (every thread gets it).
//
// A tree in shared memory: the first half of the threads add the second half's values to
// their own, then the first quarter add the second quarter's, ..., until shared[0] holds
// the total.  Always the same order, so always the same bits.
__device__ double block_sum(double value, double* shared)
{
    shared[threadIdx.x] = value;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) shared[threadIdx.x] += shared[threadIdx.x + half];
        __syncthreads();
    }
    const double total = shared[0];
    __syncthreads();  // all have read shared[0] before a next call overwrites it
    return total;
}

// The shift of channel c's sums: its first value x[0, c, 0], or 0 when that is inf or NaN
// (x - inf would turn a channel's inf mean into NaN; the CPU's mean stays inf).
// first - first is 0 exactly for finite values (no #include for isfinite under NVRTC).
template <typename T>
__device__ double channel_shift(const T* x, int c, int HW)
{
    const double first = static_cast<double>(x[c * HW]);
    return first - first == 0.0 ? first : 0.0;
}

// Statistics, step 1 of 2: block (c, part) adds d = x - shift and d^2 over its chunk of channel
// c, in double precision, where shift = the channel's first value x[0, c, 0] (channel_shift).
//
// This is the sum / sum-of-squares formula var = mean(d^2) - mean(d)^2 in one pass over x.
// Without the shift it cancels badly when |mean| >> std (the reason the CPU makes two
// passes); shifting by a value of the channel keeps mean(d) within a few std of 0, and
// double sums keep float32 data exact to far below float32's precision.
template <typename T>
__global__ void batch_norm_partial_stats_kernel(const T* __restrict__ x, int N, int C, int HW,
                                                int chunk, double* __restrict__ partial)
{
    extern __shared__ double shared[];
    const int c = blockIdx.x;
    const int part = blockIdx.y;
    const int m = N * HW;
    const int end = min(m, (part + 1) * chunk);
    const double shift = channel_shift(x, c, HW);
    double sum_d = 0.0;
    double sum_d2 = 0.0;
    for (int k = part * chunk + threadIdx.x; k < end; k += blockDim.x) {
        const int n = k / HW;
        const double d = static_cast<double>(x[(n * C + c) * HW + (k - n * HW)]) - shift;
        sum_d += d;
        sum_d2 += d * d;
    }
    sum_d = block_sum(sum_d, shared);
    sum_d2 = block_sum(sum_d2, shared);
    if (threadIdx.x == 0) {
        partial[(c * gridDim.y + part) * 2] = sum_d;
        partial[(c * gridDim.y + part) * 2 + 1] = sum_d2;
    }
}

// Statistics, step 2 of 2, one thread per channel c: add the P partial sums, then
//
//   mean     = shift + sum(d) / m
//   var      = sum(d^2) / m - (sum(d) / m)^2              (biased: divide by m)
//   inv_std  = 1 / sqrt(var + eps)
//
// and, when asked, the running averages in place (PyTorch's convention):
//
//   running_mean = keep * running_mean + momentum * mean          keep = 1 - momentum
//   running_var  = keep * running_var  + unbias * var             unbias = momentum*m/(m-1)
//
// (the running variance tracks the unbiased batch variance).  running_mean/running_var are
// not touched when update_running_mean/update_running_var is 0 (the wrapper then passes
// another (C,) array, so that every pointer is valid).
template <typename T>
__global__ void batch_norm_stats_kernel(const T* __restrict__ x, const double* __restrict__ partial,
                                        int P, int C, int HW, int m, double eps, double keep,
                                        double momentum, double unbias,
                                        int update_running_mean, int update_running_var,
                                        T* running_mean, T* running_var, T* mean_out,
                                        T* var_out, T* inv_std_out)
{
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    double sum_d = 0.0;
    double sum_d2 = 0.0;
    for (int part = 0; part < P; ++part) {
        sum_d += partial[(c * P + part) * 2];
        sum_d2 += partial[(c * P + part) * 2 + 1];
    }
    const double mean_d = sum_d / m;
    const double var_d = sum_d2 / m - mean_d * mean_d;
    const T mean = static_cast<T>(channel_shift(x, c, HW) + mean_d);
    // Never below 0 by rounding; a NaN variance (inf or NaN in the channel) stays NaN, as
    // on the CPU and in PyTorch (`var_d > 0 ? var_d : 0` turned it into 0).
    const T var = static_cast<T>(var_d < 0.0 ? 0.0 : var_d);
    mean_out[c] = mean;
    var_out[c] = var;
    inv_std_out[c] = T(1) / sqrt(var + static_cast<T>(eps));
    if (update_running_mean)
        running_mean[c] = running_mean[c] * static_cast<T>(keep) + static_cast<T>(momentum) * mean;
    if (update_running_var)
        running_var[c] = running_var[c] * static_cast<T>(keep) + static_cast<T>(unbias) * var;
}

// Normalise, one thread per element (training mode with the batch's mean and inv_std, eval
// mode with the running ones):
//
//   x_hat = (x - mean[c]) * inv_std[c]          (kept for the backward pass)
//   y     = gamma[c] * x_hat + beta[c]
//
// With has_gamma == 0 the scale is 1, with has_beta == 0 the shift is 0 (affine=False); the
// unused pointers are then other valid (C,) arrays.
template <typename T>
__global__ void batch_norm_forward_kernel(const T* __restrict__ x, const T* __restrict__ mean,
                                          const T* __restrict__ inv_std,
                                          const T* __restrict__ gamma,
                                          const T* __restrict__ beta, int has_gamma,
                                          int has_beta, int C, int HW, int total,
                                          T* __restrict__ x_hat, T* __restrict__ y)
{
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= total) return;
    const int c = (t / HW) % C;
    const T normalised = (x[t] - mean[c]) * inv_std[c];
    x_hat[t] = normalised;
    T out = has_gamma ? normalised * gamma[c] : normalised;
    if (has_beta) out += beta[c];
    y[t] = out;
}

// The two per-channel sums the backward pass needs, split like the statistics: block (c, part)
// adds dy and dy * x_hat over its chunk of channel c (the product in T, as on the CPU) ...
template <typename T>
__global__ void batch_norm_backward_partial_kernel(const T* __restrict__ grad_y,
                                                   const T* __restrict__ x_hat, int N, int C,
                                                   int HW, int chunk,
                                                   double* __restrict__ partial)
{
    extern __shared__ double shared[];
    const int c = blockIdx.x;
    const int part = blockIdx.y;
    const int m = N * HW;
    const int end = min(m, (part + 1) * chunk);
    double sum_dy = 0.0;
    double sum_dy_xhat = 0.0;
    for (int k = part * chunk + threadIdx.x; k < end; k += blockDim.x) {
        const int n = k / HW;
        const int index = (n * C + c) * HW + (k - n * HW);
        const T dy = grad_y[index];
        sum_dy += static_cast<double>(dy);
        sum_dy_xhat += static_cast<double>(dy * x_hat[index]);
    }
    sum_dy = block_sum(sum_dy, shared);
    sum_dy_xhat = block_sum(sum_dy_xhat, shared);
    if (threadIdx.x == 0) {
        partial[(c * gridDim.y + part) * 2] = sum_dy;
        partial[(c * gridDim.y + part) * 2 + 1] = sum_dy_xhat;
    }
}

// ... and one thread per channel adds the P partial sums:
//
//   sum_dy[c]      = sum(dy)            (= dL/dbeta)
//   sum_dy_xhat[c] = sum(dy * x_hat)    (= dL/dgamma)
template <typename T>
__global__ void batch_norm_backward_sums_kernel(const double* __restrict__ partial, int P,
                                                int C, T* __restrict__ sum_dy,
                                                T* __restrict__ sum_dy_xhat)
{
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    double total_dy = 0.0;
    double total_dy_xhat = 0.0;
    for (int part = 0; part < P; ++part) {
        total_dy += partial[(c * P + part) * 2];
        total_dy_xhat += partial[(c * P + part) * 2 + 1];
    }
    sum_dy[c] = static_cast<T>(total_dy);
    sum_dy_xhat[c] = static_cast<T>(total_dy_xhat);
}

// dL/dx, one thread per element, with scale[c] = gamma[c] * inv_std[c] (inv_std[c] without
// gamma).  Training mode, the compact formula (derived in norm.py):
//
//   dx = scale * (dy - sum_dy / m - x_hat * sum_dy_xhat / m)
//
// evaluated in the CPU's order: x_hat * (-sum_dy_xhat / m), + dy, - sum_dy / m, * scale.
// Eval mode (mean and inv_std are constants):  dx = scale * dy.
template <typename T>
__global__ void batch_norm_backward_input_kernel(const T* __restrict__ grad_y,
                                                 const T* __restrict__ x_hat,
                                                 const T* __restrict__ sum_dy,
                                                 const T* __restrict__ sum_dy_xhat,
                                                 const T* __restrict__ scale, int C, int HW,
                                                 int m, int training, int total,
                                                 T* __restrict__ grad_x)
{
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= total) return;
    const int c = (t / HW) % C;
    if (training) {
        const T count = static_cast<T>(m);
        T g = x_hat[t] * (-sum_dy_xhat[c] / count);
        g += grad_y[t];
        g -= sum_dy[c] / count;
        grad_x[t] = g * scale[c];
    } else {
        grad_x[t] = grad_y[t] * scale[c];
    }
}
