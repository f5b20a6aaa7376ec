#pragma once
// The CUDA entry header, for .cu files compiled by nvcc: the expression layer, the CPU executor
// (so one test or layer body can run on both), device buffers and the CUDA executor.
// Everything outside gecko/cuda/ compiles with a plain host compiler and never includes this.

#include "gecko/core/config.hpp"

#if !GECKO_CUDA_COMPILER
#error "gecko/cuda.cuh is for .cu files compiled by nvcc; host code includes gecko/expr and gecko/exec"
#endif

#include "gecko/cuda/check.cuh"
#include "gecko/cuda/device_buffer.cuh"
#include "gecko/cuda/elementwise.cuh"
#include "gecko/cuda/executor.cuh"
#include "gecko/exec/cpu_executor.hpp"
#include "gecko/expr/expr.hpp"
