#include "host/devices.h"

#include <cuda_runtime_api.h>

#include <string>

namespace signalgemm::host {

namespace {

// Whether `stream` is being captured into a graph (false where the query fails: the legacy stream
// beside a capture in another stream, which the launch itself then reports).
bool is_capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &status) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return status == cudaStreamCaptureStatusActive;
}

// One pointer against the current device `device` (-1: none could be queried); `capturing`: see
// check_device_pointers.
Status check_device_pointer(const void* ptr, const char* name, int device, bool capturing) {
  if (ptr == nullptr) return {};
  cudaPointerAttributes attributes{};
  // Any pointer has attributes (an unknown one: unregistered), so a failure here is CUDA's own (an
  // earlier kernel's fault, a driver problem): reported as such, not as a bad argument.
  if (cudaError_t err = cudaPointerGetAttributes(&attributes, ptr); err != cudaSuccess) {
    cudaGetLastError();
    return Status{StatusCode::cuda_error, std::string("signalgemm: cudaPointerGetAttributes(") + name +
                                              ") failed: " + cudaGetErrorString(err)};
  }
  // Device memory of another GPU (without peer access it has no address on this one, so this
  // comes first): kernels run on the current device, whose loads would fault there, or cross
  // NVLink where peer access is on.
  if (attributes.type == cudaMemoryTypeDevice && device >= 0 && attributes.device != device)
    return Status{StatusCode::invalid_argument, std::string("signalgemm: ") + name + " is on device " +
                                                    std::to_string(attributes.device) +
                                                    ", the launch runs on device " + std::to_string(device) +
                                                    " (the current one)"};
  if ((attributes.type == cudaMemoryTypeUnregistered && !capturing) ||
      (attributes.type != cudaMemoryTypeUnregistered && attributes.devicePointer == nullptr))
    return Status{StatusCode::invalid_argument, std::string("signalgemm: ") + name +
                                                    " is not device memory (pageable host memory, or freed); it "
                                                    "must be device, managed or mapped pinned host memory"};
  // Pinned host memory is reached through its device address: the same as the host's under unified
  // addressing for cudaHostAlloc, but not always for cudaHostRegister'ed memory.
  if (attributes.type == cudaMemoryTypeHost && attributes.devicePointer != ptr)
    return Status{StatusCode::invalid_argument, std::string("signalgemm: ") + name +
                                                    " is pinned host memory whose device address differs from "
                                                    "its host address; pass the device address "
                                                    "(cudaHostGetDevicePointer)"};
  return {};
}

}  // namespace

Status check_device_pointers(cudaStream_t stream, std::initializer_list<std::pair<const void*, const char*>> pointers) {
  int device = -1;
  // Without a device every pointer query below fails too, and the failure would name an argument.
  if (cudaError_t err = cudaGetDevice(&device); err != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error for later calls
    return Status{StatusCode::no_device, std::string("signalgemm: no CUDA device: ") + cudaGetErrorString(err)};
  }
  const bool capturing = is_capturing(stream);
  // A stream of another device: the launch would fail with a CUDA error that names nothing. Not
  // asked of a capturing stream: the query is not permitted there and would invalidate the capture
  // (H200, 2026-11-29); a captured launch on such a stream fails when the capture ends.
  int stream_device = -1;
  if (!capturing && cudaStreamGetDevice(stream, &stream_device) != cudaSuccess) {
    cudaGetLastError();
    stream_device = -1;
  }
  if (device >= 0 && stream_device >= 0 && stream_device != device)
    return Status{StatusCode::invalid_argument, "signalgemm: stream belongs to device " +
                                                    std::to_string(stream_device) + ", the launch runs on device " +
                                                    std::to_string(device) + " (the current one)"};
  for (const auto& [ptr, name] : pointers)
    if (Status s = check_device_pointer(ptr, name, device, capturing); !s.ok()) return s;
  return {};
}

Status check_alignment(std::initializer_list<AlignedPointer> pointers) {
  for (const auto& [pointer, name, bytes] : pointers)
    if (reinterpret_cast<uintptr_t>(pointer) % bytes != 0)
      return Status{StatusCode::invalid_argument,
                    std::string("signalgemm: ") + name + " must be " + std::to_string(bytes) + "-byte aligned"};
  return {};
}

Status check_gemm_out_strides(int64_t row_stride, int64_t expert_stride, int n, int max_m) {
  const int64_t row_bytes = int64_t(n) * 2;
  if (row_stride < 0 || expert_stride < 0 || row_stride % 16 != 0 || expert_stride % 16 != 0)
    return Status{StatusCode::invalid_argument,
                  "signalgemm: gemm_out_row_stride and gemm_out_expert_stride must be >= 0 and multiples of 16"};
  if (row_stride != 0 && row_stride < row_bytes)
    return Status{StatusCode::invalid_argument, "signalgemm: gemm_out_row_stride = " + std::to_string(row_stride) +
                                                    " is smaller than one row (" + std::to_string(row_bytes) +
                                                    " bytes)"};
  const int64_t expert_bytes = (row_stride != 0 ? row_stride : row_bytes) * max_m;
  if (expert_stride != 0 && expert_stride < expert_bytes)
    return Status{StatusCode::invalid_argument, "signalgemm: gemm_out_expert_stride = " +
                                                    std::to_string(expert_stride) + " is smaller than one expert (" +
                                                    std::to_string(expert_bytes) + " bytes)"};
  return {};
}

Status check_no_overlap(const Span* written, size_t written_count, const Span* read, size_t read_count,
                        const char* who) {
  const auto overlap = [](const Span& x, const Span& y) {
    const auto first_x = reinterpret_cast<uintptr_t>(x.p), first_y = reinterpret_cast<uintptr_t>(y.p);
    return x.p != nullptr && y.p != nullptr && first_x < first_y + uint64_t(y.bytes) &&
           first_y < first_x + uint64_t(x.bytes);
  };
  const auto refused = [](const Span& x, const Span& y, const std::string& why) {
    return Status{StatusCode::invalid_argument, std::string("signalgemm: ") + x.name + " overlaps " + y.name + why};
  };
  for (size_t w = 0; w < written_count; ++w)
    for (size_t r = 0; r < read_count; ++r)
      if (overlap(written[w], read[r]))
        return refused(written[w], read[r], std::string("; what ") + who + " writes must not alias what it reads");
  for (size_t i = 0; i < written_count; ++i)
    for (size_t j = i + 1; j < written_count; ++j)
      if (overlap(written[i], written[j])) return refused(written[i], written[j], "; they must not alias");
  return {};
}

ScopedDevice::ScopedDevice(int device) {
  int current = -1;
  if (cudaGetDevice(&current) != cudaSuccess || (current != device && cudaSetDevice(device) != cudaSuccess)) {
    cudaGetLastError();  // this call's error is not sticky: clear it for the caller's next query
    return;
  }
  if (current != device) previous_ = current;
}

ScopedDevice::~ScopedDevice() {
  if (previous_ >= 0) cudaSetDevice(previous_);
}

}  // namespace signalgemm::host
