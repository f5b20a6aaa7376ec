// GEMMs: the linear layer (spec §1) on two of a block's projection shapes, and the normalised
// SwiGLU feed-forward built from three of them (spec §4.3 steps 15-17), each against the raw
// Eigen GEMMs of the same shapes into preallocated outputs.

#include <Eigen/Core>

#include "gecko/cpu/feed_forward.hpp"
#include "gecko/cpu/linear.hpp"

#include "support/common.hpp"

namespace gecko::bench {
namespace {

using T = float;
using Rows = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// y (rows, out) = x (rows, in) · Wᵀ (+ b): reads x, W (and b), writes y; 2·rows·in·out FLOPs
// (the bias adds rows·out).
Work linear_work(std::int64_t rows, std::int64_t in, std::int64_t out, bool bias) {
  return {bytes_of<T>(rows * in + out * in + (bias ? out : 0) + rows * out),
          2.0 * double(rows) * double(in) * double(out) + (bias ? double(rows * out) : 0.0)};
}

void add_linear(const std::string& op, const Sizes& s, std::int64_t in, std::int64_t out, bool bias) {
  const std::int64_t rows = s.tokens();
  add(op, "gecko", s, [=](benchmark::State& state) {
    const auto x = random_tensor<T>({s.B, s.L, in}, 13);
    const auto w = random_tensor<T>({out, in}, 14, 1.0 / std::sqrt(double(in)));
    const auto b = random_tensor<T>({out}, 15);
    for (auto _ : state) {
      auto y = cpu::linear(x, w, bias ? &b : nullptr);
      benchmark::DoNotOptimize(y.data());
    }
    report(state, linear_work(rows, in, out, bias));
  });
  add(op, "eigen_gemms", s, [=](benchmark::State& state) {
    const Rows x = Rows::Random(rows, in), w = Rows::Random(out, in);
    Rows y(rows, out);
    for (auto _ : state) {
      y.noalias() = x * w.transpose();
      benchmark::DoNotOptimize(y.data());
      benchmark::ClobberMemory();
    }
    report(state, linear_work(rows, in, out, false));
  });
}

// Reads x, the residual and the parameters, writes the output. FLOPs: the three GEMMs
// 6·rows·D·F, the layer norm 7·D + 4 per row, silu 4 and the gate 1 per hidden element
// (exp and division one each), the residual add D per row.
Work ffn_work(const Sizes& s) {
  const double rows = double(s.tokens()), D = double(s.D), F = double(s.F);
  return {bytes_of<T>(3 * s.tokens() * s.D + 3 * s.D * s.F + 2 * s.D),
          6 * rows * D * F + rows * (7 * D + 4) + 5 * rows * F + rows * D};
}

Work ffn_gemm_work(const Sizes& s) {
  const double rows = double(s.tokens()), D = double(s.D), F = double(s.F);
  return {bytes_of<T>(2 * s.tokens() * s.D + 3 * s.D * s.F + 2 * s.tokens() * s.F),
          6 * rows * D * F};
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
      report(state, ffn_work(s));
    });
    add("ffn", "eigen_gemms", s, [s](benchmark::State& state) {
      const std::int64_t rows = s.tokens();
      const Rows x = Rows::Random(rows, s.D), fc1 = Rows::Random(s.F, s.D),
                 fc3 = Rows::Random(s.F, s.D), fc2 = Rows::Random(s.D, s.F);
      Rows h1(rows, s.F), h3(rows, s.F), y(rows, s.D);
      for (auto _ : state) {
        h1.noalias() = x * fc1.transpose();
        h3.noalias() = x * fc3.transpose();
        y.noalias() = h1 * fc2.transpose();
        benchmark::DoNotOptimize(h3.data());
        benchmark::DoNotOptimize(y.data());
        benchmark::ClobberMemory();
      }
      report(state, ffn_gemm_work(s));
    });
  }
}

}  // namespace gecko::bench
