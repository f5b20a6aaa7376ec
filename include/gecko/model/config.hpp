#pragma once
// The model configuration: the reference's ModelConf fields (spec §2) under their reference names,
// read from the JSON a checkpoint stores in __metadata__["config"]. Sizes stay runtime values;
// validate() rejects impossible values with an error naming the field.

#include <cstdint>
#include <limits>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "gecko/core/error.hpp"

namespace gecko::model {

struct Config {
  int num_layers = 32;
  std::int64_t model_dim = 4096;       // D
  std::int64_t z_dim = 1024;           // S = H·dk
  std::int64_t value_dim = 8192;       // E = H·dv
  int num_heads = 4;                   // H
  std::int64_t ffn_hidden_dim = 8192;  // F
  int cema_ndim = 16;                  // N
  std::int64_t chunk_size = 2048;      // C
  std::string efficient_attn = "fused";
  std::int64_t vocab_size = -1;        // must be set (> 0)
  std::int64_t output_size = -1;       // -1 = vocab_size
  int timenorm_num_groups = 64;        // G
  double timenorm_beta1 = 0.999, timenorm_beta2 = 0.9999;
  int layernorm_num_groups = 1;
  bool norm_affine = true;
  double norm_eps = 1e-5;
  bool two_hop_residual = false;
  double rope_base = 500000;
  std::optional<int> num_rope_heads;   // null = all heads; 0 disables RoPE
  bool swiglu = true;
  bool rescale_nffn = false;
  bool scale_emb = false;
  bool share_emb = false;

  std::int64_t head_dim() const { return z_dim / num_heads; }         // dk
  std::int64_t value_head_dim() const { return value_dim / num_heads; }  // dv
  int rope_heads() const { return num_rope_heads.value_or(num_heads); }
  std::int64_t output_dim() const { return output_size == -1 ? vocab_size : output_size; }  // V

  // Throws gecko::Error naming the first field with an impossible value.
  void validate() const {
    auto field = [](bool ok, const char* name, auto value, const char* why) {
      if (!ok) fail("config: ", name, " = ", value, " is invalid: ", why);
    };
    field(num_layers >= 1, "num_layers", num_layers, "need at least one layer");
    field(model_dim > 0, "model_dim", model_dim, "must be positive");
    field(num_heads > 0, "num_heads", num_heads, "must be positive");
    field(z_dim > 0 && z_dim % num_heads == 0, "z_dim", z_dim,
          "must be a positive multiple of num_heads (z_dim % num_heads == 0)");
    field(value_dim > 0 && value_dim % num_heads == 0, "value_dim", value_dim,
          "must be a positive multiple of num_heads (value_dim % num_heads == 0)");
    field(ffn_hidden_dim > 0, "ffn_hidden_dim", ffn_hidden_dim, "must be positive");
    field(cema_ndim > 0, "cema_ndim", cema_ndim, "must be positive");
    field(chunk_size > 0, "chunk_size", chunk_size, "must be positive");
    field(efficient_attn == "fused" || efficient_attn == "swift", "efficient_attn",
          "\"" + efficient_attn + "\"", "only \"fused\" and \"swift\" (the same attention) exist");
    field(vocab_size > 0, "vocab_size", vocab_size, "must be positive (set it from the tokenizer)");
    field(output_size == -1 || output_size > 0, "output_size", output_size,
          "must be positive, or -1 for vocab_size");
    field(timenorm_num_groups > 0 && model_dim % timenorm_num_groups == 0, "timenorm_num_groups",
          timenorm_num_groups, "must be positive and divide model_dim (model_dim % groups == 0)");
    field(timenorm_beta1 >= 0 && timenorm_beta1 < 1, "timenorm_beta1", timenorm_beta1,
          "must lie in [0, 1)");
    field(timenorm_beta2 >= 0 && timenorm_beta2 < 1, "timenorm_beta2", timenorm_beta2,
          "must lie in [0, 1)");
    field(layernorm_num_groups > 0 && model_dim % layernorm_num_groups == 0, "layernorm_num_groups",
          layernorm_num_groups, "must be positive and divide model_dim (model_dim % groups == 0)");
    field(norm_eps >= 0, "norm_eps", norm_eps, "must be non-negative");
    const int rope = rope_heads();
    field(rope >= 0 && rope <= num_heads, "num_rope_heads", rope, "must lie in [0, num_heads]");
    if (rope > 0) {
      field(head_dim() % 2 == 0, "z_dim", z_dim,
            "RoPE rotates pairs of channels: the head dim z_dim / num_heads must be even");
      field(rope_base > 0, "rope_base", rope_base, "must be positive");
    }
    field(!share_emb || output_dim() == vocab_size, "output_size", output_size,
          "share_emb ties the output layer to the embedding: output_size must equal vocab_size");
  }

