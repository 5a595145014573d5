// Mainloop for bf16 activations x nvfp4 weights (the decode case: FP4 halves the weight bytes).
//
// Hopper has no FP4 tensor cores. Each stage brings 64 K of bf16 tokens (128 B rows, swizzled) and
// 64 K of packed e2m1 weights (32 B rows); every MMA warpgroup dequantizes its own weight rows,
// e2m1 x e4m3 block scale, into a bf16 tile in the layout the bf16 wgmma reads (128 B rows, 128 B
// swizzle), then multiplies it like the bf16 mainloop. e2m1 (2 significant bits) times e4m3 (4)
// fits bf16's 8-bit significand, so the dequantized weights are exact and the result equals the
// bf16 GEMM of the dequantized operands up to fp32 accumulation order. The per-expert global scale
// of nvfp4 is folded into alpha by the caller.
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>

#include <cuda/ptx>

#include "kernels/kernel_params.h"
#include "kernels/mainloop_bf16.cuh"
#include "kernels/pipeline.cuh"
#include "kernels/ptx.cuh"
#include "signalgemm/detail/tile_schedule.h"

namespace signalgemm::kernels {

// bf16 bits of e2m1 code `c` (sign bit 3, exponent bits 2..1, mantissa bit 0): 0, 0.5 and
// (1 + m/2) * 2^(e-1) otherwise.
__device__ __forceinline__ uint32_t e2m1_to_bf16_bits(uint32_t c) {
  const uint32_t e = (c >> 1) & 3, m = c & 1;
  const uint32_t magnitude = e == 0 ? (m ? 0x3F00u : 0u) : (((e + 126) << 7) | (m << 6));
  return ((c & 8) << 12) | magnitude;
}

__device__ __forceinline__ float e4m3_to_float(uint32_t bits) {
  const uint32_t e = (bits >> 3) & 15, m = bits & 7;
  const float magnitude = e == 0 ? float(m) * 0x1p-9f : __uint_as_float(((e + 120) << 23) | (m << 20));
  return (bits & 0x80) ? -magnitude : magnitude;
}

template <int kBlockM_, int kBlockN_>
struct Nvfp4WeightsMainloop {
  static constexpr int kBlockM = kBlockM_;
  static constexpr int kBlockN = kBlockN_;
  static constexpr int kAccRegs = Bf16Mainloop<kBlockM, kBlockN>::kAccRegs;
  static constexpr int kKPerStage = kBlockK / 2;         // 64 K elements per stage
  static constexpr int kFp4RowBytes = kKPerStage / 2;    // 32 bytes of packed weights per row
  static constexpr int kWarpgroupRows = kBlockN / kMathWarpgroups;
  static constexpr int kSlices = kWarpgroupRows / 64;
  static_assert(kSlices == 1 || kSlices == 2, "a warpgroup covers 64 or 128 weight rows");
  // Dequantization work: 8 chunks of 8 weights (one 16-byte bf16 store) per row and stage.
  static constexpr int kThreadsPerRow = 128 / kWarpgroupRows;
  static constexpr int kChunksPerThread = 8 / kThreadsPerRow;
  static constexpr uint32_t kStageTxBytes = kBlockM * kBlockK + kBlockN * kFp4RowBytes;

  SG_HD static SmemPlan plan(int stages) {
    return SmemPlan{kBlockM, kBlockN, stages, kFp4RowBytes, kBlockN * kBlockK};
  }

  __device__ __forceinline__ static void load_tile(const CUtensorMap* tmap_a, const CUtensorMap* tmap_b,
                                                   const CUtensorMap*, uint8_t* smem, const SmemPlan& plan,
                                                   uint64_t* full, uint64_t* empty, PipelineState& pipe,
                                                   const detail::Tile& tile, int num_k_blocks) {
    namespace cp = cuda::ptx;
    for (int kb = 0; kb < num_k_blocks; ++kb) {
      mbarrier_wait(&empty[pipe.stage], pipe.phase ^ 1);  // slot released (first lap passes)
      const uint32_t tx_bytes = kStageTxBytes;
      cp::mbarrier_arrive_expect_tx(cp::sem_release, cp::scope_cta, cp::space_shared, &full[pipe.stage], tx_bytes);
      const int32_t a_coords[3] = {kb * kBlockK, tile.m_block * kBlockM, tile.expert};     // bytes of bf16
      const int32_t b_coords[3] = {kb * kFp4RowBytes, tile.n_block * kBlockN, tile.expert};  // bytes of fp4
      cp::cp_async_bulk_tensor(cp::space_cluster, cp::space_global, smem + plan.a_offset(pipe.stage), tmap_a,
                               a_coords, &full[pipe.stage]);
      cp::cp_async_bulk_tensor(cp::space_cluster, cp::space_global, smem + plan.b_offset(pipe.stage), tmap_b,
                               b_coords, &full[pipe.stage]);
      pipe.advance();
    }
  }

