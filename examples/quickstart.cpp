// Quickstart: load a checkpoint, run a token sequence in one call, then stream the same tokens
// piece by piece and check that both give the same logits.
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
    // 1. Load: the configuration comes from the checkpoint's metadata.
    const auto model = gecko::model::load_model<gecko::policy::Gecko, float>(argv[1]);
    const auto& config = model.config();
    const std::int64_t L = 3 * config.chunk_size + 5;  // any length

    gecko::Tensor<std::int64_t> tokens({1, L});  // (B, L)
    for (std::int64_t t = 0; t < L; ++t) tokens(0, t) = (7 * t + 3) % config.vocab_size;

    // 2. Run: the whole sequence from a fresh state.
    const gecko::Tensor<float> logits = model.forward(tokens);  // (B, L, V)

    // 3. Stream: one state per sequence, fed in pieces. A piece of C tokens or more starts and
    //    ends on chunk boundaries; a shorter one starts on a boundary; single tokens go anywhere.
    gecko::model::ModelState<float> state;
    float worst = 0;
    for (std::int64_t t = 0; t < L; ++t) {
      gecko::Tensor<std::int64_t> token({1, 1}, tokens(0, t));
      const gecko::Tensor<float> step = model.forward(token, state);  // (1, 1, V)
      for (std::int64_t v = 0; v < step.dim(2); ++v)
        worst = std::max(worst, std::abs(step(0, 0, v) - logits(0, t, v)));
    }

    std::printf("%lld tokens, vocabulary %lld: streamed logits match one call within %.2g; "
                "state holds %lld bytes\n",
                (long long)L, (long long)config.output_dim(), worst, (long long)state.bytes());
    return 0;
  } catch (const gecko::Error& e) {
    std::fprintf(stderr, "quickstart: %s\n", e.what());
    return 1;
  }
}
