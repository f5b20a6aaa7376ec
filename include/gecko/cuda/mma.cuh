#pragma once
// Tensor-core building blocks shared by the attention and working-memory kernels: warp-level
// 16×16 output tiles through WMMA (nvcuda::wmma, sm_80 and newer), operand precision policies,
// shared-memory tile loads, the online log-sum-exp, and dynamic shared-memory bookkeeping.
//
// Operand precision (MmaTraits<T>):
//   * bfloat16 / float16 operands go to the tensor cores as stored (m16n16k16, float
//     accumulation): products of exact 16-bit inputs are exact, only the sums round.
//   * float operands (float inputs, and values the kernels compute in float: probabilities, the
//     float32 working memory, residuals) use "3xTF32" (m16n16k8): x = big + small with
//     big = tf32(x), small = tf32(x − big), and a·b ≈ a_small·b_big + a_big·b_small + a_big·b_big.
//     That keeps about 21 significant bits, close to float32 arithmetic, for three TF32 products,
//     and TF32 runs at half the 16-bit rate: 1/6 of the 16-bit peak per useful product.
// Where the kernels round a float operand to 16 bits instead (the probabilities of the attention
// kernel), they say so and split it the same way in 16-bit pieces.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>

#include "gecko/core/dtype.hpp"
#include "gecko/core/error.hpp"
#include "gecko/cuda/check.cuh"
#include "gecko/cuda/group_norm.cuh"  // Pack, aligned16, device-view checks

namespace gecko::cuda::detail {

namespace wmma = nvcuda::wmma;

// How operands of storage type T are held in shared memory and fed to the tensor cores.
template <class T>
struct MmaTraits;

template <>
struct MmaTraits<bfloat16> {
  using Elem = __nv_bfloat16;  // shared-memory element (same bits as gecko::bfloat16)
  using Input = __nv_bfloat16;  // WMMA fragment precision
  static constexpr int kK = 16;
  static constexpr bool kSplit = false;
};

template <>
struct MmaTraits<float16> {
  using Elem = __half;
  using Input = __half;
  static constexpr int kK = 16;
  static constexpr bool kSplit = false;
};

template <>
struct MmaTraits<float> {
  using Elem = float;
  using Input = wmma::precision::tf32;
  static constexpr int kK = 8;
  static constexpr bool kSplit = true;  // 3xTF32
};

// Warp-level products of 16×16 output tiles: C (16×16, float) += A (16×kK) · B (kK×16).
template <class T>
struct Mma {
  using Traits = MmaTraits<T>;
  using Elem = typename Traits::Elem;
  static constexpr int kK = Traits::kK;
  static constexpr bool kSplit = Traits::kSplit;

  template <class Layout>
  using FragA = wmma::fragment<wmma::matrix_a, 16, 16, kK, typename Traits::Input, Layout>;
  template <class Layout>
  using FragB = wmma::fragment<wmma::matrix_b, 16, 16, kK, typename Traits::Input, Layout>;
  using Acc = wmma::fragment<wmma::accumulator, 16, 16, kK, float>;

  // An operand as the products need it: `small` is only used (and only kept by the compiler)
  // with the 3xTF32 split.
  template <class Frag>
  struct Operand {
    Frag big, small;
  };
  template <class Layout>
  using OperandA = Operand<FragA<Layout>>;
  template <class Layout>
  using OperandB = Operand<FragB<Layout>>;

  // p: 32-byte aligned; ld: a multiple of 16 bytes (WMMA's rules).
  template <class Frag>
  static __device__ __forceinline__ void load(Operand<Frag>& op, const Elem* p, unsigned ld) {
    wmma::load_matrix_sync(op.big, p, ld);
    if constexpr (kSplit) {
#pragma unroll
      for (int i = 0; i < op.big.num_elements; ++i) {
        const float x = op.big.x[i];
        const float big = wmma::__float_to_tf32(x);
        op.big.x[i] = big;
        op.small.x[i] = wmma::__float_to_tf32(x - big);
      }
    }
  }

