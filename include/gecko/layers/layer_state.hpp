#pragma once
// The streaming state of one layer (spec §4.5) and the document ids a layer reads in a call.
// A default-constructed LayerState is a fresh stream. Everything the layer carries between calls
// is here: the input norm's (count, mean, var), the CEMA state, the cached window of keys and
// values (the last complete chunk plus the current partial chunk: at most 2C − 1 tokens), the
// working memory with its key window and log normaliser, and the number of tokens seen.

#include <cstdint>
#include <string>

#include "gecko/core/tensor.hpp"
#include "gecko/cpu/sliding_chunk_attention.hpp"
#include "gecko/cpu/timestep_norm.hpp"
#include "gecko/cpu/working_memory.hpp"

namespace gecko::layers {

// Document ids of one call (spec §4.2); all nullptr without multi_segments.
struct SegmentIds {
  const Tensor<std::int64_t>* seg = nullptr;         // (B, L) ids of the call's tokens
  const Tensor<std::int64_t>* window_seg = nullptr;  // (B, Lk) ids of the cached window
  const Tensor<std::int64_t>* mem_seg = nullptr;     // (B) document of the working memory
};

template <class T>
struct LayerState {
  cpu::TimestepNormState<T> norm;     // input norm: count (B), mean and var (B, G); empty = priors
  Tensor<T> cema_h;                   // (B, D, N, 2) complex CEMA state; empty = zero
  cpu::AttentionWindow<T> window;     // keys after RoPE (B, Lk, H, dk), values (B, Lk, H, dv)
  cpu::WorkingMemoryState<T> memory;  // AWM keys (B, H, Lk, dk), memory (B, H, dk, dv), log_norm (B, H, dk)
  std::int64_t kv_count = 0;          // tokens seen so far = RoPE position of the next token

  // Bytes held, constant in the stream length once the first chunk is complete.
  std::int64_t bytes() const {
    std::int64_t n = 0;
    visit_state(*this, [&](const std::string&, const auto& t) {
      n += t.size() * std::int64_t(sizeof(t[0]));
    });
    return n;
  }
};

// Calls f(name, tensor) for every part of the state that exists, under the golden cache names
// (spec §4.5 / golden README): sca.prev_key, sca.prev_value, sca.kv_count (scalar I64),
// awm.prev_key, awm.memory, awm.log_norm_term, norm.count, norm.mean, norm.var, cema.h.
template <class T, class F>
void visit_state(const LayerState<T>& s, F&& f) {
  auto part = [&](const char* name, const auto& t) {
    if (!t.empty()) f(std::string(name), t);
  };
  part("sca.prev_key", s.window.key);
  part("sca.prev_value", s.window.value);
  f(std::string("sca.kv_count"), Tensor<std::int64_t>(Shape{}, s.kv_count));
  part("awm.prev_key", s.memory.key);
  part("awm.memory", s.memory.memory);
  part("awm.log_norm_term", s.memory.log_norm);
  part("norm.count", s.norm.count);
  part("norm.mean", s.norm.mean);
  part("norm.var", s.norm.var);
  part("cema.h", s.cema_h);
}

}  // namespace gecko::layers
