// Seeded initialisation (model/init.hpp, spec §3.3) and the named configurations
// (model/presets.hpp): reproducible, shaped like a checkpoint, with the spec's statistics.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "gecko/gecko.hpp"
#include "gecko/model/init.hpp"
#include "gecko/model/presets.hpp"

using namespace gecko;

namespace {

// Large enough matrices for the statistics (fc1: 1024 x 256 draws), small enough to be quick.
model::Config test_config() {
  model::Config c;
  c.num_layers = 2;
  c.model_dim = 256;
  c.z_dim = 64;
  c.value_dim = 256;
  c.num_heads = 4;
  c.ffn_hidden_dim = 1024;
  c.cema_ndim = 16;
  c.chunk_size = 16;
  c.vocab_size = 512;
  c.timenorm_num_groups = 8;
  return c;
}

template <class T>
std::map<std::string, std::vector<double>> by_name(const model::Config& c, model::ModelParams<T>& p) {
  std::map<std::string, std::vector<double>> out;
  model::visit_model_parameters<policy::Gecko>(p, c, [&](const std::string& name, const auto& t, const Shape&) {
    out[name] = std::vector<double>(t.data(), t.data() + t.size());
  });
  return out;
}

struct Moments {
  double mean = 0, std = 0, max_abs = 0;
};

Moments moments(const std::vector<double>& v) {
  Moments m;
  for (const double x : v) m.mean += x, m.max_abs = std::max(m.max_abs, std::abs(x));
  m.mean /= double(v.size());
  for (const double x : v) m.std += (x - m.mean) * (x - m.mean);
  m.std = std::sqrt(m.std / double(v.size()));
  return m;
}

// |a − b| / |b|: the tolerances below are relative (doctest::Approx adds an absolute 1·epsilon).
double rel_diff(double a, double b) { return std::abs(a - b) / std::abs(b); }

bool all_zero(const std::vector<double>& v) {
  return std::all_of(v.begin(), v.end(), [](double x) { return x == 0; });
}

}  // namespace

TEST_CASE("init: the same seed gives the same parameters, another seed others") {
  const auto c = test_config();
  auto a = model::init_params<policy::Gecko, float>(c, 7);
  auto b = model::init_params<policy::Gecko, float>(c, 7);
  auto d = model::init_params<policy::Gecko, float>(c, 8);
  const auto pa = by_name(c, a), pb = by_name(c, b), pd = by_name(c, d);
  CHECK(pa == pb);
  CHECK(pa.at("layers.0.mega.wv.weight") != pd.at("layers.0.mega.wv.weight"));
  CHECK(pa.at("embed.weight") != pd.at("embed.weight"));
  // Each tensor has its own generator: layers differ from each other.
  CHECK(pa.at("layers.0.nffn.fc1.weight") != pa.at("layers.1.nffn.fc1.weight"));

  SUBCASE("float parameters are the double ones rounded") {
    auto dbl = model::init_params<policy::Gecko, double>(c, 7);
    const auto pdbl = by_name(c, dbl);
    for (const auto& [name, values] : pa) {
      INFO(name);
      const auto& ref = pdbl.at(name);
      REQUIRE(ref.size() == values.size());
      bool same = true;
      for (std::size_t i = 0; i < ref.size(); ++i) same = same && double(float(ref[i])) == values[i];
      CHECK(same);
    }
  }
}

TEST_CASE("init: a saved initialised model loads as a checkpoint, for every variant") {
  const auto dir = std::filesystem::temp_directory_path() / "gecko_test_model_init";
  std::filesystem::create_directories(dir);
  auto round_trip = [&]<class P>(const model::Config& c, const char* file) {
    INFO(file);
    const auto params = model::init_params<P, double>(c, 3);
    const auto path = dir / file;
    model::save_checkpoint<P>(path, c, params, /*bos_id=*/1);
    const auto loaded = model::load_model<P, double>(path);
    const auto fresh = model::init_model<P, double>(c, 3);
    // The same logits from the loaded and the freshly built model.
    Tensor<std::int64_t> tokens({1, 2 * c.chunk_size + 3});
    for (std::int64_t t = 0; t < tokens.size(); ++t) tokens[t] = (5 * t + 2) % c.vocab_size;
    const auto x = loaded.forward(tokens), y = fresh.forward(tokens);
    REQUIRE(x.shape() == y.shape());
    bool finite = true;
    for (std::int64_t i = 0; i < x.size(); ++i) finite = finite && std::isfinite(x[i]);
    CHECK(finite);
    CHECK(std::equal(x.data(), x.data() + x.size(), y.data()));
    std::filesystem::remove(path);
  };
  auto c = test_config();
  round_trip.operator()<policy::Gecko>(c, "gecko.safetensors");
  round_trip.operator()<policy::GeckoBlockDiagonal>(c, "block_diagonal.safetensors");
  c.rescale_nffn = true;
  c.share_emb = true;
  c.swiglu = false;
  c.norm_affine = false;
  round_trip.operator()<policy::GeckoNoMemory>(c, "no_memory_flags.safetensors");
  auto m = test_config();
  m.two_hop_residual = true;
  round_trip.operator()<policy::Megalodon>(m, "megalodon.safetensors");
}

