// Epilogue: write one tile of C and publish its completion signal (SPEC §3).
//
// The path of a signal, top to bottom:
//   1. MMA threads write alpha * acc as bf16 into a shared staging tile, transposed back to C's
//      row-major [token][column] order (the MMA computed C^T).
//   2. fence.proxy.async.shared::cta + barrier: the copy engine may now read the staging tile.
//   3. Warp 0 issues one bulk copy per real token row (rows >= masked_m are never written), then
//      commit_group and wait_group 0: the global writes are complete, not merely read from smem.
//   4. fence.proxy.async.global: orders those async-proxy writes before the generic-proxy release.
//   5. __syncwarp, then lane 0 does red.release.{gpu|sys}.add on the tile's counter.
// Only warp 0's warpgroup waits for the stores; the producer keeps loading the next tile meanwhile.
#pragma once

#include <cuda_bf16.h>

#include <cuda/ptx>

#include "kernels/kernel_params.h"
#include "kernels/ptx.cuh"
#include "signalgemm/detail/tile_schedule.h"

namespace signalgemm::kernels {

inline constexpr int kEpilogueBarrierId = 1;  // named barrier among the MMA threads

template <int kBlockM, int kBlockN, int kSlices>
__device__ __forceinline__ void store_tile_and_signal(const float (&acc)[kSlices][kBlockM / 2], const KernelParams& p, const detail::Tile& tile,
                                      int valid_rows, uint8_t* staging, int math_thread) {
  namespace cp = cuda::ptx;
  constexpr int kColumnPairs = kBlockM / 8;
  const int lane = math_thread % 32;
  const int warp = math_thread / 32;  // 0..7
  constexpr int kWarpgroupRows = kBlockN / kMathWarpgroups;
  const float alpha = p.alpha != nullptr ? __ldg(p.alpha + tile.expert) : 1.f;

  // The previous tile's bulk copies have finished reading the staging tile: warp 0 waited for
  // them before it signalled, and only then joins this barrier.
  ptx::named_barrier_sync(kEpilogueBarrierId, kMathThreads);

  // Thread (warp, lane) holds, per slice, weight rows r and r+8 for token pairs (c, c+1),
  // c = 8j + 2(lane%4): C's element (token, row) goes to staging[token][row]. Shared-window
  // addresses (32-bit) keep all stores at constant offsets from one register; generic pointers
  // would cost a register each.
  constexpr int kPitch = SmemPlan::staging_pitch(kBlockN);
  const int first_row = (warp / 4) * kWarpgroupRows + 16 * (warp % 4) + lane / 4;
  const uint32_t thread_base =
      static_cast<uint32_t>(__cvta_generic_to_shared(staging)) + first_row * 2 + 2 * (lane % 4) * kPitch;
#pragma unroll
  for (int slice = 0; slice < kSlices; ++slice)
#pragma unroll
    for (int j = 0; j < kColumnPairs; ++j) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const uint32_t addr = thread_base + 8 * j * kPitch + (64 * slice + 8 * half) * 2;
        ptx::st_shared_bf16(addr, __float2bfloat16_rn(alpha * acc[slice][4 * j + 2 * half]));
        ptx::st_shared_bf16(addr + kPitch, __float2bfloat16_rn(alpha * acc[slice][4 * j + 2 * half + 1]));
      }
    }
  // Generic-proxy writes to shared memory become visible to the async proxy (the bulk copy engine)
  // only through a proxy fence by each writing thread, ordered before the barrier.
  cp::fence_proxy_async(cp::space_shared);
  ptx::named_barrier_sync(kEpilogueBarrierId, kMathThreads);

  if (warp != 0) return;
  const int column0 = tile.n_block * kBlockN;
  const int columns = min(kBlockN, p.layout.n - column0);
  uint8_t* out_tile = static_cast<uint8_t*>(p.out) + tile.expert * p.out_expert_stride +
                      int64_t(tile.m_block) * kBlockM * p.out_row_stride + int64_t(column0) * 2;
  for (int row = lane; row < valid_rows; row += 32) {
    cp::cp_async_bulk(cp::space_global, cp::space_shared, out_tile + row * p.out_row_stride,
                      staging + row * kPitch, static_cast<uint32_t>(columns * 2));
  }
  cp::cp_async_bulk_commit_group();
  // Full completion (not .read): the signal below promises the writes are done.
  cp::cp_async_bulk_wait_group(cp::n32_t<0>());
  // The copies are async-proxy writes; order them before this thread's generic-proxy release.
  cp::fence_proxy_async(cp::space_global);
  // Every lane's rows are complete before lane 0 publishes; the warp barrier orders memory among
  // the lanes and the release below is cumulative over what lane 0 has observed.
  __syncwarp();
  if (lane == 0 && p.signals != nullptr) {
    uint32_t* counter = p.signals + p.layout.counter_index(tile.expert, tile.m_block);
    if (p.signal_sys_scope)
      ptx::red_release_sys_add(counter, 1);
    else
      ptx::red_release_gpu_add(counter, 1);
  }
}

}  // namespace signalgemm::kernels
