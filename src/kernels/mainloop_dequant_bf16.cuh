// Mainloop for block-scaled operands that Hopper's tensor cores cannot take directly: mxfp8,
// mxfp4 and nvfp4 on both sides, fp8_block128 activations with FP4 weights (the pairings of
// dequant_bf16_plan.h; their decode tiles and 128x128 run on mainloop_register_weights.cuh). Both
// operands are dequantized in shared memory, element x block scale, into bf16 tiles laid out as
// the bf16 wgmma reads them (128-byte rows, 128-byte swizzle); the tensor cores then run bf16 MMAs
// with fp32 accumulators. The dequantized values are exact (dequant_formats.cuh), so the result is the
// GEMM of the dequantized operands up to fp32 accumulation order.
//
// A stage holds 64 K: per operand its packed rows (32 bytes FP4, 64 bytes e4m3) loaded by TMA,
// and for fp8_block128 activations the token scales of the stage's 128-K block.
// Block scales of MX/nvfp4 operands (one byte per row and 16 or 32 K: 2 or 4 bytes per row and
// stage) are copied into shared memory with cp.async three stages ahead of their use, one 32-bit word
// per row and stage (the aligned word that holds them). Loaded into registers with ld.global they
// cost 10-24% (H100, 2026-11-26): ptxas gives such loads the scoreboards of the packed tiles'
// ld.shared, whose consumers then wait for global memory.
//
// Overlap: the bf16 tiles are double buffered. While the MMAs of stage kb run (asynchronously),
// all 256 MMA threads dequantize stage kb + 1 into the other buffer; one 256-thread barrier per
// stage then both publishes that buffer and frees the one just read.
//
// fp8_block128 activations: e4m3 -> bf16 is exact, but their fp32 scale (per token and 128 K) is
// not a bf16 factor that could be applied exactly before the MMA. As in the fp8 mainloop, each
// 128-K block is accumulated into a fresh fp32 partial and promoted: acc += partial * sfa[token].
#pragma once

#include <cuda.h>

#include <cuda/ptx>

#include "kernels/dequant_bf16_plan.h"
#include "kernels/dequant_formats.cuh"
#include "kernels/kernel_params.h"
#include "kernels/mainloop_bf16.cuh"
#include "kernels/pipeline.cuh"
#include "kernels/ptx.cuh"
#include "signalgemm/detail/tile_schedule.h"

namespace signalgemm::kernels {

template <Format kA, Format kB, int kBlockM_, int kBlockN_>
struct DequantBf16Mainloop {
  static constexpr int kBlockM = kBlockM_;
  static constexpr int kBlockN = kBlockN_;
  static_assert(is_dequant_bf16_pair(kA, kB), "a pairing of the dequantizing mainloop");
  static_assert(dequant_bf16_tile_compiled(kA, kBlockM, kBlockN), "tile not available for this pairing");
  using Mma = ptx::WgmmaBf16<kBlockM>;
  static constexpr int kAccRegs = Mma::kRegs;
  static constexpr int kWarpgroupRows = kBlockN / kMathWarpgroups;
  static constexpr int kSlices = kWarpgroupRows / 64;
  static_assert(kSlices == 1 || kSlices == 2, "a warpgroup covers 64 or 128 weight rows");

  static constexpr bool kPromote = kA == Format::fp8_block128;  // per-128-K partials, see above
  static_assert(!kPromote || kSlices == 1, "one partial accumulator per warpgroup");
  static constexpr int kARowBytes = dequant_stage_row_bytes(kA);
  static constexpr int kBRowBytes = dequant_stage_row_bytes(kB);
  static constexpr uint32_t kStageTxBytes =
      kBlockM * kARowBytes + kBlockN * kBRowBytes + (kPromote ? kBlockM * 4 : 0);
  // One buffer of the dequantized area: the bf16 token tile, then the weights.
  static constexpr int kTokenTileBytes = kBlockM * kBlockK;
  static constexpr int kBufferBytes = kTokenTileBytes + kBlockN * kBlockK;
  // A packed stage is released once dequantized, unless the promotion reads its token scales.
  static constexpr bool kReleaseAfterMma = kPromote;
  static constexpr int kChunksPerRow = kDequantStageK / 8;  // 8 elements = one 16-byte bf16 store

