// Tile configuration heuristic: the one place where tile shapes and pipeline depth are chosen.
// The table and its reasoning are in docs/configuration.md.
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
TileConfig choose_tile_config(int max_m, int expected_m, int smem_per_block, TileConfig override_config,
                              Format a_format = Format::fp8_block128, Format b_format = Format::fp8_block128,
                              int k = 0, bool tokens_in_workspace = false, bool dynamic_tiles = false);

// Where the heuristic picks the wide 128x256 tile (several token blocks per expert: bf16 on both
// sides; bf16 x mxfp8 took it too before 2026-11-28) but it would leave more than half of an
// H100's SMs idle: at most kFewWideTiles tiles of it could exist (E x ceil(max_m / 128) x
// ceil(N / 256); masked_m <= max_m).
// Then 128x128, whose twice as many tiles still fit one round on twice as many SMs (H100,
// 2026-11-27, E1 m256-m512 4096x7168: bf16 37-41% faster, bf16 x mxfp8 54%; docs/performance.md).
// fp8_block128's wide tile, the token-rows 128x192, ran 4-8% faster than 128x128 there itself
// (8 of 9 one-expert shapes, H100, session 30), so fp8 keeps it.
// A constant rather than the launch's SMs, so that the tile, and with it every signal value, does
// not depend on sm_count. False where the caller fixed the tile (args.config).
bool narrows_few_wide_tiles(const GroupedGemmArgs& args, const TileConfig& chosen);
inline constexpr int64_t kFewWideTiles = 64;

// The most tiles a rule that trades a launch's tiles for more, smaller ones of fewer tokens or
// converted tokens may make (block_m_for_few_tiles; narrows_decode_tile for tokens converted per
// tile): one round on an H100 / H200's 132 SMs while a consumer beside the GEMM keeps up to 20 of
// them (the EP benchmark keeps 16; an H100 PCIe has 114). Such a tile loads as many weights as the
// one it replaces, so a second round costs nearly a whole one: with SMs kept for a consumer, 128
// of them ran 1.1-1.6x slower than the tiles they replaced (H200, 2026-11-29, sm_count 100-120:
// E2-E4 at m = 40-140, fp8_block128, bf16 x nvfp4, tokens converted per tile; docs/performance.md).
// A constant, not the launch's SMs, so that the tile and its signals do not depend on sm_count.
inline constexpr int64_t kOneRoundTiles = 112;

// Where the heuristic covers each expert's rows with one token block of 128 or 192 (min(max_m, 1.3 x
// the hint) in 65..192; block_m and block_n not given) and its tiles of 128 weight rows are at most
// kFewTokenBlockTiles (E x ceil(rows / block_m) x ceil(N / 128)): the token block that launch takes
// instead, stepping down (192 -> 128x128, 128 -> 64 with block_n completed by the heuristic, then
// narrows_decode_tile) while the tiles are still that few and the smaller block's are at most
// kOneRoundTiles; 0: keep the heuristic's. More, smaller
// tiles on more SMs; an expert's weights are then read by its token blocks' CTAs at about the same
// time (from L2 after the first). H200, 2026-11-29, E1-E4 at m = 64-100 (128 tokens, 32-64 tiles):
// 64 tokens made fp8_block128 12-20% faster, bf16 x nvfp4, mxfp4, mxfp8 4-27%; with 112-224 tiles
// they were 8-46% slower. E2-E4 at m = 140 (192 tokens, 64 tiles): 128x128 20-27% faster for
// fp8_block128 and bf16 x nvfp4 (`mma_fragments`), 64 tokens no better than 192; E1 m128 (32 tiles):
// 64 tokens 38-42% faster; E8 m130 (128 tiles): 192x128 fastest. Steps to 128 tiles (E4 N = 2048, E2
// N = 4096) no longer: on all SMs 15-22% faster (fp8_block128's 192 -> 128 within 5%), on 116 SMs
// 13-51% slower (H200, 2026-11-29). Pairings: fp8_block128 on both sides, bf16 on both sides (H200,
// 2026-11-29, E1-E8 at m = 64-140 with 32-96 tiles of 64 tokens: 18-46% faster on 100-132 SMs), bf16
// tokens with register weights (nvfp4, mxfp4, mxfp8); and fp8_block128 tokens x FP4 weights read
// from a workspace by a rule of their own: 128 -> 64 tokens (the decode tile 64x256, K split over the
// launch's SMs) where one 128-token block covers each expert and at most kFewDecodeTiles / 2 tiles of
// 64x256 could exist (E x ceil(max_m / 64) x ceil(N / 256), as plan_split_k counts them: 4 pieces on
// 132 SMs, 3 on 100); narrows_decode_tile takes short K back to 128x128. H200, 2026-11-29, E1-E8 with
// 16-32 such tiles, K = 3072-7168, nvfp4 and mxfp4 weights in rows and `mma_fragments`: 18-54% faster
// on 132 SMs, 10-52% on 116 and 100; with 48-64 of them up to 14% faster on 132 SMs but up to 37%
// slower on 100-116.
int block_m_for_few_tiles(const GroupedGemmArgs& args, const TileConfig& chosen);
inline constexpr int64_t kFewTokenBlockTiles = 64;

