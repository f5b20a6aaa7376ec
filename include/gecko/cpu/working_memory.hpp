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
#include <vector>

#include "gecko/core/error.hpp"
#include "gecko/core/shape.hpp"
#include "gecko/core/tensor.hpp"

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
template <class T>
HeadRows<T> middle_rows(HeadRows<T> x, Eigen::Index begin, Eigen::Index n) {
  return {x.data() + begin * x.outerStride(), n, x.cols(), Eigen::OuterStride<>(x.outerStride())};
}

template <class T>
constexpr T minus_inf = -std::numeric_limits<T>::infinity();

// Softmax over the features of every row (φ of queries, ψ of keys), max subtracted first.
template <class T, class Derived>
Matrix<T> feature_softmax(const Eigen::MatrixBase<Derived>& x) {
  Matrix<T> y = x;
  for (Eigen::Index r = 0; r < y.rows(); ++r) {
    y.row(r).array() = (y.row(r).array() - y.row(r).maxCoeff()).exp();
    y.row(r) /= y.row(r).sum();
  }
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
};

// Absorbs one chunk into the memory (§11.2) and returns ρ (dk).
//   key (C, dk): raw ak of the chunk; value (C, dv); seg: the chunk's C document ids (empty = no
//   segments), only tokens of the last token's document are admitted; reset: the chunk's
//   document differs from the memory's, so the memory starts over.
template <class T, class KeyDerived, class ValueDerived>
Vector<T> absorb_chunk(HeadMemory<T>& mem, const Eigen::MatrixBase<KeyDerived>& key,
                       const Eigen::MatrixBase<ValueDerived>& value,
                       std::span<const std::int64_t> seg, bool reset) {
  const Eigen::Index C = key.rows(), dk = key.cols();
  if (reset) mem = HeadMemory<T>::empty(dk, mem.M.cols());
  const auto admitted = [&](Eigen::Index t) { return seg.empty() || seg[t] == seg.back(); };

  // ℓ[s] = log Σ_{t∈A} exp(κ_t[s]);  ω[s, t] = exp(κ_t[s] − ℓ[s]) on A, 0 elsewhere (dk, C)
  Vector<T> ell(dk);
  Matrix<T> omega = Matrix<T>::Zero(dk, C);
  for (Eigen::Index s = 0; s < dk; ++s) {
    T peak = minus_inf<T>;
    for (Eigen::Index t = 0; t < C; ++t)
      if (admitted(t)) peak = std::max(peak, T(key(t, s)));
    T sum = 0;
    for (Eigen::Index t = 0; t < C; ++t)
      if (admitted(t)) sum += std::exp(T(key(t, s)) - peak);
    ell[s] = peak + std::log(sum);
    for (Eigen::Index t = 0; t < C; ++t)
      if (admitted(t)) omega(s, t) = std::exp(T(key(t, s)) - ell[s]);
  }

  // Λ' = logaddexp(Λ, ℓ);  ρ = exp(ℓ − Λ'): the chunk's share of the total weight, in (0, 1]
  Vector<T> new_log_norm(dk), rho(dk);
  for (Eigen::Index s = 0; s < dk; ++s) {
    new_log_norm[s] = logaddexp(mem.log_norm[s], ell[s]);
    rho[s] = std::exp(ell[s] - new_log_norm[s]);
  }

  // Delta rule: write what the memory does not already predict, R_t = v_t − ψ_tᵀ M  (C, dv)
  const Matrix<T> residual = value - feature_softmax<T>(key) * mem.M;
  const Matrix<T> update = omega * residual;  // U (dk, dv)
  mem.M += rho.asDiagonal() * (update - mem.M);
  mem.log_norm = new_log_norm;
  return rho;
}

