// Mainloop for fp8_block128 operands on tiles of 128 tokens with the tokens as the wgmma's M:
// each MMA warpgroup multiplies its 64 token rows by all kBlockN weight rows of the tile
// (m64nN, N = kBlockN), where Fp8Block128Mainloop swaps the roles (weights as M, tokens as N).
//
// Why a second fp8 mainloop: in the swapped layout a 128x256 tile gives each warpgroup two 64-row
// weight slices, each drained (wgmma.wait_group 0) and promoted separately, and the token scales
// vary along the wgmma's N, so every stage forms per-token scale products in shared memory behind a
// warpgroup barrier (docs/performance.md, 2026-11-27 15:26: the MMA warps' hottest stalls). Here
// a warpgroup drains once per stage, and a thread's scales are two tokens' (its accumulator rows)
// and at most two 128-row weight blocks' (its columns): four products in registers, no barrier.
// The cost: acc and partial (N / 2 registers each) must fit beside each other, so N <= 192: fewer
// weight rows per tile than 128x256 (DeepGEMM's sm90 fp8 kernel lays its tiles out this way).
#pragma once

#include <cuda.h>

#include "kernels/kernel_params.h"
#include "kernels/mainloop_fp8_block128.cuh"  // the fp8_block128 scale addressing and loads
#include "kernels/pipeline.cuh"
#include "kernels/ptx.cuh"
#include "signalgemm/detail/tile_schedule.h"

namespace signalgemm::kernels {

template <int kBlockN_>
struct Fp8Block128TokenRowsMainloop {
  static constexpr int kBlockM = 128;
  static constexpr int kBlockN = kBlockN_;
  static constexpr int kCluster = 1;
  static constexpr bool kTokenRows = true;   // accumulators hold [token][weight] (epilogue_signal.cuh)
  static constexpr int kSlices = 1;
  static constexpr int kAccRegs = kBlockN / 2;  // m64nN: N / 2 fp32 per thread
  static constexpr int kKSteps = kBlockK / 32;   // wgmma k32 steps per stage
  static constexpr int kWarpgroupTokens = kBlockM / kMathWarpgroups;  // 64: one wgmma M
  static constexpr bool kStagingPerWarpgroup = true;
  static_assert(kBlockN % 32 == 0 && kBlockN <= 192, "acc + partial must fit beside each other");
  // Tiles start at multiples of kBlockN, so a tile's first column lies at a multiple of
  // gcd(kBlockN, 128) within its 128-row weight-scale block, and its columns span at most two.
  static constexpr int kScaleAlign = kBlockN % 128 == 0 ? 128 : kBlockN % 64 == 0 ? 64 : 32;
  static_assert(128 - kScaleAlign + kBlockN <= 256, "a tile spans at most two weight-scale blocks");
  static constexpr int kScaleBlocks = 128 % kBlockN == 0 ? 1 : 2;

  // Bytes the copy engine delivers into one stage: tokens, weights, the token scales and the two
  // boxes of weight scales (the tile's first and second 128-row scale block).
  static constexpr uint32_t kStageTxBytes =
      kBlockM * kBlockK + kBlockN * kBlockK + kBlockM * 4 + kScaleBlocks * kWeightScaleBox * 4;
  SG_HD static SmemPlan plan(int stages) { return fp8_block128_smem_plan(kBlockM, kBlockN, stages); }

  __device__ __forceinline__ static void load_tile(const CUtensorMap* tmap_a, const CUtensorMap* tmap_b,
                                                   const CUtensorMap* tmap_sfa, const CUtensorMap* tmap_sfb,
                                                   uint8_t* smem, const SmemPlan& plan, uint64_t* full,
                                                   uint64_t* empty, PipelineState& pipe,
                                                   const detail::ClusterWork& work, int /*rank*/,
                                                   const KernelParams& p) {
    const detail::Tile& tile = work.tile;
    const int num_k_blocks = p.num_k_blocks;
    int32_t scale_rows[kScaleBlocks];
#pragma unroll
    for (int s = 0; s < kScaleBlocks; ++s) scale_rows[s] = weight_scale_row(p, tile, s);
    for (int kb = 0; kb < num_k_blocks; ++kb) {
      uint64_t* stage_full = arm_stage(full, empty, pipe, kStageTxBytes);
      const int32_t a_coords[3] = {kb * kBlockK, tile.first_row, tile.expert};
      const int32_t b_coords[3] = {kb * kBlockK, tile.n_block * kBlockN, tile.expert};
      tma_load(smem + plan.a_offset(pipe.stage), tmap_a, a_coords, stage_full);
      tma_load(smem + plan.b_offset(pipe.stage), tmap_b, b_coords, stage_full);
      load_fp8_stage_scales(tmap_sfa, tmap_sfb, smem + plan.sfa_offset(pipe.stage),
                            smem + plan.sfb_offset(pipe.stage), stage_full, tile, num_k_blocks, kb, scale_rows);
      pipe.advance();
    }
  }

  // One MMA warpgroup: its 64 token rows of the tile x kBlockN weight rows, promoted per 128-K block.
  // Accumulator layout (wgmma m64nN): register i of lane l, warp w of the warpgroup holds token
  //   16*w + l/4 + 8*((i/2)%2), weight column 8*(i/4) + 2*(l%4) + i%2.
  // A warpgroup whose rows are all past the tile's real tokens only passes the stages.
  __device__ __forceinline__ static void mma_tile(float (&acc)[kSlices][kAccRegs], uint8_t* smem,
                                                  const SmemPlan& plan, uint64_t* full, uint64_t* empty,
                                                  PipelineState& pipe, const KernelParams& p, const detail::Tile& tile,
                                                  int warpgroup_of_thread, int lane) {
    ptx::zero_registers(acc);
    const int warpgroup = ptx::warp_uniform(warpgroup_of_thread);  // uniform descriptors
    if (tile.rows <= warpgroup * kWarpgroupTokens) {
      pass_stages<1>(full, empty, pipe, p.num_k_blocks, lane);
      return;
    }
    // Columns below `boundary` take the first weight-scale block's scale, the others the second's.
    const int boundary = kScaleBlocks == 1 ? kBlockN : min(kBlockN, 128 - (tile.n_block * kBlockN) % 128);
    dispatch_boundary<(kBlockN < 128 ? kBlockN : 128) / 8>(boundary / 8, acc[0], smem, plan, full, empty, pipe, p,
                                                           tile, warpgroup, lane);
  }

