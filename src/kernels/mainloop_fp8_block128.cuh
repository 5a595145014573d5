// Mainloop for fp8_block128 operands (DeepSeek-style): e4m3 tokens with fp32 scales per 1x128,
// e4m3 weights with fp32 scales per 128x128.
//
// Each 128-wide K block is multiplied by the tensor cores into a fresh fp32 partial (Hopper's FP8
// MMA accumulates with reduced precision, so long K sums are not left to it), then promoted into
// the real accumulator with both scales applied: acc += partial * sfb * sfa[token].
#pragma once

#include <cuda.h>

#include "kernels/kernel_params.h"
#include "kernels/pipeline.cuh"
#include "kernels/ptx.cuh"
#include "kernels/split_k.cuh"
#include "signalgemm/detail/tile_schedule.h"

namespace signalgemm::kernels {

// Where the weight scales of 128-row block `scale_block` of `expert` start in b_scales (floats
// [expert][ceil(N/128)][K/128]). In a last, partial column block the block may lie past N: clamp,
// those columns are never stored. (An int32 index, as TMA coordinates are: launch validation keeps
// b_scales below 2^31 floats.) Both fp8_block128 mainloops (this one and
// mainloop_fp8_token_rows.cuh) address their scales so.
__device__ __forceinline__ int32_t fp8_weight_scale_row(const KernelParams& p, int expert, int scale_block) {
  const int weight_blocks_128 = (p.layout.n + 127) / 128;
  return (expert * weight_blocks_128 + min(scale_block, weight_blocks_128 - 1)) * p.num_k_blocks;
}

// Producer: the scales of K block `kb` into one stage — the tile's token scales (a box of block_m
// floats) and, for each of `weight_scale_rows` (fp8_weight_scale_row), the aligned 16-byte box
// holding its scale of this K block (a box must start on 16 bytes), in 128-byte slots. The weight
// scales travel with the stage, a pipeline depth ahead of their use, instead of each MMA thread
// loading them from global memory: an L2 round trip every tile started with.
template <int kBoxes>
__device__ __forceinline__ void load_fp8_stage_scales(const CUtensorMap* tmap_sfa, const CUtensorMap* tmap_sfb,
                                                      uint8_t* stage_sfa, uint8_t* stage_sfb, uint64_t* stage_full,
                                                      const detail::Tile& tile, int num_k_blocks, int kb,
                                                      const int32_t (&weight_scale_rows)[kBoxes]) {
  const int32_t sfa_coords[2] = {tile.first_row, tile.expert * num_k_blocks + kb};
  tma_load(stage_sfa, tmap_sfa, sfa_coords, stage_full);
#pragma unroll
  for (int box = 0; box < kBoxes; ++box) {
    const int32_t sfb_coords[2] = {(weight_scale_rows[box] + kb) & ~(kWeightScaleBox - 1), 0};
    tma_load(stage_sfb + 128 * box, tmap_sfb, sfb_coords, stage_full);
  }
}

// kCluster_ == 2: two CTAs share one operand per unit (tile_schedule.h, PairedTileWalker).
// kSplitK_: each unit of work is one K range (piece) of a tile (split_k.cuh).
template <int kBlockM_, int kBlockN_, int kCluster_ = 1, bool kSplitK_ = false>
struct Fp8Block128Mainloop {
  static constexpr int kBlockM = kBlockM_;
  static constexpr int kBlockN = kBlockN_;
  static constexpr int kCluster = kCluster_;
  static constexpr bool kSplitK = kSplitK_;
  static_assert(!kSplitK || kCluster == 1, "split K runs single CTAs");
  static constexpr int kAccRegs = kBlockM / 2;         // fp32 per thread and M slice
  static constexpr int kKSteps = kBlockK / 32;          // wgmma k32 steps per stage
  static constexpr int kWarpgroupRows = kBlockN / kMathWarpgroups;  // weight rows per warpgroup
  static constexpr int kSlices = kWarpgroupRows / 64;   // wgmma M slices per warpgroup
  // Each MMA warpgroup stages its share of a tile and goes on (epilogue_signal.cuh).
  static constexpr bool kStagingPerWarpgroup = true;
  // 64 or 128 rows, aligned: a warpgroup's rows never straddle two 128x128 weight-scale blocks.
  static_assert(kSlices == 1 || kSlices == 2, "a warpgroup covers 64 or 128 weight rows");

