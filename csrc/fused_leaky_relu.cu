// CUDA kernels of fused_leaky_relu: the activation (also its double
// backward) and the backward with the bias gradient reduced in the same pass.
// Compute in float (double for double); fp32 results match the reference's
// operation order. Launch functions take plain pointers and a stream.
#include "cuda_common.cuh"

namespace ganzoo {
namespace cuda {
namespace {

// I: the index type. 32-bit when n < 2^31, which makes the channel index
// cheap (ChannelOf's fast divisions); 64-bit otherwise. Each thread keeps
// kUnroll loads in flight (see kUnroll).
template <typename T, typename I, bool kBias, bool kSelfMask>
__device__ __forceinline__ T act_one(const T* __restrict__ v, const T* __restrict__ bias,
                                     const T* __restrict__ s, I i, T x, const ChannelOf<I>& channel_of,
                                     acc_t<T> slope, acc_t<T> gain, acc_t<T> sign) {
  using A = acc_t<T>;
  A u = to_acc(x);
  if (kBias) u += to_acc(bias[channel_of(i)]);
  const bool m = kSelfMask ? (u > A(0)) : (sign * to_acc(s[i]) > A(0));
  return from_acc<T>(u * (m ? A(1) : slope) * gain);
}

template <typename T, typename I, bool kBias, bool kSelfMask>
__global__ void act_kernel(const T* __restrict__ v, const T* __restrict__ bias,
                           const T* __restrict__ s, T* __restrict__ out, I n, ChannelOf<I> channel_of,
                           acc_t<T> slope, acc_t<T> gain, acc_t<T> sign) {
  const I stride = static_cast<I>(gridDim.x) * blockDim.x;
  I i = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x;
  // n < 2^31 and stride <= 2^24 on the 32-bit path, so i + kUnroll * stride cannot wrap.
  for (; i + (kUnroll - 1) * stride < n; i += kUnroll * stride) {
    T x[kUnroll];
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) x[k] = v[i + k * stride];
#pragma unroll
    for (int k = 0; k < kUnroll; ++k)
      out[i + k * stride] = act_one<T, I, kBias, kSelfMask>(v, bias, s, i + k * stride, x[k], channel_of,
                                                            slope, gain, sign);
  }
  for (; i < n; i += stride)
    out[i] = act_one<T, I, kBias, kSelfMask>(v, bias, s, i, v[i], channel_of, slope, gain, sign);
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
// memory is a matrix [outer][period] with period = channels * inner. A block
// covers `cols` = min(period, blockDim) columns and blockDim / cols rows per
// trip (with a short period, e.g. 64 channels, one row would leave three
// quarters of the threads idle); each thread sums one column over a slice of
// the rows, the block adds its rows' sums in shared memory, then one atomic
// per column and block.
template <typename T>
__global__ void grad_reduce_columns_kernel(const T* __restrict__ u, const T* __restrict__ s,
                                           T* __restrict__ out, acc_t<T>* __restrict__ bias_grad,
                                           int64_t outer, int64_t period, int64_t inner, int cols,
                                           acc_t<T> slope, acc_t<T> gain, acc_t<T> sign) {
  using A = acc_t<T>;
  __shared__ A partial[kThreads];
  const int rows_per_trip = blockDim.x / cols;
  const int lane_col = threadIdx.x % cols, lane_row = threadIdx.x / cols;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * cols + lane_col;
  A sum = A(0);
  if (lane_row < rows_per_trip && col < period) {
    const int64_t step = static_cast<int64_t>(gridDim.y) * rows_per_trip;
    int64_t row = static_cast<int64_t>(blockIdx.y) * rows_per_trip + lane_row;
    for (; row + (kUnroll - 1) * step < outer; row += kUnroll * step) {  // kUnroll loads in flight
      T uu[kUnroll], ss[kUnroll];
#pragma unroll
      for (int k = 0; k < kUnroll; ++k) {
        uu[k] = u[(row + k * step) * period + col];
        ss[k] = s[(row + k * step) * period + col];
      }
#pragma unroll
      for (int k = 0; k < kUnroll; ++k) {
        const T r = masked_grad(uu[k], ss[k], gain, slope, sign);
        out[(row + k * step) * period + col] = r;
        sum += to_acc(r);
      }
    }
    for (; row < outer; row += step) {
      const int64_t i = row * period + col;
      const T r = masked_grad(u[i], s[i], gain, slope, sign);
      out[i] = r;
      sum += to_acc(r);
    }
  }
  partial[threadIdx.x] = sum;
  __syncthreads();
  if (lane_row == 0 && col < period) {
    for (int r = 1; r < rows_per_trip; ++r) sum += partial[r * cols + lane_col];
    atomicAdd(bias_grad + col / inner, sum);
  }
}

template <typename T, typename I>
void launch_act(const T* v, const T* bias, const T* s, T* out, const ActParams& p,
                cudaStream_t stream) {
  using A = acc_t<T>;
  const unsigned blocks = grid_for(p.n);
  const I n = static_cast<I>(p.n);
  const ChannelOf<I> ch(static_cast<I>(p.inner), static_cast<I>(p.channels));
  const A slope = static_cast<A>(p.slope), gain = static_cast<A>(p.gain), sign = static_cast<A>(p.mask_sign);
  if (bias && s) act_kernel<T, I, true, false><<<blocks, kThreads, 0, stream>>>(v, bias, s, out, n, ch, slope, gain, sign);
  else if (bias) act_kernel<T, I, true, true><<<blocks, kThreads, 0, stream>>>(v, bias, s, out, n, ch, slope, gain, sign);
  else if (s) act_kernel<T, I, false, false><<<blocks, kThreads, 0, stream>>>(v, bias, s, out, n, ch, slope, gain, sign);
  else act_kernel<T, I, false, true><<<blocks, kThreads, 0, stream>>>(v, bias, s, out, n, ch, slope, gain, sign);
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
      const int cols = static_cast<int>(period < cuda::kThreads ? period : cuda::kThreads);
      const int64_t rows_per_trip = cuda::kThreads / cols;
      const unsigned col_blocks = static_cast<unsigned>((period + cols - 1) / cols);
      // Enough row slices to give every SM work, each thread summing at least
      // 64 rows so the final atomics are a small fraction of the traffic.
      int64_t slices = (outer + 64 * rows_per_trip - 1) / (64 * rows_per_trip);
      const int64_t want = (2048 + col_blocks - 1) / col_blocks;
      if (slices > want) slices = want;
      if (slices < 1) slices = 1;
      if (slices > 65535) slices = 65535;
      dim3 grid(col_blocks, static_cast<unsigned>(slices));
      cuda::grad_reduce_columns_kernel<T><<<grid, cuda::kThreads, 0, st>>>(
          uu, ss, oo, db, outer, period, p.inner, cols, slope, gain, sign);
    }
    return cuda::launch_error();
  });
}

}  // namespace ganzoo
