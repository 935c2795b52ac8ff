// Storage types of the suite: fp64, fp32, and two 16-bit formats (IEEE binary16 and bfloat16)
// implemented here with the standard library only, bit-compatible with CUDA's __half and
// __nv_bfloat16. Conversions round to nearest, ties to even, directly from double (no double
// rounding through float), saturate to infinity past the largest finite value and keep NaN.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string_view>

namespace maskcheck {

enum class DType : std::uint8_t { f64, f32, f16, bf16 };

std::string_view to_string(DType t);
DType dtype_from_string(std::string_view s);  // throws InvalidArgument

// Bytes of one stored element: 8, 4, 2, 2 (the storage types below).
constexpr std::size_t dtype_bytes(DType t) {
  switch (t) {
    case DType::f64:
      return 8;
    case DType::f32:
      return 4;
    case DType::f16:
    case DType::bf16:
      return 2;
  }
  return 0;
}

namespace detail {

// Rounds a finite or infinite double to a binary format with `Mant` stored mantissa bits and
// `Exp` exponent bits, returning the encoded bits (sign | exponent | mantissa).
template <int Mant, int Exp>
inline std::uint16_t encode_small_float(double x) {
  constexpr int bias = (1 << (Exp - 1)) - 1;
  constexpr int emin = 1 - bias;  // exponent of the smallest normal
  const std::uint16_t sign = std::signbit(x) ? std::uint16_t(1u << (Mant + Exp)) : 0;
  constexpr std::uint16_t exp_all = std::uint16_t(((1u << Exp) - 1) << Mant);
  if (std::isnan(x)) return std::uint16_t(sign | exp_all | (1u << (Mant - 1)));
  const double a = std::fabs(x);
  if (a == 0.0) return sign;
  int e = 0;
  std::frexp(a, &e);  // a = f * 2^e, f in [0.5, 1): the unbiased exponent is e - 1
  int unbiased = e - 1;
  if (unbiased < emin) unbiased = emin;  // subnormal range keeps the quantum of the smallest normal
  const double quantum = std::ldexp(1.0, unbiased - Mant);
  const double r = std::nearbyint(a / quantum) * quantum;  // default rounding mode: ties to even
  // r may have rounded up into the next binade; re-derive its exponent.
  const double max_finite = std::ldexp(2.0 - std::ldexp(1.0, -Mant), bias);
  if (r > max_finite) return std::uint16_t(sign | exp_all);
  if (r < std::ldexp(1.0, emin)) {  // subnormal: mantissa counts quanta of 2^(emin - Mant)
    return std::uint16_t(sign | static_cast<std::uint16_t>(r / std::ldexp(1.0, emin - Mant)));
  }
  int er = 0;
  const double fr = std::frexp(r, &er);  // r = fr * 2^er
  const int biased = er - 1 + bias;
  const auto mant = static_cast<std::uint16_t>((fr * 2.0 - 1.0) * std::ldexp(1.0, Mant));
  return std::uint16_t(sign | (biased << Mant) | mant);
}

template <int Mant, int Exp>
inline double decode_small_float(std::uint16_t bits) {
  constexpr int bias = (1 << (Exp - 1)) - 1;
  const bool neg = (bits >> (Mant + Exp)) & 1u;
  const int biased = (bits >> Mant) & ((1u << Exp) - 1);
  const std::uint32_t mant = bits & ((1u << Mant) - 1);
  double v;
  if (biased == (1 << Exp) - 1) {
    v = mant ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  } else if (biased == 0) {
    v = std::ldexp(static_cast<double>(mant), 1 - bias - Mant);
  } else {
    v = std::ldexp(1.0 + std::ldexp(static_cast<double>(mant), -Mant), biased - bias);
  }
  return neg ? -v : v;
}

}  // namespace detail

// IEEE 754 binary16 storage.
struct half {
  std::uint16_t bits = 0;
  half() = default;
  static half from_bits(std::uint16_t b) {
    half h;
    h.bits = b;
    return h;
  }
  explicit half(double x) : bits(detail::encode_small_float<10, 5>(x)) {}
  explicit operator double() const { return detail::decode_small_float<10, 5>(bits); }
  explicit operator float() const { return static_cast<float>(static_cast<double>(*this)); }
};

// bfloat16 storage (the upper half of an fp32).
struct bfloat16 {
  std::uint16_t bits = 0;
  bfloat16() = default;
  static bfloat16 from_bits(std::uint16_t b) {
    bfloat16 h;
    h.bits = b;
    return h;
  }
  explicit bfloat16(double x) : bits(detail::encode_small_float<7, 8>(x)) {}
  explicit operator double() const { return detail::decode_small_float<7, 8>(bits); }
  explicit operator float() const { return static_cast<float>(static_cast<double>(*this)); }
};

// Storage type <-> DType.
template <class T>
struct dtype_of;
template <>
struct dtype_of<double> {
  static constexpr DType value = DType::f64;
};
template <>
struct dtype_of<float> {
  static constexpr DType value = DType::f32;
};
template <>
struct dtype_of<half> {
  static constexpr DType value = DType::f16;
};
template <>
struct dtype_of<bfloat16> {
  static constexpr DType value = DType::bf16;
};

// Converts a double to storage type T (round to nearest even) and back.
template <class T>
inline T to_storage(double x) {
  return static_cast<T>(x);
}
template <class T>
inline double to_double(T x) {
  return static_cast<double>(x);
}

// Rounds a double to the nearest value representable in `t` (returned as a double).
double round_to(DType t, double x);

// Largest finite value and lowest() of the storage type.
double max_finite(DType t);
inline double lowest(DType t) {
  return -max_finite(t);
}

// Unit roundoff (half an ulp of 1): 2^-53, 2^-24, 2^-11, 2^-8.
double unit_roundoff(DType t);

// Calls f(T{}) with T the storage type of `t`: the single runtime-to-type dispatch.
template <class F>
decltype(auto) dispatch_dtype(DType t, F&& f) {
  switch (t) {
    case DType::f64:
      return f(double{});
    case DType::f32:
      return f(float{});
    case DType::f16:
      return f(half{});
    case DType::bf16:
      return f(bfloat16{});
  }
  return f(double{});
}

}  // namespace maskcheck
