#pragma once
// Adaptive working memory on the GPU (spec §11), the device twin of cpu::working_memory with the
// same meaning and call rules: per batch row and head a memory M (dk × dv) with a log normaliser
// Λ (dk); a token of chunk c reads φᵀ M^(c−2); every completed chunk is absorbed with the delta
// rule (R = V − ψ M, U = Ω R, Λ' = logaddexp(Λ, ℓ), M += diag(ρ)(U − M)). Both schedules are here:
// chunked (training / prefill, §11.3: read chunk c, then absorb the chunk before it) and tail /
// step (§11.4: read the new tokens, then absorb the window's first chunk when it holds 2C).
// Segments as on the CPU: admission by the chunk's last document, resets, masked reads.
// aq, ak, v, the window and the outputs hold T in {float, bfloat16, float16}. The memory M and
// Λ are float32 in the state whatever T (the reference keeps M in T and rounds it after every
// absorption; float32 costs twice the bytes, 8 MiB per layer and sequence at the 7B shape,
// and keeps the rounding to the outputs). Every computation is float32; outputs round to T once.
//
// Algorithm: the columns of M are independent (R, U and the update of a column of M read only
// that column), so one CTA owns a (b, h, 64-column tile) and keeps its dk × 64 slice of M in
// shared memory, float32, for the whole call, walking the chunks in order:
//   * read: per tile of 32 tokens, φ = softmax(aq) into shared memory, o = φ M on the tensor
//     cores, rows of another document zeroed, rounded stores;
//   * absorb: ℓ per feature (online log-sum-exp over the chunk's admitted tokens, each warp
//     taking every eighth token, the warps' partials merged per feature), ρ and Λ; then per
//     tile of 32 tokens ψ and ωᵀ, R = V − ψ M (accumulator seeded with V), U += Ω R with U
//     (dk × 64) in register fragments across the whole chunk; finally M += diag(ρ)(U − M)
//     through a per-warp staging tile.
// Reads of chunk c use M before chunk c − 1 is absorbed, as the CPU op does. Every product uses
// 3xTF32 (mma.cuh) whatever T: the operands φ, ψ, ω, R and M are float, and rounding them to
// 16 bits measured up to 2.4× the CPU path's output error in a CPU simulation of these numerics.
// Λ is written to a scratch buffer and copied back after the kernel (every CTA of a head reads
// the incoming Λ).
//
// Bound: tensor-core FLOP/s, counted as 2·MACs of the defining algorithm: 3·C·dk·dv MACs per
// absorbed-and-read chunk (read, residual, update) per (b, h). 3xTF32 issues three TF32 products
// per MAC at half the 16-bit rate, so the ceiling is 1/6 of the 16-bit tensor peak; the softmaxes
// are recomputed by each of the ⌈dv/64⌉ column CTAs of a head (3·C·dk exponentials each), which
// at dv = 2048 costs about as much issue time as the products. Precomputing φ, ψ, ω once per head
// and a single TF32 product for bfloat16 outputs are the first things to measure. Tile sizes are
// first guesses, not yet measured on a GPU.

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <string_view>

#include "gecko/core/error.hpp"
#include "gecko/core/shape.hpp"
#include "gecko/core/tensor.hpp"
#include "gecko/cpu/working_memory_call.hpp"
#include "gecko/cuda/check.cuh"
#include "gecko/cuda/executor.cuh"
#include "gecko/cuda/group_norm.cuh"
#include "gecko/cuda/mma.cuh"

