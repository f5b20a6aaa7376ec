// gecko: command-line tool around the model: the CPU model, and in a build with CUDA the GPU model
// behind --device cuda (cuda_backend.hpp). `gecko <command> [flags]`; `gecko --help` lists the
// commands, `gecko <command> --help` documents a command's flags.
#include <array>
#include <iostream>
#include <string>
#include <vector>

#include "commands.hpp"

namespace {

using gecko::cli::Command;

// One row per subcommand.
constexpr std::array kCommands = {
    Command{"logits", "run a checkpoint on a token tensor; write the logits and the final streaming state",
            gecko::cli::logits_help, gecko::cli::logits_main},
    Command{"stream", "stream a very long token sequence through a model in constant memory",
            gecko::cli::stream_help, gecko::cli::stream_main},
};

void usage(std::ostream& out) {
  out << "usage: gecko <command> [flags]\n"
         "       gecko <command> --help\n\n"
         "Runs Gecko models from checkpoints in the reference's safetensors format, on the CPU"
#if GECKO_CLI_CUDA
         " or,\nwith --device cuda, on the GPU (that path has not yet been run on a GPU).\n\n"
#else
         ".\nThis build has no CUDA path: --device cuda needs a build with -DGECKO_ENABLE_CUDA=ON.\n\n"
#endif
         "commands:\n";
  for (const auto& c : kCommands) out << "  " << c.name << std::string(10 - c.name.size(), ' ') << c.summary << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    usage(std::cerr);
    return 2;
  }
  if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    usage(std::cout);
    return 0;
  }
  for (const auto& c : kCommands) {
    if (args[0] != c.name) continue;
    const std::vector<std::string> rest(args.begin() + 1, args.end());
    for (const auto& a : rest)
      if (a == "--help" || a == "-h") {
        c.help(std::cout);
        return 0;
      }
    return c.run(rest);
  }
  std::cerr << "gecko: unknown command '" << args[0] << "'\n\n";
  usage(std::cerr);
  return 2;
}
