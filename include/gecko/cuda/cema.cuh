#pragma once
// Complex EMA on the GPU (spec §6), the device twin of cpu::cema: per batch row b, channel d and
// order n the affine recurrence h_t = a_t·h_{t−1} + p·x_t (a_t = 0 at a bos, q otherwise), the
// output c_t = ω·x_t + Σ_n Re(γ·h_t) (ω = 1 for Gecko), and the last state h out.
// x and c hold T in {float, bfloat16, float16} with token-major layout (B, L, D), as on the CPU
// path; the coefficients p, q, γ and the state h are float32 whatever T (the reference keeps
// them in fp32); c is computed in float and rounded to T once.
//
// Algorithm: a chunked scan. One block of 256 threads owns a batch row and 16 channels and walks
// the sequence in tiles of 256 steps. A tile is staged through shared memory (coalesced rows of
// 16 channels, swizzled so that the transposed reads below are free of bank conflicts); each
// thread then owns one channel and a chunk of 16 consecutive steps, and for every order n
//   1. folds its chunk's steps into one affine map with cpu::CemaCompose (cpu/cema_scan.hpp, the
//      functor the CPU tests exercise),
//   2. takes the exclusive scan of those maps over the tile's 16 chunks with cub::WarpScan (the
//      16 chunk-threads of a channel form one logical warp), seeded with the carried state as
//      the constant map h ↦ h_carry, which yields the state entering each chunk,
//   3. re-runs its steps from that state, accumulating Re(γ·h_t) into registers,
// and the thread that holds the tile's last chunk carries h to the next tile through shared
// memory. The outputs go back through the shared tile to coalesced stores.
// Bound: x is read once and c written once (HBM bytes = 2·B·L·D·sizeof(T)), but with N = 16 the
// scan's ~14·N FMAs per element (fold 8, re-run 4, output 2) exceed what HBM bandwidth allows on
// an H100, so the kernel is FMA-bound. The fold can shrink to the 4 FMAs of b alone, a = q^len
// (or 0 after a bos) coming from a precomputed table: the first thing to measure.

#include <cuda_runtime.h>

#include <cub/warp/warp_scan.cuh>

#include <cstdint>

#include "gecko/core/complex.hpp"
#include "gecko/core/error.hpp"
#include "gecko/core/shape.hpp"
#include "gecko/core/tensor.hpp"
#include "gecko/cpu/cema_scan.hpp"
#include "gecko/cuda/check.cuh"
#include "gecko/cuda/executor.cuh"
#include "gecko/cuda/group_norm.cuh"  // device-view checks

namespace gecko::cuda {

// The coefficients of cpu::cema_coefficients (formed in float32, spec §3.2), in device memory.
struct CemaCoefficients {
  TensorView<const float> p;                  // (D, N) real input gain
  TensorView<const Complex<float>> q, gamma;  // (D, N) complex decay and output weights
};

namespace detail {

struct CemaTile {
  static constexpr int kChannels = 16;                  // channels per block
  static constexpr int kChunks = 16;                    // chunks per tile: one logical warp
  static constexpr int kSteps = 16;                     // steps per chunk, held in registers
  static constexpr int kThreads = kChannels * kChunks;  // 256
  static constexpr int kLength = kChunks * kSteps;      // steps per tile
  static constexpr int kMaxOrder = 64;                  // N: bounds the shared carry table
  static_assert(kChunks <= 32 && 32 % kChunks == 0, "a channel's chunks must form a logical warp");
  static_assert(kChannels % (32 / kChunks) == 0 && kSteps * kChannels % 32 == 0,
                "the swizzle's conflict-freedom assumes whole warps of channels and chunks");

