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
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "gecko/core/error.hpp"
#include "gecko/core/shape.hpp"
#include "gecko/core/tensor.hpp"
#include "gecko/core/threads.hpp"

namespace gecko::cpu {

namespace detail {

template <class T>
using GroupRow = Eigen::Array<T, Eigen::Dynamic, 1>;

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

// Calls f(x_group, y_group, g_group, b_group) for every (token, group) of x (..., F), each an
// Eigen array of F/groups channels; g = 1 + weight and b = bias are empty where absent. Tokens are
// split over threads; `per_element` is the work of one channel (for the split).
template <class T, class F>
Tensor<T> map_groups(const Tensor<T>& x, int groups, const std::type_identity_t<Tensor<T>>* weight,
                     const std::type_identity_t<Tensor<T>>* bias, double per_element, F&& f) {
  const std::int64_t features = x.dim(x.rank() - 1), n = features / groups;
  const std::int64_t tokens = x.size() / features;
  GroupRow<T> scale;
  if (weight) scale = T(1) + Eigen::Map<const GroupRow<T>>(weight->data(), features);
  auto y = Tensor<T>::uninitialized(x.shape());
  parallel_for(tokens, per_element * double(x.size()), [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r)
      for (std::int64_t k = 0; k < groups; ++k) {
        const std::int64_t at = r * features + k * n;
        using ConstGroup = Eigen::Map<const GroupRow<T>>;
        f(ConstGroup(x.data() + at, n), Eigen::Map<GroupRow<T>>(y.data() + at, n),
          ConstGroup(weight ? scale.data() + k * n : nullptr, weight ? n : 0),
          ConstGroup(bias ? bias->data() + k * n : nullptr, bias ? n : 0));
      }
  });
  return y;
}

}  // namespace detail

// (Optional inputs are non-deduced so that a bare nullptr can be passed.)
// x (..., F) → y (..., F). weight (F) is the raw stored weight (scale 1 + weight); nullptr = none.
template <class T>
Tensor<T> group_rms_norm(const Tensor<T>& x, int groups, double eps,
                         const std::type_identity_t<Tensor<T>>* weight) {
  detail::check_group_norm<T>("group_rms_norm", x, groups, eps, weight, nullptr);
  return detail::map_groups(x, groups, weight, nullptr, 4, [eps](auto xg, auto yg, auto g, auto) {
    const T rho = T(1) / std::sqrt(xg.square().mean() + T(eps));
    if (g.size() > 0)
      yg = (xg * rho) * g;
    else
      yg = xg * rho;
  });
}

// x (..., F) → y (..., F). weight (F) raw (scale 1 + weight), bias (F); either may be nullptr.
template <class T>
Tensor<T> group_layer_norm(const Tensor<T>& x, int groups, double eps,
                           const std::type_identity_t<Tensor<T>>* weight,
                           const std::type_identity_t<Tensor<T>>* bias) {
  detail::check_group_norm<T>("group_layer_norm", x, groups, eps, weight, bias);
  return detail::map_groups(x, groups, weight, bias, 7, [eps](auto xg, auto yg, auto g, auto b) {
    // Two passes (mean, then the spread around it) avoid the cancellation of E[x²] − E[x]².
    yg = xg - xg.mean();
    const T rho = T(1) / std::sqrt(yg.square().mean() + T(eps));
    if (g.size() > 0 && b.size() > 0)
      yg = (yg * rho) * g + b;
    else if (g.size() > 0)
      yg = (yg * rho) * g;
    else if (b.size() > 0)
      yg = yg * rho + b;
    else
      yg *= rho;
  });
}

}  // namespace gecko::cpu
