#pragma once
// Timestep normalisation on the GPU, the device twins of cpu/timestep_norm.hpp: each token is
// normalised, per group of channels, by running statistics of its stream.
//   timestep_decay_norm:      Gecko's decayed, bias-corrected EMA with bos resets (spec §5).
//   timestep_cumulative_norm: Megalodon's cumulative count-weighted statistics (spec §12).
// x and y hold T in {float, bfloat16, float16}; moments, the scan and the affine map run in
// float, and the streaming state (count int64, mean and var float32) stays float32 whatever T.
//
// Algorithm (both ops, one kernel template): one thread block per (batch row, group) walks the
// sequence in tiles of 256 tokens.
//   1. Moments: teams of lanes (as many as the group has 16-byte packs, at most a warp) compute
//      each token's two-pass group mean and variance; four rounds of teams keep their loads in
//      flight together.
//   2. Scan: one token per thread, cub::BlockScan with the statistics' associative combine, and a
//      prefix callback that carries the running aggregate from tile to tile; the incoming state
//      is the first prefix. The two ops differ only here:
//        decay:      cpu::TsnCombine (cpu/timestep_norm_scan.hpp, the very code the CPU path folds
//                    with) over (n, β1ⁿ, β2ⁿ, M, V, bos); bias correction 1 − βⁿ = −expm1(n·ln β)
//                    needs no running power.
//        cumulative: the pooled moments of two runs (count, mean, population variance including
//                    the spread of the token means): Chan's parallel form of the CPU path's
//                    per-token update m₂ ← (1−c)m₂ + c·s² + c(1−c)(μ − m₁)², m₁ ← m₁ + c(μ − m₁),
//                    c = 1/n, which is the combine of the state with a one-token run.
//   3. Normalise: the same teams re-read the tile (now in L1/L2), apply ((x − m̂)·ρ)·(1 + w) + b
//      and store y rounded to T once.
// A second, tiny kernel then writes the new token counts (one warp per batch row finds the last
// bos; without bos it adds L), so the state may be updated in place although every group's block
// reads the count.
// Every kernel here is a template, so that several translation units may include the header.
// Bound: HBM bandwidth: bytes = read x once + write y once, provided a tile (256 tokens of D/G
// channels) stays in L1/L2 between steps 1 and 3. The grid has B·G blocks; below about two
// blocks per multiprocessor (B·G < ~264 on an H100) the op is latency-bound instead, and a
// time-split (chunked) scan over more blocks would be the next step.
// Tile sizes (256 tokens, kTsnRounds) are first choices, not yet measured on a GPU:
// bench_cuda_scan_ops's timestep_norm rows, against the same-run copy, are what should set them.

#include <cuda_runtime.h>

#include <cub/block/block_scan.cuh>

#include <cmath>
#include <cstdint>
#include <string>

#include "gecko/core/config.hpp"
#include "gecko/core/error.hpp"
#include "gecko/core/shape.hpp"
#include "gecko/core/tensor.hpp"
#include "gecko/cpu/timestep_norm_scan.hpp"
#include "gecko/cuda/check.cuh"
#include "gecko/cuda/executor.cuh"
#include "gecko/cuda/group_norm.cuh"

namespace gecko::cuda {

// Streaming state in device memory, read as the incoming state and overwritten with the state
// after the call (cpu::TimestepNormState's meaning, float32 moments). The caller writes a
// stream's starting state, the priors: for Gecko's decay norm count 0, mean and var 0 (spec §5.1);
// for Megalodon's cumulative norm count 0, mean 0, var 1 (spec §12).
struct TimestepNormState {
  TensorView<std::int64_t> count;  // (B) decay: tokens since the last bos (plus the earlier
                                   //     count); cumulative: all tokens so far
  TensorView<float> mean, var;     // (B, G) decay: raw, un-normalised EMAs M and V;
                                   //        cumulative: running mean m₁ and variance m₂
};

template <class T>
struct TimestepNormParams {
  TensorView<const T> weight, bias;  // (D) raw parameters; the scale is 1 + weight
  int groups = 1;
  double beta1 = 0.999, beta2 = 0.9999, eps = 1e-5;  // betas: decay norm only
};

namespace detail {

inline constexpr int kTsnThreads = 256;  // tokens per tile: one per thread in the scan
inline constexpr int kTsnRounds = 4;     // rounds of teams whose loads are issued together

// 1 − βⁿ without cancellation, for n >= 1.
__device__ __forceinline__ float one_minus_power(float log_beta, std::int64_t n) {
  return -expm1f(float(n) * log_beta);
}

// A statistics policy of the kernel: Aggregate (a run of tokens; default-constructed = the
// identity), Combine (associative, `a` followed by `x`), and
//   carried(n, mean, var): the incoming state as an aggregate,
//   token(μ, s², bos):     one token's aggregate,
//   normaliser(s):         (m̂, ρ) of the token whose inclusive aggregate is s,
//   stored(s):             (mean, var) of the state written back.

// Gecko's decay norm (spec §5.3): the CPU path's aggregate and combine.
struct DecayStatistics {
  using Aggregate = cpu::TsnAggregate<float>;
  using Combine = cpu::TsnCombine<float>;