namespace gecko::cuda {

// Streaming state of one layer's working memory, in device memory.
template <class T>
struct WorkingMemoryState {
  TensorView<const T> key;     // (B, H, Lk, dk) raw ak of the cached window; null = no window
  TensorView<float> memory;    // (B, H, dk, dv) M, updated in place
  TensorView<float> log_norm;  // (B, H, dk) Λ, updated in place (-inf while nothing absorbed)
  bool present = false;        // whether memory/log_norm hold a memory (false: fresh stream)
};

// Document ids (§4.2) in device memory; all default (null) = no segments.
struct WorkingMemorySegments {
  TensorView<const std::int64_t> seg;         // (B, L) ids of the call's tokens
  TensorView<const std::int64_t> window_seg;  // (B, Lk) ids of the cached window
  TensorView<const std::int64_t> mem_seg;     // (B) document of the memory
};

namespace detail {

struct AwmTile {
  static constexpr int kWarps = 8;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kCols = 64;     // memory columns per CTA
  static constexpr int kTokens = 32;   // tokens per read / absorb tile
  static constexpr int kMaxDk = 256;   // bounds the per-lane feature registers and U fragments
  static constexpr int kColBlocks = kCols / 16;
  static constexpr int kRowBlocks = kMaxDk / 16 / kWarps;  // U row blocks per warp
  static_assert(kTokens / 16 * kColBlocks == kWarps,
                "the read and residual products give every warp one 16 × 16 fragment");
  static_assert(kMaxDk % (16 * kWarps) == 0 && kMaxDk % 32 == 0,
                "U row blocks spread evenly over the warps; a feature row spreads over the lanes");
  static_assert(kWarps <= kTokens, "the per-warp partials of ℓ fit in a token tile");
};

struct AwmSmem {
  int ldm, lda, ldr;
  std::size_t mem, a, w, r, scratch, ell, rho, lam, bytes;
};

__host__ __device__ inline AwmSmem awm_smem(int dkp) {
  using Tile = AwmTile;
  AwmSmem m{};
  m.ldm = Tile::kCols + 4;
  m.lda = dkp + 4;
  m.ldr = Tile::kCols + 4;
  SmemArena arena;
  m.mem = arena.take<float>(std::size_t(dkp) * m.ldm);             // M slice (dk × 64)
  m.a = arena.take<float>(std::size_t(Tile::kTokens) * m.lda);     // φ rows, or −ψ rows
  m.w = arena.take<float>(std::size_t(Tile::kTokens) * m.lda);     // ωᵀ rows (token × feature)
  m.r = arena.take<float>(std::size_t(Tile::kTokens) * m.ldr);     // V, then R
  m.scratch = arena.take<float>(std::size_t(Tile::kWarps) * 256);  // one 16 × 16 tile per warp
  m.ell = arena.take<float>(dkp);
  m.rho = arena.take<float>(dkp);
  m.lam = arena.take<float>(dkp);
  m.bytes = arena.bytes;
  return m;
}

template <class T>
struct AwmParams {
  const T* aq;            // (B, L, H·dk)
  const T* ak;            // (B, L, H·dk)
  const T* v;             // (B, L, H·dv)
  const T* window_key;    // (B, H, Lk, dk)
  const T* window_value;  // (B, Lk, H, dv)
  const std::int64_t* seg;         // (B, L) or null
  const std::int64_t* window_seg;  // (B, Lk)
  const std::int64_t* mem_seg;     // (B)
  float* memory;          // (B, H, dk, dv)
  const float* log_norm;  // (B, H, dk) incoming Λ
  float* log_norm_out;    // (B·H, dk) outgoing Λ (scratch)
  T* out;                 // (B, L, H·dv)
  T* new_key;             // (B, H, new_window, dk) or null
  int H, L, Lk, dk, dv, chunk, new_window;
  bool chunked, present;
};

// log(e^a + e^b); exact when a side is -inf (the normaliser of an empty memory).
__device__ __forceinline__ float logaddexp(float a, float b) {
  const float hi = fmaxf(a, b), lo = fminf(a, b);
  if (hi == -INFINITY) return hi;
  return hi + log1pf(expf(lo - hi));
}

// Online log-sum-exp of single terms, one exponential each: (m, s) stands for s·e^m and takes
// in e^x (x = −inf adds nothing; (−inf, 0) is empty).
__device__ __forceinline__ void lse_add(float& m, float& s, float x) {
  if (x == -INFINITY) return;
  const float e = expf(-fabsf(x - m));  // e^(min − max); 0 while empty
  if (x > m) {
    s = s * e + 1.f;
    m = x;
  } else {
    s += e;
  }
}

// One CTA: batch row b, head h, memory columns [col0, col0 + 64).
template <class T>
struct AwmBlock {
  using Tile = AwmTile;
  using Mma = detail::Mma<float>;
  static constexpr int kThreads = Tile::kThreads, DV = Tile::kCols, TC = Tile::kTokens;
  static constexpr int kPerLane = Tile::kMaxDk / 32;

