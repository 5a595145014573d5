// The single-GPU combine (include/signalgemm/combine.h): a record phase driven by the GEMM's
// signals, then a deterministic per-token reduction that reads the rows where the GEMM wrote them.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <limits>
#include <string>

#include "consumer/combine_args.h"
#include "consumer/combine_device.cuh"
#include "host/devices.h"
#include "signalgemm/combine.h"
#include "signalgemm/consumer.cuh"

namespace signalgemm {
namespace {

// The reduce sums a group of tokens per block: with 1024 threads a 7168-column row's 896 vectors
// take one round of loads (detail::sum_token_group).
constexpr int kCombineThreads = 1024;
constexpr int kDefaultBlocks = 8;
constexpr int kRowsPerItem = 32;  // a warp's record item: one row per lane
using detail::kMaxTopk;
using detail::kReduceTokens;

struct CombineParams {
  const uint8_t* gemm_out;
  int64_t row_stride, expert_stride;  // bytes
  const int32_t* masked_m;
  SignalLayout layout;
  const uint32_t* signals;
  uint32_t signal_base;
  SignalScope scope;
  int num_tokens, topk;
  const int32_t* topk_idx;
  const float* topk_weights;
  const int32_t* row_source;
  int64_t* slot_rows;        // [num_tokens * topk]: 1 + byte offset of the slot's row in gemm_out; 0: none
  uint32_t* token_arrivals;  // [num_tokens]
  uint32_t* work_queues;     // [3]: next record item, next token to reduce; `aborted` (wait_unless_aborted)
  __nv_bfloat16* out;
  uint64_t timeout_ns;
  int32_t* error_flag;
  uint64_t* timeline;
  int first_block;
};

using detail::globaltimer;

// One wait of this combine by the calling thread; after one has timed out the others give up at
// once (detail::wait_unless_aborted).
__device__ bool combine_wait(const CombineParams& p, const uint32_t* word, uint32_t target, SignalScope scope) {
  return detail::wait_unless_aborted(
      word, [target](uint32_t value) { return signal_reached(value, target); }, scope, p.timeout_ns, p.error_flag,
      &p.work_queues[2]);
}

// Whether a token waits for a row in its slot routed to `expert`: only an expert of the GEMM with
// rows can send one (an id past the experts or below -1, or an expert with masked_m <= 0, never
// does: waited for, the token would end in a timeout, or never without one).
__device__ __forceinline__ bool slot_awaited(const CombineParams& p, int32_t expert) {
  return detail::slot_routed(expert, p.layout.num_experts) && p.masked_m[expert] > 0;
}

// Record items per counter: its most rows (an expert's slab, or a row block) in groups of 32.
__device__ __forceinline__ int record_items_per_counter(const CombineParams& p) {
  const bool per_row_block = p.layout.granularity == SignalGranularity::per_row_block;
  return ((per_row_block ? p.layout.block_m : p.layout.max_m) + kRowsPerItem - 1) / kRowsPerItem;
}

// Record item `item` (per warp): rows [32 g, 32 g + 32) of counter c, item = c * groups + g. Once
// the counter is complete, each lane records where its row's slot finds it and counts the arrival
// on the slot's token. No row is copied: on one GPU the reduce reads C in place, once.
__device__ void record_rows(const CombineParams& p, int64_t item, int lane) {
  const bool per_row_block = p.layout.granularity == SignalGranularity::per_row_block;
  const int counters_per_expert = per_row_block ? p.layout.row_blocks_per_expert() : 1;
  const int groups = record_items_per_counter(p);
  const int64_t c = item / groups;
  const int first_in_counter = int(item % groups) * kRowsPerItem;
  const int e = int(c / counters_per_expert), rb = int(c % counters_per_expert);
  const int m = p.masked_m[e];
  const uint32_t expected = p.layout.expected(m, rb);
  const int rows = p.layout.covered_rows(m, rb);
  if (expected == 0 || first_in_counter >= rows) return;  // no such rows: nothing to wait for
  bool ok = true;
  if (lane == 0) ok = combine_wait(p, p.signals + c, p.signal_base + expected, p.scope);
  // The barrier extends lane 0's acquire to the warp: the GEMM's rows of this counter happen
  // before every lane's release below, which passes them on to the token's reduce.
  if (!__shfl_sync(0xffffffffu, ok, 0)) return;
  __syncwarp();
  if (p.timeline != nullptr && lane == 0 && first_in_counter == 0) p.timeline[2 * c] = globaltimer();
  const int r = first_in_counter + lane;
  if (r < rows) {
    const int row = (per_row_block ? rb * p.layout.block_m : 0) + r;
    const int source = p.row_source[int64_t(e) * p.layout.max_m + row];
    // No such slot, or one not routed to this expert (its token does not wait for this row:
    // counted, it would let the token's sum start before its own rows are in, or sum a row of
    // another expert): reported, never recorded. -1: the row serves no token.
    if (source < -1 || (source >= 0 && (source >= int64_t(p.num_tokens) * p.topk || p.topk_idx[source] != e))) {
      detail::report_invalid_routing(p.error_flag);
    } else if (source >= 0) {
      // The first row naming the slot records it (the workspace is zeroed before the combine). A
      // second one (two rows of this expert naming one slot) is reported and not counted: counted,
      // it would complete the token's arrivals before its other slots are in.
      const auto place = static_cast<unsigned long long>(1 + e * p.expert_stride + row * p.row_stride);
      if (atomicCAS(reinterpret_cast<unsigned long long*>(p.slot_rows + source), 0ull, place) != 0ull) {
        detail::report_invalid_routing(p.error_flag);
      } else {
        // Publish the slot: its record (the CAS above, program order) and, through the counter's
        // acquire above, its row.
        asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(p.token_arrivals + source / p.topk) : "memory");
      }
    }
  }
  if (p.timeline != nullptr) {
    __syncwarp();
    if (lane == 0) atomicMax(reinterpret_cast<unsigned long long*>(p.timeline + 2 * c + 1), globaltimer());
  }
}

// Tokens first .. first + count - 1 (count <= kReduceTokens), once each has all its routed slots
// (detail::sum_token_group). One thread per token waits (acquire) for its arrivals; the barrier
// extends those acquires to the block, whose threads then read the slots' places and rows. A token
// whose wait timed out is not written (reported).
__device__ void reduce_group(const CombineParams& p, int first, int count) {
  __shared__ const uint4* slot_src[kReduceTokens * kMaxTopk];
  __shared__ float slot_weight[kReduceTokens * kMaxTopk];
  __shared__ int group_token[kReduceTokens];
  if (threadIdx.x < count) {
    const int t = first + threadIdx.x;
    uint32_t slots = 0;
    for (int k = 0; k < p.topk; ++k) {
      const int32_t expert = p.topk_idx[int64_t(t) * p.topk + k];
      const bool awaited = slot_awaited(p, expert);
      slots += awaited;
      // No row can arrive for it: reported, not waited for.
      if (!awaited && expert != -1) detail::report_invalid_routing(p.error_flag);
    }
    group_token[threadIdx.x] = combine_wait(p, p.token_arrivals + t, slots, SignalScope::gpu) ? t : -1;
  }
  __syncthreads();
  if (threadIdx.x < count * p.topk) {
    const int64_t slot = int64_t(first) * p.topk + threadIdx.x;
    const bool wanted = group_token[threadIdx.x / p.topk] >= 0 && slot_awaited(p, p.topk_idx[slot]);
    // Every awaited slot of a complete token has its place: each arrival counted is a distinct
    // awaited slot's first record.
    const int64_t place = wanted ? p.slot_rows[slot] : 0;
    slot_src[threadIdx.x] = place > 0 ? reinterpret_cast<const uint4*>(p.gemm_out + (place - 1)) : nullptr;
    slot_weight[threadIdx.x] = place > 0 ? p.topk_weights[slot] : 0.f;
  }
  __syncthreads();
  detail::sum_token_group(count, p.topk, p.layout.n, slot_src, slot_weight, group_token, p.out);
  __syncthreads();  // slot_src, slot_weight and group_token are rewritten for the next group
}

__global__ void __launch_bounds__(kCombineThreads, 1) combine_kernel(const CombineParams p) {
  const int lane = threadIdx.x % 32;
  const int64_t num_counters = p.layout.counter_count();
  uint64_t* block_times = detail::start_block_timeline(p.timeline, num_counters, p.first_block);
  // Work queues: record items (per warp) in the GEMM's expert-major order, then tokens (per block).
  uint32_t* const record_queue = &p.work_queues[0];
  uint32_t* const token_queue = &p.work_queues[1];

  // ---- record: a warp waiting for a signal never holds up the items ahead of it.
  const int64_t items = num_counters * record_items_per_counter(p);
  for (int64_t item = detail::take_warp_item(record_queue, lane); item < items;
       item = detail::take_warp_item(record_queue, lane))
    record_rows(p, item, lane);
  if (block_times != nullptr) {
    __syncthreads();
    if (threadIdx.x == 0) block_times[1] = globaltimer();
  }

  // ---- reduce: groups of consecutive tokens per block, each token once all its slots arrived,
  // straight from the GEMM's output.
  const int group_tokens = detail::tokens_per_sm_group(p.num_tokens);
  for (int64_t group = detail::take_work_item(token_queue); group * group_tokens < p.num_tokens;
       group = detail::take_work_item(token_queue)) {
    const int first = int(group * group_tokens);
    reduce_group(p, first, min(group_tokens, p.num_tokens - first));
  }
  if (block_times != nullptr) {
    __syncthreads();
    if (threadIdx.x == 0) block_times[2] = globaltimer();
  }
  // A PDL launch may run out of work before the GEMM ends (no rows to wait for): waiting for that
  // grid here makes this grid's completion imply the GEMM's, so what follows this launch (a graph
  // node depends on this one only) never overlaps the GEMM's tail. Without PDL: returns at once.
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
}

using consumer::invalid;

}  // namespace

