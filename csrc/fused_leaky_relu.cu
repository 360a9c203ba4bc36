// CUDA kernels of fused_leaky_relu: the activation (also its double
// backward) and the backward with the bias gradient reduced in the same pass.
// Compute in float (double for double); fp32 results match the reference's
// operation order. Launch functions take plain pointers and a stream.
#include "cuda_common.cuh"

namespace ganzoo {
namespace cuda {
namespace {

// I: the index type. 32-bit when n < 2^31, which keeps the channel index
// (i / inner) % channels cheap; 64-bit otherwise.
template <typename T, typename I, bool kBias, bool kSelfMask>
__global__ void act_kernel(const T* __restrict__ v, const T* __restrict__ bias,
                           const T* __restrict__ s, T* __restrict__ out, I n, I inner, I channels,
                           acc_t<T> slope, acc_t<T> gain, acc_t<T> sign) {
  using A = acc_t<T>;
  const I stride = static_cast<I>(gridDim.x) * blockDim.x;
  for (I i = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    A u = to_acc(v[i]);
    if (kBias) u += to_acc(bias[(i / inner) % channels]);
    const bool m = kSelfMask ? (u > A(0)) : (sign * to_acc(s[i]) > A(0));
    out[i] = from_acc<T>(u * (m ? A(1) : slope) * gain);
  }
}

template <typename T>
__device__ __forceinline__ T masked_grad(T u, T s, acc_t<T> gain, acc_t<T> slope, acc_t<T> sign) {
  using A = acc_t<T>;
  const A g = to_acc(u) * gain;
  return from_acc<T>(g * ((sign * to_acc(s) > A(0)) ? A(1) : slope));
}

template <typename T, typename I>
__global__ void grad_kernel(const T* __restrict__ u, const T* __restrict__ s, T* __restrict__ out,
                            I n, acc_t<T> slope, acc_t<T> gain, acc_t<T> sign) {
  const I stride = static_cast<I>(gridDim.x) * blockDim.x;
  for (I i = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = masked_grad(u[i], s[i], gain, slope, sign);
}

// Backward + bias gradient when a channel's runs are long (NCHW): one warp per
// segment of a run, a warp sum, one atomic per segment.
constexpr int64_t kSegment = 4096;

template <typename T>
__global__ void grad_reduce_runs_kernel(const T* __restrict__ u, const T* __restrict__ s,
                                        T* __restrict__ out, acc_t<T>* __restrict__ bias_grad,
                                        int64_t rows, int64_t inner, int64_t channels,
                                        acc_t<T> slope, acc_t<T> gain, acc_t<T> sign) {
  using A = acc_t<T>;
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  const int64_t segments = (inner + kSegment - 1) / kSegment;
  for (int64_t item = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
       item < rows * segments; item += warps) {
    const int64_t row = item / segments;
    const int64_t begin = row * inner + (item % segments) * kSegment;
    const int64_t end = min(begin + kSegment, (row + 1) * inner);
    A sum = A(0);
    for (int64_t i = begin + lane; i < end; i += 32) {
      const T r = masked_grad(u[i], s[i], gain, slope, sign);
      out[i] = r;
      sum += to_acc(r);
    }
    sum = warp_sum(sum);
    if (lane == 0) atomicAdd(bias_grad + row % channels, sum);
  }
}

// Backward + bias gradient when runs are short (channels_last, (B, F)): the
// memory is a matrix [outer][period] with period = channels * inner; a
// thread owns one column over a slice of the rows, then adds its sum once.
template <typename T>
__global__ void grad_reduce_columns_kernel(const T* __restrict__ u, const T* __restrict__ s,
                                           T* __restrict__ out, acc_t<T>* __restrict__ bias_grad,
                                           int64_t outer, int64_t period, int64_t inner,
                                           acc_t<T> slope, acc_t<T> gain, acc_t<T> sign) {
  using A = acc_t<T>;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (col >= period) return;
  A sum = A(0);
  for (int64_t row = blockIdx.y; row < outer; row += gridDim.y) {
    const int64_t i = row * period + col;
    const T r = masked_grad(u[i], s[i], gain, slope, sign);
    out[i] = r;
    sum += to_acc(r);
  }
  atomicAdd(bias_grad + col / inner, sum);
}

template <typename T, typename I>
void launch_act(const T* v, const T* bias, const T* s, T* out, const ActParams& p,
                cudaStream_t stream) {
  using A = acc_t<T>;
  const unsigned blocks = grid_for(p.n);
  const I n = static_cast<I>(p.n), inner = static_cast<I>(p.inner), ch = static_cast<I>(p.channels);
  const A slope = static_cast<A>(p.slope), gain = static_cast<A>(p.gain), sign = static_cast<A>(p.mask_sign);
  if (bias && s) act_kernel<T, I, true, false><<<blocks, kThreads, 0, stream>>>(v, bias, s, out, n, inner, ch, slope, gain, sign);
  else if (bias) act_kernel<T, I, true, true><<<blocks, kThreads, 0, stream>>>(v, bias, s, out, n, inner, ch, slope, gain, sign);
  else if (s) act_kernel<T, I, false, false><<<blocks, kThreads, 0, stream>>>(v, bias, s, out, n, inner, ch, slope, gain, sign);
  else act_kernel<T, I, false, true><<<blocks, kThreads, 0, stream>>>(v, bias, s, out, n, inner, ch, slope, gain, sign);
}

}  // namespace
}  // namespace cuda

const char* act_cuda(DType dtype, const void* v, const void* bias, const void* mask_src, void* out,
                     const ActParams& p, void* stream) {
  if (p.n == 0) return nullptr;
  return cuda::dispatch(dtype, [&](auto tag) -> const char* {
    using T = typename decltype(tag)::type;
    const T* vv = static_cast<const T*>(v);
    const T* bb = static_cast<const T*>(bias);
    const T* ss = static_cast<const T*>(mask_src);
    T* oo = static_cast<T*>(out);
    cudaStream_t st = static_cast<cudaStream_t>(stream);
    if (p.n < (int64_t(1) << 31)) cuda::launch_act<T, uint32_t>(vv, bb, ss, oo, p, st);
    else cuda::launch_act<T, int64_t>(vv, bb, ss, oo, p, st);
    return cuda::launch_error();
  });
}

const char* grad_cuda(DType dtype, const void* u, const void* mask_src, void* out, void* bias_grad,
                      const ActParams& p, void* stream) {
  if (p.n == 0) return nullptr;
  return cuda::dispatch(dtype, [&](auto tag) -> const char* {
    using T = typename decltype(tag)::type;
    using A = cuda::acc_t<T>;
    const T* uu = static_cast<const T*>(u);
    const T* ss = static_cast<const T*>(mask_src);
    T* oo = static_cast<T*>(out);
    A* db = static_cast<A*>(bias_grad);
    cudaStream_t st = static_cast<cudaStream_t>(stream);
    const A slope = static_cast<A>(p.slope), gain = static_cast<A>(p.gain), sign = static_cast<A>(p.mask_sign);
    if (!db) {
      const unsigned blocks = cuda::grid_for(p.n);
      if (p.n < (int64_t(1) << 31))
        cuda::grad_kernel<T, uint32_t><<<blocks, cuda::kThreads, 0, st>>>(uu, ss, oo, static_cast<uint32_t>(p.n), slope, gain, sign);
      else
        cuda::grad_kernel<T, int64_t><<<blocks, cuda::kThreads, 0, st>>>(uu, ss, oo, p.n, slope, gain, sign);
    } else if (p.inner >= 32) {
      const int64_t rows = p.n / p.inner;
      const int64_t segments = (p.inner + cuda::kSegment - 1) / cuda::kSegment;
      const unsigned blocks = cuda::grid_for(rows * segments * 32);  // a warp per segment
      cuda::grad_reduce_runs_kernel<T><<<blocks, cuda::kThreads, 0, st>>>(
          uu, ss, oo, db, rows, p.inner, p.channels, slope, gain, sign);
    } else {
      const int64_t period = p.channels * p.inner;
      const int64_t outer = p.n / period;
      const unsigned col_blocks = static_cast<unsigned>((period + cuda::kThreads - 1) / cuda::kThreads);
      // Enough row slices to give every SM work, each slice long enough that
      // the final atomics are a small fraction of the traffic.
      int64_t slices = (outer + 63) / 64;
      const int64_t want = (2048 + col_blocks - 1) / col_blocks;
      if (slices > want) slices = want;
      if (slices < 1) slices = 1;
      if (slices > 65535) slices = 65535;
      dim3 grid(col_blocks, static_cast<unsigned>(slices));
      cuda::grad_reduce_columns_kernel<T><<<grid, cuda::kThreads, 0, st>>>(
          uu, ss, oo, db, outer, period, p.inner, slope, gain, sign);
    }
    return cuda::launch_error();
  });
}

}  // namespace ganzoo
