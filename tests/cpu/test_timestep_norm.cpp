// Timestep norms (spec §5, §12): golden cases of the decay norm, streaming splits, bos resets,
// the scan combine against the sequential recurrence, and the cumulative (Megalodon) norm against
// a direct two-pass computation.
#include <cmath>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "gecko/cpu/timestep_norm.hpp"
#include "support/golden.hpp"
#include "support/layout.hpp"
#include "support/random.hpp"

using namespace gecko;
using namespace gecko::cpu;

namespace {

template <class T>
TimestepNormParams<T> golden_params(const io::SafetensorsFile& f) {
  const auto args = nlohmann::json::parse(*f.meta("args"));
  TimestepNormParams<T> p;
  p.weight = f.get_as<T>("weight");
  p.bias = f.get_as<T>("bias");
  p.prior_count = f.get<std::int64_t>("prior_count");
  p.prior_mean = f.get_as<T>("prior_mean");
  p.prior_var = f.get_as<T>("prior_var");
  p.groups = args.at("num_groups").get<int>();
  p.beta1 = args.at("beta1").get<double>();
  p.beta2 = args.at("beta2").get<double>();
  p.eps = args.at("eps").get<double>();
  return p;
}

template <class T>
void check_golden(const std::string& name, const Tensor<T>& cand, const io::SafetensorsFile& f) {
  const Tensor<float> golden = f.get<float>("out." + name);
  MESSAGE(name, ": rel error ", testing::rel_error(cand, golden));
  testing::check_close(name, cand, golden, testing::golden_tolerance<T>());
}

template <class T>
void run_golden_case(const std::string& case_name) {
  const auto f = testing::open_golden(case_name);
  const auto p = golden_params<T>(*f);
  const Tensor<T> x = f->get_as<T>("in.x");
  TimestepNormState<T> state;
  if (f->contains("in.prev_count")) {
    state.count = f->get<std::int64_t>("in.prev_count");
    state.mean = f->get_as<T>("in.prev_mean");
    state.var = f->get_as<T>("in.prev_var");
  }
  Tensor<bool> bos;
  if (f->contains("in.bos_mask")) bos = f->get<bool>("in.bos_mask");

  TimestepNormStats<T> stats;
  const Tensor<T> y = timestep_decay_norm(x, bos.empty() ? nullptr : &bos, state, p, &stats);
  check_golden("y", y, *f);
  testing::check_equal("count", state.count, f->get<std::int64_t>("out.count"));
  check_golden("mean", state.mean, *f);
  check_golden("var", state.var, *f);
  check_golden("cummean", stats.cummean, *f);
  check_golden("cumrstd", stats.cumrstd, *f);
}

// Random inputs of a small decay norm: B = 2, D = 16, G = 4.
struct Random : testing::RandomStream {
  Random() : RandomStream(12345) {}

  TimestepNormParams<double> params(std::int64_t D, int G) {
    TimestepNormParams<double> p;
    p.weight = normal_tensor({D}, 0, 0.3);
    p.bias = normal_tensor({D}, 0, 0.3);
    p.prior_count = Tensor<std::int64_t>({}, 0);
    p.prior_mean = Tensor<double>({G}, 0.0);
    p.prior_var = Tensor<double>({G}, 0.0);
    p.groups = G;
    return p;
  }
  TimestepNormState<double> state(std::int64_t B, int G) {
    TimestepNormState<double> s{Tensor<std::int64_t>({B}), normal_tensor({B, G}, 0, 0.05),
                                normal_tensor({B, G}, 0, 0.05)};
    for (auto& v : s.var.span()) v = std::abs(v);
    s.count[0] = 37;
    if (B > 1) s.count[1] = 4;
    return s;
  }
};

using testing::time_slice;

double rel(const Tensor<double>& a, const Tensor<double>& b) { return testing::rel_error(a, b); }

}  // namespace

TEST_CASE_TEMPLATE("timestep_norm golden: basic (priors, no bos)", T, float, double) {
  run_golden_case<T>("timestep_norm_basic");
}
TEST_CASE_TEMPLATE("timestep_norm golden: prev (carried state)", T, float, double) {
  run_golden_case<T>("timestep_norm_prev");
}
TEST_CASE_TEMPLATE("timestep_norm golden: bos_prev (bos resets, carried state)", T, float, double) {
  run_golden_case<T>("timestep_norm_bos_prev");
}
TEST_CASE_TEMPLATE("timestep_norm golden: long (L = 300)", T, float, double) {
  run_golden_case<T>("timestep_norm_long");
}

