// cudaemu.h: just enough CUDA C++ for g++ to compile minires's .cu files as written and run
// them on the CPU (tests/cudaemu, docs/cuda-emulation.md).
//
// A kernel launch runs block after block on one CPU thread.  Inside a block, kernels without
// __syncthreads() run their threads one after another as a plain loop; kernels with barriers
// run every CUDA thread as a fiber (ucontext) that switches back to the scheduler at each
// __syncthreads(), so that a barrier is a real barrier: no thread passes it before every
// thread of the block has reached it.  A barrier reached by only some threads, or threads
// waiting at different barriers, is reported as an error (a hang or garbage on a GPU).
//
// Deliberately NOT defined, so that kernels using them fail to build instead of running
// with semantics the emulation cannot reproduce: warp intrinsics (__shfl*, __ballot*,
// __any/__all, __activemask), atomics, cooperative groups, textures.
#pragma once
#include <math.h>
#include <string.h>
#include <ucontext.h>
#include <stdio.h>
#include <stdlib.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
// Shared memory: one instance per OS thread, shared by the fibers (CUDA threads) of the
// block that runs on it.  `extern __shared__ T name[];` is defined by the generated launcher
// file as a 48 KiB array that is filled with NaN bytes before every block.
#define __shared__ thread_local

struct uint3 { unsigned int x, y, z; };
struct dim3 {
    unsigned int x, y, z;
    dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

static uint3 threadIdx;
static uint3 blockIdx;
static dim3 blockDim;
static dim3 gridDim;

__device__ inline int min(int a, int b) { return a < b ? a : b; }
__device__ inline int max(int a, int b) { return a > b ? a : b; }
__device__ inline unsigned int min(unsigned int a, unsigned int b) { return a < b ? a : b; }
__device__ inline unsigned int max(unsigned int a, unsigned int b) { return a > b ? a : b; }
__device__ inline float min(float a, float b) { return fminf(a, b); }
__device__ inline float max(float a, float b) { return fmaxf(a, b); }
__device__ inline double min(double a, double b) { return fmin(a, b); }
__device__ inline double max(double a, double b) { return fmax(a, b); }

namespace cudaemu {

enum { READY = 0, AT_BARRIER = 1, DONE = 2 };
enum { STACK_BYTES = 64 * 1024, MAX_THREADS = 1024 };

struct Fiber { ucontext_t context; void* sp; int state; int line; };

// Switching fibers: on x86-64 a few instructions that save the callee-saved registers (no
// signal-mask system call, unlike swapcontext, which made barrier kernels 10x slower);
// elsewhere ucontext.
#if defined(__x86_64__)
#define CUDAEMU_FAST_SWITCH 1
extern "C" void cudaemu_switch(void** save_sp, void* next_sp);
asm(R"(
    .text
    .globl cudaemu_switch
    .hidden cudaemu_switch
    .type cudaemu_switch, @function
cudaemu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size cudaemu_switch, .-cudaemu_switch
)");
#endif

static char error_text[1024];
static int has_error = 0;
static int fiber_mode = 0;
static int current = 0;
static Fiber* fibers = nullptr;
static char* stacks = nullptr;
static ucontext_t scheduler;
static void* scheduler_sp = nullptr;
static void* body = nullptr;
static void (*call_body)(void*) = nullptr;
static unsigned char* dynamic_shared = nullptr;
static size_t dynamic_shared_size = 0;

static void fail(const char* text)
{
    if (!has_error) {
        snprintf(error_text, sizeof error_text, "%s", text);
        has_error = 1;
    }
}

static void sync_threads(int line)
{
    if (!fiber_mode) {
        fail("__syncthreads() in a kernel run without fibers: the launcher generator did not "
             "see the barrier (called through a function it could not follow?)");
        return;
    }
    fibers[current].state = AT_BARRIER;
    fibers[current].line = line;
#ifdef CUDAEMU_FAST_SWITCH
    cudaemu_switch(&fibers[current].sp, scheduler_sp);
#else
    swapcontext(&fibers[current].context, &scheduler);
#endif
}

static void fiber_main()
{
    call_body(body);
    fibers[current].state = DONE;
#ifdef CUDAEMU_FAST_SWITCH
    cudaemu_switch(&fibers[current].sp, scheduler_sp);  // never resumed
    abort();
#endif
    // (ucontext: uc_link returns to the scheduler)
}

static void start_fiber(unsigned int t)
{
    Fiber& f = fibers[t];
    f.state = READY;
    f.line = 0;
#ifdef CUDAEMU_FAST_SWITCH
    // A stack that cudaemu_switch "returns" into fiber_main from: MXCSR and x87 control
    // words, six registers, then the return address, 16-byte aligned as for a call.
    char* top = stacks + (size_t)(t + 1) * STACK_BYTES;
    void** sp = reinterpret_cast<void**>(top);
    *--sp = nullptr;
    *--sp = reinterpret_cast<void*>(&fiber_main);
    for (int r = 0; r < 6; ++r) *--sp = nullptr;
    --sp;
    unsigned int* control = reinterpret_cast<unsigned int*>(sp);
    __asm__ volatile("stmxcsr %0" : "=m"(control[0]));
    __asm__ volatile("fnstcw %0" : "=m"(control[1]));
    f.sp = sp;
#else
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = stacks + (size_t)t * STACK_BYTES;
    f.context.uc_stack.ss_size = STACK_BYTES;
    f.context.uc_link = &scheduler;
    makecontext(&f.context, fiber_main, 0);
#endif
}

static void resume(unsigned int t)
{
#ifdef CUDAEMU_FAST_SWITCH
    cudaemu_switch(&scheduler_sp, fibers[t].sp);
#else
    swapcontext(&scheduler, &fibers[t].context);
#endif
}

static void set_thread(unsigned int t)
{
    threadIdx.x = t % blockDim.x;
    threadIdx.y = (t / blockDim.x) % blockDim.y;
    threadIdx.z = t / (blockDim.x * blockDim.y);
}

// One block of `threads` CUDA threads as fibers, in rounds: each round resumes every thread
// until its next barrier (or its end); then all must be at the same barrier, or all done.
static void run_block_with_fibers(unsigned int threads)
{
    for (unsigned int t = 0; t < threads; ++t) start_fiber(t);
    for (;;) {
        for (unsigned int t = 0; t < threads && !has_error; ++t) {
            if (fibers[t].state != READY) continue;
            current = (int)t;
            set_thread(t);
            resume(t);
        }
        if (has_error) return;
        unsigned int done = 0, waiting = 0;
        int line = -1, other_line = -1;
        for (unsigned int t = 0; t < threads; ++t) {
            if (fibers[t].state == DONE) { ++done; continue; }
            ++waiting;
            if (line < 0) line = fibers[t].line;
            else if (fibers[t].line != line) other_line = fibers[t].line;
        }
        if (waiting == 0) return;
        char text[512];
        if (done > 0) {
            snprintf(text, sizeof text, "__syncthreads() at line %d reached by only %u of the %u "
                     "threads of block (%u, %u, %u); the other %u had returned (a barrier in a "
                     "divergent branch: a hang or garbage on a GPU)", line, waiting, threads,
                     blockIdx.x, blockIdx.y, blockIdx.z, done);
            fail(text);
            return;
        }
        if (other_line >= 0) {
            snprintf(text, sizeof text, "the threads of block (%u, %u, %u) wait at different "
                     "__syncthreads() calls (lines %d and %d): a barrier in a divergent branch",
                     blockIdx.x, blockIdx.y, blockIdx.z, line, other_line);
            fail(text);
            return;
        }
        for (unsigned int t = 0; t < threads; ++t) fibers[t].state = READY;
    }
}

template <typename Body>
static void call(void* p) { (*static_cast<Body*>(p))(); }

// Run a whole grid; returns 0, or 1 with the reason in error_text.
template <typename Body>
static int run_grid(const unsigned int* grid, const unsigned int* block, unsigned int shared_bytes,
                    int uses_barriers, Body& kernel)
{
    has_error = 0;
    error_text[0] = 0;
    gridDim = dim3(grid[0], grid[1], grid[2]);
    blockDim = dim3(block[0], block[1], block[2]);
    const unsigned int threads = block[0] * block[1] * block[2];
    fiber_mode = uses_barriers;
    if (uses_barriers && fibers == nullptr) {
        fibers = static_cast<Fiber*>(calloc(MAX_THREADS, sizeof(Fiber)));
        stacks = static_cast<char*>(malloc((size_t)MAX_THREADS * STACK_BYTES));
        if (!fibers || !stacks) { fail("out of memory for fiber stacks"); return 1; }
    }
    body = &kernel;
    call_body = &call<Body>;
    for (unsigned int bz = 0; bz < grid[2]; ++bz)
        for (unsigned int by = 0; by < grid[1]; ++by)
            for (unsigned int bx = 0; bx < grid[0]; ++bx) {
                blockIdx.x = bx; blockIdx.y = by; blockIdx.z = bz;
                // Shared memory holds garbage (NaN bytes) when a block starts.
                if (dynamic_shared) memset(dynamic_shared, 0xff, dynamic_shared_size);
                if (uses_barriers) {
                    run_block_with_fibers(threads);
                } else {
                    for (unsigned int t = 0; t < threads && !has_error; ++t) {
                        set_thread(t);
                        kernel();
                    }
                }
                if (has_error) return 1;
                // Bytes past the shared_mem the launch asked for must be untouched.
                for (size_t i = shared_bytes; i < dynamic_shared_size; ++i)
                    if (dynamic_shared && dynamic_shared[i] != 0xff) {
                        char text[256];
                        snprintf(text, sizeof text, "block (%u, %u, %u) wrote dynamic shared "
                                 "memory at byte %zu, past the %u bytes the launch asked for "
                                 "(shared_mem)", bx, by, bz, i, shared_bytes);
                        fail(text);
                        return 1;
                    }
            }
    return 0;
}

}  // namespace cudaemu

#define __syncthreads() cudaemu::sync_threads(__LINE__)

extern "C" const char* cudaemu_last_error() { return cudaemu::error_text; }
