// signalgemm-store-latency: how long one CTA's store of a staged 128 x 192 bf16 tile takes to
// complete (issue to cp.async.bulk.wait_group 0), as the epilogue's two ways of storing it:
// 128 row bulk copies of 384 bytes, or TMA tensor stores of 64-column boxes of 8 to 128 rows from
// a 128-byte swizzled staging tile (kernels/epilogue_signal.cuh, StagingLayout). One CTA alone,
// then one per SM at once; each CTA stores to its own rows of C, 50 times.
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cudaTypedefs.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "kernels/kernel_params.h"  // StagingLayout: the kernel's swizzled staging tile

namespace {

constexpr int kRows = 128, kCols = 192, kN = 4096, kReps = 50;

__device__ __forceinline__ uint64_t global_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// kBoxRows = 0: row copies; else boxes of 64 columns x kBoxRows rows.
template <int kBoxRows>
__global__ void __launch_bounds__(32) store_tiles(__nv_bfloat16* c, const __grid_constant__ CUtensorMap tmap_c,
                                                  uint64_t* mean_ns) {
  extern __shared__ uint8_t smem_raw[];
  uint8_t* staging = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  const int lane = threadIdx.x;
  for (int i = lane; i < kRows * kCols * 2 / 16; i += 32)
    reinterpret_cast<uint4*>(staging)[i] = make_uint4(i, blockIdx.x, 1, 2);
  // The copies read shared memory through the async proxy: the generic writes above first.
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  __syncwarp();
  const int row0 = blockIdx.x * kRows;
  uint64_t total = 0;
  for (int r = 0; r < kReps; ++r) {
    const int col0 = (r % (kN / kCols)) * kCols;
    __syncwarp();
    const uint64_t start = global_ns();
    if constexpr (kBoxRows == 0) {
      for (int row = lane; row < kRows; row += 32) {
        uint8_t* dst = reinterpret_cast<uint8_t*>(c + size_t(row0 + row) * kN + col0);
        const uint32_t src = static_cast<uint32_t>(__cvta_generic_to_shared(staging + row * kCols * 2));
        asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;" ::"l"(dst), "r"(src),
                     "r"(kCols * 2)
                     : "memory");
      }
    } else {
      constexpr int kChunks = kCols / 64, kBoxes = (kRows / kBoxRows) * kChunks;
      for (int b = lane; b < kBoxes; b += 32) {
        const int chunk = b % kChunks, box = b / kChunks;
        const signalgemm::kernels::StagingLayout<kRows, kCols> layout(/*out_boxes=*/true);
        const uint32_t src = static_cast<uint32_t>(
            __cvta_generic_to_shared(staging + layout.offset(box * kBoxRows, 8 * chunk)));  // box's first row, unit
        asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%2, %3}], [%1];" ::"l"(&tmap_c),
                     "r"(src), "r"(col0 + 64 * chunk), "r"(row0 + box * kBoxRows)
                     : "memory");
      }
    }
    asm volatile("cp.async.bulk.commit_group;" ::: "memory");
    asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");
    __syncwarp();
    total += global_ns() - start;
  }
  if (lane == 0) mean_ns[blockIdx.x] = total / kReps;
}

}  // namespace

int main() {
  int sms = 0;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0) != cudaSuccess) {
    std::printf("signalgemm-store-latency: no CUDA device\n");
    return 2;
  }
  __nv_bfloat16* c = nullptr;
  uint64_t* mean_ns = nullptr;
  cudaMalloc(&c, size_t(sms) * kRows * kN * 2);
  cudaMalloc(&mean_ns, sms * sizeof(uint64_t));
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult found{};
  cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found);
  const auto encode = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  if (encode == nullptr) {
    std::printf("signalgemm-store-latency: no cuTensorMapEncodeTiled\n");
    return 1;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::printf("store of one staged 128x192 bf16 tile per CTA on %s, issue to completion, ns (median / min / max "
              "over CTAs of each CTA's mean over %d stores)\n",
              prop.name, kReps);
  const auto run = [&](auto kernel, int box_rows, const char* name, int grid) {
    CUtensorMap map{};
    const cuuint64_t dims[2] = {kN, cuuint64_t(sms) * kRows};
    const cuuint64_t strides[1] = {kN * 2};
    const cuuint32_t box[2] = {64, cuuint32_t(box_rows)}, element_strides[2] = {1, 1};
    if (encode(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, c, dims, strides, box, element_strides,
               CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_NONE,
               CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) != CUDA_SUCCESS) {
      std::printf("%-30s: cannot encode the tensor map\n", name);
      return;
    }
    const int smem = kRows * kCols * 2 + 1024;
    cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    kernel<<<grid, 32, smem>>>(c, map, mean_ns);
    const cudaError_t err = cudaDeviceSynchronize();
    std::vector<uint64_t> ns(grid);
    cudaMemcpy(ns.data(), mean_ns, grid * sizeof(uint64_t), cudaMemcpyDeviceToHost);
    std::sort(ns.begin(), ns.end());
    std::printf("%-30s %3d CTAs: %6llu / %6llu / %6llu %s\n", name, grid, (unsigned long long)ns[grid / 2],
                (unsigned long long)ns[0], (unsigned long long)ns[grid - 1],
                err != cudaSuccess ? cudaGetErrorString(err) : "");
  };
  for (const int grid : {1, sms}) {
    run(store_tiles<0>, 8, "128 row copies of 384 B", grid);
    run(store_tiles<8>, 8, "48 boxes of 64 x 8", grid);
    run(store_tiles<32>, 32, "12 boxes of 64 x 32", grid);
    run(store_tiles<64>, 64, "6 boxes of 64 x 64", grid);
    run(store_tiles<128>, 128, "3 boxes of 64 x 128", grid);
  }
  return 0;
}
