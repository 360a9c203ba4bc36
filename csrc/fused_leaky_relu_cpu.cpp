// CPU kernels of fused_leaky_relu: the activation (also its double backward)
// and the backward with the bias gradient reduced in the same pass.
//
// Threads: at::parallel_for over flat chunks of [outer][channels][inner]
// memory. Vectorisation: the work is done by span functions that take
// __restrict__ pointers and their constants by value (so nothing can alias
// the output and the compiler keeps constants in registers), select a factor
// rather than branch, and sum through fixed-width lanes (no -ffast-math).
#include <vector>

#include "cpu_common.h"

namespace ganzoo {
namespace cpu {
namespace {

constexpr int kLanes = 8;

// Channel runs at least this long get a loop each (NCHW: inner = H*W);
// shorter ones (channels_last: 1) read the bias from a per-row table.
constexpr int64_t kMinRun = 16;

enum class Bias { None, Scalar, Row };

// out[i] = (u * (m ? 1 : slope)) * gain with u = v[i] + bias (u * 1 == u: the
// reference's value), m = u > 0 or sign * s[i] > 0.
template <typename T, Bias kBias, bool kSelfMask>
inline void act_span(const T* __restrict__ v, const T* __restrict__ s, T* __restrict__ out,
                     int64_t len, acc_t<T> bias, const acc_t<T>* __restrict__ bias_row,
                     acc_t<T> slope, acc_t<T> gain, acc_t<T> sign) {
  using A = acc_t<T>;
  for (int64_t i = 0; i < len; ++i) {
    A u = static_cast<A>(v[i]);
    if (kBias == Bias::Scalar) u += bias;
    if (kBias == Bias::Row) u += bias_row[i];
    const bool m = kSelfMask ? (u > A(0)) : (sign * static_cast<A>(s[i]) > A(0));
    out[i] = static_cast<T>(u * (m ? A(1) : slope) * gain);
  }
}

// The backward's element: (u * gain) * (m ? 1 : slope), the reference's order.
template <typename T>
inline T grad_element(T u, T s, acc_t<T> gain, acc_t<T> slope, acc_t<T> sign) {
  using A = acc_t<T>;
  const A g = static_cast<A>(u) * gain;
  return static_cast<T>(g * ((sign * static_cast<A>(s) > A(0)) ? A(1) : slope));
}

template <typename T>
inline void grad_span(const T* __restrict__ u, const T* __restrict__ s, T* __restrict__ out,
                      int64_t len, acc_t<T> gain, acc_t<T> slope, acc_t<T> sign) {
  for (int64_t i = 0; i < len; ++i) out[i] = grad_element(u[i], s[i], gain, slope, sign);
}

// grad_span that also returns the sum of the (rounded) outputs.
template <typename T>
inline double grad_span_sum(const T* __restrict__ u, const T* __restrict__ s, T* __restrict__ out,
                            int64_t len, acc_t<T> gain, acc_t<T> slope, acc_t<T> sign) {
  using A = acc_t<T>;
  A lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= len; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const T r = grad_element(u[i + k], s[i + k], gain, slope, sign);
      out[i + k] = r;
      lanes[k] += static_cast<A>(r);
    }
  }
  double sum = 0.0;
  for (; i < len; ++i) {
    const T r = grad_element(u[i], s[i], gain, slope, sign);
    out[i] = r;
    sum += static_cast<double>(static_cast<A>(r));
  }
  for (int k = 0; k < kLanes; ++k) sum += static_cast<double>(lanes[k]);
  return sum;
}

// grad_span that adds each output to acc[i] (per-thread column sums).
template <typename T>
inline void grad_span_accumulate(const T* __restrict__ u, const T* __restrict__ s,
                                 T* __restrict__ out, double* __restrict__ acc, int64_t len,
                                 acc_t<T> gain, acc_t<T> slope, acc_t<T> sign) {
  using A = acc_t<T>;
  for (int64_t i = 0; i < len; ++i) {
    const T r = grad_element(u[i], s[i], gain, slope, sign);
    out[i] = r;
    acc[i] += static_cast<double>(static_cast<A>(r));
  }
}

template <typename T, bool kSelfMask>
void act_kernel(const T* v, const T* bias, const T* s, T* out, const ActParams& p) {
  using A = acc_t<T>;
  const A slope = static_cast<A>(p.slope), gain = static_cast<A>(p.gain);
  const A sign = static_cast<A>(p.mask_sign);
  const int64_t inner = p.inner, channels = p.channels;
  if (!bias) {
    at::parallel_for(0, p.n, kGrain, [=](int64_t b, int64_t e) {
      act_span<T, Bias::None, kSelfMask>(v + b, s ? s + b : nullptr, out + b, e - b, A(0), nullptr,
                                         slope, gain, sign);
    });
    return;
  }
  if (inner >= kMinRun) {
    at::parallel_for(0, p.n, kGrain, [=](int64_t b, int64_t e) {
      for_periods(b, e, inner, [=](int64_t rb, int64_t re, int64_t row) {
        act_span<T, Bias::Scalar, kSelfMask>(v + rb, s ? s + rb : nullptr, out + rb, re - rb,
                                             static_cast<A>(bias[row % channels]), nullptr, slope,
                                             gain, sign);
      });
    });
    return;
  }
  // Short runs: expand the bias over one [channels][inner] row once.
  const int64_t period = channels * inner;
  std::vector<A> table(period);
  for (int64_t k = 0; k < period; ++k) table[k] = static_cast<A>(bias[k / inner]);
  const A* row_bias = table.data();
  at::parallel_for(0, p.n, kGrain, [=](int64_t b, int64_t e) {
    for_periods(b, e, period, [=](int64_t rb, int64_t re, int64_t row) {
      act_span<T, Bias::Row, kSelfMask>(v + rb, s ? s + rb : nullptr, out + rb, re - rb, A(0),
                                        row_bias + (rb - row * period), slope, gain, sign);
    });
  });
}

template <typename T>
void grad_kernel(const T* u, const T* s, T* out, void* bias_grad, const ActParams& p) {
  using A = acc_t<T>;
  const A slope = static_cast<A>(p.slope), gain = static_cast<A>(p.gain);
  const A sign = static_cast<A>(p.mask_sign);
  if (!bias_grad) {
    at::parallel_for(0, p.n, kGrain, [=](int64_t b, int64_t e) {
      grad_span(u + b, s + b, out + b, e - b, gain, slope, sign);
    });
    return;
  }
  // The bias gradient sums the rounded outputs (what the reference sums) in
  // double: per-thread partials, combined in a fixed order at the end.
  const int64_t inner = p.inner, channels = p.channels;
  const bool long_runs = inner >= kMinRun;
  const int64_t period = long_runs ? channels : channels * inner;
  const int threads = at::get_num_threads();
  std::vector<double> partial(static_cast<size_t>(threads) * period, 0.0);
  double* partials = partial.data();
  if (long_runs) {
    at::parallel_for(0, p.n, kGrain, [=](int64_t b, int64_t e) {
      double* mine = partials + static_cast<int64_t>(at::get_thread_num()) * period;
      for_periods(b, e, inner, [=](int64_t rb, int64_t re, int64_t row) {
        mine[row % channels] += grad_span_sum(u + rb, s + rb, out + rb, re - rb, gain, slope, sign);
      });
    });
  } else {
    at::parallel_for(0, p.n, kGrain, [=](int64_t b, int64_t e) {
      double* mine = partials + static_cast<int64_t>(at::get_thread_num()) * period;
      for_periods(b, e, period, [=](int64_t rb, int64_t re, int64_t row) {
        grad_span_accumulate(u + rb, s + rb, out + rb, mine + (rb - row * period), re - rb, gain,
                             slope, sign);
      });
    });
  }
  const int64_t per_channel = long_runs ? 1 : inner;
  A* db = static_cast<A*>(bias_grad);
  for (int64_t c = 0; c < channels; ++c) {
    double sum = 0.0;
    for (int t = 0; t < threads; ++t)
      for (int64_t j = 0; j < per_channel; ++j) sum += partial[t * period + c * per_channel + j];
    db[c] = static_cast<A>(sum);
  }
}

}  // namespace
}  // namespace cpu

void act_cpu(DType dtype, const void* v, const void* bias, const void* mask_src, void* out,
             const ActParams& p) {
  cpu::dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* vv = static_cast<const T*>(v);
    const T* bb = static_cast<const T*>(bias);
    const T* ss = static_cast<const T*>(mask_src);
    T* oo = static_cast<T*>(out);
    if (ss) cpu::act_kernel<T, false>(vv, bb, ss, oo, p);
    else cpu::act_kernel<T, true>(vv, bb, ss, oo, p);
  });
}

void grad_cpu(DType dtype, const void* u, const void* mask_src, void* out, void* bias_grad,
              const ActParams& p) {
  cpu::dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    cpu::grad_kernel<T>(static_cast<const T*>(u), static_cast<const T*>(mask_src),
                        static_cast<T*>(out), bias_grad, p);
  });
}

}  // namespace ganzoo
