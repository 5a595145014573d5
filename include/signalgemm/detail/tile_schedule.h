// Masked tile enumeration, shared verbatim by the device scheduler and the CPU tests.
//
// Tiles are numbered expert-major, then by column block, with the row block innermost:
//   for e in experts: for nb in col_blocks: for mb in row_blocks(e): tile
// Expert-major lets experts finish (and signal) early and in order. Row blocks innermost means the
// CTAs running side by side read the same weight tile, so a second row block re-reads it from L2
// rather than HBM. Persistent CTA c of G visits tiles c, c+G, c+2G, ... (balanced to one tile).
#pragma once

#include "signalgemm/signals.h"

namespace signalgemm::detail {

struct Tile {
  int expert;
  int m_block;
  int n_block;
  int rows;  // real rows of the block: block_m, or fewer in an expert's last row block
};

// The expert that holds work item `index` (a tile, or a cluster unit below), with kItems(r, c) work
// items per expert of r row blocks and c column blocks. `MaskedM` is anything indexable by expert that
// yields masked_m (a device pointer on the GPU, a std::vector on the CPU). Item indices only grow,
// so the cursor only moves forward: O(1) amortized per step.
template <typename MaskedM, int (*kItems)(int r, int c)>
class ExpertCursor {
 public:
  SG_HD ExpertCursor(const SignalLayout& layout, MaskedM masked_m) : layout_(layout), masked_m_(masked_m) {
    load_expert(0);
  }

  // Moves to the expert of item `index` and returns its index there; -1 past the last expert.
  SG_HD int seek(int index) {
    while (expert_ < layout_.num_experts && index >= first_ + items_) {
      first_ += items_;
      load_expert(expert_ + 1);
    }
    return expert_ < layout_.num_experts ? index - first_ : -1;
  }

  SG_HD int row_blocks() const { return row_blocks_; }
  // The tile of row block m_block, column block n_block of the current expert.
  SG_HD Tile tile(int m_block, int n_block) const {
    const int rows_left = expert_m_ - m_block * layout_.block_m;
    return Tile{expert_, m_block, n_block, rows_left < layout_.block_m ? rows_left : layout_.block_m};
  }

 private:
  SG_HD void load_expert(int e) {
    expert_ = e;
    if (e >= layout_.num_experts) return;
    expert_m_ = layout_.clamp_m(int(masked_m_[e]));
    row_blocks_ = (expert_m_ + layout_.block_m - 1) / layout_.block_m;
    items_ = kItems(row_blocks_, layout_.col_blocks());
  }

  SignalLayout layout_;
  MaskedM masked_m_;
  int expert_ = 0;
  int first_ = 0;  // index of the first item of expert_
  int items_ = 0;
  int row_blocks_ = 0;
  int expert_m_ = 0;
};

SG_HD int tiles_of_expert(int r, int c) { return r * c; }

// Walks the tiles of one persistent CTA in increasing tile order.
template <typename MaskedM>
class MaskedTileWalker {
 public:
  SG_HD MaskedTileWalker(const SignalLayout& layout, MaskedM masked_m, int cta, int num_ctas)
      : cursor_(layout, masked_m), next_tile_(cta), stride_(num_ctas) {}

  // Returns false when this CTA has no tiles left.
  SG_HD bool next(Tile& tile) {
    const int local = cursor_.seek(next_tile_);
    if (local < 0) return false;
    next_tile_ += stride_;
    tile = cursor_.tile(local % cursor_.row_blocks(), local / cursor_.row_blocks());
    return true;
  }

 private:
  ExpertCursor<MaskedM, tiles_of_expert> cursor_;
  int next_tile_;
  int stride_;
};

// Two-CTA clusters (fp8_block128 at 128 x 256 tiles; docs/configuration.md): the CTAs of a cluster
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
};

// Units of an expert: per full pair of column blocks 2 * (r / 2) + r % 2, and r / 2 + r % 2 for an
// odd last column block.
SG_HD int units_of_expert(int r, int c) { return (c / 2) * (2 * (r / 2) + r % 2) + (c % 2) * (r / 2 + r % 2); }

template <typename MaskedM>
class PairedTileWalker {
 public:
  SG_HD PairedTileWalker(const SignalLayout& layout, MaskedM masked_m, int cluster, int num_clusters, int rank)
      : cursor_(layout, masked_m), col_blocks_(layout.col_blocks()), next_unit_(cluster), stride_(num_clusters),
        rank_(rank) {}

  SG_HD bool next(ClusterWork& work) {
    const int local = cursor_.seek(next_unit_);
    if (local < 0) return false;
    next_unit_ += stride_;

    const int r = cursor_.row_blocks(), half_rows = r / 2;
    const int group_units = 2 * half_rows + r % 2;  // units of a full pair of column blocks
    const int n0 = 2 * (local / group_units);
    const int j = local % group_units;
    const bool lone_column = n0 + 1 == col_blocks_;  // the last group holds one column
    work.has_tile = true;
    if (j < (lone_column ? half_rows : 2 * half_rows)) {
      work.share = ClusterShare::weights;
      work.tile = cursor_.tile(2 * (j % half_rows) + rank_, n0 + j / half_rows);
    } else if (!lone_column) {
      work.share = ClusterShare::tokens;
      work.tile = cursor_.tile(r - 1, n0 + rank_);
    } else {
      work.share = ClusterShare::none;
      work.tile = cursor_.tile(r - 1, n0);
      work.has_tile = rank_ == 0;
    }
    return true;
  }

 private:
  ExpertCursor<MaskedM, units_of_expert> cursor_;
  int col_blocks_;
  int next_unit_;
  int stride_;
  int rank_;
};

}  // namespace signalgemm::detail
