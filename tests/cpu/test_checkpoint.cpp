// Checkpoint loading: the golden model files load as checkpoints; a missing, unexpected or wrongly
// shaped tensor and an impossible configuration value are errors naming them and the file.
#include <doctest/doctest.h>

#include <filesystem>
#include <functional>
#include <random>

#include <nlohmann/json.hpp>

#include "gecko/model/checkpoint.hpp"
#include "gecko/policy/presets.hpp"
#include "support/golden.hpp"
#include "test_model_helpers.hpp"

using namespace gecko;

namespace {

// A folder of this process's edited checkpoints, removed at exit.
struct TempDir {
  std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("gecko_test_checkpoint_" + std::to_string(::getpid()));
  TempDir() { std::filesystem::create_directories(path); }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

std::filesystem::path temp_file(const std::string& name) {
  static const TempDir dir;
  return dir.path / name;
}

// A copy of a golden model file with edits: tensors dropped, tensors added, the config JSON edited.
struct Edit {
  std::vector<std::string> drop = {};
  std::function<void(io::SafetensorsWriter&)> add = {};
  std::function<void(nlohmann::json&)> config = {};
  std::function<void(nlohmann::json&)> args = {};
  bool drop_config = false;
};

std::filesystem::path edited_copy(const std::string& golden_case, const std::string& out_name, const Edit& e) {
  const auto f = testing::open_golden(golden_case);
  io::SafetensorsWriter w;
  for (const auto& [name, info] : f->tensors()) {
    if (std::find(e.drop.begin(), e.drop.end(), name) != e.drop.end()) continue;
    const auto bytes = f->bytes(name);
    w.add_raw(name, info.dtype, info.shape, bytes.data(), bytes.size());
  }
  if (e.add) e.add(w);
  for (const auto& [key, value] : f->metadata()) {
    if (key == "config") {
      if (e.drop_config) continue;
      auto j = nlohmann::json::parse(value);
      if (e.config) e.config(j);
      w.set_metadata(key, j.dump());
    } else if (key == "args") {
      auto j = nlohmann::json::parse(value);
      if (e.args) e.args(j);
      w.set_metadata(key, j.dump());
    } else {
      w.set_metadata(key, value);
    }
  }
  const auto path = temp_file(out_name);
  w.write(path);
  return path;
}

void check_load_fails(const std::filesystem::path& path, const std::string& message) {
  INFO("expected message: ", message);
  CHECK_THROWS_WITH_AS((model::load_model<policy::Gecko, float>(path)), doctest::Contains(message.c_str()), Error);
  CHECK_THROWS_WITH_AS((model::load_model<policy::Gecko, float>(path)), doctest::Contains(path.string().c_str()), Error);
}

}  // namespace

TEST_CASE_TEMPLATE("checkpoint: a golden model file loads; F32 tensors convert to T", T, float, double) {
  const auto f = testing::open_golden("model_single_doc");
  const auto m = model::load_model<policy::Gecko, T>(f->path());
  CHECK(m.config().num_layers == 2);
  CHECK(m.config().vocab_size == 97);
  CHECK_FALSE(m.config().num_rope_heads.has_value());
  CHECK(m.config().rope_heads() == 2);
  const auto wv = f->get<float>("layers.1.mega.wv.weight");
  const auto& loaded = m.blocks()[1].mega().params().wv_weight;
  REQUIRE(loaded.shape() == wv.shape());
  for (std::int64_t i = 0; i < wv.size(); ++i) REQUIRE(loaded[i] == T(wv[i]));
}

TEST_CASE("checkpoint: a missing tensor is named, with its expected shape and the file") {
  const auto path = edited_copy("model_single_doc", "missing.safetensors", {.drop = {"layers.1.mega.wz.bias"}});
  check_load_fails(path, "missing tensor 'layers.1.mega.wz.bias' (expected shape [32])");
}

TEST_CASE("checkpoint: an unexpected tensor is named") {
  const auto path = edited_copy("model_single_doc", "unexpected.safetensors", {.add = [](io::SafetensorsWriter& w) {
    w.add("layers.0.mega.cema.omega", Tensor<float>({64}, 1.0f));
  }});
  check_load_fails(path, "unexpected tensor 'layers.0.mega.cema.omega' of shape [64]");
  // Parameters of a third layer, which the configuration does not have, are unexpected too.
  const auto path3 = edited_copy("model_single_doc", "extra_layer.safetensors", {.add = [](io::SafetensorsWriter& w) {
    w.add("layers.2.mega.wz.bias", Tensor<float>({32}));
  }});
  check_load_fails(path3, "unexpected tensor 'layers.2.mega.wz.bias'");
}

TEST_CASE("checkpoint: a tensor of the wrong shape or dtype is named") {
  const auto path = edited_copy("model_single_doc", "shape.safetensors", {.drop = {"layers.0.nffn.fc2.weight"}, .add = [](io::SafetensorsWriter& w) {
    w.add("layers.0.nffn.fc2.weight", Tensor<float>({64, 127}));
  }});
  check_load_fails(path, "tensor 'layers.0.nffn.fc2.weight' has shape [64, 127], expected [64, 128]");
  const auto dtype = edited_copy("model_single_doc", "dtype.safetensors", {.drop = {"output.final_norm.prior_count"}, .add = [](io::SafetensorsWriter& w) {
    w.add("output.final_norm.prior_count", Tensor<float>(Shape{}));
  }});
  check_load_fails(dtype, "tensor 'output.final_norm.prior_count' has dtype F32, expected I64");
}

TEST_CASE("checkpoint: the tensors of optional parts follow the flags") {
  // Without swiglu fc3 is not a parameter; with rescale_nffn alpha is one.
  const auto no_swiglu = edited_copy("model_single_doc", "no_swiglu.safetensors", {.config = [](nlohmann::json& j) { j["swiglu"] = false; }});
  check_load_fails(no_swiglu, "unexpected tensor 'layers.0.nffn.fc3.weight'");
  const auto rescale = edited_copy("model_single_doc", "rescale.safetensors", {.config = [](nlohmann::json& j) { j["rescale_nffn"] = true; }});
  check_load_fails(rescale, "missing tensor 'layers.0.nffn.alpha' (expected shape [64])");
  const auto no_rope = edited_copy("model_single_doc", "no_rope.safetensors", {.config = [](nlohmann::json& j) { j["num_rope_heads"] = 0; }});
  check_load_fails(no_rope, "unexpected tensor 'rope.freqs'");
  const auto no_affine = edited_copy("model_single_doc", "no_affine.safetensors", {.config = [](nlohmann::json& j) { j["norm_affine"] = false; }});
  check_load_fails(no_affine, "unexpected tensor 'layers.0.mega.rmsnorm.weight'");
}

TEST_CASE("checkpoint: share_emb takes the output weight from the embedding; a differing copy is an error") {
  const auto f = testing::open_golden("model_variants");  // share_emb, both names stored
  CHECK_NOTHROW(model::load_model<policy::Gecko, float>(f->path()));
  const auto without = edited_copy("model_variants", "tied_dropped.safetensors", {.drop = {"output.output.weight"}});
  CHECK_NOTHROW(model::load_model<policy::Gecko, float>(without));
  const auto differs = edited_copy("model_variants", "tied_differs.safetensors", {.drop = {"output.output.weight"}, .add = [](io::SafetensorsWriter& w) {
    w.add("output.output.weight", Tensor<float>({97, 64}, 0.5f));
  }});
  check_load_fails(differs, "share_emb is set but output.output.weight differs from embed.weight");
}

TEST_CASE("checkpoint: impossible configuration values are errors naming the field") {
  const std::pair<std::function<void(nlohmann::json&)>, std::string> cases[] = {
      {[](nlohmann::json& j) { j["num_heads"] = 3; }, "config: z_dim = 32 is invalid: must be a positive multiple of num_heads"},
      {[](nlohmann::json& j) { j["value_dim"] = 129; }, "config: value_dim = 129 is invalid"},
      {[](nlohmann::json& j) { j["timenorm_num_groups"] = 7; }, "config: timenorm_num_groups = 7 is invalid"},
      {[](nlohmann::json& j) { j["layernorm_num_groups"] = 0; }, "config: layernorm_num_groups = 0 is invalid"},
      {[](nlohmann::json& j) { j["z_dim"] = 34; }, "config: z_dim = 34 is invalid: RoPE rotates pairs of channels"},
      {[](nlohmann::json& j) { j["vocab_size"] = 0; }, "config: vocab_size = 0 is invalid"},
      {[](nlohmann::json& j) { j["vocab_size"] = -1; }, "config: vocab_size = -1 is invalid"},
      {[](nlohmann::json& j) { j["chunk_size"] = 0; }, "config: chunk_size = 0 is invalid"},
      {[](nlohmann::json& j) { j["efficient_attn"] = "flash"; }, "config: efficient_attn = \"flash\" is invalid"},
      {[](nlohmann::json& j) { j["efficient_attn"] = nullptr; }, "config: efficient_attn must be a string, got null"},
      {[](nlohmann::json& j) { j["num_rope_heads"] = 3; }, "config: num_rope_heads = 3 is invalid"},
      {[](nlohmann::json& j) { j["timenorm_beta1"] = 1.0; }, "config: timenorm_beta1 = 1 is invalid"},
      {[](nlohmann::json& j) { j["num_layers"] = 0; }, "config: num_layers = 0 is invalid"},
      {[](nlohmann::json& j) { j["chunk_size"] = "16"; }, "config: chunk_size must be an integer, got \"16\""},
      {[](nlohmann::json& j) { j["swiglu"] = 1; }, "config: swiglu must be true or false, got 1"},
      {[](nlohmann::json& j) { j["output_size"] = 50, j["share_emb"] = true; }, "config: output_size = 50 is invalid: share_emb"},
  };
  int k = 0;
  for (const auto& [edit, message] : cases) {
    const auto path = edited_copy("model_single_doc", "config" + std::to_string(k++) + ".safetensors", {.config = edit});
    check_load_fails(path, message);
  }
  const auto no_config = edited_copy("model_single_doc", "no_config.safetensors", {.drop_config = true});
  check_load_fails(no_config, "__metadata__ has no \"config\" entry");
}

TEST_CASE("checkpoint: args.bos_id is the default bos id, else 1") {
  const auto seven = edited_copy("model_single_doc", "bos7.safetensors", {.args = [](nlohmann::json& j) { j["bos_id"] = 7; }});
  CHECK(model::load_model<policy::Gecko, float>(seven).bos_id() == 7);
  const auto none = edited_copy("model_single_doc", "bos_none.safetensors", {.args = [](nlohmann::json& j) { j.erase("bos_id"); }});
  CHECK(model::load_model<policy::Gecko, float>(none).bos_id() == 1);
  const auto bad = edited_copy("model_single_doc", "bos_bad.safetensors", {.args = [](nlohmann::json& j) { j["bos_id"] = "one"; }});
  check_load_fails(bad, "args.bos_id must be an integer");
}

TEST_CASE_TEMPLATE("checkpoint: save_checkpoint writes what load_model reads, for every variant", T, float, double) {
  auto c = model::Config{};
  c.num_layers = 2, c.model_dim = 16, c.z_dim = 8, c.value_dim = 16, c.num_heads = 2, c.ffn_hidden_dim = 24;
  c.cema_ndim = 3, c.chunk_size = 4, c.vocab_size = 13, c.timenorm_num_groups = 4, c.two_hop_residual = true;
  Tensor<std::int64_t> tokens({2, 10});
  for (std::int64_t i = 0; i < tokens.size(); ++i) tokens[i] = (i * 7) % 13;
  auto roundtrip = [&](auto policy_tag, const std::string& name) {
    using P = decltype(policy_tag);
    std::mt19937 rng(3);
    const auto params = testing::random_model_params<P, T>(c, rng);
    const auto path = temp_file(name + (sizeof(T) == 4 ? "_f32" : "_f64") + ".safetensors");
    model::save_checkpoint<P>(path, c, params, 5);
    const auto loaded = model::load_model<P, T>(path);
    CHECK(loaded.bos_id() == 5);
    const model::Model<P, T> direct(c, params, 5);
    testing::check_equal(name, loaded.forward(tokens), direct.forward(tokens));
  };
  roundtrip(policy::Gecko{}, "gecko");
  roundtrip(policy::GeckoNoMemory{}, "no_memory");
  roundtrip(policy::GeckoBlockDiagonal{}, "block_diagonal");
  roundtrip(policy::Megalodon{}, "megalodon");
  // A Megalodon checkpoint (ω, two z rows) is not a Gecko one.
  CHECK_THROWS_WITH_AS((model::load_model<policy::Gecko, T>(temp_file(std::string("megalodon") + (sizeof(T) == 4 ? "_f32" : "_f64") + ".safetensors"))),
                       doctest::Contains("tensor 'layers.0.mega.gamma' has shape [2, 8], expected [4, 8]"), Error);
}
