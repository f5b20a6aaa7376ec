// Sliding chunk attention: golden cases (prefill, cached chunk, segments, tail, step), a dense
// masked-softmax definition, streaming = one call, and the call rules.
#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "gecko/cpu/rope.hpp"
#include "gecko/cpu/sliding_chunk_attention.hpp"
#include "support/golden.hpp"
#include "support/layout.hpp"
#include "support/random.hpp"
#include "support/report.hpp"

using namespace gecko;
using cpu::AttentionPattern;
using cpu::AttentionWindow;

namespace {

using testing::random_normal;
using testing::report_and_check;
using testing::time_concat;
using testing::time_slice;

// Segment ids as the model forms them: a running count of document starts (§4.2), here with a
// start probability per token so that documents begin inside chunks, on boundaries, back to back.
Tensor<std::int64_t> random_segments(std::int64_t B, std::int64_t L, std::mt19937_64& rng, double p_start) {
  std::bernoulli_distribution starts(p_start);
  Tensor<std::int64_t> seg(Shape{B, L});
  for (std::int64_t b = 0; b < B; ++b) {
    std::int64_t id = 0;
    for (std::int64_t t = 0; t < L; ++t) seg(b, t) = (id += starts(rng) ? 1 : 0);
  }
  return seg;
}

// The dense definition: a full (L x L) mask per batch row, softmax over the allowed keys, in double.
Tensor<double> dense_masked_attention(const Tensor<double>& q, const Tensor<double>& k, const Tensor<double>& v,
                                      const Tensor<std::int64_t>* seg, std::int64_t C, AttentionPattern pattern) {
  const std::int64_t B = q.dim(0), L = q.dim(1), H = q.dim(2), dk = q.dim(3), dv = v.dim(3);
  Tensor<double> y(Shape{B, L, H * dv});
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t i = 0; i < L; ++i) {
        std::vector<double> logit(std::size_t(L), -std::numeric_limits<double>::infinity());
        for (std::int64_t j = 0; j < L; ++j) {
          const std::int64_t ci = i / C, cj = j / C;
          const bool window = pattern == AttentionPattern::SlidingChunks ? (cj == ci || cj == ci - 1) : cj == ci;
          if (j > i || !window || (seg && (*seg)(b, j) != (*seg)(b, i))) continue;
          double s = 0;
          for (std::int64_t d = 0; d < dk; ++d) s += q(b, i, h, d) * k(b, j, h, d);
          logit[j] = s;
        }
        const double m = *std::max_element(logit.begin(), logit.end());
        double z = 0;
        for (auto& l : logit) z += (l = std::exp(l - m));
        for (std::int64_t e = 0; e < dv; ++e) {
          double s = 0;
          for (std::int64_t j = 0; j < L; ++j) s += logit[j] / z * v(b, j, h, e);
          y(b, i, h * dv + e) = s;
        }
      }
  return y;
}

// Feeds (q, k, v, seg) through the streaming path in pieces of the given lengths, keeping the
// window as the cache does (§4.5): after each call, at a chunk boundary, only the last C tokens
// (keys, values and their segment ids) stay. Returns the outputs concatenated along time.
Tensor<double> run_streaming(const Tensor<double>& q, const Tensor<double>& k, const Tensor<double>& v,
                             const Tensor<std::int64_t>* seg, std::int64_t C, AttentionPattern pattern,
                             const std::vector<std::int64_t>& schedule) {
  AttentionWindow<double> window;
  Tensor<std::int64_t> window_seg;
  Tensor<double> y;
  std::int64_t start = 0;
  for (const std::int64_t n : schedule) {
    const auto qs = time_slice(q, start, start + n), ks = time_slice(k, start, start + n),
               vs = time_slice(v, start, start + n);
    Tensor<std::int64_t> segs;
    if (seg) segs = time_slice(*seg, start, start + n);
    const auto ys = cpu::sliding_chunk_attention(qs, ks, vs, window, seg ? &segs : nullptr,
                                                 seg ? &window_seg : nullptr, C, start, pattern);
    y = time_concat(y, ys);
    const std::int64_t Lk_before = window.length();
    window = cpu::attention_window_after(window, ks, vs, C, pattern);
    start += n;
    if (seg) {  // the segment ids follow the same rule as the keys
      const auto all = time_concat(window_seg, segs);
      window_seg = window.length() == 0 ? Tensor<std::int64_t>()
                                        : time_slice(all, Lk_before + n - window.length(), Lk_before + n);
    }
    if (pattern == AttentionPattern::SlidingChunks && start % C == 0 && window.length() > C) {
      const std::int64_t Lk = window.length();
      window = {time_slice(window.key, Lk - C, Lk), time_slice(window.value, Lk - C, Lk)};
      if (seg) window_seg = time_slice(window_seg, Lk - C, Lk);
    }
  }
  return y;
}

