#pragma once
// CUDA error checks that throw gecko::Error with the runtime's own description. Call
// check_launch after every kernel launch: it reports configuration errors at once; execution
// errors surface at the next synchronising call, which is also checked.

#include <cuda_runtime.h>

#include <string_view>

#include "gecko/core/error.hpp"

namespace gecko::cuda {

inline void check(cudaError_t status, std::string_view what) {
  if (status != cudaSuccess)
    fail(what, ": ", cudaGetErrorName(status), ": ", cudaGetErrorString(status));
}

inline void check_launch(std::string_view kernel) { check(cudaGetLastError(), kernel); }

}  // namespace gecko::cuda
