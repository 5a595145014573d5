// Device pieces of the combines (single-GPU combine.cu, multi-GPU ep_combine.cu): the clock and
// block stamps of timelines, work queues, waits that give up after a timeout, row copies, and the
// single-GPU per-token weighted sum.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include <cuda/ptx>

#include "signalgemm/combine.h"  // kErrorInvalidRouting
#include "signalgemm/consumer.cuh"

namespace signalgemm::detail {

// The reduce's shape, the same in both combines: at most kMaxTopk slots per token (a group's row
// addresses live in shared memory), groups of up to kReduceTokens tokens per block, each thread
// keeping kSlotsPerLoad slot loads in flight (sum_token_group).
inline constexpr int kMaxTopk = 32;
inline constexpr int kReduceTokens = 4;
inline constexpr int kSlotsPerLoad = 8;

// Tokens per reduce group by default: tokens per SM, rounded to the nearest (1 to kReduceTokens),
// so that a block's tokens share one round of row loads and SMs rarely idle (measured in
// ep_combine.cu's reduce_group). From the SM count, not the grid: the launches of one combine share
// one queue of groups.
__device__ __forceinline__ int tokens_per_sm_group(int num_tokens) {
  const int sms = static_cast<int>(cuda::ptx::get_sreg_nsmid());
  return max(1, min(kReduceTokens, (num_tokens + sms / 2) / sms));
}

__device__ __forceinline__ uint64_t globaltimer() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// This block's [start, send phase done, end] stamps in a combine timeline (after the per-counter
// pairs), or null without one; stamps the start.
__device__ __forceinline__ uint64_t* start_block_timeline(uint64_t* timeline, int64_t num_counters, int first_block) {
  if (timeline == nullptr) return nullptr;
  uint64_t* block_times = timeline + 2 * num_counters + 3 * (first_block + blockIdx.x);
  if (threadIdx.x == 0) block_times[0] = globaltimer();
  return block_times;
}

// One wait of a combine (one thread): gives up at once when another one has already timed out
// (`*aborted`, zeroed with the combine's workspace), so that a failed combine ends after about one
// timeout instead of one per row or token waited for; a word already ready skips that look.
template <class Reached>
__device__ bool wait_unless_aborted(const uint32_t* word, Reached reached, SignalScope scope, uint64_t timeout_ns,
                                    int32_t* error_flag, uint32_t* aborted) {
  if (reached(load_acquire(word, scope))) return true;
  if (*reinterpret_cast<volatile uint32_t*>(aborted) != 0) return false;
  if (wait_until(word, reached, scope, timeout_ns, error_flag)) return true;
  atomicExch(aborted, 1u);
  return false;
}

// The next work item of a queue for the whole block. Work is taken from queues in order, so the
// blocks resident while the GEMM runs (on the SMs it leaves free) take counters as they complete,
// and blocks that start once the GEMM's CTAs retire join whatever is left. Relaxed atomic: a queue
// only hands out indices; the data they lead to is ordered by signals, flags and arrival counts.
__device__ __forceinline__ int64_t take_work_item(uint32_t* queue) {
  __shared__ int64_t next_item;
  if (threadIdx.x == 0) next_item = atomicAdd(queue, 1u);
  __syncthreads();
  const int64_t item = next_item;
  __syncthreads();  // next_item is rewritten by the next take
  return item;
}

// The next work item for the calling warp (lane 0 takes it, the warp shares it). Relaxed atomic,
// as take_work_item.
__device__ __forceinline__ int64_t take_warp_item(uint32_t* queue, int lane) {
  uint32_t item = 0;
  if (lane == 0) item = atomicAdd(queue, 1u);
  return __shfl_sync(0xffffffffu, item, 0);
}

// Copies 16-byte vectors [begin, end) of a row, `kPerLane` vectors per lane in flight: a warp
// copying one row at a time is otherwise bound by load latency. `dst` may be a peer GPU's memory.
template <int kPerLane>
__device__ __forceinline__ void copy_vectors(const uint4* src, uint4* dst, int begin, int end, int lane) {
  for (int base = begin + lane; base < end; base += 32 * kPerLane) {
    uint4 v[kPerLane];
#pragma unroll
    for (int i = 0; i < kPerLane; ++i)
      if (base + 32 * i < end) v[i] = src[base + 32 * i];
#pragma unroll
    for (int i = 0; i < kPerLane; ++i)
      if (base + 32 * i < end) dst[base + 32 * i] = v[i];
  }
}

// A routing entry skipped as inconsistent (kErrorInvalidRouting), where the caller gave a flag.
__device__ __forceinline__ void report_invalid_routing(int32_t* error_flag) {
  if (error_flag != nullptr) atomicOr(error_flag, kErrorInvalidRouting);
}

// Whether a token's slot is routed to an expert of the GEMM (-1: unused; an id past the experts is
// bad routing, which the combine reports; neither is waited for nor summed).
__device__ __forceinline__ bool slot_routed(int32_t expert, int num_experts) {
  return expert >= 0 && expert < num_experts;
}

// The weighted sums of a group of `count` tokens, by the whole block: out[token[i]] = sum over
// k < topk of weight[i * topk + k] * src[i * topk + k][:] (a null src adds nothing), in the fixed
// order k = 0..topk-1, in fp32, stored as bf16: the result never depends on which slot arrived
// first. token[i] < 0: not written. The group's output vectors are one range, so every thread is
// busy and one round of loads covers blockDim.x vectors rather than one token's; each thread keeps
// kSlotsPerLoad slot loads in flight. Rows of n bf16 (n a multiple of 8) as 16-byte vectors.
__device__ inline void sum_token_group(int count, int topk, int n, const uint4* const* src, const float* weight,
                                const int* token, __nv_bfloat16* out) {
  const int vectors = n / 8;
  for (int item = threadIdx.x; item < count * vectors; item += blockDim.x) {
    const int i = item / vectors, v = item - i * vectors;
    if (token[i] < 0) continue;
    const uint4* const* token_src = src + i * topk;
    const float* token_weight = weight + i * topk;
    float sum[8] = {};
    for (int k0 = 0; k0 < topk; k0 += kSlotsPerLoad) {
      uint4 raw[kSlotsPerLoad];
#pragma unroll
      for (int q = 0; q < kSlotsPerLoad; ++q) {
        const int k = k0 + q;
        raw[q] = k < topk && token_src[k] != nullptr ? token_src[k][v] : uint4{};
      }
#pragma unroll
      for (int q = 0; q < kSlotsPerLoad; ++q) {
        const float w = k0 + q < topk ? token_weight[k0 + q] : 0.f;
        const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw[q]);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const float2 f = __bfloat1622float2(h[j]);
          sum[2 * j] = fmaf(w, f.x, sum[2 * j]);
          sum[2 * j + 1] = fmaf(w, f.y, sum[2 * j + 1]);
        }
      }
    }
    uint4 packed;
    __nv_bfloat162* o = reinterpret_cast<__nv_bfloat162*>(&packed);
#pragma unroll
    for (int j = 0; j < 4; ++j) o[j] = __floats2bfloat162_rn(sum[2 * j], sum[2 * j + 1]);
    reinterpret_cast<uint4*>(out + int64_t(token[i]) * n)[v] = packed;
  }
}

}  // namespace signalgemm::detail
