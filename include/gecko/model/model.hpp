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
#include "gecko/model/streaming.hpp"
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

// Checks a model's parameters against a configuration, which it validates: output.output.weight
// given exactly when share_emb is off, every tensor present, and the shapes of the tensors outside
// the layers. With layer_shapes the layers' shapes too, so that an error names the layer
// ("layers.1.mega.wz.weight"); without, the blocks that take them check them.
template <class Policy, class X>
void check_model_parameters(const Config& c, const ModelParams<X>& p, bool layer_shapes) {
  c.validate();
  require(p.output.empty() == c.share_emb, "model: output.output.weight must be given exactly when share_emb is off");
  visit_model_parameters<Policy>(p, c, [&](const std::string& name, const auto& t, const Shape& shape) {
    require(!t.empty(), "model: parameter ", name, " is missing (expected shape ", shape.str(), ")");
    if (layer_shapes || !name.starts_with("layers.")) check_shape("model", name, t.shape(), shape);
  });
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
    check_model_parameters<Policy>(c_, params, /*layer_shapes=*/false);  // the blocks check theirs
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
    check_call<Policy>(c_, blocks_.size(), tokens, state, multi_segments);
    const std::int64_t B = tokens.dim(0), L = tokens.dim(1), C = c_.chunk_size, D = c_.model_dim;
    if (state.fresh()) {
      state = ModelState<T>{};
      state.batch = B;
      state.multi_segments = multi_segments;
    }
    const std::int64_t start = state.position();

    // Documents (spec §4.2): ids continue the count of the state's last cached token.
    Tensor<bool> bos;
    Tensor<std::int64_t> seg;
    if (multi_segments) document_ids(tokens, bos_id_, state.seg_ids, bos, seg);

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
    if (multi_segments) advance_segments(state.seg_ids, state.mem_seg, seg, start + L, C);
    return logits;
  }

  // Any number of tokens, from any position: split into allowed pieces (single tokens up to the
  // next chunk boundary, then whole chunks, then the remainder) and fed in order. Returns the
  // logits of all of them (B, L, V), the same as any other split.
  Tensor<T> feed(const Tensor<std::int64_t>& tokens, ModelState<T>& state, bool multi_segments = false) const {
    require(!tokens.empty() && tokens.rank() == 2, "feed: tokens must have shape (B, L), got ",
            tokens.shape().str());
    const std::vector<std::int64_t> cuts = feed_cuts(state.position(), tokens.dim(1), c_.chunk_size);
    if (cuts.size() == 2) return forward(tokens, state, multi_segments);
    std::vector<Tensor<T>> pieces;
    for (std::size_t i = 1; i < cuts.size(); ++i)
      pieces.push_back(forward(time_slice(tokens, cuts[i - 1], cuts[i]), state, multi_segments));
    return time_concat(pieces);
  }

  // The whole sequence from a fresh state: tokens (B, L) → logits (B, L, V), for any L.
  Tensor<T> forward(const Tensor<std::int64_t>& tokens, bool multi_segments = false) const {
    ModelState<T> state;
    return feed(tokens, state, multi_segments);
  }

 private:
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