template <class T>
void check_sca_golden(const std::string& case_name) {
  const auto f = testing::open_golden(case_name);
  const auto args = nlohmann::json::parse(*f->meta("args"));
  const std::int64_t H = args.at("num_heads"), dk = args.at("z_head_dim"), dv = args.at("v_head_dim"),
                     C = args.at("chunk_size");
  REQUIRE(args.at("scale").get<double>() == 1.0);
  const std::int64_t start = f->get<std::int64_t>("in.rope_start")[0];
  auto q = f->get_as<T>("in.q");
  const std::int64_t B = q.dim(0), L = q.dim(1);
  // in.q is (B, L, H·dk) = (B, L, H, dk) in memory; the module rotates q and k of every head.
  q = std::move(q).reshaped(Shape{B, L, H, dk});
  auto k = f->get_as<T>("in.k").reshaped(Shape{B, L, H, dk});
  const auto v = f->get_as<T>("in.v").reshaped(Shape{B, L, H, dv});
  const auto table = f->get_as<T>("in.freqs_cis");
  // The table passed to the module is that of positions start … start + L − 1.
  const auto own_table = cpu::rope_table(cpu::rope_frequencies<T>(int(dk), args.at("rope_base")), start, L);
  CHECK(testing::rel_error(own_table, table) <= testing::golden_tolerance<T>());
  cpu::apply_rope(q, table, int(H));
  cpu::apply_rope(k, table, int(H));

  AttentionWindow<T> window;
  if (f->contains("in.prev_k")) window = {f->get_as<T>("in.prev_k"), f->get_as<T>("in.prev_v")};
  Tensor<std::int64_t> seg, window_seg;
  const bool segmented = f->contains("in.segment_idx");
  if (segmented) seg = f->get<std::int64_t>("in.segment_idx");
  if (f->contains("in.prev_segment_idx")) window_seg = f->get<std::int64_t>("in.prev_segment_idx");

  const auto y = cpu::sliding_chunk_attention(q, k, v, window, segmented ? &seg : nullptr,
                                              window_seg.empty() ? nullptr : &window_seg, C, start);
  report_and_check(case_name + " out.y", y, f->get_as<T>("out.y"));
  const auto after = cpu::attention_window_after(window, k, v, C);
  report_and_check(case_name + " out.prev_k", after.key, f->get_as<T>("out.prev_k"));
  report_and_check(case_name + " out.prev_v", after.value, f->get_as<T>("out.prev_v"));
}

}  // namespace

TEST_CASE_TEMPLATE("sliding_chunk_attention golden sca_chunks", T, float, double) { check_sca_golden<T>("sca_chunks"); }
TEST_CASE_TEMPLATE("sliding_chunk_attention golden sca_prev", T, float, double) { check_sca_golden<T>("sca_prev"); }
TEST_CASE_TEMPLATE("sliding_chunk_attention golden sca_segments_prev", T, float, double) {
  check_sca_golden<T>("sca_segments_prev");
}
TEST_CASE_TEMPLATE("sliding_chunk_attention golden sca_tail", T, float, double) { check_sca_golden<T>("sca_tail"); }
TEST_CASE_TEMPLATE("sliding_chunk_attention golden sca_step_segments", T, float, double) {
  check_sca_golden<T>("sca_step_segments");
}

