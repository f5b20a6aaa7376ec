// GPU benchmarks of the scan and normalisation ops in bfloat16 (the 7B model's activations):
// timestep norm (§5; Megalodon's cumulative norm of §12 as the variant `cumulative`), CEMA (§6), group RMS and layer norm (§7) and the CudaExecutor's fused
// elementwise kernel (the SwiGLU gate), each against a device-to-device copy of its bytes; CEMA
// also against a per-channel sequential scan kernel, the recurrence one lane per (b, d, n) walking
// time. The FLOP roof is a same-run float32 FMA kernel (CEMA's arithmetic runs on those units).

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <memory>

#include "gecko/cpu/cema.hpp"
#include "gecko/cuda.cuh"
#include "gecko/cuda/cema.cuh"
#include "gecko/cuda/group_norm.cuh"
#include "gecko/cuda/timestep_norm.cuh"
#include "support/cuda_main.hpp"
#include "support/work.hpp"

namespace gecko::bench::gpu {
namespace {

using T = bfloat16;
constexpr double kEps = 1e-5;

template <class X>
constexpr double bytes(std::int64_t elements) {
  return double(elements) * double(sizeof(X));
}

// ---------------------------------------------------------------- timestep norm (§5)

// Reads x, weight, bias and the state (count, M, V); writes y and the state. The same for the
// cumulative norm.
Work tsn_work(const Sizes& s) {
  const double state = bytes<std::int64_t>(s.B) + bytes<float>(2 * s.B * s.G);
  return {bytes<T>(2 * s.tokens() * s.D + 2 * s.D) + 2 * state, work::timestep_norm(s).flops};
}

class TsnCase : public Case {
 public:
  TsnCase(const Sizes& s, bool cumulative, cudaStream_t stream)
      : cumulative_(cumulative), x_(Shape{s.B, s.L, s.D}), y_(x_.shape()), weight_(Shape{s.D}), bias_(Shape{s.D}),
        count_(Shape{s.B}), mean_(Shape{s.B, s.G}), var_(Shape{s.B, s.G}) {
    fill_normal(x_, 3, 2.f, stream, 0.5f);
    fill_normal(weight_, 31, 0.1f, stream);
    fill_normal(bias_, 32, 0.1f, stream);
    params_.weight = weight_.view();
    params_.bias = bias_.view();
    params_.groups = int(s.G);
    poison(y_, stream);
    prepare(stream);
    run(stream);
    require_finite("timestep norm output", y_, stream);
  }
  // A fresh stream: count 0, M and V 0 (the priors of spec §5.1; for the cumulative norm a count
  // of 0 makes the first token replace the prior moments, whatever they are).
  void prepare(cudaStream_t stream) override {
    check(cudaMemsetAsync(count_.data(), 0, std::size_t(count_.size()) * sizeof(std::int64_t), stream),
          "bench: state");
    check(cudaMemsetAsync(mean_.data(), 0, std::size_t(mean_.size()) * sizeof(float), stream), "bench: state");
    check(cudaMemsetAsync(var_.data(), 0, std::size_t(var_.size()) * sizeof(float), stream), "bench: state");
  }
  void run(cudaStream_t stream) override {
    const cuda::TimestepNormState state{count_.view(), mean_.view(), var_.view()};
    if (cumulative_)
      cuda::timestep_cumulative_norm<T>(x_.view(), state, params_, y_.view(), stream);
    else
      cuda::timestep_decay_norm<T>(x_.view(), {}, state, params_, y_.view(), stream);
  }

