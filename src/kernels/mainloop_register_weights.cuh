// Mainloop for weights dequantized into the MMAs' registers: bf16 activations x nvfp4, mxfp4 or
// mxfp8 weights, and activations converted to bf16 in shared memory first (below): fp8_block128 x
// FP4, nvfp4 x nvfp4, mxfp4 x mxfp4, mxfp8 x mxfp8. The decode case, where the weight stream is
// the cost and low-precision weights halve or quarter it.
//
// Hopper has no FP4 tensor cores (and no MX scaling), but wgmma may take its A operand (here: the
// weights, which fill the MMA's M dimension in the swapped product) from registers. So each MMA
// thread dequantizes its own A fragment straight from the packed weights in shared memory into
// registers (dequant_fragments.cuh: exact, e2m1 x e4m3 always fits bf16, e2m1 / e4m3 x e8m0 in
// the range docs/formats.md states) and issues the register-operand bf16 wgmma against the token tile in
// shared memory. No bf16 weight tile, no barrier between dequantization and MMA: one 64x64
// block is dequantized while the previous one's MMAs are in flight. (On Hopper that hides latency,
// not time: an SM sub-partition's ALU work adds to its tensor cores' time, signalgemm-wgmma-rates,
// so the loop's cost is its instruction count per weight.)
//
// A stage holds kSubs 64-K blocks: kSubs token tiles (128-byte rows, 128-byte swizzle, loaded in
// boxes of 32 or 16 tokens, only as many as the tile has real tokens) and kSubs * 32 (FP4) or 64
// (e4m3) bytes per weight row (one TMA box, swizzled so the 8 rows a warp reads at once hit
// different banks). The block scales (nvfp4: e4m3, one per 16 K; MX: e8m0, one per 32 K) are
// copied into shared memory by the MMA threads (cp.async), one stage ahead; weights in the
// mma_fragments layout bring them with the stage instead, converted (detail/mma_fragments.h).
// The per-expert global scale of nvfp4 is folded into alpha by the caller.
//
// fp8_block128 activations x nvfp4 or mxfp4 weights (the decode tiles and 128x128): TMA loads the e4m3
// tokens and their scales; each stage the 256 MMA threads convert the tokens into the bf16 tiles
// above (exact), and the MMAs of each 128-K block accumulate into a partial that is then promoted
// with the token scale (acc += partial * sfa), as in the fp8 mainloop.
// nvfp4, mxfp4 and mxfp8 tokens with weights of their own format (the same tiles): TMA loads the
// packed tokens, the MMA threads copy their block scales (cp.async, two stages ahead) and convert
// element x scale into the bf16 tiles (exact, as the dequantizing mainloop does); the MMAs then run
// as for bf16 tokens.
#pragma once

#include <cuda.h>

#include <cuda/ptx>

#include "kernels/dequant_formats.cuh"
#include "kernels/dequant_fragments.cuh"
#include "kernels/kernel_params.h"
#include "kernels/pipeline.cuh"
#include "kernels/ptx.cuh"
#include "signalgemm/detail/mma_fragments.h"
#include "signalgemm/detail/tile_schedule.h"

namespace signalgemm::kernels {

// kWeights: nvfp4, mxfp4 or mxfp8. kTokenFormat: bf16, or converted by the MMA threads (see above):
// fp8_block128 with FP4 weights, or the weights' own format. kTokensInWorkspace: fp8_block128
// tokens converted to bf16 before the launch (GroupedGemmArgs::workspace), loaded as bf16 tokens
// are, with their scales still promoting the partials.
// kFragmentWeights: FP4 weights in the mma_fragments layout (detail/mma_fragments.h), loaded
// as whole 2.5 KB blocks of codes and converted scales, each thread's fragments of a group one
// load (16 bytes for 4 steps, 8 or 4 for 2 or 1) and its scale factors another; with bf16
// tokens, or fp8_block128 ones from the workspace.
// kSplitK_: each unit of work is one range of a tile's stages (split_k.cuh): bf16 tokens, or
// fp8_block128 tokens in the workspace.
template <int kBlockM_, int kBlockN_, Format kWeights = Format::nvfp4, Format kTokenFormat = Format::bf16,
          bool kTokensInWorkspace = false, bool kFragmentWeights = false, bool kSplitK_ = false>
struct RegisterWeightsMainloop {
  static constexpr bool kSplitK = kSplitK_;
  static_assert(!kSplitK || kTokenFormat == Format::bf16 || kTokensInWorkspace,
                "split K: tokens read as bf16 (fp8_block128 ones with their scales, by TMA per stage)");
  static_assert(!kTokensInWorkspace || kTokenFormat == Format::fp8_block128,
                "only fp8_block128 tokens keep a scale once converted");
  static_assert(kWeights == Format::nvfp4 || kWeights == Format::mxfp4 || kWeights == Format::mxfp8,
                "weights: nvfp4, mxfp4 or mxfp8");
  static_assert(kTokenFormat == Format::bf16 || kTokenFormat == kWeights ||
                    is_fp8_tokens_fp4_weights_pair(kTokenFormat, kWeights),
                "token formats: bf16, the weights' own, or fp8_block128 with FP4 weights");
  static constexpr bool kNvfp4 = kWeights == Format::nvfp4;
  static_assert(!kFragmentWeights || ((kWeights == Format::nvfp4 || kWeights == Format::mxfp4) &&
                                       (kTokenFormat == Format::bf16 || kTokensInWorkspace)),
                "fragment-ordered weights: nvfp4 or mxfp4, with tokens loaded as bf16");
  static constexpr bool kFp8Tokens = kTokenFormat == Format::fp8_block128;  // partials promoted per 128 K
  // fp8 tokens: bf16 output only. With the fp16 rounding compiled in (a run-time choice in the
  // epilogue), ptxas 13.0 serialized the wgmmas (C7511) of three of these kernels, among them
  // fp8_block128 x nvfp4's 48x256 without a workspace and 64x256 with one.
  static constexpr bool kFp16Output = !kFp8Tokens;
  static constexpr bool kScaledTokens = byte_scaled_tokens(kTokenFormat);   // block scales copied by the MMA threads
  static constexpr bool kConvertTokens =
      kTokenFormat != Format::bf16 && !kTokensInWorkspace;  // loaded packed, converted in the stage
  static constexpr bool kFp8Weights = kWeights == Format::mxfp8;            // one e4m3 byte per element
  // A weight row's scale bytes per 64-K block: 4 e4m3 (one per k16 step) or 2 e8m0 (per 2 steps).
  static constexpr int kScaleBytesPerSub = kNvfp4 ? 4 : 2;
  static constexpr int kBlockM = kBlockM_;
  static constexpr int kBlockN = kBlockN_;
  static constexpr int kAccRegs = kBlockM / 2;
  static constexpr int kSubs =  // 64-K blocks per stage
      register_weights_stage_subs(kBlockM, kBlockN, kTokenFormat, kWeights, kTokensInWorkspace, kFragmentWeights);
  static_assert(!kFp8Tokens || kSubs % 2 == 0, "fp8 tokens: a stage holds whole 128-K blocks");
  static_assert(!kFp8Tokens || kSubs == 2 || (kBlockM * 4) % 128 == 0,
                "the token scales' TMA boxes (one per 128-K block) land 128-byte aligned");
  static constexpr int kPackedTokenRowBytes =
      kSubs * bytes_per_64k(kTokenFormat);                                 // converted tokens, as TMA loads them
  static constexpr int kBf16TileBytes = kSubs * kBlockM * kBlockK;         // the stage's bf16 token tiles
  static constexpr int kWeightRowBytes = kSubs * bytes_per_64k(kWeights);  // packed bytes per row and stage
  // Bytes per weight row the copy engine brings per stage: fragment blocks carry their scales too.
  static constexpr int kStageWeightRowBytes =
      kFragmentWeights ? kSubs * detail::kFragmentBlockStride / 64 : kWeightRowBytes;
  static constexpr int kSwizzleChunks = kWeightRowBytes / 16;              // TMA swizzle span, 16 B units
  static constexpr int kWarpgroupRows = kBlockN / kMathWarpgroups;
  static constexpr int kSlices = kWarpgroupRows / 64;
  static_assert(kSlices == 1 || kSlices == 2, "a warpgroup covers 64 or 128 weight rows");
  static constexpr int kTokenBoxRows = register_weights_token_box_rows(kBlockM);
  // MMA widths step by 8 tokens (mma_tile_width).
  static constexpr bool kFineWidths = kBlockM <= 64 && !kFp8Tokens;
  static_assert(kBlockM % kTokenBoxRows == 0, "token tiles are loaded in whole boxes");
  // An MMA group (one commit) covers kSteps k16 steps of one 64-row slice; its A fragments (4
  // registers per step) are double-buffered. ptxas compiles all of it into 168 registers per thread
  // (384 threads), so the tiles with the most accumulators use shorter groups.
  // fp8 tokens hold a partial accumulator beside each accumulator (32x256: 64 registers in all, 4
  // steps; 64x256: 128, 2 steps; 128x128: 128 in one slice, 1 step). 48x256 (96): ptxas 13.0 keeps
  // 4-step groups pipelined only for nvfp4 weights with the tokens converted in the stage; it
  // serialized the wgmmas (C7511) of the others (mxfp4 weights, tokens read from the workspace,
  // split K) until their groups were 2 steps; mxfp4 weights in the mma_fragments layout (48x256,
  // 64x256) until they were 1 step.
  static constexpr int fp8_token_steps() {
    if (kFragmentWeights && !kNvfp4 && 2 * kSlices * kAccRegs > 64) return 1;
    if (2 * kSlices * kAccRegs <= 64) return 4;
    if (2 * kSlices * kAccRegs <= 96) return kConvertTokens && kNvfp4 ? 4 : 2;
    return kAccRegs < 64 ? 2 : 1;
  }
  static constexpr int kSteps = kFp8Tokens                 ? fp8_token_steps()
                                : kSlices * kAccRegs <= 64 ? 4
                                : kSlices * kAccRegs <= 96 ? 2
                                                           : 1;
  static constexpr int kGroupsPerSub = 4 / kSteps;
  static constexpr int kGroupsPerStage = kSubs * kGroupsPerSub * kSlices;
  // Groups alternate between the two buffers; an even count per stage keeps that across stages.
  static_assert(kGroupsPerStage % 2 == 0, "odd number of MMA groups per stage");

