// The shared-memory ring between the TMA producer and the MMA warpgroups.
//
// Stage s has two mbarriers: full[s] completes when the producer's TMA bytes have landed (the
// producer arms it with arrive.expect_tx; the copy engine's complete_tx finishes the phase);
// empty[s] completes when every MMA warp has finished reading the stage (one arrive per warp).
// Both sides walk the same tile sequence, so they agree on (stage, phase) without talking.
#pragma once

#include <cuda.h>

#include <cuda/ptx>

namespace signalgemm::kernels {

struct PipelineState {
  int stage = 0;
  uint32_t phase = 0;
  int stages = 1;

  __device__ __forceinline__ void advance() {
    if (++stage == stages) {
      stage = 0;
      phase ^= 1;
    }
  }
};

__device__ __forceinline__ void mbarrier_wait(uint64_t* barrier, uint32_t phase) {
  while (!cuda::ptx::mbarrier_try_wait_parity(barrier, phase)) {
  }
}

// Producer side of one stage: waits until every MMA warp released the slot (the first lap passes:
// parity of the phase before the barrier's first one), then arms full[stage] with the bytes this
// stage's copies will deliver (arrive.expect_tx, release); the copy engine's complete_tx then
// finishes the phase. Returns the barrier the copies complete on.
__device__ __forceinline__ uint64_t* arm_stage(uint64_t* full, uint64_t* empty, const PipelineState& pipe,
                                               uint32_t tx_bytes) {
  namespace cp = cuda::ptx;
  mbarrier_wait(&empty[pipe.stage], pipe.phase ^ 1);
  cp::mbarrier_arrive_expect_tx(cp::sem_release, cp::scope_cta, cp::space_shared, &full[pipe.stage], tx_bytes);
  return &full[pipe.stage];
}

// One TMA tile copy into this CTA's shared memory, completing on `stage_full`.
template <int kRank>
__device__ __forceinline__ void tma_load(void* smem_dst, const CUtensorMap* map, const int32_t (&coords)[kRank],
                                         uint64_t* stage_full) {
  namespace cp = cuda::ptx;
  cp::cp_async_bulk_tensor(cp::space_cluster, cp::space_global, smem_dst, map, coords, stage_full);
}

}  // namespace signalgemm::kernels
