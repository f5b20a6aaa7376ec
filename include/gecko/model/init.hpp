#pragma once
// Seeded random initialisation of a model (spec §3.3, init_mode "he"), for training from scratch
// and for running a model without a checkpoint (benchmarks, the streaming demo). Every tensor draws
// from its own generator, seeded from the seed and the tensor's name: the same seed gives the same
// parameters, whatever the configuration flags or the order of the tensors.
//
//   linears (wv, wz, wr, wh1, wh2, fc1, fc2, fc3)  N(0, 1/(3·fan_in)), biases 0   kaiming_normal(a=√5)
//   embed.weight, output.output.weight            N(0, 1/D) truncated at ±3σ
//   cema.alpha, cema.delta                        N(0, 0.2²)
//   cema.theta                                    logit(D^(−i/D)), i = 1..D in a random order
//   cema.gamma                                    real part N(0, 1/N), imaginary part 0
//   norm weights and biases, mega.gamma/beta      0
//   nffn.alpha (rescale_nffn)                     0.1 · 0.5^layer
//   norm priors                                   count 0, mean 0, var 0 (1 for the cumulative norm)
//   rope.freqs                                    the inverse frequencies of rope_base
//
// The learned-residual CEMA of Megalodon (spec §12) instead draws gamma from N(0, 1) (it is scaled
// by 1/√N in use) and omega from N(0, 0.25²) truncated to [−1, 1].

#include <cmath>
#include <cstdint>
#include <numbers>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "gecko/core/error.hpp"
#include "gecko/core/tensor.hpp"
#include "gecko/cpu/rope.hpp"
#include "gecko/model/config.hpp"
#include "gecko/model/model.hpp"

namespace gecko::model {

// A small reproducible generator (splitmix64): uniform doubles, normals (Box–Muller) and
// permutations, independent of the standard library's distribution implementations.
class InitRng {
 public:
  explicit InitRng(std::uint64_t seed) : s_(seed) {}

  // A generator for one named tensor: the seed mixed with the name's FNV-1a hash.
  static InitRng for_tensor(std::uint64_t seed, const std::string& name) {
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char ch : name) h = (h ^ ch) * 0x100000001b3ull;
    InitRng mixer(seed ^ h);
    return InitRng(mixer.next());
  }

  std::uint64_t next() {
    std::uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

  // Uniform in (0, 1): 53 random bits, never 0.
  double uniform() { return (double(next() >> 11) + 0.5) * 0x1.0p-53; }

  double normal() {
    if (spare_) return std::exchange(spare_, std::nullopt).value();
    const double r = std::sqrt(-2.0 * std::log(uniform())), a = 2.0 * std::numbers::pi * uniform();
    spare_ = r * std::sin(a);
    return r * std::cos(a);
  }

  // N(0, std²) restricted to [lo, hi] by redrawing (the distribution of torch's trunc_normal_).
  double truncated_normal(double std, double lo, double hi) {
    while (true) {
      const double v = std * normal();
      if (v >= lo && v <= hi) return v;
    }
  }

  // Uniform in [0, n) (n > 0), by rejection so that every value is equally likely.
  std::uint64_t below(std::uint64_t n) {
    const std::uint64_t limit = ~std::uint64_t(0) - (~std::uint64_t(0) % n);
    while (true) {
      const std::uint64_t x = next();
      if (x < limit) return x % n;
    }
  }

 private:
  std::uint64_t s_;
  std::optional<double> spare_;
};

// Fills every tensor of a model of this configuration and policy per spec §3.3 (see the table
// above). The configuration is validated first.
template <class Policy, class T>
ModelParams<T> init_params(const Config& c, std::uint64_t seed) {
  static_assert(std::is_floating_point_v<T>, "init_params: T must be float or double");
  c.validate();
  require(c.model_dim >= 2, "init_params: model_dim = ", c.model_dim,
          " is too small: the CEMA angles logit(D^(-i/D)) need D >= 2");
  ModelParams<T> p;
  p.layers.resize(std::size_t(c.num_layers));
  const std::int64_t D = c.model_dim, N = c.cema_ndim;
  visit_model_parameters<Policy>(p, c, [&](const std::string& name, auto& t, const Shape& shape) {
    using X = std::remove_cvref_t<decltype(t[0])>;
    t = Tensor<X>(shape);  // zeros: biases, norm weights and priors, mega.gamma/beta
    if constexpr (std::is_floating_point_v<X>) {
      InitRng rng = InitRng::for_tensor(seed, name);
      auto fill = [&](auto&& draw) {
        for (auto& v : t.span()) v = X(draw());
      };
      const bool linear = name.ends_with(".weight") &&
                          (name.find(".mega.w") != std::string::npos || name.find(".nffn.fc") != std::string::npos);
      if (linear) {
        // kaiming_normal_(a = √5, fan_in): gain √(2 / (1 + 5)), std = gain / √fan_in.
        const double std = 1.0 / std::sqrt(3.0 * double(shape[1]));
        fill([&] { return std * rng.normal(); });
      } else if (name == "embed.weight" || name == "output.output.weight") {
        const double std = 1.0 / std::sqrt(double(D));
        fill([&] { return rng.truncated_normal(std, -3 * std, 3 * std); });
      } else if (name.ends_with("cema.alpha") || name.ends_with("cema.delta")) {
        fill([&] { return 0.2 * rng.normal(); });
      } else if (name.ends_with("cema.theta")) {
        // f_i = D^(−i/D) for i = 1..D, assigned to the channels in a random order; σ(theta) = f.
        std::vector<std::int64_t> order(static_cast<std::size_t>(D));
        for (std::int64_t d = 0; d < D; ++d) order[d] = d + 1;
        for (std::int64_t d = D - 1; d > 0; --d) std::swap(order[d], order[rng.below(std::uint64_t(d + 1))]);
        for (std::int64_t d = 0; d < D; ++d) {
          const double f = std::exp(-double(order[d]) * std::log(double(D)) / double(D));
          t[d] = X(std::log(f / (1 - f)));
        }
      } else if (name.ends_with("cema.gamma")) {
        const double std = Policy::cema::learned_residual ? 1.0 : 1.0 / std::sqrt(double(N));
        for (std::int64_t i = 0; i < t.size(); i += 2) t[i] = X(std * rng.normal());  // imaginary parts stay 0
      } else if (name.ends_with("cema.omega")) {
        fill([&] { return rng.truncated_normal(0.25, -1.0, 1.0); });
      } else if (name.ends_with("nffn.alpha")) {
        const int layer = std::stoi(name.substr(std::string("layers.").size()));
        fill([&] { return 0.1 * std::pow(0.5, layer); });
      } else if (name.ends_with("prior_var") && !Policy::input_norm::resets_at_bos) {
        fill([] { return 1.0; });  // the cumulative norm's prior variance exp(prior_logv = 0)
      } else if (name == "rope.freqs") {
        t = cpu::rope_frequencies<X>(int(c.head_dim()), c.rope_base);
      }
    }
  });
  return p;
}

// A model of this configuration with freshly initialised parameters (init_params).
template <class Policy, class T>
Model<Policy, T> init_model(const Config& c, std::uint64_t seed, std::int64_t bos_id = 1) {
  return Model<Policy, T>(c, init_params<Policy, T>(c, seed), bos_id);
}

}  // namespace gecko::model