TEST_CASE("timestep_decay_norm: two calls with the state carried equal one call") {
  Random r;
  const std::int64_t B = 2, L = 41, D = 16;
  const int G = 4;
  const auto p = r.params(D, G);
  const Tensor<double> x = r.normal_tensor({B, L, D}, 0.5, 2.0);
  const Tensor<bool> bos = r.bos(B, L, 0.1);
  const TimestepNormState<double> start = r.state(B, G);

  TimestepNormState<double> whole = start;
  TimestepNormStats<double> whole_stats;
  const Tensor<double> y = timestep_decay_norm(x, &bos, whole, p, &whole_stats);

  for (const std::int64_t split : {1, 17, 40}) {
    INFO("split at ", split);
    TimestepNormState<double> s = start;
    TimestepNormStats<double> st1, st2;
    const auto bos1 = time_slice(bos, 0, split), bos2 = time_slice(bos, split, L);
    const Tensor<double> y1 = timestep_decay_norm(time_slice(x, 0, split), &bos1, s, p, &st1);
    const Tensor<double> y2 = timestep_decay_norm(time_slice(x, split, L), &bos2, s, p, &st2);
    CHECK(rel(y1, time_slice(y, 0, split)) < 1e-12);
    CHECK(rel(y2, time_slice(y, split, L)) < 1e-12);
    CHECK(rel(st2.cummean, time_slice(whole_stats.cummean, split, L)) < 1e-12);
    CHECK(rel(st2.cumrstd, time_slice(whole_stats.cumrstd, split, L)) < 1e-12);
    testing::check_equal("count", s.count, whole.count);
    CHECK(rel(s.mean, whole.mean) < 1e-12);
    CHECK(rel(s.var, whole.var) < 1e-12);
  }
}

TEST_CASE("timestep_decay_norm: a bos forgets every earlier token and the carried state") {
  Random r;
  const std::int64_t B = 2, L = 20, D = 16, t_bos = 9;
  const int G = 4;
  const auto p = r.params(D, G);
  Tensor<double> x = r.normal_tensor({B, L, D});
  Tensor<bool> bos({B, L}, false);
  bos(0, t_bos) = true;  // row 0: inside the call
  bos(1, 0) = true;      // row 1: on the first token, so the carried state is ignored

  TimestepNormState<double> s1 = r.state(B, G);
  const Tensor<double> y1 = timestep_decay_norm(x, &bos, s1, p);

  for (std::int64_t t = 0; t < t_bos; ++t)
    for (std::int64_t i = 0; i < D; ++i) x(0, t, i) = 3.0 * r.normal(r.rng) - 1.0;
  TimestepNormState<double> s2 = r.state(B, G);
  for (auto& v : s2.mean.span()) v += 0.5;
  s2.count[1] = 1000;
  const Tensor<double> y2 = timestep_decay_norm(x, &bos, s2, p);

  CHECK(rel(time_slice(y1, 0, t_bos), time_slice(y2, 0, t_bos)) > 1e-3);  // the change is seen
  for (std::int64_t t = t_bos; t < L; ++t)
    for (std::int64_t i = 0; i < D; ++i) REQUIRE(y1(0, t, i) == y2(0, t, i));
  for (std::int64_t i = 0; i < y1.size() / B; ++i) REQUIRE(y1[y1.size() / B + i] == y2[y2.size() / B + i]);
  testing::check_equal("count", s1.count, s2.count);
  CHECK(s1.count[0] == L - t_bos);
  CHECK(s1.count[1] == L);
  CHECK(rel(s1.mean, s2.mean) == 0);
  CHECK(rel(s1.var, s2.var) == 0);
}

