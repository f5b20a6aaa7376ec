// GPU benchmarks of the composite layers: one Gecko block (spec §4.3) against its own GEMMs, and
// a small preset model's prefill and per-token streaming step (spec §4). Rows:
//   * cuda/block/gecko/{small,7b}: one cuda::Block<policy::Gecko, bfloat16> forward, a prefill of
//     whole chunks from a fresh layer state (no documents), parameters from model::init_params
//     (seeded "he" init) uploaded once. `7b` is the 7B layer over the 7b tier's one sequence of
//     L = 32768 tokens (16 chunks, B = 1): the length of the attention and working-memory rows of
//     bench_cuda_attention_ops at that tier, so the block's parts can be read against them. The
//     block then holds about 6.5 GB (its bfloat16 activations, ~160 KB per token), the baseline
//     about 10 GB (each GEMM's own operands), one at a time: far inside an 80 GB device.
//   * cuda/block/cublas_gemms/{small,7b}: only that block's GEMMs on the same shapes and types,
//     the counterpart of the CPU's block/eigen_gemms: the 8 projections through cuda::linear
//     (cuBLASLt, the block's own GEMM path, without bias), attention's dense chunk blocks
//     (Q_c·K_wᵀ and S·V_w, W = C then 2C) and the working memory's three products per absorbed
//     chunk as cuBLAS batched GEMMs. gecko/this on this row is the block's time over its GEMMs'.
//   * cuda/model_prefill/gecko/small: the "small" preset (4 layers, D 512, C 256, V 32000) in
//     bfloat16, tokens (1, 2048) → logits from a fresh state, allocated untimed in prepare()
//     (cuda::Model::new_state; forward would allocate it inside the timed call);
//     items_per_second = tokens/s.
//   * cuda/model_step/gecko/small: the same model's per-token streaming latency, one token per
//     call (B = 1) after a 2048-token prefill; the stream goes on from iteration to iteration, so
//     the time averages over positions, the steps that absorb a chunk into the working memory
//     (one in C = 256) included. The event time also spans the host's part of the call (its
//     checks, the token's upload, the launches), which a one-token step may well be bound by, as
//     its latency is. Its only comparison is cuda/model_step/prefill_per_token/small: the
//     prefill's time divided by its 2048 tokens, so gecko/this on that row is how many times a
//     streamed token costs what a token costs inside a prefill.
// Types: bfloat16 everywhere (the 7B model's activation type), so that the file instantiates
// the GPU layers and kernels for one (policy::Gecko, bfloat16) pair only (CI compiles every CUDA
// unit on 2 cores); the statistics and states stay float32, as the kernels keep them.
// Counting (bench/README.md, "Counting rules for the GPU rows"): FLOPs as the CPU benchmarks
// count them (support/work.hpp); bytes at the stored types, as described at each Work below.

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gecko/cpu/rope.hpp"
#include "gecko/cuda/model.cuh"
#include "gecko/model/init.hpp"
#include "gecko/model/presets.hpp"
#include "gecko/policy/presets.hpp"
#include "support/cuda_gemms.hpp"
#include "support/cuda_main.hpp"
#include "support/layers.hpp"
#include "support/work.hpp"

