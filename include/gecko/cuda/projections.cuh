#pragma once
// The small per-token maps around the model's GEMMs on the GPU:
//   * embedding (spec §4.3): y[b, t] = table[token[b, t]] · scale (scale = √D with scale_emb);
//   * rope_table (spec §9): (cos, sin) of fl32(fl32(t) · f_j) for the positions of a call, the
//     table every layer's RoPE shares, the device twin of cpu::rope_table (positions given, so
//     that block-diagonal attention's chunk-local t mod C comes from the same policy function);
//   * z_projections (spec §8-9): from z = m·W_zᵀ + b_z, per token and head, the RMS
//     normalisation ẑ = z / sqrt(mean(z²) + eps) (no affine), the affine rows
//     u_j = ẑ·Γ_j + β_j with Γ_j = (1 + gamma_j)/√dk (q, k, aq, ak), and RoPE on q and k of the
//     first rope_heads heads: one kernel instead of a norm, four affine maps and two rotations.
// Tensors hold T in {float, bfloat16, float16}; the arithmetic is float and every stored value
// is rounded to T once where the reference rounds it (ẑ, each u_j, the rotated q and k). The
// RoPE table and the rows Γ, β are float32 whatever T (spec §4.3: the table is fp32).
//
// Algorithm of z_projections: one warp per (token, head); the lanes sum the squares of the head's
// dk channels (warp shuffle), then each lane takes channel pairs (2p, 2p + 1), the pairs RoPE
// rotates, and writes every row's pair. Bound: HBM bandwidth, bytes = read z once + write R·S
// per token (the second read of z for the outputs hits L1). One warp per (token, head) is a first
// choice, not yet measured on a GPU (it leaves lanes idle for dk < 64).

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "gecko/core/error.hpp"
#include "gecko/core/shape.hpp"
#include "gecko/core/tensor.hpp"
#include "gecko/cuda/check.cuh"
#include "gecko/cuda/group_norm.cuh"  // device-view checks
#include "gecko/cuda/mma.cuh"         // warp_sum

namespace gecko::cuda {

namespace detail {

inline constexpr int kProjectionThreads = 256;  // 8 warps, one (token, head) each
inline constexpr int kMapThreads = 256;         // grid-stride maps (embedding, RoPE table)
inline constexpr std::int64_t kMapMaxBlocks = 4096;

inline unsigned map_blocks(std::int64_t n) {
  const std::int64_t blocks = (n + kMapThreads - 1) / kMapThreads;
  return unsigned(blocks < kMapMaxBlocks ? blocks : kMapMaxBlocks);
}

template <class T>
__global__ void embedding_kernel(const std::int64_t* __restrict__ tokens, const T* __restrict__ table,
                                 T* __restrict__ y, std::int64_t n, std::int64_t D, float scale,
                                 bool scaled) {
  const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const T v = table[tokens[i / D] * D + i % D];
    y[i] = scaled ? T(float(v) * scale) : v;
  }
}

// A template (of the frequencies' type, float) so that including this header from several
// translation units of one program defines no kernel twice.
template <class F>
__global__ void rope_table_kernel(const F* __restrict__ freqs, const std::int64_t* __restrict__ positions,
                                  std::int64_t n, int half, F* __restrict__ table) {
  const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const F angle = F(positions[i / half]) * freqs[i % half];  // fl32(fl32(t) · f_j)
    F s, c;
    sincosf(angle, &s, &c);
    table[2 * i] = c;
    table[2 * i + 1] = s;
  }
}

// The outputs of z_projection_kernel: row r goes to rows[r] (B, L, S); rows 0 and 1 (q, k) are
// the ones RoPE rotates.
template <class T>
struct ZRowOutputs {
  T* rows[4];
};