 private:
  // Column groups of 8 at which the scale block may change.
  static constexpr int kBoundaryStep = kScaleAlign / 8;

  // Element index of the tile's weight-scale block `s` (0: the one holding its first column) in b_scales.
  __device__ __forceinline__ static int32_t weight_scale_row(const KernelParams& p, const detail::Tile& tile, int s) {
    return fp8_weight_scale_row(p, tile.expert, (tile.n_block * kBlockN) / 128 + s);
  }

  // The K loop, compiled once per possible boundary (a tile-uniform branch) so that the promotion
  // picks each column group's scale at compile time.
  template <int kGroupsLow>
  __device__ __forceinline__ static void dispatch_boundary(int groups_low, float (&acc)[kAccRegs], uint8_t* smem,
                                                           const SmemPlan& plan, uint64_t* full, uint64_t* empty,
                                                           PipelineState& pipe, const KernelParams& p,
                                                           const detail::Tile& tile, int warpgroup, int lane) {
    if constexpr (kGroupsLow > kBoundaryStep) {
      if (groups_low < kGroupsLow)
        return dispatch_boundary<kGroupsLow - kBoundaryStep>(groups_low, acc, smem, plan, full, empty, pipe, p, tile,
                                                             warpgroup, lane);
    }
    mma_k_blocks<kGroupsLow>(acc, smem, plan, full, empty, pipe, p, tile, warpgroup, lane);
  }

  template <int kGroupsLow>
  __device__ __forceinline__ static void mma_k_blocks(float (&acc)[kAccRegs], uint8_t* smem, const SmemPlan& plan,
                                                      uint64_t* full, uint64_t* empty, PipelineState& pipe,
                                                      const KernelParams& p, const detail::Tile& tile, int warpgroup,
                                                      int lane) {
    using Mma = ptx::WgmmaF8<kBlockN>;
    const int warp_in_group = (threadIdx.x / 32) % 4;
    const int token = warpgroup * kWarpgroupTokens + 16 * warp_in_group + lane / 4;  // and token + 8
    int32_t scale_index[kScaleBlocks];
#pragma unroll
    for (int s = 0; s < kScaleBlocks; ++s)
      scale_index[s] = weight_scale_row(p, tile, s) & (kWeightScaleBox - 1);
    for (int kb = 0; kb < p.num_k_blocks; ++kb) {
      mbarrier_wait(&full[pipe.stage], pipe.phase);
      const uint8_t* stage_a = smem + plan.a_offset(pipe.stage) + warpgroup * kWarpgroupTokens * kBlockK;
      const uint64_t desc_tokens = ptx::smem_desc_kmajor_sw128(stage_a);
      const uint64_t desc_weights = ptx::smem_desc_kmajor_sw128(smem + plan.b_offset(pipe.stage));
      float partial[kAccRegs];
      ptx::wgmma_fence();
#pragma unroll
      for (int k = 0; k < kKSteps; ++k)  // 32 bytes of K per step, in the descriptors' 16-byte units
        Mma::mma(partial, desc_tokens + 2 * k, desc_weights + 2 * k, /*accumulate=*/k > 0);
      ptx::wgmma_commit();

      // The scales, read while the MMAs run: this thread's two tokens and the tile's weight blocks.
      const float* stage_sfa = reinterpret_cast<const float*>(smem + plan.sfa_offset(pipe.stage));
      const float* stage_sfb = reinterpret_cast<const float*>(smem + plan.sfb_offset(pipe.stage));
      const float sfa_low = ptx::ld_shared_f32_in_order(stage_sfa + token);
      const float sfa_high = ptx::ld_shared_f32_in_order(stage_sfa + token + 8);
      float2 scale[kScaleBlocks];  // (token, token + 8) x weight block s
#pragma unroll
      for (int s = 0; s < kScaleBlocks; ++s) {
        const float sfb =
            ptx::ld_shared_f32_in_order(stage_sfb + 32 * s + ((scale_index[s] + kb) & (kWeightScaleBox - 1)));
        scale[s] = make_float2(sfa_low * sfb, sfa_high * sfb);
      }
      ptx::wgmma_wait<0>();
      ptx::fence_registers(partial);
      // The MMAs have read the stage and the scales are in registers: hand it back before promoting.
      release_stage<1>(empty, pipe.stage, lane);
      pipe.advance();
#pragma unroll
      for (int j = 0; j < kAccRegs / 4; ++j) {
        const float2 s = scale[j < kGroupsLow ? 0 : kScaleBlocks - 1];
        acc[4 * j + 0] = fmaf(partial[4 * j + 0], s.x, acc[4 * j + 0]);
        acc[4 * j + 1] = fmaf(partial[4 * j + 1], s.x, acc[4 * j + 1]);
        acc[4 * j + 2] = fmaf(partial[4 * j + 2], s.y, acc[4 * j + 2]);
        acc[4 * j + 3] = fmaf(partial[4 * j + 3], s.y, acc[4 * j + 3]);
      }
    }
  }
};

}  // namespace signalgemm::kernels
