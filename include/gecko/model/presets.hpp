#pragma once
// Named model configurations: "tiny" (fast on one CPU core, for demos and tests), "small" (a
// laptop-sized model with a real vocabulary) and "7b" (the reference's ModelConf defaults, spec §2,
// with the llama2 vocabulary of 32000). A preset is only a Config: weights come from a checkpoint
// or from init_params (model/init.hpp).

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "gecko/core/error.hpp"
#include "gecko/core/shape.hpp"
#include "gecko/model/config.hpp"
#include "gecko/model/model.hpp"

namespace gecko::model {

struct Preset {
  std::string_view name;
  std::string_view summary;
  Config (*config)();
};

namespace detail {

inline Config tiny_config() {
  Config c;
  c.num_layers = 2;
  c.model_dim = 32;
  c.z_dim = 16;  // dk = 8
  c.value_dim = 32;  // dv = 16
  c.num_heads = 2;
  c.ffn_hidden_dim = 64;
  c.cema_ndim = 4;
  c.chunk_size = 32;
  c.vocab_size = 256;
  c.timenorm_num_groups = 4;
  return c;
}

inline Config small_config() {
  Config c;
  c.num_layers = 4;
  c.model_dim = 512;
  c.z_dim = 128;  // dk = 32
  c.value_dim = 1024;  // dv = 256
  c.num_heads = 4;
  c.ffn_hidden_dim = 1024;
  c.cema_ndim = 16;
  c.chunk_size = 256;
  c.vocab_size = 32000;
  c.timenorm_num_groups = 32;
  return c;
}

inline Config seven_b_config() {
  Config c;  // the ModelConf defaults are the 7B configuration
  c.vocab_size = 32000;
  return c;
}

}  // namespace detail

inline constexpr std::array<Preset, 3> kPresets = {
    Preset{"tiny", "2 layers, D 32, C 32, V 256", detail::tiny_config},
    Preset{"small", "4 layers, D 512, C 256, V 32000", detail::small_config},
    Preset{"7b", "the reference's 7B ModelConf: 32 layers, D 4096, C 2048, V 32000", detail::seven_b_config},
};

// The configuration of a named preset; an unknown name is an error listing the known ones.
inline Config preset_config(std::string_view name) {
  for (const auto& p : kPresets)
    if (p.name == name) return p.config();
  std::string known;
  for (const auto& p : kPresets) known += (known.empty() ? "" : ", ") + std::string(p.name);
  fail("unknown preset '", name, "' (known presets: ", known, ")");
}

// The number of parameters (every tensor visit_model_parameters lists, the tied output layer once).
template <class Policy>
std::int64_t parameter_count(const Config& c) {
  ModelParams<float> shapes;
  shapes.layers.resize(std::size_t(c.num_layers));
  std::int64_t n = 0;
  visit_model_parameters<Policy>(shapes, c, [&](const std::string&, const auto&, const Shape& s) { n += s.numel(); });
  return n;
}

}  // namespace gecko::model
