// GPU benchmarks of sliding chunk attention (§10) and the adaptive working memory (§11) in
// bfloat16, a prefill call from a fresh stream (L a multiple of C, no documents). Attention runs
// against the reference method on the same inputs, cuBLAS batched GEMMs Q_c·K_wᵀ and P·V_w per
// chunk around a masked row softmax kernel (its output is checked against the op's); the working
// memory against its three products per chunk as cuBLAS batched GEMMs. The FLOP roof is a
// same-run 8192³ bfloat16 cuBLAS GEMM. Baselines: support/cuda_gemms.hpp.

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <memory>

#include "gecko/cuda.cuh"
#include "gecko/cuda/sliding_chunk_attention.cuh"
#include "gecko/cuda/working_memory.cuh"
#include "support/cuda_gemms.hpp"
#include "support/cuda_main.hpp"
#include "support/work.hpp"

namespace gecko::bench::gpu {
namespace {

using T = bfloat16;

// ---------------------------------------------------------------- sliding chunk attention (§10)

// q, k, v read once, y written once; FLOPs 2·(dk + dv) per visible (query, key) pair.
Work sca_work(const Sizes& s) {
  return {double(s.tokens() * (2 * s.S + 2 * s.E)) * sizeof(T), work::sca(s).flops};
}

class ScaCase : public Case {
 public:
  ScaCase(const Sizes& s, bool baseline, cudaStream_t stream)
      : s_(s), q_(Shape{s.B, s.L, s.H, s.dk()}), k_(q_.shape()), v_(Shape{s.B, s.L, s.H, s.dv()}),
        y_(Shape{s.B, s.L, s.E}) {
    // q and k ~ N(0, dk^-1/2) per entry, so that the logits (scale 1) are ~ N(0, 1).
    const float qk_scale = float(std::pow(double(s.dk()), -0.25));
    fill_normal(q_, 61, qk_scale, stream);
    fill_normal(k_, 62, qk_scale, stream);
    fill_normal(v_, 63, 1.f, stream);
    poison(y_, stream);
    run_op(stream);
    require_finite("attention output", y_, stream);
    if (baseline) {
      cublas_ = std::make_unique<Cublas>(stream);
      y_reference_ = DeviceBuffer<T>(y_.shape());
      gemms_ = std::make_unique<AttentionGemmsSoftmax>(s, q_.data(), k_.data(), v_.data(),
                                                       y_reference_.data(), stream);
      poison(y_reference_, stream);
      run(stream);
      // Both round products to bfloat16 at different points (the reference rounds P once, the
      // op keeps P as hi + lo): a few bfloat16 steps apart; a wrong mask or layout is O(1).
      require_same("GEMM + softmax attention against cuda::sliding_chunk_attention", y_reference_,
                   y_, 2e-2, stream);
    }
  }
  void run(cudaStream_t stream) override {
    if (gemms_)
      gemms_->run(cublas_->get(), stream);
    else
      run_op(stream);
  }

 private:
  void run_op(cudaStream_t stream) {
    cuda::sliding_chunk_attention<T>(q_.view(), k_.view(), v_.view(), cuda::AttentionWindow<T>{}, {}, {},
                                     s_.C, 0, cpu::AttentionPattern::SlidingChunks, y_.view(), stream);
  }

