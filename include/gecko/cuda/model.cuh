#pragma once
// The model on the GPU (spec §4): embedding, the blocks, the final norm and the output layer,
// with the streaming state kept in device memory, the device twin of model::Model. Built from the
// same parameters (model::ModelParams<float>, or a checkpoint), it gives the same logits and the
// same state (ModelState::to_host() returns a model::ModelState) for every allowed piece schedule.
//
//   auto model = gecko::cuda::load_model<gecko::policy::Gecko, float>("model.safetensors");
//   gecko::cuda::ModelState<float> state;                 // one per stream, on the device
//   auto logits = model.forward(tokens, state);           // host (B, L) int64 → device (B, L, V)
//   gecko::Tensor<float> host = logits.to_host();
//
// A layer runs the kernels of cuda/: timestep_norm, cema, group_norm, linear (cuBLASLt, bias
// epilogue; the two output projections share one accumulating GEMM), projections (z norm, the
// q/k/aq/ak rows and RoPE in one kernel), sliding_chunk_attention, working_memory; the
// elementwise glue (SiLU of v, o = s ⊙ silu(r) + a, the residuals, the SwiGLU product) is one
// fused expression each, run by the CudaExecutor. Activations live in per-call scratch buffers that
// grow to the largest call and are then reused (Runner::scratch), so a stream allocates nothing
// per piece once its largest piece has run.
//
// Element type T: float, bfloat16 or float16 for the activations, the weights and the cached
// keys and values; the statistics (timestep-norm mean and var, the CEMA state, the working memory
// and its log normaliser) are float32 whatever T, as the kernels keep them.
//
// State (spec §4.5): per layer the input norm's (count, mean, var), the CEMA state h, the cached
// window of keys (after RoPE) and values (the last complete chunk plus the current partial one,
// at most 2C − 1 tokens; the current partial chunk alone for block-diagonal attention without a
// memory), the working memory with its key window and log normaliser, kv_count; the final norm's
// state; and the document bookkeeping (window ids, the memory's document). The window buffers
// are allocated once at 2C tokens (C for a window of the current chunk alone), twice (a call
// builds the new window in the second buffer, then the two swap), so the state's device memory
// is constant in the stream length. The document ids stay on the host (they derive from the
// host's tokens) and travel with each call's tokens. The rules of a stream (the allowed pieces
// and their checks, feed's cuts, the document ids, the window lengths) are model/streaming.hpp's,
// the CPU model's own code.
//
// Variants: every preset of policy/presets.hpp, as the CPU layers assemble them: the input (and
// final) norm is cuda::timestep_decay_norm or cuda::timestep_cumulative_norm; the CEMA residual
// is learned (ω, γ/√N) or not; block-diagonal attention reads the current chunk's part of the
// window (a copy of its last start mod C tokens when the window also keeps the previous chunk for
// the working memory) with RoPE at the chunk-local positions; without a working memory the window
// of block-diagonal attention keeps only the current partial chunk (cpu::attention_window_after).

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "gecko/core/complex.hpp"
#include "gecko/core/dtype.hpp"
#include "gecko/core/error.hpp"
#include "gecko/core/shape.hpp"
#include "gecko/core/tensor.hpp"
#include "gecko/cpu/cema.hpp"
#include "gecko/cpu/sliding_chunk_attention.hpp"
#include "gecko/cuda/blas.cuh"
#include "gecko/cuda/cema.cuh"
#include "gecko/cuda/check.cuh"
#include "gecko/cuda/device_buffer.cuh"
#include "gecko/cuda/executor.cuh"
#include "gecko/cuda/group_norm.cuh"
#include "gecko/cuda/linear.cuh"
#include "gecko/cuda/projections.cuh"
#include "gecko/cuda/sliding_chunk_attention.cuh"
#include "gecko/cuda/timestep_norm.cuh"
#include "gecko/cuda/working_memory.cuh"
#include "gecko/expr/expr.hpp"
#include "gecko/layers/block.hpp"
#include "gecko/layers/layer_state.hpp"
#include "gecko/layers/mega.hpp"
#include "gecko/model/checkpoint.hpp"
#include "gecko/model/config.hpp"
#include "gecko/model/model.hpp"
#include "gecko/model/state.hpp"
#include "gecko/model/streaming.hpp"

namespace gecko::cuda {

namespace detail {

// ------------------------------------------------------------------ device helpers

inline constexpr int kCopyThreads = 256;

// dst[b, dst_at + i, :] = src[b, src_at + i, :] for i < count, rows of `row` elements; dst holds
// dst_len rows per batch row, src holds src_len. n = batch·count·row.
template <class T>
__global__ void copy_rows_kernel(T* __restrict__ dst, std::int64_t dst_len, std::int64_t dst_at,
                                 const T* __restrict__ src, std::int64_t src_len, std::int64_t src_at,
                                 std::int64_t span, std::int64_t row, std::int64_t n) {
  const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const std::int64_t b = i / span, j = i % span;  // span = count·row: contiguous in both
    dst[(b * dst_len + dst_at) * row + j] = src[(b * src_len + src_at) * row + j];
  }
}

template <class T>
void copy_rows(T* dst, std::int64_t dst_len, std::int64_t dst_at, const T* src, std::int64_t src_len,
               std::int64_t src_at, std::int64_t count, std::int64_t row, std::int64_t batch,
               cudaStream_t stream) {
  const std::int64_t n = batch * count * row;
  if (n == 0) return;
  const std::int64_t blocks = std::min<std::int64_t>((n + kCopyThreads - 1) / kCopyThreads, 4096);
  copy_rows_kernel<T><<<unsigned(blocks), kCopyThreads, 0, stream>>>(dst, dst_len, dst_at, src, src_len,
                                                                      src_at, count * row, row, n);
  check_launch("cuda::model: copy_rows_kernel");
}

// dst (B, keep, row) = the last `keep` rows of old (B, Lk, row) ++ add (B, L, row); keep <= Lk + L.
template <class T>
void keep_last_rows(T* dst, const T* old, std::int64_t Lk, const T* add, std::int64_t L,
                    std::int64_t keep, std::int64_t row, std::int64_t B, cudaStream_t stream) {
  const std::int64_t from_old = std::max<std::int64_t>(0, keep - L);
  if (from_old > 0) copy_rows(dst, keep, 0, old, Lk, Lk - from_old, from_old, row, B, stream);
  copy_rows(dst, keep, from_old, add, L, L - (keep - from_old), keep - from_old, row, B, stream);
}

template <class To, class From>
Tensor<To> convert(const Tensor<From>& t) {
  if constexpr (std::is_same_v<To, From>) {
    return t;
  } else {
    if (t.empty()) return {};
    Tensor<To> out(t.shape());
    for (std::int64_t i = 0; i < t.size(); ++i) out[i] = To(float(t[i]));
    return out;
  }
}

// A host float tensor as a device tensor of T (converted on the host); empty stays empty.
template <class T>
DeviceBuffer<T> upload(const Tensor<float>& t, cudaStream_t stream) {
  if (t.empty()) return {};
  return DeviceBuffer<T>(convert<T>(t), stream);
}

// host → existing device memory (numel elements), converting to T on the host.
template <class T, class H>
void copy_to_device(T* dst, const Tensor<H>& src, cudaStream_t stream, const char* what) {
  const Tensor<T> t = convert<T>(src);
  if (t.size() > 0)
    check(cudaMemcpyAsync(dst, t.data(), std::size_t(t.size()) * sizeof(T), cudaMemcpyHostToDevice, stream),
          what);
}

// device → host, synchronising the stream.
template <class T>
Tensor<T> download(const T* src, const Shape& shape, cudaStream_t stream) {
  Tensor<T> out(shape);
  if (out.size() > 0)
    check(cudaMemcpyAsync(out.data(), src, std::size_t(out.size()) * sizeof(T), cudaMemcpyDeviceToHost, stream),
          "cuda::model: copying state to the host");
  check(cudaStreamSynchronize(stream), "cuda::model: synchronising the stream");
  return out;
}

template <class T>
TensorView<const T> view_or_none(const DeviceBuffer<T>& b) {
  return b.size() > 0 ? b.view() : TensorView<const T>{};
}

}  // namespace detail

