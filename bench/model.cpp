// The model (spec §4.3) with two Gecko blocks, forward over B × L tokens from a fresh state (no
// documents): embedding, the blocks, the final norm and the output layer, against the raw Eigen
// GEMMs of the same shapes (every block's GEMMs and the output layer's).

#include <random>

#include "gecko/model/model.hpp"
#include "gecko/policy/presets.hpp"

#include "support/common.hpp"
#include "support/gemms.hpp"
#include "support/layers.hpp"
#include "support/work.hpp"

namespace gecko::bench {
namespace {

constexpr int kLayers = 2;

Work model_work(const Sizes& s) {
  const Work block = work::block(s), final_norm = work::timestep_norm(s);
  const Work head = work::linear(s.tokens(), s.D, s.V, false);
  Work w;
  // reads the tokens and every parameter; writes the logits and the state
  w.bytes = bytes_of<std::int64_t>(s.tokens()) +
            bytes_of<float>(2 * s.V * s.D + kLayers * work::block_parameters(s) + 2 * s.D + 2 * s.G +
                            s.tokens() * s.V + kLayers * work::block_state(s) + 2 * s.B * s.G);
  w.flops = kLayers * block.flops + final_norm.flops + head.flops;
  return w;
}

}  // namespace

void register_benchmarks() {
  using T = float;
  for (const Sizes& s : kTiers) {
    add("model", "gecko", s, [s](benchmark::State& state) {
      const model::Config c = config_of(s, kLayers);
      model::ModelParams<T> p;
      p.layers.resize(kLayers);
      RandomParameters fill(c);
      model::visit_model_parameters<policy::Gecko>(p, c, fill);
      const model::Model<policy::Gecko, T> m(c, std::move(p));
      Tensor<std::int64_t> tokens({s.B, s.L});
      std::mt19937 rng(40);
      for (auto& t : tokens.span()) t = std::int64_t(rng() % std::uint32_t(s.V));
      for (auto _ : state) {
        auto logits = m.forward(tokens);  // fresh state
        benchmark::DoNotOptimize(logits.data());
      }
      report(state, model_work(s));
    });
    add("model", "eigen_gemms", s, [s](benchmark::State& state) {
      std::vector<BlockGemms> blocks;
      for (int i = 0; i < kLayers; ++i) blocks.emplace_back(s);
      ProjectionGemm head(s.tokens(), s.D, s.V);
      for (auto _ : state) {
        for (auto& b : blocks) b.run();
        head.run();
        benchmark::ClobberMemory();
      }
      Work w = head.work();
      for (const auto& b : blocks) w.bytes += b.work().bytes, w.flops += b.work().flops;
      report(state, w);
    });
  }
}

}  // namespace gecko::bench