// Grid: ⌈tokens·H / 8⌉ blocks of 8 warps.
template <class T>
__global__ void __launch_bounds__(kProjectionThreads)
z_projection_kernel(const T* __restrict__ z, const float* __restrict__ scale,
                    const float* __restrict__ shift, const float* __restrict__ rope,
                    ZRowOutputs<T> out, int rows, std::int64_t tokens, std::int64_t L, int H,
                    int dk, int rope_heads, float eps) {
  const std::int64_t unit = (std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  if (unit >= tokens * H) return;  // whole warps: unit is the same for all 32 lanes
  const int lane = int(threadIdx.x % 32);
  const std::int64_t token = unit / H, t = token % L;  // t: the token's row of the RoPE table
  const int h = int(unit % H);
  const std::int64_t S = std::int64_t(H) * dk, base = token * S + std::int64_t(h) * dk;
  const T* zr = z + base;

  float squares = 0.f;
  for (int s = lane; s < dk; s += 32) {
    const float v = float(zr[s]);
    squares += v * v;
  }
  const float rho = 1.f / sqrtf(warp_sum(squares) / float(dk) + eps);

  const bool rotate = rope != nullptr && h < rope_heads;
  const int pairs = (dk + 1) / 2;
  for (int p = lane; p < pairs; p += 32) {
    const int s0 = 2 * p, s1 = 2 * p + 1;
    const bool both = s1 < dk;  // an odd dk (no RoPE then) leaves a last single channel
    const float z0 = float(T(float(zr[s0]) * rho));  // ẑ, stored in T by the reference
    const float z1 = both ? float(T(float(zr[s1]) * rho)) : 0.f;
    float c = 1.f, sn = 0.f;
    if (rotate) {
      c = rope[(t * (dk / 2) + p) * 2];
      sn = rope[(t * (dk / 2) + p) * 2 + 1];
    }
    for (int r = 0; r < rows; ++r) {
      const float* g = scale + std::int64_t(r) * S + std::int64_t(h) * dk;
      const float* b = shift + std::int64_t(r) * S + std::int64_t(h) * dk;
      float u0 = float(T(z0 * g[s0] + b[s0]));
      float u1 = both ? float(T(z1 * g[s1] + b[s1])) : 0.f;
      if (rotate && r < 2) {  // (u0 + i·u1)(c + i·s)
        const float re = u0, im = u1;
        u0 = re * c - im * sn;
        u1 = re * sn + im * c;
      }
      T* o = out.rows[r] + base;
      o[s0] = T(u0);
      if (both) o[s1] = T(u1);
    }
  }
}

}  // namespace detail

// tokens (B, L) int64 in [0, V) (the caller checks the range); table (V, D); y (B, L, D).
// scale_by_sqrt_d: multiply by √D (scale_emb).
template <class T>
void embedding(TensorView<const std::int64_t> tokens, TensorView<const T> table, bool scale_by_sqrt_d,
               TensorView<T> y, cudaStream_t stream) {
  constexpr const char* op = "cuda::embedding";
  detail::require_device(op, "tokens", tokens);
  require(tokens.rank() == 2, op, ": tokens must have shape (B, L), got ", tokens.shape.str());
  detail::require_device(op, "table", table);
  require(table.rank() == 2, op, ": table must have shape (V, D), got ", table.shape.str());
  const std::int64_t D = table.shape[1];
  detail::require_device(op, "y", y);
  check_shape(op, "y", y.shape, Shape{tokens.shape[0], tokens.shape[1], D});
  const std::int64_t n = y.numel();
  if (n == 0) return;
  const float scale = float(std::sqrt(double(D)));
  detail::embedding_kernel<T><<<detail::map_blocks(n), detail::kMapThreads, 0, stream>>>(
      tokens.data, table.data, y.data, n, D, scale, scale_by_sqrt_d);
  check_launch("cuda::embedding: embedding_kernel");
}

// freqs (dk/2) float32 inverse frequencies; positions (P) int64, non-negative (the caller
// checks: the absolute stream positions, or the chunk-local t mod C of block-diagonal
// attention, as the policy's rope_position gives them); table (P, dk/2, 2) float32.
inline void rope_table(TensorView<const float> freqs, TensorView<const std::int64_t> positions,
                       TensorView<float> table, cudaStream_t stream) {
  constexpr const char* op = "cuda::rope_table";
  detail::require_device(op, "freqs", freqs);
  require(freqs.rank() == 1, op, ": freqs must have shape (dk/2), got ", freqs.shape.str());
  detail::require_device(op, "positions", positions);
  require(positions.rank() == 1, op, ": positions must have shape (P), got ", positions.shape.str());
  const std::int64_t half = freqs.shape[0];
  detail::require_device(op, "table", table);
  check_shape(op, "table", table.shape, Shape{positions.shape[0], half, 2});
  require(half <= 0x7fffffff, op, ": dk/2 = ", half, " beyond 32-bit indexing");
  const std::int64_t n = positions.shape[0] * half;
  if (n == 0) return;
  detail::rope_table_kernel<float><<<detail::map_blocks(n), detail::kMapThreads, 0, stream>>>(
      freqs.data, positions.data, n, int(half), table.data);
  check_launch("cuda::rope_table: rope_table_kernel");
}

