// The single-GPU combine (include/signalgemm/combine.h): send phase driven by the GEMM's signals,
// then a deterministic per-token reduction.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <string>

#include "consumer/combine_device.cuh"
#include "host/devices.h"
#include "signalgemm/combine.h"
#include "signalgemm/consumer.cuh"

namespace signalgemm {
namespace {

constexpr int kCombineThreads = 256;
constexpr int kWarps = kCombineThreads / 32;
constexpr int kDefaultBlocks = 8;

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
  __nv_bfloat16* recv;       // [num_tokens * topk][N]
  uint32_t* token_arrivals;  // [num_tokens]
  uint32_t* work_queues;     // [3]: next counter to send, next token to reduce; `aborted` (block_wait)
  __nv_bfloat16* out;
  uint64_t timeout_ns;
  int32_t* error_flag;
  uint64_t* timeline;
  int first_block;
};

using detail::copy_row;
using detail::globaltimer;

// Every wait of this combine, block-wide (thread 0 waits; the barrier extends its acquire to the
// block); after one has timed out the others give up at once (detail::wait_unless_aborted).
__device__ bool block_wait(const CombineParams& p, const uint32_t* word, uint32_t target, SignalScope scope) {
  __shared__ int reached;
  if (threadIdx.x == 0)
    reached = detail::wait_unless_aborted(
        word, [target](uint32_t value) { return signal_reached(value, target); }, scope, p.timeout_ns, p.error_flag,
        &p.work_queues[2]);
  __syncthreads();
  const bool ok = reached != 0;
  __syncthreads();  // `reached` is rewritten by the next call
  return ok;
}

__global__ void __launch_bounds__(kCombineThreads) combine_kernel(const CombineParams p) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int n = p.layout.n;
  const bool per_row_block = p.layout.granularity == SignalGranularity::per_row_block;
  const int counters_per_expert = per_row_block ? p.layout.row_blocks_per_expert() : 1;
  const int64_t num_counters = p.layout.counter_count();
  uint64_t* block_times = detail::start_block_timeline(p.timeline, num_counters, p.first_block);
  // Work queues (detail::take_work_item): counters for the send phase, tokens for the reduce.
  uint32_t* const counter_queue = &p.work_queues[0];
  uint32_t* const token_queue = &p.work_queues[1];

  // ---- send: counters in the GEMM's (expert-major) order.
  for (int64_t c = detail::take_work_item(counter_queue); c < num_counters; c = detail::take_work_item(counter_queue)) {
    const int e = int(c / counters_per_expert);
    const int rb = int(c % counters_per_expert);
    const int m = p.masked_m[e];
    const uint32_t expected = p.layout.expected(m, rb);
    if (expected == 0) continue;  // no rows: never signalled
    if (!block_wait(p, p.signals + c, p.signal_base + expected, p.scope)) continue;
    if (p.timeline != nullptr && threadIdx.x == 0) p.timeline[2 * c] = globaltimer();
    const int first_row = per_row_block ? rb * p.layout.block_m : 0;
    const int rows = p.layout.covered_rows(m, rb);
    for (int r = warp; r < rows; r += kWarps) {
      const int row = first_row + r;
      const int source = p.row_source[int64_t(e) * p.layout.max_m + row];
      if (source < 0) continue;
      // No such slot, or one routed nowhere (its token does not wait for it: counted, it would let
      // the token's sum start before a real slot arrives): reported, never written.
      if (source >= int64_t(p.num_tokens) * p.topk || !detail::slot_routed(p.topk_idx[source], p.layout.num_experts)) {
        if (lane == 0 && p.error_flag != nullptr) atomicOr(p.error_flag, kErrorInvalidRouting);
        continue;
      }
      copy_row(p.gemm_out + e * p.expert_stride + row * p.row_stride, p.recv + int64_t(source) * n, n, lane);
      __syncwarp();
      // Publish the slot: the warp's row stores are ordered before the release by the warp barrier.
      if (lane == 0) {
        asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(p.token_arrivals + source / p.topk) : "memory");
      }
    }
    if (p.timeline != nullptr) {
      __syncthreads();
      if (threadIdx.x == 0) p.timeline[2 * c + 1] = globaltimer();
    }
  }
  if (block_times != nullptr && threadIdx.x == 0) block_times[1] = globaltimer();

  // ---- reduce: one block per token, slots summed in the fixed order k = 0..topk-1 once all have
  // arrived. Each thread loads its vector of up to 16 slots before summing them (reduce_token).
  for (int64_t t = detail::take_work_item(token_queue); t < p.num_tokens; t = detail::take_work_item(token_queue)) {
    uint32_t slots = 0;
    for (int k = 0; k < p.topk; ++k) {
      const int32_t expert = p.topk_idx[int64_t(t) * p.topk + k];
      slots += detail::slot_routed(expert, p.layout.num_experts);
      // An expert id past the GEMM's: no row can arrive for it (reported, not waited for).
      if (expert >= p.layout.num_experts && threadIdx.x == 0 && p.error_flag != nullptr)
        atomicOr(p.error_flag, kErrorInvalidRouting);
    }
    block_wait(p, p.token_arrivals + t, slots, SignalScope::gpu);  // on a timeout: summed as it is (reported)
    detail::reduce_token(p.topk_idx + int64_t(t) * p.topk, p.topk_weights + int64_t(t) * p.topk, p.topk,
                         p.layout.num_experts, n, p.recv + int64_t(t) * p.topk * n, p.out + int64_t(t) * n);
  }
  if (block_times != nullptr) {
    __syncthreads();
    if (threadIdx.x == 0) block_times[2] = globaltimer();
  }
}