  const AwmParams<T>& p;
  AwmSmem lay;
  float *mem, *a, *w, *r, *scratch, *ell, *rho, *lam;
  int b, h, bh, col0, cols, dkp, warp, lane;
  bool segmented;

  __device__ AwmBlock(const AwmParams<T>& params, unsigned char* smem) : p(params) {
    dkp = round_up(p.dk, 16);
    lay = awm_smem(dkp);
    mem = reinterpret_cast<float*>(smem + lay.mem);
    a = reinterpret_cast<float*>(smem + lay.a);
    w = reinterpret_cast<float*>(smem + lay.w);
    r = reinterpret_cast<float*>(smem + lay.r);
    scratch = reinterpret_cast<float*>(smem + lay.scratch);
    ell = reinterpret_cast<float*>(smem + lay.ell);
    rho = reinterpret_cast<float*>(smem + lay.rho);
    lam = reinterpret_cast<float*>(smem + lay.lam);
    bh = int(blockIdx.x);
    b = bh / p.H;
    h = bh % p.H;
    col0 = int(blockIdx.y) * DV;
    cols = min(DV, p.dv - col0);
    warp = int(threadIdx.x) / 32;
    lane = int(threadIdx.x) % 32;
    segmented = p.seg != nullptr;
  }

  // Token x of window ++ call.
  __device__ const T* key_row(int x) const {
    if (x < p.Lk) return p.window_key + ((std::int64_t(bh) * p.Lk) + x) * p.dk;
    return p.ak + ((std::int64_t(b) * p.L + (x - p.Lk)) * p.H + h) * p.dk;
  }
  __device__ const T* value_row(int x) const {  // from column col0 on
    if (x < p.Lk) return p.window_value + ((std::int64_t(b) * p.Lk + x) * p.H + h) * p.dv + col0;
    return p.v + ((std::int64_t(b) * p.L + (x - p.Lk)) * p.H + h) * p.dv + col0;
  }
  __device__ std::int64_t segment(int x) const {
    return x < p.Lk ? p.window_seg[std::int64_t(b) * p.Lk + x]
                    : p.seg[std::int64_t(b) * p.L + (x - p.Lk)];
  }
  __device__ T* out_row(int i) const {  // call token i, from column col0 on
    return p.out + (std::int64_t(b) * p.L + i) * std::int64_t(p.H) * p.dv + std::int64_t(h) * p.dv + col0;
  }

  // A feature row of dk values into the lane's registers (−inf past dk).
  __device__ void load_features(const T* src, float (&x)[kPerLane]) const {
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      const int s = lane + 32 * j;
      x[j] = s < p.dk ? float(src[s]) : -INFINITY;
    }
  }

