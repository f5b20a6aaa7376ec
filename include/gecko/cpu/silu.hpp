#pragma once
// SiLU (spec §1): silu(x) = x · σ(x) = x / (1 + e^(−x)), elementwise; and the gated form
// silu(x) ⊙ g of the SwiGLU FFN. (Eigen's array exp is not used: at the baseline x86-64 target
// (SSE2) it measured 20% slower than glibc's scalar expf; with AVX2 it is 3-4x faster.)

#include <cmath>
#include <cstdint>

#include "gecko/core/error.hpp"
#include "gecko/core/shape.hpp"
#include "gecko/core/tensor.hpp"
#include "gecko/core/threads.hpp"

namespace gecko::cpu {

// silu(x) ⊙ gate; gate (same shape as x) or nullptr for silu(x).
template <class T>
Tensor<T> silu(const Tensor<T>& x, const Tensor<T>* gate = nullptr) {
  if (gate) check_shape("silu", "gate", gate->shape(), x.shape());
  auto y = Tensor<T>::uninitialized(x.shape());
  parallel_for(x.size(), 8.0 * double(x.size()), [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t i = i0; i < i1; ++i) {
      const T s = x[i] / (T(1) + std::exp(-x[i]));
      y[i] = gate ? s * (*gate)[i] : s;
    }
  });
  return y;
}

}  // namespace gecko::cpu