Status invalid(const std::string& what) { return Status{StatusCode::invalid_argument, "signalgemm: " + what}; }

}  // namespace

size_t combine_workspace_bytes(int num_tokens, int topk, int n) {
  const size_t recv = size_t(num_tokens) * topk * n * sizeof(__nv_bfloat16);
  return recv + combine_workspace_counter_bytes(num_tokens);
}

size_t combine_workspace_counter_bytes(int num_tokens) { return (size_t(num_tokens) + 3) * sizeof(uint32_t); }

int64_t combine_timeline_entries(const SignalLayout& layout, int num_blocks) {
  return 2 * layout.counter_count() + 3 * int64_t(num_blocks > 0 ? num_blocks : kDefaultBlocks);
}

Status combine(const CombineArgs& a) {
  if (a.gemm_out == nullptr) return invalid("gemm_out is null");
  if (a.masked_m == nullptr) return invalid("masked_m is null");
  if (a.signals == nullptr || a.layout.granularity == SignalGranularity::none)
    return invalid("signals is null or layout.granularity is none: the combine is driven by the GEMM's signals");
  if (a.layout.num_experts < 1 || a.layout.max_m < 1 || a.layout.block_m < 1 || a.layout.block_n < 1)
    return invalid("layout is empty: pass signal_layout(gemm args)");
  if (a.layout.n < 8 || a.layout.n % 8 != 0) return invalid("layout.n must be a positive multiple of 8");
  if (a.num_tokens < 0) return invalid("num_tokens must be >= 0");
  if (a.topk < 1) return invalid("topk must be >= 1");
  if (a.num_tokens > 0 && (a.topk_idx == nullptr || a.topk_weights == nullptr))
    return invalid("topk_idx and topk_weights are required");
  if (a.row_source == nullptr) return invalid("row_source is null");
  if (a.workspace == nullptr || reinterpret_cast<uintptr_t>(a.workspace) % 16 != 0)
    return invalid("workspace is null or not 16-byte aligned");
  if (a.num_tokens > 0 && (a.out == nullptr || reinterpret_cast<uintptr_t>(a.out) % 16 != 0))
    return invalid("out is null or not 16-byte aligned");
  if (a.layout.granularity != SignalGranularity::per_expert && a.layout.granularity != SignalGranularity::per_row_block)
    return invalid("layout.granularity: unknown value " + std::to_string(int(a.layout.granularity)));
  if (reinterpret_cast<uintptr_t>(a.gemm_out) % 16 != 0) return invalid("gemm_out must be 16-byte aligned");
  if (Status s = host::check_gemm_out_strides(a.gemm_out_row_stride, a.gemm_out_expert_stride, a.layout.n,
                                              a.layout.max_m);
      !s.ok())
    return s;
  if (a.num_blocks < 0) return invalid("num_blocks must be >= 0");
  if (a.first_block < 0) return invalid("first_block must be >= 0");
  if (a.timeout_ns > 0 && a.error_flag == nullptr)
    return invalid("timeout_ns is set but error_flag is null: a timed-out combine's output is incomplete, and "
                   "error_flag is where that is reported");
  if (Status s = host::check_alignment({{a.masked_m, "masked_m", 4},
                                        {a.signals, "signals", 4},
                                        {a.topk_idx, "topk_idx", 4},
                                        {a.topk_weights, "topk_weights", 4},
                                        {a.row_source, "row_source", 4},
                                        {a.error_flag, "error_flag", 4},
                                        {a.timeline, "timeline", 8}});
      !s.ok())
    return s;
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
  p.recv = static_cast<__nv_bfloat16*>(a.workspace);
  p.token_arrivals = reinterpret_cast<uint32_t*>(static_cast<uint8_t*>(a.workspace) +
                                                 size_t(a.num_tokens) * a.topk * a.layout.n * 2);
  p.work_queues = p.token_arrivals + a.num_tokens;
  p.out = static_cast<__nv_bfloat16*>(a.out);
  p.timeout_ns = a.timeout_ns;
  p.error_flag = a.error_flag;
  p.timeline = a.timeline;
  p.first_block = a.first_block;

  const int blocks = a.num_blocks > 0 ? a.num_blocks : kDefaultBlocks;
  if (cudaError_t err = host::launch_kernel(combine_kernel, blocks, kCombineThreads, a.stream, p); err != cudaSuccess)
    return Status{StatusCode::cuda_error, std::string("signalgemm: combine launch: ") + cudaGetErrorString(err)};
  return {};
}

}  // namespace signalgemm
