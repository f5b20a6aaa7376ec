#pragma once
// Adaptive working memory (AWM), spec §11: per batch row and head a matrix memory M (dk × dv)
// with a running log normaliser Λ (dk). Every completed chunk is absorbed with a delta rule;
// a token of chunk c reads φᵀ M^(c−2), the memory after chunks 0 … c−2 (chunk c−1 is still
// covered by sliding chunk attention). Two schedules compute the same thing:
//   * chunked (training / prefill, L a multiple of C, §11.3): read chunk c, then absorb the
//     chunk before it (the cached window for c = 0);
//   * tail / step (L < C, §11.4): read the new tokens, then absorb the window's first chunk when
//     the window (cached ++ new) reaches 2C tokens.
// With segments, a chunk writes only the tokens of its last token's document, the memory resets
// when the absorbed chunk's document differs from the memory's, and reads from a memory of
// another document are zero. Reading the memory as "belonging to the document of its last
// absorbed chunk" keeps every batch row's masks right whatever the call schedule (the reference
// scrambles them for single-chunk calls, §14 B7).

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "gecko/core/error.hpp"
#include "gecko/core/shape.hpp"
#include "gecko/core/tensor.hpp"
#include "gecko/core/threads.hpp"
#include "gecko/cpu/working_memory_call.hpp"

namespace gecko::cpu {

// Streaming state of one AWM layer; all empty = fresh stream.
template <class T>
struct WorkingMemoryState {
  Tensor<T> key;       // (B, H, Lk, dk) raw ak of the cached window
  Tensor<T> memory;    // (B, H, dk, dv); empty = no memory yet
  Tensor<T> log_norm;  // (B, H, dk); -inf while nothing absorbed
};

// Document ids (§4.2); all nullptr = no segments.
struct WorkingMemorySegments {
  const Tensor<std::int64_t>* seg = nullptr;         // (B, L) ids of the call's tokens
  const Tensor<std::int64_t>* window_seg = nullptr;  // (B, Lk) ids of the cached window
  const Tensor<std::int64_t>* mem_seg = nullptr;     // (B) document of the memory ("prev_segment_count")
};

namespace awm {

template <class T>
using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using Vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;
// One head's rows of a (…, rows, H·d) tensor: a (rows × d) block whose rows are `stride` apart.
template <class T>
using HeadRows = Eigen::Map<Matrix<T>, 0, Eigen::OuterStride<>>;
template <class T>
using ConstHeadRows = Eigen::Map<const Matrix<T>, 0, Eigen::OuterStride<>>;

// Rows [begin, begin + n) of such a block.
template <class M>
M middle_rows(M x, Eigen::Index begin, Eigen::Index n) {
  return {x.data() + begin * x.outerStride(), n, x.cols(), Eigen::OuterStride<>(x.outerStride())};
}

template <class T>
constexpr T minus_inf = -std::numeric_limits<T>::infinity();

// Softmax over the features of every row of y, in place, max subtracted first.
template <class T>
void softmax_rows(Matrix<T>& y) {
  for (Eigen::Index r = 0; r < y.rows(); ++r) {
    y.row(r).array() = (y.row(r).array() - y.row(r).maxCoeff()).exp();
    y.row(r) /= y.row(r).sum();
  }
}

// φ of queries, ψ of keys: the feature softmax of every row.
template <class T, class Derived>
Matrix<T> feature_softmax(const Eigen::MatrixBase<Derived>& x) {
  Matrix<T> y = x;
  softmax_rows(y);
  return y;
}

// log(e^a + e^b); exact when a side is -inf (the normaliser of an empty memory).
template <class T>
T logaddexp(T a, T b) {
  const T hi = std::max(a, b), lo = std::min(a, b);
  if (hi == minus_inf<T>) return hi;
  return hi + std::log1p(std::exp(lo - hi));
}

// One head's memory (M, Λ).
template <class T>
struct HeadMemory {
  Matrix<T> M;         // (dk, dv)
  Vector<T> log_norm;  // (dk)

