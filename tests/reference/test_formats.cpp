// Scalar conversions: hand-computed codes for zero, extremes, saturation, subnormals, ties to
// even and NaN, and exhaustive round trips of the 8-bit and 4-bit codes.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "signalgemm/reference.h"

namespace signalgemm::ref {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

TEST(Bf16, ExactValues) {
  EXPECT_EQ(float_to_bf16(0.0f), 0x0000);
  EXPECT_EQ(float_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(float_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(float_to_bf16(-2.0f), 0xc000);
  EXPECT_EQ(bf16_to_float(0x3f80), 1.0f);
  EXPECT_EQ(bf16_to_float(0x7f7f), 0x1.fep127f);  // largest finite
}

TEST(Bf16, RoundsTiesToEven) {
  // 1 + 2^-8 lies halfway between 1 (even mantissa) and 1 + 2^-7 (odd): goes to 1.
  EXPECT_EQ(float_to_bf16(1.0f + 0x1p-8f), 0x3f80);
  // 1 + 3 * 2^-8 lies halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even): goes up.
  EXPECT_EQ(float_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
  // Just above the halfway point rounds up.
  EXPECT_EQ(float_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
}

TEST(Bf16, OverflowInfinityAndNaN) {
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // rounds up to infinity
  EXPECT_EQ(float_to_bf16(kInf), 0x7f80);
  EXPECT_EQ(float_to_bf16(-kInf), 0xff80);
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(kNaN))));
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(-kNaN))));
}

TEST(Fp16, ExactValuesAndExtremes) {
  EXPECT_EQ(float_to_fp16(0.0f), 0x0000);
  EXPECT_EQ(float_to_fp16(-0.0f), 0x8000);
  EXPECT_EQ(float_to_fp16(1.0f), 0x3c00);
  EXPECT_EQ(float_to_fp16(-1.5f), 0xbe00);
  EXPECT_EQ(float_to_fp16(65504.0f), 0x7bff);  // largest finite
  EXPECT_EQ(float_to_fp16(65519.0f), 0x7bff);  // below the halfway point to 65536
  EXPECT_EQ(float_to_fp16(65520.0f), 0x7c00);  // halfway: rounds to even, which is infinity
  EXPECT_EQ(float_to_fp16(-kInf), 0xfc00);
  EXPECT_EQ(float_to_fp16(0x1p-24f), 0x0001);  // smallest subnormal
  EXPECT_EQ(float_to_fp16(0x1p-25f), 0x0000);  // half of it: tie to even (0)
  EXPECT_EQ(float_to_fp16(3 * 0x1p-25f), 0x0002);  // 1.5 quanta: tie to even (2)
  EXPECT_EQ(float_to_fp16(0x1p-14f), 0x0400);  // smallest normal
  EXPECT_EQ(float_to_fp16(1.0f + 0x1p-11f), 0x3c00);  // tie to even
  EXPECT_EQ(float_to_fp16(1.0f + 3 * 0x1p-11f), 0x3c02);
  EXPECT_TRUE(std::isnan(fp16_to_float(float_to_fp16(kNaN))));
  EXPECT_EQ(fp16_to_float(0x7c00), kInf);
}

TEST(Fp16, AllFiniteCodesRoundTrip) {
  for (uint32_t code = 0; code < 0x10000; ++code) {
    if ((code & 0x7c00) == 0x7c00) continue;  // infinities and NaNs
    EXPECT_EQ(float_to_fp16(fp16_to_float(uint16_t(code))), code) << std::hex << code;
  }
}

TEST(E4m3, ExactValuesAndExtremes) {
  EXPECT_EQ(float_to_e4m3(0.0f), 0x00);
  EXPECT_EQ(float_to_e4m3(-0.0f), 0x80);
  EXPECT_EQ(float_to_e4m3(1.0f), 0x38);  // exponent field 7 = bias
  EXPECT_EQ(float_to_e4m3(-1.0f), 0xb8);
  EXPECT_EQ(float_to_e4m3(448.0f), 0x7e);
  EXPECT_EQ(float_to_e4m3(-448.0f), 0xfe);
  EXPECT_EQ(e4m3_to_float(0x7e), 448.0f);
  EXPECT_EQ(e4m3_to_float(0x08), 0x1p-6f);  // smallest normal
  EXPECT_EQ(e4m3_to_float(0x07), 7 * 0x1p-9f);  // largest subnormal
}

