#pragma once
// Timestep normalisation: each token is normalised, per group of channels, by running statistics
// of the tokens seen so far in its stream.
//   timestep_decay_norm:      Gecko's decayed, bias-corrected EMA with bos resets (spec §5).
//   timestep_cumulative_norm: Megalodon's cumulative Welford statistics (spec §12, first row).
// Both take the streaming state (count, mean, var) in and leave the state after the call in it.

#include <cmath>
#include <cstdint>
#include <string_view>
#include <utility>

#include "gecko/core/error.hpp"
#include "gecko/core/shape.hpp"
#include "gecko/core/tensor.hpp"
#include "gecko/cpu/timestep_norm_scan.hpp"

namespace gecko::cpu {

// Streaming state. An empty tensor stands for the corresponding prior.
template <class T>
struct TimestepNormState {
  Tensor<std::int64_t> count;  // (B)
  Tensor<T> mean, var;         // (B, G) raw EMAs (decay norm) or running moments (cumulative norm)
};

template <class T>
struct TimestepNormParams {
  Tensor<T> weight, bias;            // (D) raw parameters; the scale is g = 1 + weight
  Tensor<std::int64_t> prior_count;  // () scalar
  Tensor<T> prior_mean, prior_var;   // (G)   (Megalodon: prior_var = exp(prior_logv))
  int groups = 1;
  double beta1 = 0.999, beta2 = 0.9999, eps = 1e-5;  // betas: decay norm only
};

// Per-token statistics the normalisation used (the reference's backward inputs).
template <class T>
struct TimestepNormStats {
  Tensor<T> cummean, cumrstd;  // (B, L, G)
};

namespace detail {

struct NormDims {
  std::int64_t B, L, D, G;
};

inline NormDims check_norm_inputs(std::string_view op, const Shape& x, const Tensor<bool>* bos,
                                  const Shape& weight, const Shape& bias, int groups) {
  require(x.rank == 3, op, ": x has shape ", x.str(), ", expected [B, L, D]");
  const NormDims n{x[0], x[1], x[2], groups};
  require(groups > 0 && n.D % groups == 0, op, ": groups = ", groups, " does not divide D = ", n.D);
  check_shape(op, "weight", weight, {n.D});
  check_shape(op, "bias", bias, {n.D});
  if (bos) check_shape(op, "bos", bos->shape(), {n.B, n.L});
  return n;
}

// The incoming state with every empty part replaced by its prior, broadcast over the batch.
template <class T>
TimestepNormState<T> initial_state(std::string_view op, const TimestepNormState<T>& state,
                                   const TimestepNormParams<T>& p, std::int64_t B, std::int64_t G) {
  TimestepNormState<T> s;
  if (state.count.empty()) {
    check_shape(op, "prior_count", p.prior_count.shape(), {});
    s.count = Tensor<std::int64_t>({B}, p.prior_count[0]);
  } else {
    check_shape(op, "state.count", state.count.shape(), {B});
    s.count = state.count;
  }
  for (std::int64_t b = 0; b < B; ++b)
    require(s.count[b] >= 0, op, ": negative token count ", s.count[b], " in batch row ", b);

  auto moments = [&](const Tensor<T>& carried, const Tensor<T>& prior, std::string_view name,
                     std::string_view prior_name) {
    if (!carried.empty()) {
      check_shape(op, name, carried.shape(), {B, G});
      return carried;
    }
    check_shape(op, prior_name, prior.shape(), {G});
    Tensor<T> t({B, G});
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t k = 0; k < G; ++k) t(b, k) = prior[k];
    return t;
  };
  s.mean = moments(state.mean, p.prior_mean, "state.mean", "prior_mean");
  s.var = moments(state.var, p.prior_var, "state.var", "prior_var");
  return s;
}

// (μ, s²) of one token's group of n channels: two-pass population moments (spec §5.2).
template <class T>
std::pair<T, T> group_moments(const T* x, std::int64_t n) {
  T sum = 0;
  for (std::int64_t i = 0; i < n; ++i) sum += x[i];
  const T mu = sum / T(n);
  T sq = 0;
  for (std::int64_t i = 0; i < n; ++i) sq += (x[i] - mu) * (x[i] - mu);
  return {mu, sq / T(n)};
}

// y = ((x - mean)·rstd)·(1 + weight) + bias over the channels [c0, c0 + n) of one token.
template <class T>
void normalise_group(const T* x, T* y, std::int64_t c0, std::int64_t n, T mean, T rstd,
                     const TimestepNormParams<T>& p) {
  for (std::int64_t i = 0; i < n; ++i) {
    const T g = T(1) + p.weight[c0 + i];
    y[i] = ((x[i] - mean) * rstd) * g + p.bias[c0 + i];
  }
}

// The bias-correction denominator 1 - β^n, formed in double and rounded once (spec §5.4 keeps
// β^n as a running fp32 product, whose cancellation costs up to 8e-5 relative on y).
template <class T>
T one_minus_power(double beta, std::int64_t n) {
  return T(1.0 - std::pow(beta, double(n)));
}

}  // namespace detail

