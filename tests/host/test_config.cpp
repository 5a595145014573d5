// The configuration heuristic (docs/configuration.md) as a pure function.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "host/config.h"
#include "host/kernel_entry.h"
#include "signalgemm/gemm.h"
#include "kernels/dequant_bf16_plan.h"
#include "kernels/kernel_params.h"

namespace signalgemm::host {
namespace {

using kernels::kH100SmemPerBlock;

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
  EXPECT_EQ(choose_tile_config(4096, 1024, kH100SmemPerBlock, {}).block_n, 192);  // fp8: the token-rows tile
  EXPECT_EQ(choose_tile_config(4096, 1024, kH100SmemPerBlock, {}, Format::bf16, Format::bf16).block_n, 256);
  EXPECT_EQ(choose_tile_config(4096, 1024, kH100SmemPerBlock, TileConfig{128, 128, 0}).block_n, 128);
}

// Two-CTA clusters are compiled for 128x128 and 128x256 (fp8_block128 on both sides), which the
// heuristic no longer picks on its own: a given 128x256 pairs where K is long.
TEST(Config, ClusterPairsForTheWideFp8TileOnly) {
  const TileConfig wide{128, 256, 0};
  EXPECT_EQ(choose_tile_config(4096, 1024, kH100SmemPerBlock, wide).cluster, 2);
  EXPECT_EQ(choose_tile_config(4096, 256, kH100SmemPerBlock, wide).cluster, 2);
  EXPECT_EQ(choose_tile_config(4096, 1024, kH100SmemPerBlock, {}).cluster, 1);  // 128 x 192
  EXPECT_EQ(choose_tile_config(256, 128, kH100SmemPerBlock, {}).cluster, 1);  // 192 x 128
  EXPECT_EQ(choose_tile_config(256, 32, kH100SmemPerBlock, {}).cluster, 1);
  EXPECT_EQ(choose_tile_config(4096, 1024, kH100SmemPerBlock, TileConfig{128, 256, 0, 1}).cluster, 1);
  EXPECT_EQ(choose_tile_config(4096, 1024, kH100SmemPerBlock, wide, Format::bf16, Format::bf16).cluster, 1);
  // Short K: the wide tile runs alone (kClusterMinK); a requested cluster is kept.
  const Format fp8 = Format::fp8_block128;
  EXPECT_EQ(choose_tile_config(4096, 256, kH100SmemPerBlock, wide, fp8, fp8, 2048).cluster, 1);
  EXPECT_EQ(choose_tile_config(4096, 256, kH100SmemPerBlock, wide, fp8, fp8, 1536).cluster, 1);
  EXPECT_EQ(choose_tile_config(4096, 256, kH100SmemPerBlock, wide, fp8, fp8, 4096).cluster, 2);
  EXPECT_EQ(choose_tile_config(4096, 256, kH100SmemPerBlock, wide, fp8, fp8, 7168).cluster, 2);
  const TileConfig asked = choose_tile_config(4096, 256, kH100SmemPerBlock, TileConfig{0, 0, 0, 2}, fp8, fp8, 2048);
  EXPECT_EQ(asked.cluster, 2);
  EXPECT_EQ(asked.block_n, 256);
  // CTAs that take tiles dynamically run alone unless a cluster is asked for.
  EXPECT_EQ(choose_tile_config(4096, 256, kH100SmemPerBlock, wide, fp8, fp8, 7168, false, /*dynamic_tiles=*/true).cluster,
            1);
  EXPECT_EQ(
      choose_tile_config(4096, 256, kH100SmemPerBlock, TileConfig{0, 0, 0, 2}, fp8, fp8, 7168, false, true).cluster,
      2);
  const TileConfig forced = choose_tile_config(256, 32, kH100SmemPerBlock, TileConfig{0, 0, 0, 2});
  EXPECT_EQ(forced.block_m, 128);  // the tile clusters are compiled for
  EXPECT_EQ(forced.block_n, 256);
}

TEST(Config, DeepestRingThatFits) {
  for (TileShape t : kSupportedTiles) {
    const TileConfig cfg = choose_tile_config(1024, 0, kH100SmemPerBlock, TileConfig{t.block_m, t.block_n, 0});
    EXPECT_GE(cfg.stages, 3) << t.block_m << "x" << t.block_n;
    EXPECT_LE(kernels::fp8_block128_smem_plan(t.block_m, t.block_n, cfg.stages).total_bytes(), kH100SmemPerBlock);
    if (cfg.stages < kMaxStages)
      EXPECT_GT(kernels::fp8_block128_smem_plan(t.block_m, t.block_n, cfg.stages + 1).total_bytes(), kH100SmemPerBlock);
  }
}

// Dequantizing pairings: block_n 128 whatever block_m, fp8_block128 x FP4 at most 128 tokens, and
// the deepest ring of their own shared-memory plan (two bf16 tiles per dequantized operand).
TEST(Config, DequantizingPairings) {
  const Format pairs[][2] = {{Format::mxfp8, Format::mxfp8},
                             {Format::mxfp4, Format::mxfp4},
                             {Format::nvfp4, Format::nvfp4},
                             {Format::fp8_block128, Format::nvfp4},
                             {Format::fp8_block128, Format::mxfp4}};
  for (const auto& pair : pairs) {
    EXPECT_TRUE(kernels::is_dequant_bf16_pair(pair[0], pair[1]));
    for (const int expected_m : {8, 32, 128, 1024}) {
      const TileConfig cfg = choose_tile_config(4096, expected_m, kH100SmemPerBlock, {}, pair[0], pair[1]);
      // fp8_block128 x FP4 runs on the register-weights mainloop's tiles (RegisterWeightsDecodeTiles,
      // Fp8TokensFp4WeightsWideTile).
      if (register_weights_with_converted_tokens(pair[0], pair[1], cfg.block_m, cfg.block_n)) continue;
      EXPECT_EQ(cfg.block_n, 128) << to_string(pair[0]) << " x " << to_string(pair[1]) << " m " << expected_m;
      EXPECT_TRUE(kernels::dequant_bf16_tile_compiled(pair[0], cfg.block_m, cfg.block_n));
      const auto plan = [&](int stages) {
        return kernels::dequant_bf16_smem_plan(pair[0], pair[1], cfg.block_m, cfg.block_n, stages).total_bytes();
      };
      EXPECT_GE(cfg.stages, kMinStages);
      EXPECT_LE(plan(cfg.stages), kH100SmemPerBlock);
      if (cfg.stages < kMaxStages) EXPECT_GT(plan(cfg.stages + 1), kH100SmemPerBlock);
    }
  }
  // The FP4 pairs run 128x128 on the register-operand mainloop (converted tokens) instead of 192x128.
  for (const Format f : {Format::mxfp4, Format::nvfp4})
    EXPECT_EQ(choose_tile_config(4096, 128, kH100SmemPerBlock, {}, f, f).block_m, 128) << to_string(f);
  EXPECT_EQ(choose_tile_config(4096, 128, kH100SmemPerBlock, {}, Format::mxfp8, Format::mxfp8).block_m, 192);
  for (const Format f : {Format::mxfp4, Format::nvfp4})
    EXPECT_EQ(choose_tile_config(4096, 128, kH100SmemPerBlock, {}, Format::fp8_block128, f).block_m, 128) << to_string(f);
}

// Weights dequantized in registers at decode (bf16 x nvfp4, bf16 x mxfp4, bf16 x mxfp8; converted
// tokens: fp8_block128 x FP4, nvfp4 x nvfp4, mxfp4 x mxfp4, mxfp8 x mxfp8): 256 weight rows per tile, and 48 tokens
// where 1.3x the hint fits them (bf16 tokens may take 128 weight rows by the launch's tile count:
// narrows_decode_tile, below). At least 3 stages beside the block-scale buffer, each stage's tiles 1024-byte aligned;
// converted tokens: their loaded bytes after the bf16 tiles also 1024-byte aligned; fp8 tokens:
// whole 128-K blocks per stage, the token scales 128-byte aligned.
TEST(Config, RegisterWeightsDecodeTiles) {
  const Format pairs[][2] = {{Format::bf16, Format::nvfp4},  {Format::bf16, Format::mxfp4},
                             {Format::bf16, Format::mxfp8},  {Format::fp8_block128, Format::nvfp4},
                             {Format::fp8_block128, Format::mxfp4},
                             {Format::nvfp4, Format::nvfp4}, {Format::mxfp4, Format::mxfp4},
                             {Format::mxfp8, Format::mxfp8}};
  for (const auto& [tokens, weights] : pairs) {
    const bool fp8 = tokens == Format::fp8_block128, converted = tokens != Format::bf16;
    const bool wide_rows = weights == Format::mxfp8;  // 64 bytes per row and 64-K block: stages of 128 K
    EXPECT_EQ(kernels::is_bf16_register_weights_pair(tokens, weights), !converted);
    const auto pick = [&](int expected_m) {
      return choose_tile_config(4096, expected_m, kH100SmemPerBlock, {}, tokens, weights);
    };
    EXPECT_EQ(pick(16).block_m, 32);
    EXPECT_EQ(pick(32).block_m, 48);
    EXPECT_EQ(pick(40).block_m, 64);
    EXPECT_TRUE(is_decode_tile(tokens, weights, 48, 256));
    for (int expected_m : {16, 32, 40}) {
      const TileConfig cfg = pick(expected_m);
      EXPECT_EQ(cfg.block_n, 256);
      EXPECT_GE(cfg.stages, 3);
      EXPECT_EQ(register_weights_with_converted_tokens(tokens, weights, cfg.block_m, cfg.block_n), converted);
      const Format plan_tokens = converted ? tokens : Format::bf16;
      const int subs = kernels::register_weights_stage_subs(cfg.block_m, cfg.block_n, plan_tokens, weights);
      if (fp8) EXPECT_EQ(subs % 2, 0);
      if (wide_rows) EXPECT_EQ(subs, 2);
      const auto plan =
          kernels::register_weights_smem_plan(cfg.block_m, cfg.block_n, cfg.stages, subs, plan_tokens, weights);
      EXPECT_LE(plan.total_bytes(), kH100SmemPerBlock);
      EXPECT_EQ(plan.total_bytes(), smem_bytes(cfg.block_m, cfg.block_n, cfg.stages, tokens, weights));
      for (int s = 0; s < cfg.stages; ++s) {
        EXPECT_EQ(plan.a_offset(s) % 1024, 0);
        EXPECT_EQ(plan.b_offset(s) % 1024, 0);
        if (converted) EXPECT_EQ((plan.a_offset(s) + subs * cfg.block_m * 128) % 1024, 0);
        if (fp8) EXPECT_EQ(plan.sfa_offset(s) % 128, 0);
      }
    }
  }
  EXPECT_EQ(kernels::register_weights_stage_subs(48, 256), 4);
  EXPECT_FALSE(is_decode_tile(Format::fp8_block128, Format::fp8_block128, 48, 256));
  EXPECT_FALSE(is_decode_tile(Format::bf16, Format::bf16, 64, 256));
  EXPECT_FALSE(is_decode_tile(Format::bf16, Format::nvfp4, 48, 128));
}

// bf16 x register weights on a decode tile (narrows_decode_tile): 64 tokens take 64x128 where tiles are
// many, and so do 32 tokens beside nvfp4 weights (32x128) unless K is short, and any tokens whose
// tiles leave a second round of 132 SMs at most half full; 33-64 tiles of 256 rows (K would split in
// 2-4 pieces) take 128 rows; fewer keep 256 and split,
// unless K <= kShortDecodeK. Converted tokens take 128x128: fp8_block128 ones from a workspace only
// where bf16 ones take 128 rows for short K; converted per tile, where twice the tiles are at most
// kOneRoundTiles (one-format pairings: of 64x256, FP4 tokens also of 48x256).
TEST(Config, DecodeTileWidthByTileCount) {
  GroupedGemmArgs args;
  args.a.format = Format::bf16, args.b.format = Format::nvfp4;
  const auto tile = [&](int experts, int max_m, int expected_m, int n, int k) {
    args.num_experts = experts, args.max_m = max_m, args.expected_m = expected_m, args.n = n, args.k = k;
    const TileConfig cfg = select_config(args);
    EXPECT_EQ(signal_layout(args).block_n, cfg.block_n);
    return std::to_string(cfg.block_m) + "x" + std::to_string(cfg.block_n);
  };
  for (const Format weights : {Format::nvfp4, Format::mxfp4, Format::mxfp8}) {
    SCOPED_TRACE(to_string(weights));
    args.b.format = weights;
    EXPECT_EQ(tile(32, 64, 40, 4096, 7168), "64x128");  // 512 tiles of 64x256: many
    EXPECT_EQ(tile(32, 48, 32, 4096, 7168), "48x256");
    // 32 tokens beside nvfp4 weights take 128 rows where the tiles are many, unless K is short.
    const std::string many_32 = weights == Format::nvfp4 ? "32x128" : "32x256";
    EXPECT_EQ(tile(32, 32, 16, 4096, 7168), many_32);
    EXPECT_EQ(tile(32, 32, 16, 7168, 0), many_32);       // K not given: as a long K
    EXPECT_EQ(tile(32, 32, 16, 7168, 2048), "32x256");
    // A second round of kRoundSms at most half full (133-198 tiles): 128 rows, whatever K and weights.
    EXPECT_EQ(tile(24, 32, 8, 1536, 2048), "32x128");   // 144 tiles
    EXPECT_EQ(tile(12, 48, 32, 4096, 7168), "64x128");  // 192
    EXPECT_EQ(tile(7, 32, 8, 7168, 2048), "32x128");    // 196
    EXPECT_EQ(tile(14, 32, 8, 4096, 2048), "32x256");   // 224
    EXPECT_EQ(tile(4, 32, 8, 8192, 2048), "32x256");    // 128: one round
    EXPECT_EQ(tile(1, 32, 16, 4096, 7168), "32x256");   // 16 tiles: 8 pieces
    EXPECT_EQ(tile(2, 48, 32, 4096, 7168), "48x256");   // 32 tiles: 4 pieces
    EXPECT_EQ(tile(3, 32, 16, 4096, 7168), "32x128");   // 48 tiles: 2 pieces
    EXPECT_EQ(tile(4, 48, 32, 4096, 7168), "64x128");   // 64 tiles: 2 pieces
    EXPECT_EQ(tile(5, 32, 16, 4096, 7168), many_32);    // 80 tiles: many
    EXPECT_EQ(tile(2, 32, 16, 7168, 2048), "32x128");   // 56 tiles: 2 pieces
    EXPECT_EQ(tile(2, 64, 40, 4096, 7168), "64x256");   // 32 tiles: 4 pieces
    EXPECT_EQ(tile(1, 32, 16, 7168, 4096), "32x256");   // 28 tiles: 4 pieces
    EXPECT_EQ(tile(1, 32, 16, 7168, 2048), "32x128");   // pieces of 512 K: 128 rows unsplit
    EXPECT_EQ(tile(8, 32, 16, 1024, 2048), "32x128");   // 32 tiles, short K
    EXPECT_EQ(tile(1, 32, 16, 7168, 0), "32x256");      // K not given (sizes alone): the wide tile
  }
  // The tile does not depend on the signals (system-scope ones do not split: 32x256 unsplit).
  args.signals = reinterpret_cast<uint32_t*>(0x1000);
  args.scope = SignalScope::sys;
  EXPECT_EQ(tile(1, 32, 16, 4096, 7168), "32x256");
  EXPECT_EQ(tile(3, 32, 16, 4096, 7168), "32x128");
  args.signals = nullptr;
  args.scope = SignalScope::gpu;
  args.config = TileConfig{0, 256, 0, 0};  // a given block_n is kept
  EXPECT_EQ(tile(3, 32, 16, 4096, 7168), "32x256");
  args.config = TileConfig{64, 0, 0, 0};  // a given block_m alone takes the same rule
  EXPECT_EQ(tile(32, 64, 40, 4096, 7168), "64x128");
  args.config = {};
  for (const Format format : {Format::nvfp4, Format::mxfp4, Format::mxfp8}) {
    SCOPED_TRACE(to_string(format));
    args.a.format = args.b.format = format;  // no workspace: the converting mainloop, no split of K
    EXPECT_EQ(tile(32, 64, 40, 4096, 7168), "64x256");  // 512 tiles
    EXPECT_EQ(tile(2, 64, 40, 4096, 7168), "128x128");  // 32 tiles of 64x256
    EXPECT_EQ(tile(2, 64, 40, 7168, 2048), "128x128");  // 56: 112 of 128x128, kOneRoundTiles
    EXPECT_EQ(tile(4, 64, 40, 4096, 2048), "64x256");   // 64: 128 would not fit beside a consumer
    // 48 tokens keep 256 rows with mxfp8 (FP4 tokens take 128x128), 32 tokens with all three.
    EXPECT_EQ(tile(2, 48, 32, 4096, 7168), format == Format::mxfp8 ? "48x256" : "128x128");
    EXPECT_EQ(tile(2, 48, 32, 7168, 2048), format == Format::mxfp8 ? "48x256" : "128x128");  // 56 tiles
    EXPECT_EQ(tile(4, 48, 32, 4096, 2048), "48x256");                                        // 64
    EXPECT_EQ(tile(1, 32, 16, 4096, 2048), "32x256");
    args.config = TileConfig{64, 0, 0, 0};  // a given block_m is kept
    EXPECT_EQ(tile(2, 64, 40, 4096, 7168), "64x256");
    args.config = {};
  }
  args.a.format = args.b.format = Format::nvfp4;
  args.workspace = reinterpret_cast<void*>(0x1000);  // never dereferenced: tile selection only
  args.workspace_bytes = size_t(1) << 30;
  EXPECT_EQ(tile(32, 64, 40, 4096, 7168), "64x128");  // converted in the workspace: run as bf16 tokens
  EXPECT_EQ(tile(3, 32, 16, 4096, 7168), "32x128");
  // fp8 tokens keep their tiles, but for few of them with short K in a workspace: 128x128.
  for (const Format weights : {Format::nvfp4, Format::mxfp4}) {
    SCOPED_TRACE(to_string(weights));
    args.a.format = Format::fp8_block128, args.b.format = weights;
    EXPECT_EQ(tile(32, 64, 40, 4096, 7168), "64x256");
    EXPECT_EQ(tile(3, 32, 16, 4096, 7168), "32x256");  // 48 tiles: no 32x128 for fp8 tokens
    EXPECT_EQ(tile(1, 32, 16, 7168, 2048), "128x128");
    EXPECT_EQ(tile(8, 48, 32, 1024, 2048), "128x128");  // 32 tiles of 48x256
    EXPECT_EQ(tile(1, 64, 40, 4096, 1024), "128x128");
    EXPECT_EQ(tile(1, 32, 16, 7168, 3072), "32x256");
    EXPECT_EQ(tile(3, 32, 16, 7168, 2048), "32x256");  // 84 tiles
    EXPECT_EQ(tile(1, 32, 16, 7168, 0), "32x256");
    args.b.layout = OperandLayout::mma_fragments;
    EXPECT_EQ(tile(1, 32, 16, 7168, 2048), "128x128");
    args.b.layout = OperandLayout::rows;
    args.workspace = nullptr;  // converted per tile, no split of K: 128x128 up to kOneRoundTiles, any K
    EXPECT_EQ(tile(1, 32, 16, 7168, 7168), "128x128");
    EXPECT_EQ(tile(2, 48, 32, 7168, 7168), "128x128");   // 56 tiles of 48x256
    EXPECT_EQ(tile(4, 48, 32, 4096, 7168), "48x256");    // 64
    EXPECT_EQ(tile(5, 32, 16, 4096, 7168), "32x256");    // 80
    EXPECT_EQ(tile(32, 48, 32, 4096, 2048), "48x256");   // 512
    EXPECT_EQ(tile(1, 32, 16, 7168, 2048), "128x128");
    args.config = TileConfig{32, 0, 0, 0};  // a given block_m is kept: the decode tile stays
    EXPECT_EQ(tile(1, 32, 16, 7168, 2048), "32x256");
    args.workspace = reinterpret_cast<void*>(0x1000);
    EXPECT_EQ(tile(1, 32, 16, 7168, 2048), "32x256");
    args.workspace = nullptr;
    args.config = {};
    // The workspace is sized for the launch that has it: 128x128 does not split K, 32x256 does.
    EXPECT_EQ(workspace_bytes(args), activation_workspace_bytes(args));
    args.k = 7168;
    EXPECT_GT(workspace_bytes(args), activation_workspace_bytes(args));
    args.workspace = reinterpret_cast<void*>(0x1000);
  }
}

// Several token blocks per expert: bf16 x FP4 weights take 192x128, bf16 x mxfp8 128x128 (each
// measured faster there than the wide 128x256 tile); an explicit tile is kept.
TEST(Config, RegisterWeightsManyTokenBlocks) {
  for (const int expected_m : {256, 1024}) {
    for (const Format weights : {Format::nvfp4, Format::mxfp4}) {
      const TileConfig cfg = choose_tile_config(4096, expected_m, kH100SmemPerBlock, {}, Format::bf16, weights);
      EXPECT_EQ(cfg.block_m, 192);
      EXPECT_EQ(cfg.block_n, 128);
      EXPECT_GE(cfg.stages, 3);
    }
    const TileConfig mx8 = choose_tile_config(4096, expected_m, kH100SmemPerBlock, {}, Format::bf16, Format::mxfp8);
    EXPECT_EQ(mx8.block_m, 128);
    EXPECT_EQ(mx8.block_n, 128);
    EXPECT_GE(mx8.stages, 3);
  }
  const TileConfig given =
      choose_tile_config(4096, 256, kH100SmemPerBlock, TileConfig{128, 256, 0}, Format::bf16, Format::mxfp4);
  EXPECT_EQ(given.block_m, 128);
  EXPECT_EQ(given.block_n, 256);
}

// fp8_block128 x FP4 weights beyond decode: 128x128 on the register-weights mainloop with fp8 tokens
// (whole 128-K blocks per stage, at least 3 stages, the tiles aligned as above).
TEST(Config, Fp8TokensFp4WeightsWideTile) {
  for (const Format weights : {Format::nvfp4, Format::mxfp4}) {
    SCOPED_TRACE(to_string(weights));
    for (int expected_m : {128, 1024}) {
      const TileConfig cfg = choose_tile_config(4096, expected_m, kH100SmemPerBlock, {}, Format::fp8_block128, weights);
      EXPECT_EQ(cfg.block_m, 128);
      EXPECT_EQ(cfg.block_n, 128);
      EXPECT_TRUE(register_weights_with_converted_tokens(Format::fp8_block128, weights, cfg.block_m, cfg.block_n));
      const int subs = kernels::register_weights_stage_subs(128, 128, Format::fp8_block128, weights);
      EXPECT_EQ(subs % 2, 0);
      EXPECT_GE(cfg.stages, 3);
      const auto plan = kernels::register_weights_smem_plan(128, 128, cfg.stages, subs, Format::fp8_block128, weights);
      EXPECT_EQ(plan.total_bytes(), smem_bytes(128, 128, cfg.stages, Format::fp8_block128, weights));
      EXPECT_LE(plan.total_bytes(), kH100SmemPerBlock);
      for (int s = 0; s < cfg.stages; ++s) {
        EXPECT_EQ(plan.a_offset(s) % 1024, 0);
        EXPECT_EQ((plan.a_offset(s) + subs * 128 * 128) % 1024, 0);
        EXPECT_EQ(plan.b_offset(s) % 1024, 0);
        EXPECT_EQ(plan.sfa_offset(s) % 128, 0);
      }
    }
    EXPECT_FALSE(register_weights_with_converted_tokens(Format::fp8_block128, weights, 64, 128));  // dequantizing
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
    const kernels::SmemPlan plan = kernels::fp8_block128_smem_plan(t.block_m, t.block_n, 5);
    for (int s = 0; s < 5; ++s) {
      EXPECT_EQ(plan.a_offset(s) % 1024, 0);
      EXPECT_EQ(plan.b_offset(s) % 1024, 0);
      EXPECT_EQ(plan.sfa_offset(s) % 128, 0);
      EXPECT_EQ(plan.sfb_offset(s) % 128, 0);  // TMA destinations
      EXPECT_LE(plan.sfb_offset(s) + plan.sfb_stage_bytes, plan.barrier_offset());
    }
    EXPECT_EQ(plan.staging_offset() % 1024, 0);  // the box layout's 128-byte swizzle
    EXPECT_EQ(plan.barrier_offset() % 8, 0);
  }
}

// The staged tile's two layouts (kernels::StagingLayout): every 16-byte unit has its own place inside
// the staging buffer, and the 8 rows of one stmatrix fragment (8 consecutive rows from a multiple of
// 8, one unit) lie on 8 distinct 16-byte bank groups, so the MMA threads' staging never conflicts.
template <int kRows, int kBlockN>
void check_staging_layout(bool boxes) {
  const kernels::StagingLayout<kRows, kBlockN> layout(boxes);
  const kernels::SmemPlan plan{kRows, kBlockN, 1};
  std::set<uint32_t> taken;
  for (int row = 0; row < kRows; ++row)
    for (int unit = 0; unit < kBlockN / 8; ++unit) {
      const uint32_t offset = layout.offset(row, unit);
      EXPECT_EQ(offset % 16, 0u);
      EXPECT_LE(offset + 16, uint32_t(plan.staging_bytes()));
      EXPECT_TRUE(taken.insert(offset).second) << "row " << row << " unit " << unit << " boxes " << boxes;
    }
  for (int first = 0; first < kRows; first += 8)
    for (int unit = 0; unit < kBlockN / 8; ++unit) {
      std::set<uint32_t> bank_groups;
      for (int row = first; row < first + 8; ++row) bank_groups.insert(layout.offset(row, unit) / 16 % 8);
      EXPECT_EQ(bank_groups.size(), 8u) << "rows " << first << ".. unit " << unit << " boxes " << boxes;
    }
  if (layout.boxes) {  // a box of C (64 columns x 8 rows) is 1024 contiguous bytes, row r unit u at (u ^ r) * 16
    for (int row = 0; row < kRows; ++row)
      for (int unit = 0; unit < kBlockN / 8; ++unit)
        EXPECT_EQ(layout.offset(row, unit),
                  uint32_t(unit / 8 * kRows * 128 + row * 128 + ((unit % 8) ^ (row % 8)) * 16));
  }
}

TEST(Config, StagingLayoutsPlaceEveryUnitOnceWithoutBankConflicts) {
  for (bool boxes : {false, true}) {
    check_staging_layout<128, 192>(boxes);  // fp8's token-rows tile
    check_staging_layout<192, 128>(boxes);
    check_staging_layout<64, 128>(boxes);
    check_staging_layout<128, 256>(boxes);
    check_staging_layout<48, 256>(boxes);  // decode tiles stage element by element: rows only
  }
  EXPECT_FALSE((kernels::StagingLayout<48, 256>(true).boxes));
  EXPECT_FALSE((kernels::StagingLayout<128, 96>(true).boxes));
  EXPECT_TRUE((kernels::StagingLayout<64, 128>(true).boxes));
}

// A consumer computes the signal layout from the sizes (the Python module's signal_layout, where K may
// be left out, with or without a workspace): over many shapes, every pairing, the tile (one the
// pairing compiles) must not
// depend on sm_count or the signals, and on K only through K <= kShortDecodeK (narrows_decode_tile:
// then 128 weight rows where the sizes alone give 256, 128x128 for fp8_block128 tokens in a workspace;
// 32 tokens beside nvfp4 weights on many tiles the other way round); K not given plans as a longer K does.
TEST(Config, SignalLayoutDependsOnKOnlyThroughShortDecodeK) {
  const Format pairs[][2] = {{Format::fp8_block128, Format::fp8_block128}, {Format::bf16, Format::bf16},
                             {Format::bf16, Format::nvfp4},  {Format::bf16, Format::mxfp4},
                             {Format::bf16, Format::mxfp8},  {Format::fp8_block128, Format::nvfp4},
                             {Format::fp8_block128, Format::mxfp4}, {Format::nvfp4, Format::nvfp4},
                             {Format::mxfp8, Format::mxfp8}};
  int short_k_differs = 0;
  for (const auto& [a, b] : pairs)
    for (const bool workspace : {false, true})
      for (const int experts : {1, 2, 3, 4, 6, 8, 32})
        for (const int m : {1, 8, 24, 40, 48, 64, 100, 256})
          for (const int n : {1024, 2048, 4096, 7168}) {
            GroupedGemmArgs args;
            args.a.format = a, args.b.format = b;
            args.num_experts = experts, args.max_m = m, args.n = n;
            args.granularity = SignalGranularity::per_row_block;
            if (workspace) {  // never dereferenced: tile selection only
              args.workspace = reinterpret_cast<void*>(uintptr_t(1) << 40);
              args.workspace_bytes = size_t(1) << 34;
            }
            args.k = 0;
            const SignalLayout sized = signal_layout(args);
            args.k = kShortDecodeK;
            const SignalLayout short_k = signal_layout(args);
            const std::string what = std::string(to_string(a)) + " x " + to_string(b) + " E" + std::to_string(experts) +
                                     " m" + std::to_string(m) + " n" + std::to_string(n) +
                                     (workspace ? " with a workspace" : "");
            if (short_k.block_m != sized.block_m || short_k.block_n != sized.block_n) {
              ++short_k_differs;
              // bf16 tokens, or one-format activations converted to them in the workspace: 128 weight
              // rows of the same tokens; fp8_block128 tokens read from the workspace: 128x128.
              const bool bf16_launch = a == Format::bf16 || (workspace && a == b);
              const bool fp8_tokens = workspace && kernels::is_fp8_tokens_fp4_weights_pair(a, b);
              // The other way round for 32 tokens beside nvfp4 weights on many tiles: 256 rows at short K.
              const bool nvfp4_32_tokens = bf16_launch && b == Format::nvfp4 && sized.block_m == 32 &&
                                           sized.block_n == 128 && short_k.block_m == 32 && short_k.block_n == 256;
              EXPECT_TRUE(nvfp4_32_tokens ||
                          (((bf16_launch && kernels::is_bf16_register_weights_pair(Format::bf16, b)) ||
                            (fp8_tokens && short_k.block_m == 128)) &&
                           sized.block_n == 256 && short_k.block_n == 128))
                  << what << ": " << short_k.block_m << "x" << short_k.block_n << " at short K against "
                  << sized.block_m << "x" << sized.block_n;
            }
            for (const int k : {256, 2048, 4096, 7168})
              for (const int sm_count : {0, 16}) {
                GroupedGemmArgs launched = args;
                launched.k = k;
                launched.sm_count = sm_count;
                launched.signals = reinterpret_cast<uint32_t*>(0x1000);
                launched.scope = sm_count == 0 ? SignalScope::gpu : SignalScope::sys;
                const SignalLayout l = signal_layout(launched);
                const SignalLayout& planned = k <= kShortDecodeK ? short_k : sized;
                // The heuristic's tile is one the pairing compiles, and its stages fit an H100.
                const Status compiled = check_launch_tile(launched);
                EXPECT_TRUE(compiled.ok()) << what << " k" << k << ": " << compiled.message;
                EXPECT_TRUE(l.block_m == planned.block_m && l.block_n == planned.block_n)
                    << what << " k" << k << " sm_count " << sm_count << ": " << l.block_m << "x" << l.block_n
                    << " against " << planned.block_m << "x" << planned.block_n;
              }
          }
  EXPECT_GT(short_k_differs, 0);  // the rule applies somewhere in this grid
}

// A tile fixed on one side only (config.block_m or config.block_n): the heuristic completes it, and
// where its other side would make a tile the pairing does not compile, the launch takes a compiled
// one with the caller's side (launch.cu); signal_layout says the same. A side that only one tile has
// (48, 192) takes that tile. A side that no compiled tile of the pairing has is refused, naming the
// field. (Before: fp8_block128 at max_m = 64 with
// block_n = 256 passed validate() as 64x256, and every launch of it failed.)
TEST(Config, PartialTileOverridesTakeACompiledTile) {
  const Format pairs[][2] = {{Format::fp8_block128, Format::fp8_block128}, {Format::bf16, Format::bf16},
                             {Format::bf16, Format::nvfp4},                {Format::bf16, Format::mxfp4},
                             {Format::bf16, Format::mxfp8},                {Format::fp8_block128, Format::nvfp4},
                             {Format::fp8_block128, Format::mxfp4},        {Format::nvfp4, Format::nvfp4},
                             {Format::mxfp4, Format::mxfp4},               {Format::mxfp8, Format::mxfp8}};
  for (const auto& [a, b] : pairs)
    for (const bool fragments : {false, true})
      for (const bool workspace : {false, true}) {
        const bool fp4_weights = b == Format::nvfp4 || b == Format::mxfp4;
        if (fragments && (!fp4_weights || (a != Format::bf16 && a != Format::fp8_block128))) continue;
        if (fragments && a == Format::fp8_block128 && !workspace) continue;  // validate() requires one there
        int runs = 0;
        // (Few experts: the tile counts at which narrows_decode_tile narrows a decode tile; it once
        // turned a given 48 into 64x128.)
        for (const auto [experts, k] : {std::pair{8, 2048}, std::pair{4, 7168}, std::pair{1, 2048}})
        for (const int max_m : {1, 40, 48, 64, 100, 140, 300, 1024})
          for (const bool fix_m : {true, false})
            for (const int side : fix_m ? std::vector<int>{32, 48, 64, 128, 192} : std::vector<int>{128, 192, 256}) {
              GroupedGemmArgs args;
              args.a.format = a, args.b.format = b;
              args.b.layout = fragments ? OperandLayout::mma_fragments : OperandLayout::rows;
              args.num_experts = experts, args.max_m = max_m, args.n = 4096, args.k = k;
              args.granularity = SignalGranularity::per_row_block;
              (fix_m ? args.config.block_m : args.config.block_n) = side;
              if (workspace) {
                args.workspace = reinterpret_cast<void*>(uintptr_t(1) << 40);
                args.workspace_bytes = size_t(1) << 34;
              }
              const std::string what = std::string(to_string(a)) + " x " + to_string(b) +
                                       (fragments ? " (mma_fragments)" : "") + (workspace ? " with a workspace" : "") +
                                       " E " + std::to_string(experts) + " K " + std::to_string(k) +
                                       " max_m " + std::to_string(max_m) + (fix_m ? " block_m " : " block_n ") +
                                       std::to_string(side);
              const Status s = check_launch_tile(args);
              const bool fp8_pair = a == Format::fp8_block128 && b == Format::fp8_block128;
              if (!fix_m && side == 192 && fp8_pair) EXPECT_TRUE(s.ok()) << what << ": " << s.message;
              if (fix_m && side == 48 && host::is_decode_tile(a, b, 48, 256) && (a == Format::bf16 || workspace))
                EXPECT_TRUE(s.ok()) << what << ": " << s.message;
              if (!s.ok()) {
                EXPECT_EQ(s.code, StatusCode::unsupported) << what << ": " << s.message;
                EXPECT_NE(s.message.find(fix_m ? "config.block_m" : "config.block_n"), std::string::npos)
                    << what << ": " << s.message;
                continue;
              }
              ++runs;
              const TileConfig cfg = select_config(args);
              EXPECT_EQ(fix_m ? cfg.block_m : cfg.block_n, side) << what;
              if (fix_m && side == 48) EXPECT_EQ(cfg.block_n, 256) << what;  // the one tile with 48 tokens
              if (!fix_m && side == 192) EXPECT_EQ(cfg.block_m, 128) << what;
              const SignalLayout layout = signal_layout(args);
              EXPECT_TRUE(layout.block_m == cfg.block_m && layout.block_n == cfg.block_n) << what;
              GroupedGemmArgs whole = args;  // the tile given in full runs too
              whole.config.block_m = cfg.block_m, whole.config.block_n = cfg.block_n;
              EXPECT_TRUE(check_launch_tile(whole).ok()) << what << ": " << check_launch_tile(whole).message;
            }
        EXPECT_GT(runs, 0) << to_string(a) << " x " << to_string(b);
      }
}

// Few token blocks (block_m_for_few_tiles): one token block per expert (128 or 192) whose tiles of 128
// weight rows are at most 64 steps down (192 -> 128x128 -> 64 tokens, completed by the heuristic, which
// narrows_decode_tile may narrow) while they stay that few and the smaller block's are at most
// kOneRoundTiles; fp8_block128 tokens x FP4 weights in a workspace by their count of 64x256 tiles;
// sm_count plays no part.
TEST(Config, FewTokenBlocksTakeSmallerTokenBlocks) {
  GroupedGemmArgs args;
  args.num_experts = 3, args.max_m = 80, args.expected_m = 64, args.n = 2048, args.k = 7168;  // 3 x 16 tiles
  auto tile = [&] {
    const TileConfig cfg = select_config(args);
    const SignalLayout layout = signal_layout(args);
    EXPECT_TRUE(layout.block_m == cfg.block_m && layout.block_n == cfg.block_n);
    return std::make_pair(cfg.block_m, cfg.block_n);
  };
  EXPECT_EQ(tile(), std::make_pair(64, 128));  // 3 x 2 x 16 = 96 tiles of 64 tokens
  args.sm_count = 16;
  EXPECT_EQ(tile(), std::make_pair(64, 128));
  args.sm_count = 0;
  args.num_experts = 4;  // 128 tiles of 64 tokens would not fit one round beside a consumer
  EXPECT_EQ(tile(), std::make_pair(128, 128));
  args.num_experts = 3;
  args.n = 4096;  // 96 tiles: the 128-token block stays
  EXPECT_EQ(tile(), std::make_pair(128, 128));
  args.n = 2048;
  args.expected_m = 40;  // 52 rows: 64 tokens anyway
  EXPECT_EQ(tile(), std::make_pair(64, 128));
  args.expected_m = 0, args.max_m = 300;  // several token blocks per expert: the wide tile
  EXPECT_EQ(tile(), std::make_pair(128, 192));
  // 192 tokens: 3 x 16 = 48 tiles take 128x128 (96 tiles then); 2 x 8 = 16 go on to 64 tokens
  // (2 x 3 x 8 = 48 tiles); 4 x 16 = 64 keep 192x128 (128 tiles of 128 tokens: more than one round).
  args.max_m = 176, args.expected_m = 140;
  EXPECT_EQ(tile(), std::make_pair(128, 128));
  args.num_experts = 2, args.n = 1024;
  EXPECT_EQ(tile(), std::make_pair(64, 128));
  args.num_experts = 4, args.n = 2048;
  EXPECT_EQ(tile(), std::make_pair(192, 128));
  args.num_experts = 3;
  args.expected_m = 64, args.max_m = 80;
  args.config.block_m = 128;  // the caller's side is kept (completed as 128 tokens are: 128x192)
  EXPECT_EQ(tile(), std::make_pair(128, 192));
  args.config = {};
  // bf16 x nvfp4: 64 tokens take 256 weight rows, narrowed to 128 by narrows_decode_tile where
  // 32 < 3 x 2 x 8 = 48 of those tiles exist, kept where they are fewer (1 x 2 x 16 = 32).
  args.a.format = Format::bf16;
  args.b.format = Format::nvfp4;
  EXPECT_EQ(tile(), std::make_pair(64, 128));
  args.num_experts = 1, args.max_m = 96, args.expected_m = 90, args.n = 4096;
  EXPECT_EQ(tile(), std::make_pair(64, 256));
  // fp8_block128 tokens x FP4 weights read from a workspace: 64 tokens (64x256, K split) where at most
  // 32 tiles of 64x256 could exist (1 x 2 x 16 here), unless K is short (narrows_decode_tile: 128x128).
  args.a.format = Format::fp8_block128;
  for (const Format weights : {Format::nvfp4, Format::mxfp4}) {
    args.b.format = weights;
    args.num_experts = 1, args.max_m = 96, args.expected_m = 90, args.n = 4096, args.k = 7168;
    args.workspace = reinterpret_cast<void*>(uintptr_t(1) << 40);
    args.workspace_bytes = size_t(1) << 34;
    EXPECT_EQ(tile(), std::make_pair(64, 256));
    args.k = 2048;
    EXPECT_EQ(tile(), std::make_pair(128, 128));
    args.k = 7168;
    args.num_experts = 2;  // 64 tiles of 64x256: 2 pieces at most
    EXPECT_EQ(tile(), std::make_pair(128, 128));
    args.num_experts = 1;
    args.max_m = 140, args.expected_m = 100;  // 130 rows: not one 128-token block
    EXPECT_EQ(tile(), std::make_pair(128, 128));
    args.max_m = 96, args.expected_m = 90;
    args.workspace = nullptr, args.workspace_bytes = 0;  // tokens converted per tile: no split, no rule
    EXPECT_EQ(tile(), std::make_pair(128, 128));
  }
  // bf16 on both sides as fp8_block128 (64x128: 1 x 2 x 32 = 64 tiles); pairings not measured keep 128 tokens.
  args.a.format = args.b.format = Format::bf16;
  EXPECT_EQ(tile(), std::make_pair(64, 128));
  args.a.format = args.b.format = Format::nvfp4;  // no workspace: tokens converted per tile
  EXPECT_EQ(tile(), std::make_pair(128, 128));
}

// Few wide tiles (narrows_few_wide_tiles): launches whose 128x256 tiles could not fill half of an
// H100's SMs take 128x128; the tile, and so the signal layout, does not depend on sm_count.
TEST(Config, FewWideTilesTakeTheNarrowTile) {
  GroupedGemmArgs args;
  args.num_experts = 1, args.max_m = 512, args.n = 4096, args.k = 7168;  // 4 x 16 = 64 wide tiles
  EXPECT_EQ(select_config(args).block_n, 192);  // fp8_block128 keeps its wide tile, the token-rows 128x192
  args.a.format = args.b.format = Format::bf16;
  TileConfig cfg = select_config(args);
  EXPECT_EQ(cfg.block_m, 128);
  EXPECT_EQ(cfg.block_n, 128);
  EXPECT_EQ(signal_layout(args).block_n, 128);
  args.sm_count = 16;  // the same tile whatever SMs the launch may use
  EXPECT_EQ(select_config(args).block_n, 128);
  args.sm_count = 0;
  args.max_m = 640;  // 80 wide tiles: more than half the SMs busy already
  EXPECT_EQ(select_config(args).block_n, 256);
  args.max_m = 512;
  args.num_experts = 2;  // 128 wide tiles
  EXPECT_EQ(select_config(args).block_n, 256);
  args.num_experts = 1;
  args.n = 7168;  // 4 x 28 = 112 wide tiles
  EXPECT_EQ(select_config(args).block_n, 256);
  args.n = 4096;
  args.config = TileConfig{128, 256, 0, 0};  // the caller's tile is kept
  EXPECT_EQ(select_config(args).block_n, 256);
  args.config = {};
  args.expected_m = 64;  // one token block per expert: 128x128 anyway (not the wide tile)
  EXPECT_EQ(select_config(args).block_n, 128);
  args.expected_m = 0;
  args.b.format = Format::mxfp8;  // bf16 x mxfp8 takes 128x128 in any case
  EXPECT_EQ(select_config(args).block_n, 128);
  args.num_experts = 2;
  EXPECT_EQ(select_config(args).block_n, 128);
  args.num_experts = 1;
  args.b.format = Format::nvfp4;  // its wide tile is 192x128: kept
  EXPECT_EQ(select_config(args).block_m, 192);
  // mxfp8 on both sides with a workspace runs as bf16 x mxfp8 (activations converted first): the
  // same narrow tile, so its signal layout is the one computed for bf16 activations.
  args.a.format = args.b.format = Format::mxfp8;
  args.workspace = reinterpret_cast<void*>(0x1000);
  args.workspace_bytes = size_t(1) << 30;
  EXPECT_EQ(select_config(args).block_n, 128);
  GroupedGemmArgs as_bf16 = args;
  as_bf16.a.format = Format::bf16;
  as_bf16.workspace = nullptr, as_bf16.workspace_bytes = 0;
  EXPECT_EQ(signal_layout(args).block_m, signal_layout(as_bf16).block_m);
  EXPECT_EQ(signal_layout(args).block_n, signal_layout(as_bf16).block_n);
}

// fp8_block128 on both sides: the wide tile is the token-rows 128x192, walked in the fixed order
// even with a workspace (which keeps the tile counter for the other tiles).
TEST(Config, Fp8WideTileIsTheTokenRowsTile) {
  GroupedGemmArgs args;
  args.num_experts = 8, args.max_m = 336, args.expected_m = 256, args.n = 4096, args.k = 7168;
  TileConfig cfg = select_config(args);
  EXPECT_EQ(cfg.block_m, 128);
  EXPECT_EQ(cfg.block_n, 192);
  EXPECT_EQ(cfg.cluster, 1);
  EXPECT_EQ(signal_layout(args).block_n, 192);
  args.workspace = reinterpret_cast<void*>(0x1000);
  args.workspace_bytes = kTileCounterBytes;
  EXPECT_FALSE(takes_tiles_dynamically(args, &cfg));
  EXPECT_TRUE(takes_tiles_dynamically(args));  // the other fp8 tiles take them dynamically
  args.config = TileConfig{128, 256, 0, 0};  // the caller's tile is kept
  EXPECT_EQ(select_config(args).block_n, 256);
  args.config = TileConfig{0, 0, 0, 2};  // and a cluster asked for (compiled for 128x256)
  EXPECT_EQ(select_config(args).block_n, 256);
  args.config = {};
  args.expected_m = 64;  // one token block per expert: not the wide tile's shape
  EXPECT_EQ(select_config(args).block_n, 128);
  args.expected_m = 256;
  args.a.format = args.b.format = Format::bf16;  // fp8_block128 only
  EXPECT_EQ(select_config(args).block_n, 256);
}

// fp8_block128 on both sides, one token block per expert (65..kTokenRowsMaxRows rows to cover) and at
// least kManyTokenRowsTiles tiles of 128x192 (E x ceil(N / 192)): the token-rows 128x192 instead of
// 128x128 or 192x128.
TEST(Config, ManyOneBlockFp8TilesTakeTheTokenRowsTile) {
  GroupedGemmArgs args;
  const auto tile = [&](int experts, int max_m, int expected_m, int n) {
    args.num_experts = experts, args.max_m = max_m, args.expected_m = expected_m, args.n = n, args.k = 7168;
    const TileConfig cfg = select_config(args);
    EXPECT_EQ(signal_layout(args).block_n, cfg.block_n);
    return std::to_string(cfg.block_m) + "x" + std::to_string(cfg.block_n);
  };
  EXPECT_EQ(tile(32, 96, 64, 4096), "128x192");   // 32 x 22 = 704 tiles
  EXPECT_EQ(tile(12, 96, 64, 4096), "128x192");   // 264
  EXPECT_EQ(tile(11, 96, 64, 4096), "128x128");   // 242: the rounds decide there
  EXPECT_EQ(tile(32, 96, 64, 1536), "128x192");   // 256
  EXPECT_EQ(tile(32, 96, 64, 1024), "128x128");   // 192
  EXPECT_EQ(tile(32, 336, 64, 4096), "128x192");  // a larger slab: the tiles of one block per expert
  EXPECT_EQ(tile(32, 96, 40, 4096), "64x128");    // 52 rows: 64 tokens
  EXPECT_EQ(tile(32, 192, 110, 4096), "128x192"); // 143 rows (192x128 before): a second, short block
  EXPECT_EQ(tile(32, 192, 111, 4096), "192x128"); // 145 rows: kTokenRowsMaxRows
  EXPECT_EQ(tile(8, 192, 100, 4096), "192x128");  // 8 x 22 = 176 tiles
  args.config = TileConfig{0, 128, 0, 0};         // a side given: kept
  EXPECT_EQ(tile(32, 96, 64, 4096), "128x128");
  // Stages given alone: the wider tile only where they fit it, so that stages valid for the pick
  // are not refused at one E and accepted at another (the rule depends on the tile count).
  const int narrow_stages = max_stages(128, 128, kH100SmemPerBlock);
  const int wide_stages = max_stages(128, 192, kH100SmemPerBlock);
  ASSERT_GT(narrow_stages, wide_stages);
  args.config = TileConfig{0, 0, narrow_stages, 0};
  EXPECT_EQ(tile(32, 96, 64, 4096), "128x128");
  EXPECT_TRUE(validate_sizes(args).ok()) << validate_sizes(args).message;
  args.config = TileConfig{0, 0, wide_stages, 0};
  EXPECT_EQ(tile(32, 96, 64, 4096), "128x192");
  args.config = {};
  args.a.format = args.b.format = Format::bf16;   // fp8_block128 only
  EXPECT_EQ(tile(32, 96, 64, 4096), "128x128");
}

// Split K only where the tiles fill at most a third of the SMs, on the fp8 decode tiles, with enough K.
TEST(Config, SplitKForFewTiles) {
  GroupedGemmArgs args;
  args.num_experts = 1, args.max_m = 16, args.n = 4096, args.k = 7168;
  const TileConfig decode{32, 128, 10, 1};
  SplitK split = plan_split_k(args, decode, 132);  // 32 tiles: 4 pieces of 14 K blocks
  EXPECT_EQ(split.pieces, 4);
  EXPECT_EQ(split.tiles, 32);
  EXPECT_EQ(split.counters_offset, kTileCounterBytes);
  EXPECT_EQ(split.partials_offset % 16, 0u);
  EXPECT_EQ(split.bytes, split.partials_offset + size_t(32) * 4 * 32 * 128 * 4);
  args.k = 2304;  // 18 K blocks: three pieces of 6
  EXPECT_EQ(plan_split_k(args, decode, 132).pieces, 3);
  args.k = 2048;  // 16 K blocks: two pieces of kMinKBlocksPerPiece would be too few
  EXPECT_EQ(plan_split_k(args, decode, 132).pieces, 1);
  args.k = 7168;
  args.n = 256;  // 2 tiles: capped at kMaxKPieces
  EXPECT_EQ(plan_split_k(args, decode, 132).pieces, kMaxKPieces);
  args.n = 4096;
  args.num_experts = 2;  // 64 tiles: two pieces would be too few
  EXPECT_EQ(plan_split_k(args, decode, 132).pieces, 1);
  args.num_experts = 1;
  EXPECT_EQ(plan_split_k(args, decode, 95).pieces, 1);                    // sm_count 95: under 3 per tile
  EXPECT_EQ(plan_split_k(args, TileConfig{128, 128, 5, 1}, 132).pieces, 1);  // not a decode tile
  args.signals = reinterpret_cast<uint32_t*>(0x1000);
  args.scope = SignalScope::sys;  // the signaler counts every piece: no split
  EXPECT_EQ(plan_split_k(args, decode, 132).pieces, 1);
  args.scope = SignalScope::gpu;
  EXPECT_EQ(plan_split_k(args, decode, 132).pieces, 4);
  args.b.format = Format::nvfp4;
  EXPECT_EQ(plan_split_k(args, decode, 132).pieces, 1);
  // bf16: K blocks of 64 elements (128 bytes), at least 8 pieces.
  args.a.format = args.b.format = Format::bf16;
  args.k = 7168;  // 32 tiles: 4 pieces would be too few
  EXPECT_EQ(plan_split_k(args, decode, 132).pieces, 1);
  args.n = 2048;  // 16 tiles: 8 pieces
  EXPECT_EQ(plan_split_k(args, decode, 132).pieces, 8);
  args.k = 3080;  // 49 K blocks, the last one partial: 8 pieces of 6 or 7
  EXPECT_EQ(plan_split_k(args, decode, 132).pieces, 8);
  args.k = 3000;  // 47 K blocks: 7 pieces would be too few
  EXPECT_EQ(plan_split_k(args, decode, 132).pieces, 1);
  args.a.format = Format::bf16, args.b.format = Format::mxfp8;  // 32x128 is not its decode tile
  EXPECT_EQ(plan_split_k(args, decode, 132).pieces, 1);
  EXPECT_EQ(plan_split_k(args, TileConfig{32, 256, 4, 1}, 132).pieces, 7);  // 8 tiles, 47 K blocks: 7 pieces
  args.a.format = Format::mxfp4, args.b.format = Format::mxfp8;  // no such pairing splits (or runs)
  EXPECT_EQ(plan_split_k(args, TileConfig{32, 256, 4, 1}, 132).pieces, 1);
  args.a.format = Format::bf16;
  // bf16 x FP4 weights: the decode tiles of 256 weight rows, whole stages per piece.
  args.b.format = Format::nvfp4;
  args.n = 4096, args.k = 7168;
  EXPECT_EQ(plan_split_k(args, TileConfig{32, 256, 3, 1}, 132).pieces, 8);  // 16 tiles
  EXPECT_EQ(plan_split_k(args, decode, 132).pieces, 1);                     // not its decode tile
  EXPECT_EQ(plan_split_k(args, TileConfig{-64, 256, 3, 1}, 132).pieces, 1);  // invalid: no (negative) plan
  GroupedGemmArgs invalid_tile = args;  // workspace_bytes is asked before validation (the Python module)
  invalid_tile.config = TileConfig{-64, 0, 0, 0};
  EXPECT_EQ(workspace_bytes(invalid_tile), 0u);
  args.k = 1344;  // 21 blocks of 64 K: 3 pieces (K blocks / 6)
  EXPECT_EQ(plan_split_k(args, TileConfig{32, 256, 3, 1}, 132).pieces, 3);
  args.k = 7168;
  args.num_experts = 3;  // 48 tiles: 2 pieces pay here (min_k_pieces)
  EXPECT_EQ(plan_split_k(args, TileConfig{32, 256, 3, 1}, 132).pieces, 2);
  args.num_experts = 5;  // 80 tiles: one round already
  EXPECT_EQ(plan_split_k(args, TileConfig{32, 256, 3, 1}, 132).pieces, 1);
  // fp8_block128 tokens x nvfp4: only with the tokens converted into the workspace (K blocks of 128).
  args.a.format = Format::fp8_block128;
  args.num_experts = 1;
  EXPECT_EQ(plan_split_k(args, TileConfig{32, 256, 4, 1}, 132).pieces, 1);
  EXPECT_EQ(plan_split_k(args, TileConfig{32, 256, 4, 1}, 132, /*tokens_in_workspace=*/true).pieces, 8);
  args.k = 2432;  // 19 blocks of 128: 3 pieces
  EXPECT_EQ(plan_split_k(args, TileConfig{32, 256, 4, 1}, 132, /*tokens_in_workspace=*/true).pieces, 3);
  args.b.format = Format::mxfp4;  // the same with mxfp4 weights
  EXPECT_EQ(plan_split_k(args, TileConfig{32, 256, 4, 1}, 132).pieces, 1);
  EXPECT_EQ(plan_split_k(args, TileConfig{32, 256, 4, 1}, 132, /*tokens_in_workspace=*/true).pieces, 3);
}

}  // namespace
}  // namespace signalgemm::host
