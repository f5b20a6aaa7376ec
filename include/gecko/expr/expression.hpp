#pragma once
// What every expression node provides, and the broadcast rule that checks shapes when nodes are
// built. A node only holds its children and a functor; executors (exec/, cuda/) decide how the
// tree runs. Evaluation is per element: `e.eval(i, col)` reads flat element i of the result,
// where col = i % (last extent) is computed once by the executor for row-broadcast leaves.
//
// Pitfall (as in Eigen): an expression refers to its tensors, it does not own them. Never hold an
// expression in `auto` past the statement that uses it when its leaves refer to temporaries:
//   auto e = input(x) * input(scaled(x).view());  // the Tensor from scaled(x) dies at the ';'
//   run(assign(y, e), exec);                      // reads freed memory
// (input(scaled(x)) itself does not compile: leaves refuse temporary Tensors, not views of them.)
// Write the expression inside the run(assign(...), exec) statement, where temporaries live to
// its end, or keep the tensors it reads alive while the expression is.

#include <concepts>
#include <cstdint>
#include <string>

#include "gecko/core/config.hpp"
#include "gecko/core/error.hpp"
#include "gecko/core/shape.hpp"
#include "gecko/core/tensor.hpp"

namespace gecko::expr {

// The shape an expression produces: a full shape, a row (F) that broadcasts along the last
// dimension of an (..., F) tensor, or a scalar that broadcasts to anything.
struct ExprShape {
  enum class Kind : std::uint8_t { Scalar, Row, Full };
  Kind kind = Kind::Scalar;
  Shape shape;  // Row: {F}; Full: the shape; Scalar: {}

  std::string str() const {
    switch (kind) {
      case Kind::Scalar: return "scalar";
      case Kind::Row: return "[..., " + std::to_string(shape[0]) + "]";
      case Kind::Full: return shape.str();
    }
    return "?";
  }
};

// The shape of `a op b`, or a gecko::Error naming both shapes.
inline ExprShape broadcast(const ExprShape& a, const ExprShape& b, std::string_view op) {
  using K = ExprShape::Kind;
  if (a.kind == K::Scalar) return b;
  if (b.kind == K::Scalar) return a;
  const auto mismatch = [&]() {
    fail("expr ", op, ": operand shapes ", a.str(), " and ", b.str(), " do not match");
  };
  if (a.kind == b.kind) {
    if (!(a.shape == b.shape)) mismatch();
    return a;
  }
  const ExprShape& full = a.kind == K::Full ? a : b;
  const ExprShape& row = a.kind == K::Row ? a : b;
  if (full.shape.rank == 0 || full.shape[full.shape.rank - 1] != row.shape[0]) mismatch();
  return full;
}

// True when `out` can receive an expression of shape `e` (a row or scalar fills every row).
inline bool assignable(const Shape& out, const ExprShape& e) {
  switch (e.kind) {
    case ExprShape::Kind::Scalar: return true;
    case ExprShape::Kind::Row: return out.rank > 0 && out[out.rank - 1] == e.shape[0];
    case ExprShape::Kind::Full: return out == e.shape;
  }
  return false;
}

// A node: trivially copyable (it is passed by value to kernels), with
//   value_type                      the type it computes in (accum_t of its storage types),
//   uses_col                        whether some leaf reads the column index,
//   shape()                         its ExprShape,
//   eval(i, col)                    the value of flat element i, host and device,
//   check_space(space, executor)    throws unless every tensor leaf lives in `space`.
template <class E>
concept Expression = std::is_trivially_copyable_v<E> && requires(const E& e) {
  typename E::value_type;
  { E::uses_col } -> std::convertible_to<bool>;
  { e.shape() } -> std::same_as<ExprShape>;
  { e.eval(std::int64_t{}, std::int64_t{}) } -> std::same_as<typename E::value_type>;
  e.check_space(Space::Host, "");
};

}  // namespace gecko::expr