  // sign · softmax(x) over the features into dst (dkp floats, zero past dk); warp-wide.
  __device__ void softmax_row(const float (&x)[kPerLane], float sign, float* dst) const {
    float m = -INFINITY;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) m = fmaxf(m, x[j]);
    m = warp_max(m);
    float e[kPerLane], sum = 0.f;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      e[j] = lane + 32 * j < p.dk ? expf(x[j] - m) : 0.f;
      sum += e[j];
    }
    const float scale = sign / warp_sum(sum);
#pragma unroll
    for (int j = 0; j < kPerLane; ++j)
      if (lane + 32 * j < dkp) dst[lane + 32 * j] = e[j] * scale;
  }

  __device__ void zero_row(float* dst, int n) const {
    for (int s = lane; s < n; s += 32) dst[s] = 0.f;
  }

  // Call rows [i0, i0 + n) read nothing (no memory yet).
  __device__ void zero_outputs(int i0, int n) const {
    for (int e = int(threadIdx.x); e < n * cols; e += kThreads) out_row(i0 + e / cols)[e % cols] = T(0.f);
  }

  // o = φᵀ M for call rows [i0, i0 + n), zero where the token's document is not `doc`.
  __device__ void read(int i0, int n, bool has_doc, std::int64_t doc) {
    for (int t0 = 0; t0 < n; t0 += TC) {
      const int rows = min(TC, n - t0);
      for (int k = warp; k < TC; k += Tile::kWarps) {
        if (k < rows) {
          float x[kPerLane];
          load_features(p.aq + ((std::int64_t(b) * p.L + i0 + t0 + k) * p.H + h) * p.dk, x);
          softmax_row(x, 1.f, a + k * lay.lda);
        } else {
          zero_row(a + k * lay.lda, dkp);
        }
      }
      __syncthreads();
      const int rb = warp / Tile::kColBlocks, cb = warp % Tile::kColBlocks;
      Mma::Acc acc;
      wmma::fill_fragment(acc, 0.f);
      for (int k0 = 0; k0 < dkp; k0 += Mma::kK) {
        Mma::OperandA<wmma::row_major> phi;
        Mma::OperandB<wmma::row_major> m;
        Mma::load(phi, a + 16 * rb * lay.lda + k0, lay.lda);
        Mma::load(m, mem + k0 * lay.ldm + 16 * cb, lay.ldm);
        Mma::mma(acc, phi, m);
      }
      float* tile = scratch + warp * 256;
      wmma::store_matrix_sync(tile, acc, 16, wmma::mem_row_major);
      __syncwarp();
      for (int e = lane; e < 256; e += 32) {
        const int k = 16 * rb + e / 16, c = 16 * cb + e % 16;
        if (k < rows && c < cols) {
          const int i = i0 + t0 + k;
          const bool other = has_doc && p.seg[std::int64_t(b) * p.L + i] != doc;
          out_row(i)[c] = T(other ? 0.f : tile[e]);
        }
      }
      __syncthreads();  // a and the staging tiles are refilled next
    }
  }

  // Absorbs tokens [x0, x0 + C) of window ++ call; updates the memory's document.
  __device__ void absorb(int x0, bool& has_doc, std::int64_t& doc) {
    const int C = p.chunk;
    const std::int64_t chunk_doc = segmented ? segment(x0 + C - 1) : 0;
    const bool reset = has_doc && chunk_doc != doc;  // the document changed: start over
    if (reset)
      for (int e = int(threadIdx.x); e < dkp * DV; e += kThreads) mem[(e / DV) * lay.ldm + e % DV] = 0.f;

    // ℓ[s] = log Σ_{admitted t} exp(κ_t[s]): warp w folds tokens w, w + 8, … into per-lane
    // partial sums (coalesced key rows, eight independent features per lane), which meet in the
    // a (maxima) and w (sums) tiles, free until the token loop below.
    {
      float pm[kPerLane], ps[kPerLane];
#pragma unroll
      for (int j = 0; j < kPerLane; ++j) pm[j] = -INFINITY, ps[j] = 0.f;
      for (int t = warp; t < C; t += Tile::kWarps) {
        if (segmented && segment(x0 + t) != chunk_doc) continue;  // warp-uniform
        float kappa[kPerLane];
        load_features(key_row(x0 + t), kappa);
#pragma unroll
        for (int j = 0; j < kPerLane; ++j) lse_add(pm[j], ps[j], kappa[j]);
      }
#pragma unroll
      for (int j = 0; j < kPerLane; ++j) {
        const int s = lane + 32 * j;
        if (s < dkp) a[warp * lay.lda + s] = pm[j], w[warp * lay.lda + s] = ps[j];
      }
    }
    __syncthreads();

    // Λ' = logaddexp(Λ, ℓ);  ρ = exp(ℓ − Λ')
    for (int s = int(threadIdx.x); s < dkp; s += kThreads) {
      if (s < p.dk) {
        float m = -INFINITY, sum = 0.f;
        for (int i = 0; i < Tile::kWarps; ++i) lse_merge(m, sum, a[i * lay.lda + s], w[i * lay.lda + s]);
        const float l = m + logf(sum);  // the chunk's last token is admitted: sum ≥ 1
        const float total = logaddexp(reset ? -INFINITY : lam[s], l);
        ell[s] = l;
        rho[s] = expf(l - total);
        lam[s] = total;
      } else {
        ell[s] = 0.f;
        rho[s] = 0.f;  // padded features stay zero
      }
    }
    __syncthreads();

    Mma::Acc u[Tile::kRowBlocks][Tile::kColBlocks];  // U rows 16·(warp + kWarps·i)
#pragma unroll
    for (int i = 0; i < Tile::kRowBlocks; ++i)
#pragma unroll
      for (int cb = 0; cb < Tile::kColBlocks; ++cb) wmma::fill_fragment(u[i][cb], 0.f);

    for (int t0 = 0; t0 < C; t0 += TC) {
      const int rows = min(TC, C - t0);
      for (int k = warp; k < TC; k += Tile::kWarps) {
        float* arow = a + k * lay.lda;
        float* wrow = w + k * lay.lda;
        float* rrow = r + k * lay.ldr;
        if (k < rows) {
          const int x = x0 + t0 + k;
          const bool admitted = !segmented || segment(x) == chunk_doc;
          float kappa[kPerLane];
          load_features(key_row(x), kappa);
#pragma unroll
          for (int j = 0; j < kPerLane; ++j) {
            const int s = lane + 32 * j;
            if (s < dkp) wrow[s] = admitted && s < p.dk ? expf(kappa[j] - ell[s]) : 0.f;  // ω[s, t]
          }
          softmax_row(kappa, -1.f, arow);  // −ψ_t
          const T* vrow = value_row(x);
          for (int c = lane; c < DV; c += 32) rrow[c] = c < cols ? float(vrow[c]) : 0.f;
        } else {
          zero_row(arow, dkp);
          zero_row(wrow, dkp);
          zero_row(rrow, DV);
        }
      }
      __syncthreads();

      {  // R = V − ψ M, in place over V
        const int rb = warp / Tile::kColBlocks, cb = warp % Tile::kColBlocks;
        float* tile = r + 16 * rb * lay.ldr + 16 * cb;
        Mma::Acc acc;
        wmma::load_matrix_sync(acc, tile, lay.ldr, wmma::mem_row_major);
        for (int k0 = 0; k0 < dkp; k0 += Mma::kK) {
          Mma::OperandA<wmma::row_major> psi;
          Mma::OperandB<wmma::row_major> m;
          Mma::load(psi, a + 16 * rb * lay.lda + k0, lay.lda);
          Mma::load(m, mem + k0 * lay.ldm + 16 * cb, lay.ldm);
          Mma::mma(acc, psi, m);
        }
        wmma::store_matrix_sync(tile, acc, lay.ldr, wmma::mem_row_major);
      }
      __syncthreads();

      if (16 * warp < dkp) {  // U += Ω R, Ω (dk × tokens) read column-major from ωᵀ
        for (int k0 = 0; k0 < TC; k0 += Mma::kK) {
          Mma::OperandB<wmma::row_major> res[Tile::kColBlocks];
#pragma unroll
          for (int cb = 0; cb < Tile::kColBlocks; ++cb) Mma::load(res[cb], r + k0 * lay.ldr + 16 * cb, lay.ldr);
#pragma unroll
          for (int i = 0; i < Tile::kRowBlocks; ++i) {
            const int rb = warp + Tile::kWarps * i;
            if (16 * rb < dkp) {
              Mma::OperandA<wmma::col_major> omega;
              Mma::load(omega, w + k0 * lay.lda + 16 * rb, lay.lda);
#pragma unroll
              for (int cb = 0; cb < Tile::kColBlocks; ++cb) Mma::mma(u[i][cb], omega, res[cb]);
            }
          }
        }
      }
      __syncthreads();  // a, w and r are refilled next
    }

    // M += diag(ρ)(U − M)
    float* tile = scratch + warp * 256;
#pragma unroll
    for (int i = 0; i < Tile::kRowBlocks; ++i) {
      const int rb = warp + Tile::kWarps * i;
      if (16 * rb >= dkp) continue;
#pragma unroll
      for (int cb = 0; cb < Tile::kColBlocks; ++cb) {
        wmma::store_matrix_sync(tile, u[i][cb], 16, wmma::mem_row_major);
        __syncwarp();
        for (int e = lane; e < 256; e += 32) {
          const int s = 16 * rb + e / 16;
          float& m = mem[s * lay.ldm + 16 * cb + e % 16];
          m += rho[s] * (tile[e] - m);
        }
        __syncwarp();
      }
    }
    __syncthreads();
    has_doc = segmented;
    doc = chunk_doc;
  }
};

