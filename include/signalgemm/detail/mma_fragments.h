// The fragment-ordered FP4 (nvfp4, mxfp4) weight layout (OperandLayout::mma_fragments, docs/formats.md), shared
// by the packers (CPU reference, GPU kernel) and the register-weights mainloop that reads it.
// detail/: internal to the library (the public headers and docs cite it); may change in any version.
//
// Per expert, the weights are cut into 64-row x 64-K blocks, [ceil(N/64)][ceil(K/64)] of them,
// 2560 bytes each: 2048 bytes of codes, then 512 of block scales (rows and columns past N and K
// hold code 0 and scale 0). Within a block, the 32-bit word 4t + k belongs to MMA thread t
// (0..127) of a warpgroup and k16 step k (0..3): the eight e2m1 elements of its A fragment for
// that step. So a thread loads its four steps with one 16-byte load, and a warp's loads are 512
// contiguous bytes.
//
// The scales come converted, as the bf16 factor the mainloop multiplies a fragment's registers
// by (fragment_scale_bits): scale word 4q + k, q = 8w + l/4 (the quad of lanes l of warp w that
// holds rows r = 16w + l/4 and r + 8), is [factor of row r, of row r + 8] for k16 step k. A
// quad's four steps are one 16-byte load, which its four lanes share. Converting them once, when
// the weights are packed, takes the e4m3 / e8m0 decoding and the shuffle that handed each lane
// its step's factor out of the K loop (13% of the time of bf16 x nvfp4 at E32 m32 on the H200,
// docs/performance.md, 2026-11-30), for 64 more bytes per 64x64 block.
//
// A fragment has four bf16x2 registers i; register i of thread t = 32w + l holds row
// 16w + l/4 + 8(i%2) and columns 16k + 2(l%4) + 8(i/2) + {0, 1} (low half, high half), the
// mma.m16n8k16 A layout that wgmma's register operand uses. Each element is stored as two 2-bit
// fields of its code s e1 e0 m: L = e0 m and H = s e1, which index a byte table (below) for the
// low and the high byte of the bf16 of its value times 2^-126. Register i's four fields
// (L_lo, H_lo, L_hi, H_hi) sit at bits fragment_field_shift(i) + 4f (f = 0..3), so
//   selector = ((word >> fragment_field_shift(i)) & 0x3333) | 0x4040
// is a byte-permute selector (prmt) over the table that yields the register's bf16x2 bits.
#pragma once

#include <cstdint>

#include "signalgemm/types.h"  // SG_HD

