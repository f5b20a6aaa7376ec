#pragma once
// Interior nodes: a functor applied to one or two children. Binary nodes check the broadcast rule
// when they are built, so a shape error points at the line that wrote the expression.

#include <utility>

#include "gecko/expr/expression.hpp"

namespace gecko::expr {

template <class F, Expression A>
struct Unary {
  using value_type = decltype(F{}(std::declval<typename A::value_type>()));
  static constexpr bool uses_col = A::uses_col;

  A a;
  F f{};

  ExprShape shape() const { return a.shape(); }
  GECKO_HOST_DEVICE value_type eval(std::int64_t i, std::int64_t col) const {
    return f(a.eval(i, col));
  }
  void check_space(Space s, std::string_view executor) const { a.check_space(s, executor); }
};

template <class F, Expression A, Expression B>
struct Binary {
  using value_type =
      decltype(F{}(std::declval<typename A::value_type>(), std::declval<typename B::value_type>()));
  static constexpr bool uses_col = A::uses_col || B::uses_col;

  A a;
  B b;
  F f{};

  Binary(const A& lhs, const B& rhs) : a(lhs), b(rhs) { broadcast(a.shape(), b.shape(), F::name); }

  ExprShape shape() const { return broadcast(a.shape(), b.shape(), F::name); }
  GECKO_HOST_DEVICE value_type eval(std::int64_t i, std::int64_t col) const {
    return f(a.eval(i, col), b.eval(i, col));
  }
  void check_space(Space s, std::string_view executor) const {
    a.check_space(s, executor);
    b.check_space(s, executor);
  }
};

}  // namespace gecko::expr
