#pragma once
// The MEGA sub-layer of a block (spec §4.3 steps 1-14): input norm, CEMA, RMS norm, the shared z
// projection into q, k (, aq, ak), sliding chunk attention gated by r, the working memory, and the
// output projections with the residual. The policy picks the input norm, the CEMA residual, the
// attention pattern, the working memory and the number of z rows; sizes come from the Config.

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>

#include "gecko/core/error.hpp"
#include "gecko/core/tensor.hpp"
#include "gecko/cpu/cema.hpp"
#include "gecko/cpu/group_norm.hpp"
#include "gecko/cpu/linear.hpp"
#include "gecko/cpu/rope.hpp"
#include "gecko/cpu/silu.hpp"
#include "gecko/cpu/sliding_chunk_attention.hpp"
#include "gecko/cpu/timestep_norm.hpp"
#include "gecko/cpu/working_memory.hpp"
#include "gecko/layers/layer_state.hpp"
#include "gecko/model/config.hpp"

namespace gecko::layers {

template <class T>
struct MegaParams {
  cpu::TimestepNormParams<T> timenorm;    // weight, bias (D); prior_count (); prior_mean, prior_var (G)
  cpu::CemaParams<T> cema;                // alpha, delta (D, N); theta (D); gamma (D, N, 2); omega (D) if learned
  Tensor<T> rmsnorm_weight;               // (D) raw; empty without norm_affine
  Tensor<T> wz_weight, wz_bias;           // (S, D), (S)
  Tensor<T> wv_weight, wv_bias;           // (E, D), (E)   from the input norm's output
  Tensor<T> wr_weight, wr_bias;           // (E, D), (E)   gate
  Tensor<T> wh1_weight, wh1_bias;         // (D, D), (D)   skip projection of m
  Tensor<T> wh2_weight;                   // (D, E)        attention output projection
  Tensor<T> gamma, beta;                  // (R, S) rows q, k (, aq, ak)
};

// Calls f(name, tensor, expected shape) for every tensor the configuration and the policy call
// for, under the reference's state_dict names relative to the MEGA module ("wv.weight", ...).
// Params may be const or not.
template <class Policy, class Params, class F>
void visit_mega_parameters(Params& p, const model::Config& c, F&& f) {
  const std::int64_t D = c.model_dim, S = c.z_dim, E = c.value_dim, N = c.cema_ndim;
  const std::int64_t G = c.timenorm_num_groups;
  f(std::string("timenorm.prior_count"), p.timenorm.prior_count, Shape{});
  f(std::string("timenorm.prior_mean"), p.timenorm.prior_mean, Shape{G});
  f(std::string("timenorm.prior_var"), p.timenorm.prior_var, Shape{G});
  f(std::string("timenorm.weight"), p.timenorm.weight, Shape{D});
  f(std::string("timenorm.bias"), p.timenorm.bias, Shape{D});
  f(std::string("cema.alpha"), p.cema.alpha, Shape{D, N});
  f(std::string("cema.delta"), p.cema.delta, Shape{D, N});
  f(std::string("cema.theta"), p.cema.theta, Shape{D});
  f(std::string("cema.gamma"), p.cema.gamma, Shape{D, N, 2});
  if constexpr (Policy::cema::learned_residual) f(std::string("cema.omega"), p.cema.omega, Shape{D});
  if (c.norm_affine) f(std::string("rmsnorm.weight"), p.rmsnorm_weight, Shape{D});
  f(std::string("wv.weight"), p.wv_weight, Shape{E, D});
  f(std::string("wv.bias"), p.wv_bias, Shape{E});
  f(std::string("wz.weight"), p.wz_weight, Shape{S, D});
  f(std::string("wz.bias"), p.wz_bias, Shape{S});
  f(std::string("wr.weight"), p.wr_weight, Shape{E, D});
  f(std::string("wr.bias"), p.wr_bias, Shape{E});
  f(std::string("wh1.weight"), p.wh1_weight, Shape{D, D});
  f(std::string("wh1.bias"), p.wh1_bias, Shape{D});
  f(std::string("wh2.weight"), p.wh2_weight, Shape{D, E});
  f(std::string("gamma"), p.gamma, Shape{Policy::z_rows::count, S});
  f(std::string("beta"), p.beta, Shape{Policy::z_rows::count, S});
}

// Checks a MEGA layer's parameters against the configuration and the policy: every tensor they
// call for is present with its shape, and no optional one is given that they do not call for, so
// that none is silently ignored. Shared by layers::Mega and cuda::Mega.
template <class Policy, class X>
void check_mega_parameters(const model::Config& c, const MegaParams<X>& p) {
  require(!Policy::requires_two_hop_residual || c.two_hop_residual,
          "config: two_hop_residual = false is invalid for this variant: its FFN adds back the "
          "block input (set two_hop_residual = true)");
  require(p.rmsnorm_weight.empty() != c.norm_affine,
          "mega: rmsnorm.weight must be given exactly when norm_affine is set");
  require(p.cema.omega.empty() != Policy::cema::learned_residual,
          "mega: cema.omega must be given exactly when the variant learns the CEMA residual weight");
  visit_mega_parameters<Policy>(p, c, [](const std::string& name, const auto& t, const Shape& shape) {
    require(!t.empty(), "mega: parameter ", name, " is missing (expected shape ", shape.str(), ")");
    check_shape("mega", name, t.shape(), shape);
  });
}

// Intermediate activations of one call (the golden mega_fresh file's aux.* tensors), for debugging.
template <class T>
struct MegaTrace {
  Tensor<T> timenorm;        // x̂ (B, L, D)
  Tensor<T> cema;            // c (B, L, D)
  Tensor<T> rmsnorm;         // m (B, L, D)
  Tensor<T> wz, znorm;       // z, ẑ (B, L, S)
  Tensor<T> wv, wr;          // linear outputs before silu (B, L, E)
  Tensor<T> attention;       // s (B, L, E)
  Tensor<T> working_memory;  // a (B, L, E); empty without working memory
  Tensor<T> wh1, wh2;        // (B, L, D)
};

template <class Policy, class T>
class Mega {
 public:
  // Checks every tensor's shape against the configuration, fills the scalars the ops take
  // (groups, betas, eps, γ scale) from it, and derives the CEMA coefficients and the q/k rows' scale.
  Mega(const model::Config& config, MegaParams<T> params) : c_(config), p_(std::move(params)) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "the CPU layers compute in float or double");
    c_.validate();
    check_mega_parameters<Policy>(c_, p_);
    p_.timenorm.groups = c_.timenorm_num_groups;
    p_.timenorm.beta1 = c_.timenorm_beta1;
    p_.timenorm.beta2 = c_.timenorm_beta2;
    p_.timenorm.eps = c_.norm_eps;
    p_.cema.gamma_scale = Policy::cema::gamma_scale(c_.cema_ndim);
    coeffs_ = cpu::cema_coefficients(p_.cema);
    // Γ_j = (1 + gamma_j) / √dk: the attention scale lives in the rows (spec §3.2, §8).
    row_scale_ = Tensor<T>(p_.gamma.shape());
    const T rsqrt_dk = T(1) / std::sqrt(T(c_.head_dim()));
    for (std::int64_t i = 0; i < row_scale_.size(); ++i) row_scale_[i] = (T(1) + p_.gamma[i]) * rsqrt_dk;
  }

  const model::Config& config() const { return c_; }
  const MegaParams<T>& params() const { return p_; }

  // x: (B, L, D); rope: (L, dk/2, 2) rotation table of the call's positions (empty without RoPE);
  // bos: (B, L) or nullptr; segments: document ids (multi_segments) or none. Advances state.
  // Returns y = x + wh1(m) + wh2(o) (B, L, D).
  Tensor<T> forward(const Tensor<T>& x, const Tensor<T>& rope, const Tensor<bool>* bos,
                    const SegmentIds& segments, LayerState<T>& state, MegaTrace<T>* trace = nullptr) const {
    constexpr const char* op = "mega";
    require(!x.empty() && x.rank() == 3, op, ": x must have shape (B, L, D), got ", x.shape().str());
    const std::int64_t B = x.dim(0), L = x.dim(1), D = c_.model_dim, S = c_.z_dim;
    const std::int64_t H = c_.num_heads, dk = c_.head_dim(), dv = c_.value_head_dim(), C = c_.chunk_size;
    check_shape(op, "x", x.shape(), Shape{B, L, D});
    if (c_.rope_heads() > 0) check_shape(op, "rope", rope.shape(), Shape{L, dk / 2, 2});
    require(bos == nullptr || Policy::input_norm::resets_at_bos, op,
            ": this variant has no document handling; bos must be absent");
    const std::int64_t start = state.kv_count;

    // 1-3: input norm, CEMA, RMS norm                                            (B, L, D)
    const Tensor<T> xh = Policy::input_norm::apply(x, bos, state.norm, p_.timenorm);
    const Tensor<T>* omega = Policy::cema::learned_residual ? &p_.cema.omega : nullptr;
    const Tensor<T> c = cpu::cema(xh, bos, state.cema_h, coeffs_, omega);
    const Tensor<T> m = cpu::group_rms_norm(c, c_.layernorm_num_groups, c_.norm_eps,
                                            c_.norm_affine ? &p_.rmsnorm_weight : nullptr);
    // 4-6: z, per-head RMS norm, the affine rows q, k (, aq, ak)                  (B, L, S)
    const Tensor<T> z = cpu::linear(m, p_.wz_weight, &p_.wz_bias);
    const Tensor<T> zh = cpu::group_rms_norm(z, c_.num_heads, c_.norm_eps, nullptr);
    auto row = [&](int j) {  // u_j = ẑ ⊙ Γ_j + β_j on every token
      auto u = Tensor<T>::uninitialized(zh.shape());
      tokens(u, S) = (tokens(zh, S).rowwise() * feature_row(row_scale_, j, S)).rowwise() +
                     feature_row(p_.beta, j, S);
      return u;
    };
    Tensor<T> q = row(0).reshaped({B, L, H, dk});
    Tensor<T> k = row(1).reshaped({B, L, H, dk});
    // 7-8: value from the input norm's output, gate from m                      (B, L, E)
    const Tensor<T> v_lin = cpu::linear(xh, p_.wv_weight, &p_.wv_bias);
    const Tensor<T> r_lin = cpu::linear(m, p_.wr_weight, &p_.wr_bias);
    const Tensor<T> v = cpu::silu(v_lin), r = cpu::silu(r_lin);
    // 9: RoPE on q and k of the first rope_heads heads
    if (c_.rope_heads() > 0) {
      cpu::apply_rope(q, rope, c_.rope_heads());
      cpu::apply_rope(k, rope, c_.rope_heads());
    }
    // 10: attention over the cached window and the call                          (B, L, E)
    const Tensor<T> v4 = v.reshaped({B, L, H, dv});
    const Tensor<T> s = attend(q, k, v4, segments, state, start);
    // 11: working memory                                                         (B, L, E)
    Tensor<T> a;
    if constexpr (Policy::memory::enabled) {
      a = cpu::working_memory(row(2), row(3), v, state.window.value, state.memory,
                              {segments.seg, segments.window_seg, segments.mem_seg}, int(H), C);
    }
    // 12: o = s ⊙ r (+ a): only the attention output is gated
    auto o = Tensor<T>::uninitialized(s.shape());
    if (a.empty())
      flat(o) = flat(s) * flat(r);
    else
      flat(o) = flat(s) * flat(r) + flat(a);
    // 13-14: y = x + wh1(m) + wh2(o)                                             (B, L, D)
    const Tensor<T> h1 = cpu::linear(m, p_.wh1_weight, &p_.wh1_bias);
    const Tensor<T> h2 = cpu::linear(o, p_.wh2_weight);
    auto y = Tensor<T>::uninitialized(x.shape());
    flat(y) = flat(x) + (flat(h1) + flat(h2));

    advance_window(state, k, v4);
    if (trace) *trace = {xh, c, m, z, zh, v_lin, r_lin, s, a, h1, h2};
    return y;
  }

 private:
  // Eigen views for the elementwise steps: a tensor as one flat array, as (tokens, features)
  // rows, and row j of a (rows, features) parameter as one feature row.
  using Flat = Eigen::Array<T, Eigen::Dynamic, 1>;
  using Rows = Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using FeatureRow = Eigen::Array<T, 1, Eigen::Dynamic>;
  static Eigen::Map<Flat> flat(Tensor<T>& t) { return {t.data(), t.size()}; }
  static Eigen::Map<const Flat> flat(const Tensor<T>& t) { return {t.data(), t.size()}; }
  static Eigen::Map<Rows> tokens(Tensor<T>& t, std::int64_t features) {
    return {t.data(), t.size() / features, features};
  }
  static Eigen::Map<const Rows> tokens(const Tensor<T>& t, std::int64_t features) {
    return {t.data(), t.size() / features, features};
  }
  static Eigen::Map<const FeatureRow> feature_row(const Tensor<T>& p, int j, std::int64_t features) {
    return {p.data() + j * features, features};
  }

  Tensor<T> attend(const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v4,
                   const SegmentIds& segments, const LayerState<T>& state, std::int64_t start) const {
    constexpr auto pattern = Policy::attention::pattern;
    const std::int64_t C = c_.chunk_size;
    if constexpr (pattern == cpu::AttentionPattern::BlockDiagonal && Policy::window_keeps_previous_chunk) {
      // The window also holds the previous chunk for the memory; attention sees the current one.
      const std::int64_t keep = start % C, Lk = state.window.length();
      if (keep < Lk) {
        const cpu::AttentionWindow<T> own{last_tokens(state.window.key, keep), last_tokens(state.window.value, keep)};
        Tensor<std::int64_t> own_seg;
        if (segments.window_seg && keep > 0) own_seg = last_columns(*segments.window_seg, keep);
        return cpu::sliding_chunk_attention(q, k, v4, own, segments.seg,
                                            own_seg.empty() ? nullptr : &own_seg, C, start, pattern);
      }
    }
    return cpu::sliding_chunk_attention(q, k, v4, state.window, segments.seg, segments.window_seg, C,
                                        start, pattern);
  }

  // The last n time steps of a (B, Lk, H, d) window; empty for n = 0.
  static Tensor<T> last_tokens(const Tensor<T>& w, std::int64_t n) {
    if (n == 0) return {};
    const std::int64_t B = w.dim(0), Lk = w.dim(1), row = w.dim(2) * w.dim(3);
    Tensor<T> out(Shape{B, n, w.dim(2), w.dim(3)});
    for (std::int64_t b = 0; b < B; ++b)
      std::copy(w.data() + (b * Lk + Lk - n) * row, w.data() + (b * Lk + Lk) * row, out.data() + b * n * row);
    return out;
  }

  static Tensor<std::int64_t> last_columns(const Tensor<std::int64_t>& ids, std::int64_t n) {
    const std::int64_t B = ids.dim(0), Lk = ids.dim(1);
    Tensor<std::int64_t> out(Shape{B, n});
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t j = 0; j < n; ++j) out(b, j) = ids(b, Lk - n + j);
    return out;
  }

  // The last n positions along dim 2 of the AWM key window (B, H, Lk, dk).
  static Tensor<T> last_keys(const Tensor<T>& w, std::int64_t n) {
    const std::int64_t BH = w.dim(0) * w.dim(1), Lk = w.dim(2), dk = w.dim(3);
    Tensor<T> out(Shape{w.dim(0), w.dim(1), n, dk});
    for (std::int64_t i = 0; i < BH; ++i)
      std::copy(w.data() + (i * Lk + Lk - n) * dk, w.data() + (i * Lk + Lk) * dk, out.data() + i * n * dk);
    return out;
  }

  // Spec §4.5: the window becomes window ++ new (prefill: the last chunk), kv_count advances,
  // and at a chunk boundary the windows keep only their last C tokens.
  void advance_window(LayerState<T>& state, const Tensor<T>& k, const Tensor<T>& v4) const {
    const std::int64_t C = c_.chunk_size;
    constexpr auto keep_pattern = Policy::window_keeps_previous_chunk ? cpu::AttentionPattern::SlidingChunks
                                                                      : cpu::AttentionPattern::BlockDiagonal;
    state.window = cpu::attention_window_after(state.window, k, v4, C, keep_pattern);
    state.kv_count += k.dim(1);
    if (Policy::window_keeps_previous_chunk && state.kv_count % C == 0) {
      if (state.window.length() > C)
        state.window = {last_tokens(state.window.key, C), last_tokens(state.window.value, C)};
      if (!state.memory.key.empty() && state.memory.key.dim(2) > C)
        state.memory.key = last_keys(state.memory.key, C);
    }
  }

  model::Config c_;
  MegaParams<T> p_;
  cpu::CemaCoefficients<T> coeffs_;
  Tensor<T> row_scale_;  // (R, S) Γ
};

}  // namespace gecko::layers