// ------------------------------------------------------------------ scratch and runner

// A device allocation viewed with any shape that fits; it grows (dropping its contents) when a
// view needs more.
template <class X>
class DeviceArray {
 public:
  // The first shape.numel() elements as a tensor of `shape`; poison fills them with 0xFF bytes,
  // a NaN in every float format, so that an element no kernel writes shows up.
  TensorView<X> take(const Shape& shape, bool poison, cudaStream_t stream) {
    const std::int64_t n = shape.numel();
    reserve(n);
    TensorView<X> v(buffer_.data(), shape, Space::Device);
    if (poison && n > 0)
      check(cudaMemsetAsync(v.data, 0xFF, std::size_t(n) * sizeof(X), stream), "cuda::model: poisoning a buffer");
    return v;
  }
  // A device copy of a host tensor.
  TensorView<const X> upload(const Tensor<X>& host, cudaStream_t stream) {
    const TensorView<X> v = take(host.shape(), false, stream);
    if (host.size() > 0)
      check(cudaMemcpyAsync(v.data, host.data(), std::size_t(host.size()) * sizeof(X), cudaMemcpyHostToDevice,
                            stream),
            "cuda::model: uploading a call's input");
    return v;
  }
  // Room for n elements from now on, so that no later take up to n reallocates (a reallocation
  // frees the old buffer, which synchronises the device).
  void reserve(std::int64_t n) {
    if (n <= capacity_) return;
    buffer_ = DeviceBuffer<X>();  // free first: the two need not fit together
    buffer_ = DeviceBuffer<X>(Shape{n});
    capacity_ = n;
  }
  std::int64_t bytes() const { return capacity_ * std::int64_t(sizeof(X)); }

 private:
  DeviceBuffer<X> buffer_;
  std::int64_t capacity_ = 0;
};

// The per-call buffers of the layers and the model, each sized by the largest call so far.
template <class T>
struct Scratch {
  bool poison = false;  // fill every activation with NaN before it is written (tests)
  DeviceArray<T> hidden, xh, c, m, z, q, k, aq, ak, v, r, s, a, h, y, n, f1, f3, u, logits;
  DeviceArray<T> own_key, own_value;  // block-diagonal attention's part of a longer window
  DeviceArray<float> rope;
  DeviceArray<std::int64_t> tokens, positions, seg, window_seg, mem_seg, own_seg;
  DeviceArray<bool> bos;

  std::int64_t bytes() const {
    std::int64_t total = rope.bytes() + tokens.bytes() + positions.bytes() + seg.bytes() +
                         window_seg.bytes() + mem_seg.bytes() + own_seg.bytes() + bos.bytes();
    for (const DeviceArray<T>* b : {&hidden, &xh, &c, &m, &z, &q, &k, &aq, &ak, &v, &r, &s, &a, &h, &y,
                                    &n, &f1, &f3, &u, &logits, &own_key, &own_value})
      total += b->bytes();
    return total;
  }
};

// What the layers run with: the stream (through the executor, which launches the elementwise
// expressions), the cuBLASLt handle on the same stream, and the scratch buffers.
template <class T>
struct Runner {
  CudaExecutor exec;
  BlasHandle blas;
  Scratch<T> scratch;

  explicit Runner(cudaStream_t stream = nullptr) : exec(stream), blas(stream) {}
  cudaStream_t stream() const { return exec.stream(); }
};

// ------------------------------------------------------------------ state

// Priors of a timestep norm (spec §3.1 buffers): where a stream's statistics start.
struct NormPriors {
  std::int64_t count = 0;
  Tensor<float> mean, var;  // (G)
};

// A timestep norm's streaming state in device memory (cuda::timestep_decay_norm or
// cuda::timestep_cumulative_norm reads and overwrites it).
struct NormState {
  DeviceBuffer<std::int64_t> count;  // (B)
  DeviceBuffer<float> mean, var;     // (B, G) raw EMAs

  TimestepNormState view() { return {count.view(), mean.view(), var.view()}; }

