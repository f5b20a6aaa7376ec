#pragma once
// Access to the reference golden files and the comparison rule of their README:
// rel = max|cand - golden| / max|golden| over finite golden entries; infinite golden entries must
// match exactly; NaN in the candidate fails. float32 runs: rel <= 1e-4; float64 runs: rel <= 1e-6.

#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>

#include "gecko/io/safetensors.hpp"

namespace gecko::testing {

inline std::filesystem::path golden_dir() {
  if (const char* env = std::getenv("GECKO_GOLDEN_DIR")) return env;
  return GECKO_GOLDEN_DIR;
}

// Opens a golden case; where the folder or file is absent the test reports itself skipped
// (exit code 77, which CTest counts as skipped) instead of passing.
inline std::unique_ptr<io::SafetensorsFile> open_golden(const std::string& case_name) {
  const auto path = golden_dir() / (case_name + ".safetensors");
  if (!std::filesystem::exists(path)) {
    std::printf("SKIPPED: golden file %s not found (set GECKO_GOLDEN_DIR)\n", path.c_str());
    std::fflush(stdout);
    std::_Exit(77);
  }
  return std::make_unique<io::SafetensorsFile>(path);
}

template <class T>
constexpr double golden_tolerance() {
  return std::is_same_v<T, double> ? 1e-6 : 1e-4;
}

// The README's metric. Returns +inf when a NaN appears or an infinity does not match.
template <class A, class B>
double rel_error(const Tensor<A>& cand, const Tensor<B>& golden) {
  double max_diff = 0, max_ref = 0;
  for (std::int64_t i = 0; i < golden.size(); ++i) {
    const double g = double(golden[i]), c = double(cand[i]);
    if (std::isnan(c)) return std::numeric_limits<double>::infinity();
    if (std::isinf(g)) {
      if (c != g) return std::numeric_limits<double>::infinity();
      continue;
    }
    max_diff = std::max(max_diff, std::abs(c - g));
    max_ref = std::max(max_ref, std::abs(g));
  }
  if (max_ref == 0) return max_diff == 0 ? 0 : std::numeric_limits<double>::infinity();
  return max_diff / max_ref;
}

// CHECKs shape equality and rel_error <= tol, naming the tensor in the report.
template <class A, class B>
void check_close(const std::string& name, const Tensor<A>& cand, const Tensor<B>& golden,
                 double tol) {
  INFO("tensor ", name, ": candidate shape ", cand.shape().str(), ", golden shape ", golden.shape().str());
  REQUIRE(cand.shape() == golden.shape());
  const double rel = rel_error(cand, golden);
  INFO("tensor ", name, ": rel error ", rel, " (tolerance ", tol, ")");
  CHECK(rel <= tol);
}

// Integers and bools compare exactly.
template <class T>
void check_equal(const std::string& name, const Tensor<T>& cand, const Tensor<T>& golden) {
  INFO("tensor ", name);
  REQUIRE(cand.shape() == golden.shape());
  for (std::int64_t i = 0; i < golden.size(); ++i) {
    INFO("element ", i);
    REQUIRE(cand[i] == golden[i]);
  }
}

}  // namespace gecko::testing
