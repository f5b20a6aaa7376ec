#pragma once
// Shared pieces of the benchmark binaries: the shape tiers, random inputs, the work counters every
// benchmark reports, the memory-copy baseline and a check that a baseline computes what the op
// computes. Counting rules: bench/README.md.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gecko/core/tensor.hpp"

namespace gecko::bench {

// One shape tier. Names follow spec §1; the 7B layer shapes are for GPU runs (bench/README.md).
struct Sizes {
  const char* name;
  std::int64_t B, L;  // batch, tokens per call
  std::int64_t D;     // model dim
  std::int64_t S, E;  // z dim (H·dk), value dim (H·dv)
  std::int64_t H;     // heads
  std::int64_t F;     // FFN hidden dim
  std::int64_t N;     // CEMA order
  std::int64_t C;     // chunk size
  std::int64_t G;     // timestep-norm groups
  std::int64_t V;     // vocabulary (model benchmark)
  benchmark::TimeUnit unit;

  std::int64_t dk() const { return S / H; }
  std::int64_t dv() const { return E / H; }
  std::int64_t tokens() const { return B * L; }
};

// "small": CI-sized (the smoke tests run only these). "medium": a 1/8-width Gecko layer
// (D 512 vs 4096, dk 32, dv 256, C 256) over 8 chunks, sized for a 2-core CPU.
inline constexpr Sizes kSmall{"small", 2, 256, 64, 32, 128, 2, 128, 16, 16, 4, 256,
                              benchmark::kMicrosecond};
inline constexpr Sizes kMedium{"medium", 1, 2048, 512, 128, 1024, 4, 1024, 16, 256, 8, 1024,
                               benchmark::kMillisecond};
inline constexpr Sizes kTiers[] = {kSmall, kMedium};

// Bytes an iteration must move (inputs read once + outputs written once) and the FLOPs it must do.
struct Work {
  double bytes = 0;
  double flops = 0;
};

template <class T>
constexpr double bytes_of(std::int64_t elements) {
  return double(elements) * double(sizeof(T));
}

// Declares the iteration's work: bytes_per_second and FLOP/s (FLOPs per iteration over time).
inline void report(benchmark::State& state, const Work& w) {
  state.SetBytesProcessed(std::int64_t(w.bytes) * std::int64_t(state.iterations()));
  if (w.flops > 0)
    state.counters["FLOP/s"] =
        benchmark::Counter(w.flops, benchmark::Counter::kIsIterationInvariantRate);
}

// Registers "<op>/<variant>/<tier>". The summary (support/main.cpp) pairs the variants of one
// op and tier: "gecko" is the op under test, the others are its baselines.
template <class Fn>
benchmark::internal::Benchmark* add(const std::string& op, const std::string& variant,
                                    const Sizes& s, Fn&& fn) {
  const std::string name = op + "/" + variant + "/" + s.name;
  auto* b = benchmark::RegisterBenchmark(name.c_str(), std::forward<Fn>(fn));
  b->Unit(s.unit);
  return b;
}

// Baseline of a bandwidth-bound op: std::memcpy of n bytes reads n and writes n, so copying
// half of the op's compulsory bytes moves exactly as many bytes as the op must.
inline void add_memcpy(const std::string& op, const Sizes& s, double op_bytes) {
  add(op, "memcpy", s, [op_bytes](benchmark::State& state) {
    const std::size_t n = std::size_t(op_bytes / 2);
    std::vector<char> src(n, 1), dst(n, 0);
    for (auto _ : state) {
      std::memcpy(dst.data(), src.data(), n);
      benchmark::DoNotOptimize(dst.data());
      benchmark::ClobberMemory();
    }
    report(state, {2.0 * double(n), 0});
  });
}

template <class T>
Tensor<T> random_tensor(const Shape& shape, std::uint32_t seed, double scale = 1.0) {
  Tensor<T> t(shape);
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(0.0, scale);
  for (T& v : t.span()) v = T(normal(rng));
  return t;
}

// True when max|a − b| <= tol · max|b|; otherwise marks the benchmark as failed (the binary then
// exits non-zero), so a baseline can never silently time something other than the op's math.
template <class T>
bool same_result(benchmark::State& state, const Tensor<T>& a, const Tensor<T>& b, double tol) {
  if (!(a.shape() == b.shape())) {
    state.SkipWithError("baseline output shape differs from the op's");
    return false;
  }
  double diff = 0, peak = 0;
  for (std::int64_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(double(a[i]) - double(b[i])));
    peak = std::max(peak, std::abs(double(b[i])));
  }
  if (!(diff <= tol * peak)) {  // also catches NaN
    state.SkipWithError("baseline output differs from the op's");
    return false;
  }
  return true;
}

// Each binary defines this for its op family; main() calls it once before running.
void register_benchmarks();

}  // namespace gecko::bench