  // The priors broadcast over the batch, or the parts of `host` that exist.
  template <class H>
  static NormState start(const NormPriors& priors, std::int64_t B, const cpu::TimestepNormState<H>& host,
                         cudaStream_t stream) {
    const std::int64_t G = priors.mean.size();
    Tensor<std::int64_t> count({B}, priors.count);
    Tensor<float> mean({B, G}), var({B, G});
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t g = 0; g < G; ++g) mean(b, g) = priors.mean[g], var(b, g) = priors.var[g];
    if (!host.count.empty()) {
      check_shape("cuda::model", "state norm.count", host.count.shape(), Shape{B});
      count = host.count;
    }
    if (!host.mean.empty()) {
      check_shape("cuda::model", "state norm.mean", host.mean.shape(), Shape{B, G});
      mean = detail::convert<float>(host.mean);
    }
    if (!host.var.empty()) {
      check_shape("cuda::model", "state norm.var", host.var.shape(), Shape{B, G});
      var = detail::convert<float>(host.var);
    }
    return {DeviceBuffer<std::int64_t>(count, stream), DeviceBuffer<float>(mean, stream),
            DeviceBuffer<float>(var, stream)};
  }

  template <class H>
  cpu::TimestepNormState<H> to_host(cudaStream_t stream) const {
    return {count.to_host(stream), detail::convert<H>(mean.to_host(stream)),
            detail::convert<H>(var.to_host(stream))};
  }

  std::int64_t bytes() const {
    return count.size() * std::int64_t(sizeof(std::int64_t)) + (mean.size() + var.size()) * std::int64_t(sizeof(float));
  }
};

// A cached window: two buffers of the same capacity; a call writes the new window into the back
// buffer from the front one and the call's tokens, then the two swap.
template <class T>
class Window {
 public:
  void allocate(std::int64_t elements) {
    for (auto& b : buffers_) b = DeviceBuffer<T>(Shape{elements});
    front_ = 0;
  }
  T* front() { return buffers_[front_].data(); }
  const T* front() const { return buffers_[front_].data(); }
  T* back() { return buffers_[1 - front_].data(); }
  void flip() { front_ = 1 - front_; }
  std::int64_t capacity() const { return buffers_[0].size(); }
  std::int64_t bytes() const { return 2 * capacity() * std::int64_t(sizeof(T)); }

 private:
  DeviceBuffer<T> buffers_[2];
  int front_ = 0;
};

struct LayerDims {
  std::int64_t B = 0, D = 0, N = 0, G = 0, H = 0, dk = 0, dv = 0, C = 0;
  bool memory = false;  // the variant has a working memory

  friend bool operator==(const LayerDims&, const LayerDims&) = default;
  std::string str() const {
    return "(B " + std::to_string(B) + ", D " + std::to_string(D) + ", N " + std::to_string(N) + ", G " +
           std::to_string(G) + ", H " + std::to_string(H) + ", dk " + std::to_string(dk) + ", dv " +
           std::to_string(dv) + ", C " + std::to_string(C) + (memory ? ", with memory)" : ", no memory)");
  }
};

// One layer's streaming state in device memory (spec §4.5), the twin of layers::LayerState.
template <class T>
struct LayerState {
  LayerDims dims;
  NormState norm;               // input norm
  DeviceBuffer<float> cema_h;   // (B, D, N, 2) complex float32
  Window<T> key, value;         // (B, Lk, H, dk) after RoPE, (B, Lk, H, dv); 2C tokens each (C for
                                //   a window of the current chunk alone)
  Window<T> memory_key;         // (B, H, Lk, dk) raw ak (working memory only)
  DeviceBuffer<float> memory;   // (B, H, dk, dv) (working memory only)
  DeviceBuffer<float> log_norm; // (B, H, dk)
  bool memory_present = false;  // whether memory/log_norm hold a memory yet
  std::int64_t window = 0;      // Lk: tokens cached
  std::int64_t kv_count = 0;    // tokens seen = RoPE position of the next token

  bool started() const { return dims.B > 0; }

  TensorView<const T> key_view() const {
    return {key.front(), Shape{dims.B, window, dims.H, dims.dk}, Space::Device};
  }
  TensorView<const T> value_view() const {
    return {value.front(), Shape{dims.B, window, dims.H, dims.dv}, Space::Device};
  }
  TensorView<const T> memory_key_view() const {
    return {memory_key.front(), Shape{dims.B, dims.H, window, dims.dk}, Space::Device};
  }

  // Device bytes held (the window buffers at their capacity): constant in the stream length.
  std::int64_t bytes() const {
    return norm.bytes() + (cema_h.size() + memory.size() + log_norm.size()) * std::int64_t(sizeof(float)) +
           key.bytes() + value.bytes() + memory_key.bytes();
  }

  // The state as the CPU layer holds it (float32 statistics converted to the host type).
  layers::LayerState<accum_t<T>> to_host(cudaStream_t stream = nullptr) const {
    using H = accum_t<T>;
    layers::LayerState<H> s;
    s.kv_count = kv_count;
    if (!started()) return s;
    s.norm = norm.to_host<H>(stream);
    s.cema_h = detail::convert<H>(cema_h.to_host(stream));
    const auto [B, D, N, G, Hh, dk, dv, C, has_memory] = dims;
    (void)D, (void)N, (void)G, (void)C;
    if (window > 0) {
      s.window.key = detail::convert<H>(detail::download(key.front(), Shape{B, window, Hh, dk}, stream));
      s.window.value = detail::convert<H>(detail::download(value.front(), Shape{B, window, Hh, dv}, stream));
      if (has_memory)
        s.memory.key = detail::convert<H>(detail::download(memory_key.front(), Shape{B, Hh, window, dk}, stream));
    }
    if (has_memory && memory_present) {
      s.memory.memory = detail::convert<H>(memory.to_host(stream));
      s.memory.log_norm = detail::convert<H>(log_norm.to_host(stream));
    }
    return s;
  }
};

// What every layer of a call reads besides its input: the RoPE table of the call's positions and
// the document ids (all in device memory; default views where absent).
struct LayerInputs {
  TensorView<const float> rope;               // (L, dk/2, 2); none without RoPE
  TensorView<const bool> bos;                 // (B, L); none without documents
  TensorView<const std::int64_t> seg;         // (B, L) document ids of the call's tokens
  TensorView<const std::int64_t> window_seg;  // (B, Lk) document ids of the cached window
  TensorView<const std::int64_t> mem_seg;     // (B) document of the working memory
};

// ------------------------------------------------------------------ layers

// The policy's timestep norm (a block's input norm, and the final norm) on the device: the decay
// norm restarts at a bos; the cumulative norm has no documents, so bos is always absent there.
template <class Policy, class T>
void policy_norm(TensorView<const T> x, TensorView<const bool> bos, NormState& state,
                 const TimestepNormParams<T>& p, TensorView<T> y, cudaStream_t stream) {
  if constexpr (Policy::input_norm::resets_at_bos) {
    timestep_decay_norm<T>(x, bos, state.view(), p, y, stream);
  } else {
    require(bos.data == nullptr, "cuda::timestep_cumulative_norm: has no document resets; bos must be absent");
    timestep_cumulative_norm<T>(x, state.view(), p, y, stream);
  }
}

