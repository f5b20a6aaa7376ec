#pragma once
// The cuBLAS baselines of the GPU attention benchmarks, in bfloat16 with float32 accumulation
// (the reference implementation's precision), on the op's own buffers and layouts:
//   * sliding chunk attention the reference way (§10.3): per (b, h) and chunk c the logits
//     S = Q_c·K_wᵀ (C × W, W = C for c = 0 and 2C after; float32), a row softmax kernel with the
//     causal window mask (probabilities rounded to bfloat16), then y_c = P·V_w, as batched GEMMs
//     over every (b, h, c) of one window size;
//   * the working memory's three products per (b, h) and absorbed chunk (§11.3): the read Φ_c·M,
//     the prediction Ψ_{c−1}·M and the update Ω·R, in chunk order, batched over (b, h), with M in
//     bfloat16 as the reference keeps it; nothing else of the op (no softmaxes, no M update);
//   * a large square GEMM, the same-run tensor-core roof.
// cuBLAS is column-major: a row-major (rows × cols) block with row stride ld is, to cuBLAS, the
// column-major (cols × rows) matrix with leading dimension ld, so each row-major product
// Y = A·B below is issued as Yᵀ = Bᵀ·Aᵀ.

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <string_view>
#include <vector>

#include "gecko/core/dtype.hpp"
#include "support/cuda_bench.hpp"

namespace gecko::bench::gpu {

inline void check_cublas(cublasStatus_t status, std::string_view what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    fail("bench: ", what, ": ", cublasGetStatusName(status), ": ", cublasGetStatusString(status));
}

// A cuBLAS handle issuing on one stream.
class Cublas {
 public:
  explicit Cublas(cudaStream_t stream) {
    check_cublas(cublasCreate(&handle_), "cublasCreate");
    check_cublas(cublasSetStream(handle_, stream), "cublasSetStream");
  }
  Cublas(const Cublas&) = delete;
  Cublas& operator=(const Cublas&) = delete;
  ~Cublas() { cublasDestroy(handle_); }
  cublasHandle_t get() const { return handle_; }

 private:
  cublasHandle_t handle_ = nullptr;
};

// One cublasGemmBatchedEx call, column-major: C_i (m × n) = op(A_i)·op(B_i), bfloat16 operands,
// float32 accumulation, C in `c_type` (bfloat16 or float32). The pointer arrays live on the device.
class BatchedGemm {
 public:
  BatchedGemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, int lda, int ldb,
              int ldc, cudaDataType c_type, const std::vector<const void*>& a,
              const std::vector<const void*>& b, const std::vector<void*>& c, cudaStream_t stream)
      : ta_(ta), tb_(tb), m_(m), n_(n), k_(k), lda_(lda), ldb_(ldb), ldc_(ldc), c_type_(c_type),
        count_(int(a.size())), a_(upload(a, stream)), b_(upload(b, stream)), c_(upload(c, stream)) {}

