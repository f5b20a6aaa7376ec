// Complex EMA (spec §6): the op against the recurrence written as one sequential loop per
// channel (time outer, the N orders inner), and against a memory copy of the bytes it must move.

#include "gecko/cpu/cema.hpp"

#include "support/common.hpp"
#include "support/work.hpp"

namespace gecko::bench {
namespace {

using T = float;

cpu::CemaCoefficients<T> cema_coeffs(const Sizes& s) {
  cpu::CemaParams<T> p;
  p.alpha = random_tensor<T>({s.D, s.N}, 21, 0.2);
  p.delta = random_tensor<T>({s.D, s.N}, 22, 0.2);
  p.theta = random_tensor<T>({s.D}, 23, 1.0);
  p.gamma = random_tensor<T>({s.D, s.N, 2}, 24, 1.0 / std::sqrt(double(s.N)));
  return cpu::cema_coefficients(p);
}

// §6.2 as a per-channel sequential loop: for each (b, d) walk t, updating the N states.
Tensor<T> cema_sequential(const Tensor<T>& x, const cpu::CemaCoefficients<T>& k, Tensor<T>& h) {
  const std::int64_t B = x.dim(0), L = x.dim(1), D = x.dim(2), N = k.p.dim(1);
  Tensor<T> c(x.shape());
  h = Tensor<T>({B, D, N, 2});
  std::vector<T> hre(static_cast<std::size_t>(N)), him(hre), qre(hre), qim(hre), p(hre), gre(hre),
      gim(hre);
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t d = 0; d < D; ++d) {
      for (std::int64_t n = 0; n < N; ++n) {
        hre[n] = him[n] = 0;
        qre[n] = k.q(d, n).re, qim[n] = k.q(d, n).im, p[n] = k.p(d, n);
        gre[n] = k.gamma(d, n).re, gim[n] = k.gamma(d, n).im;
      }
      for (std::int64_t t = 0; t < L; ++t) {
        const T xt = x.data()[(b * L + t) * D + d];
        T y = 0;
        for (std::int64_t n = 0; n < N; ++n) {
          const T re = qre[n] * hre[n] - qim[n] * him[n] + p[n] * xt;
          const T im = qre[n] * him[n] + qim[n] * hre[n];
          hre[n] = re, him[n] = im;
          y += gre[n] * re - gim[n] * im;
        }
        c.data()[(b * L + t) * D + d] = xt + y;
      }
      for (std::int64_t n = 0; n < N; ++n) h(b, d, n, 0) = hre[n], h(b, d, n, 1) = him[n];
    }
  }
  return c;
}

}  // namespace

void register_benchmarks() {
  for (const Sizes& s : kTiers) {
    add("cema", "gecko", s, [s](benchmark::State& state) {
      const auto x = random_tensor<T>({s.B, s.L, s.D}, 2);
      const auto coeffs = cema_coeffs(s);
      for (auto _ : state) {
        Tensor<T> h;  // zero state
        auto c = cpu::cema(x, nullptr, h, coeffs);
        benchmark::DoNotOptimize(c.data());
      }
      report(state, work::cema(s));
    });
    add("cema", "sequential", s, [s](benchmark::State& state) {
      const auto x = random_tensor<T>({s.B, s.L, s.D}, 2);
      const auto coeffs = cema_coeffs(s);
      Tensor<T> h_op, h_seq;
      const auto expected = cpu::cema(x, nullptr, h_op, coeffs);
      if (!same_result(state, cema_sequential(x, coeffs, h_seq), expected, 1e-4) ||
          !same_result(state, h_seq, h_op, 1e-4))
        return;
      for (auto _ : state) {
        Tensor<T> h;
        auto c = cema_sequential(x, coeffs, h);
        benchmark::DoNotOptimize(c.data());
      }
      report(state, work::cema(s));
    });
    add_memcpy("cema", s, work::cema(s).bytes);
  }
}

}  // namespace gecko::bench
