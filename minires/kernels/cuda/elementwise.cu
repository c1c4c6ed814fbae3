// Elementwise activations on the GPU: ReLU, sigmoid (forward and backward), tanh backward.
//
// CPU twins: relu_forward / relu_backward / sigmoid_forward / sigmoid_backward /
// tanh_backward in minires/kernels/activation.py (tanh forward is CuPy's own tanh there).
// Loaded by minires/kernels/cuda/gpu.py with cupy.RawModule, each template instantiated for
// float and double.  No #include.
//
// One thread per element t of C-contiguous arrays of `total` elements, any shape.
// Backward kernels take grad_y = dL/dy and return dL/dx = grad_y * dy/dx.

// ReLU:  y = max(x, 0); a NaN stays NaN (as NumPy's maximum: v != v only for NaN).
template <typename T>
__global__ void relu_forward_kernel(const T* __restrict__ x, int total, T* __restrict__ y)
{
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= total) return;
    const T v = x[t];
    y[t] = (v > T(0) || v != v) ? v : T(0);
}

// ReLU backward:  dL/dx = grad_y * [x > 0]  (0 at x == 0, as PyTorch).  A multiplication by
// the 0/1 mask, as on the CPU, so a NaN gradient stays NaN even where the unit is off.
template <typename T>
__global__ void relu_backward_kernel(const T* __restrict__ grad_y, const T* __restrict__ x,
                                     int total, T* __restrict__ grad_x)
{
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= total) return;
    grad_x[t] = grad_y[t] * static_cast<T>(x[t] > T(0));
}

// Sigmoid:  y = 1 / (1 + exp(-x)), without overflow: with e = exp(-|x|) in (0, 1],
// y = 1 / (1 + e) for x >= 0 and y = e / (1 + e) for x < 0.
template <typename T>
__global__ void sigmoid_forward_kernel(const T* __restrict__ x, int total, T* __restrict__ y)
{
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= total) return;
    const T v = x[t];
    const T e = exp(-fabs(v));
    y[t] = v >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
}

// Sigmoid backward:  dL/dx = grad_y * (y * (1 - y)), from the forward OUTPUT y.
template <typename T>
__global__ void sigmoid_backward_kernel(const T* __restrict__ grad_y, const T* __restrict__ y,
                                        int total, T* __restrict__ grad_x)
{
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= total) return;
    const T v = y[t];
    grad_x[t] = grad_y[t] * (v * (T(1) - v));
}

// Tanh backward:  dL/dx = grad_y * (1 - y^2), from the forward OUTPUT y = tanh(x).
template <typename T>
__global__ void tanh_backward_kernel(const T* __restrict__ grad_y, const T* __restrict__ y,
                                     int total, T* __restrict__ grad_x)
{
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= total) return;
    const T v = y[t];
    grad_x[t] = grad_y[t] * (T(1) - v * v);
}
