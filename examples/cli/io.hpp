#pragma once
// File arguments shared by the subcommands: token tensors named "FILE[:NAME]" and the output of
// logits and streaming states.

#include <cstdint>
#include <filesystem>
#include <string>

#include "gecko/core/error.hpp"
#include "gecko/core/tensor.hpp"
#include "gecko/io/safetensors.hpp"
#include "gecko/model/state.hpp"

namespace gecko::cli {

// "FILE[:NAME]" → the int64 (B, L) tensor NAME (default "tokens") of a safetensors file. A path
// that exists as given is a FILE even when it contains ':'.
inline Tensor<std::int64_t> read_tokens(const std::string& spec) {
  std::string file = spec, name = "tokens";
  if (const auto colon = spec.rfind(':'); colon != std::string::npos && !std::filesystem::exists(spec)) {
    file = spec.substr(0, colon);
    name = spec.substr(colon + 1);
  }
  const io::SafetensorsFile f(file);
  if (!f.contains(name)) fail(file, ": no tensor named '", name, "' (name it with --tokens FILE:NAME)");
  Tensor<std::int64_t> tokens = f.get<std::int64_t>(name);
  require(tokens.rank() == 2 && tokens.dim(0) > 0 && tokens.dim(1) > 0, file, ": tensor '", name,
          "' has shape ", tokens.shape().str(), ", expected (B, L) with B, L > 0");
  return tokens;
}

// Floating tensors as F32 (the golden files' dtype), integers as they are.
template <class X>
void add_as_f32(io::SafetensorsWriter& w, const std::string& name, const Tensor<X>& t) {
  if constexpr (std::is_floating_point_v<X>) {
    Tensor<float> f(t.shape());
    for (std::int64_t i = 0; i < t.size(); ++i) f[i] = float(t[i]);
    w.add(name, f);
  } else {
    w.add(name, t);
  }
}

// The state under the golden cache.* names.
template <class T>
void add_state(io::SafetensorsWriter& w, const model::ModelState<T>& state) {
  visit_state(state, [&](const std::string& name, const auto& t) { add_as_f32(w, name, t); });
}

}  // namespace gecko::cli
