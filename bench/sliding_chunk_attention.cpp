// Sliding chunk attention (spec §10), a training/prefill call from a fresh stream (L a multiple of
// C, no segments): the op against the raw Eigen GEMMs of the chunked algorithm (§10.3) on the
// same shapes (support/gemms.hpp).

#include "gecko/cpu/sliding_chunk_attention.hpp"

#include "support/common.hpp"
#include "support/gemms.hpp"
#include "support/work.hpp"

namespace gecko::bench {

void register_benchmarks() {
  using T = float;
  for (const Sizes& s : kTiers) {
    add("sca", "gecko", s, [s](benchmark::State& state) {
      const double scale = 1.0 / std::sqrt(double(s.dk()));  // Γ's 1/√dk on q and on k
      const auto q = random_tensor<T>({s.B, s.L, s.H, s.dk()}, 5, scale);
      const auto k = random_tensor<T>({s.B, s.L, s.H, s.dk()}, 6, scale);
      const auto v = random_tensor<T>({s.B, s.L, s.H, s.dv()}, 7);
      for (auto _ : state) {
        auto y = cpu::sliding_chunk_attention(q, k, v, cpu::AttentionWindow<T>{}, nullptr, nullptr,
                                              s.C, 0);
        benchmark::DoNotOptimize(y.data());
      }
      report(state, work::sca(s));
    });
    add_gemms<AttentionGemms>("sca", "eigen_gemms", s);
  }
}

}  // namespace gecko::bench
