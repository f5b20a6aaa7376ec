#pragma once
// The model (spec §4.3): embedding, the blocks, the final norm and the output layer, with exact
// streaming. Model<Policy, T> is assembled from the policy's parts (policy/presets.hpp); sizes and
// flags come from the Config. forward(tokens, state) consumes one piece of a stream; any sequence
// of allowed pieces (spec §4.4) gives the same logits and final state as one call.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "gecko/core/error.hpp"
#include "gecko/core/tensor.hpp"
#include "gecko/cpu/linear.hpp"
#include "gecko/cpu/rope.hpp"
#include "gecko/cpu/timestep_norm.hpp"
#include "gecko/layers/block.hpp"
#include "gecko/model/config.hpp"
#include "gecko/model/state.hpp"
#include "gecko/policy/presets.hpp"

namespace gecko::model {

template <class T>
struct ModelParams {
  Tensor<T> embed;                            // (vocab_size, D)
  Tensor<T> rope_freqs;                       // (dk/2) inverse frequencies; empty without RoPE
  std::vector<layers::BlockParams<T>> layers;  // num_layers
  cpu::TimestepNormParams<T> final_norm;      // as the blocks' input norm
  Tensor<T> output;                           // (V, D); empty with share_emb (the embedding is used)
};

// Calls f(name, tensor, expected shape) for every tensor of the model, under the reference's
// state_dict names (spec §3.1). p.layers must hold num_layers blocks.
template <class Policy, class Params, class F>
void visit_model_parameters(Params& p, const Config& c, F&& f) {
  require(p.layers.size() == std::size_t(c.num_layers), "model parameters: ", p.layers.size(),
          " layers given, the configuration has num_layers = ", c.num_layers);
  const std::int64_t D = c.model_dim, G = c.timenorm_num_groups;
  f(std::string("embed.weight"), p.embed, Shape{c.vocab_size, D});
  if (c.rope_heads() > 0) f(std::string("rope.freqs"), p.rope_freqs, Shape{c.head_dim() / 2});
  for (std::size_t i = 0; i < p.layers.size(); ++i) {
    const std::string prefix = "layers." + std::to_string(i) + ".";
    layers::visit_block_parameters<Policy>(p.layers[i], c, [&](const std::string& name, auto& t, const Shape& s) {
      f(prefix + name, t, s);
    });
  }
  f(std::string("output.final_norm.prior_count"), p.final_norm.prior_count, Shape{});
  f(std::string("output.final_norm.prior_mean"), p.final_norm.prior_mean, Shape{G});
  f(std::string("output.final_norm.prior_var"), p.final_norm.prior_var, Shape{G});
  f(std::string("output.final_norm.weight"), p.final_norm.weight, Shape{D});
  f(std::string("output.final_norm.bias"), p.final_norm.bias, Shape{D});
  if (!c.share_emb) f(std::string("output.output.weight"), p.output, Shape{c.output_dim(), D});
}

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

template <class Policy, class T>
class Model {
 public:
  using policy = Policy;
  using scalar = T;
  using Block = layers::Block<Policy, T>;

  // Checks every tensor against the configuration. bos_id: the token that starts a document
  // when forward is called with multi_segments.
  Model(const Config& config, ModelParams<T> params, std::int64_t bos_id = 1)
      : c_(config), bos_id_(bos_id) {
    c_.validate();
    require(params.output.empty() == c_.share_emb,
            "model: output.output.weight must be given exactly when share_emb is off");
    visit_model_parameters<Policy>(params, c_, [](const std::string& name, const auto& t, const Shape& shape) {
      require(!t.empty(), "model: parameter ", name, " is missing (expected shape ", shape.str(), ")");
      if (!name.starts_with("layers.")) check_shape("model", name, t.shape(), shape);
    });
    embed_ = std::move(params.embed);
    rope_freqs_ = std::move(params.rope_freqs);
    output_ = std::move(params.output);
    final_norm_ = std::move(params.final_norm);
    final_norm_.groups = c_.timenorm_num_groups;
    final_norm_.beta1 = c_.timenorm_beta1;
    final_norm_.beta2 = c_.timenorm_beta2;
    final_norm_.eps = c_.norm_eps;
    blocks_.reserve(params.layers.size());
    for (auto& layer : params.layers) blocks_.emplace_back(c_, std::move(layer));
  }

  const Config& config() const { return c_; }
  const std::vector<Block>& blocks() const { return blocks_; }
  std::int64_t bos_id() const { return bos_id_; }
  void set_bos_id(std::int64_t id) { bos_id_ = id; }

