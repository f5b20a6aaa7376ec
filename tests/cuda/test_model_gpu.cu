// The GPU model (cuda/model.cuh) in float32, against the golden files and against the CPU model:
//   * golden model_single_doc and model_variants: the logits of one call and of every streaming
//     schedule, and the final state (ModelState::to_host), at the README tolerance 1e-4;
//   * golden mega_* and block_*: one layer's output and its state after the call, from the
//     golden incoming state;
//   * random piece schedules against one call, and the GPU against the CPU model on seeded
//     random models: documents with bos resets, batch > 1, a head shape beyond the tiles'
//     first multiple, the seeded tiny preset, and every other shipped variant: Gecko without the
//     working memory, Gecko with block-diagonal attention, Megalodon;
//   * bad calls refused with the CPU model's messages; device memory constant along a stream.
// Every scratch activation and every new window and memory buffer is poisoned with NaN
// (Model::set_poison), and so are the logits before each call: an element that no kernel writes
// turns into a NaN, which fails every comparison (the README metric reports +inf for it).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "cpu/test_model_helpers.hpp"
#include "cuda_test_support.hpp"
#include "gecko/cuda.cuh"
#include "gecko/cuda/model.cuh"
#include "gecko/model/checkpoint.hpp"
#include "gecko/model/init.hpp"
#include "gecko/model/presets.hpp"
#include "gecko/policy/presets.hpp"

using namespace gecko;
namespace gpu = gecko::cuda;

namespace {

constexpr double kTolerance = 1e-4;  // the README's float32 tolerance

template <class Policy>
using GpuModel = gpu::Model<Policy, float>;

// Feeds tokens through the GPU model in the given pieces, each into NaN-poisoned logits; returns
// the pieces' logits joined along time (B, L, V) on the host, in float.
template <class Policy, class T>
Tensor<float> gpu_stream(gpu::Model<Policy, T>& model, const Tensor<std::int64_t>& tokens,
                         const std::vector<std::int64_t>& schedule, gpu::ModelState<T>& state, bool multi) {
  const std::int64_t B = tokens.dim(0), L = tokens.dim(1), V = model.config().output_dim();
  Tensor<float> joined({B, L, V});
  std::int64_t at = 0;
  for (const std::int64_t n : schedule) {
    gpu::DeviceBuffer<T> logits(testing::poisoned<T>({B, n, V}), model.stream());
    model.forward(testing::time_slice(tokens, at, at + n), state, multi, logits.view());
    const Tensor<T> piece = logits.to_host(model.stream());
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t t = 0; t < n; ++t)
        for (std::int64_t v = 0; v < V; ++v) joined(b, at + t, v) = float(piece(b, t, v));
    at += n;
  }
  REQUIRE(at == L);
  return joined;
}

// ---------------------------------------------------------------- golden model files

void check_model_file(const std::string& name) {
  const auto f = testing::open_golden(name);
  auto model = gpu::load_model<policy::Gecko, float>(f->path());
  model.set_poison(true);
  const Tensor<std::int64_t> tokens = f->get<std::int64_t>("in.tokens");
  const bool multi = f->get<bool>("in.multi_segments")[0];
  const bool has_state = f->contains("out.cache.layers.0.sca.kv_count");

  gpu::ModelState<float> state;
  const Tensor<float> logits = gpu_stream(model, tokens, {tokens.dim(1)}, state, multi);
  const Tensor<float> golden = f->get<float>("out.logits");
  testing::check_close("out.logits", logits, golden, kTolerance);
  double state_rel = 0;
  if (has_state) state_rel = testing::check_state_against(*f, "out.", state.to_host(model.stream()), "out.cache.", kTolerance);
  MESSAGE(name, " (GPU float32) one call: logits rel ", testing::rel_error(logits, golden), ", state rel ", state_rel);

  int schedules = 0;
  for (int k = 0; f->contains("in.stream" + std::to_string(k) + ".schedule"); ++k, ++schedules) {
    const std::string prefix = "stream" + std::to_string(k);
    const auto stored = f->get<std::int64_t>("in." + prefix + ".schedule");
    const std::vector<std::int64_t> schedule(stored.data(), stored.data() + stored.size());
    INFO(prefix, ": ", testing::schedule_text(schedule));
    gpu::ModelState<float> s;
    const Tensor<float> streamed = gpu_stream(model, tokens, schedule, s, multi);
    const Tensor<float> golden_streamed = f->get<float>("out." + prefix + ".logits");
    testing::check_close("out." + prefix + ".logits", streamed, golden_streamed, kTolerance);
    double srel = 0;
    if (has_state) srel = testing::check_state_against(*f, "out.", s.to_host(model.stream()), "out.cache.", kTolerance);
    MESSAGE(name, " (GPU float32) ", prefix, " (", schedule.size(), " pieces): logits rel ",
            testing::rel_error(streamed, golden_streamed), ", final state rel ", srel);
  }
  CHECK(schedules >= 2);
}

