#pragma once
// Timestep decay normalisation on the GPU (spec §5), the device twin of
// cpu::timestep_decay_norm: each token is normalised, per group of channels, by the decayed and
// bias-corrected running statistics of its stream, with bos resets and streaming state.
// x and y hold T in {float, bfloat16, float16}; moments, the scan and the affine map run in
// float, and the streaming state (count int64, mean and var float32) stays float32 whatever T.
//
// Algorithm: one thread block per (batch row, group) walks the sequence in tiles of 256 tokens.
//   1. Moments: teams of lanes (as many as the group has 16-byte packs, at most a warp) compute
//      each token's two-pass group mean and variance; four rounds of teams keep their loads in
//      flight together.
//   2. Scan: one token per thread, cub::BlockScan with cpu::TsnCombine (the associative combine
//      of cpu/timestep_norm_scan.hpp, the very code the CPU path folds with), and a prefix
//      callback that carries the running aggregate from tile to tile; the incoming state is the
//      first prefix. Bias correction 1 − βⁿ = −expm1(n·ln β) needs no running power.
//   3. Normalise: the same teams re-read the tile (now in L1/L2), apply ((x − m̂)·ρ)·(1 + w) + b
//      and store y rounded to T once.
// A second, tiny kernel then writes the new token counts (one warp per batch row finds the last
// bos), so the state may be updated in place although every group's block reads the count.
// Every kernel here is a template, so that several translation units may include the header.
// Bound: HBM bandwidth: bytes = read x once + write y once, provided a tile (256 tokens of D/G
// channels) stays in L1/L2 between steps 1 and 3. The grid has B·G blocks; below about two
// blocks per multiprocessor (B·G < ~264 on an H100) the op is latency-bound instead, and a
// time-split (chunked) scan over more blocks would be the next step.

#include <cuda_runtime.h>

#include <cub/block/block_scan.cuh>

#include <cmath>
#include <cstdint>

#include "gecko/core/error.hpp"
#include "gecko/core/shape.hpp"
#include "gecko/core/tensor.hpp"
#include "gecko/cpu/timestep_norm_scan.hpp"
#include "gecko/cuda/check.cuh"
#include "gecko/cuda/executor.cuh"
#include "gecko/cuda/group_norm.cuh"

namespace gecko::cuda {

// Streaming state in device memory, read as the incoming state and overwritten with the state
// after the call (cpu::TimestepNormState's meaning, float32 moments). A stream starts from the
// priors: for Gecko count 0, mean and var 0 (spec §5.1), which the caller writes.
struct TimestepNormState {
  TensorView<std::int64_t> count;  // (B) tokens since the last bos (plus the earlier count)
  TensorView<float> mean, var;     // (B, G) raw, un-normalised EMAs M and V
};

template <class T>
struct TimestepNormParams {
  TensorView<const T> weight, bias;  // (D) raw parameters; the scale is 1 + weight
  int groups = 1;
  double beta1 = 0.999, beta2 = 0.9999, eps = 1e-5;
};

namespace detail {

inline constexpr int kTsnThreads = 256;  // tokens per tile: one per thread in the scan
inline constexpr int kTsnRounds = 4;     // rounds of teams whose loads are issued together

struct TsnConstants {
  cpu::TsnDecay<float> decay;  // β and 1 − β, each rounded once from double, as on the CPU path
  float log_beta1, log_beta2, eps;
};

// 1 − βⁿ without cancellation, for n >= 1.
__device__ __forceinline__ float one_minus_power(float log_beta, std::int64_t n) {
  return -expm1f(float(n) * log_beta);
}

// cub's block prefix callback: hands out the aggregate of everything before the tile and folds
// the tile in. Called by the first warp; thread 0's copy ends as the state after the sequence.
struct TsnRunningPrefix {
  cpu::TsnAggregate<float> running;

