#include "host/devices.h"

#include <cuda_runtime_api.h>

#include <string>

namespace signalgemm::host {

namespace {

// One pointer against the current device `device` (-1: none could be queried).
Status check_device_pointer(const void* ptr, const char* name, int device) {
  if (ptr == nullptr) return {};
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, ptr) != cudaSuccess) {
    cudaGetLastError();
    return Status{StatusCode::invalid_argument, std::string("signalgemm: ") + name + " is not a CUDA pointer"};
  }
  // Device memory of another GPU (without peer access it has no address on this one, so this
  // comes first): kernels run on the current device, whose loads would fault there, or cross
  // NVLink where peer access is on.
  if (attributes.type == cudaMemoryTypeDevice && device >= 0 && attributes.device != device)
    return Status{StatusCode::invalid_argument, std::string("signalgemm: ") + name + " is on device " +
                                                    std::to_string(attributes.device) +
                                                    ", the launch runs on the current device " +
                                                    std::to_string(device) + " (cudaSetDevice)"};
  if (attributes.type == cudaMemoryTypeUnregistered || attributes.devicePointer == nullptr)
    return Status{StatusCode::invalid_argument,
                  std::string("signalgemm: ") + name + " is host memory; it must be device (or managed) memory"};
  return {};
}

}  // namespace

Status check_device_pointers(std::initializer_list<std::pair<const void*, const char*>> pointers) {
  int device = -1;
  if (cudaGetDevice(&device) != cudaSuccess) {
    cudaGetLastError();
    device = -1;
  }
  for (const auto& [ptr, name] : pointers)
    if (Status s = check_device_pointer(ptr, name, device); !s.ok()) return s;
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
