// bf16 x nvfp4 / mxfp4 / mxfp8 weights in rows (mainloop_register_weights.cuh).
#include "host/kernel_entry.cuh"
#include "kernels/mainloop_register_weights.cuh"

namespace signalgemm::host {

KernelEntry register_weights_kernel(Format weights, const TileConfig& cfg) {
  return weights == Format::nvfp4   ? register_weights_tiles<kernels::Bf16Nvfp4Mainloop>(cfg)
         : weights == Format::mxfp4 ? register_weights_tiles<kernels::Bf16Mxfp4Mainloop>(cfg)
                                    : register_weights_tiles<kernels::Bf16Mxfp8Mainloop>(cfg);
}

}  // namespace signalgemm::host
