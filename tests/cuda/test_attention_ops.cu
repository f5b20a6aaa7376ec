// The GPU sliding chunk attention and adaptive working memory against their CPU definitions, on
// fresh random inputs: prefill with and without a cached window, multi-token tails, single-token
// steps, both attention patterns, segments, head dims that are not multiples of the tiles, value
// head dims from 5 to 2048. Outputs are poisoned with NaN before each run, so an element a
// kernel leaves unwritten fails; the attention output also has NaN guards on both sides, so a
// store past its ends fails. The metric is the golden README's, max|gpu − ref| / max|ref|, and a
// NaN fails.
//   float32: within 1e-4 of the CPU path in float32.
//   bfloat16/float16 storage: outputs within twice the error that the CPU path makes (computed in
//     float32 on the same 16-bit inputs, rounded to 16 bits once) against float64. The working
//     memory's float32 state (M, Λ) within 1e-4 of the CPU path in float32, as both see the same
//     exact inputs; its new key window bit for bit.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "cuda_test_support.hpp"
#include "gecko/cpu/sliding_chunk_attention.hpp"
#include "gecko/cpu/working_memory.hpp"
#include "gecko/cuda.cuh"
#include "gecko/cuda/sliding_chunk_attention.cuh"
#include "gecko/cuda/working_memory.cuh"

using namespace gecko;
namespace gpu = gecko::cuda;
using cpu::AttentionPattern;

