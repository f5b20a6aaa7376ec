#pragma once
// Timestep normalisation: each token is normalised, per group of channels, by running statistics
// of the tokens seen so far in its stream.
//   timestep_decay_norm:      Gecko's decayed, bias-corrected EMA with bos resets (spec §5).
//   timestep_cumulative_norm: Megalodon's cumulative Welford statistics (spec §12, first row).
// Both take the streaming state (count, mean, var) in and leave the state after the call in it.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "gecko/core/error.hpp"
#include "gecko/core/shape.hpp"
#include "gecko/core/tensor.hpp"
#include "gecko/core/threads.hpp"
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

// Σ_{i<n} term(i) in 8 interleaved partial sums (term i goes to sum i mod 8) added pairwise at
// the end: the compiler vectorises it, and the order is fixed, the same for every call and thread.
template <class T, class Term>
T lane_sum(std::int64_t n, Term term) {
  T acc[8] = {};
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += term(i + j);
  for (int j = 0; i + j < n; ++j) acc[j] += term(i + j);
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

// (μ, s²) of one token's group of n channels: two-pass population moments (spec §5.2), the
// divisions by n as products with 1/n.
template <class T>
std::pair<T, T> group_moments(const T* x, std::int64_t n) {
  const T inv_n = T(1) / T(n);
  const T mu = lane_sum<T>(n, [x](std::int64_t i) { return x[i]; }) * inv_n;
  const T sq = lane_sum<T>(n, [x, mu](std::int64_t i) { return (x[i] - mu) * (x[i] - mu); });
  return {mu, sq * inv_n};
}

// Tokens whose statistics are formed before their outputs are written (see timestep_decay_norm).
inline constexpr std::int64_t kTokenRun = 64;

// y = ((x - mean)·rstd)·g + bias over one token's group of n channels; g = 1 + weight.
template <class T>
void normalise_group(const T* x, T* y, const T* g, const T* bias, std::int64_t n, T mean, T rstd) {
  for (std::int64_t i = 0; i < n; ++i) y[i] = ((x[i] - mean) * rstd) * g[i] + bias[i];
}

// The scale g = 1 + weight (D), formed once per call.
template <class T>
std::vector<T> norm_scale(const Tensor<T>& weight) {
  std::vector<T> g(std::size_t(weight.size()));
  for (std::int64_t i = 0; i < weight.size(); ++i) g[std::size_t(i)] = T(1) + weight[i];
  return g;
}

}  // namespace detail

