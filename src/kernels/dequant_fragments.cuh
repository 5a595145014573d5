// Register-side dequantization of weight fragments for the register-operand (RS) wgmma of
// mainloop_register_weights.cuh: e2m1 codes, e4m3 and e8m0 scale pairs, and the scale multiplies
// (e4m3 elements of mxfp8 use dequant_formats.cuh's conversion).
//
// Exactness: an e2m1 element (2 significant bits) times its e4m3 block scale (4) has at most 6
// significant bits and lies in [2^-10, 2688]: every product is a bf16, and the products below are
// computed so that no rounding ever happens.
//
// e2m1 -> bf16 bits: sign at bit 15, the three magnitude bits (e1 e0 m) at bits 8..6. That bf16 is
// the e2m1 value times 2^-126 (e = 0 lands in bf16's subnormals, which is exactly what e2m1's
// subnormal 0.5 needs), with no table and no branch:
//   bits = (nibble * 0x1040) & 0x81C0     (nibble << 6 puts e1 e0 m at 8..6, nibble << 12 the sign
//                                            at 15; the two copies do not overlap, so * is an OR)
// done for two nibbles at once, one per 16-bit half.
// The scale is turned into bf16(scale * 2^119) (exact: e4m3 spans 2^-9..448, so 2^110..1.75*2^127),
// and one bf16x2 multiply gives element * scale * 2^-7, exact. The accumulators therefore hold the
// product times 2^-7; the mainloop multiplies them by 2^7 (exact) at the end of a tile.
// mxfp4: e8m0 scales span 2^-127..2^127, too wide for one such offset, so the element is first
// multiplied by 2^126 (exact: its value) and then by the scale, rounded once: the dequantizing
// mainloop's arithmetic, exact for scales up to 2^125 (docs/formats.md).
#pragma once

#include <cstdint>

#include "kernels/ptx.cuh"
#include "signalgemm/detail/mma_fragments.h"

namespace signalgemm::kernels::fragments {

using ptx::mul_bf16x2;
using ptx::prmt;

// a * [low half of pair, low half of pair] and a * [high, high]: ptxas folds the broadcast into
// the multiply's operand selector (.H0_H0 / .H1_H1), no extra instruction.
__device__ __forceinline__ uint32_t mul_bf16x2_by_low(uint32_t a, uint32_t pair) {
  uint32_t d;
  asm("{\n.reg .b16 lo, hi;\n.reg .b32 s;\nmov.b32 {lo, hi}, %2;\nmov.b32 s, {lo, lo};\n"
      "mul.rn.bf16x2 %0, %1, s;\n}\n"
      : "=r"(d)
      : "r"(a), "r"(pair));
  return d;
}
__device__ __forceinline__ uint32_t mul_bf16x2_by_high(uint32_t a, uint32_t pair) {
  uint32_t d;
  asm("{\n.reg .b16 lo, hi;\n.reg .b32 s;\nmov.b32 {lo, hi}, %2;\nmov.b32 s, {hi, hi};\n"
      "mul.rn.bf16x2 %0, %1, s;\n}\n"
      : "=r"(d)
      : "r"(a), "r"(pair));
  return d;
}

// `packed` holds four bytes = eight e2m1 codes, two per A-fragment register (low nibble: the even
// K column, which goes to the register's low half). Returns in out[i] the bf16x2 pair of byte i
// as (value * 2^-126) bits, not yet scaled.
__device__ __forceinline__ void e2m1x8_to_bf16x8_unscaled(uint32_t packed, uint32_t (&out)[4]) {
  const uint32_t low_nibbles = packed & 0x0F0F0F0Fu;
  const uint32_t high_nibbles = (packed >> 4) & 0x0F0F0F0Fu;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    // [low nibble of byte i, 0, high nibble of byte i, 0]: selector 0x8 picks a zero (the sign
    // of a byte below 0x80).
    const uint32_t pair = prmt(low_nibbles, high_nibbles, 0x8080u | i | ((4 + i) << 8));
    out[i] = (pair * 0x1040u) & 0x81C081C0u;
  }
}

