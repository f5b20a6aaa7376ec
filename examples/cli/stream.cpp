// gecko stream: push a very long token stream through the streaming API (one ModelState, one
// Model::forward per piece) and show that memory stays constant: the resident set after a million
// tokens is the resident set after 64K tokens.
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "args.hpp"
#include "commands.hpp"
#if GECKO_CLI_CUDA
#include "cuda_backend.hpp"
#endif
#include "gecko/gecko.hpp"
#include "gecko/model/init.hpp"
#include "gecko/model/presets.hpp"
#include "io.hpp"

namespace gecko::cli {

namespace {

constexpr std::int64_t kDefaultTokens = std::int64_t(1) << 20;
constexpr std::int64_t kDefaultCudaTokens = 4'000'000;
// The memory check compares the peak resident set at the end with the peak after this many tokens.
constexpr std::int64_t kReferenceTokens = std::int64_t(1) << 16;
constexpr double kMemoryBound = 1.05;
// With --multi-segments, a generated token starts a document with this probability (1 / the mean
// document length).
constexpr std::uint64_t kMeanDocument = 4096;

struct StreamOptions {
  std::string preset = "tiny";
  std::optional<std::string> checkpoint, tokens_file;
  std::optional<std::int64_t> tokens, prefill, steps, batch;
  std::uint64_t seed = 0;
  bool multi_segments = false;
  std::int64_t progress_every = 131072;
  bool cuda = false;  // --device cuda
};

// Resident memory of this process (/proc/self/status, KiB): now and the peak so far.
struct Memory {
  std::int64_t rss_kib = -1, peak_kib = -1;
  bool known() const { return rss_kib >= 0 && peak_kib >= 0; }
};

Memory read_memory() {
  Memory m;
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {  // "VmRSS:     1234 kB"
    if (line.starts_with("VmRSS:")) m.rss_kib = std::stoll(line.substr(6));
    if (line.starts_with("VmHWM:")) m.peak_kib = std::stoll(line.substr(6));
  }
  return m;
}

// Every piece allocates buffers of the same few sizes. glibc returns large freed blocks to the
// kernel at once (munmap, heap trimming) and maps them again on the next piece; keeping them in the
// heap lets the next piece reuse them, so the resident set stays put instead of going up and down.
void keep_freed_memory() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // blocks up to 32 MiB come from the heap (this also fixes the threshold)
  mallopt(M_TRIM_THRESHOLD, 64 << 20);  // and the heap keeps up to 64 MiB of free space at its top
#endif
}

std::string mib(std::int64_t kib) {
  if (kib < 0) return "n/a";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f MiB", double(kib) / 1024);
  return buf;
}

std::uint64_t mix64(std::uint64_t z) {  // splitmix64's finaliser
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// The tokens of the stream: row b, positions [start, start + L) of either a deterministic
// generator or a token tensor. The generator is a hash of (seed, b, t), so a token does not depend
// on how the stream is cut into pieces, and nothing is stored.
class TokenSource {
 public:
  // bos >= 0: generated documents starting with that token; -1: no documents.
  TokenSource(std::uint64_t seed, std::int64_t vocab, std::int64_t bos)
      : seed_(mix64(seed + 0x9e3779b97f4a7c15ull)), vocab_(vocab), bos_(bos) {}
  explicit TokenSource(Tensor<std::int64_t> tokens) : file_(std::move(tokens)) {}

  void fill(Tensor<std::int64_t>& piece, std::int64_t start) const {
    const std::int64_t B = piece.dim(0), L = piece.dim(1);
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t t = 0; t < L; ++t) piece(b, t) = token(b, start + t);
  }

 private:
  std::int64_t token(std::int64_t b, std::int64_t t) const {
    if (!file_.empty()) return file_(b, t);
    const std::uint64_t h = mix64(mix64(seed_ ^ std::uint64_t(b)) + std::uint64_t(t));
    if (bos_ < 0) return std::int64_t(h % std::uint64_t(vocab_));
    // Documents: one starts at t = 0 and then with probability 1/kMeanDocument; other tokens are
    // uniform over the vocabulary without the bos.
    if (t == 0 || (h >> 32) % kMeanDocument == 0) return bos_;
    const std::int64_t v = std::int64_t((h & 0xffffffffu) % std::uint64_t(vocab_ - 1));
    return v >= bos_ ? v + 1 : v;
  }

  std::uint64_t seed_ = 0;
  std::int64_t vocab_ = 0;
  std::int64_t bos_ = -1;
  Tensor<std::int64_t> file_;  // (B, L) when the tokens come from a file
};

// The piece lengths: prefill pieces of `prefill` tokens (multiples of C, starting on chunk
// boundaries), each followed by `steps` single-token steps (a multiple of C, so the next prefill
// starts on a boundary again). Near the end a prefill shrinks to the whole chunks left and the last
// partial chunk is one tail piece. prefill = 0: every token is a step.
class Schedule {
 public:
  Schedule(std::int64_t chunk, std::int64_t prefill, std::int64_t steps)
      : C_(chunk), prefill_(prefill), steps_(steps) {}

