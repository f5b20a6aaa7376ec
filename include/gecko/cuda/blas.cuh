#pragma once
// BlasHandle: RAII over a cuBLASLt handle bound to one stream, in the CudaExecutor's style, with
// the workspace its matmuls may use and the plans of the GEMM shapes seen so far. A plan is the
// matmul and layout descriptors plus the algorithm cuBLASLt's heuristic picked for them; shapes
// repeat from call to call (a model sees a few token counts and a few weight shapes), so the
// heuristic runs once per shape, not once per GEMM. Not thread-safe: one handle per thread.
// Include from .cu files only (cuda/linear.cuh is the typed front end).

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string_view>
#include <tuple>
#include <utility>

#include "gecko/core/error.hpp"
#include "gecko/cuda/check.cuh"

namespace gecko::cuda {

inline void check_blas(cublasStatus_t status, std::string_view what) {
  if (status != CUBLAS_STATUS_SUCCESS) fail(what, ": ", cublasLtGetStatusString(status));
}

inline const char* blas_type_name(cudaDataType_t type) {
  switch (type) {
    case CUDA_R_32F: return "float32";
    case CUDA_R_16BF: return "bfloat16";
    case CUDA_R_16F: return "float16";
    default: return "an unsupported type";
  }
}

// The epilogue of a GEMM: the bias is added by cuBLASLt itself (CUBLASLT_EPILOGUE_BIAS), and an
// accumulating GEMM adds the product to what the output holds (beta = 1), which is how a residual
// sum of two products is fused.
struct GemmEpilogue {
  const void* bias = nullptr;  // (out) in the output's element type; nullptr = none
  bool accumulate = false;     // y += x·Wᵀ (+ bias) instead of y = x·Wᵀ (+ bias)
};

class BlasHandle {
 public:
  // 32 MiB: the workspace cuBLAS recommends for Hopper.
  static constexpr std::size_t kDefaultWorkspace = std::size_t(32) << 20;

  // Works on the current device; `stream` is borrowed (nullptr is the legacy default stream).
  explicit BlasHandle(cudaStream_t stream = nullptr, std::size_t workspace_bytes = kDefaultWorkspace)
      : stream_(stream), workspace_bytes_(workspace_bytes) {
    check_blas(cublasLtCreate(&handle_), "BlasHandle: cublasLtCreate");
    if (workspace_bytes_ > 0) {
      const cudaError_t status = cudaMalloc(&workspace_, workspace_bytes_);
      if (status != cudaSuccess) {
        cublasLtDestroy(handle_);
        check(status, "BlasHandle: cudaMalloc of the GEMM workspace");
      }
    }
  }
  BlasHandle(BlasHandle&& o) noexcept
      : stream_(o.stream_),
        workspace_bytes_(o.workspace_bytes_),
        handle_(std::exchange(o.handle_, nullptr)),
        workspace_(std::exchange(o.workspace_, nullptr)),
        plans_(std::move(o.plans_)) {}
  BlasHandle(const BlasHandle&) = delete;
  BlasHandle& operator=(const BlasHandle&) = delete;
  BlasHandle& operator=(BlasHandle&&) = delete;
  ~BlasHandle() {
    plans_.clear();  // descriptors before the handle
    if (workspace_) cudaFree(workspace_);
    if (handle_) cublasLtDestroy(handle_);
  }

  cudaStream_t stream() const { return stream_; }

  // Row-major y (rows, out) = x (rows, in) · w (out, in)ᵀ, all of element type `type`, computed in
  // float32 (CUBLAS_COMPUTE_32F: no TF32 for float inputs), with the epilogue. Device pointers.
  void gemm_xwt(cudaDataType_t type, const void* x, const void* w, void* y, std::int64_t rows,
                std::int64_t out, std::int64_t in, const GemmEpilogue& epilogue) {
    if (rows == 0 || out == 0) return;
    const Key key{int(type), rows, out, in, epilogue.bias != nullptr, epilogue.accumulate,
                  alignment(x), alignment(w), alignment(y), alignment(epilogue.bias)};
    auto it = plans_.find(key);
    if (it == plans_.end()) it = plans_.emplace(key, make_plan(key, epilogue.bias)).first;
    Plan& plan = *it->second;
    if (epilogue.bias)
      check_blas(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                &epilogue.bias, sizeof(epilogue.bias)),
                 "cuda::linear: setting the bias pointer");
    const float alpha = 1.f, beta = epilogue.accumulate ? 1.f : 0.f;
    // Column-major view of the row-major product: yᵀ (out × rows) = w (stored in × out, op T) · xᵀ
    // (stored in × rows, op N); the bias runs along yᵀ's rows, the output features.
    check_blas(cublasLtMatmul(handle_, plan.desc, &alpha, w, plan.a, x, plan.b, &beta, y, plan.d, y,
                              plan.d, &plan.algo, workspace_, workspace_bytes_, stream_),
               "cuda::linear: cublasLtMatmul");
  }

