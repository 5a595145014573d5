// Epilogue: write one tile of C and publish its completion signal (SPEC §3).
//
// Two roles share one shared-memory staging tile, handed over with two named barriers (or, with
// kPerWarpgroup, one pair per MMA warpgroup: each stages its own columns, so the one that finishes
// its share of a tile first stages it and starts the next tile without waiting for the other: the fp8
// kernel, 0.5-1.7% faster at E = 8 on the H100, 2026-11-27):
//   MMA warpgroups (stage_tile):
//     1. wait until the staging tile is free (the storer has finished reading the previous tile);
//     2. write alpha * acc as bf16 (or fp16, KernelParams::out_fp16), transposed back to C's row-major
//        [token][column] order (the MMA computed C^T);
//     3. fence.proxy.async.shared::cta, then arrive on "staging full" and go on to the next tile:
//        the MMA warps never wait for global memory.
//   Storer warp (store_tile_and_signal, in the producer warpgroup):
//     4. wait for "staging full"; store the real token rows (rows >= masked_m are never written):
//        one bulk copy per row, or in boxes (StagingLayout, kernel_params.h); commit_group;
//        wait_group.read 0, then arrive on "staging free";
//     5. wait_group 0: the global writes are complete, not merely read from shared memory;
//     6. fence.proxy.async.global: SPEC §3's recipe (the PTX ISA also makes a bulk copy's observed
//        completion imply a generic-async proxy fence, so this one states the intent);
//     7. __syncwarp, then lane 0 does red.release.gpu.add on the tile's counter; or, for system-scope
//        signals, counts the tile stored in shared memory (red.release.cta) for the signaler:
//   Signaler (signal_stored_tiles, one thread of the next warp; system scope only), polling that count:
//     8. acquire that count; one fence.acq_rel.sys for the batch of tiles stored since the last one;
//     9. red.relaxed.sys.add on each of those tiles' counters (fence + relaxed add = release).
// So a signal trails its tile's stores by the store latency alone and costs the MMAs nothing. The
// system-scope fence waits for the SM's NVLink writes to be acknowledged (~1 us): on the storer it
// cost the epilogue-send GEMM 7% at E=32, m=128; a signaler for GPU scope cost the fp8 kernel ~1%.
#pragma once

#include <cuda.h>

#include <cuda/ptx>

#include "kernels/kernel_params.h"
#include "kernels/ptx.cuh"
#include "signalgemm/detail/tile_schedule.h"

