// The configuration heuristic (docs/configuration.md) as a pure function.
#include <gtest/gtest.h>

#include "host/config.h"
#include "kernels/kernel_params.h"

namespace signalgemm::host {
namespace {

constexpr int kH100SmemPerBlock = 232448;

TEST(Config, BlockMCoversTypicalDecodeSpreadInOneBlock) {
  EXPECT_EQ(choose_tile_config(256, 16, kH100SmemPerBlock, {}).block_m, 32);
  EXPECT_EQ(choose_tile_config(256, 32, kH100SmemPerBlock, {}).block_m, 64);   // 1.3 * 32 > 32
  EXPECT_EQ(choose_tile_config(256, 64, kH100SmemPerBlock, {}).block_m, 128);
  EXPECT_EQ(choose_tile_config(4096, 128, kH100SmemPerBlock, {}).block_m, 192);  // 1.3 * 128 = 167
  EXPECT_EQ(choose_tile_config(4096, 1024, kH100SmemPerBlock, {}).block_m, 128);
  EXPECT_EQ(choose_tile_config(20, 0, kH100SmemPerBlock, {}).block_m, 32);   // hint defaults to max_m
  EXPECT_EQ(choose_tile_config(40, 1000, kH100SmemPerBlock, {}).block_m, 64);  // hint clamped to max_m
}

TEST(Config, WideTileOnceTokensFillTheMma) {
  EXPECT_EQ(choose_tile_config(256, 32, kH100SmemPerBlock, {}).block_n, 128);
  EXPECT_EQ(choose_tile_config(256, 128, kH100SmemPerBlock, {}).block_n, 128);  // 192 x 128
  EXPECT_EQ(choose_tile_config(4096, 1024, kH100SmemPerBlock, {}).block_n, 256);
  EXPECT_EQ(choose_tile_config(4096, 1024, kH100SmemPerBlock, TileConfig{128, 128, 0}).block_n, 128);
}

TEST(Config, DeepestRingThatFits) {
  for (TileShape t : kSupportedTiles) {
    const TileConfig cfg = choose_tile_config(1024, 0, kH100SmemPerBlock, TileConfig{t.block_m, t.block_n, 0});
    EXPECT_GE(cfg.stages, 3) << t.block_m << "x" << t.block_n;
    EXPECT_LE((kernels::SmemPlan{t.block_m, t.block_n, cfg.stages}.total_bytes()), kH100SmemPerBlock);
    if (cfg.stages < kMaxStages)
      EXPECT_GT((kernels::SmemPlan{t.block_m, t.block_n, cfg.stages + 1}.total_bytes()), kH100SmemPerBlock);
  }
}

TEST(Config, OverrideIsKept) {
  const TileConfig cfg = choose_tile_config(1024, 0, kH100SmemPerBlock, TileConfig{32, 128, 3});
  EXPECT_EQ(cfg.block_m, 32);
  EXPECT_EQ(cfg.block_n, 128);
  EXPECT_EQ(cfg.stages, 3);
}

TEST(Config, SmemPlanIsAlignedForTmaAndWgmma) {
  for (TileShape t : kSupportedTiles) {
    const kernels::SmemPlan plan{t.block_m, t.block_n, 5};
    for (int s = 0; s < 5; ++s) {
      EXPECT_EQ(plan.a_offset(s) % 1024, 0);
      EXPECT_EQ(plan.b_offset(s) % 1024, 0);
      EXPECT_EQ(plan.sfa_offset(s) % 128, 0);
    }
    EXPECT_EQ(plan.staging_offset() % 16, 0);
    EXPECT_EQ(plan.barrier_offset() % 8, 0);
  }
}

}  // namespace
}  // namespace signalgemm::host
