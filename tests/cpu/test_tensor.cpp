// Tensor storage (core/tensor.hpp): zero-filled and uninitialised construction, and the cache that
// recycles large blocks between tensors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>

#include "gecko/core/tensor.hpp"

using namespace gecko;

TEST_CASE("Tensor: a large block is recycled, and the zero-filling constructor still zero-fills it") {
  const Shape shape{256, 1024};  // 1 MiB of float: cached
  const float* first = nullptr;
  {
    Tensor<float> t(shape, 7.0f);
    first = t.data();
  }
  const std::size_t cached = detail::TensorStorage::cached_bytes();
  CHECK(cached >= std::size_t(shape.numel()) * sizeof(float));
  const Tensor<float> zeros(shape);
  CHECK(zeros.data() == first);  // the block just freed serves the next tensor of its size
  CHECK(detail::TensorStorage::cached_bytes() == cached - std::size_t(shape.numel()) * sizeof(float));
  CHECK(std::all_of(zeros.data(), zeros.data() + zeros.size(), [](float v) { return v == 0.0f; }));
}

TEST_CASE("Tensor: a slightly different size shares the size class; storage is 64-byte aligned") {
  const float* block = nullptr;
  {
    Tensor<float> t = Tensor<float>::uninitialized({1000, 100});  // 400000 bytes
    block = t.data();
    CHECK(reinterpret_cast<std::uintptr_t>(t.data()) % 64 == 0);
  }
  const Tensor<float> u = Tensor<float>::uninitialized({1001, 100});  // 400400 bytes, same class
  CHECK(u.data() == block);
  CHECK(u.size() == 100100);
  const Tensor<double> small({3});
  CHECK(reinterpret_cast<std::uintptr_t>(small.data()) % 64 == 0);
}

TEST_CASE("Tensor: copies are deep, an absent tensor stays absent, a zero-size tensor is present") {
  Tensor<std::int64_t> a({4, 5}, 3);
  const Tensor<std::int64_t> b = a;
  a(1, 2) = 9;
  CHECK(b(1, 2) == 3);
  CHECK(b.data() != a.data());
  const Tensor<float> absent;
  const Tensor<float> still_absent = absent;
  CHECK(still_absent.empty());
  const Tensor<float> none({0, 3});
  CHECK(!none.empty());
  CHECK(none.size() == 0);
}

TEST_CASE("Tensor: new large blocks start at different offsets within a page") {
  // Equal page offsets make a loop that reads one tensor and writes another stall on false
  // store-to-load aliasing.
  const Tensor<float> a = Tensor<float>::uninitialized({3000, 100}), b = Tensor<float>::uninitialized({3000, 100});
  const auto page_offset = [](const float* p) { return reinterpret_cast<std::uintptr_t>(p) % 4096; };
  CHECK(page_offset(a.data()) != page_offset(b.data()));
}
