#pragma once
// Sliding chunk attention (spec §10). Its split-independent definition (§10.2): a query at
// absolute position t in chunk c = ⌊t/C⌋ attends, with scale 1, to the keys
//   K(t) = { j : lo(t) ≤ j ≤ t  and  (no segments or seg(j) = seg(t)) }
//   lo(t) = max(0, (c − 1)·C)   Gecko, SlidingChunks: the previous complete chunk and its own
//   lo(t) = c·C                  Megalodon, BlockDiagonal: its own chunk only (§12)
// The keys of one call are the cached window (the tokens just before `start`) followed by the
// call's own tokens; the window must reach back to lo(start), which is what the cache keeps.
// Computed as the reference's chunked algorithm (§10.3/§10.4): the queries of one chunk share
// lo, so each chunk is one block of logits Q_c·K_wᵀ over keys lo … (its last query), masked
// causally (and by segment), softmaxed per row and multiplied by V_w. The same code serves
// training/prefill, tail and single-token steps.
//
// Call rules (§4.4), checked on entry:
//   SlidingChunks: L >= C (prefill) needs start % C == 0 and L % C == 0; 1 < L < C (tail) needs
//     start % C == 0; L == 1 may start anywhere. The window holds Lk = min(start, C + start % C)
//     tokens: the last complete chunk plus the current partial chunk (none for a fresh stream).
//   BlockDiagonal: L >= C needs start % C == 0 and L % C == 0; L < C must stay inside one chunk
//     (start % C + L <= C). The window holds the current partial chunk, Lk = start % C.

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "gecko/core/error.hpp"
#include "gecko/core/shape.hpp"
#include "gecko/core/tensor.hpp"
#include "gecko/core/threads.hpp"

namespace gecko::cpu {

// The cached keys and values of the tokens just before a call; all empty = no cache.
template <class T>
struct AttentionWindow {
  Tensor<T> key;    // (B, Lk, H, dk) after RoPE  (golden cache.sca.prev_key layout)
  Tensor<T> value;  // (B, Lk, H, dv)             (golden cache.sca.prev_value layout)

