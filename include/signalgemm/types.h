// Public vocabulary of SignalGEMM: operand formats, output types, signal options, status.
// Everything here is plain data usable from host code compiled by any C++17 compiler. Status
// carries a std::string across the library's boundary: build against the C++ standard library ABI
// the library was built with (with libstdc++: _GLIBCXX_USE_CXX11_ABI=1, its default; code built
// with 0 cannot call the C++ API: refused below at compile time).
#pragma once

#include <cstdint>
#include <string>

// The other std::string layout would link and then overrun the caller's Status.
#if defined(__GLIBCXX__) && defined(_GLIBCXX_USE_CXX11_ABI) && !_GLIBCXX_USE_CXX11_ABI
#error "SignalGEMM's C++ API needs _GLIBCXX_USE_CXX11_ABI=1 (the library's std::string layout)"
#endif

#if defined(__CUDACC__)
#define SG_HD __host__ __device__ __forceinline__
#else
#define SG_HD inline
#endif

namespace signalgemm {

// Operand formats (SPEC §2). The memory layout of data and scales is documented in docs/formats.md.
enum class Format : uint8_t {
  bf16,          // bf16 elements, no scales
  fp8_block128,  // e4m3; fp32 scales: activations (A) 1x128 per row, weights (B) 128x128 blocks
  nvfp4,         // e2m1 packed two per byte; e4m3 scale per 16 along K; global scale folded into alpha
  mxfp4,         // e2m1 packed two per byte; e8m0 scale per 32 along K
  mxfp8,         // e4m3; e8m0 scale per 32 along K
};

// How an operand's elements are arranged in memory (docs/formats.md).
enum class OperandLayout : uint8_t {
  rows,           // K-major rows with the operand's strides
  mma_fragments,  // FP4 weights and their scales rearranged once by pack_mma_fragments() into the
                  // order the register-operand MMAs read them (cheaper dequantization at decode)
};

enum class OutputType : uint8_t { bf16, fp16, fp32 };

// How completion is announced (SPEC §3).
enum class SignalGranularity : uint8_t {
  none,           // no signals
  per_expert,     // one counter per expert
  per_row_block,  // one counter per (expert, block of SignalLayout::block_m rows)
};

// Who must be able to see the output once a counter reaches its expected value.
enum class SignalScope : uint8_t {
  gpu,  // any thread of this GPU
  sys,  // peers over NVLink and the host as well
};

const char* to_string(Format f);
const char* to_string(OperandLayout l);
const char* to_string(OutputType t);
const char* to_string(SignalGranularity g);
const char* to_string(SignalScope s);

// Elements along K covered by one scale factor (fp8_block128 differs between A and B only in the
// N/M direction, which is not counted here). 0 for unscaled formats.
SG_HD constexpr int scale_block_k(Format f) {
  switch (f) {
    case Format::fp8_block128: return 128;
    case Format::nvfp4: return 16;
    case Format::mxfp4:
    case Format::mxfp8: return 32;
    default: return 0;
  }
}

// Storage bits of one element.
SG_HD constexpr int element_bits(Format f) {
  switch (f) {
    case Format::bf16: return 16;
    case Format::nvfp4:
    case Format::mxfp4: return 4;
    default: return 8;
  }
}

// Storage bytes of one scale factor (0 for unscaled formats).
SG_HD int scale_bytes(Format f) {
  switch (f) {
    case Format::fp8_block128: return 4;
    case Format::nvfp4:
    case Format::mxfp4:
    case Format::mxfp8: return 1;
    default: return 0;
  }
}

SG_HD int output_bytes(OutputType t) { return t == OutputType::fp32 ? 4 : 2; }

enum class StatusCode : int {
  ok = 0,
  invalid_argument,  // an argument is wrong; the message names it
  unsupported,       // valid, but not implemented (e.g. a format pair without a mainloop)
  no_device,         // no usable Hopper GPU
  cuda_error,        // a CUDA call failed; the message says which
};

struct Status {
  StatusCode code = StatusCode::ok;
  std::string message;

  bool ok() const { return code == StatusCode::ok; }
};

}  // namespace signalgemm