// Grid (B·H, ⌈dv/64⌉).
template <class T>
__global__ void __launch_bounds__(AwmTile::kThreads) awm_kernel(const __grid_constant__ AwmParams<T> p) {
  extern __shared__ __align__(128) unsigned char smem[];
  AwmBlock<T> blk(p, smem);
  const int dk = p.dk, dv = p.dv, W = p.Lk + p.L, C = p.chunk;

  for (int e = int(threadIdx.x); e < blk.dkp * AwmTile::kCols; e += AwmTile::kThreads) {
    const int s = e / AwmTile::kCols, c = e % AwmTile::kCols;
    blk.mem[s * blk.lay.ldm + c] =
        p.present && s < dk && c < blk.cols ? p.memory[(std::int64_t(blk.bh) * dk + s) * dv + blk.col0 + c] : 0.f;
  }
  for (int s = int(threadIdx.x); s < blk.dkp; s += AwmTile::kThreads)
    blk.lam[s] = p.present && s < dk ? p.log_norm[std::int64_t(blk.bh) * dk + s] : -INFINITY;
  __syncthreads();

  bool have = p.present;
  bool has_doc = blk.segmented && p.present;
  std::int64_t doc = has_doc ? p.mem_seg[blk.b] : 0;
  if (p.chunked) {
    for (int c = 0; c < p.L / C; ++c) {
      if (!have) {  // fresh stream: chunk 0 reads nothing, and the empty memory starts here
        blk.zero_outputs(c * C, C);
        have = true;
        continue;
      }
      blk.read(c * C, C, has_doc, doc);
      blk.absorb(p.Lk + c * C - C, has_doc, doc);
    }
  } else {
    if (have)
      blk.read(0, p.L, has_doc, doc);
    else
      blk.zero_outputs(0, p.L);
    if (W % C == 0) {
      if (have)
        blk.absorb(0, has_doc, doc);
      else
        have = true;  // the window first holds a whole chunk: the empty memory starts here
    }
  }

  // The state changes only where the call creates the memory or absorbs a chunk: a read-only
  // step leaves it as it was, without writing M back (as many bytes as the step reads).
  if (have && (p.chunked || W % C == 0)) {
    for (int e = int(threadIdx.x); e < dk * blk.cols; e += AwmTile::kThreads) {
      const int s = e / blk.cols, c = e % blk.cols;
      p.memory[(std::int64_t(blk.bh) * dk + s) * dv + blk.col0 + c] = blk.mem[s * blk.lay.ldm + c];
    }
    if (blockIdx.y == 0)
      for (int s = int(threadIdx.x); s < dk; s += AwmTile::kThreads)
        p.log_norm_out[std::int64_t(blk.bh) * dk + s] = blk.lam[s];
  }
  if (blockIdx.y == 0 && p.new_key != nullptr) {
    const int first = W - p.new_window;
    for (int e = int(threadIdx.x); e < p.new_window * dk; e += AwmTile::kThreads)
      p.new_key[std::int64_t(blk.bh) * p.new_window * dk + e] = blk.key_row(first + e / dk)[e % dk];
  }
}