  SG_HD static SmemPlan plan(int stages) {
    return register_weights_smem_plan(kBlockM, kBlockN, stages, kSubs, kTokenFormat, kWeights, kTokensInWorkspace,
                                      kFragmentWeights);
  }

  // fp8_block128 tokens: the scales of a stage's 128-K blocks, kBlockM floats each.
  static constexpr uint32_t kTokenScaleTxBytes = kFp8Tokens ? (kSubs / 2) * kBlockM * 4 : 0;

  // Token boxes a tile loads per stage: its real rows, and at least the 32 the MMAs read
  // (mma_tile_width).
  __device__ __forceinline__ static int loaded_token_boxes(int rows) {
    return max((rows + kTokenBoxRows - 1) / kTokenBoxRows, 32 / kTokenBoxRows);
  }

  // Producer (one thread). The token-scale map is used by fp8 tokens only: bf16 tokens have no
  // scales, block-scaled tokens' are copied by the MMA threads.
  __device__ __forceinline__ static void load_tile(const CUtensorMap* tmap_a, const CUtensorMap* tmap_b,
                                                   const CUtensorMap* tmap_sfa, uint8_t* smem, const SmemPlan& plan,
                                                   uint64_t* full, uint64_t* empty, PipelineState& pipe,
                                                   const detail::Tile& tile, int num_k_blocks) {
    load_stages(tmap_a, tmap_b, tmap_sfa, smem, plan, full, empty, pipe, tile, num_k_blocks, 0,
                (num_k_blocks + kSubs - 1) / kSubs);
  }

  // Split K: a piece is a range of whole stages, [piece_stage(p, piece), piece_stage(p, piece + 1)).
  __device__ __forceinline__ static int piece_stage(const KernelParams& p, int piece) {
    return piece * ((p.num_k_blocks + kSubs - 1) / kSubs) / p.k_pieces;
  }

  // Split K: the loads of one piece's stages (work.piece).
  __device__ __forceinline__ static void load_piece(const CUtensorMap* tmap_a, const CUtensorMap* tmap_b,
                                                    const CUtensorMap* tmap_sfa, const CUtensorMap*, uint8_t* smem,
                                                    const SmemPlan& plan, uint64_t* full, uint64_t* empty,
                                                    PipelineState& pipe, const detail::ClusterWork& work,
                                                    const KernelParams& p) {
    load_stages(tmap_a, tmap_b, tmap_sfa, smem, plan, full, empty, pipe, work.tile, p.num_k_blocks,
                piece_stage(p, work.piece), piece_stage(p, work.piece + 1));
  }

