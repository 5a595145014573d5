// The shared-memory ring between the TMA producer and the MMA warpgroups.
//
// Stage s has two mbarriers: full[s] completes when the producer's TMA bytes have landed (the
// producer arms it with arrive.expect_tx; the copy engine's complete_tx finishes the phase);
// empty[s] completes when every MMA warp has finished reading the stage (one arrive per warp).
// Both sides walk the same tile sequence, so they agree on (stage, phase) without talking.
//
// In a two-CTA cluster (kCluster == 2) rank 0's copy engine writes a shared operand into both
// CTAs' stage, so a stage may be refilled only when the MMA warps of both CTAs have released it:
// every MMA warp arrives on empty[s] of both CTAs (count 2 x 8), and each CTA's full[s] still
// expects every byte that lands in its own shared memory, whoever issued the copy. The peer's bytes
// may land before this CTA's producer arms the phase: the transaction count then runs negative,
// and the phase still cannot complete before the local arrive.expect_tx (its pending arrival).
#pragma once

#include <cuda.h>

#include <cuda/ptx>

#include "kernels/ptx.cuh"

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
  // Half the arrivals may come from the peer CTA. Formally a CTA-scope wait does not synchronize
  // with them, but they publish no data, only that reads have completed (release_stage: after
  // wgmma.wait_group), so the overwrite cannot overtake them (CUTLASS's remote arrive is the same).
  mbarrier_wait(&empty[pipe.stage], pipe.phase ^ 1);
  cp::mbarrier_arrive_expect_tx(cp::sem_release, cp::scope_cta, cp::space_shared, &full[pipe.stage], tx_bytes);
  return &full[pipe.stage];
}

// MMA side: this warp has finished reading the stage (its wgmmas completed, its shared loads
// consumed). In a cluster, lane r arrives on rank r's barrier. The arrive orders no writes, only
// reads that have already completed, so CTA scope serves (not by the scope rules, which do not
// cover the peer's waiter, but because nothing is left to order); a .cluster release costs a
// GPU-wide MEMBAR per warp and stage (measured: the cluster kernel 30% slower).
template <int kCluster = 1>
__device__ __forceinline__ void release_stage(uint64_t* empty, int stage, int lane) {
  if constexpr (kCluster == 1) {
    if (lane == 0) cuda::ptx::mbarrier_arrive(&empty[stage]);
  } else {
    if (lane < kCluster) ptx::mbarrier_arrive_cluster_cta_scope(&empty[stage], lane);
  }
}

// MMA side of a cluster unit this CTA has no tile in: keep the ring in step with the peer.
template <int kCluster>
__device__ __forceinline__ void pass_stages(uint64_t* full, uint64_t* empty, PipelineState& pipe, int count,
                                            int lane) {
  for (int i = 0; i < count; ++i) {
    mbarrier_wait(&full[pipe.stage], pipe.phase);
    release_stage<kCluster>(empty, pipe.stage, lane);
    pipe.advance();
  }
}

// One TMA tile copy into this CTA's shared memory, completing on `stage_full`.
template <int kRank>
__device__ __forceinline__ void tma_load(void* smem_dst, const CUtensorMap* map, const int32_t (&coords)[kRank],
                                         uint64_t* stage_full) {
  namespace cp = cuda::ptx;
  cp::cp_async_bulk_tensor(cp::space_cluster, cp::space_global, smem_dst, map, coords, stage_full);
}

// The same copy, written by the copy engine into this offset of every CTA in `cta_mask`, each
// completing on its own barrier at `stage_full`'s offset.
template <int kRank>
__device__ __forceinline__ void tma_load_multicast(void* smem_dst, const CUtensorMap* map,
                                                   const int32_t (&coords)[kRank], uint64_t* stage_full,
                                                   uint16_t cta_mask) {
  namespace cp = cuda::ptx;
  cp::cp_async_bulk_tensor(cp::space_cluster, cp::space_global, smem_dst, map, coords, stage_full, cta_mask);
}

}  // namespace signalgemm::kernels
