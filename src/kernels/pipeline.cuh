// The shared-memory ring between the TMA producer and the MMA warpgroups.
//
// Stage s has two mbarriers: full[s] completes when the producer's TMA bytes have landed (the
// producer arms it with arrive.expect_tx; the copy engine's complete_tx finishes the phase);
// empty[s] completes when every MMA warp has finished reading the stage (one arrive per warp).
// Both sides walk the same tile sequence, so they agree on (stage, phase) without talking.
#pragma once

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

}  // namespace signalgemm::kernels
