// Group RMS norm and group layer norm (spec §7) over D with one group (mega.rmsnorm, nffn.norm):
// the ops against a plain per-row loop and against a memory copy of the bytes they must move.

#include "gecko/cpu/group_norm.hpp"

#include "support/common.hpp"
#include "support/work.hpp"

namespace gecko::bench {
namespace {

using T = float;
constexpr double kEps = 1e-5;

// One row (token) at a time, the scale 1 + weight formed once.
Tensor<T> rms_sequential(const Tensor<T>& x, const Tensor<T>& weight) {
  const std::int64_t F = x.dim(x.rank() - 1), rows = x.size() / F;
  std::vector<T> g(static_cast<std::size_t>(F));
  for (std::int64_t i = 0; i < F; ++i) g[i] = T(1) + weight[i];
  Tensor<T> y(x.shape());
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* xr = x.data() + r * F;
    T* yr = y.data() + r * F;
    T sq = 0;
    for (std::int64_t i = 0; i < F; ++i) sq += xr[i] * xr[i];
    const T rho = T(1) / std::sqrt(sq / T(F) + T(kEps));
    for (std::int64_t i = 0; i < F; ++i) yr[i] = xr[i] * rho * g[i];
  }
  return y;
}

Tensor<T> layer_sequential(const Tensor<T>& x, const Tensor<T>& weight, const Tensor<T>& bias) {
  const std::int64_t F = x.dim(x.rank() - 1), rows = x.size() / F;
  std::vector<T> g(static_cast<std::size_t>(F));
  for (std::int64_t i = 0; i < F; ++i) g[i] = T(1) + weight[i];
  Tensor<T> y(x.shape());
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* xr = x.data() + r * F;
    T* yr = y.data() + r * F;
    T sum = 0;
    for (std::int64_t i = 0; i < F; ++i) sum += xr[i];
    const T mu = sum / T(F);
    T sq = 0;
    for (std::int64_t i = 0; i < F; ++i) sq += (xr[i] - mu) * (xr[i] - mu);
    const T rho = T(1) / std::sqrt(sq / T(F) + T(kEps));
    for (std::int64_t i = 0; i < F; ++i) yr[i] = (xr[i] - mu) * rho * g[i] + bias[i];
  }
  return y;
}

}  // namespace

void register_benchmarks() {
  for (const Sizes& s : kTiers) {
    auto inputs = [s] {
      return std::tuple{random_tensor<T>({s.B, s.L, s.D}, 3, 2.0), random_tensor<T>({s.D}, 31, 0.1),
                        random_tensor<T>({s.D}, 32, 0.1)};
    };
    add("rms_norm", "gecko", s, [s, inputs](benchmark::State& state) {
      const auto [x, w, b] = inputs();
      for (auto _ : state) {
        auto y = cpu::group_rms_norm(x, 1, kEps, &w);
        benchmark::DoNotOptimize(y.data());
      }
      report(state, work::rms_norm(s));
    });
    add("rms_norm", "sequential", s, [s, inputs](benchmark::State& state) {
      const auto [x, w, b] = inputs();
      if (!same_result(state, rms_sequential(x, w), cpu::group_rms_norm(x, 1, kEps, &w), 1e-5)) return;
      for (auto _ : state) {
        auto y = rms_sequential(x, w);
        benchmark::DoNotOptimize(y.data());
      }
      report(state, work::rms_norm(s));
    });
    add_memcpy("rms_norm", s, work::rms_norm(s).bytes);

    add("layer_norm", "gecko", s, [s, inputs](benchmark::State& state) {
      const auto [x, w, b] = inputs();
      for (auto _ : state) {
        auto y = cpu::group_layer_norm(x, 1, kEps, &w, &b);
        benchmark::DoNotOptimize(y.data());
      }
      report(state, work::layer_norm(s));
    });
    add("layer_norm", "sequential", s, [s, inputs](benchmark::State& state) {
      const auto [x, w, b] = inputs();
      if (!same_result(state, layer_sequential(x, w, b), cpu::group_layer_norm(x, 1, kEps, &w, &b),
                       1e-5))
        return;
      for (auto _ : state) {
        auto y = layer_sequential(x, w, b);
        benchmark::DoNotOptimize(y.data());
      }
      report(state, work::layer_norm(s));
    });
    add_memcpy("layer_norm", s, work::layer_norm(s).bytes);
  }
}

}  // namespace gecko::bench
