// Completion-signal contract, shared by the kernel, host code and consumers (SPEC §3).
//
// The kernel adds 1 to a counter for every output tile it covers, once that tile's stores are
// complete and visible at the requested scope. A tile is (expert, row block, block of `block_n`
// columns); an expert has ceil(m / block_m) row blocks of at most `block_m` rows (aligned ones for
// per_row_block, evened out otherwise: detail/tile_schedule.h), so the value a counter reaches depends
// only on masked_m, N and the tile shape (never on sm_count). Values are relative to the counter's
// value before the launch.
//
//   per_expert:    counter e             reaches  row_blocks(e) * col_blocks
//   per_row_block: counter e*R + rb      reaches  col_blocks if rb < row_blocks(e), else 0
//                  with R = ceil(max_m / block_m) counters per expert (block_m: the tile's token rows)
//
// An expert with masked_m == 0 has no tiles: its counters reach 0 and are never touched, so a
// consumer reads expected() == 0 as "nothing to wait for".
#pragma once

#include "signalgemm/types.h"

namespace signalgemm {

// OR-ed into a consumer's error flag when a wait times out (wait_signal in consumer.cuh, the
// combines' error_flag); here, not in the device header, so that host code can test the flag too.
inline constexpr int32_t kErrorSignalTimeout = 2;

struct SignalLayout {
  int num_experts = 0;
  int max_m = 0;
  int n = 0;
  int block_m = 0;  // rows per tile (the row block of per_row_block signals)
  int block_n = 0;  // columns per tile
  SignalGranularity granularity = SignalGranularity::none;
  OutputType out_type = OutputType::bf16;  // C's elements, for the consumers that read its rows

  // a / b rounded up, for a >= 0 and b > 0, without the a + b - 1 that may pass INT32_MAX: one
  // 32-bit unsigned division (the tile walkers run these per expert between two tiles, where a
  // 64-bit division cost the decode kernels ~4% of the MMA warps' time: docs/performance.md).
  SG_HD static int ceil_div(int a, int b) {
    return int((uint32_t(a) + uint32_t(b) - 1u) / uint32_t(b));  // < 2^32: a, b < 2^31
  }
  SG_HD int col_blocks() const { return ceil_div(n, block_n); }
  SG_HD int row_blocks_per_expert() const { return ceil_div(max_m, block_m); }

  // masked_m as the kernel uses it: clamped into [0, max_m].
  SG_HD int clamp_m(int masked_m) const {
    return masked_m < 0 ? 0 : (masked_m > max_m ? max_m : masked_m);
  }
  SG_HD int row_blocks(int masked_m) const { return ceil_div(clamp_m(masked_m), block_m); }

  // Number of uint32 counters the caller's buffer must hold.
  SG_HD int64_t counter_count() const {
    switch (granularity) {
      case SignalGranularity::per_expert: return num_experts;
      case SignalGranularity::per_row_block: return int64_t(num_experts) * row_blocks_per_expert();
      default: return 0;
    }
  }

  SG_HD int64_t counter_index(int expert, int row_block) const {
    return granularity == SignalGranularity::per_row_block
               ? int64_t(expert) * row_blocks_per_expert() + row_block
               : expert;
  }

  // Value counter(expert[, row_block]) reaches once everything it covers is visible.
  SG_HD uint32_t expected(int masked_m_of_expert, int row_block = 0) const {
    const int rbs = row_blocks(masked_m_of_expert);
    switch (granularity) {
      case SignalGranularity::per_expert: return uint32_t(rbs) * uint32_t(col_blocks());
      case SignalGranularity::per_row_block:
        return row_block < rbs ? uint32_t(col_blocks()) : 0u;
      default: return 0;
    }
  }

  // Output rows covered by counter (expert, row_block): [first_row, first_row + count).
  SG_HD int covered_rows(int masked_m_of_expert, int row_block) const {
    if (granularity != SignalGranularity::per_row_block) return clamp_m(masked_m_of_expert);
    const int first = row_block * block_m;
    const int m = clamp_m(masked_m_of_expert);
    return m <= first ? 0 : (m - first < block_m ? m - first : block_m);
  }
};

}  // namespace signalgemm
