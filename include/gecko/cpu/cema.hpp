#pragma once
// Complex exponential moving average (spec §3.2, §6): per channel d and order n,
//   h_t = a_t·h_{t-1} + p·x_t  (a_t = 0 at a bos, q otherwise),   y_t = Σ_n Re(γ·h_t),
//   c_t = x_t + y_t  (Gecko)   or   ω·x_t + y_t  (Megalodon, learned ω).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <string_view>
#include <vector>

#include "gecko/core/complex.hpp"
#include "gecko/core/error.hpp"
#include "gecko/core/shape.hpp"
#include "gecko/core/tensor.hpp"
#include "gecko/core/threads.hpp"
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

namespace detail {

// Channels advanced together: the recurrence runs over time for a block of kCemaLanes channels
// at once, so every step is a vector operation over channels, and the N orders of a channel are
// N independent chains. A block's state and coefficients (7·N·kCemaLanes values, 7 KiB in float)
// stay in L1 for the whole sequence; x and c are read and written once.
inline constexpr std::int64_t kCemaLanes = 16;

// Order n of a block of channels.
template <class T>
struct CemaLanes {
  T h_re[kCemaLanes], h_im[kCemaLanes];  // state h
  T q_re[kCemaLanes], q_im[kCemaLanes];  // decay q
  T p[kCemaLanes];                       // input gain
  T g_re[kCemaLanes], g_im[kCemaLanes];  // output weight γ
};

// §6.2 for batch row b, channels [d0, d0 + W), W <= kCemaLanes, over all L tokens: per channel and
// order CemaStep::at(q, p, x_t, bos_t).apply(h) written out (a bos sets a = 0, i.e. drops the
// earlier state), y summed over n in order 0 … N−1, then the residual. Lanes past W stay zero.
// `lanes` is the caller's scratch, N entries.
template <class T>
void cema_channel_block(const T* x, T* c, std::int64_t L, std::int64_t D, std::int64_t d0,
                        std::int64_t W, const bool* bos, const Tensor<T>& h_in, Tensor<T>& h_out,
                        std::int64_t b, const CemaCoefficients<T>& coeffs, const T* omega,
                        std::vector<CemaLanes<T>>& lanes) {
  constexpr std::int64_t K = kCemaLanes;
  const std::int64_t N = coeffs.p.dim(1);
  std::fill(lanes.begin(), lanes.end(), CemaLanes<T>{});
  T w_res[K] = {};  // residual weight
  for (std::int64_t k = 0; k < W; ++k) {
    const std::int64_t d = d0 + k;
    w_res[k] = omega ? omega[d] : T(1);
    for (std::int64_t n = 0; n < N; ++n) {
      CemaLanes<T>& l = lanes[std::size_t(n)];
      l.q_re[k] = coeffs.q(d, n).re, l.q_im[k] = coeffs.q(d, n).im, l.p[k] = coeffs.p(d, n);
      l.g_re[k] = coeffs.gamma(d, n).re, l.g_im[k] = coeffs.gamma(d, n).im;
      if (!h_in.empty()) l.h_re[k] = h_in(b, d, n, 0), l.h_im[k] = h_in(b, d, n, 1);
    }
  }

  for (std::int64_t t = 0; t < L; ++t) {
    T xt[K] = {}, y[K] = {};
    std::copy_n(x + t * D + d0, W, xt);
    if (bos && bos[t])
      for (CemaLanes<T>& l : lanes) std::fill_n(l.h_re, K, T(0)), std::fill_n(l.h_im, K, T(0));
    for (CemaLanes<T>& l : lanes)
      for (std::int64_t k = 0; k < K; ++k) {
        const T re = (l.q_re[k] * l.h_re[k] - l.q_im[k] * l.h_im[k]) + l.p[k] * xt[k];  // q·h + p·x
        const T im = l.q_re[k] * l.h_im[k] + l.q_im[k] * l.h_re[k];
        l.h_re[k] = re, l.h_im[k] = im;
        y[k] += l.g_re[k] * re - l.g_im[k] * im;  // Re(γ·h_t), summed over n in order
      }
    T* ct = c + t * D + d0;
    for (std::int64_t k = 0; k < W; ++k) ct[k] = w_res[k] * xt[k] + y[k];
  }
  for (std::int64_t k = 0; k < W; ++k)
    for (std::int64_t n = 0; n < N; ++n) {
      h_out(b, d0 + k, n, 0) = lanes[std::size_t(n)].h_re[k];
      h_out(b, d0 + k, n, 1) = lanes[std::size_t(n)].h_im[k];
    }
}

}  // namespace detail

// x: (B, L, D) (token-major, unlike the reference's channel-major layout); bos: (B, L) or nullptr;
// h: (B, D, N, 2) state in/out, empty = zero state; omega: (D) residual weight, nullptr or empty
// = 1. Returns c (B, L, D). Channels are independent: blocks of them run on separate workers.
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

  auto h_last = Tensor<T>::uninitialized({B, D, N, 2});
  auto c = Tensor<T>::uninitialized(x.shape());  // (B, L, D)
  const std::int64_t blocks = (D + detail::kCemaLanes - 1) / detail::kCemaLanes;
  parallel_for(B * blocks, 12.0 * double(B * L * D * N), [&](std::int64_t i0, std::int64_t i1) {
    std::vector<detail::CemaLanes<T>> lanes(static_cast<std::size_t>(N));
    for (std::int64_t i = i0; i < i1; ++i) {
      const std::int64_t b = i / blocks, d0 = (i % blocks) * detail::kCemaLanes;
      detail::cema_channel_block(x.data() + b * L * D, c.data() + b * L * D, L, D, d0,
                                 std::min(detail::kCemaLanes, D - d0),
                                 bos ? bos->data() + b * L : nullptr, h, h_last, b, coeffs,
                                 has_omega ? omega->data() : nullptr, lanes);
    }
  });
  h = std::move(h_last);
  return c;
}

}  // namespace gecko::cpu
