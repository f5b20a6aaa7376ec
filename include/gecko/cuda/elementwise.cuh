#pragma once
// The elementwise kernel: a grid-stride loop that evaluates an expression tree per element and
// stores it once. It is a template over the expression, so each distinct expression compiles to
// its own fused kernel with no temporaries. Bound: memory bandwidth (one read per input element,
// one write per output element); the column index costs one 64-bit modulo, paid only when a row
// leaf is present.

#include <cuda_runtime.h>

#include <cstdint>

#include "gecko/expr/assign.hpp"

namespace gecko::cuda {

// 256 threads x 8 resident blocks = 2048 threads, the per-SM limit of sm_80 and sm_90, so one
// wave of max_blocks fills every SM.
inline constexpr int kElementwiseThreads = 256;
inline constexpr int kElementwiseBlocksPerSm = 8;

template <class T, class E>
__global__ void __launch_bounds__(kElementwiseThreads)
elementwise_kernel(T* out, std::int64_t n, std::int64_t cols, E e) {
  const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    std::int64_t col = 0;
    if constexpr (E::uses_col) col = i % cols;
    out[i] = expr::store_as<T>(e.eval(i, col));
  }
}

}  // namespace gecko::cuda
