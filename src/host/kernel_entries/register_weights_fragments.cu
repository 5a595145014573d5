// bf16 x FP4 weights in the mma_fragments layout (mainloop_register_weights.cuh).
#include "host/kernel_entry.cuh"
#include "kernels/mainloop_register_weights.cuh"

namespace signalgemm::host {

KernelEntry register_weights_fragment_kernel(Format weights, const TileConfig& cfg) {
  if (weights == Format::nvfp4) return register_weights_tiles<kernels::Bf16Nvfp4FragmentMainloop>(cfg);
  if (weights == Format::mxfp4) return register_weights_tiles<kernels::Bf16Mxfp4FragmentMainloop>(cfg);
  return {};
}

}  // namespace signalgemm::host
