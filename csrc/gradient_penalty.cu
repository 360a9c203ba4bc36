// CUDA kernels of the gradient penalty: the interpolation x_hat in one pass,
// the per-sample squared norms (warp sums + one atomic per warp), the norms
// and the penalty (one small block), and the penalty's backward in one pass.
// Grids are (chunks of a sample, samples), so no per-element division.
#include "cuda_common.cuh"

namespace ganzoo {
namespace cuda {
namespace {

// x blocks per sample: about 4 elements per thread, and at least ~2048
// blocks in all when the batch is small.
inline dim3 sample_grid(int64_t batch, int64_t per) {
  int64_t x = (per + 4 * kThreads - 1) / (4 * kThreads);
  const int64_t want = (2048 + batch - 1) / batch;
  if (x > want) x = want;
  if (x < 1) x = 1;
  if (x > 65535) x = 65535;
  const int64_t y = batch < 65535 ? batch : 65535;
  return dim3(static_cast<unsigned>(x), static_cast<unsigned>(y < 1 ? 1 : y));
}

// Multiply-add with one rounding (fma) or two (explicit round-to-nearest
// intrinsics, which nvcc never contracts).
__device__ __forceinline__ float mul_add(float a, float b, float c, bool fused) {
  return fused ? fmaf(a, b, c) : __fadd_rn(__fmul_rn(a, b), c);
}
__device__ __forceinline__ double mul_add(double a, double b, double c, bool fused) {
  return fused ? fma(a, b, c) : __dadd_rn(__dmul_rn(a, b), c);
}

// PyTorch's lerp: base + coeff * (real - fake) with (base, coeff) = (fake, w)
// for |w| < 0.5, else (real, w - 1): exact at the nearer end.
template <typename T>
__global__ void interpolate_kernel(const T* __restrict__ real, const T* __restrict__ fake,
                                   const T* __restrict__ eps, T* __restrict__ out, int64_t batch,
                                   int64_t per, bool fused) {
  using A = acc_t<T>;
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    const A w = to_acc(eps[b]);
    const bool small = fabs(static_cast<double>(w)) < 0.5;
    const A coeff = small ? w : w - A(1);
    const T* r = real + b * per;
    const T* f = fake + b * per;
    const T* base = small ? f : r;
    T* o = out + b * per;
    for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < per;
         j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const A s = to_acc(f[j]), t = to_acc(r[j]);
      o[j] = from_acc<T>(mul_add(coeff, t - s, to_acc(base[j]), fused));
    }
  }
}

template <typename T>
__global__ void sumsq_kernel(const T* __restrict__ g, acc_t<T>* __restrict__ sumsq, int64_t batch,
                             int64_t per) {
  using A = acc_t<T>;
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    const T* row = g + b * per;
    A sum = A(0);
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    for (; j + (kUnroll - 1) * stride < per; j += kUnroll * stride) {  // kUnroll loads in flight
      A x[kUnroll];
#pragma unroll
      for (int k = 0; k < kUnroll; ++k) x[k] = to_acc(row[j + k * stride]);
#pragma unroll
      for (int k = 0; k < kUnroll; ++k) sum += x[k] * x[k];
    }
    for (; j < per; j += stride) {
      const A x = to_acc(row[j]);
      sum += x * x;
    }
    sum = warp_sum(sum);
    // One atomic per warp keeps this free of shared memory between samples.
    if ((threadIdx.x & 31) == 0) atomicAdd(sumsq + b, sum);
  }
}

template <typename T>
__global__ void finalize_kernel(const acc_t<T>* __restrict__ sumsq, T* __restrict__ norms,
                                T* __restrict__ penalty, int64_t batch, acc_t<T> weight,
                                acc_t<T> center) {
  using A = acc_t<T>;
  A total = A(0);
  for (int64_t b = threadIdx.x; b < batch; b += blockDim.x) {
    const T n = from_acc<T>(sqrt(sumsq[b]));
    norms[b] = n;
    const A d = to_acc(n) - center;
    total += d * d;
  }
  total = block_sum(total);
  if (threadIdx.x == 0) penalty[0] = from_acc<T>(weight * (total / static_cast<A>(batch)));
}

