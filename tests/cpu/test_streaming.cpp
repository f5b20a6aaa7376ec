// Streaming is exact: random schedules of prefills, tails and single tokens, with random document
// starts and batch > 1, give the logits and the final state of one call; the state's size does
// not grow with the stream.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "gecko/model/checkpoint.hpp"
#include "gecko/policy/presets.hpp"
#include "support/golden.hpp"
#include "test_model_helpers.hpp"

using namespace gecko;

TEST_CASE("streaming: random schedules and document starts equal one call (double, batch 3)") {
  const auto f = testing::open_golden("model_variants");  // multi_segments, every non-default flag
  const auto model = model::load_model<policy::Gecko, double>(f->path());
  std::mt19937 rng(1234);
  const std::int64_t C = model.config().chunk_size;
  for (int round = 0; round < 3; ++round) {
    const auto tokens = testing::random_tokens(rng, 3, 7 * C, C, model.config().vocab_size, model.bos_id());
    testing::check_random_schedules(model, tokens, /*multi=*/true, rng, 4);
  }
}

TEST_CASE("streaming: random schedules equal one call without documents (double)") {
  const auto f = testing::open_golden("model_single_doc");
  const auto model = model::load_model<policy::Gecko, double>(f->path());
  std::mt19937 rng(99);
  const std::int64_t C = model.config().chunk_size;
  // A length that is not a multiple of C: the last piece is a tail or single tokens.
  const auto tokens = testing::random_tokens(rng, 2, 5 * C + 7, C, model.config().vocab_size, model.bos_id());
  testing::check_random_schedules(model, tokens, /*multi=*/false, rng, 4);
}

TEST_CASE("streaming: feed splits any number of tokens from any position into allowed pieces") {
  const auto f = testing::open_golden("model_variants");
  const auto model = model::load_model<policy::Gecko, double>(f->path());
  std::mt19937 rng(7);
  const std::int64_t C = model.config().chunk_size;
  const auto tokens = testing::random_tokens(rng, 2, 6 * C, C, model.config().vocab_size, model.bos_id());
  model::ModelState<double> one_state, s;
  const Tensor<double> one = model.feed(tokens, one_state, true);
  // 3 tokens, then 2.5 chunks from position 3, then the rest: none of them an allowed piece.
  const std::int64_t cuts[] = {0, 3, 3 + 5 * C / 2, 6 * C};
  for (int i = 0; i < 3; ++i) {
    const auto piece = model.feed(testing::time_slice(tokens, cuts[i], cuts[i + 1]), s, true);
    for (std::int64_t b = 0; b < 2; ++b)
      for (std::int64_t t = 0; t < piece.dim(1); ++t)
        for (std::int64_t v = 0; v < piece.dim(2); ++v)
          CHECK(std::abs(piece(b, t, v) - one(b, cuts[i] + t, v)) <= 1e-9 * 10);
  }
  testing::check_states_equal(s, one_state, 1e-9);
}

TEST_CASE("streaming: the state's memory footprint is constant in the stream length") {
  const auto f = testing::open_golden("model_variants");
  const auto model = model::load_model<policy::Gecko, float>(f->path());
  const auto& c = model.config();
  const std::int64_t C = c.chunk_size, B = 2;
  std::mt19937 rng(5);
  const auto tokens = testing::random_tokens(rng, B, 12 * C, C, c.vocab_size, model.bos_id());
  model::ModelState<float> s;
  std::vector<std::int64_t> bytes;  // after each token
  for (std::int64_t t = 0; t < tokens.dim(1); ++t) {
    model.forward(testing::time_slice(tokens, t, t + 1), s, true);
    bytes.push_back(s.bytes());
    for (const auto& layer : s.layers) {
      REQUIRE(layer.window.length() <= 2 * C - 1);
      REQUIRE(layer.memory.key.dim(2) <= 2 * C - 1);
    }
    REQUIRE(s.seg_ids.dim(1) <= 2 * C - 1);
  }
  // Past the first chunk the footprint depends only on the position within the chunk.
  for (std::size_t p = 2 * C; p < bytes.size(); ++p) REQUIRE(bytes[p] == bytes[p - C]);
  // Its largest value: windows of 2C − 1 tokens (SCA keys and values, AWM keys, segment ids),
  // the memory, its normaliser, CEMA, the norms and the counters.
  const std::int64_t W = 2 * C - 1, H = c.num_heads, dk = c.head_dim(), dv = c.value_head_dim();
  const std::int64_t G = c.timenorm_num_groups, f32 = 4, i64 = 8;
  const std::int64_t per_layer = f32 * B * W * (c.z_dim + c.value_dim + c.z_dim) + f32 * B * H * dk * dv +
                                 f32 * B * H * dk + f32 * B * c.model_dim * c.cema_ndim * 2 +
                                 (i64 * B + 2 * f32 * B * G) + i64;
  const std::int64_t total = c.num_layers * per_layer + (i64 * B + 2 * f32 * B * G) + i64 * B * W + i64 * B;
  CHECK(*std::max_element(bytes.begin(), bytes.end()) == total);
}
