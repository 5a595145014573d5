// Tile configuration heuristic: the one place where tile shapes and pipeline depth are chosen.
// The table and its reasoning are in docs/configuration.md.
#pragma once

#include "signalgemm/gemm.h"

namespace signalgemm::host {

// Token-tile heights with a compiled kernel (wgmma N = block_m).
inline constexpr int kSupportedBlockM[] = {32, 64, 128};
inline constexpr int kBlockN = 128;
inline constexpr int kMinStages = 2;
inline constexpr int kMaxStages = 16;

bool is_supported_block_m(int block_m);

// Pure function of the problem and the device's shared-memory limit (bytes per block, opt-in).
// Zero fields of `override_config` are chosen; non-zero ones are kept as given.
TileConfig choose_tile_config(int max_m, int expected_m, int smem_per_block, TileConfig override_config);

// Most stages that fit in `smem_per_block` for this block_m (0 if not even kMinStages fit).
int max_stages(int block_m, int smem_per_block);

}  // namespace signalgemm::host
