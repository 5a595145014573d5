// The compiled kernels, by mainloop family: each family's instantiations live in their own
// translation unit under kernel_entries/ (they compile in parallel), and launch.cu picks one
// through these selectors. An entry is empty where the tile (or variant) is not compiled.
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <string>

#include "kernels/kernel_params.h"
#include "signalgemm/gemm.h"

namespace signalgemm::host {

inline Status cuda_failure(const char* what, cudaError_t err) {
  return Status{StatusCode::cuda_error, std::string("signalgemm: ") + what + ": " + cudaGetErrorString(err)};
}

// The TMA descriptors of one launch (a scale map is a copy of `a` where the formats have no such
// scales; `c` too where the output is not stored in boxes, KernelParams::out_boxes).
struct TensorMaps {
  CUtensorMap a, b, sfa, sfb, c;
};

// One compiled kernel: its load (with the device's opt-in shared memory per block) and its launch
// (args, tile, grid, tensor maps, parameters). Empty where the tile is not compiled.
struct KernelEntry {
  Status (*launch)(const GroupedGemmArgs&, const TileConfig&, int grid, const TensorMaps&,
                   const kernels::KernelParams&) = nullptr;  // after load
  Status (*load)(int smem_limit) = nullptr;  // before launch: loads the module, sets the shared-memory limit
};

// Why a launch with `args` (otherwise valid) would not run: the tile it takes (the heuristic's
// completion of a partial args.config included) is not compiled for its pairing, or the stages
// asked for do not fit; empty where it runs. On the current device (an H100 without one).
Status check_launch_tile(const GroupedGemmArgs& args);

// fp8_block128 x fp8_block128: every tile, the cluster tiles also in two-CTA clusters, the decode
// tiles also with split K.
KernelEntry fp8_block128_kernel(const TileConfig& cfg, bool split_k);
// bf16 x bf16: every tile, the decode tiles also with split K.
KernelEntry bf16_kernel(const TileConfig& cfg, bool split_k);
// The dequantizing mainloop (mxfp8², mxfp4², nvfp4², fp8_block128 x nvfp4 / mxfp4 on its tiles).
KernelEntry dequant_bf16_kernel(Format a, Format b, const TileConfig& cfg);
// bf16 x nvfp4 / mxfp4 / mxfp8 weights in rows; FP4 weights in the mma_fragments layout (with bf16
// tokens, or fp8_block128 ones converted into the workspace: tokens_in_workspace); and split K on
// the decode tiles for bf16 x FP4, bf16 x mxfp8 and fp8_block128 tokens converted into the
// workspace x nvfp4 / mxfp4 (FP4 weights in either layout).
KernelEntry register_weights_kernel(Format weights, const TileConfig& cfg);
KernelEntry register_weights_fragment_kernel(Format tokens, Format weights, const TileConfig& cfg,
                                             bool tokens_in_workspace);
KernelEntry register_weights_split_kernel(Format tokens, Format weights, bool fragments, const TileConfig& cfg);
// Tokens converted by the register-weights mainloop itself (host::register_weights_with_converted_tokens),
// or fp8_block128 tokens converted into the workspace beforehand.
KernelEntry converted_tokens_kernel(Format tokens, Format weights, const TileConfig& cfg, bool tokens_in_workspace);

}  // namespace signalgemm::host
