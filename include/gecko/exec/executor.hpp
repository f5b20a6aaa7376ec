#pragma once
// run(op, exec): the one entry point that hands work to a backend. An executor says where its
// tensors live (`space`) and how it executes each kind of op it knows (`execute(op)`); the same
// test or layer body then runs on CpuExecutor or CudaExecutor (cuda/executor.cuh).

#include <concepts>

#include "gecko/core/tensor.hpp"

namespace gecko {

template <class Exec, class Op>
concept ExecutorFor = requires(const Exec& exec, const Op& op) {
  { Exec::space } -> std::convertible_to<Space>;
  exec.execute(op);
};

template <class Op, class Exec>
  requires ExecutorFor<Exec, Op>
void run(const Op& op, const Exec& exec) {
  exec.execute(op);
}

}  // namespace gecko
