// Launch and load of one grouped_gemm_kernel<Mainloop>: included by the kernel_entries/ translation
// units only, each of which instantiates its family's kernels (every Mainloop in exactly one).
#pragma once

#include <algorithm>
#include <atomic>

#include "host/kernel_entry.h"
#include "kernels/grouped_gemm_kernel.cuh"

namespace signalgemm::host {
namespace {

inline constexpr int kMaxCachedDevices = 64;

// How many clusters of `launch` fit on the device at once, queried once per kernel (Mainloop) and
// device (one CTA per SM whatever the stage count, so the answer does not depend on it). Keyed by
// the Mainloop: every kernel has the same function type.
template <class Mainloop, class Kernel>
Status resident_cluster_count(Kernel* kernel, const cudaLaunchConfig_t& launch, int& clusters) {
  static std::atomic<int> cached[kMaxCachedDevices] = {};  // relaxed: every writer stores the same value
  int device = 0;
  if (cudaError_t err = cudaGetDevice(&device); err != cudaSuccess) return cuda_failure("cudaGetDevice", err);
  const bool cacheable = device >= 0 && device < kMaxCachedDevices;
  if (cacheable && (clusters = cached[device].load(std::memory_order_relaxed)) > 0) return {};
  // The occupancy query is no stream operation, but CUDA forbids it to a thread while a stream is
  // captured in global mode (the capture then fails): this thread asks in relaxed mode, the
  // programming guide's way for such calls, so that a launch captured first sizes its grid exactly.
  cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
  if (cudaError_t err = cudaThreadExchangeStreamCaptureMode(&mode); err != cudaSuccess)
    return cuda_failure("cudaThreadExchangeStreamCaptureMode", err);
  const cudaError_t err = cudaOccupancyMaxActiveClusters(&clusters, kernel, &launch);
  cudaThreadExchangeStreamCaptureMode(&mode);  // the thread's own mode back
  if (err != cudaSuccess) return cuda_failure("cudaOccupancyMaxActiveClusters", err);
  if (cacheable) cached[device].store(clusters, std::memory_order_relaxed);
  return {};
}

// `grid` persistent CTAs; for a cluster kernel, as many whole clusters of them as can be resident
// at once (a cluster needs its CTAs on one GPC, so fewer than sm_count / 2 may fit).
template <class Mainloop>
Status launch_kernel(const GroupedGemmArgs& args, const TileConfig& cfg, int grid, const TensorMaps& maps,
                     const kernels::KernelParams& params) {
  constexpr int kCluster = kernels::kClusterOf<Mainloop>;
  auto* kernel = &kernels::grouped_gemm_kernel<Mainloop>;
  const int smem = Mainloop::plan(cfg.stages).total_bytes();
  cudaLaunchConfig_t launch{};
  launch.blockDim = dim3(kernels::kThreads);
  launch.dynamicSmemBytes = smem;
  launch.stream = args.stream;
  cudaLaunchAttribute attrs[2]{};
  if constexpr (kCluster > 1) {
    attrs[launch.numAttrs].id = cudaLaunchAttributeClusterDimension;
    attrs[launch.numAttrs].val.clusterDim.x = kCluster;
    attrs[launch.numAttrs].val.clusterDim.y = 1;
    attrs[launch.numAttrs].val.clusterDim.z = 1;
    ++launch.numAttrs;
    launch.attrs = attrs;
    launch.gridDim = dim3(kCluster);
    int resident_clusters = 0;
    if (Status s = resident_cluster_count<Mainloop>(kernel, launch, resident_clusters); !s.ok()) return s;
    if (args.sm_count > 0) {
      // SMs kept for a consumer: each SM a consumer block holds can leave its GPC one SM short of a
      // pair, so only that many clusters fewer are sure to fit beside it. A cluster left waiting for
      // the consumer's SMs, while the consumer waits for that cluster's tiles (dealt out in a fixed
      // order), would never run.
      int device = 0, sms = 0;
      if (cudaError_t err = cudaGetDevice(&device); err != cudaSuccess) return cuda_failure("cudaGetDevice", err);
      if (cudaError_t err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device); err != cudaSuccess)
        return cuda_failure("cudaDeviceGetAttribute", err);
      resident_clusters = std::max(1, resident_clusters - std::max(0, sms - args.sm_count));
    }
    grid = std::min(grid / kCluster, resident_clusters) * kCluster;
    if (grid == 0) return Status{StatusCode::cuda_error, "signalgemm: no two-CTA cluster fits on this device"};
  }
  launch.gridDim = dim3(grid);
  if (args.enable_pdl) {
    attrs[launch.numAttrs].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attrs[launch.numAttrs].val.programmaticStreamSerializationAllowed = 1;
    ++launch.numAttrs;
    launch.attrs = attrs;
  }
  // Its own error, not an earlier one of the caller's (no cudaGetLastError).
  if (cudaError_t err = cudaLaunchKernelEx(&launch, kernel, maps.a, maps.b, maps.sfa, maps.sfb, maps.c, params);
      err != cudaSuccess)
    return cuda_failure("kernel launch", err);
  return {};
}

// Loads a kernel without launching it (setting an attribute forces a lazily loaded module in, so a
// failure to load is reported before a launch enqueues anything). The attribute is one value per
// kernel and device, shared by every host thread: it is set to the device's opt-in maximum
// (`smem_limit`), the same for every launch, not to one launch's bytes, so that a concurrent launch
// with fewer stages never lowers it under one with more.
template <class Mainloop>
Status load_kernel(int smem_limit) {
  if (cudaError_t err = cudaFuncSetAttribute(&kernels::grouped_gemm_kernel<Mainloop>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, smem_limit);
      err != cudaSuccess)
    return cuda_failure("cudaFuncSetAttribute", err);
  return {};
}

// The entry of grouped_gemm_kernel<Mainloop>, instantiated in the including translation unit.
template <class Mainloop>
KernelEntry entry() {
  return {&launch_kernel<Mainloop>, &load_kernel<Mainloop>};
}

template <template <int, int> class Mainloop>
KernelEntry kernel_for_tile(const TileConfig& cfg) {
  if (cfg.block_m == 32 && cfg.block_n == 128) return entry<Mainloop<32, 128>>();
  if (cfg.block_m == 64 && cfg.block_n == 128) return entry<Mainloop<64, 128>>();
  if (cfg.block_m == 128 && cfg.block_n == 128) return entry<Mainloop<128, 128>>();
  if (cfg.block_m == 192 && cfg.block_n == 128) return entry<Mainloop<192, 128>>();
  if (cfg.block_m == 128 && cfg.block_n == 256) return entry<Mainloop<128, 256>>();
  return {};
}

// bf16 x FP4 / mxfp8 weights: the common tiles plus the decode tiles of 256 weight rows the heuristic
// picks for at most 64 tokens per tile (config.cpp).
template <template <int, int> class Mainloop>
KernelEntry register_weights_tiles(const TileConfig& cfg) {
  if (cfg.block_m == 32 && cfg.block_n == 256) return entry<Mainloop<32, 256>>();
  if (cfg.block_m == 48 && cfg.block_n == 256) return entry<Mainloop<48, 256>>();
  if (cfg.block_m == 64 && cfg.block_n == 256) return entry<Mainloop<64, 256>>();
  return kernel_for_tile<Mainloop>(cfg);
}

}  // namespace
}  // namespace signalgemm::host
