#pragma once
// The summary reporter of every benchmark binary, CPU and GPU: the usual console output, the
// fastest repetition of each "<op>/<variant>/<tier>" row collected as it runs, then a table
// printed once everything has run. What differs between the CPU and the GPU binaries (which clock
// is the time, which columns the table has) is given by the binary's main(); how to read the
// tables: bench/README.md.

#include <benchmark/benchmark.h>

#include <cstdio>
#include <functional>
#include <map>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gecko::bench {

struct Measured {
  double seconds = 0;     // time per iteration, on the reporter's clock
  double bytes_rate = 0;  // bytes / s
  double flop_rate = 0;   // FLOP / s
};

// "[cuda/]<op>/<variant>/<tier>[/...]": the GPU binaries prefix "cuda/", Google Benchmark may
// append "/manual_time" and repetition suffixes.
struct Name {
  std::string op, variant, tier;

  static Name split(std::string_view full) {
    if (full.starts_with("cuda/")) full.remove_prefix(5);
    const auto a = full.find('/');
    const auto b = a == std::string_view::npos ? a : full.find('/', a + 1);
    if (b == std::string_view::npos) return {std::string(full), "", ""};
    const auto c = full.find('/', b + 1);
    return {std::string(full.substr(0, a)), std::string(full.substr(a + 1, b - a - 1)),
            std::string(full.substr(b + 1, c == std::string_view::npos ? c : c - b - 1))};
  }
  std::string key() const { return op + "/" + variant + "/" + tier; }
};

inline std::string format_time(double seconds) {
  char buf[32];
  if (seconds >= 1)
    std::snprintf(buf, sizeof buf, "%8.3f s ", seconds);
  else if (seconds >= 1e-3)
    std::snprintf(buf, sizeof buf, "%8.3f ms", seconds * 1e3);
  else
    std::snprintf(buf, sizeof buf, "%8.3f us", seconds * 1e6);
  return buf;
}

// num / den in percent, "-" when either is unknown.
inline std::string percent(double num, double den) {
  if (num <= 0 || den <= 0) return "-";
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", 100.0 * num / den);
  return b;
}

// The time of the `gecko` row over this row's time, "-" when either is unknown.
inline std::string ratio(const Measured* gecko, const Measured& m) {
  if (!gecko || m.seconds <= 0) return "-";
  char b[32];
  std::snprintf(b, sizeof b, "%.2f", gecko->seconds / m.seconds);
  return b;
}

class SummaryReporter : public benchmark::ConsoleReporter {
 public:
  // Cpu: CPU time of the calling thread (the CPU binaries, GECKO_THREADS=1). Real: the
  // benchmark's real time, which the GPU binaries set from CUDA events (manual time).
  enum class Clock { Cpu, Real };
  using Printer = std::function<void(const SummaryReporter&, std::ostream&)>;

  SummaryReporter(Clock clock, Printer print)
      : ConsoleReporter(OO_None), clock_(clock), print_(std::move(print)) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      if (r.error_occurred) {
        ++errors_;
        continue;
      }
      if (r.run_type != Run::RT_Iteration || r.iterations == 0) continue;
      const std::string key = Name::split(r.benchmark_name()).key();
      Measured m;
      m.seconds = (clock_ == Clock::Cpu ? r.cpu_accumulated_time : r.real_accumulated_time) /
                  double(r.iterations);
      if (auto it = r.counters.find("bytes_per_second"); it != r.counters.end())
        m.bytes_rate = it->second.value;
      if (auto it = r.counters.find("FLOP/s"); it != r.counters.end()) m.flop_rate = it->second.value;
      auto [slot, fresh] = best_.try_emplace(key, m);
      if (fresh)
        order_.push_back(key);
      else if (m.seconds < slot->second.seconds)
        slot->second = m;  // keep the fastest repetition: the machine may be shared
    }
  }

  void Finalize() override {
    print_(*this, GetOutputStream());
    GetOutputStream().flush();
    ConsoleReporter::Finalize();
  }

  int errors() const { return errors_; }

  const Measured* find(const std::string& op, const std::string& variant, const std::string& tier) const {
    auto it = best_.find(op + "/" + variant + "/" + tier);
    return it == best_.end() ? nullptr : &it->second;
  }
  const Measured& at(const std::string& key) const { return best_.at(key); }

  // The rows grouped by "<op>/<tier>", groups and rows in run order.
  std::vector<std::pair<std::string, std::vector<std::string>>> groups() const {
    std::vector<std::pair<std::string, std::vector<std::string>>> out;
    std::map<std::string, std::size_t> index;
    for (const std::string& key : order_) {
      const Name n = Name::split(key);
      const std::string group = n.op + "/" + n.tier;
      auto [it, fresh] = index.try_emplace(group, out.size());
      if (fresh) out.push_back({group, {}});
      out[it->second].second.push_back(key);
    }
    return out;
  }

 private:
  Clock clock_;
  Printer print_;
  std::map<std::string, Measured> best_;
  std::vector<std::string> order_;
  int errors_ = 0;
};

}  // namespace gecko::bench
