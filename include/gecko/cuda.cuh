#pragma once
// The CUDA entry header, for .cu files compiled by nvcc: the expression layer, the CPU executor
// (so one test or layer body can run on both), device buffers, the CUDA executor, and the CUDA
// ops whose headers are light: cuBLASLt linear (blas, linear), group norms, the tensor-core
// helpers (mma), the z projections with RoPE, sliding chunk attention and the working memory.
// Everything outside gecko/cuda/ compiles with a plain host compiler and never includes this.
//
// Included on their own where needed:
//   gecko/cuda/timestep_norm.cuh, gecko/cuda/cema.cuh: they use CUB, whose libcu++ headers
//     declare a global namespace ::cuda, so that after `using namespace gecko;` a plain `cuda::`
//     becomes ambiguous (spell gecko::cuda, or an alias, in such files); each also adds about
//     1.4 s of nvcc time to a translation unit.
//   gecko/cuda/model.cuh (the GPU model): it includes those two and the CPU model (Eigen, the
//     checkpoint reader), about 6-7 s of nvcc time more per translation unit.

#include "gecko/core/config.hpp"

#if !GECKO_CUDA_COMPILER
#error "gecko/cuda.cuh is for .cu files compiled by nvcc; host code includes gecko/expr and gecko/exec"
#endif

#include "gecko/cuda/blas.cuh"
#include "gecko/cuda/check.cuh"
#include "gecko/cuda/device_buffer.cuh"
#include "gecko/cuda/elementwise.cuh"
#include "gecko/cuda/executor.cuh"
#include "gecko/cuda/group_norm.cuh"
#include "gecko/cuda/linear.cuh"
#include "gecko/cuda/mma.cuh"
#include "gecko/cuda/projections.cuh"
#include "gecko/cuda/sliding_chunk_attention.cuh"
#include "gecko/cuda/working_memory.cuh"
#include "gecko/exec/cpu_executor.hpp"
#include "gecko/expr/expr.hpp"
