// Small helpers shared by the benchmark and the demo: error checks, random device fills for every
// operand format, a GPU spin used to keep host overhead out of event timings, median.
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

// A library call that must succeed: prints the message that names the bad argument, exits.
#define SG_BENCH_CHECK_STATUS(expr)                     \
  do {                                                  \
    signalgemm::Status s_ = (expr);                     \
    if (!s_.ok()) {                                     \
      std::fprintf(stderr, "%s\n", s_.message.c_str()); \
      std::exit(1);                                     \
    }                                                   \
  } while (0)

// After a <<<...>>> launch: launch-configuration errors surface only through cudaGetLastError.
#define SG_BENCH_CHECK_LAUNCH() SG_BENCH_CHECK_CUDA(cudaGetLastError())

namespace signalgemm::bench {

// A cheap integer hash (murmur3 finalizer): deterministic, well-spread bits for the fills.
__device__ __forceinline__ uint32_t mix_bits(uint32_t index, uint32_t seed) {
  uint32_t h = index * 2654435761u ^ (seed * 0x9e3779b9u);
  h ^= h >> 15, h *= 2246822519u, h ^= h >> 13, h *= 3266489917u, h ^= h >> 16;
  return h;
}

// e4m3 codes with exponent field 4..10 (|x| in [2^-3, 2^4)), random sign and mantissa: realistic
// magnitudes, never 0, never NaN (0x7f/0xff need exponent field 15).
static __global__ void fill_random_e4m3(uint8_t* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const uint32_t h = mix_bits(uint32_t(i), seed);
    p[i] = uint8_t((h & 0x80) | ((4 + (h >> 8) % 7) << 3) | ((h >> 16) & 7));
  }
}

// Positive floats in [lo, 2 lo).
static __global__ void fill_random_scale(float* p, size_t n, float lo, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const uint32_t h = mix_bits(uint32_t(i), seed ^ 0x85ebca6bu);
    p[i] = lo * (1.f + float(h & 0xffff) / 65536.f);
  }
}

// bf16 with |x| in [2^-4, 2^4): biased exponent 123..130, random sign and mantissa.
static __global__ void fill_random_bf16(uint16_t* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const uint32_t h = mix_bits(uint32_t(i), seed);
    p[i] = uint16_t(((h & 1u) << 15) | ((123u + (h >> 1) % 8) << 7) | ((h >> 8) & 0x7f));
  }
}

// Two e2m1 codes per byte, each nonzero (magnitude code 1..7 = 0.5..6) with a random sign.
static __global__ void fill_random_e2m1x2(uint8_t* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const uint32_t h = mix_bits(uint32_t(i), seed);
    const uint32_t lo = (h & 8) | (1 + (h >> 4) % 7), hi = ((h >> 8) & 8) | (1 + (h >> 12) % 7);
    p[i] = uint8_t(lo | hi << 4);
  }
}

// Positive one-byte scale codes around 2^-4: e8m0 (2^(code-127)) or e4m3 (sign bit clear).
static __global__ void fill_random_byte_scale(uint8_t* p, size_t n, bool e8m0, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const uint32_t h = mix_bits(uint32_t(i), seed);
    p[i] = e8m0 ? uint8_t(120 + h % 5)                                   // 2^-7 .. 2^-3
                : uint8_t(((2 + (h >> 8) % 3) << 3) | ((h >> 16) & 7));  // [2^-5, 2^-2)
  }
}

// Busy-waits `ns` nanoseconds of %globaltimer. Queued before a start event so the GPU is still
// busy while the host enqueues the timed work: the events then bracket GPU time only.
static __global__ void spin_kernel(uint64_t ns) {
  uint64_t start, now;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  } while (now - start < ns);
}

inline float median(std::vector<float> v) {
  if (v.empty()) return 0.f;
  std::sort(v.begin(), v.end());
  const size_t half = v.size() / 2;
  return v.size() % 2 ? v[half] : 0.5f * (v[half - 1] + v[half]);
}

// Exits with code 2 and a plain message unless device 0 is a Hopper GPU (sm_90).
inline cudaDeviceProp require_hopper(const char* program) {
  int count = 0;
  cudaDeviceProp prop{};
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0 || cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
    std::fprintf(stderr, "%s: a Hopper GPU (sm_90) is required; found none\n", program);
    std::exit(2);
  }
  if (prop.major != 9 || prop.minor != 0) {
    std::fprintf(stderr, "%s: a Hopper GPU (sm_90) is required; found %s (sm_%d%d)\n", program, prop.name,
                 prop.major, prop.minor);
    std::exit(2);
  }
  return prop;
}

}  // namespace signalgemm::bench