template <class T>
constexpr void check_gpu_type() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, bfloat16> || std::is_same_v<T, float16>,
                "cuda::Model: T must be float, bfloat16 or float16 (the element types the kernels read)");
}

// The MEGA sub-layer (spec §4.3 steps 1-14) with its parameters in device memory.
template <class Policy, class T>
class Mega {
 public:
  using HostT = accum_t<T>;

  // Checks the parameters (layers::check_mega_parameters); uploads them (converted to T), the CEMA
  // coefficients and the rows Γ = (1 + gamma)/√dk, β (float32).
  Mega(const model::Config& config, const layers::MegaParams<float>& p, cudaStream_t stream) : c_(config) {
    check_gpu_type<T>();
    c_.validate();
    layers::check_mega_parameters<Policy>(c_, p);
    priors_ = {p.timenorm.prior_count[0], p.timenorm.prior_mean, p.timenorm.prior_var};
    tsn_weight_ = detail::upload<T>(p.timenorm.weight, stream);
    tsn_bias_ = detail::upload<T>(p.timenorm.bias, stream);
    cpu::CemaParams<float> cema_params = p.cema;
    cema_params.gamma_scale = Policy::cema::gamma_scale(c_.cema_ndim);
    const cpu::CemaCoefficients<float> coeffs = cpu::cema_coefficients(cema_params);
    cema_p_ = DeviceBuffer<float>(coeffs.p, stream);
    cema_q_ = DeviceBuffer<Complex<float>>(coeffs.q, stream);
    cema_gamma_ = DeviceBuffer<Complex<float>>(coeffs.gamma, stream);
    omega_ = detail::upload<T>(p.cema.omega, stream);
    rms_weight_ = detail::upload<T>(p.rmsnorm_weight, stream);
    wz_ = detail::upload<T>(p.wz_weight, stream);
    bz_ = detail::upload<T>(p.wz_bias, stream);
    wv_ = detail::upload<T>(p.wv_weight, stream);
    bv_ = detail::upload<T>(p.wv_bias, stream);
    wr_ = detail::upload<T>(p.wr_weight, stream);
    br_ = detail::upload<T>(p.wr_bias, stream);
    wh1_ = detail::upload<T>(p.wh1_weight, stream);
    bh1_ = detail::upload<T>(p.wh1_bias, stream);
    wh2_ = detail::upload<T>(p.wh2_weight, stream);
    // Γ_j = (1 + gamma_j) / √dk, as layers::Mega forms it; rows 2 and 3 only with a memory.
    const std::int64_t S = c_.z_dim, rows = Policy::memory::enabled ? 4 : 2;
    Tensor<float> scale({rows, S}), shift({rows, S});
    const float rsqrt_dk = 1.f / std::sqrt(float(c_.head_dim()));
    for (std::int64_t i = 0; i < rows * S; ++i) {
      scale[i] = (1.f + p.gamma[i]) * rsqrt_dk;
      shift[i] = p.beta[i];
    }
    row_scale_ = DeviceBuffer<float>(scale, stream);
    row_shift_ = DeviceBuffer<float>(shift, stream);
  }

  const model::Config& config() const { return c_; }

  // The sizes of this layer's state for B sequences.
  LayerDims dims(std::int64_t B) const {
    return {B, c_.model_dim, c_.cema_ndim, c_.timenorm_num_groups, c_.num_heads, c_.head_dim(),
            c_.value_head_dim(), c_.chunk_size, Policy::memory::enabled};
  }

  // A fresh stream's state for B sequences: the norm at its priors, h = 0, no window, no memory.
  // poison: fill the buffers that every call writes before reading with NaN (tests).
  LayerState<T> new_state(std::int64_t B, bool poison, cudaStream_t stream) const {
    require(B >= 1, "cuda::Mega: a state needs at least one sequence (B >= 1), got ", B);
    LayerState<T> s;
    s.dims = dims(B);
    const LayerDims& d = s.dims;
    s.norm = NormState::start(priors_, B, cpu::TimestepNormState<HostT>{}, stream);
    s.cema_h = DeviceBuffer<float>(Shape{B, d.D, d.N, 2});
    check(cudaMemsetAsync(s.cema_h.data(), 0, std::size_t(s.cema_h.size()) * sizeof(float), stream),
          "cuda::Mega: zeroing the CEMA state");
    // window ++ call never exceeds 2C tokens; C − 1 where the window is the current chunk only
    const std::int64_t tokens = Policy::window_keeps_previous_chunk ? 2 * d.C : d.C;
    s.key.allocate(B * tokens * d.H * d.dk);
    s.value.allocate(B * tokens * d.H * d.dv);
    if (d.memory) {
      s.memory_key.allocate(B * d.H * tokens * d.dk);
      s.memory = DeviceBuffer<float>(Shape{B, d.H, d.dk, d.dv});
      s.log_norm = DeviceBuffer<float>(Shape{B, d.H, d.dk});
    }
    if (poison) {
      auto nan = [&](void* p, std::int64_t elements, std::size_t size) {
        if (elements > 0)
          check(cudaMemsetAsync(p, 0xFF, std::size_t(elements) * size, stream), "cuda::Mega: poisoning the state");
      };
      for (int side = 0; side < 2; ++side) {
        nan(s.key.back(), s.key.capacity(), sizeof(T));
        nan(s.value.back(), s.value.capacity(), sizeof(T));
        nan(s.memory_key.back(), s.memory_key.capacity(), sizeof(T));
        s.key.flip(), s.value.flip(), s.memory_key.flip();
      }
      nan(s.memory.data(), s.memory.size(), sizeof(float));
      nan(s.log_norm.data(), s.log_norm.size(), sizeof(float));
    }
    return s;
  }