  SG_HD static SmemPlan plan(int stages) { return dequant_bf16_smem_plan(kA, kB, kBlockM, kBlockN, stages); }

  // Producer (one thread).
  __device__ __forceinline__ static void load_tile(const CUtensorMap* tmap_a, const CUtensorMap* tmap_b,
                                                   const CUtensorMap* tmap_sfa, uint8_t* smem, const SmemPlan& plan,
                                                   uint64_t* full, uint64_t* empty, PipelineState& pipe,
                                                   const detail::Tile& tile, int num_k_blocks) {
    const int token0 = tile.first_row;
    const int weight0 = tile.n_block * kBlockN;
    for (int kb = 0; kb < num_k_blocks; ++kb) {
      uint64_t* stage_full = arm_stage(full, empty, pipe, kStageTxBytes);
      // Operand maps are byte tensors: K coordinates in bytes.
      const int32_t a_coords[3] = {kb * kARowBytes, token0, tile.expert};
      const int32_t b_coords[3] = {kb * kBRowBytes, weight0, tile.expert};
      tma_load(smem + plan.a_offset(pipe.stage), tmap_a, a_coords, stage_full);
      tma_load(smem + plan.b_offset(pipe.stage), tmap_b, b_coords, stage_full);
      if constexpr (kPromote) {
        // Token scales of this stage's 128-K block (two stages load the same box).
        const int32_t sfa_coords[2] = {token0, tile.expert * (num_k_blocks / 2) + kb / 2};
        tma_load(smem + plan.sfa_offset(pipe.stage), tmap_sfa, sfa_coords, stage_full);
      }
      pipe.advance();
    }
  }

