#pragma once
// Group RMS norm and group layer norm on the GPU (spec §7), the device twins of
// cpu/group_norm.hpp with the same meaning: the last dimension F of x is split into `groups`
// contiguous blocks of n = F/groups channels and each (row, group) is normalised on its own,
//   RMS: y = x·ρ·(1 + w),            ρ = 1/sqrt(mean(x²) + eps)
//   LN:  y = (x − μ)·ρ·(1 + w) + b,  ρ = 1/sqrt(mean((x − μ)²) + eps)   (population variance).
// x and y hold T in {float, bfloat16, float16}; statistics and the affine map are computed in
// float and y is rounded to T once.
//
// Algorithm: one thread block per (row, group). Each thread loads its share of the group into
// registers (up to kGroupNormPacks packs of 16 bytes, or of one element where the group size or
// an address does not allow 16-byte accesses), the block sums through warp shuffles and one
// shared-memory exchange, and the centred second moment (LN) is taken over the registers, so the
// two-pass statistics cost no second read. Block size: the smallest power of two >= 32 threads
// that covers the group, up to 1024 or the most that the kernel's registers allow (the 16-bit
// layer norm at 16-byte packs holds 64 floats per thread and needs over 64 registers, so at most
// 512 threads: 32768 channels per group).
// Bound: HBM bandwidth: bytes = read x once + write y once (+ weight and bias, L2-resident).
// The block size rule and kGroupNormPacks are first choices, not yet measured on a GPU
// (bench_cuda_scan_ops's rms_norm and layer_norm rows, against the same-run copy).
//
// This header also holds what the other scan/normalisation kernels share: packed loads and team
// sums (cuda/timestep_norm.cuh's per-token moments) and the device-view checks (cuda/cema.cuh).

#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "gecko/core/dtype.hpp"
#include "gecko/core/error.hpp"
#include "gecko/core/shape.hpp"
#include "gecko/core/tensor.hpp"
#include "gecko/cuda/check.cuh"
#include "gecko/cuda/executor.cuh"

