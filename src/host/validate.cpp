// Argument validation: everything is checked on the host before any launch, and the first
// problem found is reported with the name of the offending argument.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

#include "host/config.h"
#include "host/devices.h"
#include "host/kernel_entry.h"
#include "kernels/dequant_bf16_plan.h"
#include "signalgemm/gemm.h"

namespace signalgemm {
namespace {

// Message pieces are joined without iostreams: number formatting through a locale crashed when
// the library was linked into a Python extension next to torch (a second libstdc++ copy).
void append(std::string& out, const char* part) { out += part; }
void append(std::string& out, const std::string& part) { out += part; }
template <typename Integer, typename = std::enable_if_t<std::is_integral_v<Integer>>>
void append(std::string& out, Integer part) {
  out += std::to_string(part);
}

// Collects the first failure; later checks are skipped once one failed.
class Checker {
 public:
  template <typename... Parts>
  void require(bool condition, StatusCode code, const Parts&... parts) {
    if (condition || !status_.ok()) return;
    std::string message = "signalgemm: ";
    (append(message, parts), ...);
    status_ = Status{code, std::move(message)};
  }
  template <typename... Parts>
  void require(bool condition, const Parts&... parts) {
    require(condition, StatusCode::invalid_argument, parts...);
  }
  // A check made elsewhere: its failure, unless one came first.
  void require(const Status& s) {
    if (status_.ok()) status_ = s;
  }
  Status status() const { return status_; }

