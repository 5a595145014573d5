// The MoE combine across GPUs (expert parallelism), overlapped with the down GEMM through
// SignalGEMM's signals, over NCCL 2.28's device API (docs/multigpu.md).
//
// N ranks (GPUs) each own E_local experts (global expert id = rank * E_local + local id) and the
// tokens dispatched from them. Rank r's down GEMM writes C_r[e, i, :] for its local experts; the
// combine gives each token t of rank o
//
//   out_o[t, :] = sum_{k < topk, topk_idx_o[t, k] >= 0} topk_weights_o[t, k] * C_r(k)[e_k, i_k, :]
//
// where (r(k), e_k, i_k) is the rank, local expert and row that served slot k. Per rank, one kernel:
//   send:   its warps take rows in the GEMM's counter order; as soon as a counter completes, each
//           row of another rank's token is stored into the owner's receive window (NCCL symmetric
//           memory; a peer's window is reached through its LSA pointer, so the stores go over
//           NVLink); a row of a token this rank owns is not copied (the reduce reads it in place).
//           The warp finishing a counter's last row releases the flags of all its rows to `epoch`
//           (one system-scope fence per counter). The last experts' rows, which complete together
//           at the GEMM's end, are split into chunks so every SM helps send them.
//   reduce: a block per group of up to 4 owned tokens (EpCombineArgs::reduce_tokens), once every
//           used slot's flag carries `epoch` (acquire, system scope), sums the slots in the fixed
//           order k = 0..topk-1 in fp32 and stores bf16 (deterministic).
// With N = 1 every owner is the rank itself and this is the single-GPU combine.
//
// The receive window is double-buffered by epoch parity, and a sender waits, before its first row
// to an owner, until that owner has finished reducing epoch - 2 (a flag in the owner's window), so
// no rank can overwrite rows a slower peer has not summed yet, whatever the routing. On each rank,
// gemm_out must stay unchanged until the combine's launches have finished (the reduce reads this
// rank's own rows in place), and one combine's launches finish before the next one's start (stream
// order or an event join, as in bench/bench_ep_overlap.cu).
//
// ep_combine_create loads the combine's kernels; call load_kernels(gemm args) for the GEMM before the
// first step: a lazily loaded kernel's first launch can wait for its device to go idle while a
// kernel there waits on another GPU.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstddef>
#include <cstdint>

#include "signalgemm/combine.h"  // kErrorInvalidRouting, combine_timeline_entries
#include "signalgemm/signals.h"
#include "signalgemm/types.h"