  // Bytes the copy engine delivers into one stage: tokens, weights, the token scales (a box of
  // exactly kBlockM floats) and each MMA warpgroup's box of weight scales.
  static constexpr uint32_t kStageTxBytes =
      kBlockM * kBlockK + kBlockN * kBlockK + kBlockM * 4 + kMathWarpgroups * kWeightScaleBox * 4;
  SG_HD static SmemPlan plan(int stages) { return fp8_block128_smem_plan(kBlockM, kBlockN, stages); }

  // Producer (one thread): streams the K blocks of this CTA's work into the ring. In a cluster,
  // rank 0 multicasts the shared operand to both CTAs and each CTA loads the rest of its own
  // tile; rank 1 of a lone tile loads nothing and only arrives, keeping both rings in step.
  __device__ __forceinline__ static void load_tile(const CUtensorMap* tmap_a, const CUtensorMap* tmap_b,
                                                   const CUtensorMap* tmap_sfa, const CUtensorMap* tmap_sfb,
                                                   uint8_t* smem, const SmemPlan& plan, uint64_t* full,
                                                   uint64_t* empty, PipelineState& pipe,
                                                   const detail::ClusterWork& work, int rank, const KernelParams& p) {
    using detail::ClusterShare;
    constexpr uint16_t kBothCtas = 0b11;
    const detail::Tile& tile = work.tile;
    const int token0 = tile.first_row;
    const int weight0 = tile.n_block * kBlockN;
    const bool multicast_tokens = kCluster > 1 && work.share == ClusterShare::tokens;
    const bool multicast_weights = kCluster > 1 && work.share == ClusterShare::weights;
    const int num_k_blocks = p.num_k_blocks;
    int32_t weight_scale_rows[kMathWarpgroups];  // element index of each MMA warpgroup's first scale
#pragma unroll
    for (int wg = 0; wg < kMathWarpgroups; ++wg)
      weight_scale_rows[wg] = fp8_weight_scale_row(p, tile.expert, (weight0 + wg * kWarpgroupRows) / 128);
    const int k_begin = kSplitK ? split_k_begin(p, work.piece) : 0;
    const int k_end = kSplitK ? split_k_begin(p, work.piece + 1) : num_k_blocks;
    for (int kb = k_begin; kb < k_end; ++kb) {
      uint64_t* stage_full = arm_stage(full, empty, pipe, work.has_tile ? kStageTxBytes : 0);
      if (work.has_tile) {
        const int32_t a_coords[3] = {kb * kBlockK, token0, tile.expert};
        const int32_t b_coords[3] = {kb * kBlockK, weight0, tile.expert};
        if (!multicast_tokens)
          tma_load(smem + plan.a_offset(pipe.stage), tmap_a, a_coords, stage_full);
        else if (rank == 0)
          tma_load_multicast(smem + plan.a_offset(pipe.stage), tmap_a, a_coords, stage_full, kBothCtas);
        if (!multicast_weights)
          tma_load(smem + plan.b_offset(pipe.stage), tmap_b, b_coords, stage_full);
        else if (rank == 0)
          tma_load_multicast(smem + plan.b_offset(pipe.stage), tmap_b, b_coords, stage_full, kBothCtas);
        load_fp8_stage_scales(tmap_sfa, tmap_sfb, smem + plan.sfa_offset(pipe.stage),
                              smem + plan.sfb_offset(pipe.stage), stage_full, tile, num_k_blocks, kb,
                              weight_scale_rows);
      }
      pipe.advance();
    }
  }

  // One MMA warpgroup: accumulates its kWarpgroupRows weight rows x kBlockM tokens of the tile,
  // one 64-row slice at a time (the other warpgroup keeps the tensor cores busy meanwhile).
  // Accumulator layout (wgmma m64nN): register i of slice s, lane l, warp w of the warpgroup holds
  //   weight row 64*s + 16*w + l/4 + 8*((i/2)%2), token column 8*(i/4) + 2*(l%4) + i%2.
  // The MMAs cover only the tile's real tokens rounded up to 32 (an expert's last row block is
  // usually partial); the accumulator columns beyond stay zero and are never stored.
  __device__ __forceinline__ static void mma_tile(float (&acc)[kSlices][kAccRegs], uint8_t* smem,
                                                  const SmemPlan& plan, uint64_t* full, uint64_t* empty,
                                                  PipelineState& pipe, const KernelParams& p, const detail::Tile& tile,
                                                  int warpgroup, int lane) {
    ptx::zero_registers(acc);
    mma_tile_width<kBlockM>((tile.rows + 31) / 32 * 32, acc, smem, plan, full, empty, pipe, p, tile, 0,
                            p.num_k_blocks, warpgroup, lane);
  }