 private:
  Status status_;
};

bool aligned(const void* p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// Bytes from a [experts][rows][row_bytes] tensor's first byte past its last one (strides 0: packed),
// once its strides passed their checks.
int64_t tensor_span(int64_t row_bytes, int64_t row_stride, int64_t expert_stride, int num_experts, int rows) {
  row_stride = row_stride != 0 ? row_stride : row_bytes;
  expert_stride = expert_stride != 0 ? expert_stride : row_stride * rows;
  return expert_stride * (num_experts - 1) + row_stride * (rows - 1) + row_bytes;
}
int64_t operand_span(const OperandArgs& op, int num_experts, int rows, int k) {
  if (op.layout == OperandLayout::mma_fragments) return int64_t(mma_fragment_bytes(num_experts, rows, k));
  return tensor_span(int64_t(k) * element_bits(op.format) / 8, op.row_stride, op.expert_stride, num_experts, rows);
}
bool valid_format(Format f) { return static_cast<int>(f) <= static_cast<int>(Format::mxfp8); }

// Strides are the caller's int64 values, so every product of a stride and an extent is computed
// with an overflow check: a wrapped product would let a too-small stride pass.
bool multiply(int64_t a, int64_t b, int64_t& product) { return !__builtin_mul_overflow(a, b, &product); }

// cuTensorMapEncodeTiled takes global strides only below 2^40 bytes.
constexpr int64_t kMaxTmaStride = int64_t(1) << 40;

// Extents are rounded up to whole tiles (at most 256) in int32 (SignalLayout, the launcher).
constexpr int kMaxExtent = std::numeric_limits<int32_t>::max() - 255;

// What k must be for an operand of `format` (named `name`): a multiple of its scale block, and rows
// of a whole number of 16-byte units (TMA) that the launcher can count in int.
void check_k(Checker& c, const char* name, Format format, int k) {
  c.require(scale_block_k(format) == 0 || k % scale_block_k(format) == 0, "k = ", k, " must be a multiple of ",
            scale_block_k(format), " (the scale block of ", name, ".format ", to_string(format), ")");
  // The launcher computes a row's bytes as k * bits / 8 in int.
  c.require(int64_t(k) * element_bits(format) <= std::numeric_limits<int32_t>::max(), "k = ", k,
            " is too large for ", name, ".format ", to_string(format), " (a row must stay below 2^31 bits)");
  const int64_t packed_row = int64_t(k) * element_bits(format) / 8;
  c.require(packed_row % 16 == 0, "k = ", k, " gives rows of ", packed_row, " bytes in ", name,
            "; TMA needs a multiple of 16");
}

// Scale tensors are packed (docs/formats.md) and never larger than their packed data, so the data
// span check below also keeps every scale offset within int64.
void check_operand(Checker& c, const char* name, const OperandArgs& op, int num_experts, int rows, int k) {
  const std::string n = name;
  c.require(valid_format(op.format), n, ".format: unknown value ", static_cast<int>(op.format));
  if (!valid_format(op.format)) return;
  c.require(op.data != nullptr, n, ".data is null");
  c.require(aligned(op.data, 16), n, ".data must be 16-byte aligned (TMA)");
  const bool scaled = scale_block_k(op.format) > 0;
  // (The mma_fragments layout carries its block scales in its packed blocks: op.scales is not read.)
  c.require(!scaled || op.scales != nullptr || op.layout == OperandLayout::mma_fragments, n,
            ".scales is null but format ", to_string(op.format), " needs scale factors");
  c.require(scaled || op.scales == nullptr, n, ".scales must be null for format ", to_string(op.format));
  c.require(op.scales == nullptr || aligned(op.scales, 16), n, ".scales must be 16-byte aligned (TMA)");
  check_k(c, name, op.format, k);
  const int64_t packed_row = int64_t(k) * element_bits(op.format) / 8;
  c.require(op.row_stride >= 0, n, ".row_stride must be >= 0, got ", op.row_stride);
  c.require(op.row_stride == 0 || op.row_stride >= packed_row, n, ".row_stride = ", op.row_stride,
            " is smaller than one row (", packed_row, " bytes)");
  c.require(op.row_stride % 16 == 0, n, ".row_stride = ", op.row_stride, " must be a multiple of 16 bytes (TMA)");
  c.require(op.row_stride < kMaxTmaStride, n, ".row_stride = ", op.row_stride,
            " is not below the TMA limit of 2^40 bytes");
  if (!c.status().ok()) return;
  const int64_t row_stride = op.row_stride != 0 ? op.row_stride : packed_row;
  int64_t expert_bytes = 0;
  c.require(multiply(row_stride, rows, expert_bytes), n, ".row_stride = ", row_stride, " times ", rows,
            " rows of one expert overflows int64");
  c.require(op.expert_stride >= 0, n, ".expert_stride must be >= 0, got ", op.expert_stride);
  c.require(op.expert_stride == 0 || op.expert_stride >= expert_bytes, n, ".expert_stride = ", op.expert_stride,
            " is smaller than one expert (", expert_bytes, " bytes)");
  c.require(op.expert_stride % 16 == 0, n, ".expert_stride = ", op.expert_stride,
            " must be a multiple of 16 bytes (TMA)");
  if (!c.status().ok()) return;
  const int64_t expert_stride = op.expert_stride != 0 ? op.expert_stride : expert_bytes;
  c.require(expert_stride < kMaxTmaStride, n, ".expert_stride = ", op.expert_stride,
            op.expert_stride == 0 ? " (packed)" : "", " gives ", expert_stride,
            " bytes per expert, not below the TMA limit of 2^40 bytes");
  int64_t span = 0;
  c.require(multiply(expert_stride, num_experts, span), "num_experts = ", num_experts, " times ", n,
            ".expert_stride = ", expert_stride, " bytes overflows int64");
}

// Fragment-ordered weights (OperandLayout::mma_fragments) feed only the register-weights mainloop
// with tokens loaded as bf16: bf16 activations, or ones of the weights' format or fp8_block128 ones
// converted in a large enough workspace (fp8_block128: on that mainloop's tiles).
// Its checks of the layouts against the formats alone also run in validate_sizes.
void check_layout_formats(Checker& c, const GroupedGemmArgs& args) {
  const auto known = [](OperandLayout l) { return l == OperandLayout::rows || l == OperandLayout::mma_fragments; };
  c.require(known(args.a.layout), "a.layout: unknown value ", static_cast<int>(args.a.layout));
  c.require(known(args.b.layout), "b.layout: unknown value ", static_cast<int>(args.b.layout));
  c.require(args.a.layout == OperandLayout::rows, "a.layout must be rows (mma_fragments is a weights layout)");
  c.require(args.b.layout != OperandLayout::mma_fragments || args.b.format == Format::nvfp4 ||
                args.b.format == Format::mxfp4,
            StatusCode::unsupported, "b.layout mma_fragments needs b.format nvfp4 or mxfp4, got ",
            to_string(args.b.format));
}

void check_layouts(Checker& c, const GroupedGemmArgs& args) {
  check_layout_formats(c, args);
  if (args.b.layout != OperandLayout::mma_fragments) return;
  c.require(args.b.row_stride == 0 && args.b.expert_stride == 0,
            "b.layout mma_fragments has no strides (the packed blocks are contiguous); b.row_stride and "
            "b.expert_stride must be 0");
  // The weights' own format on both sides, and fp8_block128, convert to bf16 in the workspace.
  const bool convertible =
      args.a.format == args.b.format || kernels::is_fp8_tokens_fp4_weights_pair(args.a.format, args.b.format);
  // (A workspace too small is named by the workspace check, as an invalid argument.)
  const bool converted = convertible && args.workspace != nullptr;
  c.require(args.a.format == Format::bf16 || converted, StatusCode::unsupported,
            "b.layout mma_fragments is supported with a.format bf16, or the weights' own format or fp8_block128 "
            "with a workspace (activation_workspace_bytes); got a.format ",
            to_string(args.a.format), convertible ? " without a workspace" : "");
  // Its tensor map strides one expert's blocks.
  c.require(mma_fragment_bytes(1, args.n, args.k) < size_t(kMaxTmaStride), "b.layout mma_fragments: n = ", args.n,
            " and k = ", args.k, " give ", mma_fragment_bytes(1, args.n, args.k),
            " bytes per expert, not below the TMA limit of 2^40 bytes");
  const int block_m = args.config.block_m, block_n = args.config.block_n;
  c.require(args.a.format != Format::fp8_block128 || block_m == 0 || block_n == 0 ||
                host::register_weights_with_converted_tokens(args.a.format, args.b.format, block_m, block_n),
            StatusCode::unsupported, "b.layout mma_fragments with a.format fp8_block128 runs on 32x256, 48x256, "
            "64x256 and 128x128; config is ", block_m, "x", block_n);
}

// Sizes and the bound on tile indices; k only where `k_known` (the planning helpers may not know it).
void check_sizes(Checker& c, const GroupedGemmArgs& args, bool k_known) {
  c.require(args.num_experts >= 1, "num_experts must be >= 1, got ", args.num_experts);
  c.require(args.max_m >= 1, "max_m must be >= 1, got ", args.max_m);
  c.require(args.n >= 1, "n must be >= 1, got ", args.n);
  c.require(!k_known || args.k >= 1, "k must be >= 1, got ", args.k);
  c.require(args.max_m <= kMaxExtent, "max_m = ", args.max_m, " is too large; at most ", kMaxExtent,
            " (rounded up to whole tiles it must fit in int32)");
  c.require(args.n <= kMaxExtent, "n = ", args.n, " is too large; at most ", kMaxExtent,
            " (rounded up to whole tiles it must fit in int32)");
  // Tile indices are 32-bit on the device; bound them with the smallest tile. The factors are
  // multiplied with overflow checks: E * ceil(max_m/32) * ceil(n/128) can exceed int64.
  const int64_t max_tile_count = std::numeric_limits<int32_t>::max() / 2;
  int64_t tile_count = 0;
  const bool tile_count_fits = multiply(args.num_experts, (int64_t(args.max_m) + 31) / 32, tile_count) &&
                               multiply(tile_count, (int64_t(args.n) + 127) / 128, tile_count);
  c.require(tile_count_fits && tile_count <= max_tile_count, "num_experts * max_m * n is too large (",
            tile_count_fits ? std::to_string(tile_count) : std::string("more than 2^63"),
            " tiles of 32x128; at most ", max_tile_count, ")");
  // Cannot overflow: both factors are below 2^31.
  c.require(!k_known || int64_t(args.num_experts) * (args.k / 128 + 1) <= std::numeric_limits<int32_t>::max(),
            "num_experts * k is too large");
}

// A mainloop exists for the format pair (and for k's multiple, where known).
void check_pairing(Checker& c, const GroupedGemmArgs& args, bool k_known) {
  // Mainloops compiled so far.
  const bool fp8_pair = args.a.format == Format::fp8_block128 && args.b.format == Format::fp8_block128;
  const bool bf16_pair = args.a.format == Format::bf16 && args.b.format == Format::bf16;
  const bool bf16_register_weights = kernels::is_bf16_register_weights_pair(args.a.format, args.b.format);
  const bool dequant_pair = kernels::is_dequant_bf16_pair(args.a.format, args.b.format);
  c.require(fp8_pair || bf16_pair || bf16_register_weights || dequant_pair, StatusCode::unsupported,
            "format pair (a.format = ", to_string(args.a.format), ", b.format = ", to_string(args.b.format),
            ") is not supported yet; supported: (fp8_block128, fp8_block128), (bf16, bf16), (bf16, nvfp4), "
            "(mxfp8, mxfp8), (mxfp4, mxfp4), (nvfp4, nvfp4), (bf16, mxfp4), (bf16, mxfp8), (fp8_block128, nvfp4), "
            "(fp8_block128, mxfp4)");
  // The dequantizing mainloop works in 64-K stages (a valid MX shape may have k = 32 mod 64).
  c.require(!k_known || !dequant_pair || args.k % 64 == 0, StatusCode::unsupported, "k = ", args.k,
            " is not supported yet with a.format ", to_string(args.a.format), " and b.format ",
            to_string(args.b.format), "; the dequantizing mainloop needs k a multiple of 64");
  c.require(!dequant_pair || args.config.block_m == 0 || args.config.block_n == 0 ||
                kernels::dequant_bf16_tile_compiled(args.a.format, args.config.block_m, args.config.block_n) ||
                host::is_decode_tile(args.a.format, args.b.format, args.config.block_m, args.config.block_n),
            StatusCode::unsupported, "config.block_m = ", args.config.block_m, " with config.block_n = ",
            args.config.block_n, " is not compiled for a.format ", to_string(args.a.format),
            "; fp8_block128 activations with FP4 weights have 32x128, 64x128, 128x128, 32x256, 48x256 and 64x256");
  // The register-weights mainloop works in 64-K blocks and reads a block's scales from one aligned word.
  // A valid block-scaled shape (k a multiple of 32) that the mainloop does not implement: unsupported.
  c.require(!k_known || !bf16_register_weights || args.k % 64 == 0, StatusCode::unsupported, "k = ", args.k,
            " is not supported yet with ", to_string(args.b.format),
            " weights; the register-weights mainloop needs k a multiple of 64");
}

// The tile, stages and cluster asked for in args.config.
void check_config(Checker& c, const GroupedGemmArgs& args) {
  const bool fp8_pair = args.a.format == Format::fp8_block128 && args.b.format == Format::fp8_block128;
  const TileConfig& cfg = args.config;
  // A side only one tile has (48 tokens: 48x256; 192 weight rows: 128x192) also alone: the launch
  // completes it with that tile (launch_config).
  const bool token_rows_tile = fp8_pair && host::is_token_rows_tile(cfg.block_m == 0 ? 128 : cfg.block_m, cfg.block_n);
  const bool decode_tile =
      host::is_decode_tile(args.a.format, args.b.format, cfg.block_m, cfg.block_n == 0 ? 256 : cfg.block_n);
  c.require(cfg.block_m == 0 || host::is_supported_block_m(cfg.block_m) || decode_tile, "config.block_m = ",
            cfg.block_m, " is not supported; use 0 (heuristic), 32, 64, 128 or 192 (the register-weights pairings ",
            "with block_n = 0 or 256: also 48)");
  c.require(cfg.block_n == 0 || host::is_supported_block_n(cfg.block_n) || token_rows_tile, "config.block_n = ",
            cfg.block_n, " is not supported; use 0 (heuristic), 128 or 256 (fp8_block128 x fp8_block128 with ",
            "block_m = 0 or 128: also 192)");
  c.require(cfg.block_m == 0 || cfg.block_n == 0 || host::is_supported_tile(cfg.block_m, cfg.block_n) ||
                token_rows_tile || decode_tile,
            "config.block_m = ", cfg.block_m, " with config.block_n = ", cfg.block_n,
            " is not a compiled tile; compiled: 32x128, 64x128, 128x128, 192x128, 128x256 (fp8_block128 x "
            "fp8_block128 also 128x192; bf16 x nvfp4 / mxfp4 / mxfp8 and the pairings whose tokens the "
            "register-weights mainloop converts also 32x256, 48x256, 64x256)");
  c.require(cfg.stages == 0 || (cfg.stages >= host::kMinStages && cfg.stages <= host::kMaxStages),
            "config.stages = ", cfg.stages, " must be 0 (heuristic) or in [", host::kMinStages, ", ",
            host::kMaxStages, "]");
  c.require(cfg.cluster >= 0 && cfg.cluster <= 2, "config.cluster = ", cfg.cluster,
            " must be 0 (heuristic), 1 or 2");
  c.require(cfg.cluster != 2 || (args.a.format == Format::fp8_block128 && args.b.format == Format::fp8_block128),
            "config.cluster = 2 needs fp8_block128 operands");
  c.require(cfg.cluster != 2 || ((cfg.block_m == 0 || cfg.block_m == 128) &&
                                  (cfg.block_n == 0 || host::is_cluster_tile(128, cfg.block_n))),
            "config.cluster = 2 is compiled for the 128x128 and 128x256 tiles only (config.block_m = 128)");
}

// What the launch writes (out; the workspace: converted activations, counters, partials; the
// signals and the error flag, by atomics) must not overlap what it reads, nor each other: the stores
// would race the loads (a silently wrong result; signals over masked_m would change the tiles the
// CTAs walk while they read it).
void check_aliasing(Checker& c, const GroupedGemmArgs& args) {
  using host::Span;
  const int64_t experts_bytes = int64_t(args.num_experts) * 4;
  const int64_t out_row = int64_t(args.n) * output_bytes(args.out_type);
  const int64_t signal_bytes =
      args.signals == nullptr || args.granularity == SignalGranularity::none ? 0
      : args.granularity == SignalGranularity::per_expert                   ? experts_bytes
                                                            : signal_layout(args).counter_count() * 4;
  const Span read[] = {
      {args.a.data, operand_span(args.a, args.num_experts, args.max_m, args.k), "a.data"},
      {args.b.data, operand_span(args.b, args.num_experts, args.n, args.k), "b.data"},
      {args.a.scales, int64_t(operand_scale_bytes(args.a.format, false, args.num_experts, args.max_m, args.k)),
       "a.scales"},
      {args.b.scales, int64_t(operand_scale_bytes(args.b.format, true, args.num_experts, args.n, args.k)),
       "b.scales"},
      {args.masked_m, experts_bytes, "masked_m"},
      {args.alpha, experts_bytes, "alpha"},
      {args.out_rows, args.out_rows != nullptr ? experts_bytes * 2 * args.max_m : 0, "out_rows"}};
  const Span written[] = {
      {args.out,
       args.out != nullptr
           ? tensor_span(out_row, args.out_row_stride, args.out_expert_stride, args.num_experts, args.max_m)
           : 0,
       "out"},
      {args.workspace, int64_t(std::min<size_t>(args.workspace_bytes, size_t(INT64_MAX))), "workspace"},
      {args.signals, signal_bytes, "signals"},
      {args.error_flag, args.error_flag != nullptr ? 4 : 0, "error_flag"}};
  c.require(host::check_no_overlap(written, std::size(written), read, std::size(read), "the launch"));
}

}  // namespace

size_t operand_scale_bytes(Format format, bool weights, int experts, int rows, int k) {
  const int block = scale_block_k(format);
  if (block == 0 || experts < 1 || rows < 1 || k < 1) return 0;
  const size_t blocks_k = size_t(k / block), e = size_t(experts);
  if (format == Format::fp8_block128)
    return 4 * e * blocks_k * (weights ? (size_t(rows) + 127) / 128 : (size_t(rows) + 3) / 4 * 4);
  return e * size_t(rows) * blocks_k;
}

void check_output_type(Checker& c, const GroupedGemmArgs& args) {
  c.require(static_cast<int>(args.out_type) <= static_cast<int>(OutputType::fp32), "out_type: unknown value ",
            static_cast<int>(args.out_type));
  c.require(args.out_type != OutputType::fp32, StatusCode::unsupported, "out_type ", to_string(args.out_type),
            " is not supported yet; supported: bf16, fp16");
  // Its register-weights kernels round to bf16 only (kernels::RegisterWeightsMainloop::kFp16Output).
  c.require(args.out_type != OutputType::fp16 || !kernels::is_fp8_tokens_fp4_weights_pair(args.a.format, args.b.format),
            StatusCode::unsupported, "out_type fp16 is not supported with fp8_block128 activations x ",
            to_string(args.b.format), " weights (bf16 is)");
}

Status validate(const GroupedGemmArgs& args) {
  Checker c;
  check_sizes(c, args, /*k_known=*/true);
  if (!c.status().ok()) return c.status();

  check_operand(c, "a", args.a, args.num_experts, args.max_m, args.k);
  check_operand(c, "b", args.b, args.num_experts, args.n, args.k);
  c.require(args.b.format != Format::fp8_block128 ||
                host::fp8_weight_scale_count(args) <= std::numeric_limits<int32_t>::max(),
            "num_experts = ", args.num_experts, ", n = ", args.n, " and k = ", args.k, " give b.scales ",
            args.num_experts, " experts x ", (args.n + 127) / 128, " x ", args.k / 128,
            " 128x128 blocks, more than 2^31 - 1 weight scales");
  check_layouts(c, args);

  check_pairing(c, args, /*k_known=*/true);

  check_output_type(c, args);
  c.require(args.out != nullptr || args.out_rows != nullptr, "out is null (and no out_rows)");
  c.require(aligned(args.out, 16), "out must be 16-byte aligned (bulk stores)");
  c.require(aligned(args.out_rows, 8), "out_rows must be 8-byte aligned (a pointer array)");
  const int64_t out_row = int64_t(args.n) * output_bytes(args.out_type);
  c.require(out_row % 16 == 0, "n = ", args.n, " gives output rows of ", out_row,
            " bytes; the bulk stores need a multiple of 16 (n a multiple of 8 for bf16 and fp16)");
  c.require(args.out_row_stride >= 0, "out_row_stride must be >= 0, got ", args.out_row_stride);
  c.require(args.out_row_stride == 0 || args.out_row_stride >= out_row, "out_row_stride = ", args.out_row_stride,
            " is smaller than one row (", out_row, " bytes)");
  c.require(args.out_row_stride % 16 == 0, "out_row_stride = ", args.out_row_stride,
            " must be a multiple of 16 bytes");
  const int64_t out_row_stride = args.out_row_stride != 0 ? args.out_row_stride : out_row;
  int64_t out_expert_bytes = 0;
  c.require(multiply(out_row_stride, args.max_m, out_expert_bytes), "out_row_stride = ", out_row_stride,
            " times max_m = ", args.max_m, " overflows int64");
  c.require(args.out_expert_stride >= 0, "out_expert_stride must be >= 0, got ", args.out_expert_stride);
  c.require(args.out_expert_stride == 0 || args.out_expert_stride >= out_expert_bytes, "out_expert_stride = ",
            args.out_expert_stride, " is smaller than one expert (", out_expert_bytes, " bytes)");
  c.require(args.out_expert_stride % 16 == 0, "out_expert_stride = ", args.out_expert_stride,
            " must be a multiple of 16 bytes");
  // The epilogue addresses expert e at e * out_expert_stride.
  const int64_t out_expert_stride = args.out_expert_stride != 0 ? args.out_expert_stride : out_expert_bytes;
  int64_t out_span = 0;
  c.require(multiply(out_expert_stride, args.num_experts, out_span), "num_experts = ", args.num_experts,
            " times out_expert_stride = ", out_expert_stride, " bytes overflows int64");
  c.require(aligned(args.workspace, 16), "workspace must be 16-byte aligned");
  // Converted activations are bf16 rows of k * 16 bits, which the launcher counts in int.
  c.require(!host::converts_activations(args.a.format, args.b.format) ||
                int64_t(args.k) * 16 <= std::numeric_limits<int32_t>::max(),
            "k = ", args.k, " is too large for ", to_string(args.a.format),
            " activations converted to bf16 (a row must stay below 2^31 bits)");
  if (args.workspace != nullptr && host::converts_activations(args.a.format, args.b.format)) {
    const size_t needed = host::converted_activation_bytes(args);
    c.require(args.workspace_bytes >= needed, "workspace_bytes = ", args.workspace_bytes, " is too small; ",
              to_string(args.a.format), " activations converted to bf16 take ", needed,
              " bytes (activation_workspace_bytes)");
    // Their tensor map strides one expert's bf16 rows.
    c.require(int64_t(args.max_m) * args.k * 2 < kMaxTmaStride, "max_m = ", args.max_m, " and k = ", args.k,
              " give ", int64_t(args.max_m) * args.k * 2, " bytes per expert of activations converted to bf16, not "
              "below the TMA limit of 2^40 bytes");
  } else if (args.workspace != nullptr && host::uses_tile_counter(args.a.format, args.b.format)) {
    c.require(args.workspace_bytes >= host::kTileCounterBytes, "workspace_bytes = ", args.workspace_bytes,
              " is too small for the tile counter of dynamic scheduling (", host::kTileCounterBytes,
              " bytes, workspace_bytes())");
  }

  c.require(args.masked_m != nullptr, "masked_m is null");
  c.require(aligned(args.masked_m, 4), "masked_m must be 4-byte aligned");
  c.require(aligned(args.alpha, 4), "alpha must be 4-byte aligned");
  c.require(aligned(args.error_flag, 4), "error_flag must be 4-byte aligned");

  const int granularity = static_cast<int>(args.granularity);
  c.require(granularity <= static_cast<int>(SignalGranularity::per_row_block), "granularity: unknown value ",
            granularity);
  c.require(static_cast<int>(args.scope) <= static_cast<int>(SignalScope::sys), "scope: unknown value ",
            static_cast<int>(args.scope));
  c.require(args.granularity == SignalGranularity::none || args.signals != nullptr, "granularity is ",
            to_string(args.granularity), " but signals is null");
  c.require(args.granularity != SignalGranularity::none || args.signals == nullptr,
            "signals is given but granularity is none");
  c.require(aligned(args.signals, 4), "signals must be 4-byte aligned");

  c.require(args.sm_count >= 0, "sm_count must be >= 1 (or 0 for all SMs), got ", args.sm_count);
  c.require(args.expected_m >= 0, "expected_m must be >= 0 (0 = max_m), got ", args.expected_m);

  check_config(c, args);
  if (!c.status().ok()) return c.status();
  check_aliasing(c, args);
  // A tile, stages or cluster given: the tile the launch then takes must run (a partial tile is
  // completed by the heuristic, launch.cu). Without any, the heuristic's tiles always do.
  const TileConfig& cfg = args.config;
  if (c.status().ok() && (cfg.block_m != 0 || cfg.block_n != 0 || cfg.stages != 0 || cfg.cluster != 0))
    return host::check_launch_tile(args);
  return c.status();
}

Status validate_sizes(const GroupedGemmArgs& args) {
  Checker c;
  c.require(valid_format(args.a.format), "a.format: unknown value ", static_cast<int>(args.a.format));
  c.require(valid_format(args.b.format), "b.format: unknown value ", static_cast<int>(args.b.format));
  check_sizes(c, args, /*k_known=*/args.k != 0);
  if (!c.status().ok()) return c.status();
  if (args.k != 0) {
    check_k(c, "a", args.a.format, args.k);
    check_k(c, "b", args.b.format, args.k);
  }
  check_pairing(c, args, /*k_known=*/args.k != 0);
  check_layout_formats(c, args);
  check_output_type(c, args);
  c.require(int64_t(args.n) * output_bytes(args.out_type) % 16 == 0, "n = ", args.n,
            " gives output rows that are not a multiple of 16 bytes (n a multiple of 8 for bf16 and fp16)");
  c.require(static_cast<int>(args.granularity) <= static_cast<int>(SignalGranularity::per_row_block),
            "granularity: unknown value ", static_cast<int>(args.granularity));
  c.require(args.expected_m >= 0, "expected_m must be >= 0 (0 = max_m), got ", args.expected_m);
  check_config(c, args);
  const TileConfig& cfg = args.config;
  if (c.status().ok() && (cfg.block_m != 0 || cfg.block_n != 0 || cfg.stages != 0 || cfg.cluster != 0))
    return host::check_launch_tile(args);  // as validate(): the tile the sizes would launch with runs
  return c.status();
}

}  // namespace signalgemm
