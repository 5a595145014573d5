// The float64 masked grouped GEMM: a hand-computed product, masking, alpha, argument checks,
// combined_alpha for nvfp4, and the end-to-end quantization error of every format.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <stdexcept>
#include <utility>
#include <vector>

#include "signalgemm/reference.h"

namespace signalgemm::ref {
namespace {

constexpr int kK = 128;

// A = [[1, 1, ...], [0/64, 1/64, ..., 127/64]], B = [[0.5, 0.5, ...], [-1, 1, -1, 1, ...]]: every
// value is exact in bf16, and A B^T = [[64, 0], [63.5, 1]]:
//   row 1 . B row 0 = 0.5 * (0 + 1 + ... + 127) / 64 = 0.5 * 8128 / 64 = 63.5
//   row 1 . B row 1 = sum over the 64 pairs (2j, 2j+1) of (-2j + 2j + 1) / 64 = 1
struct HandExample {
  std::vector<float> a, b;
  HandExample(int experts) : a(size_t(experts) * 2 * kK), b(size_t(experts) * 2 * kK) {
    for (int e = 0; e < experts; ++e)
      for (int k = 0; k < kK; ++k) {
        a[(e * 2 + 0) * kK + k] = 1.0f;
        a[(e * 2 + 1) * kK + k] = float(k) / 64.0f;
        b[(e * 2 + 0) * kK + k] = 0.5f;
        b[(e * 2 + 1) * kK + k] = k % 2 ? 1.0f : -1.0f;
      }
  }
};

TEST(MaskedGroupedGemm, HandComputedBf16) {
  const HandExample x(1);
  const auto a = quantize(Format::bf16, Role::a, x.a.data(), 1, 2, kK);
  const auto b = quantize(Format::bf16, Role::b, x.b.data(), 1, 2, kK);
  const int32_t masked_m[1] = {2};
  const auto c = masked_grouped_gemm(a, b, masked_m, nullptr);
  EXPECT_EQ(c, (std::vector<double>{64.0, 0.0, 63.5, 1.0}));
}

TEST(MaskedGroupedGemm, MaskedRowsAreNaNAndMaskedMIsClamped) {
  const HandExample x(3);
  const auto a = quantize(Format::bf16, Role::a, x.a.data(), 3, 2, kK);
  const auto b = quantize(Format::bf16, Role::b, x.b.data(), 3, 2, kK);
  const int32_t masked_m[3] = {1, -4, 9};  // one row; none (negative clamps to 0); all (clamps to 2)
  const auto c = masked_grouped_gemm(a, b, masked_m, nullptr);
  ASSERT_EQ(c.size(), size_t(3 * 2 * 2));
  EXPECT_EQ(c[0], 64.0);
  EXPECT_EQ(c[1], 0.0);
  EXPECT_TRUE(std::isnan(c[2]) && std::isnan(c[3]));
  for (int i = 4; i < 8; ++i) EXPECT_TRUE(std::isnan(c[i])) << i;
  EXPECT_EQ(std::vector<double>(c.begin() + 8, c.end()), (std::vector<double>{64.0, 0.0, 63.5, 1.0}));
}

TEST(MaskedGroupedGemm, AlphaScalesEachExpert) {
  const HandExample x(2);
  const auto a = quantize(Format::bf16, Role::a, x.a.data(), 2, 2, kK);
  const auto b = quantize(Format::bf16, Role::b, x.b.data(), 2, 2, kK);
  const int32_t masked_m[2] = {2, 2};
  const float alpha[2] = {2.0f, -0.25f};
  const auto c = masked_grouped_gemm(a, b, masked_m, alpha);
  EXPECT_EQ(c, (std::vector<double>{128.0, 0.0, 127.0, 2.0, -16.0, 0.0, -15.875, -0.25}));
}

TEST(MaskedGroupedGemm, MatchesDequantizedSumsOnMixedFormats) {
  // E=8, max_m=128, N=256, K=512 (GPU-test scale, enough MACs that the rows spread over the host's
  // threads), fp8_block128 tokens against nvfp4 weights with the nvfp4 global scale in alpha.
  constexpr int kExperts = 8, kMaxM = 128, kN = 256, kDepth = 512;
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> xa(size_t(kExperts) * kMaxM * kDepth), xb(size_t(kExperts) * kN * kDepth);
  for (auto& v : xa) v = normal(rng);
  for (auto& v : xb) v = normal(rng) * 0.01f;
  const auto a = quantize(Format::fp8_block128, Role::a, xa.data(), kExperts, kMaxM, kDepth);
  const auto b = quantize(Format::nvfp4, Role::b, xb.data(), kExperts, kN, kDepth);
  const auto alpha = combined_alpha(a, b);
  for (int e = 0; e < kExperts; ++e) EXPECT_EQ(alpha[e], b.global_scale[e]);
  const std::vector<int32_t> masked_m = {128, 0, 1, 77, 128, 64, 3, 100};
  const auto c = masked_grouped_gemm(a, b, masked_m.data(), alpha.data());

  for (int e = 0; e < kExperts; ++e)
    for (int i = 0; i < kMaxM; ++i)
      for (int j = 0; j < kN; ++j) {
        const double got = c[(size_t(e) * kMaxM + i) * kN + j];
        if (i >= masked_m[e]) {
          ASSERT_TRUE(std::isnan(got)) << e << " " << i << " " << j;
          continue;
        }
        if ((i * kN + j) % 97 != 0) continue;  // spot-check the computed entries
        double sum = 0.0;
        for (int k = 0; k < kDepth; ++k) sum += dequantize_element(a, e, i, k) * dequantize_element(b, e, j, k);
        EXPECT_NEAR(got, alpha[e] * sum, 1e-12 * std::fabs(alpha[e]) * (std::fabs(sum) + 1.0));
      }
}

TEST(MaskedGroupedGemm, RejectsMismatchedOperands) {
  const HandExample x(2);
  const auto a = quantize(Format::bf16, Role::a, x.a.data(), 2, 2, kK);
  const auto b = quantize(Format::bf16, Role::b, x.b.data(), 2, 2, kK);
  const auto one_expert = quantize(Format::bf16, Role::b, x.b.data(), 1, 2, kK);
  const auto short_k = quantize(Format::bf16, Role::b, x.b.data(), 2, 2, kK / 2);
  const int32_t masked_m[2] = {2, 2};
  EXPECT_THROW(masked_grouped_gemm(a, one_expert, masked_m, nullptr), std::invalid_argument);
  EXPECT_THROW(masked_grouped_gemm(a, short_k, masked_m, nullptr), std::invalid_argument);
  EXPECT_THROW(masked_grouped_gemm(a, b, nullptr, nullptr), std::invalid_argument);
  auto truncated = b;
  truncated.data.pop_back();
  EXPECT_THROW(masked_grouped_gemm(a, truncated, masked_m, nullptr), std::invalid_argument);
  EXPECT_THROW(combined_alpha(a, one_expert), std::invalid_argument);
}

TEST(CombinedAlpha, FoldsNvfp4GlobalScales) {
  constexpr int kExperts = 2, kRows = 2, kDepth = 32;
  std::vector<float> xa(kExperts * kRows * kDepth, 0.0f), xb(kExperts * kRows * kDepth, 0.0f);
  // Expert amaxes 2688 * 2^p give global scales 2^p exactly.
  xa[3] = 2688.0f * 0x1p-3f;  // expert 0, row 0, column 3: 336
  xa[kRows * kDepth + 5] = -2688.0f * 0x1p2f;
  xb[3] = 2688.0f * 0x1p-5f;  // expert 0, row 0, column 3: 84
  xb[kRows * kDepth + 9] = 2688.0f;
  const auto a = quantize(Format::nvfp4, Role::a, xa.data(), kExperts, kRows, kDepth);
  const auto b = quantize(Format::nvfp4, Role::b, xb.data(), kExperts, kRows, kDepth);
  EXPECT_EQ(a.global_scale, (std::vector<float>{0x1p-3f, 0x1p2f}));
  EXPECT_EQ(b.global_scale, (std::vector<float>{0x1p-5f, 1.0f}));
  const auto alpha = combined_alpha(a, b);
  EXPECT_EQ(alpha, (std::vector<float>{0x1p-8f, 0x1p2f}));

  const auto a_mx = quantize(Format::mxfp8, Role::a, xa.data(), kExperts, kRows, kDepth);
  EXPECT_EQ(combined_alpha(a_mx, b), b.global_scale);  // only the nvfp4 side contributes
  EXPECT_EQ(combined_alpha(a_mx, a_mx), (std::vector<float>{1.0f, 1.0f}));

  // Both 336 and 84 are the largest e2m1 value (6) times the largest e4m3 scale (448) before the
  // global scale: the GEMM sees 2688 * 2688, and alpha restores 336 * 84.
  EXPECT_EQ(dequantize_element(a, 0, 0, 3), 2688.0);
  const int32_t masked_m[2] = {1, 0};
  const auto c = masked_grouped_gemm(a, b, masked_m, alpha.data());
  EXPECT_EQ(c[0], 336.0 * 84.0);
}

// End to end: quantize random operands, multiply, and compare with the float64 product of the
// unquantized inputs. Bounds follow from the per-element relative error of each element format
// (half an ulp: bf16 2^-8, e4m3 2^-4, e2m1 1/4 of max(|y|, 1), see test_quantize.cpp): the
// product's relative Frobenius error is about sqrt(2) times the operands' RMS relative error, which
// is below those worst cases. A mis-wired layout (nibble order, scale index) gives errors near 1.
TEST(MaskedGroupedGemm, QuantizationErrorOfEachFormat) {
  constexpr int kExperts = 2, kMaxM = 48, kN = 64, kDepth = 256;
  std::mt19937 rng(9);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> xa(size_t(kExperts) * kMaxM * kDepth), xb(size_t(kExperts) * kN * kDepth);
  for (auto& v : xa) v = normal(rng);
  for (auto& v : xb) v = normal(rng);
  const int32_t masked_m[2] = {kMaxM, 30};
  std::vector<double> exact(size_t(kExperts) * kMaxM * kN);
  for (int e = 0; e < kExperts; ++e)
    for (int i = 0; i < kMaxM; ++i)
      for (int j = 0; j < kN; ++j) {
        double sum = 0.0;
        for (int k = 0; k < kDepth; ++k)
          sum += double(xa[(size_t(e) * kMaxM + i) * kDepth + k]) * xb[(size_t(e) * kN + j) * kDepth + k];
        exact[(size_t(e) * kMaxM + i) * kN + j] = sum;
      }

  const std::pair<Format, double> cases[] = {{Format::bf16, 0x1p-8 * 1.5},
                                             {Format::fp8_block128, 0x1p-4 * 1.5},
                                             {Format::mxfp8, 0x1p-4 * 1.5},
                                             {Format::nvfp4, 0.25 * 1.5},
                                             {Format::mxfp4, 0.25 * 1.5}};
  for (const auto& [format, bound] : cases) {
    const auto a = quantize(format, Role::a, xa.data(), kExperts, kMaxM, kDepth);
    const auto b = quantize(format, Role::b, xb.data(), kExperts, kN, kDepth);
    const auto alpha = combined_alpha(a, b);
    const auto c = masked_grouped_gemm(a, b, masked_m, alpha.data());
    double error2 = 0.0, norm2 = 0.0;
    for (int e = 0; e < kExperts; ++e)
      for (int i = 0; i < masked_m[e]; ++i)
        for (int j = 0; j < kN; ++j) {
          const size_t idx = (size_t(e) * kMaxM + i) * kN + j;
          error2 += (c[idx] - exact[idx]) * (c[idx] - exact[idx]);
          norm2 += exact[idx] * exact[idx];
        }
    const double relative = std::sqrt(error2 / norm2);
    EXPECT_LT(relative, bound) << to_string(format);
    EXPECT_GT(relative, 0.0) << to_string(format);  // random data is not exactly representable
  }
}

}  // namespace
}  // namespace signalgemm::ref