  // Both MMA warpgroups. Accumulator layout as in the bf16 mainloop (wgmma m64nN, see
  // mainloop_fp8_block128.cuh): register i of slice s, lane l, warp w holds weight row
  // 64*s + 16*w + l/4 + 8*((i/2)%2) of this warpgroup, token 8*(i/4) + 2*(l%4) + i%2.
  __device__ __forceinline__ static void mma_tile(float (&acc)[kSlices][kAccRegs], uint8_t* smem,
                                                  const SmemPlan& plan, uint64_t* full, uint64_t* empty,
                                                  PipelineState& pipe, const KernelParams& p, const detail::Tile& tile,
                                                  int warpgroup, int lane) {
    ptx::zero_registers(acc);
    float partial[1][kPromote ? kAccRegs : 1];  // one slice (kPromote)

    const int num_k_blocks = p.num_k_blocks;
    uint8_t* buffers = smem + plan.dequant_offset();
    PipelineState load = pipe;  // the stage to dequantize next; `pipe` is the stage the MMAs read

    // Scales of stages 0, 1, 2 into slots 0, 1, 2 (stage kb in slot kb % 3, copied three stages
    // ahead). Each thread copies and waits for the same rows' words every time, so its own waits
    // order its copies (the previous tile's last ones included); the barrier shows stages 0 and 1
    // to all, and the barrier that ended the previous tile ordered every read of the slots before.
    const uint32_t scale_slots = static_cast<uint32_t>(__cvta_generic_to_shared(smem + plan.scale_buffer_offset()));
    const ScaleCursor cursor = scale_cursor(p, tile);
    ptx::cp_async_wait_all();
    for (int kb = 0; kb < 3; ++kb) copy_stage_scales(scale_slots + kb * kScaleSlotBytes, cursor, p, kb);
    ptx::cp_async_wait_group<1>();
    ptx::named_barrier_sync(kDequantBarrier, kMathThreads);
    dequantize_stage(smem, plan, full, empty, load, 0, buffers, scale_slots, cursor, tile, lane);
    ptx::named_barrier_sync(kDequantBarrier, kMathThreads);  // buffer 0 complete and visible

    for (int kb = 0; kb < num_k_blocks; ++kb) {
      uint8_t* buffer = buffers + (kb & 1) * kBufferBytes;
      const uint8_t* tokens = buffer;
      const uint8_t* weights = buffer + kTokenTileBytes + warpgroup * kWarpgroupRows * kBlockK;
      if constexpr (kPromote)
        issue_mmas_into_partial(partial[0], tokens, weights, /*first_of_block=*/(kb & 1) == 0);
      else
        Bf16Mainloop<kBlockM, kBlockN>::issue_stage_mmas(acc, tokens, weights);

      // Scales of stage kb + 3 into the slot of stage kb, whose dequantization ended before the last
      // barrier; those of stage kb + 2 are waited for before the next barrier, which shows them to
      // every thread (each copy has two stages to land).
      const int slot = kb % 3;
      copy_stage_scales(scale_slots + slot * kScaleSlotBytes, cursor, p, kb + 3);
      // Meanwhile: the next stage into the other buffer (its MMAs finished before the last barrier).
      if (kb + 1 < num_k_blocks)
        dequantize_stage(smem, plan, full, empty, load, kb + 1, buffers + ((kb + 1) & 1) * kBufferBytes,
                         scale_slots + (slot == 2 ? 0 : slot + 1) * kScaleSlotBytes, cursor, tile, lane);

      ptx::wgmma_wait<0>();
      if constexpr (kPromote) {
        ptx::fence_registers(partial[0]);
        // The stage's token scales: block_m floats of its 128-K block.
        if (kb & 1)
          ptx::promote_partials<kBlockM>(acc, partial,
                                         reinterpret_cast<const float*>(smem + plan.sfa_offset(pipe.stage)), lane);
      } else {
#pragma unroll
        for (int s = 0; s < kSlices; ++s) ptx::fence_registers(acc[s]);
      }
      // wgmma_wait is warpgroup-wide: every lane of this warp is done with the stage.
      if (kReleaseAfterMma && lane == 0) cuda::ptx::mbarrier_arrive(&empty[pipe.stage]);
      pipe.advance();
      ptx::cp_async_wait_group<1>();
      // Every warp's MMAs have read `buffer` (it may be overwritten next), and the next buffer is
      // complete; its writers fenced their stores for the tensor cores before arriving.
      ptx::named_barrier_sync(kDequantBarrier, kMathThreads);
    }
  }

 private:
  static_assert(kDequantStageK * 2 == kBlockK, "a stage's bf16 tiles are the bf16 mainloop's");

  __device__ __forceinline__ static void issue_mmas_into_partial(float (&partial)[kAccRegs], const uint8_t* tokens,
                                                                 const uint8_t* weights, bool first_of_block) {
    const uint64_t desc_tokens = ptx::smem_desc_kmajor_sw128(tokens);
    const uint64_t desc_weights = ptx::smem_desc_kmajor_sw128(weights);
    ptx::wgmma_fence();
#pragma unroll
    for (int k = 0; k < kDequantStageK / 16; ++k)
      Mma::mma(partial, desc_weights + 2 * k, desc_tokens + 2 * k, /*accumulate=*/!(first_of_block && k == 0));
    ptx::wgmma_commit();
  }

