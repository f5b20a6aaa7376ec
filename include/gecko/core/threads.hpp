#pragma once
// Worker threads of the CPU path. The number comes from the GECKO_THREADS environment variable,
// read once (default: the hardware concurrency; 1 runs everything on the calling thread), or from
// set_threads(). parallel_for splits a range of independent work items into contiguous runs, one
// per worker; an op computes each item with the same code and in the same order whichever worker
// runs it, so its results do not depend on the number of threads.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include "gecko/core/error.hpp"

namespace gecko {

namespace detail {

inline int hardware_threads() { return int(std::max(1u, std::thread::hardware_concurrency())); }

inline int threads_from_environment() {
  const char* text = std::getenv("GECKO_THREADS");
  if (!text || !*text) return hardware_threads();
  char* end = nullptr;
  const long n = std::strtol(text, &end, 10);
  require(*end == '\0' && n >= 1 && n <= 4096, "GECKO_THREADS must be a whole number in [1, 4096], got \"",
          std::string(text), "\"");
  return int(n);
}

inline std::atomic<int>& thread_setting() {
  static std::atomic<int> n{threads_from_environment()};
  return n;
}

}  // namespace detail

// The number of workers the CPU ops may use.
inline int threads() { return detail::thread_setting().load(std::memory_order_relaxed); }

// Overrides GECKO_THREADS for the rest of the process; n >= 1.
inline void set_threads(int n) {
  require(n >= 1, "set_threads: the number of threads must be at least 1, got ", n);
  detail::thread_setting().store(n, std::memory_order_relaxed);
}

// Fewest units of work (about one multiply-add or one element moved each) worth a worker: a
// std::thread start and join measured 17 us on a 2-core x86 host, the time of ~10^5 such units.
inline constexpr double kMinWorkPerThread = double(std::int64_t(1) << 17);

// Runs f(begin, end) over [0, items) in min(workers, items) contiguous runs whose sizes differ by
// at most one, the first on the calling thread. An exception thrown by any run is rethrown here
// after every run has finished.
template <class F>
void parallel_runs(std::int64_t items, std::int64_t workers, F&& f) {
  workers = std::clamp<std::int64_t>(workers, 1, std::max<std::int64_t>(items, 1));
  if (workers == 1) {
    if (items > 0) f(std::int64_t(0), items);
    return;
  }
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(workers));
  auto guarded = [&](std::int64_t w) {
    const std::int64_t begin = items * w / workers, end = items * (w + 1) / workers;
    try {
      f(begin, end);
    } catch (...) {
      errors[std::size_t(w)] = std::current_exception();
    }
  };
  {
    std::vector<std::jthread> pool;  // joined on scope exit, also when a later start throws
    pool.reserve(std::size_t(workers - 1));
    for (std::int64_t w = 1; w < workers; ++w) pool.emplace_back(guarded, w);
    guarded(0);
  }
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
}

// parallel_runs with as many workers as threads() allows and `work` (the total over all items,
// in the units of kMinWorkPerThread) pays for.
template <class F>
void parallel_for(std::int64_t items, double work, F&& f) {
  const double affordable = std::max(1.0, work / kMinWorkPerThread);
  parallel_runs(items, std::int64_t(std::min(double(threads()), affordable)), std::forward<F>(f));
}

}  // namespace gecko