  template <class LayoutA, class LayoutB>
  static __device__ __forceinline__ void mma(Acc& acc, const OperandA<LayoutA>& a,
                                             const OperandB<LayoutB>& b) {
    if constexpr (kSplit) {  // the small terms first: they are the ones rounding would lose
      wmma::mma_sync(acc, a.small, b.big, acc);
      wmma::mma_sync(acc, a.big, b.small, acc);
    }
    wmma::mma_sync(acc, a.big, b.big, acc);
  }
};

// ------------------------------------------------------------------ element conversions

__device__ __forceinline__ float elem_to_float(float x) { return x; }
__device__ __forceinline__ float elem_to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float elem_to_float(__half x) { return __half2float(x); }

// Round to nearest even.
template <class Elem>
__device__ __forceinline__ Elem elem_from_float(float x) {
  if constexpr (std::is_same_v<Elem, float>) return x;
  else if constexpr (std::is_same_v<Elem, __nv_bfloat16>) return __float2bfloat16_rn(x);
  else return __float2half_rn(x);
}

// A stored T as a shared-memory element: the same bits for the 16-bit formats, widened for float.
template <class Elem, class T>
__device__ __forceinline__ Elem to_elem(T x) {
  if constexpr (std::is_same_v<Elem, float>) {
    return float(x);
  } else if constexpr (std::is_same_v<Elem, __nv_bfloat16>) {
    static_assert(std::is_same_v<T, bfloat16>, "bfloat16 tiles hold bfloat16 inputs");
    return __ushort_as_bfloat16(x.bits);
  } else {
    static_assert(std::is_same_v<T, float16>, "float16 tiles hold float16 inputs");
    return __ushort_as_half(x.bits);
  }
}

// ------------------------------------------------------------------ tiles and reductions

__host__ __device__ constexpr int round_up(int x, int m) { return (x + m - 1) / m * m; }

// Copies a rows × cols_padded tile to shared memory (row stride ld elements), reading row r from
// row_ptr(r) (nullptr: a row of zeros); columns cols … cols_padded − 1 are zero. `vectorised`
// allows 16-byte loads: every row pointer 16-byte aligned; ld and cols_padded multiples of
// 16/sizeof(T). Called by all kThreads threads of the block.
template <class T, class Elem, int kThreads, class RowPtr>
__device__ __forceinline__ void load_tile(Elem* dst, int ld, int rows, int cols_padded, int cols,
                                          bool vectorised, RowPtr row_ptr) {
  constexpr int V = kVectorWidth<T>;
  const int chunks = cols_padded / V;
  for (int e = int(threadIdx.x); e < rows * chunks; e += kThreads) {
    const int r = e / chunks, c0 = (e % chunks) * V;
    const T* src = row_ptr(r);
    Elem* d = dst + r * ld + c0;
    if (src != nullptr && vectorised && c0 + V <= cols) {
      if constexpr (sizeof(Elem) == sizeof(T)) {  // same bits: one 16-byte copy
        *reinterpret_cast<uint4*>(d) = *reinterpret_cast<const uint4*>(src + c0);
      } else {
        const Pack<T, V> pack = *reinterpret_cast<const Pack<T, V>*>(src + c0);
#pragma unroll
        for (int i = 0; i < V; ++i) d[i] = to_elem<Elem>(pack.v[i]);
      }
    } else {
#pragma unroll
      for (int i = 0; i < V; ++i)
        d[i] = src != nullptr && c0 + i < cols ? to_elem<Elem>(src[c0 + i]) : elem_from_float<Elem>(0.f);
    }
  }
}

// Online log-sum-exp: (m, s) stands for s·e^m; merges (m2, s2) into it. (−inf, 0) is empty.
__device__ __forceinline__ void lse_merge(float& m, float& s, float m2, float s2) {
  const float hi = fmaxf(m, m2);
  if (hi == -INFINITY) return;  // both empty
  s = s * expf(m - hi) + s2 * expf(m2 - hi);
  m = hi;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// ------------------------------------------------------------------ shared memory

// Bump allocation of the dynamic shared memory, the same on host (sizes) and device (offsets).
struct SmemArena {
  std::size_t bytes = 0;

  template <class E>
  __host__ __device__ std::size_t take(std::size_t count) {
    const std::size_t offset = (bytes + 127) / 128 * 128;  // WMMA wants 32-byte aligned tiles
    bytes = offset + count * sizeof(E);
    return offset;
  }
};

// Lets `kernel` use `bytes` of dynamic shared memory, or throws naming what needs it. The cap is
// raised once per (kernel, device) to all the room the device has beside the kernel's static
// shared memory: the most the kernel may ever take, not this launch's need, so that a smaller
// call from another thread (another dk) cannot lower it between a larger call's setting and its
// launch, and later calls cost one lookup instead of four runtime queries. The cap is only a
// bound; the occupancy follows each launch's own size.
template <class Kernel>
void allow_dynamic_smem(Kernel* kernel, std::size_t bytes, const char* op, const char* what) {
  struct Room {
    std::size_t dynamic, fixed, limit;  // room for dynamic memory, the static part, the device's opt-in limit
  };
  static std::mutex mutex;
  static std::map<std::pair<const void*, int>, Room> rooms;
  int device = 0;
  check(cudaGetDevice(&device), std::string(op) + ": cudaGetDevice");
  Room room{};
  {
    const std::lock_guard<std::mutex> lock(mutex);
    const auto key = std::pair{reinterpret_cast<const void*>(kernel), device};
    auto it = rooms.find(key);
    if (it == rooms.end()) {
      int limit = 0;
      check(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
            std::string(op) + ": reading the shared-memory limit");
      cudaFuncAttributes attributes{};
      check(cudaFuncGetAttributes(&attributes, kernel), std::string(op) + ": reading the kernel's attributes");
      const std::size_t fixed = std::min<std::size_t>(attributes.sharedSizeBytes, std::size_t(limit));
      const Room found{std::size_t(limit) - fixed, fixed, std::size_t(limit)};
      check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(found.dynamic)),
            std::string(op) + ": raising the dynamic shared-memory limit");
      it = rooms.emplace(key, found).first;
    }
    room = it->second;
  }
  require(bytes <= room.dynamic, op, ": ", what, " needs ", bytes, " bytes of dynamic shared memory per block (",
          room.fixed, " static besides), the device allows ", room.limit, " in all");
}

// A stream-ordered float scratch buffer, freed on the stream when it goes out of scope.
class StreamScratch {
 public:
  StreamScratch(std::size_t count, cudaStream_t stream, const char* op) : stream_(stream) {
    if (count > 0)
      check(cudaMallocAsync(reinterpret_cast<void**>(&data_), count * sizeof(float), stream),
            std::string(op) + ": cudaMallocAsync of a scratch buffer");
  }
  StreamScratch(const StreamScratch&) = delete;
  StreamScratch& operator=(const StreamScratch&) = delete;
  ~StreamScratch() {
    if (data_) cudaFreeAsync(data_, stream_);  // no throwing from a destructor
  }
  float* data() const { return data_; }

 private:
  cudaStream_t stream_;
  float* data_ = nullptr;
};

}  // namespace gecko::cuda::detail