  // One piece of a stream: tokens (B, L) → logits (B, L, V), advancing state. With
  // multi_segments, a token equal to bos_id starts a new document (spec §4.2); the flag and the
  // batch size are fixed by the state's first call.
  Tensor<T> forward(const Tensor<std::int64_t>& tokens, ModelState<T>& state, bool multi_segments = false) const {
    constexpr const char* op = "forward";
    require(!tokens.empty() && tokens.rank() == 2, op, ": tokens must have shape (B, L), got ",
            tokens.shape().str());
    const std::int64_t B = tokens.dim(0), L = tokens.dim(1), C = c_.chunk_size, D = c_.model_dim;
    require(B >= 1, op, ": tokens must hold at least one sequence (B >= 1)");
    if constexpr (!Policy::documents)
      require(!multi_segments, op, ": this model variant has no document handling: multi_segments must be false");
    if (state.fresh()) {
      state = ModelState<T>{};
      state.batch = B;
      state.multi_segments = multi_segments;
    } else {
      require(state.layers.size() == blocks_.size(), op, ": the state holds ", state.layers.size(),
              " layers, the model has ", blocks_.size());
      require(state.batch == B, op, ": the state was started with batch size ", state.batch,
              ", tokens has ", B, " rows");
      require(*state.multi_segments == multi_segments, op, ": multi_segments must be the same on every ",
              "call of one state: it was ", *state.multi_segments ? "true" : "false", ", now ",
              multi_segments ? "true" : "false");
    }
    const std::int64_t start = state.position();
    check_piece(start, L, C);
    for (std::int64_t i = 0; i < tokens.size(); ++i)
      require(tokens[i] >= 0 && tokens[i] < c_.vocab_size, op, ": token ", tokens[i], " at (",
              i / L, ", ", i % L, ") is outside the vocabulary [0, ", c_.vocab_size, ")");

    // Documents (spec §4.2): ids continue the count of the state's last cached token.
    Tensor<bool> bos;
    Tensor<std::int64_t> seg;
    if (multi_segments) {
      bos = Tensor<bool>({B, L});
      seg = Tensor<std::int64_t>({B, L});
      for (std::int64_t b = 0; b < B; ++b) {
        std::int64_t id = state.seg_ids.empty() ? 0 : state.seg_ids(b, state.seg_ids.dim(1) - 1);
        for (std::int64_t t = 0; t < L; ++t) {
          bos(b, t) = tokens(b, t) == bos_id_;
          id += bos(b, t) ? 1 : 0;
          seg(b, t) = id;
        }
      }
    }

    // RoPE table of the call's positions, shared by every layer.                   (L, dk/2, 2)
    Tensor<T> rope;
    if (c_.rope_heads() > 0) {
      std::vector<std::int64_t> positions(static_cast<std::size_t>(L));
      for (std::int64_t i = 0; i < L; ++i) positions[i] = Policy::attention::rope_position(start + i, C);
      rope = cpu::rope_table(rope_freqs_, std::span<const std::int64_t>(positions));
    }

    // Embedding                                                                     (B, L, D)
    Tensor<T> x({B, L, D});
    const T scale = c_.scale_emb ? T(std::sqrt(double(D))) : T(1);
    for (std::int64_t i = 0; i < B * L; ++i)
      for (std::int64_t d = 0; d < D; ++d) x[i * D + d] = embed_(tokens[i], d) * scale;

    if (state.layers.empty()) state.layers.resize(blocks_.size());
    layers::SegmentIds ids;
    if (multi_segments) {
      ids.seg = &seg;
      ids.window_seg = state.seg_ids.empty() ? nullptr : &state.seg_ids;
      ids.mem_seg = state.mem_seg.empty() ? nullptr : &state.mem_seg;
    }
    const Tensor<bool>* bos_ptr = multi_segments ? &bos : nullptr;
    for (std::size_t i = 0; i < blocks_.size(); ++i)
      x = blocks_[i].forward(x, rope, bos_ptr, ids, state.layers[i]);

    const Tensor<T> u = Policy::input_norm::apply(x, bos_ptr, state.output, final_norm_);
    Tensor<T> logits = cpu::linear(u, c_.share_emb ? embed_ : output_);  // (B, L, V)
    if (multi_segments) advance_segments(state, seg, start + L);
    return logits;
  }

