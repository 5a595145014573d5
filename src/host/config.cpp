#include "host/config.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "kernels/dequant_bf16_plan.h"
#include "kernels/kernel_params.h"

namespace signalgemm::host {

namespace {
// Whether `tiles` holds block_m x block_n.
template <size_t kCount>
bool holds(const TileShape (&tiles)[kCount], int block_m, int block_n) {
  return std::any_of(std::begin(tiles), std::end(tiles),
                     [&](TileShape t) { return t.block_m == block_m && t.block_n == block_n; });
}
// The rows one token block should cover for an expert (choose_tile_config): decode routing
// spreads per-expert counts around the typical value (SPEC §6: x U(0.7, 1.3)), so 1.3x the hint.
int rows_to_cover(int max_m, int expected_m) {
  const int hint = expected_m > 0 ? std::min(expected_m, max_m) : max_m;
  return static_cast<int>(std::min<int64_t>(max_m, (int64_t(hint) * 13 + 9) / 10));
}
}  // namespace

bool is_supported_block_m(int block_m) {
  return std::any_of(std::begin(kSupportedTiles), std::end(kSupportedTiles),
                     [&](TileShape t) { return t.block_m == block_m; });
}
bool is_supported_block_n(int block_n) {
  return std::any_of(std::begin(kSupportedTiles), std::end(kSupportedTiles),
                     [&](TileShape t) { return t.block_n == block_n; });
}
bool is_supported_tile(int block_m, int block_n) { return holds(kSupportedTiles, block_m, block_n); }
bool is_cluster_tile(int block_m, int block_n) { return holds(kClusterTiles, block_m, block_n); }
bool is_token_rows_tile(int block_m, int block_n) { return holds(kTokenRowsTiles, block_m, block_n); }

bool is_decode_tile(Format a_format, Format b_format, int block_m, int block_n) {
  return holds(kDecodeTiles, block_m, block_n) &&
         (kernels::is_bf16_register_weights_pair(a_format, b_format) ||
          register_weights_with_converted_tokens(a_format, b_format, block_m, block_n));
}

bool register_weights_with_converted_tokens(Format a_format, Format b_format, int block_m, int block_n) {
  const bool pair = kernels::is_fp8_tokens_fp4_weights_pair(a_format, b_format) ||
                    (a_format == Format::nvfp4 && b_format == Format::nvfp4) ||
                    (a_format == Format::mxfp4 && b_format == Format::mxfp4) ||
                    (a_format == Format::mxfp8 && b_format == Format::mxfp8);
  return pair && ((block_m <= 64 && block_n == 256) || (block_m == 128 && block_n == 128));
}

bool converts_activations(Format a_format, Format b_format) {
  const bool one_format =
      a_format == b_format && (a_format == Format::nvfp4 || a_format == Format::mxfp4 || a_format == Format::mxfp8);
  return one_format || kernels::is_fp8_tokens_fp4_weights_pair(a_format, b_format);
}

size_t converted_activation_bytes(const GroupedGemmArgs& args) {
  if (!converts_activations(args.a.format, args.b.format) || args.num_experts < 1 || args.max_m < 1 || args.k < 1)
    return 0;
  return size_t(args.num_experts) * size_t(args.max_m) * size_t(args.k) * 2;
}

bool uses_activation_workspace(const GroupedGemmArgs& args, const TileConfig& config) {
  if (args.workspace == nullptr || !converts_activations(args.a.format, args.b.format)) return false;
  return args.a.format != Format::fp8_block128 ||
         register_weights_with_converted_tokens(args.a.format, args.b.format, config.block_m, config.block_n);
}

bool uses_tile_counter(Format a_format, Format b_format) {
  return a_format == Format::fp8_block128 && b_format == Format::fp8_block128;
}

bool takes_tiles_dynamically(const GroupedGemmArgs& args, const TileConfig* config) {
  return args.workspace != nullptr && args.workspace_bytes >= kTileCounterBytes &&
         uses_tile_counter(args.a.format, args.b.format) &&
         (config == nullptr || (config->cluster <= 1 && !is_token_rows_tile(config->block_m, config->block_n)));
}

namespace {
// bf16 tokens x nvfp4 / mxfp4 / mxfp8 weights, or fp8_block128 tokens (converted into the workspace)
// x FP4 weights: the register-weights mainloop (its decode tiles hold 256 weight rows).
bool register_weights_splits(Format a_format, Format b_format) {
  return kernels::is_bf16_register_weights_pair(a_format, b_format) ||
         kernels::is_fp8_tokens_fp4_weights_pair(a_format, b_format);
}

// Every tile of block_m x block_n that masked_m could make: E x row blocks of max_m x column blocks.
int64_t slab_tiles(const GroupedGemmArgs& args, int block_m, int block_n) {
  return int64_t(args.num_experts) * SignalLayout::ceil_div(args.max_m, block_m) *
         SignalLayout::ceil_div(args.n, block_n);
}
}  // namespace

bool splits_k(Format a_format, Format b_format) {
  return (a_format == b_format && (a_format == Format::fp8_block128 || a_format == Format::bf16)) ||
         register_weights_splits(a_format, b_format);
}

bool narrows_few_wide_tiles(const GroupedGemmArgs& args, const TileConfig& chosen) {
  if (args.config.block_m != 0 || args.config.block_n != 0 || chosen.block_m != 128 || chosen.block_n != 256 ||
      args.max_m < 1 || args.n < 1)
    return false;
  return slab_tiles(args, 128, 256) <= kFewWideTiles;
}

int block_m_for_few_tiles(const GroupedGemmArgs& args, const TileConfig& chosen) {
  const bool one_format = args.a.format == args.b.format &&
                          (args.a.format == Format::fp8_block128 || args.a.format == Format::bf16);
  const bool register_weights = kernels::is_bf16_register_weights_pair(args.a.format, args.b.format);
  const bool fp8_tokens_in_workspace =
      kernels::is_fp8_tokens_fp4_weights_pair(args.a.format, args.b.format) && args.workspace != nullptr;
  if (args.config.block_m != 0 || args.config.block_n != 0 || chosen.block_n != 128 ||
      (chosen.block_m != 128 && chosen.block_m != 192) ||
      !(one_format || register_weights || fp8_tokens_in_workspace) || args.max_m < 1 || args.n < 1)
    return 0;
  // One token block per expert, as choose_tile_config sized it (not several: 128x192 or 128x256).
  const int rows = rows_to_cover(args.max_m, args.expected_m);
  if (rows <= 64 || rows > chosen.block_m) return 0;
  if (fp8_tokens_in_workspace) {
    // 64 tokens run the decode tile 64x256, whose K plan_split_k splits by the launch's SMs: only
    // where its tiles (counted as the split counts them) leave at least 3 pieces on 100 SMs.
    return rows <= 128 && slab_tiles(args, 64, 256) <= kFewDecodeTiles / 2 ? 64 : 0;
  }
  const auto tiles = [&](int block_m) {
    return int64_t(args.num_experts) * ((rows + block_m - 1) / block_m) * ((args.n + 127) / 128);
  };
  const auto smaller = [](int block_m) { return block_m == 192 ? 128 : 64; };
  int block_m = chosen.block_m;
  while (block_m > 64 && tiles(block_m) <= kFewTokenBlockTiles && tiles(smaller(block_m)) <= kOneRoundTiles)
    block_m = smaller(block_m);
  return block_m == chosen.block_m ? 0 : block_m;
}

bool widens_fp8_token_block(const GroupedGemmArgs& args, const TileConfig& chosen) {
  if (args.a.format != Format::fp8_block128 || args.b.format != Format::fp8_block128 || args.config.block_m != 0 ||
      args.config.block_n != 0 || args.config.cluster == 2 || (chosen.block_m != 128 && chosen.block_m != 192) ||
      chosen.block_n != 128 || args.max_m < 1 || args.n < 1)
    return false;
  const int rows = rows_to_cover(args.max_m, args.expected_m);  // as choose_tile_config sized the token block
  return rows > 64 && rows <= kTokenRowsMaxRows &&
         int64_t(args.num_experts) * ((args.n + 191) / 192) >= kManyTokenRowsTiles;
}

bool narrows_decode_tile(const GroupedGemmArgs& args, const TileConfig& chosen) {
  const bool bf16_tokens = kernels::is_bf16_register_weights_pair(args.a.format, args.b.format);
  // A block_m of 48 the caller gave stays 48x256: bf16 tokens narrow to 32x128 or 64x128 only.
  if (bf16_tokens && args.config.block_m == 48) return false;
  // Converted tokens narrow to 128x128, which would change a block_m the caller gave.
  const bool converted_tokens = !bf16_tokens && args.config.block_m == 0 &&
                                register_weights_with_converted_tokens(args.a.format, args.b.format, chosen.block_m, 256);
  if (args.config.block_n != 0 || chosen.block_n != 256 || chosen.block_m < 1 || chosen.block_m > 64 ||
      !(bf16_tokens || converted_tokens) || args.max_m < 1 || args.n < 1)
    return false;
  const int64_t tiles = slab_tiles(args, chosen.block_m, 256);
  const bool short_k = args.k >= 1 && args.k <= kShortDecodeK;
  const bool fp8_tokens = args.a.format == Format::fp8_block128;
  const bool fp4_tokens = args.a.format == Format::nvfp4 || args.a.format == Format::mxfp4;
  if (converted_tokens && args.workspace == nullptr)  // converted per tile: 2 x tiles of 128x128
    return 2 * tiles <= kOneRoundTiles && (fp8_tokens || chosen.block_m == 64 || (fp4_tokens && chosen.block_m == 48));
  if (converted_tokens) return fp8_tokens && tiles <= kFewDecodeTiles / 2 && short_k;
  // 256-row tiles that spill under half a round of SMs into a second one: 128-row tiles fill three
  // half rounds where they take two whole ones.
  const bool short_last_round = tiles > kRoundSms && tiles <= kRoundSms * 3 / 2;
  if (tiles > kFewDecodeTiles)
    return chosen.block_m == 64 || short_last_round ||
           (chosen.block_m == 32 && args.b.format == Format::nvfp4 && !short_k);
  return tiles > kFewDecodeTiles / 2 || short_k;
}

SplitK plan_split_k(const GroupedGemmArgs& args, const TileConfig& config, int sms, bool tokens_in_workspace) {
  SplitK split;
  const bool register_weights = register_weights_splits(args.a.format, args.b.format);
  // fp8_block128 x FP4 weights splits only with its tokens converted into the workspace.
  if (kernels::is_fp8_tokens_fp4_weights_pair(args.a.format, args.b.format) && !tokens_in_workspace) return split;
  // (block_m >= 1: a caller's invalid tile, which validation reports, plans no split.)
  const bool decode_tile = register_weights ? config.block_n == 256 && config.block_m >= 1 && config.block_m <= 64
                                            : config.block_n == 128 && (config.block_m == 32 || config.block_m == 64);
  if (!splits_k(args.a.format, args.b.format) || !decode_tile || config.cluster > 1 ||
      (args.signals != nullptr && args.scope != SignalScope::gpu) || args.max_m < 1 || args.n < 1 || sms < 2)
    return split;
  const int64_t tiles = slab_tiles(args, config.block_m, config.block_n);
  // 128 bytes of a token row (128 fp8 or 64 bf16 elements): the fp8 and bf16 kernels' K blocks.
  const int k_blocks = (args.k * (args.a.format == Format::bf16 ? 2 : 1) + 127) / 128;
  // Each piece keeps kMinKBlocksPerPiece K blocks (its pipeline's ramp and the partial's round trip
  // are fixed costs), and the pieces of all tiles fit in one round of the SMs. The register-weights
  // mainloop splits whole stages of kSubs 64-K blocks.
  int64_t pieces = std::min<int64_t>({sms / std::max<int64_t>(tiles, 1), k_blocks / kMinKBlocksPerPiece, kMaxKPieces});
  if (register_weights) {
    const int subs = kernels::register_weights_stage_subs(config.block_m, config.block_n, args.a.format, args.b.format,
                                                          tokens_in_workspace,
                                                          args.b.layout == OperandLayout::mma_fragments);
    pieces = std::min<int64_t>(pieces, ((args.k + 63) / 64 + subs - 1) / subs);
  }
  if (pieces < min_k_pieces(args.a.format, args.b.format)) return split;
  split.pieces = static_cast<int>(pieces);
  split.tiles = static_cast<int>(tiles);
  split.counters_offset = kTileCounterBytes;
  split.partials_offset = split.counters_offset + (size_t(tiles) * 4 + 15) / 16 * 16;
  split.bytes = split.partials_offset + size_t(tiles) * split.pieces * config.block_m * config.block_n * 4;
  return split;
}

size_t converted_launch_workspace_offset(const GroupedGemmArgs& args) {
  return (converted_activation_bytes(args) + 255) / 256 * 256;
}

GroupedGemmArgs with_converted_activations(const GroupedGemmArgs& args) {
  GroupedGemmArgs converted = args;
  converted.a = OperandArgs{Format::bf16, args.workspace, nullptr, 0, 0};
  // Past the activations the workspace is the bf16 launch's own (split K).
  const size_t offset = converted_launch_workspace_offset(args);
  const bool rest = args.workspace != nullptr && args.workspace_bytes > offset;
  converted.workspace = rest ? static_cast<uint8_t*>(args.workspace) + offset : nullptr;
  converted.workspace_bytes = rest ? args.workspace_bytes - offset : 0;
  return converted;
}

GroupedGemmArgs with_planned_workspace(const GroupedGemmArgs& args) {
  GroupedGemmArgs planned = args;
  if (planned.workspace == nullptr) {
    planned.workspace = reinterpret_cast<void*>(uintptr_t(1) << 44);
    planned.workspace_bytes = size_t(1) << 40;
  }
  return planned;
}

int smem_bytes(int block_m, int block_n, int stages, Format a_format, Format b_format, bool tokens_in_workspace,
               bool fragment_weights) {
  // Register-weights stages hold up to 256 K (kernel_params.h); the other mainloops 128 bytes of K.
  if (kernels::is_bf16_register_weights_pair(a_format, b_format))
    return kernels::register_weights_smem_plan(block_m, block_n, stages,
                                               kernels::register_weights_stage_subs(block_m, block_n, Format::bf16,
                                                                                    b_format, false, fragment_weights),
                                               Format::bf16, b_format, false, fragment_weights)
        .total_bytes();
  if (register_weights_with_converted_tokens(a_format, b_format, block_m, block_n))
    return kernels::register_weights_smem_plan(
               block_m, block_n, stages,
               kernels::register_weights_stage_subs(block_m, block_n, a_format, b_format, tokens_in_workspace,
                                                    fragment_weights),
               a_format, b_format, tokens_in_workspace, fragment_weights)
        .total_bytes();
  // Dequantizing mainloop: 64-K packed stages plus two bf16 tiles per dequantized operand.
  if (kernels::is_dequant_bf16_pair(a_format, b_format))
    return kernels::dequant_bf16_smem_plan(a_format, b_format, block_m, block_n, stages).total_bytes();
  if (a_format == Format::fp8_block128 && b_format == Format::fp8_block128)
    return kernels::fp8_block128_smem_plan(block_m, block_n, stages).total_bytes();
  return kernels::SmemPlan{block_m, block_n, stages}.total_bytes();
}

int max_stages(int block_m, int block_n, int smem_per_block, Format a_format, Format b_format,
               bool tokens_in_workspace, bool fragment_weights) {
  int stages = 0;
  while (stages < kMaxStages && smem_bytes(block_m, block_n, stages + 1, a_format, b_format, tokens_in_workspace,
                                           fragment_weights) <= smem_per_block)
    ++stages;
  return stages < kMinStages ? 0 : stages;
}

TileConfig choose_tile_config(int max_m, int expected_m, int smem_per_block, TileConfig config, Format a_format,
                              Format b_format, int k, bool tokens_in_workspace, bool dynamic_tiles,
                              bool fragment_weights) {
  const int requested_block_n = config.block_n;
  const bool explicit_block_m = config.block_m != 0, explicit_block_n = config.block_n != 0;
  int one_block_rows = 0;  // rows one token block should cover, when the heuristic picks block_m
  // Two-CTA clusters are compiled for kClusterTiles only (validated with explicit tiles): a
  // cluster request without a tile gets the 128-token one.
  if (config.cluster == 2 && config.block_m == 0) config.block_m = 128;
  if (config.block_m == 0) {
    // One token block per expert when possible: a second one re-reads the expert's weights. Wasted
    // MMA columns cost nothing while the weights stream from HBM.
    one_block_rows = rows_to_cover(max_m, expected_m);
    config.block_m = 128;  // many token blocks per expert: the pairing's wide tile below
    for (int block_m : {32, 64, 128, 192}) {
      if (block_m >= one_block_rows) {
        config.block_m = block_m;
        config.block_n = config.block_n == 0 ? 128 : config.block_n;
        break;
      }
    }
  }
  // When an expert's rows need several token blocks anyway, the tile is limited by what each K
  // block pulls from L2: 128 tokens x 256 weight rows moves 48 KB per 4 M MACs, 128 x 128 moves
  // 32 KB per 2 M. fp8_block128 on both sides takes the token-rows 128 x 192 instead (one drain and
  // four scale products per stage, where 128 x 256 drains twice; faster in 44 of 46 runs, step 2 of
  // docs/configuration.md). A cluster asked for keeps 128 x 256, the wide tile clusters are compiled for.
  const bool fp8_pair = a_format == Format::fp8_block128 && b_format == Format::fp8_block128;
  if (config.block_n == 0)
    config.block_n = config.block_m == 128 ? (fp8_pair && config.cluster != 2 ? 192 : 256) : 128;
  // bf16 x FP4 weights there: 192x128 instead (4-16% faster at E = 8; 128x256 groups a single k16
  // step per wgmma commit).
  if (a_format == Format::bf16 && (b_format == Format::mxfp4 || b_format == Format::nvfp4) && !explicit_block_m &&
      !explicit_block_n && config.block_m == 128 && config.block_n == 256) {
    config.block_m = 192;
    config.block_n = 128;
  }
  // bf16 x mxfp8 there (and mxfp8 x mxfp8, whose tokens a workspace converts first): 128x128, whose
  // mxfp8 weight stages are 3 deep where 128x256 fits 2 (6-14% faster at E = 8).
  if (a_format == Format::bf16 && b_format == Format::mxfp8 && !explicit_block_m && !explicit_block_n &&
      config.block_m == 128 && config.block_n == 256)
    config.block_n = 128;
  // Dequantizing pairings (mxfp8/mxfp4/nvfp4 on both sides, fp8_block128 x FP4): their bf16 tiles
  // are double buffered in shared memory, which leaves 128x256 two stages at most, so block_n = 128.
  // 192 tokens become 128x128 on the register-operand mainloop where the pairing runs there
  // (fp8_block128 x FP4 holds a partial accumulator per 128-K block, so block_m <= 128 only; the FP4
  // pairs ran 12-17% faster that way); mxfp8 x mxfp8 keeps 192x128 (5% faster than its 128x128).
  if (kernels::is_dequant_bf16_pair(a_format, b_format) && !explicit_block_n) {
    config.block_n = 128;
    if (!explicit_block_m && config.block_m > 128 && a_format != Format::mxfp8 &&
        register_weights_with_converted_tokens(a_format, b_format, 128, 128))
      config.block_m = 128;
  }
  // Register weights at decode (one token block of <= 64 rows per expert; bf16 tokens, or tokens the
  // mainloop converts): 256 weight rows per tile. The bf16 token tile outweighs the packed weight
  // tile, so it is loaded once per 256 rows instead of per 128. 48 tokens where they cover the
  // expert: the smaller token tile leaves room for 256-K stages beside the block scales' buffer,
  // where 64 x 256 fits 128-K stages only.
  if ((kernels::is_bf16_register_weights_pair(a_format, b_format) ||
       register_weights_with_converted_tokens(a_format, b_format, config.block_m, 256)) &&
      requested_block_n == 0 && config.block_m <= 64) {
    config.block_n = 256;
    if (!explicit_block_m && config.block_m == 64 && one_block_rows <= 48) config.block_m = 48;
    // (bf16 tokens may take 128 weight rows instead, by the launch's tile count: narrows_decode_tile.)
  }
  // Deepest ring that fits: more bytes in flight per SM is what a weight-streaming GEMM needs.
  if (config.stages == 0)
    config.stages = max_stages(config.block_m, config.block_n, smem_per_block, a_format, b_format,
                               tokens_in_workspace &&
                                   register_weights_with_converted_tokens(a_format, b_format, config.block_m,
                                                                          config.block_n),
                               fragment_weights);
  // fp8_block128 with several token blocks per expert: pair the CTAs that share a weight (or token)
  // tile into a cluster and multicast it, so it is read from HBM and L2 once, in step. With short K
  // the pair's lockstep costs more than the shared loads save (kClusterMinK); CTAs that take tiles
  // dynamically run alone, which balances the grid better than the pairs' shared loads gain.
  if (config.cluster == 0)
    config.cluster = !dynamic_tiles && fp8_pair &&
                             is_cluster_tile(config.block_m, config.block_n) && (k == 0 || k >= kClusterMinK)
                         ? 2
                         : 1;
  return config;
}

}  // namespace signalgemm::host
