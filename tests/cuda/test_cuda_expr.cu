// The CUDA executor against the CPU executor: one expression using every operator and leaf kind,
// evaluated by both on the same inputs; device outputs are poisoned with NaN first, so an
// element the kernel does not write fails. float32 agrees within float32 rounding; bfloat16
// storage within one bfloat16 step. Each element type compiles to a single kernel.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "cuda_test_support.hpp"
#include "gecko/cuda.cuh"

using namespace gecko;

namespace {

// + - * / between expressions and with numbers on either side, unary minus, exp, sigmoid, silu;
// tensor, row and scalar leaves. Host and device views give the same expression type.
template <class T>
auto every_op(TensorView<const T> x, TensorView<const T> g, TensorView<const T> b) {
  using namespace gecko::expr;
  return (silu(input(x) + row(b)) * sigmoid(input(g)) -
          exp(-input(x)) / (input(g) * input(g) + 1)) * 0.5f +
         (2 - row(b)) / 4;
}

template <class T>
Tensor<T> random_tensor(const Shape& shape, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  Tensor<T> x(shape);
  for (auto& e : x.span()) e = T(normal(rng));
  return x;
}

// Evaluates every_op on both executors for each shape and checks the README metric <= tol.
template <class T>
void check_against_cpu(double tol) {
  // A tail shorter than a warp, an empty output, and ~10^6 elements (more than one wave of the
  // grid, so the grid-stride loop turns) with a last dimension that divides nothing.
  const std::vector<Shape> shapes = {Shape{2, 3}, Shape{0, 7}, Shape{3, 517, 700}};
  const CudaExecutor gpu;
  for (const Shape& shape : shapes) {
    const std::int64_t features = shape[shape.rank - 1];
    const auto x = random_tensor<T>(shape, 1), g = random_tensor<T>(shape, 2);
    const auto b = random_tensor<T>(Shape{features}, 3);
    Tensor<T> want(shape);
    run(assign(want, every_op<T>(x.view(), g.view(), b.view())), CpuExecutor{});

    const cuda::DeviceBuffer<T> xd(x), gd(g), bd(b);
    cuda::DeviceBuffer<T> out(testing::poisoned<T>(shape));
    run(assign(out.view(), every_op<T>(xd.view(), gd.view(), bd.view())), gpu);
    const Tensor<T> got = out.to_host();

    const double rel = testing::storage_rel_error(got, want);
    MESSAGE("shape ", shape.str(), ": rel error ", rel, " (tolerance ", tol, ")");
    CHECK(rel <= tol);
  }
}

}  // namespace

TEST_CASE("cuda expr: float32 on the GPU equals the CPU executor within float32 rounding") {
  // The GPU contracts a*b+c into FMAs and its expf differs from the host's by an ulp or two;
  // over the dozen ops of every_op that stays within a few float32 steps of the largest value.
  check_against_cpu<float>(16 * double(std::numeric_limits<float>::epsilon()));
}

TEST_CASE("cuda expr: bfloat16 storage equals the CPU executor within one bfloat16 step") {
  // Both load to float, compute in float and round once; float results a few ulps apart can
  // round to neighbouring bfloat16 values: one step is 2^-7 of the magnitude at most.
  check_against_cpu<bfloat16>(1.0 / 128);
}

TEST_CASE("cuda expr: in-place update on a non-default stream") {
  cudaStream_t stream = nullptr;
  REQUIRE(cudaStreamCreate(&stream) == cudaSuccess);
  const Shape shape{33, 129};
  const auto x = random_tensor<float>(shape, 4), b = random_tensor<float>(Shape{129}, 5);
  auto g = random_tensor<float>(shape, 6);

  const cuda::DeviceBuffer<float> xd(x, stream), bd(b, stream);
  cuda::DeviceBuffer<float> gd(g, stream);
  // g = every_op(x, g, b): each element of g is read before it is written.
  run(assign(gd.view(), every_op<float>(xd.view(), gd.view(), bd.view())), CudaExecutor(stream));
  const Tensor<float> got = gd.to_host(stream);
  run(assign(g, every_op<float>(x.view(), g.view(), b.view())), CpuExecutor{});

  CHECK(testing::storage_rel_error(got, g) <= 16 * double(std::numeric_limits<float>::epsilon()));
  CHECK(cudaStreamDestroy(stream) == cudaSuccess);
}

TEST_CASE("cuda expr: host memory is refused before launch") {
  const Shape shape{4, 8};
  const auto x = random_tensor<float>(shape, 7), b = random_tensor<float>(Shape{8}, 8);
  const cuda::DeviceBuffer<float> xd(x), bd(b);
  cuda::DeviceBuffer<float> out(shape);
  Tensor<float> host_out(shape);
  const CudaExecutor gpu;
  CHECK_THROWS_WITH_AS(run(assign(out.view(), every_op<float>(xd.view(), x.view(), bd.view())), gpu),
                       "CudaExecutor: input tensor of shape [4, 8] is in host memory, expected device memory",
                       gecko::Error);
  CHECK_THROWS_WITH_AS(run(assign(host_out, every_op<float>(xd.view(), xd.view(), bd.view())), gpu),
                       "CudaExecutor: output of shape [4, 8] is in host memory, expected device memory",
                       gecko::Error);
}
