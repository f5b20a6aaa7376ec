#pragma once
// Included once by each CUDA test file. Without a usable CUDA device a test run prints
// "SKIPPED: no CUDA device" and exits 77, which CTest reports as skipped rather than passed.
// Queries (--list-test-cases, which test discovery runs at build time) never touch the device:
// doctest calls test_run_start only when it is about to run tests.

#include <cuda_runtime.h>
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>

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

}  // namespace gecko::testing

DOCTEST_REGISTER_LISTENER("cuda_device_gate", 0, gecko::testing::CudaDeviceGate);
