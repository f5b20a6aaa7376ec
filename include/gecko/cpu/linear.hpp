#pragma once
// Linear layer (spec §1): y = x·Wᵀ + b, with W stored (out, in) as in PyTorch, so checkpoints load
// without transposing. x may have any leading dimensions: (..., in) → (..., out).

#include <Eigen/Core>
#include <cstdint>

#include "gecko/core/error.hpp"
#include "gecko/core/shape.hpp"
#include "gecko/core/tensor.hpp"

namespace gecko::cpu {

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
  if (bias) {  // the product accumulates onto the bias: no separate pass over y
    Y.rowwise() = Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(bias->data(), out);
    Y.noalias() += X * W.transpose();
  } else {
    Y.noalias() = X * W.transpose();
  }
  return y;
}

}  // namespace gecko::cpu
