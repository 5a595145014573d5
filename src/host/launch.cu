// Host launcher: device query, configuration, TMA descriptors, kernel dispatch.
// No allocation and no host-device synchronization, so a launch can be captured in a CUDA graph.
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "host/config.h"
#include "host/devices.h"
#include "host/kernel_entry.h"
#include "kernels/convert_activations.cuh"
#include "kernels/dequant_bf16_plan.h"
#include "signalgemm/detail/mma_fragments.h"
#include "signalgemm/gemm.h"

namespace signalgemm {
namespace {

using host::cuda_failure;
using host::KernelEntry;
using host::TensorMaps;

struct DeviceInfo {
  int sm_count = 0;
  int smem_per_block = 0;  // opt-in maximum of dynamic shared memory per block
  int major = 0, minor = 0;
};

Status query_device(DeviceInfo& info) {
  int device = 0;
  if (cudaError_t err = cudaGetDevice(&device); err != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error for later calls
    return Status{StatusCode::no_device, std::string("signalgemm: no CUDA device: ") + cudaGetErrorString(err)};
  }
  for (const auto& [value, attribute] : {std::pair{&info.sm_count, cudaDevAttrMultiProcessorCount},
                                         std::pair{&info.smem_per_block, cudaDevAttrMaxSharedMemoryPerBlockOptin},
                                         std::pair{&info.major, cudaDevAttrComputeCapabilityMajor},
                                         std::pair{&info.minor, cudaDevAttrComputeCapabilityMinor}})
    if (cudaError_t err = cudaDeviceGetAttribute(value, attribute, device); err != cudaSuccess)
      return cuda_failure("cudaDeviceGetAttribute", err);
  if (info.major != 9 || info.minor != 0) {
    return Status{StatusCode::no_device, "signalgemm: needs a Hopper GPU (sm_90); device " + std::to_string(device) +
                                             " is sm_" + std::to_string(info.major) + std::to_string(info.minor)};
  }
  return {};
}

Status check_device_pointers(const GroupedGemmArgs& args) {
  return host::check_device_pointers(args.stream, {{args.a.data, "a.data"},
                                                   {args.a.scales, "a.scales"},
                                                   {args.b.data, "b.data"},
                                                   {args.b.scales, "b.scales"},
                                                   {args.out, "out"},
                                                   {args.out_rows, "out_rows"},
                                                   {args.masked_m, "masked_m"},
                                                   {args.alpha, "alpha"},
                                                   {args.signals, "signals"},
                                                   {args.error_flag, "error_flag"},
                                                   {args.workspace, "workspace"}});
}

// The SMs a launch may use.
int usable_sms(const GroupedGemmArgs& args, const DeviceInfo& info) {
  return args.sm_count > 0 ? std::min(args.sm_count, info.sm_count) : info.sm_count;
}

// The driver's tensor-map encoder, fetched through the runtime so the library needs no libcuda
// at link time (tests and tools then start on machines without a driver).
PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult result{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &result) !=
            cudaSuccess ||
        result != cudaDriverEntryPointSuccess)
      fn = nullptr;
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  return encode;
}