TEST_CASE("init: spec 3.3 statistics") {
  const auto c = test_config();
  auto params = model::init_params<policy::Gecko, double>(c, 11);
  const auto p = by_name(c, params);

  SUBCASE("linears: he (kaiming_normal a = sqrt 5), std 1/sqrt(3 fan_in); biases zero") {
    for (const char* name : {"layers.0.nffn.fc1.weight", "layers.1.nffn.fc2.weight", "layers.0.nffn.fc3.weight",
                             "layers.0.mega.wv.weight", "layers.1.mega.wr.weight", "layers.0.mega.wh1.weight",
                             "layers.0.mega.wh2.weight", "layers.0.mega.wz.weight"}) {
      INFO(name);
      const std::string n = name;
      const std::int64_t fan_in = n.find("fc2") != std::string::npos ? c.ffn_hidden_dim
                                  : n.find("wh2") != std::string::npos ? c.value_dim
                                                                       : c.model_dim;
      const Moments m = moments(p.at(name));
      const double expected = 1 / std::sqrt(3.0 * double(fan_in));
      CHECK(rel_diff(m.std, expected) <= 0.10);
      CHECK(std::abs(m.mean) < 0.05 * expected);
    }
    // The large matrices pin the std much closer than 10%.
    CHECK(rel_diff(moments(p.at("layers.0.nffn.fc1.weight")).std, 1 / std::sqrt(3.0 * 256)) <= 0.01);
    for (const char* name : {"layers.0.mega.wv.bias", "layers.0.mega.wz.bias", "layers.1.mega.wr.bias",
                             "layers.1.mega.wh1.bias"})
      CHECK_MESSAGE(all_zero(p.at(name)), name);
  }

  SUBCASE("embedding and output: N(0, 1/D) truncated at 3 sigma") {
    const double sigma = 1 / std::sqrt(double(c.model_dim));
    for (const char* name : {"embed.weight", "output.output.weight"}) {
      INFO(name);
      const Moments m = moments(p.at(name));
      CHECK(m.max_abs <= 3 * sigma);
      CHECK(m.max_abs > 2.5 * sigma);  // the tails are there, up to the cut
      // The std of a normal truncated at ±3σ is 0.9866σ.
      CHECK(rel_diff(m.std, 0.9866 * sigma) <= 0.02);
    }
    CHECK(p.at("embed.weight") != p.at("output.output.weight"));
  }

  SUBCASE("norms, priors, mega.gamma and mega.beta are zero") {
    for (const char* name :
         {"layers.0.mega.timenorm.weight", "layers.0.mega.timenorm.bias", "layers.0.mega.timenorm.prior_mean",
          "layers.0.mega.timenorm.prior_var", "layers.1.mega.rmsnorm.weight", "layers.1.nffn.norm.weight",
          "layers.1.nffn.norm.bias", "layers.0.mega.gamma", "layers.1.mega.beta", "output.final_norm.weight",
          "output.final_norm.bias", "output.final_norm.prior_var"})
      CHECK_MESSAGE(all_zero(p.at(name)), name);
    CHECK(params.layers[0].mega.timenorm.prior_count[0] == 0);
  }

  SUBCASE("CEMA: alpha, delta N(0, 0.2^2); gamma real N(0, 1/N), imaginary 0; theta a permutation") {
    CHECK(rel_diff(moments(p.at("layers.0.mega.cema.alpha")).std, 0.2) <= 0.10);
    CHECK(rel_diff(moments(p.at("layers.1.mega.cema.delta")).std, 0.2) <= 0.10);
    const auto& gamma = p.at("layers.0.mega.cema.gamma");  // (D, N, 2)
    std::vector<double> re, im;
    for (std::size_t i = 0; i < gamma.size(); i += 2) re.push_back(gamma[i]), im.push_back(gamma[i + 1]);
    CHECK(all_zero(im));
    CHECK(rel_diff(moments(re).std, 1 / std::sqrt(double(c.cema_ndim))) <= 0.10);

    // σ(theta) takes the values D^(−i/D), i = 1..D, each once, in a shuffled order.
    const auto& theta = p.at("layers.0.mega.cema.theta");
    const double D = double(c.model_dim);
    std::vector<double> f;
    for (const double t : theta) f.push_back(1 / (1 + std::exp(-t)));
    std::vector<double> sorted = f;
    std::sort(sorted.begin(), sorted.end(), std::greater<>());
    for (std::size_t i = 0; i < sorted.size(); ++i)
      CHECK(rel_diff(sorted[i], std::pow(D, -double(i + 1) / D)) <= 1e-12);
    CHECK(f != sorted);
    CHECK(theta != p.at("layers.1.mega.cema.theta"));
  }

  SUBCASE("rope.freqs are the inverse frequencies of rope_base") {
    const auto expected = cpu::rope_frequencies<double>(int(c.head_dim()), c.rope_base);
    CHECK(p.at("rope.freqs") == std::vector<double>(expected.data(), expected.data() + expected.size()));
  }
}

