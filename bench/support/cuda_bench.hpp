#pragma once
// Shared pieces of the GPU benchmark binaries (bench/cuda_*.cu, CUDA builds only): the GPU shape
// tiers, seeded random device inputs, device-side result checks, and the registration of a timed
// case. Every GPU benchmark is named "cuda/<op>/<variant>/<tier>" and timed with CUDA events
// around the timed work only (UseManualTime + SetIterationTime), after a warm-up. How to run and
// read them: bench/README.md ("GPU benchmarks").

#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "gecko/core/error.hpp"
#include "gecko/cuda/check.cuh"
#include "gecko/cuda/device_buffer.cuh"
#include "support/common.hpp"

namespace gecko::bench::gpu {

using cuda::check;
using cuda::DeviceBuffer;

// "7b": the 7B layer of spec §2 (D 4096, S 1024, E 8192, H 4 → dk 256, dv 2048, F 8192, N 16,
// C 2048, G 64) over one 32K-token sequence (B 1, L 32768 = 16 chunks): the CEMA target shape
// B·D = 4096, L = 32768. "small" is the CPU benchmarks' CI-sized tier; the smoke test runs it.
inline constexpr Sizes k7B{"7b", 1, 32768, 4096, 1024, 8192, 4, 8192, 16, 2048, 64, 0,
                           benchmark::kMillisecond};
inline constexpr Sizes kGpuTiers[] = {kSmall, k7B};

// Datasheet figures of an H100 SXM (the project's targets are stated against them).
inline constexpr double kHbmBytesPerSecond = 3.35e12;  // HBM3 bandwidth
inline constexpr double kBf16FlopsPerSecond = 989e12;  // dense bf16 tensor-core peak

// ---- seeded random inputs, generated on the device ----

__device__ __forceinline__ std::uint64_t mix64(std::uint64_t z) {  // splitmix64's finaliser
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// p[i] = mean + scale·N(0, 1), a counter-based draw (Box-Muller on one 64-bit hash of (seed, i)),
// so the values depend on the seed and the index only.
template <class T>
__global__ void fill_normal_kernel(T* p, std::int64_t n, std::uint64_t seed, float mean, float scale) {
  const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const std::uint64_t u = mix64(mix64(seed) ^ std::uint64_t(i));
    const float u1 = (float(u >> 40) + 0.5f) * (1.f / 16777216.f);  // (0, 1)
    const float u2 = float(u & 0xffffffu) * (1.f / 16777216.f);    // [0, 1)
    p[i] = T(mean + scale * sqrtf(-2.f * logf(u1)) * cospif(2.f * u2));
  }
}

template <class T>
void fill_normal(DeviceBuffer<T>& b, std::uint64_t seed, float scale, cudaStream_t stream,
                 float mean = 0.f) {
  if (b.size() == 0) return;
  const std::int64_t blocks = std::min<std::int64_t>((b.size() + 255) / 256, 4096);
  fill_normal_kernel<T><<<unsigned(blocks), 256, 0, stream>>>(b.data(), b.size(), seed, mean, scale);
  cuda::check_launch("bench: fill_normal_kernel");
}

// Every byte 0xFF: NaN in float, bfloat16 and float16, so an element an op leaves unwritten
// fails the checks below.
template <class T>
void poison(DeviceBuffer<T>& b, cudaStream_t stream) {
  check(cudaMemsetAsync(b.data(), 0xFF, std::size_t(b.size()) * sizeof(T), stream), "bench: poison");
}

// ---- result checks (setup only, never timed) ----

// out[0] = max|a − b| (+inf where either is NaN or inf), out[1] = max|b|, as float bits:
// non-negative floats order like their bit patterns.
template <class A, class B>
__global__ void max_diff_kernel(const A* a, const B* b, std::int64_t n, unsigned* out) {
  float diff = 0.f, peak = 0.f;
  const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float x = a ? float(a[i]) : 0.f, y = float(b[i]);
    float d = fabsf(x - y);
    if (!(d <= FLT_MAX)) d = INFINITY;
    diff = fmaxf(diff, d);
    peak = fmaxf(peak, fabsf(y));
  }
  for (int offset = 16; offset > 0; offset /= 2) {
    diff = fmaxf(diff, __shfl_xor_sync(0xffffffffu, diff, offset));
    peak = fmaxf(peak, __shfl_xor_sync(0xffffffffu, peak, offset));
  }
  if (threadIdx.x % 32 == 0) {
    atomicMax(out, __float_as_uint(diff));
    atomicMax(out + 1, __float_as_uint(peak));
  }
}

