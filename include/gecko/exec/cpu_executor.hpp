#pragma once
// CpuExecutor: evaluates an assignment in one loop over the output, which the compiler inlines
// and vectorises; no temporaries, no allocation when it runs on the calling thread. Large sizes
// may be split over the worker pool (threads > 1, core/threads.hpp), each run taking whole rows.

#include <algorithm>
#include <cstdint>

#include "gecko/core/tensor.hpp"
#include "gecko/core/threads.hpp"
#include "gecko/exec/executor.hpp"
#include "gecko/expr/assign.hpp"

namespace gecko {

namespace detail {
// Units [u0, u1) of the output: rows of `cols` elements when a leaf reads the column (so the
// inner loop is a plain contiguous run), single elements otherwise.
template <class T, class E>
void cpu_elementwise(T* out, const E& expression, std::int64_t cols, std::int64_t u0,
                     std::int64_t u1) {
  const E e = expression;  // a local copy: stores to out cannot change the leaves' pointers
  if constexpr (E::uses_col) {
    for (std::int64_t r = u0; r < u1; ++r) {
      const std::int64_t base = r * cols;
      for (std::int64_t c = 0; c < cols; ++c) out[base + c] = expr::store_as<T>(e.eval(base + c, c));
    }
  } else {
    for (std::int64_t i = u0; i < u1; ++i) out[i] = expr::store_as<T>(e.eval(i, 0));
  }
}
}  // namespace detail

struct CpuExecutor {
  static constexpr Space space = Space::Host;

  // Workers for large outputs; 1 evaluates on the calling thread.
  int threads = 1;
  // Fewest elements worth a worker: a memory-bound fused op streams about 0.1-0.2 ns per
  // element, against 10-20 us to hand a worker its run (core/threads.hpp).
  std::int64_t min_per_thread = std::int64_t(1) << 17;

  // A CpuExecutor with as many workers as the CPU ops use (gecko::threads(): GECKO_THREADS or
  // the hardware concurrency).
  static CpuExecutor parallel() { return {gecko::threads(), std::int64_t(1) << 17}; }

  template <class T, class E>
  void execute(const expr::Assign<T, E>& a) const {
    if (a.out.space != Space::Host)
      fail("CpuExecutor: output of shape ", a.out.shape.str(),
           " is in device memory, expected host memory");
    a.e.check_space(Space::Host, "CpuExecutor");
    const std::int64_t n = a.out.numel();
    if (n == 0) return;
    const std::int64_t cols = a.out.rank() > 0 ? a.out.shape[a.out.rank() - 1] : 1;
    const std::int64_t units = E::uses_col ? n / cols : n;
    const std::int64_t workers =
        std::min<std::int64_t>(threads, n / std::max<std::int64_t>(min_per_thread, 1));
    parallel_runs(units, workers, workers, [&a, cols](std::int64_t u0, std::int64_t u1) {
      detail::cpu_elementwise(a.out.data, a.e, cols, u0, u1);
    });
  }
};

}  // namespace gecko
