// Adaptive working memory (spec §11): golden cases of the reference module, split invariance over
// streaming schedules with segments (§4.5 bookkeeping done here, as the cache does it), the
// defining token-by-token semantics of §11.2, and the invariants of one absorption.
#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <vector>

#include "gecko/cpu/working_memory.hpp"
#include "support/golden.hpp"
#include "support/layout.hpp"

using namespace gecko;
using cpu::WorkingMemorySegments;
using cpu::WorkingMemoryState;

namespace {

using testing::concat;
using testing::slice;

template <class A, class B>
double report(const std::string& name, const Tensor<A>& cand, const Tensor<B>& golden, double tol) {
  testing::check_close(name, cand, golden, tol);
  const double rel = testing::rel_error(cand, golden);
  MESSAGE(name, ": rel ", rel);
  return rel;
}

// ---------------------------------------------------------------------------------------------
// Golden cases: y, memory, log_norm_term, prev_k = module(q, k, v, memory, log_norm_term, prev_k,
// prev_v, segment_idx, prev_segment_idx, prev_segment_count).

template <class T>
void golden_case(const std::string& name) {
  const auto f = testing::open_golden(name);
  const auto args = nlohmann::json::parse(*f->meta("args"));
  const int heads = args.at("num_heads").get<int>();
  const std::int64_t C = args.at("chunk_size").get<std::int64_t>();
  const double tol = testing::golden_tolerance<T>();

  const Tensor<T> q = f->get_as<T>("in.q"), k = f->get_as<T>("in.k"), v = f->get_as<T>("in.v");
  WorkingMemoryState<T> state;
  Tensor<T> window_value;
  if (f->contains("in.memory")) state.memory = f->get_as<T>("in.memory");
  if (f->contains("in.log_norm_term")) state.log_norm = f->get_as<T>("in.log_norm_term");
  if (f->contains("in.prev_k")) state.key = f->get_as<T>("in.prev_k");
  Tensor<T> prev_v;  // (B, H, Lk, dv) as the reference caches it
  if (f->contains("in.prev_v")) {
    prev_v = f->get_as<T>("in.prev_v");
    window_value = testing::swap_dims12(prev_v);
  }
  Tensor<std::int64_t> seg, window_seg, mem_seg;
  WorkingMemorySegments segments;
  if (f->contains("in.segment_idx")) segments.seg = &(seg = f->get<std::int64_t>("in.segment_idx"));
  if (f->contains("in.prev_segment_idx"))
    segments.window_seg = &(window_seg = f->get<std::int64_t>("in.prev_segment_idx"));
  if (f->contains("in.prev_segment_count"))
    segments.mem_seg = &(mem_seg = f->get<std::int64_t>("in.prev_segment_count"));

  const Tensor<T> y = cpu::working_memory(q, k, v, window_value, state, segments, heads, C);

  report(name + " y", y, f->get<float>("out.y"), tol);
  report(name + " memory", state.memory, f->get<float>("out.memory"), tol);
  report(name + " log_norm_term", state.log_norm, f->get<float>("out.log_norm_term"), tol);
  report(name + " prev_k", state.key, f->get<float>("out.prev_k"), tol);

  // The value window the caller keeps: prefill -> last C values of the call; tail -> window ++ new.
  const std::int64_t L = q.dim(1);
  const Tensor<T> v_heads = testing::swap_dims12(v.reshaped({v.dim(0), L, heads, v.dim(2) / heads}));
  const Tensor<T> expected_v = L >= C ? slice(v_heads, 2, L - C, C) : concat(prev_v, v_heads, 2);
  const Tensor<float> golden_v = f->get<float>("out.prev_v");
  REQUIRE(expected_v.shape() == golden_v.shape());
  CHECK(testing::rel_error(expected_v, golden_v) == 0);
}

}  // namespace

