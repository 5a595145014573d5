// The persistent, warp-specialized masked grouped GEMM, for one operand format's mainloop
// (mainloop_fp8_block128.cuh, mainloop_bf16.cuh, mainloop_nvfp4_weights.cuh, mainloop_dequant_bf16.cuh).
//
// Warpgroups 0..kMathWarpgroups-1 run the MMAs and stage each finished tile in shared memory; in
// the last warpgroup one thread issues every TMA load, and the next warp (the storer) scans
// masked_m for out-of-range values, then stores each staged tile and publishes its signal.
// All roles walk the same tile sequence (scheduler.cuh), so they need no other coordination than
// the stage barriers of pipeline.cuh and the staging hand-over of epilogue_signal.cuh.
#pragma once

#include <cuda.h>

#include <cuda/ptx>

#include "kernels/epilogue_signal.cuh"
#include "kernels/kernel_params.h"
#include "kernels/pipeline.cuh"
#include "kernels/ptx.cuh"
#include "kernels/scheduler.cuh"

namespace signalgemm::kernels {

template <class Mainloop>
__global__ void __launch_bounds__(kThreads, 1)
    grouped_gemm_kernel(const __grid_constant__ CUtensorMap tmap_a,
                                     const __grid_constant__ CUtensorMap tmap_b,
                                     const __grid_constant__ CUtensorMap tmap_sfa,
                                     const __grid_constant__ KernelParams p) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int kBlockM = Mainloop::kBlockM;
  constexpr int kBlockN = Mainloop::kBlockN;
  namespace cp = cuda::ptx;

  extern __shared__ uint8_t smem_raw[];
  // 128-byte swizzled TMA tiles and their wgmma descriptors assume 1024-byte aligned tiles.
  uint8_t* smem = reinterpret_cast<uint8_t*>(
      (reinterpret_cast<uintptr_t>(smem_raw) + kSmemAlignment - 1) & ~uintptr_t(kSmemAlignment - 1));
  const SmemPlan plan = Mainloop::plan(p.stages);
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + plan.barrier_offset());
  uint64_t* empty = full + p.stages;

  const int warpgroup = threadIdx.x / 128;
  const int lane = threadIdx.x % 32;
  constexpr int kProducerThread = kMathThreads;

  if (threadIdx.x == kProducerThread) {
    for (int s = 0; s < p.stages; ++s) {
      cp::mbarrier_init(&full[s], 1);                   // the producer's arrive.expect_tx
      cp::mbarrier_init(&empty[s], kMathThreads / 32);  // one arrive per MMA warp
    }
    // The copy engine (async proxy) updates these barriers: make their initialization visible to it.
    cp::fence_proxy_async(cp::space_shared);
  }
  __syncthreads();
  // With programmatic dependent launch, the set-up above overlapped the previous kernel's tail;
  // nothing it writes may be read before this point. Without PDL this returns at once.
  asm volatile("griddepcontrol.wait;\n" ::: "memory");

  if (warpgroup == kMathWarpgroups) {
    ptx::setmaxnreg_dec<kProducerRegisters>();
    if (threadIdx.x == kProducerThread) {
      PipelineState pipe{0, 0, p.stages};
      DeviceTileWalker walker = make_tile_walker(p);
      detail::Tile tile;
      while (walker.next(tile))
        Mainloop::load_tile(&tmap_a, &tmap_b, &tmap_sfa, smem, plan, full, empty, pipe, tile, p.num_k_blocks);
    } else if (threadIdx.x / 32 == kProducerThread / 32 + 1) {
      report_masked_m_out_of_range(p, lane);
      DeviceTileWalker walker = make_tile_walker(p);
      detail::Tile tile, next;
      for (bool have = walker.next(tile); have; tile = next) {
        have = walker.next(next);
        store_tile_and_signal<kBlockN>(p, tile, kBlockM, tile.rows, have, smem + plan.staging_offset(), lane);
      }
    }
  } else {
    ptx::setmaxnreg_inc<kMathRegisters>();
    PipelineState pipe{0, 0, p.stages};
    DeviceTileWalker walker = make_tile_walker(p);
    uint8_t* staging = smem + plan.staging_offset();
    detail::Tile tile;
    for (bool first_tile = true; walker.next(tile); first_tile = false) {
      const float alpha = p.alpha != nullptr ? __ldg(p.alpha + tile.expert) : 1.f;
      float acc[Mainloop::kSlices][Mainloop::kAccRegs];
      Mainloop::mma_tile(acc, smem, plan, full, empty, pipe, p, tile, warpgroup, lane);
      stage_tile<kBlockM, kBlockN, Mainloop::kSlices>(acc, alpha, first_tile, staging, threadIdx.x);
    }
  }
#endif
}

}  // namespace signalgemm::kernels