template <typename T>
__global__ void penalty_backward_kernel(const T* __restrict__ dP, const T* __restrict__ g,
                                        const T* __restrict__ norms, T* __restrict__ dg,
                                        int64_t batch, int64_t per, acc_t<T> weight,
                                        acc_t<T> center) {
  using A = acc_t<T>;
  const A scale = to_acc(dP[0]) * weight * A(2) / static_cast<A>(batch);
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    const A n = to_acc(norms[b]);
    const A coef = n == A(0) ? A(0) : scale * (n - center) / n;  // subgradient 0 at n = 0
    const T* row = g + b * per;
    T* o = dg + b * per;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    for (; j + (kUnroll - 1) * stride < per; j += kUnroll * stride) {  // kUnroll loads in flight
      T x[kUnroll];
#pragma unroll
      for (int k = 0; k < kUnroll; ++k) x[k] = row[j + k * stride];
#pragma unroll
      for (int k = 0; k < kUnroll; ++k) o[j + k * stride] = from_acc<T>(coef * to_acc(x[k]));
    }
    for (; j < per; j += stride) o[j] = from_acc<T>(coef * to_acc(row[j]));
  }
}

}  // namespace
}  // namespace cuda

const char* interpolate_cuda(DType dtype, const void* real, const void* fake, const void* eps,
                             void* out, int64_t batch, int64_t per_sample, bool fma,
                             void* stream) {
  if (batch == 0 || per_sample == 0) return nullptr;
  return cuda::dispatch(dtype, [&](auto tag) -> const char* {
    using T = typename decltype(tag)::type;
    cuda::interpolate_kernel<T><<<cuda::sample_grid(batch, per_sample), cuda::kThreads, 0,
                                  static_cast<cudaStream_t>(stream)>>>(
        static_cast<const T*>(real), static_cast<const T*>(fake), static_cast<const T*>(eps),
        static_cast<T*>(out), batch, per_sample, fma);
    return cuda::launch_error();
  });
}

const char* penalty_forward_cuda(DType dtype, const void* g, void* sumsq, void* norms,
                                 void* penalty, int64_t batch, int64_t per_sample, double weight,
                                 double center, void* stream) {
  if (batch == 0) return nullptr;
  return cuda::dispatch(dtype, [&](auto tag) -> const char* {
    using T = typename decltype(tag)::type;
    using A = cuda::acc_t<T>;
    cudaStream_t st = static_cast<cudaStream_t>(stream);
    A* acc = static_cast<A*>(sumsq);
    if (per_sample > 0) {
      cuda::sumsq_kernel<T><<<cuda::sample_grid(batch, per_sample), cuda::kThreads, 0, st>>>(
          static_cast<const T*>(g), acc, batch, per_sample);
      if (const char* err = cuda::launch_error()) return err;
    }
    cuda::finalize_kernel<T><<<1, cuda::kThreads, 0, st>>>(
        acc, static_cast<T*>(norms), static_cast<T*>(penalty), batch, static_cast<A>(weight),
        static_cast<A>(center));
    return cuda::launch_error();
  });
}

const char* penalty_backward_cuda(DType dtype, const void* dP, const void* g, const void* norms,
                                  void* dg, int64_t batch, int64_t per_sample, double weight,
                                  double center, void* stream) {
  if (batch == 0 || per_sample == 0) return nullptr;
  return cuda::dispatch(dtype, [&](auto tag) -> const char* {
    using T = typename decltype(tag)::type;
    using A = cuda::acc_t<T>;
    cuda::penalty_backward_kernel<T><<<cuda::sample_grid(batch, per_sample), cuda::kThreads, 0,
                                       static_cast<cudaStream_t>(stream)>>>(
        static_cast<const T*>(dP), static_cast<const T*>(g), static_cast<const T*>(norms),
        static_cast<T*>(dg), batch, per_sample, static_cast<A>(weight), static_cast<A>(center));
    return cuda::launch_error();
  });
}

}  // namespace ganzoo
