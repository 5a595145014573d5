// The dequantizing mainloop's kernels (mainloop_dequant_bf16.cuh).
#include "host/kernel_entry.cuh"
#include "kernels/mainloop_dequant_bf16.cuh"

namespace signalgemm::host {
namespace {

// fp8_block128 activations: 32x128 and 64x128 (their 128x128 runs on the register-weights
// mainloop, host::register_weights_with_converted_tokens).
template <template <int, int> class Mainloop>
KernelEntry fp8_tokens_kernel(const TileConfig& cfg) {
  if (cfg.block_m == 32) return entry<Mainloop<32, 128>>();
  if (cfg.block_m == 64) return entry<Mainloop<64, 128>>();
  return {};
}

}  // namespace

// The dequantizing mainloop (mainloop_dequant_bf16.cuh), one instantiation per pairing and tile;
// fp8_block128 activations have the tiles of dequant_bf16_tile_compiled only.
KernelEntry dequant_bf16_kernel(Format a, Format b, const TileConfig& cfg) {
  if (!kernels::dequant_bf16_tile_compiled(a, cfg.block_m, cfg.block_n)) return {};
  if (a == Format::mxfp8 && b == Format::mxfp8) return kernel_for_tile<kernels::Mxfp8Mxfp8Mainloop>(cfg);
  if (a == Format::mxfp4 && b == Format::mxfp4) return kernel_for_tile<kernels::Mxfp4Mxfp4Mainloop>(cfg);
  if (a == Format::nvfp4 && b == Format::nvfp4) return kernel_for_tile<kernels::Nvfp4Nvfp4Mainloop>(cfg);
  if (a == Format::fp8_block128 && b == Format::nvfp4) return fp8_tokens_kernel<kernels::Fp8Nvfp4Mainloop>(cfg);
  if (a == Format::fp8_block128 && b == Format::mxfp4) return fp8_tokens_kernel<kernels::Fp8Mxfp4Mainloop>(cfg);
  return {};
}

}  // namespace signalgemm::host