  // Split K (split_k.cuh): the loads of one piece's K blocks (work.piece).
  __device__ __forceinline__ static void load_piece(const CUtensorMap* tmap_a, const CUtensorMap* tmap_b,
                                                    const CUtensorMap* tmap_sfa, const CUtensorMap* tmap_sfb,
                                                    uint8_t* smem, const SmemPlan& plan, uint64_t* full,
                                                    uint64_t* empty, PipelineState& pipe,
                                                    const detail::ClusterWork& work, const KernelParams& p) {
    load_tile(tmap_a, tmap_b, tmap_sfa, tmap_sfb, smem, plan, full, empty, pipe, work, /*rank=*/0, p);
  }

  // Split K: mma_tile over one piece's K blocks.
  __device__ __forceinline__ static void mma_piece(float (&acc)[kSlices][kAccRegs], uint8_t* smem,
                                                   const SmemPlan& plan, uint64_t* full, uint64_t* empty,
                                                   PipelineState& pipe, const KernelParams& p, const detail::Tile& tile,
                                                   int piece, int warpgroup, int lane) {
    ptx::zero_registers(acc);
    mma_tile_width<kBlockM>((tile.rows + 31) / 32 * 32, acc, smem, plan, full, empty, pipe, p, tile,
                            split_k_begin(p, piece), split_k_begin(p, piece + 1), warpgroup, lane);
  }

 private:
  static constexpr int kTokenStep = 32;     // MMA widths: 32, 64, ..., kBlockM
  static constexpr int kScalePrefetch = 4;  // scale-product pairs loaded ahead of their FMAs (one slice)

  // Picks the narrowest MMA width that covers `width` tokens.
  template <int kTokens>
  __device__ __forceinline__ static void mma_tile_width(int width, float (&acc)[kSlices][kAccRegs], uint8_t* smem,
                                                        const SmemPlan& plan, uint64_t* full, uint64_t* empty,
                                                        PipelineState& pipe, const KernelParams& p,
                                                        const detail::Tile& tile, int k_begin, int k_end,
                                                        int warpgroup, int lane) {
    if constexpr (kTokens > kTokenStep) {
      if (width <= kTokens - kTokenStep)
        return mma_tile_width<kTokens - kTokenStep>(width, acc, smem, plan, full, empty, pipe, p, tile, k_begin,
                                                    k_end, warpgroup, lane);
    }
    mma_k_blocks<kTokens>(acc, smem, plan, full, empty, pipe, p, tile, k_begin, k_end, warpgroup, lane);
  }