 private:
  bool cumulative_;
  DeviceBuffer<T> x_, y_, weight_, bias_;
  DeviceBuffer<std::int64_t> count_;
  DeviceBuffer<float> mean_, var_;
  cuda::TimestepNormParams<T> params_;
};

// ---------------------------------------------------------------- CEMA (§6)

// Reads x, p, q, γ and the incoming state h; writes c and h.
Work cema_work(const Sizes& s) {
  return {bytes<T>(2 * s.tokens() * s.D) + bytes<float>(5 * s.D * s.N) +
              2 * bytes<Complex<float>>(s.B * s.D * s.N),
          work::cema(s).flops};
}

// §6.2 as a sequential scan per (b, d, n): one lane per order walks the whole sequence; the N
// lanes of a channel are adjacent in a warp and sum Re(γ·h_t) by shuffles, and the first writes
// c_t = x_t + y_t. Zero initial state, no bos.
template <int N>
__global__ void cema_sequential_kernel(const T* __restrict__ x, const float* __restrict__ p,
                                       const Complex<float>* __restrict__ q,
                                       const Complex<float>* __restrict__ gamma,
                                       Complex<float>* __restrict__ h, T* __restrict__ c,
                                       std::int64_t B, std::int64_t L, std::int64_t D) {
  static_assert(N <= 32 && 32 % N == 0, "a channel's lanes must sit in one warp");
  const std::int64_t lane = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const bool active = lane < B * D * N;  // inactive lanes still join the shuffles
  const std::int64_t n = lane % N, d = (lane / N) % D, b = lane / (N * D);
  const std::int64_t coeff = active ? d * N + n : 0;
  const float pn = active ? p[coeff] : 0.f;
  const Complex<float> qn = active ? q[coeff] : Complex<float>{}, gn = active ? gamma[coeff] : Complex<float>{};
  float re = 0.f, im = 0.f;
  const std::int64_t column = active ? b * L * D + d : 0;  // x(b, 0, d)
  const T* xp = x + column;
  T* cp = c + column;
#pragma unroll 4
  for (std::int64_t t = 0; t < L; ++t) {
    const float xt = active ? float(xp[t * D]) : 0.f;
    const float r = qn.re * re - qn.im * im + pn * xt;
    im = qn.re * im + qn.im * re;
    re = r;
    float y = gn.re * re - gn.im * im;  // Re(γ·h_t)
#pragma unroll
    for (int offset = N / 2; offset > 0; offset /= 2) y += __shfl_xor_sync(0xffffffffu, y, offset);
    if (active && n == 0) cp[t * D] = T(xt + y);
  }
  if (active) h[lane] = {re, im};  // (B, D, N) order
}

cpu::CemaCoefficients<float> cema_coefficients(const Sizes& s) {
  cpu::CemaParams<float> p;
  p.alpha = random_tensor<float>({s.D, s.N}, 21, 0.2);
  p.delta = random_tensor<float>({s.D, s.N}, 22, 0.2);
  p.theta = random_tensor<float>({s.D}, 23, 1.0);
  p.gamma = random_tensor<float>({s.D, s.N, 2}, 24, 1.0 / std::sqrt(double(s.N)));
  return cpu::cema_coefficients(p);
}

class CemaCase : public Case {
 public:
  static constexpr int kOrder = 16;

  CemaCase(const Sizes& s, bool sequential, cudaStream_t stream)
      : s_(s), sequential_(sequential), x_(Shape{s.B, s.L, s.D}), c_(x_.shape()),
        h_(Shape{s.B, s.D, s.N, 2}) {
    require(s.N == kOrder, "bench: the sequential CEMA kernel is built for N = ", kOrder);
    const auto k = cema_coefficients(s);
    p_ = DeviceBuffer<float>(k.p, stream);
    q_ = DeviceBuffer<Complex<float>>(k.q, stream);
    gamma_ = DeviceBuffer<Complex<float>>(k.gamma, stream);
    fill_normal(x_, 2, 1.f, stream);
    poison(c_, stream);
    prepare(stream);
    run(stream);
    require_finite("CEMA output", c_, stream);
    if (sequential_) {  // the baseline computes what the op computes
      DeviceBuffer<T> c_op(x_.shape());
      DeviceBuffer<float> h_op(h_.shape());
      poison(c_op, stream);
      check(cudaMemsetAsync(h_op.data(), 0, std::size_t(h_op.size()) * sizeof(float), stream), "bench: h");
      cuda::cema<T>(x_.view(), {}, h_op.view(), coefficients(), {}, c_op.view(), stream);
      require_same("sequential CEMA output against cuda::cema", c_, c_op, 1e-2, stream);
      require_same("sequential CEMA state against cuda::cema", h_, h_op, 1e-3, stream);
    }
  }
  void prepare(cudaStream_t stream) override {  // zero initial state
    check(cudaMemsetAsync(h_.data(), 0, std::size_t(h_.size()) * sizeof(float), stream), "bench: h");
  }
  void run(cudaStream_t stream) override {
    if (!sequential_) {
      cuda::cema<T>(x_.view(), {}, h_.view(), coefficients(), {}, c_.view(), stream);
      return;
    }
    const std::int64_t lanes = s_.B * s_.D * kOrder;
    cema_sequential_kernel<kOrder><<<unsigned((lanes + 255) / 256), 256, 0, stream>>>(
        x_.data(), p_.data(), q_.data(), gamma_.data(), reinterpret_cast<Complex<float>*>(h_.data()),
        c_.data(), s_.B, s_.L, s_.D);
    cuda::check_launch("bench: cema_sequential_kernel");
  }