  __device__ __forceinline__ static void mma_tile(float (&acc)[kSlices][kAccRegs], uint8_t* smem,
                                                  const SmemPlan& plan, uint64_t* full, uint64_t* empty,
                                                  PipelineState& pipe, const KernelParams& p, const detail::Tile& tile,
                                                  int warpgroup, int lane) {
#pragma unroll
    for (int s = 0; s < kSlices; ++s)
#pragma unroll
      for (int i = 0; i < kAccRegs; ++i) acc[s][i] = 0.f;

    const int thread = threadIdx.x % 128;
    const int row = thread / kThreadsPerRow;                       // within this warpgroup's rows
    const int first_chunk = (thread % kThreadsPerRow) * kChunksPerThread;
    // Scales of this row: 4 e4m3 bytes (one uint32) per stage. Rows past N (a partial last column
    // block) read the last real row: their weights are zero-filled by TMA and never stored.
    const int weight_row = min(tile.n_block * kBlockN + warpgroup * kWarpgroupRows + row, p.layout.n - 1);
    const uint32_t* row_scales = reinterpret_cast<const uint32_t*>(
        static_cast<const uint8_t*>(p.b_scales) + (int64_t(tile.expert) * p.layout.n + weight_row) * p.b_scale_cols);
    uint8_t* dequant = smem + plan.dequant_offset() + warpgroup * kWarpgroupRows * kBlockK;
    const uint32_t dequant_row = static_cast<uint32_t>(__cvta_generic_to_shared(dequant)) + row * kBlockK;
    const int barrier_id = 3 + warpgroup;  // 1 and 2 belong to the epilogue

    uint32_t scales_next = __ldg(row_scales);
    for (int kb = 0; kb < p.num_k_blocks; ++kb) {
      const uint32_t scales = scales_next;
      if (kb + 1 < p.num_k_blocks) scales_next = __ldg(row_scales + kb + 1);
      mbarrier_wait(&full[pipe.stage], pipe.phase);

      // The previous K block's MMAs (which read the dequantized tile) are complete in every warp.
      ptx::named_barrier_sync(barrier_id, 128);
      const uint8_t* packed = smem + plan.b_offset(pipe.stage) + (warpgroup * kWarpgroupRows + row) * kFp4RowBytes;
#pragma unroll
      for (int c = 0; c < kChunksPerThread; ++c) {
        const int chunk = first_chunk + c;  // weights 8*chunk .. 8*chunk+7 of this stage
        const uint32_t codes = *reinterpret_cast<const uint32_t*>(packed + 4 * chunk);
        const float scale = e4m3_to_float((scales >> (8 * (chunk / 2))) & 0xff);
        uint32_t pairs[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const float lo = __uint_as_float(e2m1_to_bf16_bits((codes >> (8 * i)) & 15) << 16) * scale;
          const float hi = __uint_as_float(e2m1_to_bf16_bits((codes >> (8 * i + 4)) & 15) << 16) * scale;
          const __nv_bfloat162 both = __floats2bfloat162_rn(lo, hi);  // exact: see the file comment
          pairs[i] = *reinterpret_cast<const uint32_t*>(&both);
        }
        // 128-byte swizzle, as TMA would have written it: 16-byte chunk index XOR row % 8.
        const uint32_t addr = dequant_row + ((chunk ^ (row % 8)) * 16);
        asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(pairs[0]), "r"(pairs[1]),
                     "r"(pairs[2]), "r"(pairs[3])
                     : "memory");
      }
      // The tensor cores read the tile through the async proxy: fence each writer's generic stores,
      // then let the whole warpgroup see them complete.
      cuda::ptx::fence_proxy_async(cuda::ptx::space_shared);
      ptx::named_barrier_sync(barrier_id, 128);

      Bf16Mainloop<kBlockM, kBlockN>::multiply_stage(acc, smem + plan.a_offset(pipe.stage), dequant);
      // This warp's MMAs and dequantization no longer read the stage: hand it back.
      if (lane == 0) cuda::ptx::mbarrier_arrive(&empty[pipe.stage]);
      pipe.advance();
    }
  }
};

}  // namespace signalgemm::kernels
