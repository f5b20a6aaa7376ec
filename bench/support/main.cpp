// main() of every benchmark binary: the family's benchmarks plus the same-run sgemm roof, the
// usual console output, then a summary relating each op to its baselines and to the roofs
// (how to read it: bench/README.md). Exits non-zero when a benchmark reported an error.

#include <Eigen/Core>

#include <cstdio>
#include <ostream>
#include <string>
#include <string_view>

#include "support/common.hpp"
#include "support/summary.hpp"

namespace gecko::bench {
namespace {

// The FLOP roof: a single-threaded square Eigen sgemm, n³ multiply-adds.
void register_sgemm_roof() {
  for (const Sizes& s : kTiers) {
    const std::int64_t n = s.unit == benchmark::kMicrosecond ? 256 : 512;
    add("roof", "sgemm", s, [n](benchmark::State& state) {
      using M = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
      const M a = M::Random(n, n), b = M::Random(n, n);
      M c(n, n);
      for (auto _ : state) {
        c.noalias() = a * b;
        benchmark::DoNotOptimize(c.data());
        benchmark::ClobberMemory();
      }
      report(state, {bytes_of<float>(3 * n * n), 2.0 * double(n) * double(n) * double(n)});
    });
  }
}

// The CPU table: memcpy% = GB/s over the same-run memcpy of the op's bytes, sgemm% = FLOP/s over
// the tier's roof/sgemm row, gecko/this = time of the op over time of this row.
void print_summary(const SummaryReporter& r, std::ostream& out) {
  out << "\nSummary: CPU time per iteration (fastest repetition); memcpy% = GB/s over the same-run "
         "memcpy of the op's bytes, sgemm% = FLOP/s over roof/sgemm of the tier, gecko/this = "
         "time of the op over time of this row (bench/README.md)\n";
  char line[256];
  std::snprintf(line, sizeof line, "%-22s %-17s %11s %9s %9s %8s %8s %10s\n", "op/tier", "variant",
                "time", "GB/s", "GFLOP/s", "memcpy%", "sgemm%", "gecko/this");
  out << line;
  for (const auto& [group, keys] : r.groups()) {
    const Name first = Name::split(keys.front());
    const Measured* gecko = r.find(first.op, "gecko", first.tier);
    const Measured* copy = r.find(first.op, "memcpy", first.tier);
    const Measured* roof = r.find("roof", "sgemm", first.tier);
    bool head = true;
    for (const std::string& key : keys) {
      const Name n = Name::split(key);
      const Measured& m = r.at(key);
      std::snprintf(line, sizeof line, "%-22s %-17s %11s %9.2f %9.2f %8s %8s %10s\n",
                    head ? group.c_str() : "", n.variant.c_str(), format_time(m.seconds).c_str(),
                    m.bytes_rate / 1e9, m.flop_rate / 1e9,
                    n.variant == "memcpy" || !copy ? "-" : percent(m.bytes_rate, copy->bytes_rate).c_str(),
                    !roof || first.op == "roof" ? "-" : percent(m.flop_rate, roof->flop_rate).c_str(),
                    ratio(gecko, m).c_str());
      out << line;
      head = false;
    }
  }
}

}  // namespace
}  // namespace gecko::bench

int main(int argc, char** argv) {
  // Another output format asked for: leave the display to the library's own reporter.
  bool console = true;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg.starts_with("--benchmark_format=") && arg != "--benchmark_format=console")
      console = false;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  gecko::bench::register_benchmarks();
  gecko::bench::register_sgemm_roof();
  int errors = 0;
  if (console) {
    gecko::bench::SummaryReporter reporter(gecko::bench::SummaryReporter::Clock::Cpu,
                                           gecko::bench::print_summary);
    benchmark::RunSpecifiedBenchmarks(&reporter);
    errors = reporter.errors();
  } else {
    benchmark::RunSpecifiedBenchmarks();
  }
  benchmark::Shutdown();
  return errors == 0 ? 0 : 1;
}