  std::int64_t next(std::int64_t position, std::int64_t remaining) {
    if (prefill_ == 0 || steps_left_ > 0 || position % C_ != 0) {
      steps_left_ = std::max<std::int64_t>(steps_left_ - 1, 0);
      return 1;
    }
    if (remaining < C_) return remaining;  // tail (or one step)
    steps_left_ = steps_;
    return std::min(prefill_, remaining / C_ * C_);
  }

 private:
  std::int64_t C_, prefill_, steps_, steps_left_ = 0;
};

void describe(const model::Config& c, const std::string& source) {
  std::printf("model: %s: %d layers, D %" PRId64 ", H %d, S %" PRId64 ", E %" PRId64 ", F %" PRId64
              ", N %d, C %" PRId64 ", V %" PRId64 ", %" PRId64 " parameters\n",
              source.c_str(), c.num_layers, c.model_dim, c.num_heads, c.z_dim, c.value_dim, c.ffn_hidden_dim,
              c.cema_ndim, c.chunk_size, c.vocab_size, model::parameter_count<policy::Gecko>(c));
}

// Refuses a preset whose parameters alone would not fit in the memory available.
void check_fits(const model::Config& c, std::size_t scalar_bytes, const std::string& preset) {
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  while (std::getline(meminfo, line)) {  // "MemAvailable:   1234 kB"
    if (!line.starts_with("MemAvailable:")) continue;
    const std::int64_t kib = std::stoll(line.substr(13));
    const double need = double(model::parameter_count<policy::Gecko>(c)) * double(scalar_bytes);
    if (need > 0.8 * double(kib) * 1024) {
      char text[160];
      std::snprintf(text, sizeof text, "needs %.1f GiB for its parameters alone, and %.1f GiB of memory are available",
                    need / double(1 << 30), double(kib) / double(1 << 20));
      fail("preset '", preset, "' ", text, ": use a smaller preset (or a checkpoint)");
    }
    return;
  }
}

// The model side of a stream on the CPU: Model<Gecko, T> and its state.
template <class T>
class CpuBackend {
 public:
  explicit CpuBackend(model::Model<policy::Gecko, T> model) : model_(std::move(model)) {}

  const model::Config& config() const { return model_.config(); }
  std::int64_t bos_id() const { return model_.bos_id(); }
  std::string precision() const { return sizeof(T) == 4 ? "f32" : "f64"; }
  void forward(const Tensor<std::int64_t>& piece, bool multi_segments) {
    logits_ = model_.forward(piece, state_, multi_segments);
  }
  void synchronize() {}
  const Tensor<T>& logits() const { return logits_; }
  std::int64_t state_bytes() const { return state_.bytes(); }
  std::optional<std::int64_t> device_memory() const { return std::nullopt; }

 private:
  model::Model<policy::Gecko, T> model_;
  model::ModelState<T> state_;
  Tensor<T> logits_;
};

#if GECKO_CLI_CUDA
// The model side of a stream on the GPU: the state stays on the device, and the logits too
// until the summary reads the last piece's.
class GpuBackend {
 public:
  explicit GpuBackend(std::unique_ptr<CudaModel> model) : model_(std::move(model)) {}

  const model::Config& config() const { return model_->config(); }
  std::int64_t bos_id() const { return model_->bos_id(); }
  std::string precision() const { return "f32 on " + model_->device_name() + " (CUDA)"; }
  void forward(const Tensor<std::int64_t>& piece, bool multi_segments) { model_->forward(piece, multi_segments); }
  void synchronize() { model_->synchronize(); }
  Tensor<float> logits() const { return model_->logits(); }
  std::int64_t state_bytes() const { return model_->state_bytes(); }
  std::optional<std::int64_t> device_memory() const { return model_->device_memory_used(); }