  // Dequantizes elements 8*chunk .. 8*chunk+7 of `row` of a packed stage tile into the bf16 tile.
  // The packed tiles arrive with the TMA swizzle launch.cu picks for their box width (64-byte
  // rows: SWIZZLE_64B, 16-byte unit index ^= (row / 2) % 4; 32-byte rows: SWIZZLE_32B, unit
  // index ^= (row / 4) % 2); the bf16 tile gets the 128-byte swizzle (unit index ^= row % 8).
  template <Format kFormat>
  __device__ __forceinline__ static void dequantize_chunk(uint32_t packed_tile, uint32_t bf16_tile, int row,
                                                          int chunk, uint32_t code) {
    uint32_t values[4];
    if constexpr (element_bits(kFormat) == 8) {
      const uint32_t unit = (uint32_t(chunk) >> 1) ^ ((uint32_t(row) >> 1) & 3);
      const uint32_t addr = packed_tile + row * 64 + unit * 16 + (chunk & 1) * 8;
      uint32_t codes0, codes1;
      asm volatile("ld.shared.v2.b32 {%0, %1}, [%2];\n" : "=r"(codes0), "=r"(codes1) : "r"(addr) : "memory");
      dequant::e4m3x4_to_bf16x4(codes0, values[0], values[1]);
      dequant::e4m3x4_to_bf16x4(codes1, values[2], values[3]);
    } else {
      const uint32_t unit = (uint32_t(chunk) >> 2) ^ ((uint32_t(row) >> 2) & 1);
      const uint32_t addr = packed_tile + row * 32 + unit * 16 + (chunk & 3) * 4;
      uint32_t codes;
      asm volatile("ld.shared.b32 %0, [%1];\n" : "=r"(codes) : "r"(addr) : "memory");
      dequant::e2m1x8_to_bf16x8(codes, values);
    }
    if constexpr (kFormat != Format::fp8_block128) {
      const uint32_t scale = kFormat == Format::nvfp4 ? dequant::e4m3_scale_to_bf16x2(code)
                                                      : dequant::e8m0_scale_to_bf16x2(code);
#pragma unroll
      for (int i = 0; i < 4; ++i) values[i] = dequant::mul_bf16x2(values[i], scale);  // one rounding, exact
    }
    const uint32_t addr = bf16_tile + row * kBlockK + ((uint32_t(chunk) ^ (uint32_t(row) & 7)) * 16);
    asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(values[0]), "r"(values[1]),
                 "r"(values[2]), "r"(values[3])
                 : "memory");
  }

  // Rows x 8 chunks of an operand are spread over the 256 MMA threads: unit u = thread + 256 i is
  // chunk u % 8 of row u / 8. Rows >= `real_rows` are skipped.
  static constexpr int units_per_thread(int rows) { return rows * kChunksPerRow / kMathThreads; }
  static_assert(units_per_thread(kBlockM) * kMathThreads == kBlockM * kChunksPerRow, "whole chunks per thread");

  // Block scales in shared memory: per slot (stage kb % 3) one word per scaled row, the token rows
  // first. A row's bytes of a stage sit at byte (address % 4) of its word.
  static constexpr bool kScaledA = has_byte_scales(kA);
  static_assert(has_byte_scales(kB), "the weights of every pairing here have block scales");
  static constexpr int kScaleRowsA = kScaledA ? kBlockM : 0;
  static constexpr int kScaledRows = kScaleRowsA + kBlockN;
  static constexpr int kScaleSlotBytes = kScaledRows * 4;
  template <Format kFormat>
  static constexpr int kScaleBlock = scale_block_k(kFormat);  // elements per scale along K

  static constexpr int kCopyRows = (kScaledRows + kMathThreads - 1) / kMathThreads;  // per thread
  static constexpr int kUnitsA = kScaledA ? units_per_thread(kBlockM) : 0;
  static constexpr int kUnitsB = units_per_thread(kBlockN);
  template <Format kFormat>
  static constexpr int kStageScaleBytes = kDequantStageK / kScaleBlock<kFormat>;  // per row: 2 (MX) or 4 (nvfp4)

