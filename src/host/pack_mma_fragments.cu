// Host side of pack_mma_fragments (gemm.h): argument checks and the launch of the packing kernel.
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "host/devices.h"
#include "kernels/pack_mma_fragments.cuh"
#include "signalgemm/gemm.h"

namespace signalgemm {

size_t mma_fragment_bytes(int experts, int n, int k) {
  if (experts < 1 || n < 1 || k < 1) return 0;
  return size_t(experts) * size_t(detail::mma_fragment_bytes_per_expert(n, k));
}

Status pack_mma_fragments(const OperandArgs& weights, int experts, int n, int k, void* packed, cudaStream_t stream) {
  auto invalid = [](const std::string& message) {
    return Status{StatusCode::invalid_argument, "signalgemm::pack_mma_fragments: " + message};
  };
  if (weights.format != Format::nvfp4 && weights.format != Format::mxfp4)
    return invalid(std::string("weights.format must be nvfp4 or mxfp4, got ") + to_string(weights.format));
  if (weights.layout != OperandLayout::rows)
    return invalid(std::string("weights.layout must be rows, got ") + to_string(weights.layout));
  if (experts < 1 || n < 1 || k < 1)
    return invalid("experts, n and k must be >= 1, got " + std::to_string(experts) + ", " + std::to_string(n) + ", " +
                   std::to_string(k));
  if (k % scale_block_k(weights.format) != 0)
    return invalid("k = " + std::to_string(k) + " must be a multiple of " +
                   std::to_string(scale_block_k(weights.format)) + " (the scale block of " + to_string(weights.format) +
                   ")");
  if (weights.data == nullptr) return invalid("weights.data is null");
  if (weights.scales == nullptr) return invalid("weights.scales is null (the packed blocks carry the block scales)");
  if (packed == nullptr) return invalid("packed is null");
  if (reinterpret_cast<uintptr_t>(packed) % 16 != 0) return invalid("packed must be 16-byte aligned");
  // The GEMM takes these weights' strides only below TMA's 2^40 bytes: as a bound here, it keeps
  // an expert stride far past the weights from passing (the checks below bound only the arithmetic).
  constexpr int64_t kMaxStride = int64_t(1) << 40;
  if (weights.row_stride >= kMaxStride || weights.expert_stride >= kMaxStride)
    return invalid("weights.row_stride = " + std::to_string(weights.row_stride) + " and weights.expert_stride = " +
                   std::to_string(weights.expert_stride) + " must be below 2^40 bytes");
  const int64_t row_bytes = k / 2;
  const int64_t row_stride = weights.row_stride != 0 ? weights.row_stride : row_bytes;
  if (row_stride < row_bytes)
    return invalid("weights.row_stride = " + std::to_string(weights.row_stride) + " is smaller than one row (" +
                   std::to_string(row_bytes) + " bytes)");
  // The weights' bytes from the first to past the last, in int64 (the kernel's offsets are).
  int64_t expert_bytes = 0, span = 0;
  if (__builtin_mul_overflow(row_stride, int64_t(n), &expert_bytes))
    return invalid("weights.row_stride = " + std::to_string(row_stride) + " x n = " + std::to_string(n) +
                   " overflows int64");
  const int64_t expert_stride = weights.expert_stride != 0 ? weights.expert_stride : expert_bytes;
  if (expert_stride < expert_bytes)
    return invalid("weights.expert_stride = " + std::to_string(weights.expert_stride) +
                   " is smaller than one expert (" + std::to_string(expert_bytes) + " bytes)");
  if (__builtin_mul_overflow(expert_stride, int64_t(experts - 1), &span) ||
      __builtin_add_overflow(span, expert_bytes - row_stride + row_bytes, &span))
    return invalid("weights.expert_stride = " + std::to_string(expert_stride) + " x experts = " +
                   std::to_string(experts) + " overflows int64");
  // Packed in place, the threads would overwrite weights that others have still to read.
  const host::Span written[] = {{packed, int64_t(mma_fragment_bytes(experts, n, k)), "packed"}};
  const int64_t scale_bytes = int64_t(experts) * n * (k / scale_block_k(weights.format));
  const host::Span read[] = {{weights.data, span, "weights.data"}, {weights.scales, scale_bytes, "weights.scales"}};
  if (Status s = host::check_no_overlap(written, 1, read, 2, "pack_mma_fragments"); !s.ok()) return s;
  if (Status s = host::check_device_pointers(
          stream, {{weights.data, "weights.data"}, {weights.scales, "weights.scales"}, {packed, "packed"}});
      !s.ok())
    return s;
  const int64_t words = int64_t(mma_fragment_bytes(experts, n, k)) / 4;
  const int grid = static_cast<int>(std::clamp<int64_t>((words + 255) / 256, 1, 65535));
  if (cudaError_t err = host::launch_kernel(kernels::pack_mma_fragments_kernel, grid, 256, stream, weights.format,
                                           static_cast<const uint8_t*>(weights.data), row_stride, expert_stride,
                                           static_cast<const uint8_t*>(weights.scales), experts, n, k,
                                           static_cast<uint32_t*>(packed));
      err != cudaSuccess)
    return Status{StatusCode::cuda_error,
                  std::string("signalgemm::pack_mma_fragments: kernel launch: ") + cudaGetErrorString(err)};
  return {};
}

}  // namespace signalgemm