TEST_CASE("timestep_decay_norm: the first token after a bos is normalised by its own moments") {
  Random r;
  const std::int64_t D = 16;
  const auto p = r.params(D, 4);
  const Tensor<double> x = r.normal_tensor({1, 1, D}, 1.0, 2.0);
  const Tensor<bool> bos({1, 1}, true);
  TimestepNormState<double> s = r.state(1, 4);
  TimestepNormStats<double> st;
  timestep_decay_norm(x, &bos, s, p, &st);
  for (std::int64_t k = 0; k < 4; ++k) {
    double mu = 0, s2 = 0;
    for (std::int64_t i = 0; i < 4; ++i) mu += x(0, 0, 4 * k + i) / 4;
    for (std::int64_t i = 0; i < 4; ++i) s2 += (x(0, 0, 4 * k + i) - mu) * (x(0, 0, 4 * k + i) - mu) / 4;
    CHECK(st.cummean(0, 0, k) == doctest::Approx(mu).epsilon(1e-13));
    CHECK(st.cumrstd(0, 0, k) == doctest::Approx(1 / std::sqrt(s2 + p.eps)).epsilon(1e-12));
    CHECK(s.mean(0, k) == doctest::Approx((1 - p.beta1) * mu).epsilon(1e-13));
  }
}

TEST_CASE("TsnCombine: folding slices (one-token slices and bos included) equals the recurrence") {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal;
  std::uniform_int_distribution<int> slice_len(1, 5);
  std::bernoulli_distribution coin(0.08);
  const auto decay = TsnDecay<double>::from(0.999, 0.9999);
  const TsnCombine<double> combine;
  auto close = [](const TsnAggregate<double>& a, const TsnAggregate<double>& b) {
    auto near = [](double u, double v) { return std::abs(u - v) <= 1e-12 * std::max(std::abs(v), 1e-300); };
    return a.count == b.count && a.bos == b.bos && near(a.m, b.m) && near(a.v, b.v) &&
           near(a.decay1, b.decay1) && near(a.decay2, b.decay2);
  };

  for (int trial = 0; trial < 50; ++trial) {
    INFO("trial ", trial);
    const int L = 1 + trial * 7 % 97;
    std::vector<TsnAggregate<double>> tokens;
    for (int t = 0; t < L; ++t)
      tokens.push_back(decay.token(normal(rng), std::abs(normal(rng)), coin(rng)));
    const TsnAggregate<double> start{12, std::pow(0.999, 12), std::pow(0.9999, 12), 0.3, 0.02, false};

    // The §5.3 recurrence, token by token; states[t] = state after token t.
    std::vector<TsnAggregate<double>> states;
    TsnAggregate<double> s = start;
    for (const auto& tok : tokens) states.push_back(s = combine(s, tok));

    // Slices folded on their own from the identity, then combined from the carried state.
    std::vector<TsnAggregate<double>> slices;
    std::vector<int> slice_end;
    for (int t0 = 0; t0 < L;) {
      const int t1 = std::min(L, t0 + slice_len(rng));
      TsnAggregate<double> a;
      for (int t = t0; t < t1; ++t) a = combine(a, tokens[t]);
      slices.push_back(a);
      slice_end.push_back(t1 - 1);
      t0 = t1;
    }
    TsnAggregate<double> prefix = start;
    for (std::size_t i = 0; i < slices.size(); ++i) {
      prefix = combine(prefix, slices[i]);
      CHECK(close(prefix, states[slice_end[i]]));
    }

    // Another bracketing: a balanced tree over the slices, then the carried state in front.
    std::vector<TsnAggregate<double>> level = slices;
    while (level.size() > 1) {
      std::vector<TsnAggregate<double>> next;
      for (std::size_t i = 0; i + 1 < level.size(); i += 2) next.push_back(combine(level[i], level[i + 1]));
      if (level.size() % 2) next.push_back(level.back());
      level = next;
    }
    CHECK(close(combine(start, level[0]), states.back()));
  }
}

