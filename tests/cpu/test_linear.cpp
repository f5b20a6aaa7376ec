// linear: y = x·Wᵀ + b with W in PyTorch (out, in) layout.
#include <doctest/doctest.h>

#include "gecko/cpu/linear.hpp"

using namespace gecko;

TEST_CASE_TEMPLATE("linear matches the elementwise definition, with and without bias", T, float, double) {
  const std::int64_t B = 2, L = 3, in = 5, out = 4;
  Tensor<T> x({B, L, in}), w({out, in}), b({out});
  for (std::int64_t i = 0; i < x.size(); ++i) x[i] = T(0.1) * T(i % 7) - T(0.3);
  for (std::int64_t i = 0; i < w.size(); ++i) w[i] = T(0.05) * T((i * 3) % 11) - T(0.2);
  for (std::int64_t i = 0; i < b.size(); ++i) b[i] = T(i) - T(1.5);

  const Tensor<T> y = cpu::linear(x, w, &b);
  const Tensor<T> y0 = cpu::linear(x, w);
  REQUIRE(y.shape() == Shape{B, L, out});
  for (std::int64_t bb = 0; bb < B; ++bb)
    for (std::int64_t t = 0; t < L; ++t)
      for (std::int64_t o = 0; o < out; ++o) {
        T acc = 0;
        for (std::int64_t i = 0; i < in; ++i) acc += x(bb, t, i) * w(o, i);
        CHECK(y0(bb, t, o) == doctest::Approx(double(acc)).epsilon(1e-6));
        CHECK(y(bb, t, o) == doctest::Approx(double(acc + b[o])).epsilon(1e-6));
      }
}

TEST_CASE("linear names the mismatching shapes") {
  const Tensor<float> x({2, 3, 5}), w({4, 6}), w_ok({4, 5}), b({3});
  CHECK_THROWS_WITH_AS(cpu::linear(x, w), doctest::Contains("the last dimension of x must be in = 6"),
                       Error);
  CHECK_THROWS_WITH_AS(cpu::linear(x, w_ok, &b), doctest::Contains("linear: bias has shape [3], expected [4]"),
                       Error);
}
