#pragma once
// One step of the CEMA recurrence (spec §6.2) as an affine map h -> a·h + b of the complex state,
// and the composition that makes the recurrence a scan (spec §6.3). Host and device code share
// this header: the CPU path applies the steps in order, a parallel scan composes them.

#include "gecko/core/complex.hpp"
#include "gecko/core/config.hpp"

namespace gecko::cpu {

template <class T>
struct CemaStep {
  Complex<T> a{T(1), T(0)}, b{};  // default: the identity map

  // Step t for one (d, n): a = 0 at a bos (the earlier state is dropped), q otherwise; b = p·x.
  GECKO_HOST_DEVICE static CemaStep at(Complex<T> q, T p, T x, bool bos) {
    return {bos ? Complex<T>{} : q, Complex<T>{p * x, T(0)}};
  }

  GECKO_HOST_DEVICE Complex<T> apply(Complex<T> h) const { return a * h + b; }
};

// `first` then `second`: h -> a2·(a1·h + b1) + b2.
template <class T>
struct CemaCompose {
  GECKO_HOST_DEVICE CemaStep<T> operator()(const CemaStep<T>& first,
                                           const CemaStep<T>& second) const {
    return {second.a * first.a, second.a * first.b + second.b};
  }
};

}  // namespace gecko::cpu