  // Plans held (distinct GEMM shapes seen), for tests.
  std::size_t plans() const { return plans_.size(); }

 private:
  // (type, rows, out, in, bias, accumulate, alignments of x, w, y, bias)
  using Key = std::tuple<int, std::int64_t, std::int64_t, std::int64_t, bool, bool, unsigned,
                         unsigned, unsigned, unsigned>;

  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
    cublasLtMatmulAlgo_t algo{};
    Plan() = default;
    Plan(const Plan&) = delete;
    Plan& operator=(const Plan&) = delete;
    ~Plan() {
      if (d) cublasLtMatrixLayoutDestroy(d);
      if (b) cublasLtMatrixLayoutDestroy(b);
      if (a) cublasLtMatrixLayoutDestroy(a);
      if (desc) cublasLtMatmulDescDestroy(desc);
    }
  };

  // The largest power of two up to 256 dividing the address: what the algorithms may assume.
  static unsigned alignment(const void* p) {
    const auto address = reinterpret_cast<std::uintptr_t>(p);
    unsigned a = 256;
    while (a > 1 && address % a != 0) a /= 2;
    return a;
  }

  std::unique_ptr<Plan> make_plan(const Key& key, const void* bias) {
    const auto [type_id, rows, out, in, has_bias, accumulate, align_x, align_w, align_y, align_bias] = key;
    (void)accumulate;
    (void)align_bias;  // read by the heuristic from the bias pointer itself
    const auto type = cudaDataType_t(type_id);
    auto plan = std::make_unique<Plan>();
    constexpr const char* what = "cuda::linear: preparing the GEMM";
    check_blas(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), what);
    const cublasOperation_t transpose = CUBLAS_OP_T, plain = CUBLAS_OP_N;
    check_blas(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &transpose,
                                              sizeof(transpose)), what);
    check_blas(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &plain,
                                              sizeof(plain)), what);
    if (has_bias) {
      const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
      check_blas(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                                sizeof(epilogue)), what);
      check_blas(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                sizeof(bias)), what);
    }
    // Layouts as stored, column-major: w is (in × out), x is (in × rows), y is (out × rows).
    check_blas(cublasLtMatrixLayoutCreate(&plan->a, type, std::uint64_t(in), std::uint64_t(out), in), what);
    check_blas(cublasLtMatrixLayoutCreate(&plan->b, type, std::uint64_t(in), std::uint64_t(rows), in), what);
    check_blas(cublasLtMatrixLayoutCreate(&plan->d, type, std::uint64_t(out), std::uint64_t(rows), out), what);

    cublasLtMatmulPreference_t preference = nullptr;
    check_blas(cublasLtMatmulPreferenceCreate(&preference), what);
    struct PreferenceGuard {
      cublasLtMatmulPreference_t p;
      ~PreferenceGuard() { cublasLtMatmulPreferenceDestroy(p); }
    } guard{preference};
    const std::uint64_t workspace = workspace_bytes_;
    check_blas(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                    &workspace, sizeof(workspace)), what);
    const std::pair<cublasLtMatmulPreferenceAttributes_t, std::uint32_t> alignments[] = {
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_w},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_x},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_y},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_y}};
    for (const auto& [attribute, bytes] : alignments)
      check_blas(cublasLtMatmulPreferenceSetAttribute(preference, attribute, &bytes, sizeof(bytes)), what);

    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    check_blas(cublasLtMatmulAlgoGetHeuristic(handle_, plan->desc, plan->a, plan->b, plan->d, plan->d,
                                              preference, 1, &result, &found),
               "cuda::linear: cublasLtMatmulAlgoGetHeuristic");
    require(found > 0 && result.state == CUBLAS_STATUS_SUCCESS,
            "cuda::linear: cuBLASLt has no algorithm for y (", rows, " x ", out, ") = x (", rows,
            " x ", in, ") · Wᵀ in ", blas_type_name(type), has_bias ? " and a bias" : "");
    plan->algo = result.algo;
    return plan;
  }

  cudaStream_t stream_;
  std::size_t workspace_bytes_;
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

}  // namespace gecko::cuda
