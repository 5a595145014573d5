// Quantizers into SignalGEMM's operand layouts and their inverse (docs/formats.md).
// The layout index functions below are the single place where the byte layout is spelled out;
// quantize and dequantize both go through them.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "signalgemm/reference.h"

namespace signalgemm::ref {
namespace {

constexpr float kE4m3Max = 448.0f;
constexpr float kE2m1Max = 6.0f;
constexpr int kBlock128 = 128;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// fp8_block128 activations keep their scale rows padded to a multiple of 4 floats (16 bytes), the
// stride alignment that TMA requires.
int64_t padded_scale_rows(int rows) { return ceil_div(rows, 4) * 4; }

// ---- layout: where element (e, r, c) and its scale live

int64_t element_index(const QuantizedOperand& q, int e, int r, int c) {
  return (int64_t(e) * q.rows + r) * q.k + c;
}

// Index (in floats) of the fp32 scale of element (e, r, c) of an fp8_block128 operand.
int64_t block128_scale_index(Role role, int rows, int k, int e, int r, int c) {
  const int64_t k_blocks = k / kBlock128;
  if (role == Role::a)  // float sfa[experts][k/128][round_up(rows, 4)]
    return (e * k_blocks + c / kBlock128) * padded_scale_rows(rows) + r;
  // float sfb[experts][ceil(rows/128)][k/128]
  return (e * ceil_div(rows, kBlock128) + r / kBlock128) * k_blocks + c / kBlock128;
}

// Index (in bytes) of the one-byte scale of element (e, r, c) of an nvfp4/mxfp4/mxfp8 operand:
// uint8 scales[experts][rows][k/block].
int64_t byte_scale_index(Format format, int rows, int k, int e, int r, int c) {
  const int block = scale_block_k(format);
  return (int64_t(e) * rows + r) * (k / block) + c / block;
}

int64_t expected_scale_bytes(Format format, Role role, int experts, int rows, int k) {
  switch (format) {
    case Format::bf16: return 0;
    case Format::fp8_block128:
      return int64_t(sizeof(float)) * experts * (k / kBlock128) *
             (role == Role::a ? padded_scale_rows(rows) : ceil_div(rows, kBlock128));
    case Format::nvfp4:
    case Format::mxfp4:
    case Format::mxfp8: return int64_t(experts) * rows * (k / scale_block_k(format));
  }
  throw std::invalid_argument("signalgemm::ref: unknown format");
}

float load_float(const std::vector<uint8_t>& bytes, int64_t index) {
  float value;
  std::memcpy(&value, bytes.data() + index * sizeof(float), sizeof value);
  return value;
}

void store_float(std::vector<uint8_t>& bytes, int64_t index, float value) {
  std::memcpy(bytes.data() + index * sizeof(float), &value, sizeof value);
}

// Stores an element code: bf16 little-endian, 8-bit codes as bytes, FP4 codes two per byte with
// the even element in the low nibble.
void store_element(QuantizedOperand& q, int64_t index, uint32_t code) {
  switch (element_bits(q.format)) {
    case 16:
      q.data[2 * index] = uint8_t(code);
      q.data[2 * index + 1] = uint8_t(code >> 8);
      break;
    case 8: q.data[index] = uint8_t(code); break;
    default: q.data[index / 2] |= uint8_t((code & 0xf) << (4 * (index % 2))); break;
  }
}

uint32_t load_element(const QuantizedOperand& q, int64_t index) {
  switch (element_bits(q.format)) {
    case 16: return q.data[2 * index] | (uint32_t(q.data[2 * index + 1]) << 8);
    case 8: return q.data[index];
    default: return (q.data[index / 2] >> (4 * (index % 2))) & 0xf;
  }
}

// ---- argument checks

void check_k(Format format, int k, const char* where) {
  const int block = scale_block_k(format);
  if (block != 0 && k % block != 0)
    throw std::invalid_argument(std::string(where) + ": k (" + std::to_string(k) + ") must be a multiple of " +
                                std::to_string(block) + " for format " + to_string(format));
}

void check_sizes(int experts, int rows, int k, const char* where) {
  if (experts <= 0) throw std::invalid_argument(std::string(where) + ": experts must be positive");
  if (rows <= 0) throw std::invalid_argument(std::string(where) + ": rows must be positive");
  if (k <= 0) throw std::invalid_argument(std::string(where) + ": k must be positive");
  // Every size below is a product of these: none may pass int64 (experts * rows always fits).
  if (int64_t(experts) * rows > std::numeric_limits<int64_t>::max() / 4 / k)
    throw std::invalid_argument(std::string(where) + ": experts * rows * k is too large");
}

// A QuantizedOperand is a plain struct a caller may have filled by hand: check that its buffers
// match its shape before indexing them.
void check_operand(const QuantizedOperand& q, const char* where) {
  check_sizes(q.experts, q.rows, q.k, where);
  check_k(q.format, q.k, where);
  if (int64_t(q.data.size()) != q.expert_bytes() * q.experts)
    throw std::invalid_argument(std::string(where) + ": data holds " + std::to_string(q.data.size()) +
                                " bytes, the shape needs " + std::to_string(q.expert_bytes() * q.experts));
  const int64_t scale_bytes = expected_scale_bytes(q.format, q.role, q.experts, q.rows, q.k);
  if (int64_t(q.scales.size()) != scale_bytes)
    throw std::invalid_argument(std::string(where) + ": scales holds " + std::to_string(q.scales.size()) +
                                " bytes, the shape needs " + std::to_string(scale_bytes));
}

// Value of element (e, r, c) without argument checks.
double element_value(const QuantizedOperand& q, int e, int r, int c) {
  const uint32_t code = load_element(q, element_index(q, e, r, c));
  switch (q.format) {
    case Format::bf16: return bf16_to_float(uint16_t(code));
    case Format::fp8_block128:
      return double(e4m3_to_float(uint8_t(code))) *
             load_float(q.scales, block128_scale_index(q.role, q.rows, q.k, e, r, c));
    case Format::nvfp4:
      return double(e2m1_to_float(uint8_t(code))) *
             e4m3_to_float(q.scales[byte_scale_index(q.format, q.rows, q.k, e, r, c)]);
    case Format::mxfp4:
      return double(e2m1_to_float(uint8_t(code))) *
             e8m0_to_float(q.scales[byte_scale_index(q.format, q.rows, q.k, e, r, c)]);
    case Format::mxfp8:
      return double(e4m3_to_float(uint8_t(code))) *
             e8m0_to_float(q.scales[byte_scale_index(q.format, q.rows, q.k, e, r, c)]);
  }
  return 0.0;
}

float amax_of(const float* x, int count) {
  float amax = 0.0f;
  for (int i = 0; i < count; ++i) amax = std::max(amax, std::fabs(x[i]));
  return amax;
}

// ---- quantizers, one per format; x points at expert 0, row 0, column 0.

void quantize_bf16(QuantizedOperand& q, const float* x) {
  const int64_t count = int64_t(q.experts) * q.rows * q.k;
  for (int64_t i = 0; i < count; ++i) store_element(q, i, float_to_bf16(x[i]));
}

// DeepSeek-style scale: amax / 448, floored at FLT_MIN so that an all-zero block divides safely
// (its elements are 0 whatever the scale) and a tiny block keeps a normal-float scale.
float block128_scale(float amax) { return std::max(amax / kE4m3Max, FLT_MIN); }

void quantize_fp8_block128(QuantizedOperand& q, const float* x) {
  const int k_blocks = q.k / kBlock128;
  if (q.role == Role::a) {
    // Padding rows of the scale array read 1.0, a harmless value should a kernel load them.
    for (int64_t i = 0; i < int64_t(q.scales.size() / sizeof(float)); ++i) store_float(q.scales, i, 1.0f);
  }
  // One scale per (row block, K block): 1 row for A, 128 rows for B.
  const int block_rows = q.role == Role::a ? 1 : kBlock128;
  for (int e = 0; e < q.experts; ++e)
    for (int r0 = 0; r0 < q.rows; r0 += block_rows) {
      const int r1 = std::min(q.rows, r0 + block_rows);
      for (int kb = 0; kb < k_blocks; ++kb) {
        const int c0 = kb * kBlock128;
        float amax = 0.0f;
        for (int r = r0; r < r1; ++r) amax = std::max(amax, amax_of(x + element_index(q, e, r, c0), kBlock128));
        const float scale = block128_scale(amax);
        store_float(q.scales, block128_scale_index(q.role, q.rows, q.k, e, r0, c0), scale);
        for (int r = r0; r < r1; ++r)
          for (int c = c0; c < c0 + kBlock128; ++c) {
            const int64_t i = element_index(q, e, r, c);
            store_element(q, i, float_to_e4m3(x[i] / scale));
          }
      }
    }
}

// Two-level NVFP4 scaling: the per-expert global scale maps the expert's amax onto the largest
// product of e4m3 and e2m1 (448 * 6); block scales are e4m3 relative to it.
void quantize_nvfp4(QuantizedOperand& q, const float* x) {
  constexpr int kBlock = 16;
  const int64_t expert_elements = int64_t(q.rows) * q.k;
  for (int e = 0; e < q.experts; ++e) {
    const float* xe = x + e * expert_elements;
    float amax = 0.0f;
    for (int64_t i = 0; i < expert_elements; ++i) amax = std::max(amax, std::fabs(xe[i]));
    // An all-zero (or negligibly small) expert takes 1 so the divisions below stay finite; its
    // block scales then round to 0 and its elements to 0.
    float global_scale = amax / (kE4m3Max * kE2m1Max);
    if (global_scale < FLT_MIN) global_scale = 1.0f;
    q.global_scale[e] = global_scale;
    for (int r = 0; r < q.rows; ++r)
      for (int c0 = 0; c0 < q.k; c0 += kBlock) {
        const int64_t first = element_index(q, e, r, c0);
        const uint8_t scale_code = float_to_e4m3(amax_of(x + first, kBlock) / kE2m1Max / global_scale);
        q.scales[byte_scale_index(q.format, q.rows, q.k, e, r, c0)] = scale_code;
        const float divisor = e4m3_to_float(scale_code) * global_scale;
        for (int64_t i = first; i < first + kBlock; ++i)
          store_element(q, i, divisor == 0.0f ? 0 : float_to_e2m1(x[i] / divisor));
      }
  }
}

// OCP MX: a power-of-two scale per 32 elements, rounded up so that no element saturates.
void quantize_mx(QuantizedOperand& q, const float* x) {
  constexpr int kBlock = 32;
  const bool fp4 = q.format == Format::mxfp4;
  const float element_max = fp4 ? kE2m1Max : kE4m3Max;
  for (int e = 0; e < q.experts; ++e)
    for (int r = 0; r < q.rows; ++r)
      for (int c0 = 0; c0 < q.k; c0 += kBlock) {
        const int64_t first = element_index(q, e, r, c0);
        const uint8_t scale_code = float_to_e8m0(amax_of(x + first, kBlock) / element_max);
        q.scales[byte_scale_index(q.format, q.rows, q.k, e, r, c0)] = scale_code;
        const float scale = e8m0_to_float(scale_code);
        for (int64_t i = first; i < first + kBlock; ++i)
          store_element(q, i, fp4 ? float_to_e2m1(x[i] / scale) : float_to_e4m3(x[i] / scale));
      }
}

}  // namespace

QuantizedOperand quantize(Format format, Role role, const float* x, int experts, int rows, int k) {
  constexpr const char* kWhere = "signalgemm::ref::quantize";
  check_sizes(experts, rows, k, kWhere);
  check_k(format, k, kWhere);
  if (x == nullptr) throw std::invalid_argument(std::string(kWhere) + ": x is null");
  // A NaN or Inf would make its block's scale NaN or Inf and lose every other value of the block.
  const int64_t count = int64_t(experts) * rows * k;
  for (int64_t i = 0; i < count; ++i)
    if (!std::isfinite(x[i]))
      throw std::invalid_argument(std::string(kWhere) + ": x contains NaN or Inf (x[" + std::to_string(i) + "])");

  QuantizedOperand q;
  q.format = format;
  q.role = role;
  q.experts = experts;
  q.rows = rows;
  q.k = k;
  q.data.assign(size_t(q.expert_bytes() * experts), 0);
  q.scales.assign(size_t(expected_scale_bytes(format, role, experts, rows, k)), 0);
  q.global_scale.assign(size_t(experts), 1.0f);
  switch (format) {
    case Format::bf16: quantize_bf16(q, x); break;
    case Format::fp8_block128: quantize_fp8_block128(q, x); break;
    case Format::nvfp4: quantize_nvfp4(q, x); break;
    case Format::mxfp4:
    case Format::mxfp8: quantize_mx(q, x); break;
  }
  return q;
}

double dequantize_element(const QuantizedOperand& q, int e, int r, int c) {
  constexpr const char* kWhere = "signalgemm::ref::dequantize_element";
  check_operand(q, kWhere);
  if (e < 0 || e >= q.experts || r < 0 || r >= q.rows || c < 0 || c >= q.k)
    throw std::out_of_range(std::string(kWhere) + ": element (" + std::to_string(e) + ", " + std::to_string(r) +
                            ", " + std::to_string(c) + ") is outside the operand");
  return element_value(q, e, r, c);
}

std::vector<double> dequantize(const QuantizedOperand& q) {
  check_operand(q, "signalgemm::ref::dequantize");
  std::vector<double> values(size_t(q.experts) * q.rows * q.k);
  size_t i = 0;
  for (int e = 0; e < q.experts; ++e)
    for (int r = 0; r < q.rows; ++r)
      for (int c = 0; c < q.k; ++c) values[i++] = element_value(q, e, r, c);
  return values;
}

std::vector<float> combined_alpha(const QuantizedOperand& a, const QuantizedOperand& b) {
  constexpr const char* kWhere = "signalgemm::ref::combined_alpha";
  if (a.experts != b.experts)
    throw std::invalid_argument(std::string(kWhere) + ": a.experts (" + std::to_string(a.experts) +
                                ") differs from b.experts (" + std::to_string(b.experts) + ")");
  for (const QuantizedOperand* q : {&a, &b})
    if (q->format == Format::nvfp4 && int64_t(q->global_scale.size()) != q->experts)
      throw std::invalid_argument(std::string(kWhere) + ": an nvfp4 operand needs one global_scale per expert");
  std::vector<float> alpha(size_t(a.experts));
  for (int e = 0; e < a.experts; ++e) {
    const float gs_a = a.format == Format::nvfp4 ? a.global_scale[e] : 1.0f;
    const float gs_b = b.format == Format::nvfp4 ? b.global_scale[e] : 1.0f;
    alpha[e] = gs_a * gs_b;
  }
  return alpha;
}

}  // namespace signalgemm::ref
