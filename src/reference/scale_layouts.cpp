// Conversions between SignalGEMM's row-major scale layout and FlashInfer's swizzled 128x4 layout
// (include/signalgemm/reference.h describes both).
#include <limits>
#include <stdexcept>
#include <string>

#include "signalgemm/reference.h"

namespace signalgemm::ref {
namespace {

int64_t column_tiles(int cols) { return (int64_t(cols) + 3) / 4; }
int64_t row_tiles(int rows) { return (int64_t(rows) + 127) / 128; }

// Byte offset of scale (r, c) inside one expert's swizzled block: 128-row x 4-column tiles of 512
// bytes, tile-major along the columns; inside a tile, rows r%32 are 16 bytes apart, the four
// 32-row groups 4 bytes apart, columns adjacent.
int64_t swizzled_offset(int r, int c, int cols) {
  return ((r / 128) * column_tiles(cols) + c / 4) * 512 + (r % 32) * 16 + ((r % 128) / 32) * 4 + c % 4;
}

void check_sizes(const void* data, int experts, int rows, int cols) {
  if (data == nullptr) throw std::invalid_argument("scales: null pointer");
  flashinfer_128x4_bytes(experts, rows, cols);  // the sizes' own checks
}

}  // namespace

int64_t flashinfer_128x4_bytes_per_expert(int rows, int cols) { return row_tiles(rows) * column_tiles(cols) * 512; }

int64_t flashinfer_128x4_bytes(int experts, int rows, int cols) {
  if (experts < 1 || rows < 1 || cols < 1)
    throw std::invalid_argument("scales: experts, rows and cols must be >= 1, got " + std::to_string(experts) + ", " +
                                std::to_string(rows) + ", " + std::to_string(cols));
  // The swizzled layout pads rows and columns, so its byte count is the larger one; it must fit int64.
  const int64_t per_expert = flashinfer_128x4_bytes_per_expert(rows, cols);
  if (per_expert > std::numeric_limits<int64_t>::max() / experts)
    throw std::invalid_argument("scales: the 128x4 layout of " + std::to_string(experts) + " x " + std::to_string(rows) +
                                " x " + std::to_string(cols) + " scales has more than 2^63 bytes");
  return experts * per_expert;
}

std::vector<uint8_t> scales_from_flashinfer_128x4(const uint8_t* swizzled, int experts, int rows, int cols) {
  check_sizes(swizzled, experts, rows, cols);
  const int64_t per_expert = flashinfer_128x4_bytes_per_expert(rows, cols);
  std::vector<uint8_t> out(size_t(experts) * rows * cols);
  for (int e = 0; e < experts; ++e)
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c)
        out[(size_t(e) * rows + r) * cols + c] = swizzled[e * per_expert + swizzled_offset(r, c, cols)];
  return out;
}

std::vector<uint8_t> scales_to_flashinfer_128x4(const uint8_t* row_major, int experts, int rows, int cols) {
  check_sizes(row_major, experts, rows, cols);
  const int64_t per_expert = flashinfer_128x4_bytes_per_expert(rows, cols);
  std::vector<uint8_t> out(size_t(experts * per_expert), 0);
  for (int e = 0; e < experts; ++e)
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c)
        out[e * per_expert + swizzled_offset(r, c, cols)] = row_major[(size_t(e) * rows + r) * cols + c];
  return out;
}

}  // namespace signalgemm::ref