TEST_CASE("cuda model: golden model_single_doc, one call and every streaming schedule") {
  check_model_file("model_single_doc");
}

TEST_CASE("cuda model: golden model_variants (every non-default flag, multi_segments)") {
  check_model_file("model_variants");
}

// ---------------------------------------------------------------- golden layer files

// A golden layer call's inputs in device memory.
struct DeviceLayerCall {
  gpu::DeviceBuffer<float> x, rope;
  gpu::DeviceBuffer<bool> bos;
  gpu::DeviceBuffer<std::int64_t> seg, window_seg, mem_seg;

  DeviceLayerCall(const io::SafetensorsFile& f, cudaStream_t stream)
      : x(f.get_as<float>("in.x"), stream), rope(f.get_as<float>("in.freqs_cis"), stream) {
    const testing::GoldenLayerCall host(f);
    bos = testing::upload_or_none(host.bos, stream);
    seg = testing::upload_or_none(host.seg, stream);
    window_seg = testing::upload_or_none(host.window_seg, stream);
    mem_seg = testing::upload_or_none(host.mem_seg, stream);
  }

  gpu::LayerInputs inputs() const {
    using testing::view_or_none;
    return {rope.view(), view_or_none(bos), view_or_none(seg), view_or_none(window_seg), view_or_none(mem_seg)};
  }
};

// One MEGA sub-layer (block = false) or one block of a golden layer file on the GPU.
void check_layer_file(const std::string& name, bool block) {
  const auto f = testing::open_golden(name);
  const model::Config config = model::Config::from_json(*f->meta("config"));
  layers::BlockParams<float> p;
  model::TensorReader<float> reader(*f);
  if (block)
    layers::visit_block_parameters<policy::Gecko>(p, config, reader);
  else
    layers::visit_mega_parameters<policy::Gecko>(p.mega, config, reader);
  reader.check_nothing_left();

  gpu::Runner<float> rt;
  rt.scratch.poison = true;
  const cudaStream_t stream = rt.stream();
  std::optional<gpu::Block<policy::Gecko, float>> block_layer;
  std::optional<gpu::Mega<policy::Gecko, float>> mega_layer;
  if (block)
    block_layer.emplace(config, p, stream);
  else
    mega_layer.emplace(config, p.mega, stream);
  const gpu::Mega<policy::Gecko, float>& mega = block ? block_layer->mega() : *mega_layer;

  const DeviceLayerCall call(*f, stream);
  const Shape shape = call.x.shape();
  const auto host_state = testing::read_layer_state<float>(*f, "in.cache.");
  CHECK(host_state.kv_count == f->get<std::int64_t>("in.rope_start")[0]);
  gpu::LayerState<float> state = mega.state_from_host(host_state, shape[0], stream);
  gpu::DeviceBuffer<float> y(testing::poisoned<float>(shape), stream);
  if (block)
    block_layer->forward(call.x.view(), call.inputs(), state, rt, y.view());
  else
    mega.forward(call.x.view(), call.inputs(), state, rt, y.view());

  testing::check_layer_results(*f, name + " (GPU float32)", y.to_host(stream), state.to_host(stream), kTolerance);
}