inline bool overlaps(const void* a, std::size_t a_bytes, const void* b, std::size_t b_bytes) {
  const auto pa = reinterpret_cast<std::uintptr_t>(a), pb = reinterpret_cast<std::uintptr_t>(b);
  return a_bytes > 0 && b_bytes > 0 && pa < pb + b_bytes && pb < pa + a_bytes;
}

}  // namespace detail

// aq, ak (B, L, H·dk); v (B, L, H·dv); window_value: the cached values in the attention window
// layout (B, Lk, H, dv), null without a window; state: see WorkingMemoryState (state.key holds
// Lk = window_value's tokens). Writes out (B, L, H·dv) and, when given, new_key
// (B, H, W', dk), the AWM key window after the call (prefill: the last C tokens, W' = C;
// tail/step: window ++ new, W' = Lk + L, uncut); new_key must not overlap state.key.
// Updates state.memory and state.log_norm in place where the call creates the memory or absorbs a
// chunk (a read-only step writes neither) and sets state.present; where the call
// creates the memory (a fresh stream reaching a chunk) both must be allocated (B, H, dk, dv) and
// (B, H, dk). Call rules as cpu::working_memory, checked by the same cpu::check_working_memory_call:
// L >= C needs L % C == 0 and either a fresh stream or a memory with a window of exactly C; L < C
// needs window ++ new <= C without memory and in (C, 2C] with one.
template <class T>
void working_memory(TensorView<const T> aq, TensorView<const T> ak, TensorView<const T> v,
                    TensorView<const T> window_value, WorkingMemoryState<T>& state,
                    const WorkingMemorySegments& segments, int heads, std::int64_t chunk,
                    TensorView<T> out, TensorView<T> new_key, cudaStream_t stream) {
  constexpr const char* op = "cuda::working_memory";
  using Tile = detail::AwmTile;
  // Every given tensor is contiguous device memory; a null one is absent.
  detail::require_device(op, "aq", aq);
  detail::require_device(op, "ak", ak);
  detail::require_device(op, "v", v);
  const auto given = [&](std::string_view name, const auto& view) -> const Shape* {
    if (view.data == nullptr) return nullptr;
    detail::require_device(op, name, view);
    return &view.shape;
  };
  const Shape* window_key = given("state.key", state.key);
  const Shape* window_values = given("window_value", window_value);
  const Shape* memory = given("state.memory", state.memory);
  const Shape* log_norm = given("state.log_norm", state.log_norm);
  const Shape* seg = given("segments.seg", segments.seg);
  const Shape* window_seg = given("segments.window_seg", segments.window_seg);
  const Shape* mem_seg = given("segments.mem_seg", segments.mem_seg);
  const cpu::WorkingMemoryCall call =
      cpu::check_working_memory_call(op, aq.shape, ak.shape, v.shape, window_key, window_values, state.present,
                                     memory, log_norm, seg, window_seg, mem_seg, heads, chunk);
  const std::int64_t B = call.B, L = call.L, H = call.H, dk = call.dk, dv = call.dv, C = call.C, Lk = call.Lk;
  const std::int64_t W = call.joined(), new_window = call.new_window();
  const bool has_window = call.has_window, has_memory = call.has_memory, segmented = call.segmented;
  const bool present_after = call.memory_after(), updates_state = call.updates_memory();

  // The kernel writes the memory in place: a call that creates it needs the buffers.
  if (!has_memory && present_after) {
    require(memory != nullptr, op, ": state.memory is absent (this call creates the memory)");
    require(log_norm != nullptr, op, ": state.log_norm is absent (this call creates the memory)");
  }
  detail::require_device(op, "out", out);
  check_shape(op, "out", out.shape, {B, L, H * dv});
  const bool write_key = new_key.data != nullptr;
  if (write_key) {
    detail::require_device(op, "new_key", new_key);
    check_shape(op, "new_key", new_key.shape, {B, H, new_window, dk});
    require(!has_window || !detail::overlaps(new_key.data, new_key.numel() * sizeof(T),
                                             state.key.data, state.key.numel() * sizeof(T)),
            op, ": new_key overlaps state.key");
  }
  require(dk <= Tile::kMaxDk, op, ": key head dim dk = ", dk, " outside [1, ", Tile::kMaxDk,
          "] (AwmTile::kMaxDk bounds the kernel's per-lane feature registers and its update fragments)");
  // The kernel counts in int: tokens of window ++ call, elements of a CTA's output or key-window
  // share (W·64, W·dk), columns, (b, h) pairs; global offsets are 64-bit.
  require(W * std::max<std::int64_t>(dk, Tile::kCols) <= INT_MAX && C <= INT_MAX &&
              dv <= INT_MAX - Tile::kCols && B * H <= INT_MAX,
          op, ": sizes beyond the kernel's 32-bit indexing");
  const std::int64_t col_tiles = (dv + Tile::kCols - 1) / Tile::kCols;
  require(col_tiles <= 65535, op, ": ", col_tiles, " column tiles exceed the grid limit 65535");

  if (B > 0) {
    const int dkp = detail::round_up(int(dk), 16);
    const std::size_t smem = detail::awm_smem(dkp).bytes;
    detail::allow_dynamic_smem(detail::awm_kernel<T>, smem, op, "a key head dim dk");
    detail::StreamScratch log_norm_out(updates_state ? std::size_t(B * H * dk) : 0, stream, op);

    detail::AwmParams<T> params{};
    params.aq = aq.data;
    params.ak = ak.data;
    params.v = v.data;
    params.window_key = state.key.data;
    params.window_value = window_value.data;
    params.seg = segmented ? segments.seg.data : nullptr;
    params.window_seg = segmented && has_window ? segments.window_seg.data : nullptr;
    params.mem_seg = segmented && has_memory ? segments.mem_seg.data : nullptr;
    params.memory = state.memory.data;
    params.log_norm = state.log_norm.data;
    params.log_norm_out = log_norm_out.data();
    params.out = out.data;
    params.new_key = write_key ? new_key.data : nullptr;
    params.H = int(H);
    params.L = int(L);
    params.Lk = int(Lk);
    params.dk = int(dk);
    params.dv = int(dv);
    params.chunk = int(C);
    params.new_window = int(new_window);
    params.chunked = call.chunked();
    params.present = has_memory;

    detail::awm_kernel<T>
        <<<dim3(unsigned(B * H), unsigned(col_tiles)), Tile::kThreads, smem, stream>>>(params);
    check_launch("cuda::working_memory: awm_kernel");
    if (updates_state)
      check(cudaMemcpyAsync(state.log_norm.data, log_norm_out.data(), std::size_t(B * H * dk) * sizeof(float),
                            cudaMemcpyDeviceToDevice, stream),
            "cuda::working_memory: copying the log normaliser");
  }
  state.present = present_after;
}

template <class T>
void working_memory(TensorView<const T> aq, TensorView<const T> ak, TensorView<const T> v,
                    TensorView<const T> window_value, WorkingMemoryState<T>& state,
                    const WorkingMemorySegments& segments, int heads, std::int64_t chunk,
                    TensorView<T> out, TensorView<T> new_key, const CudaExecutor& exec) {
  working_memory<T>(aq, ak, v, window_value, state, segments, heads, chunk, out, new_key,
                    exec.stream());
}

}  // namespace gecko::cuda
