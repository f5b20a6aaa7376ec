#pragma once
// Helpers shared by the layer and model tests (CPU and GPU): golden layer calls and streaming
// states in and out, piece schedules, random models and tokens, and comparisons of whole states.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "gecko/cpu/rope.hpp"
#include "gecko/layers/layer_state.hpp"
#include "gecko/model/model.hpp"
#include "gecko/model/state.hpp"
#include "support/golden.hpp"
#include "support/layout.hpp"

namespace gecko::testing {

// The layer state stored under `prefix` (e.g. "in.cache."); absent parts stay empty.
template <class T>
layers::LayerState<T> read_layer_state(const io::SafetensorsFile& f, const std::string& prefix) {
  layers::LayerState<T> s;
  auto floats = [&](const char* name, Tensor<T>& slot) {
    if (f.contains(prefix + name)) slot = f.get_as<T>(prefix + name);
  };
  floats("sca.prev_key", s.window.key);
  floats("sca.prev_value", s.window.value);
  floats("awm.prev_key", s.memory.key);
  floats("awm.memory", s.memory.memory);
  floats("awm.log_norm_term", s.memory.log_norm);
  floats("norm.mean", s.norm.mean);
  floats("norm.var", s.norm.var);
  floats("cema.h", s.cema_h);
  if (f.contains(prefix + "norm.count")) s.norm.count = f.get<std::int64_t>(prefix + "norm.count");
  if (f.contains(prefix + "sca.kv_count")) s.kv_count = f.get<std::int64_t>(prefix + "sca.kv_count")[0];
  return s;
}

// Compares every part of a state (visited as name, tensor) with golden `prefix + name`, and checks
// that every golden tensor whose name starts with `stored_under` was produced. Returns the largest
// relative error seen.
template <class State>
double check_state_against(const io::SafetensorsFile& f, const std::string& prefix, const State& state,
                           const std::string& stored_under, double tol) {
  double worst = 0;
  int compared = 0;
  visit_state(state, [&](const std::string& name, const auto& t) {
    const std::string golden = prefix + name;
    INFO("state tensor ", golden);
    REQUIRE(f.contains(golden));
    using X = std::remove_cvref_t<decltype(t[0])>;
    if constexpr (std::is_floating_point_v<X>) {
      const auto g = f.get<float>(golden);
      check_close(golden, t, g, tol);
      worst = std::max(worst, rel_error(t, g));
    } else {
      check_equal(golden, t, f.get<X>(golden));
    }
    ++compared;
  });
  int stored = 0;
  for (const auto& [name, info] : f.tensors())
    if (name.starts_with(stored_under)) ++stored;
  CHECK(compared == stored);
  return worst;
}

// The inputs of a golden layer call besides x and the RoPE table (mega_* and block_* files): the
// bos mask and the document ids, each empty where the file has none.
struct GoldenLayerCall {
  Tensor<bool> bos;                                // in.bos_mask (B, L)
  Tensor<std::int64_t> seg, window_seg, mem_seg;  // in.segment_idx, in.prev_segment_idx, in.prev_segment_count

