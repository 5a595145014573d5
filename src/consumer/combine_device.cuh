// Device pieces of the combines (single-GPU combine.cu, multi-GPU ep_combine.cu): the clock and
// block stamps of timelines, work queues, waits that give up after a timeout, row copies, and the
// single-GPU per-token weighted sum.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "signalgemm/consumer.cuh"

namespace signalgemm::detail {

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

// A row of N bf16 (N is a multiple of 8, validated by the GEMM), 4 vectors per lane in flight.
__device__ __forceinline__ void copy_row(const uint8_t* src, __nv_bfloat16* dst, int n, int lane) {
  copy_vectors<4>(reinterpret_cast<const uint4*>(src), reinterpret_cast<uint4*>(dst), 0, n / 8, lane);
}

// Whether a token's slot is routed to an expert of the GEMM (-1: unused; an id past the experts is
// bad routing, which the combine reports; neither is waited for nor summed).
__device__ __forceinline__ bool slot_routed(int32_t expert, int num_experts) {
  return expert >= 0 && expert < num_experts;
}

// out_row = sum over routed slots k (slot_routed(topk_idx_row[k])) of weights_row[k] * slots[k * n + :],
// summed in fp32 in the fixed order k = 0..topk-1, stored as bf16: the result never depends on
// which slot arrived first. The calling block's threads split the row; every thread loads its
// vector of up to kSlotsPerLoad slots before summing them (that many loads in flight).
__device__ inline void reduce_token(const int32_t* topk_idx_row, const float* weights_row, int topk, int num_experts,
                                    int n, const __nv_bfloat16* slots, __nv_bfloat16* out_row) {
  constexpr int kSlotsPerLoad = 16;  // slots whose vectors are loaded together
  for (int v = threadIdx.x; v < n / 8; v += blockDim.x) {
    float sum[8] = {};
    for (int k0 = 0; k0 < topk; k0 += kSlotsPerLoad) {
      uint4 raw[kSlotsPerLoad];
      float weight[kSlotsPerLoad];
#pragma unroll
      for (int k = 0; k < kSlotsPerLoad; ++k) {
        const int slot = k0 + k;
        const bool used = slot < topk && slot_routed(topk_idx_row[slot], num_experts);
        weight[k] = used ? weights_row[slot] : 0.f;
        raw[k] = used ? reinterpret_cast<const uint4*>(slots + int64_t(slot) * n)[v] : uint4{};
      }
#pragma unroll
      for (int k = 0; k < kSlotsPerLoad; ++k) {
        const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw[k]);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const float2 f = __bfloat1622float2(h[j]);
          sum[2 * j] = fmaf(weight[k], f.x, sum[2 * j]);
          sum[2 * j + 1] = fmaf(weight[k], f.y, sum[2 * j + 1]);
        }
      }
    }
    uint4 packed;
    __nv_bfloat162* o = reinterpret_cast<__nv_bfloat162*>(&packed);
#pragma unroll
    for (int j = 0; j < 4; ++j) o[j] = __floats2bfloat162_rn(sum[2 * j], sum[2 * j + 1]);
    reinterpret_cast<uint4*>(out_row)[v] = packed;
  }
}

}  // namespace signalgemm::detail