  // Stages [s_begin, s_end) of a tile.
  __device__ __forceinline__ static void load_stages(const CUtensorMap* tmap_a, const CUtensorMap* tmap_b,
                                                     const CUtensorMap* tmap_sfa, uint8_t* smem, const SmemPlan& plan,
                                                     uint64_t* full, uint64_t* empty, PipelineState& pipe,
                                                     const detail::Tile& tile, int num_k_blocks, int s_begin,
                                                     int s_end) {
    const int token_boxes = loaded_token_boxes(tile.rows);
    for (int s = s_begin; s < s_end; ++s) {
      if constexpr (kConvertTokens) {
        // One box per token box covers the stage's K (zero-filled past K); fp8_block128 tokens also
        // bring the scales of the stage's 128-K blocks (clamped to the last: past K the partials are
        // zero). Block-scaled tokens' scales are copied by the MMA threads.
        const uint32_t tx_bytes = token_boxes * kTokenBoxRows * kPackedTokenRowBytes + kBlockN * kWeightRowBytes +
                                  kTokenScaleTxBytes;
        uint64_t* stage_full = arm_stage(full, empty, pipe, tx_bytes);
        uint8_t* packed_tokens = smem + plan.a_offset(pipe.stage) + kBf16TileBytes;
        for (int box = 0; box < token_boxes; ++box) {
          const int32_t a_coords[3] = {s * kPackedTokenRowBytes, tile.first_row + box * kTokenBoxRows,
                                       tile.expert};
          tma_load(packed_tokens + box * kTokenBoxRows * kPackedTokenRowBytes, tmap_a, a_coords, stage_full);
        }
        if constexpr (kFp8Tokens)
          load_token_scales(tmap_sfa, smem + plan.sfa_offset(pipe.stage), stage_full, tile, s, num_k_blocks);
        const int32_t b_coords[3] = {s * kWeightRowBytes, tile.n_block * kBlockN, tile.expert};
        tma_load(smem + plan.b_offset(pipe.stage), tmap_b, b_coords, stage_full);
        pipe.advance();
        continue;
      }
      // Full boxes count even where they lie past N or max_m (TMA zero-fills them).
      const uint32_t tx_bytes =
          kSubs * token_boxes * (kTokenBoxRows * kBlockK) + kBlockN * kStageWeightRowBytes + kTokenScaleTxBytes;
      uint64_t* stage_full = arm_stage(full, empty, pipe, tx_bytes);
      uint8_t* tokens = smem + plan.a_offset(pipe.stage);
      for (int u = 0; u < kSubs; ++u)
        for (int box = 0; box < token_boxes; ++box) {
          // A last stage that reaches past K still gets every token block, a copy of the last real
          // one: the MMA threads multiply whole stages (a branch between MMA groups would make ptxas
          // serialize every wgmma), and real tokens times the weights' zero fill past K add 0.
          const int k_block = min(s * kSubs + u, num_k_blocks - 1);
          const int32_t a_coords[3] = {k_block * kBlockK, tile.first_row + box * kTokenBoxRows,
                                       tile.expert};  // bytes of bf16
          tma_load(tokens + (u * kBlockM + box * kTokenBoxRows) * kBlockK, tmap_a, a_coords, stage_full);
        }
      if constexpr (kFp8Tokens)
        load_token_scales(tmap_sfa, smem + plan.sfa_offset(pipe.stage), stage_full, tile, s, num_k_blocks);
      if constexpr (kFragmentWeights) {
        // [expert][64-row slice][10 x 64-K rows of 256 bytes]: the stage's kSubs blocks of each of the
        // tile's slices, slice after slice (past N or K: zero fill, the weights' zero codes and scales).
        constexpr int kRowsPerBlock = detail::kFragmentBlockStride / 256;
        const int32_t b_coords[4] = {0, s * kSubs * kRowsPerBlock, tile.n_block * (kBlockN / 64), tile.expert};
        tma_load(smem + plan.b_offset(pipe.stage), tmap_b, b_coords, stage_full);
      } else {
        const int32_t b_coords[3] = {s * kWeightRowBytes, tile.n_block * kBlockN, tile.expert};  // bytes
        tma_load(smem + plan.b_offset(pipe.stage), tmap_b, b_coords, stage_full);
      }
      pipe.advance();
    }
  }

  // fp8_block128 tokens: stage s's token scales (clamped to the last 128-K block: past K the partials
  // are zero).
  __device__ __forceinline__ static void load_token_scales(const CUtensorMap* tmap_sfa, uint8_t* stage_scales,
                                                           uint64_t* stage_full, const detail::Tile& tile, int s,
                                                           int num_k_blocks) {
    const int blocks_128 = num_k_blocks / 2;
    for (int j = 0; j < kSubs / 2; ++j) {
      const int32_t sfa_coords[2] = {tile.first_row,
                                     tile.expert * blocks_128 + min(s * (kSubs / 2) + j, blocks_128 - 1)};
      tma_load(stage_scales + j * kBlockM * 4, tmap_sfa, sfa_coords, stage_full);
    }
  }

  // Accumulator layout as in the other mainloops (register i of slice s, lane l, warp w: weight
  // row 64s + 16w + l/4 + 8((i/2)%2), token 8(i/4) + 2(l%4) + i%2). The MMAs cover the tile's real
  // tokens rounded up to the step of mma_tile_width's chain; the columns beyond are never
  // stored (with converted tokens they may hold the products of stale rows).
  __device__ __forceinline__ static void mma_tile(float (&acc)[kSlices][kAccRegs], uint8_t* smem, const SmemPlan& plan,
                                                  uint64_t* full, uint64_t* empty, PipelineState& pipe,
                                                  const KernelParams& p, const detail::Tile& tile, int warpgroup,
                                                  int lane) {
    mma_stages(acc, smem, plan, full, empty, pipe, p, tile, /*piece=*/0, warpgroup, lane);
  }

  // Split K: mma_tile over one piece's stages (each piece's partial is exact, as is its scaling).
  __device__ __forceinline__ static void mma_piece(float (&acc)[kSlices][kAccRegs], uint8_t* smem,
                                                   const SmemPlan& plan, uint64_t* full, uint64_t* empty,
                                                   PipelineState& pipe, const KernelParams& p, const detail::Tile& tile,
                                                   int piece, int warpgroup, int lane) {
    mma_stages(acc, smem, plan, full, empty, pipe, p, tile, piece, warpgroup, lane);
  }

 private:
  // The tile's stages, or under split K those of `piece` (see mma_k_loop).
  __device__ __forceinline__ static void mma_stages(float (&acc)[kSlices][kAccRegs], uint8_t* smem,
                                                    const SmemPlan& plan, uint64_t* full, uint64_t* empty,
                                                    PipelineState& pipe, const KernelParams& p,
                                                    const detail::Tile& tile, int piece, int warpgroup, int lane) {
    ptx::zero_registers(acc);
    // The real tokens rounded up to the chain's step (the chain ends at its narrowest width). Kept
    // in this form: other spellings of the same value made ptxas 13.0 serialize the wgmmas of
    // fp8-token kernels (C7511).
    const int width = kFineWidths ? max(8, (tile.rows + 7) / 8 * 8) : max(32, (tile.rows + 15) / 16 * 16);
    mma_tile_width<kBlockM>(width, acc, smem, plan, full, empty, pipe, p, tile, kSplitK ? piece_stage(p, piece) : 0,
                            kSplitK ? piece_stage(p, piece + 1) : 0, warpgroup, lane);
    // nvfp4 fragments carry element * scale * 2^-7 (dequant_fragments.cuh): undo it, exactly.
    if constexpr (kNvfp4) {
#pragma unroll
      for (int s = 0; s < kSlices; ++s)
#pragma unroll
        for (int i = 0; i < kAccRegs; ++i) acc[s][i] *= 128.f;
    }
  }

  template <int kTokens>
  __device__ __forceinline__ static void mma_tile_width(int width, float (&acc)[kSlices][kAccRegs], uint8_t* smem,
                                                        const SmemPlan& plan, uint64_t* full, uint64_t* empty,
                                                        PipelineState& pipe, const KernelParams& p,
                                                        const detail::Tile& tile, int s_begin, int s_end, int warpgroup,
                                                        int lane) {
    // An SM sub-partition's tensor time per register-operand MMA is proportional to its width, and
    // at decode it is a third of the loop's time. The decode tiles (up to 64 tokens) step by 8, the
    // MMA's granularity, down to 16 (at m = 32 the experts hold 22..42 rows); the others, and fp8
    // tokens, by 16 to 32 below 64 tokens and by 32 above (their finer chains made ptxas 13.0
    // serialize the wgmmas: C7511, C7512). fp8 tokens read from the workspace with nvfp4 weights
    // step by 64 above: with the 96-token width ptxas serialized their 128x128 too (H100,
    // 2026-11-28: by 64, 3-8% faster at E32 m128 and E=8; the other fp8-token 128x128 kernels, not
    // serialized, ran 3-10% slower that way).
    constexpr int kNarrowest = kFineWidths ? 16 : 32;
    constexpr int kWideStep = kTokensInWorkspace && kNvfp4 ? 64 : 32;
    constexpr int kNarrower = kFineWidths ? kTokens - 8 : kTokens > 64 ? kTokens - kWideStep : kTokens - 16;
    if constexpr (kTokens > kNarrowest) {
      if (width <= kNarrower)
        return mma_tile_width<kNarrower>(width, acc, smem, plan, full, empty, pipe, p, tile, s_begin, s_end, warpgroup,
                                         lane);
    }
    mma_k_loop<kTokens>(acc, smem, plan, full, empty, pipe, p, tile, s_begin, s_end, warpgroup, lane);
  }

