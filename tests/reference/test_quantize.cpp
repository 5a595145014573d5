// Quantizers: byte layout of data and scales on hand-built tensors, per-element error bounds of
// quantize -> dequantize on random data, and argument checks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "signalgemm/reference.h"

namespace signalgemm::ref {
namespace {

float scale_float_at(const QuantizedOperand& q, size_t byte_offset) {
  float value;
  std::memcpy(&value, q.scales.data() + byte_offset, sizeof value);
  return value;
}

// ---- layout on hand-built tensors

TEST(QuantizeLayout, Bf16LittleEndianNoScales) {
  const float x[2] = {1.0f, -2.0f};
  const auto q = quantize(Format::bf16, Role::a, x, 1, 1, 2);
  EXPECT_EQ(q.data, (std::vector<uint8_t>{0x80, 0x3f, 0x00, 0xc0}));
  EXPECT_TRUE(q.scales.empty());
  EXPECT_EQ(q.global_scale, std::vector<float>{1.0f});
}

TEST(QuantizeLayout, Fp8Block128ActivationScalesAreKBlockMajorWithPaddedRows) {
  constexpr int kExperts = 2, kRows = 3, kK = 256;
  std::vector<float> x(kExperts * kRows * kK, 0.0f);
  x[(1 * kRows + 2) * kK + 128 + 5] = -896.0f;  // expert 1, row 2, K block 1
  const auto q = quantize(Format::fp8_block128, Role::a, x.data(), kExperts, kRows, kK);

  // float sfa[2 experts][2 K blocks][4 rows (3 padded to 4)]
  ASSERT_EQ(q.scales.size(), size_t(2 * 2 * 4 * 4));
  EXPECT_EQ(scale_float_at(q, ((1 * 2 + 1) * 4 + 2) * 4), 2.0f);  // 896 / 448
  for (int block = 0; block < 4; ++block) EXPECT_EQ(scale_float_at(q, (block * 4 + 3) * 4), 1.0f) << "padding";
  EXPECT_EQ(scale_float_at(q, 0), FLT_MIN);  // an all-zero block takes the floor
  EXPECT_EQ(q.data[(1 * kRows + 2) * kK + 133], 0xfe);  // -448
  EXPECT_EQ(dequantize_element(q, 1, 2, 133), -896.0);
}

TEST(QuantizeLayout, Fp8Block128WeightScalesPer128x128Block) {
  constexpr int kRows = 130, kK = 256;  // two row blocks, the second with 2 rows
  std::vector<float> x(kRows * kK, 0.0f);
  x[129 * kK + 0] = 4480.0f;  // row block 1, K block 0
  x[0 * kK + 200] = 44.8f;    // row block 0, K block 1
  x[100 * kK + 7] = 448.0f;   // row block 0, K block 0: sets the scale of the whole block ...
  x[5 * kK + 3] = 1.0f;       // ... including this row
  const auto q = quantize(Format::fp8_block128, Role::b, x.data(), 1, kRows, kK);

  // float sfb[1 expert][2 row blocks][2 K blocks]
  ASSERT_EQ(q.scales.size(), size_t(2 * 2 * 4));
  EXPECT_EQ(scale_float_at(q, 0), 1.0f);
  EXPECT_EQ(scale_float_at(q, 4), 44.8f / 448.0f);
  EXPECT_EQ(scale_float_at(q, 8), 10.0f);
  EXPECT_EQ(scale_float_at(q, 12), FLT_MIN);
  EXPECT_EQ(q.data[129 * kK + 0], 0x7e);
  EXPECT_EQ(q.data[5 * kK + 3], 0x38);  // e4m3(1.0)
  EXPECT_EQ(dequantize_element(q, 0, 129, 0), 4480.0);
}

TEST(QuantizeLayout, Nvfp4NibbleOrderScalesAndGlobalScale) {
  constexpr int kRows = 2, kK = 32;
  std::vector<float> x(kRows * kK, 0.0f);
  x[0 * kK + 16] = 2688.0f;  // expert amax = 448 * 6: global scale 1, this block's scale 448
  x[1 * kK + 0] = 0.5f;      // row 1, block 0: amax 6, scale 1
  x[1 * kK + 1] = -3.0f;
  x[1 * kK + 2] = 6.0f;
  const auto q = quantize(Format::nvfp4, Role::a, x.data(), 1, kRows, kK);

  ASSERT_EQ(q.data.size(), size_t(kRows * kK / 2));
  ASSERT_EQ(q.scales.size(), size_t(kRows * kK / 16));  // uint8 [1][2][2]
  EXPECT_EQ(q.global_scale, std::vector<float>{1.0f});
  EXPECT_EQ(q.scales[1], 0x7e);  // row 0, block 1: e4m3(448)
  EXPECT_EQ(q.scales[2], 0x38);  // row 1, block 0: e4m3(1)
  EXPECT_EQ(q.data[8], 0x07);    // row 0, element 16 (even: low nibble) = 6 (code 7) x 448
  EXPECT_EQ(q.data[16], 0xd1);   // row 1: element 0 = 0.5 (code 1, low), element 1 = -3 (code 0xd, high)
  EXPECT_EQ(q.data[17], 0x07);   // element 2 = 6 (low), element 3 = 0 (high)
  EXPECT_EQ(dequantize_element(q, 0, 1, 1), -3.0);
  EXPECT_EQ(dequantize_element(q, 0, 0, 16), 2688.0);
}

TEST(QuantizeLayout, Nvfp4GlobalScaleGoesToAlphaNotToElements) {
  constexpr int kRows = 2, kK = 32;
  std::vector<float> x(kRows * kK, 0.0f);
  x[0 * kK + 16] = 2688.0f * 0x1p-10f;
  x[1 * kK + 1] = -3.0f * 0x1p-10f;
  x[1 * kK + 2] = 6.0f * 0x1p-10f;
  const auto q = quantize(Format::nvfp4, Role::b, x.data(), 1, kRows, kK);
  EXPECT_EQ(q.global_scale, std::vector<float>{0x1p-10f});
  EXPECT_EQ(q.scales[2], 0x38);
  EXPECT_EQ(dequantize_element(q, 0, 1, 1), -3.0);  // without the global scale
}

TEST(QuantizeLayout, Mxfp4ScalesAndNibbles) {
  constexpr int kRows = 2, kK = 64;
  std::vector<float> x(kRows * kK, 0.0f);
  x[1 * kK + 32] = 7.0f;   // row 1, block 1: amax 7 -> scale 2 (the power of two >= 7/6)
  x[1 * kK + 33] = -1.0f;
  x[0 * kK + 40] = 6.0f;   // row 0, block 1: amax 6 -> scale 1
  const auto q = quantize(Format::mxfp4, Role::a, x.data(), 1, kRows, kK);

  ASSERT_EQ(q.scales.size(), size_t(kRows * kK / 32));  // uint8 [1][2][2]
  EXPECT_EQ(q.scales[0], 0);    // all-zero block: 2^-127
  EXPECT_EQ(q.scales[1], 127);  // 2^0
  EXPECT_EQ(q.scales[3], 128);  // 2^1
  EXPECT_EQ(q.data[20], 0x07);  // row 0, element 40: 6 in the low nibble
  EXPECT_EQ(q.data[48], 0x96);  // row 1, elements 32/33: 3.5 -> 4 (code 6, low), -0.5 (code 9, high)
  EXPECT_EQ(dequantize_element(q, 0, 1, 32), 8.0);
  EXPECT_EQ(dequantize_element(q, 0, 1, 33), -1.0);
}

TEST(QuantizeLayout, Mxfp8Scales) {
  constexpr int kExperts = 2, kRows = 1, kK = 32;
  std::vector<float> x(kExperts * kRows * kK, 0.0f);
  x[0 * kK + 0] = 448.0f;  // expert 0: scale 1
  x[1 * kK + 3] = 449.0f;  // expert 1: scale 2, element 224.5 -> 224
  const auto q = quantize(Format::mxfp8, Role::b, x.data(), kExperts, kRows, kK);
  ASSERT_EQ(q.scales.size(), size_t(2));
  EXPECT_EQ(q.scales[0], 127);
  EXPECT_EQ(q.scales[1], 128);
  EXPECT_EQ(q.data[0], 0x7e);
  EXPECT_EQ(q.data[kK + 3], 0x76);  // 224 = 1.75 * 2^7
  EXPECT_EQ(dequantize_element(q, 1, 0, 3), 448.0);
}

// ---- quantize -> dequantize error bounds on random data

// Random values whose magnitude changes from scale block to scale block by up to 2^+-spread, so
// that the scales differ.
std::vector<float> random_tensor(int count, int block, int spread, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-spread, spread);
  std::vector<float> x(count);
  for (int i = 0; i < count; i += block) {
    const float magnitude = std::ldexp(1.0f, exponent(rng));
    for (int j = i; j < i + block && j < count; ++j) x[j] = normal(rng) * magnitude;
  }
  return x;
}

// The scale an element was divided by, read through the documented layout (global scale
// included for nvfp4).
double effective_scale(const QuantizedOperand& q, int e, int r, int c) {
  switch (q.format) {
    case Format::bf16: return 1.0;
    case Format::fp8_block128: {
      const int k_blocks = q.k / 128;
      const size_t index = q.role == Role::a
                               ? (size_t(e) * k_blocks + c / 128) * ((q.rows + 3) / 4 * 4) + r
                               : (size_t(e) * ((q.rows + 127) / 128) + r / 128) * k_blocks + c / 128;
      return scale_float_at(q, index * sizeof(float));
    }
    case Format::nvfp4:
      return double(e4m3_to_float(q.scales[(size_t(e) * q.rows + r) * (q.k / 16) + c / 16])) * q.global_scale[e];
    case Format::mxfp4:
    case Format::mxfp8: return e8m0_to_float(q.scales[(size_t(e) * q.rows + r) * (q.k / 32) + c / 32]);
  }
  return 0.0;
}

// Bound on |x - dequantized| for one element with scale s (y = x / s is what the element format
// rounds), from the element format's precision:
//  bf16: 8 significant bits, half an ulp is <= 2^-8 |x|.
//  e4m3: 4 significant bits, half an ulp <= 2^-4 |y| for normals; subnormal quantum 2^-9 -> 2^-10.
//  e2m1: 2 significant bits, half an ulp <= |y| / 4 for y >= 1 (0.25 in [1,2), 0.5 in [2,4), 1 in
//        [4,6]); below 1 the quantum is 0.5 -> 0.25. nvfp4's rounded e4m3 block scale can leave
//        |y| up to 6 * (1 + 2^-4) = 6.375, saturating to 6 with an error 0.375 < |y| / 4.
// A factor 1 + 2^-20 covers the float rounding of x / s.
double error_bound(Format format, double x, double s) {
  constexpr double kSlack = 1.0 + 0x1p-20;
  switch (format) {
    case Format::bf16: return 0x1p-8 * std::fabs(x) * kSlack;
    case Format::fp8_block128:
    case Format::mxfp8: return std::max(0x1p-4 * std::fabs(x), 0x1p-10 * s) * kSlack;
    case Format::nvfp4:
    case Format::mxfp4: return std::max(std::fabs(x), s) / 4 * kSlack;
  }
  return 0.0;
}

struct RoundTripCase {
  Format format;
  Role role;
  int spread;  // block magnitude spread, log2
};

class QuantizeRoundTrip : public ::testing::TestWithParam<RoundTripCase> {};

TEST_P(QuantizeRoundTrip, ErrorWithinElementFormatBound) {
  const RoundTripCase tc = GetParam();
  constexpr int kExperts = 3, kRows = 133, kK = 512;  // rows not a multiple of 4 or 128
  const int block = scale_block_k(tc.format) == 0 ? kK : scale_block_k(tc.format);
  auto x = random_tensor(kExperts * kRows * kK, block, tc.spread, 7 + int(tc.format));
  // An all-zero row and a row of a single nonzero value exercise the degenerate scales.
  std::fill(x.begin() + 5 * kK, x.begin() + 6 * kK, 0.0f);
  std::fill(x.begin() + 6 * kK, x.begin() + 7 * kK, 0.0f);
  x[6 * kK + 100] = -3.0f;

  const auto q = quantize(tc.format, tc.role, x.data(), kExperts, kRows, kK);
  const auto values = dequantize(q);
  ASSERT_EQ(values.size(), x.size());
  int failures = 0;
  for (int e = 0; e < kExperts; ++e)
    for (int r = 0; r < kRows; ++r)
      for (int c = 0; c < kK; ++c) {
        const size_t i = (size_t(e) * kRows + r) * kK + c;
        const double s = effective_scale(q, e, r, c);
        const double got = values[i] * (tc.format == Format::nvfp4 ? q.global_scale[e] : 1.0f);
        const double bound = error_bound(tc.format, x[i], s);
        if (std::fabs(got - x[i]) > bound && ++failures <= 5)
          ADD_FAILURE() << to_string(tc.format) << " (" << e << ", " << r << ", " << c << "): x " << x[i]
                        << " dequantized " << got << " scale " << s << " bound " << bound;
        if (x[i] == 0.0f) {
          EXPECT_EQ(values[i], 0.0);
        }
      }
  EXPECT_EQ(failures, 0);
}

INSTANTIATE_TEST_SUITE_P(
    Formats, QuantizeRoundTrip,
    ::testing::Values(RoundTripCase{Format::bf16, Role::a, 20}, RoundTripCase{Format::fp8_block128, Role::a, 20},
                      RoundTripCase{Format::fp8_block128, Role::b, 20}, RoundTripCase{Format::mxfp8, Role::a, 20},
                      RoundTripCase{Format::mxfp4, Role::b, 20},
                      // nvfp4 block scales are e4m3 relative to the expert's amax: keep them in
                      // e4m3's normal range (a spread of 2^+-4 stays far above 2^-6).
                      RoundTripCase{Format::nvfp4, Role::b, 4}),
    [](const ::testing::TestParamInfo<RoundTripCase>& param_info) {
      return std::string(to_string(param_info.param.format)) + (param_info.param.role == Role::a ? "_a" : "_b");
    });

// The scales themselves: what each format's rule says, checked on every block.
TEST(QuantizeScales, FollowTheDocumentedRules) {
  constexpr int kExperts = 2, kRows = 40, kK = 256;
  const auto x = random_tensor(kExperts * kRows * kK, 16, 4, 3);
  auto block_amax = [&](int e, int r0, int r1, int c0, int width) {
    float amax = 0.0f;
    for (int r = r0; r < r1; ++r)
      for (int c = c0; c < c0 + width; ++c) amax = std::max(amax, std::fabs(x[(size_t(e) * kRows + r) * kK + c]));
    return amax;
  };
  const auto fp8_a = quantize(Format::fp8_block128, Role::a, x.data(), kExperts, kRows, kK);
  const auto fp8_b = quantize(Format::fp8_block128, Role::b, x.data(), kExperts, kRows, kK);
  const auto nv = quantize(Format::nvfp4, Role::a, x.data(), kExperts, kRows, kK);
  const auto mx4 = quantize(Format::mxfp4, Role::a, x.data(), kExperts, kRows, kK);
  const auto mx8 = quantize(Format::mxfp8, Role::a, x.data(), kExperts, kRows, kK);
  for (int e = 0; e < kExperts; ++e) {
    EXPECT_EQ(effective_scale(fp8_b, e, 0, 0), block_amax(e, 0, kRows, 0, 128) / 448.0f);
    const float expert_amax = block_amax(e, 0, kRows, 0, kK);
    EXPECT_EQ(nv.global_scale[e], expert_amax / 2688.0f);
    for (int r = 0; r < kRows; ++r) {
      for (int c = 0; c < kK; c += 128)
        EXPECT_EQ(effective_scale(fp8_a, e, r, c), block_amax(e, r, r + 1, c, 128) / 448.0f);
      for (int c = 0; c < kK; c += 16) {
        // e4m3(amax / 6 / gs): within e4m3's relative rounding error 2^-4 of the target.
        const double target = double(block_amax(e, r, r + 1, c, 16)) / 6.0 / nv.global_scale[e];
        const double scale = effective_scale(nv, e, r, c) / nv.global_scale[e];
        EXPECT_LE(std::fabs(scale - target), 0x1p-4 * target * (1 + 1e-6));
      }
      for (int c = 0; c < kK; c += 32) {
        // The power of two p with p / 2 < amax / element_max <= p.
        const double amax = block_amax(e, r, r + 1, c, 32);
        for (const auto* q : {&mx4, &mx8}) {
          const double ratio = amax / (q == &mx4 ? 6.0 : 448.0);
          const double p = effective_scale(*q, e, r, c);
          EXPECT_GE(p, ratio);
          EXPECT_LT(p / 2, ratio);
          EXPECT_EQ(std::exp2(std::round(std::log2(p))), p);
        }
      }
    }
  }
}

TEST(Dequantize, MatchesDequantizeElement) {
  constexpr int kExperts = 2, kRows = 5, kK = 64;
  const auto x = random_tensor(kExperts * kRows * kK, 16, 3, 11);
  for (Format format : {Format::bf16, Format::nvfp4, Format::mxfp4, Format::mxfp8}) {
    const auto q = quantize(format, Role::a, x.data(), kExperts, kRows, kK);
    const auto values = dequantize(q);
    size_t i = 0;
    for (int e = 0; e < kExperts; ++e)
      for (int r = 0; r < kRows; ++r)
        for (int c = 0; c < kK; ++c) ASSERT_EQ(values[i++], dequantize_element(q, e, r, c)) << to_string(format);
  }
}

// ---- argument checks

TEST(QuantizeArguments, KMustBeAMultipleOfTheScaleBlock) {
  const std::vector<float> x(1000, 1.0f);
  const std::pair<Format, int> bad[] = {
      {Format::fp8_block128, 64}, {Format::nvfp4, 24}, {Format::mxfp4, 48}, {Format::mxfp8, 16}};
  for (const auto& [format, k] : bad) {
    try {
      quantize(format, Role::a, x.data(), 1, 2, k);
      ADD_FAILURE() << to_string(format) << " accepted k = " << k;
    } catch (const std::invalid_argument& error) {
      EXPECT_NE(std::string(error.what()).find("k ("), std::string::npos) << error.what();
    }
  }
  EXPECT_NO_THROW(quantize(Format::bf16, Role::a, x.data(), 1, 2, 3));
}

TEST(QuantizeArguments, RejectsNonPositiveSizesAndNull) {
  const std::vector<float> x(256, 1.0f);
  EXPECT_THROW(quantize(Format::bf16, Role::a, x.data(), 0, 1, 16), std::invalid_argument);
  EXPECT_THROW(quantize(Format::bf16, Role::a, x.data(), 1, -1, 16), std::invalid_argument);
  EXPECT_THROW(quantize(Format::mxfp8, Role::a, x.data(), 1, 1, 0), std::invalid_argument);
  EXPECT_THROW(quantize(Format::nvfp4, Role::a, nullptr, 1, 1, 16), std::invalid_argument);
  // Sizes whose product passes int64 are refused before x is read.
  constexpr int kHuge = std::numeric_limits<int>::max();
  EXPECT_THROW(quantize(Format::bf16, Role::a, x.data(), kHuge, kHuge, 1 << 20), std::invalid_argument);
}

// A NaN or Inf would turn its block's scale into NaN or Inf and every other value of the block into
// garbage: refused, in every format.
TEST(QuantizeArguments, RejectsValuesThatAreNotFinite) {
  for (const float bad : {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                          std::numeric_limits<float>::quiet_NaN()}) {
    std::vector<float> x(256, 1.0f);
    x[37] = bad;
    for (const Format format : {Format::bf16, Format::fp8_block128, Format::nvfp4, Format::mxfp4, Format::mxfp8})
      EXPECT_THROW(quantize(format, Role::a, x.data(), 1, 2, 128), std::invalid_argument) << to_string(format);
  }
}

TEST(QuantizeArguments, DequantizeChecksIndicesAndBuffers) {
  const std::vector<float> x(64, 1.0f);
  auto q = quantize(Format::nvfp4, Role::a, x.data(), 1, 2, 32);
  EXPECT_THROW(dequantize_element(q, 1, 0, 0), std::out_of_range);
  EXPECT_THROW(dequantize_element(q, 0, 2, 0), std::out_of_range);
  EXPECT_THROW(dequantize_element(q, 0, 0, 32), std::out_of_range);
  EXPECT_THROW(dequantize_element(q, 0, -1, 0), std::out_of_range);
  q.scales.pop_back();
  EXPECT_THROW(dequantize(q), std::invalid_argument);
}

}  // namespace
}  // namespace signalgemm::ref
