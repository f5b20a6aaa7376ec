#pragma once
// The associative combine of the timestep decay norm's statistics (spec §5.3, §5.4), for one
// (batch row, group). A run of consecutive tokens is summarised by an aggregate; folding a token
// into the running state is `state = combine(state, token)`, and a parallel scan may combine
// aggregates of whole slices in any bracketing. Host and device code share this header.
//
// The combine is the correct one for every aggregate: one-token aggregates are ordinary
// aggregates, not raw samples (the reference's large-L kernel gets that wrong, spec §14 B6).

#include <cstdint>

#include "gecko/core/config.hpp"

namespace gecko::cpu {

// Summary of a run of tokens. Invariant: decay1 = β1^count and decay2 = β2^count (rounded).
template <class T>
struct TsnAggregate {
  std::int64_t count = 0;   // tokens since the run's last bos (all of them if it has none)
  T decay1 = 1, decay2 = 1;  // factors the run applies to an earlier M, V
  T m = 0, v = 0;            // M, V accumulated from zero over those tokens
  bool bos = false;          // the run holds a bos: everything before it is forgotten
};

// The decay constants in T. Each is formed in double and rounded once (spec §5.4 / golden README:
// the reference's 1 - fl32(β) costs 1.7e-4 relative on V).
template <class T>
struct TsnDecay {
  T beta1, beta2, one_minus_beta1, one_minus_beta2;

  static TsnDecay from(double beta1, double beta2) {
    return {T(beta1), T(beta2), T(1.0 - beta1), T(1.0 - beta2)};
  }

  // The aggregate of one token with group moments (μ, s²): §5.3's update as a map.
  GECKO_HOST_DEVICE TsnAggregate<T> token(T mu, T s2, bool bos) const {
    return {1, beta1, beta2, one_minus_beta1 * mu, one_minus_beta2 * s2, bos};
  }
};

// `a` followed by `x`. The identity is a default-constructed TsnAggregate.
template <class T>
struct TsnCombine {
  GECKO_HOST_DEVICE TsnAggregate<T> operator()(const TsnAggregate<T>& a,
                                               const TsnAggregate<T>& x) const {
    if (x.bos) return x;
    return {a.count + x.count,      a.decay1 * x.decay1,  a.decay2 * x.decay2,
            x.decay1 * a.m + x.m,   x.decay2 * a.v + x.v, a.bos};
  }
};

}  // namespace gecko::cpu