  cpu::TsnDecay<float> decay;  // β and 1 − β, each rounded once from double, as on the CPU path
  float log_beta1, log_beta2, eps;

  __device__ Aggregate carried(std::int64_t n, float mean, float var) const {
    return {n, expf(float(n) * log_beta1), expf(float(n) * log_beta2), mean, var, false};
  }
  __device__ Aggregate token(float mu, float s2, bool bos) const { return decay.token(mu, s2, bos); }
  __device__ float2 normaliser(const Aggregate& s) const {
    const float mean = s.m / one_minus_power(log_beta1, s.count);  // m̂_t
    const float var = s.v / one_minus_power(log_beta2, s.count);   // v̂_t
    return {mean, 1.f / sqrtf(var + eps)};                         // (m̂_t, ρ_t)
  }
  __device__ static float2 stored(const Aggregate& s) { return {s.m, s.v}; }
};

// Megalodon's cumulative statistics (spec §12) of a run of tokens: how many, their mean, and the
// population variance of all their channels (within-token variances pooled with the spread of
// the token means). Host and device code.
struct CumulativeAggregate {
  std::int64_t count = 0;
  float mean = 0, var = 0;
};

// `a` followed by `x`: the pooled moments of both runs, weights wa = na/n and wx = nx/n,
//   mean = mean_a + wx·δ,  var = wa·var_a + wx·var_x + wa·wx·δ²,  δ = mean_x − mean_a.
// A run of no tokens is the identity exactly (so the state of count 0 is replaced by the first
// token's moments, as the CPU path's c = 1 does).
struct CumulativeCombine {
  GECKO_HOST_DEVICE CumulativeAggregate operator()(const CumulativeAggregate& a,
                                                   const CumulativeAggregate& x) const {
    if (x.count == 0) return a;
    if (a.count == 0) return x;
    const std::int64_t n = a.count + x.count;
    const float wa = float(a.count) / float(n), wx = float(x.count) / float(n);
    const float delta = x.mean - a.mean;
    return {n, a.mean + wx * delta, wa * a.var + wx * x.var + wa * wx * delta * delta};
  }
};

struct CumulativeStatistics {
  using Aggregate = CumulativeAggregate;
  using Combine = CumulativeCombine;

  float eps;

  __device__ static Aggregate carried(std::int64_t n, float mean, float var) { return {n, mean, var}; }
  __device__ static Aggregate token(float mu, float s2, bool /*no bos*/) { return {1, mu, s2}; }
  __device__ float2 normaliser(const Aggregate& s) const { return {s.mean, 1.f / sqrtf(s.var + eps)}; }
  __device__ static float2 stored(const Aggregate& s) { return {s.mean, s.var}; }
};

// cub's block prefix callback: hands out the aggregate of everything before the tile and folds
// the tile in. Called by the first warp; thread 0's copy ends as the state after the sequence.
template <class Stats>
struct RunningPrefix {
  typename Stats::Aggregate running;