size_t combine_workspace_bytes(int num_tokens, int topk) {
  num_tokens = std::max(num_tokens, 0);  // combine() refuses such values; no size wraps around here
  topk = std::max(topk, 0);
  // The slots' places, then the tokens' arrivals and the three queue words.
  return size_t(num_tokens) * topk * sizeof(int64_t) + (size_t(num_tokens) + 3) * sizeof(uint32_t);
}

int64_t combine_timeline_entries(const SignalLayout& layout, int num_blocks) {
  return 2 * layout.counter_count() + 3 * int64_t(num_blocks > 0 ? num_blocks : kDefaultBlocks);
}

Status combine(const CombineArgs& a) {
  if (a.gemm_out == nullptr) return invalid("gemm_out is null");
  if (a.masked_m == nullptr) return invalid("masked_m is null");
  if (a.signals == nullptr || a.layout.granularity == SignalGranularity::none)
    return invalid("signals is null or layout.granularity is none: the combine is driven by the GEMM's signals");
  if (Status s = consumer::check_layout_routing_and_output(a); !s.ok()) return s;
  if (a.layout.n < 8 || a.layout.n % 8 != 0) return invalid("layout.n must be a positive multiple of 8");
  if (a.topk < 1 || a.topk > kMaxTopk) return invalid("topk must be in [1, " + std::to_string(kMaxTopk) + "]");
  // row_source names slots by int32 id: a token past 2^31 slots could never be served.
  if (int64_t(a.num_tokens) * a.topk > std::numeric_limits<int32_t>::max())
    return invalid("num_tokens * topk = " + std::to_string(int64_t(a.num_tokens) * a.topk) +
                   " must be below 2^31 (row_source entries are int32 slot ids)");
  if (const size_t needed = combine_workspace_bytes(a.num_tokens, a.topk); a.workspace_bytes < needed)
    return invalid("workspace_bytes = " + std::to_string(a.workspace_bytes) +
                   " is less than combine_workspace_bytes(num_tokens, topk) = " + std::to_string(needed));
  if (a.layout.granularity != SignalGranularity::per_expert && a.layout.granularity != SignalGranularity::per_row_block)
    return invalid("layout.granularity: unknown value " + std::to_string(int(a.layout.granularity)));
  if (reinterpret_cast<uintptr_t>(a.gemm_out) % 16 != 0) return invalid("gemm_out must be 16-byte aligned");
  if (Status s = host::check_gemm_out_strides(a.gemm_out_row_stride, a.gemm_out_expert_stride, a.layout.n,
                                              a.layout.max_m);
      !s.ok())
    return s;
  if (Status s = consumer::check_no_aliasing(a, a.topk); !s.ok()) return s;
  if (Status s = host::check_alignment({{a.signals, "signals", 4}}); !s.ok()) return s;
  if (Status s = host::check_device_pointers(a.stream, {{a.gemm_out, "gemm_out"},
                                                        {a.masked_m, "masked_m"},
                                                        {a.signals, "signals"},
                                                        {a.topk_idx, "topk_idx"},
                                                        {a.topk_weights, "topk_weights"},
                                                        {a.row_source, "row_source"},
                                                        {a.workspace, "workspace"},
                                                        {a.out, "out"},
                                                        {a.error_flag, "error_flag"},
                                                        {a.timeline, "timeline"}});
      !s.ok())
    return s;

  CombineParams p{};
  p.gemm_out = static_cast<const uint8_t*>(a.gemm_out);
  p.row_stride = a.gemm_out_row_stride != 0 ? a.gemm_out_row_stride : int64_t(a.layout.n) * 2;
  p.expert_stride = a.gemm_out_expert_stride != 0 ? a.gemm_out_expert_stride : p.row_stride * a.layout.max_m;
  p.masked_m = a.masked_m;
  p.layout = a.layout;
  p.signals = a.signals;
  p.signal_base = a.signal_base;
  p.scope = a.scope;
  p.num_tokens = a.num_tokens;
  p.topk = a.topk;
  p.topk_idx = a.topk_idx;
  p.topk_weights = a.topk_weights;
  p.row_source = a.row_source;
  p.slot_rows = static_cast<int64_t*>(a.workspace);
  p.token_arrivals = reinterpret_cast<uint32_t*>(p.slot_rows + size_t(a.num_tokens) * a.topk);
  p.work_queues = p.token_arrivals + a.num_tokens;
  p.out = static_cast<__nv_bfloat16*>(a.out);
  p.timeout_ns = a.timeout_ns;
  p.error_flag = a.error_flag;
  p.timeline = a.timeline;
  p.first_block = a.first_block;

  // With enable_pdl: programmatic serialization on the GEMM before it, which issues
  // griddepcontrol.launch_dependents once started, after its own griddepcontrol.wait. The kernel
  // waits for the GEMM only at its end: the rows come through the signals (acquire), and the rest
  // was written by work that completed before the GEMM passed its wait.
  cudaLaunchAttribute overlap{};
  overlap.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  overlap.val.programmaticStreamSerializationAllowed = 1;
  // One block per SM: a dynamic shared-memory request of more than half an SM's (the kernel uses
  // none of it). Otherwise the scheduler may pack blocks onto the first SMs that free up: the
  // blocks beside the GEMM onto few of the SMs it leaves, a PDL launch onto the first SMs its CTAs
  // leave, whose reduce then ran on a fraction of the GPU (H200, 2026-11-29, blocks of 256 threads:
  // 30-47 us after the GEMM's last signal against 21-38 us for the whole combine alone).
  int device = 0, smem_per_sm = 0, smem_per_block = 0;
  if (cudaError_t err = cudaGetDevice(&device); err != cudaSuccess)
    return Status{StatusCode::cuda_error, std::string("signalgemm: cudaGetDevice: ") + cudaGetErrorString(err)};
  cudaDeviceGetAttribute(&smem_per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device);
  cudaDeviceGetAttribute(&smem_per_block, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  const int spread_smem = std::min(smem_per_sm / 2 + 1, smem_per_block);
  if (cudaError_t err = cudaFuncSetAttribute(combine_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, spread_smem);
      err != cudaSuccess)
    return Status{StatusCode::cuda_error, std::string("signalgemm: cudaFuncSetAttribute: ") + cudaGetErrorString(err)};
  cudaLaunchConfig_t launch{};
  launch.gridDim = dim3(a.num_blocks > 0 ? a.num_blocks : kDefaultBlocks);
  launch.blockDim = dim3(kCombineThreads);
  launch.dynamicSmemBytes = spread_smem;
  launch.stream = a.stream;
  launch.attrs = a.enable_pdl ? &overlap : nullptr;
  launch.numAttrs = a.enable_pdl ? 1 : 0;
  if (cudaError_t err = cudaLaunchKernelEx(&launch, combine_kernel, p); err != cudaSuccess)
    return Status{StatusCode::cuda_error, std::string("signalgemm: combine launch: ") + cudaGetErrorString(err)};
  return {};
}

}  // namespace signalgemm
