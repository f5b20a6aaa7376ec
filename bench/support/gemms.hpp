#pragma once
// The raw Eigen GEMMs of an op or layer, on the same shapes, into preallocated outputs: the
// baseline a composite op is held against ("within 1.5x of the time of its own GEMMs"). Random
// operands; only the products are timed.

#include <Eigen/Core>

#include <vector>

#include "support/common.hpp"

namespace gecko::bench {

using Rows = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// y (rows, out) = x (rows, in) · Wᵀ.
struct ProjectionGemm {
  Rows x, w, y;
  ProjectionGemm(std::int64_t rows, std::int64_t in, std::int64_t out)
      : x(Rows::Random(rows, in)), w(Rows::Random(out, in)), y(rows, out) {}
  void run() { y.noalias() = x * w.transpose(); }
  Work work() const {
    return {bytes_of<float>(x.size() + w.size() + y.size()),
            2.0 * double(x.rows()) * double(x.cols()) * double(y.cols())};
  }
};

// Sliding chunk attention as the chunked algorithm's dense GEMMs (§10.3), per (b, h) and chunk c:
// logits Q_c·K_wᵀ (C × W) and P·V_w (C × dv), W = C for c = 0 and 2C after; masked entries
// included, so the FLOPs are those of the dense blocks.
struct AttentionGemms {
  std::int64_t heads, L, C;
  Rows q, k, v, logits, y;  // (heads·L, d) each head contiguous; logits (C, 2C)
  explicit AttentionGemms(const Sizes& s)
      : heads(s.B * s.H), L(s.L), C(s.C), q(Rows::Random(heads * L, s.dk())),
        k(Rows::Random(heads * L, s.dk())), v(Rows::Random(heads * L, s.dv())), logits(C, 2 * C),
        y(heads * L, s.dv()) {}
  void run() {
    for (std::int64_t h = 0; h < heads; ++h)
      for (std::int64_t c = 0; c < L / C; ++c) {
        const std::int64_t lo = std::max<std::int64_t>(0, c - 1) * C, W = (c + 1) * C - lo;
        const std::int64_t row = h * L;
        auto P = logits.leftCols(W);
        P.noalias() = q.middleRows(row + c * C, C) * k.middleRows(row + lo, W).transpose();
        y.middleRows(row + c * C, C).noalias() = P * v.middleRows(row + lo, W);
      }
  }
  Work work() const {
    const std::int64_t chunks = L / C;
    const double windows = double(C) + double(chunks - 1) * double(2 * C);  // Σ_c W
    return {bytes_of<float>(q.size() + k.size() + v.size() + y.size()),
            2.0 * double(heads) * double(C) * windows * double(q.cols() + v.cols())};
  }
};

// The working memory's GEMMs (§11.3), per (b, h) and chunk c >= 1: the read Φ_c·M
// (C×dk · dk×dv), the prediction Ψ_{c−1}·M (C×dk · dk×dv) and the update Ω·R (dk×C · C×dv).
struct MemoryGemms {
  std::int64_t heads, L, C, dk, dv;
  Rows phi, psi, omega, v, memory, y, predicted, update;
  explicit MemoryGemms(const Sizes& s)
      : heads(s.B * s.H), L(s.L), C(s.C), dk(s.dk()), dv(s.dv()), phi(Rows::Random(heads * L, dk)),
        psi(Rows::Random(heads * L, dk)), omega(Rows::Random(heads * dk, L)),
        v(Rows::Random(heads * L, dv)), memory(Rows::Random(heads * dk, dv)), y(heads * L, dv),
        predicted(C, dv), update(dk, dv) {}
  void run() {
    for (std::int64_t h = 0; h < heads; ++h) {
      const auto M = memory.middleRows(h * dk, dk);
      for (std::int64_t c = 1; c < L / C; ++c) {
        const std::int64_t row = h * L + c * C, prev = row - C;
        y.middleRows(row, C).noalias() = phi.middleRows(row, C) * M;
        predicted.noalias() = psi.middleRows(prev, C) * M;
        update.noalias() = omega.block(h * dk, (c - 1) * C, dk, C) * v.middleRows(prev, C);
      }
    }
    benchmark::DoNotOptimize(predicted.data());
    benchmark::DoNotOptimize(update.data());
  }
  Work work() const {
    return {bytes_of<float>(phi.size() + psi.size() + omega.size() + v.size() + memory.size() + y.size()),
            double(heads) * double(L / C - 1) * 6.0 * double(C * dk * dv)};
  }
};

// The projections of one Gecko block (§4.3): wz, wv, wr, wh1, wh2 and the FFN's fc1, fc3, fc2.
struct BlockProjectionGemms {
  std::vector<ProjectionGemm> gemms;
  explicit BlockProjectionGemms(const Sizes& s) {
    const std::int64_t rows = s.tokens();
    gemms.emplace_back(rows, s.D, s.S);  // wz
    gemms.emplace_back(rows, s.D, s.E);  // wv
    gemms.emplace_back(rows, s.D, s.E);  // wr
    gemms.emplace_back(rows, s.D, s.D);  // wh1
    gemms.emplace_back(rows, s.E, s.D);  // wh2
    gemms.emplace_back(rows, s.D, s.F);  // fc1
    gemms.emplace_back(rows, s.D, s.F);  // fc3
    gemms.emplace_back(rows, s.F, s.D);  // fc2
  }
  void run() {
    for (auto& g : gemms) g.run();
  }
  Work work() const {
    Work w;
    for (const auto& g : gemms) w.bytes += g.work().bytes, w.flops += g.work().flops;
    return w;
  }
};

// Every GEMM of one Gecko block: its projections, the attention's and the working memory's.
struct BlockGemms {
  BlockProjectionGemms projections;
  AttentionGemms attention;
  MemoryGemms memory;
  explicit BlockGemms(const Sizes& s) : projections(s), attention(s), memory(s) {}
  void run() {
    projections.run();
    attention.run();
    memory.run();
  }
  Work work() const {
    Work w;
    for (const Work& part : {projections.work(), attention.work(), memory.work()})
      w.bytes += part.bytes, w.flops += part.flops;
    return w;
  }
};

// Registers "<op>/<variant>/<tier>": the GEMMs of a Gemms type above (constructed from the tier,
// with run() and work()), timed alone as the op's baseline.
template <class Gemms>
void add_gemms(const std::string& op, const std::string& variant, const Sizes& s) {
  add(op, variant, s, [s](benchmark::State& state) {
    Gemms gemms(s);
    for (auto _ : state) {
      gemms.run();
      benchmark::ClobberMemory();
    }
    report(state, gemms.work());
  });
}

}  // namespace gecko::bench
