// Split K for launches with few tiles (host::plan_split_k): each tile's K blocks are cut into
// p.k_pieces ranges, each run by its own CTA as one unit of work. Every piece writes its fp32
// partial to the workspace and counts itself done; the piece that completes a tile's count sums
// all partials in piece order, so the result's bits never depend on which piece finished last,
// and only it stages, stores and signals the tile. Shared by the mainloops that split
// (mainloop_fp8_block128.cuh, mainloop_bf16.cuh, mainloop_register_weights.cuh).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/kernel_params.h"
#include "kernels/ptx.cuh"
#include "signalgemm/detail/tile_schedule.h"

namespace signalgemm::kernels {

// The K blocks of a piece: [split_k_begin(p, piece), split_k_begin(p, piece + 1)).
__device__ __forceinline__ int split_k_begin(const KernelParams& p, int piece) {
  return piece * p.num_k_blocks / p.k_pieces;
}

// Every MMA thread after its piece's K loop: writes this piece's partial (alpha not yet applied) to
// the tile's slot and counts the piece done. Returns true in every MMA thread of the piece that
// completes the count, which then holds the sum of all pieces in acc; false elsewhere.
// `last_word`: a shared word for the MMA threads' broadcast (read by them only, between the piece
// barriers).
template <int kSlices, int kAccRegs>
__device__ bool publish_piece(float (&acc)[kSlices][kAccRegs], const KernelParams& p, const detail::Tile& tile,
                              int piece, volatile uint32_t* last_word) {
  constexpr int kRegs = kSlices * kAccRegs;
  const int thread = threadIdx.x;  // < kMathThreads
  const int slot =
      (tile.expert * p.layout.row_blocks_per_expert() + tile.m_block) * p.layout.col_blocks() + tile.n_block;
  float* const partials = p.piece_partials + size_t(slot) * p.k_pieces * kRegs * kMathThreads;
  // [piece][register][thread]: consecutive threads write consecutive words.
#pragma unroll
  for (int r = 0; r < kRegs; ++r)
    partials[(size_t(piece) * kRegs + r) * kMathThreads + thread] = acc[r / kAccRegs][r % kAccRegs];
  // Every MMA thread's partial is written before thread 0 counts the piece; its release at GPU
  // scope is cumulative over them (the barrier orders them before it). Its acquire, when it
  // completes the count, orders the other pieces' partials (released the same way) before the
  // reads below, which the second barrier extends to every MMA thread.
  ptx::named_barrier_sync(kPieceBarrier, kMathThreads);
  if (thread == 0) {
    uint32_t before;
    asm volatile("atom.acq_rel.gpu.global.add.u32 %0, [%1], 1;" : "=r"(before) : "l"(p.piece_counters + slot) : "memory");
    *last_word = before + 1 == uint32_t(p.k_pieces) ? 1u : 0u;
  }
  ptx::named_barrier_sync(kPieceBarrier, kMathThreads);
  if (*last_word == 0) return false;
  // Sum the pieces in piece order, this thread's own partial read back too (its own writes): all
  // of a piece's words are loaded before any is added, so their L2 round trips overlap (with one
  // load per add in a single chain, a 4-piece tile took as long as the unsplit one).
#pragma unroll 1
  for (int q = 0; q < p.k_pieces; ++q) {
    const float* piece_partial = partials + size_t(q) * kRegs * kMathThreads + thread;
    float loaded[kRegs];
#pragma unroll
    for (int r = 0; r < kRegs; ++r) loaded[r] = __ldcg(piece_partial + r * kMathThreads);  // L2: other SMs wrote them
#pragma unroll
    for (int r = 0; r < kRegs; ++r) {
      float& sum = acc[r / kAccRegs][r % kAccRegs];
      sum = q == 0 ? loaded[r] : sum + loaded[r];
    }
  }
  return true;
}

}  // namespace signalgemm::kernels