TEST_CASE("cuda model: golden mega_fresh") { check_layer_file("mega_fresh", false); }
TEST_CASE("cuda model: golden mega_continue_segments (prefill after a cached chunk, documents)") {
  check_layer_file("mega_continue_segments", false);
}
TEST_CASE("cuda model: golden mega_tail_segments (a tail of C/2 tokens, documents)") {
  check_layer_file("mega_tail_segments", false);
}
TEST_CASE("cuda model: golden block_fresh") { check_layer_file("block_fresh", true); }
TEST_CASE("cuda model: golden block_continue_segments") { check_layer_file("block_continue_segments", true); }

// ---------------------------------------------------------------- against the CPU model

// B random sequences of `chunks` chunks from rng (bos id 1, placed as testing::random_tokens
// does), and the CPU model's logits and state after one pass over them; then, for one GPU call of
// the whole sequence and for each of `schedules` random piece schedules, the GPU's logits and
// final state against them.
template <class Policy>
void check_against_cpu(const model::Config& config, const model::ModelParams<float>& params, std::mt19937& rng,
                       std::int64_t B, std::int64_t chunks, bool multi, int schedules) {
  const std::int64_t C = config.chunk_size, L = chunks * C;
  const Tensor<std::int64_t> tokens = testing::random_tokens(rng, B, L, C, config.vocab_size, 1);
  const model::Model<Policy, float> cpu_model(config, params, 1);
  model::ModelState<float> cpu_state;
  const Tensor<float> cpu_logits = cpu_model.feed(tokens, cpu_state, multi);

  GpuModel<Policy> model(config, params, 1);
  model.set_poison(true);
  gpu::ModelState<float> one_state;
  const Tensor<float> one = model.feed(tokens, one_state, multi).to_host(model.stream());
  const double one_rel = testing::rel_error(one, cpu_logits);
  MESSAGE("one call: GPU vs CPU logits rel ", one_rel);
  CHECK(one_rel <= kTolerance);
  const model::ModelState<float> one_host = one_state.to_host(model.stream());
  testing::check_states_equal(one_host, cpu_state, kTolerance);
  for (int k = 0; k < schedules; ++k) {
    const auto schedule = testing::random_schedule(rng, L, C);
    INFO("schedule ", testing::schedule_text(schedule));
    gpu::ModelState<float> state;
    const Tensor<float> logits = gpu_stream(model, tokens, schedule, state, multi);
    const double rel = testing::rel_error(logits, cpu_logits), self = testing::rel_error(logits, one);
    MESSAGE("schedule of ", schedule.size(), " pieces: GPU vs CPU logits rel ", rel, ", vs one GPU call ", self);
    CHECK(rel <= kTolerance);
    CHECK(self <= kTolerance);
    const model::ModelState<float> host = state.to_host(model.stream());
    testing::check_states_equal(host, cpu_state, kTolerance);
    testing::check_states_equal(host, one_host, kTolerance);
  }
}

// check_against_cpu on random parameters (testing::random_model_params) drawn from rng(seed)
// before the tokens.
template <class Policy>
void check_random_model(const model::Config& config, unsigned seed, std::int64_t B, std::int64_t chunks, bool multi,
                        int schedules) {
  std::mt19937 rng(seed);
  const auto params = testing::random_model_params<Policy, float>(config, rng);
  check_against_cpu<Policy>(config, params, rng, B, chunks, multi, schedules);
}

TEST_CASE("cuda model: random schedules with documents equal the CPU model (model_variants flags, batch 3)") {
  const model::Config config = model::read_config(*testing::open_golden("model_variants"));
  check_random_model<policy::Gecko>(config, 11, 3, 6, true, 4);
}

TEST_CASE("cuda model: random schedules without documents equal the CPU model (model_single_doc config)") {
  const model::Config config = model::read_config(*testing::open_golden("model_single_doc"));
  check_random_model<policy::Gecko>(config, 12, 2, 5, false, 3);
}

TEST_CASE("cuda model: the seeded tiny preset equals the CPU model (documents, batch 2)") {
  const model::Config config = model::preset_config("tiny");
  const auto params = model::init_params<policy::Gecko, float>(config, 7);
  std::mt19937 rng(13);
  check_against_cpu<policy::Gecko>(config, params, rng, 2, 4, true, 2);
}