// x: (B, L, D); bos: (B, L) or nullptr. Returns y (B, L, D); state becomes the state after the
// last token; stats, when given, receives the bias-corrected mean and 1/sqrt(var + eps) per token.
// The betas are used as given in double (not rounded to float as the reference's kernel does,
// spec §14 B13): the golden files were produced that way (they miss 1 - fl32(β2) by 1.7e-4).
// Each (batch row, group) is an independent recurrence; they are split over threads.
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
  const std::vector<T> g = detail::norm_scale(p.weight);

  auto y = Tensor<T>::uninitialized(x.shape());  // (B, L, D)
  TimestepNormState<T> out{Tensor<std::int64_t>::uninitialized({B}), Tensor<T>::uninitialized({B, G}),
                           Tensor<T>::uninitialized({B, G})};
  if (stats) *stats = {Tensor<T>::uninitialized({B, L, G}), Tensor<T>::uninitialized({B, L, G})};

  // The bias corrections 1/(1 − β^n) of every token (B, L), shared by all groups: β^n as running
  // products in double from β^n0 at the call's start (a bos restarts them at β), 1/(1 − β^n)
  // formed in double and rounded to T once. (Spec §5.4 keeps fp32 products, whose cancellation
  // costs up to 8e-5 relative on y.)
  std::vector<T> correction1(std::size_t(B * L)), correction2(std::size_t(B * L));
  for (std::int64_t b = 0; b < B; ++b) {
    double power1 = std::pow(p.beta1, double(in.count[b])), power2 = std::pow(p.beta2, double(in.count[b]));
    for (std::int64_t t = 0; t < L; ++t) {
      const bool reset = bos && (*bos)(b, t);
      power1 = reset ? p.beta1 : power1 * p.beta1;
      power2 = reset ? p.beta2 : power2 * p.beta2;
      correction1[std::size_t(b * L + t)] = T(1.0 / (1.0 - power1));
      correction2[std::size_t(b * L + t)] = T(1.0 / (1.0 - power2));
    }
  }

  parallel_for(B * G, 8.0 * double(x.size()), [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t i = i0; i < i1; ++i) {
      const std::int64_t b = i / G, k = i % G, c0 = k * Dg;
      // (n, M, V) of §5.3 as an aggregate, so that each token is folded in by the scan's combine.
      const std::int64_t n0 = in.count[b];
      TsnAggregate<T> s{n0, T(std::pow(p.beta1, double(n0))), T(std::pow(p.beta2, double(n0))),
                        in.mean(b, k), in.var(b, k), false};
      const T* xg = x.data() + b * L * D + c0;  // token t's group: xg + t·D
      T* yg = y.data() + b * L * D + c0;
      const bool* reset = bos ? bos->data() + b * L : nullptr;
      const T* corr1 = correction1.data() + b * L;
      const T* corr2 = correction2.data() + b * L;
      // A run of tokens' statistics first, then their outputs: the square root and division of
      // one token overlap with the moments of the next instead of stalling its normalisation.
      T mean[detail::kTokenRun], rstd[detail::kTokenRun];
      for (std::int64_t t0 = 0; t0 < L; t0 += detail::kTokenRun) {
        const std::int64_t run = std::min(detail::kTokenRun, L - t0);
        for (std::int64_t j = 0, t = t0; j < run; ++j, ++t) {
          const auto [mu, s2] = detail::group_moments(xg + t * D, Dg);
          s = combine(s, decay.token(mu, s2, reset && reset[t]));
          mean[j] = s.m * corr1[t];                     // m̂_t = M / (1 − β1^n)
          const T var = s.v * corr2[t];                 // v̂_t = V / (1 − β2^n)
          rstd[j] = T(1) / std::sqrt(var + T(p.eps));  // ρ_t
        }
        for (std::int64_t j = 0, t = t0; j < run; ++j, ++t) {
          detail::normalise_group(xg + t * D, yg + t * D, g.data() + c0, p.bias.data() + c0, Dg,
                                  mean[j], rstd[j]);
          if (stats) {
            stats->cummean(b, t, k) = mean[j];
            stats->cumrstd(b, t, k) = rstd[j];
          }
        }
      }
      out.mean(b, k) = s.m;
      out.var(b, k) = s.v;
      if (k == 0) out.count[b] = s.count;  // bos positions are shared by all groups
    }
  });
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
  const std::vector<T> g = detail::norm_scale(p.weight);

  auto y = Tensor<T>::uninitialized(x.shape());  // (B, L, D)
  if (stats) *stats = {Tensor<T>::uninitialized({B, L, G}), Tensor<T>::uninitialized({B, L, G})};

  parallel_for(B * G, 8.0 * double(x.size()), [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t i = i0; i < i1; ++i) {
      const std::int64_t b = i / G, k = i % G, c0 = k * Dg;
      std::int64_t n = s.count[b];
      T m1 = s.mean(b, k), m2 = s.var(b, k);
      const T* xg = x.data() + b * L * D + c0;  // token t's group: xg + t·D
      T* yg = y.data() + b * L * D + c0;
      for (std::int64_t t = 0; t < L; ++t) {
        const auto [mu, s2] = detail::group_moments(xg + t * D, Dg);
        ++n;
        const T c = T(1) / T(n);
        const T delta = mu - m1;
        m2 = (T(1) - c) * m2 + c * s2 + c * (T(1) - c) * delta * delta;
        m1 = m1 + c * delta;

        const T rstd = T(1) / std::sqrt(m2 + T(p.eps));
        detail::normalise_group(xg + t * D, yg + t * D, g.data() + c0, p.bias.data() + c0, Dg, m1, rstd);
        if (stats) {
          stats->cummean(b, t, k) = m1;
          stats->cumrstd(b, t, k) = rstd;
        }
      }
      s.mean(b, k) = m1;
      s.var(b, k) = m2;
    }
  });
  for (std::int64_t b = 0; b < B; ++b) s.count[b] += L;
  state = std::move(s);
  return y;
}

}  // namespace gecko::cpu
