// Argument validation: everything is checked on the host before any launch, and the first
// problem found is reported with the name of the offending argument.
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

#include "host/config.h"
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
  Status status() const { return status_; }

 private:
  Status status_;
};

bool aligned(const void* p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }
bool valid_format(Format f) { return static_cast<int>(f) <= static_cast<int>(Format::mxfp8); }

void check_operand(Checker& c, const char* name, const OperandArgs& op, int rows, int k) {
  const std::string n = name;
  c.require(valid_format(op.format), n, ".format: unknown value ", static_cast<int>(op.format));
  if (!valid_format(op.format)) return;
  c.require(op.data != nullptr, n, ".data is null");
  c.require(aligned(op.data, 16), n, ".data must be 16-byte aligned (TMA)");
  const bool scaled = scale_block_k(op.format) > 0;
  c.require(!scaled || op.scales != nullptr, n, ".scales is null but format ", to_string(op.format),
            " needs scale factors");
  c.require(scaled || op.scales == nullptr, n, ".scales must be null for format ", to_string(op.format));
  c.require(op.scales == nullptr || aligned(op.scales, 16), n, ".scales must be 16-byte aligned (TMA)");
  c.require(!scaled || k % scale_block_k(op.format) == 0, "k = ", k, " must be a multiple of ",
            scale_block_k(op.format), " (the scale block of ", n, ".format ", to_string(op.format), ")");

  const int64_t packed_row = int64_t(k) * element_bits(op.format) / 8;
  c.require(op.row_stride >= 0, n, ".row_stride must be >= 0, got ", op.row_stride);
  c.require(op.row_stride == 0 || op.row_stride >= packed_row, n, ".row_stride = ", op.row_stride,
            " is smaller than one row (", packed_row, " bytes)");
  c.require(op.row_stride % 16 == 0, n, ".row_stride = ", op.row_stride, " must be a multiple of 16 bytes (TMA)");
  c.require(packed_row % 16 == 0, "k = ", k, " gives rows of ", packed_row, " bytes in ", n,
            "; TMA needs a multiple of 16");
  const int64_t row_stride = op.row_stride != 0 ? op.row_stride : packed_row;
  c.require(op.expert_stride >= 0, n, ".expert_stride must be >= 0, got ", op.expert_stride);
  c.require(op.expert_stride == 0 || op.expert_stride >= row_stride * rows, n, ".expert_stride = ",
            op.expert_stride, " is smaller than one expert (", row_stride * rows, " bytes)");
  c.require(op.expert_stride % 16 == 0, n, ".expert_stride = ", op.expert_stride,
            " must be a multiple of 16 bytes (TMA)");
}

}  // namespace

Status validate(const GroupedGemmArgs& args) {
  Checker c;
  c.require(args.num_experts >= 1, "num_experts must be >= 1, got ", args.num_experts);
  c.require(args.max_m >= 1, "max_m must be >= 1, got ", args.max_m);
  c.require(args.n >= 1, "n must be >= 1, got ", args.n);
  c.require(args.k >= 1, "k must be >= 1, got ", args.k);
  if (!c.status().ok()) return c.status();

  check_operand(c, "a", args.a, args.max_m, args.k);
  check_operand(c, "b", args.b, args.n, args.k);

  // Mainloops compiled so far.
  const bool fp8_pair = args.a.format == Format::fp8_block128 && args.b.format == Format::fp8_block128;
  const bool bf16_pair = args.a.format == Format::bf16 && args.b.format == Format::bf16;
  const bool bf16_nvfp4 = args.a.format == Format::bf16 && args.b.format == Format::nvfp4;
  c.require(fp8_pair || bf16_pair || bf16_nvfp4, StatusCode::unsupported, "format pair (a.format = ",
            to_string(args.a.format), ", b.format = ", to_string(args.b.format),
            ") is not supported yet; supported: (fp8_block128, fp8_block128), (bf16, bf16), (bf16, nvfp4)");
  // The nvfp4 mainloop reads the four e4m3 scales of a 64-wide K stage as one aligned word.
  c.require(!bf16_nvfp4 || args.k % 64 == 0, "k = ", args.k, " must be a multiple of 64 for nvfp4 weights");

  c.require(static_cast<int>(args.out_type) <= static_cast<int>(OutputType::fp32), "out_type: unknown value ",
            static_cast<int>(args.out_type));
  c.require(args.out_type == OutputType::bf16, StatusCode::unsupported, "out_type ", to_string(args.out_type),
            " is not supported yet; supported: bf16");
  c.require(args.out != nullptr, "out is null");
  c.require(aligned(args.out, 16), "out must be 16-byte aligned (bulk stores)");
  const int64_t out_row = int64_t(args.n) * output_bytes(args.out_type);
  c.require(out_row % 16 == 0, "n = ", args.n, " gives output rows of ", out_row,
            " bytes; the bulk stores need a multiple of 16 (n a multiple of 8 for bf16)");
  c.require(args.out_row_stride >= 0, "out_row_stride must be >= 0, got ", args.out_row_stride);
  c.require(args.out_row_stride == 0 || args.out_row_stride >= out_row, "out_row_stride = ", args.out_row_stride,
            " is smaller than one row (", out_row, " bytes)");
  c.require(args.out_row_stride % 16 == 0, "out_row_stride = ", args.out_row_stride,
            " must be a multiple of 16 bytes");
  const int64_t out_row_stride = args.out_row_stride != 0 ? args.out_row_stride : out_row;
  c.require(args.out_expert_stride >= 0, "out_expert_stride must be >= 0, got ", args.out_expert_stride);
  c.require(args.out_expert_stride == 0 || args.out_expert_stride >= out_row_stride * args.max_m,
            "out_expert_stride = ", args.out_expert_stride, " is smaller than one expert (",
            out_row_stride * args.max_m, " bytes)");
  c.require(args.out_expert_stride % 16 == 0, "out_expert_stride = ", args.out_expert_stride,
            " must be a multiple of 16 bytes");

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

  const TileConfig& cfg = args.config;
  c.require(cfg.block_m == 0 || host::is_supported_block_m(cfg.block_m), "config.block_m = ", cfg.block_m,
            " is not supported; use 0 (heuristic), 32, 64, 128 or 192");
  c.require(cfg.block_n == 0 || host::is_supported_block_n(cfg.block_n), "config.block_n = ", cfg.block_n,
            " is not supported; use 0 (heuristic), 128 or 256");
  c.require(cfg.block_m == 0 || cfg.block_n == 0 || host::is_supported_tile(cfg.block_m, cfg.block_n),
            "config.block_m = ", cfg.block_m, " with config.block_n = ", cfg.block_n,
            " is not a compiled tile; compiled: 32x128, 64x128, 128x128, 192x128, 128x256");
  c.require(cfg.stages == 0 || (cfg.stages >= host::kMinStages && cfg.stages <= host::kMaxStages),
            "config.stages = ", cfg.stages, " must be 0 (heuristic) or in [", host::kMinStages, ", ",
            host::kMaxStages, "]");

  // Tile indices are 32-bit on the device; bound them with the smallest tile.
  const int64_t max_tiles = int64_t(args.num_experts) * ((int64_t(args.max_m) + 31) / 32) *
                            ((int64_t(args.n) + 127) / 128);
  c.require(max_tiles <= std::numeric_limits<int32_t>::max() / 2, "num_experts * max_m * n is too large (",
            max_tiles, " tiles)");
  c.require(int64_t(args.num_experts) * (args.k / 128 + 1) <= std::numeric_limits<int32_t>::max(),
            "num_experts * k is too large");
  return c.status();
}

}  // namespace signalgemm
