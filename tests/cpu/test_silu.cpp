// cpu::silu: float (the vectorisable silu_float, on the baseline and the AVX2 loop) and double
// against x / (1 + e^−x) in long double, with and without a gate.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

#include "gecko/cpu/silu.hpp"

using namespace gecko;

namespace {

long double exact_silu(long double x) { return x / (1.0L + std::exp(-x)); }

// Every 4099th float of magnitude in [1e-30, 87], both signs, plus the edges.
Tensor<float> float_samples() {
  std::vector<float> v{0.f, -0.f, 1e-30f, -1e-30f, 87.f, -87.f, 0.5f, -0.5f};
  for (std::uint32_t b = std::bit_cast<std::uint32_t>(1e-30f); b <= std::bit_cast<std::uint32_t>(87.f); b += 4099) {
    v.push_back(std::bit_cast<float>(b));
    v.push_back(-std::bit_cast<float>(b));
  }
  Tensor<float> t({std::int64_t(v.size())});
  for (std::size_t i = 0; i < v.size(); ++i) t[std::int64_t(i)] = v[i];
  return t;
}

// max over elements of |got − exact| / max(|exact|, tiny)
double worst_rel(const float* got, const Tensor<float>& x, const Tensor<float>* gate) {
  double worst = 0;
  for (std::int64_t i = 0; i < x.size(); ++i) {
    const long double want = exact_silu(x[i]) * (gate ? (*gate)[i] : 1.0L);
    const long double err = std::abs(got[i] - want) / std::max(std::abs(want), 1e-38L);
    worst = std::max(worst, double(err));
  }
  return worst;
}

}  // namespace

TEST_CASE("silu: float within 3e-7 relative of the exact function, with and without a gate") {
  const Tensor<float> x = float_samples();
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  Tensor<float> gate(x.shape());
  for (float& g : gate.span()) g = normal(rng);
  const Tensor<float> y = cpu::silu(x), yg = cpu::silu(x, &gate);
  const double plain = worst_rel(y.data(), x, nullptr), gated = worst_rel(yg.data(), x, &gate);
  MESSAGE("float silu worst rel ", plain, ", gated ", gated, " over ", x.size(), " samples");
  CHECK(plain <= 3e-7);
  CHECK(gated <= 4e-7);
  // Both loops, whichever the CPU takes in cpu::silu.
  Tensor<float> base(x.shape());
  cpu::detail::silu_run(x.data(), static_cast<const float*>(nullptr), base.data(), x.size());
  CHECK(worst_rel(base.data(), x, nullptr) <= 3e-7);
#if defined(__GNUC__) && defined(__x86_64__)
  if (cpu::detail::cpu_has_avx2_fma()) {
    Tensor<float> wide(x.shape());
    cpu::detail::silu_run_avx2(x.data(), nullptr, wide.data(), x.size());
    CHECK(worst_rel(wide.data(), x, nullptr) <= 3e-7);
  } else {
    MESSAGE("this CPU has no AVX2 + FMA: the AVX2 loop is not exercised");
  }
#endif
}

TEST_CASE("silu: large magnitudes, NaN and double") {
  Tensor<float> x({5});
  x[0] = 200.f, x[1] = -200.f, x[2] = std::numeric_limits<float>::quiet_NaN(), x[3] = 88.5f, x[4] = -88.5f;
  const Tensor<float> y = cpu::silu(x);
  CHECK(y[0] == 200.f);                      // σ = 1 to float precision
  CHECK(y[1] <= 0.f);
  CHECK(y[1] > -1e-34f);                     // x · σ(x) ≈ 0 far below zero
  CHECK(std::isnan(y[2]));
  CHECK(y[3] == 88.5f);
  CHECK(std::abs(y[4]) < 1e-34f);
  Tensor<double> xd({3});
  xd[0] = -3.25, xd[1] = 0.125, xd[2] = 7.5;
  const Tensor<double> yd = cpu::silu(xd);
  for (std::int64_t i = 0; i < 3; ++i) CHECK(std::abs(yd[i] - double(exact_silu(xd[i]))) <= 1e-15 * std::abs(double(exact_silu(xd[i]))));
  Tensor<float> wrong({4});
  CHECK_THROWS_WITH_AS(cpu::silu(x, &wrong), doctest::Contains("gate"), Error);
}
