#pragma once
// Element types: the dtype tags shared with safetensors, and the 16-bit float storage types.
// bfloat16/float16 are storage formats: arithmetic converts to float. Conversions are exact
// (16 -> 32 bit) and round-to-nearest-even (32 -> 16 bit), on host and device alike.

#include <bit>
#include <complex>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "gecko/core/config.hpp"

namespace gecko {

enum class DType : std::uint8_t { F64, F32, F16, BF16, I64, I32, U8, BOOL };

constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::F64: return "F64";
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I64: return "I64";
    case DType::I32: return "I32";
    case DType::U8: return "U8";
    case DType::BOOL: return "BOOL";
  }
  return "?";
}

constexpr std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::F64: case DType::I64: return 8;
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: return 2;
    case DType::U8: case DType::BOOL: return 1;
  }
  return 0;
}

constexpr bool is_floating(DType t) {
  return t == DType::F64 || t == DType::F32 || t == DType::F16 || t == DType::BF16;
}

namespace detail {
GECKO_HOST_DEVICE constexpr std::uint32_t float_bits(float f) { return std::bit_cast<std::uint32_t>(f); }
GECKO_HOST_DEVICE constexpr float bits_float(std::uint32_t u) { return std::bit_cast<float>(u); }
}  // namespace detail

struct bfloat16 {
  std::uint16_t bits = 0;

  constexpr bfloat16() = default;
  GECKO_HOST_DEVICE constexpr explicit bfloat16(float f) : bits(round(f)) {}
  GECKO_HOST_DEVICE constexpr explicit operator float() const {
    return detail::bits_float(std::uint32_t(bits) << 16);
  }
  GECKO_HOST_DEVICE static constexpr bfloat16 from_bits(std::uint16_t b) {
    bfloat16 r;
    r.bits = b;
    return r;
  }

 private:
  GECKO_HOST_DEVICE static constexpr std::uint16_t round(float f) {
    const std::uint32_t u = detail::float_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((u >> 16) | 0x40u);  // quiet NaN
    const std::uint32_t lsb = (u >> 16) & 1u;
    return std::uint16_t((u + 0x7fffu + lsb) >> 16);  // ties to even; overflow reaches inf
  }
};

struct float16 {
  std::uint16_t bits = 0;

  constexpr float16() = default;
  GECKO_HOST_DEVICE constexpr explicit float16(float f) : bits(round(f)) {}
  GECKO_HOST_DEVICE constexpr explicit operator float() const { return widen(bits); }
  GECKO_HOST_DEVICE static constexpr float16 from_bits(std::uint16_t b) {
    float16 r;
    r.bits = b;
    return r;
  }

 private:
  GECKO_HOST_DEVICE static constexpr std::uint16_t round(float f) {
    std::uint32_t x = detail::float_bits(f);
    const std::uint32_t sign = (x >> 16) & 0x8000u;
    x &= 0x7fffffffu;
    if (x >= 0x7f800000u)  // inf stays inf, NaN stays a quiet NaN
      return std::uint16_t(sign | 0x7c00u | (x > 0x7f800000u ? 0x200u | ((x >> 13) & 0x3ffu) : 0u));
    if (x >= 0x477ff000u) return std::uint16_t(sign | 0x7c00u);  // >= 65520 rounds to inf
    if (x < 0x38800000u) {  // below 2^-14: subnormal half, unit 2^-24
      const int e = int(x >> 23);
      if (e < 102) return std::uint16_t(sign);  // below 2^-25
      const std::uint32_t m = (x & 0x7fffffu) | 0x800000u;
      const int shift = 126 - e;
      std::uint32_t r = m >> shift;
      const std::uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
      r += (rem > half || (rem == half && (r & 1u))) ? 1u : 0u;
      return std::uint16_t(sign | r);
    }
    const std::uint32_t r = x - ((127u - 15u) << 23);
    std::uint32_t h = r >> 13;
    const std::uint32_t rem = r & 0x1fffu;
    h += (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ? 1u : 0u;
    return std::uint16_t(sign | h);
  }

  GECKO_HOST_DEVICE static constexpr float widen(std::uint16_t h) {
    const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
    const std::uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1fu) return detail::bits_float(sign | 0x7f800000u | (m << 13));
    if (e != 0) return detail::bits_float(sign | ((e + 112u) << 23) | (m << 13));
    if (m == 0) return detail::bits_float(sign);
    // Subnormal: m * 2^-24 is exact in float.
    const float mag = float(m) * detail::bits_float(0x33800000u);
    return sign ? -mag : mag;
  }
};

template <class T>
struct dtype_of;
template <> struct dtype_of<double> { static constexpr DType value = DType::F64; };
template <> struct dtype_of<float> { static constexpr DType value = DType::F32; };
template <> struct dtype_of<float16> { static constexpr DType value = DType::F16; };
template <> struct dtype_of<bfloat16> { static constexpr DType value = DType::BF16; };
template <> struct dtype_of<std::int64_t> { static constexpr DType value = DType::I64; };
template <> struct dtype_of<std::int32_t> { static constexpr DType value = DType::I32; };
template <> struct dtype_of<std::uint8_t> { static constexpr DType value = DType::U8; };
template <> struct dtype_of<bool> { static constexpr DType value = DType::BOOL; };
template <class T>
inline constexpr DType dtype_v = dtype_of<T>::value;

// The type arithmetic on T happens in: float for the 16-bit formats, T otherwise.
template <class T> struct accum_type { using type = T; };
template <> struct accum_type<bfloat16> { using type = float; };
template <> struct accum_type<float16> { using type = float; };
template <class T>
using accum_t = typename accum_type<T>::type;

}  // namespace gecko
