// The masked grouped GEMM with completion signals (SPEC §2-§4):
//
//   C[e, i, :] = alpha[e] * dequant(A[e, i, :]) * dequant(B[e, :, :])^T   for i < masked_m[e]
//
// A: [E, max_m, K], B: [E, N, K], both K-major; C: [E, max_m, N] row-major. Rows i >= masked_m[e]
// of C are never written. masked_m lives on the device and is never read by the host, so a launch
// is CUDA-graph capturable. Layouts of data and scale factors: docs/formats.md.
#pragma once

#include <cuda_runtime_api.h>

#include "signalgemm/signals.h"
#include "signalgemm/types.h"

namespace signalgemm {

// One GEMM operand: A (activations, rows = tokens) or B (weights, rows = output columns).
// Device memory as TMA loads it: data and scales 16-byte aligned, strides multiples of 16 bytes
// (below 2^40), rows of k elements a whole number of 16 bytes.
struct OperandArgs {
  Format format = Format::fp8_block128;
  const void* data = nullptr;
  const void* scales = nullptr;  // per docs/formats.md; must be null for bf16
  int64_t row_stride = 0;        // bytes between consecutive rows; 0 = packed (K elements)
  int64_t expert_stride = 0;     // bytes between experts; 0 = packed (rows * row_stride)
  // mma_fragments: B only, nvfp4 or mxfp4, with bf16 activations (or ones of the weights' format,
  // or fp8_block128 ones, converted in a workspace); data as written by pack_mma_fragments (strides
  // 0), which holds the block scales too: `scales` is not read (may be null).
  OperandLayout layout = OperandLayout::rows;
};

// Tile shape and pipeline depth. Zero fields are chosen by the heuristic (docs/configuration.md).
// With one side of the tile given, the heuristic completes it with a tile compiled for the operand
// pairing (block_m = 48 takes 48x256, block_n = 192 takes 128x192); validate() refuses a
// side, tile or stage count that no compiled kernel runs.
struct TileConfig {
  int block_m = 0;  // rows (tokens) per tile
  int block_n = 0;  // output columns (weight rows) per tile
  int stages = 0;   // shared-memory pipeline stages
  int cluster = 0;  // CTAs per cluster sharing an operand over TMA multicast: 1, or 2 (fp8_block128
                    // at 128x128 and 128x256 only); 0 = heuristic
};

struct GroupedGemmArgs {
  int num_experts = 0;  // E
  int max_m = 0;        // rows per expert slab of A and C
  int n = 0;
  int k = 0;

  OperandArgs a;
  OperandArgs b;

  void* out = nullptr;
  // Optional row scatter: when set, row i < masked_m[e] of expert e is written to
  // out_rows[e * max_m + i] (N elements, 16-byte aligned; a null entry is not written) instead of into
  // `out`, which may then be null. The destinations may be peer GPUs' memory (NVLink, NCCL window
  // pointers): the rows are bulk copies, complete before the tile's signal; use SignalScope::sys
  // when the readers are other GPUs. (ep_epilogue_send_prepare builds such a table.)
  void* const* out_rows = nullptr;  // device memory, [num_experts * max_m]
  // C's elements: bf16 or fp16 (not with fp8_block128 x FP4), rounded to nearest even from the fp32
  // accumulators times alpha (fp32 is not supported). The combines (combine.h, ep_combine.h) read
  // bf16 outputs.
  OutputType out_type = OutputType::bf16;
  // out 16-byte aligned, its strides multiples of 16 bytes (bulk stores). Nothing the launch writes
  // (out, the workspace, signals, error_flag) may overlap anything it reads or each other.
  int64_t out_row_stride = 0;     // bytes; 0 = packed (N elements)
  int64_t out_expert_stride = 0;  // bytes; 0 = packed (max_m * out_row_stride)

