// GEMMs: the linear layer (spec §1) on two of a block's projection shapes, and the normalised
// SwiGLU feed-forward built from three of them (spec §4.3 steps 15-17), each against the raw
// Eigen GEMMs of the same shapes into preallocated outputs (support/gemms.hpp).

#include "gecko/cpu/feed_forward.hpp"
#include "gecko/cpu/linear.hpp"

#include "support/common.hpp"
#include "support/gemms.hpp"
#include "support/work.hpp"

namespace gecko::bench {
namespace {

using T = float;

void add_linear(const std::string& op, const Sizes& s, std::int64_t in, std::int64_t out, bool bias) {
  add(op, "gecko", s, [=](benchmark::State& state) {
    const auto x = random_tensor<T>({s.B, s.L, in}, 13);
    const auto w = random_tensor<T>({out, in}, 14, 1.0 / std::sqrt(double(in)));
    const auto b = random_tensor<T>({out}, 15);
    for (auto _ : state) {
      auto y = cpu::linear(x, w, bias ? &b : nullptr);
      benchmark::DoNotOptimize(y.data());
    }
    report(state, work::linear(s.tokens(), in, out, bias));
  });
  add(op, "eigen_gemms", s, [=](benchmark::State& state) {
    ProjectionGemm gemm(s.tokens(), in, out);
    for (auto _ : state) {
      gemm.run();
      benchmark::DoNotOptimize(gemm.y.data());
      benchmark::ClobberMemory();
    }
    report(state, gemm.work());
  });
}

}  // namespace

void register_benchmarks() {
  for (const Sizes& s : kTiers) {
    add_linear("linear_wv", s, s.D, s.E, true);    // v = x̂·W_vᵀ + b_v
    add_linear("linear_wh2", s, s.E, s.D, false);  // o·W_h2ᵀ

    add("ffn", "gecko", s, [s](benchmark::State& state) {
      const auto x = random_tensor<T>({s.B, s.L, s.D}, 16);
      cpu::FeedForwardParams<T> p;
      p.norm_weight = random_tensor<T>({s.D}, 17, 0.1);
      p.norm_bias = random_tensor<T>({s.D}, 18, 0.1);
      p.fc1 = random_tensor<T>({s.F, s.D}, 19, 1.0 / std::sqrt(double(s.D)));
      p.fc3 = random_tensor<T>({s.F, s.D}, 20, 1.0 / std::sqrt(double(s.D)));
      p.fc2 = random_tensor<T>({s.D, s.F}, 21, 1.0 / std::sqrt(double(s.F)));
      for (auto _ : state) {
        auto y = cpu::feed_forward(x, x, p);
        benchmark::DoNotOptimize(y.data());
      }
      report(state, work::ffn(s));
    });
    add("ffn", "eigen_gemms", s, [s](benchmark::State& state) {
      const std::int64_t rows = s.tokens();
      std::vector<ProjectionGemm> gemms;
      gemms.emplace_back(rows, s.D, s.F);  // fc1
      gemms.emplace_back(rows, s.D, s.F);  // fc3
      gemms.emplace_back(rows, s.F, s.D);  // fc2
      for (auto _ : state) {
        for (auto& g : gemms) g.run();
        benchmark::DoNotOptimize(gemms.back().y.data());
        benchmark::ClobberMemory();
      }
      Work w;
      for (const auto& g : gemms) w.bytes += g.work().bytes, w.flops += g.work().flops;
      report(state, w);
    });
  }
}

}  // namespace gecko::bench