namespace gecko::bench::gpu {
namespace {

using T = bfloat16;
using Policy = policy::Gecko;

// ---------------------------------------------------------------- work counts

// One block's parameters as cuda::Block holds them: T for the weights, biases and norm weights;
// float32 for the CEMA coefficients p, q, γ (5·D·N) and the z rows' Γ, β (2·4·S).
double block_parameter_bytes(const model::Config& c) {
  const std::int64_t D = c.model_dim, S = c.z_dim, E = c.value_dim, F = c.ffn_hidden_dim, N = c.cema_ndim;
  const std::int64_t in_t = 2 * D                           // TSN weight, bias
                            + (c.norm_affine ? 3 * D : 0)  // RMS weight, FFN norm weight and bias
                            + S * D + S + 2 * (E * D + E)  // wz, wv, wr
                            + D * D + D + E * D            // wh1, wh2
                            + (c.swiglu ? 3 : 2) * D * F   // fc1 (fc3), fc2
                            + (c.rescale_nffn ? D : 0);
  return bytes_of<T>(in_t) + bytes_of<float>(5 * D * N + 2 * 4 * S);
}

// The layer state of a prefill from a fresh stream: the input norm's (count, mean, var) and the
// CEMA state h read and written (int64, float32); written: the window's keys and values of the
// last chunk and the memory's key window (C·(2S + E), T), M (H·dk·dv) and its log normaliser
// (H·dk), float32.
double block_state_bytes(const Sizes& s) {
  return 2 * (bytes_of<std::int64_t>(s.B) + bytes_of<float>(2 * s.B * s.G + 2 * s.B * s.D * s.N)) +
         bytes_of<T>(s.B * s.C * (2 * s.S + s.E)) + bytes_of<float>(s.B * s.H * (s.dk() * s.dv() + s.dk()));
}

// x read and the output written (T), the parameters, the state; FLOPs of the block's parts as the
// op benchmarks count them (support/work.hpp: visible attention pairs only, softmaxes excluded).
Work block_work(const Sizes& s, const model::Config& c) {
  return {bytes_of<T>(2 * s.tokens() * s.D) + block_parameter_bytes(c) + block_state_bytes(s),
          work::block(s).flops};
}

// ---------------------------------------------------------------- the block (§4.3)

// A one-layer configuration of the tier (support/layers.hpp); the block reads no vocabulary, so
// a tier without one gets a vocabulary of 1 (the unused embedding then costs nothing to draw).
model::Config block_config(const Sizes& s) {
  Sizes t = s;
  if (t.V == 0) t.V = 1;
  return config_of(t, 1);
}

class BlockCase : public Case {
 public:
  BlockCase(const Sizes& s, cudaStream_t stream)
      : s_(s), config_(block_config(s)),
        block_(config_, model::init_params<Policy, float>(config_, 20).layers.front(), stream), rt_(stream),
        x_(Shape{s.B, s.L, s.D}), out_(x_.shape()),
        rope_(cpu::rope_table(cpu::rope_frequencies<float>(int(s.dk()), config_.rope_base), 0, s.L), stream) {
    fill_normal(x_, 91, 1.f, stream);
    // Once with every activation and state buffer poisoned: an element no kernel writes shows up.
    rt_.scratch.poison = true;
    state_ = block_.mega().new_state(s.B, true, stream);
    poison(out_, stream);
    run(stream);
    require_finite("block output", out_, stream);
    require_finite("block working memory", state_.memory, stream);
    // The block adds its sub-layers to x: an output equal to x would mean they did nothing.
    const Deviation d = max_deviation(out_.data(), x_.data(), x_.size(), stream);
    require(d.diff > 1e-3f * d.peak, "bench: the block's output equals its input (max|out - x| = ", d.diff, ")");
    rt_.scratch.poison = false;
  }
  // A fresh stream: the norm at its priors, h = 0, no window, no memory (allocating, untimed).
  void prepare(cudaStream_t stream) override { state_ = block_.mega().new_state(s_.B, false, stream); }
  void run(cudaStream_t) override {
    block_.forward(x_.view(), {rope_.view(), {}, {}, {}, {}}, state_, rt_, out_.view());
  }

 private:
  Sizes s_;
  model::Config config_;
  cuda::Block<Policy, T> block_;
  cuda::Runner<T> rt_;
  DeviceBuffer<T> x_, out_;
  DeviceBuffer<float> rope_;  // (L, dk/2, 2) at positions 0 … L − 1
  cuda::LayerState<T> state_;
};

// ---------------------------------------------------------------- the block's GEMMs alone

// Attention's dense chunk blocks without the softmax, on q, k (B, L, H, dk), v (B, L, H, dv) and
// y (B, L, H·dv): per (b, h) and chunk c the logits S = Q_c·K_wᵀ (C × W, bfloat16), then
// y_c = S·V_w reading them back in place of the probabilities; W = C for c = 0, 2C after. Batched
// over (b, h, c) per window size, as AttentionGemmsSoftmax (support/cuda_gemms.hpp) issues them.
class AttentionGemms {
 public:
  AttentionGemms(const Sizes& s, const T* q, const T* k, const T* v, T* y, cudaStream_t stream) {
    const std::int64_t chunks = s.L / s.C, dk = s.dk(), dv = s.dv(), H = s.H, C = s.C;
    for (int later = 0; later < 2; ++later) {
      const std::int64_t W = later ? 2 * C : C, batches = s.B * H * (later ? chunks - 1 : 1);
      if (batches == 0) continue;
      Group g{DeviceBuffer<T>(Shape{batches, C, W}), {}, {}};
      std::vector<const void*> qp, kp, vp, sp_in;
      std::vector<void*> sp, yp;
      std::int64_t i = 0;
      for (std::int64_t b = 0; b < s.B; ++b)
        for (std::int64_t h = 0; h < H; ++h)
          for (std::int64_t c = later ? 1 : 0; c < (later ? chunks : 1); ++c, ++i) {
            const std::int64_t lo = later ? (c - 1) * C : 0, row = b * s.L;
            qp.push_back(q + ((row + c * C) * H + h) * dk);
            kp.push_back(k + ((row + lo) * H + h) * dk);
            vp.push_back(v + ((row + lo) * H + h) * dv);
            yp.push_back(y + (row + c * C) * H * dv + h * dv);
            sp.push_back(g.logits.data() + i * C * W);
            sp_in.push_back(g.logits.data() + i * C * W);
          }
      // Sᵀ (W × C) = K_w·Q_cᵀ: S row-major (C × W).
      g.logits_gemm = std::make_unique<BatchedGemm>(CUBLAS_OP_T, CUBLAS_OP_N, int(W), int(C), int(dk),
                                                    int(H * dk), int(H * dk), int(W), CUDA_R_16BF, kp, qp, sp,
                                                    stream);
      // yᵀ (dv × C) = V_wᵀ·Sᵀ: y_c row-major (C × dv) with row stride H·dv.
      g.values_gemm = std::make_unique<BatchedGemm>(CUBLAS_OP_N, CUBLAS_OP_N, int(dv), int(C), int(W),
                                                    int(H * dv), int(W), int(H * dv), CUDA_R_16BF, vp, sp_in, yp,
                                                    stream);
      groups_.push_back(std::move(g));
    }
  }

