// fp8_block128 x fp8_block128 kernels (mainloop_fp8_block128.cuh).
#include "host/kernel_entry.cuh"
#include "kernels/mainloop_fp8_block128.cuh"
#include "kernels/mainloop_fp8_token_rows.cuh"

namespace signalgemm::host {
namespace {

template <int kBlockM, int kBlockN>
using Fp8Block128Solo = kernels::Fp8Block128Mainloop<kBlockM, kBlockN, 1>;

}  // namespace

// fp8_block128 x fp8_block128: every tile, host::kClusterTiles also in two-CTA clusters, the
// decode tiles also with split K (host::plan_split_k), and host::kTokenRowsTiles.
KernelEntry fp8_block128_kernel(const TileConfig& cfg, bool split_k) {
  if (split_k) {
    if (cfg.block_m == 32 && cfg.block_n == 128) return entry<kernels::Fp8Block128Mainloop<32, 128, 1, true>>();
    if (cfg.block_m == 64 && cfg.block_n == 128) return entry<kernels::Fp8Block128Mainloop<64, 128, 1, true>>();
    return {};
  }
  if (cfg.cluster == 2) {
    if (cfg.block_m == 128 && cfg.block_n == 128) return entry<kernels::Fp8Block128Mainloop<128, 128, 2>>();
    if (cfg.block_m == 128 && cfg.block_n == 256) return entry<kernels::Fp8Block128Mainloop<128, 256, 2>>();
    return {};
  }
  if (cfg.block_m == 128 && cfg.block_n == 192) return entry<kernels::Fp8Block128TokenRowsMainloop<192>>();
  return kernel_for_tile<Fp8Block128Solo>(cfg);
}

}  // namespace signalgemm::host
