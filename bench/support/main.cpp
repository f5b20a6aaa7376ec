// main() of every benchmark binary: the family's benchmarks plus the same-run sgemm roof, the
// usual console output, then a summary relating each op to its baselines and to the roofs
// (how to read it: bench/README.md). Exits non-zero when a benchmark reported an error.

#include <Eigen/Core>

#include <cstdio>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "support/common.hpp"

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

struct Measured {
  double seconds = 0;      // CPU time per iteration
  double bytes_rate = 0;   // bytes / s
  double flop_rate = 0;    // FLOP / s
};

struct Name {
  std::string op, variant, tier;
};

Name split(const std::string& full) {
  Name n;
  const auto a = full.find('/');
  const auto b = a == std::string::npos ? a : full.find('/', a + 1);
  if (b == std::string::npos) return {full, "", ""};
  const auto c = full.find('/', b + 1);
  return {full.substr(0, a), full.substr(a + 1, b - a - 1), full.substr(b + 1, c - b - 1)};
}

std::string format_time(double seconds) {
  char buf[32];
  if (seconds >= 1)
    std::snprintf(buf, sizeof buf, "%8.3f s ", seconds);
  else if (seconds >= 1e-3)
    std::snprintf(buf, sizeof buf, "%8.3f ms", seconds * 1e3);
  else
    std::snprintf(buf, sizeof buf, "%8.3f us", seconds * 1e6);
  return buf;
}

// The console reporter, plus the summary printed once every benchmark has run.
class SummaryReporter : public benchmark::ConsoleReporter {
 public:
  using ConsoleReporter::ConsoleReporter;

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      if (r.error_occurred) {
        ++errors_;
        continue;
      }
      if (r.run_type != Run::RT_Iteration || r.iterations == 0) continue;
      const std::string name = r.benchmark_name();
      Measured m;
      m.seconds = r.cpu_accumulated_time / double(r.iterations);
      if (auto it = r.counters.find("bytes_per_second"); it != r.counters.end())
        m.bytes_rate = it->second.value;
      if (auto it = r.counters.find("FLOP/s"); it != r.counters.end()) m.flop_rate = it->second.value;
      auto [slot, fresh] = best_.try_emplace(name, m);
      if (fresh)
        order_.push_back(name);
      else if (m.seconds < slot->second.seconds)
        slot->second = m;  // keep the fastest repetition: the machine may be shared
    }
  }

  void Finalize() override {
    print_summary();
    ConsoleReporter::Finalize();
  }

  int errors() const { return errors_; }

 private:
  void print_summary() {
    std::map<std::string, std::vector<std::string>> groups;  // "op/tier" -> names, in run order
    std::vector<std::string> group_order;
    for (const std::string& name : order_) {
      const Name n = split(name);
      const std::string key = n.op + "/" + n.tier;
      if (groups[key].empty()) group_order.push_back(key);
      groups[key].push_back(name);
    }
    auto& out = GetOutputStream();
    out << "\nSummary: CPU time per iteration (fastest repetition); memcpy% = GB/s over the same-run "
           "memcpy of the op's bytes, sgemm% = FLOP/s over roof/sgemm of the tier, gecko/this = "
           "time of the op over time of this row (bench/README.md)\n";
    char line[256];
    std::snprintf(line, sizeof line, "%-22s %-17s %11s %9s %9s %8s %8s %10s\n", "op/tier", "variant",
                  "time", "GB/s", "GFLOP/s", "memcpy%", "sgemm%", "gecko/this");
    out << line;
    for (const std::string& key : group_order) {
      const auto& names = groups[key];
      const Name first = split(names.front());
      const Measured* gecko = find(first.op, "gecko", first.tier);
      const Measured* copy = find(first.op, "memcpy", first.tier);
      const Measured* roof = find("roof", "sgemm", first.tier);
      bool head = true;
      for (const std::string& name : names) {
        const Name n = split(name);
        const Measured& m = best_.at(name);
        auto pct = [](double num, double den) -> std::string {
          if (num <= 0 || den <= 0) return "-";
          char b[32];
          std::snprintf(b, sizeof b, "%.1f", 100.0 * num / den);
          return b;
        };
        std::string ratio = "-";
        if (gecko && m.seconds > 0) {
          char b[32];
          std::snprintf(b, sizeof b, "%.2f", gecko->seconds / m.seconds);
          ratio = b;
        }
        const bool is_copy = n.variant == "memcpy";
        std::snprintf(line, sizeof line, "%-22s %-17s %11s %9.2f %9.2f %8s %8s %10s\n",
                      head ? key.c_str() : "", n.variant.c_str(), format_time(m.seconds).c_str(),
                      m.bytes_rate / 1e9, m.flop_rate / 1e9,
                      is_copy || !copy ? "-" : pct(m.bytes_rate, copy->bytes_rate).c_str(),
                      !roof || first.op == "roof" ? "-" : pct(m.flop_rate, roof->flop_rate).c_str(),
                      ratio.c_str());
        out << line;
        head = false;
      }
    }
    out.flush();
  }

  const Measured* find(const std::string& op, const std::string& variant,
                       const std::string& tier) const {
    auto it = best_.find(op + "/" + variant + "/" + tier);
    return it == best_.end() ? nullptr : &it->second;
  }

  std::map<std::string, Measured> best_;
  std::vector<std::string> order_;
  int errors_ = 0;
};

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
    gecko::bench::SummaryReporter reporter(benchmark::ConsoleReporter::OO_None);
    benchmark::RunSpecifiedBenchmarks(&reporter);
    errors = reporter.errors();
  } else {
    benchmark::RunSpecifiedBenchmarks();
  }
  benchmark::Shutdown();
  return errors == 0 ? 0 : 1;
}