  // Any number of tokens, from any position: split into allowed pieces (single tokens up to the
  // next chunk boundary, then whole chunks, then the remainder) and fed in order. Returns the
  // logits of all of them (B, L, V), the same as any other split.
  Tensor<T> feed(const Tensor<std::int64_t>& tokens, ModelState<T>& state, bool multi_segments = false) const {
    require(!tokens.empty() && tokens.rank() == 2, "feed: tokens must have shape (B, L), got ",
            tokens.shape().str());
    const std::int64_t L = tokens.dim(1), C = c_.chunk_size;
    std::vector<std::int64_t> cuts{0};
    std::int64_t pos = state.position(), at = 0;
    while (at < L && pos % C != 0) ++at, ++pos, cuts.push_back(at);  // single tokens
    const std::int64_t whole = (L - at) / C * C;
    if (whole > 0) cuts.push_back(at += whole);
    if (at < L) cuts.push_back(L);
    if (cuts.size() == 2) return forward(tokens, state, multi_segments);
    std::vector<Tensor<T>> pieces;
    for (std::size_t i = 1; i < cuts.size(); ++i)
      pieces.push_back(forward(columns(tokens, cuts[i - 1], cuts[i]), state, multi_segments));
    return concat_time(pieces);
  }

  // The whole sequence from a fresh state: tokens (B, L) → logits (B, L, V), for any L.
  Tensor<T> forward(const Tensor<std::int64_t>& tokens, bool multi_segments = false) const {
    ModelState<T> state;
    return feed(tokens, state, multi_segments);
  }

 private:
  // Spec §4.5: seg_ids ← seg_ids ++ seg (seg on the first call, with mem_seg ← seg[:, 0]); at a
  // chunk boundary mem_seg ← seg_ids[:, ℓ − C − 1] (the last token of the chunk the memory
  // absorbed last) and seg_ids keeps its last C ids, like the cached windows.
  void advance_segments(ModelState<T>& state, const Tensor<std::int64_t>& seg, std::int64_t end) const {
    const std::int64_t B = seg.dim(0), C = c_.chunk_size;
    if (state.seg_ids.empty()) {
      state.seg_ids = seg;
      state.mem_seg = Tensor<std::int64_t>({B});
      for (std::int64_t b = 0; b < B; ++b) state.mem_seg[b] = seg(b, 0);
    } else {
      state.seg_ids = concat_time<std::int64_t>({state.seg_ids, seg});
    }
    if (end % C != 0) return;
    const std::int64_t len = state.seg_ids.dim(1);
    for (std::int64_t b = 0; b < B; ++b) state.mem_seg[b] = state.seg_ids(b, std::max<std::int64_t>(len - C - 1, 0));
    state.seg_ids = columns(state.seg_ids, len - C, len);
  }

  // Columns [begin, end) of a (B, L, ...) tensor along dim 1.
  template <class X>
  static Tensor<X> columns(const Tensor<X>& x, std::int64_t begin, std::int64_t end) {
    Shape s = x.shape();
    const std::int64_t L = s[1], inner = x.size() / (s[0] * L);
    s[1] = end - begin;
    Tensor<X> out(s);
    for (std::int64_t b = 0; b < s[0]; ++b)
      std::copy(x.data() + (b * L + begin) * inner, x.data() + (b * L + end) * inner,
                out.data() + b * (end - begin) * inner);
    return out;
  }

  // The pieces (B, L_i, ...) joined along dim 1.
  template <class X>
  static Tensor<X> concat_time(const std::vector<Tensor<X>>& pieces) {
    Shape s = pieces.front().shape();
    const std::int64_t B = s[0], inner = pieces.front().size() / (B * s[1]);
    s[1] = 0;
    for (const auto& p : pieces) s[1] += p.dim(1);
    Tensor<X> out(s);
    std::int64_t at = 0;
    for (const auto& p : pieces) {
      const std::int64_t Lp = p.dim(1);
      for (std::int64_t b = 0; b < B; ++b)
        std::copy(p.data() + b * Lp * inner, p.data() + (b + 1) * Lp * inner,
                  out.data() + (b * s[1] + at) * inner);
      at += Lp;
    }
    return out;
  }

  Config c_;
  std::int64_t bos_id_;
  Tensor<T> embed_, rope_freqs_, output_;
  cpu::TimestepNormParams<T> final_norm_;
  std::vector<Block> blocks_;
};

}  // namespace gecko::model

namespace gecko {

// The models of the shipped variants (policy/presets.hpp), for T = float or double.
template <class T>
using GeckoModel = model::Model<policy::Gecko, T>;
template <class T>
using GeckoNoMemoryModel = model::Model<policy::GeckoNoMemory, T>;
template <class T>
using GeckoBlockDiagonalModel = model::Model<policy::GeckoBlockDiagonal, T>;
template <class T>
using MegalodonModel = model::Model<policy::Megalodon, T>;

}  // namespace gecko