namespace signalgemm::kernels {

// The staging hand-over: the MMA threads and the storer warp meet at the "staging full" and
// "staging free" barriers, all of them at one pair, or (kPerWarpgroup) each MMA warpgroup with the
// storer at its own pair.
template <bool kPerWarpgroup>
struct StagingBarriers {
  static constexpr int kThreads = (kPerWarpgroup ? 128 : kMathThreads) + 32;
  static constexpr int kPairs = kPerWarpgroup ? kMathWarpgroups : 1;
  __device__ static int full(int pair) {
    return kPerWarpgroup ? kWarpgroupStagingFullBarrier + pair : kStagingFullBarrier;
  }
  __device__ static int free(int pair) {
    return kPerWarpgroup ? kWarpgroupStagingFreeBarrier + pair : kStagingFreeBarrier;
  }
};

// Split-K kernels hand the storer every piece of a tile, staged or not: math thread 0 writes this
// word (1: nothing staged, skip) after its warpgroup's "staging free" wait, which is after the
// storer read the word for the previous tile, and before its "staging full" arrival, which the
// storer waits for before reading it. The barriers order the two; the accesses are atomics so that
// compute-sanitizer's racecheck, which does not follow bar.arrive, sees them as ordered too.
template <bool kPerWarpgroup>
__device__ __forceinline__ void hand_over_skip(uint32_t* skip_word, bool skip, bool first_tile, int math_thread) {
  using Barriers = StagingBarriers<kPerWarpgroup>;
  const int pair = kPerWarpgroup ? math_thread / 128 : 0;
  if (!first_tile) ptx::named_barrier_sync(Barriers::free(pair), Barriers::kThreads);
  if (math_thread == 0) ptx::atom_release_cta_shared_store(skip_word, skip ? 1u : 0u);
  if (skip) ptx::named_barrier_arrive(Barriers::full(pair), Barriers::kThreads);
}

// `out_boxes`: KernelParams::out_boxes (the layout, StagingLayout); `out_fp16`: KernelParams::out_fp16.
// `free_waited` (split-K kernels): hand_over_skip has already waited for "staging free".
template <int kBlockM, int kBlockN, int kSlices, bool kPerWarpgroup>
__device__ __forceinline__ void stage_tile(const float (&acc)[kSlices][kBlockM / 2], float alpha, bool first_tile,
                                           uint8_t* staging, bool out_boxes, bool out_fp16, int math_thread,
                                           bool free_waited = false) {
  namespace cp = cuda::ptx;
  using Barriers = StagingBarriers<kPerWarpgroup>;
  constexpr int kTokenGroups = kBlockM / 8;
  constexpr int kWarpgroupRows = kBlockN / kMathWarpgroups;
  constexpr int kPitch = SmemPlan::staging_pitch(kBlockN);
  const int lane = math_thread % 32;
  const int warp = math_thread / 32;  // 0..7
  const int pair = kPerWarpgroup ? warp / 4 : 0;

  // The storer arrives here once it has read the previous tile out of the staging buffer.
  if (!first_tile && !free_waited) ptx::named_barrier_sync(Barriers::free(pair), Barriers::kThreads);

  // Thread (warp, lane) holds, per slice, weight rows r and r+8 for token pairs (c, c+1),
  // c = 8j + 2(lane%4); C's element (token, row) goes to staging[token][row]. Shared-window
  // addresses (32-bit) keep all stores at constant offsets from one register.
  if constexpr (kBlockM >= 64) {
    // Per 8 tokens j and row half h this is one 8x8 MMA fragment (rows 16(warp%4) + 8h.., tokens
    // 8j..) once a token pair is packed into two 16-bit values; stmatrix.trans stores four of them as
    // C's [token][row] (8 rows = 16 contiguous bytes per token) in one instruction, against 16 scalar
    // stores and 8 more conversions (E8 m1024 7168x2048: 2% faster on the H100, 2026-11-26). Lane l
    // gives the address of token row l % 8 of matrix l / 8 (j = 2p + (l / 8) / 2, h = (l / 8) % 2).
    static_assert(kTokenGroups % 2 == 0, "stmatrix x4 covers two groups of 8 tokens");
    const StagingLayout<kBlockM, kBlockN> layout(out_boxes);
    const int matrix = lane / 8;
    const int first_row = (warp / 4) * kWarpgroupRows + 16 * (warp % 4) + 8 * (matrix % 2);
    const int first_token = 8 * (matrix / 2) + lane % 8;
    const uint32_t staging_base = static_cast<uint32_t>(__cvta_generic_to_shared(staging));
#pragma unroll
    for (int slice = 0; slice < kSlices; ++slice)
#pragma unroll
      for (int p = 0; p < kTokenGroups / 2; ++p) {
        const float* a = &acc[slice][8 * p];  // token groups j = 2p and 2p + 1
        ptx::stmatrix_x4_trans(staging_base + layout.offset(first_token + 16 * p, first_row / 8 + 8 * slice),
                               ptx::pack_output_pair(alpha * a[0], alpha * a[1], out_fp16),
                               ptx::pack_output_pair(alpha * a[2], alpha * a[3], out_fp16),
                               ptx::pack_output_pair(alpha * a[4], alpha * a[5], out_fp16),
                               ptx::pack_output_pair(alpha * a[6], alpha * a[7], out_fp16));
      }
  } else {
    // The decode tiles (32 and 48 tokens) store element by element: their epilogue is a small part
    // of a tile, and with the stmatrix form ptxas scheduled the 48x256 register-weights kernel's
    // K loop differently, 3% slower at E32 m32 (H100, 2026-11-26).
    const int first_row = (warp / 4) * kWarpgroupRows + 16 * (warp % 4) + lane / 4;
    const uint32_t thread_base =
        static_cast<uint32_t>(__cvta_generic_to_shared(staging)) + first_row * 2 + 2 * (lane % 4) * kPitch;
#pragma unroll
    for (int slice = 0; slice < kSlices; ++slice)
#pragma unroll
      for (int j = 0; j < kTokenGroups; ++j) {
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const uint32_t addr = thread_base + 8 * j * kPitch + (64 * slice + 8 * half) * 2;
          ptx::st_shared_b16(addr, ptx::output_bits(alpha * acc[slice][4 * j + 2 * half], out_fp16));
          ptx::st_shared_b16(addr + kPitch, ptx::output_bits(alpha * acc[slice][4 * j + 2 * half + 1], out_fp16));
        }
      }
  }
  // Generic-proxy writes to shared memory become visible to the async proxy (the bulk copy engine)
  // only through a proxy fence by each writing thread, ordered before the barrier.
  cp::fence_proxy_async(cp::space_shared);
  ptx::named_barrier_arrive(Barriers::full(pair), Barriers::kThreads);
}

