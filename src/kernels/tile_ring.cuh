// The tiles of one CTA, handed from the producer thread to every other role.
//
// The producer thread alone decides which tile comes next: in schedule order (scheduler.cuh) or,
// with a tile counter in global memory, by taking the next tile of the whole grid with one atomic
// (dynamic scheduling: a CTA that finished early takes more). It publishes each tile in a small
// ring in shared memory; the MMA warps, the storer warp and the signaler thread take them in
// order. Slot i has two mbarriers: full[i] (the producer's arrive, release: the slot's words are
// written) and empty[i] (one arrive per consuming warp once it has read them). A sentinel tile
// (expert < 0) ends the sequence.
//
// The slot words are written and read with shared-memory atomics: the mbarriers already order
// them, but compute-sanitizer's racecheck does not follow mbarrier phases and would report plain
// accesses as hazards. It costs five atomics per tile and consumer warp.
#pragma once

#include <cuda/ptx>

#include "kernels/kernel_params.h"
#include "kernels/pipeline.cuh"
#include "signalgemm/detail/tile_schedule.h"

namespace signalgemm::kernels {

struct TileRingSlot {
  int expert;  // < 0: no more tiles
  int m_block;
  int n_block;
  int first_row;
  int rows_and_flags;  // rows | has_tile << kHasTileShift | share << kShareShift
};

// rows is at most block_m (< 512: grouped_gemm_kernel.cuh asserts it).
constexpr int kHasTileShift = 9, kShareShift = 10;

__device__ __forceinline__ int pack_rows_and_flags(const detail::ClusterWork& work) {
  return work.tile.rows | (work.has_tile ? 1 << kHasTileShift : 0) | (static_cast<int>(work.share) << kShareShift);
}

__device__ __forceinline__ void unpack_rows_and_flags(int word, detail::ClusterWork& work) {
  work.tile.rows = word & ((1 << kHasTileShift) - 1);
  work.has_tile = (word >> kHasTileShift) & 1;
  work.share = static_cast<detail::ClusterShare>(word >> kShareShift);
}

// Shared-memory layout: slots, then full[kTileRingSlots], then empty[kTileRingSlots].
struct TileRing {
  TileRingSlot* slots;
  uint64_t* full;
  uint64_t* empty;

  static_assert(kTileRingSlots * (sizeof(TileRingSlot) + 2 * sizeof(uint64_t)) == kTileRingBytes,
                "SmemPlan reserves kTileRingBytes");

  __device__ explicit TileRing(uint8_t* base)
      : slots(reinterpret_cast<TileRingSlot*>(base)),
        full(reinterpret_cast<uint64_t*>(base + kTileRingSlots * sizeof(TileRingSlot))),
        empty(full + kTileRingSlots) {}