 private:
  cuda::CemaCoefficients coefficients() const { return {p_.view(), q_.view(), gamma_.view()}; }

  Sizes s_;
  bool sequential_;
  DeviceBuffer<T> x_, c_;
  DeviceBuffer<float> h_, p_;
  DeviceBuffer<Complex<float>> q_, gamma_;
};

// ---------------------------------------------------------------- group norms (§7), one group

class NormCase : public Case {
 public:
  NormCase(const Sizes& s, bool centre, cudaStream_t stream)
      : centre_(centre), x_(Shape{s.B, s.L, s.D}), y_(x_.shape()), weight_(Shape{s.D}), bias_(Shape{s.D}) {
    fill_normal(x_, 3, 2.f, stream);
    fill_normal(weight_, 31, 0.1f, stream);
    fill_normal(bias_, 32, 0.1f, stream);
    poison(y_, stream);
    run(stream);
    require_finite(centre ? "layer norm output" : "RMS norm output", y_, stream);
  }
  void run(cudaStream_t stream) override {
    if (centre_)
      cuda::group_layer_norm<T>(x_.view(), 1, kEps, weight_.view(), bias_.view(), y_.view(), stream);
    else
      cuda::group_rms_norm<T>(x_.view(), 1, kEps, weight_.view(), y_.view(), stream);
  }

 private:
  bool centre_;
  DeviceBuffer<T> x_, y_, weight_, bias_;
};

// ---------------------------------------------------------------- fused elementwise: SwiGLU gate

// out = silu(a) ⊙ b over (B·L, F), one launch of the CudaExecutor's expression kernel; reads a
// and b, writes out; silu 4 + gate 1 FLOPs per element.
Work swiglu_work(const Sizes& s) {
  const std::int64_t n = s.tokens() * s.F;
  return {bytes<T>(3 * n), 5.0 * double(n)};
}

class SwigluCase : public Case {
 public:
  SwigluCase(const Sizes& s, cudaStream_t stream)
      : exec_(stream), a_(Shape{s.tokens(), s.F}), b_(a_.shape()), out_(a_.shape()) {
    fill_normal(a_, 41, 1.f, stream);
    fill_normal(b_, 42, 1.f, stream);
    poison(out_, stream);
    run(stream);
    require_finite("SwiGLU output", out_, stream);
  }
  void run(cudaStream_t) override {
    using namespace gecko::expr;
    gecko::run(assign(out_.view(), silu(input(a_.view())) * input(b_.view())), exec_);
  }

 private:
  CudaExecutor exec_;
  DeviceBuffer<T> a_, b_, out_;
};

// ---------------------------------------------------------------- roof: float32 FMA rate

// kChains independent FMA chains per thread, a full grid: 2·kChains·iters FLOPs per thread.
constexpr int kChains = 8, kRoofIters = 4096, kRoofThreads = 256, kRoofBlocksPerSm = 8;

__global__ void __launch_bounds__(kRoofThreads) fma_roof_kernel(float* out, float a, float b) {
  float acc[kChains];
#pragma unroll
  for (int k = 0; k < kChains; ++k) acc[k] = float(threadIdx.x + k);
  for (int i = 0; i < kRoofIters; ++i) {
#pragma unroll
    for (int k = 0; k < kChains; ++k) acc[k] = fmaf(acc[k], a, b);
  }
  float sum = 0.f;
#pragma unroll
  for (int k = 0; k < kChains; ++k) sum += acc[k];
  out[std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x] = sum;
}

int multiprocessors() {
  int device = 0, sms = 0;
  check(cudaGetDevice(&device), "bench: cudaGetDevice");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "bench: SM count");
  return sms;
}

class FmaRoofCase : public Case {
 public:
  explicit FmaRoofCase(cudaStream_t) : blocks_(multiprocessors() * kRoofBlocksPerSm),
                                       out_(Shape{std::int64_t(blocks_) * kRoofThreads}) {}
  void run(cudaStream_t stream) override {
    fma_roof_kernel<<<unsigned(blocks_), kRoofThreads, 0, stream>>>(out_.data(), 0.999999f, 1e-6f);
    cuda::check_launch("bench: fma_roof_kernel");
  }
  double flops() const { return 2.0 * kChains * kRoofIters * double(out_.size()); }

