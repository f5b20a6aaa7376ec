#pragma once
// The streaming state of one batch of sequences (spec §4.5): every layer's state, the final
// norm's state and the segment bookkeeping shared by the layers. A default-constructed ModelState
// is a fresh stream; Model::forward advances it. Its size is constant in the stream length: the
// cached windows hold at most 2C − 1 tokens.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "gecko/core/tensor.hpp"
#include "gecko/cpu/timestep_norm.hpp"
#include "gecko/layers/layer_state.hpp"

namespace gecko::model {

template <class T>
struct ModelState {
  std::vector<layers::LayerState<T>> layers;  // one per block; empty before the first call
  cpu::TimestepNormState<T> output;           // the final norm's (count, mean, var)
  // Segment bookkeeping, multi_segments only (spec §4.5):
  Tensor<std::int64_t> seg_ids;  // (B, Tc) document ids of the cached window
  Tensor<std::int64_t> mem_seg;  // (B) document of the working memory ("prev_segment_count")
  std::optional<bool> multi_segments;  // fixed by the first call
  std::int64_t batch = 0;              // fixed by the first call

  bool fresh() const { return layers.empty(); }
  // Tokens seen so far: the absolute position of the next token.
  std::int64_t position() const { return layers.empty() ? 0 : layers.front().kv_count; }

  std::int64_t bytes() const {
    std::int64_t n = 0;
    visit_state(*this, [&](const std::string&, const auto& t) { n += t.size() * std::int64_t(sizeof(t[0])); });
    return n;
  }
};

// Calls f(name, tensor) for every part of the state that exists, under the golden model-file
// names: cache.layers.<i>.{sca.prev_key, sca.prev_value, sca.kv_count, awm.prev_key, awm.memory,
// awm.log_norm_term, norm.count, norm.mean, norm.var, cema.h}, cache.output.{count, mean, var},
// and with multi_segments cache.segment.prev_idx (B, Tc) and cache.segment.prev_count (B).
template <class T, class F>
void visit_state(const ModelState<T>& s, F&& f) {
  for (std::size_t i = 0; i < s.layers.size(); ++i) {
    const std::string prefix = "cache.layers." + std::to_string(i) + ".";
    layers::visit_state(s.layers[i], [&](const std::string& name, const auto& t) { f(prefix + name, t); });
  }
  auto part = [&](const char* name, const auto& t) {
    if (!t.empty()) f(std::string(name), t);
  };
  part("cache.output.count", s.output.count);
  part("cache.output.mean", s.output.mean);
  part("cache.output.var", s.output.var);
  part("cache.segment.prev_idx", s.seg_ids);
  part("cache.segment.prev_count", s.mem_seg);
}

}  // namespace gecko::model