namespace signalgemm {

// Sizes of the receive window; identical on every rank (ep_combine_create compares them).
struct EpCombineConfig {
  int max_tokens_per_rank = 0;  // tokens any rank may own in one combine (ranks x this x topk <= 2^30)
  int topk = 0;  // 1..32
  int n = 0;  // hidden size (columns of C)
};

// Per-rank NCCL state: the communicator's device communicator (one LSA barrier), and the
// registered receive window. Opaque; created collectively. Every call taking a context runs on the
// context's device (ep_combine_device), whatever the current device, which it leaves unchanged;
// the streams passed must belong to that device. One host thread at a time enqueues on a context
// (it keeps the last epoch enqueued, unsynchronized); the contexts of different ranks are independent.
struct EpCombineContext;

// Collective over `comm`: every rank calls it at the same time (one thread per rank, or one
// process per rank), with the same config. Each rank first checks the config's values and sets up
// what is its own (memory, kernels), then the ranks gather their configs and outcomes: all fail
// alike, each naming its bad value, the first rank that differs, or a rank whose set-up failed, so
// none waits alone in the collective steps that follow (a null `comm` or `context` is refused at
// once: that rank cannot join the gather, and the others wait there as for any NCCL collective a
// rank never enters). Allocates the window with ncclMemAlloc on the comm's device, zeroes it,
// registers it (NCCL_WIN_COLL_SYMMETRIC) and creates an ncclDevComm; synchronizes the comm's device
// (all work on it, not only this library's). Needs every rank within one load/store-accessible
// (NVLink) domain: GIN (the path across machines) is not used here. The NCCL library must be the
// 2.28 series the headers come from.
[[nodiscard]] Status ep_combine_create(ncclComm_t comm, const EpCombineConfig& config, EpCombineContext** context);

// One process driving several GPUs: creates the contexts of `comms[0..count)` (e.g. from
// ncclCommInitAll), one host thread per rank.
[[nodiscard]] Status ep_combine_create_all(const ncclComm_t* comms, int count, const EpCombineConfig& config,
                                           EpCombineContext** contexts);

// Collective: deregisters and frees. Every combine using the context must have finished; it first
// synchronizes the context's device (all work there). A null context: nothing to do.
[[nodiscard]] Status ep_combine_destroy(EpCombineContext* context);
[[nodiscard]] Status ep_combine_destroy_all(EpCombineContext* const* contexts, int count);

// The context's rank in its comm, the comm's rank count, its CUDA device; -1 for a null context.
int ep_combine_rank(const EpCombineContext* context);
int ep_combine_num_ranks(const EpCombineContext* context);
int ep_combine_device(const EpCombineContext* context);

// Enqueues a device-side barrier across all ranks (NCCL LSA barrier, one CTA) on `stream`: every
// rank's earlier work on its stream is visible to every rank's later work. Used to align ranks
// before timing, and in the epilogue-send step below. A collective: every rank must enqueue it
// (a rank that skips it, e.g. after an argument error, leaves the others waiting, as with any
// NCCL collective; it has no timeout).
[[nodiscard]] Status ep_combine_barrier(const EpCombineContext* context, cudaStream_t stream);

// As CombineArgs: what the combine writes (out, workspace, error_flag, timeline) must not overlap
// what it reads (gemm_out where it reads it, signals, masked_m, the routing) nor each other.
struct EpCombineArgs {
  // This rank's GEMM output and signals (what its GEMM launch was given).
  const void* gemm_out = nullptr;      // bf16 [E_local][max_m][N]
  int64_t gemm_out_row_stride = 0;     // bytes; 0 = packed
  int64_t gemm_out_expert_stride = 0;  // bytes; 0 = packed
  const int32_t* masked_m = nullptr;   // [E_local]
  // signal_layout(gemm args) of this rank's GEMM; layout.n must equal config.n. E_local and max_m
  // must be the same on every rank (global expert ids map to ranks through E_local; not checked
  // across ranks); the tile may differ (each rank's own counters are read against its own values).
  SignalLayout layout;
  const uint32_t* signals = nullptr;
  uint32_t signal_base = 0;
  SignalScope scope = SignalScope::gpu;  // the GEMM's output is read on its own GPU only

  // Rows of this rank's experts, as a low-latency dispatch lays them out: for local expert e and
  // row i, row_source[e * max_m + i] = owner * (max_tokens_per_rank * topk) + t * topk + k for the
  // row that serves slot k of token t owned by rank `owner`, or -1 (padding); entries at or past
  // masked_m[e] are not read. With topk_idx it must describe one routing: each used slot served by
  // exactly one row below masked_m. A used slot no row serves times out in ep_combine; the
  // epilogue-send reduce, which waits per expert, reports a slot of an expert with no rows
  // (kErrorInvalidRouting) but otherwise cannot tell, and sums whatever that slot of the window holds.
  const int32_t* row_source = nullptr;  // [E_local][max_m]

  // Tokens this rank owns (<= max_tokens_per_rank) and their routing over global experts.
  int num_tokens = 0;
  const int32_t* topk_idx = nullptr;    // [num_tokens][topk], global expert id or -1 (unused slot)
  const float* topk_weights = nullptr;  // [num_tokens][topk]
  void* out = nullptr;                  // bf16 [num_tokens][N]

  // Sequence number of this combine, the same on every rank, counting 1, 2, 3, ... per context,
  // modulo 2^32 (0 follows 0xFFFFFFFF; any number of combines); every launch of one combine passes
  // the same. Its parity picks the half of the window. Checked on the host: one that neither repeats
  // nor follows the context's last is refused, and so is an epilogue-send prepare that repeats it or
  // a reduce that does not follow its own epoch's prepare. So a captured combine cannot be replayed as the next
  // one (its epoch is a launch argument): capture the GEMM, enqueue the combine directly.
  uint32_t epoch = 0;

  // At least ep_combine_workspace_bytes(layout.counter_count()) bytes of device memory, zeroed
  // (cudaMemsetAsync, capturable) before each combine; shared by all launches of one combine.
  void* workspace = nullptr;
  size_t workspace_bytes = 0;