struct Deviation {
  float diff, peak;  // max|a − b|, max|b|
};

template <class A, class B>
Deviation max_deviation(const A* a, const B* b, std::int64_t n, cudaStream_t stream) {
  DeviceBuffer<unsigned> out(Shape{2});
  check(cudaMemsetAsync(out.data(), 0, 2 * sizeof(unsigned), stream), "bench: max_deviation");
  const std::int64_t blocks = std::min<std::int64_t>((n + 255) / 256, 4096);
  if (n > 0) max_diff_kernel<A, B><<<unsigned(blocks), 256, 0, stream>>>(a, b, n, out.data());
  cuda::check_launch("bench: max_diff_kernel");
  const Tensor<unsigned> host = out.to_host(stream);
  return {std::bit_cast<float>(host[0]), std::bit_cast<float>(host[1])};
}

// Throws unless max|a − b| <= tol · max|b| (a NaN anywhere fails): a baseline must compute
// what the op computes before either is timed.
template <class A, class B>
void require_same(const std::string& what, const DeviceBuffer<A>& a, const DeviceBuffer<B>& b,
                  double tol, cudaStream_t stream) {
  require(a.size() == b.size(), "bench: ", what, ": ", a.size(), " against ", b.size(), " elements");
  const Deviation d = max_deviation(a.data(), b.data(), b.size(), stream);
  require(double(d.diff) <= tol * double(d.peak), "bench: ", what, " differs: max|a - b| = ",
          d.diff, " over max|b| = ", d.peak, " (tolerance ", tol, ")");
}

// Throws if any element is NaN or inf, e.g. left unwritten after poison().
template <class T>
void require_finite(const std::string& what, const DeviceBuffer<T>& b, cudaStream_t stream) {
  const Deviation d = max_deviation(static_cast<const T*>(nullptr), b.data(), b.size(), stream);
  require(d.diff <= FLT_MAX, "bench: ", what, " holds a NaN or inf (an element left unwritten?)");
}

// ---- timed cases ----

// One benchmark's device state. The constructor allocates, fills, checks and warms up; then each
// iteration calls prepare() (untimed: e.g. a fresh stream state) and run() (timed by events).
class Case {
 public:
  virtual ~Case() = default;
  virtual void prepare(cudaStream_t) {}
  virtual void run(cudaStream_t stream) = 0;
};

using MakeCase = std::function<std::unique_ptr<Case>(cudaStream_t)>;

// The stream, the events and the one live case: Google Benchmark calls a benchmark's function
// several times while it sizes the iteration count, and the setup (large allocations, checks)
// should run once. The case of the previous benchmark is freed before the next one is built.
class Session {
 public:
  static Session& get() {
    static Session s;
    return s;
  }

