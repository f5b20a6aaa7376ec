#pragma once
// The leaves of an expression: a tensor read elementwise, a row vector broadcast over rows, and a
// scalar constant. Leaves convert on load (bfloat16/float16 -> float); nothing is stored here.

#include <string_view>
#include <type_traits>

#include "gecko/core/dtype.hpp"
#include "gecko/core/tensor.hpp"
#include "gecko/expr/expression.hpp"

namespace gecko::expr {

namespace detail {
inline const char* space_name(Space s) { return s == Space::Host ? "host" : "device"; }
}  // namespace detail

// Element i of a contiguous tensor of the expression's full shape.
template <class T>
struct Input {
  using value_type = accum_t<T>;
  static constexpr bool uses_col = false;

  const T* data;
  Shape extents;
  Space space;

  ExprShape shape() const { return {ExprShape::Kind::Full, extents}; }
  GECKO_HOST_DEVICE value_type eval(std::int64_t i, std::int64_t) const {
    return static_cast<value_type>(data[i]);
  }
  void check_space(Space s, std::string_view executor) const {
    if (space != s)
      fail(executor, ": input tensor of shape ", extents.str(), " is in ", detail::space_name(space),
           " memory, expected ", detail::space_name(s), " memory");
  }
};

// A (F) vector applied along the last dimension of an (..., F) expression: element i reads
// data[i % F], with the column supplied by the executor.
template <class T>
struct Row {
  using value_type = accum_t<T>;
  static constexpr bool uses_col = true;

  const T* data;
  std::int64_t features;
  Space space;

  ExprShape shape() const { return {ExprShape::Kind::Row, Shape{features}}; }
  GECKO_HOST_DEVICE value_type eval(std::int64_t, std::int64_t col) const {
    return static_cast<value_type>(data[col]);
  }
  void check_space(Space s, std::string_view executor) const {
    require(space == s, executor, ": row vector of shape [", features, "] is in ",
            detail::space_name(space), " memory, expected ", detail::space_name(s), " memory");
  }
};

// A constant of the type the expression computes in.
template <class V>
struct Scalar {
  using value_type = V;
  static constexpr bool uses_col = false;

  V value;

  ExprShape shape() const { return {}; }
  GECKO_HOST_DEVICE value_type eval(std::int64_t, std::int64_t) const { return value; }
  void check_space(Space, std::string_view) const {}
};

// input(x): x must be contiguous (any rank); it is read in place, so it must outlive the run.
template <class T>
Input<std::remove_const_t<T>> input(TensorView<T> x) {
  if (!x.is_contiguous())  // the message is built only on failure: leaves never allocate
    fail("expr input: tensor of shape ", x.shape.str(), " is not contiguous, strides ",
         x.strides.str());
  return {x.data, x.shape, x.space};
}
template <class T>
Input<T> input(const Tensor<T>& x) { return input(x.view()); }
template <class T>
void input(Tensor<T>&&) = delete;  // would view a temporary that dies before the run

// row(b): b is a contiguous (F) vector, broadcast over the rows of an (..., F) expression.
template <class T>
Row<std::remove_const_t<T>> row(TensorView<T> b) {
  if (b.rank() != 1) fail("expr row: expected a (F) vector, got shape ", b.shape.str());
  if (b.strides[0] != 1) fail("expr row: vector of shape ", b.shape.str(), " has stride ", b.strides[0]);
  return {b.data, b.shape[0], b.space};
}
template <class T>
Row<T> row(const Tensor<T>& b) { return row(b.view()); }
template <class T>
void row(Tensor<T>&&) = delete;

template <class V>
  requires std::is_arithmetic_v<V>
Scalar<V> scalar(V v) { return {v}; }

}  // namespace gecko::expr