  // Global address of the block scales of one weight row (kScaleBytesPerSub bytes per 64-K
  // block). Rows past N (a partial last column block) read the last real row: their weights are
  // zero-filled by TMA.
  __device__ __forceinline__ static const uint8_t* scale_row(const KernelParams& p, const detail::Tile& tile,
                                                             int tile_row) {
    const int row = min(tile.n_block * kBlockN + tile_row, p.layout.n - 1);
    return static_cast<const uint8_t*>(p.b_scales) + (int64_t(tile.expert) * p.layout.n + row) * p.b_scale_cols;
  }

  // The first scale of 64-K block `block` in a weight row's scales.
  __device__ __forceinline__ static const uint8_t* block_scales(const uint8_t* row, int block) {
    if constexpr (kNvfp4)
      return reinterpret_cast<const uint8_t*>(reinterpret_cast<const uint32_t*>(row) + block);
    else
      return row + 2 * block;
  }

  // Copies stage `stage`'s block scales of this quad's rows (2 per slice, kSubs words each) into
  // slot `slot` of the scale buffer ([2][kBlockN rows][kSubs] words); the quad's four lanes share
  // the words. nvfp4: a 64-K block's word is its four scales. MX: the aligned word that holds
  // its two (read from the first of them on, so never past the tensor's end; with k a multiple of
  // 64 a row's scales start at an even byte, so the two never straddle words): bytes
  // mx_scale_byte(...) and the next. Words past K are zero (scale 0: the zero-filled weights there
  // add nothing). No branch: the copies sit between two MMA groups.
  __device__ __forceinline__ static void copy_stage_scales(uint32_t scale_buffer, int slot, int stage,
                                                           const KernelParams& p, const detail::Tile& tile,
                                                           int first_row, uint32_t quad) {
    constexpr int kWords = 2 * kSlices * kSubs;  // per quad and stage
    // Every lane copies real words: a zero-filling copy still writes its destination.
    static_assert(kWords % 4 == 0, "the four lanes of a quad copy the same number of scale words");
#pragma unroll
    for (int j = 0; j < kWords / 4; ++j) {
      const int f = int(quad) + 4 * j;  // flat index: row i = f / kSubs (slice i / 2, half i % 2), word f % kSubs
      const int i = f / kSubs, u = f % kSubs;
      const int row = first_row + 64 * (i / 2) + 8 * (i % 2);
      const int block = stage * kSubs + u;
      const uint32_t destination = scale_buffer + ((slot * kBlockN + row) * kSubs + u) * 4;
      const uint8_t* first = block_scales(scale_row(p, tile, row), min(block, p.num_k_blocks - 1));
      if constexpr (kNvfp4) {
        ptx::cp_async_4(destination, first, block < p.num_k_blocks);
      } else {
        const uintptr_t address = reinterpret_cast<uintptr_t>(first);
        ptx::cp_async_4_partial(destination, reinterpret_cast<const void*>(address & ~uintptr_t(3)),
                                block < p.num_k_blocks ? uint32_t(address & 3) + 2 : 0u);
      }
    }
    ptx::cp_async_commit();
  }