TEST(E4m3, Subnormals) {
  EXPECT_EQ(float_to_e4m3(0x1p-9f), 0x01);  // smallest subnormal
  EXPECT_EQ(e4m3_to_float(0x01), 0x1p-9f);
  EXPECT_EQ(e4m3_to_float(0x81), -0x1p-9f);
  EXPECT_EQ(float_to_e4m3(0x1p-10f), 0x00);      // half of it: tie to even (0)
  EXPECT_EQ(float_to_e4m3(0x1.01p-10f), 0x01);   // just above half
  EXPECT_EQ(float_to_e4m3(3 * 0x1p-10f), 0x02);  // 1.5 quanta: tie to even (2)
  EXPECT_EQ(float_to_e4m3(15 * 0x1p-10f), 0x08);  // 7.5 quanta round up into the first normal
}

TEST(E4m3, RoundsTiesToEven) {
  EXPECT_EQ(float_to_e4m3(1.0625f), 0x38);  // between 1 (even) and 1.125
  EXPECT_EQ(float_to_e4m3(1.1875f), 0x3a);  // between 1.125 (odd) and 1.25 (even)
  EXPECT_EQ(float_to_e4m3(1.9375f), 0x40);  // between 1.875 (odd) and 2: carries into the exponent
  EXPECT_EQ(float_to_e4m3(1.07f), 0x39);    // above halfway
  EXPECT_EQ(float_to_e4m3(-1.0625f), 0xb8);
}

TEST(E4m3, SaturatesBeyondMax) {
  EXPECT_EQ(float_to_e4m3(449.0f), 0x7e);
  EXPECT_EQ(float_to_e4m3(464.0f), 0x7e);  // would round to 480, which is not finite in E4M3FN
  EXPECT_EQ(float_to_e4m3(1e30f), 0x7e);
  EXPECT_EQ(float_to_e4m3(-1e30f), 0xfe);
  EXPECT_EQ(float_to_e4m3(kInf), 0x7e);
  EXPECT_EQ(float_to_e4m3(-kInf), 0xfe);
}

TEST(E4m3, NaN) {
  EXPECT_EQ(float_to_e4m3(kNaN), 0x7f);
  EXPECT_EQ(float_to_e4m3(-kNaN), 0x7f);  // the sign of a NaN is not kept
  EXPECT_TRUE(std::isnan(e4m3_to_float(0x7f)));
  EXPECT_TRUE(std::isnan(e4m3_to_float(0xff)));
}

TEST(E4m3, All256CodesRoundTrip) {
  for (uint32_t code = 0; code < 256; ++code) {
    const float value = e4m3_to_float(uint8_t(code));
    if ((code & 0x7f) == 0x7f) {
      EXPECT_TRUE(std::isnan(value));
      EXPECT_EQ(float_to_e4m3(value), 0x7f);
      continue;
    }
    EXPECT_EQ(float_to_e4m3(value), code) << std::hex << code;
    // Independent decode: (-1)^s * 2^(E-7) * (1 + M/8), or 2^-6 * M/8 for E = 0.
    const int exponent = (code >> 3) & 0xf, mantissa = code & 0x7;
    const double magnitude =
        exponent == 0 ? std::ldexp(mantissa / 8.0, -6) : std::ldexp(1.0 + mantissa / 8.0, exponent - 7);
    EXPECT_EQ(value, (code & 0x80) ? -magnitude : magnitude) << std::hex << code;
  }
}