  __device__ typename Stats::Aggregate operator()(const typename Stats::Aggregate& tile) {
    const typename Stats::Aggregate before = running;
    running = typename Stats::Combine{}(running, tile);
    return before;
  }
};

// Grid (G, B). `team` lanes share a token (a power of two <= 32, ~ the packs per group).
template <class Stats, class T, int V>
__global__ void __launch_bounds__(kTsnThreads)
timestep_norm_kernel(const T* __restrict__ x, const bool* __restrict__ bos,
                     const std::int64_t* __restrict__ count, float* __restrict__ state_mean,
                     float* __restrict__ state_var, const T* __restrict__ weight,
                     const T* __restrict__ bias, T* __restrict__ y, std::int64_t L, std::int64_t D,
                     int team, Stats k) {
  using Aggregate = typename Stats::Aggregate;
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

  RunningPrefix<Stats> prefix{k.carried(count[b], state_mean[b * G + g], state_var[b * G + g])};

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
      token = k.token(m.x, m.y, bos != nullptr && bos[b * L + t]);
    }
    Aggregate state;
    BlockScan(scan_storage).InclusiveScan(token, state, typename Stats::Combine{}, prefix);
    if (t < L) stats[threadIdx.x] = k.normaliser(state);  // (m̂_t, ρ_t)
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
    const float2 s = Stats::stored(prefix.running);
    state_mean[b * G + g] = s.x;
    state_var[b * G + g] = s.y;
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

// The checks both ops share: x (B, L, D) and y, parameters (D), state (B) and (B, G).
template <class T>
void check_timestep_norm(const char* op, TensorView<const T> x, const TimestepNormState& state,
                         const TimestepNormParams<T>& p, TensorView<T> y) {
  require_device(op, "x", x);
  require(x.rank() == 3, op, ": x has shape ", x.shape.str(), ", expected [B, L, D]");
  const std::int64_t B = x.shape[0], D = x.shape[2];
  const int G = p.groups;
  require(G > 0 && D % G == 0, op, ": groups = ", G, " does not divide D = ", D);
  require_device(op, "weight", p.weight);
  check_shape(op, "weight", p.weight.shape, {D});
  require_device(op, "bias", p.bias);
  check_shape(op, "bias", p.bias.shape, {D});
  require_device(op, "state.count", state.count);
  check_shape(op, "state.count", state.count.shape, {B});
  require_device(op, "state.mean", state.mean);
  check_shape(op, "state.mean", state.mean.shape, {B, G});
  require_device(op, "state.var", state.var);
  check_shape(op, "state.var", state.var.shape, {B, G});
  require_device(op, "y", y);
  check_shape(op, "y", y.shape, x.shape);
  require(B <= 65535, op, ": batch size ", B, " exceeds the grid limit 65535");
}

// Launches the kernel with `stats` and then the count kernel; the inputs are checked.
template <class Stats, class T>
void launch_timestep_norm(const char* op, TensorView<const T> x, const bool* bos,
                          const TimestepNormState& state, const TimestepNormParams<T>& p,
                          TensorView<T> y, const Stats& stats, cudaStream_t stream) {
  const std::int64_t B = x.shape[0], L = x.shape[1], D = x.shape[2];
  if (B == 0 || L == 0) return;
  const std::int64_t n = D / p.groups;
  constexpr int vec = kVectorWidth<T>;
  const bool vectorised = n % vec == 0 && aligned16(x.data) && aligned16(y.data) &&
                          aligned16(p.weight.data) && aligned16(p.bias.data);
  const std::int64_t packs = vectorised ? n / vec : n;
  int team = 1;
  while (team < 32 && team < packs) team *= 2;

  const dim3 grid{unsigned(p.groups), unsigned(B)};
  if (vectorised)
    timestep_norm_kernel<Stats, T, vec><<<grid, kTsnThreads, 0, stream>>>(
        x.data, bos, state.count.data, state.mean.data, state.var.data, p.weight.data,
        p.bias.data, y.data, L, D, team, stats);
  else
    timestep_norm_kernel<Stats, T, 1><<<grid, kTsnThreads, 0, stream>>>(
        x.data, bos, state.count.data, state.mean.data, state.var.data, p.weight.data,
        p.bias.data, y.data, L, D, team, stats);
  check_launch(std::string(op) + ": timestep_norm_kernel");
  timestep_norm_count_kernel<std::int64_t><<<unsigned(B), 32, 0, stream>>>(bos, state.count.data, L);
  check_launch(std::string(op) + ": timestep_norm_count_kernel");
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
  detail::check_timestep_norm(op, x, state, p, y);
  const bool has_bos = detail::optional_device(op, "bos", bos, {x.shape[0], x.shape[1]});
  require(p.beta1 > 0 && p.beta1 < 1 && p.beta2 > 0 && p.beta2 < 1, op,
          ": the decays must lie in (0, 1), got beta1 = ", p.beta1, ", beta2 = ", p.beta2);
  const detail::DecayStatistics stats{cpu::TsnDecay<float>::from(p.beta1, p.beta2),
                                      float(std::log(p.beta1)), float(std::log(p.beta2)),
                                      float(p.eps)};
  detail::launch_timestep_norm(op, x, has_bos ? bos.data : nullptr, state, p, y, stats, stream);
}

template <class T>
void timestep_decay_norm(TensorView<const T> x, TensorView<const bool> bos,
                         const TimestepNormState& state, const TimestepNormParams<T>& p,
                         TensorView<T> y, const CudaExecutor& exec) {
  timestep_decay_norm<T>(x, bos, state, p, y, exec.stream());
}

// x (B, L, D) -> y (B, L, D), device memory, y not overlapping x. No bos: the statistics run
// over the whole stream. p.beta1 and p.beta2 are unused.
// `state` is read as the incoming state and overwritten with the state after the last token.
template <class T>
void timestep_cumulative_norm(TensorView<const T> x, const TimestepNormState& state,
                              const TimestepNormParams<T>& p, TensorView<T> y, cudaStream_t stream) {
  constexpr const char* op = "cuda::timestep_cumulative_norm";
  detail::check_timestep_norm(op, x, state, p, y);
  detail::launch_timestep_norm(op, x, nullptr, state, p, y, detail::CumulativeStatistics{float(p.eps)},
                               stream);
}

template <class T>
void timestep_cumulative_norm(TensorView<const T> x, const TimestepNormState& state,
                              const TimestepNormParams<T>& p, TensorView<T> y,
                              const CudaExecutor& exec) {
  timestep_cumulative_norm<T>(x, state, p, y, exec.stream());
}

}  // namespace gecko::cuda