// Head dims past the kernels' first tiles (dk 64, dv 256), CEMA order 16, several groups.
TEST_CASE("cuda model: a larger head shape equals the CPU model (documents, batch 2)") {
  model::Config config;
  config.num_layers = 2;
  config.model_dim = 256;
  config.z_dim = 128;
  config.value_dim = 512;
  config.num_heads = 2;
  config.ffn_hidden_dim = 384;
  config.cema_ndim = 16;
  config.chunk_size = 64;
  config.vocab_size = 500;
  config.timenorm_num_groups = 16;
  config.layernorm_num_groups = 4;
  check_random_model<policy::Gecko>(config, 14, 2, 3, true, 2);
}

TEST_CASE("cuda model: Gecko without the working memory equals the CPU model") {
  const model::Config config = model::read_config(*testing::open_golden("model_variants"));
  check_random_model<policy::GeckoNoMemory>(config, 15, 2, 4, true, 2);
}

// Chunk-local RoPE positions, and attention over the current chunk's part of a window that also
// keeps the previous chunk for the working memory (documents: its ids are cut the same way).
TEST_CASE("cuda model: Gecko with block-diagonal attention equals the CPU model (documents, batch 2)") {
  const model::Config config = model::read_config(*testing::open_golden("model_variants"));
  check_random_model<policy::GeckoBlockDiagonal>(config, 18, 2, 5, true, 4);
}

// The cumulative input and final norms, the learned CEMA residual (ω, γ/√N), two z rows,
// block-diagonal attention over a window of the current chunk alone, the two-hop residual.
TEST_CASE("cuda model: Megalodon equals the CPU model (batch 3)") {
  model::Config config = model::read_config(*testing::open_golden("model_single_doc"));
  config.two_hop_residual = true;  // the variant requires it
  check_random_model<policy::Megalodon>(config, 19, 3, 5, false, 4);
}

TEST_CASE("cuda model: Megalodon with a partial RoPE and the model_variants flags equals the CPU model") {
  const model::Config config = model::read_config(*testing::open_golden("model_variants"));
  check_random_model<policy::Megalodon>(config, 20, 2, 4, false, 3);
}

TEST_CASE("cuda model: Megalodon refuses documents with the CPU model's message") {
  model::Config config = model::read_config(*testing::open_golden("model_single_doc"));
  config.two_hop_residual = true;
  std::mt19937 rng(21);
  GpuModel<policy::Megalodon> model(config, testing::random_model_params<policy::Megalodon, float>(config, rng));
  gpu::ModelState<float> state;
  Tensor<std::int64_t> tokens({1, 1}, 1);
  CHECK_THROWS_WITH_AS(model.forward(tokens, state, true),
                       "forward: this model variant has no document handling: multi_segments must be false",
                       gecko::Error);
  CHECK(state.fresh());
  model.forward(tokens, state, false);
  CHECK(state.position() == 1);
}

// ---------------------------------------------------------------- 16-bit activations

// The golden model with bfloat16 / float16 activations, weights and cached keys and values. No
// CPU path computes at these precisions, so this is a coarse check that catches a wrong kernel,
// layout or conversion (and, through the NaN poisoning, an element nothing writes), not a
// precision budget: every activation is rounded to 8 (bfloat16) or 11 (float16) significant
// bits, unit roundoff u = 2^-8 or 2^-11, and the logits must stay within 16u of the golden ones.
template <class T>
void check_16bit(const char* type, double unit_roundoff) {
  const auto f = testing::open_golden("model_single_doc");
  auto model = gpu::load_model<policy::Gecko, T>(f->path());
  model.set_poison(true);
  const Tensor<std::int64_t> tokens = f->get<std::int64_t>("in.tokens");
  const Tensor<float> golden = f->get<float>("out.logits");
  const auto stored = f->get<std::int64_t>("in.stream0.schedule");
  for (const auto& schedule : {std::vector<std::int64_t>{tokens.dim(1)},
                               std::vector<std::int64_t>(stored.data(), stored.data() + stored.size())}) {
    INFO("schedule ", testing::schedule_text(schedule));
    gpu::ModelState<T> state;
    const Tensor<float> logits = gpu_stream(model, tokens, schedule, state, false);
    const double rel = testing::rel_error(logits, golden);
    MESSAGE(type, " logits rel vs golden ", rel, " (coarse bound ", 16 * unit_roundoff, ")");
    CHECK(rel <= 16 * unit_roundoff);
    const auto host = state.to_host(model.stream());
    CHECK(host.layers.size() == 2);
    CHECK(host.position() == tokens.dim(1));
  }
}

