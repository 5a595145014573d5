// Split K for bf16 x FP4 weights, rows or mma_fragments (mainloop_register_weights.cuh, split_k.cuh).
#include "host/kernel_entry.cuh"
#include "kernels/mainloop_register_weights.cuh"

namespace signalgemm::host {
namespace {

// Split K (host::plan_split_k): bf16 x FP4 weights, in rows or mma_fragments, on the decode tiles.
template <Format kWeights, bool kFragments>
KernelEntry register_weights_split_kernel(const TileConfig& cfg) {
  using kernels::RegisterWeightsMainloop;
  if (cfg.block_n != 256) return {};
  if (cfg.block_m == 32) return entry<RegisterWeightsMainloop<32, 256, kWeights, Format::bf16, false, kFragments, true>>();
  if (cfg.block_m == 48) return entry<RegisterWeightsMainloop<48, 256, kWeights, Format::bf16, false, kFragments, true>>();
  if (cfg.block_m == 64) return entry<RegisterWeightsMainloop<64, 256, kWeights, Format::bf16, false, kFragments, true>>();
  return {};
}

}  // namespace

KernelEntry register_weights_split_kernel(Format weights, bool fragments, const TileConfig& cfg) {
  if (weights == Format::nvfp4)
    return fragments ? register_weights_split_kernel<Format::nvfp4, true>(cfg)
                     : register_weights_split_kernel<Format::nvfp4, false>(cfg);
  if (weights == Format::mxfp4)
    return fragments ? register_weights_split_kernel<Format::mxfp4, true>(cfg)
                     : register_weights_split_kernel<Format::mxfp4, false>(cfg);
  return {};
}

}  // namespace signalgemm::host
