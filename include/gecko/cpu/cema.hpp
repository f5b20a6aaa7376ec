#pragma once
// Complex exponential moving average (spec §3.2, §6): per channel d and order n,
//   h_t = a_t·h_{t-1} + p·x_t  (a_t = 0 at a bos, q otherwise),   y_t = Σ_n Re(γ·h_t),
//   c_t = x_t + y_t  (Gecko)   or   ω·x_t + y_t  (Megalodon, learned ω).

#include <cmath>
#include <cstdint>
#include <numbers>
#include <string_view>

#include "gecko/core/complex.hpp"
#include "gecko/core/error.hpp"
#include "gecko/core/shape.hpp"
#include "gecko/core/tensor.hpp"
#include "gecko/cpu/cema_scan.hpp"

namespace gecko::cpu {

template <class T>
struct CemaParams {
  Tensor<T> alpha, delta;  // (D, N)
  Tensor<T> theta;         // (D)
  Tensor<T> gamma;         // (D, N, 2) (re, im)
  Tensor<T> omega;         // (D) Megalodon's learned residual weight; empty = residual weight 1
  double gamma_scale = 1;  // Megalodon: 1/sqrt(N)
};

template <class T>
struct CemaCoefficients {
  Tensor<T> p;                    // (D, N) real input gain
  Tensor<Complex<T>> q, gamma;    // (D, N) complex decay and output weights
};

// p = σ(alpha), q = (1 − σ(alpha)·σ(delta))·e^{iθ} with θ_n = (n+1)·σ(theta)·2π/N,
// γ = gamma·gamma_scale. Computed in T. (The reference computes them in float32 whatever the
// dtype, so its coefficients sit up to 3e-7 from the double ones, and a double CEMA lands up to
// 5e-7 from the golden state h.)
template <class T>
CemaCoefficients<T> cema_coefficients(const CemaParams<T>& params) {
  constexpr std::string_view op = "cema_coefficients";
  require(params.alpha.rank() == 2, op, ": alpha has shape ", params.alpha.shape().str(),
          ", expected [D, N]");
  const std::int64_t D = params.alpha.dim(0), N = params.alpha.dim(1);
  check_shape(op, "delta", params.delta.shape(), {D, N});
  check_shape(op, "theta", params.theta.shape(), {D});
  check_shape(op, "gamma", params.gamma.shape(), {D, N, 2});

  // The coefficients are formed in float32 whatever T, as the reference does (spec §3.2): the
  // golden float64 runs inherit those float32 coefficients, so computing them in double would
  // move every CEMA output by up to 3e-7 relative.
  using F = float;
  auto sigmoid = [](F v) { return F(1) / (F(1) + std::exp(-v)); };
  const F two_pi_over_n = F(2 * std::numbers::pi / double(N));
  const T scale = T(params.gamma_scale);

  CemaCoefficients<T> c{Tensor<T>({D, N}), Tensor<Complex<T>>({D, N}), Tensor<Complex<T>>({D, N})};
  for (std::int64_t d = 0; d < D; ++d) {
    const F phi = sigmoid(F(params.theta[d])) * two_pi_over_n;  // φ_d
    for (std::int64_t n = 0; n < N; ++n) {
      const F p = sigmoid(F(params.alpha(d, n)));
      const F angle = F(n + 1) * phi;                            // θ_{d,n}
      const F modulus = F(1) - p * sigmoid(F(params.delta(d, n)));
      c.p(d, n) = T(p);
      c.q(d, n) = {T(modulus * std::cos(angle)), T(modulus * std::sin(angle))};
      c.gamma(d, n) = {params.gamma(d, n, 0) * scale, params.gamma(d, n, 1) * scale};
    }
  }
  return c;
}

// x: (B, L, D) (token-major, unlike the reference's channel-major layout); bos: (B, L) or nullptr;
// h: (B, D, N, 2) state in/out, empty = zero state; omega: (D) residual weight, nullptr or empty
// = 1. Returns c (B, L, D).
template <class T>
Tensor<T> cema(const Tensor<T>& x, const Tensor<bool>* bos, Tensor<T>& h,
               const CemaCoefficients<T>& coeffs, const Tensor<T>* omega = nullptr) {
  constexpr std::string_view op = "cema";
  require(x.rank() == 3, op, ": x has shape ", x.shape().str(), ", expected [B, L, D]");
  const std::int64_t B = x.dim(0), L = x.dim(1), D = x.dim(2);
  require(coeffs.p.rank() == 2, op, ": p has shape ", coeffs.p.shape().str(), ", expected [D, N]");
  const std::int64_t N = coeffs.p.dim(1);
  check_shape(op, "p", coeffs.p.shape(), {D, N});
  check_shape(op, "q", coeffs.q.shape(), {D, N});
  check_shape(op, "gamma", coeffs.gamma.shape(), {D, N});
  if (bos) check_shape(op, "bos", bos->shape(), {B, L});
  if (!h.empty()) check_shape(op, "h", h.shape(), {B, D, N, 2});
  const bool has_omega = omega && !omega->empty();
  if (has_omega) check_shape(op, "omega", omega->shape(), {D});

  Tensor<T> h_last({B, D, N, 2});
  Tensor<T> c(x.shape());  // (B, L, D), zero-initialised: y accumulates into it first
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t d = 0; d < D; ++d) {
      const T w = has_omega ? (*omega)[d] : T(1);
      for (std::int64_t n = 0; n < N; ++n) {
        Complex<T> s = h.empty() ? Complex<T>{} : Complex<T>{h(b, d, n, 0), h(b, d, n, 1)};
        const Complex<T> q = coeffs.q(d, n), g = coeffs.gamma(d, n);
        const T p = coeffs.p(d, n);
        for (std::int64_t t = 0; t < L; ++t) {
          s = CemaStep<T>::at(q, p, x(b, t, d), bos && (*bos)(b, t)).apply(s);
          c(b, t, d) += g.re * s.re - g.im * s.im;  // Re(γ·h_t), summed over n in order
        }
        h_last(b, d, n, 0) = s.re;
        h_last(b, d, n, 1) = s.im;
      }
      for (std::int64_t t = 0; t < L; ++t) c(b, t, d) = w * x(b, t, d) + c(b, t, d);
    }
  }
  h = std::move(h_last);
  return c;
}

}  // namespace gecko::cpu
