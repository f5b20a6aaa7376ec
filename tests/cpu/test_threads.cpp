// Worker threads (core/threads.hpp): the split covers every item once, errors reach the caller,
// and every threaded CPU op gives the same bits with 1, 2 and 3 threads. The inputs are sized so
// that each op's work pays for 3 workers (kMinWorkPerThread), so the split really happens.
#include <doctest/doctest.h>

#include <atomic>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "gecko/core/threads.hpp"
#include "gecko/cpu/cema.hpp"
#include "gecko/cpu/feed_forward.hpp"
#include "gecko/cpu/sliding_chunk_attention.hpp"
#include "gecko/cpu/timestep_norm.hpp"
#include "gecko/cpu/working_memory.hpp"
#include "gecko/model/checkpoint.hpp"
#include "gecko/policy/presets.hpp"
#include "test_model_helpers.hpp"

using namespace gecko;

namespace {

// Restores the thread setting when a test case ends.
struct ThreadsGuard {
  int saved = threads();
  ~ThreadsGuard() { set_threads(saved); }
};

template <class T>
Tensor<T> random_tensor(const Shape& shape, std::uint32_t seed, double scale = 1) {
  Tensor<T> t(shape);
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(0.0, scale);
  for (T& v : t.span()) v = T(normal(rng));
  return t;
}

template <class T>
bool same_bits(const Tensor<T>& a, const Tensor<T>& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), sizeof(T) * std::size_t(a.size())) == 0;
}

// f() run with 1, 2 and 3 threads; every result must equal the single-threaded one bit for bit.
// f returns a vector of tensors (outputs and states).
template <class F>
void check_thread_count_independent(F&& f) {
  ThreadsGuard guard;
  set_threads(1);
  const auto serial = f();
  for (int n : {2, 3}) {
    set_threads(n);
    const auto threaded = f();
    REQUIRE(threaded.size() == serial.size());
    for (std::size_t i = 0; i < serial.size(); ++i) {
      INFO(n, " threads, result ", i);
      CHECK(same_bits(threaded[i], serial[i]));
    }
  }
}

}  // namespace

TEST_CASE("threads: set_threads overrides the setting and rejects fewer than one thread") {
  ThreadsGuard guard;
  set_threads(3);
  CHECK(threads() == 3);
  set_threads(1);
  CHECK(threads() == 1);
  CHECK_THROWS_WITH_AS(set_threads(0), "set_threads: the number of threads must be at least 1, got 0",
                       Error);
  CHECK(threads() == 1);
}

TEST_CASE("threads: parallel_runs covers every item exactly once in contiguous runs") {
  for (std::int64_t items : {0, 1, 2, 5, 7, 64, 1000})
    for (std::int64_t workers : {1, 2, 3, 4, 16}) {
      INFO(items, " items, ", workers, " workers");
      std::vector<std::atomic<int>> seen(static_cast<std::size_t>(items));
      std::atomic<int> runs{0};
      parallel_runs(items, workers, workers, [&](std::int64_t begin, std::int64_t end) {
        CHECK(begin < end);
        ++runs;
        for (std::int64_t i = begin; i < end; ++i) ++seen[std::size_t(i)];
      });
      for (const auto& s : seen) CHECK(s == 1);
      CHECK(runs == std::min<std::int64_t>(workers, items));
    }
}

TEST_CASE("threads: an exception in any run reaches the caller after all runs finish") {
  std::atomic<int> finished{0};
  CHECK_THROWS_WITH_AS(parallel_runs(4, 4, 4,
                                     [&](std::int64_t begin, std::int64_t) {
                                       if (begin == 2) throw std::runtime_error("run 2 failed");
                                       ++finished;
                                     }),
                       "run 2 failed", std::runtime_error);
  CHECK(finished == 3);
}

TEST_CASE_TEMPLATE("threads: cema gives the same bits with 1, 2 and 3 threads", T, float, double) {
  const std::int64_t B = 2, L = 96, D = 72, N = 16;  // D: four blocks of 16 channels and a partial one
  cpu::CemaParams<T> params{random_tensor<T>({D, N}, 1), random_tensor<T>({D, N}, 2),
                            random_tensor<T>({D}, 3), random_tensor<T>({D, N, 2}, 4, 0.3), {}};
  const auto coeffs = cpu::cema_coefficients(params);
  const auto x = random_tensor<T>({B, L, D}, 5);
  const auto h0 = random_tensor<T>({B, D, N, 2}, 6);
  const auto omega = random_tensor<T>({D}, 7);
  Tensor<bool> bos({B, L});
  bos(0, 17) = bos(1, 0) = bos(1, 50) = true;
  check_thread_count_independent([&] {
    Tensor<T> h = h0;
    Tensor<T> c = cpu::cema(x, &bos, h, coeffs, &omega);
    return std::vector<Tensor<T>>{std::move(c), std::move(h)};
  });
}