TEST_CASE("cuda model: bfloat16 activations, a coarse check against the golden logits") {
  check_16bit<bfloat16>("bfloat16", std::ldexp(1.0, -8));
}
TEST_CASE("cuda model: float16 activations, a coarse check against the golden logits") {
  check_16bit<float16>("float16", std::ldexp(1.0, -11));
}

// ---------------------------------------------------------------- streams, memory, errors

TEST_CASE("cuda model: feed splits tokens from any position as the CPU model does, on a stream of its own") {
  const auto f = testing::open_golden("model_variants");
  const auto cpu_model = model::load_model<policy::Gecko, float>(f->path());
  cudaStream_t stream = nullptr;
  REQUIRE(cudaStreamCreate(&stream) == cudaSuccess);
  {
    auto model = gpu::load_model<policy::Gecko, float>(f->path(), stream);
    model.set_poison(true);
    CHECK(model.stream() == stream);
    const Tensor<std::int64_t> tokens = f->get<std::int64_t>("in.tokens");
    model::ModelState<float> cpu_state;
    gpu::ModelState<float> state;
    // 5 tokens, then 40 from position 5 (single tokens to 16, a chunk, a tail of 13), then 19.
    for (const auto& [begin, end] : std::vector<std::pair<std::int64_t, std::int64_t>>{{0, 5}, {5, 45}, {45, 64}}) {
      INFO("tokens [", begin, ", ", end, ")");
      const Tensor<std::int64_t> piece = testing::time_slice(tokens, begin, end);
      const Tensor<float> want = cpu_model.feed(piece, cpu_state, true);
      const Tensor<float> got = model.feed(piece, state, true).to_host(stream);
      const double rel = testing::rel_error(got, want);
      MESSAGE("feed [", begin, ", ", end, "): GPU vs CPU logits rel ", rel);
      CHECK(rel <= kTolerance);
    }
    testing::check_states_equal(state.to_host(stream), cpu_state, kTolerance);
    CHECK(state.position() == 64);
  }
  CHECK(cudaStreamDestroy(stream) == cudaSuccess);
}

TEST_CASE("cuda model: a state allocated ahead by new_state runs as a fresh one") {
  const auto f = testing::open_golden("model_variants");
  auto model = gpu::load_model<policy::Gecko, float>(f->path());
  model.set_poison(true);
  const Tensor<std::int64_t> tokens = f->get<std::int64_t>("in.tokens");
  gpu::ModelState<float> state = model.new_state(tokens.dim(0), true);
  CHECK_FALSE(state.fresh());
  CHECK(state.position() == 0);
  const Tensor<float> got = model.feed(tokens, state, true).to_host(model.stream());
  const double rel = testing::rel_error(got, f->get<float>("out.logits"));
  MESSAGE("logits from a new_state state vs golden: rel ", rel);
  CHECK(rel <= kTolerance);
  CHECK(state.position() == tokens.dim(1));
  CHECK_THROWS_WITH_AS(model.new_state(0), doctest::Contains("at least one sequence"), gecko::Error);
}

