// Lazy elementwise expressions on the CPU executor: every operator and leaf kind against a plain
// loop, broadcasting, scalars, a fused chain, 16-bit storage rounding once, shape and memory-space
// errors, in-place updates, threaded evaluation, and proof that evaluation allocates nothing.
#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <new>
#include <random>

#include "gecko/exec/cpu_executor.hpp"
#include "gecko/expr/expr.hpp"

using namespace gecko;
using namespace gecko::expr;

// Counts every heap allocation made while `g_counting` is set; the whole executable shares it.
namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocations{0};

void* counted_alloc(std::size_t n, std::size_t align) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1);
  n = n ? n : 1;
  void* p = align <= alignof(std::max_align_t) ? std::malloc(n)
                                               : std::aligned_alloc(align, (n + align - 1) / align * align);
  if (!p) throw std::bad_alloc();
  return p;
}

// Allocations made by `f`, which runs with counting on.
template <class F>
long allocations_during(F&& f) {
  g_allocations = 0;
  g_counting = true;
  f();
  g_counting = false;
  return g_allocations.load();
}
}  // namespace

void* operator new(std::size_t n) { return counted_alloc(n, 0); }
void* operator new[](std::size_t n) { return counted_alloc(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) { return counted_alloc(n, std::size_t(a)); }
void* operator new[](std::size_t n, std::align_val_t a) { return counted_alloc(n, std::size_t(a)); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace {

// Normal entries, shifted by `offset` (a positive offset keeps divisors away from zero).
template <class T>
Tensor<T> random_tensor(const Shape& shape, std::uint64_t seed, double offset = 0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  Tensor<T> x(shape);
  for (auto& e : x.span()) e = T(float(offset + (offset ? std::abs(normal(rng)) : normal(rng))));
  return x;
}

// CHECKs out[i] == ref(i) bit for bit, reporting the first differing element.
template <class T, class Ref>
void check_exact(const std::string& what, const Tensor<T>& out, Ref ref) {
  for (std::int64_t i = 0; i < out.size(); ++i) {
    const T want = ref(i);
    if (!(out[i] == want)) {
      INFO(what, ": element ", i, " is ", double(out[i]), ", the plain loop gives ", double(want));
      CHECK(out[i] == want);
      return;
    }
  }
}

// CHECKs |out[i] - ref(i)| <= ulps * eps * |ref(i)| everywhere.
template <class T, class Ref>
void check_ulps(const std::string& what, const Tensor<T>& out, Ref ref, double ulps) {
  double worst = 0;
  for (std::int64_t i = 0; i < out.size(); ++i) {
    const double want = double(ref(i)), diff = std::abs(double(out[i]) - want);
    if (diff == 0) continue;
    const double err = diff / (std::abs(want) * double(std::numeric_limits<T>::epsilon()));
    worst = std::max(worst, std::isnan(err) ? std::numeric_limits<double>::infinity() : err);
  }
  INFO(what, ": worst error ", worst, " eps relative (allowed ", ulps, ")");
  CHECK(worst <= ulps);
}

const CpuExecutor cpu{};

}  // namespace

TEST_CASE_TEMPLATE("expr: + - * / between tensors match a plain loop", T, float, double) {
  const auto x = random_tensor<T>({2, 3, 5}, 1);
  const auto y = random_tensor<T>({2, 3, 5}, 2, 0.5);
  Tensor<T> out({2, 3, 5});
  run(assign(out, input(x) + input(y)), cpu);
  check_exact("x + y", out, [&](auto i) { return T(x[i] + y[i]); });
  run(assign(out, input(x) - input(y)), cpu);
  check_exact("x - y", out, [&](auto i) { return T(x[i] - y[i]); });
  run(assign(out, input(x) * input(y)), cpu);
  check_exact("x * y", out, [&](auto i) { return T(x[i] * y[i]); });
  run(assign(out, input(x) / input(y)), cpu);
  check_exact("x / y", out, [&](auto i) { return T(x[i] / y[i]); });
}

TEST_CASE_TEMPLATE("expr: scalars on either side and as a leaf of their own", T, float, double) {
  const auto x = random_tensor<T>({4, 7}, 3);
  const T s = T(2.5);
  Tensor<T> out({4, 7});
  run(assign(out, input(x) + 2.5), cpu);
  check_exact("x + 2.5", out, [&](auto i) { return T(x[i] + s); });
  run(assign(out, 2.5 - input(x)), cpu);
  check_exact("2.5 - x", out, [&](auto i) { return T(s - x[i]); });
  run(assign(out, input(x) * 2.5f), cpu);
  check_exact("x * 2.5", out, [&](auto i) { return T(x[i] * s); });
  run(assign(out, 2.5 / input(x)), cpu);
  check_exact("2.5 / x", out, [&](auto i) { return T(s / x[i]); });
  run(assign(out, input(x) / 2.5), cpu);
  check_exact("x / 2.5", out, [&](auto i) { return T(x[i] / s); });
  run(assign(out, scalar(s)), cpu);
  check_exact("fill with scalar", out, [&](auto) { return s; });
  run(assign(out, scalar(s) * scalar(T(2)) + input(x)), cpu);
  check_exact("scalar * scalar + x", out, [&](auto i) { return T(s * T(2) + x[i]); });
}

TEST_CASE_TEMPLATE("expr: unary minus, exp, sigmoid and silu match their definitions", T, float, double) {
  const auto x = random_tensor<T>({3, 11}, 4);
  Tensor<T> out({3, 11});
  const auto sigmoid_ref = [&](std::int64_t i) { return T(1) / (T(1) + std::exp(-x[i])); };
  run(assign(out, -input(x)), cpu);
  check_exact("-x", out, [&](auto i) { return T(-x[i]); });
  run(assign(out, exp(input(x))), cpu);
  check_exact("exp(x)", out, [&](auto i) { return T(std::exp(x[i])); });
  run(assign(out, sigmoid(input(x))), cpu);
  check_exact("sigmoid(x)", out, sigmoid_ref);
  run(assign(out, silu(input(x))), cpu);
  check_ulps("silu(x) against x * sigmoid(x)", out, [&](auto i) { return x[i] * sigmoid_ref(i); }, 2);
}

TEST_CASE("expr: sigmoid and silu saturate without overflow") {
  Tensor<float> x({4});
  x[0] = -200.f, x[1] = 200.f, x[2] = 0.f, x[3] = -88.f;
  Tensor<float> out({4});
  run(assign(out, sigmoid(input(x))), cpu);
  CHECK(out[0] == 0.f);
  CHECK(out[1] == 1.f);
  CHECK(out[2] == 0.5f);
  run(assign(out, silu(input(x))), cpu);
  CHECK(out[0] == 0.f);
  CHECK(out[1] == 200.f);
  CHECK(out[2] == 0.f);
  CHECK(std::isfinite(out[3]));
}

TEST_CASE_TEMPLATE("expr: a row vector broadcasts along the last dimension", T, float, double) {
  const auto x = random_tensor<T>({2, 3, 4}, 5);
  const auto b = random_tensor<T>({4}, 6);
  const auto c = random_tensor<T>({4}, 7);
  Tensor<T> out({2, 3, 4});
  run(assign(out, input(x) + row(b)), cpu);
  check_exact("x + row(b)", out, [&](auto i) { return T(x[i] + b[i % 4]); });
  run(assign(out, row(b) * input(x)), cpu);
  check_exact("row(b) * x", out, [&](auto i) { return T(b[i % 4] * x[i]); });
  run(assign(out, row(b)), cpu);
  check_exact("row(b) fills every row", out, [&](auto i) { return b[i % 4]; });
  run(assign(out, row(b) * row(c) - input(x)), cpu);
  check_exact("row(b) * row(c) - x", out, [&](auto i) { return T(b[i % 4] * c[i % 4] - x[i]); });
  // A rank-1 output is a single row.
  Tensor<T> vec({4});
  run(assign(vec, row(b) / row(c)), cpu);
  check_exact("row(b) / row(c) into (4)", vec, [&](auto i) { return T(b[i] / c[i]); });
}

TEST_CASE_TEMPLATE("expr: a fused chain of several ops matches the same chain written as a loop", T,
                   float, double) {
  const auto x = random_tensor<T>({5, 6, 8}, 8);
  const auto g = random_tensor<T>({5, 6, 8}, 9);
  const auto b = random_tensor<T>({8}, 10);
  Tensor<T> out({5, 6, 8});
  run(assign(out, silu(input(x) + row(b)) * sigmoid(input(g)) -
                      exp(-input(x)) / (input(g) * input(g) + 1) * 0.5),
      cpu);
  check_exact("fused chain", out, [&](auto i) {
    const T h = x[i] + b[i % 8];
    const T silu_h = h / (T(1) + std::exp(-h));
    const T sig_g = T(1) / (T(1) + std::exp(-g[i]));
    return T(silu_h * sig_g - std::exp(-x[i]) / (g[i] * g[i] + T(1)) * T(0.5));
  });
}

TEST_CASE_TEMPLATE("expr: 16-bit storage loads to float, computes in float and rounds once", T,
                   bfloat16, float16) {
  const auto x = random_tensor<T>({3, 16}, 11);
  const auto y = random_tensor<T>({3, 16}, 12);
  const auto b = random_tensor<T>({16}, 13);
  Tensor<T> out({3, 16});
  run(assign(out, silu(input(x) + row(b)) * input(y) + 1), cpu);
  const auto r = [](float v) { return float(T(v)); };  // one rounding to 16 bits
  int differs_from_rounding_every_op = 0;
  for (std::int64_t i = 0; i < out.size(); ++i) {
    const float h = float(x[i]) + float(b[i % 16]);
    const T want = T(h / (1.f + std::exp(-h)) * float(y[i]) + 1.f);
    INFO("element ", i);
    REQUIRE(out[i].bits == want.bits);
    const float h16 = r(h);
    const T every_op = T(r(r(h16 / r(1.f + r(std::exp(-h16)))) * float(y[i])) + 1.f);
    differs_from_rounding_every_op += every_op.bits != want.bits;
  }
  // The check above could tell: rounding after every op gives other bits on some elements.
  CHECK(differs_from_rounding_every_op > 0);
}

TEST_CASE("expr: mismatched shapes throw naming both shapes") {
  const Tensor<float> x({2, 3}), y({3, 2}), b({4}), m({2, 3});
  Tensor<float> out({2, 2});
  CHECK_THROWS_WITH_AS(input(x) + input(y), "expr +: operand shapes [2, 3] and [3, 2] do not match",
                       gecko::Error);
  CHECK_THROWS_WITH_AS(input(x) * row(b), "expr *: operand shapes [2, 3] and [..., 4] do not match",
                       gecko::Error);
  CHECK_THROWS_WITH_AS(silu(input(x)) - (input(m) / input(y)),
                       "expr /: operand shapes [2, 3] and [3, 2] do not match", gecko::Error);
  CHECK_THROWS_WITH_AS(assign(out, input(x) + 1.f),
                       "expr assign: output has shape [2, 2], expression has shape [2, 3]",
                       gecko::Error);
  CHECK_THROWS_WITH_AS(assign(out, row(b)),
                       "expr assign: output has shape [2, 2], expression has shape [..., 4]",
                       gecko::Error);
  CHECK_THROWS_WITH_AS(row(m), "expr row: expected a (F) vector, got shape [2, 3]", gecko::Error);
}

TEST_CASE("expr: non-contiguous views and device memory are refused") {
  Tensor<float> x({2, 3});
  const TensorView<const float> transposed(x.data(), Shape{3, 2}, Shape{1, 3}, Space::Host);
  CHECK_THROWS_WITH_AS(input(transposed),
                       "expr input: tensor of shape [3, 2] is not contiguous, strides [1, 3]",
                       gecko::Error);
  const TensorView<const float> on_device(x.data(), Shape{2, 3}, Space::Device);
  Tensor<float> out({2, 3});
  CHECK_THROWS_WITH_AS(run(assign(out, input(x) * input(on_device)), cpu),
                       "CpuExecutor: input tensor of shape [2, 3] is in device memory, expected host memory",
                       gecko::Error);
  const TensorView<float> out_on_device(out.data(), Shape{2, 3}, Space::Device);
  CHECK_THROWS_WITH_AS(run(assign(out_on_device, input(x)), cpu),
                       "CpuExecutor: output of shape [2, 3] is in device memory, expected host memory",
                       gecko::Error);
}

TEST_CASE("expr: the output may be one of the inputs (in-place update)") {
  auto x = random_tensor<float>({6, 5}, 14);
  const Tensor<float> before = x;
  const auto b = random_tensor<float>({5}, 15);
  run(assign(x, input(x) * 2.f + row(b)), cpu);
  check_exact("x = x * 2 + row(b)", x, [&](auto i) { return before[i] * 2.f + b[i % 5]; });
}

TEST_CASE("expr: rank-0 and empty outputs") {
  Tensor<float> s(Shape{});
  run(assign(s, scalar(1.5f) * 2.f), cpu);
  CHECK(s[0] == 3.f);
  const Tensor<float> b({4});
  Tensor<float> empty({0, 4});
  run(assign(empty, row(b) + 1.f), cpu);  // nothing to write, nothing read out of bounds
  CHECK(empty.size() == 0);
}

TEST_CASE("expr: worker threads give the single-threaded result, split on row boundaries") {
  const auto x = random_tensor<float>({37, 1001}, 16);
  const auto b = random_tensor<float>({1001}, 17);
  Tensor<float> one({37, 1001}), many({37, 1001}, std::numeric_limits<float>::quiet_NaN());
  const CpuExecutor threaded{.threads = 3, .min_per_thread = 1000};
  run(assign(one, silu(input(x) + row(b))), cpu);
  run(assign(many, silu(input(x) + row(b))), threaded);
  check_exact("3 workers, row leaf", many, [&](auto i) { return one[i]; });
  run(assign(one, exp(input(x)) - 1.f), cpu);
  run(assign(many, exp(input(x)) - 1.f), threaded);
  check_exact("3 workers, elementwise only", many, [&](auto i) { return one[i]; });
}

TEST_CASE("expr: a fused expression allocates no temporaries") {
  const auto x = random_tensor<float>({64, 256}, 18);
  const auto g = random_tensor<float>({64, 256}, 19);
  const auto b = random_tensor<float>({256}, 20);
  Tensor<float> out({64, 256}, std::numeric_limits<float>::quiet_NaN());
  // The hook sees allocations: building a tensor counts.
  CHECK(allocations_during([] { Tensor<float> t({8}); }) == 1);
  // Building and running a five-op expression over three inputs: no allocation at all.
  const long during_run = allocations_during([&] {
    run(assign(out, silu(input(x) + row(b)) * sigmoid(input(g)) + exp(-input(g)) * 0.5f), cpu);
  });
  CHECK(during_run == 0);
  check_exact("the evaluated result", out, [&](auto i) {
    const float h = x[i] + b[i % 256];
    return h / (1.f + std::exp(-h)) * (1.f / (1.f + std::exp(-g[i]))) + std::exp(-g[i]) * 0.5f;
  });
}