  // What a thread needs of the block scales for a whole tile, worked out once at its start:
  // the global address of stage 0's bytes of each row it copies, and for each of its dequantized
  // units the byte of the row's slot word that holds the unit's scale in stage 0. In stage kb that
  // byte is (byte + kb * kStageScaleBytes) % 4: the stage's bytes start at the row's address
  // + kb * kStageScaleBytes, and they never straddle two words (see copy_stage_scales).
  struct ScaleCursor {
    uintptr_t copy_source[kCopyRows];
    uint32_t unit_byte_a[kUnitsA > 0 ? kUnitsA : 1];
    uint32_t unit_byte_b[kUnitsB];
  };

  // Scale tensor row of scaled row r of the tile (tokens, then weights). Token rows past the tile's
  // real rows read its last real row (their values are never used); weight rows past N (a partial
  // last column block, zero-filled by TMA) the last real weight row.
  __device__ __forceinline__ static uintptr_t scale_row_address(const KernelParams& p, const detail::Tile& tile,
                                                                int r) {
    if (kScaledA && r < kScaleRowsA) {
      const int64_t row = int64_t(tile.expert) * p.layout.max_m + tile.first_row + min(r, tile.rows - 1);
      return reinterpret_cast<uintptr_t>(p.a_scales) + row * p.a_scale_cols;
    }
    const int64_t row = int64_t(tile.expert) * p.layout.n + min(tile.n_block * kBlockN + r - kScaleRowsA, p.layout.n - 1);
    return reinterpret_cast<uintptr_t>(p.b_scales) + row * p.b_scale_cols;
  }

  template <Format kFormat, int kUnits>
  __device__ __forceinline__ static void unit_bytes(uint32_t (&bytes)[kUnits], const KernelParams& p,
                                                    const detail::Tile& tile, int first_scale_row) {
#pragma unroll
    for (int i = 0; i < kUnits; ++i) {
      const int unit = threadIdx.x + i * kMathThreads;
      const uint32_t row_byte = uint32_t(scale_row_address(p, tile, first_scale_row + unit / kChunksPerRow)) & 3;
      bytes[i] = row_byte + (unit % kChunksPerRow) / (kScaleBlock<kFormat> / 8);
    }
  }

  __device__ __forceinline__ static ScaleCursor scale_cursor(const KernelParams& p, const detail::Tile& tile) {
    ScaleCursor cursor;
#pragma unroll
    for (int j = 0; j < kCopyRows; ++j)
      cursor.copy_source[j] = scale_row_address(p, tile, min(int(threadIdx.x) + j * kMathThreads, kScaledRows - 1));
    if constexpr (kUnitsA > 0) unit_bytes<kA>(cursor.unit_byte_a, p, tile, 0);
    unit_bytes<kB>(cursor.unit_byte_b, p, tile, kScaleRowsA);
    return cursor;
  }

  // Copies stage kb's block scales (zeros past K) into a slot: each thread some rows' words, each
  // the aligned word that holds the row's 2 or 4 bytes (read from the first of them on, so never
  // past the tensor's end). The scale tensors are 16-byte aligned and their rows hold an even
  // number of bytes (a multiple of 4 for nvfp4), so a row's bytes never straddle two words.
  __device__ __forceinline__ static void copy_stage_scales(uint32_t slot, const ScaleCursor& cursor,
                                                           const KernelParams& p, int kb) {
    const bool in_k = kb < p.num_k_blocks;
    const int stage = min(kb, p.num_k_blocks - 1);
#pragma unroll
    for (int j = 0; j < kCopyRows; ++j) {
      const int r = threadIdx.x + j * kMathThreads;
      if (kScaledRows % kMathThreads != 0 && r >= kScaledRows) break;
      const bool token = kScaledA && r < kScaleRowsA;
      const int bytes = token ? kStageScaleBytes<kA> : kStageScaleBytes<kB>;
      const uintptr_t first = cursor.copy_source[j] + stage * bytes;
      ptx::cp_async_4_partial(slot + r * 4, reinterpret_cast<const void*>(first & ~uintptr_t(3)),
                              in_k ? uint32_t(first & 3) + bytes : 0u);
    }
    ptx::cp_async_commit();
  }