// A 3D K-major byte tensor [experts][rows][k] loaded as (box_k bytes, box_rows, 1) boxes. 128-byte
// boxes get the 128-byte swizzle that the wgmma descriptors expect (narrower ones: below). Rows past
// `rows` read as zero.
Status encode_operand_map(CUtensorMap& map, const void* base, int experts, int rows, int k_bytes, int64_t row_stride,
                          int64_t expert_stride, int box_k, int box_rows, const char* name) {
  const cuuint64_t dims[3] = {cuuint64_t(k_bytes), cuuint64_t(rows), cuuint64_t(experts)};
  const cuuint64_t strides[2] = {cuuint64_t(row_stride), cuuint64_t(expert_stride)};
  const cuuint32_t box[3] = {cuuint32_t(box_k), cuuint32_t(box_rows), 1};
  const cuuint32_t element_strides[3] = {1, 1, 1};
  // 64- and 32-byte boxes (packed FP4 weights of 128- and 64-K stages) get the matching narrower
  // swizzle, which the register-weights mainloop undoes on its shared-memory addresses.
  const CUtensorMapSwizzle swizzle = box_k == kernels::kBlockK ? CU_TENSOR_MAP_SWIZZLE_128B
                                     : box_k == 64             ? CU_TENSOR_MAP_SWIZZLE_64B
                                     : box_k == 32             ? CU_TENSOR_MAP_SWIZZLE_32B
                                                               : CU_TENSOR_MAP_SWIZZLE_NONE;
  const CUresult r = tensor_map_encoder()(&map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 3, const_cast<void*>(base), dims,
                                          strides, box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle,
                                          CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    return Status{StatusCode::cuda_error, std::string("signalgemm: cannot build the TMA descriptor of ") + name +
                                              " (CUresult " + std::to_string(int(r)) + ")"};
  return {};
}

// C as bf16 or fp16 [experts][max_m][n], stored from the staged tiles in boxes of 64 columns x 8
// rows with the 128-byte swizzle (kernels/epilogue_signal.cuh, StagingLayout). False where the
// encoder refuses it (the launch then stores rows, as for a row list).
bool encode_output_map(CUtensorMap& map, void* base, OutputType type, int experts, int max_m, int n,
                       int64_t row_stride, int64_t expert_stride) {
  if (n < 64 || max_m < 8) return false;  // boxes no larger than the tensor
  const cuuint64_t dims[3] = {cuuint64_t(n), cuuint64_t(max_m), cuuint64_t(experts)};
  const cuuint64_t strides[2] = {cuuint64_t(row_stride), cuuint64_t(expert_stride)};
  const cuuint32_t box[3] = {64, 8, 1};
  const cuuint32_t element_strides[3] = {1, 1, 1};
  const CUtensorMapDataType element =
      type == OutputType::fp16 ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
  return tensor_map_encoder()(&map, element, 3, base, dims, strides, box, element_strides,
                              CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                              CU_TENSOR_MAP_L2_PROMOTION_NONE, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// FP4 weights in the mma_fragments layout (detail/mma_fragments.h) as a 4D byte tensor
// [experts][64-row slices][10 * (64-K blocks) rows][256 bytes] (256 bytes: the widest box row, so the
// fewest requests), loaded per stage as the `subs` 64-K blocks of the tile's `block_n / 64` slices
// (2.5 KB each with their scales, in that order; no swizzle).
Status encode_fragment_map(CUtensorMap& map, const void* base, int experts, int n, int k, int subs, int block_n) {
  constexpr int kRowBytes = 256, kRowsPerBlock = detail::kFragmentBlockStride / kRowBytes;
  static_assert(detail::kFragmentBlockStride % kRowBytes == 0, "a block is whole box rows");
  const int slices = (n + detail::kFragmentBlockRows - 1) / detail::kFragmentBlockRows;
  const int k_blocks = (k + detail::kFragmentBlockK - 1) / detail::kFragmentBlockK;
  const cuuint64_t dims[4] = {kRowBytes, cuuint64_t(k_blocks) * kRowsPerBlock, cuuint64_t(slices),
                              cuuint64_t(experts)};
  const cuuint64_t strides[3] = {kRowBytes, cuuint64_t(k_blocks) * detail::kFragmentBlockStride,
                                 cuuint64_t(detail::mma_fragment_bytes_per_expert(n, k))};
  const cuuint32_t box[4] = {kRowBytes, cuuint32_t(subs * kRowsPerBlock),
                             cuuint32_t(block_n / detail::kFragmentBlockRows), 1};
  const cuuint32_t element_strides[4] = {1, 1, 1, 1};
  const CUresult r = tensor_map_encoder()(&map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 4, const_cast<void*>(base), dims,
                                          strides, box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                                          CU_TENSOR_MAP_SWIZZLE_NONE, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                          CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    return Status{StatusCode::cuda_error, "signalgemm: cannot build the TMA descriptor of b (mma_fragments; CUresult " +
                                              std::to_string(int(r)) + ")"};
  return {};
}

// A 2D fp32 scale tensor of `rows` rows of `cols` floats, `pitch_bytes` apart, loaded unswizzled as
// boxes of `box_cols` floats of one row.
Status encode_scale_map(CUtensorMap& map, const void* base, int64_t cols, int64_t rows, int64_t pitch_bytes,
                        int box_cols, const char* name) {
  const cuuint64_t dims[2] = {cuuint64_t(cols), cuuint64_t(rows)};
  const cuuint64_t strides[1] = {cuuint64_t(pitch_bytes)};
  const cuuint32_t box[2] = {cuuint32_t(box_cols), 1};
  const cuuint32_t element_strides[2] = {1, 1};
  const CUresult r = tensor_map_encoder()(&map, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 2, const_cast<void*>(base), dims,
                                          strides, box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                                          CU_TENSOR_MAP_SWIZZLE_NONE, CU_TENSOR_MAP_L2_PROMOTION_NONE,
                                          CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    return Status{StatusCode::cuda_error, std::string("signalgemm: cannot build the TMA descriptor of ") + name +
                                              " (CUresult " + std::to_string(int(r)) + ")"};
  return {};
}

// Token scales of fp8_block128 activations: float [experts * K/128][round_up(max_m, 4)], loaded as
// rows of block_m consecutive tokens.
Status encode_token_scale_map(CUtensorMap& map, const void* base, int rows, int scale_rows, int box_rows) {
  const int64_t pitch = (rows + 3) / 4 * 4;
  return encode_scale_map(map, base, rows, scale_rows, pitch * 4, box_rows, "a.scales");
}

// Weight scales of fp8_block128 weights, float [experts][ceil(N/128)][K/128], as one flat row (the
// encoder refuses rank 1): a stage loads the 16-byte aligned box of 4 floats that holds each scale it
// needs (a box's first element must lie on 16 bytes, H100 2026-11-27: an illegal instruction
// otherwise; floats past the end read as zero).
Status encode_weight_scale_map(CUtensorMap& map, const void* base, int64_t count) {
  return encode_scale_map(map, base, count, 1, (count * 4 + 15) / 16 * 16, kernels::kWeightScaleBox, "b.scales");
}


// The activation conversion kernel (kernels/convert_activations.cuh) of format `a`.
using ConversionKernel = void (*)(const uint8_t*, int64_t, int64_t, const uint8_t*, const int32_t*, int, int, int,
                                  __nv_bfloat16*, bool);
ConversionKernel conversion_kernel(Format a) {
  return a == Format::nvfp4   ? kernels::convert_activations_kernel<Format::nvfp4>
         : a == Format::mxfp4 ? kernels::convert_activations_kernel<Format::mxfp4>
         : a == Format::mxfp8 ? kernels::convert_activations_kernel<Format::mxfp8>
                              : kernels::convert_activations_kernel<Format::fp8_block128>;
}

// Converts the activations into the workspace on args.stream.
Status convert_activations(const GroupedGemmArgs& args, const DeviceInfo& info) {
  const int64_t groups = int64_t(args.num_experts) * args.max_m * (args.k / 16);
  // Up to 8 blocks per SM; with sm_count given, one block per SM it allows (a block may land on any
  // SM, so only the block count bounds how many SMs the conversion occupies).
  const int64_t max_blocks = args.sm_count > 0 ? usable_sms(args, info) : int64_t(info.sm_count) * 8;
  const int grid = static_cast<int>(std::clamp<int64_t>((groups + 255) / 256, 1, max_blocks));
  const int element_bytes = element_bits(args.a.format) * args.k / 8;
  const int64_t row_stride = args.a.row_stride != 0 ? args.a.row_stride : element_bytes;
  const int64_t expert_stride = args.a.expert_stride != 0 ? args.a.expert_stride : row_stride * args.max_m;
  cudaLaunchAttribute pdl{};
  pdl.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  pdl.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t launch{};
  launch.gridDim = dim3(grid);
  launch.blockDim = dim3(256);
  launch.stream = args.stream;
  launch.attrs = &pdl;
  launch.numAttrs = args.enable_pdl ? 1 : 0;
  const cudaError_t err = cudaLaunchKernelEx(
      &launch, conversion_kernel(args.a.format), static_cast<const uint8_t*>(args.a.data), row_stride, expert_stride,
      static_cast<const uint8_t*>(args.a.scales), args.masked_m, args.num_experts, args.max_m, args.k,
      static_cast<__nv_bfloat16*>(args.workspace), args.enable_pdl);
  return err == cudaSuccess ? Status{} : cuda_failure("activation conversion launch", err);
}

// The kernel a launch with these (possibly converted) arguments and this configuration runs: one
// instantiation per (mainloop, compiled tile); empty where the tile is not compiled.
KernelEntry select_kernel(const GroupedGemmArgs& args, const TileConfig& cfg, bool tokens_in_workspace,
                          bool split_k) {
  const bool converted_tokens_rs =
      host::register_weights_with_converted_tokens(args.a.format, args.b.format, cfg.block_m, cfg.block_n);
  const bool fragment_weights = args.b.layout == OperandLayout::mma_fragments;
  if (split_k && (converted_tokens_rs || kernels::is_bf16_register_weights_pair(args.a.format, args.b.format)))
    return host::register_weights_split_kernel(args.a.format, args.b.format, fragment_weights, cfg);
  // Fragment-ordered weights only reach the kernels that read them; any other combination has none
  // (validate() admits none), so it is never read as rows.
  if (fragment_weights)
    return host::register_weights_fragment_kernel(args.a.format, args.b.format, cfg, tokens_in_workspace);
  if (converted_tokens_rs) return host::converted_tokens_kernel(args.a.format, args.b.format, cfg, tokens_in_workspace);
  if (kernels::is_dequant_bf16_pair(args.a.format, args.b.format))
    return host::dequant_bf16_kernel(args.a.format, args.b.format, cfg);
  if (args.a.format == Format::fp8_block128) return host::fp8_block128_kernel(cfg, split_k);
  if (kernels::is_bf16_register_weights_pair(args.a.format, args.b.format))
    return host::register_weights_kernel(args.b.format, cfg);
  return host::bf16_kernel(cfg, split_k);
}

std::string tile_name(const TileConfig& cfg) { return std::to_string(cfg.block_m) + "x" + std::to_string(cfg.block_n); }

Status not_compiled(const TileConfig& cfg) {
  return Status{StatusCode::unsupported, "signalgemm: the " + tile_name(cfg) + " tile is not compiled for this launch"};
}

// Persistent grid: never more CTAs than tiles could exist (masked_m is not read on the host).
int persistent_grid(const GroupedGemmArgs& args, const TileConfig& cfg, const DeviceInfo& info) {
  const SignalLayout layout{args.num_experts, args.max_m, args.n, cfg.block_m, cfg.block_n, args.granularity,
                            args.out_type};
  const int64_t max_tiles = int64_t(args.num_experts) * layout.row_blocks_per_expert() * layout.col_blocks();
  return static_cast<int>(std::min<int64_t>(usable_sms(args, info), max_tiles));
}

// The split of K the GEMM launch with these (possibly converted) arguments runs (host::plan_split_k),
// if its workspace holds the partials: from its start, or past the fp8_block128 tokens converted
// there (offsets in the result are from the workspace's start).
host::SplitK launch_split_k(const GroupedGemmArgs& args, const TileConfig& cfg, const DeviceInfo& info,
                            bool tokens_in_workspace) {
  host::SplitK split = host::plan_split_k(args, cfg, usable_sms(args, info), tokens_in_workspace);
  const size_t base = tokens_in_workspace ? host::converted_launch_workspace_offset(args) : 0;
  if (split.pieces < 2 || args.workspace == nullptr || args.workspace_bytes < base + split.bytes) return {};
  split.counters_offset += base;
  split.partials_offset += base;
  split.bytes += base;
  return split;
}

// A cluster needs two CTAs: with a grid of one (sm_count = 1) the pair's tiles run on one CTA
// (same tiles, same signals). With SMs kept for a consumer (sm_count below the device's) the
// heuristic's pairs run as single CTAs too: beside a consumer's blocks fewer pairs than sm_count / 2
// may fit (launch_kernel), and the lone CTAs use every SM given. A cluster asked for is kept.
TileConfig config_for_grid(const GroupedGemmArgs& args, TileConfig cfg, int grid, const DeviceInfo& info) {
  const bool consumer_beside = usable_sms(args, info) < info.sm_count;
  if (cfg.cluster > 1 && (grid < 2 || (consumer_beside && args.config.cluster == 0))) cfg.cluster = 1;
  return cfg;
}

// The heuristic's tile configuration of a launch with `args` on a device with this much shared
// memory, and whether it converts its activations into the workspace first
// (host::uses_activation_workspace). One-format pairings then run as bf16 activations (their own
// tiles); fp8_block128 tokens keep the tiles of their pairing, with the smaller stages of bf16 tokens
// read from the workspace.
TileConfig heuristic_config(const GroupedGemmArgs& args, int smem, bool& converts) {
  const bool fragments = args.b.layout == OperandLayout::mma_fragments;
  TileConfig cfg = host::choose_tile_config(args.max_m, args.expected_m, smem, args.config, args.a.format,
                                            args.b.format, args.k, /*tokens_in_workspace=*/false,
                                            host::takes_tiles_dynamically(args), fragments);
  // Launches with few tiles of the heuristic's pick take a tile that spreads over more SMs (config.h).
  const auto with_tile = [&](int block_m, int block_n) {
    TileConfig fixed = args.config;
    fixed.block_m = block_m;
    fixed.block_n = block_n;
    return host::choose_tile_config(args.max_m, args.expected_m, smem, fixed, args.a.format, args.b.format, args.k,
                                    /*tokens_in_workspace=*/false, host::takes_tiles_dynamically(args), fragments);
  };
  // A rule's tile replaces the pick only where the stages the caller gave (if any) fit it: stages
  // that fit the pick are not refused for a tile the caller never named.
  const auto take_if_stages_fit = [&](const TileConfig& other) {
    const bool fits = args.config.stages == 0 || host::smem_bytes(other.block_m, other.block_n, args.config.stages,
                                                                  args.a.format, args.b.format,
                                                                  /*tokens_in_workspace=*/false, fragments) <= smem;
    if (fits) cfg = other;
  };
  if (host::narrows_few_wide_tiles(args, cfg)) {
    take_if_stages_fit(with_tile(128, 128));
  } else {
    // 128 tokens given whole (alone they complete to fp8's 128x192); 64 completed by the heuristic.
    if (const int block_m = host::block_m_for_few_tiles(args, cfg); block_m != 0)
      take_if_stages_fit(with_tile(block_m, block_m == 128 ? 128 : 0));
    if (host::widens_fp8_token_block(args, cfg)) take_if_stages_fit(with_tile(128, 192));
    // (Converted tokens have no narrower tile than 128x128.)
    if (host::narrows_decode_tile(args, cfg))
      take_if_stages_fit(kernels::is_bf16_register_weights_pair(args.a.format, args.b.format)
                             ? with_tile(cfg.block_m == 32 ? 32 : 64, 128)
                             : with_tile(128, 128));
  }
  converts = host::uses_activation_workspace(args, cfg);
  if (!converts) return cfg;
  if (args.a.format != Format::fp8_block128) {
    // Exactly the tile a launch with bf16 activations takes (its few-wide-tiles rule included), so
    // that signal_layout agrees with one computed for bf16 activations (as the Python module does).
    bool bf16_converts = false;
    return heuristic_config(host::with_converted_activations(args), smem, bf16_converts);
  }
  // The tile chosen above (the caller's sides, or the narrowed decode tile), stages for the workspace's tokens.
  TileConfig fixed = args.config;
  fixed.block_m = cfg.block_m;
  fixed.block_n = cfg.block_n;
  return host::choose_tile_config(args.max_m, args.expected_m, smem, fixed, args.a.format, args.b.format, args.k,
                                  /*tokens_in_workspace=*/true, /*dynamic_tiles=*/false, fragments);
}

std::string pairing_name(const GroupedGemmArgs& args) {
  return std::string("a.format ") + to_string(args.a.format) + " and b.format " + to_string(args.b.format) +
         (args.b.layout == OperandLayout::mma_fragments ? " (b.layout mma_fragments)" : "");
}

// The fields of args.config that chose `cfg`'s tile, as the caller named them.
std::string tile_fields(const GroupedGemmArgs& args, const TileConfig& cfg) {
  const std::string m = "config.block_m = " + std::to_string(cfg.block_m);
  const std::string n = "config.block_n = " + std::to_string(cfg.block_n);
  if (args.config.block_m != 0 && args.config.block_n != 0) return m + " with " + n;
  if (args.config.block_m != 0) return m + " (the heuristic's block_n = " + std::to_string(cfg.block_n) + ")";
  if (args.config.block_n != 0) return n + " (the heuristic's block_m = " + std::to_string(cfg.block_m) + ")";
  return "the heuristic's tile " + tile_name(cfg);
}

// Why `cfg` (a heuristic_config answer, `converts` as it said) cannot run for `args` on a device with
// `smem` bytes of shared memory per block: no kernel is compiled for the tile, or its stages do not
// fit; empty where it runs.
Status tile_status(const GroupedGemmArgs& args, const TileConfig& cfg, bool converts, int smem) {
  const bool tokens_in_workspace = converts && args.a.format == Format::fp8_block128;
  const GroupedGemmArgs launched = converts && !tokens_in_workspace ? host::with_converted_activations(args) : args;
  if (select_kernel(launched, cfg, tokens_in_workspace, /*split_k=*/false).launch == nullptr)
    return Status{StatusCode::unsupported, "signalgemm: " + tile_fields(args, cfg) + ": no compiled tile for " +
                                               pairing_name(args) +
                                               (converts ? ", activations converted in the workspace" : "")};
  const bool fragments = args.b.layout == OperandLayout::mma_fragments;
  if (cfg.stages < host::kMinStages || host::smem_bytes(cfg.block_m, cfg.block_n, cfg.stages, launched.a.format,
                                                        launched.b.format, tokens_in_workspace, fragments) > smem) {
    const int fit = host::max_stages(cfg.block_m, cfg.block_n, smem, launched.a.format, launched.b.format,
                                     tokens_in_workspace, fragments);
    return Status{StatusCode::invalid_argument,
                  "signalgemm: " +
                      (args.config.stages != 0 && fit > 0
                           ? "config.stages = " + std::to_string(args.config.stages) + " does not fit in shared "
                                 "memory with the " + tile_name(cfg) + " tile of " + pairing_name(args) +
                                 " (at most " + std::to_string(fit) + ")"
                           : tile_fields(args, cfg) + ": not even " + std::to_string(host::kMinStages) +
                                 " stages fit in shared memory for " + pairing_name(args))};
  }
  return {};
}

// The launch's tile configuration: the heuristic's (heuristic_config), also where the caller fixed
// one side of the tile only (config.block_m or config.block_n): the heuristic then completes it, and
// where its other side would name a tile the pairing does not compile (e.g. block_n = 256 with the
// 64 tokens of a decode launch of fp8_block128), the compiled tile with the caller's side whose other
// side is nearest the heuristic's (larger first) runs instead.
TileConfig launch_config(const GroupedGemmArgs& args, int smem, bool& converts) {
  const TileConfig cfg = heuristic_config(args, smem, converts);
  const bool only_m = args.config.block_m != 0 && args.config.block_n == 0;
  const bool only_n = args.config.block_m == 0 && args.config.block_n != 0;
  if (!(only_m || only_n) || tile_status(args, cfg, converts, smem).ok()) return cfg;
  std::vector<host::TileShape> candidates;
  const auto add_matching = [&](const auto& tiles) {
    for (const host::TileShape& tile : tiles)
      if (only_m ? tile.block_m == args.config.block_m : tile.block_n == args.config.block_n)
        candidates.push_back(tile);
  };
  add_matching(host::kSupportedTiles);
  add_matching(host::kDecodeTiles);
  add_matching(host::kTokenRowsTiles);
  const auto other = [&](const host::TileShape& t) { return only_m ? t.block_n : t.block_m; };
  const int wanted = only_m ? cfg.block_n : cfg.block_m;
  std::stable_sort(candidates.begin(), candidates.end(), [&](const host::TileShape& x, const host::TileShape& y) {
    const int dx = std::abs(other(x) - wanted), dy = std::abs(other(y) - wanted);
    return dx != dy ? dx < dy : other(x) > other(y);
  });
  for (const host::TileShape& tile : candidates) {
    GroupedGemmArgs fixed = args;
    fixed.config.block_m = tile.block_m;
    fixed.config.block_n = tile.block_n;
    bool fixed_converts = false;
    const TileConfig candidate = heuristic_config(fixed, smem, fixed_converts);
    if (tile_status(fixed, candidate, fixed_converts, smem).ok()) {
      converts = fixed_converts;
      return candidate;
    }
  }
  return cfg;  // none: validate() reports it (host::check_launch_tile)
}

// What a launch with `args` runs after any activation conversion (its arguments, tile, grid, split
// and kernel), or why it cannot run (plan_launch). Decided, the kernel loaded and its tensor maps
// encoded before anything is enqueued, so that a launch rejected for its arguments, its tile or a
// module that does not load leaves the caller's workspace and stream (or graph being captured)
// untouched; only a CUDA failure after the conversion is enqueued (the counters' zeroing, the
// cluster occupancy query, the launch itself) can leave it without its GEMM.
struct LaunchPlan {
  GroupedGemmArgs args;  // as launched: the one-format pairings read bf16 activations from the workspace
  TileConfig cfg;          // the tile launch_config chose
  TileConfig launch_cfg;   // that tile for the grid (config_for_grid)
  int grid = 0;            // persistent CTAs (before a split of K widens it)
  host::SplitK split;
  bool converts = false;             // the activations are converted into the workspace first
  bool tokens_in_workspace = false;  // fp8_block128 tokens read as bf16 from there (scales still in a.scales)
  KernelEntry kernel;
};

// Enqueues the plan's activation conversion and GEMM kernel (defined below).
Status launch_gemm(const GroupedGemmArgs& caller_args, const LaunchPlan& plan, const DeviceInfo& info);

// Shared memory per block on the current device (an H100's without one), for planning.
int planning_smem() {
  DeviceInfo info;
  return query_device(info).ok() ? info.smem_per_block : kernels::kH100SmemPerBlock;
}

// The SMs a launch with `args` may use on the current device (an H100's without one), for planning.
int planning_sms(const GroupedGemmArgs& args) {
  DeviceInfo info;
  if (!query_device(info).ok()) info.sm_count = int(host::kRoundSms);
  return usable_sms(args, info);
}

}  // namespace

size_t activation_workspace_bytes(const GroupedGemmArgs& args) { return host::converted_activation_bytes(args); }

size_t workspace_bytes(const GroupedGemmArgs& args) {
  if (host::converts_activations(args.a.format, args.b.format)) {
    // The converted activations, then the partials of split K where the launch after the
    // conversion splits: the bf16 launch of a one-format pairing, or fp8_block128 tokens read as
    // bf16 from the workspace.
    size_t split = 0;
    if (args.a.format == args.b.format)
      split = workspace_bytes(host::with_converted_activations(args));
    else if (args.a.format == Format::fp8_block128) {
      // Sized for the launch that has the workspace, whose tile may differ from one without.
      const GroupedGemmArgs given = host::with_planned_workspace(args);
      split = host::plan_split_k(given, select_config(given), planning_sms(args), /*tokens_in_workspace=*/true).bytes;
    }
    return split > 0 ? host::converted_launch_workspace_offset(args) + split : host::converted_activation_bytes(args);
  }
  if (!host::uses_tile_counter(args.a.format, args.b.format) && !host::splits_k(args.a.format, args.b.format))
    return 0;
  // With few tiles, the partials of split K (host::plan_split_k) for this device's SMs.
  const host::SplitK split = host::plan_split_k(args, select_config(args), planning_sms(args));
  return host::uses_tile_counter(args.a.format, args.b.format) ? std::max(host::kTileCounterBytes, split.bytes)
                                                                : split.bytes;
}

SignalLayout signal_layout(const GroupedGemmArgs& args) {
  const TileConfig cfg = select_config(args);
  return SignalLayout{args.num_experts, args.max_m, args.n, cfg.block_m, cfg.block_n, args.granularity,
                      args.out_type};
}

TileConfig select_config(const GroupedGemmArgs& args) {
  bool converts = false;
  return launch_config(args, planning_smem(), converts);
}

Status host::check_launch_tile(const GroupedGemmArgs& args) {
  const int smem = planning_smem();
  bool converts = false;
  const TileConfig cfg = launch_config(args, smem, converts);
  return tile_status(args, cfg, converts, smem);
}

namespace {

Status plan_launch(const GroupedGemmArgs& args, const DeviceInfo& info, LaunchPlan& plan) {
  plan.cfg = launch_config(args, info.smem_per_block, plan.converts);
  plan.tokens_in_workspace = plan.converts && args.a.format == Format::fp8_block128;
  plan.args = plan.converts && !plan.tokens_in_workspace ? host::with_converted_activations(args) : args;
  // After a conversion the GEMM may start its set-up while the conversion ends; it reads the
  // workspace only after its griddepcontrol.wait, which waits for the conversion grid to complete.
  plan.args.enable_pdl = args.enable_pdl || plan.converts;
  const TileConfig& cfg = plan.cfg;
  if (Status s = tile_status(args, cfg, plan.converts, info.smem_per_block); !s.ok()) return s;
  plan.grid = persistent_grid(plan.args, cfg, info);
  plan.launch_cfg = config_for_grid(args, cfg, plan.grid, info);
  plan.split = launch_split_k(plan.args, plan.launch_cfg, info, plan.tokens_in_workspace);
  plan.kernel = select_kernel(plan.args, plan.launch_cfg, plan.tokens_in_workspace, plan.split.pieces > 1);
  return plan.kernel.launch == nullptr ? not_compiled(cfg) : Status{};
}

}  // namespace

Status grouped_gemm_nt_masked(const GroupedGemmArgs& args) {
  if (Status s = validate(args); !s.ok()) return s;
  DeviceInfo info;
  if (Status s = query_device(info); !s.ok()) return s;
  if (Status s = check_device_pointers(args); !s.ok()) return s;
  if (tensor_map_encoder() == nullptr)
    return Status{StatusCode::cuda_error, "signalgemm: the driver has no cuTensorMapEncodeTiled"};
  LaunchPlan plan;
  if (Status s = plan_launch(args, info, plan); !s.ok()) return s;
  if (Status s = plan.kernel.load(info.smem_per_block); !s.ok()) return s;
  return launch_gemm(args, plan, info);
}

Status load_kernels(const GroupedGemmArgs& args) {
  if (Status s = validate(args); !s.ok()) return s;
  DeviceInfo info;
  if (Status s = query_device(info); !s.ok()) return s;
  LaunchPlan plan;
  if (Status s = plan_launch(args, info, plan); !s.ok()) return s;
  if (plan.converts) {
    cudaFuncAttributes attributes;
    if (cudaError_t err = cudaFuncGetAttributes(&attributes, conversion_kernel(args.a.format)); err != cudaSuccess)
      return cuda_failure("cudaFuncGetAttributes", err);
  }
  return plan.kernel.load(info.smem_per_block);
}

namespace {

// Encodes the plan's tensor maps, then enqueues the activation conversion (plan.converts), the
// workspace counters' zeroing and the GEMM kernel. `caller_args`: the launch as given (the
// conversion reads its activations).
Status launch_gemm(const GroupedGemmArgs& caller_args, const LaunchPlan& plan, const DeviceInfo& info) {
  const GroupedGemmArgs& args = plan.args;
  const TileConfig& cfg = plan.cfg;
  const bool tokens_in_workspace = plan.tokens_in_workspace;
  // Operands are loaded as byte tensors. A stage holds kBlockK bytes of K of the activations
  // (128 e4m3 or 64 bf16) and the same K range of the weights (packed FP4: a quarter of the bytes).
  const bool fp8 = args.a.format == Format::fp8_block128;
  // fp8_block128 tokens in the workspace: packed bf16 rows.
  const int a_k_bytes = args.k * (tokens_in_workspace ? 16 : element_bits(args.a.format)) / 8;
  const int b_k_bytes = args.k * element_bits(args.b.format) / 8;
  // Register weights: a stage holds 1, 2 or 4 64-K blocks (kernel_params.h), 32 (FP4) or 64 (mxfp8) bytes per row each;
  // tokens are loaded in boxes of 32 rows (16 for 48 tokens), only as many as a tile has real tokens.
  // Converted tokens (fp8_block128, nvfp4, mxfp4, mxfp8) on its tiles: one box of their bytes per token box and stage.
  const bool converted_tokens_rs =
      host::register_weights_with_converted_tokens(args.a.format, args.b.format, cfg.block_m, cfg.block_n);
  const bool bf16_register_weights = kernels::is_bf16_register_weights_pair(args.a.format, args.b.format);
  const bool rs_register_weights = bf16_register_weights || converted_tokens_rs;
  const int rs_subs = kernels::register_weights_stage_subs(
      cfg.block_m, cfg.block_n, converted_tokens_rs ? args.a.format : Format::bf16, args.b.format,
      tokens_in_workspace, args.b.layout == OperandLayout::mma_fragments);
  const int b_box_k = rs_register_weights ? kernels::bytes_per_64k(args.b.format) * rs_subs : kernels::kBlockK;
  const int a_box_rows = rs_register_weights ? kernels::register_weights_token_box_rows(cfg.block_m) : cfg.block_m;
  // Dequantizing mainloop: 64-K stages, each operand's packed rows (kernels/dequant_bf16_plan.h).
  const bool dequant_pair = kernels::is_dequant_bf16_pair(args.a.format, args.b.format) && !converted_tokens_rs;
  const int a_box_k = dequant_pair          ? kernels::dequant_stage_row_bytes(args.a.format)
                      : converted_tokens_rs && !tokens_in_workspace
                          ? rs_subs * kernels::bytes_per_64k(args.a.format)
                          : kernels::kBlockK;
  const int64_t a_row = args.a.row_stride != 0 && !tokens_in_workspace ? args.a.row_stride : a_k_bytes;
  const int64_t a_expert =
      args.a.expert_stride != 0 && !tokens_in_workspace ? args.a.expert_stride : a_row * args.max_m;
  const int64_t b_row = args.b.row_stride != 0 ? args.b.row_stride : b_k_bytes;
  const int64_t b_expert = args.b.expert_stride != 0 ? args.b.expert_stride : b_row * args.n;
  // 64-K blocks for the dequantizing and register-weights mainloops (bf16 tokens: 128 bytes are 64 K too),
  // 128-byte K blocks of tokens otherwise.
  const int num_k_blocks = dequant_pair || converted_tokens_rs ? args.k / kernels::kDequantStageK
                                                               : (a_k_bytes + kernels::kBlockK - 1) / kernels::kBlockK;

  TensorMaps maps;
  if (Status s = encode_operand_map(maps.a, tokens_in_workspace ? args.workspace : args.a.data, args.num_experts,
                                    args.max_m, a_k_bytes, a_row, a_expert, a_box_k, a_box_rows, "a");
      !s.ok())
    return s;
  const bool fragment_weights = args.b.layout == OperandLayout::mma_fragments;
  if (Status s = fragment_weights ? encode_fragment_map(maps.b, args.b.data, args.num_experts, args.n, args.k, rs_subs,
                                                        cfg.block_n)
                                  : encode_operand_map(maps.b, args.b.data, args.num_experts, args.n, b_k_bytes, b_row,
                                                       b_expert,
                                                       dequant_pair ? kernels::dequant_stage_row_bytes(args.b.format)
                                                                    : b_box_k,
                                                       cfg.block_n, "b");
      !s.ok())
    return s;
  // Scale maps only where the mainloop loads those scales with TMA: fp8_block128 tokens' (all
  // pairings) and fp8_block128 weights' (fp8_block128 x fp8_block128). The others copy `a`, unused.
  maps.sfa = maps.sfb = maps.a;
  const int scale_k_blocks = args.k / scale_block_k(Format::fp8_block128);
  if (fp8) {
    if (Status s = encode_token_scale_map(maps.sfa, args.a.scales, args.max_m, args.num_experts * scale_k_blocks,
                                          cfg.block_m);
        !s.ok())
      return s;
    if (args.b.format == Format::fp8_block128)
      if (Status s = encode_weight_scale_map(maps.sfb, args.b.scales, host::fp8_weight_scale_count(args));
          !s.ok())
        return s;
  }

  kernels::KernelParams params{};
  params.layout = SignalLayout{args.num_experts, args.max_m, args.n, cfg.block_m, cfg.block_n, args.granularity,
                               args.out_type};
  params.num_k_blocks = num_k_blocks;
  params.stages = cfg.stages;
  params.b_scales = args.b.scales;
  // One-byte block scales are row-major [E][rows][K / block] (fp8_block128's floats: not used).
  const int a_block = scale_block_k(args.a.format), b_block = scale_block_k(args.b.format);
  params.b_scale_cols = b_block > 0 ? args.k / b_block : 0;
  params.out = args.out;
  params.out_fp16 = args.out_type == OutputType::fp16;
  params.out_rows = args.out_rows;
  params.out_row_stride =
      args.out_row_stride != 0 ? args.out_row_stride : int64_t(args.n) * output_bytes(args.out_type);
  params.out_expert_stride =
      args.out_expert_stride != 0 ? args.out_expert_stride : params.out_row_stride * args.max_m;
  maps.c = maps.a;
  params.out_boxes = args.out_rows == nullptr &&
                     encode_output_map(maps.c, args.out, args.out_type, args.num_experts, args.max_m, args.n,
                                       params.out_row_stride, params.out_expert_stride);
  params.masked_m = args.masked_m;
  params.alpha = args.alpha;
  params.signals = args.signals;
  params.signal_sys_scope = args.scope == SignalScope::sys;
  params.error_flag = args.error_flag;
  if (dequant_pair || converted_tokens_rs) {  // one-byte token scales (unused for bf16 and fp8_block128 sides)
    params.a_scales = args.a.scales;
    params.a_scale_cols = a_block > 0 ? args.k / a_block : 0;
  }

  int grid = plan.grid;
  const TileConfig& launch_cfg = plan.launch_cfg;
  const host::SplitK& split = plan.split;

  if (plan.converts)
    if (Status s = convert_activations(caller_args, info); !s.ok()) return s;

  // Counters in the workspace are zeroed here on the stream (a graph node when captured); the kernel
  // never resets them, so a launch needs no state from the last one.
  if (split.pieces > 1) {
    // Split K: one work item per piece of a tile (static order); the pieces' counts start at zero.
    uint8_t* workspace = static_cast<uint8_t*>(args.workspace);
    params.k_pieces = split.pieces;
    params.piece_counters = reinterpret_cast<uint32_t*>(workspace + split.counters_offset);
    params.piece_partials = reinterpret_cast<float*>(workspace + split.partials_offset);
    grid = static_cast<int>(std::min<int64_t>(usable_sms(args, info), int64_t(split.tiles) * split.pieces));
    if (cudaError_t err = cudaMemsetAsync(params.piece_counters, 0, size_t(split.tiles) * 4, args.stream);
        err != cudaSuccess)
      return cuda_failure("cudaMemsetAsync (split-K counters)", err);
  } else if (host::takes_tiles_dynamically(args, &launch_cfg)) {
    // The CTAs take tiles from a counter at the workspace's start.
    params.tile_counter = static_cast<uint32_t*>(args.workspace);
    if (cudaError_t err = cudaMemsetAsync(params.tile_counter, 0, sizeof(uint32_t), args.stream); err != cudaSuccess)
      return cuda_failure("cudaMemsetAsync (tile counter)", err);
  }

  return plan.kernel.launch(args, launch_cfg, grid, maps, params);
}

}  // namespace
}  // namespace signalgemm
