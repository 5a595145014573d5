// bf16 x bf16 kernels (mainloop_bf16.cuh).
#include "host/kernel_entry.cuh"
#include "kernels/mainloop_bf16.cuh"

namespace signalgemm::host {
namespace {

template <int kBlockM, int kBlockN>
using Bf16Solo = kernels::Bf16Mainloop<kBlockM, kBlockN>;

}  // namespace

// bf16 x bf16: every tile, the decode tiles also with split K (host::plan_split_k).
KernelEntry bf16_kernel(const TileConfig& cfg, bool split_k) {
  if (split_k) {
    if (cfg.block_m == 32 && cfg.block_n == 128) return entry<kernels::Bf16Mainloop<32, 128, true>>();
    if (cfg.block_m == 64 && cfg.block_n == 128) return entry<kernels::Bf16Mainloop<64, 128, true>>();
    return {};
  }
  return kernel_for_tile<Bf16Solo>(cfg);
}

}  // namespace signalgemm::host
