#pragma once
// CudaExecutor: runs ops on a CUDA stream. An assignment becomes one launch of the fused
// elementwise kernel for its expression type. Launches are asynchronous and checked at once;
// nothing here synchronises (DeviceBuffer::to_host does, where results are needed).
// Include through gecko/cuda.cuh, from .cu files only.

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "gecko/core/tensor.hpp"
#include "gecko/cuda/check.cuh"
#include "gecko/cuda/elementwise.cuh"
#include "gecko/exec/executor.hpp"
#include "gecko/expr/assign.hpp"

namespace gecko {

class CudaExecutor {
 public:
  static constexpr Space space = Space::Device;

  // Works on the current device; `stream` is borrowed (nullptr is the legacy default stream).
  explicit CudaExecutor(cudaStream_t stream = nullptr) : stream_(stream) {
    int device = 0, sms = 0;
    cuda::check(cudaGetDevice(&device), "CudaExecutor: cudaGetDevice");
    cuda::check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device),
                "CudaExecutor: reading the multiprocessor count");
    max_blocks_ = sms * cuda::kElementwiseBlocksPerSm;
  }

  cudaStream_t stream() const { return stream_; }

  template <class T, class E>
  void execute(const expr::Assign<T, E>& a) const {
    if (a.out.space != Space::Device)
      fail("CudaExecutor: output of shape ", a.out.shape.str(),
           " is in host memory, expected device memory");
    a.e.check_space(Space::Device, "CudaExecutor");
    const std::int64_t n = a.out.numel();
    if (n == 0) return;  // an empty grid is a launch error
    const std::int64_t cols = a.out.rank() > 0 ? a.out.shape[a.out.rank() - 1] : 1;
    const std::int64_t blocks = std::min<std::int64_t>(
        (n + cuda::kElementwiseThreads - 1) / cuda::kElementwiseThreads, max_blocks_);
    cuda::elementwise_kernel<T, E>
        <<<unsigned(blocks), cuda::kElementwiseThreads, 0, stream_>>>(a.out.data, n, cols, a.e);
    cuda::check_launch("CudaExecutor: elementwise kernel");
  }

 private:
  cudaStream_t stream_;
  int max_blocks_ = 0;
};

}  // namespace gecko
