#pragma once
// Lazy elementwise expressions over tensor views, evaluated in one fused pass by an executor:
//
//   using namespace gecko::expr;
//   gecko::run(assign(y, silu(input(x) + row(bias)) * input(gate)), gecko::CpuExecutor{});
//
// See expression.hpp for the node interface and the lifetime pitfall of keeping expressions in
// `auto`.

#include "gecko/expr/assign.hpp"
#include "gecko/expr/expression.hpp"
#include "gecko/expr/functors.hpp"
#include "gecko/expr/leaves.hpp"
#include "gecko/expr/nodes.hpp"
#include "gecko/expr/operators.hpp"