// o_t = φ_tᵀ M for the given rows, zero where the token's document is not the memory's.
template <class T, class PhiDerived>
void read_memory(HeadRows<T> out, const Eigen::MatrixBase<PhiDerived>& phi, const HeadMemory<T>& mem,
                 std::span<const std::int64_t> seg, std::optional<std::int64_t> mem_doc) {
  out = phi * mem.M;
  if (!mem_doc) return;
  for (Eigen::Index t = 0; t < out.rows(); ++t)
    if (seg[t] != *mem_doc) out.row(t).setZero();
}

// Inputs of one (batch row, head): the cached window followed by the call's tokens.
template <class T>
struct HeadSequence {
  Matrix<T> phi;                    // (L, dk) read weights of the call's tokens
  Matrix<T> key;                    // (Lk + L, dk) raw ak, window then call
  Matrix<T> value;                  // (Lk + L, dv)
  std::vector<std::int64_t> seg;    // (Lk + L) document ids; empty = no segments
  std::optional<std::int64_t> mem_doc;  // document of the memory, where known
  Eigen::Index window = 0;          // Lk

  std::span<const std::int64_t> seg_of(Eigen::Index begin, Eigen::Index n) const {
    return seg.empty() ? std::span<const std::int64_t>() : std::span(seg).subspan(begin, n);
  }
};

// §11.3 for one head: chunk c of the call reads the memory, then the chunk before it (the cached
// window for c = 0) is absorbed. A fresh stream creates the empty memory at chunk 0 instead.
template <class T>
void chunked_head(HeadSequence<T>& x, std::optional<HeadMemory<T>>& mem, HeadRows<T> out,
                  Eigen::Index chunk) {
  const Eigen::Index C = chunk, chunks = x.phi.rows() / C;
  for (Eigen::Index c = 0; c < chunks; ++c) {
    const Eigen::Index row = c * C, pos = x.window + row;  // in the call; in window ++ call
    if (!mem) {
      middle_rows(out, row, C).setZero();
      mem = HeadMemory<T>::empty(x.key.cols(), x.value.cols());
      continue;
    }
    read_memory<T>(middle_rows(out, row, C), x.phi.middleRows(row, C), *mem, x.seg_of(pos, C),
                   x.mem_doc);
    const Eigen::Index prev = pos - C;  // the chunk before chunk c
    const auto prev_seg = x.seg_of(prev, C);
    const std::optional<std::int64_t> prev_doc =
        prev_seg.empty() ? std::nullopt : std::optional(prev_seg.back());
    const bool reset = x.mem_doc && prev_doc && *x.mem_doc != *prev_doc;
    absorb_chunk(*mem, x.key.middleRows(prev, C), x.value.middleRows(prev, C), prev_seg, reset);
    x.mem_doc = prev_doc;
  }
}

// §11.4 for one head: the new tokens read the memory (zero while none exists); when the window
// holds 2C tokens its first chunk is absorbed, when it first holds C the empty memory is created.
template <class T>
void step_head(HeadSequence<T>& x, std::optional<HeadMemory<T>>& mem, HeadRows<T> out,
               Eigen::Index chunk) {
  const Eigen::Index C = chunk, W = x.key.rows();
  if (mem)
    read_memory<T>(out, x.phi, *mem, x.seg_of(x.window, x.phi.rows()), x.mem_doc);
  else
    out.setZero();
  if (W % C != 0) return;
  if (!mem) {
    mem = HeadMemory<T>::empty(x.key.cols(), x.value.cols());
    return;
  }
  const auto first_seg = x.seg_of(0, C);
  const bool reset = x.mem_doc && !first_seg.empty() && first_seg.back() != *x.mem_doc;
  absorb_chunk(*mem, x.key.topRows(C), x.value.topRows(C), first_seg, reset);
}

}  // namespace awm