  Sizes s_;
  DeviceBuffer<T> q_, k_, v_, y_, y_reference_;
  std::unique_ptr<Cublas> cublas_;
  std::unique_ptr<AttentionGemmsSoftmax> gemms_;
};

// ---------------------------------------------------------------- working memory (§11)

// aq, ak, v read; the output, the key window (C × dk, bfloat16), the memory (dk × dv) and the log
// normaliser (dk), both float32, written per (b, h).
Work awm_work(const Sizes& s) {
  return {double(s.tokens() * (2 * s.S + 2 * s.E) + s.B * s.H * s.C * s.dk()) * sizeof(T) +
              double(s.B * s.H * (s.dk() * s.dv() + s.dk())) * sizeof(float),
          work::awm(s).flops};
}

class AwmCase : public Case {
 public:
  AwmCase(const Sizes& s, bool baseline, cudaStream_t stream)
      : s_(s), aq_(Shape{s.B, s.L, s.S}), ak_(aq_.shape()), v_(Shape{s.B, s.L, s.E}), out_(v_.shape()) {
    fill_normal(aq_, 71, 1.f, stream);
    fill_normal(ak_, 72, 1.f, stream);
    fill_normal(v_, 73, 1.f, stream);
    if (baseline) {
      cublas_ = std::make_unique<Cublas>(stream);
      gemms_ = std::make_unique<MemoryGemms>(s, aq_.data(), ak_.data(), v_.data(), out_.data(), stream);
      return;
    }
    new_key_ = DeviceBuffer<T>(Shape{s.B, s.H, s.C, s.dk()});
    memory_ = DeviceBuffer<float>(Shape{s.B, s.H, s.dk(), s.dv()});
    log_norm_ = DeviceBuffer<float>(Shape{s.B, s.H, s.dk()});
    poison(out_, stream);
    poison(memory_, stream);
    run(stream);
    require_finite("working memory output", out_, stream);
    require_finite("working memory state", memory_, stream);
  }
  void run(cudaStream_t stream) override {
    if (gemms_) {
      gemms_->run(cublas_->get());
      return;
    }
    cuda::WorkingMemoryState<T> state{{}, memory_.view(), log_norm_.view(), false};  // fresh stream
    cuda::working_memory<T>(aq_.view(), ak_.view(), v_.view(), {}, state, {}, int(s_.H), s_.C,
                            out_.view(), new_key_.view(), stream);
  }

 private:
  Sizes s_;
  DeviceBuffer<T> aq_, ak_, v_, out_, new_key_;
  DeviceBuffer<float> memory_, log_norm_;
  std::unique_ptr<Cublas> cublas_;
  std::unique_ptr<MemoryGemms> gemms_;
};

// ---------------------------------------------------------------- roof: a large bf16 GEMM

constexpr int kRoofN = 8192;

class GemmRoofCase : public Case {
 public:
  explicit GemmRoofCase(cudaStream_t stream)
      : cublas_(stream), a_(Shape{kRoofN, kRoofN}), b_(a_.shape()), c_(a_.shape()) {
    fill_normal(a_, 81, 1.f, stream);
    fill_normal(b_, 82, 1.f, stream);
  }
  void run(cudaStream_t) override {
    const float one = 1.f, zero = 0.f;
    check_cublas(cublasGemmEx(cublas_.get(), CUBLAS_OP_N, CUBLAS_OP_N, kRoofN, kRoofN, kRoofN, &one,
                              a_.data(), CUDA_R_16BF, kRoofN, b_.data(), CUDA_R_16BF, kRoofN, &zero,
                              c_.data(), CUDA_R_16BF, kRoofN, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx");
  }

 private:
  Cublas cublas_;
  DeviceBuffer<T> a_, b_, c_;
};

// ----------------------------------------------------------------

void register_all() {
  targets().push_back({"sca", k7B.name, Target::MinFlops, 400e12});
  targets().push_back({"sca", k7B.name, Target::MinSpeedup, 1.2, "cublas_softmax"});
  targets().push_back({"awm", k7B.name, Target::MinFlops, 350e12});

  for (const Sizes& s : kGpuTiers) {
    add_case("sca", "gecko", s, sca_work(s),
             [s](cudaStream_t st) { return std::make_unique<ScaCase>(s, false, st); },
             target_label("sca", s));
    add_case("sca", "cublas_softmax", s, AttentionGemmsSoftmax::work(s),
             [s](cudaStream_t st) { return std::make_unique<ScaCase>(s, true, st); });

    add_case("awm", "gecko", s, awm_work(s),
             [s](cudaStream_t st) { return std::make_unique<AwmCase>(s, false, st); },
             target_label("awm", s));
    add_case("awm", "cublas_gemms", s, MemoryGemms::work(s),
             [s](cudaStream_t st) { return std::make_unique<AwmCase>(s, true, st); });
  }
  const double n = kRoofN;
  add_case("roof", "gemm_bf16", "device", benchmark::kMillisecond,
           {3 * n * n * double(sizeof(T)), 2 * n * n * n},
           [](cudaStream_t st) { return std::make_unique<GemmRoofCase>(st); });
}

}  // namespace
}  // namespace gecko::bench::gpu

int main(int argc, char** argv) {
  return gecko::bench::gpu::run_gpu_benchmarks(argc, argv, gecko::bench::gpu::register_all);
}
