#pragma once
// A complex number usable in host and device code alike (std::complex is host-only under nvcc).
// Stored as (re, im), the layout of the reference's [..., 2] tensors.

#include "gecko/core/config.hpp"

namespace gecko {

template <class T>
struct Complex {
  T re{}, im{};

  GECKO_HOST_DEVICE constexpr Complex operator+(Complex o) const { return {re + o.re, im + o.im}; }
  GECKO_HOST_DEVICE constexpr Complex operator-(Complex o) const { return {re - o.re, im - o.im}; }
  GECKO_HOST_DEVICE constexpr Complex operator*(Complex o) const {
    return {re * o.re - im * o.im, re * o.im + im * o.re};
  }
  GECKO_HOST_DEVICE constexpr Complex operator*(T s) const { return {re * s, im * s}; }
  constexpr bool operator==(const Complex&) const = default;
};

template <class T>
GECKO_HOST_DEVICE constexpr Complex<T> conj(Complex<T> z) { return {z.re, -z.im}; }

}  // namespace gecko
