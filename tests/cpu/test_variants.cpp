// Every shipped variant runs, streams exactly, and shows the property that tells it apart:
//   GeckoModel            the working memory carries a token beyond the attention's reach;
//   GeckoNoMemoryModel    a token cannot reach more than num_layers chunks ahead;
//   GeckoBlockDiagonal    the previous chunk cannot reach the current one; RoPE positions t mod C;
//   MegalodonBlock/Model  block-diagonal attention, learned CEMA residual with γ/√N, cumulative
//                         norm, no documents.
// "Memoryless" models set the norm decays to 0 and the CEMA decay to 0 (σ(40)·σ(40) == 1 in
// double), so that attention and the working memory are the only paths from one token to another.
#include <doctest/doctest.h>

#include <random>

#include "gecko/layers/block.hpp"
#include "gecko/model/model.hpp"
#include "gecko/policy/presets.hpp"
#include "test_model_helpers.hpp"

using namespace gecko;

namespace {

model::Config small_config() {
  model::Config c;
  c.num_layers = 2;
  c.model_dim = 16;
  c.z_dim = 8;
  c.value_dim = 16;
  c.num_heads = 2;
  c.ffn_hidden_dim = 24;
  c.cema_ndim = 3;
  c.chunk_size = 4;
  c.vocab_size = 13;
  c.timenorm_num_groups = 4;
  c.rope_base = 10000;
  return c;
}

model::Config memoryless(model::Config c) {
  c.timenorm_beta1 = c.timenorm_beta2 = 0;
  return c;
}

template <class T>
void kill_cema_decay(layers::MegaParams<T>& p) {
  for (auto& v : p.cema.alpha.span()) v = T(40);
  for (auto& v : p.cema.delta.span()) v = T(40);
}

template <class Policy, class T = double>
model::ModelParams<T> params_for(const model::Config& c, unsigned seed, bool no_cema_decay) {
  std::mt19937 rng(seed);
  auto p = testing::random_model_params<Policy, T>(c, rng);
  if (no_cema_decay)
    for (auto& layer : p.layers) kill_cema_decay(layer.mega);
  return p;
}

Tensor<std::int64_t> tokens_for(const model::Config& c, std::int64_t B, std::int64_t chunks, unsigned seed) {
  std::mt19937 rng(seed);
  Tensor<std::int64_t> t({B, chunks * c.chunk_size});
  for (auto& v : t.span()) v = std::uniform_int_distribution<std::int64_t>(2, c.vocab_size - 1)(rng);
  return t;
}

// max over the chunk's positions of |a − b|, relative to max |a| over the chunk.
template <class T>
double chunk_difference(const Tensor<T>& a, const Tensor<T>& b, std::int64_t chunk, std::int64_t C) {
  double diff = 0, ref = 0;
  for (std::int64_t r = 0; r < a.dim(0); ++r)
    for (std::int64_t t = chunk * C; t < (chunk + 1) * C; ++t)
      for (std::int64_t v = 0; v < a.dim(2); ++v) {
        diff = std::max(diff, double(std::abs(a(r, t, v) - b(r, t, v))));
        ref = std::max(ref, double(std::abs(a(r, t, v))));
      }
  return diff / ref;
}

}  // namespace

TEST_CASE("GeckoModel: the working memory carries a token beyond the attention's reach") {
  const auto c = memoryless(small_config());
  const GeckoModel<double> model(c, params_for<policy::Gecko>(c, 1, true));
  auto tokens = tokens_for(c, 2, 6, 11);
  const auto base = model.forward(tokens);
  tokens(0, 0) = tokens(0, 0) == 3 ? 4 : 3;
  tokens(1, 0) = tokens(1, 0) == 3 ? 4 : 3;
  const auto changed = model.forward(tokens);
  for (std::int64_t chunk = 3; chunk < 6; ++chunk) CHECK(chunk_difference(base, changed, chunk, c.chunk_size) > 1e-6);
}

