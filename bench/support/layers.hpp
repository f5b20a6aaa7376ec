#pragma once
// A Gecko configuration of a shape tier and random parameters for it, for the block and model
// benchmarks.

#include <cmath>
#include <string>
#include <type_traits>

#include "gecko/cpu/rope.hpp"
#include "gecko/model/config.hpp"

#include "support/common.hpp"

namespace gecko::bench {

inline model::Config config_of(const Sizes& s, int layers) {
  model::Config c;
  c.num_layers = layers;
  c.model_dim = s.D;
  c.z_dim = s.S;
  c.value_dim = s.E;
  c.num_heads = int(s.H);
  c.ffn_hidden_dim = s.F;
  c.cema_ndim = int(s.N);
  c.chunk_size = s.C;
  c.vocab_size = s.V;
  c.timenorm_num_groups = int(s.G);
  c.validate();
  return c;
}

// A visitor for visit_*_parameters: projections N(0, 1/(3·fan_in)) as the reference's "he"
// init, the TSN priors zero, RoPE's frequencies the real ones, everything else N(0, 0.1²).
class RandomParameters {
 public:
  explicit RandomParameters(const model::Config& c) : c_(c) {}

  template <class X>
  void operator()(const std::string& name, Tensor<X>& t, const Shape& shape) {
    if constexpr (std::is_same_v<X, std::int64_t>) {
      t = Tensor<std::int64_t>(shape, 0);  // prior_count
    } else if (name.ends_with("prior_mean") || name.ends_with("prior_var")) {
      t = Tensor<X>(shape);
    } else if (name == "rope.freqs") {
      t = cpu::rope_frequencies<X>(int(c_.head_dim()), c_.rope_base);
    } else {
      const bool projection = shape.rank == 2 && name.ends_with(".weight");  // (out, in)
      const double scale = projection ? 1.0 / std::sqrt(3.0 * double(shape[1])) : 0.1;
      t = random_tensor<X>(shape, seed_++, scale);
    }
  }

 private:
  model::Config c_;
  std::uint32_t seed_ = 100;
};

}  // namespace gecko::bench
