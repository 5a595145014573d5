// FP4 weights (nvfp4, mxfp4) in the mma_fragments layout (pack_mma_fragments, OperandLayout::mma_fragments) on
// the GPU: the packing kernel writes exactly the CPU packer's bytes (codes and converted scales), and
// the GEMM on packed weights, given no b.scales (the blocks carry them),
// gives bit for bit the output of the same launch on the weights' rows (the same products, summed
// in the same order), and both match the float64 reference: every compiled tile, the decode tiles
// of 256 weight rows, a last stage past K, a partial 64-row slice and column block, few SMs, split K, nvfp4
// and fp8_block128 activations through the workspace. Bad arguments are errors that name them.
#include <string>
#include <utility>

#include "gpu_test_util.h"
#include "host/config.h"
#include "signalgemm/gemm.h"

namespace signalgemm::test {
namespace {

// The weights of `p` (rows, with their padded stride) packed on the GPU.
DeviceBuffer pack(const Problem& p) {
  DeviceBuffer packed(mma_fragment_bytes(p.experts, p.n, p.k));
  const Status s = pack_mma_fragments(p.args().b, p.experts, p.n, p.k, packed.get());
  EXPECT_TRUE(s.ok()) << s.message;
  const cudaError_t err = cudaDeviceSynchronize();
  EXPECT_EQ(err, cudaSuccess) << cudaGetErrorString(err);
  return packed;
}

GroupedGemmArgs with_fragments(GroupedGemmArgs args, const DeviceBuffer& packed) {
  args.b.data = packed.get();
  args.b.scales = nullptr;  // not read: the packed blocks carry the scales
  args.b.row_stride = 0;
  args.b.expert_stride = 0;
  args.b.layout = OperandLayout::mma_fragments;
  return args;
}

// Runs `args` on the rows layout and on the packed weights: outputs equal bit for bit, and right.
void expect_same_as_rows(Problem& p, const DeviceBuffer& packed, const GroupedGemmArgs& args,
                         const std::vector<int32_t>& masked_m, const std::vector<double>& reference,
                         const std::string& what) {
  const RunResult rows = run(p, args, masked_m);
  ASSERT_TRUE(rows.status.ok()) << what << ": " << rows.status.message;
  const std::vector<uint16_t> rows_out = p.output();
  const GroupedGemmArgs fragments = with_fragments(args, packed);
  const RunResult r = run(p, fragments, masked_m);
  ASSERT_TRUE(r.status.ok()) << what << ": " << r.status.message;
  EXPECT_EQ(check_output(p, masked_m, reference), "") << what;
  EXPECT_TRUE(p.output() == rows_out) << what << ": output differs from the rows layout's";
  if (args.granularity != SignalGranularity::none) EXPECT_EQ(check_signals(fragments, masked_m, r.signals), "") << what;
}

TEST(MmaFragments, GpuPackingEqualsTheCpuPacking) {
  SG_REQUIRE_HOPPER();
  struct Shape {
    int experts, n, k, b_pad;
  };
  for (const Format weights : {Format::nvfp4, Format::mxfp4})
    for (const Shape s : {Shape{3, 328, 576, 16}, Shape{1, 64, 64, 0}, Shape{2, 100, 224, 48}}) {
      std::mt19937 rng(71 + s.n);
      Problem p;
      p.build(s.experts, 8, s.n, s.k, rng, 0, s.b_pad, 0, Format::bf16, weights);
      const DeviceBuffer packed = pack(p);
      EXPECT_TRUE(packed.to_host<uint8_t>() == ref::pack_mma_fragments(p.b))
          << to_string(weights) << " experts " << s.experts << " n " << s.n << " k " << s.k;
    }
}

// Every compiled tile (config override) and few SMs, edge masked_m, per-row-block signals.
TEST(MmaFragments, EveryTileConfigAndEdgeMaskedM) {
  SG_REQUIRE_HOPPER();
  for (const Format weights : {Format::nvfp4, Format::mxfp4}) {
    SCOPED_TRACE(to_string(weights));
    std::mt19937 rng(47);
    Problem p;
    p.build(/*experts=*/5, /*max_m=*/130, /*n=*/328, /*k=*/576, rng, /*a_pad=*/32, /*b_pad=*/16, 0, Format::bf16,
            weights);
    const DeviceBuffer packed = pack(p);
    const auto reference = full_reference(p);
    const std::vector<int32_t> masked_m = {0, 1, 65, 128, 130};
    for (const host::TileShape tile : host::kSupportedTiles)
      for (const int sm_count : {0, 3}) {
        GroupedGemmArgs args = p.args();
        args.config.block_m = tile.block_m;
        args.config.block_n = tile.block_n;
        args.granularity = SignalGranularity::per_row_block;
        args.sm_count = sm_count;
        expect_same_as_rows(p, packed, args, masked_m, reference,
                            std::to_string(tile.block_m) + "x" + std::to_string(tile.block_n) + " sm_count " +
                                std::to_string(sm_count));
      }
  }
}

// The decode tiles of 256 weight rows (32x256, 48x256, 64x256), a last stage past K.
TEST(MmaFragments, DecodeTilesOf256WeightRows) {
  SG_REQUIRE_HOPPER();
  for (const Format weights : {Format::nvfp4, Format::mxfp4}) {
    SCOPED_TRACE(to_string(weights));
    std::mt19937 rng(53);
    Problem p;
    p.build(/*experts=*/12, /*max_m=*/64, /*n=*/328, /*k=*/576, rng, /*a_pad=*/32, /*b_pad=*/16, 0, Format::bf16,
            weights);
    const DeviceBuffer packed = pack(p);
    const auto reference = full_reference(p);
    // Every MMA width of every decode tile (the real tokens of a block rounded up to 8, at least
    // 16: mma_tile_width): 16 .. 32, 16 .. 48 and 16 .. 64 tokens.
    const std::vector<int32_t> masked_m = {0, 1, 9, 17, 24, 25, 33, 40, 41, 49, 57, 64};
    for (const int block_m : {32, 48, 64})
      for (const int sm_count : {0, 2}) {
        GroupedGemmArgs args = p.args();
        args.config = TileConfig{block_m, 256, 0};
        args.granularity = SignalGranularity::per_expert;
        args.scope = SignalScope::sys;
        args.sm_count = sm_count;
        expect_same_as_rows(p, packed, args, masked_m, reference,
                            "tile " + std::to_string(block_m) + "x256 sm_count " + std::to_string(sm_count));
      }
  }
}

// Few tiles: K split over several CTAs (host::plan_split_k) on the packed weights sums the same
// pieces in the same order as on the rows, so the outputs equal bit for bit; the last stage is
// partial (K = 1344: 21 blocks of 64), the last column block too.
TEST(MmaFragments, SplitKForFewTiles) {
  SG_REQUIRE_HOPPER();
  for (const Format weights : {Format::nvfp4, Format::mxfp4}) {
    SCOPED_TRACE(to_string(weights));
    std::mt19937 rng(67);
    Problem p;
    p.build(/*experts=*/2, /*max_m=*/40, /*n=*/264, /*k=*/1344, rng, 0, 0, 0, Format::bf16, weights);
    const DeviceBuffer packed = pack(p);
    const auto reference = full_reference(p);
    GroupedGemmArgs args = p.args();
    args.config = TileConfig{32, 256, 0};  // the decode tile that splits
    args.granularity = SignalGranularity::per_row_block;
    const size_t bytes = workspace_bytes(args);
    EXPECT_GT(bytes, host::kTileCounterBytes) << "expected a split of K";
    DeviceBuffer workspace(bytes);
    args.workspace = workspace.get();
    args.workspace_bytes = bytes;
    expect_same_as_rows(p, packed, args, {40, 33}, reference, "split K");
  }
}

// Activations of the weights' format converted once into the workspace, then bf16 x the packed weights.
TEST(MmaFragments, Fp4ActivationsThroughTheWorkspace) {
  SG_REQUIRE_HOPPER();
  for (const Format format : {Format::nvfp4, Format::mxfp4}) {
    SCOPED_TRACE(to_string(format));
    std::mt19937 rng(61);
    Problem p;
    p.build(5, 130, 328, 576, rng, /*a_pad=*/32, /*b_pad=*/16, 0, format, format);
    const DeviceBuffer packed = pack(p);
    const auto reference = full_reference(p);
    DeviceBuffer workspace(activation_workspace_bytes(p.args()));
    for (const int expected_m : {32, 0}) {
      GroupedGemmArgs args = p.args();
      args.workspace = workspace.get();
      args.workspace_bytes = workspace.bytes();
      args.expected_m = expected_m;
      args.granularity = SignalGranularity::per_row_block;
      expect_same_as_rows(p, packed, args, {0, 1, 65, 130, 37}, reference, "expected_m " + std::to_string(expected_m));
    }
    // Without the workspace the tokens would be converted inside the GEMM: not with packed weights.
    const Status s = validate(with_fragments(p.args(), packed));
    EXPECT_EQ(s.code, StatusCode::unsupported);
    EXPECT_NE(s.message.find("b.layout"), std::string::npos) << s.message;
  }
}

// fp8_block128 activations converted once into the workspace (their scales still promoting each
// 128-K block's partial), then read as bf16 beside the packed weights: the decode tiles (32x256;
// 48x256, given where the heuristic takes 128x128 for K this short and tiles this few:
// host::narrows_decode_tile), 128x128 and split K; without the workspace, or on a tile of the
// dequantizing mainloop, an error naming b.layout.
TEST(MmaFragments, Fp8ActivationsThroughTheWorkspace) {
  SG_REQUIRE_HOPPER();
  for (const Format weights : {Format::nvfp4, Format::mxfp4}) {
    SCOPED_TRACE(to_string(weights));
    std::mt19937 rng(73);
    Problem p;
    p.build(5, 130, 328, 640, rng, /*a_pad=*/32, /*b_pad=*/16, 0, Format::fp8_block128, weights);
    const DeviceBuffer packed = pack(p);
    const auto reference = full_reference(p);
    DeviceBuffer workspace(activation_workspace_bytes(p.args()));
    const TileConfig decode_48{48, 256, 0, 0}, heuristic{};
    for (const auto& [expected_m, config] : {std::pair{16, heuristic}, std::pair{32, decode_48},
                                             std::pair{32, heuristic}, std::pair{0, heuristic}}) {
      GroupedGemmArgs args = p.args();
      args.workspace = workspace.get();
      args.workspace_bytes = workspace.bytes();
      args.expected_m = expected_m;
      args.config = config;
      const TileConfig cfg = select_config(args);
      if (expected_m == 16) EXPECT_TRUE(cfg.block_m == 32 && cfg.block_n == 256);  // 50 decode tiles
      if (expected_m == 32 && config.block_m == 0)  // 30 decode tiles of 48x256 and K = 640: 128x128
        EXPECT_TRUE(cfg.block_m == 128 && cfg.block_n == 128);
      args.granularity = SignalGranularity::per_row_block;
      expect_same_as_rows(p, packed, args, {0, 1, 65, 130, 37}, reference,
                          "expected_m " + std::to_string(expected_m) + " tile " +
                              std::to_string(select_config(args).block_m) + "x" +
                              std::to_string(select_config(args).block_n));
    }
    GroupedGemmArgs dequantizing = with_fragments(p.args(), packed);
    dequantizing.workspace = workspace.get();
    dequantizing.workspace_bytes = workspace.bytes();
    dequantizing.config = TileConfig{64, 128, 0, 0};
    for (const GroupedGemmArgs& bad : {with_fragments(p.args(), packed), dequantizing}) {
      const Status s = validate(bad);
      EXPECT_EQ(s.code, StatusCode::unsupported);
      EXPECT_NE(s.message.find("b.layout"), std::string::npos) << s.message;
    }
  }
  // Few decode tiles with short K take 128x128 where the slab holds fewer rows than the token block
  // (max_m = 32 and 24: the token tile's rows past the slab are outside the tensor and read as zeros).
  for (const Format weights : {Format::nvfp4, Format::mxfp4}) {
    for (const auto& [max_m, masked_m] : {std::pair{32, std::vector<int32_t>{32, 1, 0}},
                                          std::pair{24, std::vector<int32_t>{17, 24, 9}}}) {
      SCOPED_TRACE(std::string("short K, ") + to_string(weights) + " max_m " + std::to_string(max_m));
      std::mt19937 rng(83 + max_m);
      Problem p;
      p.build(/*experts=*/3, max_m, /*n=*/392, /*k=*/1024, rng, 0, 0, 0, Format::fp8_block128, weights);
      const DeviceBuffer packed = pack(p);
      const auto reference = full_reference(p);
      DeviceBuffer workspace(activation_workspace_bytes(p.args()));
      GroupedGemmArgs args = p.args();
      args.workspace = workspace.get();
      args.workspace_bytes = workspace.bytes();
      args.granularity = SignalGranularity::per_row_block;
      EXPECT_EQ(select_config(args).block_m, 128);
      EXPECT_EQ(select_config(args).block_n, 128);
      expect_same_as_rows(p, packed, args, masked_m, reference, "128x128 on a short slab");
    }
  }
  // Few tiles: split K with the packed weights (K = 2432: 19 blocks of 128, the last stage partial).
  for (const Format weights : {Format::nvfp4, Format::mxfp4}) {
    SCOPED_TRACE(std::string("split K, ") + to_string(weights));
    std::mt19937 rng(79);
    Problem p;
    p.build(/*experts=*/2, /*max_m=*/40, /*n=*/264, /*k=*/2432, rng, 0, 0, 0, Format::fp8_block128, weights);
    const DeviceBuffer packed = pack(p);
    const auto reference = full_reference(p);
    GroupedGemmArgs args = p.args();
    args.expected_m = 16;
    args.granularity = SignalGranularity::per_row_block;
    const size_t bytes = workspace_bytes(args);
    EXPECT_GT(bytes, activation_workspace_bytes(args)) << "expected a split of K";
    DeviceBuffer workspace(bytes);
    args.workspace = workspace.get();
    args.workspace_bytes = bytes;
    expect_same_as_rows(p, packed, args, {40, 33}, reference, "split K");
  }
}

TEST(MmaFragments, BadArgumentsAreNamed) {
  SG_REQUIRE_HOPPER();
  std::mt19937 rng(3);
  Problem p;
  p.build(2, 8, 128, 128, rng, 0, 0, 0, Format::bf16, Format::nvfp4);
  DeviceBuffer packed(mma_fragment_bytes(2, 128, 128));
  EXPECT_EQ(mma_fragment_bytes(2, 128, 128), size_t(2) * 2 * 2 * 2560);
  OperandArgs weights = p.args().b;
  auto message = [&](const OperandArgs& w, int n, int k, void* out) {
    const Status s = pack_mma_fragments(w, 2, n, k, out);
    EXPECT_EQ(s.code, StatusCode::invalid_argument);
    return s.message;
  };
  EXPECT_NE(message(weights, 128, 128, nullptr).find("packed"), std::string::npos);
  OperandArgs unscaled = weights;
  unscaled.scales = nullptr;
  EXPECT_NE(message(unscaled, 128, 128, packed.get()).find("weights.scales is null"), std::string::npos);
  OperandArgs mx = weights;
  mx.format = Format::mxfp8;
  EXPECT_NE(message(mx, 128, 128, packed.get()).find("weights.format"), std::string::npos);
  OperandArgs narrow = weights;
  narrow.row_stride = 16;
  EXPECT_NE(message(narrow, 128, 128, packed.get()).find("weights.row_stride"), std::string::npos);
  EXPECT_NE(message(weights, 128, 120, packed.get()).find("k = 120"), std::string::npos);
  // Packed in place (n and k multiples of 64: the same size), or into the second expert's rows.
  EXPECT_NE(message(weights, 128, 128, const_cast<void*>(weights.data)).find("packed overlaps weights.data"),
            std::string::npos);
  EXPECT_NE(message(weights, 128, 128, static_cast<uint8_t*>(const_cast<void*>(weights.data)) + 128 * 64)
                .find("packed overlaps weights.data"),
            std::string::npos);
  OperandArgs huge = weights;  // far past any allocation, or past int64: named, never launched
  huge.row_stride = int64_t(1) << 62;
  EXPECT_NE(message(huge, 128, 128, packed.get()).find("must be below 2^40 bytes"), std::string::npos);
  huge.row_stride = 0;
  huge.expert_stride = int64_t(1) << 40;
  EXPECT_NE(message(huge, 128, 128, packed.get()).find("must be below 2^40 bytes"), std::string::npos);
  std::vector<uint8_t> host_packed(mma_fragment_bytes(2, 128, 128) + 16);
  void* host_out = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(host_packed.data()) + 15) & ~uintptr_t(15));
  EXPECT_NE(message(weights, 128, 128, host_out).find("packed is not device memory"), std::string::npos);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // nothing was launched, nothing faulted
}

}  // namespace
}  // namespace signalgemm::test