  void run(cublasHandle_t handle) const {
    const float one = 1.f, zero = 0.f;
    check_cublas(cublasGemmBatchedEx(handle, ta_, tb_, m_, n_, k_, &one,
                                     reinterpret_cast<const void* const*>(a_.data()), CUDA_R_16BF, lda_,
                                     reinterpret_cast<const void* const*>(b_.data()), CUDA_R_16BF, ldb_,
                                     &zero, reinterpret_cast<void* const*>(c_.data()), c_type_, ldc_,
                                     count_, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmBatchedEx");
  }

 private:
  template <class P>
  static DeviceBuffer<std::uint64_t> upload(const std::vector<P>& pointers, cudaStream_t stream) {
    Tensor<std::uint64_t> host(Shape{std::int64_t(pointers.size())});
    for (std::size_t i = 0; i < pointers.size(); ++i)
      host[std::int64_t(i)] = reinterpret_cast<std::uintptr_t>(pointers[i]);
    return DeviceBuffer<std::uint64_t>(host, stream);
  }

  cublasOperation_t ta_, tb_;
  int m_, n_, k_, lda_, ldb_, ldc_;
  cudaDataType c_type_;
  int count_;
  DeviceBuffer<std::uint64_t> a_, b_, c_;
};

// ---- the reference attention: GEMM, masked row softmax, GEMM ----

// Reduces over the block (blockDim.x a multiple of 32); `partial` is 32 floats of shared memory.
template <class Op>
__device__ float block_reduce(float v, float* partial, Op op) {
  for (int offset = 16; offset > 0; offset /= 2) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  const int lane = int(threadIdx.x % 32), warp = int(threadIdx.x / 32);
  __syncthreads();  // partial may still be read by an earlier reduction
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = partial[0];
  for (int w = 1; w < int(blockDim.x / 32); ++w) v = op(v, partial[w]);
  return v;
}

// Row r of the logits (rows × W per batch, float32) → probabilities (bfloat16): in a chunk's
// row i the window columns j <= i + offset are visible (offset C for the chunks after the first,
// whose window starts one chunk earlier; 0 for the first), the others get 0. One block per row;
// the row is read once into shared memory (W floats, dynamic).
template <class T>
__global__ void causal_softmax_kernel(const float* __restrict__ logits, T* __restrict__ probs,
                                      int rows, int W, int offset) {
  extern __shared__ float row[];
  __shared__ float partial[32];
  const std::int64_t r = std::int64_t(blockIdx.y) * rows + blockIdx.x;
  const float* s = logits + r * W;
  T* p = probs + r * W;
  const int visible = int(blockIdx.x) + offset + 1;
  float m = -INFINITY;
  for (int j = int(threadIdx.x); j < visible; j += blockDim.x) {
    row[j] = s[j];
    m = fmaxf(m, row[j]);
  }
  m = block_reduce(m, partial, [](float a, float b) { return fmaxf(a, b); });
  float sum = 0.f;
  for (int j = int(threadIdx.x); j < visible; j += blockDim.x) {
    row[j] = expf(row[j] - m);
    sum += row[j];
  }
  sum = block_reduce(sum, partial, [](float a, float b) { return a + b; });
  const float inv = 1.f / sum;
  for (int j = int(threadIdx.x); j < W; j += blockDim.x) p[j] = T(j < visible ? row[j] * inv : 0.f);
}

// Sliding chunk attention of a fresh stream (start 0, no window, no segments, L a multiple of C)
// on q, k (B, L, H, dk), v (B, L, H, dv) into y (B, L, H·dv), all bfloat16.
class AttentionGemmsSoftmax {
 public:
  using T = bfloat16;
  static constexpr int kSoftmaxThreads = 256;

  AttentionGemmsSoftmax(const Sizes& s, const T* q, const T* k, const T* v, T* y, cudaStream_t stream)
      : C_(int(s.C)) {
    const std::int64_t chunks = s.L / s.C, dk = s.dk(), dv = s.dv(), H = s.H;
    for (int later = 0; later < 2; ++later) {  // the first chunks (W = C), then the others (W = 2C)
      std::vector<const void*> qp, kp, vp;
      std::vector<void*> sp, pp_out, yp;
      const std::int64_t W = later ? 2 * s.C : s.C;
      const std::int64_t batches = s.B * H * (later ? chunks - 1 : 1);
      if (batches == 0) continue;
      Group g{int(W), later ? C_ : 0, int(batches), DeviceBuffer<float>(Shape{batches, s.C, W}),
              DeviceBuffer<T>(Shape{batches, s.C, W}), {}, {}};
      std::int64_t i = 0;
      for (std::int64_t b = 0; b < s.B; ++b)
        for (std::int64_t h = 0; h < H; ++h)
          for (std::int64_t c = later ? 1 : 0; c < (later ? chunks : 1); ++c, ++i) {
            const std::int64_t lo = later ? (c - 1) * s.C : 0, row = b * s.L;
            qp.push_back(q + ((row + c * s.C) * H + h) * dk);
            kp.push_back(k + ((row + lo) * H + h) * dk);
            vp.push_back(v + ((row + lo) * H + h) * dv);
            yp.push_back(y + (row + c * s.C) * H * dv + h * dv);
            sp.push_back(g.logits.data() + i * s.C * W);
            pp_out.push_back(g.probs.data() + i * s.C * W);
          }
      // Sᵀ (W × C) = K_w·Q_cᵀ: logits row-major (C × W).
      g.logits_gemm = std::make_unique<BatchedGemm>(CUBLAS_OP_T, CUBLAS_OP_N, int(W), C_, int(dk),
                                                    int(H * dk), int(H * dk), int(W), CUDA_R_32F, kp,
                                                    qp, sp, stream);
      // yᵀ (dv × C) = V_wᵀ·Pᵀ: y_c row-major (C × dv) with row stride H·dv.
      const std::vector<const void*> pp(pp_out.begin(), pp_out.end());
      g.values_gemm = std::make_unique<BatchedGemm>(CUBLAS_OP_N, CUBLAS_OP_N, int(dv), C_, int(W),
                                                    int(H * dv), int(W), int(H * dv), CUDA_R_16BF, vp,
                                                    pp, yp, stream);
      groups_.push_back(std::move(g));
    }
  }

  void run(cublasHandle_t handle, cudaStream_t stream) {
    for (Group& g : groups_) {
      g.logits_gemm->run(handle);
      causal_softmax_kernel<T><<<dim3(unsigned(C_), unsigned(g.batches)), kSoftmaxThreads,
                                 std::size_t(g.W) * sizeof(float), stream>>>(
          g.logits.data(), g.probs.data(), C_, g.W, g.offset);
      cuda::check_launch("bench: causal_softmax_kernel");
      g.values_gemm->run(handle);
    }
  }

  // q, k, v, y read and written once; FLOPs of the dense blocks, masked entries included:
  // 2·C·W·(dk + dv) per (b, h, c).
  static Work work(const Sizes& s) {
    const std::int64_t chunks = s.L / s.C;
    const double windows = double(s.C) + double(chunks - 1) * double(2 * s.C);  // Σ_c W
    return {double(s.tokens() * (2 * s.S + 2 * s.E)) * sizeof(T),
            2.0 * double(s.B * s.H) * double(s.C) * windows * double(s.dk() + s.dv())};
  }

 private:
  struct Group {
    int W, offset, batches;
    DeviceBuffer<float> logits;  // (batches, C, W)
    DeviceBuffer<T> probs;       // (batches, C, W)
    std::unique_ptr<BatchedGemm> logits_gemm, values_gemm;
  };
  int C_;
  std::vector<Group> groups_;
};

// ---- the working memory's products ----

// aq, ak (B, L, H·dk) and v, out (B, L, H·dv), bfloat16, a chunked call from a fresh stream: per
// absorbed chunk c >= 1 and (b, h), out_c = Φ_c·M, pred = Ψ_{c−1}·M and U = Ω·V_{c−1} with Φ, Ψ
// the raw rows of aq, ak of chunks c and c − 1 (the op's softmaxes are not run) and Ω those of
// ak transposed; the residual V − pred is not formed (as in the CPU baseline, support/gemms.hpp).
// M (dk × dv), pred (C × dv) and U (dk × dv) are per (b, h) bfloat16.
class MemoryGemms {
 public:
  using T = bfloat16;

  MemoryGemms(const Sizes& s, const T* aq, const T* ak, const T* v, T* out, cudaStream_t stream)
      : memory_(Shape{s.B * s.H, s.dk(), s.dv()}), predicted_(Shape{s.B * s.H, s.C, s.dv()}),
        update_(Shape{s.B * s.H, s.dk(), s.dv()}) {
    fill_normal(memory_, 51, 0.05f, stream);
    const std::int64_t H = s.H, dk = s.dk(), dv = s.dv(), C = s.C;
    for (std::int64_t c = 1; c < s.L / C; ++c) {
      std::vector<const void*> m, phi, psi, values;
      std::vector<void*> y, pred, u;
      for (std::int64_t b = 0; b < s.B; ++b)
        for (std::int64_t h = 0; h < H; ++h) {
          const std::int64_t bh = b * H + h, row = b * s.L;
          m.push_back(memory_.data() + bh * dk * dv);
          phi.push_back(aq + ((row + c * C) * H + h) * dk);
          psi.push_back(ak + ((row + (c - 1) * C) * H + h) * dk);
          y.push_back(out + (row + c * C) * H * dv + h * dv);
          pred.push_back(predicted_.data() + bh * C * dv);
          values.push_back(v + ((row + (c - 1) * C) * H + h) * dv);
          u.push_back(update_.data() + bh * dk * dv);
        }
      Chunk k;
      // out_cᵀ (dv × C) = Mᵀ·Φ_cᵀ and predᵀ = Mᵀ·Ψᵀ: M row-major (dk × dv), rows of stride H·dk.
      k.read = std::make_unique<BatchedGemm>(CUBLAS_OP_N, CUBLAS_OP_N, int(dv), int(C), int(dk), int(dv),
                                             int(H * dk), int(H * dv), CUDA_R_16BF, m, phi, y, stream);
      k.predict = std::make_unique<BatchedGemm>(CUBLAS_OP_N, CUBLAS_OP_N, int(dv), int(C), int(dk), int(dv),
                                                int(H * dk), int(dv), CUDA_R_16BF, m, psi, pred, stream);
      // Uᵀ (dv × dk) = V_{c−1}ᵀ·Ωᵀ, Ωᵀ = the chunk's key rows (C × dk).
      k.update = std::make_unique<BatchedGemm>(CUBLAS_OP_N, CUBLAS_OP_T, int(dv), int(dk), int(C),
                                               int(H * dv), int(H * dk), int(dv), CUDA_R_16BF, values,
                                               psi, u, stream);
      chunks_.push_back(std::move(k));
    }
  }

  void run(cublasHandle_t handle) const {
    for (const Chunk& k : chunks_) {
      k.read->run(handle);
      k.predict->run(handle);
      k.update->run(handle);
    }
  }

  // aq, ak, v read, out written, M read (bfloat16); 3 products of 2·C·dk·dv per (b, h) and
  // absorbed chunk.
  static Work work(const Sizes& s) {
    return {double(s.tokens() * (2 * s.S + 2 * s.E) + s.B * s.H * s.dk() * s.dv()) * sizeof(T),
            double(s.B * s.H) * double(s.L / s.C - 1) * 6.0 * double(s.C * s.dk() * s.dv())};
  }

 private:
  struct Chunk {
    std::unique_ptr<BatchedGemm> read, predict, update;
  };
  DeviceBuffer<T> memory_, predicted_, update_;
  std::vector<Chunk> chunks_;
};

}  // namespace gecko::bench::gpu
