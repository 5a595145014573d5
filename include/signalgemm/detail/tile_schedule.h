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

  // Returns false when this CTA has no tiles left.
  SG_HD bool next(Tile& tile) {
    while (expert_ < layout_.num_experts && next_tile_ >= expert_first_ + expert_tiles_) {
      expert_first_ += expert_tiles_;
      load_expert(expert_ + 1);
    }
    if (expert_ >= layout_.num_experts) return false;
    const int local = next_tile_ - expert_first_;
    tile.expert = expert_;
    tile.n_block = local / expert_row_blocks_;
    tile.m_block = local % expert_row_blocks_;
    const int rows_left = expert_m_ - tile.m_block * layout_.block_m;
    tile.rows = rows_left < layout_.block_m ? rows_left : layout_.block_m;
    next_tile_ += stride_;
    return true;
  }

  // Rows of the current expert that are real (clamped masked_m).
  SG_HD int expert_m() const { return expert_m_; }

 private:
  SG_HD void load_expert(int e) {
    expert_ = e;
    if (e >= layout_.num_experts) return;
    expert_m_ = layout_.clamp_m(int(masked_m_[e]));
    expert_row_blocks_ = (expert_m_ + layout_.block_m - 1) / layout_.block_m;
    expert_tiles_ = expert_row_blocks_ * layout_.col_blocks();
  }

  SignalLayout layout_;
  MaskedM masked_m_;
  int next_tile_;
  int stride_;
  int expert_ = 0;
  int expert_first_ = 0;  // index of the first tile of expert_
  int expert_tiles_ = 0;
  int expert_row_blocks_ = 0;
  int expert_m_ = 0;
};

}  // namespace signalgemm::detail