  // A device copy of a CPU layer state (its absent parts: priors, zero, no window, no memory).
  LayerState<T> state_from_host(const layers::LayerState<HostT>& host, std::int64_t B, cudaStream_t stream) const {
    constexpr const char* op = "cuda::Mega::state_from_host";
    LayerState<T> s = new_state(B, false, stream);
    const LayerDims d = s.dims;
    s.norm = NormState::start(priors_, B, host.norm, stream);
    if (!host.cema_h.empty()) {
      check_shape(op, "cema_h", host.cema_h.shape(), Shape{B, d.D, d.N, 2});
      detail::copy_to_device(s.cema_h.data(), host.cema_h, stream, op);
    }
    const std::int64_t Lk = host.window.length(), most = Policy::window_keeps_previous_chunk ? 2 * d.C - 1 : d.C - 1;
    require(Lk <= most, op, ": a window of ", Lk, " tokens is longer than the ", most,
            " tokens the cache ever holds");
    if (Lk > 0) {
      check_shape(op, "window.key", host.window.key.shape(), Shape{B, Lk, d.H, d.dk});
      check_shape(op, "window.value", host.window.value.shape(), Shape{B, Lk, d.H, d.dv});
      detail::copy_to_device(s.key.front(), host.window.key, stream, op);
      detail::copy_to_device(s.value.front(), host.window.value, stream, op);
    }
    if constexpr (Policy::memory::enabled) {
      if (Lk > 0) {
        check_shape(op, "memory.key", host.memory.key.shape(), Shape{B, d.H, Lk, d.dk});
        detail::copy_to_device(s.memory_key.front(), host.memory.key, stream, op);
      }
      if (!host.memory.memory.empty()) {
        check_shape(op, "memory.memory", host.memory.memory.shape(), Shape{B, d.H, d.dk, d.dv});
        check_shape(op, "memory.log_norm", host.memory.log_norm.shape(), Shape{B, d.H, d.dk});
        detail::copy_to_device(s.memory.data(), host.memory.memory, stream, op);
        detail::copy_to_device(s.log_norm.data(), host.memory.log_norm, stream, op);
        s.memory_present = true;
      }
    }
    s.window = Lk;
    s.kv_count = host.kv_count;
    return s;
  }

  // x (B, L, D) → y (B, L, D) = x + wh1(m) + wh2(o); y may be x. Advances state. The call rules
  // of spec §4.4 hold for start = state.kv_count (the attention and memory ops check them).
  void forward(TensorView<const T> x, const LayerInputs& in, LayerState<T>& state, Runner<T>& rt,
               TensorView<T> y) const {
    constexpr const char* op = "cuda::Mega";
    detail::require_device(op, "x", x);
    require(x.rank() == 3 && x.shape[2] == c_.model_dim, op, ": x must have shape (B, L, D = ",
            c_.model_dim, "), got ", x.shape.str());
    const std::int64_t B = x.shape[0], L = x.shape[1], D = c_.model_dim, S = c_.z_dim, E = c_.value_dim;
    const std::int64_t H = c_.num_heads, dk = c_.head_dim(), dv = c_.value_head_dim(), C = c_.chunk_size;
    require(state.started() && state.dims.B == B, op, ": the state was made for batch size ", state.dims.B,
            ", x has ", B, " rows");
    require(state.dims == dims(B), op, ": the state was made for a layer of sizes ", state.dims.str(),
            ", this layer has ", dims(B).str());
    check_shape(op, "y", y.shape, x.shape);
    const std::int64_t Lk = state.window;
    const cudaStream_t stream = rt.stream();
    Scratch<T>& ws = rt.scratch;
    auto take = [&](DeviceArray<T>& a, const Shape& shape) { return a.take(shape, ws.poison, stream); };
    using expr::input;

    // 1-3: input norm, CEMA, RMS norm                                            (B, L, D)
    const TensorView<T> xh = take(ws.xh, {B, L, D});
    policy_norm<Policy, T>(x, in.bos, state.norm,
                           {tsn_weight_.view(), tsn_bias_.view(), c_.timenorm_num_groups, c_.timenorm_beta1,
                            c_.timenorm_beta2, c_.norm_eps},
                           xh, stream);
    const TensorView<T> c = take(ws.c, {B, L, D});
    cema<T>(xh, in.bos, state.cema_h.view(), {cema_p_.view(), cema_q_.view(), cema_gamma_.view()},
            detail::view_or_none(omega_), c, stream);
    const TensorView<T> m = take(ws.m, {B, L, D});
    group_rms_norm<T>(c, c_.layernorm_num_groups, c_.norm_eps, detail::view_or_none(rms_weight_), m, stream);

    // 4-6, 9: z, then per head its RMS norm, the rows q, k (, aq, ak) and RoPE   (B, L, S)
    const TensorView<T> z = take(ws.z, {B, L, S});
    linear<T>(m, wz_.view(), bz_.view(), z, rt.blas);
    const TensorView<T> q = take(ws.q, {B, L, H, dk}), k = take(ws.k, {B, L, H, dk});
    TensorView<T> aq, ak;
    if constexpr (Policy::memory::enabled) aq = take(ws.aq, {B, L, S}), ak = take(ws.ak, {B, L, S});
    z_projections<T>(z, {row_scale_.view(), row_shift_.view()}, int(H), c_.norm_eps, in.rope, c_.rope_heads(),
                     q, k, aq, ak, stream);

    // 7-8: v = silu(wv(x̂)) from the input norm's output; r = wr(m), its silu fused below  (B, L, E)
    const TensorView<T> v = take(ws.v, {B, L, E});
    linear<T>(xh, wv_.view(), bv_.view(), v, rt.blas);
    gecko::run(expr::assign(v, expr::silu(input(v))), rt.exec);
    const TensorView<T> r = take(ws.r, {B, L, E});
    linear<T>(m, wr_.view(), br_.view(), r, rt.blas);

    // 10: attention over the cached window and the call                          (B, L, E)
    const TensorView<const T> v4(v.data, Shape{B, L, H, dv}, Space::Device);
    const TensorView<T> s = take(ws.s, {B, L, E});
    attend(q, k, v4, in, state, rt, s);

    // 11-12: working memory, and o = s ⊙ silu(r) (+ a): only the attention output is gated
    // window ++ call as the attention returns it, before the cut at a chunk boundary
    const std::int64_t keep_call = cpu::attention_window_length(Lk, L, C, cpu::AttentionPattern::SlidingChunks);
    if constexpr (Policy::memory::enabled) {
      const TensorView<T> a = take(ws.a, {B, L, E});
      WorkingMemoryState<T> memory{Lk > 0 ? state.memory_key_view() : TensorView<const T>{}, state.memory.view(),
                                   state.log_norm.view(), state.memory_present};
      const TensorView<T> new_key(state.memory_key.back(), Shape{B, H, keep_call, dk}, Space::Device);
      working_memory<T>(aq, ak, v, Lk > 0 ? state.value_view() : TensorView<const T>{}, memory,
                        {in.seg, Lk > 0 ? in.window_seg : TensorView<const std::int64_t>{}, in.mem_seg}, int(H), C,
                        a, new_key, stream);
      state.memory_present = memory.present;
      gecko::run(expr::assign(s, input(s) * expr::silu(input(r)) + input(a)), rt.exec);
    } else {
      gecko::run(expr::assign(s, input(s) * expr::silu(input(r))), rt.exec);
    }

    // 13-14: y = x + (wh1(m) + wh2(o)), the second projection accumulating onto the first
    const TensorView<T> h = take(ws.h, {B, L, D});
    linear<T>(m, wh1_.view(), bh1_.view(), h, rt.blas);
    linear<T>(s, wh2_.view(), {}, h, rt.blas, Accumulate::Yes);
    gecko::run(expr::assign(y, input(x) + input(h)), rt.exec);

    advance_window(state, k, v, L, keep_call, stream);
  }

