#pragma once
// A golden comparison that also reports its error: the test log shows the relative error of every
// checked tensor, and the check holds it to the README tolerance of T.

#include <doctest/doctest.h>

#include <string>

#include "gecko/core/tensor.hpp"
#include "support/golden.hpp"

namespace gecko::testing {

template <class T>
void report_and_check(const std::string& name, const Tensor<T>& cand, const Tensor<T>& golden) {
  MESSAGE(name, std::string(sizeof(T) == 4 ? " (float)" : " (double)"), ": rel error ", rel_error(cand, golden));
  check_close(name, cand, golden, golden_tolerance<T>());
}

}  // namespace gecko::testing
