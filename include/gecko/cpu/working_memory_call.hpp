#pragma once
// The call rules of the adaptive working memory (spec §11.3, §11.4), one copy for
// cpu::working_memory and cuda::working_memory: the shapes a call must have and the schedule
// they imply. It sees shapes only (no Eigen, no CUDA), so the device header includes it cheaply;
// each caller keeps its own checks beyond these (where its tensors live, its output buffers, its
// kernel's limits).
//
// Rules: L >= C (chunked, §11.3) needs L % C == 0 and either a fresh stream or a memory with a
// cached window of exactly C tokens; L < C (tail / step, §11.4) needs window ++ new <= C tokens
// without a memory and (C, 2C] tokens with one.

#include <cstdint>
#include <string_view>

#include "gecko/core/error.hpp"
#include "gecko/core/shape.hpp"

namespace gecko::cpu {

// A call that passed check_working_memory_call: B batch rows, L new tokens, H heads of dk key and
// dv value features, chunk C, a cached window of Lk tokens (0 without one).
struct WorkingMemoryCall {
  std::int64_t B, L, H, dk, dv, C, Lk;
  bool has_window, has_memory, segmented;

  std::int64_t joined() const { return Lk + L; }  // W: window ++ call
  bool chunked() const { return L >= C; }         // §11.3; otherwise a tail / step (§11.4)
  // Tokens of the key window after the call: the last chunk of a chunked call, else window ++
  // call uncut (the cache cuts it at the chunk boundary).
  std::int64_t new_window() const { return chunked() ? C : joined(); }
  // Whether the call creates the memory or absorbs a chunk; a step that does neither only reads.
  bool updates_memory() const { return chunked() || joined() % C == 0; }
  // Whether a memory exists after the call.
  bool memory_after() const { return has_memory || updates_memory(); }
};

// Checks one call's shapes and schedule; absent inputs are nullptr. `op` prefixes every message.
//   aq, ak: (B, L, H·dk); v: (B, L, H·dv); window_key: (B, H, Lk, dk) the cached AWM keys, and
//   window_value: (B, Lk, H, dv) their values, both given or both absent;
//   has_memory: whether the state holds a memory, which needs memory (B, H, dk, dv) and
//   log_norm (B, H, dk); those are shape-checked wherever given;
//   seg (B, L), window_seg (B, Lk), mem_seg (B): document ids, all absent without segments; with
//   them window_seg is needed for a window and mem_seg for a memory.
inline WorkingMemoryCall check_working_memory_call(std::string_view op, const Shape& aq, const Shape& ak,
                                                   const Shape& v, const Shape* window_key,
                                                   const Shape* window_value, bool has_memory,
                                                   const Shape* memory, const Shape* log_norm, const Shape* seg,
                                                   const Shape* window_seg, const Shape* mem_seg, int heads,
                                                   std::int64_t chunk) {
  require(heads > 0 && chunk > 0, op, ": heads and chunk must be positive, got heads ", heads,
          ", chunk ", chunk);
  require(aq.rank == 3, op, ": aq has shape ", aq.str(), ", expected (B, L, H*dk)");
  require(v.rank == 3, op, ": v has shape ", v.str(), ", expected (B, L, H*dv)");
  WorkingMemoryCall c{};
  c.B = aq[0];
  c.L = aq[1];
  c.H = heads;
  c.C = chunk;
  const std::int64_t B = c.B, L = c.L, H = c.H, C = c.C;
  require(aq[2] % H == 0, op, ": aq has ", aq[2], " features, not a multiple of ", H, " heads");
  require(v[2] % H == 0, op, ": v has ", v[2], " features, not a multiple of ", H, " heads");
  c.dk = aq[2] / H;
  c.dv = v[2] / H;
  const std::int64_t dk = c.dk, dv = c.dv;
  require(dk >= 1, op, ": key head dim dk must be positive, got ", dk);
  require(dv >= 1, op, ": value head dim dv must be positive, got ", dv);
  require(L > 0, op, ": empty call (L = 0)");
  check_shape(op, "ak", ak, aq);
  check_shape(op, "v", v, {B, L, H * dv});

  c.has_window = window_key != nullptr;
  c.has_memory = has_memory;
  const bool has_window = c.has_window;
  c.Lk = has_window ? (*window_key)[2] : 0;  // a wrong rank fails the shape check below
  const std::int64_t Lk = c.Lk, W = c.joined();
  if (has_window) check_shape(op, "state.key", *window_key, {B, H, Lk, dk});
  require((window_value != nullptr) == has_window, op, ": window_value ",
          has_window ? "is missing for" : "is given without", " a cached key window");
  if (window_value) check_shape(op, "window_value", *window_value, {B, Lk, H, dv});
  if (has_memory) {
    require(memory != nullptr, op, ": state.memory is absent (the state holds a memory)");
    require(log_norm != nullptr, op, ": state.log_norm is absent (the state holds a memory)");
  }
  if (memory) check_shape(op, "state.memory", *memory, {B, H, dk, dv});
  if (log_norm) check_shape(op, "state.log_norm", *log_norm, {B, H, dk});

  if (c.chunked()) {
    require(L % C == 0, op, ": a call of L >= C tokens needs L % C == 0, got L = ", L, ", C = ", C);
    require(has_window == has_memory, op, ": a chunked call needs a memory together with a ",
            "cached window (or neither), got ", has_memory ? "a memory" : "no memory", " and ",
            has_window ? "a window" : "no window");
    require(!has_window || Lk == C, op, ": a chunked call needs a cached window of C = ", C,
            " tokens, got ", Lk);
  } else if (has_memory) {
    require(C < W && W <= 2 * C, op, ": with a memory, window ++ new must hold (C, 2C] = (", C, ", ",
            2 * C, "] tokens, got ", Lk, " + ", L);
  } else {
    require(W <= C, op, ": without a memory, window ++ new must hold at most C = ", C, " tokens, got ",
            Lk, " + ", L);
  }

  c.segmented = seg != nullptr;
  require(c.segmented || (!window_seg && !mem_seg), op,
          ": segments.window_seg / mem_seg given without segments.seg");
  if (c.segmented) {
    check_shape(op, "segments.seg", *seg, {B, L});
    require(!has_window || window_seg, op, ": segments need segments.window_seg for the ", Lk,
            "-token window");
    if (window_seg) check_shape(op, "segments.window_seg", *window_seg, {B, Lk});
    require(!has_memory || mem_seg, op, ": segments need segments.mem_seg for the memory");
    if (mem_seg) check_shape(op, "segments.mem_seg", *mem_seg, {B});
  }
  return c;
}

}  // namespace gecko::cpu