  // Converted tokens: elements 16g .. 16g + 15 of a token row of the stage (8 bf16x2) into its bf16
  // tiles: 64-K block g / 4, its 16-byte chunks 2 (g % 4) and 2 (g % 4) + 1, with the 128-byte
  // swizzle the token descriptors expect.
  __device__ __forceinline__ static void store_bf16_group(uint32_t stage_tokens, uint32_t row, uint32_t g,
                                                          const uint32_t (&values)[8]) {
    const uint32_t tile_row = stage_tokens + (g / 4) * kBlockM * kBlockK + row * kBlockK;
    const uint32_t chunk = 2 * (g % 4);
    asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(tile_row + ((chunk ^ (row % 8)) * 16)),
                 "r"(values[0]), "r"(values[1]), "r"(values[2]), "r"(values[3])
                 : "memory");
    asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(tile_row + (((chunk + 1) ^ (row % 8)) * 16)),
                 "r"(values[4]), "r"(values[5]), "r"(values[6]), "r"(values[7])
                 : "memory");
  }

  // Block-scaled tokens (nvfp4, MX): their block scales, a word per token row and 64-K block as for
  // the weights (the aligned word holding the block's scales), in a three-slot buffer after the
  // weights' two slots: stage s in slot s % 3, copied two stages ahead by all MMA threads, so that
  // each copy is waited for by its thread at the top of the stage before its use and then shown to
  // every thread by that stage's conversion barrier. Rows past the tile's real ones read its last
  // real row (their values are never stored).
  static constexpr int kTokenScaleWords = kBlockM * kSubs;  // per slot
  __device__ __forceinline__ static uint32_t token_scale_slot(uint32_t scale_buffer, int slot) {
    return scale_buffer + (2 * kBlockN * kSubs + slot * kTokenScaleWords) * 4;
  }
  __device__ __forceinline__ static int64_t token_index(const KernelParams& p, const detail::Tile& tile, int row) {
    return int64_t(tile.expert) * p.layout.max_m + tile.first_row + min(row, tile.rows - 1);
  }
  __device__ __forceinline__ static const uint8_t* token_scale_row(const KernelParams& p, const detail::Tile& tile,
                                                                   int row) {
    return static_cast<const uint8_t*>(p.a_scales) + token_index(p, tile, row) * p.a_scale_cols;
  }
  // Where that row's scales start within their word (0 or 2): the address's low bits, in 32 bits.
  __device__ __forceinline__ static uint32_t token_scale_row_byte(const KernelParams& p, const detail::Tile& tile,
                                                                  int row) {
    return (uint32_t(reinterpret_cast<uintptr_t>(p.a_scales)) +
            uint32_t(token_index(p, tile, row)) * uint32_t(p.a_scale_cols)) & 3;
  }
  __device__ __forceinline__ static void copy_token_scales(uint32_t scale_buffer, int stage, const KernelParams& p,
                                                           const detail::Tile& tile) {
    const uint32_t slot = token_scale_slot(scale_buffer, stage % 3);
#pragma unroll
    for (int j = 0; j < (kTokenScaleWords + kMathThreads - 1) / kMathThreads; ++j) {
      const int f = threadIdx.x + j * kMathThreads;  // word f: row f / kSubs, 64-K block f % kSubs of the stage
      const int row = min(f, kTokenScaleWords - 1) / kSubs, block = stage * kSubs + f % kSubs;
      const uintptr_t first =
          reinterpret_cast<uintptr_t>(block_scales(token_scale_row(p, tile, row), min(block, p.num_k_blocks - 1)));
      const uint32_t bytes = block < p.num_k_blocks ? uint32_t(first & 3) + kScaleBytesPerSub : 0u;
      ptx::cp_async_4_partial_if(slot + f * 4, reinterpret_cast<const void*>(first & ~uintptr_t(3)), bytes,
                                 kTokenScaleWords % kMathThreads == 0 || f < kTokenScaleWords);
    }
    ptx::cp_async_commit();  // cp.async.wait_group waits for committed groups only
  }

  // Block-scaled tokens: the stage's packed rows (all kBlockM: a fixed count of jobs per thread, no
  // branch while the previous stage's MMAs are in flight; rows not loaded hold stale bytes, whose
  // values land in MMA columns that are never stored) into its bf16 tiles, 16 elements (8 or 16
  // bytes, one scale) per job: element x scale, exact as in the dequantizing mainloop. The packed
  // rows arrive with the TMA swizzle of their width (as the weights'); the bf16 tiles get the
  // 128-byte swizzle.
  __device__ __forceinline__ static void convert_scaled_tokens(uint32_t stage_tokens, uint32_t scale_slot,
                                                               const KernelParams& p, const detail::Tile& tile,
                                                               int stage) {
    constexpr int kGroups = kSubs * 4;  // 16-element groups per row and stage
    constexpr int kJobs = kBlockM * kGroups;
    const uint32_t packed_rows = stage_tokens + kBf16TileBytes;
#pragma unroll
    for (int j = 0; j < (kJobs + kMathThreads - 1) / kMathThreads; ++j) {
      const int job = threadIdx.x + j * kMathThreads;
      if (kJobs % kMathThreads != 0 && job >= kJobs) break;
      const uint32_t row = job / kGroups, g = job % kGroups;
      constexpr int kGroupBytes = bytes_per_64k(kTokenFormat) / 4;  // 8 (FP4) or 16 (e4m3)
      const uint32_t logical = row * kPackedTokenRowBytes + g * kGroupBytes;
      const uint32_t address = packed_rows + (logical ^ (((logical >> 7) & (kPackedTokenRowBytes / 16 - 1)) << 4));
      uint32_t values[8];
      if constexpr (kGroupBytes == 16) {
        uint32_t codes[4];
        asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
                     : "=r"(codes[0]), "=r"(codes[1]), "=r"(codes[2]), "=r"(codes[3])
                     : "r"(address)
                     : "memory");
#pragma unroll
        for (int w = 0; w < 4; ++w) dequant::e4m3x4_to_bf16x4(codes[w], values[2 * w], values[2 * w + 1]);
      } else {
        uint32_t codes0, codes1;
        asm volatile("ld.shared.v2.b32 {%0, %1}, [%2];\n" : "=r"(codes0), "=r"(codes1) : "r"(address) : "memory");
        dequant::e2m1x8_to_bf16x8(codes0, reinterpret_cast<uint32_t(&)[4]>(values[0]));
        dequant::e2m1x8_to_bf16x8(codes1, reinterpret_cast<uint32_t(&)[4]>(values[4]));
      }
      const uint32_t word = ptx::ld_shared_u32(scale_slot + (row * kSubs + g / 4) * 4);
      uint32_t byte;
      if constexpr (kNvfp4) {
        byte = g % 4;
      } else {  // the block's first byte within the word, then one per 32 K
        byte = mx_scale_byte(token_scale_row_byte(p, tile, row), stage * kSubs + g / 4) + (g % 4) / 2;
      }
      const uint32_t code = (word >> (8 * byte)) & 0xFF;
      const uint32_t scale = kNvfp4 ? dequant::e4m3_scale_to_bf16x2(code) : dequant::e8m0_scale_to_bf16x2(code);
#pragma unroll
      for (int i = 0; i < 8; ++i) values[i] = ptx::mul_bf16x2(values[i], scale);  // one rounding, exact
      store_bf16_group(stage_tokens, row, g, values);
    }
    // The wgmmas read the tiles through the async proxy; then every MMA thread's rows are in (and
    // the token scales waited for at the top of this stage, for the next one).
    cuda::ptx::fence_proxy_async(cuda::ptx::space_shared);
    ptx::named_barrier_sync(kTokenConversionBarrier, kMathThreads);
  }

  // fp8 tokens: the stage's e4m3 rows (`rows` of them, all the token boxes loaded) into its bf16
  // tiles, 16 elements per job, by all MMA threads. The e4m3 rows arrive as TMA wrote them (128-byte
  // rows with the 128-byte swizzle: 16-byte chunk ^= row % 8; 256-byte rows unswizzled); the bf16
  // tiles get the 128-byte swizzle the token descriptors expect.
  __device__ __forceinline__ static void convert_tokens(uint32_t stage_tokens, int rows) {
    constexpr int kChunks = kPackedTokenRowBytes / 16;
    const uint32_t fp8_rows = stage_tokens + kBf16TileBytes;
    for (int job = threadIdx.x; job < rows * kChunks; job += kMathThreads) {
      const uint32_t row = job / kChunks, q = job % kChunks;
      const uint32_t source = kPackedTokenRowBytes == 128 ? (q ^ (row % 8)) : q;
      uint32_t codes[4];
      asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
                   : "=r"(codes[0]), "=r"(codes[1]), "=r"(codes[2]), "=r"(codes[3])
                   : "r"(fp8_rows + row * kPackedTokenRowBytes + source * 16));
      uint32_t values[8];
#pragma unroll
      for (int w = 0; w < 4; ++w) dequant::e4m3x4_to_bf16x4(codes[w], values[2 * w], values[2 * w + 1]);
      store_bf16_group(stage_tokens, row, q, values);
    }
    // The wgmmas read the tiles through the async proxy; then every MMA thread's rows are in.
    cuda::ptx::fence_proxy_async(cuda::ptx::space_shared);
    ptx::named_barrier_sync(kTokenConversionBarrier, kMathThreads);
  }

  // All stages of the tile, or under split K stages [s_begin, s_end) (otherwise unused: the common
  // kernels derive their range here, as before split K, which keeps their code unchanged).
  template <int kTokens>
  __device__ __forceinline__ static void mma_k_loop(float (&acc)[kSlices][kAccRegs], uint8_t* smem,
                                                    const SmemPlan& plan, uint64_t* full, uint64_t* empty,
                                                    PipelineState& pipe, const KernelParams& p,
                                                    const detail::Tile& tile, int s_begin, int s_end, int warpgroup,
                                                    int lane) {
    using Mma = ptx::WgmmaBf16Rs<kTokens>;
    const int warp = (threadIdx.x % 128) / 32;
    const uint32_t quad = lane % 4;  // which byte of each 32-bit word of packed weights is ours
    // This thread's weight rows, per slice: r and r + 8 (A-fragment layout), as tile rows.
    int tile_row[kSlices];
#pragma unroll
    for (int sl = 0; sl < kSlices; ++sl) tile_row[sl] = warpgroup * kWarpgroupRows + 64 * sl + 16 * warp + lane / 4;

    // Block scales (4 e4m3 = one 64-K block per word) come through shared memory: each stage's are
    // copied in by cp.async during the stage before. Loaded into registers instead (ld.global one
    // stage ahead), they cost this loop ~16% at E=32, m=32 on the H100: ptxas gives those loads the
    // scoreboards of the weight tile's ld.shared, which then wait for global memory.
    const uint8_t* scales[kSlices][2];  // the fp8-token kernels' L2 prefetch; [0][0] for mx_row_byte
#pragma unroll
    for (int sl = 0; sl < kSlices; ++sl)
#pragma unroll
      for (int h = 0; h < 2; ++h) scales[sl][h] = scale_row(p, tile, tile_row[sl] + 8 * h);
    // MX: where the row's scales start within their word (0 or 2; the same for all of this
    // thread's rows, which lie a multiple of 8 rows apart, 8 * k / 32 bytes: a multiple of 4).
    const uint32_t mx_row_byte = uint32_t(reinterpret_cast<uintptr_t>(scales[0][0])) & 3;
    const int num_k_blocks = p.num_k_blocks;
    const int first_stage = kSplitK ? s_begin : 0;
    const int end_stage = kSplitK ? s_end : (num_k_blocks + kSubs - 1) / kSubs;
    const uint32_t scale_buffer = static_cast<uint32_t>(__cvta_generic_to_shared(smem + plan.scale_buffer_offset()));
    if constexpr (!kFragmentWeights)
      copy_stage_scales(scale_buffer, first_stage % 2, first_stage, p, tile, tile_row[0], quad);
    if constexpr (kScaledTokens) {
      // Token scales of the first two stages (then two ahead, see copy_token_scales), in and shown to
      // all before the first conversion. The previous tile's conversions ended at their barrier.
      copy_token_scales(scale_buffer, first_stage, p, tile);
      copy_token_scales(scale_buffer, first_stage + 1, p, tile);
      ptx::cp_async_wait_all();
      ptx::named_barrier_sync(kTokenConversionBarrier, kMathThreads);
    }

    // A fragments of one MMA group (kSteps k16 steps x 4 registers), double-buffered: wgmma reads
    // them asynchronously, so a buffer is rewritten only once its group is known complete.
    uint32_t frag[2][kSteps][4];
    // fp8 tokens: the MMAs of each 128-K block accumulate here first (unused otherwise).
    float partial[kSlices][kFp8Tokens ? kAccRegs : 1];
    // loaded_token_boxes(tile.rows) rows, spelled out: through the helper, ptxas (13.0) allocates
    // registers so that it serializes the 48x256 fp8-token wgmmas.
    const int loaded_token_rows =
        max((tile.rows + kTokenBoxRows - 1) / kTokenBoxRows, 32 / kTokenBoxRows) * kTokenBoxRows;
#pragma unroll
    for (int sl = 0; sl < kSlices; ++sl) ptx::fence_registers(acc[sl]);  // zeroed before the first fence
    PipelineState previous = pipe;  // the stage to release once its MMAs are known complete
    bool release_pending = false;
    const uint32_t weights_base = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
    const uint32_t low_table = kFragmentWeights ? fragments::fragment_low_table() : 0u;

    // No branch may separate two MMA groups (ptxas would serialize every wgmma): K blocks past K
    // are multiplied as zeros, the conditional pieces below are predicated.
    for (int s = first_stage; s < end_stage; ++s) {
      if constexpr (kFp8Tokens && !kFragmentWeights) {
        // Warms L2 with this thread's scales 8 stages ahead (a 128-byte line holds a row's scales
        // for 32 64-K blocks of nvfp4, 64 of mxfp4). Only the fp8-token kernels keep it, because
        // without it ptxas 13.0 serializes their wgmmas (C7511); fragment blocks bring their
        // scales with the stage. The others run 2-15% faster
        // without it (H200, 2026-11-28, docs/performance.md; also faster than one row prefetched
        // per lane, or the tile's scales prefetched in bulk by the producer): the copies one stage
        // ahead wait for HBM only once per 128-byte line.
#pragma unroll
        for (int sl = 0; sl < kSlices; ++sl)
#pragma unroll
          for (int h = 0; h < 2; ++h)
            asm volatile("prefetch.global.L2 [%0];\n" ::"l"(
                block_scales(scales[sl][h], min((s + 8) * kSubs, num_k_blocks - 1))));
      }
      if constexpr (!kFragmentWeights) {
        // This stage's scales are in (each lane waits for its copies; the warp barrier shows them to
        // the quad and orders the quad's reads of the other slot, in the stage before, before the
        // copies that now overwrite it with the next stage's).
        ptx::cp_async_wait_all();
        __syncwarp();
        // Block-scaled tokens: stage s + 2's token scales into the slot that stage s - 1's conversion read
        // before its barrier.
        if constexpr (kScaledTokens) copy_token_scales(scale_buffer, s + 2, p, tile);
        copy_stage_scales(scale_buffer, (s + 1) % 2, s + 1, p, tile, tile_row[0], quad);
      }
      mbarrier_wait(&full[pipe.stage], pipe.phase);
      if constexpr (kFp8Tokens && kConvertTokens)
        convert_tokens(weights_base + plan.a_offset(pipe.stage), loaded_token_rows);
      if constexpr (kScaledTokens)
        convert_scaled_tokens(weights_base + plan.a_offset(pipe.stage), token_scale_slot(scale_buffer, s % 3), p, tile,
                              s);
      const uint32_t stage_weights = weights_base + plan.b_offset(pipe.stage);
      const uint32_t stage_scales = scale_buffer + (s % 2) * kBlockN * kSubs * 4;
      const uint8_t* stage_tokens = smem + plan.a_offset(pipe.stage);

      // Fragment-ordered weights: each MMA group's words and scales are loaded one group ahead,
      // under the previous group's conversion, so that no conversion waits for its shared loads
      // (the scales loaded at their use made ptxas 13.0 serialize the wgmmas of fp8_block128 x
      // mxfp4's 128x128, C7511).
      uint32_t fragment_words[2][4];         // [group % 2]: this thread's words of the group's steps
      uint32_t fragment_scales[2][kSteps];   // and its rows' scale pairs of those steps
      if constexpr (kFragmentWeights) {
        load_fragment_words(fragment_words[0], stage_weights, tile_row[0], lane, 0, 0);
        load_fragment_scales(fragment_scales[0], stage_weights, tile_row[0], 0, 0);
      }
#pragma unroll
      for (int u = 0; u < kSubs; ++u) {
        const uint64_t desc_tokens = ptx::smem_desc_kmajor_sw128(stage_tokens + u * kBlockM * kBlockK);
        // The four lanes of a quad hold the same rows and need the same four scales (one per k16
        // step): each converts the one of step `quad`, the others fetch it with a shuffle. (Fragment
        // blocks carry them converted: convert_fragment_words loads its group's.)
        uint32_t quad_scales[kSlices];
#pragma unroll
        for (int sl = 0; sl < kSlices && !kFragmentWeights; ++sl) {
          const uint32_t word_r = ptx::ld_shared_u32(stage_scales + (tile_row[sl] * kSubs + u) * 4);
          const uint32_t word_r8 = ptx::ld_shared_u32(stage_scales + ((tile_row[sl] + 8) * kSubs + u) * 4);
          if constexpr (kNvfp4)
            quad_scales[sl] = fragments::e4m3x2_to_bf16x2_times_2p119(word_r, word_r8, quad);
          else  // step `quad` of 64-K block s * kSubs + u
            quad_scales[sl] =
                fragments::e8m0x2_to_bf16x2(word_r, word_r8, mx_scale_byte(mx_row_byte, s * kSubs + u) + quad / 2);
        }
#pragma unroll
        for (int g = 0; g < kGroupsPerSub; ++g)
#pragma unroll
          for (int sl = 0; sl < kSlices; ++sl) {
            const int group = (u * kGroupsPerSub + g) * kSlices + sl;  // within the stage
            uint32_t(&a)[kSteps][4] = frag[group % 2];
            if constexpr (kFragmentWeights) {
              if (group + 1 < kGroupsPerStage) {
                const int next_sl = (group + 1) % kSlices, next_g = (group + 1) / kSlices % kGroupsPerSub;
                const int next_u = (group + 1) / kSlices / kGroupsPerSub;
                load_fragment_words(fragment_words[(group + 1) % 2], stage_weights, tile_row[next_sl], lane, next_u,
                                    next_g * kSteps);
                load_fragment_scales(fragment_scales[(group + 1) % 2], stage_weights, tile_row[next_sl], next_u,
                                     next_g * kSteps);
              }
              convert_fragment_words(a, fragment_words[group % 2], fragment_scales[group % 2], low_table);
            } else {
              dequantize_steps(a, stage_weights, tile_row[sl], lane, u, g * kSteps, quad_scales[sl]);
            }
            // The fragment writes must all precede the fence (ptxas serializes every wgmma
            // otherwise): the empty volatile asm pins them here, the fence orders them before the MMAs.
            pin_registers(a);
            ptx::wgmma_fence();
#pragma unroll
            for (int k = 0; k < kSteps; ++k) {  // 32 bytes of K per step, in the descriptor's 16-byte units
              if constexpr (kFp8Tokens)         // a 128-K block's first MMA starts its partial afresh
                Mma::mma(reinterpret_cast<float(&)[kTokens / 2]>(partial[sl]), a[k], desc_tokens + 2 * (g * kSteps + k),
                         !(u % 2 == 0 && g == 0 && k == 0));
              else
                Mma::mma(reinterpret_cast<float(&)[kTokens / 2]>(acc[sl]), a[k], desc_tokens + 2 * (g * kSteps + k));
            }
            ptx::wgmma_commit();
            // All but this group are complete: the other fragment buffer is free again, and after the
            // stage's first group the previous stage has no MMA left reading it.
            ptx::wgmma_wait<1>();
            if (u == 0 && g == 0 && sl == 0) arrive_if(&empty[previous.stage], release_pending && lane == 0);
          }
        if constexpr (kFp8Tokens) {
          // A 128-K block's MMAs all issued: wait for them, fold the partials in with the token scales.
          if (u % 2 == 1) {
            ptx::wgmma_wait<0>();
#pragma unroll
            for (int sl = 0; sl < kSlices; ++sl) ptx::fence_registers(partial[sl]);
            // The block's token scales: kBlockM floats per 128-K block in the stage.
            ptx::promote_partials<kTokens>(
                acc, partial, reinterpret_cast<const float*>(smem + plan.sfa_offset(pipe.stage)) + (u / 2) * kBlockM,
                lane);
          }
        }
      }
      previous = pipe;
      release_pending = true;
      pipe.advance();
    }
    ptx::wgmma_wait<0>();
#pragma unroll
    for (int sl = 0; sl < kSlices; ++sl) ptx::fence_registers(acc[sl]);
    arrive_if(&empty[previous.stage], release_pending && lane == 0);
    // The copies of the stage after the last (all zero-filled, but after a split-K piece) land before
    // the next tile's first copies could race them, and before the quad reads their slot again.
    ptx::cp_async_wait_all();
    __syncwarp();
  }

  // MX: byte of a row's slot word where 64-K block `block`'s first scale sits (its second: the
  // next byte), given where the row's scales start (mx_row_byte): each block adds 2 bytes.
  __device__ __forceinline__ static uint32_t mx_scale_byte(uint32_t mx_row_byte, int block) {
    return (mx_row_byte + 2 * uint32_t(block)) & 3;
  }

  // mbarrier arrive under a predicate, without a branch.
  __device__ __forceinline__ static void arrive_if(uint64_t* barrier, bool condition) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %1, 0;\n@p mbarrier.arrive.shared::cta.b64 _, [%0];\n}\n" ::"r"(
                     static_cast<uint32_t>(__cvta_generic_to_shared(barrier))),
                 "r"(int(condition))
                 : "memory");
  }

  __device__ __forceinline__ static void pin_registers(uint32_t (&a)[kSteps][4]) {
#pragma unroll
    for (int k = 0; k < kSteps; ++k)
#pragma unroll
      for (int i = 0; i < 4; ++i) asm volatile("" : "+r"(a[k][i])::"memory");
  }

  // A fragments of one 64-row slice for k16 steps first_step.. first_step + kSteps - 1 of 64-K
  // block `u` of the stage: rows r = tile_row and r + 8, K columns 16k + 2*quad + {0, 1}
  // (registers 0, 1) and + 8 (registers 2, 3) for k16 step k. Those are byte `quad` of each 32-bit
  // word of the rows' 8 bytes per step: 16- (or 8-) byte loads per row, then byte permutes. The
  // four columns a thread holds in one k16 step share one scale.
  // `quad_scales`: bf16x2 [scale of row r, of row r + 8] of k16 step lane % 4 (nvfp4: x 2^119).
  __device__ __forceinline__ static void dequantize_steps(uint32_t (&a)[kSteps][4], uint32_t stage_weights,
                                                          int tile_row, int lane, int u, int first_step,
                                                          uint32_t quad_scales) {
    if constexpr (kFp8Weights)
      dequantize_e4m3_steps(a, stage_weights, tile_row, lane, u, first_step, quad_scales);
    else
      dequantize_e2m1_row_steps(a, stage_weights, tile_row, lane, u, first_step, quad_scales);
  }

  // FP4 weights in rows (the TMA-swizzled rows of the stage): the fragment bytes gathered with byte
  // permutes, then the e2m1 conversion.
  __device__ __forceinline__ static void dequantize_e2m1_row_steps(uint32_t (&a)[kSteps][4], uint32_t stage_weights,
                                                                   int tile_row, int lane, int u, int first_step,
                                                                   uint32_t quad_scales) {
    const uint32_t quad = lane % 4;
    uint32_t words[2][2 * kSteps];  // [row r, row r + 8][8 bytes per k16 step]
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int c = 0; c < (kSteps + 1) / 2; ++c) {
        // TMA's swizzle: 16-byte chunk index XOR (row % 8) within each 128-byte span (for 64- and
        // 32-byte rows, the span covers 2 or 4 rows: same formula on the byte address).
        const uint32_t logical = (tile_row + 8 * h) * kWeightRowBytes + u * 32 + (first_step + 2 * c) * 8;
        const uint32_t address = stage_weights + (logical ^ (((logical >> 7) & (kSwizzleChunks - 1)) << 4));
        if constexpr (kSteps >= 2) {
          asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
                       : "=r"(words[h][4 * c + 0]), "=r"(words[h][4 * c + 1]), "=r"(words[h][4 * c + 2]),
                         "=r"(words[h][4 * c + 3])
                       : "r"(address));
        } else {
          asm volatile("ld.shared.v2.b32 {%0, %1}, [%2];\n" : "=r"(words[h][0]), "=r"(words[h][1]) : "r"(address));
        }
      }
    // Picks byte `quad` of word x into byte 0 and of word y into byte 1 (bytes 2, 3: don't care).
    const uint32_t pick = quad | ((4 + quad) << 4);