// x: (B, L, D); bos: (B, L) or nullptr. Returns y (B, L, D); state becomes the state after the
// last token; stats, when given, receives the bias-corrected mean and 1/sqrt(var + eps) per token.
// The betas are used as given in double (not rounded to float as the reference's kernel does,
// spec §14 B13): the golden files were produced that way (they miss 1 - fl32(β2) by 1.7e-4).
template <class T>
Tensor<T> timestep_decay_norm(const Tensor<T>& x, const Tensor<bool>* bos,
                              TimestepNormState<T>& state, const TimestepNormParams<T>& p,
                              TimestepNormStats<T>* stats = nullptr) {
  constexpr std::string_view op = "timestep_decay_norm";
  const auto [B, L, D, G] =
      detail::check_norm_inputs(op, x.shape(), bos, p.weight.shape(), p.bias.shape(), p.groups);
  const TimestepNormState<T> in = detail::initial_state(op, state, p, B, G);
  const std::int64_t Dg = D / G;  // channels per group
  const auto decay = TsnDecay<T>::from(p.beta1, p.beta2);
  const TsnCombine<T> combine;

  Tensor<T> y(x.shape());                                        // (B, L, D)
  TimestepNormState<T> out{Tensor<std::int64_t>({B}), Tensor<T>({B, G}), Tensor<T>({B, G})};
  if (stats) *stats = {Tensor<T>({B, L, G}), Tensor<T>({B, L, G})};

  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t k = 0; k < G; ++k) {
      // (n, M, V) of §5.3 as an aggregate, so that each token is folded in by the scan's combine.
      const std::int64_t n0 = in.count[b];
      TsnAggregate<T> s{n0, T(std::pow(p.beta1, double(n0))), T(std::pow(p.beta2, double(n0))),
                        in.mean(b, k), in.var(b, k), false};
      for (std::int64_t t = 0; t < L; ++t) {
        const T* xt = &x(b, t, k * Dg);
        const auto [mu, s2] = detail::group_moments(xt, Dg);
        s = combine(s, decay.token(mu, s2, bos && (*bos)(b, t)));

        const T mean = s.m / detail::one_minus_power<T>(p.beta1, s.count);  // m̂_t
        const T var = s.v / detail::one_minus_power<T>(p.beta2, s.count);   // v̂_t
        const T rstd = T(1) / std::sqrt(var + T(p.eps));                   // ρ_t
        detail::normalise_group(xt, &y(b, t, k * Dg), k * Dg, Dg, mean, rstd, p);
        if (stats) {
          stats->cummean(b, t, k) = mean;
          stats->cumrstd(b, t, k) = rstd;
        }
      }
      out.mean(b, k) = s.m;
      out.var(b, k) = s.v;
      if (k == 0) out.count[b] = s.count;  // bos positions are shared by all groups
    }
  }
  state = std::move(out);
  return y;
}

// Megalodon's norm: cumulative count-weighted Welford statistics over all tokens so far, the
// variance pooling the within-token variances and the spread of the token means; no bias
// correction, no bos. Per token, with n the count including it and c = 1/n:
//   m₂ ← (1−c)·m₂ + c·s²_t + c(1−c)·(μ_t − m₁)²,   m₁ ← m₁ + c·(μ_t − m₁),   ρ = 1/sqrt(m₂ + eps).
// x: (B, L, D). The betas are unused; the priors act as prior_count pseudo-tokens.
template <class T>
Tensor<T> timestep_cumulative_norm(const Tensor<T>& x, TimestepNormState<T>& state,
                                   const TimestepNormParams<T>& p,
                                   TimestepNormStats<T>* stats = nullptr) {
  constexpr std::string_view op = "timestep_cumulative_norm";
  const auto [B, L, D, G] = detail::check_norm_inputs(op, x.shape(), nullptr, p.weight.shape(),
                                                      p.bias.shape(), p.groups);
  TimestepNormState<T> s = detail::initial_state(op, state, p, B, G);
  const std::int64_t Dg = D / G;

  Tensor<T> y(x.shape());  // (B, L, D)
  if (stats) *stats = {Tensor<T>({B, L, G}), Tensor<T>({B, L, G})};

  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t k = 0; k < G; ++k) {
      std::int64_t n = s.count[b];
      T m1 = s.mean(b, k), m2 = s.var(b, k);
      for (std::int64_t t = 0; t < L; ++t) {
        const T* xt = &x(b, t, k * Dg);
        const auto [mu, s2] = detail::group_moments(xt, Dg);
        ++n;
        const T c = T(1) / T(n);
        const T delta = mu - m1;
        m2 = (T(1) - c) * m2 + c * s2 + c * (T(1) - c) * delta * delta;
        m1 = m1 + c * delta;

        const T rstd = T(1) / std::sqrt(m2 + T(p.eps));
        detail::normalise_group(xt, &y(b, t, k * Dg), k * Dg, Dg, m1, rstd, p);
        if (stats) {
          stats->cummean(b, t, k) = m1;
          stats->cumrstd(b, t, k) = rstd;
        }
      }
      s.mean(b, k) = m1;
      s.var(b, k) = m2;
    }
    s.count[b] += L;
  }
  state = std::move(s);
  return y;
}

}  // namespace gecko::cpu