  static HeadMemory empty(Eigen::Index dk, Eigen::Index dv) {
    return {Matrix<T>::Zero(dk, dv), Vector<T>::Constant(dk, minus_inf<T>)};
  }
  void clear() {
    M.setZero();
    log_norm.setConstant(minus_inf<T>);
  }
};

// Intermediates of absorb_chunk, kept between calls so that absorbing allocates nothing.
template <class T>
struct AbsorbScratch {
  Matrix<T> omega;     // (dk, C) ω
  Matrix<T> psi;       // (C, dk) ψ
  Matrix<T> residual;  // (C, dv) R
  Matrix<T> update;    // (dk, dv) U
  Vector<T> ell, rho;  // (dk) ℓ, ρ
};

// Absorbs one chunk into the memory (§11.2); returns ρ (dk), which stays in `w`.
//   key (C, dk): raw ak of the chunk; value (C, dv); seg: the chunk's C document ids (empty = no
//   segments), only tokens of the last token's document are admitted; reset: the chunk's
//   document differs from the memory's, so the memory starts over.
template <class T, class KeyDerived, class ValueDerived>
const Vector<T>& absorb_chunk(HeadMemory<T>& mem, const Eigen::MatrixBase<KeyDerived>& key,
                              const Eigen::MatrixBase<ValueDerived>& value,
                              std::span<const std::int64_t> seg, bool reset, AbsorbScratch<T>& w) {
  const Eigen::Index C = key.rows();
  if (reset) mem.clear();

  // ℓ[s] = log Σ_{t∈A} exp(κ_t[s]);  ω[s, t] = exp(κ_t[s] − ℓ[s]) on A, 0 elsewhere (dk, C).
  // Computed on κᵀ, each feature's tokens contiguous, as e = exp(κ − max_A κ) (0 off A), then
  // ℓ = max + log Σ e and ω = e / Σ e.
  w.omega = key.transpose();
  if (!seg.empty())
    for (Eigen::Index t = 0; t < C; ++t)
      if (seg[std::size_t(t)] != seg.back()) w.omega.col(t).setConstant(minus_inf<T>);
  w.ell.resize(w.omega.rows());
  for (Eigen::Index s = 0; s < w.omega.rows(); ++s) {
    auto e = w.omega.row(s).array();
    const T peak = e.maxCoeff();  // the last token is always admitted: finite
    e = (e - peak).exp();
    const T sum = e.sum();
    e /= sum;
    w.ell[s] = peak + std::log(sum);
  }

  // Λ' = logaddexp(Λ, ℓ);  ρ = exp(ℓ − Λ'): the chunk's share of the total weight, in (0, 1]
  w.rho.resize(w.ell.size());
  for (Eigen::Index s = 0; s < w.ell.size(); ++s) {
    const T total = logaddexp(mem.log_norm[s], w.ell[s]);
    w.rho[s] = std::exp(w.ell[s] - total);
    mem.log_norm[s] = total;
  }

  // Delta rule: write what the memory does not already predict, R_t = v_t − ψ_tᵀ M  (C, dv)
  w.psi = key;
  softmax_rows(w.psi);
  w.residual = value;
  w.residual.noalias() -= w.psi * mem.M;
  w.update.noalias() = w.omega * w.residual;  // U (dk, dv)
  mem.M += w.rho.asDiagonal() * (w.update - mem.M);
  return w.rho;
}

// absorb_chunk with its own scratch; returns ρ (dk).
template <class T, class KeyDerived, class ValueDerived>
Vector<T> absorb_chunk(HeadMemory<T>& mem, const Eigen::MatrixBase<KeyDerived>& key,
                       const Eigen::MatrixBase<ValueDerived>& value,
                       std::span<const std::int64_t> seg, bool reset) {
  AbsorbScratch<T> w;
  return absorb_chunk(mem, key, value, seg, reset, w);
}

// o_t = φ_tᵀ M for the given rows, zero where the token's document is not the memory's.
template <class T, class PhiDerived>
void read_memory(HeadRows<T> out, const Eigen::MatrixBase<PhiDerived>& phi, const HeadMemory<T>& mem,
                 std::span<const std::int64_t> seg, std::optional<std::int64_t> mem_doc) {
  out.noalias() = phi * mem.M;
  if (!mem_doc) return;
  for (Eigen::Index t = 0; t < out.rows(); ++t)
    if (seg[std::size_t(t)] != *mem_doc) out.row(t).setZero();
}

// Inputs of one (batch row, head): the cached window followed by the call's tokens, read in
// place. An absorbed chunk never straddles the two (a chunked call's window is exactly one chunk;
// a step absorbs the window's first chunk), so its rows are a block of one of them.
template <class T>
struct HeadSequence {
  ConstHeadRows<T> phi;                       // (L, dk) read weights of the call's tokens
  ConstHeadRows<T> window_key, window_value;  // (Lk, dk), (Lk, dv)
  ConstHeadRows<T> key, value;                // (L, dk), (L, dv) raw ak and v of the call
  std::span<const std::int64_t> seg;          // (Lk + L) document ids; empty = no segments
  std::optional<std::int64_t> mem_doc;        // document of the memory, where known

