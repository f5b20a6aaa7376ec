// Adaptive working memory (spec §11), a training/prefill call from a fresh stream (L a multiple
// of C, no segments): the op against the raw Eigen GEMMs of the chunked algorithm (§11.3) on the
// same shapes. Per (b, h) and chunk c >= 1: the read Φ_c·M (C×dk · dk×dv), the prediction
// Ψ_{c−1}·M (C×dk · dk×dv) and the update Ω·R (dk×C · C×dv); operands pre-laid out per head.

#include <Eigen/Core>

#include "gecko/cpu/working_memory.hpp"

#include "support/common.hpp"

namespace gecko::bench {
namespace {

using T = float;
using Rows = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Reads aq, ak, v; writes the output and the state (key window, memory, log normaliser).
// FLOPs per (b, h) and absorbed chunk (L/C − 1 of them): read 2·C·dk·dv, Ψ·M 2·C·dk·dv,
// R = V − Ψ·M C·dv, Ω·R 2·dk·C·dv, M += ρ(U − M) 3·dk·dv. Softmaxes and log-sum-exps not counted.
Work awm_work(const Sizes& s) {
  const double C = double(s.C), dk = double(s.dk()), dv = double(s.dv());
  const double absorbed = double(s.L / s.C - 1);
  Work w;
  w.bytes = bytes_of<T>(s.tokens() * (2 * s.S + 2 * s.E) +
                        s.B * s.H * (s.C * s.dk() + s.dk() * s.dv() + s.dk()));
  w.flops = double(s.B * s.H) * absorbed * (6 * C * dk * dv + C * dv + 3 * dk * dv);
  return w;
}

Work gemm_work(const Sizes& s) {
  const double absorbed = double(s.L / s.C - 1);
  Work w;
  w.bytes = bytes_of<T>(s.tokens() * (3 * s.S + 2 * s.E) + s.B * s.H * s.dk() * s.dv());
  w.flops = double(s.B * s.H) * absorbed * 6.0 * double(s.C * s.dk() * s.dv());
  return w;
}

}  // namespace

void register_benchmarks() {
  for (const Sizes& s : kTiers) {
    add("awm", "gecko", s, [s](benchmark::State& state) {
      const auto aq = random_tensor<T>({s.B, s.L, s.S}, 8);
      const auto ak = random_tensor<T>({s.B, s.L, s.S}, 9);
      const auto v = random_tensor<T>({s.B, s.L, s.E}, 10);
      for (auto _ : state) {
        cpu::WorkingMemoryState<T> st;  // fresh stream
        auto y = cpu::working_memory(aq, ak, v, Tensor<T>{}, st, cpu::WorkingMemorySegments{},
                                     int(s.H), s.C);
        benchmark::DoNotOptimize(y.data());
      }
      report(state, awm_work(s));
    });
    add("awm", "eigen_gemms", s, [s](benchmark::State& state) {
      const std::int64_t heads = s.B * s.H, C = s.C, dk = s.dk(), dv = s.dv();
      const Rows phi = Rows::Random(heads * s.L, dk), psi = Rows::Random(heads * s.L, dk);
      const Rows omega = Rows::Random(heads * dk, s.L);  // Ω of every chunk, (dk, L) per head
      const Rows v = Rows::Random(heads * s.L, dv), memory = Rows::Random(heads * dk, dv);
      Rows y(heads * s.L, dv), predicted(C, dv), update(dk, dv);
      for (auto _ : state) {
        for (std::int64_t h = 0; h < heads; ++h) {
          const auto M = memory.middleRows(h * dk, dk);
          for (std::int64_t c = 1; c < s.L / C; ++c) {
            const std::int64_t row = h * s.L + c * C, prev = row - C;
            y.middleRows(row, C).noalias() = phi.middleRows(row, C) * M;
            predicted.noalias() = psi.middleRows(prev, C) * M;
            update.noalias() = omega.block(h * dk, (c - 1) * C, dk, C) * v.middleRows(prev, C);
          }
        }
        benchmark::DoNotOptimize(y.data());
        benchmark::DoNotOptimize(predicted.data());
        benchmark::DoNotOptimize(update.data());
        benchmark::ClobberMemory();
      }
      report(state, gemm_work(s));
    });
  }
}

}  // namespace gecko::bench
