#pragma once
// Per-element functors, written once for host and device: the CPU executor's loop and the CUDA
// kernel call exactly this code. Each computes in the type it is given (accum_t of the storage:
// float for bfloat16/float16 inputs) and names itself for shape errors.

#include <cmath>

#include "gecko/core/config.hpp"

namespace gecko::expr {

struct Plus {
  static constexpr const char* name = "+";
  template <class A, class B>
  GECKO_HOST_DEVICE constexpr auto operator()(A a, B b) const { return a + b; }
};

struct Minus {
  static constexpr const char* name = "-";
  template <class A, class B>
  GECKO_HOST_DEVICE constexpr auto operator()(A a, B b) const { return a - b; }
};

struct Multiplies {
  static constexpr const char* name = "*";
  template <class A, class B>
  GECKO_HOST_DEVICE constexpr auto operator()(A a, B b) const { return a * b; }
};

struct Divides {
  static constexpr const char* name = "/";
  template <class A, class B>
  GECKO_HOST_DEVICE constexpr auto operator()(A a, B b) const { return a / b; }
};

struct Negate {
  static constexpr const char* name = "unary -";
  template <class A>
  GECKO_HOST_DEVICE constexpr A operator()(A a) const { return -a; }
};

struct Exp {
  static constexpr const char* name = "exp";
  template <class A>
  GECKO_HOST_DEVICE A operator()(A a) const { return std::exp(a); }
};

// sigmoid(x) = 1 / (1 + e^-x): saturates to 0 and 1 without overflow trouble (e^-x = inf gives 0).
struct Sigmoid {
  static constexpr const char* name = "sigmoid";
  template <class A>
  GECKO_HOST_DEVICE A operator()(A a) const { return A(1) / (A(1) + std::exp(-a)); }
};

// silu(x) = x * sigmoid(x), written as x / (1 + e^-x): one rounding fewer.
struct Silu {
  static constexpr const char* name = "silu";
  template <class A>
  GECKO_HOST_DEVICE A operator()(A a) const { return a / (A(1) + std::exp(-a)); }
};

}  // namespace gecko::expr
