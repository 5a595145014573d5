// FlashInfer's swizzled 128x4 scale layout: hand-computed offsets, padding, round trips.
#include <gtest/gtest.h>

#include <algorithm>
#include <tuple>
#include <random>

#include "signalgemm/reference.h"

namespace signalgemm::ref {
namespace {

TEST(ScaleLayouts, SizeIsPaddedTo128RowsAnd4Columns) {
  EXPECT_EQ(flashinfer_128x4_bytes_per_expert(1, 1), 512);
  EXPECT_EQ(flashinfer_128x4_bytes_per_expert(128, 4), 512);
  EXPECT_EQ(flashinfer_128x4_bytes_per_expert(130, 5), 4 * 512);
  EXPECT_EQ(flashinfer_128x4_bytes_per_expert(4096, 7168 / 16), 32 * 112 * 512);
}

TEST(ScaleLayouts, HandComputedOffsets) {
  // rows 130, cols 5: 2 row tiles x 2 column tiles. Mark single elements and find their bytes.
  const int rows = 130, cols = 5;
  struct Case { int r, c; int64_t offset; };
  const Case cases[] = {
      {0, 0, 0},                                      // first byte
      {0, 3, 3},                                      // columns adjacent
      {1, 0, 16},                                     // rows r%32 16 bytes apart
      {32, 0, 4},                                     // 32-row groups 4 bytes apart
      {127, 2, 31 * 16 + 3 * 4 + 2},                  // last row of the first tile
      {0, 4, 512},                                    // second column tile
      {129, 4, (1 * 2 + 1) * 512 + 1 * 16},           // second row tile, second column tile
  };
  for (const Case& c : cases) {
    std::vector<uint8_t> row_major(rows * cols, 0);
    row_major[c.r * cols + c.c] = 0x5a;
    const auto swizzled = scales_to_flashinfer_128x4(row_major.data(), 1, rows, cols);
    ASSERT_EQ(int64_t(swizzled.size()), flashinfer_128x4_bytes_per_expert(rows, cols));
    for (size_t i = 0; i < swizzled.size(); ++i)
      EXPECT_EQ(swizzled[i], i == size_t(c.offset) ? 0x5a : 0) << "(" << c.r << ", " << c.c << ") byte " << i;
  }
}

TEST(ScaleLayouts, RoundTripAcrossExperts) {
  std::mt19937 rng(9);
  for (auto [experts, rows, cols] : {std::tuple{1, 1, 1}, std::tuple{3, 200, 9}, std::tuple{2, 128, 448}}) {
    std::vector<uint8_t> row_major(size_t(experts) * rows * cols);
    for (auto& x : row_major) x = uint8_t(1 + rng() % 255);
    const auto swizzled = scales_to_flashinfer_128x4(row_major.data(), experts, rows, cols);
    EXPECT_EQ(scales_from_flashinfer_128x4(swizzled.data(), experts, rows, cols), row_major);
    // Every real scale appears exactly once; padding stays zero.
    const size_t nonzero = std::count_if(swizzled.begin(), swizzled.end(), [](uint8_t x) { return x != 0; });
    EXPECT_EQ(nonzero, row_major.size());
  }
}

TEST(ScaleLayouts, RejectsBadSizes) {
  const uint8_t byte = 0;
  EXPECT_THROW(scales_from_flashinfer_128x4(&byte, 0, 1, 1), std::invalid_argument);
  EXPECT_THROW(scales_to_flashinfer_128x4(nullptr, 1, 1, 1), std::invalid_argument);
  // A byte count past 2^63 is refused before anything is sized or read (it wrapped around).
  EXPECT_THROW(scales_from_flashinfer_128x4(&byte, 1 << 30, 1 << 30, 1 << 26), std::invalid_argument);
  EXPECT_THROW(scales_to_flashinfer_128x4(&byte, 1 << 30, 1 << 30, 1 << 26), std::invalid_argument);
}

}  // namespace
}  // namespace signalgemm::ref