// The same for accumulators that hold C's own [token][weight] order (tokens as the wgmma's M,
// mainloop_fp8_token_rows.cuh): thread (warp, lane) holds tokens 16 warp + lane / 4 (+ 8) and column
// pairs 8j + 2 (lane % 4); per j and row half h that is one 8x8 MMA fragment, which stmatrix
// stores as 8 rows of 16 bytes, four fragments per instruction (token groups h = 0, 1 of column
// groups j and j + 1). Lane l gives the row address of row l % 8 of fragment l / 8. The 16-byte row
// padding (or the boxes' swizzle) puts a fragment's 8 rows on distinct banks.
template <int kBlockN, bool kPerWarpgroup>
__device__ __forceinline__ void stage_token_rows_tile(const float (&acc)[kBlockN / 2], float alpha, bool first_tile,
                                                      uint8_t* staging, bool out_boxes, bool out_fp16,
                                                      int math_thread) {
  namespace cp = cuda::ptx;
  using Barriers = StagingBarriers<kPerWarpgroup>;
  static_assert(kBlockN % 16 == 0, "stmatrix x4 covers two column groups of 8");
  const StagingLayout<kMathWarpgroups * 64, kBlockN> layout(out_boxes);
  const int lane = math_thread % 32;
  const int warp = math_thread / 32;  // 0..7: warpgroup warp / 4 holds tokens 64 (warp / 4)..
  const int pair = kPerWarpgroup ? warp / 4 : 0;
  if (!first_tile) ptx::named_barrier_sync(Barriers::free(pair), Barriers::kThreads);
  const int fragment = lane / 8;
  const int row = 16 * warp + 8 * (fragment % 2) + lane % 8;
  const uint32_t staging_base = static_cast<uint32_t>(__cvta_generic_to_shared(staging));
#pragma unroll
  for (int p = 0; p < kBlockN / 16; ++p) {
    const float* a = &acc[8 * p];  // column groups j = 2p and 2p + 1
    ptx::stmatrix_x4(staging_base + layout.offset(row, 2 * p + fragment / 2),
                     ptx::pack_output_pair(alpha * a[0], alpha * a[1], out_fp16),
                     ptx::pack_output_pair(alpha * a[2], alpha * a[3], out_fp16),
                     ptx::pack_output_pair(alpha * a[4], alpha * a[5], out_fp16),
                     ptx::pack_output_pair(alpha * a[6], alpha * a[7], out_fp16));
  }
  // As in stage_tile: the writes reach the bulk copy engine through a proxy fence, then the barrier.
  cp::fence_proxy_async(cp::space_shared);
  ptx::named_barrier_arrive(Barriers::full(pair), Barriers::kThreads);
}

