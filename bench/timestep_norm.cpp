// Timestep decay norm (spec §5): the op against the §5.3 recurrence written as one plain
// sequential loop, and against a memory copy of the bytes it must move.

#include "gecko/cpu/timestep_norm.hpp"

#include "support/common.hpp"
#include "support/work.hpp"

namespace gecko::bench {
namespace {

using T = float;

cpu::TimestepNormParams<T> tsn_params(const Sizes& s) {
  cpu::TimestepNormParams<T> p;
  p.weight = random_tensor<T>({s.D}, 11, 0.1);
  p.bias = random_tensor<T>({s.D}, 12, 0.1);
  p.prior_count = Tensor<std::int64_t>(Shape{}, 0);
  p.prior_mean = Tensor<T>({s.G});
  p.prior_var = Tensor<T>({s.G});
  p.groups = int(s.G);
  return p;
}

// §5.3 from the priors as one sequential loop per (b, group): running β^n products, the scale
// 1 + weight formed once.
Tensor<T> tsn_sequential(const Tensor<T>& x, const cpu::TimestepNormParams<T>& p,
                         cpu::TimestepNormState<T>& state) {
  const std::int64_t B = x.dim(0), L = x.dim(1), D = x.dim(2), G = p.groups, Dg = D / G;
  const T b1 = T(p.beta1), b2 = T(p.beta2), c1 = T(1.0 - p.beta1), c2 = T(1.0 - p.beta2);
  std::vector<T> g(static_cast<std::size_t>(D));
  for (std::int64_t i = 0; i < D; ++i) g[i] = T(1) + p.weight[i];
  Tensor<T> y(x.shape());
  state = {Tensor<std::int64_t>({B}), Tensor<T>({B, G}), Tensor<T>({B, G})};
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t k = 0; k < G; ++k) {
      std::int64_t n = p.prior_count[0];
      double pow1 = std::pow(p.beta1, double(n)), pow2 = std::pow(p.beta2, double(n));
      T M = p.prior_mean[k], V = p.prior_var[k];
      for (std::int64_t t = 0; t < L; ++t) {
        const T* xt = x.data() + (b * L + t) * D + k * Dg;
        T* yt = y.data() + (b * L + t) * D + k * Dg;
        T sum = 0;
        for (std::int64_t i = 0; i < Dg; ++i) sum += xt[i];
        const T mu = sum / T(Dg);
        T sq = 0;
        for (std::int64_t i = 0; i < Dg; ++i) sq += (xt[i] - mu) * (xt[i] - mu);
        const T s2 = sq / T(Dg);
        ++n;
        M = b1 * M + c1 * mu;
        V = b2 * V + c2 * s2;
        pow1 *= p.beta1;
        pow2 *= p.beta2;
        const T mean = M / T(1 - pow1), var = V / T(1 - pow2);
        const T rstd = T(1) / std::sqrt(var + T(p.eps));
        for (std::int64_t i = 0; i < Dg; ++i)
          yt[i] = (xt[i] - mean) * rstd * g[k * Dg + i] + p.bias[k * Dg + i];
      }
      state.mean(b, k) = M;
      state.var(b, k) = V;
      state.count[b] = n;
    }
  }
  return y;
}

}  // namespace

void register_benchmarks() {
  for (const Sizes& s : kTiers) {
    add("timestep_norm", "gecko", s, [s](benchmark::State& state) {
      const auto x = random_tensor<T>({s.B, s.L, s.D}, 1);
      const auto p = tsn_params(s);
      for (auto _ : state) {
        cpu::TimestepNormState<T> st;  // priors
        auto y = cpu::timestep_decay_norm(x, nullptr, st, p);
        benchmark::DoNotOptimize(y.data());
      }
      report(state, work::timestep_norm(s));
    });
    add("timestep_norm", "sequential", s, [s](benchmark::State& state) {
      const auto x = random_tensor<T>({s.B, s.L, s.D}, 1);
      const auto p = tsn_params(s);
      cpu::TimestepNormState<T> op_state, seq_state;
      const auto expected = cpu::timestep_decay_norm(x, nullptr, op_state, p);
      if (!same_result(state, tsn_sequential(x, p, seq_state), expected, 1e-4)) return;
      for (auto _ : state) {
        cpu::TimestepNormState<T> st;
        auto y = tsn_sequential(x, p, st);
        benchmark::DoNotOptimize(y.data());
      }
      report(state, work::timestep_norm(s));
    });
    add_memcpy("timestep_norm", s, work::timestep_norm(s).bytes);
  }
}

}  // namespace gecko::bench