// fp8_block128 on both sides where the heuristic covers each expert with one token block (min(max_m,
// 1.3 x the hint) in 65..kTokenRowsMaxRows, giving 128x128 or 192x128; block_m and block_n not given)
// and at least kManyTokenRowsTiles tiles of 128x192 hold one block per expert (E x ceil(N / 192)):
// whether the launch takes the token-rows 128x192 instead (mainloop_fp8_token_rows.cuh: one drain and
// four scale products per stage, 1.5x the weight rows per token load; a warpgroup whose 64 tokens are
// all padding skips its MMAs; experts past 128 rows take a second, short block). H200, 2026-11-29:
// E16-E64 at m = 52-90 (65-128 rows), eight N x K pairs from 4096x7168 to 2048x768, three routings:
// median 3.5-4.2% faster, up to 13%, at most 4% slower; with sm_count 100 / 116 median 5.0% / 2.5%
// faster, at most 3% / 5% slower. m = 100-110 (130-143 rows, against 192x128), E16-E64, six pairs, two
// routings: median 4-8% faster, up to 16%, at most 8% slower (E16 3072x4096, whose 256 tiles spill
// second blocks into a third round); m = 115: even; m = 120 (156 rows): 6% slower in the median, so
// kTokenRowsMaxRows. With fewer tiles the rounds decide (E8: 19-23% faster at 3072x4096, where 128
// tiles fit one round on 132 SMs, 6-15% slower at 4096x7168, 176 of them), and a count of SMs the tile
// may not depend on. Constants, so that the tile and its signals do not depend on sm_count.
bool widens_fp8_token_block(const GroupedGemmArgs& args, const TileConfig& chosen);
inline constexpr int64_t kManyTokenRowsTiles = 256;
inline constexpr int kTokenRowsMaxRows = 144;

