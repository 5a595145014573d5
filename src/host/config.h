// Tile configuration heuristic: the one place where tile shapes and pipeline depth are chosen.
// The table and the measurements behind it are in docs/configuration.md. Rule constants assume an
// H100 / H200's 132 SMs and never read the launch's sm_count: the tile, and every signal value, must
// not depend on the SMs a consumer keeps.
#pragma once

#include "signalgemm/gemm.h"

namespace signalgemm::host {

struct TileShape {
  int block_m;  // tokens per tile (wgmma N)
  int block_n;  // weight rows per tile (two MMA warpgroups)
};

// Tile shapes a TileConfig may name (the register-weights pairings also 32x256, 48x256 and 64x256:
// kDecodeTiles).
inline constexpr TileShape kSupportedTiles[] = {{32, 128}, {64, 128}, {128, 128}, {192, 128}, {128, 256}};
// Register-weights pairings only (is_decode_tile): one token block of at most 64 rows x 256 weight rows.
inline constexpr TileShape kDecodeTiles[] = {{32, 256}, {48, 256}, {64, 256}};
// Tiles also compiled for two-CTA clusters (fp8_block128 x fp8_block128 only).
inline constexpr TileShape kClusterTiles[] = {{128, 128}, {128, 256}};
// fp8_block128 x fp8_block128 only: 128-token tiles with the tokens as the wgmma's M
// (mainloop_fp8_token_rows.cuh), named by their weight rows.
inline constexpr TileShape kTokenRowsTiles[] = {{128, 192}};
inline constexpr int kMinStages = 2;
inline constexpr int kMaxStages = 16;

bool is_supported_block_m(int block_m);
bool is_supported_block_n(int block_n);
bool is_supported_tile(int block_m, int block_n);
bool is_cluster_tile(int block_m, int block_n);
bool is_token_rows_tile(int block_m, int block_n);
// A decode tile (kDecodeTiles) of a pairing that compiles them: bf16 tokens x nvfp4 / mxfp4 / mxfp8
// weights, or tokens the register-weights mainloop converts (register_weights_with_converted_tokens).
bool is_decode_tile(Format a_format, Format b_format, int block_m, int block_n);

// Pure function of the problem and the device's shared-memory limit (bytes per block, opt-in).
// Zero fields of `override_config` are chosen; non-zero ones are kept as given. The operand formats
// select the mainloop, whose stage size sets how many stages fit; `k` (0: not known, taken as long)
// decides whether the wide fp8 tile runs in clusters.
// `tokens_in_workspace`: fp8_block128 tokens converted to bf16 beforehand (uses_activation_workspace),
// whose stages are smaller.
// `dynamic_tiles`: the CTAs take tiles from a counter (takes_tiles_dynamically), which the static
// cluster pairs cannot, so clusters are not chosen.
// `fragment_weights`: FP4 weights in the mma_fragments layout, whose stages carry their scales.
TileConfig choose_tile_config(int max_m, int expected_m, int smem_per_block, TileConfig override_config,
                              Format a_format = Format::fp8_block128, Format b_format = Format::fp8_block128,
                              int k = 0, bool tokens_in_workspace = false, bool dynamic_tiles = false,
                              bool fragment_weights = false);

// Where the heuristic picks the wide 128x256 tile but at most kFewWideTiles of it could exist
// (E x ceil(max_m / 128) x ceil(N / 256)): 128x128 instead, whose twice as many tiles still fit one
// round on twice as many SMs (bf16 22-40% faster at E1; docs/configuration.md, step 3a). fp8_block128's
// wide tile is the token-rows 128x192, which ran faster than 128x128 there itself. False where the
// caller fixed the tile (args.config).
bool narrows_few_wide_tiles(const GroupedGemmArgs& args, const TileConfig& chosen);
inline constexpr int64_t kFewWideTiles = 64;

// The most tiles a rule that trades a launch's tiles for more, smaller ones may make: one round on
// 132 SMs while a consumer keeps up to 20 of them. Such tiles load as many weights as the ones they
// replace, so a second round costs nearly a whole one (1.1-1.6x slower with 100-120 SMs).
inline constexpr int64_t kOneRoundTiles = 112;

// Where the heuristic covers each expert's rows with one token block of 128 or 192 and at most
// kFewTokenBlockTiles tiles of 128 weight rows could exist (fp8_block128 or bf16 on both sides, bf16
// tokens x register weights): the token block to take instead, stepping 192 -> 128x128 -> 64 while the
// smaller block's tiles stay within kOneRoundTiles; fp8_block128 tokens x FP4 weights from a workspace:
// 128 -> 64 (the 64x256 decode tile, K split) where at most kFewDecodeTiles / 2 such tiles could
// exist. 0: keep the heuristic's. More, smaller tiles on more SMs, an expert's weights read by its
// blocks' CTAs at about the same time (4-54% faster by pairing; step 3b).
int block_m_for_few_tiles(const GroupedGemmArgs& args, const TileConfig& chosen);
inline constexpr int64_t kFewTokenBlockTiles = 64;

// fp8_block128 on both sides where each expert takes one token block of 65..kTokenRowsMaxRows rows
// (128x128 or 192x128) and at least kManyTokenRowsTiles tiles of 128x192 would exist (E x ceil(N / 192)):
// whether to take the token-rows 128x192 instead (one drain and four scale products per stage; a
// warpgroup whose tokens are all padding skips its MMAs). Median 2.5-8% faster there; with fewer
// tiles, or more rows, the rounds decide against it (step 3c).
bool widens_fp8_token_block(const GroupedGemmArgs& args, const TileConfig& chosen);
inline constexpr int64_t kManyTokenRowsTiles = 256;
inline constexpr int kTokenRowsMaxRows = 144;

// A register-weights launch on a decode tile of 256 weight rows (32x256, 48x256, 64x256; block_n not
// given), T of them (E x ceil(max_m / block_m) x ceil(N / 256)): whether it takes 128 weight rows
// instead (bf16 tokens: 32x128 or 64x128; converted tokens: 128x128, and only where block_m is not
// given either). Not by the SMs; by K where it is given (0: a long K). Rules (step 3d, 3e):
// - bf16 tokens: T > kFewDecodeTiles with 64 tokens (whose 64x256 holds only 128-K stages), or with
//   32 tokens beside nvfp4 weights and K > kShortDecodeK; kRoundSms < T <= 1.5 kRoundSms, where 256
//   rows leave a second round at most half full; kFewDecodeTiles / 2 < T <= kFewDecodeTiles, where K
//   would split in only 2-4 pieces; fewer tiles with K <= kShortDecodeK, where pieces that short do
//   not pay for the split.
// - fp8_block128 tokens x FP4 weights from a workspace: T <= kFewDecodeTiles / 2 and K <= kShortDecodeK.
// - Tokens converted per tile (no workspace), whose mainloop splits no K: 2T <= kOneRoundTiles, from
//   the decode tiles where 128x128 measured faster (fp8_block128 tokens: any; nvfp4² / mxfp4²: 48 and
//   64 tokens; mxfp8²: 64).
bool narrows_decode_tile(const GroupedGemmArgs& args, const TileConfig& chosen);
inline constexpr int64_t kFewDecodeTiles = 64;
inline constexpr int kShortDecodeK = 2048;
// The SMs of an H100 SXM or H200, for rules that fill rounds of tiles (a constant, so that the tile and
// its signals do not depend on sm_count).
inline constexpr int64_t kRoundSms = 132;

// fp8_block128 tiles pair into two-CTA clusters only from this K on (H100, 2026-11-26: with K <= 2048
// the 128x256 tile ran 1-6% faster alone, with K >= 4096 up to 3.5% faster in pairs; see
// docs/configuration.md).
inline constexpr int kClusterMinK = 4096;

// Activations converted to bf16 by the MMA threads of the register-operand register-weights mainloop:
// fp8_block128 x FP4, nvfp4 x nvfp4, mxfp4 x mxfp4 and mxfp8 x mxfp8 on the decode tiles of 256 weight rows
// (block_m <= 64) or on 128x128 (else the dequantizing mainloop: 32x128, 64x128, and for the FP4
// pairs 192x128 and 128x256).
bool register_weights_with_converted_tokens(Format a_format, Format b_format, int block_m, int block_n);
// Pairings whose activations a workspace converts to bf16 once (GroupedGemmArgs::workspace):
// nvfp4, mxfp4 or mxfp8 on both sides, and fp8_block128 x nvfp4 / mxfp4. Bytes it takes: bf16 [E][max_m][K].
bool converts_activations(Format a_format, Format b_format);
size_t converted_activation_bytes(const GroupedGemmArgs& args);
// Whether this launch converts its activations first (a workspace given and used): the one-format
// pairings always, fp8_block128 x FP4 on the tiles whose tokens the register-weights mainloop
// reads as bf16 (register_weights_with_converted_tokens: the ones the heuristic picks).
bool uses_activation_workspace(const GroupedGemmArgs& args, const TileConfig& config);
// Dynamic tile scheduling (kernels/tile_ring.cuh): an fp8_block128 x fp8_block128 launch with a
// workspace of at least kTileCounterBytes keeps the grid's tile counter there, and its CTAs take
// tiles from it (a CTA done early takes more); the launch zeroes it first. Single CTAs only: with
// `config` (when given) asking for clusters, the pairs walk their static order, and so does the
// token-rows 128x192 tile (H100, 2026-11-27: 2-14% faster in the fixed order at E = 2..16; cause not
// found). The other mainloops walk the static order: on the H100 (2026-11-26) dynamic tiles made the
// register-weights ones 5-22% slower (bf16 x nvfp4, mxfp4, mxfp8 at E32 m128 and E=8;
// docs/performance.md).
inline constexpr size_t kTileCounterBytes = 16;
bool uses_tile_counter(Format a_format, Format b_format);  // the pairings that take tiles dynamically
bool takes_tiles_dynamically(const GroupedGemmArgs& args, const TileConfig* config = nullptr);
// Split K for launches with few tiles (docs/configuration.md): an fp8_block128 x fp8_block128 or
// bf16 x bf16 launch on a decode tile (32x128 or 64x128, no cluster), or bf16 x nvfp4 / mxfp4 / mxfp8 on
// its decode tiles (32, 48 or 64 x 256, whole stages per piece; also fp8_block128 x FP4 with its
// tokens converted into the workspace), runs each tile as `pieces` K
// ranges on as many CTAs, pieces = min(sms / tiles, K blocks / kMinKBlocksPerPiece, kMaxKPieces)
// when that is at least min_k_pieces; each writes its fp32 partial to the workspace and the last to
// finish a tile sums them in piece order (deterministic) and stores the tile. Needs gpu-scope
// signals (or none) and a workspace of workspace_bytes(args). `sms`: the SMs the launch may use.
// pieces == 1: no split.
struct SplitK {
  int pieces = 1;
  int tiles = 0;  // tile slots: every tile masked_m could make (E x row blocks of max_m x col blocks)
  size_t counters_offset = 0, partials_offset = 0, bytes = 0;  // in the workspace
};
bool splits_k(Format a_format, Format b_format);  // the pairings with split-K kernels
// `tokens_in_workspace`: fp8_block128 tokens converted to bf16 in the workspace (fp8_block128 x
// FP4 weights split only then; the partials then follow the tokens, see launch.cu).
SplitK plan_split_k(const GroupedGemmArgs& args, const TileConfig& config, int sms, bool tokens_in_workspace = false);
// The fewest pieces worth a split (docs/configuration.md, "Few tiles"): fp8_block128 lost with 2
// pieces; bf16's unsplit loop streams ~1.7x faster per SM, so only 8 pieces paid; register weights
// are bound by each SM's issue rate, far from the memory bandwidth, so 2 pieces already pay
// (E3 m8: 1.4x faster).
inline constexpr int min_k_pieces(Format a_format, Format b_format) {
  if (a_format == Format::bf16 && b_format == Format::bf16) return 8;
  const bool register_weights =  // bf16 or fp8_block128 tokens
      b_format == Format::nvfp4 || b_format == Format::mxfp4 || b_format == Format::mxfp8;
  return register_weights ? 2 : 3;
}
inline constexpr int kMaxKPieces = 8;
inline constexpr int kMinKBlocksPerPiece = 6;

// One-format pairings: the launch that follows the conversion, bf16 activations in the workspace
// (then a pairing of its own, with its own tiles), and as its own workspace what lies past them,
// from converted_launch_workspace_offset (256-byte aligned) on, if anything; fp8_block128 tokens
// keep their format and scales, and the launch reads their bf16 copy (launch.cu).
GroupedGemmArgs with_converted_activations(const GroupedGemmArgs& args);

// args as a launch given a workspace (a stand-in address and size, never dereferenced), where it has
// none: planning with sizes alone (workspace_bytes, the Python module's signal_layout) for such a
// launch, whose tile may depend on it (uses_activation_workspace, narrows_decode_tile).
GroupedGemmArgs with_planned_workspace(const GroupedGemmArgs& args);
size_t converted_launch_workspace_offset(const GroupedGemmArgs& args);

// Dynamic shared memory of the kernel for these operand formats, tile and stage count.
int smem_bytes(int block_m, int block_n, int stages, Format a_format = Format::fp8_block128,
               Format b_format = Format::fp8_block128, bool tokens_in_workspace = false,
               bool fragment_weights = false);

// Most stages that fit in `smem_per_block` for this tile (0 if not even kMinStages fit).
int max_stages(int block_m, int block_n, int smem_per_block, Format a_format = Format::fp8_block128,
               Format b_format = Format::fp8_block128, bool tokens_in_workspace = false,
               bool fragment_weights = false);

// fp8_block128 weight scales: one float per expert and 128x128 block, [E][ceil(N/128)][K/128]. The
// kernel loads them by one int32 TMA coordinate into a flat row, so validation bounds this count.
inline int64_t fp8_weight_scale_count(const GroupedGemmArgs& args) {
  const int block = scale_block_k(Format::fp8_block128);
  return int64_t(args.num_experts) * ((args.n + block - 1) / block) * (args.k / block);
}

}  // namespace signalgemm::host
