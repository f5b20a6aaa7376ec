// The GPU scan and normalisation ops (timestep decay and cumulative norms, CEMA, group RMS/layer
// norm) against their CPU definitions, on fresh random inputs: odd sizes, L = 1, sequences crossing
// the kernels' 256-step tiles, bos resets (at t = 0, mid-call and at a piece's first token) and
// incoming state. Outputs are poisoned with NaN before each run, so
// an element a kernel leaves unwritten fails. The metric is the golden README's,
// max|gpu − ref| / max|ref|, and a NaN fails.
//   float32: within 1e-4 of the CPU path in float32.
//   bfloat16/float16 storage: outputs within twice the error that the CPU path makes (computed in
//     float32 on the same 16-bit inputs, rounded to 16 bits once) against float64; the float32
//     states within 1e-4 of the CPU path in float32, as both see the same exact inputs.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "cuda_test_support.hpp"
#include "gecko/cpu/cema.hpp"
#include "gecko/cpu/group_norm.hpp"
#include "gecko/cpu/timestep_norm.hpp"
#include "gecko/cuda.cuh"
#include "gecko/cuda/cema.cuh"
#include "gecko/cuda/group_norm.cuh"
#include "gecko/cuda/timestep_norm.cuh"
#include "support/layout.hpp"

using namespace gecko;
// gecko::cuda, spelled apart from libcu++'s ::cuda that the CUB headers bring in.
namespace gpu = gecko::cuda;

namespace {

using namespace gecko::testing;

void check_counts(const Tensor<std::int64_t>& gpu, const Tensor<std::int64_t>& cpu) {
  REQUIRE(gpu.shape() == cpu.shape());
  for (std::int64_t b = 0; b < cpu.size(); ++b) {
    INFO("state.count of batch row ", b);
    CHECK(gpu[b] == cpu[b]);
  }
}

// Feeds x (B, L, D) and bos (B, L) or empty (none) to dev.run in consecutive pieces of the given
// lengths, on `exec`; returns the pieces' outputs joined along time.
template <class Device>
Tensor<float> run_in_pieces(Device& dev, const Tensor<float>& x, const Tensor<bool>& bos,
                            const std::vector<std::int64_t>& pieces, const CudaExecutor& exec) {
  Tensor<float> y;
  std::int64_t t0 = 0;
  for (const std::int64_t piece : pieces) {
    const Tensor<bool> bos_piece = bos.empty() ? Tensor<bool>{} : time_slice(bos, t0, t0 + piece);
    y = time_concat(y, dev.run(time_slice(x, t0, t0 + piece), bos_piece, exec));
    t0 += piece;
  }
  REQUIRE(t0 == x.dim(1));
  return y;
}

// ---------------------------------------------------------------- timestep decay norm

struct TsnCase {
  std::int64_t B, L, D;
  int G;
  bool bos, state;  // bos: decay norm only (the cumulative norm has none)
};

// Which of the two timestep norms runs.
enum class Tsn { Decay, Cumulative };

const char* tsn_name(Tsn op) { return op == Tsn::Decay ? "decay norm" : "cumulative norm"; }

struct TsnInputs {
  Tensor<float> x, weight, bias;  // rounded to the storage type already
  Tensor<bool> bos;               // empty = none
  cpu::TimestepNormState<float> state;
};

template <class T>
TsnInputs tsn_inputs(const TsnCase& c, std::uint64_t seed, Tsn op = Tsn::Decay) {
  Random r(seed);
  TsnInputs in;
  in.x = rounded<T>(r.normal({c.B, c.L, c.D}, 0.3f, 1.5f));
  in.weight = rounded<T>(r.normal({c.D}, 0, 0.2f));
  in.bias = rounded<T>(r.normal({c.D}, 0, 0.2f));
  if (c.bos && op == Tsn::Decay) in.bos = r.bos(c.B, c.L, 0.03);
  // The priors: Gecko's count 0, mean 0, var 0; Megalodon's count 0, mean 0, var 1.
  in.state = {Tensor<std::int64_t>({c.B}, 0), Tensor<float>({c.B, c.G}, 0.f),
              Tensor<float>({c.B, c.G}, op == Tsn::Decay ? 0.f : 1.f)};
  if (c.state) {
    // Statistics m̂ and v̂ near those of x, so that no row's output dwarfs the others in the
    // metric; the decay norm stores them as raw EMAs consistent with their counts,
    // M = (1 − β1ⁿ)·m̂ and V = (1 − β2ⁿ)·v̂, the cumulative norm as they are.
    const std::int64_t counts[] = {3, 1000, 0, 17};
    const cpu::TimestepNormParams<float> defaults;
    const Tensor<float> mean = r.normal({c.B, c.G}, 0.3f, 0.2f);
    const Tensor<float> var = r.uniform({c.B, c.G}, 1.f, 3.f);
    for (std::int64_t b = 0; b < c.B; ++b) {
      const std::int64_t n = counts[b % 4];
      in.state.count[b] = n;
      for (int g = 0; g < c.G; ++g) {
        const bool decay = op == Tsn::Decay;
        in.state.mean(b, g) = (decay ? float(1 - std::pow(defaults.beta1, double(n))) : 1.f) * mean(b, g);
        in.state.var(b, g) = (decay ? float(1 - std::pow(defaults.beta2, double(n))) : 1.f) * var(b, g);
      }
    }
  }
  return in;
}

template <class F>
cpu::TimestepNormParams<F> tsn_cpu_params(const TsnInputs& in, int G) {
  cpu::TimestepNormParams<F> p;
  p.weight = convert<F>(in.weight);
  p.bias = convert<F>(in.bias);
  p.groups = G;
  return p;
}

template <class F>
Tensor<F> tsn_cpu(const TsnInputs& in, int G, cpu::TimestepNormState<F>& state, Tsn op = Tsn::Decay) {
  state = {in.state.count, convert<F>(in.state.mean), convert<F>(in.state.var)};
  const Tensor<F> x = convert<F>(in.x);
  if (op == Tsn::Cumulative) return cpu::timestep_cumulative_norm<F>(x, state, tsn_cpu_params<F>(in, G));
  return cpu::timestep_decay_norm<F>(x, in.bos.empty() ? nullptr : &in.bos, state,
                                     tsn_cpu_params<F>(in, G));
}

// The device state and parameters of one stream.
template <class T>
struct TsnDevice {
  gpu::DeviceBuffer<std::int64_t> count;
  gpu::DeviceBuffer<float> mean, var;
  gpu::DeviceBuffer<T> weight, bias;
  gpu::TimestepNormParams<T> params;
  Tsn op;

