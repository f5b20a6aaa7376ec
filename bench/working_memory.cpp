// Adaptive working memory (spec §11), a training/prefill call from a fresh stream (L a multiple
// of C, no segments): the op against the raw Eigen GEMMs of the chunked algorithm (§11.3) on the
// same shapes (support/gemms.hpp).

#include "gecko/cpu/working_memory.hpp"

#include "support/common.hpp"
#include "support/gemms.hpp"
#include "support/work.hpp"

namespace gecko::bench {

void register_benchmarks() {
  using T = float;
  for (const Sizes& s : kTiers) {
    add("awm", "gecko", s, [s](benchmark::State& state) {
      const auto aq = random_tensor<T>({s.B, s.L, s.S}, 8);
      const auto ak = random_tensor<T>({s.B, s.L, s.S}, 9);
      const auto v = random_tensor<T>({s.B, s.L, s.E}, 10);
      for (auto _ : state) {
        cpu::WorkingMemoryState<T> st;  // fresh stream
        auto y = cpu::working_memory(aq, ak, v, Tensor<T>{}, st, cpu::WorkingMemorySegments{},
                                     int(s.H), s.C);
        benchmark::DoNotOptimize(y.data());
      }
      report(state, work::awm(s));
    });
    add_gemms<MemoryGemms>("awm", "eigen_gemms", s);
  }
}

}  // namespace gecko::bench