 private:
  std::unique_ptr<CudaModel> model_;
};
#endif

// Streams the tokens through a backend (CpuBackend or GpuBackend) and prints the progress and
// the summary; returns the exit status.
template <class Backend>
int stream_through(Backend& backend, const StreamOptions& o, const std::string& source, double build_s,
                   std::int64_t default_tokens) {
  using Clock = std::chrono::steady_clock;
  const model::Config& c = backend.config();
  const std::int64_t C = c.chunk_size;

  // The tokens: B sequences of `total` tokens each.
  std::int64_t B = o.batch.value_or(1), total = o.tokens.value_or(default_tokens);
  const TokenSource tokens = [&] {
    if (!o.tokens_file) {
      if (o.multi_segments && (backend.bos_id() < 0 || backend.bos_id() >= c.vocab_size))
        fail("--multi-segments: the bos id ", backend.bos_id(), " is outside the vocabulary [0, ", c.vocab_size,
             "), so no generated token can start a document");
      return TokenSource(o.seed, c.vocab_size, o.multi_segments ? backend.bos_id() : -1);
    }
    Tensor<std::int64_t> t = read_tokens(*o.tokens_file);
    if (o.batch && *o.batch != t.dim(0))
      fail("--batch ", *o.batch, " disagrees with the token tensor of --tokens-file, which has B = ", t.dim(0));
    if (o.tokens && *o.tokens > t.dim(1))
      fail("--tokens ", *o.tokens, " is more than the token tensor of --tokens-file holds (L = ", t.dim(1), ")");
    B = t.dim(0);
    total = o.tokens.value_or(t.dim(1));
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t i = 0; i < total; ++i)
        if (t(b, i) < 0 || t(b, i) >= c.vocab_size)
          fail(*o.tokens_file, ": token ", t(b, i), " at (", b, ", ", i, ") is outside the model's vocabulary [0, ",
               c.vocab_size, ")");
    return TokenSource(std::move(t));
  }();

  const std::int64_t prefill = o.prefill.value_or(7 * C), steps = o.steps.value_or(C);
  if (prefill < 0 || prefill % C != 0)
    throw UsageError("--prefill " + std::to_string(prefill) + " must be a multiple of the chunk size C = " +
                     std::to_string(C) + " (or 0: single-token steps only)");
  if (steps < 0 || steps % C != 0)
    throw UsageError("--steps " + std::to_string(steps) + " must be a multiple of the chunk size C = " +
                     std::to_string(C) + ", so that every prefill piece starts on a chunk boundary");
  if (prefill == 0 && o.steps)
    throw UsageError("--steps has no effect with --prefill 0 (every token is then a single-token step)");

  describe(c, source);
  std::printf("stream: %" PRId64 " x %" PRId64 " tokens (%s%s), %s, pieces: ", B, total,
              o.tokens_file ? ("from " + *o.tokens_file).c_str() : "generated",
              o.multi_segments ? ", documents" : "", backend.precision().c_str());
  if (prefill == 0)
    std::printf("single-token steps\n");
  else
    std::printf("prefill %" PRId64 " then %" PRId64 " single-token steps, repeated\n", prefill, steps);
  std::printf("model built in %.2f s; RSS %s\n", build_s, mib(read_memory().rss_kib).c_str());
  std::fflush(stdout);

  // Pieces of the two usual lengths are allocated once; another length (near the end) as needed.
  Tensor<std::int64_t> step_piece({B, 1}), prefill_piece({B, std::max<std::int64_t>(prefill, 1)}), other_piece;
  Schedule schedule(C, prefill, steps);
  std::optional<Memory> at_reference;  // the first piece boundary at or past kReferenceTokens
  std::optional<std::int64_t> device_at_reference;
  std::int64_t reference_position = 0;
  std::int64_t position = 0, next_progress = o.progress_every > 0 ? o.progress_every : total + 1;
  const auto start = Clock::now();
  auto rate = [&] {
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    return s > 0 ? double(B * position) / s : 0.0;
  };