// A register-weights launch on a decode tile of 256 weight rows (32x256, 48x256, 64x256; block_n not
// given), T of them (E x ceil(max_m / block_m) x ceil(N / 256)): whether it takes 128 weight rows
// instead. Not the SMs or the signals; K counts where it is given (args.k = 0, sizes without K: as
// a long K).
// - bf16 tokens (one-format activations converted in the workspace run as these): the same tokens,
//   32x128 (48 and 64 tokens: 64x128). T > kFewDecodeTiles: for 64 tokens, whose 64x256 holds
//   128-K stages (H200, 2026-11-28, E4-E64 at m = 40-48: FP4 weights 0-17% faster, mxfp8 16-37%),
//   and for 32 tokens beside nvfp4 weights with K > kShortDecodeK (H200, 2026-11-29, E8-E256 at
//   m = 1-24, N = 1536-7168, K = 2880-14336, rows and `mma_fragments`: 2-12% faster; at K = 2048,
//   N = 7168 2-5% slower (at N = 1536 16-18% faster: E32's 192 tiles, the short last round below);
//   mxfp4 and mxfp8 weights -4..+10%, so they keep 256 rows); and for any tokens where T leaves a second round of
//   kRoundSms SMs at most half full (kRoundSms < T <= 1.5 kRoundSms): twice the tiles of half the time
//   fill 3 half rounds where the wide ones take 2 whole (H200, 2026-11-29, E6-E48 with T = 144-196, m =
//   8 and 24, K = 2048 and 7168, nvfp4 / mxfp4 `mma_fragments` and mxfp8 weights: 11-29% faster on 132
//   SMs; with 116 of them 12-29% faster for T <= 168, -9..+7% for T = 192-196; T = 224-256: -9..+6%,
//   so the window stops at 1.5 rounds).
//   kFewDecodeTiles / 2 < T <= kFewDecodeTiles, where K would split in 2 to 4 pieces (plan_split_k on
//   an H100): twice the tiles unsplit (H200, 2026-11-28: 14-30% faster at E3-E4 4096x7168 and E2
//   7168x2048). Fewer: K splits in 4-8 and the wide tile stays (E1-E2 4096x7168: up to 37% faster
//   than 128 rows), unless K <= kShortDecodeK: pieces that short do not pay for the split (H200,
//   2026-11-29, E1-E8 with 16-32 such tiles at m = 32-64: 128 rows unsplit 2-38% faster at K = 2048
//   for every pairing; mixed at 3072-4096; slower from 5120 on).
// - Converted tokens have no narrower decode tile of their own and take 128x128, so only where block_m
//   is not given either. fp8_block128 tokens x FP4 weights read from a workspace: for
//   T <= kFewDecodeTiles / 2 with K <= kShortDecodeK only, the split's case above (H200,
//   2026-11-29, E1-E8, m = 32-64, nvfp4 and mxfp4 weights in rows and `mma_fragments`: 0-27% faster
//   at K = 1024-2048, mixed at 3072, slower at 4096).
// - Tokens converted per tile (fp8_block128 x FP4, nvfp4², mxfp4², mxfp8² without a workspace), whose
//   mainloop splits no K: 128x128 where its 2T tiles are at most kOneRoundTiles (T <= 56; measured to
//   T = 64 on all 132 SMs, but with 120 of them T = 64 ran 24-62% slower than the decode tile);
//   fp8_block128 tokens from any decode tile, FP4 tokens (nvfp4², mxfp4²) from 64x256 and
//   48x256, mxfp8² from 64x256 only (H200, 2026-11-29, E1-E8 with 16-64 such tiles at m = 32-64,
//   K = 2048-7168: fp8_block128 x nvfp4 / mxfp4 8-40% faster, the one-format pairings from 64x256
//   25-43%; from 48x256 nvfp4² / mxfp4² 3-14% faster, mxfp8² -7%..+9%; from 32x256 2-18%
//   slower; with 256-1024 tiles 128x128 ran 11-109% slower).
bool narrows_decode_tile(const GroupedGemmArgs& args, const TileConfig& chosen);
inline constexpr int64_t kFewDecodeTiles = 64;
inline constexpr int kShortDecodeK = 2048;
// The SMs of an H100 SXM or H200, for rules that fill rounds of tiles (a constant, not the launch's
// SMs, so that the tile and its signals do not depend on sm_count).
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
// Measured on the H100 (2026-11-27, docs/performance.md): fp8_block128 with 4 pieces of 14 K blocks
// made E1 decode launches 16% faster and 8 of 7 34%, 3 pieces 4-8%; 2 pieces made launches of 56-64
// tiles 5-10% slower (their unsplit grids already near the memory bandwidth) and 4 pieces of 4 K
// blocks 4% slower (the partials' round trip outweighs the shorter K loop). bf16's unsplit K loop
// streams ~1.7x faster per SM (no promotion), so 32 tiles already pull ~2 TB/s: there 3-4 pieces
// were 3-14% slower and only 8 (16 tiles) faster, by 27%. bf16 x FP4 weights: its unsplit loop is
// bound by each SM's issue rate (dequantization beside register-operand MMAs), far from the memory
// bandwidth at few tiles, so pieces pay almost in full: 8 pieces 2.6x faster (E1 m1 4096x7168),
// 4 pieces 2.0x (E2 m4), 2 pieces 1.4x (E3 m8); hence 2 pieces already.
inline constexpr int min_k_pieces(Format a_format, Format b_format) {
  if (a_format == Format::bf16 && b_format == Format::bf16) return 8;
  const bool register_weights =  // bf16 or fp8_block128 tokens
      b_format == Format::nvfp4 || b_format == Format::mxfp4 || b_format == Format::mxfp8;
  return register_weights ? 2 : 3;
}
inline constexpr int kMaxKPieces = 8;
inline constexpr int kMinKBlocksPerPiece = 6;
inline constexpr int kH100SmCount = 132;  // planning without a device

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
               Format b_format = Format::fp8_block128, bool tokens_in_workspace = false);

// Most stages that fit in `smem_per_block` for this tile (0 if not even kMinStages fit).
int max_stages(int block_m, int block_n, int smem_per_block, Format a_format = Format::fp8_block128,
               Format b_format = Format::fp8_block128, bool tokens_in_workspace = false);

// fp8_block128 weight scales: one float per expert and 128x128 block, [E][ceil(N/128)][K/128]. The
// kernel loads them by one int32 TMA coordinate into a flat row, so validation bounds this count.
inline int64_t fp8_weight_scale_count(const GroupedGemmArgs& args) {
  const int block = scale_block_k(Format::fp8_block128);
  return int64_t(args.num_experts) * ((args.n + block - 1) / block) * (args.k / block);
}

}  // namespace signalgemm::host