TEST_CASE_TEMPLATE("awm golden: chunked path, fresh stream", T, float, double) {
  golden_case<T>("awm_chunks");
}
TEST_CASE_TEMPLATE("awm golden: chunked path continuing a state", T, float, double) {
  golden_case<T>("awm_continue");
}
TEST_CASE_TEMPLATE("awm golden: chunked path with segments", T, float, double) {
  golden_case<T>("awm_segments");
}
TEST_CASE_TEMPLATE("awm golden: chunked path with segments, continuing", T, float, double) {
  golden_case<T>("awm_segments_continue");
}
TEST_CASE_TEMPLATE("awm golden: tail read", T, float, double) { golden_case<T>("awm_tail"); }
TEST_CASE_TEMPLATE("awm golden: step completing a chunk, with segments", T, float, double) {
  golden_case<T>("awm_step_update_segments");
}
TEST_CASE_TEMPLATE("awm golden: step completing the first chunk", T, float, double) {
  golden_case<T>("awm_step_first_chunk");
}

// ---------------------------------------------------------------------------------------------
// Random streams.

namespace {

constexpr int kHeads = 2;
constexpr std::int64_t kB = 3, kC = 4, kDk = 4, kDv = 5;

struct Inputs {
  Tensor<double> aq, ak, v;  // (B, L, H*dk), (B, L, H*dk), (B, L, H*dv)
  Tensor<std::int64_t> seg;  // (B, L); empty = no segments
};

// Document starts (BOS) at random places, plus ones on the last and on the first token of a chunk,
// back to back and at t = 0, differently per batch row, so every mask and reset test is exercised.
Inputs random_inputs(std::int64_t L, bool with_segments, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  Inputs in{Tensor<double>({kB, L, kHeads * kDk}), Tensor<double>({kB, L, kHeads * kDk}),
            Tensor<double>({kB, L, kHeads * kDv}), {}};
  for (auto* t : {&in.aq, &in.ak, &in.v})
    for (auto& x : t->span()) x = 1.5 * normal(rng);
  if (!with_segments) return in;
  in.seg = Tensor<std::int64_t>({kB, L});
  std::bernoulli_distribution bos(0.12);
  for (std::int64_t b = 0; b < kB; ++b) {
    std::int64_t id = 0;
    for (std::int64_t t = 0; t < L; ++t) {
      bool start = bos(rng);
      if (b == 0) start = start || t == 0 || t == 2 * kC - 1 || t == 4 * kC - 1;
      if (b == 1) start = start || t == 3 * kC || t == 3 * kC + 1 || t == 5 * kC;
      if (b == 2) start = start || t == kC + 2;
      id += start;
      in.seg(b, t) = id;
    }
  }
  return in;
}

// A cache of one layer as the model keeps it (§4.5): AWM state, the value window, segment ids.
struct Stream {
  WorkingMemoryState<double> state;
  Tensor<double> window_value;        // (B, Lk, H, dv)
  Tensor<std::int64_t> window_seg;    // (B, Lk)
  Tensor<std::int64_t> mem_seg;       // (B)
  std::int64_t count = 0;