// The rows of the shared z projection (spec §8): scale Γ and shift β, float32 (R, S), R = 2
// (q, k) or 4 (q, k, aq, ak).
struct ZRows {
  TensorView<const float> scale, shift;
};

// z (B, L, S) = m·W_zᵀ + b_z; heads H (dk = S/H); rope (L, dk/2, 2) float32 table of the call's
// positions, or a default view for no RoPE; rope_heads: heads 0 … rope_heads − 1 are rotated.
// Writes q, k (B, L, H, dk) and, with R = 4, aq, ak (B, L, S) (default views with R = 2).
// Outputs must not overlap z.
template <class T>
void z_projections(TensorView<const T> z, const ZRows& rows, int heads, double eps,
                   TensorView<const float> rope, int rope_heads, TensorView<T> q, TensorView<T> k,
                   TensorView<T> aq, TensorView<T> ak, cudaStream_t stream) {
  constexpr const char* op = "cuda::z_projections";
  detail::require_device(op, "z", z);
  require(z.rank() == 3, op, ": z must have shape (B, L, S), got ", z.shape.str());
  const std::int64_t B = z.shape[0], L = z.shape[1], S = z.shape[2];
  require(heads > 0 && S % heads == 0, op, ": S = ", S, " is not a multiple of heads = ", heads);
  const std::int64_t dk = S / heads;
  detail::require_device(op, "rows.scale", rows.scale);
  require(rows.scale.rank() == 2 && (rows.scale.shape[0] == 2 || rows.scale.shape[0] == 4), op,
          ": rows.scale must have shape (2 or 4, S), got ", rows.scale.shape.str());
  const int R = int(rows.scale.shape[0]);
  check_shape(op, "rows.scale", rows.scale.shape, Shape{R, S});
  detail::require_device(op, "rows.shift", rows.shift);
  check_shape(op, "rows.shift", rows.shift.shape, Shape{R, S});
  const bool has_rope = detail::optional_device(op, "rope", rope, Shape{L, dk / 2, 2});
  require(rope_heads >= 0 && rope_heads <= heads, op, ": rope_heads must lie in [0, ", heads,
          "], got ", rope_heads);
  require(!has_rope || dk % 2 == 0, op, ": RoPE rotates pairs: the head dim ", dk, " must be even");
  require(eps >= 0, op, ": eps must be non-negative, got ", eps);
  const Shape head_shape{B, L, heads, dk};
  detail::require_device(op, "q", q);
  check_shape(op, "q", q.shape, head_shape);
  detail::require_device(op, "k", k);
  check_shape(op, "k", k.shape, head_shape);
  detail::ZRowOutputs<T> out{{q.data, k.data, nullptr, nullptr}};
  if (R == 4) {
    detail::require_device(op, "aq", aq);
    check_shape(op, "aq", aq.shape, z.shape);
    detail::require_device(op, "ak", ak);
    check_shape(op, "ak", ak.shape, z.shape);
    out.rows[2] = aq.data;
    out.rows[3] = ak.data;
  } else {
    require(aq.data == nullptr && ak.data == nullptr, op, ": aq and ak need the rows 2 and 3 (R = 4)");
  }
  require(dk <= 0x7fffffff, op, ": head dim ", dk, " beyond 32-bit indexing");

  const std::int64_t tokens = B * L, warps = tokens * heads;
  if (warps == 0) return;
  constexpr int per_block = detail::kProjectionThreads / 32;
  const std::int64_t blocks = (warps + per_block - 1) / per_block;
  require(blocks <= 0x7fffffff, op, ": ", warps, " (token, head) pairs exceed the grid limit");
  detail::z_projection_kernel<T><<<unsigned(blocks), detail::kProjectionThreads, 0, stream>>>(
      z.data, rows.scale.data, rows.shift.data, has_rope ? rope.data : nullptr, out, R, tokens, L,
      heads, int(dk), rope_heads, float(eps));
  check_launch("cuda::z_projections: z_projection_kernel");
}

}  // namespace gecko::cuda
