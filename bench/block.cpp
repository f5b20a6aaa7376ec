// One Gecko block (spec §4.3), a training/prefill call of L tokens from a fresh layer state (no
// documents): the block against all of its own GEMMs on the same shapes (projections, attention,
// working memory: the "within 1.5x" target) and against its projection GEMMs alone.

#include "gecko/cpu/rope.hpp"
#include "gecko/layers/block.hpp"
#include "gecko/policy/presets.hpp"

#include "support/common.hpp"
#include "support/gemms.hpp"
#include "support/layers.hpp"
#include "support/work.hpp"

namespace gecko::bench {

void register_benchmarks() {
  using T = float;
  using Block = layers::Block<policy::Gecko, T>;
  for (const Sizes& s : kTiers) {
    add("block", "gecko", s, [s](benchmark::State& state) {
      const model::Config c = config_of(s, 1);
      layers::BlockParams<T> p;
      RandomParameters fill(c);
      layers::visit_block_parameters<policy::Gecko>(p, c, fill);
      const Block block(c, std::move(p));
      const auto x = random_tensor<T>({s.B, s.L, s.D}, 30);
      const auto rope = cpu::rope_table(cpu::rope_frequencies<T>(int(s.dk()), c.rope_base), 0, s.L);
      for (auto _ : state) {
        layers::LayerState<T> st;  // fresh stream
        auto y = block.forward(x, rope, nullptr, layers::SegmentIds{}, st);
        benchmark::DoNotOptimize(y.data());
      }
      report(state, work::block(s));
    });
    add_gemms<BlockGemms>("block", "eigen_gemms", s);
    add_gemms<BlockProjectionGemms>("block", "projection_gemms", s);
  }
}

}  // namespace gecko::bench