TEST_CASE("cuda model: device memory is constant along a stream") {
  const model::Config config = model::preset_config("tiny");
  GpuModel<policy::Gecko> model(config, model::init_params<policy::Gecko, float>(config, 3));
  const std::int64_t C = config.chunk_size;
  gpu::ModelState<float> state;
  std::mt19937 rng(16);
  std::uniform_int_distribution<std::int64_t> token(0, config.vocab_size - 1);
  auto piece = [&](std::int64_t n) {
    Tensor<std::int64_t> t({1, n});
    for (auto& v : t.span()) v = token(rng);
    return model.forward(t, state, true);
  };
  for (int round = 0; round < 2; ++round) {  // a prefill of 2C, then C single-token steps
    piece(2 * C);
    for (std::int64_t i = 0; i < C; ++i) piece(1);
  }
  const std::int64_t state_bytes = state.bytes(), scratch_bytes = model.scratch_bytes();
  CHECK(state_bytes > 0);
  for (int round = 0; round < 8; ++round) {
    piece(2 * C);
    for (std::int64_t i = 0; i < C; ++i) piece(1);
  }
  CHECK(state.position() == 10 * 3 * C);
  CHECK(state.bytes() == state_bytes);
  CHECK(model.scratch_bytes() == scratch_bytes);
  const auto host = state.to_host(model.stream());
  CHECK(host.layers.front().window.length() == C);  // the last complete chunk
}

TEST_CASE("cuda model: bad calls are refused with the CPU model's messages") {
  const auto f = testing::open_golden("model_single_doc");
  auto model = gpu::load_model<policy::Gecko, float>(f->path());
  const Tensor<std::int64_t> tokens = f->get<std::int64_t>("in.tokens");  // (2, 64), C = 16
  gpu::ModelState<float> state;
  CHECK_THROWS_WITH_AS(model.forward(testing::time_slice(tokens, 0, 20), state),
                       doctest::Contains("forward: a piece of L >= C tokens must start and end on chunk boundaries"),
                       gecko::Error);
  CHECK(state.fresh());  // nothing ran
  model.forward(testing::time_slice(tokens, 0, 3), state);
  CHECK_THROWS_WITH_AS(model.forward(testing::time_slice(tokens, 3, 6), state),
                       doctest::Contains("forward: a piece of 1 < L < C tokens must start on a chunk boundary"),
                       gecko::Error);
  Tensor<std::int64_t> one_row({1, 1});
  CHECK_THROWS_WITH_AS(model.forward(one_row, state),
                       "forward: the state was started with batch size 2, tokens has 1 rows", gecko::Error);
  CHECK_THROWS_WITH_AS(model.forward(testing::time_slice(tokens, 3, 4), state, true),
                       doctest::Contains("forward: multi_segments must be the same on every call of one state"),
                       gecko::Error);
  Tensor<std::int64_t> outside({2, 1}, 97);
  CHECK_THROWS_WITH_AS(model.forward(outside, state),
                       "forward: token 97 at (0, 0) is outside the vocabulary [0, 97)", gecko::Error);
  gpu::DeviceBuffer<float> wrong(Shape{2, 2, 97});
  CHECK_THROWS_WITH_AS(model.forward(testing::time_slice(tokens, 3, 4), state, false, wrong.view()),
                       "forward: logits has shape [2, 2, 97], expected [2, 1, 97]", gecko::Error);
  CHECK(state.position() == 3);  // the refused calls left the state alone
  // A state made by a model of other sizes (the tiny preset: 2 layers too, other dims).
  const model::Config tiny = model::preset_config("tiny");
  GpuModel<policy::Gecko> other(tiny, model::init_params<policy::Gecko, float>(tiny, 5));
  gpu::ModelState<float> foreign = other.new_state(2);
  CHECK_THROWS_WITH_AS(model.forward(testing::time_slice(tokens, 0, 1), foreign),
                       doctest::Contains("cuda::Mega: the state was made for a layer of sizes"), gecko::Error);
  CHECK(foreign.position() == 0);
}

TEST_CASE("cuda model: parameters that do not fit the configuration are named") {
  const auto f = testing::open_golden("model_single_doc");
  const model::Config config = model::read_config(*f);
  std::mt19937 rng(17);
  auto params = testing::random_model_params<policy::Gecko, float>(config, rng);
  params.layers[1].mega.wz_weight = Tensor<float>({config.z_dim, config.model_dim + 1});
  CHECK_THROWS_WITH_AS(GpuModel<policy::Gecko>(config, params),
                       doctest::Contains("layers.1.mega.wz.weight has shape [32, 65], expected [32, 64]"),
                       gecko::Error);
}

}  // namespace
