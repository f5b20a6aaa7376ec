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

namespace {

Tensor<std::int64_t> time_slice(const Tensor<std::int64_t>& x, std::int64_t begin, std::int64_t end) {
  Tensor<std::int64_t> out({x.dim(0), end - begin});
  for (std::int64_t b = 0; b < x.dim(0); ++b)
    for (std::int64_t t = begin; t < end; ++t) out(b, t - begin) = x(b, t);
  return out;
}

// A random schedule of allowed pieces covering L tokens: at a chunk boundary a prefill of whole
// chunks, a tail of 2 … C−1 tokens or a single token; elsewhere single tokens.
std::vector<std::int64_t> random_schedule(std::mt19937& rng, std::int64_t L, std::int64_t C) {
  std::vector<std::int64_t> pieces;
  for (std::int64_t at = 0; at < L;) {
    std::int64_t n = 1;
    if (at % C == 0) {
      const int kind = std::uniform_int_distribution<int>(0, 2)(rng);
      const std::int64_t chunks_left = (L - at) / C;
      if (kind == 0 && chunks_left > 0)
        n = C * std::uniform_int_distribution<std::int64_t>(1, std::min<std::int64_t>(chunks_left, 3))(rng);
      else if (kind == 1 && std::min(C - 1, L - at) >= 2)
        n = std::uniform_int_distribution<std::int64_t>(2, std::min(C - 1, L - at))(rng);
    }
    pieces.push_back(n);
    at += n;
  }
  return pieces;
}

// Random tokens with bos tokens at t = 0, on the first and last token of a chunk, back to back and
// at random places (never bos elsewhere).
Tensor<std::int64_t> random_tokens(std::mt19937& rng, std::int64_t B, std::int64_t L, std::int64_t C,
                                   std::int64_t vocab, std::int64_t bos_id) {
  Tensor<std::int64_t> tokens({B, L});
  std::uniform_int_distribution<std::int64_t> tok(0, vocab - 1);
  for (std::int64_t i = 0; i < tokens.size(); ++i) {
    tokens[i] = tok(rng);
    if (tokens[i] == bos_id) tokens[i] = (bos_id + 1) % vocab;
  }
  std::uniform_int_distribution<std::int64_t> pos(0, L - 1);
  for (std::int64_t b = 0; b < B; ++b) {
    if (b % 2 == 0) tokens(b, 0) = bos_id;
    for (int k = 0; k < 4; ++k) tokens(b, pos(rng)) = bos_id;
    const std::int64_t c = std::uniform_int_distribution<std::int64_t>(1, L / C - 1)(rng);
    tokens(b, c * C) = bos_id;          // first token of a chunk
    tokens(b, c * C - 1) = bos_id;      // last token of the previous chunk (back to back)
    tokens(b, (c + 1) * C - 1) = bos_id;  // last token of a chunk
  }
  return tokens;
}

template <class T>
void check_states_equal(const model::ModelState<T>& a, const model::ModelState<T>& b, double tol) {
  std::vector<std::pair<std::string, std::function<void()>>> checks;
  int na = 0, nb = 0;
  visit_state(b, [&](const std::string&, const auto&) { ++nb; });
  visit_state(a, [&](const std::string& name, const auto& ta) {
    ++na;
    bool found = false;
    visit_state(b, [&](const std::string& nb_name, const auto& tb) {
      if (nb_name != name) return;
      found = true;
      using A = std::remove_cvref_t<decltype(ta[0])>;
      using Bt = std::remove_cvref_t<decltype(tb[0])>;
      if constexpr (std::is_same_v<A, Bt>) {
        INFO("state ", name);
        REQUIRE(ta.shape() == tb.shape());
        if constexpr (std::is_floating_point_v<A>)
          CHECK(testing::rel_error(ta, tb) <= tol);
        else
          testing::check_equal(name, ta, tb);
      } else {
        FAIL("state ", name, " has different element types");
      }
    });
    INFO("state ", name);
    CHECK(found);
  });
  CHECK(na == nb);
}

template <class Policy>
void check_random_schedules(const model::Model<Policy, double>& model, const Tensor<std::int64_t>& tokens,
                            bool multi, std::mt19937& rng, int schedules) {
  const std::int64_t C = model.config().chunk_size, L = tokens.dim(1);
  model::ModelState<double> one_state;
  const Tensor<double> one = model.feed(tokens, one_state, multi);
  for (int k = 0; k < schedules; ++k) {
    const auto schedule = random_schedule(rng, L, C);
    std::string text;
    for (auto n : schedule) text += std::to_string(n) + " ";
    INFO("schedule ", text);
    model::ModelState<double> s;
    Tensor<double> streamed(one.shape());
    std::int64_t at = 0;
    for (const std::int64_t n : schedule) {
      const Tensor<double> piece = model.forward(time_slice(tokens, at, at + n), s, multi);
      for (std::int64_t b = 0; b < piece.dim(0); ++b)
        for (std::int64_t t = 0; t < n; ++t)
          for (std::int64_t v = 0; v < piece.dim(2); ++v) streamed(b, at + t, v) = piece(b, t, v);
      at += n;
    }
    CHECK(testing::rel_error(streamed, one) <= 1e-9);
    if (k == 0) MESSAGE("schedule ", text, ": logits rel ", testing::rel_error(streamed, one));
    check_states_equal(s, one_state, 1e-9);
  }
}

}  // namespace

