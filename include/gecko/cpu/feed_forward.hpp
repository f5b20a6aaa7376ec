#pragma once
// Normalised feed-forward network, the second half of a block (spec §4.3 steps 15-17):
//   n   = GroupLayerNorm(x) · (1 + w) + b                       (layernorm_num_groups groups)
//   f   = fc2( silu(fc1(n)) ⊙ fc3(n) )   SwiGLU                  (fc3 present)
//         fc2( silu(fc1(n)) )             plain SiLU              (fc3 absent)
//   out = f + residual                    or  α ⊙ f + residual    (α present: rescale_nffn)
// The residual is the MEGA output y (one-hop) or the block input (two-hop); the caller picks it.

#include <cmath>
#include <cstdint>

#include "gecko/core/error.hpp"
#include "gecko/core/shape.hpp"
#include "gecko/core/tensor.hpp"
#include "gecko/core/threads.hpp"
#include "gecko/cpu/group_norm.hpp"
#include "gecko/cpu/linear.hpp"
#include "gecko/cpu/silu.hpp"

namespace gecko::cpu {

template <class T>
struct FeedForwardParams {
  Tensor<T> norm_weight, norm_bias;  // (D) raw (scale 1 + weight); both empty when !norm_affine
  Tensor<T> fc1, fc3;                // (F, D); fc3 empty = plain SiLU (swiglu off)
  Tensor<T> fc2;                     // (D, F)
  Tensor<T> alpha;                   // (D) output scale; empty = none (rescale_nffn off)
  int groups = 1;                    // layernorm_num_groups
  double eps = 1e-5;
};

// x, residual: (B, L, D) → (B, L, D).
template <class T>
Tensor<T> feed_forward(const Tensor<T>& x, const Tensor<T>& residual, const FeedForwardParams<T>& p) {
  constexpr const char* op = "feed_forward";
  require(!x.empty() && x.rank() == 3, op, ": x must have shape (B, L, D), got ", x.shape().str());
  const std::int64_t D = x.dim(2);
  check_shape(op, "residual", residual.shape(), x.shape());
  require(!p.fc1.empty() && p.fc1.rank() == 2, op, ": fc1 must have shape (F, D), got ",
          p.fc1.shape().str());
  const std::int64_t F = p.fc1.dim(0);
  check_shape(op, "fc1", p.fc1.shape(), Shape{F, D});
  if (!p.fc3.empty()) check_shape(op, "fc3", p.fc3.shape(), Shape{F, D});
  check_shape(op, "fc2", p.fc2.shape(), Shape{D, F});
  if (!p.alpha.empty()) check_shape(op, "alpha", p.alpha.shape(), Shape{D});
  require(p.norm_weight.empty() == p.norm_bias.empty(), op,
          ": norm_weight and norm_bias must both be present (norm_affine) or both absent");

  const bool affine = !p.norm_weight.empty();
  const Tensor<T> n = group_layer_norm(x, p.groups, p.eps, affine ? &p.norm_weight : nullptr,
                                       affine ? &p.norm_bias : nullptr);  // (B, L, D)
  const Tensor<T> gate = p.fc3.empty() ? Tensor<T>() : linear(n, p.fc3);               // (B, L, F)
  const Tensor<T> hidden = silu(linear(n, p.fc1), gate.empty() ? nullptr : &gate);  // (B, L, F)
  Tensor<T> out = linear(hidden, p.fc2);  // (B, L, D)
  const std::int64_t rows = out.size() / D;
  for (std::int64_t r = 0; r < rows; ++r) {
    T* o = out.data() + r * D;
    const T* res = residual.data() + r * D;
    if (p.alpha.empty())
      for (std::int64_t d = 0; d < D; ++d) o[d] = o[d] + res[d];
    else
      for (std::int64_t d = 0; d < D; ++d) o[d] = p.alpha[d] * o[d] + res[d];
  }
  return out;
}

}  // namespace gecko::cpu