  TsnDevice(const TsnInputs& in, int G, Tsn which = Tsn::Decay)
      : count(in.state.count), mean(in.state.mean), var(in.state.var),
        weight(convert<T>(in.weight)), bias(convert<T>(in.bias)), op(which) {
    params.weight = weight.view();
    params.bias = bias.view();
    params.groups = G;
  }
  gpu::TimestepNormState state() { return {count.view(), mean.view(), var.view()}; }

  // Runs the op on host inputs x (B, L', D) and bos (B, L') or empty (always empty for the
  // cumulative norm); returns y.
  Tensor<T> run(const Tensor<float>& x, const Tensor<bool>& bos, const CudaExecutor& exec) {
    const gpu::DeviceBuffer<T> xd(convert<T>(x), exec.stream());
    const gpu::DeviceBuffer<bool> bosd = upload_or_none(bos, exec.stream());
    gpu::DeviceBuffer<T> y(poisoned<T>(x.shape()), exec.stream());
    if (op == Tsn::Cumulative) {
      REQUIRE(bos.empty());
      gpu::timestep_cumulative_norm<T>(xd.view(), state(), params, y.view(), exec);
    } else {
      gpu::timestep_decay_norm<T>(xd.view(), view_or_none(bosd), state(), params, y.view(), exec);
    }
    return y.to_host(exec.stream());
  }
};

template <class T>
void check_tsn(const TsnCase& c, std::uint64_t seed, Tsn op = Tsn::Decay) {
  INFO(tsn_name(op), ", B = ", c.B, ", L = ", c.L, ", D = ", c.D,
       ", G = ", c.G, ", bos ", c.bos && op == Tsn::Decay, ", state ", c.state);
  const TsnInputs in = tsn_inputs<T>(c, seed, op);
  TsnDevice<T> dev(in, c.G, op);
  const Tensor<T> y = dev.run(in.x, in.bos, CudaExecutor{});

  cpu::TimestepNormState<float> want;
  const Tensor<float> y_float = tsn_cpu<float>(in, c.G, want, op);
  Tensor<double> y_double;
  if constexpr (is_16bit<T>) {
    cpu::TimestepNormState<double> want_double;
    y_double = tsn_cpu<double>(in, c.G, want_double, op);
  }
  check_output("y", y, y_float, y_double);
  check_state("state.mean", dev.mean.to_host(), want.mean);
  check_state("state.var", dev.var.to_host(), want.var);
  check_counts(dev.count.to_host(), want.count);
}

// Lengths around the 256-token tile (1, 2, 31, 262, 271, 280, 300, 513, 600), group sizes that
// allow 16-byte accesses and sizes that do not (2, 4, 5, 7, 16, 64, 1024 channels per group), odd
// D, and four batch rows (incoming counts 3, 1000, 0 and 17).
const std::vector<TsnCase> kTsnCases = {
    {2, 1, 12, 3, true, true},     {3, 2, 64, 4, false, true},    {2, 31, 10, 5, true, false},
    {2, 262, 256, 4, true, true},  {1, 271, 12, 3, false, false}, {2, 280, 64, 4, true, false},
    {2, 300, 2048, 2, true, true}, {3, 600, 40, 8, true, true},   {4, 513, 15, 3, true, true},
    {4, 1, 7, 1, true, true},
};

template <class T>
void check_tsn_cases(std::uint64_t seed, Tsn op = Tsn::Decay) {
  for (const TsnCase& c : kTsnCases) check_tsn<T>(c, seed++, op);
}

TEST_CASE("cuda timestep_decay_norm: float32 equals the CPU path") { check_tsn_cases<float>(100); }
TEST_CASE("cuda timestep_decay_norm: bfloat16 within twice the CPU path's error") {
  check_tsn_cases<bfloat16>(200);
}
TEST_CASE("cuda timestep_decay_norm: float16 within twice the CPU path's error") {
  check_tsn_cases<float16>(300);
}

// Pieces of every kind (one token, a few, a whole tile and more) carry the state exactly; the
// pieces run on a stream of their own, through the CudaExecutor overload.
const std::vector<std::int64_t> kTsnPieces = {1, 1, 31, 262, 5};

void check_tsn_pieces(Tsn op, std::uint64_t seed) {
  const TsnCase c{2, 300, 64, 4, true, true};
  TsnInputs in = tsn_inputs<float>(c, seed, op);
  if (op == Tsn::Decay) {
    in.bos(0, 1) = true;    // a one-token piece that is a bos
    in.bos(1, 2) = true;    // the first token of a piece
    in.bos(1, 100) = true;  // inside a piece
  }
  TsnDevice<float> dev(in, c.G, op);
  cudaStream_t stream = nullptr;
  REQUIRE(cudaStreamCreate(&stream) == cudaSuccess);
  const CudaExecutor exec(stream);
  const Tensor<float> y = run_in_pieces(dev, in.x, in.bos, kTsnPieces, exec);
  cpu::TimestepNormState<float> want;
  const Tensor<float> y_cpu = tsn_cpu<float>(in, c.G, want, op);
  check_output<float>("y", y, y_cpu, {});
  check_state("state.mean", dev.mean.to_host(stream), want.mean);
  check_state("state.var", dev.var.to_host(stream), want.var);
  check_counts(dev.count.to_host(stream), want.count);
  CHECK(cudaStreamDestroy(stream) == cudaSuccess);
}

TEST_CASE("cuda timestep_decay_norm: a stream fed in pieces equals one CPU call") {
  check_tsn_pieces(Tsn::Decay, 400);
}

// Views whose addresses allow no 16-byte access (one element past an aligned buffer) take the
// per-element path although the group size would allow packs.
TEST_CASE("cuda timestep norms: unaligned views equal the CPU path") {
  const TsnCase c{2, 270, 64, 4, true, true};
  for (const Tsn op : {Tsn::Decay, Tsn::Cumulative}) {
    INFO(tsn_name(op));
    const TsnInputs in = tsn_inputs<float>(c, 450, op);
    TsnDevice<float> dev(in, c.G, op);
    const std::int64_t n = in.x.size();
    Tensor<float> padded({n + 1}, 0.f);
    std::copy_n(in.x.data(), n, padded.data() + 1);
    const gpu::DeviceBuffer<float> xd(padded);
    gpu::DeviceBuffer<float> yd(poisoned<float>({n + 1}));
    const TensorView<const float> x{xd.data() + 1, in.x.shape(), Space::Device};
    const TensorView<float> y{yd.data() + 1, in.x.shape(), Space::Device};
    const gpu::DeviceBuffer<bool> bosd = upload_or_none(in.bos);
    if (op == Tsn::Decay)
      gpu::timestep_decay_norm<float>(x, view_or_none(bosd), dev.state(), dev.params, y, nullptr);
    else
      gpu::timestep_cumulative_norm<float>(x, dev.state(), dev.params, y, nullptr);
    const Tensor<float> all = yd.to_host();
    CHECK(std::isnan(all[0]));  // nothing written before the view
    Tensor<float> got(in.x.shape());
    std::copy_n(all.data() + 1, n, got.data());
    cpu::TimestepNormState<float> want;
    check_output<float>("y", got, tsn_cpu<float>(in, c.G, want, op), {});
    check_state("state.mean", dev.mean.to_host(), want.mean);
    check_state("state.var", dev.var.to_host(), want.var);
    check_counts(dev.count.to_host(), want.count);
  }
}

TEST_CASE("cuda timestep_decay_norm: host memory and a wrong state shape are refused") {
  const TsnCase c{2, 3, 8, 2, false, false};
  const TsnInputs in = tsn_inputs<float>(c, 500);
  TsnDevice<float> dev(in, c.G);
  const gpu::DeviceBuffer<float> x(in.x);
  gpu::DeviceBuffer<float> y(in.x.shape());
  CHECK_THROWS_WITH_AS(gpu::timestep_decay_norm<float>(in.x.view(), {}, dev.state(), dev.params,
                                                        y.view(), nullptr),
                       "cuda::timestep_decay_norm: x of shape [2, 3, 8] is in host memory, "
                       "expected device memory",
                       gecko::Error);
  gpu::TimestepNormState wrong = dev.state();
  wrong.mean = {dev.mean.data(), Shape{2, 1, 2}, Space::Device};
  CHECK_THROWS_WITH_AS(gpu::timestep_decay_norm<float>(x.view(), {}, wrong, dev.params, y.view(),
                                                        nullptr),
                       "cuda::timestep_decay_norm: state.mean has shape [2, 1, 2], expected [2, 2]",
                       gecko::Error);
}

// ---------------------------------------------------------------- timestep cumulative norm

TEST_CASE("cuda timestep_cumulative_norm: float32 equals the CPU path") {
  check_tsn_cases<float>(1400, Tsn::Cumulative);
}
TEST_CASE("cuda timestep_cumulative_norm: bfloat16 within twice the CPU path's error") {
  check_tsn_cases<bfloat16>(1500, Tsn::Cumulative);
}
TEST_CASE("cuda timestep_cumulative_norm: float16 within twice the CPU path's error") {
  check_tsn_cases<float16>(1600, Tsn::Cumulative);
}

TEST_CASE("cuda timestep_cumulative_norm: a stream fed in pieces equals one CPU call") {
  check_tsn_pieces(Tsn::Cumulative, 1700);
}

// A stream of 5000 tokens in pieces of 1000: counts far past one tile, the per-token weight 1/n
// small against the running moments, a mean that drifts along the stream.
TEST_CASE("cuda timestep_cumulative_norm: a long stream in pieces equals one CPU call") {
  const TsnCase c{2, 5000, 24, 3, false, false};
  TsnInputs in = tsn_inputs<float>(c, 1750, Tsn::Cumulative);
  for (std::int64_t b = 0; b < c.B; ++b)
    for (std::int64_t t = 0; t < c.L; ++t)
      for (std::int64_t i = 0; i < c.D; ++i) in.x(b, t, i) += float(t) * 4e-4f;
  TsnDevice<float> dev(in, c.G, Tsn::Cumulative);
  const Tensor<float> y = run_in_pieces(dev, in.x, in.bos, {1000, 1000, 1000, 1000, 1000}, CudaExecutor{});
  cpu::TimestepNormState<float> want;
  const Tensor<float> y_cpu = tsn_cpu<float>(in, c.G, want, Tsn::Cumulative);
  check_output<float>("y", y, y_cpu, {});
  check_state("state.mean", dev.mean.to_host(), want.mean);
  check_state("state.var", dev.var.to_host(), want.var);
  check_counts(dev.count.to_host(), want.count);
}

TEST_CASE("cuda timestep_cumulative_norm: host memory, a wrong state shape and bad groups are refused") {
  const TsnCase c{2, 3, 8, 2, false, false};
  const TsnInputs in = tsn_inputs<float>(c, 1800, Tsn::Cumulative);
  TsnDevice<float> dev(in, c.G, Tsn::Cumulative);
  const gpu::DeviceBuffer<float> x(in.x);
  gpu::DeviceBuffer<float> y(in.x.shape());
  CHECK_THROWS_WITH_AS(gpu::timestep_cumulative_norm<float>(in.x.view(), dev.state(), dev.params,
                                                             y.view(), nullptr),
                       "cuda::timestep_cumulative_norm: x of shape [2, 3, 8] is in host memory, "
                       "expected device memory",
                       gecko::Error);
  gpu::TimestepNormState wrong = dev.state();
  wrong.var = {dev.var.data(), Shape{4}, Space::Device};
  CHECK_THROWS_WITH_AS(gpu::timestep_cumulative_norm<float>(x.view(), wrong, dev.params, y.view(),
                                                             nullptr),
                       "cuda::timestep_cumulative_norm: state.var has shape [4], expected [2, 2]",
                       gecko::Error);
  gpu::TimestepNormParams<float> bad = dev.params;
  bad.groups = 3;
  CHECK_THROWS_WITH_AS(gpu::timestep_cumulative_norm<float>(x.view(), dev.state(), bad, y.view(),
                                                             nullptr),
                       "cuda::timestep_cumulative_norm: groups = 3 does not divide D = 8",
                       gecko::Error);
  // Nothing was launched: the state is as it came in.
  check_counts(dev.count.to_host(), in.state.count);
}

// ---------------------------------------------------------------- CEMA

struct CemaCase {
  std::int64_t B, L, D, N;
  bool bos, state, omega;
};

struct CemaInputs {
  Tensor<float> x, h, omega;  // x and omega rounded to the storage type; omega empty = weight 1
  Tensor<bool> bos;
  cpu::CemaCoefficients<float> coeffs;
};

template <class T>
CemaInputs cema_inputs(const CemaCase& c, std::uint64_t seed) {
  Random r(seed);
  CemaInputs in;
  in.x = rounded<T>(r.normal({c.B, c.L, c.D}, 0.1f, 1.f));
  cpu::CemaParams<float> params;
  params.alpha = r.normal({c.D, c.N});
  params.delta = r.normal({c.D, c.N});
  params.theta = r.normal({c.D});
  params.gamma = r.normal({c.D, c.N, 2}, 0, 0.5f);
  in.coeffs = cpu::cema_coefficients(params);
  in.h = c.state ? r.normal({c.B, c.D, c.N, 2}, 0, 0.5f) : Tensor<float>({c.B, c.D, c.N, 2}, 0.f);
  if (c.omega) in.omega = rounded<T>(r.normal({c.D}, 1, 0.3f));
  if (c.bos) in.bos = r.bos(c.B, c.L, 0.03);
  return in;
}

template <class F>
Tensor<F> cema_cpu(const CemaInputs& in, Tensor<F>& h) {
  h = convert<F>(in.h);
  const cpu::CemaCoefficients<F> coeffs{convert<F>(in.coeffs.p), convert<F>(in.coeffs.q),
                                        convert<F>(in.coeffs.gamma)};
  const Tensor<F> omega = convert<F>(in.omega);
  return cpu::cema<F>(convert<F>(in.x), in.bos.empty() ? nullptr : &in.bos, h, coeffs,
                      in.omega.empty() ? nullptr : &omega);
}

template <class T>
struct CemaDevice {
  gpu::DeviceBuffer<float> h, p;
  gpu::DeviceBuffer<Complex<float>> q, gamma;
  gpu::DeviceBuffer<T> omega;