  Tensor<double> feed(const Inputs& in, std::int64_t n) {
    const Tensor<double> aq = slice(in.aq, 1, count, n), ak = slice(in.ak, 1, count, n),
                         v = slice(in.v, 1, count, n);
    Tensor<std::int64_t> seg;
    WorkingMemorySegments segments;
    if (!in.seg.empty()) {
      seg = slice(in.seg, 1, count, n);
      segments.seg = &seg;
      if (!window_seg.empty()) segments.window_seg = &window_seg;
      if (!mem_seg.empty()) segments.mem_seg = &mem_seg;
    }
    Tensor<double> y = cpu::working_memory(aq, ak, v, window_value, state, segments, kHeads, kC);

    const Tensor<double> v4 = v.reshaped({kB, n, kHeads, kDv});
    window_value = n >= kC ? slice(v4, 1, n - kC, kC) : concat(window_value, v4, 1);
    if (!in.seg.empty()) {
      if (window_seg.empty()) mem_seg = slice(seg, 1, 0, 1).reshaped({kB});
      window_seg = concat(window_seg, seg, 1);
    }
    count += n;
    if (count % kC == 0) {
      state.key = slice(state.key, 2, state.key.dim(2) - kC, kC);
      window_value = slice(window_value, 1, window_value.dim(1) - kC, kC);
      if (!in.seg.empty()) {
        const std::int64_t len = window_seg.dim(1);
        mem_seg = slice(window_seg, 1, std::max<std::int64_t>(len - kC - 1, 0), 1).reshaped({kB});
        window_seg = slice(window_seg, 1, len - kC, kC);
      }
    }
    return y;
  }
};

Tensor<double> run_schedule(const Inputs& in, const std::vector<std::int64_t>& schedule, Stream& s) {
  Tensor<double> y;
  for (std::int64_t n : schedule) y = concat(y, s.feed(in, n), 1);
  REQUIRE(s.count == in.aq.dim(1));
  return y;
}

std::vector<std::int64_t> prefill_then_steps(std::int64_t prefill, std::int64_t total) {
  std::vector<std::int64_t> s{prefill};
  s.resize(std::size_t(1 + total - prefill), 1);
  return s;
}

// §11.2 evaluated literally, token by token: row s of M is the exp(κ[s])-weighted average of the
// residuals written since the last reset; a token of chunk c reads M^(c−2) when it shares its
// document. Returns y and fills the memory after chunks 0 … nc−2 and its log normaliser.
Tensor<double> defining_semantics(const Inputs& in, Tensor<double>& memory, Tensor<double>& log_norm) {
  const std::int64_t L = in.aq.dim(1), nc = L / kC;
  Tensor<double> y({kB, L, kHeads * kDv});
  memory = Tensor<double>({kB, kHeads, kDk, kDv});
  log_norm = Tensor<double>({kB, kHeads, kDk});
  const auto softmax = [](const Tensor<double>& x, std::int64_t b, std::int64_t t, std::int64_t h) {
    std::vector<double> p(kDk);
    double sum = 0;
    for (std::int64_t s = 0; s < kDk; ++s) sum += p[s] = std::exp(x(b, t, h * kDk + s));
    for (auto& e : p) e /= sum;
    return p;
  };
  const auto doc = [&](std::int64_t b, std::int64_t t) { return in.seg.empty() ? 0 : in.seg(b, t); };
  const auto sigma = [&](std::int64_t b, std::int64_t k) { return doc(b, (k + 1) * kC - 1); };
  for (std::int64_t b = 0; b < kB; ++b)
    for (std::int64_t h = 0; h < kHeads; ++h) {
      // history[k] = (M, Λ) after absorbing chunks 0 … k
      std::vector<std::vector<std::vector<double>>> M_after;
      std::vector<std::vector<double>> Lambda_after;
      std::vector<std::vector<double>> M(kDk, std::vector<double>(kDv, 0.0));
      std::vector<double> Lambda(kDk, -INFINITY);
      for (std::int64_t k = 0; k + 1 < nc; ++k) {
        if (k >= 1 && sigma(b, k - 1) != sigma(b, k)) {
          M.assign(kDk, std::vector<double>(kDv, 0.0));
          Lambda.assign(kDk, -INFINITY);
        }
        std::vector<std::vector<double>> sum(kDk, std::vector<double>(kDv, 0.0));
        std::vector<double> weight(kDk, 0.0);
        for (std::int64_t s = 0; s < kDk; ++s) {
          weight[s] = std::exp(Lambda[s]);
          for (std::int64_t d = 0; d < kDv; ++d) sum[s][d] = weight[s] * M[s][d];
        }
        for (std::int64_t t = k * kC; t < (k + 1) * kC; ++t) {
          if (doc(b, t) != sigma(b, k)) continue;
          const auto psi = softmax(in.ak, b, t, h);
          for (std::int64_t d = 0; d < kDv; ++d) {
            double r = in.v(b, t, h * kDv + d);
            for (std::int64_t s = 0; s < kDk; ++s) r -= psi[s] * M[s][d];
            for (std::int64_t s = 0; s < kDk; ++s) sum[s][d] += std::exp(in.ak(b, t, h * kDk + s)) * r;
          }
          for (std::int64_t s = 0; s < kDk; ++s) weight[s] += std::exp(in.ak(b, t, h * kDk + s));
        }
        for (std::int64_t s = 0; s < kDk; ++s) {
          for (std::int64_t d = 0; d < kDv; ++d) M[s][d] = sum[s][d] / weight[s];
          Lambda[s] = std::log(weight[s]);
        }
        M_after.push_back(M);
        Lambda_after.push_back(Lambda);
      }
      for (std::int64_t t = 0; t < L; ++t) {
        const std::int64_t c = t / kC;
        const bool reads = c >= 2 && doc(b, t) == sigma(b, c - 2);
        const auto phi = softmax(in.aq, b, t, h);
        for (std::int64_t d = 0; d < kDv; ++d) {
          double o = 0;
          if (reads)
            for (std::int64_t s = 0; s < kDk; ++s) o += phi[s] * M_after[c - 2][s][d];
          y(b, t, h * kDv + d) = o;
        }
      }
      for (std::int64_t s = 0; s < kDk; ++s) {
        log_norm(b, h, s) = Lambda_after.back()[s];
        for (std::int64_t d = 0; d < kDv; ++d) memory(b, h, s, d) = M_after.back()[s][d];
      }
    }
  return y;
}

}  // namespace