TEST_CASE("GeckoNoMemoryModel: a token cannot reach more than num_layers chunks ahead") {
  const auto c = memoryless(small_config());
  // The Gecko parameters load as they are (the aq/ak rows go unused).
  const GeckoNoMemoryModel<double> model(c, params_for<policy::Gecko>(c, 1, true));
  auto tokens = tokens_for(c, 2, 6, 11);
  const auto base = model.forward(tokens);
  tokens(0, 0) = tokens(0, 0) == 3 ? 4 : 3;
  tokens(1, 0) = tokens(1, 0) == 3 ? 4 : 3;
  const auto changed = model.forward(tokens);
  // Each layer attends one chunk back: with 2 layers chunk 0 reaches chunk 2, not chunk 3.
  CHECK(chunk_difference(base, changed, 2, c.chunk_size) > 1e-6);
  for (std::int64_t chunk = 3; chunk < 6; ++chunk) CHECK(chunk_difference(base, changed, chunk, c.chunk_size) == 0);
}

TEST_CASE_TEMPLATE("GeckoNoMemoryModel equals GeckoModel until the memory is first read (chunk 2)", T, float, double) {
  const auto c = small_config();
  const auto params = params_for<policy::Gecko, T>(c, 2, false);
  const GeckoModel<T> gecko(c, params);
  const GeckoNoMemoryModel<T> no_memory(c, params);
  const auto tokens = tokens_for(c, 2, 4, 12);
  const auto a = gecko.forward(tokens), b = no_memory.forward(tokens);
  CHECK(chunk_difference(a, b, 0, c.chunk_size) == 0);
  CHECK(chunk_difference(a, b, 1, c.chunk_size) == 0);
  CHECK(chunk_difference(a, b, 2, c.chunk_size) > 1e-6);
  CHECK(chunk_difference(a, b, 3, c.chunk_size) > 1e-6);
}

TEST_CASE("GeckoBlockDiagonalModel: the previous chunk cannot reach the current one, the memory reaches further") {
  const auto c = memoryless(small_config());
  const auto params = params_for<policy::Gecko>(c, 3, true);
  const GeckoBlockDiagonalModel<double> model(c, params);
  const GeckoModel<double> sliding(c, params);
  auto tokens = tokens_for(c, 2, 6, 13);
  const auto base = model.forward(tokens), sliding_base = sliding.forward(tokens);
  const std::int64_t t = 2 * c.chunk_size + 1;  // a token of chunk 2
  tokens(0, t) = tokens(0, t) == 3 ? 4 : 3;
  tokens(1, t) = tokens(1, t) == 3 ? 4 : 3;
  const auto changed = model.forward(tokens), sliding_changed = sliding.forward(tokens);
  CHECK(chunk_difference(base, changed, 2, c.chunk_size) > 1e-6);
  CHECK(chunk_difference(base, changed, 3, c.chunk_size) == 0);  // no attention to chunk 2
  CHECK(chunk_difference(base, changed, 4, c.chunk_size) > 1e-6);  // memory after chunk 2
  CHECK(chunk_difference(sliding_base, sliding_changed, 3, c.chunk_size) > 1e-6);
}

TEST_CASE("GeckoBlockDiagonalModel: RoPE positions restart every chunk (t mod C)") {
  // Chunk 1 repeats chunk 0's tokens. Without cross-chunk paths (memoryless norms and CEMA, the
  // memory is empty until chunk 2) chunk 1 then sees exactly what chunk 0 saw, positions included.
  const auto c = memoryless(small_config());
  const auto params = params_for<policy::Gecko>(c, 4, true);
  auto tokens = tokens_for(c, 2, 2, 14);
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t t = 0; t < c.chunk_size; ++t) tokens(b, c.chunk_size + t) = tokens(b, t);
  const auto blockdiag = GeckoBlockDiagonalModel<double>(c, params).forward(tokens);
  const auto sliding = GeckoModel<double>(c, params).forward(tokens);
  double diff = 0, sliding_diff = 0;
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t t = 0; t < c.chunk_size; ++t)
      for (std::int64_t v = 0; v < blockdiag.dim(2); ++v) {
        diff = std::max(diff, std::abs(blockdiag(b, t, v) - blockdiag(b, c.chunk_size + t, v)));
        sliding_diff = std::max(sliding_diff, std::abs(sliding(b, t, v) - sliding(b, c.chunk_size + t, v)));
      }
  CHECK(diff <= 1e-12);
  CHECK(sliding_diff > 1e-6);
  // Chunk 0 is the same computation in both variants.
  CHECK(chunk_difference(blockdiag, sliding, 0, c.chunk_size) == 0);
}