  void run(cublasHandle_t handle) const {
    for (const Group& g : groups_) {
      g.logits_gemm->run(handle);
      g.values_gemm->run(handle);
    }
  }

 private:
  struct Group {
    DeviceBuffer<T> logits;  // (batches, C, W)
    std::unique_ptr<BatchedGemm> logits_gemm, values_gemm;
  };
  std::vector<Group> groups_;
};

// One projection y (R, out) = x (R, in)·Wᵀ, its own operands.
struct Projection {
  DeviceBuffer<T> x, w, y;
};

class BlockGemmsCase : public Case {
 public:
  BlockGemmsCase(const Sizes& s, cudaStream_t stream)
      : blas_(stream), cublas_(stream), q_(Shape{s.B, s.L, s.H, s.dk()}), k_(q_.shape()),
        v_(Shape{s.B, s.L, s.H, s.dv()}), y_(Shape{s.B, s.L, s.E}), aq_(Shape{s.B, s.L, s.S}), ak_(aq_.shape()),
        mv_(y_.shape()), mout_(y_.shape()) {
    const std::int64_t R = s.tokens();
    // (in, out): wz, wv, wr, wh1, wh2, fc1, fc3, fc2, as the block runs them
    const std::int64_t shapes[8][2] = {{s.D, s.S}, {s.D, s.E}, {s.D, s.E}, {s.D, s.D},
                                       {s.E, s.D}, {s.D, s.F}, {s.D, s.F}, {s.F, s.D}};
    std::uint64_t seed = 100;
    for (const auto& [in, out] : shapes) {
      Projection p{DeviceBuffer<T>(Shape{R, in}), DeviceBuffer<T>(Shape{out, in}), DeviceBuffer<T>(Shape{R, out})};
      fill_normal(p.x, seed++, 1.f, stream);
      fill_normal(p.w, seed++, float(1.0 / std::sqrt(3.0 * double(in))), stream);
      poison(p.y, stream);
      projections_.push_back(std::move(p));
    }
    // q, k ~ N(0, dk^-1/2) per entry: logits ~ N(0, 1), as in bench_cuda_attention_ops.
    const float qk_scale = float(std::pow(double(s.dk()), -0.25));
    fill_normal(q_, 111, qk_scale, stream);
    fill_normal(k_, 112, qk_scale, stream);
    fill_normal(v_, 113, 1.f, stream);
    poison(y_, stream);
    attention_ = std::make_unique<AttentionGemms>(s, q_.data(), k_.data(), v_.data(), y_.data(), stream);
    fill_normal(aq_, 121, 1.f, stream);
    fill_normal(ak_, 122, 1.f, stream);
    fill_normal(mv_, 123, 1.f, stream);
    memory_ = std::make_unique<MemoryGemms>(s, aq_.data(), ak_.data(), mv_.data(), mout_.data(), stream);

    // Every projection output and the attention output are written in full (they were poisoned).
    run(stream);
    for (std::size_t i = 0; i < projections_.size(); ++i)
      require_finite("projection GEMM " + std::to_string(i) + " output", projections_[i].y, stream);
    require_finite("attention GEMMs output", y_, stream);
  }