namespace gecko::cuda {

namespace detail {

// Elements per 16-byte access.
template <class T>
inline constexpr int kVectorWidth = int(16 / sizeof(T));

// V consecutive elements, loaded and stored as one access.
template <class T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

// Pack i of p (element i·V onwards), widened to float.
template <int V, class T>
__device__ __forceinline__ void load_pack(const T* __restrict__ p, std::int64_t i, float (&out)[V]) {
  const Pack<T, V> pack = reinterpret_cast<const Pack<T, V>*>(p)[i];
#pragma unroll
  for (int k = 0; k < V; ++k) out[k] = float(pack.v[k]);
}

template <int V, class T>
__device__ __forceinline__ void store_pack(T* __restrict__ p, std::int64_t i, const float (&in)[V]) {
  Pack<T, V> pack;
#pragma unroll
  for (int k = 0; k < V; ++k) pack.v[k] = T(in[k]);
  reinterpret_cast<Pack<T, V>*>(p)[i] = pack;
}

// Sum over aligned teams of `width` lanes (a power of two <= 32); every lane of the warp calls it
// and every lane of a team gets its team's sum.
__device__ __forceinline__ float team_sum(float v, int width) {
  for (int offset = width / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Sum over the block (blockDim.x a multiple of 32); every thread calls it and gets the sum.
// `partial` is 32 floats of shared memory, free again when it returns.
__device__ __forceinline__ float block_sum(float v, float* partial) {
  const int lane = int(threadIdx.x % 32), warp = int(threadIdx.x / 32);
  v = team_sum(v, 32);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = lane < int(blockDim.x / 32) ? partial[lane] : 0.f;
  v = team_sum(v, 32);
  __syncthreads();
  return v;
}

inline bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

// Throws unless `view` is a contiguous tensor in device memory.
template <class T>
void require_device(std::string_view op, std::string_view name, const TensorView<T>& view) {
  require(view.space == Space::Device, op, ": ", name, " of shape ", view.shape.str(),
          " is in host memory, expected device memory");
  require(view.is_contiguous(), op, ": ", name, " of shape ", view.shape.str(),
          " is not contiguous");
}

// An optional input: absent when its data pointer is null, otherwise checked like the others.
template <class T>
bool optional_device(std::string_view op, std::string_view name, const TensorView<T>& view,
                     const Shape& expected) {
  if (view.data == nullptr) return false;
  require_device(op, name, view);
  check_shape(op, name, view.shape, expected);
  return true;
}

// Packs held in registers per thread: 8 x 16 bytes covers 8192 channels per group at one
// element per pack (the reference's limit, spec §2) and up to 32768/65536 at 16-byte packs.
inline constexpr int kGroupNormPacks = 8;

template <class T, int V, bool kCentre>
__global__ void group_norm_kernel(const T* __restrict__ x, T* __restrict__ y,
                                  const T* __restrict__ weight, const T* __restrict__ bias,
                                  std::int64_t groups, std::int64_t n, float eps) {
  __shared__ float partial[32];
  const std::int64_t unit = blockIdx.x;  // (row, group): its n channels start at unit·n
  const std::int64_t channel0 = (unit % groups) * n;
  const std::int64_t packs = n / V;
  x += unit * n;
  y += unit * n;

  float v[kGroupNormPacks][V];
  float sum = 0;
#pragma unroll
  for (int j = 0; j < kGroupNormPacks; ++j) {
    const std::int64_t i = threadIdx.x + std::int64_t(j) * blockDim.x;
    if (i < packs) {
      load_pack<V>(x, i, v[j]);
#pragma unroll
      for (int k = 0; k < V; ++k) sum += kCentre ? v[j][k] : v[j][k] * v[j][k];
    }
  }
  float mean = 0, second = 0;  // μ (LN only) and mean((x − μ)²) or mean(x²)
  if constexpr (kCentre) {
    mean = block_sum(sum, partial) / float(n);
    float centred = 0;
#pragma unroll
    for (int j = 0; j < kGroupNormPacks; ++j) {
      if (threadIdx.x + std::int64_t(j) * blockDim.x < packs) {
#pragma unroll
        for (int k = 0; k < V; ++k) centred += (v[j][k] - mean) * (v[j][k] - mean);
      }
    }
    second = block_sum(centred, partial) / float(n);
  } else {
    second = block_sum(sum, partial) / float(n);
  }
  const float rho = 1.f / sqrtf(second + eps);

#pragma unroll
  for (int j = 0; j < kGroupNormPacks; ++j) {
    const std::int64_t i = threadIdx.x + std::int64_t(j) * blockDim.x;
    if (i < packs) {
      float w[V], b[V], out[V];
      if (weight) load_pack<V>(weight + channel0, i, w);
      if (bias) load_pack<V>(bias + channel0, i, b);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        out[k] = (v[j][k] - mean) * rho;
        if (weight) out[k] *= 1.f + w[k];
        if (bias) out[k] += b[k];
      }
      store_pack<V>(y, i, out);
    }
  }
}

// The largest power of two of threads that a block of group_norm_kernel<T, V, kCentre> may have:
// 1024 unless its registers allow fewer (65536 registers per block; a launch beyond that fails
// with "too many resources requested"). Read once per kernel from the runtime.
template <class T, int V, bool kCentre>
int group_norm_max_threads(const char* op) {
  static const int threads = [op] {
    cudaFuncAttributes attr{};
    check(cudaFuncGetAttributes(&attr, group_norm_kernel<T, V, kCentre>),
          std::string(op) + ": cudaFuncGetAttributes(group_norm_kernel)");
    int t = 32;
    while (t < 1024 && 2 * t <= attr.maxThreadsPerBlock) t *= 2;
    return t;
  }();
  return threads;
}

template <class T, bool kCentre>
void launch_group_norm(const char* op, TensorView<const T> x, int groups, double eps,
                       TensorView<const T> weight, TensorView<const T> bias, TensorView<T> y,
                       cudaStream_t stream) {
  require_device(op, "x", x);
  require(x.rank() >= 1, op, ": x must have at least one dimension (..., F)");
  const std::int64_t F = x.shape[x.rank() - 1];
  require(F > 0, op, ": the feature size F (last dimension of x) must be positive");
  require(groups > 0, op, ": groups must be positive, got ", groups);
  require(F % groups == 0, op, ": the feature size F = ", F, " must be a multiple of groups = ",
          groups);
  require(eps >= 0, op, ": eps must be non-negative, got ", eps);
  const bool has_weight = optional_device(op, "weight", weight, Shape{F});
  const bool has_bias = optional_device(op, "bias", bias, Shape{F});
  require_device(op, "y", y);
  check_shape(op, "y", y.shape, x.shape);

  const std::int64_t n = F / groups, units = x.numel() / n;
  if (units == 0) return;
  require(units <= 0x7fffffff, op, ": ", units, " (row, group) pairs exceed the grid limit 2^31 - 1");

  constexpr int vec = kVectorWidth<T>;
  const bool vectorised = n % vec == 0 && aligned16(x.data) && aligned16(y.data) &&
                          (!has_weight || aligned16(weight.data)) &&
                          (!has_bias || aligned16(bias.data));
  const int width = vectorised ? vec : 1;
  const std::int64_t packs = n / width;
  const int max_threads = vectorised ? group_norm_max_threads<T, vec, kCentre>(op)
                                     : group_norm_max_threads<T, 1, kCentre>(op);
  int threads = 32;
  while (threads < max_threads && std::int64_t(threads) * kGroupNormPacks < packs) threads *= 2;
  require(std::int64_t(threads) * kGroupNormPacks >= packs, op, ": a group of ", n,
          " channels exceeds the kernel's register tile of ",
          std::int64_t(max_threads) * kGroupNormPacks * width, " channels");

  const T* w = has_weight ? weight.data : nullptr;
  const T* b = has_bias ? bias.data : nullptr;
  if (vectorised)
    group_norm_kernel<T, vec, kCentre><<<unsigned(units), threads, 0, stream>>>(
        x.data, y.data, w, b, groups, n, float(eps));
  else
    group_norm_kernel<T, 1, kCentre><<<unsigned(units), threads, 0, stream>>>(
        x.data, y.data, w, b, groups, n, float(eps));
  check_launch(std::string(op) + ": group_norm_kernel");
}

}  // namespace detail

// x (..., F) -> y (..., F), all in device memory, y not overlapping x. weight (F): the raw stored
// weight (scale 1 + weight); a default TensorView (null data) means no affine scale.
template <class T>
void group_rms_norm(TensorView<const T> x, int groups, double eps, TensorView<const T> weight,
                    TensorView<T> y, cudaStream_t stream) {
  detail::launch_group_norm<T, false>("cuda::group_rms_norm", x, groups, eps, weight,
                                      TensorView<const T>{}, y, stream);
}

template <class T>
void group_rms_norm(TensorView<const T> x, int groups, double eps, TensorView<const T> weight,
                    TensorView<T> y, const CudaExecutor& exec) {
  group_rms_norm<T>(x, groups, eps, weight, y, exec.stream());
}

// x (..., F) -> y (..., F). weight (F) raw (scale 1 + weight) and bias (F); either may be a
// default TensorView (absent).
template <class T>
void group_layer_norm(TensorView<const T> x, int groups, double eps, TensorView<const T> weight,
                      TensorView<const T> bias, TensorView<T> y, cudaStream_t stream) {
  detail::launch_group_norm<T, true>("cuda::group_layer_norm", x, groups, eps, weight, bias, y,
                                     stream);
}

template <class T>
void group_layer_norm(TensorView<const T> x, int groups, double eps, TensorView<const T> weight,
                      TensorView<const T> bias, TensorView<T> y, const CudaExecutor& exec) {
  group_layer_norm<T>(x, groups, eps, weight, bias, y, exec.stream());
}

}  // namespace gecko::cuda
