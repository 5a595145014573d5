// The MoE combine on one GPU, overlapped with the down GEMM through SignalGEMM's signals.
//
//   out[t, :] = sum_{k < topk, topk_idx[t, k] >= 0} topk_weights[t, k] * C[e_k, i_k, :]
//
// where (e_k, i_k) is the expert row that served slot k of token t. Two phases in one kernel:
//   record: as soon as a counter (expert or row block) completes, note where each of its rows lies
//           in C for the row's token slot, and count the arrival on the token (release);
//   reduce: once every slot of a token has arrived (acquire), sum the slots' rows of C in the fixed
//           order k = 0..topk-1 in fp32 and store bf16. The order never depends on timing, so the
//           result is deterministic.
// On one GPU no row is copied: the reduce reads each row of C once, where the GEMM wrote it. Across
// GPUs the record becomes a store of the row into the token owner's window (the multi-GPU combine).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "signalgemm/signals.h"
#include "signalgemm/types.h"

namespace signalgemm {

// OR-ed into a combine's error_flag when a routing entry is inconsistent (CombineArgs: a row_source
// entry below -1, at or past num_tokens * topk, or naming a slot whose topk_idx is not that row's
// expert; a topk_idx entry below -1, past the experts, or naming an expert with masked_m <= 0, for
// which no row can come: not waited for); the entry is skipped, never followed (a slot whose row
// was skipped then never arrives: its token waits until timeout_ns, or forever without one; so does
// a slot served by a row at or past max_m, where masked_m > max_m, which the GEMM clamps). Also
// for two rows of one expert naming one slot: the second one recorded is skipped, so which of the
// two the slot sums depends on timing, and the slot it should have named never arrives.
inline constexpr int32_t kErrorInvalidRouting = 4;

// What the combine writes (out, workspace, error_flag, timeline) must not overlap what it reads
// (gemm_out, signals, masked_m and the routing) nor each other: refused, naming both.
struct CombineArgs {
  // GEMM output and its signals (what the GEMM launch was given).
  const void* gemm_out = nullptr;  // bf16 [E][max_m][N] (layout.out_type must say bf16)
  int64_t gemm_out_row_stride = 0;     // bytes; 0 = packed
  int64_t gemm_out_expert_stride = 0;  // bytes; 0 = packed
  const int32_t* masked_m = nullptr;   // [E]
  SignalLayout layout;                 // signal_layout(gemm args)
  const uint32_t* signals = nullptr;
  // Every counter's value before the GEMM launch: one for all (e.g. a memset to 0 before the GEMM).
  // A base kept per counter (a running sum across launches) suits the wait API (consumer.cuh),
  // not this combine: a counter whose base differs would be read early or wait in vain.
  uint32_t signal_base = 0;
  SignalScope scope = SignalScope::gpu;  // the GEMM's (GroupedGemmArgs::scope): the scope of the waits' acquires

  // Routing, as a low-latency dispatch produces it.
  int num_tokens = 0;  // num_tokens * topk below 2^31 (row_source holds int32 slot ids)
  int topk = 0;  // 1..32
  const int32_t* topk_idx = nullptr;      // [num_tokens][topk], expert id or -1 (slot unused)
  const float* topk_weights = nullptr;    // [num_tokens][topk]
  const int32_t* row_source = nullptr;    // [E][max_m]: t * topk + k, or -1 (padding); rows >= masked_m[e] not read

  // Workspace: each token slot's place in gemm_out, then counters (per-token arrivals, two work
  // queues and a timed-out mark). All of it must be zero at launch: clear it (cudaMemsetAsync,
  // capturable) before each use. Its size: at least combine_workspace_bytes(num_tokens, topk).
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  void* out = nullptr;  // bf16 [num_tokens][N]

  // CTAs of this launch; 0 = 8. Blocks take work from queues in the workspace, so one combine may
  // be split over several launches sharing the workspace: a small one beside the GEMM (no more
  // blocks than the SMs the GEMM leaves free: its blocks wait on the GEMM, so they must never
  // keep it from its SMs) and a full-chip one stream-ordered after the GEMM that joins for the
  // rest. Each launch must be told its first block index for the timeline. The one beside the GEMM
  // goes on another stream (on the GEMM's stream ahead of it, it would wait for signals that cannot
  // come), ordered after the reset of the signals (signal_base) and of the workspace's counters, or
  // it may take a previous launch's counts for this one's. The launch after the GEMM ends when the
  // queues are empty, while blocks beside it may still be summing their last tokens: join the side
  // stream (an event recorded after the beside launch) before reading `out` or clearing the
  // workspace for the next combine.
  int num_blocks = 0;
  int first_block = 0;
  // Launch as a programmatic dependent of the GEMM just before it on `stream` (which must be that
  // kernel: the attribute relaxes the wait on the preceding kernel only): its blocks start on each
  // SM the GEMM's CTAs leave, before the whole GEMM ends, and take no SM from it. On one GPU this
  // is the overlap that pays (docs/signals.md); give it a block per SM (num_blocks). It reads the
  // GEMM's rows only through the signals, and everything else (routing, masked_m, the cleared
  // workspace) must be written before the GEMM.
  bool enable_pdl = false;
  // Per wait; 0 = forever. After one times out, waits that start later give up at once (those
  // already waiting end at their own timeout) and the tokens still waiting are not written: so a
  // timeout needs error_flag, the only report.
  uint64_t timeout_ns = 0;
  int32_t* error_flag = nullptr; // ORed with kErrorSignalTimeout on a timeout, kErrorInvalidRouting
  uint64_t* timeline = nullptr;  // optional, combine_timeline_entries() %globaltimer stamps, zeroed before
  cudaStream_t stream = nullptr;
};

// Bytes of workspace for this routing: a place per token slot plus the counters (negative values
// count as 0; combine() refuses them).
size_t combine_workspace_bytes(int num_tokens, int topk);

// Entries of the optional timeline: per counter [signal observed, rows recorded], then per block
// [start, record phase done, end], for `num_blocks` blocks over all launches of one combine.
int64_t combine_timeline_entries(const SignalLayout& layout, int num_blocks);

// Validates `args` (a bad one is refused, naming it, before anything is enqueued), then enqueues
// the combine on `args.stream` of the current device, which must own the stream and every pointer
// (checked), and returns without synchronizing; capturable in a CUDA graph. Thread-safe: calls share
// only the kernel's shared-memory attribute, which each sets to the same value on a device.
[[nodiscard]] Status combine(const CombineArgs& args);

}  // namespace signalgemm
