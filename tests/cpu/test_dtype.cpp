// bfloat16 / float16 conversions against an independent reference written with double arithmetic:
// widening is exact for all 65536 bit patterns, and narrowing rounds to nearest, ties to even.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gecko/core/dtype.hpp"

using namespace gecko;

namespace {

std::uint32_t bits_of(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float float_of(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// A binary format with `mant` stored mantissa bits, exponent bias `bias` and exponent field of
// `exp_bits` bits (all ones = inf/NaN), as IEEE 754 defines it.
struct Format {
  int mant, exp_bits, bias;
  int emin() const { return 1 - bias; }
  int emax() const { return (1 << exp_bits) - 2 - bias; }
  double max_finite() const { return std::ldexp(2.0 - std::ldexp(1.0, -mant), emax()); }
};
constexpr Format kHalf{10, 5, 15};
constexpr Format kBf16{7, 8, 127};

// Value of a bit pattern, from the definition (sign, biased exponent, fraction).
double decode(const Format& f, std::uint16_t bits) {
  const int total = 1 + f.exp_bits + f.mant;
  const bool negative = (bits >> (total - 1)) & 1;
  const int e = (bits >> f.mant) & ((1 << f.exp_bits) - 1);
  const std::uint32_t m = bits & ((1u << f.mant) - 1);
  double v;
  if (e == (1 << f.exp_bits) - 1) v = m ? std::numeric_limits<double>::quiet_NaN() : HUGE_VAL;
  else if (e == 0) v = std::ldexp(double(m), f.emin() - f.mant);
  else v = std::ldexp(1.0 + std::ldexp(double(m), -f.mant), e - f.bias);
  return negative ? -v : v;
}

// The value `x` rounds to: nearest representable, ties to the even mantissa, infinite beyond the
// largest finite value plus half its spacing. Works with unbounded exponents, then overflows.
double round_reference(const Format& f, double x) {
  if (std::isnan(x) || std::isinf(x) || x == 0) return x;
  const double a = std::fabs(x);
  int e;
  std::frexp(a, &e);                        // a in [2^(e-1), 2^e)
  const int exponent = std::max(e - 1, f.emin());
  const double quantum = std::ldexp(1.0, exponent - f.mant);
  const double n = a / quantum;             // exact: power-of-two scaling
  double r = std::floor(n);
  const double frac = n - r;
  if (frac > 0.5 || (frac == 0.5 && std::fmod(r, 2.0) == 1.0)) r += 1;
  double v = r * quantum;
  if (v > f.max_finite()) v = HUGE_VAL;
  return std::copysign(v, x);
}

template <class H>
constexpr const Format& format_of() {
  if constexpr (std::is_same_v<H, float16>) return kHalf;
  else return kBf16;
}

// Checks that H(x) lands on the reference value (sign of zero included; NaN stays NaN).
template <class H>
void check_rounding(float x) {
  const double want = round_reference(format_of<H>(), double(x));
  const H h(x);
  const double got = decode(format_of<H>(), h.bits);
  INFO("x = ", x, " (bits 0x", std::hex, bits_of(x), "), got bits 0x", h.bits, std::dec,
       " = ", got, ", want ", want);
  if (std::isnan(want)) {
    REQUIRE(std::isnan(got));
  } else {
    REQUIRE(got == want);
    REQUIRE(std::signbit(got) == std::signbit(want));
  }
}

// Float values around every 16-bit value: the value, both neighbouring midpoints, and one float
// ulp either side of each midpoint.
template <class H>
std::vector<float> edge_floats() {
  std::vector<float> xs;
  for (std::uint32_t b = 0; b < 0x10000; ++b) {
    const float v = float(H::from_bits(std::uint16_t(b)));
    if (std::isnan(v)) continue;
    xs.push_back(v);
    const float next = float(H::from_bits(std::uint16_t(b + 1)));
    if (b + 1 < 0x10000 && std::isfinite(next) && std::signbit(next) == std::signbit(v) && std::isfinite(v)) {
      const float mid = float((double(v) + double(next)) / 2);  // exact: one more bit than H
      REQUIRE(double(mid) == (double(v) + double(next)) / 2);
      xs.push_back(mid);
      xs.push_back(std::nextafter(mid, 0.0f));
      xs.push_back(std::nextafter(mid, HUGE_VALF));
      xs.push_back(std::nextafter(mid, -HUGE_VALF));
    }
  }
  return xs;
}

template <class H>
void check_widening_exhaustive() {
  for (std::uint32_t b = 0; b < 0x10000; ++b) {
    const H h = H::from_bits(std::uint16_t(b));
    const float wide = float(h);
    const double want = decode(format_of<H>(), h.bits);
    INFO("bits 0x", std::hex, b);
    if (std::isnan(want)) {
      REQUIRE(std::isnan(wide));
      REQUIRE(std::signbit(wide) == bool(b & 0x8000));
      const H back(wide);
      REQUIRE(std::isnan(float(back)));
      REQUIRE((back.bits & 0x8000) == (b & 0x8000));
    } else {
      REQUIRE(double(wide) == want);
      REQUIRE(std::signbit(wide) == std::signbit(want));
      REQUIRE(H(wide).bits == b);  // 16 -> 32 -> 16 is the identity
    }
  }
}

}  // namespace

TEST_CASE("reference rounding agrees with the formats' defining values") {
  // Sanity of the reference itself, on values fixed by IEEE 754.
  CHECK(kHalf.max_finite() == 65504.0);
  CHECK(round_reference(kHalf, 65519.99) == 65504.0);
  CHECK(std::isinf(round_reference(kHalf, 65520.0)));
  CHECK(round_reference(kHalf, std::ldexp(1.0, -25)) == 0.0);                       // tie to even 0
  CHECK(round_reference(kHalf, std::ldexp(1.5, -25)) == std::ldexp(1.0, -24));
  CHECK(round_reference(kHalf, std::ldexp(3.0, -25)) == std::ldexp(1.0, -23));      // tie to even 2
  CHECK(round_reference(kHalf, 1.0 + std::ldexp(1.0, -11)) == 1.0);
  CHECK(round_reference(kHalf, 1.0 + std::ldexp(3.0, -11)) == 1.0 + std::ldexp(1.0, -9));
  CHECK(round_reference(kBf16, 1.0 + std::ldexp(1.0, -8)) == 1.0);
  CHECK(round_reference(kBf16, 1.0 + std::ldexp(3.0, -8)) == 1.0 + std::ldexp(1.0, -6));
  CHECK(kBf16.max_finite() == double(float_of(0x7f7f0000u)));
  CHECK(std::isinf(round_reference(kBf16, double(float_of(0x7f7f8000u)))));  // max + half spacing
  CHECK(decode(kHalf, 0x7bff) == 65504.0);
  CHECK(decode(kHalf, 0x0001) == std::ldexp(1.0, -24));
  CHECK(decode(kBf16, 0x3f80) == 1.0);
  CHECK(decode(kBf16, 0x0001) == std::ldexp(1.0, -133));
}

TEST_CASE("float16: widening is exact and round-trips for all 65536 bit patterns") {
  check_widening_exhaustive<float16>();
}

TEST_CASE("bfloat16: widening is exact and round-trips for all 65536 bit patterns") {
  check_widening_exhaustive<bfloat16>();
}

TEST_CASE("float16: narrowing rounds to nearest even around every representable value") {
  for (float x : edge_floats<float16>()) check_rounding<float16>(x);
}

TEST_CASE("bfloat16: narrowing rounds to nearest even around every representable value") {
  for (float x : edge_floats<bfloat16>()) check_rounding<bfloat16>(x);
}

TEST_CASE("float16: named edge cases") {
  const float inf = std::numeric_limits<float>::infinity();
  const float cases[] = {0.0f, -0.0f, 1.0f, -1.0f, 65504.0f, -65504.0f, 65519.996f, 65520.0f,
                         -65520.0f, 65536.0f, 1e10f, std::numeric_limits<float>::max(), inf, -inf,
                         std::ldexp(1.0f, -14), std::ldexp(1.0f, -24), std::ldexp(1.0f, -25),
                         std::ldexp(1.0000001f, -25), std::ldexp(1.5f, -25), std::ldexp(1.0f, -26),
                         std::ldexp(1023.0f, -24), std::ldexp(1023.5f, -24), std::ldexp(1.0f, -149),
                         -std::ldexp(1.0f, -149), std::numeric_limits<float>::min(), 0.1f, 1.0f / 3};
  for (float x : cases) check_rounding<float16>(x);
  CHECK(float16(65520.0f).bits == 0x7c00);
  CHECK(float16(65519.996f).bits == 0x7bff);
  CHECK(float16(-0.0f).bits == 0x8000);
  CHECK(float16(std::ldexp(1.0f, -25)).bits == 0x0000);   // tie between 0 and 2^-24: even is 0
  CHECK(float16(std::ldexp(1.5f, -25)).bits == 0x0001);
  CHECK(float16(std::ldexp(1023.5f, -24)).bits == 0x0400);  // subnormal rounds up into normal
  const float nan = std::numeric_limits<float>::quiet_NaN();
  CHECK(std::isnan(float(float16(nan))));
  CHECK(std::isnan(float(float16(-nan))));
  CHECK(std::isnan(float(float16(float_of(0x7f800001u)))));  // signalling NaN whose payload is lost
}

TEST_CASE("bfloat16: named edge cases") {
  const float inf = std::numeric_limits<float>::infinity();
  const float fmax = std::numeric_limits<float>::max();
  const float cases[] = {0.0f, -0.0f, 1.0f, -1.0f, fmax, -fmax, float_of(0x7f7f7fffu),
                         float_of(0x7f7f8000u), float_of(0x7f7effffu), inf, -inf,
                         std::numeric_limits<float>::min(), std::ldexp(1.0f, -149),
                         float_of(0x00008000u), float_of(0x00018000u), float_of(0x00007fffu),
                         0.1f, 1.0f / 3};
  for (float x : cases) check_rounding<bfloat16>(x);
  CHECK(bfloat16(fmax).bits == 0x7f80);                  // beyond max + half spacing: inf
  CHECK(bfloat16(float_of(0x7f7f7fffu)).bits == 0x7f7f);  // just below the midpoint: max finite
  CHECK(bfloat16(float_of(0x00008000u)).bits == 0x0000);  // tie to even among subnormals
  CHECK(bfloat16(float_of(0x00018000u)).bits == 0x0002);
  CHECK(bfloat16(-0.0f).bits == 0x8000);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  CHECK(std::isnan(float(bfloat16(nan))));
  CHECK(std::isnan(float(bfloat16(float_of(0x7f800001u)))));  // payload only in the low bits
  CHECK(std::isnan(float(bfloat16(float_of(0xff800001u)))));
}

TEST_CASE("random floats round to nearest even") {
  std::mt19937 rng(12345);
  std::uniform_int_distribution<std::uint32_t> any;
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  std::uniform_int_distribution<int> scale(-30, 18);
  for (int i = 0; i < 300000; ++i) {
    const float raw = float_of(any(rng));  // every exponent, NaN and inf included
    check_rounding<float16>(raw);
    check_rounding<bfloat16>(raw);
    const float typical = std::ldexp(unit(rng), scale(rng));  // the half range, densely
    check_rounding<float16>(typical);
    check_rounding<bfloat16>(typical);
  }
}

TEST_CASE("conversions are usable in constant expressions") {
  static_assert(float16(1.0f).bits == 0x3c00);
  static_assert(float(float16::from_bits(0xc000)) == -2.0f);
  static_assert(bfloat16(1.0f).bits == 0x3f80);
  static_assert(float(bfloat16::from_bits(0x4049)) == 3.140625f);
  CHECK(dtype_size(DType::BF16) == sizeof(bfloat16));
  CHECK(dtype_size(DType::F16) == sizeof(float16));
  CHECK(dtype_v<bfloat16> == DType::BF16);
  CHECK(dtype_v<float16> == DType::F16);
  CHECK(dtype_name(DType::BOOL) == "BOOL");
}
