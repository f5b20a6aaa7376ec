#pragma once
// One Gecko block (spec §4.3): the MEGA sub-layer, then the normalised feed-forward network whose
// residual is the MEGA output (one-hop) or the block input (two_hop_residual).

#include <string>
#include <utility>

#include "gecko/cpu/feed_forward.hpp"
#include "gecko/layers/layer_state.hpp"
#include "gecko/layers/mega.hpp"
#include "gecko/model/config.hpp"
#include "gecko/policy/presets.hpp"

namespace gecko::layers {

template <class T>
struct BlockParams {
  MegaParams<T> mega;
  cpu::FeedForwardParams<T> nffn;  // norm weight/bias (D) if norm_affine; fc1, fc3 (F, D); fc2 (D, F); alpha (D)
};

// The feed-forward tensors, relative to the block ("nffn.fc1.weight", ...).
template <class Params, class F>
void visit_ffn_parameters(Params& p, const model::Config& c, F&& f) {
  const std::int64_t D = c.model_dim, F_ = c.ffn_hidden_dim;
  if (c.norm_affine) {
    f(std::string("nffn.norm.weight"), p.norm_weight, Shape{D});
    f(std::string("nffn.norm.bias"), p.norm_bias, Shape{D});
  }
  f(std::string("nffn.fc1.weight"), p.fc1, Shape{F_, D});
  if (c.swiglu) f(std::string("nffn.fc3.weight"), p.fc3, Shape{F_, D});
  f(std::string("nffn.fc2.weight"), p.fc2, Shape{D, F_});
  if (c.rescale_nffn) f(std::string("nffn.alpha"), p.alpha, Shape{D});
}

// Checks the feed-forward parameters against the configuration, as check_mega_parameters does
// the MEGA layer's. Shared by layers::Block and cuda::Block.
template <class X>
void check_ffn_parameters(const model::Config& c, const cpu::FeedForwardParams<X>& p) {
  require(p.norm_weight.empty() != c.norm_affine && p.norm_bias.empty() != c.norm_affine,
          "block: nffn.norm.weight/bias must be given exactly when norm_affine is set");
  require(p.fc3.empty() != c.swiglu, "block: nffn.fc3.weight must be given exactly when swiglu is set");
  require(p.alpha.empty() != c.rescale_nffn, "block: nffn.alpha must be given exactly when rescale_nffn is set");
  visit_ffn_parameters(p, c, [](const std::string& name, const Tensor<X>& t, const Shape& shape) {
    require(!t.empty(), "block: parameter ", name, " is missing (expected shape ", shape.str(), ")");
    check_shape("block", name, t.shape(), shape);
  });
}

// Every tensor of a block, named as in the reference's state_dict relative to the block
// ("mega.wv.weight", "nffn.fc1.weight", ...); f(name, tensor, expected shape).
template <class Policy, class Params, class F>
void visit_block_parameters(Params& p, const model::Config& c, F&& f) {
  visit_mega_parameters<Policy>(p.mega, c, [&](const std::string& name, auto& t, const Shape& shape) {
    f("mega." + name, t, shape);
  });
  visit_ffn_parameters(p.nffn, c, f);
}

template <class Policy, class T>
class Block {
 public:
  Block(const model::Config& config, BlockParams<T> params)
      : mega_(config, std::move(params.mega)), nffn_(std::move(params.nffn)) {
    const model::Config& c = mega_.config();
    check_ffn_parameters(c, nffn_);
    nffn_.groups = c.layernorm_num_groups;
    nffn_.eps = c.norm_eps;
  }

  const Mega<Policy, T>& mega() const { return mega_; }
  const cpu::FeedForwardParams<T>& nffn() const { return nffn_; }

  // x: (B, L, D) → (B, L, D); arguments as Mega::forward.
  Tensor<T> forward(const Tensor<T>& x, const Tensor<T>& rope, const Tensor<bool>* bos,
                    const SegmentIds& segments, LayerState<T>& state, MegaTrace<T>* trace = nullptr) const {
    const Tensor<T> y = mega_.forward(x, rope, bos, segments, state, trace);
    return cpu::feed_forward(y, mega_.config().two_hop_residual ? x : y, nffn_);
  }

 private:
  Mega<Policy, T> mega_;
  cpu::FeedForwardParams<T> nffn_;
};

}  // namespace gecko::layers

namespace gecko {

// The blocks of the shipped variants (policy/presets.hpp), for T = float or double.
template <class T>
using GeckoBlock = layers::Block<policy::Gecko, T>;
template <class T>
using GeckoNoMemoryBlock = layers::Block<policy::GeckoNoMemory, T>;
template <class T>
using GeckoBlockDiagonalBlock = layers::Block<policy::GeckoBlockDiagonal, T>;
template <class T>
using MegalodonBlock = layers::Block<policy::Megalodon, T>;

}  // namespace gecko