  void run(cudaStream_t) override {
    for (Projection& p : projections_) cuda::linear<T>(p.x.view(), p.w.view(), {}, p.y.view(), blas_);
    attention_->run(cublas_.get());
    memory_->run(cublas_.get());
  }

 private:
  cuda::BlasHandle blas_;
  Cublas cublas_;
  std::vector<Projection> projections_;
  DeviceBuffer<T> q_, k_, v_, y_, aq_, ak_, mv_, mout_;
  std::unique_ptr<AttentionGemms> attention_;
  std::unique_ptr<MemoryGemms> memory_;
};

// The baseline's declared work, from the shapes alone (registration never touches the device):
// per projection x, W and y read or written once (T) and 2·R·in·out FLOPs; attention's q, k, v,
// y and its dense blocks' 2·C·W·(dk + dv) per (b, h, c); the memory's aq, ak, v, M and out and
// its 3 products of 2·C·dk·dv per (b, h) and absorbed chunk.
Work block_gemms_work(const Sizes& s) {
  const std::int64_t R = s.tokens();
  const std::int64_t shapes[8][2] = {{s.D, s.S}, {s.D, s.E}, {s.D, s.E}, {s.D, s.D},
                                     {s.E, s.D}, {s.D, s.F}, {s.D, s.F}, {s.F, s.D}};
  Work w;
  for (const auto& [in, out] : shapes) {
    w.bytes += bytes_of<T>(R * in + out * in + R * out);
    w.flops += 2.0 * double(R) * double(in) * double(out);
  }
  for (const Work& part : {AttentionGemmsSoftmax::work(s), MemoryGemms::work(s)})
    w.bytes += part.bytes, w.flops += part.flops;
  return w;
}

// ---------------------------------------------------------------- the model (§4)

constexpr std::int64_t kPrefillTokens = 2048;  // 8 chunks of the small preset (C = 256)

model::Config model_config() { return model::preset_config("small"); }

// The preset's shapes as a tier, for the work counts of support/work.hpp.
Sizes model_sizes(const model::Config& c, std::int64_t L) {
  return {"small", 1, L, c.model_dim, c.z_dim, c.value_dim, c.num_heads, c.ffn_hidden_dim, c.cema_ndim,
          c.chunk_size, c.timenorm_num_groups, c.vocab_size, benchmark::kMillisecond};
}

// Prefill: the tokens (int64) read; every parameter read once (the blocks', the embedding and the
// output layer (V·D each), the final norm's weight and bias); the logits (T) written; each
// layer's state and the final norm's (count, mean, var) read and written. FLOPs: the blocks, the
// final norm and the output layer (2·R·D·V), as bench_model counts them.
Work prefill_work(const model::Config& c) {
  const Sizes s = model_sizes(c, kPrefillTokens);
  const std::int64_t layers = c.num_layers, V = c.output_dim();
  Work w;
  w.bytes = bytes_of<std::int64_t>(s.tokens()) + double(layers) * block_parameter_bytes(c) +
            bytes_of<T>(c.vocab_size * s.D + (c.share_emb ? 0 : V * s.D) + 2 * s.D + s.tokens() * V) +
            double(layers) * block_state_bytes(s) +
            2 * (bytes_of<std::int64_t>(s.B) + bytes_of<float>(2 * s.B * s.G));
  w.flops = double(layers) * work::block(s).flops + work::timestep_norm(s).flops +
            2.0 * double(s.tokens()) * double(s.D) * double(V);
  return w;
}

// One streamed token: a lower bound of what a step must move, every weight a GEMM multiplies read
// once (the blocks' parameters, the output layer V·D, the token's embedding row, the final norm),
// the token read and its logits written; the state is not counted (its reads grow with the
// window; the weights dominate). FLOPs: 2 per GEMM weight (the 8 projections of each block and
// the output layer), attention, memory and the elementwise parts not counted.
Work step_work(const model::Config& c) {
  const std::int64_t D = c.model_dim, S = c.z_dim, E = c.value_dim, F = c.ffn_hidden_dim, V = c.output_dim();
  const double gemm_weights =
      double(c.num_layers) * double(S * D + 2 * E * D + D * D + E * D + (c.swiglu ? 3 : 2) * D * F) + double(V * D);
  return {double(c.num_layers) * block_parameter_bytes(c) + bytes_of<T>(V * D + D + 2 * D + V) +
              bytes_of<std::int64_t>(1),
          2.0 * gemm_weights};
}

Tensor<std::int64_t> random_tokens(const Shape& shape, std::int64_t vocab, std::uint32_t seed) {
  Tensor<std::int64_t> t(shape);
  std::mt19937 rng(seed);
  for (auto& v : t.span()) v = std::int64_t(rng() % std::uint32_t(vocab));
  return t;
}

// The small preset on the device, parameters from model::init_params (seed 30), and a prompt.
class ModelBase : public Case {
 protected:
  explicit ModelBase(cudaStream_t stream)
      : config_(model_config()), model_(make_model(config_, stream)),
        prompt_(random_tokens(Shape{1, kPrefillTokens}, config_.vocab_size, 40)),
        prompt_logits_(Shape{1, kPrefillTokens, config_.output_dim()}) {}

