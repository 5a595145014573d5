// Mainloop for bf16 operands: no scale factors, so the tensor cores accumulate the whole K range
// directly into the fp32 accumulators (no partial sums, no promotion). A stage holds 64 bf16 of K
// (one 128-byte swizzled row per token and per weight row), consumed by four k16 wgmma steps.
#pragma once

#include <cuda.h>
#include <cuda/ptx>

#include "kernels/kernel_params.h"
#include "kernels/pipeline.cuh"
#include "kernels/ptx.cuh"
#include "kernels/split_k.cuh"
#include "signalgemm/detail/tile_schedule.h"

namespace signalgemm::kernels {

// kSplitK_: each unit of work is one K range (piece) of a tile (split_k.cuh).
template <int kBlockM_, int kBlockN_, bool kSplitK_ = false>
struct Bf16Mainloop {
  static constexpr int kBlockM = kBlockM_;
  static constexpr int kBlockN = kBlockN_;
  static constexpr bool kSplitK = kSplitK_;
  using Mma = ptx::WgmmaBf16<kBlockM>;
  static constexpr int kAccRegs = Mma::kRegs;
  static constexpr int kKSteps = kBlockK / 32;  // 32 bytes = 16 bf16 per wgmma step
  static constexpr int kWarpgroupRows = kBlockN / kMathWarpgroups;
  static constexpr int kSlices = kWarpgroupRows / 64;
  static_assert(kSlices == 1 || kSlices == 2, "a warpgroup covers 64 or 128 weight rows");
  static constexpr uint32_t kStageTxBytes = (kBlockM + kBlockN) * kBlockK;
  SG_HD static SmemPlan plan(int stages) { return SmemPlan{kBlockM, kBlockN, stages}; }

  // Producer (one thread). The token-scale map is unused: bf16 has no scales.
  __device__ __forceinline__ static void load_tile(const CUtensorMap* tmap_a, const CUtensorMap* tmap_b,
                                                   const CUtensorMap*, uint8_t* smem, const SmemPlan& plan,
                                                   uint64_t* full, uint64_t* empty, PipelineState& pipe,
                                                   const detail::Tile& tile, int num_k_blocks) {
    load_k_blocks(tmap_a, tmap_b, smem, plan, full, empty, pipe, tile, 0, num_k_blocks);
  }

  // Split K: the loads of one piece's K blocks (work.piece).
  __device__ __forceinline__ static void load_piece(const CUtensorMap* tmap_a, const CUtensorMap* tmap_b,
                                                    const CUtensorMap*, const CUtensorMap*, uint8_t* smem,
                                                    const SmemPlan& plan, uint64_t* full, uint64_t* empty,
                                                    PipelineState& pipe, const detail::ClusterWork& work,
                                                    const KernelParams& p) {
    load_k_blocks(tmap_a, tmap_b, smem, plan, full, empty, pipe, work.tile, split_k_begin(p, work.piece),
                  split_k_begin(p, work.piece + 1));
  }

  __device__ __forceinline__ static void load_k_blocks(const CUtensorMap* tmap_a, const CUtensorMap* tmap_b,
                                                       uint8_t* smem, const SmemPlan& plan, uint64_t* full,
                                                       uint64_t* empty, PipelineState& pipe, const detail::Tile& tile,
                                                       int k_begin, int k_end) {
    for (int kb = k_begin; kb < k_end; ++kb) {
      uint64_t* stage_full = arm_stage(full, empty, pipe, kStageTxBytes);
      // Operand maps are byte tensors: K coordinates are in bytes (2 per bf16).
      const int32_t a_coords[3] = {kb * kBlockK, tile.first_row, tile.expert};
      const int32_t b_coords[3] = {kb * kBlockK, tile.n_block * kBlockN, tile.expert};
      tma_load(smem + plan.a_offset(pipe.stage), tmap_a, a_coords, stage_full);
      tma_load(smem + plan.b_offset(pipe.stage), tmap_b, b_coords, stage_full);
      pipe.advance();
    }
  }

  // Issues acc += weights (this warpgroup's kWarpgroupRows rows) x tokens over one 64-K stage as
  // one wgmma commit group; both tiles bf16, 128-byte rows with the 128-byte swizzle. Also the
  // dequantizing mainloop's MMAs (its bf16 tiles have this layout).
  __device__ __forceinline__ static void issue_stage_mmas(float (&acc)[kSlices][kAccRegs], const uint8_t* tokens,
                                                          const uint8_t* weights) {
    const uint64_t desc_tokens = ptx::smem_desc_kmajor_sw128(tokens);
    ptx::wgmma_fence();
#pragma unroll
    for (int slice = 0; slice < kSlices; ++slice) {
      const uint64_t desc_weights = ptx::smem_desc_kmajor_sw128(weights + slice * 64 * kBlockK);
#pragma unroll
      for (int k = 0; k < kKSteps; ++k)
        Mma::mma(acc[slice], desc_weights + 2 * k, desc_tokens + 2 * k, /*accumulate=*/true);
    }
    ptx::wgmma_commit();
  }

  // The same, waiting for the MMAs before returning.
  __device__ __forceinline__ static void multiply_stage(float (&acc)[kSlices][kAccRegs], const uint8_t* tokens,
                                                        const uint8_t* weights) {
    issue_stage_mmas(acc, tokens, weights);
    ptx::wgmma_wait<0>();
#pragma unroll
    for (int s = 0; s < kSlices; ++s) ptx::fence_registers(acc[s]);
  }

  // Same accumulator layout as the fp8 mainloop (see mainloop_fp8_block128.cuh).
  __device__ __forceinline__ static void mma_tile(float (&acc)[kSlices][kAccRegs], uint8_t* smem,
                                                  const SmemPlan& plan, uint64_t* full, uint64_t* empty,
                                                  PipelineState& pipe, const KernelParams& p, const detail::Tile&,
                                                  int warpgroup, int lane) {
    mma_k_blocks(acc, smem, plan, full, empty, pipe, 0, p.num_k_blocks, warpgroup, lane);
  }

  // Split K: mma_tile over one piece's K blocks.
  __device__ __forceinline__ static void mma_piece(float (&acc)[kSlices][kAccRegs], uint8_t* smem,
                                                   const SmemPlan& plan, uint64_t* full, uint64_t* empty,
                                                   PipelineState& pipe, const KernelParams& p, const detail::Tile&,
                                                   int piece, int warpgroup, int lane) {
    mma_k_blocks(acc, smem, plan, full, empty, pipe, split_k_begin(p, piece), split_k_begin(p, piece + 1), warpgroup,
                 lane);
  }

  __device__ __forceinline__ static void mma_k_blocks(float (&acc)[kSlices][kAccRegs], uint8_t* smem,
                                                      const SmemPlan& plan, uint64_t* full, uint64_t* empty,
                                                      PipelineState& pipe, int k_begin, int k_end, int warpgroup,
                                                      int lane) {
    ptx::zero_registers(acc);
    for (int kb = k_begin; kb < k_end; ++kb) {
      mbarrier_wait(&full[pipe.stage], pipe.phase);
      multiply_stage(acc, smem + plan.a_offset(pipe.stage),
                     smem + plan.b_offset(pipe.stage) + warpgroup * kWarpgroupRows * kBlockK);
      // This warp's MMAs have read the stage: hand it back.
      if (lane == 0) cuda::ptx::mbarrier_arrive(&empty[pipe.stage]);
      pipe.advance();
    }
  }
};

}  // namespace signalgemm::kernels
