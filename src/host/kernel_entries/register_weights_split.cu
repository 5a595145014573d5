// Split K on the register-weights mainloop's decode tiles (mainloop_register_weights.cuh, split_k.cuh):
// bf16 x FP4 weights in rows or mma_fragments, bf16 x mxfp8, and fp8_block128 tokens converted into
// the workspace x nvfp4 or mxfp4 in either layout (host::plan_split_k).
#include "host/kernel_entry.cuh"
#include "kernels/mainloop_register_weights.cuh"

namespace signalgemm::host {
namespace {

template <Format kWeights, Format kTokens, bool kInWorkspace, bool kFragments>
KernelEntry split_kernel(const TileConfig& cfg) {
  using kernels::RegisterWeightsMainloop;
  if (cfg.block_n != 256) return {};
  if (cfg.block_m == 32)
    return entry<RegisterWeightsMainloop<32, 256, kWeights, kTokens, kInWorkspace, kFragments, /*kSplitK=*/true>>();
  if (cfg.block_m == 48)
    return entry<RegisterWeightsMainloop<48, 256, kWeights, kTokens, kInWorkspace, kFragments, /*kSplitK=*/true>>();
  if (cfg.block_m == 64)
    return entry<RegisterWeightsMainloop<64, 256, kWeights, kTokens, kInWorkspace, kFragments, /*kSplitK=*/true>>();
  return {};
}

}  // namespace

KernelEntry register_weights_split_kernel(Format tokens, Format weights, bool fragments, const TileConfig& cfg) {
  if (tokens == Format::fp8_block128) {  // read as bf16 from the workspace, the scales per 128-K block
    if (weights == Format::nvfp4)
      return fragments ? split_kernel<Format::nvfp4, Format::fp8_block128, /*kInWorkspace=*/true, true>(cfg)
                       : split_kernel<Format::nvfp4, Format::fp8_block128, /*kInWorkspace=*/true, false>(cfg);
    if (weights == Format::mxfp4)
      return fragments ? split_kernel<Format::mxfp4, Format::fp8_block128, /*kInWorkspace=*/true, true>(cfg)
                       : split_kernel<Format::mxfp4, Format::fp8_block128, /*kInWorkspace=*/true, false>(cfg);
    return {};
  }
  if (tokens != Format::bf16) return {};
  if (weights == Format::nvfp4)
    return fragments ? split_kernel<Format::nvfp4, Format::bf16, false, true>(cfg)
                     : split_kernel<Format::nvfp4, Format::bf16, false, false>(cfg);
  if (weights == Format::mxfp4)
    return fragments ? split_kernel<Format::mxfp4, Format::bf16, false, true>(cfg)
                     : split_kernel<Format::mxfp4, Format::bf16, false, false>(cfg);
  if (weights == Format::mxfp8 && !fragments) return split_kernel<Format::mxfp8, Format::bf16, false, false>(cfg);
  return {};
}

}  // namespace signalgemm::host
