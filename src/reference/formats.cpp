// Scalar conversions between float and the element/scale formats of SignalGEMM.
// Rounding is to nearest, ties to even; saturation and NaN rules are in docs/formats.md.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "signalgemm/reference.h"

namespace signalgemm::ref {
namespace {

// A binary floating-point format without sign: `mantissa_bits` stored fraction bits, exponent
// field biased by `bias`; exponent field 0 holds the subnormals.
struct MiniFloat {
  int mantissa_bits;
  int bias;
};

constexpr MiniFloat kFp16{10, 15};
constexpr MiniFloat kE4m3{3, 7};
constexpr MiniFloat kE2m1{1, 1};

// Code (exponent and mantissa fields) of the finite magnitude `a` >= 0 rounded to nearest even.
// The result may exceed the format's largest code; callers saturate or overflow to infinity.
// Works in double, where every float input and every intermediate here is exact (and, for
// float inputs, the code stays below 2^18).
uint32_t encode_magnitude(double a, MiniFloat f) {
  if (a == 0.0) return 0;
  const int min_exponent = 1 - f.bias;  // unbiased exponent of the smallest normal
  int frexp_exponent = 0;
  std::frexp(a, &frexp_exponent);  // a = fraction * 2^frexp_exponent, fraction in [0.5, 1)
  const int exponent = std::max(frexp_exponent - 1, min_exponent);
  // Count of quanta of the binade (or of the subnormal range); nearbyint rounds ties to even
  // under the default rounding mode.
  const double quanta = std::nearbyint(std::ldexp(a, f.mantissa_bits - exponent));
  // (exponent - min_exponent) * 2^m + quanta equals the code for subnormals (exponent field 0,
  // quanta < 2^m) and for normals (quanta in [2^m, 2^(m+1)] carries into the exponent field),
  // including a round-up into the next binade.
  return (uint32_t(exponent - min_exponent) << f.mantissa_bits) + uint32_t(quanta);
}

double decode_magnitude(uint32_t code, MiniFloat f) {
  const uint32_t exponent_field = code >> f.mantissa_bits;
  const uint32_t mantissa = code & ((1u << f.mantissa_bits) - 1);
  if (exponent_field == 0) return std::ldexp(double(mantissa), 1 - f.bias - f.mantissa_bits);
  return std::ldexp(double((1u << f.mantissa_bits) | mantissa),
                    int(exponent_field) - f.bias - f.mantissa_bits);
}

uint32_t float_bits(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits;
}

float bits_float(uint32_t bits) {
  float x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

}  // namespace

// bf16 is the upper half of a float: round the lower half away, ties to even. Overflow rounds to
// infinity as IEEE does; NaN stays a (quiet) NaN with its sign.
uint16_t float_to_bf16(float x) {
  uint32_t bits = float_bits(x);
  if (std::isnan(x)) return uint16_t((bits >> 16) | 0x0040);
  bits += 0x7fff + ((bits >> 16) & 1);
  return uint16_t(bits >> 16);
}

float bf16_to_float(uint16_t bits) { return bits_float(uint32_t(bits) << 16); }

// IEEE binary16: overflow rounds to infinity, NaN stays a quiet NaN with its sign.
uint16_t float_to_fp16(float x) {
  const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  if (std::isnan(x)) return sign | 0x7e00;
  if (std::isinf(x)) return sign | 0x7c00;
  const uint32_t code = encode_magnitude(std::fabs(double(x)), kFp16);
  return sign | uint16_t(code >= 0x7c00 ? 0x7c00 : code);
}

float fp16_to_float(uint16_t bits) {
  const double sign = (bits & 0x8000) ? -1.0 : 1.0;
  const uint32_t magnitude = bits & 0x7fff;
  if (magnitude == 0x7c00) return float(sign * std::numeric_limits<double>::infinity());
  if (magnitude > 0x7c00) return std::numeric_limits<float>::quiet_NaN();
  return float(sign * decode_magnitude(magnitude, kFp16));
}

// OCP E4M3FN: no infinities, so anything beyond 448 (infinity included) saturates to +-448.
// NaN has two codes (0x7f, 0xff); a NaN input becomes 0x7f.
uint8_t float_to_e4m3(float x) {
  if (std::isnan(x)) return 0x7f;
  const uint8_t sign = std::signbit(x) ? 0x80 : 0;
  constexpr uint32_t kMaxCode = 0x7e;  // 448
  const uint32_t code = std::isinf(x) ? kMaxCode : encode_magnitude(std::fabs(double(x)), kE4m3);
  return sign | uint8_t(code > kMaxCode ? kMaxCode : code);
}

float e4m3_to_float(uint8_t bits) {
  if ((bits & 0x7f) == 0x7f) return std::numeric_limits<float>::quiet_NaN();
  const double magnitude = decode_magnitude(bits & 0x7f, kE4m3);
  return float((bits & 0x80) ? -magnitude : magnitude);
}

// E2M1 has neither infinities nor NaN: beyond 6 (infinity included) saturates to +-6, and NaN
// becomes +6 (code 0x7), the choice that keeps a NaN visible as a large value.
uint8_t float_to_e2m1(float x) {
  constexpr uint32_t kMaxCode = 0x7;  // 6
  if (std::isnan(x)) return kMaxCode;
  const uint8_t sign = std::signbit(x) ? 0x8 : 0;
  const uint32_t code = std::isinf(x) ? kMaxCode : encode_magnitude(std::fabs(double(x)), kE2m1);
  return sign | uint8_t(code > kMaxCode ? kMaxCode : code);
}

float e2m1_to_float(uint8_t code) {
  const double magnitude = decode_magnitude(code & 0x7, kE2m1);
  return float((code & 0x8) ? -magnitude : magnitude);
}

// Smallest power of two >= x, so that x / scale never exceeds the element format's range.
// x <= 0 (or below 2^-127) gives 2^-127 (code 0); above 2^127 (infinity included) clamps to 2^127
// (code 254); NaN gives the NaN code 0xff.
uint8_t float_to_e8m0(float x) {
  if (std::isnan(x)) return 0xff;
  if (!(x > 0.0f)) return 0;
  if (std::isinf(x)) return 254;
  int frexp_exponent = 0;
  const double fraction = std::frexp(double(x), &frexp_exponent);  // x = fraction * 2^exp
  const int exponent = fraction == 0.5 ? frexp_exponent - 1 : frexp_exponent;  // 2^exponent >= x
  const int code = exponent + 127;
  return uint8_t(code < 0 ? 0 : (code > 254 ? 254 : code));
}

float e8m0_to_float(uint8_t bits) {
  if (bits == 0xff) return std::numeric_limits<float>::quiet_NaN();
  return std::ldexp(1.0f, int(bits) - 127);
}

}  // namespace signalgemm::ref
