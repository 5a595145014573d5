// The multi-GPU combine (include/signalgemm/ep_combine.h): send phase driven by this rank's GEMM
// signals, storing rows into the owners' NCCL receive windows; deterministic reduce of the rows
// this rank's tokens received. Docs: docs/multigpu.md.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <nccl.h>
#include <nccl_device.h>

#include <cub/block/block_scan.cuh>
#include <cuda/ptx>

#include <algorithm>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "consumer/combine_args.h"
#include "consumer/combine_device.cuh"
#include "consumer/ep_combine_testing.h"
#include "host/devices.h"
#include "signalgemm/combine.h"
#include "signalgemm/consumer.cuh"
#include "signalgemm/ep_combine.h"

#if NCCL_VERSION_CODE < NCCL_VERSION(2, 28, 0)
#error "the multi-GPU combine needs NCCL 2.28 or newer (device API)"
#endif

namespace signalgemm {

// Receive window of one rank (the same layout on every rank: symmetric memory):
//   [0, 128)                   header: uint32 reduced_epoch (the last epoch whose reduce finished here)
//   counters[2][16384]         epilogue-send mode: this rank's GEMM counters, one per local expert
//   expected[2][16384]         epilogue-send mode: the values those counters reach (this rank's
//                              masked_m through its own tile), read by the owners' reduce
//   per half h = 0, 1:
//     flags[slots]             uint32 per token slot: the epoch of the row last published there
//     local_row[slots]         int32: for a slot served by this rank's own GEMM, e * max_m + row of
//                              gemm_out (such rows are read in place, never copied)
//   rows[2][slots][N]          (from a 4096-byte boundary) bf16 rows from other ranks (in the
//                              epilogue-send mode all rows), one per token slot (t * topk + k)
// [2], h: halves by epoch parity; each array 256-byte aligned (ep_combine_create).
struct EpCombineContext {
  ncclComm_t comm = nullptr;
  int rank = 0, num_ranks = 0, device = 0;
  EpCombineConfig config;
  void* window_memory = nullptr;  // as ncclMemAlloc returned it: set-up and tear-down only
  void* window_local = nullptr;   // the same memory as the kernels reach it (ncclGetLocalPointer)
  size_t window_bytes = 0;
  ncclWindow_t window = nullptr;
  ncclDevComm dev_comm{};
  bool dev_comm_created = false;
  int chunks = 0;  // per row
  size_t flags_offset[2] = {}, local_row_offset[2] = {}, rows_offset[2] = {};
  // Epilogue-send mode: the owned tokens' slots {t * topk + k, global expert} in the order the
  // reduce takes them (written by the prepare kernel; local memory, one combine at a time).
  int2* reduce_slots = nullptr;  // [max_tokens_per_rank * topk]
  // Host side: the epoch and call of the last launch enqueued here, for the check that epochs count
  // up by one and that an epilogue-send combine runs prepare, then reduce (check_sequence). The
  // window's gate starts at 0, so the first combine is epoch 1.
  enum class Call { none, combine, prepare, reduce };
  mutable uint32_t last_epoch = 0;
  mutable Call last_call = Call::none;
};

namespace {

using detail::copy_vectors;
using detail::globaltimer;
using detail::take_warp_item;

// One block per SM: two blocks of 768 threads at <= 80 registers exceed the register file, so a
// launch of B blocks beside the GEMM occupies B SMs and the GEMM's CTAs fit on the rest. Work is
// taken per warp (24 per SM).
constexpr int kThreads = 768;
// The epilogue-send reduce runs alone on the SMs the GEMM leaves (one block per SM, <= 64
// registers): 1024 threads cover a 7168-column row's 896 vectors in one round of loads.
constexpr int kReduceThreads = 1024;
constexpr int kDefaultBlocks = 8;
constexpr int kMaxRanks = 64;
using detail::kMaxTopk;
using detail::kReduceTokens;
// While the GEMM runs, a warp sends a whole row per item: few items, each with many bytes in
// flight. The rows of the last experts, which complete together at the GEMM's end, are sent one
// chunk (<= 2 KB, 4 vectors of 16 bytes per lane) per item, so every SM of the full-chip launch
// takes part. The reduce is per block (a group of up to kReduceTokens tokens, detail::sum_token_group).
constexpr int kMaxChunkVectors = 128;
constexpr int kChunkVectorsPerLane = kMaxChunkVectors / 32;
constexpr int kRowVectorsPerLane = 8;  // in flight per lane in a whole-row copy
constexpr size_t kHeaderBytes = 128;
// Rows sent from the GEMM's epilogue: per half, the GEMM's per-expert counters and the values they
// reach, read by the owners' reduce. The producer computes those values with its own tile, so an
// owner never needs to know which tile a peer's GEMM took.
constexpr int kEpilogueExperts = 16384;
constexpr size_t kEpilogueCountersOffset = kHeaderBytes;
constexpr size_t kEpilogueExpectedOffset = kEpilogueCountersOffset + 2 * kEpilogueExperts * 4;
constexpr size_t kReducedEpochOffset = 0;
// The expected value published by a prepare whose wait for the peers timed out: the half is
// unusable for this epoch (no counter reaches 2^31: validation bounds the tiles far below).
constexpr uint32_t kPoisonedExpected = 0x80000000u;

// Local workspace, zeroed before each combine: the work queues, the count of tokens reduced, the
// throttle's link clock, and per counter the count of its send items finished.
struct Workspace {
  uint32_t send_queue;      // per-warp send items
  uint32_t token_queue;     // tokens to reduce, per block
  uint32_t reduced_tokens;
  uint32_t aborted;  // set by the first wait of this combine that timed out (combine_wait)
  unsigned long long link_free_at;  // %globaltimer ns at which the modelled link is next idle
  // followed by uint32 rows_done[counters]: items of each counter finished
};

struct EpParams {
  const uint8_t* gemm_out;
  int64_t row_stride, expert_stride;  // bytes
  const int32_t* masked_m;
  SignalLayout layout;
  const uint32_t* signals;
  uint32_t signal_base;
  SignalScope scope;
  const int32_t* row_source;
  int slots_per_rank;
  int rank, num_ranks;
  int num_tokens, topk;
  const int32_t* topk_idx;
  const float* topk_weights;
  __nv_bfloat16* out;
  uint32_t epoch;
  ncclWindow_t window;
  size_t flags_offset, local_row_offset, rows_offset;  // this epoch's half
  int chunks, chunk_vectors;
  int first_chunked_expert;  // experts from here on are sent one chunk per item
  Workspace* workspace;
  uint32_t* rows_done;  // [counters], in the workspace
  float ns_per_byte;  // 0 = no throttle
  uint64_t timeout_ns;
  int reduce_tokens;  // EpCombineArgs::reduce_tokens (0 = reduce_group picks)
  int2* reduce_slots;  // EpCombineContext::reduce_slots
  int32_t* error_flag;
  uint64_t* timeline;
  int first_block;
};

__device__ __forceinline__ void store_release_sys(uint32_t* p, uint32_t v) {
  asm volatile("st.release.sys.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ void store_relaxed_sys(uint32_t* p, uint32_t v) {
  asm volatile("st.relaxed.sys.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ void store_relaxed_gpu(int32_t* p, int32_t v) {
  asm volatile("st.relaxed.gpu.global.s32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ uint32_t load_relaxed_sys(const uint32_t* p) {
  uint32_t v;
  asm volatile("ld.relaxed.sys.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ int32_t load_relaxed_gpu(const int32_t* p) {
  int32_t v;
  asm volatile("ld.relaxed.gpu.global.s32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
// The block's gate flags in shared memory (send_row's owner_ready).
__device__ __forceinline__ void store_release_cta(int* p, int v) {
  asm volatile("st.release.cta.shared.s32 [%0], %1;" ::"r"(uint32_t(__cvta_generic_to_shared(p))), "r"(v) : "memory");
}
__device__ __forceinline__ int load_acquire_cta(const int* p) {
  int v;
  asm volatile("ld.acquire.cta.shared.s32 %0, [%1];" : "=r"(v) : "r"(uint32_t(__cvta_generic_to_shared(p))) : "memory");
  return v;
}

// Every wait of a combine; after one has timed out the others give up at once.
template <class Reached>
__device__ bool combine_wait(const EpParams& p, const uint32_t* word, Reached reached, SignalScope scope) {
  return detail::wait_unless_aborted(word, reached, scope, p.timeout_ns, p.error_flag, &p.workspace->aborted);
}
__device__ __forceinline__ bool combine_wait_reached(const EpParams& p, const uint32_t* word, uint32_t target,
                                                     SignalScope scope) {
  return combine_wait(p, word, [target](uint32_t value) { return signal_reached(value, target); }, scope);
}

// A row_source entry is -1 (padding) or names a slot of a rank of the comm (else it is reported
// and skipped, as the single-GPU combine does).
__device__ __forceinline__ bool valid_source(const EpParams& p, int source) {
  return source >= -1 && source < int64_t(p.num_ranks) * p.slots_per_rank;
}
// A used topk_idx entry (not -1) names an expert of a rank of the comm.
__device__ __forceinline__ bool valid_expert(const EpParams& p, int g) {
  return g >= 0 && g < int64_t(p.num_ranks) * p.layout.num_experts;
}

// Token bucket shared by the warps of this GPU: a transfer of `bytes` occupies the modelled link
// for bytes * ns_per_byte from max(now, the end of the previous one). Returns when it would have
// arrived. A CAS loop: the reservation must read and move the link clock atomically.
__device__ uint64_t reserve_link(unsigned long long* link_free_at, uint64_t bytes, float ns_per_byte) {
  const unsigned long long duration = static_cast<unsigned long long>(bytes * ns_per_byte);
  const unsigned long long now = globaltimer();
  unsigned long long seen = *reinterpret_cast<volatile unsigned long long*>(link_free_at);
  while (true) {
    const unsigned long long done = (seen > now ? seen : now) + duration;
    const unsigned long long prev = atomicCAS(link_free_at, seen, done);
    if (prev == seen) return done;
    seen = prev;
  }
}

// Releases the flags of every row of counter `c` to `epoch` (the calling warp finished the last of
// its items; `rows` = the counter's covered rows). One system-scope fence for the whole counter:
// such a fence waits for the NVLink stores to be acknowledged, and a fence per row stalls every
// warp of the SM behind the others' stores. Under the throttle the counter's rows to other ranks
// are one transfer over the modelled link, and the flags wait for its arrival.
__device__ void publish_counter(const EpParams& p, int e, int first_row, int rows, int lane) {
  if (p.ns_per_byte > 0.f) {
    int remote_rows = 0;
    for (int r = lane; r < rows; r += 32) {
      const int source = p.row_source[int64_t(e) * p.layout.max_m + first_row + r];
      remote_rows += source >= 0 && valid_source(p, source) && source / p.slots_per_rank != p.rank;
    }
    remote_rows = __reduce_add_sync(0xffffffffu, remote_rows);
    if (lane == 0 && remote_rows > 0) {
      const uint64_t arrival = reserve_link(&p.workspace->link_free_at,
                                            uint64_t(remote_rows) * p.layout.n * sizeof(__nv_bfloat16), p.ns_per_byte);
      while (globaltimer() < arrival) __nanosleep(256);
    }
  }
  // The caller's acq_rel count made every row's stores happen before lane 0; __syncwarp extends
  // that to every lane, and each lane's fence then makes its flag stores releases at system scope
  // (the readers may be other GPUs) covering all those rows.
  __syncwarp();
  asm volatile("fence.acq_rel.sys;" ::: "memory");
  for (int r = lane; r < rows; r += 32) {
    const int source = p.row_source[int64_t(e) * p.layout.max_m + first_row + r];
    if (source < 0 || !valid_source(p, source)) continue;  // padding row, or reported by send_row
    const int owner = source / p.slots_per_rank, slot = source % p.slots_per_rank;
    store_relaxed_sys(static_cast<uint32_t*>(ncclGetPeerPointer(p.window, p.flags_offset + slot * sizeof(uint32_t), owner)),
                      p.epoch);
  }
}

// Send item: row `r` of counter `c`, chunks [chunk_begin, chunk_end). A row of another rank's
// token is stored into the owner's window over NVLink; a row of this rank's own token is not
// copied: its place in gemm_out is recorded for the reduce. The warp finishing the counter's last
// item then publishes all its rows' flags.
__device__ void send_row(const EpParams& p, int64_t c, int r, int chunk_begin, int chunk_end, int lane,
                         int* owner_ready, unsigned long long* last_send_done) {
  const bool per_row_block = p.layout.granularity == SignalGranularity::per_row_block;
  const int counters_per_expert = per_row_block ? p.layout.row_blocks_per_expert() : 1;
  const int e = int(c / counters_per_expert), rb = int(c % counters_per_expert);
  const int m = p.masked_m[e];
  const uint32_t expected = p.layout.expected(m, rb);
  const int rows = p.layout.covered_rows(m, rb);
  if (expected == 0 || r >= rows) return;  // no such row
  bool ok = true;  // lane 0 waits (acquire); __syncwarp below extends it to the warp
  if (lane == 0) ok = combine_wait_reached(p, p.signals + c, p.signal_base + expected, p.scope);
  if (!__shfl_sync(0xffffffffu, ok, 0)) return;
  if (p.timeline != nullptr && lane == 0 && r == 0 && chunk_begin == 0) p.timeline[2 * c] = globaltimer();
  const int first_row = per_row_block ? rb * p.layout.block_m : 0;
  const int row = first_row + r;
  const int source = p.row_source[int64_t(e) * p.layout.max_m + row];
  if (!valid_source(p, source)) {
    // Reported once per row, then skipped like a padding row.
    if (lane == 0 && chunk_begin == 0) detail::report_invalid_routing(p.error_flag);
  } else if (source >= 0) {
    const int owner = source / p.slots_per_rank, slot = source % p.slots_per_rank;
    // Before the first row to this owner: its reduce of epoch - 2 (same half) must be done, or
    // these stores could overwrite rows (or local_row entries) it has not summed. Acquire at
    // system scope: the flag is set by the owner's GPU after its reads. The block remembers it in
    // owner_ready, released and acquired at CTA scope, so a warp that finds it set is ordered
    // after the acquire another warp made.
    bool gate_open = true;
    if (lane == 0 && !load_acquire_cta(&owner_ready[owner])) {
      const auto* reduced = static_cast<const uint32_t*>(ncclGetPeerPointer(p.window, kReducedEpochOffset, owner));
      gate_open = combine_wait_reached(p, reduced, p.epoch - 2, SignalScope::sys);
      if (gate_open) store_release_cta(&owner_ready[owner], 1);
    }
    // Timed out (reported): the owner may still be summing this half, so nothing is stored and the
    // item is not counted; its counter's flags are never published, and the owner's reduce times
    // out too instead of summing overwritten rows.
    if (!__shfl_sync(0xffffffffu, gate_open, 0)) return;
    __syncwarp();  // extends lane 0's acquire (its own or the flag's) to the warp's loads and stores below
    if (owner == p.rank) {
      // Read in place by this rank's reduce (once the flag says so).
      if (lane == 0 && chunk_begin == 0)
        store_relaxed_gpu(static_cast<int32_t*>(ncclGetLocalPointer(p.window, p.local_row_offset)) + slot,
                          e * p.layout.max_m + row);
    } else {
      const int begin = chunk_begin * p.chunk_vectors, end = min(chunk_end * p.chunk_vectors, p.layout.n / 8);
      const auto* src = reinterpret_cast<const uint4*>(p.gemm_out + e * p.expert_stride + row * p.row_stride);
      auto* dst = static_cast<uint4*>(ncclGetPeerPointer(
          p.window, p.rows_offset + size_t(slot) * p.layout.n * sizeof(__nv_bfloat16), owner));
      if (chunk_end - chunk_begin == 1) copy_vectors<kChunkVectorsPerLane>(src, dst, begin, end, lane);
      else copy_vectors<kRowVectorsPerLane>(src, dst, begin, end, lane);
    }
  }
  // Count this item done: __syncwarp orders every lane's stores before lane 0's add; acq_rel at
  // GPU scope chains all items' stores of the counter to the warp whose add completes the count.
  __syncwarp();
  bool last = false;
  if (lane == 0) {
    const uint32_t items = uint32_t(rows) * uint32_t(chunk_end - chunk_begin == p.chunks ? 1 : p.chunks);
    uint32_t before;
    asm volatile("atom.acq_rel.gpu.global.add.u32 %0, [%1], 1;" : "=r"(before) : "l"(p.rows_done + c) : "memory");
    last = before + 1 == items;
  }
  if (!__shfl_sync(0xffffffffu, last, 0)) return;
  publish_counter(p, e, first_row, rows, lane);
  if (lane == 0) {
    const unsigned long long now = globaltimer();
    atomicMax(last_send_done, now);
    if (p.timeline != nullptr) p.timeline[2 * c + 1] = now;
  }
}

// find_row's answer for a slot whose wait failed (never a row's address: rows are 16-byte aligned).
__device__ __forceinline__ const uint4* failed_slot() { return reinterpret_cast<const uint4*>(uintptr_t(1)); }

// Reduce of `count` (<= kReduceTokens) tokens by the whole block: out[t] = sum over t's used slots,
// in the fixed order k = 0..topk-1, in fp32, stored as bf16; the result never depends on which
// slot arrived first. The tokens are positions first .. first + count - 1 of `ordered_slots`
// (slot t * topk + k and its global expert, topk entries per token), or without it tokens first ..
// first + count - 1. Thread i < count * topk calls find_row(slot, global expert) for slot i of the
// group: it waits until the row is there (an acquire) and returns it, or null for a slot skipped (bad
// routing, reported: it adds nothing), or failed_slot() where the wait failed (timed out or given up,
// reported): that token is not written, as the single-GPU combine leaves a token it stopped waiting
// for. The block barrier then extends every waiting thread's acquire to all threads' loads.
template <class FindRow>
__device__ void reduce_tokens(const EpParams& p, int first, int count, FindRow find_row,
                              const int2* ordered_slots = nullptr) {
  __shared__ const uint4* slot_src[kReduceTokens * kMaxTopk];
  __shared__ float slot_weight[kReduceTokens * kMaxTopk];
  __shared__ int group_token[kReduceTokens];
  // One thread per slot of the group: its waits run side by side.
  if (threadIdx.x < count * p.topk) {
    int slot, g;
    if (ordered_slots != nullptr) {
      const int2 entry = ordered_slots[first * p.topk + threadIdx.x];
      slot = entry.x;
      g = entry.y;
    } else {
      slot = first * p.topk + threadIdx.x;
      g = p.topk_idx[slot];
    }
    if (threadIdx.x % p.topk == 0) group_token[threadIdx.x / p.topk] = slot / p.topk;
    // The weight is loaded before the wait (the routing was written before the GEMM started), so
    // it is not one more round trip after the row arrives.
    const float weight = g >= 0 ? p.topk_weights[slot] : 0.f;
    const uint4* src = g != -1 ? find_row(slot, g) : nullptr;  // find_row reports ids below -1 too
    slot_src[threadIdx.x] = src;
    slot_weight[threadIdx.x] = src != nullptr ? weight : 0.f;
  }
  __syncthreads();
  // A token with a failed slot is left unwritten (its slots' threads wrote their pointers before the
  // barrier; the token's first thread reads them all, after it).
  if (threadIdx.x < count * p.topk && threadIdx.x % p.topk == 0)
    for (int k = 0; k < p.topk; ++k)
      if (slot_src[threadIdx.x + k] == failed_slot()) group_token[threadIdx.x / p.topk] = -1;
  __syncthreads();
  detail::sum_token_group(count, p.topk, p.layout.n, slot_src, slot_weight, group_token, p.out);
  __syncthreads();  // slot_src, slot_weight and group_token are rewritten for the next group
}

// Tokens per reduce group (EpCombineArgs::reduce_tokens); by default detail::tokens_per_sm_group.
// Measured in the epilogue-send mode on 2 x H200 (tokens per GPU, us for groups of
// 1 / 2 / 3 / 4): E32 m32 (131-133) 143.3 / 145.3 / 147.8 / 149.7; E8 m256 (about 256) 110.4 /
// 106.8 / 108.6 / 110.4; E32 m128 (about 512) 251.9 / 242.7 / 246.3 / 239.7.
__device__ __forceinline__ int reduce_group(const EpParams& p) {
  return p.reduce_tokens > 0 ? p.reduce_tokens : detail::tokens_per_sm_group(p.num_tokens);
}

// Announces the end of this epoch's reduce once every token is summed (thread 0 of each block,
// after its last reduce_tokens, whose barrier ordered the block's row loads first): the acq_rel
// adds chain every block's loads to the block completing the count, whose release at system scope
// publishes it to the senders of epoch + 2 (on any GPU), which may then reuse this half.
__device__ void count_reduced_tokens(const EpParams& p, uint32_t reduced_here) {
  uint32_t before;
  asm volatile("atom.acq_rel.gpu.global.add.u32 %0, [%1], %2;"
               : "=r"(before)
               : "l"(&p.workspace->reduced_tokens), "r"(reduced_here)
               : "memory");
  if (before + reduced_here == uint32_t(p.num_tokens))
    store_release_sys(static_cast<uint32_t*>(ncclGetLocalPointer(p.window, kReducedEpochOffset)), p.epoch);
}

__global__ void __launch_bounds__(kThreads, 1) ep_combine_kernel(const EpParams p) {
  uint64_t* block_times = detail::start_block_timeline(p.timeline, p.layout.counter_count(), p.first_block);
  const int lane = threadIdx.x % 32;

  // owner_ready[o]: rank o has finished reducing epoch - 2, so this half of its window is free.
  __shared__ int owner_ready[kMaxRanks];
  __shared__ unsigned long long last_send_done;
  for (int o = threadIdx.x; o < p.num_ranks; o += kThreads) owner_ready[o] = 0;
  if (threadIdx.x == 0) last_send_done = 0;
  __syncthreads();

  // ---- send, per warp: this rank's counters in the GEMM's order, a row per item (a chunk per item
  // from the first chunked expert on). Warps waiting for a signal never hold up the items ahead.
  const bool per_row_block = p.layout.granularity == SignalGranularity::per_row_block;
  const int counters_per_expert = per_row_block ? p.layout.row_blocks_per_expert() : 1;
  const int rows_per_counter = per_row_block ? p.layout.block_m : p.layout.max_m;
  const int64_t first_chunked = int64_t(p.first_chunked_expert) * counters_per_expert;  // counter
  const int64_t row_items = first_chunked * rows_per_counter;
  const int64_t chunk_items = (p.layout.counter_count() - first_chunked) * rows_per_counter * p.chunks;
  for (int64_t item = take_warp_item(&p.workspace->send_queue, lane); item < row_items + chunk_items;
       item = take_warp_item(&p.workspace->send_queue, lane)) {
    if (item < row_items) {
      send_row(p, item / rows_per_counter, int(item % rows_per_counter), 0, p.chunks, lane, owner_ready,
               &last_send_done);
    } else {
      const int64_t i = item - row_items, per_counter = int64_t(rows_per_counter) * p.chunks;
      const int chunk = int(i % p.chunks);
      send_row(p, first_chunked + i / per_counter, int(i % per_counter / p.chunks), chunk, chunk + 1, lane,
               owner_ready, &last_send_done);
    }
  }
  __syncthreads();
  if (block_times != nullptr && threadIdx.x == 0) block_times[1] = last_send_done != 0 ? last_send_done : block_times[0];

  // ---- reduce, per block: the owned tokens, each once its slots' flags carry this epoch.
  uint32_t reduced_here = 0;
  // A slot's row is complete once its flag holds this epoch (acquire at system scope: the writer
  // may be another GPU): the peer-written row in the window, or this GEMM's own row in place.
  // Equal, not "reached": an old epoch must never pass for a later one, however many epochs apart
  // (2^31 and more); a flag holds this epoch, an older one of its parity not yet consumed, or a
  // value of the other parity (see below), which no epoch reading this half has.
  auto* flags = static_cast<uint32_t*>(ncclGetLocalPointer(p.window, p.flags_offset));
  const auto* local_rows = static_cast<const int32_t*>(ncclGetLocalPointer(p.window, p.local_row_offset));
  const uint32_t epoch = p.epoch;
  auto find_row = [&](int slot, int g) -> const uint4* {
    if (!valid_expert(p, g)) {
      detail::report_invalid_routing(p.error_flag);
      return nullptr;
    }
    if (!combine_wait(p, flags + slot, [epoch](uint32_t flag) { return flag == epoch; }, SignalScope::sys))
      return failed_slot();
    // Consumed: set to a value of the other parity, so that it never reads as ready again, even
    // 2^32 epochs on. The next store to this flag (epoch + 2's sender) waits for this rank's
    // reduced gate, released after this reduce (count_reduced_tokens), so it comes after this one.
    store_relaxed_sys(flags + slot, epoch ^ 1u);
    if (g / p.layout.num_experts == p.rank) {
      const int er = load_relaxed_gpu(local_rows + slot);
      return reinterpret_cast<const uint4*>(p.gemm_out + (er / p.layout.max_m) * p.expert_stride +
                                            (er % p.layout.max_m) * p.row_stride);
    }
    return static_cast<const uint4*>(
        ncclGetLocalPointer(p.window, p.rows_offset + size_t(slot) * p.layout.n * sizeof(__nv_bfloat16)));
  };
  // Queue items are groups of consecutive tokens.
  const int group_tokens = reduce_group(p);
  for (int64_t group = detail::take_work_item(&p.workspace->token_queue); group * group_tokens < p.num_tokens;
       group = detail::take_work_item(&p.workspace->token_queue)) {
    const int first = int(group * group_tokens), count = min(group_tokens, p.num_tokens - first);
    reduce_tokens(p, first, count, find_row);
    reduced_here += count;
  }
  if (threadIdx.x == 0) {
    count_reduced_tokens(p, reduced_here);
    if (block_times != nullptr) block_times[2] = globaltimer();
  }
}

__global__ void ep_barrier_kernel(const ncclDevComm comm) {
  // acq_rel: each rank's earlier writes (to its own or peers' windows) are visible after the barrier.
  ncclLsaBarrierSession<ncclCoopCta> barrier{ncclCoopCta(), comm, ncclTeamLsa(comm), comm.lsaBarrier, 0};
  barrier.sync(ncclCoopCta(), cuda::memory_order_acq_rel);
}

// The address at which this rank's kernels reach its own window (ep_combine_create).
__global__ void local_window_base_kernel(ncclWindow_t window, void** base) { *base = ncclGetLocalPointer(window, 0); }

// Loads every kernel of the combine (defined below); see ep_combine_create.
Status load_combine_kernels();

using consumer::invalid;

Status nccl_status(ncclResult_t r, const char* what) {
  if (r == ncclSuccess) return {};
  return Status{StatusCode::cuda_error, std::string("signalgemm: ") + what + ": " + ncclGetErrorString(r)};
}

Status cuda_status(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return {};
  return Status{StatusCode::cuda_error, std::string("signalgemm: ") + what + ": " + cudaGetErrorString(e)};
}

size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

// Collective: gathers every rank's config, and whether its local set-up succeeded (`set_up`), and
// compares the configs with this rank's. The window layout is computed from the config and applied
// to the peers' windows, so a rank whose config differs would store past their bounds. Every rank
// sees the same gathered values and so fails alike: none goes on alone to the collective window
// registration, where the others would wait for it forever.
Status gather_configs_and_set_up(const EpCombineContext* ctx, bool set_up) {
  constexpr int kConfigFields = 3, kFields = kConfigFields + 1;
  const EpCombineConfig& c = ctx->config;
  const int32_t mine[kFields] = {c.max_tokens_per_rank, c.topk, c.n, set_up ? 1 : 0};
  std::vector<int32_t> all(size_t(kFields) * ctx->num_ranks);
  int32_t* gathered = nullptr;
  cudaStream_t stream = nullptr;
  Status status = cuda_status(cudaMalloc(&gathered, all.size() * sizeof(int32_t)), "cudaMalloc(configs)");
  if (status.ok()) status = cuda_status(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
  if (status.ok())
    status = cuda_status(cudaMemcpyAsync(gathered + kFields * ctx->rank, mine, sizeof(mine), cudaMemcpyHostToDevice, stream),
                         "cudaMemcpyAsync(config)");
  if (status.ok())  // in place: this rank's entry is its send buffer
    status = nccl_status(ncclAllGather(gathered + kFields * ctx->rank, gathered, kFields, ncclInt32, ctx->comm, stream),
                         "ncclAllGather(configs)");
  if (status.ok())
    status = cuda_status(cudaMemcpyAsync(all.data(), gathered, all.size() * sizeof(int32_t), cudaMemcpyDeviceToHost, stream),
                         "cudaMemcpyAsync(configs)");
  if (status.ok()) status = cuda_status(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  if (stream != nullptr) cudaStreamDestroy(stream);
  if (gathered != nullptr) cudaFree(gathered);
  if (!status.ok()) return status;
  auto describe = [&](int r) {
    const int32_t* f = &all[size_t(kFields) * r];
    return "rank " + std::to_string(r) + " has max_tokens_per_rank " + std::to_string(f[0]) + ", topk " +
           std::to_string(f[1]) + ", n " + std::to_string(f[2]);
  };
  for (int r = 0; r < ctx->num_ranks; ++r)
    if (!std::equal(mine, mine + kConfigFields, &all[size_t(kFields) * r]))
      return invalid("config differs across ranks: " + describe(r) + ", " + describe(ctx->rank));
  for (int r = 0; r < ctx->num_ranks; ++r)
    if (all[size_t(kFields) * r + kConfigFields] == 0)
      return Status{StatusCode::cuda_error, "signalgemm: rank " + std::to_string(r) +
                                                " failed its local set-up (its own status says why)"};
  return {};
}

using Call = EpCombineContext::Call;

// Where `call` may come in the context's sequence. A skipped epoch, or one that starts again at 0,
// would pass the window's reuse gate while an owner may still be summing that half
// (docs/multigpu.md). The launches of one ep_combine pass the same epoch; an epilogue-send combine
// is one prepare of a new epoch, then its reduce (a second prepare of that epoch would zero counters
// a peer's reduce may still poll; a reduce without its prepare would read the last combine's).
Status check_sequence(const EpCombineContext* ctx, uint32_t epoch, Call call) {
  const bool same = ctx->last_call != Call::none && epoch == ctx->last_epoch;
  const bool same_allowed = call == Call::combine ? ctx->last_call == Call::combine : call == Call::reduce;
  if (!(same && same_allowed) && epoch != ctx->last_epoch + 1)
    return invalid("epoch = " + std::to_string(epoch) + " does not follow this context's " +
                   (ctx->last_call != Call::none ? "last, " : "start, ") + std::to_string(ctx->last_epoch) +
                   ": combines count 1, 2, 3, ... per context (modulo 2^32), the launches of one ep_combine "
                   "passing the same epoch, an epilogue-send combine's prepare starting the next");
  if (call == Call::reduce && !(same && (ctx->last_call == Call::prepare || ctx->last_call == Call::reduce)))
    return invalid("epoch = " + std::to_string(epoch) +
                   ": ep_epilogue_send_reduce follows ep_epilogue_send_prepare of its epoch on this context");
  return {};
}

// The checks of the arguments both modes use.
Status check_common_args(const EpCombineContext* ctx, const EpCombineArgs& a) {
  if (Status s = consumer::check_layout_routing_and_output(a); !s.ok()) return s;
  if (a.layout.n != ctx->config.n) return invalid("layout.n differs from the context's config.n");
  if (a.num_tokens > ctx->config.max_tokens_per_rank)
    return invalid("num_tokens must be <= config.max_tokens_per_rank");
  if (const size_t needed = ep_combine_workspace_bytes(a.layout.counter_count()); a.workspace_bytes < needed)
    return invalid("workspace_bytes = " + std::to_string(a.workspace_bytes) +
                   " is less than ep_combine_workspace_bytes(layout.counter_count()) = " + std::to_string(needed));
  if (a.reduce_tokens < 0 || a.reduce_tokens > kReduceTokens) return invalid("reduce_tokens must be in [0, 4]");
  // Last, on the context's device (the callers switch to it first).
  return host::check_device_pointers(a.stream, {{a.masked_m, "masked_m"},
                                                {a.row_source, "row_source"},
                                                {a.topk_idx, "topk_idx"},
                                                {a.topk_weights, "topk_weights"},
                                                {a.out, "out"},
                                                {a.workspace, "workspace"},
                                                {a.error_flag, "error_flag"},
                                                {a.timeline, "timeline"}});
}

// `launched`, after noting a successful launch's epoch and call as the context's last.
Status enqueued(const EpCombineContext* ctx, uint32_t epoch, Call call, Status launched) {
  if (launched.ok()) {
    ctx->last_epoch = epoch;
    ctx->last_call = call;
  }
  return launched;
}

// The fields both modes take from the context and the arguments.
EpParams common_params(const EpCombineContext* ctx, const EpCombineArgs& a) {
  EpParams p{};
  p.masked_m = a.masked_m;
  p.layout = a.layout;
  p.row_source = a.row_source;
  p.slots_per_rank = ctx->config.max_tokens_per_rank * ctx->config.topk;
  p.rank = ctx->rank;
  p.num_ranks = ctx->num_ranks;
  p.num_tokens = a.num_tokens;
  p.topk = ctx->config.topk;
  p.topk_idx = a.topk_idx;
  p.topk_weights = a.topk_weights;
  p.out = static_cast<__nv_bfloat16*>(a.out);
  p.epoch = a.epoch;
  p.window = ctx->window;
  p.rows_offset = ctx->rows_offset[a.epoch & 1];
  p.workspace = static_cast<Workspace*>(a.workspace);
  p.timeout_ns = a.timeout_ns;
  p.error_flag = a.error_flag;
  p.reduce_tokens = a.reduce_tokens;
  p.reduce_slots = ctx->reduce_slots;
  return p;
}

// What ep_combine_create does on this rank alone: the config's values, the window's layout, its
// memory (zeroed) and the kernels loaded.
Status set_up_locally(EpCombineContext* ctx) {
  const EpCombineConfig& config = ctx->config;
  if (config.max_tokens_per_rank < 1) return invalid("config.max_tokens_per_rank must be >= 1");
  if (config.topk < 1 || config.topk > kMaxTopk) return invalid("config.topk must be in [1, 32]");
  if (config.n < 8 || config.n % 8 != 0) return invalid("config.n must be a positive multiple of 8");
  // row_source entries are int32 (owner * max_tokens_per_rank * topk + t * topk + k), and the
  // kernels step int token indices by up to a grid's width past num_tokens: 2^30 leaves room.
  if (int64_t(ctx->num_ranks) * config.max_tokens_per_rank * config.topk > (int64_t(1) << 30))
    return invalid("config.max_tokens_per_rank = " + std::to_string(config.max_tokens_per_rank) +
                   " is too large: ranks x max_tokens_per_rank x topk must be at most 2^30 (row_source is int32)");

  const size_t slots = size_t(config.max_tokens_per_rank) * config.topk;
  const int n_vectors = config.n / 8;
  ctx->chunks = (n_vectors + kMaxChunkVectors - 1) / kMaxChunkVectors;
  const size_t flags_bytes = align_up(slots * sizeof(uint32_t), 256);
  const size_t local_row_bytes = align_up(slots * sizeof(int32_t), 256);
  const size_t rows_bytes = align_up(slots * config.n * sizeof(__nv_bfloat16), 256);
  for (int half = 0; half < 2; ++half) {
    ctx->flags_offset[half] = kEpilogueExpectedOffset + 2 * kEpilogueExperts * 4 + half * (flags_bytes + local_row_bytes);
    ctx->local_row_offset[half] = ctx->flags_offset[half] + flags_bytes;
  }
  ctx->rows_offset[0] = align_up(ctx->flags_offset[1] + flags_bytes + local_row_bytes, 4096);
  ctx->rows_offset[1] = ctx->rows_offset[0] + rows_bytes;
  ctx->window_bytes = align_up(ctx->rows_offset[1] + rows_bytes, NCCL_WIN_REQUIRED_ALIGNMENT);

  if (Status s = cuda_status(cudaMalloc(&ctx->reduce_slots, slots * sizeof(int2)), "cudaMalloc(reduce_slots)"); !s.ok())
    return s;
  // ncclMemAlloc: memory NCCL can map into every peer's address space (cuMem), as windows need.
  if (Status s = nccl_status(ncclMemAlloc(&ctx->window_memory, ctx->window_bytes), "ncclMemAlloc"); !s.ok()) return s;
  // Zero before registering: registration is collective, so no peer can store into this window
  // before the zeros are in place. The flags of each half start at a value of the other parity
  // (0x01010101 for the even half), which no epoch reading that half has.
  if (Status s = cuda_status(cudaMemset(ctx->window_memory, 0, ctx->window_bytes), "cudaMemset(window)"); !s.ok())
    return s;
  if (Status s = cuda_status(cudaMemset(static_cast<uint8_t*>(ctx->window_memory) + ctx->flags_offset[0], 0x01,
                                        slots * sizeof(uint32_t)),
                             "cudaMemset(flags)");
      !s.ok())
    return s;
  if (Status s = cuda_status(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); !s.ok()) return s;
  // Under lazy module loading a kernel's first launch may wait for its device to go idle, and in a
  // combine step a kernel on this device may wait for a peer that the host has not fed yet: load
  // them all now, during the set-up.
  return load_combine_kernels();
}

}  // namespace

Status ep_combine_create(ncclComm_t comm, const EpCombineConfig& config, EpCombineContext** context) {
  if (context == nullptr) return invalid("context is null");
  *context = nullptr;
  if (comm == nullptr) return invalid("comm is null");
  // The device structures (ncclDevComm, requirements) change between NCCL minor versions.
  int version = 0;
  if (Status s = nccl_status(ncclGetVersion(&version), "ncclGetVersion"); !s.ok()) return s;
  if (version / 100 != NCCL_VERSION_CODE / 100)
    return Status{StatusCode::unsupported, "signalgemm: NCCL library " + std::to_string(version) +
                                               " differs from the headers built against (" +
                                               std::to_string(NCCL_VERSION_CODE) + ")"};

  auto* ctx = new EpCombineContext;
  ctx->comm = comm;
  ctx->config = config;
  Status status;
  auto fail = [&](Status s) {
    if (ctx->dev_comm_created) ncclDevCommDestroy(comm, &ctx->dev_comm);
    if (ctx->window != nullptr) ncclCommWindowDeregister(comm, ctx->window);
    if (ctx->window_memory != nullptr) ncclMemFree(ctx->window_memory);
    if (ctx->reduce_slots != nullptr) cudaFree(ctx->reduce_slots);
    delete ctx;
    return s;
  };
  if (status = nccl_status(ncclCommCuDevice(comm, &ctx->device), "ncclCommCuDevice"); !status.ok()) return fail(status);
  const host::ScopedDevice on_device(ctx->device);  // set up on the comm's device
  if (status = nccl_status(ncclCommUserRank(comm, &ctx->rank), "ncclCommUserRank"); !status.ok()) return fail(status);
  if (status = nccl_status(ncclCommCount(comm, &ctx->num_ranks), "ncclCommCount"); !status.ok()) return fail(status);
  if (ctx->num_ranks > kMaxRanks)
    return fail(Status{StatusCode::unsupported, "signalgemm: more than 64 ranks in comm"});
  // Everything local first: a rank that failed here alone and returned would leave the others
  // waiting in the collective steps below, so each rank's outcome goes into the gather.
  Status local = set_up_locally(ctx);
  if (status = gather_configs_and_set_up(ctx, local.ok()); !status.ok() && !local.ok()) return fail(local);
  if (!status.ok()) return fail(status);
  if (status = nccl_status(ncclCommWindowRegister(comm, ctx->window_memory, ctx->window_bytes, &ctx->window,
                                                  NCCL_WIN_COLL_SYMMETRIC),
                           "ncclCommWindowRegister");
      !status.ok())
    return fail(status);
  ncclDevCommRequirements requirements;
  std::memset(&requirements, 0, sizeof(requirements));
  requirements.lsaBarrierCount = 1;  // ep_combine_barrier's single CTA
  if (status = nccl_status(ncclDevCommCreate(comm, &requirements, &ctx->dev_comm), "ncclDevCommCreate"); !status.ok())
    return fail(status);
  ctx->dev_comm_created = true;
  if (ctx->dev_comm.lsaSize != ctx->num_ranks)
    return fail(Status{StatusCode::unsupported,
                       "signalgemm: the multi-GPU combine needs every rank in one NVLink (LSA) domain; this comm has " +
                           std::to_string(ctx->num_ranks) + " ranks, " + std::to_string(ctx->dev_comm.lsaSize) +
                           " load/store accessible (across machines it needs GIN: docs/multigpu.md)"});
  // The kernels reach this rank's window through the window's own mapping (ncclGetLocalPointer),
  // which need not be the address ncclMemAlloc returned: the GEMM's signals go through the same
  // one, so that its releases and the reduce's acquires are accesses to one address (the PTX
  // memory model orders accesses through two virtual aliases only with a proxy fence).
  // reduce_slots, unused until the first prepare, carries the address back.
  if (status = cuda_status(host::launch_kernel(local_window_base_kernel, 1, 1, nullptr, ctx->window,
                                               reinterpret_cast<void**>(ctx->reduce_slots)),
                           "local_window_base_kernel launch");
      !status.ok())
    return fail(status);
  if (status = cuda_status(cudaMemcpy(&ctx->window_local, ctx->reduce_slots, sizeof(void*), cudaMemcpyDeviceToHost),
                           "cudaMemcpy(window base)");
      !status.ok())
    return fail(status);
  *context = ctx;
  return {};
}

Status ep_combine_create_all(const ncclComm_t* comms, int count, const EpCombineConfig& config,
                             EpCombineContext** contexts) {
  if (comms == nullptr || contexts == nullptr) return invalid("comms and contexts must not be null");
  if (count < 1) return invalid("count must be >= 1");
  // Before any thread starts: one rank refusing alone would leave the others in a collective.
  for (int i = 0; i < count; ++i)
    if (comms[i] == nullptr) return invalid("comms[" + std::to_string(i) + "] is null");
  // Window registration and device-communicator creation are collective and block until every
  // rank has joined: one host thread per rank.
  std::vector<Status> statuses(count);
  std::vector<std::thread> threads;
  for (int i = 0; i < count; ++i)
    threads.emplace_back([&, i] { statuses[i] = ep_combine_create(comms[i], config, &contexts[i]); });
  for (auto& t : threads) t.join();
  for (int i = 0; i < count; ++i)
    if (!statuses[i].ok()) return statuses[i];
  return {};
}

Status ep_combine_destroy(EpCombineContext* ctx) {
  if (ctx == nullptr) return {};
  const host::ScopedDevice on_device(ctx->device);  // its calls run on its device
  Status status = cuda_status(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  if (ctx->dev_comm_created) {
    Status s = nccl_status(ncclDevCommDestroy(ctx->comm, &ctx->dev_comm), "ncclDevCommDestroy");
    if (status.ok()) status = s;
  }
  if (ctx->window != nullptr) {
    Status s = nccl_status(ncclCommWindowDeregister(ctx->comm, ctx->window), "ncclCommWindowDeregister");
    if (status.ok()) status = s;
  }
  if (ctx->window_memory != nullptr) {
    Status s = nccl_status(ncclMemFree(ctx->window_memory), "ncclMemFree");
    if (status.ok()) status = s;
  }
  if (ctx->reduce_slots != nullptr) {
    Status s = cuda_status(cudaFree(ctx->reduce_slots), "cudaFree(reduce_slots)");
    if (status.ok()) status = s;
  }
  delete ctx;
  return status;
}

Status ep_combine_destroy_all(EpCombineContext* const* contexts, int count) {
  if (count < 0) return invalid("count must be >= 0");
  if (contexts == nullptr && count > 0) return invalid("contexts must not be null");
  std::vector<Status> statuses(count);
  std::vector<std::thread> threads;
  for (int i = 0; i < count; ++i) threads.emplace_back([&, i] { statuses[i] = ep_combine_destroy(contexts[i]); });
  for (auto& t : threads) t.join();
  for (const auto& s : statuses)
    if (!s.ok()) return s;
  return {};
}

namespace test_hooks {
Status ep_combine_start_at_epoch(EpCombineContext* ctx, uint32_t first_epoch) {
  if (ctx == nullptr) return invalid("context is null");
  const host::ScopedDevice on_device(ctx->device);
  const uint32_t reduced = first_epoch - 1;  // the reduced gate, as the previous combine leaves it
  ctx->last_epoch = reduced;
  ctx->last_call = Call::none;
  return cuda_status(cudaMemcpy(static_cast<uint8_t*>(ctx->window_local) + kReducedEpochOffset, &reduced,
                                sizeof(reduced), cudaMemcpyHostToDevice),
                     "cudaMemcpy(reduced_epoch)");
}
}  // namespace test_hooks

int ep_combine_rank(const EpCombineContext* ctx) { return ctx != nullptr ? ctx->rank : -1; }
int ep_combine_num_ranks(const EpCombineContext* ctx) { return ctx != nullptr ? ctx->num_ranks : -1; }
int ep_combine_device(const EpCombineContext* ctx) { return ctx != nullptr ? ctx->device : -1; }

size_t ep_combine_workspace_bytes(int64_t num_counters) {
  return sizeof(Workspace) + size_t(std::max<int64_t>(num_counters, 0)) * sizeof(uint32_t);
}

Status ep_combine_barrier(const EpCombineContext* ctx, cudaStream_t stream) {
  if (ctx == nullptr) return invalid("context is null");
  const host::ScopedDevice on_device(ctx->device);  // its calls run on its device
  return cuda_status(host::launch_kernel(ep_barrier_kernel, 1, 32, stream, ctx->dev_comm), "ep_combine_barrier launch");
}

Status ep_combine(const EpCombineContext* ctx, const EpCombineArgs& a) {
  if (ctx == nullptr) return invalid("context is null");
  const host::ScopedDevice on_device(ctx->device);  // its calls run on its device
  if (a.gemm_out == nullptr) return invalid("gemm_out is null");
  if (a.masked_m == nullptr) return invalid("masked_m is null");
  if (a.signals == nullptr || a.layout.granularity == SignalGranularity::none)
    return invalid("signals is null or layout.granularity is none: the combine is driven by the GEMM's signals");
  if (a.layout.granularity != SignalGranularity::per_expert && a.layout.granularity != SignalGranularity::per_row_block)
    return invalid("layout.granularity: unknown value " + std::to_string(int(a.layout.granularity)));
  if (Status s = check_common_args(ctx, a); !s.ok()) return s;
  if (reinterpret_cast<uintptr_t>(a.gemm_out) % 16 != 0) return invalid("gemm_out must be 16-byte aligned");
  if (Status s = host::check_gemm_out_strides(a.gemm_out_row_stride, a.gemm_out_expert_stride, a.layout.n,
                                              a.layout.max_m);
      !s.ok())
    return s;
  if (Status s = host::check_alignment({{a.signals, "signals", 4}}); !s.ok()) return s;
  if (Status s = consumer::check_no_aliasing(a, ctx->config.topk); !s.ok()) return s;
  if (!(a.remote_bytes_per_second >= 0)) return invalid("remote_bytes_per_second must be >= 0");
  if (Status s = host::check_device_pointers(a.stream, {{a.gemm_out, "gemm_out"}, {a.signals, "signals"}}); !s.ok())
    return s;
  if (Status s = check_sequence(ctx, a.epoch, Call::combine); !s.ok()) return s;  // last: the arguments first

  EpParams p = common_params(ctx, a);
  p.gemm_out = static_cast<const uint8_t*>(a.gemm_out);
  p.row_stride = a.gemm_out_row_stride != 0 ? a.gemm_out_row_stride : int64_t(a.layout.n) * 2;
  p.expert_stride = a.gemm_out_expert_stride != 0 ? a.gemm_out_expert_stride : p.row_stride * a.layout.max_m;
  p.signals = a.signals;
  p.signal_base = a.signal_base;
  p.scope = a.scope;
  p.flags_offset = ctx->flags_offset[a.epoch & 1];
  p.local_row_offset = ctx->local_row_offset[a.epoch & 1];
  p.chunks = ctx->chunks;
  p.chunk_vectors = (a.layout.n / 8 + ctx->chunks - 1) / ctx->chunks;
  // The last eighth of the experts (at least one) complete together at the GEMM's end.
  p.first_chunked_expert = a.layout.num_experts - std::max(1, (a.layout.num_experts + 7) / 8);
  p.rows_done = reinterpret_cast<uint32_t*>(p.workspace + 1);
  p.ns_per_byte = a.remote_bytes_per_second > 0 ? float(1e9 / a.remote_bytes_per_second) : 0.f;
  p.timeline = a.timeline;
  p.first_block = a.first_block;

  const int blocks = a.num_blocks > 0 ? a.num_blocks : kDefaultBlocks;
  return enqueued(ctx, a.epoch, Call::combine,
                  cuda_status(host::launch_kernel(ep_combine_kernel, blocks, kThreads, a.stream, p),
                              "ep_combine launch"));
}

// ---- Rows sent from the GEMM's epilogue (include/signalgemm/ep_combine.h, docs/multigpu.md).
namespace {

size_t epilogue_counters_offset(uint32_t epoch) { return kEpilogueCountersOffset + size_t(epoch & 1) * kEpilogueExperts * 4; }
size_t epilogue_expected_offset(uint32_t epoch) { return kEpilogueExpectedOffset + size_t(epoch & 1) * kEpilogueExperts * 4; }

// One prepare block sorts the tokens (a block per SM would not help: the scan is block-wide), so
// it is as wide as a block goes; the others only fill the row table.
constexpr int kPrepareThreads = 1024;
constexpr int kReadinessBuckets = 256;  // <= kPrepareThreads: a bucket per scanning thread

// The owned tokens' slots in the order their rows are likely to be complete, for the reduce: every
// rank's GEMM finishes its local experts in index order (tile_schedule.h: expert-major), so a
// token is ready about when its slot with the highest local expert index is, and that index
// (quantized into kReadinessBuckets) is its key. The reduce's blocks start as the GEMM's CTAs
// leave, the first ones before the GEMM's last round ends; in this order they sum tokens whose rows
// are already in instead of waiting on the last experts beside tokens that are (2 x H200: see
// docs/performance.md). A counting sort by one block; the order within a key is whatever the
// atomics give: each token's sum does not depend on when it runs.
__device__ void order_slots_by_readiness(const EpParams& p, int2* ordered) {
  using Scan = cub::BlockScan<int, kPrepareThreads>;
  __shared__ typename Scan::TempStorage scan;
  __shared__ int next[kReadinessBuckets];
  const int experts = p.layout.num_experts;
  auto key_of = [&](int t) {
    int last = 0;
    for (int k = 0; k < p.topk; ++k) {
      const int g = p.topk_idx[t * p.topk + k];
      if (g >= 0) last = max(last, g % experts);
    }
    return int(int64_t(last) * kReadinessBuckets / experts);
  };
  const bool has_bucket = threadIdx.x < kReadinessBuckets;
  if (has_bucket) next[threadIdx.x] = 0;
  __syncthreads();
  for (int t = threadIdx.x; t < p.num_tokens; t += kPrepareThreads) atomicAdd(&next[key_of(t)], 1);
  __syncthreads();
  int first;  // of this thread's bucket
  Scan(scan).ExclusiveSum(has_bucket ? next[threadIdx.x] : 0, first);
  if (has_bucket) next[threadIdx.x] = first;  // each thread reads and writes only its own bucket's entry
  __syncthreads();
  for (int t = threadIdx.x; t < p.num_tokens; t += kPrepareThreads) {
    const int position = atomicAdd(&next[key_of(t)], 1);
    for (int k = 0; k < p.topk; ++k)
      ordered[position * p.topk + k] = make_int2(t * p.topk + k, p.topk_idx[t * p.topk + k]);
  }
}

// This rank's row table (each row's slot in its owner's window), its counters of the epoch's half
// zeroed and the values they will reach published in the window for the owners' reduce, and the
// reduced gate (`reduced_epoch`, read by ep_combine's senders) opened for the previous combine:
// whichever mode it ran in, its reduce on this rank finished before this kernel started (stream
// order), and the release at system scope passes that on to the peers that acquire the gate. The epilogue-send
// reduce itself then has nothing to publish at its end, where it would lengthen the combine.
// Block 0 also orders the owned tokens for the reduce (order_slots_by_readiness).
__global__ void __launch_bounds__(kPrepareThreads)
    epilogue_send_prepare_kernel(const EpParams p, void** out_rows, size_t counters_offset, size_t expected_offset) {
  if (blockIdx.x == 0) order_slots_by_readiness(p, p.reduce_slots);
  const size_t row_bytes = size_t(p.layout.n) * sizeof(__nv_bfloat16);
  const int64_t rows = int64_t(p.layout.num_experts) * p.layout.max_m;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < rows; i += int64_t(gridDim.x) * blockDim.x) {
    // Rows at or past masked_m are never stored (the GEMM skips them), so their entries are not
    // read: padding there may hold anything, as ep_combine mode, which reads rows below masked_m only.
    const int real_rows = p.layout.clamp_m(p.masked_m[i / p.layout.max_m]);
    const int source = i % p.layout.max_m < real_rows ? p.row_source[i] : -1;
    if (!valid_source(p, source)) detail::report_invalid_routing(p.error_flag);
    out_rows[i] = source < 0 || !valid_source(p, source)
                      ? nullptr  // not stored
                      : ncclGetPeerPointer(p.window, p.rows_offset + size_t(source % p.slots_per_rank) * row_bytes,
                                           source / p.slots_per_rank);
  }
  if (blockIdx.x == 0 && threadIdx.x == 0)
    store_release_sys(static_cast<uint32_t*>(ncclGetLocalPointer(p.window, kReducedEpochOffset)), p.epoch - 1);
  // The counters and expected values of this half are read by the peers' reduce of epoch - 2. After an
  // epilogue-send combine the barrier of epoch - 1 ordered that reduce before this kernel; after an
  // ep_combine-mode one nothing did (a peer may still be summing), so the last block waits for
  // every peer's gate (`reduced_epoch`, acquire at system scope, published after its reduce) before
  // it rewrites them. Its other blocks and block 0's ordering run meanwhile.
  if (blockIdx.x != gridDim.x - 1) return;
  __shared__ int gate_open;
  if (threadIdx.x == 0) gate_open = 1;
  __syncthreads();
  if (threadIdx.x < p.num_ranks && threadIdx.x != p.rank) {
    const auto* reduced = static_cast<const uint32_t*>(ncclGetPeerPointer(p.window, kReducedEpochOffset, threadIdx.x));
    if (!combine_wait_reached(p, reduced, p.epoch - 2, SignalScope::sys)) gate_open = 0;
  }
  __syncthreads();  // extends those acquires to the whole block's stores below
  auto* counters = static_cast<uint32_t*>(ncclGetLocalPointer(p.window, counters_offset));
  auto* expected = static_cast<uint32_t*>(ncclGetLocalPointer(p.window, expected_offset));
  // Timed out (reported here): a peer may still read this half for epoch - 2, so the counters
  // stay, and the expected values are poisoned: every reduce that reads them reports instead of
  // summing rows.
  for (int e = threadIdx.x; e < p.layout.num_experts; e += blockDim.x) {
    if (gate_open) counters[e] = 0;
    expected[e] = gate_open ? p.layout.expected(p.masked_m[e]) : kPoisonedExpected;
  }
}

// Each owned token once the counters of the experts that served it (on their ranks, read through
// the peer pointers) are complete: the rows are then in this rank's window (the producing GEMM's
// bulk copies completed before its release at system scope; this acquire pairs with it).
__global__ void __launch_bounds__(kReduceThreads, 1)
    epilogue_send_reduce_kernel(const EpParams p, size_t counters_offset, size_t expected_offset) {
  const int experts = p.layout.num_experts;
  auto find_row = [&](int slot, int g) -> const uint4* {
    if (!valid_expert(p, g)) {
      detail::report_invalid_routing(p.error_flag);
      return nullptr;
    }
    const int rank = g / experts, e = g % experts;
    // The value the counter reaches: written by that rank's prepare before the barrier that
    // precedes every GEMM of this epoch. The counter's first acquire load goes out beside it, not
    // after it (both cross NVLink): where the expert is already done, that saves a round trip (the
    // reduce alone: 1-2 us of ~20).
    const uint32_t expected =
        load_relaxed_sys(static_cast<const uint32_t*>(ncclGetPeerPointer(p.window, expected_offset, rank)) + e);
    const auto* counter = static_cast<const uint32_t*>(ncclGetPeerPointer(p.window, counters_offset + size_t(e) * 4, rank));
    const uint32_t seen = load_acquire(counter, SignalScope::sys);
    if (expected == kPoisonedExpected) {  // that rank's prepare timed out: its counters are not this epoch's
      if (p.error_flag != nullptr) atomicOr(p.error_flag, kErrorSignalTimeout);
      return failed_slot();
    }
    if (expected == 0) {  // the expert has no rows, so none serves this slot: routing and masked_m disagree
      detail::report_invalid_routing(p.error_flag);
      return nullptr;
    }
    if (!signal_reached(seen, expected) && !combine_wait_reached(p, counter, expected, SignalScope::sys))
      return failed_slot();
    return static_cast<const uint4*>(
        ncclGetLocalPointer(p.window, p.rows_offset + size_t(slot) * p.layout.n * sizeof(__nv_bfloat16)));
  };
  // No reduced gate to publish here: the next combine's prepare (or reduce) does (see above).
  // Groups in the prepare kernel's readiness order: the blocks that start first (as the GEMM's
  // CTAs leave) take the tokens most likely complete.
  const int group_tokens = reduce_group(p);
  for (int first = blockIdx.x * group_tokens; first < p.num_tokens; first += gridDim.x * group_tokens)
    reduce_tokens(p, first, min(group_tokens, p.num_tokens - first), find_row, p.reduce_slots);
  // The GEMM's last experts may serve only other ranks, so this grid may end first: waiting for
  // that grid here makes this grid's completion imply the GEMM's, so the next combine's prepare
  // (which rewrites the GEMM's out_rows) never overlaps it, also in a graph, whose next node
  // depends on this one only.
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
}

Status load_combine_kernels() {
  cudaFuncAttributes attributes;
  for (const void* kernel : {reinterpret_cast<const void*>(ep_combine_kernel), reinterpret_cast<const void*>(ep_barrier_kernel),
                             reinterpret_cast<const void*>(epilogue_send_prepare_kernel),
                             reinterpret_cast<const void*>(epilogue_send_reduce_kernel)})
    if (Status s = cuda_status(cudaFuncGetAttributes(&attributes, kernel), "cudaFuncGetAttributes"); !s.ok()) return s;
  return {};
}

Status check_epilogue_send_args(const EpCombineContext* ctx, const EpCombineArgs& a) {
  if (a.layout.granularity != SignalGranularity::per_expert)
    return invalid("layout.granularity must be per_expert (the reduce waits on one counter per expert)");
  if (a.layout.num_experts > kEpilogueExperts) return invalid("layout.num_experts must be at most 16384");
  if (a.masked_m == nullptr) return invalid("masked_m is null");
  if (Status s = check_common_args(ctx, a); !s.ok()) return s;
  // This mode reads the rows from the window, never gemm_out (nor its strides, unchecked here).
  EpCombineArgs reads_no_gemm_out = a;
  reads_no_gemm_out.gemm_out = nullptr;
  return consumer::check_no_aliasing(reads_no_gemm_out, ctx->config.topk);
}

}  // namespace

Status ep_epilogue_send_prepare(const EpCombineContext* ctx, const EpCombineArgs& a, void** out_rows,
                                uint32_t** signals) {
  if (ctx == nullptr) return invalid("context is null");
  const host::ScopedDevice on_device(ctx->device);  // its calls run on its device
  if (Status s = check_epilogue_send_args(ctx, a); !s.ok()) return s;
  if (out_rows == nullptr || signals == nullptr) return invalid("out_rows and signals must not be null");
  if (Status s = host::check_device_pointers(a.stream, {{out_rows, "out_rows"}}); !s.ok()) return s;
  if (Status s = check_sequence(ctx, a.epoch, Call::prepare); !s.ok()) return s;  // last: the arguments first
  // Through the kernels' own address of the window, which the reduces read these counters at.
  *signals = reinterpret_cast<uint32_t*>(static_cast<uint8_t*>(ctx->window_local) + epilogue_counters_offset(a.epoch));
  return enqueued(ctx, a.epoch, Call::prepare,
                  cuda_status(host::launch_kernel(epilogue_send_prepare_kernel, 64, kPrepareThreads, a.stream,
                                                  common_params(ctx, a), out_rows, epilogue_counters_offset(a.epoch),
                                                  epilogue_expected_offset(a.epoch)),
                              "ep_epilogue_send_prepare launch"));
}

Status ep_epilogue_send_reduce(const EpCombineContext* ctx, const EpCombineArgs& a) {
  if (ctx == nullptr) return invalid("context is null");
  const host::ScopedDevice on_device(ctx->device);  // its calls run on its device
  if (Status s = check_epilogue_send_args(ctx, a); !s.ok()) return s;
  if (Status s = check_sequence(ctx, a.epoch, Call::reduce); !s.ok()) return s;  // last: the arguments first
  // Programmatic dependent launch: once the GEMM before it on the stream has started everywhere
  // (griddepcontrol.launch_dependents), the reduce blocks take the SMs its CTAs leave, so their
  // waits already run when the last experts finish. Its griddepcontrol.wait comes only at its end:
  // the rows are acquired through the counters, and everything else the reduce reads (routing,
  // masked_m, the window, the prepare kernel's token order) was written by kernels that completed
  // before that GEMM passed its own wait. The wait at the end keeps the reduce from completing
  // before the GEMM (its last experts may serve only other ranks), so the next combine's prepare,
  // which rewrites the GEMM's out_rows, cannot overlap the GEMM: eager streams already ordered it so
  // (H100, 2026-11-28: a plain kernel after a secondary that ended 20 ms before its primary started
  // 2 us after the primary), a graph's next node depends on this one only.
  cudaLaunchAttribute overlap{};
  overlap.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  overlap.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t launch{};
  launch.gridDim = dim3(a.num_blocks > 0 ? a.num_blocks : kDefaultBlocks);
  launch.blockDim = dim3(kReduceThreads);
  launch.stream = a.stream;
  launch.attrs = &overlap;
  launch.numAttrs = 1;
  return enqueued(ctx, a.epoch, Call::reduce,
                  cuda_status(cudaLaunchKernelEx(&launch, epilogue_send_reduce_kernel, common_params(ctx, a),
                                                 epilogue_counters_offset(a.epoch), epilogue_expected_offset(a.epoch)),
                              "ep_epilogue_send_reduce launch"));
}

}  // namespace signalgemm
