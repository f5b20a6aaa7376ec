#pragma once
// Rotary positional embedding (spec §9). Interleaved pairs (x[2j], x[2j+1]) of a head vector are
// read as the complex number x_j and rotated by R[t, j] = exp(i · t · f_j) at absolute position t.
//
// The frequencies and the angles are defined in fp32, whatever T is: f_j = fl32(1 / fl32(base^(2j/dk)))
// and angle = fl32(fl32(t) · f_j). This is part of the model, not a precision choice: at position
// t the fp32 angle differs from the exact product by up to 2^-24 · t · f_j radians (5e-6 at t = 85,
// 6e-3 at t = 1e5), and the weights were trained with the fp32 angles. cos and sin of that angle,
// and the rotation itself, are computed in T.
//
// Gecko rotates q and k (never aq/ak) of heads 0 … num_rope_heads−1 at positions start … end−1.
// Megalodon rotates at positions t mod C: build its table from a list of positions.

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "gecko/core/error.hpp"
#include "gecko/core/shape.hpp"
#include "gecko/core/tensor.hpp"

namespace gecko::cpu {

// The inverse frequencies f_j, j = 0 … head_dim/2 − 1 (the `rope.freqs` buffer): (head_dim/2).
template <class T>
Tensor<T> rope_frequencies(int head_dim, double base) {
  require(head_dim > 0 && head_dim % 2 == 0, "rope_frequencies: head_dim must be positive and even, got ",
          head_dim);
  require(base > 0, "rope_frequencies: base must be positive, got ", base);
  Tensor<T> freqs(Shape{head_dim / 2});
  for (int j = 0; j < head_dim / 2; ++j) {
    const float power = static_cast<float>(std::pow(base, 2.0 * j / head_dim));  // in double, rounded once
    freqs[j] = T(1.0f / power);
  }
  return freqs;
}

// (cos, sin) of fl32(position · f_j) for the given positions: (P, dk/2, 2).
template <class T>
Tensor<T> rope_table(const Tensor<T>& freqs, std::span<const std::int64_t> positions) {
  require(!freqs.empty() && freqs.rank() == 1, "rope_table: freqs must have shape (dk/2), got ",
          freqs.shape().str());
  const std::int64_t half = freqs.dim(0), P = std::int64_t(positions.size());
  Tensor<T> table(Shape{P, half, 2});  // (P, dk/2, 2)
  for (std::int64_t p = 0; p < P; ++p) {
    require(positions[p] >= 0, "rope_table: positions must be non-negative, got ", positions[p],
            " at index ", p);
    for (std::int64_t j = 0; j < half; ++j) {
      const float angle = static_cast<float>(positions[p]) * static_cast<float>(freqs[j]);
      table(p, j, 0) = std::cos(T(angle));
      table(p, j, 1) = std::sin(T(angle));
    }
  }
  return table;
}

// Positions start … start + length − 1: (length, dk/2, 2).
template <class T>
Tensor<T> rope_table(const Tensor<T>& freqs, std::int64_t start, std::int64_t length) {
  require(start >= 0 && length >= 0, "rope_table: start and length must be non-negative, got start=",
          start, ", length=", length);
  std::vector<std::int64_t> positions(static_cast<std::size_t>(length));
  for (std::int64_t i = 0; i < length; ++i) positions[i] = start + i;
  return rope_table(freqs, std::span<const std::int64_t>(positions));
}

// Rotates x (B, L, H, dk) in place with table (L, dk/2, 2), row i of the table for token i.
// Heads h >= num_rope_heads pass through unchanged.
template <class T>
void apply_rope(Tensor<T>& x, const Tensor<T>& table, int num_rope_heads) {
  constexpr const char* op = "apply_rope";
  require(!x.empty() && x.rank() == 4, op, ": x must have shape (B, L, H, dk), got ", x.shape().str());
  const std::int64_t B = x.dim(0), L = x.dim(1), H = x.dim(2), dk = x.dim(3);
  require(dk % 2 == 0, op, ": the head dimension dk must be even, got ", dk);
  check_shape(op, "table", table.shape(), Shape{L, dk / 2, 2});
  require(num_rope_heads >= 0 && num_rope_heads <= H, op, ": num_rope_heads must lie in [0, H = ", H,
          "], got ", num_rope_heads);
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t t = 0; t < L; ++t)
      for (std::int64_t h = 0; h < num_rope_heads; ++h)
        for (std::int64_t j = 0; j < dk / 2; ++j) {
          const T re = x(b, t, h, 2 * j), im = x(b, t, h, 2 * j + 1);
          const T c = table(t, j, 0), s = table(t, j, 1);
          x(b, t, h, 2 * j) = re * c - im * s;  // (re + i·im)(c + i·s)
          x(b, t, h, 2 * j + 1) = re * s + im * c;
        }
}

}  // namespace gecko::cpu
