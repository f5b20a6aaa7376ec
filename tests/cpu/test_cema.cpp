// Complex EMA (spec §3.2, §6): golden cases, streaming splits, bos resets, the scan composition
// against the sequential recurrence, and Megalodon's residual weight and γ scale.
#include <cmath>
#include <random>
#include <vector>

#include "gecko/cpu/cema.hpp"
#include "support/golden.hpp"
#include "support/layout.hpp"
#include "support/random.hpp"

using namespace gecko;
using namespace gecko::cpu;

namespace {

// (D, N) complex -> (D, N, 2) real, the golden layout.
template <class T>
Tensor<T> as_real(const Tensor<Complex<T>>& z) {
  Tensor<T> out({z.dim(0), z.dim(1), 2});
  for (std::int64_t i = 0; i < z.size(); ++i) {
    out[2 * i] = z[i].re;
    out[2 * i + 1] = z[i].im;
  }
  return out;
}

template <class T>
void check_golden(const std::string& name, const Tensor<T>& cand, const Tensor<float>& golden) {
  MESSAGE(name, ": rel error ", testing::rel_error(cand, golden));
  testing::check_close(name, cand, golden, testing::golden_tolerance<T>());
}

template <class T>
void run_golden_case(const std::string& case_name) {
  const auto f = testing::open_golden(case_name);
  CemaParams<T> params{f->get_as<T>("alpha"), f->get_as<T>("delta"), f->get_as<T>("theta"),
                       f->get_as<T>("gamma"), {}};
  const CemaCoefficients<T> coeffs = cema_coefficients(params);
  check_golden("coeffs.p", coeffs.p, f->get<float>("aux.coeffs.p"));
  check_golden("coeffs.q", as_real(coeffs.q), f->get<float>("aux.coeffs.q"));
  check_golden("coeffs.gamma", as_real(coeffs.gamma), f->get<float>("aux.coeffs.gamma"));

  const Tensor<T> x = testing::swap_dims12(f->get_as<T>("in.x"));  // (B, L, D)
  Tensor<T> h;
  if (f->contains("in.hx")) h = f->get_as<T>("in.hx");
  Tensor<bool> bos;
  if (f->contains("in.bos_mask")) bos = f->get<bool>("in.bos_mask");

  const Tensor<T> y = cema(x, bos.empty() ? nullptr : &bos, h, coeffs);
  check_golden("y", y, testing::swap_dims12(f->get<float>("out.y")));
  check_golden("h", h, f->get<float>("out.h"));
}

// Random coefficients, inputs and bos masks.
struct Random : testing::RandomStream {
  Random() : RandomStream(2024) {}

  CemaParams<double> params(std::int64_t D, std::int64_t N) {
    return {normal_tensor({D, N}), normal_tensor({D, N}), normal_tensor({D}),
            normal_tensor({D, N, 2}, 0, 0.5), {}};
  }
};

using testing::time_slice;

double rel(const Tensor<double>& a, const Tensor<double>& b) { return testing::rel_error(a, b); }

}  // namespace

TEST_CASE_TEMPLATE("cema golden: basic (zero state, no bos)", T, float, double) {
  run_golden_case<T>("cema_basic");
}
TEST_CASE_TEMPLATE("cema golden: hx_bos (carried state, bos resets)", T, float, double) {
  run_golden_case<T>("cema_hx_bos");
}

TEST_CASE("cema: calls split anywhere, one token per call included, equal one call") {
  Random r;
  const std::int64_t B = 2, L = 29, D = 8, N = 4;
  const auto coeffs = cema_coefficients(r.params(D, N));
  const Tensor<double> x = r.normal_tensor({B, L, D});
  const Tensor<bool> bos = r.bos(B, L, 0.1);
  const Tensor<double> h0 = r.normal_tensor({B, D, N, 2});

  Tensor<double> h_whole = h0;
  const Tensor<double> y = cema(x, &bos, h_whole, coeffs);

  for (const std::int64_t split : {1, 13, 28}) {
    INFO("split at ", split);
    Tensor<double> h = h0;
    const auto bos1 = time_slice(bos, 0, split), bos2 = time_slice(bos, split, L);
    const Tensor<double> y1 = cema(time_slice(x, 0, split), &bos1, h, coeffs);
    const Tensor<double> y2 = cema(time_slice(x, split, L), &bos2, h, coeffs);
    CHECK(rel(y1, time_slice(y, 0, split)) < 1e-12);
    CHECK(rel(y2, time_slice(y, split, L)) < 1e-12);
    CHECK(rel(h, h_whole) < 1e-12);
  }

  Tensor<double> h = h0;
  for (std::int64_t t = 0; t < L; ++t) {
    const auto bos_t = time_slice(bos, t, t + 1);
    const Tensor<double> yt = cema(time_slice(x, t, t + 1), &bos_t, h, coeffs);
    REQUIRE(rel(yt, time_slice(y, t, t + 1)) < 1e-12);
  }
  CHECK(rel(h, h_whole) < 1e-12);
}

