// Exact conversions of the block-scaled element and scale codes to bf16, two values at a time
// (bf16x2 registers), for the dequantizing mainloop (mainloop_dequant_bf16.cuh).
//
// Each element code is first turned, by bit moves alone, into the bf16 of its value times a power
// of two (2^-120 for e4m3, 2^-126 for e2m1: bf16 has the exponent range to hold every such value,
// subnormals included), then one bf16 multiply by the inverse power restores the value exactly.
// The block scale is applied by a second bf16 multiply, rounded once (round to nearest even):
// - e2m1 x e4m3 (nvfp4): at most 2 + 4 significant bits in [2^-10, 2688]: always exact.
// - e2m1 x e8m0 (mxfp4): exact for scales up to 2^125 (6 x 2^126 exceeds bf16's maximum).
// - e4m3 x e8m0 (mxfp8): exact for scales in [2^-124, 2^119] (below, an e4m3 subnormal times the
//   scale falls under bf16's smallest subnormal 2^-133; above, 448 x scale overflows).
// docs/formats.md states these ranges and when the quantizer stays inside them.
#pragma once

#include <cstdint>

#include "kernels/ptx.cuh"

namespace signalgemm::kernels::dequant {

// bf16 bits of 2^k, for k in [-126, 127].
constexpr uint32_t bf16_pow2_bits(int k) { return uint32_t(k + 127) << 7; }
constexpr uint32_t kBf16x2TwoP120 = bf16_pow2_bits(120) * 0x10001u;
constexpr uint32_t kBf16x2TwoP126 = bf16_pow2_bits(126) * 0x10001u;

using ptx::mul_bf16x2;

// Two e4m3 codes, one in the low byte of each 16-bit half, -> bf16x2 of their values times 2^-120:
// the sign moves from bit 7 to bit 15, exponent and mantissa (bits 6..0) move up by 4, so e4m3's
// exponent field becomes bf16's (bias 7 against 127) and its subnormals bf16 subnormals.
__device__ __forceinline__ uint32_t e4m3x2_times_2m120(uint32_t pair) {
  return ((pair & 0x007F007Fu) << 4) | ((pair & 0x00800080u) << 8);
}

// Four e4m3 codes (bytes of `codes`, element order) -> two bf16x2 with their exact values.
// The NaN codes 0x7f/0xff read as +-480; the quantizer never writes them.
__device__ __forceinline__ void e4m3x4_to_bf16x4(uint32_t codes, uint32_t& lo, uint32_t& hi) {
  // [byte 0, 0, byte 1, 0] and [byte 2, 0, byte 3, 0]: selector 4 picks a byte of the zero word.
  lo = mul_bf16x2(e4m3x2_times_2m120(ptx::prmt(codes, 0u, 0x4140u)), kBf16x2TwoP120);
  hi = mul_bf16x2(e4m3x2_times_2m120(ptx::prmt(codes, 0u, 0x4342u)), kBf16x2TwoP120);
}

// Eight e2m1 codes (nibbles of `codes`; element 2i in the low nibble of byte i) -> four bf16x2
// with their exact values. Per nibble s e1 e0 m: nibble * 0x1040 places copies at bits 6 and 12;
// masking keeps the sign at bit 15 and e1 e0 m at bits 8..6, the bf16 of the value times 2^-126
// (e = 0 lands in bf16's subnormals, which is what e2m1's 0.5 needs). The two copies do not
// overlap, so the multiply acts as two shifts and an OR.
__device__ __forceinline__ void e2m1x8_to_bf16x8(uint32_t codes, uint32_t (&out)[4]) {
  const uint32_t low_nibbles = codes & 0x0F0F0F0Fu;
  const uint32_t high_nibbles = (codes >> 4) & 0x0F0F0F0Fu;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    // [low nibble of byte i, 0, high nibble of byte i, 0]; selector 8 replicates the sign of byte
    // 0 of low_nibbles, which is 0.
    const uint32_t pair = ptx::prmt(low_nibbles, high_nibbles, 0x8080u | uint32_t(i) | (uint32_t(4 + i) << 8));
    out[i] = mul_bf16x2((pair * 0x1040u) & 0x81C081C0u, kBf16x2TwoP126);
  }
}

// An e4m3 scale code -> bf16x2 with its value in both halves (exact).
__device__ __forceinline__ uint32_t e4m3_scale_to_bf16x2(uint32_t code) {
  return mul_bf16x2(e4m3x2_times_2m120(code * 0x10001u), kBf16x2TwoP120);
}

// An e8m0 scale code -> bf16x2 of 2^(code - 127) in both halves (exact): the code is bf16's
// exponent field, except 0 (2^-127, a bf16 subnormal) and 0xff (NaN).
__device__ __forceinline__ uint32_t e8m0_scale_to_bf16x2(uint32_t code) {
  const uint32_t bits = code == 0 ? 0x0040u : code == 0xFF ? 0x7FC0u : code << 7;
  return bits * 0x10001u;
}

}  // namespace signalgemm::kernels::dequant
