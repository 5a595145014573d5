// The register-weights mainloop with tokens it converts itself (mainloop_register_weights.cuh).
#include "host/kernel_entry.cuh"
#include "kernels/mainloop_register_weights.cuh"

namespace signalgemm::host {
namespace {

// Converted tokens on the tiles of host::register_weights_with_converted_tokens (kInWorkspace:
// fp8_block128 tokens converted to bf16 before the launch).
template <Format kWeights, Format kTokens, bool kInWorkspace = false>
KernelEntry converted_tokens_kernel(const TileConfig& cfg) {
  using kernels::RegisterWeightsMainloop;
  if (cfg.block_n == 256 && cfg.block_m == 32)
    return entry<RegisterWeightsMainloop<32, 256, kWeights, kTokens, kInWorkspace>>();
  if (cfg.block_n == 256 && cfg.block_m == 48)
    return entry<RegisterWeightsMainloop<48, 256, kWeights, kTokens, kInWorkspace>>();
  if (cfg.block_n == 256 && cfg.block_m == 64)
    return entry<RegisterWeightsMainloop<64, 256, kWeights, kTokens, kInWorkspace>>();
  if (cfg.block_n == 128 && cfg.block_m == 128)
    return entry<RegisterWeightsMainloop<128, 128, kWeights, kTokens, kInWorkspace>>();
  return {};
}

}  // namespace

KernelEntry converted_tokens_kernel(Format tokens, Format weights, const TileConfig& cfg, bool tokens_in_workspace) {
  if (tokens != weights && !kernels::is_fp8_tokens_fp4_weights_pair(tokens, weights)) return {};
  switch (tokens) {
    case Format::fp8_block128:
      if (weights == Format::mxfp4)
        return tokens_in_workspace ? converted_tokens_kernel<Format::mxfp4, Format::fp8_block128, true>(cfg)
                                   : converted_tokens_kernel<Format::mxfp4, Format::fp8_block128>(cfg);
      return tokens_in_workspace ? converted_tokens_kernel<Format::nvfp4, Format::fp8_block128, true>(cfg)
                                 : converted_tokens_kernel<Format::nvfp4, Format::fp8_block128>(cfg);
    case Format::nvfp4:
      return converted_tokens_kernel<Format::nvfp4, Format::nvfp4>(cfg);
    case Format::mxfp4:
      return converted_tokens_kernel<Format::mxfp4, Format::mxfp4>(cfg);
    case Format::mxfp8:
      return converted_tokens_kernel<Format::mxfp8, Format::mxfp8>(cfg);
    default:
      return {};
  }
}

}  // namespace signalgemm::host
