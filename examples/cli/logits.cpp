// gecko logits: run a checkpoint on a token tensor, in one call or through the streaming path in
// given pieces; write the logits and the final streaming state.
#include <algorithm>
#include <cstdint>
#include <exception>
#include <iostream>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "args.hpp"
#include "commands.hpp"
#if GECKO_CLI_CUDA
#include "cuda_backend.hpp"
#endif
#include "gecko/gecko.hpp"
#include "io.hpp"

namespace gecko::cli {

namespace {

struct LogitsOptions {
  std::string checkpoint, tokens, out;
  bool multi_segments = false;
  std::optional<std::int64_t> bos_id;
  std::vector<std::int64_t> schedule;  // empty = one pass
};

// The schedule's pieces of the tokens, after checking that they add up to L.
std::vector<Tensor<std::int64_t>> pieces_of(const Tensor<std::int64_t>& tokens,
                                            const std::vector<std::int64_t>& schedule) {
  const std::int64_t L = tokens.dim(1);
  const std::int64_t total = std::accumulate(schedule.begin(), schedule.end(), std::int64_t(0));
  if (total != L) fail("--schedule: the pieces add up to ", total, " tokens but the token tensor has L = ", L);
  std::vector<Tensor<std::int64_t>> pieces;
  std::int64_t at = 0;
  for (const std::int64_t n : schedule) {
    Tensor<std::int64_t> piece({tokens.dim(0), n});
    for (std::int64_t b = 0; b < tokens.dim(0); ++b)
      for (std::int64_t t = 0; t < n; ++t) piece(b, t) = tokens(b, at + t);
    pieces.push_back(std::move(piece));
    at += n;
  }
  return pieces;
}

// The pieces' logits (B, L_i, V) joined along time.
template <class T>
Tensor<T> join_time(const std::vector<Tensor<T>>& pieces) {
  const std::int64_t B = pieces.front().dim(0), V = pieces.front().dim(2);
  std::int64_t L = 0;
  for (const auto& p : pieces) L += p.dim(1);
  Tensor<T> joined({B, L, V});
  std::int64_t at = 0;
  for (const auto& p : pieces) {
    for (std::int64_t b = 0; b < B; ++b)
      std::copy(p.data() + b * p.dim(1) * V, p.data() + (b + 1) * p.dim(1) * V, &joined(b, at, 0));
    at += p.dim(1);
  }
  return joined;
}

// Runs one piece, naming it in an error.
template <class F>
void run_piece(F&& f, std::int64_t n, std::int64_t at) {
  try {
    f();
  } catch (const Error& e) {
    fail("--schedule: the piece of ", n, " tokens at position ", at, ": ", e.what());
  }
}

template <class T>
void run_logits(const LogitsOptions& o) {
  auto model = model::load_model<policy::Gecko, T>(o.checkpoint);
  if (o.bos_id) model.set_bos_id(*o.bos_id);
  const Tensor<std::int64_t> tokens = read_tokens(o.tokens);

  model::ModelState<T> state;
  Tensor<T> logits;
  if (o.schedule.empty()) {
    logits = model.feed(tokens, state, o.multi_segments);
  } else {
    std::vector<Tensor<T>> outputs;
    std::int64_t at = 0;
    for (const auto& piece : pieces_of(tokens, o.schedule)) {
      run_piece([&] { outputs.push_back(model.forward(piece, state, o.multi_segments)); }, piece.dim(1), at);
      at += piece.dim(1);
    }
    logits = join_time(outputs);
  }

  io::SafetensorsWriter w;
  add_as_f32(w, "logits", logits);
  add_state(w, state);
  w.write(o.out);
}

#if GECKO_CLI_CUDA
// The same on the GPU model (float32); the final state is copied back from the device.
void run_logits_cuda(const LogitsOptions& o) {
  auto model = CudaModel::load(o.checkpoint);
  if (o.bos_id) model->set_bos_id(*o.bos_id);
  const Tensor<std::int64_t> tokens = read_tokens(o.tokens);
  Tensor<float> logits;
  if (o.schedule.empty()) {
    logits = model->feed(tokens, o.multi_segments);
  } else {
    std::vector<Tensor<float>> outputs;
    std::int64_t at = 0;
    for (const auto& piece : pieces_of(tokens, o.schedule)) {
      run_piece([&] { model->forward(piece, o.multi_segments); }, piece.dim(1), at);
      outputs.push_back(model->logits());
      at += piece.dim(1);
    }
    logits = join_time(outputs);
  }

  io::SafetensorsWriter w;
  add_as_f32(w, "logits", logits);
  add_state(w, model->state());
  w.write(o.out);
}
#endif

}  // namespace

void logits_help(std::ostream& out) {
  out << "usage: gecko logits --checkpoint CKPT.safetensors --tokens FILE.safetensors[:NAME]\n"
         "                    --out OUT.safetensors [--multi-segments] [--bos-id N]\n"
         "                    [--schedule N,N,...] [--dtype f32|f64] [--device cpu|cuda]\n\n"
         "Runs the Gecko model of CKPT on the int64 token tensor NAME (B x L) and writes OUT with\n"
         "  logits                 B x L x V, float32\n"
         "  cache.*                the final streaming state under the golden names: per layer\n"
         "                         cache.layers.<i>.{sca.prev_key, sca.prev_value, sca.kv_count,\n"
         "                         awm.prev_key, awm.memory, awm.log_norm_term, norm.count, norm.mean,\n"
         "                         norm.var, cema.h}, cache.output.{count, mean, var}, and with\n"
         "                         --multi-segments cache.segment.{prev_idx, prev_count}\n"
         "                         (floats as float32).\n\n"
         "flags:\n"
         "  --checkpoint PATH      safetensors checkpoint: reference state_dict names, the\n"
         "                         configuration JSON in __metadata__[\"config\"]\n"
         "  --tokens FILE[:NAME]   safetensors file and the name of its int64 (B, L) tensor\n"
         "                         (default name: tokens)\n"
         "  --out PATH             output safetensors file; written only when everything succeeded\n"
         "  --multi-segments       tokens equal to the bos id start new documents\n"
         "  --bos-id N             the bos token id (default: the checkpoint's args.bos_id, else 1)\n"
         "  --schedule N,N,...     feed the tokens through the streaming path in pieces of these\n"
         "                         lengths (they must add up to L; a piece of C tokens or more must\n"
         "                         start and end on chunk boundaries, a shorter one of more than one\n"
         "                         token must start on one). Without it the whole tensor is one pass.\n"
         "  --dtype f32|f64        computation precision (default f32)\n"
         "  --device cpu|cuda      where the model runs (default cpu); cuda: the GPU model, f32 only\n"
         "                         (needs a build with CUDA and a CUDA device)\n"
         "  --help                 this text\n\n"
         "Errors go to stderr with a non-zero exit status (2 for usage mistakes, 1 otherwise).\n";
}

int logits_main(std::span<const std::string> argv) {
  try {
    const Args args(argv, {"checkpoint", "tokens", "out", "bos-id", "schedule", "dtype", "device"},
                    {"multi-segments"});
    LogitsOptions o;
    o.checkpoint = args.required("checkpoint");
    o.tokens = args.required("tokens");
    o.out = args.required("out");
    o.multi_segments = args.has("multi-segments");
    if (const auto v = args.get("bos-id")) o.bos_id = parse_int("bos-id", *v);
    if (const auto v = args.get("schedule")) o.schedule = parse_int_list("schedule", *v);
    const std::string dtype = args.get("dtype").value_or("f32");
    const std::string device = args.get("device").value_or("cpu");
    if (device != "cpu" && device != "cuda") throw UsageError("--device must be cpu or cuda, got '" + device + "'");
    if (device == "cuda") {
#if GECKO_CLI_CUDA
      if (dtype != "f32")
        throw UsageError("--dtype " + dtype + " is not available with --device cuda: the GPU model computes in f32");
      run_logits_cuda(o);
      return 0;
#else
      throw UsageError("--device cuda: this build of gecko has no CUDA path (configure it with "
                       "-DGECKO_ENABLE_CUDA=ON where nvcc is installed)");
#endif
    }
    if (dtype == "f32")
      run_logits<float>(o);
    else if (dtype == "f64")
      run_logits<double>(o);
    else
      throw UsageError("--dtype must be f32 or f64, got '" + dtype + "'");
    return 0;
  } catch (const UsageError& e) {
    std::cerr << "gecko logits: " << e.what() << "\n(see gecko logits --help)\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "gecko logits: error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace gecko::cli
