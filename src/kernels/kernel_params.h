// Parameters and shared-memory plan of the persistent masked grouped GEMM kernel, shared by the
// host launcher (which sizes shared memory and picks stages from it) and the device code.
#pragma once

#include <cstdint>

#include "signalgemm/signals.h"

namespace signalgemm::kernels {

// The kernels compute the swapped product C^T = B * A^T: weight rows fill the MMA's 64-row M
// dimension (one warpgroup per 64 rows), tokens fill its N dimension (8..256), so a decode step
// with a handful of tokens per expert wastes no MMA rows. Two MMA warpgroups split a tile's block_n
// weight rows (64 or 128 each: one or two wgmma M slices). The exception, fp8_block128's 128x192
// tile (mainloop_fp8_token_rows.cuh), puts 64 tokens per warpgroup in M and the weights in N.
inline constexpr int kMathWarpgroups = 2;
inline constexpr int kMathThreads = kMathWarpgroups * 128;
// Plus one producer warpgroup: Hopper allocates registers per warpgroup, so a lone producer warp
// would cost as much; the producer gives its registers to the MMA warpgroups with setmaxnreg.
inline constexpr int kThreads = kMathThreads + 128;

// Named barrier ids, one registry so no two users collide (id 0 is __syncthreads): the MMA threads
// and the storer warp around the staged tile (epilogue_signal.cuh: both MMA warpgroups at once, or
// each at its own pair, ids 8..11), the MMA threads around the tokens they convert (register-weights
// mainloop) and around a dequantized stage (dequantizing mainloop), and each MMA warpgroup around
// its scale products (fp8_block128 mainloop: ids 6, 7).
inline constexpr int kStagingFullBarrier = 1;
inline constexpr int kStagingFreeBarrier = 2;
inline constexpr int kTokenConversionBarrier = 3;
inline constexpr int kDequantBarrier = 5;
inline constexpr int kScaleProductBarrier = 6;           // + MMA warpgroup index
inline constexpr int kWarpgroupStagingFullBarrier = 8;   // + MMA warpgroup index
inline constexpr int kWarpgroupStagingFreeBarrier = 10;  // + MMA warpgroup index
inline constexpr int kPieceBarrier = 12;                 // split K: the MMA threads around a piece's count
inline constexpr int kProducerRegisters = 40;
// 128 * 40 + 256 * 232 = 64512 of the SM's 65536. Producer 48 + MMA 232 (all 65536) hangs: the
// MMA warps' setmaxnreg.inc then waits forever for registers (H200, 2026-11-26).
inline constexpr int kMathRegisters = 232;
inline constexpr int kBlockK = 128;              // bytes of K per stage: 128 e4m3 (one scale block) or 64 bf16
inline constexpr int kSmemAlignment = 1024;      // 128-byte swizzle repeats every 1024 bytes

struct KernelParams {
  SignalLayout layout;  // experts, max_m, n, tile shape, signal granularity
  int num_k_blocks;     // K blocks of the mainloop's stage: ceil(K bytes / kBlockK); the dequantizing
                        //   mainloop and converted register-weights tokens: K / 64 (launch.cu)
  int stages;

