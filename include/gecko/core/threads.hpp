#pragma once
// Worker threads of the CPU path. The number comes from the GECKO_THREADS environment variable,
// read once (default: the hardware concurrency; 1 runs everything on the calling thread), or from
// set_threads(). parallel_for splits a range of independent work items into contiguous runs that
// the calling thread and the pool's workers take one at a time; an op computes each item with the
// same code and in the same order whichever thread runs it, so its results do not depend on the
// number of threads.
//
// The workers live in one process-wide pool, started on first use. A caller never waits for a
// worker that has not started a run: on a machine whose other cores are busy, the calling thread
// simply takes every run itself (a fresh std::thread per call would make it wait for the
// scheduler to start each one, several times the work of a small call).

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
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

// One parallel call: `runs` contiguous runs of [0, items), claimed one at a time.
struct ParallelJob {
  std::int64_t items = 0, runs = 0;
  int helpers = 0;                       // workers allowed to join (the caller comes on top)
  void (*call)(void* f, std::int64_t begin, std::int64_t end) = nullptr;
  void* f = nullptr;
  std::atomic<std::int64_t> next{0};     // the next run to claim
  int joined = 0, active = 0;            // workers that joined / have not left yet (under the mutex)
  std::exception_ptr error;              // the first exception of any run (under the mutex)

  // Claims and runs runs until none is left.
  void work(std::mutex& mutex) {
    for (std::int64_t r; (r = next.fetch_add(1)) < runs;) {
      try {
        call(f, items * r / runs, items * (r + 1) / runs);
      } catch (...) {
        const std::lock_guard lock(mutex);
        if (!error) error = std::current_exception();
      }
    }
  }
};

class ThreadPool {
 public:
  // Never destroyed: its workers wait for jobs until the process ends.
  static ThreadPool& instance() {
    static ThreadPool* pool = new ThreadPool;
    return *pool;
  }

  // Runs job.call over every run with the calling thread and up to job.helpers workers. Returns
  // false without running anything when the pool is busy with another caller's job (or this is a
  // worker of the pool): the caller then runs the job alone.
  bool run(ParallelJob& job) {
    if (in_worker()) return false;
    {
      std::unique_lock lock(mutex_);
      if (job_) return false;
      while (int(workers_.size()) < job.helpers) workers_.emplace_back([this] { worker_loop(); });
      job_ = &job;
      ++generation_;
    }
    wake_.notify_all();
    job.work(mutex_);
    std::unique_lock lock(mutex_);
    job_ = nullptr;  // no worker joins from now on
    done_.wait(lock, [&] { return job.active == 0; });
    return true;
  }

 private:
  ThreadPool() = default;

  static bool& in_worker() {
    thread_local bool flag = false;
    return flag;
  }

  void worker_loop() {
    in_worker() = true;
    std::uint64_t seen = 0;
    std::unique_lock lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return generation_ != seen; });
      seen = generation_;
      ParallelJob* job = job_;
      if (!job || job->joined >= job->helpers) continue;
      ++job->joined;
      ++job->active;
      lock.unlock();
      job->work(mutex_);
      lock.lock();
      if (--job->active == 0) done_.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  ParallelJob* job_ = nullptr;
  std::uint64_t generation_ = 0;
};

}  // namespace detail

// The number of workers the CPU ops may use.
inline int threads() { return detail::thread_setting().load(std::memory_order_relaxed); }

// Overrides GECKO_THREADS for the rest of the process; n >= 1.
inline void set_threads(int n) {
  require(n >= 1, "set_threads: the number of threads must be at least 1, got ", n);
  detail::thread_setting().store(n, std::memory_order_relaxed);
}

// Fewest units of work (about one multiply-add or one element moved each) worth a worker: waking
// a worker and handing it a run costs some 10-20 us on a 2-core x86 host, the time of ~10^5 units.
inline constexpr double kMinWorkPerThread = double(std::int64_t(1) << 17);

// Runs f(begin, end) over [0, items) in min(runs, items) contiguous runs whose sizes differ by at
// most one, each exactly once, on the calling thread and up to threads − 1 pool workers. An
// exception thrown by any run is rethrown here after every started run has finished.
template <class F>
void parallel_runs(std::int64_t items, std::int64_t runs, std::int64_t threads, F&& f) {
  runs = std::clamp<std::int64_t>(runs, 1, std::max<std::int64_t>(items, 1));
  threads = std::clamp<std::int64_t>(threads, 1, runs);
  if (items <= 0) return;
  detail::ParallelJob job;
  job.items = items;
  job.runs = runs;
  job.helpers = int(threads - 1);
  job.f = &f;
  job.call = [](void* g, std::int64_t begin, std::int64_t end) {
    (*static_cast<std::remove_reference_t<F>*>(g))(begin, end);
  };
  if (threads == 1 || !detail::ThreadPool::instance().run(job)) {
    for (std::int64_t r = 0; r < runs; ++r) f(items * r / runs, items * (r + 1) / runs);
    return;
  }
  if (job.error) std::rethrow_exception(job.error);
}

// parallel_runs with as many threads as threads() allows and `work` (the total over all items, in
// the units of kMinWorkPerThread) pays for, and four runs per thread, so that a thread slowed by
// other load leaves its share to the others.
template <class F>
void parallel_for(std::int64_t items, double work, F&& f) {
  const double affordable = std::max(1.0, work / kMinWorkPerThread);
  const auto n = std::int64_t(std::min(double(threads()), affordable));
  parallel_runs(items, n == 1 ? 1 : 4 * n, n, std::forward<F>(f));
}

}  // namespace gecko