  while (position < total) {
    const std::int64_t L = schedule.next(position, total - position);
    Tensor<std::int64_t>* piece = &other_piece;
    if (L == 1)
      piece = &step_piece;
    else if (L == prefill)
      piece = &prefill_piece;
    else if (other_piece.empty() || other_piece.dim(1) != L)
      other_piece = Tensor<std::int64_t>({B, L});
    tokens.fill(*piece, position);
    try {
      backend.forward(*piece, o.multi_segments);
    } catch (const Error& e) {
      fail("the piece [", position, ", ", position + L, ") of the stream: ", e.what());
    }
    position += L;

    // The reference point gets a progress line too, printed before its reading so that the
    // printing's first use of memory is behind it.
    const bool reference = !at_reference && position >= kReferenceTokens;
    if (position >= next_progress || position == total || (reference && o.progress_every > 0)) {
      backend.synchronize();  // the rate counts finished work
      const Memory m = read_memory();
      std::printf("progress: %" PRId64 " tokens (%.0f%%), %.0f tokens/s, RSS %s, peak %s, state %" PRId64 " bytes\n",
                  position, 100.0 * double(position) / double(total), rate(), mib(m.rss_kib).c_str(),
                  mib(m.peak_kib).c_str(), backend.state_bytes());
      std::fflush(stdout);
      while (next_progress <= position) next_progress += std::max<std::int64_t>(o.progress_every, 1);
    }
    if (reference) {
      at_reference = read_memory(), reference_position = position;
      device_at_reference = backend.device_memory();
    }
  }
  backend.synchronize();
  const double wall_s = std::chrono::duration<double>(Clock::now() - start).count();
  const Memory end = read_memory();
  const std::optional<std::int64_t> device_at_end = backend.device_memory();

  // The last position's logits, summarised so that runs can be compared (the same tokens give the
  // same figures, to rounding, for every piece schedule).
  const auto& logits = backend.logits();
  double sum = 0, squares = 0;
  std::int64_t argmax = 0;
  const std::int64_t last = logits.dim(1) - 1, V = logits.dim(2);
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t v = 0; v < V; ++v) {
      const double x = double(logits(b, last, v));
      sum += x;
      squares += x * x;
      if (b == 0 && logits(0, last, v) > logits(0, last, argmax)) argmax = v;
    }

  std::printf("summary:\n");
  std::printf("  tokens streamed:   %" PRId64 " (%" PRId64 " x %" PRId64 ")\n", B * total, B, total);
  std::printf("  wall time:         %.2f s\n", wall_s);
  std::printf("  throughput:        %.0f tokens/s\n", double(B * total) / wall_s);
  if (at_reference)
    std::printf("  peak RSS at %" PRId64 " tokens: %s\n", reference_position, mib(at_reference->peak_kib).c_str());
  std::printf("  peak RSS at the end (%" PRId64 " tokens): %s\n", total, mib(end.peak_kib).c_str());
  std::printf("  RSS at the end:    %s\n", mib(end.rss_kib).c_str());
  std::printf("  state bytes:       %" PRId64 "\n", backend.state_bytes());
  if (device_at_reference)
    std::printf("  device memory in use at %" PRId64 " tokens: %s\n", reference_position,
                mib(*device_at_reference / 1024).c_str());
  if (device_at_end)
    std::printf("  device memory in use at the end: %s\n", mib(*device_at_end / 1024).c_str());
  std::printf("  last logits:       sum %.9g, sum of squares %.9g, argmax %" PRId64 " (sequence 0)\n", sum,
              squares, argmax);

  if (!at_reference) {
    std::printf("memory check: skipped (the stream is shorter than %" PRId64 " tokens)\n", kReferenceTokens);
    return 0;
  }
  if (!at_reference->known() || !end.known()) {
    std::printf("memory check: skipped (/proc/self/status gives no VmRSS/VmHWM here)\n");
    return 0;
  }
  const double ratio = double(end.peak_kib) / double(at_reference->peak_kib);
  std::printf("  peak ratio:        %.4f (end / %" PRId64 " tokens)\n", ratio, reference_position);
  bool pass = ratio <= kMemoryBound;
  std::string device_text;
  if (device_at_reference && device_at_end) {
    const double device_ratio = double(*device_at_end) / double(*device_at_reference);
    std::printf("  device ratio:      %.4f (end / %" PRId64 " tokens)\n", device_ratio, reference_position);
    const bool device_pass = device_ratio <= kMemoryBound;
    device_text = std::string(", and the device memory in use is ") + (device_pass ? "within" : "more than") +
                  " the same bound";
    pass = pass && device_pass;
  }
  std::printf("memory check: %s: the peak RSS at %" PRId64 " tokens is %s %.0f%% of the peak at %" PRId64
              " tokens%s\n",
              pass ? "PASS" : "FAIL", total, ratio <= kMemoryBound ? "within" : "more than",
              (kMemoryBound - 1) * 100, reference_position, device_text.c_str());
  std::fflush(stdout);
  return pass ? 0 : 3;
}