 private:
  int blocks_;
  DeviceBuffer<float> out_;
};

// The roof's FLOPs depend on the SM count, known only once a device is there: the case sets the
// counter itself, so it is registered without the generic wrapper's fixed Work.
void add_fma_roof() {
  benchmark::RegisterBenchmark("cuda/roof/fma_f32/device", [](benchmark::State& state) {
    try {
      Session& session = Session::get();
      Case& c = session.use("cuda/roof/fma_f32/device",
                            [](cudaStream_t stream) { return std::make_unique<FmaRoofCase>(stream); });
      for (auto _ : state) state.SetIterationTime(session.time(c));
      report(state, {0, static_cast<FmaRoofCase&>(c).flops()});
    } catch (const std::exception& e) {
      state.SkipWithError(e.what());
      Session::get().release();
    }
  })->UseManualTime()->Unit(benchmark::kMicrosecond);
}

// ----------------------------------------------------------------

void register_all() {
  targets().push_back({"cema", k7B.name, Target::MaxTime, 0.8e-3});
  targets().push_back({"cema", k7B.name, Target::MinSpeedup, 2.0, "sequential"});
  targets().push_back({"timestep_norm", k7B.name, Target::MinBandwidth, 0.70});

  for (const Sizes& s : kGpuTiers) {
    add_case("timestep_norm", "gecko", s, tsn_work(s),
             [s](cudaStream_t st) { return std::make_unique<TsnCase>(s, false, st); },
             target_label("timestep_norm", s));
    add_case("timestep_norm", "cumulative", s, tsn_work(s),
             [s](cudaStream_t st) { return std::make_unique<TsnCase>(s, true, st); });
    add_copy("timestep_norm", s, tsn_work(s).bytes);

    add_case("cema", "gecko", s, cema_work(s),
             [s](cudaStream_t st) { return std::make_unique<CemaCase>(s, false, st); },
             target_label("cema", s));
    add_case("cema", "sequential", s, cema_work(s),
             [s](cudaStream_t st) { return std::make_unique<CemaCase>(s, true, st); });
    add_copy("cema", s, cema_work(s).bytes);

    const double rows = double(s.tokens()), D = double(s.D);
    const Work rms{bytes<T>(2 * s.tokens() * s.D + s.D), work::rms_norm_flops(rows, D, true)};
    add_case("rms_norm", "gecko", s, rms,
             [s](cudaStream_t st) { return std::make_unique<NormCase>(s, false, st); });
    add_copy("rms_norm", s, rms.bytes);
    const Work ln{bytes<T>(2 * s.tokens() * s.D + 2 * s.D), work::layer_norm_flops(rows, D)};
    add_case("layer_norm", "gecko", s, ln,
             [s](cudaStream_t st) { return std::make_unique<NormCase>(s, true, st); });
    add_copy("layer_norm", s, ln.bytes);

    add_case("swiglu", "gecko", s, swiglu_work(s),
             [s](cudaStream_t st) { return std::make_unique<SwigluCase>(s, st); });
    add_copy("swiglu", s, swiglu_work(s).bytes);
  }
  add_fma_roof();
}

}  // namespace
}  // namespace gecko::bench::gpu

int main(int argc, char** argv) {
  return gecko::bench::gpu::run_gpu_benchmarks(argc, argv, gecko::bench::gpu::register_all);
}
