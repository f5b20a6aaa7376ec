#pragma once
// Sliding chunk attention on the GPU (spec §10), the device twin of cpu::sliding_chunk_attention
// with the same meaning and call rules: a query at absolute position t (chunk c = ⌊t/C⌋) attends,
// with scale 1, to the keys j of [cached window ++ call] with lo(t) ≤ j ≤ t and, with segments,
// seg(j) = seg(t); lo(t) = max(0, (c − 1)·C) for SlidingChunks (Gecko), c·C for BlockDiagonal
// (Megalodon). Prefill, tail and single-token steps all run through the same two kernels.
// q, k, v, the window and y hold T in {float, bfloat16, float16}; logits, softmax and
// accumulation are float32, and y is rounded to T once.
//
// Algorithm: flash-style, two passes, no L × (Lk + L) matrix in memory.
//   Pass 1 (grid: query tiles × B·H): per tile of 64 queries, walk the key blocks, S = Q·Kᵀ on
//     the tensor cores into shared memory, and fold the visible entries of every row into an
//     online log-sum-exp (float32) → lse (a B·H·L float scratch, stream-ordered allocation).
//   Pass 2 (grid: query tiles × B·H, d_v tiles): recompute S per key block, P = exp(S − lse)
//     (masked entries 0; already normalised, so no rescaling), O += P·V with O in register
//     fragments; O is rounded to T once. Each warp owns a 16-query strip of S, P and O, so the
//     softmax step needs no block barrier.
//   The d_v tile (kValueCols) bounds the accumulator registers, so any value head dim works
//   (7B: dv = 2048 is 16 tiles); the price is that every d_v tile recomputes its logits. The
//   precomputed lse is what lets O stay in WMMA fragments, whose layout is opaque, instead of being
//   rescaled row by row as an online softmax would.
//   Key blocks run from the first query's window start to the last query; a block in which no
//   (query, key) pair is visible (window, causality, segments) is skipped before any product.
//   Precision: 16-bit inputs give exact products for S. P is split into hi = rnd_T(P) and
//   lo = rnd_T(P − hi), both multiplied by V, so P keeps about 16 bits and the output error stays
//   that of the final rounding; a single rnd_T(P), as the reference does (§10.5), measured 1.1–1.8×
//   the CPU path's error in a CPU simulation of these numerics. float16 has 5 exponent bits: lo
//   (about P·2⁻¹¹) would fall among its subnormals for P < 1/8 and lose its bits (1.14× the CPU
//   path's error for diffuse rows of 4096 keys in that simulation), so there P is split as
//   P·2¹⁵ (≤ 32768, below the float16 maximum) and O is scaled back by 2⁻¹⁵, exactly, in float32.
//   float inputs use 3xTF32 (mma.cuh).
//
// Bound: tensor-core FLOP/s, counted as 2·MACs of the defining algorithm, Σ_t |K(t)|·(dk + dv)
// MACs per (b, h). Per visible (query, key) pair the 16-bit kernels issue dk·(1 + n) MACs of
// logits and 2·DV·n of P·V, n = ⌈dv/DV⌉ value tiles: at the 7B shape (dk 256, dv 2048, DV 128)
// 8448 per 2304 defining, so at most ~27% of the 16-bit tensor peak; 33% at dk = dv = 64 (half
// the 128-column tile is padding); plus the masked part of the blocks on the causal diagonal. The
// float kernels issue three TF32 products per MAC at half the 16-bit rate. Loads are synchronous
// (no cp.async/TMA pipelining), the first thing to measure; then a larger DV with two warps per
// query strip, and mma.sync with P kept in registers. Tile sizes are first guesses, not yet
// measured on a GPU.

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <type_traits>

#include "gecko/core/error.hpp"
#include "gecko/core/shape.hpp"
#include "gecko/core/tensor.hpp"
#include "gecko/cpu/sliding_chunk_attention.hpp"  // AttentionPattern and the call rules
#include "gecko/cuda/check.cuh"
#include "gecko/cuda/executor.cuh"
#include "gecko/cuda/group_norm.cuh"
#include "gecko/cuda/mma.cuh"