  explicit CemaDevice(const CemaInputs& in)
      : h(in.h), p(in.coeffs.p), q(in.coeffs.q), gamma(in.coeffs.gamma), omega(upload_or_none(convert<T>(in.omega))) {}

  Tensor<T> run(const Tensor<float>& x, const Tensor<bool>& bos, const CudaExecutor& exec) {
    const gpu::DeviceBuffer<T> xd(convert<T>(x), exec.stream());
    const gpu::DeviceBuffer<bool> bosd = upload_or_none(bos, exec.stream());
    gpu::DeviceBuffer<T> c(poisoned<T>(x.shape()), exec.stream());
    const gpu::CemaCoefficients coeffs{p.view(), q.view(), gamma.view()};
    const gpu::DeviceBuffer<T>& w = omega;
    gpu::cema<T>(xd.view(), view_or_none(bosd), h.view(), coeffs, w.view(), c.view(), exec);
    return c.to_host(exec.stream());
  }
};

template <class T>
void check_cema(const CemaCase& c, std::uint64_t seed) {
  INFO("B = ", c.B, ", L = ", c.L, ", D = ", c.D, ", N = ", c.N, ", bos ", c.bos, ", state ",
       c.state, ", omega ", c.omega);
  const CemaInputs in = cema_inputs<T>(c, seed);
  CemaDevice<T> dev(in);
  const Tensor<T> out = dev.run(in.x, in.bos, CudaExecutor{});

  Tensor<float> h_float;
  const Tensor<float> out_float = cema_cpu<float>(in, h_float);
  Tensor<double> out_double;
  if constexpr (is_16bit<T>) {
    Tensor<double> h_double;
    out_double = cema_cpu<double>(in, h_double);
  }
  check_output("c", out, out_float, out_double);
  check_state("h", dev.h.to_host(), h_float);
}

// Channel counts that leave the last 16-channel block partly empty, one-token and one-order
// runs, the largest order (64: the most shared memory), and lengths crossing the 256-step tile.
const std::vector<CemaCase> kCemaCases = {
    {2, 1, 5, 3, true, true, false},      {1, 31, 7, 1, false, true, false},
    {1, 300, 37, 16, true, true, false},  {3, 271, 16, 4, true, false, true},
    {2, 600, 33, 16, true, true, true},   {2, 262, 64, 16, false, false, false},
    {2, 270, 19, 64, true, true, true},
};

template <class T>
void check_cema_cases(std::uint64_t seed) {
  for (const CemaCase& c : kCemaCases) check_cema<T>(c, seed++);
}

TEST_CASE("cuda cema: float32 equals the CPU path") { check_cema_cases<float>(600); }
TEST_CASE("cuda cema: bfloat16 within twice the CPU path's error") {
  check_cema_cases<bfloat16>(700);
}
TEST_CASE("cuda cema: float16 within twice the CPU path's error") { check_cema_cases<float16>(800); }

TEST_CASE("cuda cema: a stream fed in pieces equals one CPU call") {
  const CemaCase c{2, 300, 21, 16, true, true, false};
  CemaInputs in = cema_inputs<float>(c, 900);
  in.bos(0, 1) = true;    // a one-token piece that is a bos
  in.bos(1, 3) = true;    // the first token of a piece
  in.bos(1, 100) = true;  // inside a piece
  CemaDevice<float> dev(in);
  cudaStream_t stream = nullptr;
  REQUIRE(cudaStreamCreate(&stream) == cudaSuccess);
  const CudaExecutor exec(stream);
  const Tensor<float> out = run_in_pieces(dev, in.x, in.bos, {1, 2, 31, 257, 9}, exec);
  Tensor<float> h_cpu;
  const Tensor<float> out_cpu = cema_cpu<float>(in, h_cpu);
  check_output<float>("c", out, out_cpu, {});
  check_state("h", dev.h.to_host(stream), h_cpu);
  CHECK(cudaStreamDestroy(stream) == cudaSuccess);
}

TEST_CASE("cuda cema: an order above the kernel's bound is refused") {
  const CemaCase c{1, 4, 3, 65, false, false, false};
  const CemaInputs in = cema_inputs<float>(c, 1000);
  CemaDevice<float> dev(in);
  CHECK_THROWS_WITH_AS(dev.run(in.x, in.bos, CudaExecutor{}), "cuda::cema: order N = 65 outside [1, 64]",
                       gecko::Error);
}

// ---------------------------------------------------------------- group norms

struct GroupNormCase {
  Shape shape;
  int groups;
  bool weight, bias;
};

template <class T>
void check_group_norm(const GroupNormCase& c, std::uint64_t seed) {
  INFO("shape ", c.shape.str(), ", groups ", c.groups, ", weight ", c.weight, ", bias ", c.bias);
  const std::int64_t F = c.shape[c.shape.rank - 1];
  const double eps = 1e-5;
  Random r(seed);
  const Tensor<float> x = rounded<T>(r.normal(c.shape, 0.5f, 2.f));
  const Tensor<float> weight = c.weight ? rounded<T>(r.normal({F}, 0, 0.3f)) : Tensor<float>{};
  const Tensor<float> bias = c.bias ? rounded<T>(r.normal({F}, 0, 0.3f)) : Tensor<float>{};

  const gpu::DeviceBuffer<T> xd(convert<T>(x));
  const gpu::DeviceBuffer<T> wd = c.weight ? gpu::DeviceBuffer<T>(convert<T>(weight)) : gpu::DeviceBuffer<T>{};
  const gpu::DeviceBuffer<T> bd = c.bias ? gpu::DeviceBuffer<T>(convert<T>(bias)) : gpu::DeviceBuffer<T>{};

  auto cpu_rms = [&]<class F>(std::type_identity<F>) {
    const Tensor<F> w = convert<F>(weight);
    return cpu::group_rms_norm<F>(convert<F>(x), c.groups, eps, c.weight ? &w : nullptr);
  };
  auto cpu_layer = [&]<class F>(std::type_identity<F>) {
    const Tensor<F> w = convert<F>(weight), b = convert<F>(bias);
    return cpu::group_layer_norm<F>(convert<F>(x), c.groups, eps, c.weight ? &w : nullptr,
                                    c.bias ? &b : nullptr);
  };

  {
    gpu::DeviceBuffer<T> y(poisoned<T>(c.shape));
    gpu::group_rms_norm<T>(xd.view(), c.groups, eps, wd.view(), y.view(), nullptr);
    Tensor<double> want_double;
    if constexpr (is_16bit<T>) want_double = cpu_rms(std::type_identity<double>{});
    check_output("group_rms_norm y", y.to_host(), cpu_rms(std::type_identity<float>{}), want_double);
  }
  {
    gpu::DeviceBuffer<T> y(poisoned<T>(c.shape));
    gpu::group_layer_norm<T>(xd.view(), c.groups, eps, wd.view(), bd.view(), y.view(), nullptr);
    Tensor<double> want_double;
    if constexpr (is_16bit<T>) want_double = cpu_layer(std::type_identity<double>{});
    check_output("group_layer_norm y", y.to_host(), cpu_layer(std::type_identity<float>{}),
                 want_double);
  }
}

// Group sizes from 3 to 8192 channels: per-element and 16-byte accesses, one warp to a
// 1024-thread block, a rank-2 and a rank-4 input.
const std::vector<GroupNormCase> kGroupNormCases = {
    {Shape{3, 7, 6}, 2, true, true},      {Shape{2, 5, 4096}, 1, true, true},
    {Shape{4, 1024}, 4, false, false},    {Shape{2, 3, 777}, 1, true, false},
    {Shape{3, 8191}, 1, false, true},     {Shape{2, 2, 8192}, 1, true, true},
    {Shape{2, 3, 2, 96}, 3, true, true},
};

template <class T>
void check_group_norm_cases(std::uint64_t seed) {
  for (const GroupNormCase& c : kGroupNormCases) check_group_norm<T>(c, seed++);
}

TEST_CASE("cuda group norms: float32 equal the CPU path") { check_group_norm_cases<float>(1100); }
TEST_CASE("cuda group norms: bfloat16 within twice the CPU path's error") {
  check_group_norm_cases<bfloat16>(1200);
}
TEST_CASE("cuda group norms: float16 within twice the CPU path's error") {
  check_group_norm_cases<float16>(1300);
}

// The largest groups: 16384 to 65536 channels need up to 1024 threads, more than some of the
// kernels' register use allows (65536 registers per block). Each norm either equals the CPU path
// or is refused with gecko::Error before launch, never a failed launch.
template <class T>
void check_large_groups(std::uint64_t seed) {
  for (const std::int64_t F : {16384, 32768, 65536}) {
    INFO("F = ", F);
    Random r(seed++);
    const Tensor<float> x = rounded<T>(r.normal({2, F}, 0.5f, 2.f));
    const Tensor<float> weight = rounded<T>(r.normal({F}, 0, 0.3f));
    const Tensor<float> bias = rounded<T>(r.normal({F}, 0, 0.3f));
    const gpu::DeviceBuffer<T> xd(convert<T>(x)), wd(convert<T>(weight)), bd(convert<T>(bias));
    for (const bool centre : {false, true}) {
      INFO((centre ? "group_layer_norm" : "group_rms_norm"));
      gpu::DeviceBuffer<T> y(poisoned<T>(x.shape()));
      try {
        if (centre)
          gpu::group_layer_norm<T>(xd.view(), 1, 1e-5, wd.view(), bd.view(), y.view(), nullptr);
        else
          gpu::group_rms_norm<T>(xd.view(), 1, 1e-5, wd.view(), y.view(), nullptr);
      } catch (const gecko::Error& e) {
        MESSAGE("refused: ", e.what());
        CHECK(std::string(e.what()).find("exceeds the kernel's register tile") != std::string::npos);
        continue;
      }
      auto cpu_norm = [&]<class F>(std::type_identity<F>) {
        const Tensor<F> w = convert<F>(weight), b = convert<F>(bias);
        return centre ? cpu::group_layer_norm<F>(convert<F>(x), 1, 1e-5, &w, &b)
                      : cpu::group_rms_norm<F>(convert<F>(x), 1, 1e-5, &w);
      };
      Tensor<double> want_double;
      if constexpr (is_16bit<T>) want_double = cpu_norm(std::type_identity<double>{});
      check_output("y", y.to_host(), cpu_norm(std::type_identity<float>{}), want_double);
    }
  }
}

TEST_CASE("cuda group norms: the largest groups are computed or refused, never a failed launch") {
  check_large_groups<float>(1900);
  check_large_groups<bfloat16>(1910);
  check_large_groups<float16>(1920);
}

TEST_CASE("cuda group norms: a group beyond the register tile is refused") {
  // 8193 channels allow no 16-byte packs: 1024 threads x 8 packs of one element is the limit.
  const gpu::DeviceBuffer<float> x(Tensor<float>(Shape{1, 8193}, 1.f));
  gpu::DeviceBuffer<float> y(Shape{1, 8193});
  CHECK_THROWS_WITH_AS(gpu::group_rms_norm<float>(x.view(), 1, 1e-5, {}, y.view(), nullptr),
                       "cuda::group_rms_norm: a group of 8193 channels exceeds the kernel's "
                       "register tile of 8192 channels",
                       gecko::Error);
}

}  // namespace
