// FP4 weights in the mma_fragments layout (mainloop_register_weights.cuh): with bf16 tokens, or
// fp8_block128 tokens converted into the workspace beforehand.
#include "host/kernel_entry.cuh"
#include "kernels/mainloop_register_weights.cuh"

namespace signalgemm::host {
namespace {

// fp8_block128 tokens read as bf16 from the workspace: the tiles of
// host::register_weights_with_converted_tokens.
template <Format kWeights>
KernelEntry fp8_tokens_fragment_kernel(const TileConfig& cfg) {
  using kernels::RegisterWeightsMainloop;
  constexpr Format kTokens = Format::fp8_block128;
  if (cfg.block_n == 256 && cfg.block_m == 32)
    return entry<RegisterWeightsMainloop<32, 256, kWeights, kTokens, /*kInWorkspace=*/true, /*kFragments=*/true>>();
  if (cfg.block_n == 256 && cfg.block_m == 48)
    return entry<RegisterWeightsMainloop<48, 256, kWeights, kTokens, true, true>>();
  if (cfg.block_n == 256 && cfg.block_m == 64)
    return entry<RegisterWeightsMainloop<64, 256, kWeights, kTokens, true, true>>();
  if (cfg.block_n == 128 && cfg.block_m == 128)
    return entry<RegisterWeightsMainloop<128, 128, kWeights, kTokens, true, true>>();
  return {};
}

}  // namespace

KernelEntry register_weights_fragment_kernel(Format tokens, Format weights, const TileConfig& cfg,
                                             bool tokens_in_workspace) {
  if (tokens == Format::bf16 && weights == Format::nvfp4)
    return register_weights_tiles<kernels::Bf16Nvfp4FragmentMainloop>(cfg);
  if (tokens == Format::bf16 && weights == Format::mxfp4)
    return register_weights_tiles<kernels::Bf16Mxfp4FragmentMainloop>(cfg);
  if (tokens == Format::fp8_block128 && tokens_in_workspace && weights == Format::nvfp4)
    return fp8_tokens_fragment_kernel<Format::nvfp4>(cfg);
  if (tokens == Format::fp8_block128 && tokens_in_workspace && weights == Format::mxfp4)
    return fp8_tokens_fragment_kernel<Format::mxfp4>(cfg);
  return {};
}

}  // namespace signalgemm::host
