// The persistent, warp-specialized masked grouped GEMM, for one operand format's mainloop
// (mainloop_fp8_block128.cuh, mainloop_fp8_token_rows.cuh, mainloop_bf16.cuh, mainloop_register_weights.cuh,
// mainloop_dequant_bf16.cuh).
//
// Warpgroups 0..kMathWarpgroups-1 run the MMAs and stage each finished tile in shared memory; in
// the last warpgroup one thread issues every TMA load, the next warp (the storer) scans masked_m
// for out-of-range values, then stores each staged tile and publishes its signal (system-scope
// signals through one thread of the warp after that, epilogue_signal.cuh).
// The producer thread picks the tiles (scheduler.cuh: in order, or from a grid-wide counter) and
// hands each to the other roles through the tile ring (tile_ring.cuh); beyond that they coordinate
// only through the stage barriers of pipeline.cuh and the staging hand-over of epilogue_signal.cuh.
// A mainloop with kCluster == 2 runs in two-CTA clusters that walk pairs of tiles sharing an
// operand (tile_schedule.h); the stage barriers then span both CTAs (pipeline.cuh).
#pragma once

#include <cuda.h>

#include <cuda/ptx>
#include <type_traits>

#include "kernels/epilogue_signal.cuh"
#include "kernels/kernel_params.h"
#include "kernels/pipeline.cuh"
#include "kernels/ptx.cuh"
#include "kernels/scheduler.cuh"
#include "kernels/split_k.cuh"
#include "kernels/tile_ring.cuh"

namespace signalgemm::kernels {

// Mainloops that can run in clusters declare kCluster and load a detail::ClusterWork; the others
// load a detail::Tile and run one CTA per cluster.
template <class Mainloop, class = void>
inline constexpr bool kLoadsClusterWork = false;
template <class Mainloop>
inline constexpr bool kLoadsClusterWork<Mainloop, std::void_t<decltype(Mainloop::kCluster)>> = true;
template <class Mainloop, class = void>
inline constexpr int kClusterOf = 1;
template <class Mainloop>
inline constexpr int kClusterOf<Mainloop, std::void_t<decltype(Mainloop::kCluster)>> = Mainloop::kCluster;

// Mainloops may also declare kStagingPerWarpgroup: each MMA warpgroup hands its share of a tile to
// the storer on its own (epilogue_signal.cuh). Default false.
template <class Mainloop, class = void>
inline constexpr bool kStagingPerWarpgroupOf = false;
template <class Mainloop>
inline constexpr bool kStagingPerWarpgroupOf<Mainloop, std::void_t<decltype(Mainloop::kStagingPerWarpgroup)>> =
    Mainloop::kStagingPerWarpgroup;

// Mainloops may declare kSplitK: each unit of work is one K range of a tile (split_k.cuh).
template <class Mainloop, class = void>
inline constexpr bool kSplitKOf = false;
template <class Mainloop>
inline constexpr bool kSplitKOf<Mainloop, std::void_t<decltype(Mainloop::kSplitK)>> = Mainloop::kSplitK;

// Mainloops may declare kTokenRows: their accumulators hold [token][weight] (tokens as the wgmma's
// M), staged without the transpose (epilogue_signal.cuh). Default false.
template <class Mainloop, class = void>
inline constexpr bool kTokenRowsOf = false;
template <class Mainloop>
inline constexpr bool kTokenRowsOf<Mainloop, std::void_t<decltype(Mainloop::kTokenRows)>> = Mainloop::kTokenRows;

// Mainloops may declare kFp16Output = false: their kernels round to bf16 only (the launcher never
// gives them fp16 output). Default true.
template <class Mainloop, class = void>
inline constexpr bool kFp16OutputOf = true;
template <class Mainloop>
inline constexpr bool kFp16OutputOf<Mainloop, std::void_t<decltype(Mainloop::kFp16Output)>> = Mainloop::kFp16Output;

// Every thread of both CTAs: orders what came before (barrier initialization, the last remote
// arrivals) before what the peer does after.
__device__ __forceinline__ void cluster_sync() {
  cuda::ptx::barrier_cluster_arrive(cuda::ptx::sem_release);
  cuda::ptx::barrier_cluster_wait(cuda::ptx::sem_acquire);
}

template <class Mainloop>
__global__ void __launch_bounds__(kThreads, 1)
    grouped_gemm_kernel(const __grid_constant__ CUtensorMap tmap_a,
                                     const __grid_constant__ CUtensorMap tmap_b,
                                     const __grid_constant__ CUtensorMap tmap_sfa,
                                     const __grid_constant__ CUtensorMap tmap_sfb,
                                     const __grid_constant__ CUtensorMap tmap_c,
                                     const __grid_constant__ KernelParams p) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int kBlockM = Mainloop::kBlockM;
  static_assert(kBlockM < (1 << kHasTileShift), "the tile ring packs a tile's rows in 9 bits");
  constexpr int kBlockN = Mainloop::kBlockN;
  constexpr int kCluster = kClusterOf<Mainloop>;
  namespace cp = cuda::ptx;

