#pragma once
// The spelling of expressions: + - * / between expressions or an expression and a number, unary
// minus, silu, sigmoid and exp. A number takes the value type of the expression it meets, so
// `x * 2.0` on a float expression stays float.

#include <type_traits>

#include "gecko/expr/functors.hpp"
#include "gecko/expr/leaves.hpp"
#include "gecko/expr/nodes.hpp"

namespace gecko::expr {

template <class A, class B>
concept Operands = (Expression<A> && Expression<B>) ||
                   (Expression<A> && std::is_arithmetic_v<B>) ||
                   (std::is_arithmetic_v<A> && Expression<B>);

namespace detail {
template <class F, class A, class B>
auto binary(const A& a, const B& b) {
  if constexpr (!Expression<A>) {
    using S = Scalar<typename B::value_type>;
    return Binary<F, S, B>(S{static_cast<typename B::value_type>(a)}, b);
  } else if constexpr (!Expression<B>) {
    using S = Scalar<typename A::value_type>;
    return Binary<F, A, S>(a, S{static_cast<typename A::value_type>(b)});
  } else {
    return Binary<F, A, B>(a, b);
  }
}
}  // namespace detail

template <class A, class B>
  requires Operands<A, B>
auto operator+(const A& a, const B& b) { return detail::binary<Plus>(a, b); }
template <class A, class B>
  requires Operands<A, B>
auto operator-(const A& a, const B& b) { return detail::binary<Minus>(a, b); }
template <class A, class B>
  requires Operands<A, B>
auto operator*(const A& a, const B& b) { return detail::binary<Multiplies>(a, b); }
template <class A, class B>
  requires Operands<A, B>
auto operator/(const A& a, const B& b) { return detail::binary<Divides>(a, b); }

template <Expression A>
Unary<Negate, A> operator-(const A& a) { return {a}; }
template <Expression A>
Unary<Exp, A> exp(const A& a) { return {a}; }
template <Expression A>
Unary<Sigmoid, A> sigmoid(const A& a) { return {a}; }
template <Expression A>
Unary<Silu, A> silu(const A& a) { return {a}; }

}  // namespace gecko::expr