  // masked_m, alpha, signals and error_flag: 4-byte aligned.
  const int32_t* masked_m = nullptr;  // device, [E]; values outside [0, max_m] are clamped
  const float* alpha = nullptr;       // device, [E], optional (1 when null)

  // Device memory, or mapped pinned host memory for a consumer on the host (SignalScope::sys);
  // SignalLayout::counter_count() counters, optional.
  uint32_t* signals = nullptr;
  SignalGranularity granularity = SignalGranularity::none;
  SignalScope scope = SignalScope::gpu;

  // Optional int32 (device or mapped pinned host memory); the kernel ORs in kErrorMaskedMOutOfRange
  // when some masked_m[e] lies outside [0, max_m] (it then computes with the clamped value). Never
  // cleared by the kernel. Not ordered with the signals: read it once the launch has completed.
  int32_t* error_flag = nullptr;

  // Optional device scratch, 16-byte aligned, of at least workspace_bytes(args) bytes (computed with
  // this launch's own arguments, sm_count included, on its device; one that holds the converted
  // activations or the tile counter but not a split's partial sums runs with K unsplit); the launch
  // owns it until it completes (one workspace per launch in flight). For activations the tensor
  // cores cannot take as they are (nvfp4, mxfp4 or mxfp8 on both sides, fp8_block128 x nvfp4 / mxfp4),
  // a first kernel converts the real rows (i < masked_m[e]) to bf16 here once, exactly (fp8_block128
  // x FP4: on the register-weights tiles, which the heuristic picks; a given 32x128 or 64x128 reads
  // its tokens as they are and leaves the workspace unused), and the GEMM then runs as bf16 x the
  // weights' format (fp8_block128: reading the bf16 copy and still applying the token scales);
  // without, each tile converts its tokens itself, once per column block (docs/formats.md).
  // fp8_block128 x fp8_block128 keeps a tile counter here (16 bytes),
  // zeroed by the launch, from which its CTAs take tiles dynamically (not on the 128x192 tile or in
  // two-CTA clusters): a CTA done early takes more, which balances the grid when tiles differ
  // (docs/configuration.md); without, each CTA runs a fixed share of the tiles. Launches with few
  // tiles for the SMs (fp8_block128 x fp8_block128, bf16 x bf16, bf16 x nvfp4 / mxfp4 / mxfp8, and
  // nvfp4², mxfp4², mxfp8², fp8_block128 x nvfp4 / mxfp4 after their converted activations) hold
  // here the partial sums of a split of K (workspace_bytes says how much). The other pairings ignore it.
  void* workspace = nullptr;
  size_t workspace_bytes = 0;

