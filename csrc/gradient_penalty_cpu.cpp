// CPU kernels of the gradient penalty: the interpolation x_hat, the
// per-sample norms with the penalty, and the penalty's backward. Same scheme
// as fused_leaky_relu_cpu.cpp: at::parallel_for over chunks, span functions
// with __restrict__ pointers and by-value constants, lane sums.
#include <cmath>
#include <vector>

#include "cpu_common.h"

namespace ganzoo {
namespace cpu {
namespace {

// PyTorch's lerp: base + coeff * (end - start) with (base, coeff) = (start, w)
// for |w| < 0.5, else (end, w - 1): exact at the nearer end. kFma: one
// rounding for the multiply-add (std::fma), else two (the build has
// -ffp-contract=off, so the compiler fuses nothing by itself).
template <typename T, bool kFma>
inline void lerp_loop(const T* __restrict__ real, const T* __restrict__ fake, T* __restrict__ out,
                      int64_t len, acc_t<T> w) {
  using A = acc_t<T>;
  const bool small = std::abs(w) < A(0.5);
  const A coeff = small ? w : w - A(1);
  const T* __restrict__ base = small ? fake : real;
  for (int64_t i = 0; i < len; ++i) {
    const A s = static_cast<A>(fake[i]), e = static_cast<A>(real[i]);
    const A b = static_cast<A>(base[i]);
    out[i] = static_cast<T>(kFma ? std::fma(coeff, e - s, b) : b + coeff * (e - s));
  }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// The baseline x86-64 ISA has no FMA instruction, so std::fma is a libm call
// per element; this clone, picked at run time, gets the vector instruction.
template <typename T>
__attribute__((target("avx2,fma"))) void lerp_loop_fma_hw(const T* __restrict__ real,
                                                           const T* __restrict__ fake,
                                                           T* __restrict__ out, int64_t len,
                                                           acc_t<T> w) {
  lerp_loop<T, true>(real, fake, out, len, w);
}

inline bool cpu_has_fma() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}
#endif

template <typename T, bool kFma>
inline void lerp_span(const T* real, const T* fake, T* out, int64_t len, acc_t<T> w) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  if (kFma && cpu_has_fma()) {
    lerp_loop_fma_hw<T>(real, fake, out, len, w);
    return;
  }
#endif
  lerp_loop<T, kFma>(real, fake, out, len, w);
}

// Sum of squares: blocks of kBlock elements in vectorisable lanes of the
// accumulation type, block sums added in double.
template <typename T>
inline double sumsq_span(const T* __restrict__ g, int64_t len) {
  using A = acc_t<T>;
  constexpr int kSumLanes = 16;
  constexpr int64_t kBlock = 512;
  double sum = 0.0;
  int64_t i = 0;
  for (; i + kBlock <= len; i += kBlock) {
    A lanes[kSumLanes] = {};
    for (int64_t j = 0; j < kBlock; j += kSumLanes) {
      for (int k = 0; k < kSumLanes; ++k) {
        const A x = static_cast<A>(g[i + j + k]);
        lanes[k] += x * x;
      }
    }
    A block = A(0);
    for (int k = 0; k < kSumLanes; ++k) block += lanes[k];
    sum += static_cast<double>(block);
  }
  for (; i < len; ++i) {
    const double x = static_cast<A>(g[i]);
    sum += x * x;
  }
  return sum;
}

template <typename T>
inline void scale_span(const T* __restrict__ g, T* __restrict__ out, int64_t len, acc_t<T> c) {
  for (int64_t i = 0; i < len; ++i) out[i] = static_cast<T>(c * static_cast<acc_t<T>>(g[i]));
}

template <typename T, bool kFma>
void interpolate_kernel(const T* real, const T* fake, const T* eps, T* out, int64_t batch,
                        int64_t per) {
  using A = acc_t<T>;
  at::parallel_for(0, batch * per, kGrain, [=](int64_t b, int64_t e) {
    for_periods(b, e, per, [=](int64_t rb, int64_t re, int64_t sample) {
      lerp_span<T, kFma>(real + rb, fake + rb, out + rb, re - rb, static_cast<A>(eps[sample]));
    });
  });
}

template <typename T>
void penalty_forward_kernel(const T* g, T* norms, T* penalty, int64_t batch, int64_t per,
                            double weight, double center) {
  using A = acc_t<T>;
  // Each sample's squares are summed in chunks (parallel even for a small
  // batch); the chunks are combined in order, in double.
  constexpr int64_t kChunk = 16384;
  const int64_t chunks = std::max<int64_t>(1, (per + kChunk - 1) / kChunk);
  std::vector<double> partial(batch * chunks, 0.0);
  double* partials = partial.data();
  at::parallel_for(0, batch * chunks, std::max<int64_t>(1, kGrain / kChunk), [=](int64_t b, int64_t e) {
    for (int64_t item = b; item < e; ++item) {
      const int64_t sample = item / chunks, part = item % chunks;
      const int64_t start = part * kChunk;
      const int64_t stop = std::min(per, start + kChunk);
      partials[item] = sumsq_span(g + sample * per + start, stop - start);
    }
  });
  double total = 0.0;
  for (int64_t sample = 0; sample < batch; ++sample) {
    double sumsq = 0.0;
    for (int64_t part = 0; part < chunks; ++part) sumsq += partial[sample * chunks + part];
    norms[sample] = static_cast<T>(std::sqrt(sumsq));
    const double d = static_cast<double>(static_cast<A>(norms[sample])) - center;
    total += d * d;
  }
  *penalty = static_cast<T>(weight * (total / static_cast<double>(batch)));
}

template <typename T>
void penalty_backward_kernel(const T* dP, const T* g, const T* norms, T* dg, int64_t batch,
                             int64_t per, double weight, double center) {
  using A = acc_t<T>;
  // d penalty / d g[b] = dP * weight * 2 (n_b - c) / B * g[b] / n_b, and the
  // subgradient 0 at n_b = 0, as PyTorch's norm backward.
  std::vector<A> coef(batch);
  const double scale = static_cast<double>(static_cast<A>(*dP)) * weight * 2.0 / static_cast<double>(batch);
  for (int64_t sample = 0; sample < batch; ++sample) {
    const double n = static_cast<A>(norms[sample]);
    coef[sample] = n == 0.0 ? A(0) : static_cast<A>(scale * (n - center) / n);
  }
  const A* coefs = coef.data();
  at::parallel_for(0, batch * per, kGrain, [=](int64_t b, int64_t e) {
    for_periods(b, e, per, [=](int64_t rb, int64_t re, int64_t sample) {
      scale_span(g + rb, dg + rb, re - rb, coefs[sample]);
    });
  });
}

}  // namespace
}  // namespace cpu

