#pragma once
// Included once by each CUDA test file.
//   * The device gate: without a usable CUDA device a test run prints "SKIPPED: no CUDA device"
//     and exits 77, which CTest reports as skipped rather than passed. Queries
//     (--list-test-cases, which test discovery runs at build time) never touch the device:
//     doctest calls test_run_start only when it is about to run tests.
//   * What the op tests share: element conversions (16-bit formats through float), seeded random
//     inputs, NaN-poisoned outputs, the README metric for any storage type, and the checks of a
//     GPU output against the CPU path (float32 within 1e-4; bfloat16/float16 within twice the
//     error that the CPU path makes, in float32 on the same 16-bit inputs and rounded to 16 bits
//     once, against float64).

#include <cuda_runtime.h>
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <type_traits>

#include "gecko/core/complex.hpp"
#include "gecko/core/dtype.hpp"
#include "gecko/core/tensor.hpp"
#include "gecko/cuda/device_buffer.cuh"

namespace gecko::testing {

class CudaDeviceGate : public doctest::IReporter {
 public:
  explicit CudaDeviceGate(const doctest::ContextOptions&) {}

  void test_run_start() override {
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status == cudaSuccess && count > 0) return;
    std::printf("SKIPPED: no CUDA device (%s)\n",
                status != cudaSuccess ? cudaGetErrorString(status) : "the runtime reports 0 devices");
    std::fflush(stdout);
    std::_Exit(77);
  }

  void report_query(const doctest::QueryData&) override {}
  void test_run_end(const doctest::TestRunStats&) override {}
  void test_case_start(const doctest::TestCaseData&) override {}
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {}
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};

// ---------------------------------------------------------------- element types

template <class T>
constexpr bool is_16bit = std::is_same_v<T, bfloat16> || std::is_same_v<T, float16>;

// Element conversions through float (16-bit formats) or directly (float, double).
template <class To, class From>
To convert_value(From v) {
  if constexpr (is_16bit<From> || is_16bit<To>) return To(float(v));
  else return To(v);
}

// A tensor converted element by element; empty stays empty.
template <class To, class From>
Tensor<To> convert(const Tensor<From>& t) {
  if (t.empty()) return {};
  Tensor<To> out(t.shape());
  for (std::int64_t i = 0; i < t.size(); ++i) out[i] = convert_value<To>(t[i]);
  return out;
}

template <class To, class From>
Tensor<Complex<To>> convert(const Tensor<Complex<From>>& t) {
  Tensor<Complex<To>> out(t.shape());
  for (std::int64_t i = 0; i < t.size(); ++i) out[i] = {To(t[i].re), To(t[i].im)};
  return out;
}

// The float tensor rounded to T and back: the values a T-storage kernel actually sees.
template <class T>
Tensor<float> rounded(const Tensor<float>& t) {
  return convert<float>(convert<T>(t));
}

// A tensor of NaN (in every element type), for outputs a kernel must write in full.
template <class T>
Tensor<T> poisoned(const Shape& shape) {
  return Tensor<T>(shape, convert_value<T>(std::numeric_limits<float>::quiet_NaN()));
}

// A device copy of a host tensor, made on `stream`; an empty tensor gives an empty buffer.
template <class X>
gecko::cuda::DeviceBuffer<X> upload_or_none(const Tensor<X>& t, cudaStream_t stream = nullptr) {
  return t.empty() ? gecko::cuda::DeviceBuffer<X>{} : gecko::cuda::DeviceBuffer<X>(t, stream);
}

// A device buffer's view, or a default view (none) where the buffer is empty.
template <class T>
TensorView<const T> view_or_none(const gecko::cuda::DeviceBuffer<T>& b) {
  return b.size() > 0 ? b.view() : TensorView<const T>{};
}

// ---------------------------------------------------------------- random inputs

// Seeded float inputs; every tensor draws from a distribution of its own.
struct Random {
  std::mt19937_64 rng;
  explicit Random(std::uint64_t seed) : rng(seed) {}

