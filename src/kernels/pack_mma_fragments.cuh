// FP4 weights (nvfp4, mxfp4) from K-major rows into the mma_fragments layout (detail/mma_fragments.h), once,
// when the weights are loaded: one thread per 32-bit word, i.e. per MMA thread and k16 step of a
// 64x64 block, gathering its eight e2m1 codes (rows and columns past n and k give code 0), or per
// scale word, converting the block scales of two rows ([experts][n][k / block] bytes).
#pragma once

#include <cstdint>

#include "signalgemm/detail/mma_fragments.h"

namespace signalgemm::kernels {

__global__ void __launch_bounds__(256) pack_mma_fragments_kernel(Format format, const uint8_t* rows, int64_t row_stride,
                                                                 int64_t expert_stride, const uint8_t* scales,
                                                                 int experts, int n, int k, uint32_t* packed) {
  using namespace detail;
  constexpr int kWords = kFragmentBlockStride / 4;
  const int slices = (n + kFragmentBlockRows - 1) / kFragmentBlockRows;
  const int k_blocks = (k + kFragmentBlockK - 1) / kFragmentBlockK;
  const int block_k = scale_block_k(format);
  const int64_t total = int64_t(experts) * slices * k_blocks * kWords;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int word = int(i % kWords);
    const int64_t block = i / kWords;  // (expert, slice, k block), k block fastest
    const int k_block = int(block % k_blocks);
    const int slice = int(block / k_blocks % slices);
    const int expert = int(block / (int64_t(k_blocks) * slices));
    if (word < kFragmentWordsPerBlock) {
      const uint8_t* expert_rows = rows + expert * expert_stride;
      packed[i] = fragment_word(word, [&](int block_row, int block_col) -> uint32_t {
        const int row = slice * kFragmentBlockRows + block_row, col = k_block * kFragmentBlockK + block_col;
        return row < n && col < k ? e2m1_code_of(expert_rows[row * row_stride + col / 2], col) : 0;
      });
    } else {
      const int scale_word = word - kFragmentWordsPerBlock;
      const int col = k_block * kFragmentBlockK + 16 * fragment_scale_step(scale_word);
      uint32_t bits = 0;
      for (int half = 0; half < 2; ++half) {
        const int row = slice * kFragmentBlockRows + fragment_scale_row(scale_word) + 8 * half;
        if (row < n && col < k) {
          const uint8_t code = scales[(int64_t(expert) * n + row) * (k / block_k) + col / block_k];
          bits |= uint32_t(fragment_scale_bits(format, code)) << (16 * half);
        }
      }
      packed[i] = bits;
    }
  }
}

}  // namespace signalgemm::kernels