template <class T>
int run_stream(const StreamOptions& o) {
  using Clock = std::chrono::steady_clock;
  keep_freed_memory();
  const auto build_start = Clock::now();
  std::optional<model::Model<policy::Gecko, T>> model;
  std::string source;
  if (o.checkpoint) {
    model.emplace(model::load_model<policy::Gecko, T>(*o.checkpoint));
    source = "checkpoint " + *o.checkpoint;
  } else {
    const model::Config config = model::preset_config(o.preset);
    check_fits(config, sizeof(T), o.preset);
    model.emplace(model::init_model<policy::Gecko, T>(config, o.seed));
    source = "preset " + o.preset + ", seed " + std::to_string(o.seed);
  }
  CpuBackend<T> backend(std::move(*model));
  const double build_s = std::chrono::duration<double>(Clock::now() - build_start).count();
  return stream_through(backend, o, source, build_s, kDefaultTokens);
}

#if GECKO_CLI_CUDA
int run_stream_cuda(const StreamOptions& o) {
  using Clock = std::chrono::steady_clock;
  keep_freed_memory();
  const auto build_start = Clock::now();
  std::unique_ptr<CudaModel> model;
  std::string source;
  if (o.checkpoint) {
    model = CudaModel::load(*o.checkpoint);
    source = "checkpoint " + *o.checkpoint;
  } else {
    const model::Config config = model::preset_config(o.preset);
    check_fits(config, sizeof(float), o.preset);  // the parameters are made on the host first
    model = CudaModel::create(config, model::init_params<policy::Gecko, float>(config, o.seed), 1);
    source = "preset " + o.preset + ", seed " + std::to_string(o.seed);
  }
  GpuBackend backend(std::move(model));
  const double build_s = std::chrono::duration<double>(Clock::now() - build_start).count();
  return stream_through(backend, o, source, build_s, kDefaultCudaTokens);
}
#endif

}  // namespace

void stream_help(std::ostream& out) {
  out << "usage: gecko stream [--preset NAME | --checkpoint CKPT.safetensors] [--tokens N]\n"
         "                    [--tokens-file FILE.safetensors[:NAME]] [--seed S] [--prefill N]\n"
         "                    [--steps N] [--batch B] [--dtype f32|f64] [--multi-segments]\n"
         "                    [--progress-every N] [--device cpu|cuda]\n\n"
         "Streams a long token sequence through a Gecko model in constant memory: one streaming\n"
         "state, fed piece by piece (prefill pieces of whole chunks, each followed by single-token\n"
         "steps). Prints a progress line now and then (tokens, tokens/s, resident memory VmRSS and its\n"
         "peak VmHWM, the state's size) and a summary: tokens, wall time, tokens/s, the peak resident\n"
         "memory after 65536 tokens and at the end, the state's bytes, and a checksum of the last\n"
         "position's logits (the same tokens give the same checksum, to rounding, for any --prefill\n"
         "and --steps). The memory check PASSes when the peak at the end is within 5% of the peak\n"
         "after 65536 tokens. Without arguments: 1048576 generated tokens through the seeded tiny model\n"
         "(4000000 with --device cuda).\n\n"
         "flags:\n"
         "  --preset NAME          a model of a named configuration with seeded random weights\n"
         "                         (spec 3.3 initialisation; default tiny):\n";
  for (const auto& p : model::kPresets)
    out << "                           " << p.name << std::string(7 - p.name.size(), ' ') << p.summary << "\n";
  out << "  --checkpoint PATH      load the model from a safetensors checkpoint instead\n"
         "  --tokens N             stream length: tokens per sequence (default 1048576 on the CPU,\n"
         "                         4000000 on the GPU; with --tokens-file, the first N tokens of\n"
         "                         each row, default all)\n"
         "  --tokens-file FILE[:NAME]\n"
         "                         stream the int64 (B, L) tensor NAME (default tokens) of a\n"
         "                         safetensors file instead of generated tokens\n"
         "  --seed S               seed of the preset's weights and of the generated tokens (default 0)\n"
         "  --prefill N            tokens per prefill piece: a multiple of the chunk size C\n"
         "                         (default 7C); 0: every token is a single-token step\n"
         "  --steps N              single-token steps after each prefill piece: a multiple of C\n"
         "                         (default C)\n"
         "  --batch B              sequences streamed side by side (default 1; with --tokens-file,\n"
         "                         the tensor's B)\n"
         "  --dtype f32|f64        computation precision (default f32)\n"
         "  --multi-segments       bos tokens start new documents; generated streams then hold\n"
         "                         documents of random lengths (a bos at t = 0, then at each token\n"
         "                         with probability 1/4096)\n"
         "  --progress-every N     a progress line every N tokens (default 131072; 0: none)\n"
         "  --device cpu|cuda      where the model runs (default cpu). cuda: the GPU model in float32,\n"
         "                         its streaming state on the device; the memory check then also\n"
         "                         holds the device memory in use to the same bound. Needs a build\n"
         "                         with CUDA (GECKO_ENABLE_CUDA) and a CUDA device.\n"
         "  --help                 this text\n\n"
         "Errors go to stderr with a non-zero exit status (2 for usage mistakes, 1 otherwise);\n"
         "a failed memory check exits with 3.\n";
}

