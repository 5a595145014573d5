// The dequantizing mainloop's kernels (mainloop_dequant_bf16.cuh).
#include "host/kernel_entry.cuh"
#include "kernels/mainloop_dequant_bf16.cuh"

namespace signalgemm::host {
namespace {

// 32x128, 64x128 and, but for fp8_block128 activations (dequant_bf16_tile_compiled), 192x128 and
// 128x256. Every dequantizing pairing runs 128x128 on the register-weights mainloop instead
// (host::register_weights_with_converted_tokens), so that tile is not compiled here.
template <template <int, int> class Mainloop, bool kFp8Tokens = false>
KernelEntry dequant_tiles(const TileConfig& cfg) {
  if (cfg.block_m == 32 && cfg.block_n == 128) return entry<Mainloop<32, 128>>();
  if (cfg.block_m == 64 && cfg.block_n == 128) return entry<Mainloop<64, 128>>();
  if constexpr (!kFp8Tokens) {
    if (cfg.block_m == 192 && cfg.block_n == 128) return entry<Mainloop<192, 128>>();
    if (cfg.block_m == 128 && cfg.block_n == 256) return entry<Mainloop<128, 256>>();
  }
  return {};
}

}  // namespace

KernelEntry dequant_bf16_kernel(Format a, Format b, const TileConfig& cfg) {
  if (a == Format::mxfp8 && b == Format::mxfp8) return dequant_tiles<kernels::Mxfp8Mxfp8Mainloop>(cfg);
  if (a == Format::mxfp4 && b == Format::mxfp4) return dequant_tiles<kernels::Mxfp4Mxfp4Mainloop>(cfg);
  if (a == Format::nvfp4 && b == Format::nvfp4) return dequant_tiles<kernels::Nvfp4Nvfp4Mainloop>(cfg);
  if (a == Format::fp8_block128 && b == Format::nvfp4) return dequant_tiles<kernels::Fp8Nvfp4Mainloop, true>(cfg);
  if (a == Format::fp8_block128 && b == Format::mxfp4) return dequant_tiles<kernels::Fp8Mxfp4Mainloop, true>(cfg);
  return {};
}

}  // namespace signalgemm::host
