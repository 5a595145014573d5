// Which format pairings the dequantizing mainloop (mainloop_dequant_bf16.cuh) computes, and its
// shared-memory plan. Plain C++ as well, so the host's configuration can size the pipeline.
#pragma once

#include "kernels/kernel_params.h"
#include "signalgemm/types.h"

namespace signalgemm::kernels {

// K elements per stage: one 128-byte row of the bf16 tile that the bf16 wgmma reads.
inline constexpr int kDequantStageK = 64;

// Bytes of one row of an operand per stage, as loaded by TMA (e4m3: 64, FP4: 32).
SG_HD constexpr int dequant_stage_row_bytes(Format f) { return kDequantStageK * element_bits(f) / 8; }

// bf16 activations x FP4 or mxfp8 weights: the register-operand mainloop (mainloop_register_weights.cuh).
SG_HD constexpr bool is_bf16_register_weights_pair(Format a, Format b) {
  return a == Format::bf16 && (b == Format::nvfp4 || b == Format::mxfp4 || b == Format::mxfp8);
}

// (activations, weights) computed by the dequantizing mainloop; their decode tiles and 128x128 run on
// the register-weights mainloop (host::register_weights_with_converted_tokens). bf16 x bf16 and
// fp8_block128 x fp8_block128 have their own mainloops.
SG_HD constexpr bool is_dequant_bf16_pair(Format a, Format b) {
  return (a == Format::mxfp8 && b == Format::mxfp8) || (a == Format::mxfp4 && b == Format::mxfp4) ||
         (a == Format::nvfp4 && b == Format::nvfp4) || is_fp8_tokens_fp4_weights_pair(a, b);
}

// fp8_block128 activations keep a second fp32 accumulator per 128-K block (their scale is applied
// when it is promoted), so a warpgroup holds one 64-row slice of weights: block_n = 128, and
// block_m <= 128 keeps both accumulators within the register budget.
SG_HD constexpr bool dequant_bf16_tile_compiled(Format a, int block_m, int block_n) {
  return a != Format::fp8_block128 || (block_n == 128 && block_m <= 128);
}

// Operands with one-byte block scales (MX, nvfp4): their scales are copied into shared memory.
SG_HD constexpr bool has_byte_scales(Format f) { return f == Format::mxfp8 || f == Format::mxfp4 || f == Format::nvfp4; }

// Stage: packed token tile, packed weight tile, fp8_block128 token scales (block_m floats of the
// stage's 128-K block). Before the ring: two bf16 tiles per operand (double buffered:
// the MMAs read one while the next stage is dequantized into the other). After the staging tile:
// three stages' block scales, one 32-bit word per scaled row.
SG_HD constexpr SmemPlan dequant_bf16_smem_plan(Format a, Format b, int block_m, int block_n, int stages) {
  const int dequant_rows = block_m + block_n;  // both operands of every pairing here go through bf16 tiles
  const int scaled_rows = (has_byte_scales(a) ? block_m : 0) + (has_byte_scales(b) ? block_n : 0);
  return SmemPlan{block_m,
                  block_n,
                  stages,
                  dequant_stage_row_bytes(b),
                  2 * dequant_rows * kBlockK,
                  1,
                  a == Format::fp8_block128 ? 4 : 0,
                  dequant_stage_row_bytes(a),
                  3 * scaled_rows * 4};
}

}  // namespace signalgemm::kernels