  __device__ cpu::TsnAggregate<float> operator()(const cpu::TsnAggregate<float>& tile) {
    const cpu::TsnAggregate<float> before = running;
    running = cpu::TsnCombine<float>{}(running, tile);
    return before;
  }
};

// Grid (G, B). `team` lanes share a token (a power of two <= 32, ~ the packs per group).
template <class T, int V>
__global__ void __launch_bounds__(kTsnThreads)
timestep_decay_norm_kernel(const T* __restrict__ x, const bool* __restrict__ bos,
                           const std::int64_t* __restrict__ count, float* __restrict__ state_mean,
                           float* __restrict__ state_var, const T* __restrict__ weight,
                           const T* __restrict__ bias, T* __restrict__ y, std::int64_t L,
                           std::int64_t D, int team, TsnConstants k) {
  using Aggregate = cpu::TsnAggregate<float>;
  using BlockScan = cub::BlockScan<Aggregate, kTsnThreads>;
  __shared__ typename BlockScan::TempStorage scan_storage;
  __shared__ float2 stats[kTsnThreads];  // per token: (μ, s²), then (m̂, ρ)

  const int G = int(gridDim.x), g = int(blockIdx.x);
  const std::int64_t b = blockIdx.y;
  const std::int64_t n = D / G, packs = n / V, channel0 = std::int64_t(g) * n;
  const int teams = kTsnThreads / team;                 // tokens per round
  const int team_id = int(threadIdx.x) / team, lane = int(threadIdx.x) % team;
  const int rounds = team;                              // rounds per tile: teams·rounds = 256
  auto row = [&](std::int64_t t) { return (b * L + t) * D + channel0; };

  const std::int64_t n0 = count[b];
  TsnRunningPrefix prefix{{n0, expf(float(n0) * k.log_beta1), expf(float(n0) * k.log_beta2),
                           state_mean[b * G + g], state_var[b * G + g], false}};

  for (std::int64_t t0 = 0; t0 < L; t0 += kTsnThreads) {
    // 1. Per-token group moments, two-pass over the team's packs.
    for (int r0 = 0; r0 < rounds; r0 += kTsnRounds) {
      float sum[kTsnRounds], centred[kTsnRounds];
      bool active[kTsnRounds];
#pragma unroll
      for (int u = 0; u < kTsnRounds; ++u) {
        const std::int64_t t = t0 + team_id + std::int64_t(r0 + u) * teams;
        active[u] = r0 + u < rounds && t < L;
        sum[u] = 0;
        if (active[u]) {
          for (std::int64_t i = lane; i < packs; i += team) {
            float v[V];
            load_pack<V>(x + row(t), i, v);
#pragma unroll
            for (int e = 0; e < V; ++e) sum[u] += v[e];
          }
        }
      }
#pragma unroll
      for (int u = 0; u < kTsnRounds; ++u) sum[u] = team_sum(sum[u], team) / float(n);  // μ
#pragma unroll
      for (int u = 0; u < kTsnRounds; ++u) {
        const std::int64_t t = t0 + team_id + std::int64_t(r0 + u) * teams;
        centred[u] = 0;
        if (active[u]) {
          for (std::int64_t i = lane; i < packs; i += team) {
            float v[V];
            load_pack<V>(x + row(t), i, v);
#pragma unroll
            for (int e = 0; e < V; ++e) centred[u] += (v[e] - sum[u]) * (v[e] - sum[u]);
          }
        }
      }
#pragma unroll
      for (int u = 0; u < kTsnRounds; ++u) {
        centred[u] = team_sum(centred[u], team) / float(n);  // s²
        if (active[u] && lane == 0) stats[team_id + (r0 + u) * teams] = {sum[u], centred[u]};
      }
    }
    __syncthreads();

    // 2. Scan over the tile's tokens, one per thread, after everything before the tile.
    const std::int64_t t = t0 + threadIdx.x;
    Aggregate token{};  // the identity past the end of the sequence
    if (t < L) {
      const float2 m = stats[threadIdx.x];
      token = k.decay.token(m.x, m.y, bos != nullptr && bos[b * L + t]);
    }
    Aggregate state;
    BlockScan(scan_storage).InclusiveScan(token, state, cpu::TsnCombine<float>{}, prefix);
    if (t < L) {
      const float mean = state.m / one_minus_power(k.log_beta1, state.count);  // m̂_t
      const float var = state.v / one_minus_power(k.log_beta2, state.count);   // v̂_t
      stats[threadIdx.x] = {mean, 1.f / sqrtf(var + k.eps)};                    // (m̂_t, ρ_t)
    }
    __syncthreads();

    // 3. y = ((x − m̂)·ρ)·(1 + w) + b.
#pragma unroll 2
    for (int r = 0; r < rounds; ++r) {
      const int token_in_tile = team_id + r * teams;
      const std::int64_t tr = t0 + token_in_tile;
      if (tr >= L) continue;
      const float2 s = stats[token_in_tile];
      for (std::int64_t i = lane; i < packs; i += team) {
        float v[V], w[V], bb[V];
        load_pack<V>(x + row(tr), i, v);
        load_pack<V>(weight + channel0, i, w);
        load_pack<V>(bias + channel0, i, bb);
#pragma unroll
        for (int e = 0; e < V; ++e) v[e] = ((v[e] - s.x) * s.y) * (1.f + w[e]) + bb[e];
        store_pack<V>(y + row(tr), i, v);
      }
    }
    __syncthreads();  // stats and scan_storage are reused by the next tile
  }

  if (threadIdx.x == 0) {
    state_mean[b * G + g] = prefix.running.m;
    state_var[b * G + g] = prefix.running.v;
  }
}

// count[b] ← L − (last bos) if row b has a bos, else count[b] + L. One warp per batch row.
// A template (of the count's type, std::int64_t) so that including this header from several
// translation units of one program defines no kernel twice.
template <class Count>
__global__ void timestep_norm_count_kernel(const bool* __restrict__ bos, Count* __restrict__ count, Count L) {
  const Count b = blockIdx.x;
  const int lane = int(threadIdx.x);
  Count last = -1;
  if (bos)
    for (Count t = lane; t < L; t += 32)
      if (bos[b * L + t]) last = t;
  for (int offset = 16; offset > 0; offset /= 2) {
    const Count other = __shfl_xor_sync(0xffffffffu, last, offset);
    last = other > last ? other : last;
  }
  if (lane == 0) count[b] = last >= 0 ? L - last : count[b] + L;
}

}  // namespace detail

// x (B, L, D) -> y (B, L, D), device memory, y not overlapping x; bos (B, L) or a default
// TensorView (none).
// `state` is read as the incoming state and overwritten with the state after the last token.
template <class T>
void timestep_decay_norm(TensorView<const T> x, TensorView<const bool> bos,
                         const TimestepNormState& state, const TimestepNormParams<T>& p,
                         TensorView<T> y, cudaStream_t stream) {
  constexpr const char* op = "cuda::timestep_decay_norm";
  detail::require_device(op, "x", x);
  require(x.rank() == 3, op, ": x has shape ", x.shape.str(), ", expected [B, L, D]");
  const std::int64_t B = x.shape[0], L = x.shape[1], D = x.shape[2];
  const int G = p.groups;
  require(G > 0 && D % G == 0, op, ": groups = ", G, " does not divide D = ", D);
  detail::require_device(op, "weight", p.weight);
  check_shape(op, "weight", p.weight.shape, {D});
  detail::require_device(op, "bias", p.bias);
  check_shape(op, "bias", p.bias.shape, {D});
  const bool has_bos = detail::optional_device(op, "bos", bos, {B, L});
  detail::require_device(op, "state.count", state.count);
  check_shape(op, "state.count", state.count.shape, {B});
  detail::require_device(op, "state.mean", state.mean);
  check_shape(op, "state.mean", state.mean.shape, {B, G});
  detail::require_device(op, "state.var", state.var);
  check_shape(op, "state.var", state.var.shape, {B, G});
  detail::require_device(op, "y", y);
  check_shape(op, "y", y.shape, x.shape);
  require(p.beta1 > 0 && p.beta1 < 1 && p.beta2 > 0 && p.beta2 < 1, op,
          ": the decays must lie in (0, 1), got beta1 = ", p.beta1, ", beta2 = ", p.beta2);
  require(B <= 65535, op, ": batch size ", B, " exceeds the grid limit 65535");
  if (B == 0 || L == 0) return;

  const detail::TsnConstants k{cpu::TsnDecay<float>::from(p.beta1, p.beta2),
                               float(std::log(p.beta1)), float(std::log(p.beta2)), float(p.eps)};
  const std::int64_t n = D / G;
  constexpr int vec = detail::kVectorWidth<T>;
  const bool vectorised = n % vec == 0 && detail::aligned16(x.data) && detail::aligned16(y.data) &&
                          detail::aligned16(p.weight.data) && detail::aligned16(p.bias.data);
  const std::int64_t packs = vectorised ? n / vec : n;
  int team = 1;
  while (team < 32 && team < packs) team *= 2;

  const dim3 grid{unsigned(G), unsigned(B)};
  const bool* bos_data = has_bos ? bos.data : nullptr;
  if (vectorised)
    detail::timestep_decay_norm_kernel<T, vec><<<grid, detail::kTsnThreads, 0, stream>>>(
        x.data, bos_data, state.count.data, state.mean.data, state.var.data, p.weight.data,
        p.bias.data, y.data, L, D, team, k);
  else
    detail::timestep_decay_norm_kernel<T, 1><<<grid, detail::kTsnThreads, 0, stream>>>(
        x.data, bos_data, state.count.data, state.mean.data, state.var.data, p.weight.data,
        p.bias.data, y.data, L, D, team, k);
  check_launch("cuda::timestep_decay_norm: timestep_decay_norm_kernel");
  detail::timestep_norm_count_kernel<std::int64_t><<<unsigned(B), 32, 0, stream>>>(bos_data, state.count.data, L);
  check_launch("cuda::timestep_decay_norm: timestep_norm_count_kernel");
}

template <class T>
void timestep_decay_norm(TensorView<const T> x, TensorView<const bool> bos,
                         const TimestepNormState& state, const TimestepNormParams<T>& p,
                         TensorView<T> y, const CudaExecutor& exec) {
  timestep_decay_norm<T>(x, bos, state, p, y, exec.stream());
}

}  // namespace gecko::cuda