  model::Config config_;
  cuda::Model<Policy, T> model_;
  Tensor<std::int64_t> prompt_;
  DeviceBuffer<T> prompt_logits_;

 private:
  static cuda::Model<Policy, T> make_model(const model::Config& c, cudaStream_t stream) {
    return cuda::Model<Policy, T>(c, model::init_params<Policy, float>(c, 30), 1, stream);
  }
};

// Tokens (1, 2048) → logits (1, 2048, V) from a fresh state.
class PrefillCase : public ModelBase {
 public:
  explicit PrefillCase(cudaStream_t stream) : ModelBase(stream) {
    // A poisoned fresh state and scratch: every logit must come back finite.
    model_.set_poison(true);
    state_ = model_.new_state(1);
    poison(prompt_logits_, stream);
    run(stream);
    require_finite("prefill logits", prompt_logits_, stream);
    model_.set_poison(false);
  }
  // The fresh state is allocated here, untimed (cuda::Model::new_state), not inside forward.
  void prepare(cudaStream_t) override { state_ = model_.new_state(1); }
  void run(cudaStream_t) override { model_.forward(prompt_, state_, false, prompt_logits_.view()); }

 private:
  cuda::ModelState<T> state_;
};

// One token per call after the prompt; the stream continues across iterations.
class StepCase : public ModelBase {
 public:
  explicit StepCase(cudaStream_t stream)
      : ModelBase(stream), token_(Shape{1, 1}), logits_(Shape{1, 1, config_.output_dim()}), rng_(50) {
    model_.set_poison(true);
    poison(prompt_logits_, stream);
    model_.forward(prompt_, state_, false, prompt_logits_.view());
    require_finite("prompt logits", prompt_logits_, stream);
    poison(logits_, stream);
    prepare(stream);
    run(stream);
    require_finite("step logits", logits_, stream);
    model_.set_poison(false);
  }
  void prepare(cudaStream_t) override { token_[0] = std::int64_t(rng_() % std::uint32_t(config_.vocab_size)); }
  void run(cudaStream_t) override { model_.forward(token_, state_, false, logits_.view()); }

 private:
  cuda::ModelState<T> state_;
  Tensor<std::int64_t> token_;
  DeviceBuffer<T> logits_;
  std::mt19937 rng_;
};

// ----------------------------------------------------------------

void register_all() {
  for (const Sizes& s : kGpuTiers) {
    add_case("block", "gecko", s, block_work(s, block_config(s)),
             [s](cudaStream_t st) { return std::make_unique<BlockCase>(s, st); });
    add_case("block", "cublas_gemms", s, block_gemms_work(s),
             [s](cudaStream_t st) { return std::make_unique<BlockGemmsCase>(s, st); });
  }
  const model::Config c = model_config();
  const double prompt = double(kPrefillTokens);
  auto prefill = [](cudaStream_t st) { return std::make_unique<PrefillCase>(st); };
  add_case("model_prefill", "gecko", kSmall.name, benchmark::kMillisecond, prefill_work(c), prefill, {},
           {prompt, false});
  add_case("model_step", "gecko", kSmall.name, benchmark::kMicrosecond, step_work(c),
           [](cudaStream_t st) { return std::make_unique<StepCase>(st); },
           "bytes: weights read once; FLOPs: 2 per GEMM weight", {1, false});
  add_case("model_step", "prefill_per_token", kSmall.name, benchmark::kMicrosecond, prefill_work(c), prefill, {},
           {prompt, true});
}

}  // namespace
}  // namespace gecko::bench::gpu

int main(int argc, char** argv) {
  return gecko::bench::gpu::run_gpu_benchmarks(argc, argv, gecko::bench::gpu::register_all);
}
