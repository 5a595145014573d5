// CPU version of pack_mma_fragments (gemm.h): the mma_fragments layout of detail/mma_fragments.h,
// for tests and for users who prepare weights on the host.
#include <stdexcept>

#include "signalgemm/detail/mma_fragments.h"
#include "signalgemm/reference.h"

namespace signalgemm::ref {

std::vector<uint8_t> pack_mma_fragments(const QuantizedOperand& weights) {
  using namespace detail;
  if (weights.format != Format::nvfp4 && weights.format != Format::mxfp4)
    throw std::invalid_argument("pack_mma_fragments: weights must be nvfp4 or mxfp4");
  const int n = weights.rows, k = weights.k;
  const int slices = (n + kFragmentBlockRows - 1) / kFragmentBlockRows;
  const int k_blocks = (k + kFragmentBlockK - 1) / kFragmentBlockK;
  std::vector<uint8_t> packed(size_t(weights.experts) * mma_fragment_bytes_per_expert(n, k));
  size_t offset = 0;
  for (int e = 0; e < weights.experts; ++e)
    for (int s = 0; s < slices; ++s)
      for (int b = 0; b < k_blocks; ++b)
        for (int word = 0; word < kFragmentWordsPerBlock + kFragmentScaleWordsPerBlock; ++word, offset += 4) {
          uint32_t bits;
          if (word < kFragmentWordsPerBlock) {
            bits = fragment_word(word, [&](int block_row, int block_col) -> uint32_t {
              const int row = s * kFragmentBlockRows + block_row, col = b * kFragmentBlockK + block_col;
              if (row >= n || col >= k) return 0;
              return e2m1_code_of(
                  weights.data[size_t(e) * weights.expert_bytes() + size_t(row) * weights.row_bytes() + col / 2],
                  col);
            });
          } else {
            const int scale_word = word - kFragmentWordsPerBlock;
            const int col = b * kFragmentBlockK + 16 * fragment_scale_step(scale_word);
            bits = 0;
            for (int half = 0; half < 2; ++half) {
              const int row = s * kFragmentBlockRows + fragment_scale_row(scale_word) + 8 * half;
              if (row >= n || col >= k) continue;
              const int block_k = scale_block_k(weights.format);
              const uint8_t code = weights.scales[(size_t(e) * n + row) * (k / block_k) + col / block_k];
              bits |= uint32_t(fragment_scale_bits(weights.format, code)) << (16 * half);
            }
          }
          for (int i = 0; i < 4; ++i) packed[offset + i] = uint8_t(bits >> (8 * i));  // little-endian words
        }
  return packed;
}

}  // namespace signalgemm::ref