namespace gecko::cuda {

// The cached keys and values of the tokens just before a call, in device memory; a default
// (null) key means no window.
template <class T>
struct AttentionWindow {
  TensorView<const T> key;    // (B, Lk, H, dk) after RoPE
  TensorView<const T> value;  // (B, Lk, H, dv)
};

namespace detail {

template <class T>
struct ScaTile {
  using Mma = detail::Mma<T>;
  using Elem = typename Mma::Elem;
  static constexpr bool kHalf = !std::is_same_v<T, float>;  // 16-bit: P as hi + lo in T
  static constexpr int kWarps = 4;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kQueries = 16 * kWarps;             // one 16-query strip per warp
  static constexpr int kKeys = kHalf ? 64 : 32;            // keys per block
  static constexpr int kValueCols = kHalf ? 128 : 64;      // DV: value columns per CTA
  static constexpr int kPad = 16 / int(sizeof(Elem));      // row padding against bank conflicts
  // P is split as P·kPScale (a power of two; P ≤ 1), O scaled back once: keeps the float16 lo
  // part out of the subnormals.
  static constexpr float kPScale = std::is_same_v<T, float16> ? 32768.f : 1.f;
  static_assert(kKeys % 32 == 0 && kKeys % Mma::kK == 0, "a key block is whole lanes and k-steps");
  static_assert(kValueCols % 16 == 0, "value tiles are whole 16-column fragments");
};

// Offsets into the dynamic shared memory of one CTA (pass 1 has no values and no P).
struct ScaSmem {
  int ldk, ldv, lds, ldp;
  std::size_t q, k, v, s, p_hi, p_lo, row_lo, row_seg, key_seg, bytes;
};

template <class T>
__host__ __device__ inline ScaSmem sca_smem(int dkp, bool values) {
  using Tile = ScaTile<T>;
  using Elem = typename Tile::Elem;
  ScaSmem m{};
  m.ldk = dkp + Tile::kPad;
  m.ldv = Tile::kValueCols + Tile::kPad;
  m.lds = Tile::kKeys + 4;
  m.ldp = Tile::kKeys + Tile::kPad;
  SmemArena arena;
  m.q = arena.take<Elem>(std::size_t(Tile::kQueries) * m.ldk);
  m.k = arena.take<Elem>(std::size_t(Tile::kKeys) * m.ldk);
  m.s = arena.take<float>(std::size_t(Tile::kQueries) * m.lds);
  if (values) {
    m.v = arena.take<Elem>(std::size_t(Tile::kKeys) * m.ldv);
    if constexpr (Tile::kHalf) {
      m.p_hi = arena.take<Elem>(std::size_t(Tile::kQueries) * m.ldp);
      m.p_lo = arena.take<Elem>(std::size_t(Tile::kQueries) * m.ldp);
    }
  }
  m.row_lo = arena.take<int>(Tile::kQueries);
  m.row_seg = arena.take<std::int64_t>(Tile::kQueries);
  m.key_seg = arena.take<std::int64_t>(Tile::kKeys);
  m.bytes = arena.bytes;
  return m;
}

template <class T>
struct ScaParams {
  const T* q;             // (B, L, H, dk)
  const T* k;             // (B, L, H, dk)
  const T* v;             // (B, L, H, dv)
  const T* window_key;    // (B, Lk, H, dk)
  const T* window_value;  // (B, Lk, H, dv)
  const std::int64_t* seg;         // (B, L) or null
  const std::int64_t* window_seg;  // (B, Lk)
  T* y;                   // (B, L, H·dv)
  float* lse;             // (B·H, L)
  int H, L, Lk, dk, dv, query_tiles;
  std::int64_t start, chunk;
  bool sliding, vec_k, vec_v;
};

// kValues = false: pass 1 (lse); true: pass 2 (y). Grid (query_tiles·B·H, d_v tiles).
template <class T, bool kValues>
__global__ void __launch_bounds__(ScaTile<T>::kThreads) sca_kernel(const __grid_constant__ ScaParams<T> p) {
  using Tile = ScaTile<T>;
  using Mma = typename Tile::Mma;
  using Elem = typename Tile::Elem;
  constexpr int kThreads = Tile::kThreads, BM = Tile::kQueries, BN = Tile::kKeys;
  constexpr int DV = Tile::kValueCols, K = Mma::kK;
  extern __shared__ __align__(128) unsigned char smem[];

  const int dkp = round_up(p.dk, 16);
  const ScaSmem lay = sca_smem<T>(dkp, kValues);
  Elem* const qs = reinterpret_cast<Elem*>(smem + lay.q);
  Elem* const ks = reinterpret_cast<Elem*>(smem + lay.k);
  Elem* const vs = reinterpret_cast<Elem*>(smem + lay.v);
  float* const ss = reinterpret_cast<float*>(smem + lay.s);
  Elem* const p_hi = reinterpret_cast<Elem*>(smem + lay.p_hi);
  Elem* const p_lo = reinterpret_cast<Elem*>(smem + lay.p_lo);
  int* const row_lo = reinterpret_cast<int*>(smem + lay.row_lo);
  std::int64_t* const row_seg = reinterpret_cast<std::int64_t*>(smem + lay.row_seg);
  std::int64_t* const key_seg = reinterpret_cast<std::int64_t*>(smem + lay.key_seg);

  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  const int bh = int(blockIdx.x) / p.query_tiles, b = bh / p.H, h = bh % p.H;
  const int q0 = (int(blockIdx.x) % p.query_tiles) * BM;
  const int v0 = int(blockIdx.y) * DV;
  const int L = p.L, Lk = p.Lk, N = Lk + L;  // keys: window ++ call
  const std::int64_t first = p.start - Lk;   // absolute position of key 0
  const bool segmented = p.seg != nullptr;

  // lo(t) relative to key 0; a query row past L sees nothing.
  auto window_start = [&](int i) {
    const std::int64_t c = (p.start + i) / p.chunk;
    const std::int64_t lo = p.sliding ? (c > 0 ? (c - 1) * p.chunk : 0) : c * p.chunk;
    return int(lo - first);
  };
  auto key_segment = [&](int j) {
    return j < Lk ? p.window_seg[std::int64_t(b) * Lk + j] : p.seg[std::int64_t(b) * L + (j - Lk)];
  };
  auto key_row = [&](const T* window, const T* call, int j, int d) -> const T* {
    if (j < Lk) return window + ((std::int64_t(b) * Lk + j) * p.H + h) * d;
    if (j < N) return call + ((std::int64_t(b) * L + (j - Lk)) * p.H + h) * d;
    return nullptr;
  };

  for (int r = int(threadIdx.x); r < BM; r += kThreads) {
    const int i = q0 + r;
    row_lo[r] = i < L ? window_start(i) : INT_MAX;
    row_seg[r] = i < L && segmented ? p.seg[std::int64_t(b) * L + i] : 0;
  }
  load_tile<T, Elem, kThreads>(qs, lay.ldk, BM, dkp, p.dk, p.vec_k, [&](int r) -> const T* {
    const int i = q0 + r;
    return i < L ? p.q + ((std::int64_t(b) * L + i) * p.H + h) * p.dk : nullptr;
  });
  __syncthreads();

  auto visible = [&](int r, int j, std::int64_t kseg) {
    const int i = q0 + r;
    return i < L && j < N && j >= row_lo[r] && j <= Lk + i && (!segmented || kseg == row_seg[r]);
  };

  const bool active = q0 + 16 * warp < L;  // the warp's strip holds a query
  float* const strip = ss + 16 * warp * lay.lds;

  // Pass 1: per lane and strip row, the log-sum-exp of the lane's columns.
  float run_max[16], run_sum[16];
  // Pass 2: the rows' lse and the output strip (16 × DV).
  float row_lse[16];
  typename Mma::Acc acc[DV / 16];
  if constexpr (kValues) {
#pragma unroll
    for (int n = 0; n < DV / 16; ++n) wmma::fill_fragment(acc[n], 0.f);
#pragma unroll
    for (int r = 0; r < 16; ++r) {
      const int i = q0 + 16 * warp + r;
      row_lse[r] = i < L ? p.lse[std::int64_t(bh) * L + i] : 0.f;
    }
  } else {
#pragma unroll
    for (int r = 0; r < 16; ++r) {
      run_max[r] = -INFINITY;
      run_sum[r] = 0.f;
    }
  }

  const int last = min(q0 + BM, L) - 1;
  const int j_begin = window_start(q0), j_end = Lk + last + 1;
  for (int j0 = j_begin; j0 < j_end; j0 += BN) {
    bool any = false;
    for (int e = int(threadIdx.x); e < BM * BN && !any; e += kThreads) {
      const int r = e / BN, j = j0 + e % BN, i = q0 + r;
      if (i < L && j < N && j >= row_lo[r] && j <= Lk + i)
        any = !segmented || key_segment(j) == row_seg[r];
    }
    if (!__syncthreads_or(any)) continue;  // nothing visible: no products for this block

    load_tile<T, Elem, kThreads>(ks, lay.ldk, BN, dkp, p.dk, p.vec_k,
                                 [&](int r) { return key_row(p.window_key, p.k, j0 + r, p.dk); });
    if constexpr (kValues) {
      load_tile<T, Elem, kThreads>(vs, lay.ldv, BN, DV, min(DV, p.dv - v0), p.vec_v, [&](int r) {
        const T* row = key_row(p.window_value, p.v, j0 + r, p.dv);
        return row != nullptr ? row + v0 : row;
      });
    }
    if (segmented)
      for (int c = int(threadIdx.x); c < BN; c += kThreads)
        key_seg[c] = j0 + c < N ? key_segment(j0 + c) : 0;
    __syncthreads();

    if (active) {
      {  // S strip (16 × BN) = Q strip · K blockᵀ
        typename Mma::Acc sacc[BN / 16];
#pragma unroll
        for (int n = 0; n < BN / 16; ++n) wmma::fill_fragment(sacc[n], 0.f);
        for (int k0 = 0; k0 < dkp; k0 += K) {
          typename Mma::template OperandA<wmma::row_major> a;
          Mma::load(a, qs + 16 * warp * lay.ldk + k0, lay.ldk);
#pragma unroll
          for (int n = 0; n < BN / 16; ++n) {
            typename Mma::template OperandB<wmma::col_major> kt;
            Mma::load(kt, ks + 16 * n * lay.ldk + k0, lay.ldk);
            Mma::mma(sacc[n], a, kt);
          }
        }
#pragma unroll
        for (int n = 0; n < BN / 16; ++n)
          wmma::store_matrix_sync(strip + 16 * n, sacc[n], lay.lds, wmma::mem_row_major);
      }
      __syncwarp();

      // Softmax step: lane owns columns lane + 32·jj of the strip's 16 rows.
#pragma unroll
      for (int r = 0; r < 16; ++r) {
#pragma unroll
        for (int jj = 0; jj < BN / 32; ++jj) {
          const int c = lane + 32 * jj;
          const bool vis = visible(16 * warp + r, j0 + c, segmented ? key_seg[c] : 0);
          const float x = strip[r * lay.lds + c];
          if constexpr (!kValues) {
            if (vis) lse_merge(run_max[r], run_sum[r], x, 1.f);
          } else {
            const float prob = vis ? expf(x - row_lse[r]) : 0.f;
            if constexpr (Tile::kHalf) {
              const float scaled = prob * Tile::kPScale;
              const Elem hi = elem_from_float<Elem>(scaled);
              p_hi[(16 * warp + r) * lay.ldp + c] = hi;
              p_lo[(16 * warp + r) * lay.ldp + c] = elem_from_float<Elem>(scaled - elem_to_float(hi));
            } else {
              strip[r * lay.lds + c] = prob;  // float: P overwrites S in place
            }
          }
        }
      }

      if constexpr (kValues) {
        __syncwarp();
        // O strip += P strip · V block
        for (int k0 = 0; k0 < BN; k0 += K) {
          typename Mma::template OperandA<wmma::row_major> a_hi, a_lo;
          if constexpr (Tile::kHalf) {
            Mma::load(a_hi, p_hi + 16 * warp * lay.ldp + k0, lay.ldp);
            Mma::load(a_lo, p_lo + 16 * warp * lay.ldp + k0, lay.ldp);
          } else {
            Mma::load(a_hi, strip + k0, lay.lds);
          }
#pragma unroll
          for (int n = 0; n < DV / 16; ++n) {
            typename Mma::template OperandB<wmma::row_major> vb;
            Mma::load(vb, vs + k0 * lay.ldv + 16 * n, lay.ldv);
            if constexpr (Tile::kHalf) Mma::mma(acc[n], a_lo, vb);
            Mma::mma(acc[n], a_hi, vb);
          }
        }
      }
    }
    __syncthreads();  // the K, V and seg tiles are refilled next
  }

  if (!active) return;
  if constexpr (!kValues) {
#pragma unroll
    for (int r = 0; r < 16; ++r) {
      float m = run_max[r], s = run_sum[r];
#pragma unroll
      for (int offset = 16; offset > 0; offset /= 2) {
        const float m2 = __shfl_xor_sync(0xffffffffu, m, offset);
        const float s2 = __shfl_xor_sync(0xffffffffu, s, offset);
        lse_merge(m, s, m2, s2);
      }
      const int i = q0 + 16 * warp + r;
      if (lane == 0 && i < L) p.lse[std::int64_t(bh) * L + i] = m + logf(s);  // K(t) ∋ t: s ≥ 1
    }
  } else {
    // Each 16 × 16 output fragment goes through the warp's strip to rounded stores.
    const std::int64_t row_stride = std::int64_t(p.H) * p.dv;
    constexpr float kUnscale = 1.f / Tile::kPScale;  // a power of two: exact
#pragma unroll
    for (int n = 0; n < DV / 16; ++n) {
      wmma::store_matrix_sync(strip, acc[n], lay.lds, wmma::mem_row_major);
      __syncwarp();
      for (int e = lane; e < 256; e += 32) {
        const int r = e / 16, col = v0 + 16 * n + e % 16, i = q0 + 16 * warp + r;
        if (i < L && col < p.dv)
          p.y[(std::int64_t(b) * L + i) * row_stride + std::int64_t(h) * p.dv + col] =
              T(strip[r * lay.lds + e % 16] * kUnscale);
      }
      __syncwarp();
    }
  }
}

}  // namespace detail

// q, k (B, L, H, dk) after RoPE; v (B, L, H, dv); window: the cached tokens before the call
// (length Lk as cpu::sliding_chunk_attention requires); seg (B, L) and window_seg (B, Lk)
// segment ids, default views = no segments; start = absolute position of q[:, 0].
// y (B, L, H·dv), heads concatenated, not overlapping the inputs. All views in device memory.
template <class T>
void sliding_chunk_attention(TensorView<const T> q, TensorView<const T> k, TensorView<const T> v,
                             const AttentionWindow<T>& window, TensorView<const std::int64_t> seg,
                             TensorView<const std::int64_t> window_seg, std::int64_t chunk,
                             std::int64_t start, cpu::AttentionPattern pattern, TensorView<T> y,
                             cudaStream_t stream) {
  constexpr const char* op = "cuda::sliding_chunk_attention";
  using Tile = detail::ScaTile<T>;
  detail::require_device(op, "q", q);
  require(q.rank() == 4, op, ": q must have shape (B, L, H, dk), got ", q.shape.str());
  const std::int64_t B = q.shape[0], L = q.shape[1], H = q.shape[2], dk = q.shape[3];
  detail::require_device(op, "k", k);
  check_shape(op, "k", k.shape, q.shape);
  detail::require_device(op, "v", v);
  require(v.rank() == 4, op, ": v must have shape (B, L, H, dv), got ", v.shape.str());
  const std::int64_t dv = v.shape[3];
  check_shape(op, "v", v.shape, Shape{B, L, H, dv});
  cpu::detail::check_attention_call(op, L, start, chunk, pattern);

  const std::int64_t Lk = window.key.data == nullptr ? 0 : window.key.shape[1];
  const std::int64_t needed = cpu::detail::required_window_length(start, chunk, pattern);
  require(Lk == needed, op, ": with ", cpu::detail::pattern_name(pattern), " a call at start=",
          start, " needs a window of the ", needed, " tokens before it (",
          pattern == cpu::AttentionPattern::SlidingChunks ? "Lk = min(start, chunk + start % chunk)"
                                                          : "Lk = start % chunk",
          ", chunk=", chunk, "), got Lk=", Lk);
  if (Lk > 0) {
    detail::require_device(op, "window.key", window.key);
    check_shape(op, "window.key", window.key.shape, Shape{B, Lk, H, dk});
    require(window.value.data != nullptr, op, ": window.value is absent while window.key holds ",
            Lk, " tokens");
    detail::require_device(op, "window.value", window.value);
    check_shape(op, "window.value", window.value.shape, Shape{B, Lk, H, dv});
  }
  const bool segmented = detail::optional_device(op, "seg", seg, Shape{B, L});
  if (segmented) {
    if (Lk > 0) {
      require(window_seg.data != nullptr, op, ": seg is given but window_seg is absent for a window of ",
              Lk, " tokens");
      detail::optional_device(op, "window_seg", window_seg, Shape{B, Lk});
    }
  } else {
    require(window_seg.data == nullptr, op,
            ": window_seg is given without seg (segments must be used on every call or on none)");
  }
  detail::require_device(op, "y", y);
  check_shape(op, "y", y.shape, Shape{B, L, H * dv});
  if (B == 0 || H == 0) return;
  require(dk >= 1 && dv >= 1, op, ": head dims must be positive, got dk=", dk, ", dv=", dv);
  require(Lk + L <= INT_MAX - Tile::kKeys && dk <= 65536 && dv <= INT_MAX - Tile::kValueCols, op,
          ": sizes beyond the kernel's 32-bit indexing (Lk + L = ", Lk + L, ", dk = ", dk,
          ", dv = ", dv, ")");

  const std::int64_t query_tiles = (L + Tile::kQueries - 1) / Tile::kQueries;
  const std::int64_t value_tiles = (dv + Tile::kValueCols - 1) / Tile::kValueCols;
  require(query_tiles * B * H <= INT_MAX, op, ": ", query_tiles * B * H,
          " (query tile, batch row, head) triples exceed the grid limit 2^31 - 1");
  require(value_tiles <= 65535, op, ": ", value_tiles, " value tiles exceed the grid limit 65535");

  const int dkp = detail::round_up(int(dk), 16);
  const std::size_t smem_stats = detail::sca_smem<T>(dkp, false).bytes;
  const std::size_t smem_values = detail::sca_smem<T>(dkp, true).bytes;
  detail::allow_dynamic_smem(detail::sca_kernel<T, false>, smem_stats, op, "a key head dim dk");
  detail::allow_dynamic_smem(detail::sca_kernel<T, true>, smem_values, op, "a key head dim dk");

  constexpr int V = detail::kVectorWidth<T>;
  detail::StreamScratch lse(std::size_t(B * H * L), stream, op);
  detail::ScaParams<T> params{};
  params.q = q.data;
  params.k = k.data;
  params.v = v.data;
  params.window_key = window.key.data;
  params.window_value = window.value.data;
  params.seg = segmented ? seg.data : nullptr;
  params.window_seg = segmented && Lk > 0 ? window_seg.data : nullptr;
  params.y = y.data;
  params.lse = lse.data();
  params.H = int(H);
  params.L = int(L);
  params.Lk = int(Lk);
  params.dk = int(dk);
  params.dv = int(dv);
  params.query_tiles = int(query_tiles);
  params.start = start;
  params.chunk = chunk;
  params.sliding = pattern == cpu::AttentionPattern::SlidingChunks;
  params.vec_k = dk % V == 0 && detail::aligned16(q.data) && detail::aligned16(k.data) &&
                 (Lk == 0 || detail::aligned16(window.key.data));
  params.vec_v = dv % V == 0 && detail::aligned16(v.data) &&
                 (Lk == 0 || detail::aligned16(window.value.data));

  const unsigned blocks = unsigned(query_tiles * B * H);
  detail::sca_kernel<T, false><<<dim3(blocks, 1), Tile::kThreads, smem_stats, stream>>>(params);
  check_launch("cuda::sliding_chunk_attention: sca_kernel (log-sum-exp pass)");
  detail::sca_kernel<T, true>
      <<<dim3(blocks, unsigned(value_tiles)), Tile::kThreads, smem_values, stream>>>(params);
  check_launch("cuda::sliding_chunk_attention: sca_kernel (output pass)");
}

template <class T>
void sliding_chunk_attention(TensorView<const T> q, TensorView<const T> k, TensorView<const T> v,
                             const AttentionWindow<T>& window, TensorView<const std::int64_t> seg,
                             TensorView<const std::int64_t> window_seg, std::int64_t chunk,
                             std::int64_t start, cpu::AttentionPattern pattern, TensorView<T> y,
                             const CudaExecutor& exec) {
  sliding_chunk_attention<T>(q, k, v, window, seg, window_seg, chunk, start, pattern, y,
                             exec.stream());
}

}  // namespace gecko::cuda
