#pragma once
// main() of the GPU benchmark binaries: device detection, the usual console output, then a
// summary relating each op to its baselines and roofs, and the project's targets with a verdict
// (how to read it: bench/README.md, "GPU benchmarks"). Include from exactly one .cu file per
// binary and call run_gpu_benchmarks from its main().
//   * --benchmark_list_tests never touches the device, so listing works on any machine.
//   * Without a usable CUDA device the binary prints "SKIPPED: no CUDA device (...)" and exits 0,
//     or 77 when given --smoke (the CTest smoke test, which CTest then reports as skipped).
//   * Exits 1 when a benchmark reported an error (a failed check, a CUDA or cuBLAS error).

#include <cstdio>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "support/cuda_bench.hpp"
#include "support/summary.hpp"

namespace gecko::bench::gpu {

// A target of the project, checked on the `gecko` row of (op, tier).
struct Target {
  enum Kind { MaxTime, MinSpeedup, MinBandwidth, MinFlops };
  std::string op, tier;
  Kind kind;
  double value;              // seconds, a ratio, a fraction of kHbmBytesPerSecond, or FLOP/s
  std::string baseline = {}; // MinSpeedup: the variant the op must beat by `value`
};

inline std::vector<Target>& targets() {
  static std::vector<Target> t;
  return t;
}

inline std::string describe(const Target& t) {
  char b[128];
  switch (t.kind) {
    case Target::MaxTime:
      std::snprintf(b, sizeof b, "time <= %.3f ms", t.value * 1e3);
      break;
    case Target::MinSpeedup:
      std::snprintf(b, sizeof b, ">= %.2fx faster than %s", t.value, t.baseline.c_str());
      break;
    case Target::MinBandwidth:
      std::snprintf(b, sizeof b, ">= %.0f%% of HBM (%.0f GB/s)", 100 * t.value,
                    t.value * kHbmBytesPerSecond / 1e9);
      break;
    case Target::MinFlops:
      std::snprintf(b, sizeof b, ">= %.0f TFLOP/s", t.value / 1e12);
      break;
  }
  return b;
}

// The targets of (op, tier) as one line, the label of its `gecko` row.
inline std::string target_label(const std::string& op, const Sizes& s) {
  std::string label;
  for (const Target& t : targets())
    if (t.op == op && t.tier == s.name) label += (label.empty() ? "target: " : ", ") + describe(t);
  return label;
}

inline std::string& device_name() {
  static std::string name;
  return name;
}

namespace detail {

// The binary's FLOP roof: its one "cuda/roof/<kind>/device" row, if it ran.
inline const Measured* flop_roof(const SummaryReporter& r) {
  for (const auto& [group, keys] : r.groups())
    if (Name::split(keys.front()).op == "roof") return &r.at(keys.front());
  return nullptr;
}

// The GPU table: copy% = GB/s over the same-run device-to-device copy of the op's bytes, HBM% =
// GB/s over the datasheet bandwidth, roof% = FLOP/s over the binary's roof row, gecko/this = time
// of the op over time of this row.
inline void print_summary(const SummaryReporter& r, std::ostream& out) {
  out << "\nSummary (GPU" << (device_name().empty() ? "" : ": " + device_name())
      << "): device time per iteration from CUDA events (fastest repetition); copy% = GB/s over "
         "the same-run device-to-device copy of the op's bytes, HBM% = GB/s over the H100 SXM "
         "datasheet 3.35 TB/s, roof% = FLOP/s over the binary's same-run roof row, gecko/this = "
         "time of the op over time of this row (bench/README.md)\n";
  char line[256];
  std::snprintf(line, sizeof line, "%-25s %-15s %11s %9s %9s %7s %7s %7s %10s\n", "op/tier",
                "variant", "time", "GB/s", "TFLOP/s", "copy%", "HBM%", "roof%", "gecko/this");
  out << line;
  const Measured* roof = flop_roof(r);
  for (const auto& [group, keys] : r.groups()) {
    const Name first = Name::split(keys.front());
    const Measured* gecko = r.find(first.op, "gecko", first.tier);
    const Measured* copy = r.find(first.op, "memcpy", first.tier);
    bool head = true;
    for (const std::string& key : keys) {
      const Name n = Name::split(key);
      const Measured& m = r.at(key);
      const bool is_copy = n.variant == "memcpy", is_roof = n.op == "roof";
      std::snprintf(line, sizeof line, "%-25s %-15s %11s %9.1f %9.2f %7s %7s %7s %10s\n",
                    head ? ("cuda/" + group).c_str() : "", n.variant.c_str(),
                    format_time(m.seconds).c_str(), m.bytes_rate / 1e9, m.flop_rate / 1e12,
                    is_copy || !copy ? "-" : percent(m.bytes_rate, copy->bytes_rate).c_str(),
                    percent(m.bytes_rate, kHbmBytesPerSecond).c_str(),
                    is_roof || !roof ? "-" : percent(m.flop_rate, roof->flop_rate).c_str(),
                    is_roof ? "-" : ratio(gecko, m).c_str());
      out << line;
      head = false;
    }
  }
}

// Each target of the project whose `gecko` row ran, with what was measured and a verdict.
inline void print_targets(const SummaryReporter& r, std::ostream& out) {
  bool header = false;
  char line[320];
  for (const Target& t : targets()) {
    const Measured* gecko = r.find(t.op, "gecko", t.tier);
    if (!gecko) continue;  // filtered out or failed
    char measured[160];
    bool met = false;
    switch (t.kind) {
      case Target::MaxTime:
        std::snprintf(measured, sizeof measured, "%.3f ms", gecko->seconds * 1e3);
        met = gecko->seconds <= t.value;
        break;
      case Target::MinSpeedup: {
        const Measured* base = r.find(t.op, t.baseline, t.tier);
        if (!base) continue;
        const double speedup = base->seconds / gecko->seconds;
        std::snprintf(measured, sizeof measured, "%.2fx (%s %.3f ms)", speedup, t.baseline.c_str(),
                      base->seconds * 1e3);
        met = speedup >= t.value;
        break;
      }
      case Target::MinBandwidth: {
        const Measured* copy = r.find(t.op, "memcpy", t.tier);
        std::snprintf(measured, sizeof measured, "%.0f GB/s = %s%% of HBM, %s%% of memcpy",
                      gecko->bytes_rate / 1e9, percent(gecko->bytes_rate, kHbmBytesPerSecond).c_str(),
                      copy ? percent(gecko->bytes_rate, copy->bytes_rate).c_str() : "-");
        met = gecko->bytes_rate >= t.value * kHbmBytesPerSecond;
        break;
      }
      case Target::MinFlops:
        std::snprintf(measured, sizeof measured, "%.1f TFLOP/s", gecko->flop_rate / 1e12);
        met = gecko->flop_rate >= t.value;
        break;
    }
    if (!header) {
      out << "\nTargets (against the H100 SXM datasheet: HBM 3.35 TB/s, dense bf16 989 TFLOP/s; "
             "device: "
          << (device_name().empty() ? "unknown" : device_name()) << ")\n";
      std::snprintf(line, sizeof line, "%-25s %-34s %-46s %s\n", "op/tier", "target", "measured", "verdict");
      out << line;
      header = true;
    }
    std::snprintf(line, sizeof line, "%-25s %-34s %-46s %s\n", ("cuda/" + t.op + "/" + t.tier).c_str(),
                  describe(t).c_str(), measured, met ? "met" : "NOT MET");
    out << line;
  }
}

}  // namespace detail

inline int run_gpu_benchmarks(int argc, char** argv, void (*register_all)()) {
  bool smoke = false, list = false, console = true;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (i > 0 && arg == "--smoke") {
      smoke = true;
      continue;
    }
    if (arg.starts_with("--benchmark_list_tests") && arg != "--benchmark_list_tests=false" &&
        arg != "--benchmark_list_tests=0")
      list = true;
    if (arg.starts_with("--benchmark_format=") && arg != "--benchmark_format=console") console = false;
    args.push_back(argv[i]);
  }
  int count = int(args.size());
  args.push_back(nullptr);
  benchmark::Initialize(&count, args.data());
  if (benchmark::ReportUnrecognizedArguments(count, args.data())) return 1;
  register_all();

