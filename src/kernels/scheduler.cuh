// Device side of the masked tile scheduler: the CPU-tested walker over masked_m, plus the check
// that reports masked_m values outside [0, max_m] (the walker clamps them, so the kernel never
// reads or writes out of bounds; the flag tells the caller their routing was wrong).
#pragma once

#include <cuda/ptx>

#include "kernels/kernel_params.h"
#include "signalgemm/detail/tile_schedule.h"
#include "signalgemm/gemm.h"

namespace signalgemm::kernels {

using DeviceTileWalker = detail::MaskedTileWalker<const int32_t*>;

__device__ __forceinline__ DeviceTileWalker make_tile_walker(const KernelParams& p) {
  return DeviceTileWalker(p.layout, p.masked_m, static_cast<int>(blockIdx.x), static_cast<int>(gridDim.x));
}

// The work of this CTA, one step per tile (kCluster == 1) or per unit of a two-CTA cluster
// (tile_schedule.h): the producer thread walks it and hands each tile to the other roles through
// the tile ring (tile_ring.cuh).
template <int kCluster>
struct DeviceWorkWalker;

template <>
struct DeviceWorkWalker<1> {
  DeviceTileWalker tiles;
  __device__ explicit DeviceWorkWalker(const KernelParams& p) : tiles(make_tile_walker(p)) {}
  __device__ bool next(detail::ClusterWork& work) {
    work.has_tile = true;
    work.share = detail::ClusterShare::none;
    return tiles.next(work.tile);
  }
};

template <>
struct DeviceWorkWalker<2> {
  detail::PairedTileWalker<const int32_t*> units;
  __device__ explicit DeviceWorkWalker(const KernelParams& p)
      : units(p.layout, p.masked_m, static_cast<int>(cuda::ptx::get_sreg_clusterid_x()),
              static_cast<int>(cuda::ptx::get_sreg_nclusterid_x()),
              static_cast<int>(cuda::ptx::get_sreg_cluster_ctarank())) {}
  __device__ bool next(detail::ClusterWork& work) { return units.next(work); }
};

// One warp of CTA 0 scans masked_m; the flag is only ever OR-ed, so no ordering is needed.
__device__ __forceinline__ void report_masked_m_out_of_range(const KernelParams& p, int lane) {
  if (p.error_flag == nullptr || blockIdx.x != 0) return;
  for (int e = lane; e < p.layout.num_experts; e += 32) {
    const int m = p.masked_m[e];
    if (m < 0 || m > p.layout.max_m) atomicOr(p.error_flag, kErrorMaskedMOutOfRange);
  }
}

}  // namespace signalgemm::kernels