  // As CombineArgs: one combine may be split over a few blocks beside the GEMM (on the SMs it
  // leaves free) and a full-chip launch stream-ordered after it; they share the workspace, and the
  // side stream is joined before `out` is read or the workspace cleared (CombineArgs). A
  // block fills one SM (768 threads), so num_blocks beside a GEMM is the SMs taken from it.
  int num_blocks = 0;  // 0 = 8
  int first_block = 0;
  // Tokens a reduce block sums together (one round of row loads for all of them), 1 to 4; 0 = the
  // tokens per SM, rounded. Every launch of one combine must pass the same value.
  int reduce_tokens = 0;

  // Model of a slower link: when > 0, rows to other ranks leave this GPU no faster than this many
  // bytes per second in total (a token bucket over %globaltimer; each counter's rows to other ranks
  // are one transfer, and their flags are released once it would have arrived). Shows what the
  // overlap buys where communication dominates. A benchmark's model: leave it 0 in production.
  double remote_bytes_per_second = 0;

  // Per wait; 0 = wait forever (a timeout needs error_flag). After a timeout the tokens whose waits
  // failed are not written, and this combine's output is undefined on the ranks that report it
  // (error_flag) and on those whose rows it concerns (they time out or report too); no rank stores
  // into a half of a window its owner may still be summing, but a slow sender's late rows may still
  // land in a half a later epoch reuses: after a reported timeout, destroy the contexts and create
  // them anew before the next combine.
  uint64_t timeout_ns = 0;
  // ORed with kErrorSignalTimeout on a timeout, with kErrorInvalidRouting for a routing entry that
  // names no rank of the comm (a row_source entry at or past num_ranks * max_tokens_per_rank * topk,
  // a topk_idx entry at or past num_ranks * E_local) or is below -1: skipped (the row not sent, the
  // slot not summed).
  int32_t* error_flag = nullptr;
  uint64_t* timeline = nullptr;   // optional, combine_timeline_entries() stamps (same layout)
  cudaStream_t stream = nullptr;
};

// Bytes of the workspace for a GEMM with `num_counters` signal counters (layout.counter_count()).
size_t ep_combine_workspace_bytes(int64_t num_counters);

[[nodiscard]] Status ep_combine(const EpCombineContext* context, const EpCombineArgs& args);

// The other mode: rows sent from the GEMM's epilogue. The GEMM's storer warp writes every row
// straight into its owner's window (GroupedGemmArgs::out_rows) and counts the expert done in a
// counter that lives in the window; the owners sum their tokens after their own GEMM, waiting on
// the producing ranks' counters. No SMs beside the GEMM and no second read of its output. Per
// combine (same epoch numbering and workspace as ep_combine), on every rank's stream:
//   ep_epilogue_send_prepare(ctx, args, out_rows, &signals);  // row table, counters zeroed (once the
//                                                              // peers' reduce of epoch - 2 is done), window
//                                                              // reuse gate of the previous combine opened
//   ep_combine_barrier(ctx, stream);     // every rank prepared, every reduce of epoch - 2 done
//   GEMM with out_rows, signals, SignalGranularity::per_expert, SignalScope::sys
//   ep_epilogue_send_reduce(ctx, args);  // args.num_blocks blocks (use the whole GPU); tokens in the
//                                        // order the prepare kernel chose (likely complete first)
// `signals` alternates between two halves of the window with the epoch's parity: a GEMM captured in
// a graph adds to the half of the epoch it was captured with, so capture one graph per parity (or
// update the kernel node's signals each combine), never one replayed for every epoch.
// out_rows: device memory for E_local * max_m pointers. Uses args' layout (per_expert, at most 16384
// experts), masked_m, row_source, tokens, out, epoch, workspace, num_blocks, reduce_tokens, timeout
// and stream; the throttle model does not apply. The reduce is a programmatic dependent launch: it
// may start while the kernel before it on the stream runs, once that kernel has issued
// griddepcontrol.launch_dependents (the GEMM does, after its own inputs are ready). Enqueue it
// right after the GEMM, as above, not after another kernel that triggers early.
[[nodiscard]] Status ep_epilogue_send_prepare(const EpCombineContext* context, const EpCombineArgs& args,
                                              void** out_rows, uint32_t** signals);
[[nodiscard]] Status ep_epilogue_send_reduce(const EpCombineContext* context, const EpCombineArgs& args);

}  // namespace signalgemm
