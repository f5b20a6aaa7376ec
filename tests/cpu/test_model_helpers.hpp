#pragma once
// Helpers shared by the layer and model tests: golden streaming states in and out, and
// comparisons of whole states.

#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <type_traits>

#include "gecko/layers/layer_state.hpp"
#include "gecko/model/state.hpp"
#include "support/golden.hpp"

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

}  // namespace gecko::testing