 private:
  // Step 10: s = attention of q over the keys of [window ++ call] the pattern lets it see. The
  // block-diagonal pattern sees the current chunk only: the window's last start mod C tokens,
  // copied out (with their document ids) when the window also holds the previous chunk.
  void attend(TensorView<const T> q, TensorView<const T> k, TensorView<const T> v4, const LayerInputs& in,
              const LayerState<T>& state, Runner<T>& rt, TensorView<T> s) const {
    const LayerDims& d = state.dims;
    const std::int64_t start = state.kv_count, Lk = state.window, C = d.C;
    const cudaStream_t stream = rt.stream();
    AttentionWindow<T> window{};
    TensorView<const std::int64_t> window_seg{};
    if (Lk > 0) window = {state.key_view(), state.value_view()}, window_seg = in.window_seg;
    constexpr auto pattern = Policy::attention::pattern;
    if constexpr (pattern == cpu::AttentionPattern::BlockDiagonal && Policy::window_keeps_previous_chunk) {
      const std::int64_t own = start % C;  // the current chunk's tokens before the call
      if (own < Lk) {
        Scratch<T>& ws = rt.scratch;
        window = {};
        window_seg = {};
        if (own > 0) {
          // Sized once for the longest part, C − 1 tokens: it grows by one token per step early in
          // a stream, and each regrowth would synchronise the device.
          ws.own_key.reserve(d.B * (C - 1) * d.H * d.dk);
          ws.own_value.reserve(d.B * (C - 1) * d.H * d.dv);
          ws.own_seg.reserve(d.B * (C - 1));
          const TensorView<T> key = ws.own_key.take({d.B, own, d.H, d.dk}, ws.poison, stream);
          const TensorView<T> value = ws.own_value.take({d.B, own, d.H, d.dv}, ws.poison, stream);
          detail::copy_rows(key.data, own, 0, state.key.front(), Lk, Lk - own, own, d.H * d.dk, d.B, stream);
          detail::copy_rows(value.data, own, 0, state.value.front(), Lk, Lk - own, own, d.H * d.dv, d.B, stream);
          window = {key, value};
          if (in.window_seg.data != nullptr) {
            const TensorView<std::int64_t> seg = ws.own_seg.take({d.B, own}, ws.poison, stream);
            detail::copy_rows(seg.data, own, 0, in.window_seg.data, Lk, Lk - own, own, 1, d.B, stream);
            window_seg = seg;
          }
        }
      }
    }
    sliding_chunk_attention<T>(q, k, v4, window, in.seg, window_seg, C, start, pattern, s, stream);
  }

  // Spec §4.5: the window becomes window ++ call (prefill: the call's last chunk), and at a chunk
  // boundary it keeps only its last C tokens; the same for the memory's key window, which the
  // working-memory kernel has written uncut into its back buffer. Block-diagonal attention without
  // a memory keeps only the current partial chunk: (Lk + L) mod C tokens.
  void advance_window(LayerState<T>& state, TensorView<const T> k, TensorView<const T> v, std::int64_t L,
                      std::int64_t keep_call, cudaStream_t stream) const {
    const LayerDims& d = state.dims;
    const std::int64_t end = state.kv_count + L, Lk = state.window;
    const std::int64_t keep =
        Policy::window_keeps_previous_chunk
            ? model::window_length_after(Lk, L, end, d.C)  // <= keep_call
            : cpu::attention_window_length(Lk, L, d.C, cpu::AttentionPattern::BlockDiagonal);
    detail::keep_last_rows(state.key.back(), state.key.front(), Lk, k.data, L, keep, d.H * d.dk, d.B, stream);
    detail::keep_last_rows(state.value.back(), state.value.front(), Lk, v.data, L, keep, d.H * d.dv, d.B, stream);
    state.key.flip();
    state.value.flip();
    if (d.memory) {
      state.memory_key.flip();
      if (keep < keep_call) {
        detail::keep_last_rows<T>(state.memory_key.back(), nullptr, 0, state.memory_key.front(), keep_call, keep,
                                  d.dk, d.B * d.H, stream);
        state.memory_key.flip();
      }
    }
    state.window = keep;
    state.kv_count = end;
  }

  model::Config c_;
  NormPriors priors_;
  DeviceBuffer<T> tsn_weight_, tsn_bias_, omega_, rms_weight_;
  DeviceBuffer<float> cema_p_;
  DeviceBuffer<Complex<float>> cema_q_, cema_gamma_;
  DeviceBuffer<T> wz_, bz_, wv_, bv_, wr_, br_, wh1_, bh1_, wh2_;
  DeviceBuffer<float> row_scale_, row_shift_;  // (R, S) Γ and β
};

// One block (spec §4.3): the MEGA sub-layer, then the normalised feed-forward network.
template <class Policy, class T>
class Block {
 public:
  Block(const model::Config& config, const layers::BlockParams<float>& p, cudaStream_t stream)
      : mega_(config, p.mega, stream) {
    const model::Config& c = mega_.config();
    const cpu::FeedForwardParams<float>& f = p.nffn;
    layers::check_ffn_parameters(c, f);
    norm_weight_ = detail::upload<T>(f.norm_weight, stream);
    norm_bias_ = detail::upload<T>(f.norm_bias, stream);
    fc1_ = detail::upload<T>(f.fc1, stream);
    fc3_ = detail::upload<T>(f.fc3, stream);
    fc2_ = detail::upload<T>(f.fc2, stream);
    alpha_ = detail::upload<T>(f.alpha, stream);
  }

  const Mega<Policy, T>& mega() const { return mega_; }

