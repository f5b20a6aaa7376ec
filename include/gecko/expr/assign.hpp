#pragma once
// assign(out, e): the pairing of a destination with an expression that an executor runs in one
// pass, `run(assign(y, silu(input(x) + row(b))), exec)`. The output may be one of the expression's
// input tensors (in-place update), as each element is read before it is written; it must not
// overlap an input any other way.

#include "gecko/core/dtype.hpp"
#include "gecko/core/tensor.hpp"
#include "gecko/expr/expression.hpp"

namespace gecko::expr {

template <class T, Expression E>
struct Assign {
  TensorView<T> out;
  E e;
};

template <class T, Expression E>
Assign<T, E> assign(TensorView<T> out, const E& e) {
  // Messages are built only on failure: a valid assign allocates nothing.
  if (!out.is_contiguous())
    fail("expr assign: output of shape ", out.shape.str(), " is not contiguous, strides ",
         out.strides.str());
  if (!assignable(out.shape, e.shape()))
    fail("expr assign: output has shape ", out.shape.str(), ", expression has shape ",
         e.shape().str());
  return {out, e};
}
template <class T, Expression E>
Assign<T, E> assign(Tensor<T>& out, const E& e) { return assign(out.view(), e); }

// The one rounding from the computed value to storage: through accum_t<T>, so a float result
// becomes bfloat16/float16 by a single round-to-nearest-even.
template <class T, class V>
GECKO_HOST_DEVICE T store_as(V v) {
  return static_cast<T>(static_cast<accum_t<T>>(v));
}

}  // namespace gecko::expr