// The storer warp's part for one tile; `more_tiles` says whether the MMA threads will stage
// another tile (they then wait for "staging free").
// `skip_word` (split-K kernels): the MMA threads' hand_over_skip word; a piece that staged nothing
// is neither stored nor signalled.
// `tmap_c`: C's tensor map (16-bit elements [E][max_m][N], 64 x 8 x 1 boxes, 128-byte swizzle) where
// KernelParams::out_boxes is set.
template <int kBlockM, int kBlockN, bool kPerWarpgroup>
__device__ __forceinline__ void store_tile_and_signal(const KernelParams& p, const CUtensorMap* tmap_c,
                                                      const detail::Tile& tile, int valid_rows, bool more_tiles,
                                                      const uint8_t* staging, uint32_t* tiles_stored, int lane,
                                                      uint32_t* skip_word = nullptr) {
  namespace cp = cuda::ptx;
  using Barriers = StagingBarriers<kPerWarpgroup>;
  const StagingLayout<kBlockM, kBlockN> layout(p.out_boxes);
#pragma unroll
  for (int pair = 0; pair < Barriers::kPairs; ++pair)
    ptx::named_barrier_sync(Barriers::full(pair), Barriers::kThreads);
  if (skip_word != nullptr && ptx::atom_acquire_cta_shared_load(skip_word) != 0) {
    if (more_tiles) {
#pragma unroll
      for (int pair = 0; pair < Barriers::kPairs; ++pair)
        ptx::named_barrier_arrive(Barriers::free(pair), Barriers::kThreads);
    }
    return;
  }

  const int column0 = tile.n_block * kBlockN;
  const int columns = min(kBlockN, p.layout.n - column0);
  uint8_t* out_tile = static_cast<uint8_t*>(p.out) + tile.expert * p.out_expert_stride +
                      int64_t(tile.first_row) * p.out_row_stride + int64_t(column0) * 2;
  if (layout.boxes) {
    // The whole 8-row groups as 64 x 8 boxes (TMA clips columns past N), chunk-major so that the
    // lanes' first copies cover the first rows.
    const int groups = valid_rows / 8;
    const int chunks = (columns + 63) / 64;
    for (int job = lane; job < groups * chunks; job += 32) {
      const int chunk = job % chunks, group = job / chunks;
      const int32_t coords[3] = {column0 + 64 * chunk, tile.first_row + 8 * group, tile.expert};
      cp::cp_async_bulk_tensor(cp::space_global, cp::space_shared, tmap_c, coords,
                               staging + layout.offset(8 * group, 8 * chunk));  // the box's first row and unit
    }
    // The last valid_rows % 8 rows, 16 bytes at a time with ordinary loads and stores (at most 7
    // rows: a box would write rows past masked_m).
    const int units = columns / 8;
    const int first_rest = 8 * groups;
    for (int job = lane; job < (valid_rows - first_rest) * units; job += 32) {
      const int row = first_rest + job / units, unit = job % units;
      *reinterpret_cast<uint4*>(out_tile + row * p.out_row_stride + unit * 16) =
          *reinterpret_cast<const uint4*>(staging + layout.offset(row, unit));
    }
  } else {
    for (int row = lane; row < valid_rows; row += 32) {
      uint8_t* dst = out_tile + row * p.out_row_stride;
      if (p.out_rows != nullptr) {
        dst = static_cast<uint8_t*>(p.out_rows[int64_t(tile.expert) * p.layout.max_m + tile.first_row + row]);
        if (dst == nullptr) continue;
        dst += int64_t(column0) * 2;
      }
      cp::cp_async_bulk(cp::space_global, cp::space_shared, dst, staging + layout.offset(row, 0),
                        static_cast<uint32_t>(columns * 2));
    }
  }
  cp::cp_async_bulk_commit_group();
  // Shared memory has been read: the MMA threads may stage the next tile while the writes land.
  cp::cp_async_bulk_wait_group_read(cp::n32_t<0>());
  __syncwarp();
  if (more_tiles) {
#pragma unroll
    for (int pair = 0; pair < Barriers::kPairs; ++pair)
      ptx::named_barrier_arrive(Barriers::free(pair), Barriers::kThreads);
  }

  // Full completion (not .read): the signal below promises the writes are done.
  cp::cp_async_bulk_wait_group(cp::n32_t<0>());
  // The copies are async-proxy writes, ordered before this thread's generic-proxy release. The
  // completion observed above already implies that (PTX ISA, async proxy); the explicit fence is
  // SPEC §3's recipe and states the intent.
  cp::fence_proxy_async(cp::space_global);
  // Every lane's rows (copies, and the stores of a box layout's last rows) are complete before
  // lane 0 publishes; the warp barrier orders memory among the lanes and the release below is
  // cumulative over what lane 0 has observed.
  __syncwarp();
  if (lane != 0 || p.signals == nullptr) return;
  if (p.signal_sys_scope) {
    // Hand the tile to the signaler (CTA scope: it acquires this count before its fence).
    ptx::red_release_cta_shared_add(tiles_stored, 1);
  } else {
    // A GPU-scope release is cheap: publish here (the signaler would cost the fp8 kernel ~1%).
    ptx::red_release_gpu_add(p.signals + p.layout.counter_index(tile.expert, tile.m_block), 1);
  }
}

// The signaler (one thread) of system-scope signals: bumps each stored tile's counter in the
// storer's order. The system-scope fence is the expensive part (it waits for this SM's writes over
// NVLink to be acknowledged, ~1 us): it runs here, off the storer's path, once for all tiles stored
// since the last one.
template <class CtaTiles>
__device__ __forceinline__ void signal_stored_tiles(const KernelParams& p, CtaTiles& tiles, uint32_t* tiles_stored) {
  if (p.signals == nullptr || !p.signal_sys_scope) return;
  uint32_t fenced = 0;  // tiles stored and ordered before this thread's last fence
  detail::Tile tile;
  for (uint32_t index = 0; tiles.next(tile); ++index) {
    if (index >= fenced) {
      // Poll with a back-off: while the MMAs of the next tile run (microseconds) the thread
      // mostly sleeps and takes no issue slots from the MMA warps sharing its scheduler (polling
      // every 64 ns cost the fp8 kernel ~1% at E = 8). An mbarrier doorbell would sleep in
      // hardware, but synccheck rejects arrivals on a phase nobody waits for.
      uint32_t stored;
      for (unsigned sleep_ns = 32; (stored = ptx::atom_acquire_cta_shared_load(tiles_stored)) <= index;
           sleep_ns = min(2 * sleep_ns, 512u))
        __nanosleep(sleep_ns);
      // Acquired above (CTA scope) from the storer's release: its completed writes now precede
      // this fence, which with the relaxed adds below forms a release at system scope.
      ptx::fence_acq_rel_sys();
      fenced = stored;
    }
    ptx::red_relaxed_sys_add(p.signals + p.layout.counter_index(tile.expert, tile.m_block), 1);
  }
}

}  // namespace signalgemm::kernels