  // x (B, L, D) → out (B, L, D); out may be x (the block then runs in place).
  void forward(TensorView<const T> x, const LayerInputs& in, LayerState<T>& state, Runner<T>& rt,
               TensorView<T> out) const {
    const model::Config& c = mega_.config();
    check_shape("cuda::Block", "out", out.shape, x.shape);
    const std::int64_t B = x.shape[0], L = x.shape[1], D = c.model_dim, F = c.ffn_hidden_dim;
    const cudaStream_t stream = rt.stream();
    Scratch<T>& ws = rt.scratch;
    auto take = [&](DeviceArray<T>& a, const Shape& shape) { return a.take(shape, ws.poison, stream); };
    using expr::input;

    const TensorView<T> y = take(ws.y, {B, L, D});
    mega_.forward(x, in, state, rt, y);
    // 15-16: n = LN(y); hidden = silu(fc1(n)) ⊙ fc3(n) (SwiGLU) or silu(fc1(n))    (B, L, F)
    const TensorView<T> n = take(ws.n, {B, L, D});
    group_layer_norm<T>(y, c.layernorm_num_groups, c.norm_eps, detail::view_or_none(norm_weight_),
                        detail::view_or_none(norm_bias_), n, stream);
    const TensorView<T> hidden = take(ws.f1, {B, L, F});
    linear<T>(n, fc1_.view(), {}, hidden, rt.blas);
    if (fc3_.size() > 0) {
      const TensorView<T> gate = take(ws.f3, {B, L, F});
      linear<T>(n, fc3_.view(), {}, gate, rt.blas);
      gecko::run(expr::assign(hidden, expr::silu(input(hidden)) * input(gate)), rt.exec);
    } else {
      gecko::run(expr::assign(hidden, expr::silu(input(hidden))), rt.exec);
    }
    // 17: out = f + residual, or α ⊙ f + residual with rescale_nffn (cpu::feed_forward); f reuses
    // n's buffer, which fc1/fc3 have consumed
    linear<T>(hidden, fc2_.view(), {}, n, rt.blas);
    const TensorView<const T> residual = c.two_hop_residual ? x : TensorView<const T>(y);
    if (alpha_.size() > 0)
      gecko::run(expr::assign(out, expr::row(alpha_.view()) * input(n) + input(residual)), rt.exec);
    else
      gecko::run(expr::assign(out, input(n) + input(residual)), rt.exec);
  }

 private:
  Mega<Policy, T> mega_;
  DeviceBuffer<T> norm_weight_, norm_bias_, fc1_, fc3_, fc2_, alpha_;
};

// ------------------------------------------------------------------ the model

// The streaming state of one batch of sequences on the device, the twin of model::ModelState. A
// default-constructed ModelState is a fresh stream; Model::forward starts and advances it.
template <class T>
struct ModelState {
  std::vector<LayerState<T>> layers;  // one per block; empty before the first call
  NormState output;                   // the final norm's (count, mean, var)
  // Document bookkeeping, multi_segments only (spec §4.5), on the host: uploaded with each call.
  Tensor<std::int64_t> seg_ids;  // (B, Tc) document ids of the cached window
  Tensor<std::int64_t> mem_seg;  // (B) document of the working memory
  std::optional<bool> multi_segments;
  std::int64_t batch = 0;

  bool fresh() const { return layers.empty(); }
  std::int64_t position() const { return layers.empty() ? 0 : layers.front().kv_count; }

  // Device bytes held: constant in the stream length.
  std::int64_t bytes() const {
    std::int64_t n = output.bytes();
    for (const auto& l : layers) n += l.bytes();
    return n;
  }

  // The state as the CPU model holds it: compare it with model::ModelState, save it, or continue
  // the stream on the CPU. Synchronises `stream`.
  model::ModelState<accum_t<T>> to_host(cudaStream_t stream = nullptr) const {
    model::ModelState<accum_t<T>> s;
    if (fresh()) return s;
    for (const auto& l : layers) s.layers.push_back(l.to_host(stream));
    s.output = output.to_host<accum_t<T>>(stream);
    s.seg_ids = seg_ids;
    s.mem_seg = mem_seg;
    s.multi_segments = multi_segments;
    s.batch = batch;
    return s;
  }
};

template <class Policy, class T>
class Model {
 public:
  using policy = Policy;
  using scalar = T;

  // Checks every tensor against the configuration (as model::Model does) and uploads it,
  // converted to T, on `stream` (borrowed; nullptr is the legacy default stream), where every
  // later call runs. bos_id: the token that starts a document with multi_segments.
  Model(const model::Config& config, const model::ModelParams<float>& params, std::int64_t bos_id = 1,
        cudaStream_t stream = nullptr)
      : c_(config), bos_id_(bos_id), runner_(stream) {
    check_gpu_type<T>();
    model::check_model_parameters<Policy>(c_, params, /*layer_shapes=*/true);
    embed_ = detail::upload<T>(params.embed, stream);
    if (c_.rope_heads() > 0) rope_freqs_ = DeviceBuffer<float>(params.rope_freqs, stream);
    output_ = detail::upload<T>(params.output, stream);
    final_weight_ = detail::upload<T>(params.final_norm.weight, stream);
    final_bias_ = detail::upload<T>(params.final_norm.bias, stream);
    final_priors_ = {params.final_norm.prior_count[0], params.final_norm.prior_mean, params.final_norm.prior_var};
    blocks_.reserve(params.layers.size());
    for (const auto& layer : params.layers) blocks_.emplace_back(c_, layer, stream);
  }

  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
  Model(Model&&) = default;

  const model::Config& config() const { return c_; }
  std::int64_t bos_id() const { return bos_id_; }
  void set_bos_id(std::int64_t id) { bos_id_ = id; }
  cudaStream_t stream() const { return runner_.stream(); }
  const std::vector<Block<Policy, T>>& blocks() const { return blocks_; }

  // Tests: fill every scratch activation, and the window and memory buffers of new states, with
  // NaN before use, so that an element no kernel writes shows up in the outputs.
  void set_poison(bool on) { runner_.scratch.poison = on; }
  // Device bytes of the per-call scratch buffers (they grow to the largest call, then stay).
  std::int64_t scratch_bytes() const { return runner_.scratch.bytes(); }