int stream_main(std::span<const std::string> argv) {
  try {
    const Args args(argv,
                    {"preset", "checkpoint", "tokens", "tokens-file", "seed", "prefill", "steps", "batch", "dtype",
                     "progress-every", "device"},
                    {"multi-segments"});
    StreamOptions o;
    if (args.has("preset") && args.has("checkpoint"))
      throw UsageError("--preset and --checkpoint exclude each other: a model comes from one of them");
    if (const auto v = args.get("preset")) o.preset = *v;
    o.checkpoint = args.get("checkpoint");
    o.tokens_file = args.get("tokens-file");
    o.multi_segments = args.has("multi-segments");
    auto positive = [&](const char* flag) -> std::optional<std::int64_t> {
      const auto v = args.get(flag);
      if (!v) return std::nullopt;
      const std::int64_t n = parse_int(flag, *v);
      if (n <= 0) throw UsageError(std::string("--") + flag + " must be positive, got " + *v);
      return n;
    };
    auto non_negative = [&](const char* flag) -> std::optional<std::int64_t> {
      const auto v = args.get(flag);
      if (!v) return std::nullopt;
      const std::int64_t n = parse_int(flag, *v);
      if (n < 0) throw UsageError(std::string("--") + flag + " must not be negative, got " + *v);
      return n;
    };
    o.tokens = positive("tokens");
    o.batch = positive("batch");
    o.prefill = non_negative("prefill");
    o.steps = non_negative("steps");
    if (const auto n = non_negative("seed")) o.seed = std::uint64_t(*n);
    if (const auto n = non_negative("progress-every")) o.progress_every = *n;
    const std::string device = args.get("device").value_or("cpu");
    if (device != "cpu" && device != "cuda") throw UsageError("--device must be cpu or cuda, got '" + device + "'");
    o.cuda = device == "cuda";
    const std::string dtype = args.get("dtype").value_or("f32");
    if (o.cuda) {
#if GECKO_CLI_CUDA
      if (dtype != "f32")
        throw UsageError("--dtype " + dtype + " is not available with --device cuda: the GPU model computes in f32");
      return run_stream_cuda(o);
#else
      throw UsageError("--device cuda: this build of gecko has no CUDA path (configure it with "
                       "-DGECKO_ENABLE_CUDA=ON where nvcc is installed)");
#endif
    }
    if (dtype == "f32") return run_stream<float>(o);
    if (dtype == "f64") return run_stream<double>(o);
    throw UsageError("--dtype must be f32 or f64, got '" + dtype + "'");
  } catch (const UsageError& e) {
    std::cerr << "gecko stream: " << e.what() << "\n(see gecko stream --help)\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "gecko stream: error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace gecko::cli