  const void* b_scales;         // weight scales: fp8_block128 float [E][ceil(N/128)][K/128];
                                //   byte-scaled weights (nvfp4, MX) bytes [E][N][K / scale block]
  int b_scale_cols;             // K / scale block for byte-scaled weights (bytes per weight row of b_scales)
  void* out;                    // bf16 or fp16 [E][max_m][N] with the strides below
  bool out_fp16;                // C's elements are fp16 (OutputType::fp16), else bf16
  void* const* out_rows;        // or, when set, one destination per (expert, row)
  bool out_boxes;               // C's tensor map is set (tmap_c): store staged tiles in boxes (epilogue_signal.cuh)
  int64_t out_row_stride;       // bytes
  int64_t out_expert_stride;    // bytes
  const int32_t* masked_m;      // [E]
  const float* alpha;           // [E] or null
  uint32_t* signals;            // layout.counter_count() counters, or null
  bool signal_sys_scope;
  int32_t* error_flag;          // or null
  const void* a_scales;         // token scales of mxfp8, mxfp4, nvfp4 activations, read by the MMA threads
                                //   (dequantizing and register-weights mainloops): bytes [E][max_m][K / scale block]
  int a_scale_cols;             // bytes per token row of a_scales
  uint32_t* tile_counter;       // zero before the launch: CTAs take tiles dynamically (tile_ring.cuh,
                                //   single-CTA kernels only); null: each CTA walks its share in order
  // Split K (host::plan_split_k; split-K instantiations only): K ranges per tile, per tile slot the
  // count of pieces done (zero before the launch), and the pieces' fp32 partials.
  int k_pieces;
  uint32_t* piece_counters;  // [slot]
  float* piece_partials;     // [slot][piece][accumulator register][MMA thread]
};

// The producer's tile hand-over ring (tile_ring.cuh): slots of 20 bytes and two mbarriers each
// (4 slots of 20 bytes keep the mbarriers after them 8-byte aligned).
inline constexpr int kTileRingSlots = 4;
inline constexpr int kTileRingBytes = kTileRingSlots * (20 + 2 * 8);

// Where each buffer lives in dynamic shared memory (offsets from a 1024-byte aligned base).
struct SmemPlan {
  int block_m = 0;
  int block_n = 0;
  int stages = 0;
  int b_row_bytes = kBlockK;  // bytes of one weight row per stage (32 per 64 K for packed FP4)
  int dequant_bytes = 0;      // the dequantizing mainloop's double-buffered bf16 tiles
  int a_k_blocks = 1;         // 128-byte K blocks of tokens per stage (register weights: up to 4, see below)
  int sfa_token_bytes = 4;    // token-scale bytes per token and stage (fp8_block128 tokens; the
                              //   register-weights plans set 0 without them, bf16 x bf16 leaves 4 unused)
  int a_row_bytes = 0;        // if > 0: bytes of one token row per stage (packed activations: the
                              //   dequantizing mainloop's 64 e4m3 or 32 FP4, the register-weights one's bf16
                              //   tiles and loaded bytes); else a_k_blocks * kBlockK
  int scale_buffer_bytes = 0;  // outside the ring: scales the MMA threads copy in or form themselves
                               //   (register-weights mainloop: two stages' worth of weight scales, three of
                               //   token scales; dequantizing one: three; fp8_block128: each MMA
                               //   warpgroup's scale products of two stages)
  int sfb_stage_bytes = 0;     // per stage, beside the ring: the weight scales TMA loads with the stage
                               //   (fp8_block128: one 128-byte slot per MMA warpgroup)

  SG_HD static constexpr int round_up(int x, int a) { return (x + a - 1) / a * a; }
  SG_HD constexpr int a_bytes() const {  // token tile(s)
    return a_row_bytes > 0 ? block_m * a_row_bytes : block_m * kBlockK * a_k_blocks;
  }
  SG_HD constexpr int b_bytes() const { return block_n * b_row_bytes; }          // weight tile
  SG_HD constexpr int sfa_bytes() const { return round_up(block_m * sfa_token_bytes, 128); }  // TMA: 128 B aligned
  SG_HD constexpr int stage_bytes() const { return a_bytes() + b_bytes() + sfa_bytes(); }
  // Output staging: one row per token, padded 16 bytes so the transposed writes spread over banks
  // (or, stored in boxes, the same bytes less the padding: StagingLayout below).
  SG_HD static constexpr int staging_pitch(int block_n) { return block_n * 2 + 16; }
  SG_HD constexpr int staging_bytes() const { return block_m * staging_pitch(block_n); }