TEST_CASE("awm: streaming equals one call, for every schedule and batch row") {
  constexpr std::int64_t L = 6 * kC;
  const std::vector<std::vector<std::int64_t>> schedules = {
      prefill_then_steps(kC, L),
      prefill_then_steps(2 * kC, L),
      prefill_then_steps(3 * kC, L),
      {kC, kC, kC, kC, kC, kC},  // single-chunk calls after a cached chunk (§14 B7)
      std::vector<std::int64_t>(L, 1),
      {3, 1, 2 * kC, 2, 1, 1, kC, 1, 1, 1, 1},  // tail, steps, prefills in between
      {kC, 2, 1, 1, 4 * kC},
  };
  for (bool with_segments : {true, false}) {
    const Inputs in = random_inputs(L, with_segments, 7 + with_segments);
    Stream whole;
    const Tensor<double> y_ref = whole.feed(in, L);
    for (const auto& schedule : schedules) {
      std::string name = with_segments ? "segments, schedule" : "no segments, schedule";
      for (auto n : schedule) name.append(1, ' ').append(std::to_string(n));
      CAPTURE(name);
      Stream s;
      const Tensor<double> y = run_schedule(in, schedule, s);
      CHECK(testing::rel_error(y, y_ref) < 1e-10);
      CHECK(testing::rel_error(s.state.memory, whole.state.memory) < 1e-10);
      CHECK(testing::rel_error(s.state.log_norm, whole.state.log_norm) < 1e-10);
      CHECK(testing::rel_error(s.state.key, whole.state.key) == 0);
      CHECK(testing::rel_error(s.window_value, whole.window_value) == 0);
      if (with_segments) {
        testing::check_equal("mem_seg", s.mem_seg, whole.mem_seg);
        testing::check_equal("window_seg", s.window_seg, whole.window_seg);
      }
    }
  }
}

