// The mma_fragments weight layout (detail/mma_fragments.h) on the CPU: decoding every packed word
// the way the mainloop does (shift, mask, byte permute over the two tables) gives each weight's
// bf16 value times 2^-126, every element of a block lands in exactly one field, each scale word
// holds its two rows' converted block scales, and rows and columns past n and k are zero.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "signalgemm/detail/mma_fragments.h"
#include "signalgemm/reference.h"

namespace signalgemm::ref {
namespace {

using namespace detail;

// prmt.b32 d, a, b, selector (default mode; selectors below never set the sign-replicate bit).
uint32_t byte_permute(uint32_t a, uint32_t b, uint32_t selector) {
  const uint64_t bytes = uint64_t(b) << 32 | a;
  uint32_t d = 0;
  for (int i = 0; i < 4; ++i) d |= uint32_t((bytes >> (8 * ((selector >> (4 * i)) & 7))) & 0xFF) << (8 * i);
  return d;
}

// bf16 bits of register `reg` of a packed word, as the mainloop computes them.
uint32_t register_bits(uint32_t word, int reg) {
  const uint32_t selector = ((word >> fragment_field_shift(reg)) & 0x3333u) | 0x4040u;
  return byte_permute(kFragmentLowByteTable, kFragmentHighByteTable, selector);
}

QuantizedOperand random_nvfp4(int experts, int n, int k, std::mt19937& rng) {
  std::vector<float> x(size_t(experts) * n * k);
  std::normal_distribution<float> normal(0.f, 1.f);
  for (float& v : x) v = normal(rng);
  return quantize(Format::nvfp4, Role::b, x.data(), experts, n, k);
}

uint32_t code_at(const QuantizedOperand& q, int e, int row, int col) {
  const uint8_t byte = q.data[size_t(e) * q.expert_bytes() + size_t(row) * q.row_bytes() + col / 2];
  return col % 2 == 0 ? byte & 0xF : byte >> 4;
}

TEST(MmaFragments, EveryWordDecodesToItsElements) {
  std::mt19937 rng(5);
  const int experts = 2, n = 100, k = 208;  // a partial 64-row slice and a partial 64-K block
  const QuantizedOperand q = random_nvfp4(experts, n, k, rng);
  const std::vector<uint8_t> packed = pack_mma_fragments(q);
  const int slices = 2, k_blocks = 4;
  ASSERT_EQ(int64_t(packed.size()), experts * mma_fragment_bytes_per_expert(n, k));
  ASSERT_EQ(mma_fragment_bytes_per_expert(n, k), int64_t(slices) * k_blocks * kFragmentBlockStride);
  size_t offset = 0;
  const auto word_at = [&](size_t at) {
    return uint32_t(packed[at]) | uint32_t(packed[at + 1]) << 8 | uint32_t(packed[at + 2]) << 16 |
           uint32_t(packed[at + 3]) << 24;
  };
  for (int e = 0; e < experts; ++e)
    for (int s = 0; s < slices; ++s)
      for (int b = 0; b < k_blocks; ++b) {
        std::vector<int> seen(kFragmentBlockRows * kFragmentBlockK, 0);
        for (int word = 0; word < kFragmentWordsPerBlock; ++word, offset += 4) {
          const uint32_t bits = word_at(offset);
          for (int reg = 0; reg < 4; ++reg) {
            const uint32_t value_bits = register_bits(bits, reg);
            for (int half = 0; half < 2; ++half) {
              const int r = fragment_element_row(word, reg), c = fragment_element_col(word, reg, half);
              ++seen[r * kFragmentBlockK + c];
              const int row = s * kFragmentBlockRows + r, col = b * kFragmentBlockK + c;
              const float want = row < n && col < k ? e2m1_to_float(uint8_t(code_at(q, e, row, col))) : 0.f;
              const float got = std::ldexp(bf16_to_float(uint16_t(value_bits >> (16 * half))), 126);
              ASSERT_EQ(got, want) << "expert " << e << " row " << row << " col " << col;
            }
          }
        }
        for (int i = 0; i < kFragmentBlockRows * kFragmentBlockK; ++i) ASSERT_EQ(seen[i], 1) << "element " << i;
        // Scale word 4q + step: rows 16 (q / 8) + q % 8 and + 8 (the A fragment's r, r + 8 of quad q).
        std::vector<int> scale_seen(kFragmentBlockRows * 4, 0);
        for (int word = 0; word < kFragmentScaleWordsPerBlock; ++word, offset += 4) {
          const uint32_t bits = word_at(offset);
          for (int half = 0; half < 2; ++half) {
            const int r = fragment_scale_row(word) + 8 * half, step = fragment_scale_step(word);
            ++scale_seen[r * 4 + step];
            const int row = s * kFragmentBlockRows + r, col = b * kFragmentBlockK + 16 * step;
            const bool real = row < n && col < k;
            const float want =
                real ? std::ldexp(e4m3_to_float(q.scales[(size_t(e) * n + row) * (k / 16) + col / 16]), 119) : 0.f;
            ASSERT_EQ(bf16_to_float(uint16_t(bits >> (16 * half))), want) << "expert " << e << " row " << row
                                                                           << " step " << col / 16;
          }
        }
        for (int i = 0; i < kFragmentBlockRows * 4; ++i) ASSERT_EQ(scale_seen[i], 1) << "scale " << i;
      }
}

// Every e4m3 code (subnormals, zeros and the NaN codes, which the mainloop reads as +-480) and every
// e8m0 code converts exactly.
TEST(MmaFragments, ScaleFactorsOfEveryCode) {
  for (int code = 0; code < 256; ++code) {
    const bool nan = (code & 0x7F) == 0x7F;
    const float e4m3 = nan ? std::copysign(480.f, code & 0x80 ? -1.f : 1.f) : e4m3_to_float(uint8_t(code));
    const uint16_t bits = fragment_scale_bits(Format::nvfp4, uint8_t(code));
    EXPECT_EQ(bf16_to_float(bits), std::ldexp(e4m3, 119)) << "e4m3 code " << code;
    EXPECT_EQ(bits >> 15, uint16_t(code >> 7)) << "sign of e4m3 code " << code;  // -0 keeps its sign
    const float e8m0 = bf16_to_float(fragment_scale_bits(Format::mxfp4, uint8_t(code)));
    if (code == 255)
      EXPECT_TRUE(std::isnan(e8m0));
    else
      EXPECT_EQ(e8m0, std::ldexp(1.f, code - 127)) << "e8m0 code " << code;
  }
}

// The A-fragment layout of wgmma's register operand: thread 32w + l, register i, step k.
TEST(MmaFragments, HandComputedPositions) {
  EXPECT_EQ(fragment_element_row(0, 0), 0);
  EXPECT_EQ(fragment_element_col(0, 0, 1), 1);
  EXPECT_EQ(fragment_element_row(4 * 5, 1), 1 + 8);     // thread 5: row 1 (+8 for odd registers)
  EXPECT_EQ(fragment_element_col(4 * 5, 2, 0), 2 + 8);  // thread 5: quad 1 -> column 2 (+8 for registers 2, 3)
  EXPECT_EQ(fragment_element_row(4 * 100, 0), 48 + 1);  // warp 3, lane 4
  EXPECT_EQ(fragment_element_col(4 * 100 + 3, 3, 1), 48 + 0 + 8 + 1);  // step 3
  EXPECT_EQ(fragment_field_shift(3), 18);
}

TEST(MmaFragments, RejectsOtherFormats) {
  std::mt19937 rng(1);
  std::vector<float> x(64 * 64, 0.5f);
  const QuantizedOperand q = quantize(Format::mxfp8, Role::b, x.data(), 1, 64, 64);
  EXPECT_THROW(pack_mma_fragments(q), std::invalid_argument);
}

}  // namespace
}  // namespace signalgemm::ref