  if (!list) {
    int devices = 0;
    const cudaError_t status = cudaGetDeviceCount(&devices);
    if (status != cudaSuccess || devices == 0) {
      std::printf("SKIPPED: no CUDA device (%s)\n",
                  status != cudaSuccess ? cudaGetErrorString(status) : "the runtime reports 0 devices");
      std::fflush(stdout);
      benchmark::Shutdown();
      return smoke ? 77 : 0;
    }
    cudaDeviceProp p{};
    check(cudaGetDeviceProperties(&p, 0), "bench: cudaGetDeviceProperties");
    device_name() = p.name;
    std::printf("device: %s, %d SMs, L2 %.0f MiB, %.1f GiB\n", p.name, p.multiProcessorCount,
                double(p.l2CacheSize) / (1 << 20), double(p.totalGlobalMem) / (1 << 30));
    std::fflush(stdout);
  }

  int errors = 0;
  if (console && !list) {
    SummaryReporter reporter(SummaryReporter::Clock::Real, [](const SummaryReporter& r, std::ostream& out) {
      detail::print_summary(r, out);
      detail::print_targets(r, out);
    });
    benchmark::RunSpecifiedBenchmarks(&reporter);
    errors = reporter.errors();
  } else {
    benchmark::RunSpecifiedBenchmarks();
  }
  Session::get().release();
  benchmark::Shutdown();
  return errors == 0 ? 0 : 1;
}

}  // namespace gecko::bench::gpu
