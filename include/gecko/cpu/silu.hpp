#pragma once
// SiLU (spec §1): silu(x) = x · σ(x) = x / (1 + e^(−x)), elementwise; and the gated form
// silu(x) ⊙ g of the SwiGLU FFN. double computes exactly that formula. float, where the two
// SiLU passes of a block cost as much as its CEMA or more (docs/performance.md, the small block),
// uses detail::silu_float below: the same function without a libm call, so that the compiler
// vectorises the loop, and an AVX2 + FMA copy of the loop chosen at run time where the CPU has
// them (3-4x faster than glibc's scalar expf there; at the baseline SSE2 target 1.2x).

#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "gecko/core/error.hpp"
#include "gecko/core/shape.hpp"
#include "gecko/core/tensor.hpp"
#include "gecko/core/threads.hpp"

namespace gecko::cpu {

namespace detail {

// x · σ(x) for float. σ comes from e = e^(−|x|), which cannot overflow: σ = 1/(1 + e) for x ≥ 0,
// e/(1 + e) below. e^(−a) = 2^(−k) · e^r with k = round(a / ln 2) and |r| ≤ ln 2 / 2 (ln 2 split
// in two parts, Cody-Waite), e^r by Cephes' expf polynomial; |x| is capped at 87, where σ is
// within 2e-38 of 0 or 1. Bit operations on integers stand in for float compares and branches,
// which GCC does not turn into vector selects under its default -ftrapping-math. Measured within
// 2.5e-7 relative of x / (1 + e^−x) in double for 1e-30 ≤ |x| ≤ 80 (every 13th float).
[[gnu::always_inline]] inline float silu_float(float x) {
  const std::int32_t bits = std::bit_cast<std::int32_t>(x);
  constexpr std::int32_t kCap = 0x42ae0000;  // 87.0f
  const std::int32_t abs_bits = (bits & 0x7fffffff) < kCap ? (bits & 0x7fffffff) : kCap;
  const float a = std::bit_cast<float>(abs_bits);
  const std::int32_t k = std::int32_t(a * 1.44269504088896341f + 0.5f);  // a ≥ 0: truncation rounds
  const float fk = float(k);
  const float r = (fk * 0.693359375f - a) + fk * -2.12194440e-4f;  // −a + k·ln 2
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.f;                                          // e^r
  const float e = p * std::bit_cast<float>((127 - k) << 23);          // · 2^(−k), k ≤ 126
  const float inv = 1.f / (1.f + e);
  const std::int32_t negative = bits >> 31;                           // all ones where x < 0
  const float sigma = std::bit_cast<float>((std::bit_cast<std::int32_t>(e * inv) & negative) |
                                           (std::bit_cast<std::int32_t>(inv) & ~negative));
  return x * sigma;
}

template <class T>
[[gnu::always_inline]] inline T silu_value(T x) {
  if constexpr (std::is_same_v<T, float>)
    return silu_float(x);
  else
    return x / (T(1) + std::exp(-x));
}

// GCC vectorises such loops by itself at -O3 only: at -O2 its "very cheap" cost model turns this
// one down, and the scalar polynomial is then 3x slower than glibc's expf. The loops below ask for
// vectorisation whatever the optimisation level. (Clang vectorises at -O2 already.)
#if defined(__GNUC__) && !defined(__clang__)
#define GECKO_SILU_VECTORISE gnu::optimize("tree-loop-vectorize", "vect-cost-model=dynamic")
#else
#define GECKO_SILU_VECTORISE
#endif

// y[i] = silu(x[i]) (· gate[i] when gate is given), i < n. Always inlined into silu_run and its
// AVX2 copy below, which compile this one loop for their targets.
template <class T>
[[gnu::always_inline]] inline void silu_loop(const T* x, const T* gate, T* y, std::int64_t n) {
  if (gate)
    for (std::int64_t i = 0; i < n; ++i) y[i] = silu_value(x[i]) * gate[i];
  else
    for (std::int64_t i = 0; i < n; ++i) y[i] = silu_value(x[i]);
}

template <class T>
[[GECKO_SILU_VECTORISE]] inline void silu_run(const T* x, const T* gate, T* y, std::int64_t n) {
  silu_loop(x, gate, y, n);
}

#if defined(__GNUC__) && defined(__x86_64__)
// The same loop compiled for AVX2 + FMA (8 floats a vector), taken where the CPU has both.
[[GECKO_SILU_VECTORISE, gnu::target("avx2,fma")]] inline void silu_run_avx2(const float* x, const float* gate,
                                                                             float* y, std::int64_t n) {
  silu_loop(x, gate, y, n);
}

inline bool cpu_has_avx2_fma() {
  static const bool has = [] {
    __builtin_cpu_init();  // may run before libgcc's own initialisation (a static constructor)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return has;
}
#endif

}  // namespace detail

// silu(x) ⊙ gate; gate (same shape as x) or nullptr for silu(x).
template <class T>
Tensor<T> silu(const Tensor<T>& x, const Tensor<T>* gate = nullptr) {
  if (gate) check_shape("silu", "gate", gate->shape(), x.shape());
  auto y = Tensor<T>::uninitialized(x.shape());
  parallel_for(x.size(), 8.0 * double(x.size()), [&](std::int64_t i0, std::int64_t i1) {
    const T* g = gate ? gate->data() + i0 : nullptr;
#if defined(__GNUC__) && defined(__x86_64__)
    if constexpr (std::is_same_v<T, float>)
      if (detail::cpu_has_avx2_fma()) return detail::silu_run_avx2(x.data() + i0, g, y.data() + i0, i1 - i0);
#endif
    detail::silu_run(x.data() + i0, g, y.data() + i0, i1 - i0);
  });
  return y;
}

}  // namespace gecko::cpu

#undef GECKO_SILU_VECTORISE