// aq, ak: (B, L, H·dk); v: (B, L, H·dv); window_value: the cached values in the SCA cache layout
// (B, Lk, H, dv), empty without a window. Updates state (memory, log_norm and the AWM key window:
// prefill -> the last C tokens of the call; tail/step -> window ++ new, uncut, the cache cuts it at
// the chunk boundary). Returns the read output (B, L, H·dv).
// Call rules: L >= C needs L % C == 0 and either a fresh stream or a memory with a window of
// exactly C; L < C needs window ++ new <= C without memory and in (C, 2C] with one.
template <class T>
Tensor<T> working_memory(const Tensor<T>& aq, const Tensor<T>& ak, const Tensor<T>& v,
                         const Tensor<T>& window_value, WorkingMemoryState<T>& state,
                         const WorkingMemorySegments& segments, int heads, std::int64_t chunk) {
  constexpr const char* op = "working_memory";
  require(heads > 0 && chunk > 0, op, ": heads and chunk must be positive, got heads ", heads,
          ", chunk ", chunk);
  require(aq.rank() == 3, op, ": aq has shape ", aq.shape().str(), ", expected (B, L, H*dk)");
  require(v.rank() == 3, op, ": v has shape ", v.shape().str(), ", expected (B, L, H*dv)");
  const std::int64_t B = aq.dim(0), L = aq.dim(1), H = heads, C = chunk;
  require(aq.dim(2) % H == 0, op, ": aq has ", aq.dim(2), " features, not a multiple of ", H, " heads");
  require(v.dim(2) % H == 0, op, ": v has ", v.dim(2), " features, not a multiple of ", H, " heads");
  const std::int64_t dk = aq.dim(2) / H, dv = v.dim(2) / H;
  require(L > 0, op, ": empty call (L = 0)");
  check_shape(op, "ak", ak.shape(), aq.shape());
  check_shape(op, "v", v.shape(), {B, L, H * dv});

  const bool has_window = !state.key.empty(), has_memory = !state.memory.empty();
  const std::int64_t Lk = has_window ? state.key.dim(2) : 0;
  if (has_window) check_shape(op, "state.key", state.key.shape(), {B, H, Lk, dk});
  require(window_value.empty() == !has_window, op, ": window_value ",
          has_window ? "is missing for" : "is given without", " a cached key window");
  if (has_window) check_shape(op, "window_value", window_value.shape(), {B, Lk, H, dv});
  require(state.log_norm.empty() == !has_memory, op, ": state.log_norm ",
          has_memory ? "is missing for" : "is given without", " a memory");
  if (has_memory) {
    check_shape(op, "state.memory", state.memory.shape(), {B, H, dk, dv});
    check_shape(op, "state.log_norm", state.log_norm.shape(), {B, H, dk});
  }

  const bool chunked = L >= C;
  if (chunked) {
    require(L % C == 0, op, ": a call of L >= C tokens needs L % C == 0, got L = ", L, ", C = ", C);
    require(has_window == has_memory, op, ": a chunked call needs a memory together with a ",
            "cached window (or neither), got ", has_memory ? "a memory" : "no memory", " and ",
            has_window ? "a window" : "no window");
    require(!has_window || Lk == C, op, ": a chunked call needs a cached window of C = ", C,
            " tokens, got ", Lk);
  } else if (has_memory) {
    require(C < Lk + L && Lk + L <= 2 * C, op, ": with a memory, window ++ new must hold (C, 2C] = (",
            C, ", ", 2 * C, "] tokens, got ", Lk, " + ", L);
  } else {
    require(Lk + L <= C, op, ": without a memory, window ++ new must hold at most C = ", C,
            " tokens, got ", Lk, " + ", L);
  }

  const bool has_seg = segments.seg != nullptr;
  require(has_seg || (!segments.window_seg && !segments.mem_seg), op,
          ": segments.window_seg / mem_seg given without segments.seg");
  if (has_seg) {
    check_shape(op, "segments.seg", segments.seg->shape(), {B, L});
    require(!has_window || segments.window_seg, op, ": segments need segments.window_seg for the ",
            Lk, "-token window");
    if (segments.window_seg) check_shape(op, "segments.window_seg", segments.window_seg->shape(), {B, Lk});
    require(!has_memory || segments.mem_seg, op, ": segments need segments.mem_seg for the memory");
    if (segments.mem_seg) check_shape(op, "segments.mem_seg", segments.mem_seg->shape(), {B});
  }

  const std::int64_t W = Lk + L;
  const std::int64_t new_window = chunked ? C : W;
  Tensor<T> out({B, L, H * dv});
  Tensor<T> new_key({B, H, new_window, dk});
  Tensor<T> new_memory, new_log_norm;
  if (chunked || has_memory || W % C == 0) {
    new_memory = Tensor<T>({B, H, dk, dv});
    new_log_norm = Tensor<T>({B, H, dk});
  }

  using awm::ConstHeadRows;
  using awm::HeadRows;
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t h = 0; h < H; ++h) {
      awm::HeadSequence<T> x;
      x.window = Lk;
      // (L, dk) / (L, dv) blocks of head h; the window's values sit in (Lk, H, dv)
      const ConstHeadRows<T> q(aq.data() + (b * L * H + h) * dk, L, dk, Eigen::OuterStride<>(H * dk));
      const ConstHeadRows<T> k(ak.data() + (b * L * H + h) * dk, L, dk, Eigen::OuterStride<>(H * dk));
      const ConstHeadRows<T> val(v.data() + (b * L * H + h) * dv, L, dv, Eigen::OuterStride<>(H * dv));
      x.phi = awm::feature_softmax<T>(q);
      x.key.resize(W, dk);
      x.value.resize(W, dv);
      if (has_window) {
        x.key.topRows(Lk) = ConstHeadRows<T>(state.key.data() + (b * H + h) * Lk * dk, Lk, dk,
                                             Eigen::OuterStride<>(dk));
        x.value.topRows(Lk) = ConstHeadRows<T>(window_value.data() + (b * Lk * H + h) * dv, Lk, dv,
                                               Eigen::OuterStride<>(H * dv));
      }
      x.key.bottomRows(L) = k;
      x.value.bottomRows(L) = val;
      if (has_seg) {
        if (has_window)
          for (std::int64_t t = 0; t < Lk; ++t) x.seg.push_back((*segments.window_seg)(b, t));
        for (std::int64_t t = 0; t < L; ++t) x.seg.push_back((*segments.seg)(b, t));
        if (has_memory) x.mem_doc = (*segments.mem_seg)(b);
      }

      std::optional<awm::HeadMemory<T>> mem;
      if (has_memory) {
        mem = awm::HeadMemory<T>{
            ConstHeadRows<T>(state.memory.data() + (b * H + h) * dk * dv, dk, dv, Eigen::OuterStride<>(dv)),
            Eigen::Map<const awm::Vector<T>>(state.log_norm.data() + (b * H + h) * dk, dk)};
      }

      HeadRows<T> y(out.data() + (b * L * H + h) * dv, L, dv, Eigen::OuterStride<>(H * dv));
      if (chunked)
        awm::chunked_head(x, mem, y, C);
      else
        awm::step_head(x, mem, y, C);

      HeadRows<T>(new_key.data() + (b * H + h) * new_window * dk, new_window, dk,
                  Eigen::OuterStride<>(dk)) = x.key.bottomRows(new_window);
      if (mem) {
        HeadRows<T>(new_memory.data() + (b * H + h) * dk * dv, dk, dv, Eigen::OuterStride<>(dv)) = mem->M;
        Eigen::Map<awm::Vector<T>>(new_log_norm.data() + (b * H + h) * dk, dk) = mem->log_norm;
      }
    }
  }
  state.key = std::move(new_key);
  state.memory = std::move(new_memory);
  state.log_norm = std::move(new_log_norm);
  return out;
}

}  // namespace gecko::cpu