  // One piece of a stream: tokens (B, L) on the host → logits (B, L, V) written to `logits` in
  // device memory, advancing state; the rules and messages of model::Model::forward. Asynchronous:
  // the logits are ready once the model's stream has done the work queued on it.
  void forward(const Tensor<std::int64_t>& tokens, ModelState<T>& state, bool multi_segments,
               TensorView<T> logits) {
    constexpr const char* op = "forward";
    model::check_call<Policy>(c_, blocks_.size(), tokens, state, multi_segments);
    const std::int64_t B = tokens.dim(0), L = tokens.dim(1), C = c_.chunk_size, D = c_.model_dim;
    const std::int64_t start = state.position();
    detail::require_device(op, "logits", logits);
    check_shape(op, "logits", logits.shape, Shape{B, L, c_.output_dim()});
    if (state.fresh()) state = new_state(B, multi_segments);

    const cudaStream_t stream = runner_.stream();
    Scratch<T>& ws = runner_.scratch;
    LayerInputs in;
    const TensorView<const std::int64_t> token_view = ws.tokens.upload(tokens, stream);
    // Documents (spec §4.2): ids continue the count of the state's last cached token.
    Tensor<std::int64_t> seg;
    if (multi_segments) {
      Tensor<bool> bos;
      model::document_ids(tokens, bos_id_, state.seg_ids, bos, seg);
      in.bos = ws.bos.upload(bos, stream);
      in.seg = ws.seg.upload(seg, stream);
      if (!state.seg_ids.empty()) in.window_seg = ws.window_seg.upload(state.seg_ids, stream);
      if (!state.mem_seg.empty()) in.mem_seg = ws.mem_seg.upload(state.mem_seg, stream);
    }
    // RoPE table of the call's positions (the policy's: absolute, or chunk-local), shared by
    // every layer.                                                                  (L, dk/2, 2)
    if (c_.rope_heads() > 0) {
      Tensor<std::int64_t> positions({L});
      for (std::int64_t i = 0; i < L; ++i) positions[i] = Policy::attention::rope_position(start + i, C);
      const TensorView<float> table = ws.rope.take({L, c_.head_dim() / 2, 2}, false, stream);
      rope_table(rope_freqs_.view(), ws.positions.upload(positions, stream), table, stream);
      in.rope = table;
    }

    const TensorView<T> x = ws.hidden.take({B, L, D}, ws.poison, stream);  // (B, L, D)
    embedding<T>(token_view, embed_.view(), c_.scale_emb, x, stream);
    for (std::size_t i = 0; i < blocks_.size(); ++i) blocks_[i].forward(x, in, state.layers[i], runner_, x);

    const TensorView<T> u = ws.u.take({B, L, D}, ws.poison, stream);
    policy_norm<Policy, T>(x, in.bos, state.output,
                           {final_weight_.view(), final_bias_.view(), c_.timenorm_num_groups, c_.timenorm_beta1,
                            c_.timenorm_beta2, c_.norm_eps},
                           u, stream);
    linear<T>(u, c_.share_emb ? embed_.view() : output_.view(), {}, logits, runner_.blas);
    if (multi_segments) model::advance_segments(state.seg_ids, state.mem_seg, seg, start + L, C);
  }

  // As above, into a new device buffer (B, L, V).
  DeviceBuffer<T> forward(const Tensor<std::int64_t>& tokens, ModelState<T>& state, bool multi_segments = false) {
    require(!tokens.empty() && tokens.rank() == 2, "forward: tokens must have shape (B, L), got ",
            tokens.shape().str());
    DeviceBuffer<T> logits(Shape{tokens.dim(0), tokens.dim(1), c_.output_dim()});
    forward(tokens, state, multi_segments, logits.view());
    return logits;
  }

  // Any number of tokens, from any position: split into allowed pieces as model::Model::feed
  // does; returns the logits of all of them (B, L, V).
  DeviceBuffer<T> feed(const Tensor<std::int64_t>& tokens, ModelState<T>& state, bool multi_segments = false) {
    require(!tokens.empty() && tokens.rank() == 2, "feed: tokens must have shape (B, L), got ",
            tokens.shape().str());
    const std::int64_t B = tokens.dim(0), L = tokens.dim(1), V = c_.output_dim();
    const std::vector<std::int64_t> cuts = model::feed_cuts(state.position(), L, c_.chunk_size);
    if (cuts.size() == 2) return forward(tokens, state, multi_segments);
    DeviceBuffer<T> logits(Shape{B, L, V});
    for (std::size_t i = 1; i < cuts.size(); ++i) {
      const std::int64_t begin = cuts[i - 1], n = cuts[i] - begin;
      const TensorView<T> part = runner_.scratch.logits.take({B, n, V}, runner_.scratch.poison, stream());
      forward(model::time_slice(tokens, begin, cuts[i]), state, multi_segments, part);
      detail::copy_rows(logits.data(), L, begin, part.data, n, 0, n, V, B, stream());
    }
    return logits;
  }

  // The whole sequence from a fresh state: tokens (B, L) → logits (B, L, V), for any L.
  DeviceBuffer<T> forward(const Tensor<std::int64_t>& tokens, bool multi_segments = false) {
    ModelState<T> state;
    return feed(tokens, state, multi_segments);
  }

  // A fresh stream's state for B sequences, allocated now (on the model's stream) instead of
  // inside the first forward call: for callers that time or pace that call. Poisoned like the
  // scratch buffers when set_poison is on.
  ModelState<T> new_state(std::int64_t B, bool multi_segments = false) const {
    require(B >= 1, "cuda::Model::new_state: a state needs at least one sequence (B >= 1), got ", B);
    ModelState<T> s;
    s.batch = B;
    s.multi_segments = multi_segments;
    s.layers.reserve(blocks_.size());
    for (const auto& block : blocks_)
      s.layers.push_back(block.mega().new_state(B, runner_.scratch.poison, runner_.stream()));
    s.output = NormState::start(final_priors_, B, cpu::TimestepNormState<accum_t<T>>{}, runner_.stream());
    return s;
  }

 private:

  model::Config c_;
  std::int64_t bos_id_;
  Runner<T> runner_;
  DeviceBuffer<T> embed_, output_, final_weight_, final_bias_;
  DeviceBuffer<float> rope_freqs_;
  NormPriors final_priors_;
  std::vector<Block<Policy, T>> blocks_;
};

// Loads a checkpoint (model::read_checkpoint, the format of model::load_model) into a GPU model
// on `stream`; an error names the file.
template <class Policy, class T>
Model<Policy, T> load_model(const std::filesystem::path& path, cudaStream_t stream = nullptr) {
  const model::Checkpoint<float> ckpt = model::read_checkpoint<Policy, float>(path);
  try {
    return Model<Policy, T>(ckpt.config, ckpt.params, ckpt.bos_id, stream);
  } catch (const Error& e) {
    fail(path.string(), ": ", e.what());
  }
}

}  // namespace gecko::cuda