// Fragment-ordered weights (detail/mma_fragments.h): a step's word holds its four registers' 2-bit
// fields, register i's at bits fragment_field_shift(i) + 4f (f = 0..3). Masked and given the
// table-half bit, (word & 0x3333) | 0x4040 is the byte-permute selector over the two tables that
// returns register 0's bf16x2 bits of value * 2^-126; its upper half is register 2's, and the
// same of word >> 2 holds registers 1 and 3. A permute reads only its selector's low 16 bits, so
// the four selectors take 2 LOP3 and 3 shifts (one LOP3 per register would take 4 and 3).
// `low_table` is detail::kFragmentLowByteTable held in a register (fragment_low_table()).
__device__ __forceinline__ void fragment_step_bits(uint32_t word, uint32_t low_table, uint32_t (&bits)[4]) {
  static_assert(detail::fragment_field_shift(1) == 2 && detail::fragment_field_shift(2) == 16 &&
                    detail::fragment_field_shift(3) == 18,
                "selectors of registers 0, 2 and of 1, 3 share a word");
  uint32_t selectors[2];  // registers {0, 2} and {1, 3}
#pragma unroll
  for (int j = 0; j < 2; ++j)
    asm("{\n.reg .b32 table_half;\nmov.b32 table_half, 0x40404040;\nlop3.b32 %0, %1, 0x33333333, table_half, 0xEA;\n}\n"
        : "=r"(selectors[j])
        : "r"(word >> (2 * j)));  // (fields & 0x33333333) | 0x40404040
#pragma unroll
  for (int i = 0; i < 4; ++i)
    bits[i] = prmt(low_table, detail::kFragmentHighByteTable, selectors[i % 2] >> (16 * (i / 2)));
}

// The byte permute takes one table as an immediate, the other from a vector register. Given as a
// constant, ptxas keeps it in a uniform register and copies it into a vector register before every
// permute (16 extra instructions per MMA group); loaded from memory it is opaque to ptxas and stays
// in one register. The variable is never written.
static __device__ uint32_t fragment_low_table_storage = detail::kFragmentLowByteTable;
__device__ __forceinline__ uint32_t fragment_low_table() {
  uint32_t table;
  asm volatile("ld.global.nc.u32 %0, [%1];\n" : "=r"(table) : "l"(&fragment_low_table_storage));
  return table;
}

// Two e4m3 scales (byte `byte` of `scales_a` and of `scales_b`) -> bf16x2 of scale * 2^119 each
// (low half from scales_a). Exact for every finite e4m3 code, signs and subnormals included:
// (bits & 0x7F) << 4 with the sign at bit 15 is the bf16 of scale * 2^-120 (e4m3 subnormals become
// bf16 subnormals), then two exact power-of-two multiplies. The NaN codes 0x7F/0xFF read as +-480.
__device__ __forceinline__ uint32_t e4m3x2_to_bf16x2_times_2p119(uint32_t scales_a, uint32_t scales_b,
                                                                  uint32_t byte) {
  // [a, junk, b, junk], then [a, 0, b, 0]: a scale byte may be negative, so no sign-fill zeros.
  const uint32_t pair = prmt(scales_a, scales_b, byte | ((4 + byte) << 8)) & 0x00FF00FFu;
  const uint32_t sign = pair & 0x00800080u;
  const uint32_t tiny = sign * 0xF0u + (pair << 4);  // per half: (x & 0x7F) << 4 | (x & 0x80) << 8
  // 2^120 then 2^119 (2^239 is not a bf16). bf16 bits of 2^k: (k + 127) << 7.
  constexpr uint32_t kTwoP120 = ((120u + 127u) << 7) * 0x10001u;
  constexpr uint32_t kTwoP119 = ((119u + 127u) << 7) * 0x10001u;
  return mul_bf16x2(mul_bf16x2(tiny, kTwoP120), kTwoP119);
}

// Two e8m0 scales (byte `byte` of `scales_a` and of `scales_b`) -> bf16x2 of 2^(code - 127) each
// (low half from scales_a), exact: the code is bf16's exponent field, except 0 (2^-127, the bf16
// subnormal 0x0040) and 0xFF (NaN, 0x7FC0), as dequant::e8m0_scale_to_bf16x2.
__device__ __forceinline__ uint32_t e8m0x2_to_bf16x2(uint32_t scales_a, uint32_t scales_b, uint32_t byte) {
  const uint32_t pair = prmt(scales_a, scales_b, byte | ((4 + byte) << 8)) & 0x00FF00FFu;  // [a, 0, b, 0]
  // Per half, bit 8 of code + 0xFF is clear only for code 0, bit 8 of code + 1 set only for 0xFF:
  // moved to bit 6, either sets the mantissa bit those two codes need.
  const uint32_t zero = (~(pair + 0x00FF00FFu) >> 2) & 0x00400040u;
  const uint32_t nan = ((pair + 0x00010001u) >> 2) & 0x00400040u;
  return (pair << 7) | zero | nan;
}

}  // namespace signalgemm::kernels::fragments