TEST_CASE_TEMPLATE("MegalodonBlock: the previous chunk cannot influence the current chunk", T, float, double) {
  // Permuting the channels of one token within each norm group keeps that token's group moments,
  // so the cumulative norm's statistics stay the same (up to summation order): with the CEMA
  // decay at 0, only attention could carry the change into the next chunk.
  auto c = small_config();
  c.two_hop_residual = true;
  const std::int64_t C = c.chunk_size, L = 4 * C, D = c.model_dim, Dg = D / c.timenorm_num_groups;
  auto megalodon_params = params_for<policy::Megalodon, T>(c, 5, true).layers[0];
  auto gecko_params = params_for<policy::Gecko, T>(c, 5, true).layers[0];
  const MegalodonBlock<T> megalodon(c, megalodon_params);
  const GeckoBlock<T> gecko(c, gecko_params);

  std::mt19937 rng(15);
  std::normal_distribution<double> normal;
  Tensor<T> x({2, L, D});
  for (auto& v : x.span()) v = T(normal(rng));
  Tensor<T> x2 = x;
  const std::int64_t t = 2 * C + 1;
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t d = 0; d < D; ++d) x2(b, t, d) = x(b, t, (d / Dg) * Dg + (Dg - 1 - d % Dg));

  Tensor<T> rope_m, rope_g;
  {
    std::vector<std::int64_t> local, absolute;
    for (std::int64_t i = 0; i < L; ++i) local.push_back(i % C), absolute.push_back(i);
    const auto freqs = cpu::rope_frequencies<T>(int(c.head_dim()), c.rope_base);
    rope_m = cpu::rope_table(freqs, std::span<const std::int64_t>(local));
    rope_g = cpu::rope_table(freqs, std::span<const std::int64_t>(absolute));
  }
  auto run = [&](const auto& block, const Tensor<T>& in, const Tensor<T>& rope) {
    layers::LayerState<T> s;
    return block.forward(in, rope, nullptr, {}, s);
  };
  const auto m1 = run(megalodon, x, rope_m), m2 = run(megalodon, x2, rope_m);
  const auto g1 = run(gecko, x, rope_g), g2 = run(gecko, x2, rope_g);
  CHECK(chunk_difference(m1, m2, 2, C) > 1e-3);
  CHECK(chunk_difference(m1, m2, 3, C) <= (std::is_same_v<T, float> ? 1e-5 : 1e-12));
  CHECK(chunk_difference(g1, g2, 3, C) > 1e-3);
}

TEST_CASE_TEMPLATE("MegalodonBlock: CEMA has a learned residual and γ/√N; the input norm is cumulative", T, float, double) {
  auto c = small_config();
  c.two_hop_residual = true;
  auto p = params_for<policy::Megalodon, T>(c, 6, true).layers[0];
  const MegalodonBlock<T> block(c, p);
  std::mt19937 rng(16);
  std::normal_distribution<double> normal;
  const std::int64_t L = 2 * c.chunk_size, D = c.model_dim, N = c.cema_ndim;
  Tensor<T> x({1, L, D});
  for (auto& v : x.span()) v = T(normal(rng));
  Tensor<T> rope = cpu::rope_table(cpu::rope_frequencies<T>(int(c.head_dim()), c.rope_base), 0, L);
  for (std::int64_t t = 0; t < L; ++t)  // chunk-local positions
    for (std::int64_t j = 0; j < rope.dim(1); ++j)
      for (int k = 0; k < 2; ++k) rope(t, j, k) = rope(t % c.chunk_size, j, k);
  layers::LayerState<T> s;
  layers::MegaTrace<T> trace;
  block.forward(x, rope, nullptr, {}, s, &trace);

  // The input norm is the cumulative one, with its own parameters and the config's groups.
  cpu::TimestepNormState<T> norm_state;
  auto norm_params = block.mega().params().timenorm;
  const Tensor<T> expected_norm = cpu::timestep_cumulative_norm(x, norm_state, norm_params);
  testing::check_equal("timenorm", trace.timenorm, expected_norm);
  CHECK(s.norm.count[0] == L);

  // With the decay at 0, h_t = p ⊙ x̂_t, so c_t = ω ⊙ x̂_t + x̂_t · Σ_n Re(γ_n) p_n / √N.
  const auto& cema = block.mega().params().cema;
  double worst = 0;
  for (std::int64_t t = 0; t < L; ++t)
    for (std::int64_t d = 0; d < D; ++d) {
      double gain = 0;
      for (std::int64_t n = 0; n < N; ++n) gain += double(cema.gamma(d, n, 0)) / (1 + std::exp(-double(cema.alpha(d, n))));
      const double xh = trace.timenorm(0, t, d);
      const double expected = double(cema.omega[d]) * xh + xh * gain / std::sqrt(double(N));
      worst = std::max(worst, std::abs(expected - double(trace.cema(0, t, d))));
    }
  CHECK(worst <= (std::is_same_v<T, float> ? 1e-5 : 1e-12));
}

