// FP4 weights (nvfp4, mxfp4) from K-major rows into the mma_fragments layout (detail/mma_fragments.h), once,
// when the weights are loaded: one thread per 32-bit word, i.e. per MMA thread and k16 step of a
// 64x64 block, gathering its eight e2m1 codes (rows and columns past n and k give code 0).
#pragma once

#include <cstdint>

#include "signalgemm/detail/mma_fragments.h"

namespace signalgemm::kernels {

__global__ void __launch_bounds__(256) pack_mma_fragments_kernel(const uint8_t* rows, int64_t row_stride,
                                                                 int64_t expert_stride, int experts, int n, int k,
                                                                 uint32_t* packed) {
  using namespace detail;
  const int slices = (n + kFragmentBlockRows - 1) / kFragmentBlockRows;
  const int k_blocks = (k + kFragmentBlockK - 1) / kFragmentBlockK;
  const int64_t total = int64_t(experts) * slices * k_blocks * kFragmentWordsPerBlock;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int word = int(i % kFragmentWordsPerBlock);
    const int64_t block = i / kFragmentWordsPerBlock;  // (expert, slice, k block), k block fastest
    const int k_block = int(block % k_blocks);
    const int slice = int(block / k_blocks % slices);
    const int expert = int(block / (int64_t(k_blocks) * slices));
    const uint8_t* expert_rows = rows + expert * expert_stride;
    packed[i] = fragment_word(word, [&](int block_row, int block_col) -> uint32_t {
      const int row = slice * kFragmentBlockRows + block_row, col = k_block * kFragmentBlockK + block_col;
      return row < n && col < k ? e2m1_code_of(expert_rows[row * row_stride + col / 2], col) : 0;
    });
  }
}

}  // namespace signalgemm::kernels
