// Device-side helpers for consumers of SignalGEMM's completion signals (SPEC §3).
//
//   const SignalLayout layout = ...;            // from signalgemm::signal_layout(args) on the host
//   uint32_t target = base + layout.expected(masked_m[e], rb);
//   if (layout.expected(masked_m[e], rb) == 0) -> nothing to wait for (no rows)
//   if (!signalgemm::wait_signal(&signals[layout.counter_index(e, rb)], target, scope, timeout_ns, flag)) -> timed out
//   ... read rows of expert e covered by the counter ...
//
// `base` is the counter's value before the GEMM launch (0 after a memset); counters only grow, and
// comparisons are modulo 2^32, so a running base works across many launches.
// Read the covered rows with ordinary (coherent) loads after the wait: TMA / cp.async.bulk reads of
// them need fence.proxy.async.global after it first, and ld.global.nc / __ldg (or const __restrict__
// pointers) must not read C while the GEMM runs (docs/signals.md).
#pragma once

#ifndef __CUDACC__
#error "signalgemm/consumer.cuh holds device code: include it from CUDA sources (nvcc)"
#endif

#include <cstdint>

#include "signalgemm/signals.h"
#include "signalgemm/types.h"

namespace signalgemm {

// Acquire load of a counter: every write the producer released before the add that made this
// value is visible to the calling thread afterwards.
__device__ __forceinline__ uint32_t load_acquire(const uint32_t* counter, SignalScope scope) {
  uint32_t value;
  if (scope == SignalScope::sys)
    asm volatile("ld.acquire.sys.global.u32 %0, [%1];" : "=r"(value) : "l"(counter) : "memory");
  else
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(value) : "l"(counter) : "memory");
  return value;
}

// True once `counter` has reached `target` (modulo 2^32).
__device__ __forceinline__ bool signal_reached(uint32_t value, uint32_t target) {
  return static_cast<int32_t>(value - target) >= 0;
}

namespace detail {
// Spins (one thread) until reached(acquire load of *word) holds, backing off with __nanosleep;
// with timeout_ns > 0 gives up after that long (%globaltimer), ORs kErrorSignalTimeout into
// *timeout_flag (if given) and returns false.
template <class Reached>
__device__ bool wait_until(const uint32_t* word, Reached reached, SignalScope scope, uint64_t timeout_ns,
                           int32_t* timeout_flag) {
  if (reached(load_acquire(word, scope))) return true;
  uint64_t start;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  unsigned sleep_ns = 32;
  while (true) {
    __nanosleep(sleep_ns);
    if (reached(load_acquire(word, scope))) return true;
    sleep_ns = sleep_ns < 1024 ? sleep_ns * 2 : 1024;
    if (timeout_ns != 0) {
      uint64_t now;
      asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
      if (now - start > timeout_ns) {
        if (timeout_flag != nullptr) atomicOr(timeout_flag, kErrorSignalTimeout);
        return false;
      }
    }
  }
}
}  // namespace detail

// Spins (one thread) until the counter reaches target, backing off with __nanosleep. With
// timeout_ns > 0 it gives up after that long (by %globaltimer), ORs kErrorSignalTimeout into
// *timeout_flag (if given) and returns false, so a missing signal is reported, never a silent hang.
__device__ inline bool wait_signal(const uint32_t* counter, uint32_t target, SignalScope scope,
                                   uint64_t timeout_ns = 0, int32_t* timeout_flag = nullptr) {
  return detail::wait_until(
      counter, [target](uint32_t value) { return signal_reached(value, target); }, scope, timeout_ns, timeout_flag);
}

// Block-wide wait: thread (0, 0, 0) waits, the barrier then extends its acquire to the whole block
// (the acquire happens-before the barrier, which orders every thread's later reads after it).
// Returns false on timeout in every thread.
__device__ inline bool block_wait_signal(const uint32_t* counter, uint32_t target, SignalScope scope,
                                         uint64_t timeout_ns = 0, int32_t* timeout_flag = nullptr) {
  __shared__ int reached;
  if (threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0)  // one thread of a block of any shape
    reached = wait_signal(counter, target, scope, timeout_ns, timeout_flag);
  __syncthreads();
  const bool ok = reached != 0;
  __syncthreads();  // `reached` may be rewritten by the next call
  return ok;
}

}  // namespace signalgemm
