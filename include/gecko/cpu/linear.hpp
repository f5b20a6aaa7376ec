#pragma once
// Linear layer (spec §1): y = x·Wᵀ + b, with W stored (out, in) as in PyTorch, so checkpoints load
// without transposing. x may have any leading dimensions: (..., in) → (..., out).

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>

#include "gecko/core/error.hpp"
#include "gecko/core/shape.hpp"
#include "gecko/core/tensor.hpp"
#include "gecko/core/threads.hpp"

namespace gecko::cpu {

// Rows of x per product. The blocks are split over threads; their size is fixed, so that every row
// is computed by the same product (Eigen's kernels sum a row differently depending on where it
// falls in the block) whatever the number of threads.
inline constexpr std::int64_t kLinearRowBlock = 512;

// x (..., in); weight (out, in); bias (out) or nullptr. Returns (..., out).
template <class T>
Tensor<T> linear(const Tensor<T>& x, const Tensor<T>& weight, const Tensor<T>* bias = nullptr) {
  constexpr const char* op = "linear";
  require(!x.empty() && x.rank() >= 1, op, ": x must have shape (..., in), got ", x.shape().str());
  require(!weight.empty() && weight.rank() == 2, op, ": weight must have shape (out, in), got ",
          weight.shape().str());
  const std::int64_t in = weight.dim(1), out = weight.dim(0);
  require(x.dim(x.rank() - 1) == in, op, ": x has shape ", x.shape().str(),
          " but weight has shape ", weight.shape().str(), ": the last dimension of x must be in = ",
          in);
  if (bias) check_shape(op, "bias", bias->shape(), Shape{out});

  Shape y_shape = x.shape();
  y_shape[y_shape.rank - 1] = out;
  auto y = Tensor<T>::uninitialized(y_shape);
  const std::int64_t rows = x.size() / in;
  using RowMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Eigen::Map<const RowMajor> X(x.data(), rows, in);
  Eigen::Map<const RowMajor> W(weight.data(), out, in);
  Eigen::Map<RowMajor> Y(y.data(), rows, out);
  const std::int64_t blocks = (rows + kLinearRowBlock - 1) / kLinearRowBlock;
  parallel_for(blocks, 2.0 * double(rows) * double(in) * double(out), [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t blk = b0; blk < b1; ++blk) {
      const std::int64_t r0 = blk * kLinearRowBlock, n = std::min(kLinearRowBlock, rows - r0);
      auto Yb = Y.middleRows(r0, n);
      if (bias) {  // the product accumulates onto the bias: no separate pass over y
        Yb.rowwise() = Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(bias->data(), out);
        Yb.noalias() += X.middleRows(r0, n) * W.transpose();
      } else {
        Yb.noalias() = X.middleRows(r0, n) * W.transpose();
      }
    }
  });
  return y;
}

}  // namespace gecko::cpu
