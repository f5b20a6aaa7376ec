#pragma once
// Layout helpers for the tests: slices and joins along one dimension (time is dimension 1 of
// (B, L, ...) tensors) and the swap of dimensions 1 and 2 that turns the golden files' layouts
// into the library's.

#include <algorithm>
#include <cstdint>
#include <utility>

#include "gecko/core/tensor.hpp"

namespace gecko::testing {

// Positions [begin, begin + n) along dimension `axis`.
template <class T>
Tensor<T> slice(const Tensor<T>& x, int axis, std::int64_t begin, std::int64_t n) {
  Shape s = x.shape();
  std::int64_t outer = 1, inner = 1;
  for (int i = 0; i < axis; ++i) outer *= s[i];
  for (int i = axis + 1; i < s.rank; ++i) inner *= s[i];
  const std::int64_t len = s[axis];
  s[axis] = n;
  Tensor<T> y(s);
  for (std::int64_t o = 0; o < outer; ++o)
    std::copy_n(x.data() + (o * len + begin) * inner, n * inner, y.data() + o * n * inner);
  return y;
}

// a ++ b along dimension `axis`; an empty a gives b.
template <class T>
Tensor<T> concat(const Tensor<T>& a, const Tensor<T>& b, int axis) {
  if (a.empty()) return b;
  Shape s = a.shape();
  std::int64_t outer = 1, inner = 1;
  for (int i = 0; i < axis; ++i) outer *= s[i];
  for (int i = axis + 1; i < s.rank; ++i) inner *= s[i];
  const std::int64_t na = a.dim(axis), nb = b.dim(axis);
  s[axis] = na + nb;
  Tensor<T> y(s);
  for (std::int64_t o = 0; o < outer; ++o) {
    std::copy_n(a.data() + o * na * inner, na * inner, y.data() + o * (na + nb) * inner);
    std::copy_n(b.data() + o * nb * inner, nb * inner, y.data() + (o * (na + nb) + na) * inner);
  }
  return y;
}

// Time steps [begin, end) of a (B, L, ...) tensor.
template <class T>
Tensor<T> time_slice(const Tensor<T>& x, std::int64_t begin, std::int64_t end) {
  return slice(x, 1, begin, end - begin);
}

// a ++ b along time; an empty a gives b.
template <class T>
Tensor<T> time_concat(const Tensor<T>& a, const Tensor<T>& b) {
  return concat(a, b, 1);
}

// (B, X, Y, ...) → (B, Y, X, ...): the golden files' channel-major (B, D, L) against (B, L, D),
// or (B, H, Lk, d) against (B, Lk, H, d).
template <class T>
Tensor<T> swap_dims12(const Tensor<T>& x) {
  Shape s = x.shape();
  const std::int64_t B = s[0], X = s[1], Y = s[2];
  std::int64_t inner = 1;
  for (int i = 3; i < s.rank; ++i) inner *= s[i];
  std::swap(s[1], s[2]);
  Tensor<T> y(s);
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t i = 0; i < X; ++i)
      for (std::int64_t j = 0; j < Y; ++j)
        std::copy_n(x.data() + ((b * X + i) * Y + j) * inner, inner, y.data() + ((b * Y + j) * X + i) * inner);
  return y;
}

}  // namespace gecko::testing