  Tensor<float> normal(const Shape& s, float mean = 0, float scale = 1) {
    std::normal_distribution<float> dist(mean, scale);
    Tensor<float> t(s);
    for (auto& v : t.span()) v = dist(rng);
    return t;
  }
  Tensor<float> uniform(const Shape& s, float lo, float hi) {
    std::uniform_real_distribution<float> dist(lo, hi);
    Tensor<float> t(s);
    for (auto& v : t.span()) v = dist(rng);
    return t;
  }
  // Resets with probability `prob`, plus one at t = 0 of row 0 (the cached state is then ignored)
  // and one at the last token of the last row (a one-token run closing the sequence).
  Tensor<bool> bos(std::int64_t B, std::int64_t L, double prob) {
    std::bernoulli_distribution coin(prob);
    Tensor<bool> t({B, L});
    for (auto& v : t.span()) v = coin(rng);
    t(0, 0) = true;
    t(B - 1, L - 1) = true;
    return t;
  }
  // Document ids of n tokens per row: a running count of bos tokens, about `even` of them in
  // even rows and `odd` in odd rows.
  Tensor<std::int64_t> documents(std::int64_t B, std::int64_t n, double even, double odd) {
    Tensor<std::int64_t> ids({B, n});
    for (std::int64_t b = 0; b < B; ++b) {
      std::bernoulli_distribution bos(std::min(1.0, (b % 2 == 0 ? even : odd) / double(n)));
      std::int64_t id = 3 + b;
      for (std::int64_t t = 0; t < n; ++t) ids(b, t) = t > 0 && bos(rng) ? ++id : id;
    }
    return ids;
  }
};

// ---------------------------------------------------------------- comparisons

// The README metric max|cand − ref| / max|ref| for any storage types; +inf when the candidate
// holds a NaN (an element a kernel left unwritten).
template <class A, class B>
double storage_rel_error(const Tensor<A>& cand, const Tensor<B>& ref) {
  REQUIRE(cand.shape() == ref.shape());
  double max_diff = 0, max_ref = 0;
  for (std::int64_t i = 0; i < ref.size(); ++i) {
    const double c = convert_value<double>(cand[i]), r = convert_value<double>(ref[i]);
    if (std::isnan(c)) return std::numeric_limits<double>::infinity();
    max_diff = std::max(max_diff, std::abs(c - r));
    max_ref = std::max(max_ref, std::abs(r));
  }
  return max_ref == 0 ? max_diff : max_diff / max_ref;
}

inline constexpr double kFloatTolerance = 1e-4;

// A GPU output of storage type T against the CPU path in float on the inputs the GPU saw and, for
// the 16-bit formats, in float64: float32 within kFloatTolerance; 16 bits within twice the error
// of the CPU path's float32 result rounded to T.
template <class T>
void check_output(const std::string& name, const Tensor<T>& gpu, const Tensor<float>& cpu_float,
                  const Tensor<double>& cpu_double) {
  if constexpr (std::is_same_v<T, float>) {
    const double rel = storage_rel_error(gpu, cpu_float);
    MESSAGE(name, ": rel error vs CPU float32 ", rel, " (tolerance ", kFloatTolerance, ")");
    CHECK(rel <= kFloatTolerance);
  } else {
    const double cpu_rel = storage_rel_error(convert<T>(cpu_float), cpu_double);
    const double rel = storage_rel_error(gpu, cpu_double);
    MESSAGE(name, ": rel error vs CPU float64 ", rel, ", CPU path's own ", cpu_rel);
    CHECK(std::isfinite(rel));
    CHECK(rel <= 2 * cpu_rel);
  }
}

// A float32 state against the CPU path's in float32 (both see the same exact inputs).
inline void check_state(const std::string& name, const Tensor<float>& gpu, const Tensor<float>& cpu_float) {
  const double rel = storage_rel_error(gpu, cpu_float);
  MESSAGE(name, ": rel error vs CPU float32 ", rel);
  CHECK(rel <= kFloatTolerance);
}

}  // namespace gecko::testing

DOCTEST_REGISTER_LISTENER("cuda_device_gate", 0, gecko::testing::CudaDeviceGate);
