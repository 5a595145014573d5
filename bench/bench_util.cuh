// Small helpers shared by the benchmark and the demo: error checks, random device fills, median.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "signalgemm/types.h"

#define SG_BENCH_CHECK_CUDA(expr)                                                                \
  do {                                                                                           \
    cudaError_t err_ = (expr);                                                                   \
    if (err_ != cudaSuccess) {                                                                   \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(err_)); \
      std::exit(1);                                                                              \
    }                                                                                            \
  } while (0)

namespace signalgemm::bench {

// e4m3 codes with exponent field 4..10 (|x| in [2^-3, 2^4)), random sign and mantissa: realistic
// magnitudes, never 0, never NaN.
static __global__ void fill_random_e4m3(uint8_t* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    uint32_t h = uint32_t(i) * 2654435761u ^ (seed * 0x9e3779b9u);
    h ^= h >> 15, h *= 2246822519u, h ^= h >> 13, h *= 3266489917u, h ^= h >> 16;
    p[i] = uint8_t((h & 0x80) | ((4 + (h >> 8) % 7) << 3) | ((h >> 16) & 7));
  }
}

// Positive floats in [lo, 2 lo).
static __global__ void fill_random_scale(float* p, size_t n, float lo, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    uint32_t h = uint32_t(i) * 2246822519u ^ (seed * 0x85ebca6bu);
    h ^= h >> 13, h *= 3266489917u, h ^= h >> 16;
    p[i] = lo * (1.f + float(h & 0xffff) / 65536.f);
  }
}

inline float median(std::vector<float> v) {
  if (v.empty()) return 0.f;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Exits with code 2 and a plain message unless device 0 is a Hopper GPU.
inline cudaDeviceProp require_hopper(const char* program) {
  int count = 0;
  cudaDeviceProp prop{};
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0 || cudaGetDeviceProperties(&prop, 0) != cudaSuccess ||
      prop.major != 9 || prop.minor != 0) {
    std::fprintf(stderr, "%s: a Hopper GPU (sm_90) is required; found none\n", program);
    std::exit(2);
  }
  return prop;
}

}  // namespace signalgemm::bench