#pragma unroll
    for (int k = 0; k < kSteps; ++k) {
      const uint32_t low_cols = fragments::prmt(words[0][2 * k], words[1][2 * k], pick);           // rows r, r+8
      const uint32_t high_cols = fragments::prmt(words[0][2 * k + 1], words[1][2 * k + 1], pick);  // columns + 8
      // Bytes in register order: a0 (r, low), a1 (r + 8, low), a2 (r, high), a3 (r + 8, high).
      const uint32_t packed = fragments::prmt(low_cols, high_cols, 0x5410u);
      uint32_t values[4];
      fragments::e2m1x8_to_bf16x8_unscaled(packed, values);
      // mxfp4: the exact values first (x 2^126, exact), so that the e8m0 scale's whole range
      // multiplies them with one rounding, as the dequantizing mainloop does (dequant_formats.cuh).
      if constexpr (!kNvfp4) {
#pragma unroll
        for (int i = 0; i < 4; ++i) values[i] = ptx::mul_bf16x2(values[i], dequant::kBf16x2TwoP126);
      }
      const uint32_t scale_pair = __shfl_sync(0xFFFFFFFFu, quad_scales, (lane & ~3) | (first_step + k));  // [r, r+8]
      a[k][0] = fragments::mul_bf16x2_by_low(values[0], scale_pair);                                            // row r
      a[k][1] = fragments::mul_bf16x2_by_high(values[1], scale_pair);                                           // row r + 8
      a[k][2] = fragments::mul_bf16x2_by_low(values[2], scale_pair);
      a[k][3] = fragments::mul_bf16x2_by_high(values[3], scale_pair);
    }
  }

  // Fragment-ordered FP4 weights: the stage holds, per 64-row slice, its kSubs 2.5 KB blocks; this
  // thread's words of steps first_step.. are at 16 * (its index in the warpgroup) + 4 * step in
  // the block (a warp reads 512 contiguous bytes: no bank conflict).
  __device__ __forceinline__ static void load_fragment_words(uint32_t (&words)[4], uint32_t stage_weights,
                                                             int tile_row, int lane, int u, int first_step) {
    const int slice = tile_row / 64;
    const int thread = (tile_row % 64) / 16 * 32 + lane;
    load_step_words(words, stage_weights + (slice * kSubs + u) * detail::kFragmentBlockStride + thread * 16 +
                               first_step * 4);
  }

  // The block's converted scales of this thread's rows r = tile_row and r + 8, k16 steps
  // first_step..: its quad's 16 bytes after the 2048 bytes of codes (quad 8 * warp + lane / 4 of
  // the warpgroup) hold the [r, r + 8] bf16 pairs of steps 0..3 of 64-K block u; the quad's four
  // lanes read the same bytes.
  __device__ __forceinline__ static void load_fragment_scales(uint32_t (&pairs)[kSteps], uint32_t stage_weights,
                                                              int tile_row, int u, int first_step) {
    const int slice = tile_row / 64;
    const int quad_index = (tile_row % 64) / 16 * 8 + tile_row % 8;
    load_step_words(pairs, stage_weights + (slice * kSubs + u) * detail::kFragmentBlockStride +
                               detail::kFragmentBlockBytes + quad_index * 16 + first_step * 4);
  }

  // kSteps consecutive 32-bit words at `address` (shared memory, 4 * kSteps-byte aligned), one load.
  __device__ __forceinline__ static void load_step_words(uint32_t* words, uint32_t address) {
    if constexpr (kSteps == 4) {
      asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
                   : "=r"(words[0]), "=r"(words[1]), "=r"(words[2]), "=r"(words[3])
                   : "r"(address));
    } else if constexpr (kSteps == 2) {
      asm volatile("ld.shared.v2.b32 {%0, %1}, [%2];\n" : "=r"(words[0]), "=r"(words[1]) : "r"(address));
    } else {
      words[0] = ptx::ld_shared_u32(address);
    }
  }

  // The A fragments from those words: per step 2 LOP3, 3 shifts and 4 byte permutes give the bf16
  // bits of value * 2^-126 (detail/mma_fragments.h), then the scale multiply as for the rows
  // layout: the same products, exactly, with the scales the block carries (load_fragment_scales).
  __device__ __forceinline__ static void convert_fragment_words(uint32_t (&a)[kSteps][4], const uint32_t (&words)[4],
                                                                const uint32_t (&scale_pairs)[kSteps],
                                                                uint32_t low_table) {
#pragma unroll
    for (int k = 0; k < kSteps; ++k) {
      const uint32_t scale_pair = scale_pairs[k];
      uint32_t bits[4];
      fragments::fragment_step_bits(words[k], low_table, bits);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        // mxfp4: the exact values first (x 2^126), then the e8m0 scale, as the rows layout does.
        if constexpr (!kNvfp4) bits[i] = ptx::mul_bf16x2(bits[i], dequant::kBf16x2TwoP126);
        a[k][i] = i % 2 == 0 ? fragments::mul_bf16x2_by_low(bits[i], scale_pair)     // row r
                             : fragments::mul_bf16x2_by_high(bits[i], scale_pair);   // row r + 8
      }
    }
  }

  // mxfp8 weights: the same fragments from e4m3 bytes, 16 per row and k16 step (one 16-byte load
  // per row and step): columns 2*quad + {0, 1} are bytes 2*quad, 2*quad + 1 of the step's first 8,
  // columns + 8 the same bytes of its last 8. Each pair becomes its exact value (e4m3 x 2^-120 by
  // bit moves, then x 2^120) and is multiplied by its e8m0 scale, rounded once: the dequantizing
  // mainloop's arithmetic (dequant_formats.cuh).
  __device__ __forceinline__ static void dequantize_e4m3_steps(uint32_t (&a)[kSteps][4], uint32_t stage_weights,
                                                               int tile_row, int lane, int u, int first_step,
                                                               uint32_t quad_scales) {
    const uint32_t quad = lane % 4;
    // Bytes 2*quad and 2*quad + 1 of an 8-byte pair of words into bytes 0 and 2 (1, 3: don't care).
    const uint32_t pick = (2 * quad) | ((2 * quad + 1) << 8);
#pragma unroll
    for (int k = 0; k < kSteps; ++k) {
      uint32_t words[2][4];  // [row r, row r + 8][the step's 16 bytes]
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const uint32_t logical = (tile_row + 8 * h) * kWeightRowBytes + u * 64 + (first_step + k) * 16;
        const uint32_t address = stage_weights + (logical ^ (((logical >> 7) & (kSwizzleChunks - 1)) << 4));
        asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
                     : "=r"(words[h][0]), "=r"(words[h][1]), "=r"(words[h][2]), "=r"(words[h][3])
                     : "r"(address));
      }
      const uint32_t scale_pair = __shfl_sync(0xFFFFFFFFu, quad_scales, (lane & ~3) | (first_step + k));  // [r, r+8]
      // Register order: a0 (r, low columns), a1 (r + 8, low), a2 (r, high), a3 (r + 8, high).
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const uint32_t pair = fragments::prmt(words[i % 2][2 * (i / 2)], words[i % 2][2 * (i / 2) + 1], pick);
        const uint32_t value = ptx::mul_bf16x2(dequant::e4m3x2_times_2m120(pair), dequant::kBf16x2TwoP120);
        a[k][i] = i % 2 == 0 ? fragments::mul_bf16x2_by_low(value, scale_pair) : fragments::mul_bf16x2_by_high(value, scale_pair);
      }
    }
  }
};

template <int M, int N>
using Bf16Nvfp4Mainloop = RegisterWeightsMainloop<M, N, Format::nvfp4>;
template <int M, int N>
using Bf16Nvfp4FragmentMainloop = RegisterWeightsMainloop<M, N, Format::nvfp4, Format::bf16, false, true>;
template <int M, int N>
using Bf16Mxfp4FragmentMainloop = RegisterWeightsMainloop<M, N, Format::mxfp4, Format::bf16, false, true>;
template <int M, int N>
using Bf16Mxfp4Mainloop = RegisterWeightsMainloop<M, N, Format::mxfp4>;
template <int M, int N>
using Bf16Mxfp8Mainloop = RegisterWeightsMainloop<M, N, Format::mxfp8>;

}  // namespace signalgemm::kernels
