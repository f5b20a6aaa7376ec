// Quickstart: load a checkpoint, run a token sequence in one call, then stream the same tokens one
// at a time and check that both give the same logits. docs/model.md shows the part between the
// [quickstart] markers; a test keeps the two identical.
//
//   quickstart MODEL.safetensors
//
// MODEL is a checkpoint in the reference's format (e.g. the golden model_single_doc.safetensors).
#include <gecko/gecko.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: quickstart MODEL.safetensors\n");
    return 2;
  }
  try {
    // [quickstart]
    // Load: parameters under the reference's names, the configuration from the metadata.
    const auto model = gecko::model::load_model<gecko::policy::Gecko, float>(argv[1]);
    const std::int64_t L = 3 * model.config().chunk_size + 5;  // any length

    gecko::Tensor<std::int64_t> tokens({1, L});  // (B, L)
    for (std::int64_t t = 0; t < L; ++t) tokens(0, t) = (7 * t + 3) % model.config().vocab_size;

    // Run: the whole sequence from a fresh state.
    const gecko::Tensor<float> logits = model.forward(tokens);  // (B, L, V)

    // Stream: one state per sequence, fed in pieces (here single tokens). Memory stays constant.
    gecko::model::ModelState<float> state;
    float worst = 0, largest = 0;
    for (std::int64_t t = 0; t < L; ++t) {
      const gecko::Tensor<std::int64_t> token({1, 1}, tokens(0, t));
      const gecko::Tensor<float> step = model.forward(token, state);  // (1, 1, V)
      for (std::int64_t v = 0; v < step.dim(2); ++v) {
        worst = std::max(worst, std::abs(step(0, 0, v) - logits(0, t, v)));
        largest = std::max(largest, std::abs(logits(0, t, v)));
      }
    }
    // [quickstart]
    std::printf("%lld tokens: streamed logits match one call within %.2g relative; the state "
                "holds %lld bytes\n",
                (long long)L, worst / largest, (long long)state.bytes());
    return worst <= 1e-4f * largest ? 0 : 1;
  } catch (const gecko::Error& e) {
    std::fprintf(stderr, "quickstart: %s\n", e.what());
    return 1;
  }
}
