// Block-scaled activations converted once to bf16 rows (GroupedGemmArgs::workspace): nvfp4, mxfp4
// and mxfp8 element x block scale, for the launch that then multiplies them as bf16 with the
// weights' own format; fp8_block128 elements alone, for the register-weights mainloop that still
// promotes with their scales. The register-weights mainloop would otherwise convert an expert's
// tokens again in every column block of its tile sequence. The arithmetic is that conversion's
// (dequant_formats.cuh: exact, one rounding that never rounds), so the products the MMAs see are
// the same.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/dequant_formats.cuh"
#include "signalgemm/types.h"

namespace signalgemm::kernels {

// One thread per 16 elements of a real row (i < masked_m[e], clamped to [0, max_m]); rows past
// masked_m are left as they are (their products reach only output rows that are never stored).
// Output: bf16 [experts][max_m][k], packed.
template <Format kFormat>
__global__ void __launch_bounds__(256) convert_activations_kernel(const uint8_t* data, int64_t row_stride,
                                                                  int64_t expert_stride, const uint8_t* scales,
                                                                  const int32_t* masked_m, int experts, int max_m,
                                                                  int k, __nv_bfloat16* out, bool wait_for_previous) {
  static_assert(kFormat == Format::nvfp4 || kFormat == Format::mxfp4 || kFormat == Format::mxfp8 ||
                    kFormat == Format::fp8_block128,
                "FP4 or e4m3 elements");
  constexpr bool kFp4 = kFormat == Format::nvfp4 || kFormat == Format::mxfp4;
  // fp8_block128: the elements alone (exact); their fp32 scale per 128 K is not a bf16 factor, so
  // the GEMM still applies it when it promotes each 128-K block's partial sums.
  constexpr bool kScaled = kFormat != Format::fp8_block128;
  constexpr int kScaleBlock = scale_block_k(kFormat);
  // With programmatic dependent launch, the kernel before may still run: wait before reading.
  if (wait_for_previous) asm volatile("griddepcontrol.wait;\n" ::: "memory");
  const int groups = k / 16;  // per row
  const int64_t total = int64_t(experts) * max_m * groups;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int g = int(i % groups);
    const int64_t row = i / groups;
    const int e = int(row / max_m), r = int(row % max_m);
    if (r >= min(max(__ldg(masked_m + e), 0), max_m)) continue;
    const uint8_t* elements = data + e * expert_stride + r * row_stride + g * (kFp4 ? 8 : 16);
    uint32_t scale = 0;
    if constexpr (kScaled) {
      const uint32_t code = __ldg(scales + row * (k / kScaleBlock) + g * 16 / kScaleBlock);
      scale = kFormat == Format::nvfp4 ? dequant::e4m3_scale_to_bf16x2(code) : dequant::e8m0_scale_to_bf16x2(code);
    }
    uint32_t values[8];
    if constexpr (kFp4) {
      const uint2 codes = __ldg(reinterpret_cast<const uint2*>(elements));
      dequant::e2m1x8_to_bf16x8(codes.x, reinterpret_cast<uint32_t(&)[4]>(values[0]));
      dequant::e2m1x8_to_bf16x8(codes.y, reinterpret_cast<uint32_t(&)[4]>(values[4]));
    } else {
      const uint4 codes = __ldg(reinterpret_cast<const uint4*>(elements));
      dequant::e4m3x4_to_bf16x4(codes.x, values[0], values[1]);
      dequant::e4m3x4_to_bf16x4(codes.y, values[2], values[3]);
      dequant::e4m3x4_to_bf16x4(codes.z, values[4], values[5]);
      dequant::e4m3x4_to_bf16x4(codes.w, values[6], values[7]);
    }
    if constexpr (kScaled) {
#pragma unroll
      for (int j = 0; j < 8; ++j) values[j] = dequant::mul_bf16x2(values[j], scale);  // one rounding, exact
    }
    uint4* destination = reinterpret_cast<uint4*>(out + row * k + g * 16);
    destination[0] = make_uint4(values[0], values[1], values[2], values[3]);
    destination[1] = make_uint4(values[4], values[5], values[6], values[7]);
  }
  // The GEMM launched after this kernel with programmatic serialization may start its set-up now;
  // it reads this kernel's output only after its own griddepcontrol.wait (this grid's completion).
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
}

}  // namespace signalgemm::kernels