TEST_CASE("awm: the chunked path equals the defining token-by-token semantics") {
  for (bool with_segments : {true, false}) {
    CAPTURE(with_segments);
    const Inputs in = random_inputs(7 * kC, with_segments, 123 + with_segments);
    Tensor<double> memory, log_norm;
    const Tensor<double> y_def = defining_semantics(in, memory, log_norm);
    Stream s;
    const Tensor<double> y = s.feed(in, 7 * kC);
    CHECK(testing::rel_error(y, y_def) < 1e-10);
    CHECK(testing::rel_error(s.state.memory, memory) < 1e-10);
    CHECK(testing::rel_error(s.state.log_norm, log_norm) < 1e-10);
    // Some reads are live and, with segments, some are masked: the comparison is not vacuous.
    double live = 0;
    for (auto e : y.span()) live = std::max(live, std::abs(e));
    CHECK(live > 0.1);
  }
}

TEST_CASE("awm: an absorption keeps 0 < rho <= 1 and memory rows convex combinations") {
  using Matrix = cpu::awm::Matrix<double>;
  std::mt19937_64 rng(99);
  std::normal_distribution<double> normal(0.0, 2.0);
  std::bernoulli_distribution coin(0.3);
  auto mem = cpu::awm::HeadMemory<double>::empty(kDk, kDv);
  // Residuals written since the last reset, with their raw weights exp(κ_t[s]).
  std::vector<Eigen::RowVectorXd> residuals;
  std::vector<Eigen::VectorXd> weights;
  int resets = 0;
  for (int k = 0; k < 12; ++k) {
    Matrix key(kC, kDk), value(kC, kDv);
    key = Matrix::NullaryExpr(kC, kDk, [&] { return normal(rng); });
    value = Matrix::NullaryExpr(kC, kDv, [&] { return normal(rng); });
    std::vector<std::int64_t> seg(kC);
    for (auto& id : seg) id = coin(rng);  // admission: tokens of the last token's document
    const bool reset = k > 0 && coin(rng);
    resets += reset;
    if (reset) residuals.clear(), weights.clear();

    // R_t against the memory the chunk meets (zero after a reset)
    const Matrix residual =
        reset ? value : Matrix(value - cpu::awm::feature_softmax<double>(key) * mem.M);
    const Eigen::VectorXd before = mem.log_norm;
    const Eigen::VectorXd rho = cpu::awm::absorb_chunk(mem, key, value, std::span(seg), reset);
    CHECK(rho.minCoeff() > 0);
    CHECK(rho.maxCoeff() <= 1);
    if (!reset)
      for (Eigen::Index s = 0; s < kDk; ++s) CHECK(mem.log_norm[s] >= before[s]);
    for (std::int64_t t = 0; t < kC; ++t) {
      if (seg[t] != seg.back()) continue;
      residuals.push_back(residual.row(t));
      weights.push_back(key.row(t).transpose().array().exp().matrix());
    }
    // Row s of M = Σ_t w_t[s] R_t with w_t[s] = exp(κ_t[s] − Λ[s]) >= 0 summing to 1.
    for (Eigen::Index s = 0; s < kDk; ++s) {
      double total = 0;
      Eigen::RowVectorXd row = Eigen::RowVectorXd::Zero(kDv);
      for (std::size_t i = 0; i < residuals.size(); ++i) {
        const double w = weights[i][s] / std::exp(mem.log_norm[s]);
        total += w;
        row += w * residuals[i];
      }
      CHECK(total == doctest::Approx(1.0).epsilon(1e-12));
      CHECK((row - mem.M.row(s)).cwiseAbs().maxCoeff() < 1e-12 * (1 + row.cwiseAbs().maxCoeff()));
    }
  }
  CHECK(resets > 0);
}