  Eigen::Index window() const { return window_key.rows(); }
  Eigen::Index length() const { return window() + key.rows(); }
  std::span<const std::int64_t> seg_of(Eigen::Index begin, Eigen::Index n) const {
    return seg.empty() ? seg : seg.subspan(std::size_t(begin), std::size_t(n));
  }
  // Rows [begin, begin + n) of window ++ call.
  std::pair<ConstHeadRows<T>, ConstHeadRows<T>> rows(Eigen::Index begin, Eigen::Index n) const {
    if (begin >= window()) return {middle_rows(key, begin - window(), n), middle_rows(value, begin - window(), n)};
    require(begin + n <= window(), "working_memory: rows [", begin, ", ", begin + n,
            ") straddle the window and the call");
    return {middle_rows(window_key, begin, n), middle_rows(window_value, begin, n)};
  }
};

// §11.3 for one head: chunk c of the call reads the memory, then the chunk before it (the cached
// window for c = 0) is absorbed. A fresh stream creates the empty memory at chunk 0 instead.
template <class T>
void chunked_head(HeadSequence<T>& x, std::optional<HeadMemory<T>>& mem, HeadRows<T> out,
                  Eigen::Index chunk, AbsorbScratch<T>& w) {
  const Eigen::Index C = chunk, chunks = x.phi.rows() / C;
  for (Eigen::Index c = 0; c < chunks; ++c) {
    const Eigen::Index row = c * C, pos = x.window() + row;  // in the call; in window ++ call
    if (!mem) {
      middle_rows(out, row, C).setZero();
      mem = HeadMemory<T>::empty(x.key.cols(), x.value.cols());
      continue;
    }
    read_memory<T>(middle_rows(out, row, C), middle_rows(x.phi, row, C), *mem, x.seg_of(pos, C),
                   x.mem_doc);
    const Eigen::Index prev = pos - C;  // the chunk before chunk c
    const auto prev_seg = x.seg_of(prev, C);
    const std::optional<std::int64_t> prev_doc =
        prev_seg.empty() ? std::nullopt : std::optional(prev_seg.back());
    const bool reset = x.mem_doc && prev_doc && *x.mem_doc != *prev_doc;
    const auto [key, value] = x.rows(prev, C);
    absorb_chunk(*mem, key, value, prev_seg, reset, w);
    x.mem_doc = prev_doc;
  }
}

// §11.4 for one head: the new tokens read the memory (zero while none exists); when the window
// holds 2C tokens its first chunk is absorbed, when it first holds C the empty memory is created.
template <class T>
void step_head(HeadSequence<T>& x, std::optional<HeadMemory<T>>& mem, HeadRows<T> out,
               Eigen::Index chunk, AbsorbScratch<T>& w) {
  const Eigen::Index C = chunk, W = x.length();
  if (mem)
    read_memory<T>(out, x.phi, *mem, x.seg_of(x.window(), x.phi.rows()), x.mem_doc);
  else
    out.setZero();
  if (W % C != 0) return;
  if (!mem) {
    mem = HeadMemory<T>::empty(x.key.cols(), x.value.cols());
    return;
  }
  const auto first_seg = x.seg_of(0, C);
  const bool reset = x.mem_doc && !first_seg.empty() && first_seg.back() != *x.mem_doc;
  const auto [key, value] = x.rows(0, C);
  absorb_chunk(*mem, key, value, first_seg, reset, w);
}

}  // namespace awm

// aq, ak: (B, L, H·dk); v: (B, L, H·dv); window_value: the cached values in the SCA cache layout
// (B, Lk, H, dv), empty without a window. Updates state (memory, log_norm and the AWM key window:
// prefill -> the last C tokens of the call; tail/step -> window ++ new, uncut, the cache cuts it at
// the chunk boundary). Returns the read output (B, L, H·dv).
// Call rules (check_working_memory_call): L >= C needs L % C == 0 and either a fresh stream or a
// memory with a window of exactly C; L < C needs window ++ new <= C without memory and in (C, 2C]
// with one.
template <class T>
Tensor<T> working_memory(const Tensor<T>& aq, const Tensor<T>& ak, const Tensor<T>& v,
                         const Tensor<T>& window_value, WorkingMemoryState<T>& state,
                         const WorkingMemorySegments& segments, int heads, std::int64_t chunk) {
  constexpr const char* op = "working_memory";
  // An empty state tensor is absent; so is a null segments pointer.
  const auto given = [](const auto& x) { return x.empty() ? nullptr : &x.shape(); };
  const auto ids = [](const Tensor<std::int64_t>* x) { return x ? &x->shape() : nullptr; };
  const bool has_memory = !state.memory.empty();
  // The state owns its normaliser: one without a memory is a corrupt state, not a spare buffer.
  require(has_memory || state.log_norm.empty(), op, ": state.log_norm is given without a memory");
  const WorkingMemoryCall call = check_working_memory_call(
      op, aq.shape(), ak.shape(), v.shape(), given(state.key), given(window_value), has_memory,
      given(state.memory), given(state.log_norm), ids(segments.seg), ids(segments.window_seg),
      ids(segments.mem_seg), heads, chunk);

  const std::int64_t B = call.B, L = call.L, H = call.H, dk = call.dk, dv = call.dv, C = call.C, Lk = call.Lk;
  const bool has_window = call.has_window, has_seg = call.segmented, chunked = call.chunked();
  const std::int64_t new_window = call.new_window();
  auto out = Tensor<T>::uninitialized({B, L, H * dv});
  auto new_key = Tensor<T>::uninitialized({B, H, new_window, dk});
  Tensor<T> new_memory, new_log_norm;
  if (call.memory_after()) {
    new_memory = Tensor<T>::uninitialized({B, H, dk, dv});
    new_log_norm = Tensor<T>::uninitialized({B, H, dk});
  }

  // The (b, h) pairs are independent; each worker keeps its buffers for all of its pairs.
  using awm::ConstHeadRows;
  using awm::HeadRows;
  const double work = double(B * H) * (double(L) * double(dk) * double(2 * dv + 10) +
                                        double(chunked ? L : 0) * 4.0 * double(dk * dv));
  parallel_for(B * H, work, [&](std::int64_t i0, std::int64_t i1) {
    awm::Matrix<T> phi;
    std::vector<std::int64_t> seg;
    awm::AbsorbScratch<T> scratch;
    for (std::int64_t i = i0; i < i1; ++i) {
      const std::int64_t b = i / H, h = i % H;
      // (L, dk) / (L, dv) blocks of head h; the window's keys sit in (Lk, dk), its values in (Lk, H, dv)
      const ConstHeadRows<T> q(aq.data() + (b * L * H + h) * dk, L, dk, Eigen::OuterStride<>(H * dk));
      phi = q;
      awm::softmax_rows(phi);
      seg.clear();
      if (has_seg) {
        for (std::int64_t t = 0; t < Lk; ++t) seg.push_back((*segments.window_seg)(b, t));
        for (std::int64_t t = 0; t < L; ++t) seg.push_back((*segments.seg)(b, t));
      }
      awm::HeadSequence<T> x{
          ConstHeadRows<T>(phi.data(), L, dk, Eigen::OuterStride<>(dk)),
          ConstHeadRows<T>(has_window ? state.key.data() + (b * H + h) * Lk * dk : nullptr, Lk, dk,
                           Eigen::OuterStride<>(dk)),
          ConstHeadRows<T>(has_window ? window_value.data() + (b * Lk * H + h) * dv : nullptr, Lk, dv,
                           Eigen::OuterStride<>(H * dv)),
          ConstHeadRows<T>(ak.data() + (b * L * H + h) * dk, L, dk, Eigen::OuterStride<>(H * dk)),
          ConstHeadRows<T>(v.data() + (b * L * H + h) * dv, L, dv, Eigen::OuterStride<>(H * dv)),
          std::span<const std::int64_t>(seg),
          has_seg && has_memory ? std::optional((*segments.mem_seg)(b)) : std::nullopt};

      std::optional<awm::HeadMemory<T>> mem;
      if (has_memory) {
        mem = awm::HeadMemory<T>{
            ConstHeadRows<T>(state.memory.data() + (b * H + h) * dk * dv, dk, dv, Eigen::OuterStride<>(dv)),
            Eigen::Map<const awm::Vector<T>>(state.log_norm.data() + (b * H + h) * dk, dk)};
      }

      HeadRows<T> y(out.data() + (b * L * H + h) * dv, L, dv, Eigen::OuterStride<>(H * dv));
      if (chunked)
        awm::chunked_head(x, mem, y, C, scratch);
      else
        awm::step_head(x, mem, y, C, scratch);

      // The new key window: the last new_window rows of window ++ call (dk wide).
      HeadRows<T> keys(new_key.data() + (b * H + h) * new_window * dk, new_window, dk, Eigen::OuterStride<>(dk));
      const std::int64_t from_window = new_window - std::min(new_window, L);
      if (from_window > 0) keys.topRows(from_window) = x.window_key.bottomRows(from_window);
      keys.bottomRows(new_window - from_window) = x.key.bottomRows(new_window - from_window);
      if (mem) {
        HeadRows<T>(new_memory.data() + (b * H + h) * dk * dv, dk, dv, Eigen::OuterStride<>(dv)) = mem->M;
        Eigen::Map<awm::Vector<T>>(new_log_norm.data() + (b * H + h) * dk, dk) = mem->log_norm;
      }
    }
  });
  state.key = std::move(new_key);
  state.memory = std::move(new_memory);
  state.log_norm = std::move(new_log_norm);
  return out;
}

}  // namespace gecko::cpu