TEST_CASE("cema: a bos forgets every earlier token and the carried state") {
  Random r;
  const std::int64_t B = 2, L = 24, D = 8, N = 4, t_bos = 11;
  const auto coeffs = cema_coefficients(r.params(D, N));
  Tensor<double> x = r.normal_tensor({B, L, D});
  Tensor<bool> bos({B, L}, false);
  bos(0, t_bos) = true;  // row 0: inside the call
  bos(1, 0) = true;      // row 1: on the first token, so the carried state is ignored

  Tensor<double> h1 = r.normal_tensor({B, D, N, 2});
  const Tensor<double> y1 = cema(x, &bos, h1, coeffs);

  for (std::int64_t t = 0; t < t_bos; ++t)
    for (std::int64_t d = 0; d < D; ++d) x(0, t, d) = 2.0 * r.normal(r.rng) + 1.0;
  Tensor<double> h2 = r.normal_tensor({B, D, N, 2}, 0, 3.0);
  const Tensor<double> y2 = cema(x, &bos, h2, coeffs);

  CHECK(rel(time_slice(y1, 0, t_bos), time_slice(y2, 0, t_bos)) > 1e-3);  // the change is seen
  for (std::int64_t t = t_bos; t < L; ++t)
    for (std::int64_t d = 0; d < D; ++d) REQUIRE(y1(0, t, d) == y2(0, t, d));
  for (std::int64_t t = 0; t < L; ++t)
    for (std::int64_t d = 0; d < D; ++d) REQUIRE(y1(1, t, d) == y2(1, t, d));
  CHECK(rel(h1, h2) == 0);
}

TEST_CASE("CemaCompose: composing the steps of slices in any bracketing equals the recurrence") {
  std::mt19937_64 rng(99);
  std::normal_distribution<double> normal;
  std::uniform_int_distribution<int> slice_len(1, 6);
  std::bernoulli_distribution coin(0.1);
  const CemaCompose<double> compose;
  const Complex<double> q{0.93 * std::cos(0.4), 0.93 * std::sin(0.4)};
  const double p = 0.35;

  for (int trial = 0; trial < 30; ++trial) {
    INFO("trial ", trial);
    const int L = 1 + trial * 11 % 83;
    std::vector<CemaStep<double>> steps;
    for (int t = 0; t < L; ++t) steps.push_back(CemaStep<double>::at(q, p, normal(rng), coin(rng)));
    const Complex<double> h0{normal(rng), normal(rng)};

    std::vector<Complex<double>> states;  // state after each token, step by step
    Complex<double> h = h0;
    for (const auto& s : steps) states.push_back(h = s.apply(h));

    std::vector<CemaStep<double>> slices;
    Complex<double> carried = h0;  // the state carried from slice to slice
    for (int t0 = 0; t0 < L;) {
      const int t1 = std::min(L, t0 + slice_len(rng));
      CemaStep<double> m;  // identity
      for (int t = t0; t < t1; ++t) m = compose(m, steps[t]);
      slices.push_back(m);
      carried = m.apply(carried);
      const Complex<double> diff = carried - states[t1 - 1];
      CHECK(std::hypot(diff.re, diff.im) <= 1e-12 * std::hypot(states[t1 - 1].re, states[t1 - 1].im));
      t0 = t1;
    }
    std::vector<CemaStep<double>> level = slices;
    while (level.size() > 1) {
      std::vector<CemaStep<double>> next;
      for (std::size_t i = 0; i + 1 < level.size(); i += 2) next.push_back(compose(level[i], level[i + 1]));
      if (level.size() % 2) next.push_back(level.back());
      level = next;
    }
    const Complex<double> diff = level[0].apply(h0) - states.back();
    CHECK(std::hypot(diff.re, diff.im) <= 1e-12 * std::hypot(states.back().re, states.back().im));
  }
}

TEST_CASE("cema: Megalodon's residual weight omega and gamma scale") {
  Random r;
  const std::int64_t B = 2, L = 15, D = 8, N = 4;
  CemaParams<double> params = r.params(D, N);
  const Tensor<double> x = r.normal_tensor({B, L, D});
  Tensor<double> h_gecko, h_mega;
  const Tensor<double> c_gecko = cema(x, nullptr, h_gecko, cema_coefficients(params));

  params.omega = r.normal_tensor({D}, 0, 0.25);
  params.gamma_scale = 1 / std::sqrt(double(N));
  const auto coeffs = cema_coefficients(params);
  for (std::int64_t i = 0; i < coeffs.gamma.size(); ++i)
    CHECK(coeffs.gamma[i].re == doctest::Approx(params.gamma[2 * i] * 0.5).epsilon(1e-15));
  const Tensor<double> c_mega = cema(x, nullptr, h_mega, coeffs, &params.omega);

  // The state does not involve γ or ω; the output is ω·x + y with y scaled by 1/sqrt(N).
  CHECK(rel(h_mega, h_gecko) == 0);
  Tensor<double> expect(x.shape());
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t t = 0; t < L; ++t)
      for (std::int64_t d = 0; d < D; ++d)
        expect(b, t, d) = params.omega[d] * x(b, t, d) + 0.5 * (c_gecko(b, t, d) - x(b, t, d));
  CHECK(rel(c_mega, expect) < 1e-12);
}

TEST_CASE("cema rejects inputs of the wrong shape, naming them") {
  Random r;
  auto params = r.params(8, 4);
  const auto coeffs = cema_coefficients(params);
  const Tensor<double> x = r.normal_tensor({2, 5, 8});

  Tensor<double> h({2, 8, 3, 2});
  CHECK_THROWS_WITH_AS(cema(x, nullptr, h, coeffs), "cema: h has shape [2, 8, 3, 2], expected [2, 8, 4, 2]",
                       Error);
  h = Tensor<double>();
  const Tensor<double> x_wrong = r.normal_tensor({2, 5, 7});
  CHECK_THROWS_WITH_AS(cema(x_wrong, nullptr, h, coeffs), "cema: p has shape [8, 4], expected [7, 4]",
                       Error);
  const Tensor<double> omega({9});
  CHECK_THROWS_WITH_AS(cema(x, nullptr, h, coeffs, &omega), "cema: omega has shape [9], expected [8]",
                       Error);
  params.theta = Tensor<double>({8, 1, 1});
  CHECK_THROWS_WITH_AS(cema_coefficients(params),
                       "cema_coefficients: theta has shape [8, 1, 1], expected [8]", Error);
}