  std::int64_t length() const { return key.empty() ? 0 : key.dim(1); }
};

enum class AttentionPattern {
  SlidingChunks,  // Gecko: the previous complete chunk and the current chunk
  BlockDiagonal,  // Megalodon: the current chunk only
};

namespace detail {

inline const char* pattern_name(AttentionPattern pattern) {
  return pattern == AttentionPattern::SlidingChunks ? "sliding chunks" : "block diagonal";
}

// lo(t): the first absolute key position a query at position t may see.
inline std::int64_t first_visible_key(std::int64_t t, std::int64_t chunk, AttentionPattern pattern) {
  const std::int64_t c = t / chunk;
  return pattern == AttentionPattern::SlidingChunks ? std::max<std::int64_t>(0, (c - 1) * chunk)
                                                    : c * chunk;
}

// Tokens the window must hold before a call at `start`: start − lo(start).
inline std::int64_t required_window_length(std::int64_t start, std::int64_t chunk,
                                           AttentionPattern pattern) {
  return start - first_visible_key(start, chunk, pattern);
}

inline void check_attention_call(const char* op, std::int64_t L, std::int64_t start,
                                 std::int64_t chunk, AttentionPattern pattern) {
  require(chunk > 0, op, ": chunk must be positive, got ", chunk);
  require(start >= 0, op, ": start must be non-negative, got ", start);
  require(L >= 1, op, ": a call needs at least one token, got L=", L);
  if (L >= chunk) {
    require(start % chunk == 0, op, ": a call of L >= chunk tokens (prefill) must start on a chunk "
            "boundary (start % chunk == 0); got start=", start, ", chunk=", chunk, ", L=", L);
    require(L % chunk == 0, op, ": a call of L >= chunk tokens (prefill) must cover whole chunks "
            "(L % chunk == 0); got L=", L, ", chunk=", chunk);
  } else if (pattern == AttentionPattern::SlidingChunks) {
    require(L == 1 || start % chunk == 0, op, ": a call of 1 < L < chunk tokens (tail) must start "
            "on a chunk boundary (start % chunk == 0); got start=", start, ", chunk=", chunk,
            ", L=", L);
  } else {
    require(start % chunk + L <= chunk, op, ": a block-diagonal call of L < chunk tokens must stay "
            "inside one chunk (start % chunk + L <= chunk); got start=", start, ", chunk=", chunk,
            ", L=", L);
  }
}

// x (B, Lx, H, d) rows [begin, end) along time, written to out (B, ·, H, d) from row `at` on.
template <class T>
void copy_time_rows(const Tensor<T>& x, std::int64_t begin, std::int64_t end, Tensor<T>& out,
                    std::int64_t at) {
  const std::int64_t B = x.dim(0), Lx = x.dim(1), row = x.dim(2) * x.dim(3), Lo = out.dim(1);
  for (std::int64_t b = 0; b < B; ++b)
    std::copy(x.data() + (b * Lx + begin) * row, x.data() + (b * Lx + end) * row,
              out.data() + (b * Lo + at) * row);
}

// The last `keep` tokens of (window ++ x) along time: (B, keep, H, d).
template <class T>
Tensor<T> last_tokens(const Tensor<T>& window, const Tensor<T>& x, std::int64_t keep) {
  const std::int64_t Lw = window.empty() ? 0 : window.dim(1), Lx = x.dim(1);
  Tensor<T> out(Shape{x.dim(0), keep, x.dim(2), x.dim(3)});
  const std::int64_t from_window = std::max<std::int64_t>(0, keep - Lx);
  if (from_window > 0) copy_time_rows(window, Lw - from_window, Lw, out, 0);
  copy_time_rows(x, Lx - (keep - from_window), Lx, out, from_window);
  return out;
}

}  // namespace detail

// q, k (B, L, H, dk) after RoPE; v (B, L, H, dv); window: the cached tokens before the call;
// seg (B, L) and window_seg (B, Lk) segment ids, nullptr = no segments; start = absolute
// position of q[:, 0] (= tokens already seen). Returns y (B, L, H·dv), heads concatenated.
template <class T>
Tensor<T> sliding_chunk_attention(const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v,
                                  const AttentionWindow<T>& window, const Tensor<std::int64_t>* seg,
                                  const Tensor<std::int64_t>* window_seg, std::int64_t chunk,
                                  std::int64_t start,
                                  AttentionPattern pattern = AttentionPattern::SlidingChunks) {
  constexpr const char* op = "sliding_chunk_attention";
  require(!q.empty() && q.rank() == 4, op, ": q must have shape (B, L, H, dk), got ", q.shape().str());
  const std::int64_t B = q.dim(0), L = q.dim(1), H = q.dim(2), dk = q.dim(3);
  check_shape(op, "k", k.shape(), q.shape());
  require(!v.empty() && v.rank() == 4, op, ": v must have shape (B, L, H, dv), got ", v.shape().str());
  const std::int64_t dv = v.dim(3);
  check_shape(op, "v", v.shape(), Shape{B, L, H, dv});
  detail::check_attention_call(op, L, start, chunk, pattern);

  const std::int64_t Lk = window.length();
  const std::int64_t needed = detail::required_window_length(start, chunk, pattern);
  require(Lk == needed, op, ": with ", detail::pattern_name(pattern), " a call at start=", start,
          " needs a window of the ", needed, " tokens before it (",
          pattern == AttentionPattern::SlidingChunks ? "Lk = min(start, chunk + start % chunk)"
                                                     : "Lk = start % chunk",
          ", chunk=", chunk, "), got Lk=", Lk,
          " (the cache cuts the window to its last chunk tokens at chunk boundaries)");
  if (Lk > 0) {
    check_shape(op, "window.key", window.key.shape(), Shape{B, Lk, H, dk});
    require(!window.value.empty(), op, ": window.value is absent while window.key holds ", Lk, " tokens");
    check_shape(op, "window.value", window.value.shape(), Shape{B, Lk, H, dv});
  }
  const bool segmented = seg != nullptr;
  if (segmented) {
    check_shape(op, "seg", seg->shape(), Shape{B, L});
    if (Lk > 0) {
      require(window_seg != nullptr && !window_seg->empty(), op,
              ": seg is given but window_seg is absent for a window of ", Lk, " tokens");
      check_shape(op, "window_seg", window_seg->shape(), Shape{B, Lk});
    }
  } else {
    require(window_seg == nullptr || window_seg->empty(), op,
            ": window_seg is given without seg (segments must be used on every call or on none)");
  }

  using Rows = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using ConstHeadRows = Eigen::Map<const Rows, 0, Eigen::OuterStride<>>;
  using HeadRows = Eigen::Map<Rows, 0, Eigen::OuterStride<>>;
  const std::int64_t first = start - Lk;  // absolute position of the first key (window ++ new)
  const std::int64_t N = Lk + L;
  auto y = Tensor<T>::uninitialized(Shape{B, L, H * dv});  // (B, L, H·dv)

  // Per (b, h), one block per chunk of queries. Keys and values are read in place: a block's keys
  // may lie partly in the window and partly in the call, and are then taken in two pieces. The
  // (b, h) pairs are split over threads; each worker allocates its logits buffer once.
  const double work = 2.0 * double(B * H * L) * double(std::min(N, 2 * chunk)) * double(dk + dv);
  parallel_for(B * H, work, [&](std::int64_t i0, std::int64_t i1) {
    Rows logits(std::min(L, chunk), std::min(N, 2 * chunk));  // one chunk's block, reused
    for (std::int64_t i = i0; i < i1; ++i) {
      const std::int64_t b = i / H, h = i % H;
      // Rows [begin, begin + n) of the window's / the call's keys and values of head h.
      auto window_rows = [&](std::int64_t begin, std::int64_t n) {
        return std::pair{ConstHeadRows(&window.key(b, begin, h, 0), n, dk, Eigen::OuterStride<>(H * dk)),
                         ConstHeadRows(&window.value(b, begin, h, 0), n, dv, Eigen::OuterStride<>(H * dv))};
      };
      auto call_rows = [&](std::int64_t begin, std::int64_t n) {
        return std::pair{ConstHeadRows(&k(b, begin, h, 0), n, dk, Eigen::OuterStride<>(H * dk)),
                         ConstHeadRows(&v(b, begin, h, 0), n, dv, Eigen::OuterStride<>(H * dv))};
      };
      // f({keys, values}, column) for the pieces of keys [begin, end) of window ++ call; column
      // is the piece's first column in a block whose column 0 is key `begin`.
      auto for_each_piece = [&](std::int64_t begin, std::int64_t end, auto&& f) {
        if (begin < Lk) f(window_rows(begin, std::min(end, Lk) - begin), std::int64_t(0));
        if (end > Lk) f(call_rows(std::max(begin, Lk) - Lk, end - std::max(begin, Lk)), std::max(begin, Lk) - begin);
      };
      auto document = [&](std::int64_t j) { return j < Lk ? (*window_seg)(b, j) : (*seg)(b, j - Lk); };
      const ConstHeadRows queries(&q(b, 0, h, 0), L, dk, Eigen::OuterStride<>(H * dk));
      HeadRows out(&y(b, 0, h * dv), L, dv, Eigen::OuterStride<>(H * dv));

      // Queries [r0, r1) of the call lie in one chunk. They see keys lo … r + Lk of window ++
      // call: the first `before` columns of their block are visible to all of them, the last
      // `rows` (the queries' own tokens) form the causal triangle.
      for (std::int64_t r0 = 0; r0 < L;) {
        const std::int64_t t0 = start + r0;
        const std::int64_t r1 = std::min(L, (t0 / chunk + 1) * chunk - start);
        const std::int64_t lo = detail::first_visible_key(t0, chunk, pattern) - first;
        const std::int64_t rows = r1 - r0, before = r0 + Lk - lo, width = before + rows;
        auto P = logits.topLeftCorner(rows, width);
        const auto Q = queries.middleRows(r0, rows);
        for_each_piece(lo, lo + width, [&](const auto& piece, std::int64_t col) {
          P.middleCols(col, piece.first.rows()).noalias() = Q * piece.first.transpose();
        });
        for (std::int64_t r = 0; r < rows; ++r) {
          auto row = P.row(r).head(before + r + 1).array();  // keys lo … t
          if (segmented)
            for (std::int64_t j = 0; j < row.size(); ++j)
              if (document(lo + j) != (*seg)(b, r0 + r)) row[j] = -std::numeric_limits<T>::infinity();
          // K(t) contains t itself, so the max is finite and the sum is at least 1.
          row = (row - row.maxCoeff()).exp();
          row /= row.sum();
        }
        auto o = out.middleRows(r0, rows);
        o.noalias() = P.rightCols(rows).template triangularView<Eigen::Lower>() * call_rows(r0, rows).second;
        for_each_piece(lo, lo + before, [&](const auto& piece, std::int64_t col) {
          o.noalias() += P.middleCols(col, piece.second.rows()) * piece.second;
        });
        r0 = r1;
      }
    }
  });
  return y;
}

// The length of the window after a call of L tokens on a window of Lk, as the reference returns it:
//   SlidingChunks: prefill (L >= C) → the last C tokens of the call; tail/step (L < C) →
//     window ++ new tokens. Not yet cut at chunk boundaries: when the stream position reaches a
//     multiple of C the cache keeps only the last C tokens (§4.5, model::window_length_after).
//   BlockDiagonal (Megalodon caches only the current chunk): the tokens of the current partial
//     chunk, i.e. the last (Lk + L) % C tokens of window ++ new; none at a chunk boundary.
constexpr std::int64_t attention_window_length(std::int64_t Lk, std::int64_t L, std::int64_t chunk,
                                               AttentionPattern pattern) {
  if (pattern == AttentionPattern::SlidingChunks) return L >= chunk ? chunk : Lk + L;
  return (Lk + L) % chunk;
}

// The window after a call on (k, v) (B, L, H, d): the last attention_window_length tokens of
// window ++ (k, v).
template <class T>
AttentionWindow<T> attention_window_after(const AttentionWindow<T>& window, const Tensor<T>& k,
                                          const Tensor<T>& v, std::int64_t chunk,
                                          AttentionPattern pattern = AttentionPattern::SlidingChunks) {
  constexpr const char* op = "attention_window_after";
  require(chunk > 0, op, ": chunk must be positive, got ", chunk);
  require(!k.empty() && k.rank() == 4, op, ": k must have shape (B, L, H, dk), got ", k.shape().str());
  require(!v.empty() && v.rank() == 4, op, ": v must have shape (B, L, H, dv), got ", v.shape().str());
  const std::int64_t B = k.dim(0), L = k.dim(1), H = k.dim(2);
  check_shape(op, "v", v.shape(), Shape{B, L, H, v.dim(3)});
  require(L >= 1, op, ": a call needs at least one token, got L=", L);
  const std::int64_t Lk = window.length();
  if (Lk > 0) {
    check_shape(op, "window.key", window.key.shape(), Shape{B, Lk, H, k.dim(3)});
    require(!window.value.empty(), op, ": window.value is absent while window.key holds ", Lk, " tokens");
    check_shape(op, "window.value", window.value.shape(), Shape{B, Lk, H, v.dim(3)});
  }
  if (L >= chunk)
    require(L % chunk == 0, op, ": a call of L >= chunk tokens (prefill) must cover whole chunks "
            "(L % chunk == 0); got L=", L, ", chunk=", chunk);

  const std::int64_t keep = attention_window_length(Lk, L, chunk, pattern);
  if (keep == 0) return {};
  return {detail::last_tokens(window.key, k, keep), detail::last_tokens(window.value, v, keep)};
}

}  // namespace gecko::cpu
