// Argument validation: every rejection, each naming the offending argument. validate() only
// inspects the struct, so fake (aligned) pointers suffice and no GPU is needed.
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "signalgemm/gemm.h"

namespace signalgemm {
namespace {

template <typename T = void>
T* fake(uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

GroupedGemmArgs valid_args() {
  GroupedGemmArgs a;
  a.num_experts = 4, a.max_m = 64, a.n = 256, a.k = 512;
  a.a = OperandArgs{Format::fp8_block128, fake(0x10000), fake(0x20000), 0, 0};
  a.b = OperandArgs{Format::fp8_block128, fake(0x30000), fake(0x40000), 0, 0};
  a.out = fake(0x50000);
  a.masked_m = fake<const int32_t>(0x60000);
  a.alpha = fake<const float>(0x70000);
  return a;
}

struct Rejection {
  const char* name;
  std::function<void(GroupedGemmArgs&)> mutate;
  const char* argument;  // must appear in the message
  StatusCode code = StatusCode::invalid_argument;
};

TEST(Validate, BaselineIsValid) {
  const Status s = validate(valid_args());
  EXPECT_TRUE(s.ok()) << s.message;
}

TEST(Validate, EveryRejectionNamesItsArgument) {
  const StatusCode unsupported = StatusCode::unsupported;
  const Rejection cases[] = {
      {"zero experts", [](auto& a) { a.num_experts = 0; }, "num_experts"},
      {"negative max_m", [](auto& a) { a.max_m = -1; }, "max_m"},
      {"zero n", [](auto& a) { a.n = 0; }, "n must"},
      {"zero k", [](auto& a) { a.k = 0; }, "k must"},
      {"null a.data", [](auto& a) { a.a.data = nullptr; }, "a.data"},
      {"null b.data", [](auto& a) { a.b.data = nullptr; }, "b.data"},
      {"misaligned a.data", [](auto& a) { a.a.data = fake(0x10008); }, "a.data"},
      {"misaligned b.data", [](auto& a) { a.b.data = fake(0x30004); }, "b.data"},
      {"null a.scales", [](auto& a) { a.a.scales = nullptr; }, "a.scales"},
      {"null b.scales", [](auto& a) { a.b.scales = nullptr; }, "b.scales"},
      {"misaligned a.scales", [](auto& a) { a.a.scales = fake(0x20004); }, "a.scales"},
      {"bf16 with scales", [](auto& a) { a.a.format = Format::bf16; }, "a.scales must be null"},
      {"mixed bf16 and fp8",
       [](auto& a) {
         a.a.format = Format::bf16;
         a.a.scales = nullptr;
       },
       "a.format", StatusCode::unsupported},
      {"unknown a.format", [](auto& a) { a.a.format = static_cast<Format>(99); }, "a.format"},
      {"unknown b.format", [](auto& a) { a.b.format = static_cast<Format>(42); }, "b.format"},
      {"k not a multiple of 128", [](auto& a) { a.k = 192; }, "k = 192"},
      {"negative a.row_stride", [](auto& a) { a.a.row_stride = -16; }, "a.row_stride"},
      {"short a.row_stride", [](auto& a) { a.a.row_stride = 256; }, "a.row_stride"},
      {"misaligned a.row_stride", [](auto& a) { a.a.row_stride = 520; }, "a.row_stride"},
      {"short a.expert_stride", [](auto& a) { a.a.expert_stride = 512 * 63; }, "a.expert_stride"},
      {"misaligned a.expert_stride", [](auto& a) { a.a.expert_stride = 512 * 64 + 8; }, "a.expert_stride"},
      {"negative a.expert_stride", [](auto& a) { a.a.expert_stride = -512; }, "a.expert_stride"},
      {"short b.row_stride", [](auto& a) { a.b.row_stride = 496; }, "b.row_stride"},
      {"misaligned b.row_stride", [](auto& a) { a.b.row_stride = 513; }, "b.row_stride"},
      {"short b.expert_stride", [](auto& a) { a.b.expert_stride = 512 * 255; }, "b.expert_stride"},
      {"unsupported format pair", [](auto& a) { a.a.format = a.b.format = Format::nvfp4; }, "a.format", unsupported},
      {"nvfp4 weights with k not a multiple of 64",
       [](auto& a) {
         a.a = OperandArgs{Format::bf16, fake(0x10000), nullptr, 0, 0};
         a.b.format = Format::nvfp4;
         a.k = 544;
       },
       "multiple of 64"},
      {"unknown out_type", [](auto& a) { a.out_type = static_cast<OutputType>(7); }, "out_type"},
      {"unsupported out_type", [](auto& a) { a.out_type = OutputType::fp16; }, "out_type", unsupported},
      {"null out", [](auto& a) { a.out = nullptr; }, "out is null"},
      {"misaligned out", [](auto& a) { a.out = fake(0x50002); }, "out must"},
      {"n gives short output rows", [](auto& a) { a.n = 12; }, "n = 12"},
      {"negative out_row_stride", [](auto& a) { a.out_row_stride = -512; }, "out_row_stride"},
      {"short out_row_stride", [](auto& a) { a.out_row_stride = 496; }, "out_row_stride"},
      {"misaligned out_row_stride", [](auto& a) { a.out_row_stride = 520; }, "out_row_stride"},
      {"negative out_expert_stride", [](auto& a) { a.out_expert_stride = -16; }, "out_expert_stride"},
      {"short out_expert_stride", [](auto& a) { a.out_expert_stride = 512 * 63; }, "out_expert_stride"},
      {"misaligned out_expert_stride", [](auto& a) { a.out_expert_stride = 512 * 64 + 4; }, "out_expert_stride"},
      {"null masked_m", [](auto& a) { a.masked_m = nullptr; }, "masked_m"},
      {"misaligned masked_m", [](auto& a) { a.masked_m = fake<const int32_t>(0x60002); }, "masked_m"},
      {"misaligned alpha", [](auto& a) { a.alpha = fake<const float>(0x70001); }, "alpha"},
      {"misaligned error_flag", [](auto& a) { a.error_flag = fake<int32_t>(0x80002); }, "error_flag"},
      {"unknown granularity", [](auto& a) { a.granularity = static_cast<SignalGranularity>(9); }, "granularity"},
      {"unknown scope", [](auto& a) { a.scope = static_cast<SignalScope>(5); }, "scope"},
      {"granularity without signals", [](auto& a) { a.granularity = SignalGranularity::per_expert; }, "signals is null"},
      {"signals without granularity", [](auto& a) { a.signals = fake<uint32_t>(0x90000); }, "granularity is none"},
      {"misaligned signals",
       [](auto& a) {
         a.signals = fake<uint32_t>(0x90002);
         a.granularity = SignalGranularity::per_row_block;
       },
       "signals must"},
      {"negative sm_count", [](auto& a) { a.sm_count = -1; }, "sm_count"},
      {"negative expected_m", [](auto& a) { a.expected_m = -3; }, "expected_m"},
      {"unsupported config.block_m", [](auto& a) { a.config.block_m = 48; }, "config.block_m"},
      {"unsupported config.block_n", [](auto& a) { a.config.block_n = 64; }, "config.block_n"},
      {"config.stages too few", [](auto& a) { a.config.stages = 1; }, "config.stages"},
      {"config.stages too many", [](auto& a) { a.config.stages = 17; }, "config.stages"},
      {"too many tiles",
       [](auto& a) {
         a.num_experts = 1 << 20;
         a.max_m = 1 << 16;
       },
       "too large"},
  };
  for (const Rejection& c : cases) {
    GroupedGemmArgs args = valid_args();
    c.mutate(args);
    const Status s = validate(args);
    EXPECT_EQ(s.code, c.code) << c.name << ": " << s.message;
    EXPECT_NE(s.message.find(c.argument), std::string::npos)
        << c.name << ": message \"" << s.message << "\" does not name " << c.argument;
  }
}

TEST(Validate, AcceptsPaddedStridesOptionsAndOverrides) {
  const std::function<void(GroupedGemmArgs&)> accepted[] = {
      [](auto& a) { a.a.row_stride = 512 + 64, a.a.expert_stride = (512 + 64) * 64 + 1024; },
      [](auto& a) { a.b.row_stride = 1024, a.out_row_stride = 1024, a.out_expert_stride = 1024 * 64; },
      [](auto& a) { a.sm_count = 0; },
      [](auto& a) { a.sm_count = 1; },
      [](auto& a) {
        a.signals = fake<uint32_t>(0x90000);
        a.granularity = SignalGranularity::per_row_block;
        a.scope = SignalScope::sys;
      },
      [](auto& a) { a.config = TileConfig{32, 128, 4}; },
      [](auto& a) { a.alpha = nullptr, a.error_flag = fake<int32_t>(0x80000), a.expected_m = 7; },
      [](auto& a) {  // bf16 activations x nvfp4 weights
        a.a = OperandArgs{Format::bf16, fake(0x10000), nullptr, 0, 0};
        a.b.format = Format::nvfp4;
      },
      [](auto& a) {  // bf16 x bf16, K only a multiple of 8
        a.a = OperandArgs{Format::bf16, fake(0x10000), nullptr, 0, 0};
        a.b = OperandArgs{Format::bf16, fake(0x30000), nullptr, 0, 0};
        a.k = 520;
      },
  };
  int index = 0;
  for (const auto& mutate : accepted) {
    GroupedGemmArgs args = valid_args();
    mutate(args);
    const Status s = validate(args);
    EXPECT_TRUE(s.ok()) << "case " << index << ": " << s.message;
    ++index;
  }
}

}  // namespace
}  // namespace signalgemm