TEST_CASE("MegalodonModel: no documents, two-hop residual required, windows of the current chunk only") {
  auto c = small_config();
  const auto params = params_for<policy::Megalodon>(c, 7, false);
  CHECK_THROWS_WITH_AS((MegalodonModel<double>(c, params)),
                       doctest::Contains("two_hop_residual = false is invalid for this variant"), Error);
  c.two_hop_residual = true;
  const MegalodonModel<double> model(c, params);
  const auto tokens = tokens_for(c, 2, 5, 17);
  model::ModelState<double> s;
  CHECK_THROWS_WITH_AS(model.forward(testing::time_slice(tokens, 0, 4), s, /*multi_segments=*/true),
                       doctest::Contains("this model variant has no document handling"), Error);
  for (std::int64_t t = 0; t < tokens.dim(1); ++t) {
    model.forward(testing::time_slice(tokens, t, t + 1), s);
    for (const auto& layer : s.layers) {
      CHECK(layer.window.length() == (t + 1) % c.chunk_size);
      CHECK(layer.memory.memory.empty());
    }
  }
}

TEST_CASE("every variant streams exactly: random schedules equal one call (double)") {
  auto c = small_config();
  std::mt19937 rng(21);
  const auto tokens = testing::random_tokens(rng, 3, 7 * c.chunk_size, c.chunk_size, c.vocab_size, 1);
  SUBCASE("GeckoNoMemoryModel") {
    const GeckoNoMemoryModel<double> m(c, params_for<policy::GeckoNoMemory>(c, 8, false));
    testing::check_random_schedules(m, tokens, true, rng, 4);
  }
  SUBCASE("GeckoBlockDiagonalModel") {
    const GeckoBlockDiagonalModel<double> m(c, params_for<policy::GeckoBlockDiagonal>(c, 9, false));
    testing::check_random_schedules(m, tokens, true, rng, 4);
  }
  SUBCASE("MegalodonModel") {
    c.two_hop_residual = true;
    const MegalodonModel<double> m(c, params_for<policy::Megalodon>(c, 10, false));
    testing::check_random_schedules(m, tokens, false, rng, 4);
  }
}

TEST_CASE_TEMPLATE("every variant runs in float and double alike", T, float, double) {
  auto c = small_config();
  c.two_hop_residual = true;  // valid for every variant
  const auto tokens = tokens_for(c, 2, 3, 18);
  auto compare = [&](auto policy_tag) {
    using P = decltype(policy_tag);
    const auto pd = params_for<P, double>(c, 11, false);
    const auto pt = params_for<P, T>(c, 11, false);
    const auto a = model::Model<P, T>(c, pt).forward(tokens);
    const auto b = model::Model<P, double>(c, pd).forward(tokens);
    CHECK(testing::rel_error(a, b) <= (std::is_same_v<T, float> ? 1e-4 : 0));
  };
  compare(policy::Gecko{});
  compare(policy::GeckoNoMemory{});
  compare(policy::GeckoBlockDiagonal{});
  compare(policy::Megalodon{});
}
