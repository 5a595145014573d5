// Masked tile enumeration, shared verbatim by the device scheduler and the CPU tests.
// detail/: internal to the library (the public headers and docs cite it); may change in any version.
//
// Tiles are numbered expert-major, then by column block, with the row block innermost:
//   for e in experts: for nb in col_blocks: for mb in row_blocks(e): tile
// Expert-major lets experts finish (and signal) early and in order. Row blocks innermost means the
// CTAs running side by side read the same weight tile, so a second row block re-reads it from L2
// rather than HBM. Persistent CTA c of G visits tiles c, c+G, c+2G, ... (balanced to one tile).
//
// Row blocks: an expert with m rows has b = ceil(m / block_m) of them (the count signals are
// built on). With per_row_block signals they are the aligned blocks [rb * block_m, ...) the
// counters cover; otherwise (split_rows) the ceil(m / 32) units of 32 rows are dealt out evenly
// over the b blocks, the first blocks taking one unit more, so the blocks' MMA widths differ by 32
// at most. A short block runs ahead of its siblings (fewer MMAs, the same weight tile), and at
// K = 7168 the gap outgrew L2: the weights came from HBM again (H100, ncu: E8 with 257 rows per
// expert read 376 MB, 252 MB with 256; docs/performance.md, 2026-11-27 14:09).
#pragma once

#include "signalgemm/signals.h"

namespace signalgemm::detail {

struct Tile {
  int expert;
  int m_block;
  int n_block;
  int rows;       // real rows of the block: at most block_m
  int first_row;  // the block's first row within the expert
};

// How an expert's m (clamped) rows split into its row blocks: block mb starts at row
// mb * step + 32 * min(mb, extra) (the first `extra` blocks hold 32 rows more), the last ends at m.
struct RowSplit {
  int blocks;  // ceil(m / block_m): the count every signal value is built on
  int step;    // block_m for aligned blocks (extra = 0), else a multiple of 32
  int extra;
  SG_HD int first_row(int mb) const { return mb * step + 32 * (mb < extra ? mb : extra); }
  SG_HD int rows(int mb, int m) const {
    const int end = first_row(mb + 1);
    return (end < m ? end : m) - first_row(mb);
  }
};

// Even blocks: the widths (rows rounded up to 32) sum to m rounded up to 32, as with aligned
// blocks, and differ by at most 32, so no block runs far ahead of its siblings (blocks of 128,
// 128 and 44 rows became 128, 96 and 76). Units of 32, the MMA width step: steps of 8 made widths
// of 128 out of 104-row blocks (E8 m1024 1-3% slower, 2026-11-27 14:16); they also start the fp32
// token scales' TMA boxes 16-byte aligned. Aligned blocks where the granularity is per_row_block
// (each counter covers aligned rows), where one block holds all rows, or where block_m is too
// small for the units (48: ceil(m / 32) may exceed the blocks).
SG_HD RowSplit split_rows(const SignalLayout& layout, int m) {
  const int blocks = SignalLayout::ceil_div(m, layout.block_m);
  const int units = SignalLayout::ceil_div(m, 32);
  const int units_per_block = layout.block_m / 32;
  if (layout.granularity == SignalGranularity::per_row_block || blocks <= 1 ||
      units > blocks * units_per_block)
    return RowSplit{blocks, layout.block_m, 0};
  return RowSplit{blocks, 32 * (units / blocks), units % blocks};
}

// Walks the tiles of one persistent CTA in increasing tile order. `MaskedM` is anything indexable
// by expert that yields masked_m (a device pointer on the GPU, a std::vector on the CPU).
// Each step costs O(1) amortized: tile indices only grow, so the expert cursor only moves forward.
template <typename MaskedM>
class MaskedTileWalker {
 public:
  SG_HD MaskedTileWalker(const SignalLayout& layout, MaskedM masked_m, int cta, int num_ctas)
      : layout_(layout), masked_m_(masked_m), next_tile_(cta), stride_(num_ctas) {
    load_expert(0);
  }
  // The walker keeps a reference to the layout, which must outlive it.
  MaskedTileWalker(SignalLayout&&, MaskedM, int, int) = delete;

  // Returns false when this CTA has no tiles left.
  SG_HD bool next(Tile& tile) {
    while (expert_ < layout_.num_experts && next_tile_ >= expert_first_ + expert_tiles_) {
      expert_first_ += expert_tiles_;
      load_expert(expert_ + 1);
    }
    if (expert_ >= layout_.num_experts) return false;
    const int local = next_tile_ - expert_first_;
    tile.expert = expert_;
    tile.n_block = local / split_.blocks;
    tile.m_block = local % split_.blocks;
    tile.first_row = split_.first_row(tile.m_block);
    tile.rows = split_.rows(tile.m_block, expert_m_);
    next_tile_ += stride_;
    return true;
  }

  // Dynamic scheduling (tile_ring.cuh): the tile numbered `index`, which must not be below the
  // last index asked for. Returns false past the last tile.
  SG_HD bool at(int index, Tile& tile) {
    next_tile_ = index;
    return next(tile);
  }

 private:
  SG_HD void load_expert(int e) {
    expert_ = e;
    if (e >= layout_.num_experts) return;
    expert_m_ = layout_.clamp_m(int(masked_m_[e]));
    split_ = split_rows(layout_, expert_m_);
    expert_tiles_ = split_.blocks * layout_.col_blocks();
  }