  // Word f = step·kChannels + channel of the tile, XOR-ed within its 32-word row by its chunk, so
  // that the 32/kChunks channels × kChunks chunks a warp reads at once hit distinct banks, and
  // 32 consecutive words (one chunk) still do.
  __device__ static int swizzle(int f) {
    const int chunk = f / (kSteps * kChannels);
    return f ^ ((chunk * (32 / kChunks)) & 31);
  }
};

// The per-(channel, order) constants of a block, staged once in shared memory.
struct CemaLane {
  Complex<float> q, gamma;
  float p;
};

// Grid (⌈D/16⌉, B). Dynamic shared memory: 16·N CemaLane then 16·N carried states.
template <class T>
__global__ void __launch_bounds__(CemaTile::kThreads)
cema_kernel(const T* __restrict__ x, const bool* __restrict__ bos, Complex<float>* __restrict__ h,
            const float* __restrict__ p, const Complex<float>* __restrict__ q,
            const Complex<float>* __restrict__ gamma, const T* __restrict__ omega,
            T* __restrict__ c, std::int64_t L, std::int64_t D, int N) {
  using Tile = CemaTile;
  using Step = cpu::CemaStep<float>;
  using WarpScan = cub::WarpScan<Step, Tile::kChunks>;
  __shared__ float tile[Tile::kLength * Tile::kChannels];  // x, then c, swizzled
  __shared__ bool resets[Tile::kLength];
  __shared__ typename WarpScan::TempStorage scan_storage[Tile::kChannels];
  extern __shared__ __align__(16) unsigned char dynamic_smem[];
  CemaLane* lanes = reinterpret_cast<CemaLane*>(dynamic_smem);                      // [16][N]
  Complex<float>* carry = reinterpret_cast<Complex<float>*>(lanes + Tile::kChannels * N);  // [16][N]

  const std::int64_t b = blockIdx.y, d0 = std::int64_t(blockIdx.x) * Tile::kChannels;
  const int chunk = int(threadIdx.x) % Tile::kChunks, dl = int(threadIdx.x) / Tile::kChunks;
  const std::int64_t d = d0 + dl;

  for (int i = int(threadIdx.x); i < Tile::kChannels * N; i += Tile::kThreads) {
    const std::int64_t dd = d0 + i / N, idx = dd * N + i % N;
    if (dd < D) {
      lanes[i] = {q[idx], gamma[idx], p[idx]};
      carry[i] = h[b * D * N + idx];
    } else {  // channels past D: zero coefficients, never stored
      lanes[i] = {};
      carry[i] = {};
    }
  }
  const float w = omega != nullptr && d < D ? float(omega[d]) : 1.f;

  for (std::int64_t t0 = 0; t0 < L; t0 += Tile::kLength) {
    for (int f = int(threadIdx.x); f < Tile::kLength * Tile::kChannels; f += Tile::kThreads) {
      const std::int64_t t = t0 + f / Tile::kChannels, dd = d0 + f % Tile::kChannels;
      tile[Tile::swizzle(f)] = t < L && dd < D ? float(x[(b * L + t) * D + dd]) : 0.f;
    }
    for (int s = int(threadIdx.x); s < Tile::kLength; s += Tile::kThreads)
      resets[s] = bos != nullptr && t0 + s < L && bos[b * L + t0 + s];
    __syncthreads();

    const int first = chunk * Tile::kSteps;  // the chunk's first step within the tile
    const std::int64_t left = L - (t0 + first);
    const int valid = left <= 0 ? 0 : left >= Tile::kSteps ? Tile::kSteps : int(left);
    float xv[Tile::kSteps], yv[Tile::kSteps];
    unsigned reset_bits = 0;
#pragma unroll
    for (int k = 0; k < Tile::kSteps; ++k) {
      xv[k] = tile[Tile::swizzle((first + k) * Tile::kChannels + dl)];
      yv[k] = 0;
      reset_bits |= unsigned(resets[first + k]) << k;
    }

    for (int n = 0; n < N; ++n) {
      const CemaLane lane = lanes[dl * N + n];
      // 1. The chunk's steps as one map.
      Step chunk_map{};
#pragma unroll
      for (int k = 0; k < Tile::kSteps; ++k)
        if (k < valid)
          chunk_map = cpu::CemaCompose<float>{}(
              chunk_map, Step::at(lane.q, lane.p, xv[k], (reset_bits >> k) & 1u));
      // 2. The state entering the chunk: the carried state followed by the earlier chunks.
      const Step carried{Complex<float>{}, carry[dl * N + n]};
      Step entering;
      WarpScan(scan_storage[dl]).ExclusiveScan(chunk_map, entering, carried, cpu::CemaCompose<float>{});
      Complex<float> state = entering.b;  // entering.a is 0: the carried map is constant
      // 3. Re-run the steps, accumulating the output projection.
#pragma unroll
      for (int k = 0; k < Tile::kSteps; ++k) {
        if (k < valid) {
          state = Step::at(lane.q, lane.p, xv[k], (reset_bits >> k) & 1u).apply(state);
          yv[k] += lane.gamma.re * state.re - lane.gamma.im * state.im;  // Re(γ·h_t)
        }
      }
      __syncwarp();  // every lane has read carry[dl][n] before the last chunk replaces it
      if (chunk == Tile::kChunks - 1) carry[dl * N + n] = state;
    }

#pragma unroll
    for (int k = 0; k < Tile::kSteps; ++k)
      tile[Tile::swizzle((first + k) * Tile::kChannels + dl)] = w * xv[k] + yv[k];
    __syncthreads();
    for (int f = int(threadIdx.x); f < Tile::kLength * Tile::kChannels; f += Tile::kThreads) {
      const std::int64_t t = t0 + f / Tile::kChannels, dd = d0 + f % Tile::kChannels;
      if (t < L && dd < D) c[(b * L + t) * D + dd] = T(tile[Tile::swizzle(f)]);
    }
    __syncthreads();  // the tile and resets are refilled next
  }

  for (int i = int(threadIdx.x); i < Tile::kChannels * N; i += Tile::kThreads) {
    const std::int64_t dd = d0 + i / N;
    if (dd < D) h[b * D * N + dd * N + i % N] = carry[i];
  }
}

}  // namespace detail

// x (B, L, D) -> c (B, L, D), device memory, c not overlapping x. bos (B, L) or a default
// TensorView (none).
// h (B, D, N, 2) float32 complex state: read as the incoming state (zero it to start a stream)
// and overwritten with the state after the last token. omega (D) residual weight, or a default
// TensorView for weight 1 (Gecko).
template <class T>
void cema(TensorView<const T> x, TensorView<const bool> bos, TensorView<float> h,
          const CemaCoefficients& coeffs, TensorView<const T> omega, TensorView<T> c,
          cudaStream_t stream) {
  constexpr const char* op = "cuda::cema";
  using Tile = detail::CemaTile;
  detail::require_device(op, "x", x);
  require(x.rank() == 3, op, ": x has shape ", x.shape.str(), ", expected [B, L, D]");
  const std::int64_t B = x.shape[0], L = x.shape[1], D = x.shape[2];
  detail::require_device(op, "p", coeffs.p);
  require(coeffs.p.rank() == 2, op, ": p has shape ", coeffs.p.shape.str(), ", expected [D, N]");
  const std::int64_t N = coeffs.p.shape[1];
  check_shape(op, "p", coeffs.p.shape, {D, N});
  detail::require_device(op, "q", coeffs.q);
  check_shape(op, "q", coeffs.q.shape, {D, N});
  detail::require_device(op, "gamma", coeffs.gamma);
  check_shape(op, "gamma", coeffs.gamma.shape, {D, N});
  require(N >= 1 && N <= Tile::kMaxOrder, op, ": order N = ", N, " outside [1, ",
          Tile::kMaxOrder, "]");
  detail::optional_device(op, "bos", bos, {B, L});
  detail::require_device(op, "h", h);
  check_shape(op, "h", h.shape, {B, D, N, 2});
  detail::optional_device(op, "omega", omega, {D});
  detail::require_device(op, "c", c);
  check_shape(op, "c", c.shape, x.shape);
  require(B <= 65535, op, ": batch size ", B, " exceeds the grid limit 65535");
  if (B == 0 || L == 0 || D == 0) return;

  const dim3 grid{unsigned((D + Tile::kChannels - 1) / Tile::kChannels), unsigned(B)};
  const std::size_t smem =
      std::size_t(Tile::kChannels * N) * (sizeof(detail::CemaLane) + sizeof(Complex<float>));
  detail::cema_kernel<T><<<grid, Tile::kThreads, smem, stream>>>(
      x.data, bos.data, reinterpret_cast<Complex<float>*>(h.data), coeffs.p.data, coeffs.q.data,
      coeffs.gamma.data, omega.data, c.data, L, D, int(N));
  check_launch("cuda::cema: cema_kernel");
}

template <class T>
void cema(TensorView<const T> x, TensorView<const bool> bos, TensorView<float> h,
          const CemaCoefficients& coeffs, TensorView<const T> omega, TensorView<T> c,
          const CudaExecutor& exec) {
  cema<T>(x, bos, h, coeffs, omega, c, exec.stream());
}

}  // namespace gecko::cuda
