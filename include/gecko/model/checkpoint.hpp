#pragma once
// Checkpoints in the reference's format (spec §3.1): a safetensors file whose tensors carry the
// reference's state_dict names and whose __metadata__["config"] holds the configuration JSON
// (__metadata__["args"] may give "bos_id"). Floating tensors of any stored dtype load into T by
// conversion. A missing, unexpected or wrongly shaped tensor, and an impossible configuration
// value, is a gecko::Error naming it and the file. Tensors under in., out., aux. and cache. are
// not parameters (the golden files keep their inputs and outputs there) and are skipped.

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "gecko/core/error.hpp"
#include "gecko/io/safetensors.hpp"
#include "gecko/model/config.hpp"
#include "gecko/model/model.hpp"

namespace gecko::model {

// A visitor for visit_parameters that reads each named tensor from a file into its slot.
template <class T>
class TensorReader {
 public:
  explicit TensorReader(const io::SafetensorsFile& file, std::string prefix = "")
      : file_(file), prefix_(std::move(prefix)) {}

  template <class X>
  void operator()(const std::string& name, Tensor<X>& slot, const Shape& shape) {
    const std::string full = prefix_ + name;
    if (!file_.contains(full))
      fail(file_.path().string(), ": missing tensor '", full, "' (expected shape ", shape.str(), ")");
    if constexpr (std::is_floating_point_v<X>)
      slot = file_.get_as<X>(full, shape);
    else
      slot = file_.get<X>(full, shape);
    read_.insert(full);
  }

  // Throws for the first tensor of the file that was neither read nor skippable.
  void check_nothing_left(const std::set<std::string>& also_read = {}) const {
    for (const auto& [name, info] : file_.tensors()) {
      if (read_.count(name) || also_read.count(name) || !name.starts_with(prefix_)) continue;
      const std::string rest = name.substr(prefix_.size());
      if (rest.starts_with("in.") || rest.starts_with("out.") || rest.starts_with("aux.") ||
          rest.starts_with("cache."))
        continue;
      fail(file_.path().string(), ": unexpected tensor '", name, "' of shape ", info.shape.str(),
           ": not a parameter of this model variant with this configuration");
    }
  }

 private:
  const io::SafetensorsFile& file_;
  std::string prefix_;
  std::set<std::string> read_;
};

// The configuration stored in a checkpoint's metadata, validated.
inline Config read_config(const io::SafetensorsFile& file) {
  const auto text = file.meta("config");
  if (!text) fail(file.path().string(), ": __metadata__ has no \"config\" entry (the configuration JSON)");
  try {
    Config c = Config::from_json(*text);
    c.validate();
    return c;
  } catch (const Error& e) {
    fail(file.path().string(), ": ", e.what());
  }
}

// __metadata__["args"]["bos_id"] when present, else 1.
inline std::int64_t read_bos_id(const io::SafetensorsFile& file) {
  const auto text = file.meta("args");
  if (!text) return 1;
  const auto args = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (args.is_discarded() || !args.is_object())
    fail(file.path().string(), ": __metadata__ \"args\" is not a JSON object");
  if (!args.contains("bos_id")) return 1;
  if (!args["bos_id"].is_number_integer())
    fail(file.path().string(), ": args.bos_id must be an integer, got ", args["bos_id"].dump());
  return args["bos_id"].get<std::int64_t>();
}

// What a checkpoint holds for Model<Policy, T>: its configuration, every parameter read into T,
// and the bos id of its metadata.
template <class T>
struct Checkpoint {
  Config config;
  ModelParams<T> params;
  std::int64_t bos_id = 1;
};

// Reads a checkpoint for the variant Policy: the configuration, each tensor the configuration
// and the policy call for (converted to T), and bos_id. With share_emb a stored
// output.output.weight (the reference's state_dict lists the tied tensor under both names) must
// equal embed.weight; any other tensor that is not a parameter is an error.
template <class Policy, class T>
Checkpoint<T> read_checkpoint(const std::filesystem::path& path) {
  const io::SafetensorsFile file(path);
  Checkpoint<T> ckpt{read_config(file), {}, 1};
  ModelParams<T>& params = ckpt.params;
  params.layers.resize(std::size_t(ckpt.config.num_layers));
  TensorReader<T> reader(file);
  visit_model_parameters<Policy>(params, ckpt.config, reader);
  std::set<std::string> tied;
  if (ckpt.config.share_emb && file.contains("output.output.weight")) {
    const Tensor<T> out = file.get_as<T>("output.output.weight", params.embed.shape());
    if (!std::equal(out.data(), out.data() + out.size(), params.embed.data()))
      fail(path.string(), ": share_emb is set but output.output.weight differs from embed.weight");
    tied.insert("output.output.weight");
  }
  reader.check_nothing_left(tied);
  ckpt.bos_id = read_bos_id(file);
  return ckpt;
}

// Loads Model<Policy, T> from a checkpoint (read_checkpoint); an error names the file.
template <class Policy, class T>
Model<Policy, T> load_model(const std::filesystem::path& path) {
  Checkpoint<T> ckpt = read_checkpoint<Policy, T>(path);
  try {
    return Model<Policy, T>(ckpt.config, std::move(ckpt.params), ckpt.bos_id);
  } catch (const Error& e) {
    fail(path.string(), ": ", e.what());
  }
}

// Writes a checkpoint that load_model reads back: every parameter under its reference name, in
// T's dtype, with the configuration and bos_id in the metadata.
template <class Policy, class T>
void save_checkpoint(const std::filesystem::path& path, const Config& config, const ModelParams<T>& params,
                     std::int64_t bos_id = 1) {
  io::SafetensorsWriter out;
  visit_model_parameters<Policy>(params, config, [&](const std::string& name, const auto& t, const Shape& shape) {
    check_shape("save_checkpoint", name, t.shape(), shape);
    out.add(name, t);
  });
  out.set_metadata("config", config.to_json().dump());
  out.set_metadata("args", nlohmann::json{{"bos_id", bos_id}}.dump());
  out.write(path);
}

}  // namespace gecko::model