TEST_CASE("init: variant-specific tensors") {
  SUBCASE("nffn.alpha is 0.1 * 0.5^layer") {
    auto c = test_config();
    c.rescale_nffn = true;
    const auto p = model::init_params<policy::Gecko, double>(c, 1);
    for (std::size_t i = 0; i < p.layers.size(); ++i)
      for (const double a : p.layers[i].nffn.alpha.span()) CHECK(rel_diff(a, 0.1 * std::pow(0.5, double(i))) <= 1e-15);
  }
  SUBCASE("Megalodon: prior variance 1, gamma N(0, 1), omega N(0, 0.25^2) within [-1, 1]") {
    auto c = test_config();
    c.two_hop_residual = true;
    const auto p = model::init_params<policy::Megalodon, double>(c, 1);
    for (const double v : p.layers[0].mega.timenorm.prior_var.span()) CHECK(v == 1);
    for (const double v : p.final_norm.prior_var.span()) CHECK(v == 1);
    std::vector<double> re;
    for (std::int64_t i = 0; i < p.layers[0].mega.cema.gamma.size(); i += 2) re.push_back(p.layers[0].mega.cema.gamma[i]);
    CHECK(rel_diff(moments(re).std, 1.0) <= 0.10);
    const auto& omega = p.layers[1].mega.cema.omega;
    const Moments m = moments(std::vector<double>(omega.data(), omega.data() + omega.size()));
    CHECK(m.max_abs <= 1.0);
    CHECK(rel_diff(m.std, 0.25) <= 0.15);
  }
}

TEST_CASE("init: errors") {
  auto c = test_config();
  c.vocab_size = -1;
  CHECK_THROWS_WITH_AS((model::init_params<policy::Gecko, float>(c, 0)),
                       doctest::Contains("vocab_size = -1 is invalid"), Error);
  c = test_config();
  c.model_dim = 1;
  c.timenorm_num_groups = 1;
  c.z_dim = c.value_dim = 8;
  c.num_heads = 1;
  CHECK_THROWS_WITH_AS((model::init_params<policy::Gecko, float>(c, 0)), doctest::Contains("model_dim = 1 is too small"),
                       Error);
}

TEST_CASE("presets: valid configurations; 7b is the spec's ModelConf with V = 32000") {
  for (const auto& preset : model::kPresets) {
    INFO(preset.name);
    CHECK_NOTHROW(model::preset_config(preset.name).validate());
  }
  const auto tiny = model::preset_config("tiny");
  CHECK(tiny.vocab_size == 256);
  CHECK(tiny.chunk_size == 32);

  const auto big = model::preset_config("7b");
  const model::Config defaults;
  CHECK(big.num_layers == 32);
  CHECK(big.model_dim == 4096);
  CHECK(big.z_dim == 1024);
  CHECK(big.value_dim == 8192);
  CHECK(big.ffn_hidden_dim == 8192);
  CHECK(big.chunk_size == 2048);
  CHECK(big.vocab_size == 32000);
  CHECK(big.to_json().dump() == [&] {
    model::Config d = defaults;
    d.vocab_size = 32000;
    return d.to_json().dump();
  }());
  // Spec §2: ≈ 7.4 B parameters at V = 32000, ≈ 222.6 M per block.
  const std::int64_t total = model::parameter_count<policy::Gecko>(big);
  CHECK(rel_diff(double(total), 7.4e9) <= 0.01);
  model::Config one = big;
  one.num_layers = 1;
  const double per_block = double(total - model::parameter_count<policy::Gecko>(one)) / 31;
  CHECK(rel_diff(per_block, 222.6e6) <= 0.001);

  CHECK_THROWS_WITH_AS(model::preset_config("huge"), "unknown preset 'huge' (known presets: tiny, small, 7b)", Error);
}