namespace {

using namespace gecko::testing;

// Columns [begin, begin + n) of a (B, m) id tensor; empty for n = 0.
Tensor<std::int64_t> columns(const Tensor<std::int64_t>& ids, std::int64_t begin, std::int64_t n) {
  if (n == 0) return {};
  Tensor<std::int64_t> out({ids.dim(0), n});
  for (std::int64_t b = 0; b < ids.dim(0); ++b)
    for (std::int64_t j = 0; j < n; ++j) out(b, j) = ids(b, begin + j);
  return out;
}

// Λ: −inf exactly where the CPU has it (features nothing was absorbed into), the rest by the
// README metric.
void check_log_norm(const Tensor<float>& gpu, const Tensor<float>& cpu_float) {
  REQUIRE(gpu.shape() == cpu_float.shape());
  double max_diff = 0, max_ref = 0;
  std::int64_t pattern_errors = 0;
  for (std::int64_t i = 0; i < gpu.size(); ++i) {
    const float g = gpu[i], r = cpu_float[i];
    if (r == -std::numeric_limits<float>::infinity() || !std::isfinite(g)) {
      pattern_errors += g != r;
      continue;
    }
    max_diff = std::max(max_diff, double(std::abs(g - r)));
    max_ref = std::max(max_ref, double(std::abs(r)));
  }
  CHECK(pattern_errors == 0);
  const double rel = max_ref == 0 ? max_diff : max_diff / max_ref;
  MESSAGE("state.log_norm: rel error vs CPU float32 ", rel);
  CHECK(rel <= kFloatTolerance);
}

// ---------------------------------------------------------------- sliding chunk attention

struct ScaCase {
  std::int64_t B, H, L, dk, dv, C, start;
  AttentionPattern pattern;
  double documents;         // documents per batch row over window ++ call; 0 = no segments
  bool misaligned = false;  // q, k, v and the window one element past a 16-byte boundary
};

struct ScaInputs {
  std::int64_t Lk = 0;
  Tensor<float> q, k, v, window_key, window_value;  // rounded to the storage type already
  Tensor<std::int64_t> seg, window_seg;             // empty = none
};

template <class T>
ScaInputs sca_inputs(const ScaCase& c, std::uint64_t seed) {
  Random r(seed);
  ScaInputs in;
  in.Lk = cpu::detail::required_window_length(c.start, c.C, c.pattern);
  // Logits q·k of standard deviation about 1.4: peaked enough to matter, not one-hot.
  const float scale = 1.2f / std::pow(float(c.dk), 0.25f);
  in.q = rounded<T>(r.normal({c.B, c.L, c.H, c.dk}, 0, scale));
  in.k = rounded<T>(r.normal({c.B, c.L, c.H, c.dk}, 0, scale));
  in.v = rounded<T>(r.normal({c.B, c.L, c.H, c.dv}));
  if (in.Lk > 0) {
    in.window_key = rounded<T>(r.normal({c.B, in.Lk, c.H, c.dk}, 0, scale));
    in.window_value = rounded<T>(r.normal({c.B, in.Lk, c.H, c.dv}));
  }
  if (c.documents > 0) {
    const Tensor<std::int64_t> ids = r.documents(c.B, in.Lk + c.L, c.documents, c.documents);
    in.window_seg = columns(ids, 0, in.Lk);
    in.seg = columns(ids, in.Lk, c.L);
  }
  return in;
}

template <class F>
Tensor<F> sca_cpu(const ScaCase& c, const ScaInputs& in) {
  const cpu::AttentionWindow<F> window{convert<F>(in.window_key), convert<F>(in.window_value)};
  return cpu::sliding_chunk_attention<F>(convert<F>(in.q), convert<F>(in.k), convert<F>(in.v),
                                         window, in.seg.empty() ? nullptr : &in.seg,
                                         in.window_seg.empty() ? nullptr : &in.window_seg, c.C,
                                         c.start, c.pattern);
}

// A device copy of `host` (none when empty) that starts `offset` elements into its buffer.
template <class T>
struct OffsetBuffer {
  gpu::DeviceBuffer<T> buffer;
  TensorView<const T> view;
};

template <class T>
OffsetBuffer<T> upload_at(const Tensor<T>& host, std::int64_t offset, cudaStream_t stream) {
  if (host.empty()) return {};
  Tensor<T> padded(Shape{host.size() + offset});
  std::memcpy(padded.data() + offset, host.data(), std::size_t(host.size()) * sizeof(T));
  OffsetBuffer<T> out{gpu::DeviceBuffer<T>(padded, stream), {}};
  out.view = TensorView<const T>(out.buffer.data() + offset, host.shape(), Space::Device);
  return out;
}

// Elements of NaN kept on both sides of y: a store past either end of y fails the test.
constexpr std::int64_t kGuard = 256;

template <class T>
Tensor<T> sca_gpu(const ScaCase& c, const ScaInputs& in, const CudaExecutor& exec) {
  const cudaStream_t s = exec.stream();
  const std::int64_t offset = c.misaligned ? 1 : 0;
  const auto q = upload_at(convert<T>(in.q), offset, s), k = upload_at(convert<T>(in.k), offset, s),
             v = upload_at(convert<T>(in.v), offset, s);
  const auto wk = upload_at(convert<T>(in.window_key), offset, s),
             wv = upload_at(convert<T>(in.window_value), offset, s);
  const auto seg = upload_or_none(in.seg, s), wseg = upload_or_none(in.window_seg, s);
  const Shape y_shape{c.B, c.L, c.H * c.dv};
  gpu::DeviceBuffer<T> y_guarded(poisoned<T>({y_shape.numel() + 2 * kGuard}), s);
  const TensorView<T> y(y_guarded.data() + kGuard, y_shape, Space::Device);
  gpu::sliding_chunk_attention<T>(q.view, k.view, v.view, {wk.view, wv.view}, view_or_none(seg),
                                  view_or_none(wseg), c.C, c.start, c.pattern, y, exec);
  const Tensor<T> all = y_guarded.to_host(s);
  std::int64_t guard_writes = 0;
  for (std::int64_t i = 0; i < kGuard; ++i)
    guard_writes += !std::isnan(convert_value<float>(all[i])) +
                    !std::isnan(convert_value<float>(all[all.size() - 1 - i]));
  CHECK_MESSAGE(guard_writes == 0, "elements written outside y: ", guard_writes);
  Tensor<T> out(y_shape);
  std::memcpy(out.data(), all.data() + kGuard, std::size_t(y_shape.numel()) * sizeof(T));
  return out;
}

template <class T>
void check_sca(const ScaCase& c, std::uint64_t seed, const CudaExecutor& exec) {
  INFO("B = ", c.B, ", H = ", c.H, ", L = ", c.L, ", dk = ", c.dk, ", dv = ", c.dv, ", C = ", c.C,
       ", start = ", c.start, ", ", std::string(cpu::detail::pattern_name(c.pattern)),
       ", documents ", c.documents, c.misaligned ? ", misaligned" : "");
  const ScaInputs in = sca_inputs<T>(c, seed);
  const Tensor<T> y = sca_gpu<T>(c, in, exec);
  Tensor<double> y_double;
  if constexpr (is_16bit<T>) y_double = sca_cpu<double>(c, in);
  check_output<T>("y", y, sca_cpu<float>(c, in), y_double);
}

constexpr AttentionPattern kSliding = AttentionPattern::SlidingChunks;
constexpr AttentionPattern kBlock = AttentionPattern::BlockDiagonal;

// Query tiles of 64 and key blocks of 32/64 against chunks of 1 to 100: tiles that straddle
// chunk boundaries, chunks that span several tiles, windows that start mid-block, key blocks
// fully masked by documents (skipped), head dims that are not multiples of 16 (odd too), value
// head dims of several d_v tiles (128 in 16 bits, 64 in float), steps and tails with and without
// a window, inputs whose alignment forbids 16-byte loads.
const std::vector<ScaCase> kScaCases = {
    {2, 2, 64, 64, 64, 32, 0, kSliding, 0},           // prefill of a fresh stream
    {1, 3, 96, 36, 72, 48, 96, kSliding, 3},          // prefill after a window; dk % 8 != 0
    {2, 3, 50, 37, 45, 25, 25, kSliding, 3},          // odd dk and dv, chunk of 25
    {2, 1, 7, 64, 33, 16, 32, kSliding, 3},           // tail of 7 tokens; odd dv
    {1, 2, 5, 16, 24, 32, 0, kSliding, 0},            // tail of a fresh stream: Lk = 0
    {2, 2, 1, 32, 64, 16, 93, kSliding, 3},           // one-token step, window of C + 13
    {2, 2, 1, 3, 5, 32, 70, kSliding, 2},             // one-token step, tiny odd head dims
    {1, 2, 1, 16, 64, 1024, 3071, kSliding, 0},       // a step over 2047 cached keys: diffuse P
    {1, 1, 1, 8, 8, 16, 0, kSliding, 0},              // the first token of a stream
    {1, 2, 192, 64, 128, 48, 0, kSliding, 3},         // three query tiles
    {2, 2, 128, 64, 64, 32, 64, kSliding, 24},        // many documents: skipped key blocks
    {1, 1, 200, 64, 200, 100, 100, kSliding, 4},      // chunks across query tiles; dv 200
    {1, 2, 128, 128, 512, 64, 64, kSliding, 3},       // large value head dim
    {1, 2, 3, 256, 2048, 16, 32, kSliding, 0},        // the 7B head dims, short tail
    {2, 2, 66, 48, 40, 33, 0, kBlock, 3},             // block diagonal, odd chunk
    {1, 2, 9, 64, 64, 32, 101, kBlock, 0},            // block-diagonal tail inside a chunk
    {2, 2, 1, 64, 160, 32, 77, kBlock, 3},            // block-diagonal step, window of 13
    {1, 2, 1, 32, 32, 32, 64, kBlock, 0},             // block-diagonal step at a chunk start
    {1, 2, 256, 64, 200, 64, 128, kBlock, 16},        // block-diagonal prefill, many documents
    {2, 2, 40, 64, 136, 48, 96, kSliding, 3, true},   // misaligned inputs: element-wise loads
    {1, 2, 1, 64, 64, 32, 45, kBlock, 0, true},       // misaligned window, block diagonal
};

template <class T>
void check_sca_cases(std::uint64_t seed) {
  const CudaExecutor exec;
  for (const ScaCase& c : kScaCases) check_sca<T>(c, seed++, exec);
}

TEST_CASE("cuda sliding_chunk_attention: float32 equals the CPU path") { check_sca_cases<float>(100); }
TEST_CASE("cuda sliding_chunk_attention: bfloat16 within twice the CPU path's error") {
  check_sca_cases<bfloat16>(200);
}
TEST_CASE("cuda sliding_chunk_attention: float16 within twice the CPU path's error") {
  check_sca_cases<float16>(300);
}

// ---------------------------------------------------------------- adaptive working memory

struct AwmCase {
  std::int64_t B, H, dk, dv, C, L, Lk;
  bool memory, segments;
};

struct AwmInputs {
  Tensor<float> aq, ak, v, window_key, window_value;  // rounded to the storage type already
  Tensor<float> memory, log_norm;                     // float32 state; empty = fresh stream
  Tensor<std::int64_t> seg, window_seg, mem_seg;      // empty = none
};

template <class T>
AwmInputs awm_inputs(const AwmCase& c, std::uint64_t seed) {
  Random r(seed);
  AwmInputs in;
  in.aq = rounded<T>(r.normal({c.B, c.L, c.H * c.dk}));
  in.ak = rounded<T>(r.normal({c.B, c.L, c.H * c.dk}));
  in.v = rounded<T>(r.normal({c.B, c.L, c.H * c.dv}));
  if (c.Lk > 0) {
    in.window_key = rounded<T>(r.normal({c.B, c.H, c.Lk, c.dk}));
    in.window_value = rounded<T>(r.normal({c.B, c.Lk, c.H, c.dv}));
  }
  if (c.memory) {
    in.memory = r.normal({c.B, c.H, c.dk, c.dv}, 0, 0.5f);
    in.log_norm = r.uniform({c.B, c.H, c.dk}, 1.f, 4.f);
    // Row B − 1 (B > 1) holds a memory created but not yet written (M = 0, Λ = −inf), the state
    // after the stream's first chunk: its absorptions start from logaddexp(−inf, ℓ).
    if (c.B > 1)
      for (std::int64_t h = 0; h < c.H; ++h)
        for (std::int64_t s = 0; s < c.dk; ++s) {
          in.log_norm(c.B - 1, h, s) = -std::numeric_limits<float>::infinity();
          for (std::int64_t d = 0; d < c.dv; ++d) in.memory(c.B - 1, h, s, d) = 0.f;
        }
  }
  if (c.segments) {
    // Even rows hold one document, so their reads see the memory; odd rows about four.
    const Tensor<std::int64_t> ids = r.documents(c.B, c.Lk + c.L, 0, 3);
    in.window_seg = columns(ids, 0, c.Lk);
    in.seg = columns(ids, c.Lk, c.L);
    if (c.memory) {
      // Even rows: the memory belongs to the window's first document; odd rows: to an earlier
      // one, so their reads are masked and the first absorption resets.
      in.mem_seg = Tensor<std::int64_t>({c.B});
      for (std::int64_t b = 0; b < c.B; ++b) in.mem_seg(b) = ids(b, 0) - b % 2;
    }
  }
  return in;
}

template <class F>
struct AwmCpuResult {
  Tensor<F> out;
  cpu::WorkingMemoryState<F> state;
};

template <class F>
AwmCpuResult<F> awm_cpu(const AwmCase& c, const AwmInputs& in) {
  AwmCpuResult<F> r;
  r.state = {convert<F>(in.window_key), convert<F>(in.memory), convert<F>(in.log_norm)};
  const cpu::WorkingMemorySegments segs{in.seg.empty() ? nullptr : &in.seg,
                                        in.window_seg.empty() ? nullptr : &in.window_seg,
                                        in.mem_seg.empty() ? nullptr : &in.mem_seg};
  r.out = cpu::working_memory<F>(convert<F>(in.aq), convert<F>(in.ak), convert<F>(in.v),
                                 convert<F>(in.window_value), r.state, segs, int(c.H), c.C);
  return r;
}

template <class T>
struct AwmGpuResult {
  Tensor<T> out, new_key;
  Tensor<float> memory, log_norm;
  bool present = false;
};

template <class T>
AwmGpuResult<T> awm_gpu(const AwmCase& c, const AwmInputs& in, const CudaExecutor& exec) {
  const cudaStream_t s = exec.stream();
  const gpu::DeviceBuffer<T> aq(convert<T>(in.aq), s), ak(convert<T>(in.ak), s), v(convert<T>(in.v), s);
  const auto wk = upload_or_none(convert<T>(in.window_key), s), wv = upload_or_none(convert<T>(in.window_value), s);
  // Where the call creates the memory, its buffers start as NaN: every element must be written.
  const Shape mem_shape{c.B, c.H, c.dk, c.dv}, norm_shape{c.B, c.H, c.dk};
  gpu::DeviceBuffer<float> memory(c.memory ? in.memory : poisoned<float>(mem_shape), s);
  gpu::DeviceBuffer<float> log_norm(c.memory ? in.log_norm : poisoned<float>(norm_shape), s);
  const auto seg = upload_or_none(in.seg, s), wseg = upload_or_none(in.window_seg, s),
             mem_seg = upload_or_none(in.mem_seg, s);
  const std::int64_t new_window = c.L >= c.C ? c.C : c.Lk + c.L;
  gpu::DeviceBuffer<T> out(poisoned<T>({c.B, c.L, c.H * c.dv}), s);
  gpu::DeviceBuffer<T> new_key(poisoned<T>({c.B, c.H, new_window, c.dk}), s);

  gpu::WorkingMemoryState<T> state{view_or_none(wk), memory.view(), log_norm.view(), c.memory};
  gpu::working_memory<T>(aq.view(), ak.view(), v.view(), view_or_none(wv), state,
                         {view_or_none(seg), view_or_none(wseg), view_or_none(mem_seg)}, int(c.H),
                         c.C, out.view(), new_key.view(), exec);
  AwmGpuResult<T> r;
  r.out = out.to_host(s);
  r.new_key = new_key.to_host(s);
  r.memory = memory.to_host(s);
  r.log_norm = log_norm.to_host(s);
  r.present = state.present;
  return r;
}

template <class T>
void check_awm(const AwmCase& c, std::uint64_t seed, const CudaExecutor& exec) {
  INFO("B = ", c.B, ", H = ", c.H, ", dk = ", c.dk, ", dv = ", c.dv, ", C = ", c.C, ", L = ", c.L,
       ", Lk = ", c.Lk, ", memory ", c.memory, ", segments ", c.segments);
  const AwmInputs in = awm_inputs<T>(c, seed);
  const AwmGpuResult<T> got = awm_gpu<T>(c, in, exec);
  const AwmCpuResult<float> want = awm_cpu<float>(c, in);
  Tensor<double> out_double;
  if constexpr (is_16bit<T>) out_double = awm_cpu<double>(c, in).out;
  check_output<T>("out", got.out, want.out, out_double);

  const Tensor<T> key = convert<T>(want.state.key);
  REQUIRE(got.new_key.shape() == key.shape());
  std::int64_t key_mismatches = 0;
  for (std::int64_t i = 0; i < key.size(); ++i)
    key_mismatches += std::memcmp(&got.new_key[i], &key[i], sizeof(T)) != 0;
  CHECK(key_mismatches == 0);

  CHECK(got.present == !want.state.memory.empty());
  if (got.present && !want.state.memory.empty()) {
    check_state("state.memory", got.memory, want.state.memory);
    check_log_norm(got.log_norm, want.state.log_norm);
  }
}

// Tiles of 32 tokens and 64 memory columns against chunks of 16 to 48: partial tiles, dk not a
// multiple of 16, every schedule of §11.3/§11.4.
const std::vector<AwmCase> kAwmCases = {
    {2, 2, 64, 64, 32, 96, 0, false, true},     // prefill of a fresh stream: create, then absorb
    {2, 2, 36, 72, 20, 60, 20, true, true},     // prefill after a window; partial tiles
    {1, 1, 64, 64, 40, 80, 40, true, false},    // prefill without segments
    {2, 1, 64, 33, 16, 1, 21, true, true},      // one-token step, read only
    {2, 2, 32, 64, 16, 1, 31, true, true},      // one-token step that absorbs (W = 2C)
    {1, 2, 64, 64, 32, 7, 32, true, false},     // multi-token tail
    {2, 1, 48, 40, 24, 3, 21, false, true},     // the window reaches C: the memory is created
    {1, 1, 64, 64, 32, 5, 2, false, false},     // no memory yet: zeros
    {2, 2, 128, 512, 48, 96, 48, true, true},   // large value head dim
    {1, 2, 256, 2048, 16, 1, 31, true, false},  // the 7B head dims, a step that absorbs
    {2, 2, 8, 16, 32, 96, 0, false, true},      // the tiny preset's heads: dk = 8 < 16, one column tile
    {1, 1, 40, 48, 16, 6, 21, true, true},      // multi-token tail off a chunk boundary, read only
    {2, 1, 40, 70, 16, 13, 19, true, true},     // multi-token tail that fills the window to 2C: absorbs
    {1, 1, 256, 64, 2048, 2048, 2048, true, true},  // the 7B chunk: ℓ and U over 2048 tokens
};

template <class T>
void check_awm_cases(std::uint64_t seed) {
  const CudaExecutor exec;
  for (const AwmCase& c : kAwmCases) check_awm<T>(c, seed++, exec);
}

TEST_CASE("cuda working_memory: float32 equals the CPU path") { check_awm_cases<float>(400); }
TEST_CASE("cuda working_memory: bfloat16 within twice the CPU path's error") {
  check_awm_cases<bfloat16>(500);
}
TEST_CASE("cuda working_memory: float16 within twice the CPU path's error") {
  check_awm_cases<float16>(600);
}

// Both ops on a stream of their own, through the CudaExecutor overloads.
TEST_CASE("cuda attention ops: a stream of their own") {
  cudaStream_t stream = nullptr;
  REQUIRE(cudaStreamCreate(&stream) == cudaSuccess);
  const CudaExecutor exec(stream);
  check_sca<bfloat16>({2, 2, 64, 64, 96, 32, 32, kSliding, 3}, 700, exec);
  check_awm<bfloat16>({2, 2, 64, 96, 32, 64, 32, true, true}, 701, exec);
  CHECK(cudaStreamDestroy(stream) == cudaSuccess);
}

TEST_CASE("cuda attention ops: bad inputs are refused") {
  const ScaCase sc{1, 1, 4, 8, 8, 16, 32, kSliding, 0};
  const ScaInputs in = sca_inputs<float>(sc, 800);
  const gpu::DeviceBuffer<float> q(in.q), k(in.k), v(in.v);
  gpu::DeviceBuffer<float> y(Shape{1, 4, 8});
  // start = 32 needs the previous chunk (16 tokens) as the window.
  CHECK_THROWS_WITH_AS(gpu::sliding_chunk_attention<float>(q.view(), k.view(), v.view(), {}, {}, {},
                                                            16, 32, kSliding, y.view(), nullptr),
                       doctest::Contains("cuda::sliding_chunk_attention: with sliding chunks a call "
                                         "at start=32 needs a window of the 16 tokens before it"),
                       gecko::Error);
  CHECK_THROWS_WITH_AS(gpu::sliding_chunk_attention<float>(in.q.view(), k.view(), v.view(), {}, {}, {},
                                                            16, 0, kSliding, y.view(), nullptr),
                       "cuda::sliding_chunk_attention: q of shape [1, 4, 1, 8] is in host memory, "
                       "expected device memory",
                       gecko::Error);
  const gpu::DeviceBuffer<std::int64_t> ids(Tensor<std::int64_t>(Shape{1, 4}, 0));
  CHECK_THROWS_WITH_AS(gpu::sliding_chunk_attention<float>(q.view(), k.view(), v.view(), {}, {}, ids.view(),
                                                            16, 0, kSliding, y.view(), nullptr),
                       doctest::Contains("window_seg is given without seg"), gecko::Error);

  // dk = 320 is beyond the kernel's feature registers.
  const gpu::DeviceBuffer<float> aq(Shape{1, 2, 320}), av(Shape{1, 2, 8});
  gpu::DeviceBuffer<float> out(Shape{1, 2, 8});
  gpu::WorkingMemoryState<float> fresh;
  CHECK_THROWS_WITH_AS(gpu::working_memory<float>(aq.view(), aq.view(), av.view(), {}, fresh, {}, 1, 4,
                                                  out.view(), {}, nullptr),
                       doctest::Contains("cuda::working_memory: key head dim dk = 320 outside [1, 256]"),
                       gecko::Error);
  // Two tokens completing a chunk of 2 create the memory: its buffers must be there.
  const gpu::DeviceBuffer<float> aq8(Shape{1, 2, 8});
  CHECK_THROWS_WITH_AS(gpu::working_memory<float>(aq8.view(), aq8.view(), av.view(), {}, fresh, {}, 1,
                                                  2, out.view(), {}, nullptr),
                       "cuda::working_memory: state.memory is absent (this call creates the memory)",
                       gecko::Error);
  CHECK_FALSE(fresh.present);
}

}  // namespace