TEST_CASE("sliding_chunk_attention equals a dense masked softmax, both patterns, with and without segments") {
  std::mt19937_64 rng(20260112);
  const std::int64_t B = 2, L = 20, H = 3, dk = 4, dv = 5, C = 4;
  const auto q = random_normal<double>(Shape{B, L, H, dk}, rng, 1.5);
  const auto k = random_normal<double>(Shape{B, L, H, dk}, rng, 1.5);
  const auto v = random_normal<double>(Shape{B, L, H, dv}, rng);
  const auto seg = random_segments(B, L, rng, 0.2);
  for (const auto pattern : {AttentionPattern::BlockDiagonal, AttentionPattern::SlidingChunks})
    for (const bool segmented : {false, true}) {
      INFO("pattern ", cpu::detail::pattern_name(pattern), ", segments ", segmented);
      const auto* s = segmented ? &seg : nullptr;
      const auto y = cpu::sliding_chunk_attention(q, k, v, {}, s, nullptr, C, 0, pattern);
      const double rel = testing::rel_error(y, dense_masked_attention(q, k, v, s, C, pattern));
      CHECK(rel < 1e-13);
    }
  // The two patterns differ once a query may look into the previous chunk.
  const auto gecko = cpu::sliding_chunk_attention(q, k, v, {}, nullptr, nullptr, C, 0);
  const auto mega = cpu::sliding_chunk_attention(q, k, v, {}, nullptr, nullptr, C, 0, AttentionPattern::BlockDiagonal);
  CHECK(testing::rel_error(gecko, mega) > 1e-3);
}

TEST_CASE("sliding_chunk_attention: streaming in steps and tails equals one prefill call (double)") {
  std::mt19937_64 rng(7);
  const std::int64_t B = 2, C = 8, L = 5 * C, H = 2, dk = 6, dv = 3;
  const auto q = random_normal<double>(Shape{B, L, H, dk}, rng, 1.5);
  const auto k = random_normal<double>(Shape{B, L, H, dk}, rng, 1.5);
  const auto v = random_normal<double>(Shape{B, L, H, dv}, rng);
  const auto seg = random_segments(B, L, rng, 0.15);
  const std::vector<std::int64_t> steps(std::size_t(L), 1);
  // prefill 2C, tail C/2 from a boundary, steps to the next boundary, prefill C, steps.
  std::vector<std::int64_t> mixed{2 * C, C / 2};
  for (std::int64_t i = 0; i < C / 2; ++i) mixed.push_back(1);
  mixed.push_back(C);
  for (std::int64_t i = 0; i < C; ++i) mixed.push_back(1);
  for (const auto pattern : {AttentionPattern::SlidingChunks, AttentionPattern::BlockDiagonal})
    for (const bool segmented : {false, true}) {
      INFO("pattern ", cpu::detail::pattern_name(pattern), ", segments ", segmented);
      const auto* s = segmented ? &seg : nullptr;
      const auto one_call = cpu::sliding_chunk_attention(q, k, v, {}, s, nullptr, C, 0, pattern);
      const double rel_steps = testing::rel_error(run_streaming(q, k, v, s, C, pattern, steps), one_call);
      const double rel_mixed = testing::rel_error(run_streaming(q, k, v, s, C, pattern, mixed), one_call);
      CHECK(rel_steps < 1e-12);
      CHECK(rel_mixed < 1e-12);
    }
}

TEST_CASE("attention_window_after: prefill keeps the last chunk, tail and step append; block diagonal keeps the partial chunk") {
  std::mt19937_64 rng(3);
  const std::int64_t B = 1, H = 1, C = 4;
  const auto k = random_normal<double>(Shape{B, 8, H, 2}, rng), v = random_normal<double>(Shape{B, 8, H, 3}, rng);
  const auto w = cpu::attention_window_after<double>({}, k, v, C);
  CHECK(w.key.shape() == Shape{B, C, H, 2});
  CHECK(w.key(0, 0, 0, 1) == k(0, 4, 0, 1));
  CHECK(w.value(0, 3, 0, 2) == v(0, 7, 0, 2));
  const auto k1 = time_slice(k, 0, 1), v1 = time_slice(v, 0, 1);
  const auto w1 = cpu::attention_window_after(w, k1, v1, C);
  CHECK(w1.length() == C + 1);
  CHECK(w1.key(0, C, 0, 0) == k1(0, 0, 0, 0));
  // Megalodon: 3 tokens into a chunk, then one more completes it and empties the window.
  const auto m3 = cpu::attention_window_after<double>({}, time_slice(k, 0, 3), time_slice(v, 0, 3), C,
                                                      AttentionPattern::BlockDiagonal);
  CHECK(m3.length() == 3);
  CHECK(cpu::attention_window_after(m3, k1, v1, C, AttentionPattern::BlockDiagonal).length() == 0);
  CHECK(cpu::attention_window_after<double>({}, k, v, C, AttentionPattern::BlockDiagonal).length() == 0);
}