TEST_CASE_TEMPLATE("threads: the timestep norms give the same bits with 1, 2 and 3 threads", T, float, double) {
  const std::int64_t B = 3, L = 200, D = 96, G = 6;
  cpu::TimestepNormParams<T> p;
  p.weight = random_tensor<T>({D}, 11, 0.1);
  p.bias = random_tensor<T>({D}, 12, 0.1);
  p.prior_count = Tensor<std::int64_t>(Shape{}, 0);
  p.prior_mean = random_tensor<T>({G}, 13);
  p.prior_var = Tensor<T>({G}, T(1));
  p.groups = int(G);
  const auto x = random_tensor<T>({B, L, D}, 14);
  Tensor<bool> bos({B, L});
  bos(0, 0) = bos(1, 77) = bos(2, 150) = bos(2, 151) = true;
  cpu::TimestepNormState<T> carried{Tensor<std::int64_t>({B}, 5), random_tensor<T>({B, G}, 15),
                                    Tensor<T>({B, G}, T(0.5))};
  check_thread_count_independent([&] {
    cpu::TimestepNormState<T> decay_state = carried, cumulative_state = carried;
    cpu::TimestepNormStats<T> stats;
    Tensor<T> decayed = cpu::timestep_decay_norm(x, &bos, decay_state, p, &stats);
    Tensor<T> cumulative = cpu::timestep_cumulative_norm(x, cumulative_state, p);
    return std::vector<Tensor<T>>{std::move(decayed), decay_state.mean, decay_state.var,
                                  stats.cummean, stats.cumrstd, std::move(cumulative),
                                  cumulative_state.mean, cumulative_state.var};
  });
}

TEST_CASE_TEMPLATE("threads: sliding chunk attention gives the same bits with 1, 2 and 3 threads", T, float,
                   double) {
  const std::int64_t B = 2, L = 64, H = 3, dk = 8, dv = 16, C = 16, start = 32, Lk = 16;
  const auto q = random_tensor<T>({B, L, H, dk}, 21), k = random_tensor<T>({B, L, H, dk}, 22);
  const auto v = random_tensor<T>({B, L, H, dv}, 23);
  const cpu::AttentionWindow<T> window{random_tensor<T>({B, Lk, H, dk}, 24), random_tensor<T>({B, Lk, H, dv}, 25)};
  Tensor<std::int64_t> seg({B, L}), window_seg({B, Lk});
  for (std::int64_t t = 0; t < L; ++t) seg(0, t) = t < 21 ? 0 : 1, seg(1, t) = t < 40 ? 3 : 4;
  for (std::int64_t t = 0; t < Lk; ++t) window_seg(1, t) = t < 9 ? 2 : 3;
  check_thread_count_independent([&] {
    return std::vector<Tensor<T>>{
        cpu::sliding_chunk_attention(q, k, v, window, nullptr, nullptr, C, start),
        cpu::sliding_chunk_attention(q, k, v, window, &seg, &window_seg, C, start)};
  });
}

TEST_CASE_TEMPLATE("threads: the working memory gives the same bits with 1, 2 and 3 threads", T, float, double) {
  const std::int64_t B = 2, L = 128, H = 3, dk = 8, dv = 16, C = 16;
  const auto aq = random_tensor<T>({B, L, H * dk}, 31), ak = random_tensor<T>({B, L, H * dk}, 32);
  const auto v = random_tensor<T>({B, L, H * dv}, 33);
  const auto step_q = random_tensor<T>({B, 1, H * dk}, 34), step_k = random_tensor<T>({B, 1, H * dk}, 35);
  const auto step_v = random_tensor<T>({B, 1, H * dv}, 36);
  const auto window_value = random_tensor<T>({B, C, H, dv}, 37);  // the attention cache's values
  Tensor<std::int64_t> seg({B, L}), step_seg({B, 1}, 2), mem_seg({B});
  for (std::int64_t t = 0; t < L; ++t) seg(0, t) = t < 37 ? 0 : 1, seg(1, t) = t < 100 ? 1 : 2;
  check_thread_count_independent([&] {
    // A chunked call from a fresh stream, another continuing its state, then a single token.
    cpu::WorkingMemoryState<T> state;
    std::vector<Tensor<T>> results;
    results.push_back(cpu::working_memory(aq, ak, v, Tensor<T>{}, state, {&seg}, int(H), C));
    // The window is the call's last chunk; the memory belongs to the document of the chunk before.
    Tensor<std::int64_t> last_ids({B, C});
    for (std::int64_t b = 0; b < B; ++b) {
      mem_seg(b) = seg(b, L - C - 1);
      for (std::int64_t t = 0; t < C; ++t) last_ids(b, t) = seg(b, L - C + t);
    }
    results.push_back(cpu::working_memory(aq, ak, v, window_value, state, {&seg, &last_ids, &mem_seg},
                                          int(H), C));
    results.push_back(state.memory);
    results.push_back(state.log_norm);
    results.push_back(cpu::working_memory(step_q, step_k, step_v, window_value, state,
                                          {&step_seg, &last_ids, &mem_seg}, int(H), C));
    results.push_back(state.key);
    results.push_back(state.memory);
    return results;
  });
}

