// Host-side checks of the fields the two combines' arguments share (CombineArgs on one GPU,
// EpCombineArgs across GPUs): each combine adds its own (top-k, sizes, signals, devices).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>

#include "host/devices.h"
#include "signalgemm/combine.h"
#include "signalgemm/signals.h"
#include "signalgemm/types.h"

namespace signalgemm::consumer {

inline Status invalid(const std::string& what) { return Status{StatusCode::invalid_argument, "signalgemm: " + what}; }

// The GEMM's layout and signal scope, the routing arrays, the output, the workspace pointer, the
// launch's blocks and the timeout's flag.
template <class Args>
Status check_layout_routing_and_output(const Args& a) {
  // (An array, not a braced list in the loop: nvcc's front end misreads it in a template.)
  const std::pair<int, const char*> sizes[] = {
      {a.layout.num_experts, "num_experts"}, {a.layout.max_m, "max_m"}, {a.layout.block_m, "block_m"},
      {a.layout.block_n, "block_n"}};
  for (const auto& [value, name] : sizes)
    if (value < 1)
      return invalid(std::string("layout.") + name + " = " + std::to_string(value) +
                     " must be >= 1: pass signal_layout(gemm args)");
  if (a.layout.out_type != OutputType::bf16)
    return invalid(std::string("layout.out_type: the combine reads bf16 rows of C, not ") +
                   to_string(a.layout.out_type));
  if (a.scope != SignalScope::gpu && a.scope != SignalScope::sys)
    return invalid("scope: unknown value " + std::to_string(int(a.scope)));
  if (a.num_tokens < 0) return invalid("num_tokens must be >= 0");
  if (a.num_tokens > 0 && a.topk_idx == nullptr) return invalid("topk_idx is null (num_tokens > 0)");
  if (a.num_tokens > 0 && a.topk_weights == nullptr) return invalid("topk_weights is null (num_tokens > 0)");
  if (a.row_source == nullptr) return invalid("row_source is null");
  if (a.num_tokens > 0 && (a.out == nullptr || reinterpret_cast<uintptr_t>(a.out) % 16 != 0))
    return invalid("out is null or not 16-byte aligned");
  if (a.workspace == nullptr || reinterpret_cast<uintptr_t>(a.workspace) % 16 != 0)
    return invalid("workspace is null or not 16-byte aligned");
  if (a.num_blocks < 0) return invalid("num_blocks must be >= 0");
  if (a.first_block < 0) return invalid("first_block must be >= 0");
  if (int64_t(a.first_block) + a.num_blocks > INT32_MAX / 3)  // its timeline entries are 3 per block, int32
    return invalid("first_block + num_blocks must be below 2^31 / 3");
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
  // Row indices e * max_m + row are int32, and a counter's record items round max_m up to 32.
  if (int64_t(a.layout.num_experts) * a.layout.max_m > INT32_MAX - 255)
    return invalid("layout.num_experts x layout.max_m must be below 2^31 - 255 (int32 row indices)");
  return {};
}

// What a combine writes (out, the workspace, error_flag, the timeline) must not overlap what it
// reads, nor each other: summed in place over gemm_out, a token would overwrite rows that other
// tokens still read (a silently wrong sum); over the signals or the routing, the waits and the
// walk would change under the combine. After check_layout_routing_and_output and the gemm_out
// strides' check; `topk`: the routing's.
template <class Args>
Status check_no_aliasing(const Args& a, int topk) {
  // Products saturate: a span past the address space overlaps whatever lies above its start.
  auto times = [](int64_t x, int64_t y) {
    int64_t product = 0;
    return __builtin_mul_overflow(x, y, &product) ? INT64_MAX : product;
  };
  auto plus = [](int64_t x, int64_t y) {
    int64_t sum = 0;
    return __builtin_add_overflow(x, y, &sum) ? INT64_MAX : sum;
  };
  const int experts = a.layout.num_experts, max_m = a.layout.max_m;
  const int64_t row_bytes = int64_t(a.layout.n) * 2;
  const int64_t row_stride = a.gemm_out_row_stride != 0 ? a.gemm_out_row_stride : row_bytes;
  const int64_t expert_stride = a.gemm_out_expert_stride != 0 ? a.gemm_out_expert_stride : times(row_stride, max_m);
  const int64_t gemm_out_span = plus(plus(times(expert_stride, experts - 1), times(row_stride, max_m - 1)), row_bytes);
  const int64_t slot_bytes = int64_t(a.num_tokens) * topk * 4;
  // This launch's blocks stamp entries past the earlier launches' (first_block).
  const int64_t timeline_entries = combine_timeline_entries(a.layout, a.num_blocks) + 3 * int64_t(a.first_block);
  const host::Span read[] = {{a.gemm_out, gemm_out_span, "gemm_out"},
                             {a.signals, a.layout.counter_count() * 4, "signals"},
                             {a.masked_m, int64_t(experts) * 4, "masked_m"},
                             {a.row_source, int64_t(experts) * max_m * 4, "row_source"},
                             {a.topk_idx, slot_bytes, "topk_idx"},
                             {a.topk_weights, slot_bytes, "topk_weights"}};
  const host::Span written[] = {{a.out, int64_t(a.num_tokens) * row_bytes, "out"},
                                {a.workspace, int64_t(std::min<size_t>(a.workspace_bytes, INT64_MAX)), "workspace"},
                                {a.error_flag, a.error_flag != nullptr ? 4 : 0, "error_flag"},
                                {a.timeline, a.timeline != nullptr ? times(timeline_entries, 8) : 0, "timeline"}};
  return host::check_no_overlap(written, std::size(written), read, std::size(read), "the combine");
}

}  // namespace signalgemm::consumer