TEST_CASE("sliding_chunk_attention: call-rule violations throw and state the rule") {
  std::mt19937_64 rng(5);
  const std::int64_t C = 4;
  const auto x8 = random_normal<float>(Shape{1, 8, 1, 2}, rng);
  const auto x6 = random_normal<float>(Shape{1, 6, 1, 2}, rng);
  const auto x2 = random_normal<float>(Shape{1, 2, 1, 2}, rng);
  const auto x1 = random_normal<float>(Shape{1, 1, 1, 2}, rng);
  const AttentionWindow<float> window4{random_normal<float>(Shape{1, 4, 1, 2}, rng),
                                       random_normal<float>(Shape{1, 4, 1, 2}, rng)};
  const AttentionWindow<float> window5{random_normal<float>(Shape{1, 5, 1, 2}, rng),
                                       random_normal<float>(Shape{1, 5, 1, 2}, rng)};
  using doctest::Contains;
  CHECK_THROWS_WITH_AS(cpu::sliding_chunk_attention(x8, x8, x8, window5, nullptr, nullptr, C, 5),
                       Contains("prefill) must start on a chunk boundary (start % chunk == 0); got start=5"), Error);
  CHECK_THROWS_WITH_AS(cpu::sliding_chunk_attention(x6, x6, x6, {}, nullptr, nullptr, C, 0),
                       Contains("must cover whole chunks (L % chunk == 0); got L=6, chunk=4"), Error);
  CHECK_THROWS_WITH_AS(cpu::sliding_chunk_attention(x2, x2, x2, window5, nullptr, nullptr, C, 5),
                       Contains("a call of 1 < L < chunk tokens (tail) must start on a chunk boundary"), Error);
  // A window not yet cut at the boundary: 8 tokens seen, the window must be the last chunk.
  const AttentionWindow<float> uncut{random_normal<float>(Shape{1, 8, 1, 2}, rng),
                                     random_normal<float>(Shape{1, 8, 1, 2}, rng)};
  CHECK_THROWS_WITH_AS(cpu::sliding_chunk_attention(x1, x1, x1, uncut, nullptr, nullptr, C, 8),
                       Contains("needs a window of the 4 tokens before it (Lk = min(start, chunk + start % chunk)"),
                       Error);
  CHECK_THROWS_WITH_AS(cpu::sliding_chunk_attention(x1, x1, x1, {}, nullptr, nullptr, C, 3),
                       Contains("got Lk=0"), Error);
  const Tensor<std::int64_t> seg1(Shape{1, 1}, 0);
  CHECK_THROWS_WITH_AS(cpu::sliding_chunk_attention(x1, x1, x1, window5, &seg1, nullptr, C, 5),
                       Contains("seg is given but window_seg is absent"), Error);
  CHECK_THROWS_WITH_AS(cpu::sliding_chunk_attention(x2, x2, x2, AttentionWindow<float>{}, nullptr, nullptr, C, 3,
                                                    AttentionPattern::BlockDiagonal),
                       Contains("must stay inside one chunk (start % chunk + L <= chunk); got start=3"), Error);
  CHECK_THROWS_WITH_AS(cpu::sliding_chunk_attention(x1, x2, x1, window4, nullptr, nullptr, C, 4),
                       "sliding_chunk_attention: k has shape [1, 2, 1, 2], expected [1, 1, 1, 2]", Error);
  // The same calls with a valid window and start go through.
  CHECK_NOTHROW(cpu::sliding_chunk_attention(x1, x1, x1, window5, nullptr, nullptr, C, 5));
  CHECK_NOTHROW(cpu::sliding_chunk_attention(x2, x2, x2, window4, nullptr, nullptr, C, 4));
  CHECK_NOTHROW(cpu::sliding_chunk_attention(x8, x8, x8, window4, nullptr, nullptr, C, 4));
}
