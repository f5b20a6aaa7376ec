#pragma once
// The policy types a block is assembled from. Each is a small struct of compile-time constants
// and, where the computation differs, a static function calling the op. The presets that combine
// them (Gecko, Megalodon, the ablations) are in policy/presets.hpp.
//
// Why compile time: each choice changes which parameters exist (ω, the aq/ak rows), which state
// exists (the working memory) and which code runs, and a model holds one fixed choice for its
// whole life. Sizes (dims, heads, chunk, vocabulary) and the flags of the reference's
// configuration stay runtime values read from the checkpoint.

#include <cmath>
#include <cstdint>

#include "gecko/core/tensor.hpp"
#include "gecko/cpu/sliding_chunk_attention.hpp"
#include "gecko/cpu/timestep_norm.hpp"

namespace gecko::policy {

// ---- input norm (every block's first step, and the final norm) ----

// Gecko (spec §5): decayed, bias-corrected EMA of the group moments; restarts at a bos.
struct DecayNorm {
  static constexpr bool resets_at_bos = true;
  template <class T>
  static Tensor<T> apply(const Tensor<T>& x, const Tensor<bool>* bos, cpu::TimestepNormState<T>& state,
                         const cpu::TimestepNormParams<T>& p) {
    return cpu::timestep_decay_norm(x, bos, state, p);
  }
};

// Megalodon (spec §12): cumulative Welford statistics over the whole stream, no bos handling.
// Its prior_var buffer holds the prior variance itself (Megalodon stores exp(prior_logv) = 1).
struct CumulativeNorm {
  static constexpr bool resets_at_bos = false;
  template <class T>
  static Tensor<T> apply(const Tensor<T>& x, const Tensor<bool>* bos, cpu::TimestepNormState<T>& state,
                         const cpu::TimestepNormParams<T>& p) {
    require(bos == nullptr, "timestep_cumulative_norm: has no document resets; bos must be absent");
    return cpu::timestep_cumulative_norm(x, state, p);
  }
};

// ---- CEMA output weights and residual (spec §6, §12) ----

// Gecko: c = x + Re(Σ_n γ·h), γ as stored.
struct CemaUnitResidual {
  static constexpr bool learned_residual = false;  // no mega.cema.omega
  static double gamma_scale(int /*ndim*/) { return 1.0; }
};

// Megalodon: c = ω ⊙ x + Re(Σ_n γ·h) / √N, with a learned ω (mega.cema.omega, (D)).
struct CemaLearnedResidual {
  static constexpr bool learned_residual = true;
  static double gamma_scale(int ndim) { return 1.0 / std::sqrt(double(ndim)); }
};

// ---- attention pattern and RoPE positions (spec §9, §10, §12) ----

// Gecko: a query sees the previous complete chunk and its own chunk up to itself; RoPE at the
// absolute stream position.
struct SlidingChunks {
  static constexpr cpu::AttentionPattern pattern = cpu::AttentionPattern::SlidingChunks;
  static std::int64_t rope_position(std::int64_t t, std::int64_t /*chunk*/) { return t; }
};

// Megalodon: a query sees its own chunk only; RoPE at the chunk-local position t mod C.
struct BlockDiagonal {
  static constexpr cpu::AttentionPattern pattern = cpu::AttentionPattern::BlockDiagonal;
  static std::int64_t rope_position(std::int64_t t, std::int64_t chunk) { return t % chunk; }
};

// ---- adaptive working memory (spec §11) ----

struct WorkingMemory {
  static constexpr bool enabled = true;
};
struct NoWorkingMemory {
  static constexpr bool enabled = false;
};

// ---- rows of the shared z projection's affine map: q, k (, aq, ak) (spec §8) ----

template <int Rows>
struct ZRows {
  static_assert(Rows == 2 || Rows == 4,
                "ZRows: 2 rows (q, k) or 4 rows (q, k, aq, ak for the working memory)");
  static constexpr int count = Rows;
};

}  // namespace gecko::policy
