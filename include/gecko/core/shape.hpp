#pragma once
// Shape: up to kMaxRank extents, row-major. Trivially copyable so it can be passed to kernels.

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "gecko/core/config.hpp"
#include "gecko/core/error.hpp"

namespace gecko {

inline constexpr int kMaxRank = 6;

struct Shape {
  std::array<std::int64_t, kMaxRank> dims{};
  int rank = 0;

  constexpr Shape() = default;
  Shape(std::initializer_list<std::int64_t> d) { assign(d.begin(), d.end()); }
  explicit Shape(const std::vector<std::int64_t>& d) { assign(d.begin(), d.end()); }

  GECKO_HOST_DEVICE constexpr std::int64_t operator[](int i) const { return dims[i]; }
  GECKO_HOST_DEVICE constexpr std::int64_t& operator[](int i) { return dims[i]; }
  GECKO_HOST_DEVICE constexpr std::int64_t numel() const {
    std::int64_t n = 1;
    for (int i = 0; i < rank; ++i) n *= dims[i];
    return n;
  }
  constexpr bool operator==(const Shape& o) const {
    if (rank != o.rank) return false;
    for (int i = 0; i < rank; ++i)
      if (dims[i] != o.dims[i]) return false;
    return true;
  }
  std::vector<std::int64_t> to_vector() const { return {dims.begin(), dims.begin() + rank}; }

  std::string str() const {
    std::string s = "[";
    for (int i = 0; i < rank; ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
    return s + "]";
  }

 private:
  template <class It>
  void assign(It first, It last) {
    rank = 0;
    for (; first != last; ++first) {
      require(rank < kMaxRank, "Shape: more than ", kMaxRank, " dimensions");
      require(*first >= 0, "Shape: negative extent ", *first);
      dims[rank++] = *first;
    }
  }
};

// Row-major strides of a contiguous tensor of this shape.
inline Shape contiguous_strides(const Shape& s) {
  Shape st;
  st.rank = s.rank;
  std::int64_t step = 1;
  for (int i = s.rank - 1; i >= 0; --i) {
    st.dims[i] = step;
    step *= s.dims[i];
  }
  return st;
}

// Throws "op: tensor has shape [..], expected [..]" unless actual == expected.
inline void check_shape(std::string_view op, std::string_view tensor, const Shape& actual,
                        const Shape& expected) {
  if (!(actual == expected))
    fail(op, ": ", tensor, " has shape ", actual.str(), ", expected ", expected.str());
}

}  // namespace gecko
