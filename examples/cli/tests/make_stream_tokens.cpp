// Writes the token file of the `gecko stream --tokens-file` tests: make_stream_tokens OUT L.
//   tokens  int64 (2, L): deterministic tokens below 256 (the tiny preset's vocabulary), with the
//           bos id 1 at t = 0 and every 97 tokens, so that --multi-segments sees documents
//   bad     int64 (1, 40): token 40 is 1000, outside that vocabulary
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>

#include "gecko/core/tensor.hpp"
#include "gecko/io/safetensors.hpp"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: make_stream_tokens OUT.safetensors L\n";
    return 2;
  }
  const std::int64_t L = std::stoll(argv[2]);
  gecko::Tensor<std::int64_t> tokens({2, L});
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t t = 0; t < L; ++t) tokens(b, t) = t % 97 == 0 ? 1 : 2 + (31 * t + 17 * b + t * t % 13) % 254;
  gecko::Tensor<std::int64_t> bad({1, 40}, 5);
  bad(0, 39) = 1000;
  const std::filesystem::path out(argv[1]);
  if (out.has_parent_path()) std::filesystem::create_directories(out.parent_path());
  gecko::io::SafetensorsWriter w;
  w.add("tokens", tokens);
  w.add("bad", bad);
  w.write(out);
  return 0;
}