TEST_CASE("timestep_cumulative_norm equals a direct two-pass Welford computation") {
  Random r;
  const std::int64_t B = 2, L = 23, D = 12;
  const int G = 3;
  const std::int64_t Dg = D / G;
  auto p = r.params(D, G);
  const Tensor<double> x = r.normal_tensor({B, L, D}, 0.7, 1.5);
  TimestepNormState<double> start{Tensor<std::int64_t>({B}), r.normal_tensor({B, G}),
                                  r.normal_tensor({B, G}, 0, 0.5)};
  for (auto& v : start.var.span()) v = std::abs(v) + 0.1;
  start.count[0] = 0;  // the carried moments are then irrelevant
  start.count[1] = 5;  // five pseudo-tokens of the carried mean and variance

  TimestepNormState<double> s = start;
  TimestepNormStats<double> st;
  const Tensor<double> y = timestep_cumulative_norm(x, s, p, &st);

  for (std::int64_t b = 0; b < B; ++b) {
    const double n0 = double(start.count[b]);
    for (std::int64_t k = 0; k < G; ++k) {
      const double m0 = start.mean(b, k), v0 = start.var(b, k);
      for (std::int64_t t = 0; t < L; ++t) {
        // Pooled population moments of the prior pseudo-tokens and every channel of tokens 0..t.
        const double n = n0 + double(t + 1);
        double sum = n0 * m0;
        for (std::int64_t j = 0; j <= t; ++j)
          for (std::int64_t i = 0; i < Dg; ++i) sum += x(b, j, k * Dg + i) / double(Dg);
        const double mean = sum / n;
        double sq = n0 * (v0 + (m0 - mean) * (m0 - mean));
        for (std::int64_t j = 0; j <= t; ++j)
          for (std::int64_t i = 0; i < Dg; ++i) {
            const double dev = x(b, j, k * Dg + i) - mean;
            sq += dev * dev / double(Dg);
          }
        const double var = sq / n, rstd = 1 / std::sqrt(var + p.eps);
        CHECK(st.cummean(b, t, k) == doctest::Approx(mean).epsilon(1e-12));
        CHECK(st.cumrstd(b, t, k) == doctest::Approx(rstd).epsilon(1e-12));
        for (std::int64_t i = 0; i < Dg; ++i) {
          const std::int64_t c = k * Dg + i;
          const double expect = (x(b, t, c) - mean) * rstd * (1 + p.weight[c]) + p.bias[c];
          CHECK(y(b, t, c) == doctest::Approx(expect).epsilon(1e-12));
        }
        if (t == L - 1) {
          CHECK(s.mean(b, k) == doctest::Approx(mean).epsilon(1e-12));
          CHECK(s.var(b, k) == doctest::Approx(var).epsilon(1e-12));
        }
      }
    }
    CHECK(s.count[b] == start.count[b] + L);
  }

  // Megalodon's priors (count 0, mean 0, var exp(0) = 1) and a split call give the same result.
  p.prior_var = Tensor<double>({G}, 1.0);
  TimestepNormState<double> whole, halves;
  const Tensor<double> yw = timestep_cumulative_norm(x, whole, p);
  const Tensor<double> y1 = timestep_cumulative_norm(time_slice(x, 0, 10), halves, p);
  const Tensor<double> y2 = timestep_cumulative_norm(time_slice(x, 10, L), halves, p);
  CHECK(rel(y1, time_slice(yw, 0, 10)) < 1e-12);
  CHECK(rel(y2, time_slice(yw, 10, L)) < 1e-12);
  testing::check_equal("count", halves.count, whole.count);
  CHECK(rel(halves.mean, whole.mean) < 1e-12);
  CHECK(rel(halves.var, whole.var) < 1e-12);
}

TEST_CASE("timestep norms reject inputs of the wrong shape, naming them") {
  Random r;
  auto p = r.params(16, 4);
  const Tensor<double> x = r.normal_tensor({2, 5, 16});
  TimestepNormState<double> s;

  p.weight = Tensor<double>({15});
  CHECK_THROWS_WITH_AS(timestep_decay_norm(x, nullptr, s, p),
                       "timestep_decay_norm: weight has shape [15], expected [16]", Error);
  p.weight = Tensor<double>({16});
  p.groups = 5;
  CHECK_THROWS_WITH_AS(timestep_cumulative_norm(x, s, p),
                       "timestep_cumulative_norm: groups = 5 does not divide D = 16", Error);
  p.groups = 4;
  const Tensor<bool> bos({2, 6});
  CHECK_THROWS_WITH_AS(timestep_decay_norm(x, &bos, s, p),
                       "timestep_decay_norm: bos has shape [2, 6], expected [2, 5]", Error);
  s = r.state(2, 4);
  s.mean = Tensor<double>({2, 3});
  CHECK_THROWS_WITH_AS(timestep_decay_norm(x, nullptr, s, p),
                       "timestep_decay_norm: state.mean has shape [2, 3], expected [2, 4]", Error);
}