  int sm_count = 0;    // use at most this many SMs; 0 = all
  int expected_m = 0;  // typical masked_m, a hint for the heuristic; 0 = max_m
  TileConfig config;   // override for benchmarking; zero fields = heuristic
  cudaStream_t stream = nullptr;
  // Programmatic dependent launch: the kernel may start while the previous kernel on the stream
  // finishes, and waits (griddepcontrol.wait) before it reads any input. Whatever this flag, the
  // kernel then issues griddepcontrol.launch_dependents: a kernel launched after it with
  // programmatic serialization may start on the SMs its CTAs leave, and sees its output only
  // through the signals or after griddepcontrol.wait (which waits for its completion).
  bool enable_pdl = false;
};

inline constexpr int32_t kErrorMaskedMOutOfRange = 1;

// Checks every argument without touching device memory or streams (where args.config is given, or
// per_row_block signals need the tile, it reads the current device's shared-memory size, as the
// launch plans with it). The message names the offending argument.
[[nodiscard]] Status validate(const GroupedGemmArgs& args);

// The checks of validate() that need no tensors (sizes, formats, config; k where non-zero): for
// planning with sizes alone (signal_layout, workspace_bytes), whose answers are defined only where a
// launch with those sizes would be accepted.
[[nodiscard]] Status validate_sizes(const GroupedGemmArgs& args);

// The configuration a launch with these arguments would use (heuristic plus override): its tile
// and stages; its cluster may still run as single CTAs (sm_count below the device's SMs, or a grid of
// one: docs/configuration.md). Queries the current device's shared-memory limit (an H100's when there
// is no device).
TileConfig select_config(const GroupedGemmArgs& args);

// The signal layout a launch with these arguments would use: what consumers wait on. Needs the
// launch's sizes, formats, b.layout, config, k, expected_m and whether it gives a workspace (each
// can pick another tile: docs/configuration.md), and out_type (the combines read C's rows). Plan it
// with the launch's own arguments, workspace included: a layout planned without the workspace the
// launch then gets (e.g. nvfp4 x nvfp4 at E8 m64: 64x256 without, 64x128 with) has other counts,
// and a consumer would wait for the wrong values. sm_count does not change it.
SignalLayout signal_layout(const GroupedGemmArgs& args);

// Bytes of `workspace` with which this launch converts its activations once (E * max_m * K bf16),
// or 0 for the pairings that do not use one.
size_t activation_workspace_bytes(const GroupedGemmArgs& args);

// Bytes of `workspace` this launch runs best with: activation_workspace_bytes for the pairings that
// convert their activations, plus, with few tiles, the partials of the launch after the conversion
// splitting K; for fp8_block128 x fp8_block128, bf16 x bf16 and bf16 x nvfp4 / mxfp4 / mxfp8, where
// the tiles are few for the SMs the launch may use on the current device, the partial sums of a
// split of K (docs/configuration.md); else for fp8_block128 x fp8_block128 16 (the tile counter of
// dynamic scheduling); else 0.
size_t workspace_bytes(const GroupedGemmArgs& args);

// Validates, then launches on args.stream. No host-device synchronization, no allocation. Each call
// asks the driver about its stream and every pointer (where each lies) before it launches: host time
// on every call, which a CUDA graph of the launch takes off a decode loop. Thread-safe: what calls
// share (a kernel's shared-memory attribute, set to the same value by every call; per-device cluster
// counts, in atomics) no call can leave half-made for another.
[[nodiscard]] Status grouped_gemm_nt_masked(const GroupedGemmArgs& args);

// Loads, without launching, the kernels grouped_gemm_nt_masked(args) would launch on the current
// device. Call it once before a consumer first spins beside such a launch: under CUDA's default
// lazy module loading, a kernel's first launch loads it and may wait for the device to go idle,
// i.e. for the spinning consumer (docs/signals.md). Validates the arguments as the launch does, but
// not where its pointers lie (the launch checks that they are this device's memory); reads no device memory.
[[nodiscard]] Status load_kernels(const GroupedGemmArgs& args);

// Bytes of an operand's scale factors in the layout of docs/formats.md (0 for bf16): `weights` for B
// (fp8_block128 scales B per 128x128 block and A per 1x128, the rows padded to 4; the one-byte
// scales of nvfp4, mxfp4 and mxfp8 are the same on both sides). `rows`: max_m for A, n for B.
size_t operand_scale_bytes(Format format, bool weights, int experts, int rows, int k);

// Bytes of FP4 weights [experts][n][k] in the mma_fragments layout (docs/formats.md): 64x64
// blocks of 2560 bytes (codes and converted block scales), n and k rounded up to multiples of 64.
size_t mma_fragment_bytes(int experts, int n, int k);

// Rewrites FP4 weights and their block scales (`weights`: format nvfp4 or mxfp4, layout rows, any
// strides; scales row-major [experts][n][k / block] as docs/formats.md says) into `packed` (device
// memory, mma_fragment_bytes, 16-byte aligned) in the mma_fragments layout, on `stream`. Done once,
// when the weights are loaded; the GEMM then reads neither weights.data nor weights.scales.
[[nodiscard]] Status pack_mma_fragments(const OperandArgs& weights, int experts, int n, int k, void* packed,
                                        cudaStream_t stream = nullptr);

}  // namespace signalgemm
