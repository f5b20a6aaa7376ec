#pragma once
// Linear layer on the GPU (spec §1), the device twin of cpu::linear: y = x·Wᵀ + b with W stored
// (out, in) as in PyTorch, x (..., in) → y (..., out). x, W, b and y hold T in {float, bfloat16,
// float16}; products accumulate in float32 (float inputs stay float32, no TF32, so that a float
// model meets the golden tolerance) and y is rounded to T once, after the bias.
//
// Through cuBLASLt (cuda/blas.cuh). Epilogues: the bias is cuBLASLt's BIAS epilogue, and
// Accumulate::Yes adds the product to what y holds (beta = 1), which fuses a sum of two
// projections, y = x1·W1ᵀ + b1 + x2·W2ᵀ, into the second GEMM. cuBLASLt has no SiLU epilogue:
// SiLU and the gates run in the elementwise expressions that consume the GEMM outputs
// (cuda/model.cuh), one pass each, fused with whatever else that pass computes.
// Bound: tensor-core (16-bit) or FFMA (float32) throughput for calls of hundreds of tokens and
// more; weight bandwidth for single-token steps (every weight is read once per call).

#include <cuda_runtime.h>

#include <cstdint>

#include "gecko/core/dtype.hpp"
#include "gecko/core/error.hpp"
#include "gecko/core/shape.hpp"
#include "gecko/core/tensor.hpp"
#include "gecko/cuda/blas.cuh"
#include "gecko/cuda/group_norm.cuh"  // device-view checks

namespace gecko::cuda {

enum class Accumulate : bool { No = false, Yes = true };

template <class T>
struct BlasType;
template <>
struct BlasType<float> {
  static constexpr cudaDataType_t value = CUDA_R_32F;
};
template <>
struct BlasType<bfloat16> {
  static constexpr cudaDataType_t value = CUDA_R_16BF;
};
template <>
struct BlasType<float16> {
  static constexpr cudaDataType_t value = CUDA_R_16F;
};

// x (..., in); weight (out, in); bias (out) or a default TensorView (none); y (..., out), not
// overlapping x or weight. Runs on blas.stream(). With Accumulate::Yes, y += x·Wᵀ (+ b).
template <class T>
void linear(TensorView<const T> x, TensorView<const T> weight, TensorView<const T> bias,
            TensorView<T> y, BlasHandle& blas, Accumulate accumulate = Accumulate::No) {
  constexpr const char* op = "cuda::linear";
  detail::require_device(op, "x", x);
  require(x.rank() >= 1, op, ": x must have shape (..., in), got ", x.shape.str());
  detail::require_device(op, "weight", weight);
  require(weight.rank() == 2, op, ": weight must have shape (out, in), got ", weight.shape.str());
  const std::int64_t out = weight.shape[0], in = weight.shape[1];
  require(in > 0, op, ": weight has shape ", weight.shape.str(), ": in must be positive");
  require(x.shape[x.rank() - 1] == in, op, ": x has shape ", x.shape.str(), " but weight has shape ",
          weight.shape.str(), ": the last dimension of x must be in = ", in);
  const bool has_bias = detail::optional_device(op, "bias", bias, Shape{out});
  detail::require_device(op, "y", y);
  Shape expected = x.shape;
  expected[expected.rank - 1] = out;
  check_shape(op, "y", y.shape, expected);
  blas.gemm_xwt(BlasType<T>::value, x.data, weight.data, y.data, x.numel() / in, out, in,
                {has_bias ? bias.data : nullptr, accumulate == Accumulate::Yes});
}

}  // namespace gecko::cuda
