#pragma once
// Command-line parsing shared by the subcommands: "--name value", "--name=value" and switches.
// Every flag a subcommand accepts is declared up front, so an unknown flag is an error.

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "gecko/core/error.hpp"

namespace gecko::cli {

// A usage mistake (unknown flag, missing value): reported with a pointer to --help.
struct UsageError : Error {
  using Error::Error;
};

class Args {
 public:
  // options: flags that take a value; switches: flags without one.
  Args(std::span<const std::string> argv, const std::set<std::string>& options,
       const std::set<std::string>& switches) {
    for (std::size_t i = 0; i < argv.size(); ++i) {
      std::string arg = argv[i];
      if (!arg.starts_with("--")) throw UsageError("unexpected argument '" + arg + "'");
      std::optional<std::string> value;
      if (const auto eq = arg.find('='); eq != std::string::npos) {
        value = arg.substr(eq + 1);
        arg = arg.substr(0, eq);
      }
      const std::string name = arg.substr(2);
      if (switches.count(name)) {
        if (value) throw UsageError("--" + name + " takes no value");
        switches_.insert(name);
      } else if (options.count(name)) {
        if (!value) {
          if (i + 1 >= argv.size()) throw UsageError("--" + name + " needs a value");
          value = argv[++i];
        }
        if (values_.count(name)) throw UsageError("--" + name + " is given twice");
        values_[name] = *value;
      } else {
        throw UsageError("unknown flag '" + arg + "'");
      }
    }
  }

  bool has(const std::string& name) const { return switches_.count(name) || values_.count(name); }

  std::optional<std::string> get(const std::string& name) const {
    const auto it = values_.find(name);
    return it == values_.end() ? std::nullopt : std::optional(it->second);
  }

  std::string required(const std::string& name) const {
    const auto v = get(name);
    if (!v) throw UsageError("--" + name + " is required");
    return *v;
  }

 private:
  std::set<std::string> switches_;
  std::map<std::string, std::string> values_;
};

// A whole decimal integer, or a UsageError naming the flag.
inline std::int64_t parse_int(const std::string& flag, const std::string& text) {
  std::size_t used = 0;
  std::int64_t v = 0;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size())
    throw UsageError("--" + flag + ": '" + text + "' is not an integer");
  return v;
}

// "N,N,..." as positive integers.
inline std::vector<std::int64_t> parse_int_list(const std::string& flag, const std::string& text) {
  std::vector<std::int64_t> out;
  std::size_t begin = 0;
  while (true) {
    const std::size_t comma = text.find(',', begin);
    const std::string part = text.substr(begin, comma == std::string::npos ? std::string::npos : comma - begin);
    const std::int64_t v = parse_int(flag, part);
    if (v <= 0) throw UsageError("--" + flag + ": piece lengths must be positive, got " + part);
    out.push_back(v);
    if (comma == std::string::npos) return out;
    begin = comma + 1;
  }
}

}  // namespace gecko::cli