  extern __shared__ uint8_t smem_raw[];
  // 128-byte swizzled TMA tiles and their wgmma descriptors assume 1024-byte aligned tiles.
  uint8_t* smem = reinterpret_cast<uint8_t*>(
      (reinterpret_cast<uintptr_t>(smem_raw) + kSmemAlignment - 1) & ~uintptr_t(kSmemAlignment - 1));
  const SmemPlan plan = Mainloop::plan(p.stages);
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + plan.barrier_offset());
  uint64_t* empty = full + p.stages;
  uint32_t* tiles_stored = reinterpret_cast<uint32_t*>(empty + p.stages);  // storer -> signaler
  // Split K (no system-scope signals, so no signaler: plan_split_k in config.cpp never splits with
  // them, and this reuse of the signaler's word depends on it): the MMA threads' broadcast of a
  // piece's completion, and the word that tells the storer whether a piece staged its tile.
  volatile uint32_t* piece_last = tiles_stored + 1;
  uint32_t* piece_skip = tiles_stored;
  const TileRing ring(smem + plan.tile_ring_offset());

  const int warpgroup = threadIdx.x / 128;
  const int lane = threadIdx.x % 32;
  constexpr int kProducerThread = kMathThreads;

  if (threadIdx.x == kProducerThread) {
    for (int s = 0; s < p.stages; ++s) {
      cp::mbarrier_init(&full[s], 1);                   // the producer's arrive.expect_tx
      cp::mbarrier_init(&empty[s], kCluster * kMathThreads / 32);  // one arrive per MMA warp of the cluster
    }
    *tiles_stored = 0;
    // Every tile is read by the 8 MMA warps, the storer warp and, for system-scope signals, the signaler.
    const bool sys_signaler = p.signals != nullptr && p.signal_sys_scope;
    ring.init(kMathThreads / 32 + 1 + (sys_signaler ? 1 : 0));
    // The copy engine (async proxy) updates these barriers: make their initialization visible to it,
    // and in a cluster to the peer CTA, whose copies and arrivals may target them right away.
    cp::fence_proxy_async(cp::space_shared);
    if constexpr (kCluster > 1) cp::fence_mbarrier_init(cp::sem_release, cp::scope_cluster);
  }
  if constexpr (kCluster > 1)
    cluster_sync();
  else
    __syncthreads();
  // With programmatic dependent launch, the set-up above overlapped the previous kernel's tail;
  // nothing it writes may be read before this point. Without PDL this returns at once.
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
  // A kernel launched after this one with programmatic serialization (the combines) may now
  // start, on each SM this grid's CTAs leave. Its blocks must still take this kernel's output
  // through the signals or griddepcontrol.wait, which waits for this grid's completion. After the
  // wait above, not before: the combines read what kernels before this one wrote without a wait.
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");

  const int rank = kCluster > 1 ? static_cast<int>(cp::get_sreg_cluster_ctarank()) : 0;
  if (warpgroup == kMathWarpgroups) {
    ptx::setmaxnreg_dec<kProducerRegisters>();
    if (threadIdx.x == kProducerThread) {
      PipelineState pipe{0, 0, p.stages};
      TileRingCursor ring_cursor;
      detail::ClusterWork work;
      const auto publish_and_load = [&] {
        tile_ring_put(ring, ring_cursor, work, /*end=*/false);
        if constexpr (kLoadsClusterWork<Mainloop>)
          Mainloop::load_tile(&tmap_a, &tmap_b, &tmap_sfa, &tmap_sfb, smem, plan, full, empty, pipe, work, rank, p);
        else
          Mainloop::load_tile(&tmap_a, &tmap_b, &tmap_sfa, smem, plan, full, empty, pipe, work.tile, p.num_k_blocks);
      };
      if constexpr (kSplitKOf<Mainloop>) {
        // Split K: work item w is piece w % k_pieces of tile w / k_pieces; CTA c takes c, c + G, ...
        // (the MMA threads recompute the piece from the count of items taken).
        DeviceTileWalker tiles = make_tile_walker(p);
        work.has_tile = true;
        work.share = detail::ClusterShare::none;
        for (int item = blockIdx.x; tiles.at(item / p.k_pieces, work.tile); item += gridDim.x) {
          work.piece = item % p.k_pieces;
          tile_ring_put(ring, ring_cursor, work, /*end=*/false);
          Mainloop::load_piece(&tmap_a, &tmap_b, &tmap_sfa, &tmap_sfb, smem, plan, full, empty, pipe, work, p);
        }
      } else if (kCluster == 1 && p.tile_counter != nullptr) {
        // Dynamic: the grid's next tile, whichever CTA asks. Tiles are still numbered expert-major,
        // so experts finish in order. The ticket needs no ordering (masked_m is read-only), and the
        // next one is taken while this tile's loads are issued, off the MMA warps' path.
        DeviceTileWalker tiles = make_tile_walker(p);
        work.has_tile = true;
        work.share = detail::ClusterShare::none;
        uint32_t index = atomicAdd(p.tile_counter, 1u);
        while (tiles.at(static_cast<int>(index), work.tile)) {
          const uint32_t next_index = atomicAdd(p.tile_counter, 1u);
          publish_and_load();
          index = next_index;
        }
      } else {
        DeviceWorkWalker<kCluster> walker(p);
        while (walker.next(work)) publish_and_load();
      }
      tile_ring_put(ring, ring_cursor, work, /*end=*/true);
    } else if (threadIdx.x / 32 == kProducerThread / 32 + 1) {
      report_masked_m_out_of_range(p, lane);
      RingTiles</*kWarp=*/true> tiles{ring, lane};
      detail::Tile tile, next;
      for (bool have = tiles.next(tile); have; tile = next) {
        have = tiles.next(next);
        store_tile_and_signal<kBlockM, kBlockN, kStagingPerWarpgroupOf<Mainloop>>(
            p, &tmap_c, tile, tile.rows, have, smem + plan.staging_offset(), tiles_stored, lane,
            kSplitKOf<Mainloop> ? piece_skip : nullptr);
      }
    } else if (threadIdx.x == kProducerThread + 64) {
      RingTiles</*kWarp=*/false> tiles{ring};
      signal_stored_tiles(p, tiles, tiles_stored);
    }
  } else {
    ptx::setmaxnreg_inc<kMathRegisters>();
    PipelineState pipe{0, 0, p.stages};
    TileRingCursor ring_cursor;
    uint8_t* staging = smem + plan.staging_offset();
    detail::ClusterWork work;
    bool first_tile = true;
    int items_taken = 0;  // split K: the producer's item blockIdx.x + items_taken * gridDim.x
    while (tile_ring_take(ring, ring_cursor, work, lane)) {
      if (!work.has_tile) {
        pass_stages<kCluster>(full, empty, pipe, p.num_k_blocks, lane);
        continue;
      }
      const detail::Tile& tile = work.tile;
      const float alpha = p.alpha != nullptr ? __ldg(p.alpha + tile.expert) : 1.f;
      float acc[Mainloop::kSlices][Mainloop::kAccRegs];
      if constexpr (kSplitKOf<Mainloop>) {
        const int piece = (static_cast<int>(blockIdx.x) + items_taken++ * static_cast<int>(gridDim.x)) % p.k_pieces;
        Mainloop::mma_piece(acc, smem, plan, full, empty, pipe, p, tile, piece, warpgroup, lane);
        const bool last = publish_piece(acc, p, tile, piece, piece_last);
        hand_over_skip<kStagingPerWarpgroupOf<Mainloop>>(piece_skip, !last, first_tile, threadIdx.x);
        if (last)
          stage_tile<kBlockM, kBlockN, Mainloop::kSlices, kStagingPerWarpgroupOf<Mainloop>>(
              acc, alpha, first_tile, staging, p.out_boxes, kFp16OutputOf<Mainloop> && p.out_fp16, threadIdx.x,
              /*free_waited=*/true);
      } else {
        Mainloop::mma_tile(acc, smem, plan, full, empty, pipe, p, tile, warpgroup, lane);
        if constexpr (kTokenRowsOf<Mainloop>)
          stage_token_rows_tile<kBlockN, kStagingPerWarpgroupOf<Mainloop>>(
              acc[0], alpha, first_tile, staging, p.out_boxes, kFp16OutputOf<Mainloop> && p.out_fp16, threadIdx.x);
        else
          stage_tile<kBlockM, kBlockN, Mainloop::kSlices, kStagingPerWarpgroupOf<Mainloop>>(
              acc, alpha, first_tile, staging, p.out_boxes, kFp16OutputOf<Mainloop> && p.out_fp16, threadIdx.x);
      }
      first_tile = false;
    }
  }
  // A CTA's shared memory must outlive the peer's last multicast into it and last arrival on it.
  if constexpr (kCluster > 1) cluster_sync();
#endif
}

}  // namespace signalgemm::kernels
