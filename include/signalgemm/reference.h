// CPU reference: scalar format conversions, quantizers producing every operand format in
// SignalGEMM's layout (docs/formats.md), and the masked grouped GEMM in float64.
// Used by the tests and the benchmark; also handy for users who quantize on the host.
#pragma once

#include <cstdint>
#include <vector>

#include "signalgemm/types.h"

namespace signalgemm::ref {

// ---- scalar conversions (round-to-nearest-even; saturation and NaN handling in docs/formats.md)
uint16_t float_to_bf16(float x);
float bf16_to_float(uint16_t bits);
uint16_t float_to_fp16(float x);
float fp16_to_float(uint16_t bits);
uint8_t float_to_e4m3(float x);    // saturates to +-448; NaN -> 0x7f
float e4m3_to_float(uint8_t bits);
uint8_t float_to_e2m1(float x);    // 4-bit code in the low nibble; saturates to +-6; NaN -> +6
float e2m1_to_float(uint8_t code);
uint8_t float_to_e8m0(float x);    // power of two >= x (rounds up so scaled values never overflow)
float e8m0_to_float(uint8_t bits);  // 2^(bits-127); 0xff -> NaN

// Which side of the GEMM an operand is on: fp8_block128 scales A per 1x128 and B per 128x128.
enum class Role : uint8_t { a, b };

// A quantized operand, packed, in the documented layout.
struct QuantizedOperand {
  Format format = Format::bf16;
  Role role = Role::a;
  int experts = 0;
  int rows = 0;
  int k = 0;
  std::vector<uint8_t> data;          // [experts][rows][k] elements, row stride row_bytes()
  std::vector<uint8_t> scales;        // bytes in the layout of docs/formats.md (empty for bf16)
  std::vector<float> global_scale;    // [experts]; nvfp4 per-expert global scale, else 1

  int64_t row_bytes() const { return int64_t(k) * element_bits(format) / 8; }
  int64_t expert_bytes() const { return row_bytes() * rows; }
};

// Quantizes x[experts][rows][k] (float) into `format`. k must be a multiple of the format's scale
// block, and every value finite (throws std::invalid_argument otherwise).
QuantizedOperand quantize(Format format, Role role, const float* x, int experts, int rows, int k);

// Value of element (e, r, c) as the GEMM sees it before alpha: element x block scale
// (the nvfp4 global scale is NOT applied: it belongs to alpha).
double dequantize_element(const QuantizedOperand& q, int e, int r, int c);

// [experts][rows][k] of dequantize_element.
std::vector<double> dequantize(const QuantizedOperand& q);

// c[e][i][j] = alpha[e] * sum_k deq(a)[e][i][k] * deq(b)[e][j][k] for i < clamp(masked_m[e]);
// rows i >= masked_m[e] are set to NaN (never compared). alpha may be null (all ones).
// c has size experts * a.rows * b.rows; a.rows is max_m, b.rows is N.
std::vector<double> masked_grouped_gemm(const QuantizedOperand& a, const QuantizedOperand& b,
                                        const int32_t* masked_m, const float* alpha);

// Per-expert alpha that folds the nvfp4 global scales of both operands (1 for other formats).
std::vector<float> combined_alpha(const QuantizedOperand& a, const QuantizedOperand& b);

// ---- FlashInfer / TensorRT-LLM swizzled "128x4" scale layout (what FlashInfer's NVFP4
// grouped_gemm_nt_masked takes), per expert:
//   [ceil(rows/128)][ceil(cols/4)][32][4][4] bytes, element (r, c) at
//   ((r/128) * ceil(cols/4) + c/4) * 512 + (r%32) * 16 + ((r%128)/32) * 4 + c%4
// with cols = K / 16 scale columns; padding bytes are zero. Experts follow one another.
int64_t flashinfer_128x4_bytes_per_expert(int rows, int cols);
// All experts' bytes; throws std::invalid_argument for sizes below 1 or a count past 2^63.
int64_t flashinfer_128x4_bytes(int experts, int rows, int cols);
// Swizzled [E][...] -> SignalGEMM's row-major [E][rows][cols].
std::vector<uint8_t> scales_from_flashinfer_128x4(const uint8_t* swizzled, int experts, int rows, int cols);
// Row-major [E][rows][cols] -> swizzled (padding zero): the inverse, for round trips and tests.
std::vector<uint8_t> scales_to_flashinfer_128x4(const uint8_t* row_major, int experts, int rows, int cols);

// ---- the mma_fragments weight layout (OperandLayout::mma_fragments; detail/mma_fragments.h):
// FP4 weights (nvfp4 or mxfp4; throws std::invalid_argument otherwise) and their scales rearranged
// as pack_mma_fragments (gemm.h) does on the GPU; mma_fragment_bytes(experts, rows, k) bytes.
std::vector<uint8_t> pack_mma_fragments(const QuantizedOperand& weights);

}  // namespace signalgemm::ref
