// Streaming is exact: random schedules of prefills, tails and single tokens, with random document
// starts and batch > 1, give the logits and the final state of one call; the state's size does
// not grow with the stream. The bookkeeping behind it (model/streaming.hpp) on small cases.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "gecko/model/checkpoint.hpp"
#include "gecko/model/streaming.hpp"
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

TEST_CASE("streaming: feed's cuts, document ids, window lengths and segment bookkeeping") {
  using Cuts = std::vector<std::int64_t>;
  // From position 5 with C = 16: single tokens to 16, one whole chunk, a tail of 13.
  CHECK(model::feed_cuts(5, 40, 16) == Cuts{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 27, 40});
  CHECK(model::feed_cuts(0, 32, 16) == Cuts{0, 32});
  CHECK(model::feed_cuts(3, 2, 16) == Cuts{0, 1, 2});
  CHECK(model::feed_cuts(16, 7, 16) == Cuts{0, 7});

  CHECK(model::window_length_after(0, 48, 48, 16) == 16);   // a prefill keeps its last chunk
  CHECK(model::window_length_after(16, 5, 21, 16) == 21);   // a tail appends
  CHECK(model::window_length_after(16, 1, 17, 16) == 17);   // a step appends
  CHECK(model::window_length_after(31, 1, 32, 16) == 16);   // a boundary cuts to the last chunk
  CHECK(cpu::attention_window_length(31, 1, 16, cpu::AttentionPattern::SlidingChunks) == 32);  // ... of 2C joined
  CHECK(cpu::attention_window_length(13, 5, 16, cpu::AttentionPattern::BlockDiagonal) == 2);   // the partial chunk

  Tensor<std::int64_t> tokens({2, 4});
  const std::int64_t rows[2][4] = {{1, 5, 1, 1}, {7, 7, 1, 7}};
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t t = 0; t < 4; ++t) tokens(b, t) = rows[b][t];
  Tensor<bool> bos;
  Tensor<std::int64_t> seg;
  model::document_ids(tokens, 1, {}, bos, seg);
  const std::int64_t fresh[2][4] = {{1, 1, 2, 3}, {0, 0, 1, 1}};
  Tensor<std::int64_t> window({2, 3});
  window(0, 2) = 4;
  window(1, 2) = 2;
  Tensor<bool> bos2;
  Tensor<std::int64_t> seg2;
  model::document_ids(tokens, 1, window, bos2, seg2);  // continues the window's last ids
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t t = 0; t < 4; ++t) {
      CHECK(bos(b, t) == (rows[b][t] == 1));
      CHECK(seg(b, t) == fresh[b][t]);
      CHECK(seg2(b, t) == fresh[b][t] + window(b, 2));
    }

  // C = 4: a prefill of two chunks, then a step.
  Tensor<std::int64_t> seg_ids, mem_seg, prefill({1, 8}), step({1, 1}, 3);
  const std::int64_t ids[8] = {0, 0, 1, 1, 1, 2, 2, 2};
  for (std::int64_t t = 0; t < 8; ++t) prefill(0, t) = ids[t];
  model::advance_segments(seg_ids, mem_seg, prefill, 8, 4);
  REQUIRE(seg_ids.shape() == Shape{1, 4});
  CHECK(mem_seg[0] == 1);  // the last token of the chunk the memory absorbed: t = 3
  for (std::int64_t j = 0; j < 4; ++j) CHECK(seg_ids(0, j) == ids[4 + j]);
  model::advance_segments(seg_ids, mem_seg, step, 9, 4);
  REQUIRE(seg_ids.shape() == Shape{1, 5});
  CHECK(seg_ids(0, 4) == 3);
  CHECK(mem_seg[0] == 1);
}