TEST_CASE_TEMPLATE("threads: linear, feed_forward and the group norms give the same bits with 1, 2 and 3 threads", T, float, double) {
  const std::int64_t B = 3, L = 401, D = 40, F = 24;  // 1203 rows: blocks of 512, 512 and 179
  const auto x = random_tensor<T>({B, L, D}, 41), residual = random_tensor<T>({B, L, D}, 42);
  const auto w = random_tensor<T>({F, D}, 43, 0.2), bias = random_tensor<T>({F}, 44);
  cpu::FeedForwardParams<T> p;
  p.norm_weight = random_tensor<T>({D}, 45, 0.1);
  p.norm_bias = random_tensor<T>({D}, 46, 0.1);
  p.fc1 = w;
  p.fc3 = random_tensor<T>({F, D}, 47, 0.2);
  p.fc2 = random_tensor<T>({D, F}, 48, 0.2);
  p.alpha = random_tensor<T>({D}, 49);
  p.groups = 2;
  const auto wide = random_tensor<T>({B, L, 4 * D}, 50);  // enough work for 3 workers in the norms
  const auto wide_weight = random_tensor<T>({4 * D}, 51, 0.1);
  check_thread_count_independent([&] {
    return std::vector<Tensor<T>>{cpu::linear(x, w, &bias), cpu::linear(x, w),
                                  cpu::feed_forward(x, residual, p),
                                  cpu::group_rms_norm(wide, 4, 1e-5, &wide_weight),
                                  cpu::group_layer_norm(wide, 8, 1e-5, &wide_weight, &wide_weight)};
  });
}

TEST_CASE_TEMPLATE("threads: a whole model gives the same logits and state with 1, 2 and 3 threads", T, float,
                   double) {
  // Every non-default flag, documents; a prefill of 16 chunks (sized for several workers in every
  // op) and then a single-token step.
  const auto f = testing::open_golden("model_variants");
  const auto model = model::load_model<policy::Gecko, T>(f->path());
  std::mt19937 rng(7);
  const std::int64_t C = model.config().chunk_size;
  const auto tokens = testing::random_tokens(rng, 3, 16 * C + 1, C, model.config().vocab_size, model.bos_id());
  const auto prefill = testing::time_slice(tokens, 0, 16 * C), step = testing::time_slice(tokens, 16 * C, 16 * C + 1);
  check_thread_count_independent([&] {
    model::ModelState<T> state;
    std::vector<Tensor<T>> results{model.forward(prefill, state, true), model.forward(step, state, true)};
    visit_state(state, [&](const std::string&, const auto& t) {
      using X = std::remove_cvref_t<decltype(t[0])>;
      if constexpr (std::is_same_v<X, T>) results.push_back(t);
    });
    return results;
  });
}

TEST_CASE("threads: nested calls and calls from several threads at once run every item once") {
  ThreadsGuard guard;
  set_threads(3);
  // A parallel_for inside a run: the pool is busy (or this is a worker), so it runs serially.
  std::vector<std::atomic<int>> seen(64 * 64);
  parallel_runs(64, 8, 3, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i)
      parallel_for(64, 1e9, [&](std::int64_t j0, std::int64_t j1) {
        for (std::int64_t j = j0; j < j1; ++j) ++seen[std::size_t(i * 64 + j)];
      });
  });
  for (const auto& s : seen) CHECK(s == 1);
  // Two user threads running ops at the same time: one gets the pool, the other runs alone;
  // both get the single-threaded bits.
  const std::int64_t B = 2, L = 64, D = 48, N = 16;
  cpu::CemaParams<float> params{random_tensor<float>({D, N}, 1), random_tensor<float>({D, N}, 2),
                                random_tensor<float>({D}, 3), random_tensor<float>({D, N, 2}, 4, 0.3), {}};
  const auto coeffs = cpu::cema_coefficients(params);
  const auto x = random_tensor<float>({B, L, D}, 5);
  auto run = [&] {
    Tensor<float> h;
    return cpu::cema(x, nullptr, h, coeffs);
  };
  set_threads(1);
  const Tensor<float> serial = run();
  set_threads(3);
  std::vector<Tensor<float>> results(4);
  {
    std::vector<std::jthread> users;
    for (auto& r : results) users.emplace_back([&] { r = run(); });
  }
  for (const auto& r : results) CHECK(same_bits(r, serial));
}
