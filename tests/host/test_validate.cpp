// Argument validation (src/host/validate.cpp): every rejection, each with its status code and a
// message naming the offending argument, plus the variations that must stay accepted.
// validate() only inspects the struct, so fake 16-byte-aligned pointers suffice and no GPU is
// needed. Each case below starts from a valid baseline and changes one thing (plus, where the
// thing needs it, the minimum that keeps every earlier check passing, e.g. null scales for bf16).
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "host/config.h"
#include "signalgemm/combine.h"
#include "signalgemm/gemm.h"
#include "signalgemm/reference.h"

namespace signalgemm {
namespace {

template <typename T = void>
T* fake(uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

// Baseline: fp8_block128 x fp8_block128, E=4, max_m=64, n=256, k=512, packed strides, bf16 out.
// Packed sizes: a and b rows are 512 bytes (fp8, k=512); out rows are 512 bytes (bf16, n=256).
// The operands' data lie far above out, so that no case's output spans reach them (out must not
// alias an operand: OutOverlapsA / OutOverlapsB).
constexpr int kExperts = 4, kMaxM = 64, kN = 256, kK = 512;
constexpr int64_t kOperandRow = 512, kOutRow = 512;
// Largest max_m and n: rounded up to a whole tile (at most 256) they still fit in int32.
constexpr int kMaxExtent = INT32_MAX - 255;
constexpr uintptr_t kAData = uintptr_t(1) << 46, kBData = uintptr_t(1) << 47;
// out lies above every small fake pointer (scales, masked_m, alpha, the workspace: what a launch
// reads or writes besides it must not overlap it) and far below a.
constexpr uintptr_t kOutData = uintptr_t(1) << 45;

GroupedGemmArgs baseline() {
  GroupedGemmArgs args;
  args.num_experts = kExperts;
  args.max_m = kMaxM;
  args.n = kN;
  args.k = kK;
  args.a = OperandArgs{Format::fp8_block128, fake(kAData), fake(0x20000), 0, 0};
  args.b = OperandArgs{Format::fp8_block128, fake(kBData), fake(0x40000), 0, 0};
  args.out = fake(kOutData);
  args.out_type = OutputType::bf16;
  args.masked_m = fake<const int32_t>(0x60000);
  return args;
}

// Turns both operands into bf16 (a valid pair without scales).
void make_bf16_pair(GroupedGemmArgs& args) {
  args.a.format = args.b.format = Format::bf16;
  args.a.scales = args.b.scales = nullptr;
}

// Turns the pair into bf16 activations x nvfp4 weights (scales only on b).
void make_bf16_nvfp4_pair(GroupedGemmArgs& args) {
  args.a.format = Format::bf16;
  args.a.scales = nullptr;
  args.b.format = Format::nvfp4;
}

using Mutation = std::function<void(GroupedGemmArgs&)>;

// True when `word` occurs in `text` as a whole token (identifier characters and '.'), so that
// "n" matches "n = 12 gives ..." but not "num_experts", and "out" does not match "out_type".
bool names(const std::string& text, const std::string& word) {
  auto is_token_char = [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
           ch == '.';
  };
  for (size_t at = text.find(word); at != std::string::npos; at = text.find(word, at + 1)) {
    const bool starts = at == 0 || !is_token_char(text[at - 1]);
    const size_t end = at + word.size();
    const bool ends = end == text.size() || !is_token_char(text[end]);
    if (starts && ends) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Baseline and general behavior

// operand_scale_bytes (what the Python module checks scale tensors against) is the size of the
// reference quantizer's scales, the documented layout, for every format, side and odd row counts.
TEST(Validate, OperandScaleBytesMatchTheQuantizer) {
  const std::vector<float> x(size_t(2) * 131 * 256, 0.5f);
  for (Format f : {Format::fp8_block128, Format::nvfp4, Format::mxfp4, Format::mxfp8, Format::bf16})
    for (ref::Role role : {ref::Role::a, ref::Role::b})
      for (int rows : {1, 5, 128, 131}) {
        const auto q = ref::quantize(f, role, x.data(), 2, rows, 256);
        EXPECT_EQ(operand_scale_bytes(f, role == ref::Role::b, 2, rows, 256), q.scales.size())
            << to_string(f) << (role == ref::Role::b ? " b" : " a") << " rows " << rows;
      }
  EXPECT_EQ(operand_scale_bytes(Format::fp8_block128, false, 0, 4, 128), 0u);
}

TEST(Validate, BaselineIsValid) {
  const Status s = validate(baseline());
  EXPECT_EQ(s.code, StatusCode::ok) << s.message;
  EXPECT_TRUE(s.message.empty()) << s.message;
}

TEST(Validate, ReportsOnlyTheFirstProblem) {
  GroupedGemmArgs args = baseline();
  args.num_experts = 0;
  args.a.data = nullptr;
  args.out = nullptr;
  const Status s = validate(args);
  EXPECT_EQ(s.code, StatusCode::invalid_argument);
  EXPECT_TRUE(names(s.message, "num_experts")) << s.message;
  EXPECT_FALSE(names(s.message, "a.data")) << s.message;
  EXPECT_FALSE(names(s.message, "out")) << s.message;
}

TEST(Validate, ReportsInvalidOperandBeforeUnsupportedPair) {
  // a.data is null and the pair (nvfp4, fp8_block128) has no mainloop: the operand check runs first.
  GroupedGemmArgs args = baseline();
  args.a.format = Format::nvfp4;
  args.a.data = nullptr;
  const Status s = validate(args);
  EXPECT_EQ(s.code, StatusCode::invalid_argument) << s.message;
  EXPECT_TRUE(names(s.message, "a.data")) << s.message;
}

// ---------------------------------------------------------------------------------------------
// Rejections, one named case per `c.require(...)` (several per require where the ways to fail differ)

struct Rejection {
  std::string name;                    // test name suffix: letters, digits, underscores
  Mutation mutate;                     // applied to baseline()
  StatusCode code;                     // expected status
  std::vector<std::string> arguments;  // each must be named as a whole token in the message
  std::string detail;                  // must appear verbatim in the message ("" = no check)
};

void PrintTo(const Rejection& r, std::ostream* os) { *os << r.name; }

Rejection reject(std::string name, Mutation mutate, std::vector<std::string> arguments, std::string detail = "",
                 StatusCode code = StatusCode::invalid_argument) {
  return Rejection{std::move(name), std::move(mutate), code, std::move(arguments), std::move(detail)};
}

Rejection unsupported(std::string name, Mutation mutate, std::vector<std::string> arguments,
                      std::string detail = "") {
  return reject(std::move(name), std::move(mutate), std::move(arguments), std::move(detail),
                StatusCode::unsupported);
}

std::vector<Rejection> problem_size_rejections() {
  return {
      reject("NumExpertsZero", [](auto& a) { a.num_experts = 0; }, {"num_experts"}, "got 0"),
      reject("NumExpertsNegative", [](auto& a) { a.num_experts = -2; }, {"num_experts"}, "got -2"),
      reject("MaxMZero", [](auto& a) { a.max_m = 0; }, {"max_m"}, "got 0"),
      reject("MaxMNegative", [](auto& a) { a.max_m = -1; }, {"max_m"}, "got -1"),
      reject("NZero", [](auto& a) { a.n = 0; }, {"n"}, "got 0"),
      reject("NNegative", [](auto& a) { a.n = -8; }, {"n"}, "got -8"),
      reject("KZero", [](auto& a) { a.k = 0; }, {"k"}, "got 0"),
      reject("KNegative", [](auto& a) { a.k = -128; }, {"k"}, "got -128"),
  };
}

// The checks of check_operand(), generated for a (rows = max_m) and for b (rows = n).
std::vector<Rejection> operand_rejections(const std::string& op, OperandArgs GroupedGemmArgs::*member,
                                          int64_t rows, uintptr_t data, uintptr_t scales) {
  const std::string P = op == "a" ? "A" : "B";  // test name prefix
  const int64_t expert = kOperandRow * rows;
  std::vector<Rejection> cases = {
      reject(P + "FormatUnknown", [=](auto& a) { (a.*member).format = static_cast<Format>(99); },
             {op + ".format"}, "unknown value 99"),
      reject(P + "FormatUnknownJustPastLast", [=](auto& a) { (a.*member).format = static_cast<Format>(5); },
             {op + ".format"}, "unknown value 5"),
      reject(P + "DataNull", [=](auto& a) { (a.*member).data = nullptr; }, {op + ".data"}, "null"),
      reject(P + "DataMisalignedBy8", [=](auto& a) { (a.*member).data = fake(data + 8); }, {op + ".data"},
             "16-byte aligned"),
      reject(P + "DataMisalignedBy1", [=](auto& a) { (a.*member).data = fake(data + 1); }, {op + ".data"},
             "16-byte aligned"),
      reject(P + "ScalesNullForFp8", [=](auto& a) { (a.*member).scales = nullptr; }, {op + ".scales"},
             "is null"),
      reject(P + "ScalesMisaligned", [=](auto& a) { (a.*member).scales = fake(scales + 4); },
             {op + ".scales"}, "16-byte aligned"),
      reject(P + "ScalesGivenForBf16",
             [=](auto& a) {
               make_bf16_pair(a);
               (a.*member).scales = fake(scales);
             },
             {op + ".scales"}, "must be null"),
      reject(P + "RowStrideNegative", [=](auto& a) { (a.*member).row_stride = -16; }, {op + ".row_stride"},
             ">= 0"),
      reject(P + "RowStrideSmallerThanRow", [=](auto& a) { (a.*member).row_stride = kOperandRow - 16; },
             {op + ".row_stride"}, "smaller than one row"),
      reject(P + "RowStrideNotMultipleOf16", [=](auto& a) { (a.*member).row_stride = kOperandRow + 8; },
             {op + ".row_stride"}, "multiple of 16"),
      reject(P + "ExpertStrideNegative", [=](auto& a) { (a.*member).expert_stride = -16; },
             {op + ".expert_stride"}, ">= 0"),
      reject(P + "ExpertStrideSmallerThanExpert", [=](auto& a) { (a.*member).expert_stride = expert - 16; },
             {op + ".expert_stride"}, "smaller than one expert"),
      // Enough for packed rows, not for the padded row stride given.
      reject(P + "ExpertStrideSmallerThanPaddedExpert",
             [=](auto& a) {
               (a.*member).row_stride = kOperandRow + 128;
               (a.*member).expert_stride = expert;
             },
             {op + ".expert_stride"}, "smaller than one expert"),
      reject(P + "ExpertStrideNotMultipleOf16", [=](auto& a) { (a.*member).expert_stride = expert + 8; },
             {op + ".expert_stride"}, "multiple of 16"),
  };
  return cases;
}

std::vector<Rejection> k_rejections() {
  return {
      reject("KNotMultipleOf128ForFp8A", [](auto& a) { a.k = 192; }, {"k", "a.format"}, "multiple of 128"),
      // a is bf16 (no K constraint), so b's scale-block check is the one that fires.
      reject("KNotMultipleOf128ForFp8B",
             [](auto& a) {
               a.a.format = Format::bf16;
               a.a.scales = nullptr;
               a.k = 192;
             },
             {"k", "b.format"}, "multiple of 128"),
      reject("KNotMultipleOf16ForNvfp4B",
             [](auto& a) {
               make_bf16_nvfp4_pair(a);
               a.k = 40;
             },
             {"k", "b.format"}, "multiple of 16"),
      // bf16 rows of k=12 elements are 24 bytes: not a TMA row.
      reject("KGivesRowsNotMultipleOf16BytesA",
             [](auto& a) {
               make_bf16_pair(a);
               a.k = 12;
             },
             {"k", "a"}, "24 bytes"),
      // k=16: 32-byte bf16 rows in a are fine, 8-byte nvfp4 rows in b are not.
      reject("KGivesRowsNotMultipleOf16BytesB",
             [](auto& a) {
               make_bf16_nvfp4_pair(a);
               a.k = 16;
             },
             {"k", "b"}, "8 bytes"),
      // k=96: a multiple of 16 (scale block) and of 32 (16-byte nvfp4 rows), so a valid shape, but
      // the nvfp4 mainloop needs a multiple of 64: unsupported, not invalid.
      unsupported("KNotMultipleOf64ForNvfp4Weights",
             [](auto& a) {
               make_bf16_nvfp4_pair(a);
               a.k = 96;
             },
             {"k"}, "multiple of 64"),
  };
}

// OperandLayout::mma_fragments: nvfp4 weights for the register-weights mainloop with bf16 tokens.
void make_fragment_weights(GroupedGemmArgs& args) {
  make_bf16_nvfp4_pair(args);
  args.b.layout = OperandLayout::mma_fragments;
}

// The same weights beside `tokens` activations that a large enough workspace converts to bf16.
void make_fragment_weights_with_converted_tokens(GroupedGemmArgs& args, Format tokens) {
  make_fragment_weights(args);
  args.a.format = tokens;
  args.a.scales = fake(0x20000);
  args.workspace = fake(0x70000);
  args.workspace_bytes = size_t(args.num_experts) * args.max_m * args.k * 2;
}

std::vector<Rejection> layout_rejections() {
  return {
      reject("ALayoutFragments", [](auto& a) { a.a.layout = OperandLayout::mma_fragments; }, {"a.layout"}, "rows"),
      reject("BLayoutUnknown", [](auto& a) { a.b.layout = static_cast<OperandLayout>(7); }, {"b.layout"},
             "unknown value 7"),
      unsupported("FragmentsNeedFp4Weights",
                  [](auto& a) {
                    make_fragment_weights(a);
                    a.b.format = Format::mxfp8;
                  },
                  {"b.layout", "b.format"}, "mxfp8"),
      reject("FragmentsHaveNoRowStride",
             [](auto& a) {
               make_fragment_weights(a);
               a.b.row_stride = a.k;
             },
             {"b.row_stride", "b.expert_stride"}, "must be 0"),
      unsupported("FragmentsWithFp8TokensWithoutWorkspace",
                  [](auto& a) {
                    make_fragment_weights(a);
                    a.a.format = Format::fp8_block128;
                    a.a.scales = fake(0x20000);
                  },
                  {"b.layout", "a.format"}, "fp8_block128 without a workspace"),
      unsupported("FragmentsWithFp8TokensOnADequantizingTile",
                  [](auto& a) {
                    make_fragment_weights_with_converted_tokens(a, Format::fp8_block128);
                    a.config = TileConfig{64, 128, 0};
                  },
                  {"b.layout", "fp8_block128"}, "64x128"),
      unsupported("FragmentsWithNvfp4TokensWithoutWorkspace",
                  [](auto& a) {
                    make_fragment_weights(a);
                    a.a.format = Format::nvfp4;
                    a.a.scales = fake(0x20000);
                  },
                  {"b.layout", "a.format"}, "without a workspace"),
      // A workspace too small is an invalid argument, named as one.
      reject("FragmentsWithNvfp4TokensAndAShortWorkspace",
             [](auto& a) {
               make_fragment_weights_with_converted_tokens(a, Format::nvfp4);
               a.workspace_bytes -= 16;
             },
             {"workspace_bytes"}, "too small"),
      // Tensor maps stride one expert by less than 2^40 bytes: the launcher's own ones too (the converted
      // activations: max_m x k bf16; the fragment-ordered weights), checked before anything is enqueued.
      reject("ConvertedActivationsOfAnExpertPastTheTmaStride",
             [](auto& a) {
               make_fragment_weights_with_converted_tokens(a, Format::nvfp4);
               a.b.layout = OperandLayout::rows;
               a.b.format = Format::nvfp4;
               a.num_experts = 1;
               a.max_m = 1 << 20;
               a.k = 1 << 19;
               a.workspace_bytes = size_t(a.max_m) * a.k * 2;
             },
             {"max_m", "k"}, "not below the TMA limit of 2^40 bytes"),
      reject("FragmentWeightsOfAnExpertPastTheTmaStride",
             [](auto& a) {
               make_fragment_weights(a);
               a.num_experts = 1;
               a.n = 131064;
               a.k = 1 << 24;
             },
             {"b.layout", "n", "k"}, "not below the TMA limit of 2^40 bytes"),
  };
}

std::vector<Rejection> format_pair_rejections() {
  return {
      unsupported("PairNvfp4Fp8", [](auto& a) { a.a.format = Format::nvfp4; }, {"a.format", "b.format"},
                  "nvfp4"),
      // Mixed block-scaled pairs have no mainloop (mxfp8 x mxfp8 etc. do: accepted below).
      unsupported("PairMxfp8Nvfp4",
                  [](auto& a) {
                    a.a.format = Format::mxfp8;
                    a.b.format = Format::nvfp4;
                  },
                  {"a.format", "b.format"}, "not supported yet"),
      unsupported("PairMxfp8Mxfp4",
                  [](auto& a) {
                    a.a.format = Format::mxfp8;
                    a.b.format = Format::mxfp4;
                  },
                  {"a.format", "b.format"}, "mxfp8"),
      unsupported("PairMxfp4Nvfp4",
                  [](auto& a) {
                    a.a.format = Format::mxfp4;
                    a.b.format = Format::nvfp4;
                  },
                  {"a.format", "b.format"}, "mxfp4"),
      unsupported("PairMxfp4Bf16",
                  [](auto& a) {
                    a.a.format = Format::mxfp4;
                    a.b.format = Format::bf16;
                    a.b.scales = nullptr;
                  },
                  {"a.format", "b.format"}, "mxfp4"),
      // k = 32 is a whole MX scale block, but the dequantizing mainloop works in 64-K stages.
      reject("KTooLargeForConvertedActivations",
             [](auto& a) {
               a.a.format = a.b.format = Format::mxfp8;
               a.k = 1 << 27;  // rows of 2^27 bytes pass; their bf16 conversion has 2^31 bits
             },
             {"k", "mxfp8"}, "converted to bf16"),
      unsupported("KNotMultipleOf64ForMxPair",
                  [](auto& a) {
                    a.a.format = a.b.format = Format::mxfp8;
                    a.k = 96;
                    a.a.row_stride = a.b.row_stride = 0;
                  },
                  {"k"}, "multiple of 64"),
      unsupported("OutTypeFp16WithFp8TokensNvfp4Weights",
                  [](auto& a) {
                    a.b.format = Format::nvfp4;
                    a.out_type = OutputType::fp16;
                  },
                  {"out_type"}, "fp8_block128 activations x nvfp4"),
      unsupported("Fp8Nvfp4Tile128x256",
                  [](auto& a) {
                    a.b.format = Format::nvfp4;
                    a.config = TileConfig{128, 256, 0};
                  },
                  {"config.block_m", "config.block_n"}, "not compiled"),
      unsupported("PairFp8Bf16",
                  [](auto& a) {
                    a.b.format = Format::bf16;
                    a.b.scales = nullptr;
                  },
                  {"a.format", "b.format"}, "not supported yet"),
      unsupported("PairBf16Fp8",
                  [](auto& a) {
                    a.a.format = Format::bf16;
                    a.a.scales = nullptr;
                  },
                  {"a.format", "b.format"}, "not supported yet"),
  };
}

std::vector<Rejection> output_rejections() {
  const int64_t out_expert = kOutRow * kMaxM;
  return {
      reject("OutTypeUnknown", [](auto& a) { a.out_type = static_cast<OutputType>(99); }, {"out_type"},
             "unknown value 99"),
      unsupported("OutTypeFp32", [](auto& a) { a.out_type = OutputType::fp32; }, {"out_type"}, "bf16, fp16"),
      reject("OutNull", [](auto& a) { a.out = nullptr; }, {"out"}, "null"),
      reject("OutMisaligned", [](auto& a) { a.out = fake(kOutData + 8); }, {"out"}, "16-byte aligned"),
      // out's last row ends 16 bytes into a (OutEndsWhereABegins is accepted).
      reject("OutOverlapsA", [](auto& a) { a.out = fake(kAData - int64_t(kExperts) * kMaxM * kOutRow + 16); },
             {"out", "a.data"}, "must not alias"),
      reject("OutOverlapsB", [](auto& a) { a.out = fake(kBData + 1024); }, {"out", "b.data"}, "must not alias"),
      reject("OutOverlapsBScales", [](auto& a) { a.b.scales = fake(kOutData + 4096); }, {"out", "b.scales"},
             "must not alias"),
      reject("OutOverlapsMaskedM", [](auto& a) { a.masked_m = fake<const int32_t>(kOutData + 64); },
             {"out", "masked_m"}, "must not alias"),
      reject("OutOverlapsAlpha", [](auto& a) { a.alpha = fake<const float>(kOutData + 64); }, {"out", "alpha"},
             "must not alias"),
      reject("WorkspaceOverlapsA", [](auto& a) { a.workspace = fake(kAData - 16), a.workspace_bytes = 32; },
             {"workspace", "a.data"}, "must not alias"),
      reject("WorkspaceOverlapsOut", [](auto& a) { a.workspace = fake(kOutData + 1024), a.workspace_bytes = 64; },
             {"out", "workspace"}, "must not alias"),
      // Signals and the error flag are written too (atomics): a counter over masked_m would change the
      // tiles the CTAs walk while they read it.
      reject("SignalsOverlapMaskedM",
             [](auto& a) {
               a.signals = fake<uint32_t>(0x60000);
               a.granularity = SignalGranularity::per_expert;
             },
             {"signals", "masked_m"}, "must not alias"),
      reject("PerRowBlockSignalsOverlapOut",
             [](auto& a) {
               a.signals = fake<uint32_t>(kOutData + 64);
               a.granularity = SignalGranularity::per_row_block;
             },
             {"out", "signals"}, "must not alias"),
      reject("ErrorFlagOverlapsA", [](auto& a) { a.error_flag = fake<int32_t>(kAData + 16); },
             {"error_flag", "a.data"}, "must not alias"),
      reject("OutOverlapsOutRows", [](auto& a) { a.out_rows = fake<void* const>(kOutData + 64); },
             {"out", "out_rows"}, "must not alias"),
      reject("OutRowsMisaligned", [](auto& a) { a.out_rows = fake<void* const>(0x70004); }, {"out_rows"},
             "8-byte aligned"),
      // n=12 bf16 outputs are 24-byte rows.
      reject("NGivesOutputRowsNotMultipleOf16Bytes", [](auto& a) { a.n = 12; }, {"n"}, "24 bytes"),
      reject("OutRowStrideNegative", [](auto& a) { a.out_row_stride = -16; }, {"out_row_stride"}, ">= 0"),
      reject("OutRowStrideSmallerThanRow", [](auto& a) { a.out_row_stride = kOutRow - 16; }, {"out_row_stride"},
             "smaller than one row"),
      reject("OutRowStrideNotMultipleOf16", [](auto& a) { a.out_row_stride = kOutRow + 8; }, {"out_row_stride"},
             "multiple of 16"),
      reject("OutExpertStrideNegative", [](auto& a) { a.out_expert_stride = -16; }, {"out_expert_stride"},
             ">= 0"),
      reject("OutExpertStrideSmallerThanExpert", [=](auto& a) { a.out_expert_stride = out_expert - 16; },
             {"out_expert_stride"}, "smaller than one expert"),
      reject("OutExpertStrideSmallerThanPaddedExpert",
             [=](auto& a) {
               a.out_row_stride = kOutRow + 128;
               a.out_expert_stride = out_expert;
             },
             {"out_expert_stride"}, "smaller than one expert"),
      reject("OutExpertStrideNotMultipleOf16", [=](auto& a) { a.out_expert_stride = out_expert + 8; },
             {"out_expert_stride"}, "multiple of 16"),
  };
}

std::vector<Rejection> pointer_and_signal_rejections() {
  return {
      reject("MaskedMNull", [](auto& a) { a.masked_m = nullptr; }, {"masked_m"}, "null"),
      reject("MaskedMMisaligned", [](auto& a) { a.masked_m = fake<const int32_t>(0x60002); }, {"masked_m"},
             "4-byte aligned"),
      reject("AlphaMisaligned", [](auto& a) { a.alpha = fake<const float>(0x70001); }, {"alpha"},
             "4-byte aligned"),
      reject("ErrorFlagMisaligned", [](auto& a) { a.error_flag = fake<int32_t>(0x80002); }, {"error_flag"},
             "4-byte aligned"),
      reject("WorkspaceMisaligned", [](auto& a) { a.workspace = fake(0x90008); }, {"workspace"},
             "16-byte aligned"),
      // nvfp4 activations converted to bf16: 4 x 64 x 512 x 2 bytes.
      reject("WorkspaceTooSmall",
             [](auto& a) {
               a.a.format = a.b.format = Format::nvfp4;
               a.workspace = fake(0x90000);
               a.workspace_bytes = size_t(kExperts) * kMaxM * kK * 2 - 1;
             },
             {"workspace_bytes"}, "262144 bytes"),
      reject("WorkspaceTooSmallForTheTileCounter",
             [](auto& a) {
               a.workspace = fake(0x90000);
               a.workspace_bytes = 8;
             },
             {"workspace_bytes"}, "tile counter"),
      reject("GranularityUnknown", [](auto& a) { a.granularity = static_cast<SignalGranularity>(9); },
             {"granularity"}, "unknown value 9"),
      reject("ScopeUnknown", [](auto& a) { a.scope = static_cast<SignalScope>(5); }, {"scope"},
             "unknown value 5"),
      reject("PerExpertGranularityWithoutSignals", [](auto& a) { a.granularity = SignalGranularity::per_expert; },
             {"granularity", "signals"}, "per_expert"),
      reject("PerRowBlockGranularityWithoutSignals",
             [](auto& a) { a.granularity = SignalGranularity::per_row_block; }, {"granularity", "signals"},
             "per_row_block"),
      reject("SignalsWithoutGranularity", [](auto& a) { a.signals = fake<uint32_t>(0x90000); },
             {"signals", "granularity"}, "none"),
      reject("SignalsMisaligned",
             [](auto& a) {
               a.signals = fake<uint32_t>(0x90002);
               a.granularity = SignalGranularity::per_expert;
             },
             {"signals"}, "4-byte aligned"),
  };
}

std::vector<Rejection> hint_and_config_rejections() {
  return {
      reject("SmCountNegative", [](auto& a) { a.sm_count = -1; }, {"sm_count"}, "got -1"),
      reject("ExpectedMNegative", [](auto& a) { a.expected_m = -1; }, {"expected_m"}, "got -1"),
      reject("ConfigBlockM48", [](auto& a) { a.config.block_m = 48; }, {"config.block_m"}, "48"),
      reject("ConfigBlockM48WithBlockN128",
             [](auto& a) {
               make_bf16_nvfp4_pair(a);
               a.config = TileConfig{48, 128, 0};
             },
             {"config.block_m"}, "also 48"),
      reject("ConfigBlockM256", [](auto& a) { a.config.block_m = 256; }, {"config.block_m"}, "256"),
      reject("ConfigBlockMNegative", [](auto& a) { a.config.block_m = -32; }, {"config.block_m"}, "-32"),
      reject("ConfigBlockN64", [](auto& a) { a.config.block_n = 64; }, {"config.block_n"}, "64"),
      reject("ConfigTile32x256NotCompiled", [](auto& a) { a.config = TileConfig{32, 256, 0}; },
             {"config.block_m", "config.block_n"}, "not a compiled tile"),
      reject("ConfigTile192x256NotCompiled", [](auto& a) { a.config = TileConfig{192, 256, 0}; },
             {"config.block_m", "config.block_n"}, "not a compiled tile"),
      reject("ConfigTokenRowsTileBf16",
             [](auto& a) {
               make_bf16_pair(a);
               a.config = TileConfig{128, 192, 0};
             },
             {"config.block_n"}, "192"),
      reject("ConfigTokenRowsTileBlockM64", [](auto& a) { a.config = TileConfig{64, 192, 0}; }, {"config.block_n"},
             "block_m = 0 or 128"),
      reject("ConfigTokenRowsTileInCluster", [](auto& a) { a.config = TileConfig{128, 192, 0, 2}; },
             {"config.cluster"}, "128x128 and 128x256 tiles only"),
      reject("ConfigStagesBelowMin", [](auto& a) { a.config.stages = host::kMinStages - 1; }, {"config.stages"},
             "= " + std::to_string(host::kMinStages - 1)),
      reject("ConfigStagesAboveMax", [](auto& a) { a.config.stages = host::kMaxStages + 1; }, {"config.stages"},
             "= " + std::to_string(host::kMaxStages + 1)),
      reject("ConfigStagesNegative", [](auto& a) { a.config.stages = -1; }, {"config.stages"}, "-1"),
      // In range, but 16 stages of 192x128 do not fit in shared memory: the launch could never run.
      reject("ConfigStagesThatDoNotFitTheTile", [](auto& a) { a.config = TileConfig{192, 128, host::kMaxStages}; },
             {"config.stages"}, "does not fit in shared memory"),
      // fp8_block128 activations x FP4 weights have no tile of 192 tokens (a partial tile is completed
      // by the heuristic; this side has no compiled tile at all).
      unsupported("ConfigOnlyBlockMWithoutACompiledTile",
                  [](auto& a) {
                    make_bf16_nvfp4_pair(a);
                    a.a.format = Format::fp8_block128;
                    a.a.scales = fake(0x20000);
                    a.config.block_m = 192;
                  },
                  {"config.block_m"}, "no compiled tile"),
      reject("ConfigCluster3", [](auto& a) { a.config.cluster = 3; }, {"config.cluster"}, "= 3"),
      reject("ConfigClusterNegative", [](auto& a) { a.config.cluster = -1; }, {"config.cluster"}, "-1"),
      reject("ConfigCluster2Tile64x128", [](auto& a) { a.config = TileConfig{64, 128, 0, 2}; }, {"config.cluster"},
             "128x128 and 128x256 tiles only"),
      reject("ConfigCluster2Bf16",
             [](auto& a) {
               make_bf16_pair(a);
               a.config.cluster = 2;
             },
             {"config.cluster"}, "fp8_block128"),
  };
}

std::vector<Rejection> overflow_rejections() {
  return {
      // 1024 experts x 1024 row blocks of 32 x 1024 column blocks of 128 = 2^30 tiles > INT32_MAX / 2.
      reject("TooManyTiles",
             [](auto& a) {
               a.num_experts = 1024;
               a.max_m = 32768;
               a.n = 131072;
             },
             {"num_experts", "max_m", "n"}, "too large"),
      // 2^29 tiles pass the tile bound; 2^29 experts x (1024 / 128 + 1) K blocks exceed INT32_MAX.
      reject("NumExpertsTimesKTooLarge",
             [](auto& a) {
               a.num_experts = 1 << 29;
               a.max_m = 32;
               a.n = 128;
               a.k = 1024;
             },
             {"num_experts", "k"}, "too large"),
      // The product 16384 x (2^26 - 8) x (2^24 - 2) wraps int64 to a negative count, which passed
      // before the factors were multiplied with overflow checks.
      reject("TileCountOverflowsInt64",
             [](auto& a) {
               a.num_experts = 16384;
               a.max_m = kMaxExtent;
               a.n = kMaxExtent;
               a.k = 128;
             },
             {"num_experts", "max_m", "n"}, "more than 2^63"),
      // 4096 experts x 512 x 1024 blocks of 128x128 = 2^31 fp8_block128 weight scales: past the int32
      // TMA coordinate that loads them.
      reject("WeightScalesPastInt32",
             [](auto& a) {
               a.num_experts = 4096;
               a.n = 1 << 16;
               a.k = 1 << 17;
             },
             {"b.scales"}, "more than 2^31 - 1"),
      // Rounding max_m or n up to a whole tile would overflow int32 (SignalLayout::row_blocks_per_expert).
      reject("MaxMInt32Max", [](auto& a) { a.max_m = INT32_MAX; }, {"max_m"}, "too large"),
      reject("MaxMJustAboveExtentLimit", [](auto& a) { a.max_m = kMaxExtent + 1; }, {"max_m"}, "too large"),
      reject("NInt32Max", [](auto& a) { a.n = 2147483640; }, {"n"}, "too large"),
      // bf16 rows of k = 2^27 elements are 2^31 bits: the launcher's int row size would overflow.
      reject("KRowBitsOverflowInt32",
             [](auto& a) {
               make_bf16_pair(a);
               a.num_experts = 1;
               a.k = 1 << 27;
             },
             {"k", "a.format"}, "too large"),
      // TMA takes strides below 2^40 bytes; 1 << 60 with expert_stride 16 passed before (the expert
      // size wrapped to 0).
      reject("ARowStrideAboveTmaLimit",
             [](auto& a) {
               a.a.row_stride = int64_t(1) << 60;
               a.a.expert_stride = 16;
             },
             {"a.row_stride"}, "2^40"),
      reject("BExpertStrideAboveTmaLimit", [](auto& a) { a.b.expert_stride = int64_t(1) << 40; },
             {"b.expert_stride"}, "2^40"),
      // Packed experts of 2^25 rows x 2^15 bytes are 2^40 bytes: the derived stride is over the limit.
      reject("APackedExpertStrideAboveTmaLimit",
             [](auto& a) {
               a.max_m = 1 << 25;
               a.a.row_stride = 1 << 15;
             },
             {"a.expert_stride"}, "(packed)"),
      // Row stride 2^39 (within the TMA limit) x 2^25 rows = 2^64: wrapped to 0 before.
      reject("ARowStrideTimesMaxMOverflows",
             [](auto& a) {
               a.max_m = 1 << 25;
               a.a.row_stride = int64_t(1) << 39;
               a.a.expert_stride = 16;
             },
             {"a.row_stride"}, "overflows"),
      reject("BRowStrideTimesNOverflows",
             [](auto& a) {
               a.n = 1 << 25;
               a.b.row_stride = int64_t(1) << 39;
               a.b.expert_stride = 16;
             },
             {"b.row_stride"}, "overflows"),
      // 2^24 experts x 2^39-byte expert stride = 2^63 bytes: not addressable.
      reject("AExpertStrideTimesNumExpertsOverflows",
             [](auto& a) {
               a.num_experts = 1 << 24;
               a.a.expert_stride = int64_t(1) << 39;
             },
             {"num_experts", "a.expert_stride"}, "overflows"),
      // out_row_stride 2^60 x 64 rows = 2^66: wrapped to 0 before, so out_expert_stride = 16 passed.
      reject("OutRowStrideTimesMaxMOverflows",
             [](auto& a) {
               a.out_row_stride = int64_t(1) << 60;
               a.out_expert_stride = 16;
             },
             {"out_row_stride", "max_m"}, "overflows"),
      // 4 experts x 2^62 bytes: the epilogue's e * out_expert_stride would wrap.
      reject("OutExpertStrideTimesNumExpertsOverflows",
             [](auto& a) { a.out_expert_stride = int64_t(1) << 62; }, {"num_experts", "out_expert_stride"},
             "overflows"),
  };
}

std::vector<Rejection> all_rejections() {
  std::vector<Rejection> all;
  auto add = [&](std::vector<Rejection> more) {
    for (auto& r : more) all.push_back(std::move(r));
  };
  add(problem_size_rejections());
  add(operand_rejections("a", &GroupedGemmArgs::a, kMaxM, 0x10000, 0x20000));
  add(operand_rejections("b", &GroupedGemmArgs::b, kN, 0x30000, 0x40000));
  add(k_rejections());
  add(format_pair_rejections());
  add(layout_rejections());
  add(output_rejections());
  add(pointer_and_signal_rejections());
  add(hint_and_config_rejections());
  add(overflow_rejections());
  return all;
}

class ValidateRejects : public ::testing::TestWithParam<Rejection> {};

TEST_P(ValidateRejects, WithCodeAndArgumentName) {
  const Rejection& r = GetParam();
  GroupedGemmArgs args = baseline();
  r.mutate(args);
  const Status s = validate(args);
  EXPECT_EQ(s.code, r.code) << r.name << ": message \"" << s.message << "\"";
  EXPECT_EQ(s.message.rfind("signalgemm: ", 0), 0u) << r.name << ": message \"" << s.message << "\"";
  for (const std::string& argument : r.arguments)
    EXPECT_TRUE(names(s.message, argument))
        << r.name << ": message \"" << s.message << "\" does not name " << argument;
  EXPECT_NE(s.message.find(r.detail), std::string::npos)
      << r.name << ": message \"" << s.message << "\" lacks \"" << r.detail << "\"";
  // load_kernels checks its arguments as the launch does, before it touches any device.
  EXPECT_EQ(load_kernels(args).message, s.message) << r.name;
}

INSTANTIATE_TEST_SUITE_P(Validate, ValidateRejects, ::testing::ValuesIn(all_rejections()),
                         [](const ::testing::TestParamInfo<Rejection>& info) { return info.param.name; });

// ---------------------------------------------------------------------------------------------
// Variations that must be accepted

struct Acceptance {
  std::string name;
  Mutation mutate;
};

void PrintTo(const Acceptance& a, std::ostream* os) { *os << a.name; }

std::vector<Acceptance> all_acceptances() {
  return {
      {"Baseline", [](auto&) {}},
      {"PackedStridesGivenExplicitly",
       [](auto& a) {
         a.a.row_stride = kOperandRow, a.a.expert_stride = kOperandRow * kMaxM;
         a.b.row_stride = kOperandRow, a.b.expert_stride = kOperandRow * kN;
         a.out_row_stride = kOutRow, a.out_expert_stride = kOutRow * kMaxM;
       }},
      {"PaddedARowStride", [](auto& a) { a.a.row_stride = kOperandRow + 128; }},
      {"PaddedAStrides",
       [](auto& a) { a.a.row_stride = kOperandRow + 64, a.a.expert_stride = (kOperandRow + 64) * kMaxM + 1024; }},
      {"PaddedAExpertStrideOnly", [](auto& a) { a.a.expert_stride = kOperandRow * kMaxM + 16; }},
      {"PaddedBStrides", [](auto& a) { a.b.row_stride = 1024, a.b.expert_stride = 1024 * kN; }},
      {"PaddedOutStrides", [](auto& a) { a.out_row_stride = 1024, a.out_expert_stride = 1024 * kMaxM; }},
      {"OutTypeFp16", [](auto& a) { a.out_type = OutputType::fp16; }},
      {"OutEndsWhereABegins", [](auto& a) { a.out = fake(kAData - int64_t(kExperts) * kMaxM * kOutRow); }},
      {"OutRowsInsteadOfOut", [](auto& a) { a.out = nullptr, a.out_rows = fake<void* const>(0x70000); }},
      {"SmCountZero", [](auto& a) { a.sm_count = 0; }},
      {"SmCountOne", [](auto& a) { a.sm_count = 1; }},
      {"SmCount132", [](auto& a) { a.sm_count = 132; }},
      {"ExpectedMHint", [](auto& a) { a.expected_m = 7; }},
      {"PerRowBlockSignals",
       [](auto& a) {
         a.signals = fake<uint32_t>(0x90000);
         a.granularity = SignalGranularity::per_row_block;
       }},
      {"PerExpertSignalsSysScope",
       [](auto& a) {
         a.signals = fake<uint32_t>(0x90004);  // counters need 4-byte alignment only
         a.granularity = SignalGranularity::per_expert;
         a.scope = SignalScope::sys;
       }},
      {"FourByteAlignedDevicePointers",
       [](auto& a) {
         a.masked_m = fake<const int32_t>(0x60004);
         a.alpha = fake<const float>(0x70004);
         a.error_flag = fake<int32_t>(0x80004);
       }},
      {"ConfigOverride32x128x4", [](auto& a) { a.config = TileConfig{32, 128, 4}; }},
      {"ConfigOverride128x256MinStages", [](auto& a) { a.config = TileConfig{128, 256, host::kMinStages}; }},
      {"ConfigTokenRows128x192", [](auto& a) { a.config = TileConfig{128, 192, 0}; }},
      {"ConfigOnlyBlockM", [](auto& a) { a.config.block_m = 64; }},
      {"ConfigOnlyBlockN", [](auto& a) { a.config.block_n = 256; }},
      // A side only one compiled tile has, given alone: the launch completes it (128x192, 48x256).
      {"ConfigOnlyBlockN192", [](auto& a) { a.config.block_n = 192; }},
      {"Bf16Nvfp4PairOnlyBlockM48",
       [](auto& a) {
         make_bf16_nvfp4_pair(a);
         a.config.block_m = 48;
       }},
      {"ConfigOnlyStages", [](auto& a) { a.config.stages = 3; }},
      {"ConfigCluster2", [](auto& a) { a.config = TileConfig{128, 256, 0, 2}; }},
      {"ConfigCluster2Heuristic", [](auto& a) { a.config.cluster = 2; }},
      {"ConfigCluster1", [](auto& a) { a.config = TileConfig{128, 256, 3, 1}; }},
      {"Bf16Pair", [](auto& a) { make_bf16_pair(a); }},
      {"Bf16PairKMultipleOf8Only",
       [](auto& a) {
         make_bf16_pair(a);
         a.k = 520;
       }},
      {"Bf16Nvfp4Pair", [](auto& a) { make_bf16_nvfp4_pair(a); }},
      {"Mxfp8PairWithWorkspace",
       [](auto& a) {
         a.a.format = a.b.format = Format::mxfp8;
         a.workspace = fake(0x90000);
         a.workspace_bytes = activation_workspace_bytes(a);
       }},
      // Pairings that convert nothing keep the dynamic scheduler's tile counter in a workspace.
      {"Fp8PairWithTileCounterWorkspace",
       [](auto& a) {
         a.workspace = fake(0x90000);
         a.workspace_bytes = workspace_bytes(a);
       }},
      // The dequantizing mainloop's pairings (mainloop_dequant_bf16.cuh).
      {"Mxfp8Mxfp8Pair", [](auto& a) { a.a.format = a.b.format = Format::mxfp8; }},
      {"Mxfp4Mxfp4Pair", [](auto& a) { a.a.format = a.b.format = Format::mxfp4; }},
      {"Nvfp4Nvfp4Pair", [](auto& a) { a.a.format = a.b.format = Format::nvfp4; }},
      {"Bf16Mxfp4Pair",
       [](auto& a) {
         make_bf16_nvfp4_pair(a);
         a.b.format = Format::mxfp4;
       }},
      {"Bf16Mxfp8Pair",
       [](auto& a) {
         make_bf16_nvfp4_pair(a);
         a.b.format = Format::mxfp8;
       }},
      {"Fp8Nvfp4Pair128x128", [](auto& a) {
         a.b.format = Format::nvfp4;
         a.config = TileConfig{128, 128, 0};
       }},
      {"Fp8Mxfp4Pair", [](auto& a) { a.b.format = Format::mxfp4; }},
      {"Nvfp4FragmentWeights", [](auto& a) { make_fragment_weights(a); }},
      {"Mxfp4FragmentWeights",
       [](auto& a) {
         make_fragment_weights(a);
         a.b.format = Format::mxfp4;
       }},
      {"Fp8TokensWithFragmentWeightsAndWorkspace",
       [](auto& a) { make_fragment_weights_with_converted_tokens(a, Format::fp8_block128); }},
      {"Nvfp4FragmentWeightsWithConvertedTokens",
       [](auto& a) { make_fragment_weights_with_converted_tokens(a, Format::nvfp4); }},
      // The decode tiles the heuristic picks for register weights may be given too.
      {"Bf16Nvfp4Pair48x256",
       [](auto& a) {
         make_bf16_nvfp4_pair(a);
         a.config = TileConfig{48, 256, 0};
       }},
      {"Bf16Mxfp8Pair64x256",
       [](auto& a) {
         make_bf16_nvfp4_pair(a);
         a.b.format = Format::mxfp8;
         a.config = TileConfig{64, 256, 0};
       }},
      {"Fp8Nvfp4Pair32x256", [](auto& a) {
         a.b.format = Format::nvfp4;
         a.config = TileConfig{32, 256, 0};
       }},
      {"Fp8TokensWithFragmentWeights48x256",
       [](auto& a) {
         make_fragment_weights_with_converted_tokens(a, Format::fp8_block128);
         a.config = TileConfig{48, 256, 0};
       }},
      {"Mxfp8Mxfp8Pair64x256",
       [](auto& a) {
         a.a.format = a.b.format = Format::mxfp8;
         a.config = TileConfig{64, 256, 0};
       }},
      {"Bf16Nvfp4PairSmallestK",
       [](auto& a) {
         make_bf16_nvfp4_pair(a);
         a.k = 64;
       }},
      {"SmallestProblem",
       [](auto& a) {
         a.num_experts = 1, a.max_m = 1, a.n = 8, a.k = 128;
       }},
      {"MaxMAtExtentLimit",
       [](auto& a) {
         a.num_experts = 1;
         a.max_m = kMaxExtent;
         a.n = 128;
       }},
      {"StridesJustBelowTmaLimit",
       [](auto& a) {
         a.num_experts = 1;
         a.a.row_stride = (int64_t(1) << 40) - 16;
         a.a.expert_stride = (int64_t(1) << 40) - 16;
         a.max_m = 1;
       }},
      // 1024 x 1024 x 1023 tiles: just under the INT32_MAX / 2 bound.
      {"TilesJustBelowLimit",
       [](auto& a) {
         a.num_experts = 1024;
         a.max_m = 32768;
         a.n = 131072 - 128;
       }},
  };
}

class ValidateAccepts : public ::testing::TestWithParam<Acceptance> {};

TEST_P(ValidateAccepts, Variation) {
  const Acceptance& c = GetParam();
  GroupedGemmArgs args = baseline();
  c.mutate(args);
  const Status s = validate(args);
  EXPECT_EQ(s.code, StatusCode::ok) << c.name << ": " << s.message;
}

INSTANTIATE_TEST_SUITE_P(Validate, ValidateAccepts, ::testing::ValuesIn(all_acceptances()),
                         [](const ::testing::TestParamInfo<Acceptance>& info) { return info.param.name; });

// The planning helpers' checks (validate_sizes: signal_layout, workspace_bytes) refuse the k a
// launch would refuse (a scale-block multiple, whole 16-byte rows); k = 0 means not known.
TEST(ValidateSizes, RefusesTheKALaunchWould) {
  GroupedGemmArgs args;
  args.num_experts = 4, args.max_m = 64, args.n = 256;
  for (const int k : {0, 128, 7168}) {
    args.k = k;
    EXPECT_TRUE(validate_sizes(args).ok()) << k << ": " << validate_sizes(args).message;
  }
  for (const int k : {64, 200}) {
    args.k = k;
    const Status s = validate_sizes(args);
    EXPECT_EQ(s.code, StatusCode::invalid_argument) << k;
    EXPECT_TRUE(names(s.message, "k") && s.message.find("multiple of 128") != std::string::npos) << s.message;
  }
  make_bf16_nvfp4_pair(args);
  args.k = 40;
  EXPECT_NE(validate_sizes(args).message.find("multiple of 16"), std::string::npos) << validate_sizes(args).message;
  make_bf16_pair(args);
  args.k = 4;  // 8-byte rows
  EXPECT_NE(validate_sizes(args).message.find("TMA needs a multiple of 16"), std::string::npos);
}

// ... and the layouts and output types a launch refuses by format alone, so that signal_layout never
// answers for a launch that cannot run.
TEST(ValidateSizes, RefusesLayoutsAndOutputTypesALaunchWould) {
  GroupedGemmArgs args;
  args.num_experts = 4, args.max_m = 64, args.n = 256, args.k = 256;
  make_bf16_nvfp4_pair(args);
  args.b.layout = OperandLayout::mma_fragments;
  EXPECT_TRUE(validate_sizes(args).ok()) << validate_sizes(args).message;
  args.b.format = Format::mxfp8;
  Status s = validate_sizes(args);
  EXPECT_EQ(s.code, StatusCode::unsupported);
  EXPECT_TRUE(names(s.message, "b.layout") && s.message.find("nvfp4 or mxfp4") != std::string::npos) << s.message;
  args = GroupedGemmArgs{};
  args.num_experts = 4, args.max_m = 64, args.n = 256, args.k = 256;
  args.a.layout = OperandLayout::mma_fragments;
  EXPECT_TRUE(names(validate_sizes(args).message, "a.layout")) << validate_sizes(args).message;
  args.a.layout = OperandLayout::rows;
  args.out_type = OutputType::fp32;
  s = validate_sizes(args);
  EXPECT_EQ(s.code, StatusCode::unsupported);
  EXPECT_TRUE(names(s.message, "out_type")) << s.message;
  args.out_type = OutputType::fp16;
  args.b.format = Format::nvfp4;  // fp8_block128 tokens x FP4 weights: bf16 output only
  s = validate_sizes(args);
  EXPECT_TRUE(names(s.message, "out_type") && s.message.find("fp16") != std::string::npos) << s.message;
}

// The error-flag bits a host reads back after a launch or a combine are host constants (this file
// is compiled by the host compiler alone) and distinct bits, so one flag can carry several.
TEST(ErrorFlags, DistinctBitsVisibleToHostCode) {
  constexpr int32_t bits[] = {kErrorMaskedMOutOfRange, kErrorSignalTimeout, kErrorInvalidRouting};
  int32_t seen = 0;
  for (const int32_t bit : bits) {
    EXPECT_EQ(bit & (bit - 1), 0) << bit << " is not a single bit";
    EXPECT_EQ(seen & bit, 0) << bit << " is used twice";
    seen |= bit;
  }
}

}  // namespace
}  // namespace signalgemm