  // One thread, before the CTA's first barrier: `consumer_warps` arrive on each empty barrier.
  __device__ void init(int consumer_warps) const {
    for (int i = 0; i < kTileRingSlots; ++i) {
      cuda::ptx::mbarrier_init(&full[i], 1);
      cuda::ptx::mbarrier_init(&empty[i], consumer_warps);
    }
  }
};

// The position of one role in the ring. (PipelineState with kTileRingSlots stages would do the same,
// but its run-time count made ptxas serialize the wgmmas of three fp8 x nvfp4 kernels: C7511.)
struct TileRingCursor {
  int slot = 0;
  uint32_t phase = 0;
  __device__ __forceinline__ void advance() {
    if (++slot == kTileRingSlots) {
      slot = 0;
      phase ^= 1;
    }
  }
};

// Producer thread: publishes `work` (or the end, when `end`) once every consumer has read the
// slot's previous tile.
__device__ __forceinline__ void tile_ring_put(const TileRing& ring, TileRingCursor& cursor,
                                              const detail::ClusterWork& work, bool end) {
  mbarrier_wait(&ring.empty[cursor.slot], cursor.phase ^ 1);  // the first lap passes (as arm_stage)
  TileRingSlot* slot = &ring.slots[cursor.slot];
  atomicExch(&slot->expert, end ? -1 : work.tile.expert);
  atomicExch(&slot->m_block, work.tile.m_block);
  atomicExch(&slot->n_block, work.tile.n_block);
  atomicExch(&slot->first_row, work.tile.first_row);
  atomicExch(&slot->rows_and_flags, pack_rows_and_flags(work));
  // Release (CTA scope): the words above before the phase completes for the consumers' acquire.
  cuda::ptx::mbarrier_arrive(&ring.full[cursor.slot]);
  cursor.advance();
}

// One consuming warp (every lane calls it; lane 0 reads and broadcasts). Returns false at the end.
__device__ __forceinline__ bool tile_ring_take(const TileRing& ring, TileRingCursor& cursor,
                                               detail::ClusterWork& work, int lane) {
  mbarrier_wait(&ring.full[cursor.slot], cursor.phase);  // acquire: the producer's words
  int4 words = make_int4(0, 0, 0, 0);
  int first_row = 0;
  if (lane == 0) {
    TileRingSlot* slot = &ring.slots[cursor.slot];
    words = make_int4(atomicAdd(&slot->expert, 0), atomicAdd(&slot->m_block, 0), atomicAdd(&slot->n_block, 0),
                      atomicAdd(&slot->rows_and_flags, 0));
    first_row = atomicAdd(&slot->first_row, 0);
    // This warp has read the slot: the producer may refill it. The lanes left the wait above
    // together (one barrier, one phase, one try_wait per poll), so none still polls this phase when
    // a refill completes the next one. (Freeing it after the shuffles, or waiting in lane 0 alone,
    // tipped ptxas into serializing the register-weights kernels' wgmmas: session 56.)
    cuda::ptx::mbarrier_arrive(&ring.empty[cursor.slot]);
  }
  words.x = __shfl_sync(0xffffffffu, words.x, 0);
  words.y = __shfl_sync(0xffffffffu, words.y, 0);
  words.z = __shfl_sync(0xffffffffu, words.z, 0);
  words.w = __shfl_sync(0xffffffffu, words.w, 0);
  first_row = __shfl_sync(0xffffffffu, first_row, 0);
  cursor.advance();
  if (words.x < 0) return false;
  work.tile.expert = words.x;
  work.tile.m_block = words.y;
  work.tile.n_block = words.z;
  work.tile.first_row = first_row;
  unpack_rows_and_flags(words.w, work);
  return true;
}

// The same for a single thread (the signaler).
__device__ __forceinline__ bool tile_ring_take_thread(const TileRing& ring, TileRingCursor& cursor,
                                                      detail::ClusterWork& work) {
  mbarrier_wait(&ring.full[cursor.slot], cursor.phase);
  TileRingSlot* slot = &ring.slots[cursor.slot];
  const int expert = atomicAdd(&slot->expert, 0);
  work.tile.expert = expert;
  work.tile.m_block = atomicAdd(&slot->m_block, 0);
  work.tile.n_block = atomicAdd(&slot->n_block, 0);
  work.tile.first_row = atomicAdd(&slot->first_row, 0);
  const int w = atomicAdd(&slot->rows_and_flags, 0);
  cuda::ptx::mbarrier_arrive(&ring.empty[cursor.slot]);
  cursor.advance();
  unpack_rows_and_flags(w, work);
  return expert >= 0;
}

// The tiles of this CTA as the storer warp (kWarp) or the signaler thread see them: a cluster
// unit's missing tile, which the MMA warps pass through to keep the stages in step, is skipped.
template <bool kWarp>
struct RingTiles {
  TileRing ring;
  int lane = 0;
  TileRingCursor cursor;
  __device__ bool next(detail::Tile& tile) {
    detail::ClusterWork work;
    while (kWarp ? tile_ring_take(ring, cursor, work, lane) : tile_ring_take_thread(ring, cursor, work))
      if (work.has_tile) {
        tile = work.tile;
        return true;
      }
    return false;
  }
};

}  // namespace signalgemm::kernels
