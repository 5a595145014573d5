#include "signalgemm/types.h"

namespace signalgemm {

const char* to_string(Format f) {
  switch (f) {
    case Format::bf16: return "bf16";
    case Format::fp8_block128: return "fp8_block128";
    case Format::nvfp4: return "nvfp4";
    case Format::mxfp4: return "mxfp4";
    case Format::mxfp8: return "mxfp8";
  }
  return "unknown";
}

const char* to_string(OperandLayout l) {
  switch (l) {
    case OperandLayout::rows: return "rows";
    case OperandLayout::mma_fragments: return "mma_fragments";
  }
  return "unknown";
}

const char* to_string(OutputType t) {
  switch (t) {
    case OutputType::bf16: return "bf16";
    case OutputType::fp16: return "fp16";
    case OutputType::fp32: return "fp32";
  }
  return "unknown";
}

const char* to_string(SignalGranularity g) {
  switch (g) {
    case SignalGranularity::none: return "none";
    case SignalGranularity::per_expert: return "per_expert";
    case SignalGranularity::per_row_block: return "per_row_block";
  }
  return "unknown";
}

const char* to_string(SignalScope s) {
  switch (s) {
    case SignalScope::gpu: return "gpu";
    case SignalScope::sys: return "sys";
  }
  return "unknown";
}

}  // namespace signalgemm
