#pragma once
// The subcommands of the gecko tool. A subcommand is a name, a one-line summary, a help text and
// an entry point taking the arguments after its name; main.cpp lists them in one table.

#include <ostream>
#include <span>
#include <string>
#include <string_view>

namespace gecko::cli {

struct Command {
  std::string_view name;
  std::string_view summary;
  void (*help)(std::ostream&);
  int (*run)(std::span<const std::string> args);  // exit status
};

void logits_help(std::ostream& out);
int logits_main(std::span<const std::string> args);

void stream_help(std::ostream& out);
int stream_main(std::span<const std::string> args);

}  // namespace gecko::cli