  // By reference (on the GPU: the kernel's parameters), so that the MMA warps do not hold a copy
  // in registers across the K loop.
  const SignalLayout& layout_;
  MaskedM masked_m_;
  int next_tile_;
  int stride_;
  int expert_ = 0;
  int expert_first_ = 0;  // index of the first tile of expert_
  int expert_tiles_ = 0;
  RowSplit split_{};
  int expert_m_ = 0;
};

// Two-CTA clusters (fp8_block128 at 128 x 128 and 128 x 256 tiles; docs/configuration.md): the CTAs of a cluster
// run two tiles that share an operand, which one CTA loads for both with a TMA multicast. Both
// CTAs then read each K block at the same moment, so a weight tile used by several row blocks is
// fetched from HBM once instead of by CTAs that have drifted apart (ncu at E8 m256: 414 MB read
// without clusters, 304 MB with, 266 MB unique). A unit is one such pair; per expert, for each pair of column
// blocks (n0, n0 + 1):
//   for n in (n0, n0 + 1): for p < r/2:  share weights: rank k runs (row block 2p + k, n)
//   if r is odd:                         share tokens:  rank k runs (row block r - 1, n0 + k)
// with r the expert's row blocks. An odd last column block gives units of its own column, and
// the odd row block there has no partner: rank 0 runs it alone (ClusterShare::none) while rank 1
// only keeps the pipeline in step. Cluster c of G visits units c, c+G, ...; the tiles covered are
// exactly MaskedTileWalker's, so signal values do not change.
enum class ClusterShare : int { none, weights, tokens };

struct ClusterWork {
  Tile tile;           // this CTA's tile, if has_tile
  bool has_tile;       // false only for rank 1 of a lone tile
  ClusterShare share;  // which operand rank 0 multicasts to both CTAs
  // Split-K kernels: which K range of the tile (set and read by the producer only). Initialized: left
  // undefined in the MMA warps' copy, it made ptxas keep most register-weights split kernels'
  // descriptors in vector registers (SASS: 282 -> 62 R2UR in a 64x256 one; H100, 2026-11-27: those
  // decode launches 1-5% faster).
  int piece = 0;
};

template <typename MaskedM>
class PairedTileWalker {
 public:
  SG_HD PairedTileWalker(const SignalLayout& layout, MaskedM masked_m, int cluster, int num_clusters, int rank)
      : layout_(layout), masked_m_(masked_m), next_unit_(cluster), stride_(num_clusters), rank_(rank) {
    load_expert(0);
  }
  PairedTileWalker(SignalLayout&&, MaskedM, int, int, int) = delete;  // keeps a reference, as above

  SG_HD bool next(ClusterWork& work) {
    while (expert_ < layout_.num_experts && next_unit_ >= expert_first_ + expert_units_) {
      expert_first_ += expert_units_;
      load_expert(expert_ + 1);
    }
    if (expert_ >= layout_.num_experts) return false;
    const int local = next_unit_ - expert_first_;
    next_unit_ += stride_;

    const int half_rows = split_.blocks / 2, odd_rows = split_.blocks % 2;
    const int group_units = 2 * half_rows + odd_rows;  // units of a full pair of column blocks
    const int group = local / group_units;
    int j = local % group_units;
    const int n0 = 2 * group;
    const bool lone_column = n0 + 1 == layout_.col_blocks();  // the last group holds one column
    work.tile.expert = expert_;
    work.has_tile = true;
    if (j < (lone_column ? half_rows : 2 * half_rows)) {
      work.share = ClusterShare::weights;
      work.tile.n_block = n0 + j / half_rows;
      work.tile.m_block = 2 * (j % half_rows) + rank_;
    } else if (!lone_column) {
      work.share = ClusterShare::tokens;
      work.tile.n_block = n0 + rank_;
      work.tile.m_block = split_.blocks - 1;
    } else {
      work.share = ClusterShare::none;
      work.tile.n_block = n0;
      work.tile.m_block = split_.blocks - 1;
      work.has_tile = rank_ == 0;
    }
    work.tile.first_row = split_.first_row(work.tile.m_block);
    work.tile.rows = split_.rows(work.tile.m_block, expert_m_);
    return true;
  }

 private:
  SG_HD void load_expert(int e) {
    expert_ = e;
    if (e >= layout_.num_experts) return;
    expert_m_ = layout_.clamp_m(int(masked_m_[e]));
    split_ = split_rows(layout_, expert_m_);
    const int c = layout_.col_blocks();
    const int half_rows = split_.blocks / 2, odd_rows = split_.blocks % 2;
    expert_units_ = (c / 2) * (2 * half_rows + odd_rows) + (c % 2) * (half_rows + odd_rows);
  }

  // By reference (on the GPU: the kernel's parameters), so that the MMA warps do not hold a copy
  // in registers across the K loop.
  const SignalLayout& layout_;
  MaskedM masked_m_;
  int next_unit_;
  int stride_;
  int rank_;
  int expert_ = 0;
  int expert_first_ = 0;  // index of the first unit of expert_
  int expert_units_ = 0;
  RowSplit split_{};
  int expert_m_ = 0;
};

}  // namespace signalgemm::detail