TEST_CASE("awm: call rules are enforced with clear errors") {
  const Inputs in = random_inputs(3 * kC, true, 5);
  WorkingMemorySegments none;
  SUBCASE("a chunked call must be a multiple of C") {
    Stream s;
    CHECK_THROWS_WITH_AS(s.feed(in, kC + 2), doctest::Contains("needs L % C == 0"), Error);
  }
  SUBCASE("without a memory the window cannot exceed C") {
    Stream s;
    s.feed(in, 3);
    CHECK_THROWS_WITH_AS(s.feed(in, 2), doctest::Contains("without a memory, window ++ new must hold at most C"),
                         Error);
  }
  SUBCASE("with a memory the window must hold (C, 2C] tokens") {
    Stream s;
    s.feed(in, kC);
    WorkingMemoryState<double> state = s.state;
    state.key = slice(state.key, 2, 0, 2);  // a window that lost tokens
    const Tensor<double> aq = slice(in.aq, 1, 0, 1), ak = slice(in.ak, 1, 0, 1), v = slice(in.v, 1, 0, 1);
    const Tensor<double> wv = slice(s.window_value, 1, 0, 2);
    CHECK_THROWS_WITH_AS(cpu::working_memory(aq, ak, v, wv, state, none, kHeads, kC),
                         doctest::Contains("window ++ new must hold (C, 2C]"), Error);
  }
  SUBCASE("a chunked call with a memory needs a window of exactly C") {
    Stream s;
    s.feed(in, kC);
    s.feed(in, 1);  // window of C + 1, not cut: only a chunk boundary may start a chunked call
    CHECK_THROWS_WITH_AS(s.feed(in, kC), doctest::Contains("cached window of C = 4 tokens, got 5"), Error);
  }
  SUBCASE("a memory needs its normaliser and a normaliser its memory") {
    Stream s;
    s.feed(in, kC);  // creates the memory
    const Tensor<double> aq = slice(in.aq, 1, kC, 1), ak = slice(in.ak, 1, kC, 1), v = slice(in.v, 1, kC, 1);
    WorkingMemoryState<double> state = s.state;
    state.log_norm = Tensor<double>();
    CHECK_THROWS_WITH_AS(cpu::working_memory(aq, ak, v, s.window_value, state, none, kHeads, kC),
                         "working_memory: state.log_norm is absent (the state holds a memory)", Error);
    state = s.state;
    state.memory = Tensor<double>();
    CHECK_THROWS_WITH_AS(cpu::working_memory(aq, ak, v, s.window_value, state, none, kHeads, kC),
                         "working_memory: state.log_norm is given without a memory", Error);
    state = s.state;
    CHECK(cpu::working_memory(aq, ak, v, s.window_value, state, none, kHeads, kC).dim(1) == 1);
  }
  SUBCASE("head dims must be positive") {
    WorkingMemoryState<double> state;
    const Tensor<double> no_features({kB, kC, 0});
    const Tensor<double> aq = slice(in.aq, 1, 0, kC), v = slice(in.v, 1, 0, kC);
    CHECK_THROWS_WITH_AS(cpu::working_memory(no_features, no_features, v, Tensor<double>(), state, none, kHeads, kC),
                         "working_memory: key head dim dk must be positive, got 0", Error);
    CHECK_THROWS_WITH_AS(cpu::working_memory(aq, aq, no_features, Tensor<double>(), state, none, kHeads, kC),
                         "working_memory: value head dim dv must be positive, got 0", Error);
    CHECK(state.memory.empty());
  }
  SUBCASE("shapes are checked") {
    WorkingMemoryState<double> state;
    const Tensor<double> ak = slice(in.ak, 1, 0, kC);
    CHECK_THROWS_WITH_AS(cpu::working_memory(in.aq, ak, in.v, Tensor<double>(), state, none, kHeads, kC),
                         doctest::Contains("working_memory: ak has shape [3, 4, 8], expected [3, 12, 8]"),
                         Error);
    const Tensor<std::int64_t> seg = slice(in.seg, 1, 0, kC);
    WorkingMemorySegments bad{&seg};
    CHECK_THROWS_WITH_AS(cpu::working_memory(in.aq, in.ak, in.v, Tensor<double>(), state, bad, kHeads, kC),
                         doctest::Contains("segments.seg has shape [3, 4], expected [3, 12]"), Error);
  }
}