  // The dequantizing mainloop's bf16 tiles come first: they must be 1024-byte aligned like the TMA tiles.
  SG_HD constexpr int dequant_offset() const { return 0; }
  SG_HD constexpr int a_offset(int s) const { return dequant_bytes + s * a_bytes(); }
  SG_HD constexpr int b_offset(int s) const { return dequant_bytes + stages * a_bytes() + s * b_bytes(); }
  SG_HD constexpr int sfa_offset(int s) const { return dequant_bytes + stages * (a_bytes() + b_bytes()) + s * sfa_bytes(); }
  // 1024-byte aligned: the boxes' 128-byte swizzle repeats every 1024 bytes.
  SG_HD constexpr int staging_offset() const {
    return round_up(dequant_bytes + stages * stage_bytes(), kSmemAlignment);
  }
  SG_HD constexpr int scale_buffer_offset() const { return staging_offset() + staging_bytes(); }
  SG_HD constexpr int sfb_offset(int s) const {
    return scale_buffer_offset() + scale_buffer_bytes + s * sfb_stage_bytes;
  }
  SG_HD constexpr int barrier_offset() const { return round_up(sfb_offset(stages), 8); }
  // full[stages] then empty[stages], 8 bytes each, the storer's count of stored tiles for the
  // signaler (epilogue_signal.cuh; 8 bytes with padding), then the tile ring; plus slack to align
  // the base at run time.
  SG_HD constexpr int tile_ring_offset() const { return barrier_offset() + 2 * stages * 8 + 8; }
  SG_HD constexpr int total_bytes() const { return tile_ring_offset() + kTileRingBytes + kSmemAlignment; }
};

// Where the staged tile's bytes lie: rows = tokens (kRows of them), kBlockN bf16 columns each, in
// 16-byte units (8 columns).
// - Rows: one row per token, staging_pitch bytes apart (16 bytes of padding put the rows of an
//   8x8 stmatrix fragment on distinct banks). The storer copies each real row with one bulk copy,
//   to C or to the row's own destination (KernelParams::out_rows, the epilogue send).
// - Boxes (KernelParams::out_boxes, tiles that stage with stmatrix in whole 64-column chunks: 64 or
//   more rows; the decode tiles of 32 and 48 tokens stage element by element, in rows):
//   per 64-column chunk, [kRows][128 bytes] with the 128-byte swizzle (unit u of row r at
//   u ^ (r % 8): a fragment's 8 rows again on distinct banks), as TMA's 128-byte swizzle lays out
//   a box of C's tensor map. The storer writes a tile's whole 8-row groups as 8 x 64 boxes: the
//   copy engine works through its copies one after another, ~30 ns each, so 128 row copies take
//   3.8 us to complete and 48 boxes 1.5 us (bench/store_latency.cu, H100 2026-11-27); the launch's
//   last tiles and every signal wait that long. (SmemPlan::staging_offset keeps the tile 1024-byte
//   aligned, as the swizzle needs.)
template <int kRows, int kBlockN>
struct StagingLayout {
  static constexpr bool kBoxesPossible = kRows >= 64 && kBlockN % 64 == 0;
  static constexpr int kChunkBytes = kRows * 128;  // one 64-column chunk, 1024-byte aligned (kRows % 8 == 0)
  bool boxes;
  SG_HD explicit StagingLayout(bool out_boxes) : boxes(kBoxesPossible && out_boxes) {}
  // Byte offset of unit `unit` of row `row`.
  SG_HD uint32_t offset(int row, int unit) const {
    return boxes ? (unit / 8) * kChunkBytes + row * 128 + (((unit % 8) ^ (row % 8)) << 4)
                 : row * SmemPlan::staging_pitch(kBlockN) + unit * 16;
  }
};

// fp8_block128 x fp8_block128 (mainloop_fp8_block128.cuh): 128-K stages with the token scales in the
// stage and, beside the ring, each MMA warpgroup's weight scale of the stage: the 16-byte aligned
// box of kWeightScaleBox floats that holds it, in a 128-byte aligned slot (TMA's alignments); and
// each MMA warpgroup's scale products (weight scale x token scale, one float per token) of two
// stages, which its threads form once per token and share.
inline constexpr int kWeightScaleBox = 4;  // 16 bytes: TMA's smallest box
SG_HD constexpr SmemPlan fp8_block128_smem_plan(int block_m, int block_n, int stages) {
  SmemPlan plan{block_m, block_n, stages};
  plan.scale_buffer_bytes = kMathWarpgroups * 2 * block_m * 4;
  plan.sfb_stage_bytes = kMathWarpgroups * 128;
  return plan;
}

// fp8_block128 (DeepSeek-style) activations x FP4 weights: the weights-only decode case with fp8 tokens.
SG_HD constexpr bool is_fp8_tokens_fp4_weights_pair(Format a, Format b) {
  return a == Format::fp8_block128 && (b == Format::nvfp4 || b == Format::mxfp4);
}

// bf16 activations x FP4 or mxfp8 weights (mainloop_register_weights.cuh): a stage holds `subs` 64-K blocks
// (one 128-byte swizzled token tile each) and the weights' subs * 32 (FP4) or 64 (e4m3) bytes per row; no
// token scales, no dequantized tile; beside the ring, two stages of the weights' block scales
// (4 bytes per row and 64-K block). Most K per stage such that 3 stages fit in an H100's shared
// memory (2 if none does): decode streams weights, and big stages mean few barrier round trips.
// Activations the MMA threads convert to bf16 first (`tokens`, else bf16): a token row of a stage
// holds its bf16 tiles (what the MMAs read, subs x 128 bytes) and then the bytes TMA loads, which
// the MMA threads convert. fp8_block128: subs x 64 e4m3 bytes, plus the stage's token scales (one
// float per token and 128-K block), so a stage holds whole 128-K blocks (subs 2 or 4). nvfp4, mxfp4
// and mxfp8: subs x 32 (FP4) or 64 (e4m3) bytes, and their block scales beside the ring (three
// stages' worth, 4 bytes per token row and 64-K block).
// mxfp8 weights (and tokens) take 64 bytes per row and 64-K block instead of 32, so their stages
// hold at most 128 K (a TMA box row with the 128-byte swizzle is at most 128 bytes).
SG_HD constexpr bool byte_scaled_tokens(Format tokens) {
  return tokens == Format::nvfp4 || tokens == Format::mxfp4 || tokens == Format::mxfp8;
}
SG_HD constexpr int bytes_per_64k(Format f) { return f == Format::nvfp4 || f == Format::mxfp4 ? 32 : 64; }
// `tokens_in_workspace`: fp8_block128 tokens already converted to bf16 (GroupedGemmArgs::workspace):
// a stage holds their bf16 tiles, loaded by TMA, and still their scales.
// `fragment_weights`: FP4 weights in the mma_fragments layout, whose 64x64 blocks carry their
// converted block scales (detail/mma_fragments.h: 40 bytes per row and 64 K), loaded with them; no
// scale buffer.
SG_HD constexpr SmemPlan register_weights_smem_plan(int block_m, int block_n, int stages, int subs,
                                                    Format tokens = Format::bf16, Format weights = Format::nvfp4,
                                                    bool tokens_in_workspace = false, bool fragment_weights = false) {
  const bool fp8 = tokens == Format::fp8_block128, scaled = byte_scaled_tokens(tokens);
  const bool packed_tokens = (fp8 && !tokens_in_workspace) || scaled;
  return SmemPlan{block_m,
                  block_n,
                  stages,
                  subs * (fragment_weights ? 40 : bytes_per_64k(weights)),
                  0,
                  subs,
                  fp8 ? 4 * (subs / 2) : 0,
                  packed_tokens ? subs * (128 + bytes_per_64k(tokens)) : 0,
                  (fragment_weights ? 0 : 2 * block_n * subs * 4) + (scaled ? 3 * block_m * subs * 4 : 0)};
}
// Tokens are loaded in boxes of 32 rows (16 for the 48-token tile; more, smaller boxes cost the
// producer thread issue time at the big tiles), at least 32; the MMAs cover only the real ones
// (mainloop_register_weights.cuh, mma_tile_width).
SG_HD constexpr int register_weights_token_box_rows(int block_m) { return block_m % 32 == 0 ? 32 : 16; }

// An H100's opt-in shared memory per block (227 KiB): the budget the stage counts are planned for
// when no device says otherwise.
inline constexpr int kH100SmemPerBlock = 232448;

SG_HD constexpr int register_weights_stage_subs(int block_m, int block_n, Format tokens = Format::bf16,
                                                Format weights = Format::nvfp4, bool tokens_in_workspace = false,
                                                bool fragment_weights = false) {
  const bool fp8 = tokens == Format::fp8_block128;
  const bool wide_rows = bytes_per_64k(weights) == 64 || (byte_scaled_tokens(tokens) && bytes_per_64k(tokens) == 64);
  // fp8 tokens: whole 128-K blocks per stage; 64-byte rows: 128 K as well (a 64-K stage would leave
  // the 128-weight-row tiles an odd number of MMA groups and scale words per quad). fp8 tokens'
  // scales come in one TMA box per 128-K block, kBlockM floats apart, and a TMA destination must
  // be 128-byte aligned: 48 tokens (192 bytes) keep one block per stage.
  const bool unaligned_scale_boxes = fp8 && (block_m * 4) % 128 != 0;
  const int most = wide_rows || unaligned_scale_boxes ? 2 : 4, least = fp8 || wide_rows ? 2 : 1;
  for (int min_stages = 3; min_stages >= 2; --min_stages)
    for (int subs = most; subs >= least; subs /= 2)
      if (register_weights_smem_plan(block_m, block_n, min_stages, subs, tokens, weights, tokens_in_workspace,
                                     fragment_weights)
              .total_bytes() <=
          kH100SmemPerBlock)
        return subs;
  return least;
}

}  // namespace signalgemm::kernels