  template <Format kFormat, int kRows, int kUnits>
  __device__ __forceinline__ static void dequantize_operand(uint32_t packed_tile, uint32_t bf16_tile, uint32_t slot,
                                                            const uint32_t (&unit_byte)[kUnits], int first_scale_row,
                                                            int kb, int real_rows) {
#pragma unroll
    for (int i = 0; i < units_per_thread(kRows); ++i) {
      const int unit = threadIdx.x + i * kMathThreads;
      const int row = unit / kChunksPerRow, chunk = unit % kChunksPerRow;
      if (row < real_rows) {
        uint32_t code = 0;
        if constexpr (has_byte_scales(kFormat)) {
          const uint32_t word = ptx::ld_shared_u32(slot + (first_scale_row + row) * 4);
          code = ptx::prmt(word, 0u, 0x4440u | ((unit_byte[i] + uint32_t(kb * kStageScaleBytes<kFormat>)) & 3));
        }
        dequantize_chunk<kFormat>(packed_tile, bf16_tile, row, chunk, code);
      }
    }
  }

  // Waits for stage `load` (stage kb of the tile), dequantizes its non-bf16 operands into `buffer`
  // with the block scales in `slot`, fences the stores for the tensor cores, releases the stage if
  // nothing reads it any more, advances `load`.
  __device__ __forceinline__ static void dequantize_stage(uint8_t* smem, const SmemPlan& plan, uint64_t* full,
                                                          uint64_t* empty, PipelineState& load, int kb,
                                                          uint8_t* buffer, uint32_t slot, const ScaleCursor& cursor,
                                                          const detail::Tile& tile, int lane) {
    mbarrier_wait(&full[load.stage], load.phase);
    const uint32_t buffer_addr = static_cast<uint32_t>(__cvta_generic_to_shared(buffer));
    // Token rows past the tile's real rows are never stored: leave their bf16 rows stale (they
    // only reach their own output columns).
    dequantize_operand<kA, kBlockM>(static_cast<uint32_t>(__cvta_generic_to_shared(smem + plan.a_offset(load.stage))),
                                    buffer_addr, slot, cursor.unit_byte_a, 0, kb, tile.rows);
    dequantize_operand<kB, kBlockN>(static_cast<uint32_t>(__cvta_generic_to_shared(smem + plan.b_offset(load.stage))),
                                    buffer_addr + kTokenTileBytes, slot, cursor.unit_byte_b, kScaleRowsA, kb,
                                    kBlockN);
    // The tensor cores read the tile through the async proxy: make this thread's stores visible to it.
    cuda::ptx::fence_proxy_async(cuda::ptx::space_shared);
    if constexpr (!kReleaseAfterMma) {
      __syncwarp();  // every lane of this warp has read its packed bytes
      if (lane == 0) cuda::ptx::mbarrier_arrive(&empty[load.stage]);
    }
    load.advance();
  }
};

// One class template per pairing, with <block_m, block_n> parameters (instantiated for the tiles of
// host/kernel_entries/dequant_bf16.cu).
template <int M, int N>
using Mxfp8Mxfp8Mainloop = DequantBf16Mainloop<Format::mxfp8, Format::mxfp8, M, N>;
template <int M, int N>
using Mxfp4Mxfp4Mainloop = DequantBf16Mainloop<Format::mxfp4, Format::mxfp4, M, N>;
template <int M, int N>
using Nvfp4Nvfp4Mainloop = DequantBf16Mainloop<Format::nvfp4, Format::nvfp4, M, N>;
template <int M, int N>
using Fp8Nvfp4Mainloop = DequantBf16Mainloop<Format::fp8_block128, Format::nvfp4, M, N>;
template <int M, int N>
using Fp8Mxfp4Mainloop = DequantBf16Mainloop<Format::fp8_block128, Format::mxfp4, M, N>;

}  // namespace signalgemm::kernels