TEST(E2m1, Values) {
  const float expected[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  for (uint8_t code = 0; code < 8; ++code) {
    EXPECT_EQ(e2m1_to_float(code), expected[code]);
    EXPECT_EQ(e2m1_to_float(code | 0x8), -expected[code]);
  }
}

TEST(E2m1, All16CodesRoundTrip) {
  for (uint8_t code = 0; code < 16; ++code) EXPECT_EQ(float_to_e2m1(e2m1_to_float(code)), code) << int(code);
}

TEST(E2m1, RoundsTiesToEven) {
  EXPECT_EQ(float_to_e2m1(0.25f), 0x0);  // between 0 (code 0) and 0.5 (code 1)
  EXPECT_EQ(float_to_e2m1(0.75f), 0x2);  // between 0.5 (1) and 1 (2)
  EXPECT_EQ(float_to_e2m1(1.25f), 0x2);  // between 1 (2) and 1.5 (3)
  EXPECT_EQ(float_to_e2m1(1.75f), 0x4);  // between 1.5 (3) and 2 (4)
  EXPECT_EQ(float_to_e2m1(2.5f), 0x4);   // between 2 (4) and 3 (5)
  EXPECT_EQ(float_to_e2m1(3.5f), 0x6);   // between 3 (5) and 4 (6)
  EXPECT_EQ(float_to_e2m1(5.0f), 0x6);   // between 4 (6) and 6 (7)
  EXPECT_EQ(float_to_e2m1(5.01f), 0x7);
  EXPECT_EQ(float_to_e2m1(-5.0f), 0xe);
  EXPECT_EQ(float_to_e2m1(0.26f), 0x1);
}

TEST(E2m1, SaturationAndNaN) {
  EXPECT_EQ(float_to_e2m1(6.0f), 0x7);
  EXPECT_EQ(float_to_e2m1(7.0f), 0x7);
  EXPECT_EQ(float_to_e2m1(1e20f), 0x7);
  EXPECT_EQ(float_to_e2m1(-100.0f), 0xf);
  EXPECT_EQ(float_to_e2m1(kInf), 0x7);
  EXPECT_EQ(float_to_e2m1(-kInf), 0xf);
  EXPECT_EQ(float_to_e2m1(kNaN), 0x7);  // documented: NaN -> +6
  EXPECT_EQ(float_to_e2m1(-0.0f), 0x8);
  EXPECT_EQ(float_to_e2m1(0.0f), 0x0);
}

TEST(E8m0, Decode) {
  EXPECT_EQ(e8m0_to_float(127), 1.0f);
  EXPECT_EQ(e8m0_to_float(128), 2.0f);
  EXPECT_EQ(e8m0_to_float(0), 0x1p-127f);
  EXPECT_EQ(e8m0_to_float(254), 0x1p127f);
  EXPECT_TRUE(std::isnan(e8m0_to_float(0xff)));
}

TEST(E8m0, RoundsUpToAPowerOfTwo) {
  EXPECT_EQ(float_to_e8m0(1.0f), 127);
  EXPECT_EQ(float_to_e8m0(1.5f), 128);         // 2 >= 1.5
  EXPECT_EQ(float_to_e8m0(1.0000001f), 128);
  EXPECT_EQ(float_to_e8m0(0.75f), 127);        // 1 >= 0.75
  EXPECT_EQ(float_to_e8m0(0.5f), 126);
  EXPECT_EQ(float_to_e8m0(0x1p-127f), 0);
  EXPECT_EQ(float_to_e8m0(0x1p-126f), 1);
  EXPECT_EQ(float_to_e8m0(0x1p127f), 254);
}

TEST(E8m0, EdgeCases) {
  EXPECT_EQ(float_to_e8m0(0.0f), 0);
  EXPECT_EQ(float_to_e8m0(-3.0f), 0);
  EXPECT_EQ(float_to_e8m0(1e-45f), 0);  // below 2^-127
  EXPECT_EQ(float_to_e8m0(0x1.8p127f), 254);  // 2^128 is not representable: clamps at 2^127
  EXPECT_EQ(float_to_e8m0(kInf), 254);
  EXPECT_EQ(float_to_e8m0(kNaN), 0xff);
  for (int code = 0; code < 255; ++code) EXPECT_EQ(float_to_e8m0(e8m0_to_float(uint8_t(code))), code);
}

}  // namespace
}  // namespace signalgemm::ref