TEST_CASE("streaming: random schedules and document starts equal one call (double, batch 3)") {
  const auto f = testing::open_golden("model_variants");  // multi_segments, every non-default flag
  const auto model = model::load_model<policy::Gecko, double>(f->path());
  std::mt19937 rng(1234);
  const std::int64_t C = model.config().chunk_size;
  for (int round = 0; round < 3; ++round) {
    const auto tokens = random_tokens(rng, 3, 7 * C, C, model.config().vocab_size, model.bos_id());
    check_random_schedules(model, tokens, /*multi=*/true, rng, 4);
  }
}

TEST_CASE("streaming: random schedules equal one call without documents (double)") {
  const auto f = testing::open_golden("model_single_doc");
  const auto model = model::load_model<policy::Gecko, double>(f->path());
  std::mt19937 rng(99);
  const std::int64_t C = model.config().chunk_size;
  // A length that is not a multiple of C: the last piece is a tail or single tokens.
  const auto tokens = random_tokens(rng, 2, 5 * C + 7, C, model.config().vocab_size, model.bos_id());
  check_random_schedules(model, tokens, /*multi=*/false, rng, 4);
}

TEST_CASE("streaming: feed splits any number of tokens from any position into allowed pieces") {
  const auto f = testing::open_golden("model_variants");
  const auto model = model::load_model<policy::Gecko, double>(f->path());
  std::mt19937 rng(7);
  const std::int64_t C = model.config().chunk_size;
  const auto tokens = random_tokens(rng, 2, 6 * C, C, model.config().vocab_size, model.bos_id());
  model::ModelState<double> one_state, s;
  const Tensor<double> one = model.feed(tokens, one_state, true);
  // 3 tokens, then 2.5 chunks from position 3, then the rest: none of them an allowed piece.
  const std::int64_t cuts[] = {0, 3, 3 + 5 * C / 2, 6 * C};
  for (int i = 0; i < 3; ++i) {
    const auto piece = model.feed(time_slice(tokens, cuts[i], cuts[i + 1]), s, true);
    for (std::int64_t b = 0; b < 2; ++b)
      for (std::int64_t t = 0; t < piece.dim(1); ++t)
        for (std::int64_t v = 0; v < piece.dim(2); ++v)
          CHECK(std::abs(piece(b, t, v) - one(b, cuts[i] + t, v)) <= 1e-9 * 10);
  }
  check_states_equal(s, one_state, 1e-9);
}

TEST_CASE("streaming: the state's memory footprint is constant in the stream length") {
  const auto f = testing::open_golden("model_variants");
  const auto model = model::load_model<policy::Gecko, float>(f->path());
  const auto& c = model.config();
  const std::int64_t C = c.chunk_size, B = 2;
  std::mt19937 rng(5);
  const auto tokens = random_tokens(rng, B, 12 * C, C, c.vocab_size, model.bos_id());
  model::ModelState<float> s;
  std::vector<std::int64_t> bytes;  // after each token
  for (std::int64_t t = 0; t < tokens.dim(1); ++t) {
    model.forward(time_slice(tokens, t, t + 1), s, true);
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