  Case& use(const std::string& name, const MakeCase& make) {
    if (name != name_ || !case_) {
      case_.reset();
      name_.clear();
      if (!stream_) {
        check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "bench: cudaStreamCreate");
        check(cudaEventCreate(&start_), "bench: cudaEventCreate");
        check(cudaEventCreate(&stop_), "bench: cudaEventCreate");
      }
      case_ = make(stream_);
      for (int i = 0; i < 2; ++i) {  // warm-up: module load, first-touch, library handles
        case_->prepare(stream_);
        case_->run(stream_);
      }
      check(cudaStreamSynchronize(stream_), "bench: warm-up");
      name_ = name;
    }
    return *case_;
  }

  // Device seconds of one prepare + run, events around run only.
  double time(Case& c) {
    c.prepare(stream_);
    check(cudaEventRecord(start_, stream_), "bench: cudaEventRecord");
    c.run(stream_);
    check(cudaEventRecord(stop_, stream_), "bench: cudaEventRecord");
    check(cudaEventSynchronize(stop_), "bench: the timed run");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, start_, stop_), "bench: cudaEventElapsedTime");
    return double(ms) * 1e-3;
  }

  // Frees everything while the CUDA context is still alive (called at the end of main).
  void release() {
    case_.reset();
    name_.clear();
    if (stream_) {
      cudaEventDestroy(start_);
      cudaEventDestroy(stop_);
      cudaStreamDestroy(stream_);
      stream_ = nullptr;
    }
  }

 private:
  std::string name_;
  std::unique_ptr<Case> case_;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

// Items an iteration processes (tokens, say), reported as items_per_second; per_item divides
// each iteration's time and work by the count, so that the row reads as the cost of one item.
struct Items {
  double count = 0;
  bool per_item = false;
};

// Registers "cuda/<op>/<variant>/<tier>": builds the case on first use, then times `run` per
// iteration; `label` (e.g. the target of a 7B row) is printed next to the row.
inline void add_case(const std::string& op, const std::string& variant, const std::string& tier,
                     benchmark::TimeUnit unit, const Work& work, MakeCase make,
                     std::string label = {}, Items items = {}) {
  const std::string name = "cuda/" + op + "/" + variant + "/" + tier;
  const double divisor = items.per_item ? items.count : 1.0;
  const Work counted{work.bytes / divisor, work.flops / divisor};
  benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
    try {
      Session& session = Session::get();
      Case& c = session.use(name, make);
      for (auto _ : state) state.SetIterationTime(session.time(c) / divisor);
      report(state, counted);
      if (items.count > 0)
        state.SetItemsProcessed(std::int64_t(items.count / divisor) * std::int64_t(state.iterations()));
      if (!label.empty()) state.SetLabel(label);
    } catch (const std::exception& e) {
      state.SkipWithError(e.what());
      Session::get().release();  // a failed case may leave the stream in an error state
    }
  })->UseManualTime()->Unit(unit);
}

inline void add_case(const std::string& op, const std::string& variant, const Sizes& s,
                     const Work& work, MakeCase make, std::string label = {}) {
  add_case(op, variant, s.name, s.unit, work, std::move(make), std::move(label));
}

// Baseline of a bandwidth-bound op: a device-to-device copy of half the op's compulsory bytes,
// which reads n and writes n bytes, so it moves exactly the bytes the op must move.
class CopyCase : public Case {
 public:
  CopyCase(double op_bytes, cudaStream_t stream)
      : n_((std::int64_t(op_bytes / 2) + 15) / 16 * 16), src_(Shape{n_ / 4}), dst_(Shape{n_ / 4}) {
    fill_normal(src_, 1, 1.f, stream);
  }
  void run(cudaStream_t stream) override {
    check(cudaMemcpyAsync(dst_.data(), src_.data(), std::size_t(n_), cudaMemcpyDeviceToDevice, stream),
          "bench: cudaMemcpyAsync");
  }

 private:
  std::int64_t n_;
  DeviceBuffer<float> src_, dst_;
};

inline void add_copy(const std::string& op, const Sizes& s, double op_bytes) {
  add_case(op, "memcpy", s, {2 * double((std::int64_t(op_bytes / 2) + 15) / 16 * 16), 0},
           [op_bytes](cudaStream_t stream) { return std::make_unique<CopyCase>(op_bytes, stream); });
}

}  // namespace gecko::bench::gpu