  // Reads the reference's configuration JSON. Absent fields keep the reference defaults above;
  // fields that only matter for training (dropouts, init_mode, memory_efficient_norm) are not read.
  static Config from_json(const nlohmann::json& j) {
    require(j.is_object(), "config: expected a JSON object, got ", j.dump());
    Config c;
    read(j, "num_layers", c.num_layers);
    read(j, "model_dim", c.model_dim);
    read(j, "z_dim", c.z_dim);
    read(j, "value_dim", c.value_dim);
    read(j, "num_heads", c.num_heads);
    read(j, "ffn_hidden_dim", c.ffn_hidden_dim);
    read(j, "cema_ndim", c.cema_ndim);
    read(j, "chunk_size", c.chunk_size);
    read(j, "efficient_attn", c.efficient_attn);
    read(j, "vocab_size", c.vocab_size);
    read(j, "output_size", c.output_size);
    read(j, "timenorm_num_groups", c.timenorm_num_groups);
    read(j, "timenorm_beta1", c.timenorm_beta1);
    read(j, "timenorm_beta2", c.timenorm_beta2);
    read(j, "layernorm_num_groups", c.layernorm_num_groups);
    read(j, "norm_affine", c.norm_affine);
    read(j, "norm_eps", c.norm_eps);
    read(j, "two_hop_residual", c.two_hop_residual);
    read(j, "rope_base", c.rope_base);
    if (j.contains("num_rope_heads") && !j["num_rope_heads"].is_null()) {
      int n = 0;
      read(j, "num_rope_heads", n);
      c.num_rope_heads = n;
    }
    read(j, "swiglu", c.swiglu);
    read(j, "rescale_nffn", c.rescale_nffn);
    read(j, "scale_emb", c.scale_emb);
    read(j, "share_emb", c.share_emb);
    return c;
  }

  static Config from_json(const std::string& text) {
    const auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    require(!j.is_discarded(), "config: not valid JSON: ", text.substr(0, 200));
    return from_json(j);
  }

  nlohmann::json to_json() const {
    return {{"num_layers", num_layers},
            {"model_dim", model_dim},
            {"z_dim", z_dim},
            {"value_dim", value_dim},
            {"num_heads", num_heads},
            {"ffn_hidden_dim", ffn_hidden_dim},
            {"cema_ndim", cema_ndim},
            {"chunk_size", chunk_size},
            {"efficient_attn", efficient_attn},
            {"vocab_size", vocab_size},
            {"output_size", output_size},
            {"timenorm_num_groups", timenorm_num_groups},
            {"timenorm_beta1", timenorm_beta1},
            {"timenorm_beta2", timenorm_beta2},
            {"layernorm_num_groups", layernorm_num_groups},
            {"norm_affine", norm_affine},
            {"norm_eps", norm_eps},
            {"two_hop_residual", two_hop_residual},
            {"rope_base", rope_base},
            {"num_rope_heads", num_rope_heads ? nlohmann::json(*num_rope_heads) : nlohmann::json()},
            {"swiglu", swiglu},
            {"rescale_nffn", rescale_nffn},
            {"scale_emb", scale_emb},
            {"share_emb", share_emb}};
  }

 private:
  template <class V>
  static void read(const nlohmann::json& j, const char* name, V& out) {
    if (!j.contains(name)) return;
    const auto& v = j[name];
    if constexpr (std::is_same_v<V, bool>) {
      require(v.is_boolean(), "config: ", name, " must be true or false, got ", v.dump());
      out = v.get<bool>();
    } else if constexpr (std::is_integral_v<V>) {
      require(v.is_number_integer(), "config: ", name, " must be an integer, got ", v.dump());
      const auto x = v.get<std::int64_t>();
      require(x >= std::int64_t(std::numeric_limits<V>::min()) &&
                  x <= std::int64_t(std::numeric_limits<V>::max()),
              "config: ", name, " = ", x, " is out of range");
      out = V(x);
    } else if constexpr (std::is_floating_point_v<V>) {
      require(v.is_number(), "config: ", name, " must be a number, got ", v.dump());
      out = v.get<V>();
    } else {
      require(v.is_string(), "config: ", name, " must be a string, got ", v.dump());
      out = v.get<std::string>();
    }
  }
};

}  // namespace gecko::model
