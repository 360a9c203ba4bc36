// Helpers shared by the CUDA kernels: accumulation types, conversions that do
// not rely on the half/bfloat16 operators (PyTorch builds with
// __CUDA_NO_HALF_OPERATORS__ and friends), dtype dispatch, launch sizes and
// warp/block sums. CUDA headers only: csrc/check_nvcc.sh compiles this
// without torch.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "fused_ops.h"

namespace ganzoo {
namespace cuda {

constexpr int kThreads = 256;

template <typename T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };
template <typename T> using acc_t = typename AccOf<T>::type;

__device__ __forceinline__ float to_acc(float x) { return x; }
__device__ __forceinline__ double to_acc(double x) { return x; }
__device__ __forceinline__ float to_acc(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_acc(acc_t<T> x);
template <> __device__ __forceinline__ float from_acc<float>(float x) { return x; }
template <> __device__ __forceinline__ double from_acc<double>(double x) { return x; }
template <> __device__ __forceinline__ __half from_acc<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

template <typename T> struct Tag { using type = T; };

template <typename F>
const char* dispatch(DType dtype, F&& f) {
  switch (dtype) {
    case DType::Float32: return f(Tag<float>{});
    case DType::Float64: return f(Tag<double>{});
    case DType::Float16: return f(Tag<__half>{});
    case DType::BFloat16: return f(Tag<__nv_bfloat16>{});
  }
  return "ganzoo: unsupported dtype";
}

inline const char* launch_error() {
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

// Blocks for a grid-stride loop over n items: enough to fill any current GPU,
// capped so each thread handles several items.
inline unsigned grid_for(int64_t n, int threads = kThreads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 65536 ? 65536 : blocks));
}

template <typename A>
__device__ __forceinline__ A warp_sum(A v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// Sum over a block whose size is a multiple of 32; the result is valid in
// thread 0. Call once per kernel (it uses one shared buffer).
template <typename A>
__device__ __forceinline__ A block_sum(A v) {
  __shared__ A warp_sums[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < static_cast<int>(blockDim.x >> 5) ? warp_sums[lane] : A(0);
    v = warp_sum(v);
  }
  return v;
}

// Loads kept in flight per thread by the streaming loops below. A kernel that
// reads one tensor with one load per loop trip reached only 66-70% of the
// copy bandwidth on an H200 (not enough bytes in flight); two streams, 90%.
constexpr int kUnroll = 4;

// Division by a run-time divisor with a multiply-high, an add and a shift
// (Granlund & Montgomery 1994) instead of the ~20 instructions of an integer
// division: the channel index of every element costs two divisions.
// Valid for dividends and divisors below 2^31 (the 32-bit index path).
struct FastDivider32 {
  uint32_t magic = 1, shift = 0;
  FastDivider32() = default;
  explicit FastDivider32(uint32_t divisor) {
    if (divisor == 0) return;  // unused (no bias): any value would do, but never divide by 0 here
    while (shift < 31 && (uint32_t(1) << shift) < divisor) ++shift;
    magic = static_cast<uint32_t>(((uint64_t(1) << 32) * ((uint64_t(1) << shift) - divisor)) / divisor + 1);
  }
  __device__ __forceinline__ uint32_t div(uint32_t n) const { return (__umulhi(n, magic) + n) >> shift; }
};

// The channel of flat index i of a tensor viewed as [outer][channels][inner]:
// (i / inner) % channels, with fast divisions on the 32-bit path.
template <typename I> struct ChannelOf {
  I inner, channels;
  ChannelOf(I inner_, I channels_) : inner(inner_), channels(channels_) {}
  __device__ __forceinline__ I operator()(I i) const { return (i / inner) % channels; }
};
template <> struct ChannelOf<uint32_t> {
  FastDivider32 by_inner, by_channels;
  uint32_t channels;
  ChannelOf(uint32_t inner, uint32_t channels_) : by_inner(inner), by_channels(channels_), channels(channels_) {}
  __device__ __forceinline__ uint32_t operator()(uint32_t i) const {
    const uint32_t q = by_inner.div(i);
    return q - by_channels.div(q) * channels;
  }
};

}  // namespace cuda
}  // namespace ganzoo