  explicit GoldenLayerCall(const io::SafetensorsFile& f) {
    if (f.contains("in.bos_mask")) bos = f.get<bool>("in.bos_mask");
    if (f.contains("in.segment_idx")) seg = f.get<std::int64_t>("in.segment_idx");
    if (f.contains("in.prev_segment_idx")) window_seg = f.get<std::int64_t>("in.prev_segment_idx");
    if (f.contains("in.prev_segment_count")) mem_seg = f.get<std::int64_t>("in.prev_segment_count");
  }
  const Tensor<bool>* bos_or_none() const { return bos.empty() ? nullptr : &bos; }
  layers::SegmentIds ids() const {
    return {seg.empty() ? nullptr : &seg, window_seg.empty() ? nullptr : &window_seg,
            mem_seg.empty() ? nullptr : &mem_seg};
  }
};

// A golden layer call's results: out.y and every out.cache.* tensor of the file at tol, both
// errors reported after `label`.
template <class T>
void check_layer_results(const io::SafetensorsFile& f, const std::string& label, const Tensor<T>& y,
                         const layers::LayerState<T>& state, double tol) {
  const Tensor<float> golden = f.get<float>("out.y");
  check_close("out.y", y, golden, tol);
  const double state_rel = check_state_against(f, "out.cache.", state, "out.cache.", tol);
  MESSAGE(label, ": out.y rel ", rel_error(y, golden), ", state rel ", state_rel);
}

// "16 16 3 1 " for a schedule of pieces, for test reports.
inline std::string schedule_text(const std::vector<std::int64_t>& schedule) {
  std::string text;
  for (const auto n : schedule) text += std::to_string(n) + " ";
  return text;
}

// A random schedule of allowed pieces covering L tokens: at a chunk boundary a prefill of whole
// chunks, a tail of 2 … C−1 tokens or a single token; elsewhere single tokens.
inline std::vector<std::int64_t> random_schedule(std::mt19937& rng, std::int64_t L, std::int64_t C) {
  std::vector<std::int64_t> pieces;
  for (std::int64_t at = 0; at < L;) {
    std::int64_t n = 1;
    if (at % C == 0) {
      const int kind = std::uniform_int_distribution<int>(0, 2)(rng);
      const std::int64_t chunks_left = (L - at) / C;
      if (kind == 0 && chunks_left > 0)
        n = C * std::uniform_int_distribution<std::int64_t>(1, std::min<std::int64_t>(chunks_left, 3))(rng);
      else if (kind == 1 && std::min(C - 1, L - at) >= 2)
        n = std::uniform_int_distribution<std::int64_t>(2, std::min(C - 1, L - at))(rng);
    }
    pieces.push_back(n);
    at += n;
  }
  return pieces;
}

// Random tokens with bos tokens at t = 0, on the first and last token of a chunk, back to back and
// at random places (never bos elsewhere).
inline Tensor<std::int64_t> random_tokens(std::mt19937& rng, std::int64_t B, std::int64_t L, std::int64_t C,
                                   std::int64_t vocab, std::int64_t bos_id) {
  Tensor<std::int64_t> tokens({B, L});
  std::uniform_int_distribution<std::int64_t> tok(0, vocab - 1);
  for (std::int64_t i = 0; i < tokens.size(); ++i) {
    tokens[i] = tok(rng);
    if (tokens[i] == bos_id) tokens[i] = (bos_id + 1) % vocab;
  }
  std::uniform_int_distribution<std::int64_t> pos(0, L - 1);
  for (std::int64_t b = 0; b < B; ++b) {
    if (b % 2 == 0) tokens(b, 0) = bos_id;
    for (int k = 0; k < 4; ++k) tokens(b, pos(rng)) = bos_id;
    const std::int64_t c = std::uniform_int_distribution<std::int64_t>(1, L / C - 1)(rng);
    tokens(b, c * C) = bos_id;          // first token of a chunk
    tokens(b, c * C - 1) = bos_id;      // last token of the previous chunk (back to back)
    tokens(b, (c + 1) * C - 1) = bos_id;  // last token of a chunk
  }
  return tokens;
}

// Two model states agree part by part: floats to tol relative, integers exactly.
template <class T>
void check_states_equal(const model::ModelState<T>& a, const model::ModelState<T>& b, double tol) {
  int na = 0, nb = 0;
  visit_state(b, [&](const std::string&, const auto&) { ++nb; });
  visit_state(a, [&](const std::string& name, const auto& ta) {
    ++na;
    bool found = false;
    visit_state(b, [&](const std::string& nb_name, const auto& tb) {
      if (nb_name != name) return;
      found = true;
      using A = std::remove_cvref_t<decltype(ta[0])>;
      using Bt = std::remove_cvref_t<decltype(tb[0])>;
      if constexpr (std::is_same_v<A, Bt>) {
        INFO("state ", name);
        REQUIRE(ta.shape() == tb.shape());
        if constexpr (std::is_floating_point_v<A>)
          CHECK(rel_error(ta, tb) <= tol);
        else
          check_equal(name, ta, tb);
      } else {
        FAIL("state ", name, " has different element types");
      }
    });
    INFO("state ", name);
    CHECK(found);
  });
  CHECK(na == nb);
}

// Feeds tokens through the model in the given pieces; returns the logits of all pieces joined.
template <class Model, class State>
auto stream_in_pieces(const Model& model, const Tensor<std::int64_t>& tokens,
                      const std::vector<std::int64_t>& schedule, State& state, bool multi) {
  using T = typename Model::scalar;
  Tensor<T> streamed;
  std::int64_t at = 0;
  for (const std::int64_t n : schedule) {
    const Tensor<T> piece = model.forward(time_slice(tokens, at, at + n), state, multi);
    if (streamed.empty()) streamed = Tensor<T>({piece.dim(0), tokens.dim(1), piece.dim(2)});
    for (std::int64_t b = 0; b < piece.dim(0); ++b)
      for (std::int64_t t = 0; t < n; ++t)
        for (std::int64_t v = 0; v < piece.dim(2); ++v) streamed(b, at + t, v) = piece(b, t, v);
    at += n;
  }
  return streamed;
}

// Random schedules against one pass over the same tokens (double): logits and final state agree
// to 1e-9 relative.
template <class Model>
void check_random_schedules(const Model& model, const Tensor<std::int64_t>& tokens, bool multi,
                            std::mt19937& rng, int schedules) {
  const std::int64_t C = model.config().chunk_size, L = tokens.dim(1);
  model::ModelState<double> one_state;
  const Tensor<double> one = model.feed(tokens, one_state, multi);
  for (int k = 0; k < schedules; ++k) {
    const auto schedule = random_schedule(rng, L, C);
    INFO("schedule ", schedule_text(schedule));
    model::ModelState<double> s;
    const Tensor<double> streamed = stream_in_pieces(model, tokens, schedule, s, multi);
    CHECK(rel_error(streamed, one) <= 1e-9);
    check_states_equal(s, one_state, 1e-9);
  }
}

// Random parameters for every tensor the configuration and the policy call for: weights
// N(0, 1/fan_in)-ish, norm offsets and biases small, priors at their neutral values (count 0,
// mean 0, var 0 for the decay norm, 1 for the cumulative norm).
template <class Policy, class T>
model::ModelParams<T> random_model_params(const model::Config& c, std::mt19937& rng) {
  model::ModelParams<T> p;
  p.layers.resize(std::size_t(c.num_layers));
  std::normal_distribution<double> normal(0.0, 1.0);
  model::visit_model_parameters<Policy>(p, c, [&](const std::string& name, auto& t, const Shape& shape) {
    using X = std::remove_cvref_t<decltype(t[0])>;
    t = Tensor<X>(shape);
    if constexpr (std::is_floating_point_v<X>) {
      double scale = 0.1;
      if (name.ends_with("prior_mean")) scale = 0;
      if (shape.rank == 2 && !name.ends_with("cema.alpha") && !name.ends_with("cema.delta") &&
          !name.ends_with("mega.gamma") && !name.ends_with("mega.beta"))
        scale = 1.0 / std::sqrt(double(shape[1]));
      if (name == "embed.weight") scale = 1.0;
      if (name.ends_with("cema.alpha") || name.ends_with("cema.delta")) scale = 0.5;
      if (name.ends_with("cema.gamma")) scale = 0.5;
      if (name.ends_with("cema.theta")) scale = 1.0;
      if (name.ends_with("cema.omega")) scale = 0.25;
      for (auto& v : t.span()) v = X(scale * normal(rng));
      if (name.ends_with("prior_var")) for (auto& v : t.span()) v = Policy::input_norm::resets_at_bos ? X(0) : X(1);
      if (name == "rope.freqs") t = cpu::rope_frequencies<X>(int(c.head_dim()), c.rope_base);
    }
  });
  return p;
}

}  // namespace gecko::testing
