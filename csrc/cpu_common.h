// Helpers shared by the CPU kernels: accumulation types, dtype dispatch and
// walking a flat range of [outer][channels][inner] memory in runs that share a
// channel. No torch beyond c10's scalar types and ATen's thread pool.
#pragma once

#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cstdint>

#include "fused_ops.h"

namespace ganzoo {
namespace cpu {

// Elements per parallel task: ATen's GRAIN_SIZE, below which threading costs
// more than it saves.
constexpr int64_t kGrain = 32768;

// Reduced-precision types are computed in float, double in double.
template <typename T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };
template <typename T> using acc_t = typename AccOf<T>::type;

template <typename T> struct Tag { using type = T; };

template <typename F>
void dispatch(DType dtype, F&& f) {
  switch (dtype) {
    case DType::Float32: f(Tag<float>{}); break;
    case DType::Float64: f(Tag<double>{}); break;
    case DType::Float16: f(Tag<c10::Half>{}); break;
    case DType::BFloat16: f(Tag<c10::BFloat16>{}); break;
  }
}

// Calls fn(begin, end) for the pieces of [begin, end) cut at multiples of
// `period`, with the index of the period each piece lies in.
template <typename F>
inline void for_periods(int64_t begin, int64_t end, int64_t period, F&& fn) {
  int64_t i = begin;
  while (i < end) {
    const int64_t k = i / period;
    const int64_t stop = std::min(end, (k + 1) * period);
    fn(i, stop, k);
    i = stop;
  }
}

}  // namespace cpu
}  // namespace ganzoo
