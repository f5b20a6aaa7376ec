// Sliding chunk attention (spec §10), a training/prefill call from a fresh stream (L a multiple of
// C, no segments): the op against the raw Eigen GEMMs of the chunked algorithm (§10.3) on the
// same shapes: per (b, h, chunk c) logits Q_c·K_wᵀ (C × W) and P·V_w (C × dv), W = C for c = 0
// and 2C after, operands pre-laid out per head.

#include <Eigen/Core>

#include "gecko/cpu/sliding_chunk_attention.hpp"

#include "support/common.hpp"

namespace gecko::bench {
namespace {

using T = float;
using Rows = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Reads q, k, v, writes y. FLOPs: 2·(dk + dv) per visible (query, key) pair, i.e. the causal
// window of §10.2: a query at t sees t − max(0, (c−1)C) + 1 keys; the softmax is not counted.
Work sca_work(const Sizes& s) {
  double pairs = 0;
  for (std::int64_t t = 0; t < s.L; ++t)
    pairs += double(t - std::max<std::int64_t>(0, (t / s.C - 1) * s.C) + 1);
  Work w;
  w.bytes = bytes_of<T>(s.tokens() * (2 * s.S + 2 * s.E));
  w.flops = 2.0 * double(s.B * s.H) * pairs * double(s.dk() + s.dv());
  return w;
}

// The dense GEMMs: C·W logits and C·W·dv products per (b, h, c), masked entries included.
Work gemm_work(const Sizes& s) {
  const std::int64_t chunks = s.L / s.C;
  const double windows = double(s.C) + double(chunks - 1) * double(2 * s.C);  // Σ_c W
  Work w;
  w.bytes = bytes_of<T>(s.tokens() * (2 * s.S + 2 * s.E));
  w.flops = 2.0 * double(s.B * s.H) * double(s.C) * windows * double(s.dk() + s.dv());
  return w;
}

}  // namespace

void register_benchmarks() {
  for (const Sizes& s : kTiers) {
    const double scale = 1.0 / std::sqrt(double(s.dk()));  // Γ's 1/√dk on q and on k
    add("sca", "gecko", s, [s, scale](benchmark::State& state) {
      const auto q = random_tensor<T>({s.B, s.L, s.H, s.dk()}, 5, scale);
      const auto k = random_tensor<T>({s.B, s.L, s.H, s.dk()}, 6, scale);
      const auto v = random_tensor<T>({s.B, s.L, s.H, s.dv()}, 7);
      for (auto _ : state) {
        auto y = cpu::sliding_chunk_attention(q, k, v, cpu::AttentionWindow<T>{}, nullptr, nullptr,
                                              s.C, 0);
        benchmark::DoNotOptimize(y.data());
      }
      report(state, sca_work(s));
    });
    add("sca", "eigen_gemms", s, [s, scale](benchmark::State& state) {
      // (B·H) heads of (L, d), each contiguous.
      const std::int64_t heads = s.B * s.H, C = s.C;
      const Rows q = Rows::Random(heads * s.L, s.dk()) * T(scale);
      const Rows k = Rows::Random(heads * s.L, s.dk()) * T(scale);
      const Rows v = Rows::Random(heads * s.L, s.dv());
      Rows logits(C, 2 * C), y(heads * s.L, s.dv());
      for (auto _ : state) {
        for (std::int64_t h = 0; h < heads; ++h)
          for (std::int64_t c = 0; c < s.L / C; ++c) {
            const std::int64_t lo = std::max<std::int64_t>(0, c - 1) * C, W = (c + 1) * C - lo;
            const std::int64_t row = h * s.L;
            auto P = logits.leftCols(W);
            P.noalias() = q.middleRows(row + c * C, C) * k.middleRows(row + lo, W).transpose();
            y.middleRows(row + c * C, C).noalias() = P * v.middleRows(row + lo, W);
          }
        benchmark::DoNotOptimize(y.data());
        benchmark::ClobberMemory();
      }
      report(state, gemm_work(s));
    });
  }
}

}  // namespace gecko::bench
