#pragma once
// Seeded random inputs for the tests: normal tensors and bos masks.

#include <cstdint>
#include <random>

#include "gecko/core/tensor.hpp"

namespace gecko::testing {

// Entries drawn from N(mean, scale²) in double and rounded to T, from a distribution of this
// call's own (so a call's draws do not depend on what the generator's earlier callers drew
// through theirs).
template <class T, std::uniform_random_bit_generator Rng>
Tensor<T> random_normal(const Shape& shape, Rng& rng, double scale = 1.0, double mean = 0.0) {
  std::normal_distribution<double> normal(mean, scale);
  Tensor<T> x(shape);
  for (auto& e : x.span()) e = T(normal(rng));
  return x;
}

// The same from a generator seeded with `seed`.
template <class T>
Tensor<T> random_normal(const Shape& shape, std::uint64_t seed, double scale = 1.0, double mean = 0.0) {
  std::mt19937_64 rng(seed);
  return random_normal<T>(shape, rng, scale, mean);
}

// One seeded stream of draws for a test's inputs: its standard normal distribution lives as long
// as the generator, so consecutive tensors continue one sequence.
struct RandomStream {
  std::mt19937_64 rng;
  std::normal_distribution<double> normal{0.0, 1.0};

  explicit RandomStream(std::uint64_t seed) : rng(seed) {}

  // Entries mean + scale·z, z standard normal.
  Tensor<double> normal_tensor(const Shape& s, double mean = 0, double scale = 1) {
    Tensor<double> t(s);
    for (auto& v : t.span()) v = mean + scale * normal(rng);
    return t;
  }
  // (B, L) with each entry true with probability prob.
  Tensor<bool> bos(std::int64_t B, std::int64_t L, double prob) {
    std::bernoulli_distribution coin(prob);
    Tensor<bool> t({B, L});
    for (auto& v : t.span()) v = coin(rng);
    return t;
  }
};

}  // namespace gecko::testing
