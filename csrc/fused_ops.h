// Launch interface of ganzoo's fused ops, shared by the CPU kernels
// (cpu_kernels.cpp), the CUDA kernels (*.cu) and the torch bindings
// (bindings.cpp). Plain types only: no torch and no CUDA header, so the .cu
// files compile with nvcc alone (csrc/check_nvcc.sh) and the CPU build never
// sees CUDA.
//
// Layout convention: every elementwise kernel sees a dense tensor as flat
// memory [outer][channels][inner], where inner is the memory stride of the
// channel dim. That covers contiguous NCHW (inner = H*W), channels_last
// (inner = 1) and (B, F) activations (inner = 1) with one formula:
// channel(i) = (i / inner) % channels.
//
// Per-sample kernels (interpolation, penalty) see [batch][per_sample]: the
// batch dim is outermost in memory (true for contiguous and channels_last).
#pragma once

#include <cstdint>

namespace ganzoo {

enum class DType : int { Float32 = 0, Float64 = 1, Float16 = 2, BFloat16 = 3 };

// y = gain * (m ? u : u * slope) with u = v + bias[channel] (the activation,
// and its own double-backward with a saved mask), or
// dx = m ? u * gain : (u * gain) * slope (the backward). The operation order
// follows what PyTorch's eager graph `leaky_relu(x + b, slope) * gain` does,
// so fp32 results match the reference bit for bit.
struct ActParams {
  int64_t n = 0;         // number of elements
  int64_t channels = 1;  // size of the channel dim (1 without bias)
  int64_t inner = 1;     // memory stride of the channel dim
  double slope = 0.2;    // negative slope
  double gain = 1.0;
  // The mask m is "u > 0" when no mask source is given, else
  // "mask_sign * s > 0" where s is the saved tensor (the output y, whose sign
  // follows the pre-activation's when slope >= 0; mask_sign = -1 when gain < 0).
  double mask_sign = 1.0;
};

// out = act(v + bias); mask from `mask_src` (same layout as v) or, when null,
// from v + bias itself. bias: `channels` values or null.
void act_cpu(DType dtype, const void* v, const void* bias, const void* mask_src, void* out,
             const ActParams& p);

// out = masked gain of u; when bias_grad is non-null (float for Float32,
// Float16 and BFloat16, double for Float64; `channels` values) it receives the
// per-channel sum of out, reduced in the same pass.
void grad_cpu(DType dtype, const void* u, const void* mask_src, void* out, void* bias_grad,
              const ActParams& p);

// x_hat[b, j] = lerp(fake[b, j], real[b, j], eps[b]) with PyTorch's formula:
// with d = real - fake, fake + w d for |w| < 0.5, else real + (w - 1) d, the
// product and sum rounded once (fused multiply-add) when `fma`, else twice.
// PyTorch's own kernels do one or the other depending on the CPU's vector
// unit (AVX2/AVX512: fma), and the caller picks the one that reproduces them:
// a one-ulp difference in x_hat can flip a LeakyReLU mask in the critic.
void interpolate_cpu(DType dtype, const void* real, const void* fake, const void* eps, void* out,
                     int64_t batch, int64_t per_sample, bool fma);

// norms[b] = ||g[b]||_2 and penalty = weight * mean_b((norms[b] - center)^2),
// both written in `dtype` (penalty is one value).
void penalty_forward_cpu(DType dtype, const void* g, void* norms, void* penalty, int64_t batch,
                         int64_t per_sample, double weight, double center);

// dg[b, j] = dP * 2 * weight / batch * (norms[b] - center) / norms[b] * g[b, j]
// (0 where norms[b] == 0, as PyTorch's norm backward); dP: one value of `dtype`.
void penalty_backward_cpu(DType dtype, const void* dP, const void* g, const void* norms, void* dg,
                          int64_t batch, int64_t per_sample, double weight, double center);

// CUDA versions: same contracts, enqueued on `stream` (a cudaStream_t). They
// return nullptr on success, else the CUDA error string of the launch.
// bias_grad and the penalty's `sumsq` workspace (batch values of the
// accumulation type) must be zero-filled by the caller: kernels add into them.
const char* act_cuda(DType dtype, const void* v, const void* bias, const void* mask_src, void* out,
                     const ActParams& p, void* stream);
const char* grad_cuda(DType dtype, const void* u, const void* mask_src, void* out, void* bias_grad,
                      const ActParams& p, void* stream);
const char* interpolate_cuda(DType dtype, const void* real, const void* fake, const void* eps,
                             void* out, int64_t batch, int64_t per_sample, bool fma,
                             void* stream);
const char* penalty_forward_cuda(DType dtype, const void* g, void* sumsq, void* norms,
                                 void* penalty, int64_t batch, int64_t per_sample, double weight,
                                 double center, void* stream);
const char* penalty_backward_cuda(DType dtype, const void* dP, const void* g, const void* norms,
                                  void* dg, int64_t batch, int64_t per_sample, double weight,
                                  double center, void* stream);

}  // namespace ganzoo
