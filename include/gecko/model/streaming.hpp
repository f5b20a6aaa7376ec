#pragma once
// The bookkeeping of a stream (spec §4.2, §4.4, §4.5): which pieces a stream may be fed in, how
// feed cuts tokens into such pieces, the document ids of a call, and what the cached window and
// the segment ids keep after it. Pure index arithmetic on host tensors, shared by the CPU model
// (model/model.hpp) and its device twin (cuda/model.cuh), so that both follow one set of rules
// and give the same messages.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "gecko/core/error.hpp"
#include "gecko/core/tensor.hpp"
#include "gecko/cpu/sliding_chunk_attention.hpp"
#include "gecko/model/config.hpp"

namespace gecko::model {

// The pieces a stream may be fed in (spec §4.4), where start = tokens seen before the piece:
// L >= C: start % C == 0 and end % C == 0; 1 < L < C: start % C == 0; L == 1: anywhere.
inline void check_piece(std::int64_t start, std::int64_t L, std::int64_t C) {
  require(L >= 1, "forward: a piece needs at least one token, got L = ", L);
  if (L >= C)
    require(start % C == 0 && (start + L) % C == 0,
            "forward: a piece of L >= C tokens must start and end on chunk boundaries "
            "(start % C == 0 and end % C == 0); got start = ", start, ", L = ", L, ", end = ",
            start + L, ", C = ", C);
  else if (L > 1)
    require(start % C == 0, "forward: a piece of 1 < L < C tokens must start on a chunk boundary "
            "(start % C == 0); got start = ", start, ", L = ", L, ", C = ", C);
}

// Checks one call forward(tokens, state, multi_segments) of a model with `num_layers` blocks
// before anything runs: tokens (B, L) with B >= 1; multi_segments only for a variant with
// document handling; on a started state its layer count, and the batch size and multi_segments
// its first call fixed; a piece allowed at the state's position; every token in the vocabulary.
// State: model::ModelState or cuda::ModelState (fresh(), position(), layers, batch,
// multi_segments).
template <class Policy, class State>
void check_call(const Config& c, std::size_t num_layers, const Tensor<std::int64_t>& tokens, const State& state,
                bool multi_segments) {
  constexpr const char* op = "forward";
  require(!tokens.empty() && tokens.rank() == 2, op, ": tokens must have shape (B, L), got ",
          tokens.shape().str());
  const std::int64_t B = tokens.dim(0), L = tokens.dim(1);
  require(B >= 1, op, ": tokens must hold at least one sequence (B >= 1)");
  if constexpr (!Policy::documents)
    require(!multi_segments, op, ": this model variant has no document handling: multi_segments must be false");
  if (!state.fresh()) {
    require(state.layers.size() == num_layers, op, ": the state holds ", state.layers.size(),
            " layers, the model has ", num_layers);
    require(state.batch == B, op, ": the state was started with batch size ", state.batch,
            ", tokens has ", B, " rows");
    require(*state.multi_segments == multi_segments, op, ": multi_segments must be the same on every ",
            "call of one state: it was ", *state.multi_segments ? "true" : "false", ", now ",
            multi_segments ? "true" : "false");
  }
  check_piece(state.position(), L, c.chunk_size);
  for (std::int64_t i = 0; i < tokens.size(); ++i)
    require(tokens[i] >= 0 && tokens[i] < c.vocab_size, op, ": token ", tokens[i], " at (",
            i / L, ", ", i % L, ") is outside the vocabulary [0, ", c.vocab_size, ")");
}

// Where feed cuts L tokens that start at `position` into allowed pieces: single tokens up to the
// next chunk boundary, then whole chunks, then the remainder. Returns the cut points
// 0 = c_0 < … < c_n = L; piece i is [c_{i-1}, c_i).
inline std::vector<std::int64_t> feed_cuts(std::int64_t position, std::int64_t L, std::int64_t C) {
  std::vector<std::int64_t> cuts{0};
  std::int64_t at = 0;
  while (at < L && position % C != 0) ++at, ++position, cuts.push_back(at);  // single tokens
  const std::int64_t whole = (L - at) / C * C;
  if (whole > 0) cuts.push_back(at += whole);
  if (at < L) cuts.push_back(L);
  return cuts;
}

// The documents of a call (spec §4.2): bos[b, t] = (tokens[b, t] == bos_id), and seg[b, t] the
// running count of bos tokens, continuing from the last id of row b of seg_ids (the ids of the
// cached window; empty on a fresh stream, where the count starts at 0). tokens, bos, seg: (B, L).
inline void document_ids(const Tensor<std::int64_t>& tokens, std::int64_t bos_id, const Tensor<std::int64_t>& seg_ids,
                         Tensor<bool>& bos, Tensor<std::int64_t>& seg) {
  const std::int64_t B = tokens.dim(0), L = tokens.dim(1);
  bos = Tensor<bool>({B, L});
  seg = Tensor<std::int64_t>({B, L});
  for (std::int64_t b = 0; b < B; ++b) {
    std::int64_t id = seg_ids.empty() ? 0 : seg_ids(b, seg_ids.dim(1) - 1);
    for (std::int64_t t = 0; t < L; ++t) {
      bos(b, t) = tokens(b, t) == bos_id;
      id += bos(b, t) ? 1 : 0;
      seg(b, t) = id;
    }
  }
}

// The cached window's length (spec §4.5) after an allowed call of L tokens from a window of Lk
// that ends at `end`: what the attention returns (window ++ call; a prefill's last chunk), cut to
// its last C tokens when the call ends on a chunk boundary. At most 2C − 1. The window of a layer
// whose policy keeps only the current chunk (window_keeps_previous_chunk false) is the
// attention's own, cpu::attention_window_length with BlockDiagonal.
inline std::int64_t window_length_after(std::int64_t Lk, std::int64_t L, std::int64_t end, std::int64_t C) {
  const std::int64_t joined = cpu::attention_window_length(Lk, L, C, cpu::AttentionPattern::SlidingChunks);
  return end % C == 0 ? std::min(joined, C) : joined;
}

// Spec §4.5, after an allowed call whose document ids are seg (B, L) and which ends at `end`:
// seg_ids ← seg_ids ++ seg (seg on the first call, with mem_seg ← seg[:, 0]); at a chunk boundary
// mem_seg ← seg_ids[:, ℓ − C − 1] (the last token of the chunk the memory absorbed last, ℓ the
// joined length); seg_ids then keeps what the cached window keeps (window_length_after).
inline void advance_segments(Tensor<std::int64_t>& seg_ids, Tensor<std::int64_t>& mem_seg,
                             const Tensor<std::int64_t>& seg, std::int64_t end, std::int64_t C) {
  const std::int64_t B = seg.dim(0), L = seg.dim(1), old = seg_ids.empty() ? 0 : seg_ids.dim(1);
  const std::int64_t len = old + L, keep = window_length_after(old, L, end, C);
  auto joined = [&](std::int64_t b, std::int64_t j) { return j < old ? seg_ids(b, j) : seg(b, j - old); };
  if (seg_ids.empty()) {
    mem_seg = Tensor<std::int64_t>({B});
    for (std::int64_t b = 0; b < B; ++b) mem_seg[b] = seg(b, 0);
  }
  Tensor<std::int64_t> ids({B, keep});
  for (std::int64_t b = 0; b < B; ++b) {
    if (end % C == 0) mem_seg[b] = joined(b, std::max<std::int64_t>(len - C - 1, 0));
    for (std::int64_t j = 0; j < keep; ++j) ids(b, j) = joined(b, len - keep + j);
  }
  seg_ids = std::move(ids);
}

// Time steps [begin, end) of a (B, L, ...) tensor: (B, end − begin, ...).
template <class X>
Tensor<X> time_slice(const Tensor<X>& x, std::int64_t begin, std::int64_t end) {
  Shape s = x.shape();
  const std::int64_t L = s[1], inner = x.size() / (s[0] * L);
  s[1] = end - begin;
  Tensor<X> out(s);
  for (std::int64_t b = 0; b < s[0]; ++b)
    std::copy(x.data() + (b * L + begin) * inner, x.data() + (b * L + end) * inner,
              out.data() + b * (end - begin) * inner);
  return out;
}

// The pieces (B, L_i, ...) joined along time: (B, Σ L_i, ...).
template <class X>
Tensor<X> time_concat(const std::vector<Tensor<X>>& pieces) {
  Shape s = pieces.front().shape();
  const std::int64_t B = s[0], inner = pieces.front().size() / (B * s[1]);
  s[1] = 0;
  for (const auto& p : pieces) s[1] += p.dim(1);
  Tensor<X> out(s);
  std::int64_t at = 0;
  for (const auto& p : pieces) {
    const std::int64_t Lp = p.dim(1);
    for (std::int64_t b = 0; b < B; ++b)
      std::copy(p.data() + b * Lp * inner, p.data() + (b + 1) * Lp * inner, out.data() + (b * s[1] + at) * inner);
    at += Lp;
  }
  return out;
}

}  // namespace gecko::model