namespace signalgemm::detail {

inline constexpr int kFragmentBlockRows = 64;
inline constexpr int kFragmentBlockK = 64;
inline constexpr int kFragmentBlockBytes = kFragmentBlockRows * kFragmentBlockK / 2;  // 2048 bytes of codes
inline constexpr int kFragmentWordsPerBlock = kFragmentBlockBytes / 4;                // 512
inline constexpr int kFragmentScaleBytes = kFragmentBlockRows * (kFragmentBlockK / 16) * 2;  // 512: bf16 per row, step
inline constexpr int kFragmentScaleWordsPerBlock = kFragmentScaleBytes / 4;                 // 128
inline constexpr int kFragmentBlockStride = kFragmentBlockBytes + kFragmentScaleBytes;      // 2560

// Bit offset of register i's fields in its step's word.
SG_HD constexpr int fragment_field_shift(int reg) { return (reg / 2) * 16 + (reg % 2) * 2; }

// Byte table of the selectors: bytes 0..3 are the low byte of bf16(value * 2^-126) for L = 0..3
// (e0 << 7 | m << 6), bytes 4..7 the high byte for H = 0..3 (s << 7 | e1).
inline constexpr uint32_t kFragmentLowByteTable = 0xC0804000u;
inline constexpr uint32_t kFragmentHighByteTable = 0x81800100u;

// Row and column within its 64x64 block of element `half` (0: low, 1: high) of register `reg` in
// word `word` of the block.
SG_HD constexpr int fragment_element_row(int word, int reg) {
  const int thread = word / 4, warp = thread / 32, lane = thread % 32;
  return 16 * warp + lane / 4 + 8 * (reg % 2);
}
SG_HD constexpr int fragment_element_col(int word, int reg, int half) {
  const int thread = word / 4, step = word % 4, lane = thread % 32;
  return 16 * step + 2 * (lane % 4) + 8 * (reg / 2) + half;
}

// The word's bits contributed by e2m1 code `code` as element `half` of register `reg`.
SG_HD constexpr uint32_t fragment_code_bits(uint32_t code, int reg, int half) {
  const uint32_t low = code & 3;                                     // L = e0 m
  const uint32_t high = ((code >> 3) & 1) << 1 | ((code >> 2) & 1);  // H = s e1
  const int shift = fragment_field_shift(reg) + 8 * half;
  return low << shift | high << (shift + 4);
}

// Code of element `col` of a K-major FP4 row from its byte: element 2j is the low nibble of byte j.
SG_HD constexpr uint32_t e2m1_code_of(uint8_t byte, int col) { return col % 2 == 0 ? byte & 0xFu : byte >> 4; }

// Word `word` of a 64x64 block whose element (row, col) (within the block) has e2m1 code
// code_at(row, col): what both packers (the GPU kernel, the CPU reference) write.
template <class CodeAt>
SG_HD uint32_t fragment_word(int word, const CodeAt& code_at) {
  uint32_t bits = 0;
  for (int reg = 0; reg < 4; ++reg)
    for (int half = 0; half < 2; ++half)
      bits |= fragment_code_bits(code_at(fragment_element_row(word, reg), fragment_element_col(word, reg, half)), reg,
                                 half);
  return bits;
}

// Rows (within the block) and k16 step of scale word `word` of a block: row r (low half), r + 8.
SG_HD constexpr int fragment_scale_row(int word) { return 16 * (word / 32) + (word / 4) % 8; }
SG_HD constexpr int fragment_scale_step(int word) { return word % 4; }

// The bf16 factor a fragment's registers are multiplied by, for one block scale:
// - nvfp4 (e4m3 code): scale * 2^119, exact for every code (2^110 .. 1.75 * 2^127; the register
//   holds element * 2^-126, so products carry 2^-7, which the mainloop takes out at the end). The
//   NaN codes 0x7F / 0xFF read as +-480, as the rows layout's conversion reads them.
// - mxfp4 (e8m0 code): 2^(code - 127), exact (code 0: the subnormal 2^-127; 0xFF: NaN).
SG_HD constexpr uint16_t fragment_scale_bits(Format format, uint8_t code) {
  if (format == Format::mxfp4) return code == 0 ? 0x0040 : code == 0xFF ? 0x7FC0 : uint16_t(code << 7);
  const uint32_t sign = uint32_t(code >> 7) << 15, e = (code >> 3) & 0xF, m = code & 7;
  if (e > 0) return uint16_t(sign | (e + 239) << 7 | m << 4);  // 2^(e - 7) (1 + m/8) x 2^119
  if (m == 0) return uint16_t(sign);
  const uint32_t top = m >= 4 ? 2 : m >= 2 ? 1 : 0;  // m x 2^-9 x 2^119 = (m / 2^top) x 2^(110 + top)
  return uint16_t(sign | (110 + top + 127) << 7 | ((m << (7 - top)) & 0x7F));
}

// Bytes of the fragment-ordered weights of one expert of n rows and k columns.
SG_HD constexpr int64_t mma_fragment_bytes_per_expert(int n, int k) {
  return int64_t((n + kFragmentBlockRows - 1) / kFragmentBlockRows) * ((k + kFragmentBlockK - 1) / kFragmentBlockK) *
         kFragmentBlockStride;
}

}  // namespace signalgemm::detail
