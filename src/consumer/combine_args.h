// Host-side checks of the fields the two combines' arguments share (CombineArgs on one GPU,
// EpCombineArgs across GPUs): each combine adds its own (top-k, sizes, signals, devices).
#pragma once

#include <cstdint>
#include <string>

#include "host/devices.h"
#include "signalgemm/signals.h"
#include "signalgemm/types.h"

namespace signalgemm::consumer {

inline Status invalid(const std::string& what) { return Status{StatusCode::invalid_argument, "signalgemm: " + what}; }

// The GEMM's layout and signal scope, the routing arrays, the output, the workspace pointer and the
// timeout's flag.
template <class Args>
Status check_layout_routing_and_output(const Args& a) {
  if (a.layout.num_experts < 1 || a.layout.max_m < 1 || a.layout.block_m < 1 || a.layout.block_n < 1)
    return invalid("layout is empty: pass signal_layout(gemm args)");
  if (a.layout.out_type != OutputType::bf16)
    return invalid(std::string("layout.out_type: the combine reads bf16 rows of C, not ") +
                   to_string(a.layout.out_type));
  if (a.scope != SignalScope::gpu && a.scope != SignalScope::sys)
    return invalid("scope: unknown value " + std::to_string(int(a.scope)));
  if (a.num_tokens < 0) return invalid("num_tokens must be >= 0");
  if (a.num_tokens > 0 && (a.topk_idx == nullptr || a.topk_weights == nullptr))
    return invalid("topk_idx and topk_weights are required");
  if (a.row_source == nullptr) return invalid("row_source is null");
  if (a.num_tokens > 0 && (a.out == nullptr || reinterpret_cast<uintptr_t>(a.out) % 16 != 0))
    return invalid("out is null or not 16-byte aligned");
  if (a.workspace == nullptr || reinterpret_cast<uintptr_t>(a.workspace) % 16 != 0)
    return invalid("workspace is null or not 16-byte aligned");
  if (a.timeout_ns > 0 && a.error_flag == nullptr)
    return invalid("timeout_ns is set but error_flag is null: a timed-out combine's output is incomplete, and "
                   "error_flag is where that is reported");
  // (An array, not a braced list in the call: nvcc's front end misreads `f({...})` in a template.)
  const host::AlignedPointer arrays[] = {{a.masked_m, "masked_m", 4},
                                         {a.row_source, "row_source", 4},
                                         {a.topk_idx, "topk_idx", 4},
                                         {a.topk_weights, "topk_weights", 4},
                                         {a.error_flag, "error_flag", 4},
                                         {a.timeline, "timeline", 8}};
  for (const host::AlignedPointer& array : arrays)
    if (Status s = host::check_alignment({array}); !s.ok()) return s;
  return {};
}

}  // namespace signalgemm::consumer