void interpolate_cpu(DType dtype, const void* real, const void* fake, const void* eps, void* out,
                     int64_t batch, int64_t per_sample, bool fma) {
  cpu::dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* r = static_cast<const T*>(real);
    const T* f = static_cast<const T*>(fake);
    const T* w = static_cast<const T*>(eps);
    if (fma) cpu::interpolate_kernel<T, true>(r, f, w, static_cast<T*>(out), batch, per_sample);
    else cpu::interpolate_kernel<T, false>(r, f, w, static_cast<T*>(out), batch, per_sample);
  });
}

void penalty_forward_cpu(DType dtype, const void* g, void* norms, void* penalty, int64_t batch,
                         int64_t per_sample, double weight, double center) {
  cpu::dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    cpu::penalty_forward_kernel<T>(static_cast<const T*>(g), static_cast<T*>(norms),
                                   static_cast<T*>(penalty), batch, per_sample, weight, center);
  });
}

void penalty_backward_cpu(DType dtype, const void* dP, const void* g, const void* norms, void* dg,
                          int64_t batch, int64_t per_sample, double weight, double center) {
  cpu::dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    cpu::penalty_backward_kernel<T>(static_cast<const T*>(dP), static_cast<const T*>(g),
                                    static_cast<const T*>(norms), static_cast<T*>(dg), batch,
                                    per_sample, weight, center);
  });
}

}  // namespace ganzoo
