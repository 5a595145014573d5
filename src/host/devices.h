// Devices on the host side: checks that the pointers a kernel will dereference are memory of the
// current device (a plain host pointer, or another GPU's memory, would fault inside the kernel
// instead of returning an error that names the argument) and aligned as it loads them, a launch that
// reports its own error, and a scoped switch of the current device.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>
#include <utility>

#include "signalgemm/types.h"

namespace signalgemm::host {

// The first failing check of `stream` (it must belong to the current device) and `pointers`
// ({pointer, argument name}), or ok; no_device where there is no current device. Null passes (optional
// arguments are checked for presence elsewhere). Driver queries, no synchronization. While `stream`
// is being captured its device is not asked (the query would invalidate the capture: a launch on
// another device's stream then fails when the capture ends), and a pointer the driver does not know
// passes: memory allocated in the capture (cudaMallocAsync, a graph's memory node) has no
// attributes until the graph runs.
Status check_device_pointers(cudaStream_t stream, std::initializer_list<std::pair<const void*, const char*>> pointers);

// The first of `pointers` not aligned to its `bytes` (a misaligned load faults the kernel and leaves
// the CUDA context unusable), or ok. Null passes.
struct AlignedPointer {
  const void* pointer;
  const char* name;
  uintptr_t bytes;
};
Status check_alignment(std::initializer_list<AlignedPointer> pointers);

// A buffer's bytes from `p` (null, or 0 bytes: none), named for messages.
struct Span {
  const void* p;
  int64_t bytes;
  const char* name;
};

// The first span of `written` that overlaps one of `read` ("<w> overlaps <r>; what <who> writes must not
// alias what it reads") or another of `written` ("... they must not alias"), or ok: stores racing the loads
// (or each other) give a silently wrong result.
Status check_no_overlap(const Span* written, size_t written_count, const Span* read, size_t read_count,
                        const char* who);

// Byte strides of a GEMM output a combine reads (rows of n bf16, max_m rows per expert; 0: packed):
// 16-byte multiples, and each at least what it steps over, so that no row lies before the first or
// overlaps another.
Status check_gemm_out_strides(int64_t row_stride, int64_t expert_stride, int n, int max_m);

// Launches `kernel` on `stream` and returns the launch's own error (after a `<<<>>>` launch,
// cudaGetLastError would return, and clear, an earlier error of the caller's as this one's).
template <class... Params, class... Args>
cudaError_t launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.stream = stream;
  return cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

// Makes `device` current for its lifetime and then restores the previous one, so that a call on a
// context or tensor of another GPU runs there, as NCCL's and torch's calls do. Does nothing where
// there is no device (validation then answers first).
class ScopedDevice {
 public:
  explicit ScopedDevice(int device);
  ~ScopedDevice();
  ScopedDevice(const ScopedDevice&) = delete;
  ScopedDevice& operator=(const ScopedDevice&) = delete;

 private:
  int previous_ = -1;  // -1: nothing to restore
};

}  // namespace signalgemm::host
