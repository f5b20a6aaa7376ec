#pragma once
// Group RMS norm and group layer norm (spec §7). The last dimension F of x is split into `groups`
// contiguous blocks of F/groups channels; each (token, group) is normalised on its own.
//   RMS: y = x · ρ · g,            ρ = 1/sqrt(mean(x²) + eps)
//   LN:  y = (x − μ) · ρ · g + b,  ρ = 1/sqrt(mean((x − μ)²) + eps)   (population variance)
// The stored weight w is an offset: the scale is g = 1 + w, so a zero weight is the identity
// scale. A null weight (or bias) means that part of the affine map is absent.
// Gecko uses: mega.rmsnorm (RMS over D, affine), mega.znorm (RMS over S with H groups = per head,
// no affine), nffn.norm (LN over D, affine).

#include <Eigen/Core>
#include <type_traits>

#include "gecko/core/error.hpp"
#include "gecko/core/shape.hpp"
#include "gecko/core/tensor.hpp"

namespace gecko::cpu {

namespace detail {

template <class T>
using GroupRows = Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

template <class T>
void check_group_norm(const char* op, const Tensor<T>& x, int groups, double eps,
                      const Tensor<T>* weight, const Tensor<T>* bias) {
  require(!x.empty() && x.rank() >= 1, op, ": x must have at least one dimension (..., F)");
  const std::int64_t F = x.dim(x.rank() - 1);
  require(F > 0, op, ": the feature size F (last dimension of x) must be positive");
  require(groups > 0, op, ": groups must be positive, got ", groups);
  require(F % groups == 0, op, ": the feature size F = ", F, " must be a multiple of groups = ",
          groups);
  require(eps >= 0, op, ": eps must be non-negative, got ", eps);
  if (weight) check_shape(op, "weight", weight->shape(), Shape{F});
  if (bias) check_shape(op, "bias", bias->shape(), Shape{F});
}

// y (tokens, F) ← y · (1 + w) + b, each part only where given.
template <class T>
void apply_group_norm_affine(Tensor<T>& y, const Tensor<T>* weight, const Tensor<T>* bias) {
  const std::int64_t F = y.dim(y.rank() - 1);
  Eigen::Map<GroupRows<T>> Y(y.data(), y.size() / F, F);
  if (weight) {
    Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>> w(weight->data(), F);
    Y.rowwise() *= (T(1) + w);
  }
  if (bias) {
    Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>> b(bias->data(), F);
    Y.rowwise() += b;
  }
}

}  // namespace detail

// (Optional inputs are non-deduced so that a bare nullptr can be passed.)
// x (..., F) → y (..., F). weight (F) is the raw stored weight (scale 1 + weight); nullptr = none.
template <class T>
Tensor<T> group_rms_norm(const Tensor<T>& x, int groups, double eps,
                         const std::type_identity_t<Tensor<T>>* weight) {
  detail::check_group_norm<T>("group_rms_norm", x, groups, eps, weight, nullptr);
  const std::int64_t F = x.dim(x.rank() - 1), group_size = F / groups;
  const std::int64_t rows = x.size() / group_size;  // one row per (token, group)
  Tensor<T> y(x.shape());
  Eigen::Map<const detail::GroupRows<T>> X(x.data(), rows, group_size);
  Eigen::Map<detail::GroupRows<T>> Y(y.data(), rows, group_size);
  const Eigen::Array<T, Eigen::Dynamic, 1> rho = (X.square().rowwise().mean() + T(eps)).rsqrt();
  Y = X.colwise() * rho;
  detail::apply_group_norm_affine<T>(y, weight, nullptr);
  return y;
}

// x (..., F) → y (..., F). weight (F) raw (scale 1 + weight), bias (F); either may be nullptr.
template <class T>
Tensor<T> group_layer_norm(const Tensor<T>& x, int groups, double eps,
                           const std::type_identity_t<Tensor<T>>* weight,
                           const std::type_identity_t<Tensor<T>>* bias) {
  detail::check_group_norm<T>("group_layer_norm", x, groups, eps, weight, bias);
  const std::int64_t F = x.dim(x.rank() - 1), group_size = F / groups;
  const std::int64_t rows = x.size() / group_size;  // one row per (token, group)
  Tensor<T> y(x.shape());
  Eigen::Map<const detail::GroupRows<T>> X(x.data(), rows, group_size);
  Eigen::Map<detail::GroupRows<T>> Y(y.data(), rows, group_size);
  // Two passes (mean, then the spread around it) avoid the cancellation of E[x²] − E[x]².
  const Eigen::Array<T, Eigen::Dynamic, 1> mu = X.rowwise().mean();
  Y = X.colwise() - mu;
  const Eigen::Array<T, Eigen::Dynamic, 1> rho = (Y.square().rowwise().mean() + T(eps)).rsqrt();
  Y.colwise() *= rho;
  detail::apply_group_norm_affine<T>(y, weight, bias);
  return y;
}

}  // namespace gecko::cpu