  template <int kTokens>
  __device__ __forceinline__ static void mma_k_blocks(float (&acc)[kSlices][kAccRegs], uint8_t* smem,
                                                      const SmemPlan& plan, uint64_t* full, uint64_t* empty,
                                                      PipelineState& pipe, const KernelParams& p,
                                                      const detail::Tile& tile, int k_begin, int k_end,
                                                      int warpgroup_of_thread, int lane) {
    const int warpgroup = ptx::warp_uniform(warpgroup_of_thread);  // uniform weight descriptors
    using Mma = ptx::WgmmaF8<kTokens>;
    constexpr int kPartialRegs = Mma::kRegs;
    // This warpgroup's weight rows lie in one 128x128 scale block.
    const int32_t sfb_index =
        fp8_weight_scale_row(p, tile.expert, (tile.n_block * kBlockN + warpgroup * kWarpgroupRows) / 128);
    const int warpgroup_thread = threadIdx.x % 128;
    // This warpgroup's two buffers of scale products (sfb * sfa[token]), by the K block's parity.
    // The barrier of each K block, and this one before the tile's first (the previous tile may have
    // ended on either parity), let a thread write a buffer only once every thread of the warpgroup
    // has finished reading what it held.
    float* const products = reinterpret_cast<float*>(smem + plan.scale_buffer_offset()) + warpgroup * 2 * kBlockM;
    ptx::named_barrier_sync(kScaleProductBarrier + warpgroup, 128);
    for (int kb = k_begin; kb < k_end; ++kb) {
      mbarrier_wait(&full[pipe.stage], pipe.phase);
      const uint8_t* stage_a = smem + plan.a_offset(pipe.stage);
      const uint8_t* stage_b = smem + plan.b_offset(pipe.stage) + warpgroup * kWarpgroupRows * kBlockK;
      const float* stage_sfa = reinterpret_cast<const float*>(smem + plan.sfa_offset(pipe.stage));
      const uint64_t desc_tokens = ptx::smem_desc_kmajor_sw128(stage_a);
      float* const stage_products = products + (kb & 1) * kBlockM;

      float2 scaled_tokens[kSlices == 2 ? kTokens / 8 : 1];  // sfb * sfa of this thread's token pairs
#pragma unroll
      for (int slice = 0; slice < kSlices; ++slice) {
        float partial[kPartialRegs];
        const uint64_t desc_weights = ptx::smem_desc_kmajor_sw128(stage_b + slice * 64 * kBlockK);
        ptx::wgmma_fence();
#pragma unroll
        for (int k = 0; k < kKSteps; ++k) {
          // 32 bytes of K per step, in the descriptor's 16-byte units.
          Mma::mma(partial, desc_weights + 2 * k, desc_tokens + 2 * k, /*accumulate=*/k > 0);
        }
        ptx::wgmma_commit();

        // Promote with both scales: acc += partial * sfb * sfa[token]. Each product is formed once
        // per stage by one thread of the warpgroup (while the first slice's MMAs run) and shared
        // through shared memory: every thread needs kTokens / 4 of them, and each token's product
        // is needed by 32 threads, so forming them in place took kTokens / 4 multiplies per thread
        // and stage, issue slots the tensor cores do not give back (signalgemm-wgmma-rates).
        // The warpgroup barrier publishes them. Two slices see the same tokens: their products are
        // loaded once per stage. One slice loads them kScalePrefetch pairs ahead instead (registers
        // are short at 192 tokens).
        const float* thread_products = stage_products + 2 * (lane % 4);
        float2 token_scales[kScalePrefetch];
        if (slice == 0) {
          // This warpgroup's weight scale of the K block, within the aligned box load_tile fetched.
          const float* stage_sfb =
              reinterpret_cast<const float*>(smem + plan.sfb_offset(pipe.stage) + 128 * warpgroup);
          const float sfb = ptx::ld_shared_f32_in_order(stage_sfb + ((sfb_index + kb) & (kWeightScaleBox - 1)));
#pragma unroll
          for (int t0 = 0; t0 < kTokens; t0 += 128) {
            const int token = t0 + warpgroup_thread;
            if (token < kTokens)
              ptx::st_shared_f32(stage_products + token, sfb * ptx::ld_shared_f32_in_order(stage_sfa + token));
          }
          ptx::named_barrier_sync(kScaleProductBarrier + warpgroup, 128);
          if constexpr (kSlices == 2) {
#pragma unroll
            for (int j = 0; j < kTokens / 8; ++j)
              scaled_tokens[j] = ptx::ld_shared_f32x2_in_order(thread_products + 8 * j);
          }
        }
        if constexpr (kSlices == 1) {
#pragma unroll
          for (int j = 0; j < kScalePrefetch && j < kTokens / 8; ++j)
            token_scales[j] = ptx::ld_shared_f32x2_in_order(thread_products + 8 * j);
        }
        ptx::wgmma_wait<0>();
        ptx::fence_registers(partial);
#pragma unroll
        for (int j = 0; j < kTokens / 8; ++j) {
          float2 scale;
          if constexpr (kSlices == 2) {
            scale = scaled_tokens[j];
          } else {
            scale = token_scales[j % kScalePrefetch];
            if (j + kScalePrefetch < kTokens / 8)
              token_scales[j % kScalePrefetch] =
                  ptx::ld_shared_f32x2_in_order(thread_products + 8 * (j + kScalePrefetch));
          }
          float* a = acc[slice];
          a[4 * j + 0] = fmaf(partial[4 * j + 0], scale.x, a[4 * j + 0]);
          a[4 * j + 1] = fmaf(partial[4 * j + 1], scale.y, a[4 * j + 1]);
          a[4 * j + 2] = fmaf(partial[4 * j + 2], scale.x, a[4 * j + 2]);
          a[4 * j + 3] = fmaf(partial[4 * j + 3], scale.y, a[4 * j + 3]);
        }
      }
      // This warp no longer reads the stage (MMAs complete, scales consumed): hand it back.
      release_stage<kCluster>(empty, pipe.stage, lane);
      pipe.advance();
    }
  }
};

}  // namespace signalgemm::kernels
