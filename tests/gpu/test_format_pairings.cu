// The format pairings beyond fp8_block128 x fp8_block128 (the dequantizing mainloop,
// mainloop_dequant_bf16.cuh; the register-weights one for bf16 tokens with nvfp4 / mxfp4 / mxfp8
// weights and, on 128x128 and the decode tiles, for fp8_block128 / nvfp4 / mxfp4 / mxfp8 tokens it
// converts; bf16 x bf16) on the GPU against the float64 CPU reference of the dequantized operands: every pairing x every tile the launcher has for it, edge masked_m, E in {1, 7,
// 32}, three (N, K) pairs including SPEC §6's at reduced E, padded strides, masked rows and padding columns left
// poisoned, signal counters.
//
// Tolerance: the dequantized operands are exact bf16 values and their products exact in fp32, so
// the kernel differs from the float64 reference only by the fp32 accumulation order (relative
// ~1e-6 at these K) and the final rounding to bf16. The output is therefore compared with the
// reference rounded to bf16: only the rare element whose rounding the accumulation order flips
// differs, by one bf16 ulp (2^-8 relative), which keeps the per-expert relative Frobenius error
// near 1e-4 even for a single row. 1e-3 rejects anything that is not exact: one block scale lost
// or a misplaced 8-element chunk costs >= 1e-2, operands rounded once more to bf16 ~1e-3.
#include <algorithm>
#include <string>

#include "gpu_test_util.h"
#include "host/config.h"
#include "kernels/dequant_bf16_plan.h"
#include "signalgemm/gemm.h"

namespace signalgemm::test {
namespace {

constexpr double kTolerance = 1e-3;

struct Pairing {
  Format a, b;
};
constexpr Pairing kPairings[] = {{Format::mxfp8, Format::mxfp8}, {Format::mxfp4, Format::mxfp4},
                                 {Format::nvfp4, Format::nvfp4}, {Format::bf16, Format::mxfp4},
                                 {Format::bf16, Format::mxfp8},  {Format::fp8_block128, Format::nvfp4},
                                 {Format::fp8_block128, Format::mxfp4}, {Format::bf16, Format::nvfp4},
                                 {Format::bf16, Format::bf16}};

std::string name(const Pairing& pairing) {
  return std::string(to_string(pairing.a)) + " x " + to_string(pairing.b);
}

// Float64 reference for masked_m = max_m everywhere (rows < masked_m do not depend on masked_m),
// rounded to the output type as the kernel's output is.
std::vector<double> rounded_reference(const Problem& p) {
  std::vector<double> reference = full_reference(p);
  for (double& x : reference) x = p.rounded_to_output(x);
  return reference;
}

// Tiles the launcher has for a pairing (dequant_bf16_tile_compiled), which include every tile the
// heuristic can choose for it.
std::vector<host::TileShape> tiles_for(const Pairing& pairing) {
  std::vector<host::TileShape> tiles;
  for (const host::TileShape t : host::kSupportedTiles)
    if (kernels::dequant_bf16_tile_compiled(pairing.a, t.block_m, t.block_n)) tiles.push_back(t);
  return tiles;
}

void expect_run_correct(Problem& p, const GroupedGemmArgs& args, const std::vector<int32_t>& masked_m,
                        const std::vector<double>& reference, const std::string& what) {
  const RunResult r = run(p, args, masked_m);
  ASSERT_TRUE(r.status.ok()) << what << ": " << r.status.message;
  EXPECT_EQ(check_output(p, masked_m, reference, kTolerance), "") << what;
  if (args.granularity != SignalGranularity::none) EXPECT_EQ(check_signals(args, masked_m, r.signals), "") << what;
}

// Every pairing x every tile: masked_m at the edges of every token block (0, 1, 63, 64, 65, 127,
// 128, a partial 192-block, max_m), a partial last column block (n = 328), padded strides.
TEST(FormatPairings, EveryTileConfigAndEdgeMaskedM) {
  SG_REQUIRE_HOPPER();
  const std::vector<int32_t> masked_m = {0, 1, 63, 64, 65, 127, 128, 150, 200};
  for (const Pairing& pairing : kPairings) {
    std::mt19937 rng(101);
    Problem p;
    p.build(int(masked_m.size()), /*max_m=*/200, /*n=*/328, /*k=*/512, rng, /*a_pad=*/32, /*b_pad=*/16,
            /*out_pad=*/16, pairing.a, pairing.b);
    const auto reference = rounded_reference(p);
    for (const host::TileShape tile : tiles_for(pairing)) {
      for (auto g : {SignalGranularity::per_expert, SignalGranularity::per_row_block}) {
        GroupedGemmArgs args = p.args();
        args.config.block_m = tile.block_m;
        args.config.block_n = tile.block_n;
        args.granularity = g;
        expect_run_correct(p, args, masked_m, reference,
                           name(pairing) + " tile " + std::to_string(tile.block_m) + "x" +
                               std::to_string(tile.block_n) + " " + to_string(g));
      }
    }
  }
}

// E in {1, 7, 32} with the heuristic's own configuration for several expected_m hints.
TEST(FormatPairings, ExpertCountsWithHeuristicConfig) {
  SG_REQUIRE_HOPPER();
  for (const Pairing& pairing : kPairings) {
    for (const int experts : {1, 7, 32}) {
      std::mt19937 rng(7 + experts);
      Problem p;
      p.build(experts, /*max_m=*/130, /*n=*/256, /*k=*/384, rng, 0, 0, 0, pairing.a, pairing.b);
      const auto reference = rounded_reference(p);
      for (const int expected_m : {8, 48, 100, 0}) {
        std::vector<int32_t> masked_m(experts);
        for (auto& m : masked_m) m = int(rng() % 131);
        masked_m[0] = experts == 1 ? 129 : 0;
        if (experts > 4) masked_m[1] = 130, masked_m[2] = 1, masked_m[3] = 128, masked_m[4] = 64;
        GroupedGemmArgs args = p.args();
        args.expected_m = expected_m;
        args.granularity = SignalGranularity::per_row_block;
        const TileConfig cfg = select_config(args);
        EXPECT_TRUE(kernels::dequant_bf16_tile_compiled(pairing.a, cfg.block_m, cfg.block_n) ||
                    host::register_weights_with_converted_tokens(pairing.a, pairing.b, cfg.block_m, cfg.block_n))
            << name(pairing);
        expect_run_correct(p, args, masked_m, reference,
                           name(pairing) + " E " + std::to_string(experts) + " expected_m " +
                               std::to_string(expected_m) + " tile " + std::to_string(cfg.block_m) + "x" +
                               std::to_string(cfg.block_n) + "x" + std::to_string(cfg.stages));
      }
    }
  }
}

// SPEC §6 (N, K) pairs at reduced E and rows (the float64 reference stays quick), plus a third
// pair with K not a multiple of 128 where the pairing allows it.
TEST(FormatPairings, SpecShapes) {
  SG_REQUIRE_HOPPER();
  struct Shape {
    int experts, max_m, n, k;
    std::vector<int32_t> masked_m;
  };
  const Shape shapes[] = {{1, 40, 4096, 7168, {17}}, {2, 40, 7168, 2048, {12, 0}}, {3, 70, 1536, 704, {70, 9, 1}}};
  for (const Pairing& pairing : kPairings) {
    for (const Shape& s : shapes) {
      if (pairing.a == Format::fp8_block128 && s.k % 128 != 0) continue;  // its scale block
      std::mt19937 rng(11);
      Problem p;
      p.build(s.experts, s.max_m, s.n, s.k, rng, 0, 0, 0, pairing.a, pairing.b);
      const auto reference = rounded_reference(p);
      GroupedGemmArgs args = p.args();
      args.granularity = SignalGranularity::per_expert;
      expect_run_correct(p, args, s.masked_m, reference,
                         name(pairing) + " n " + std::to_string(s.n) + " k " + std::to_string(s.k));
    }
  }
}

// Few SMs: every CTA walks many tiles (the double-buffered bf16 tiles and the ring carry over
// between tiles), and sys-scope signals.
TEST(FormatPairings, PersistentCtasWithFewSms) {
  SG_REQUIRE_HOPPER();
  const std::vector<int32_t> masked_m = {96, 3, 0, 50, 77};
  for (const Pairing& pairing : kPairings) {
    std::mt19937 rng(5);
    Problem p;
    p.build(5, 96, 512, 256, rng, 0, 0, 0, pairing.a, pairing.b);
    const auto reference = rounded_reference(p);
    for (int sm_count : {1, 3}) {
      GroupedGemmArgs args = p.args();
      args.sm_count = sm_count;
      args.granularity = SignalGranularity::per_expert;
      args.scope = SignalScope::sys;
      expect_run_correct(p, args, masked_m, reference, name(pairing) + " sm_count " + std::to_string(sm_count));
    }
  }
}

// Experts 2^31 + 4 KiB bytes apart in A, B and C, so the second expert lies past int32 offsets and
// the third past uint32 ones (256 experts of DeepSeek-V3's 7168 x 2048 fp8 weights are 3.8 GB): every
// byte offset the launch forms, in TMA maps, scale reads, the activation conversion and the stores,
// must be 64-bit. Every pairing, with and without a workspace where it takes one, and FP4 weights
// also packed into the mma_fragments layout from the spread rows.
enum class Variant { rows, workspace, fragments };
TEST(FormatPairings, ExpertStridesBeyond4GiB) {
  SG_REQUIRE_HOPPER();
  constexpr int kExperts = 3, kMaxM = 40, kN = 256, kK = 512;
  constexpr int64_t kStride = (int64_t(1) << 31) + 4096;
  size_t free_bytes = 0, total_bytes = 0;
  SG_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  if (free_bytes < size_t(3 * kExperts * kStride)) GTEST_SKIP() << "needs ~20 GB of free device memory";
  const std::vector<int32_t> masked_m = {kMaxM, 1, 29};
  std::vector<Pairing> pairings(std::begin(kPairings), std::end(kPairings));
  pairings.push_back({Format::fp8_block128, Format::fp8_block128});
  // `packed` (experts of `expert_bytes` back to back) copied into a buffer with experts kStride apart.
  auto spread_experts = [&](const DeviceBuffer& packed, int64_t expert_bytes) {
    DeviceBuffer spread((kExperts - 1) * kStride + expert_bytes);
    for (int e = 0; e < kExperts; ++e)
      cudaMemcpy(spread.get<uint8_t>() + e * kStride, packed.get<uint8_t>() + e * expert_bytes, expert_bytes,
                 cudaMemcpyDeviceToDevice);
    return spread;
  };
  for (const Pairing& pairing : pairings) {
    std::mt19937 rng(29);
    Problem p;
    p.build(kExperts, kMaxM, kN, kK, rng, 0, 0, 0, pairing.a, pairing.b);
    const auto reference = rounded_reference(p);
    const bool fp8_pair = pairing.a == Format::fp8_block128 && pairing.b == Format::fp8_block128;
    const std::vector<double> abs_sums = fp8_pair ? fp8_abs_product_sums(p) : std::vector<double>{};
    const int64_t a_bytes = kMaxM * p.a_row_stride, b_bytes = kN * p.b_row_stride, out_bytes = kMaxM * p.out_row_stride;
    const DeviceBuffer a = spread_experts(p.d_a, a_bytes), b = spread_experts(p.d_b, b_bytes);
    const bool fp4_weights = pairing.b == Format::nvfp4 || pairing.b == Format::mxfp4;
    for (const Variant variant : {Variant::rows, Variant::workspace, Variant::fragments}) {
      if (variant == Variant::fragments && !fp4_weights) continue;
      GroupedGemmArgs args = p.args();
      args.a.data = a.get(), args.a.expert_stride = kStride;
      args.b.data = b.get(), args.b.expert_stride = kStride;
      args.out_expert_stride = kStride;
      args.granularity = SignalGranularity::per_row_block;
      DeviceBuffer packed;
      if (variant == Variant::fragments) {  // packed from the spread rows (the packed copy is dense)
        packed = DeviceBuffer(mma_fragment_bytes(kExperts, kN, kK));
        const Status s = pack_mma_fragments(args.b, kExperts, kN, kK, packed.get());
        ASSERT_TRUE(s.ok()) << s.message;
        args.b.data = packed.get(), args.b.row_stride = 0, args.b.expert_stride = 0;
        args.b.layout = OperandLayout::mma_fragments;
      }
      // Tokens other than bf16 beside packed weights are read from the workspace.
      const bool with_workspace =
          variant == Variant::workspace || (variant == Variant::fragments && pairing.a != Format::bf16);
      DeviceBuffer workspace;
      if (with_workspace) {
        if (workspace_bytes(args) == 0) continue;
        workspace = DeviceBuffer(workspace_bytes(args));
        args.workspace = workspace.get(), args.workspace_bytes = workspace.bytes();
      }
      p.poison_output();
      const DeviceBuffer out = spread_experts(p.d_out, out_bytes);
      args.out = out.get();
      // Guards after the first experts' slabs (the gaps are otherwise never read back): a store past a
      // slab, or at an offset that wrapped, lands in one.
      constexpr int64_t kGuardBytes = 64 * 1024;
      constexpr uint8_t kGuard = 0xa5;
      for (int e = 0; e + 1 < kExperts; ++e)
        SG_CUDA_CHECK(cudaMemset(out.get<uint8_t>() + e * kStride + out_bytes, kGuard, kGuardBytes));
      const TileConfig cfg = select_config(args);
      const std::string what = name(pairing) + (with_workspace ? " with a workspace" : "") +
                               (variant == Variant::fragments ? ", mma_fragments weights" : "") + ", tile " +
                               std::to_string(cfg.block_m) + "x" + std::to_string(cfg.block_n);
      const RunResult r = run(p, args, masked_m);  // poisons p.d_out, which this launch does not write
      ASSERT_TRUE(r.status.ok()) << what << ": " << r.status.message;
      for (int e = 0; e < kExperts; ++e)  // each expert's rows back into p.d_out, for check_output
        SG_CUDA_CHECK(cudaMemcpy(p.d_out.get<uint8_t>() + e * out_bytes, out.get<uint8_t>() + e * kStride,
                                 out_bytes, cudaMemcpyDeviceToDevice));
      EXPECT_EQ(check_output(p, masked_m, reference, kTolerance, fp8_pair ? &abs_sums : nullptr), "") << what;
      EXPECT_EQ(check_signals(args, masked_m, r.signals), "") << what;
      std::vector<uint8_t> guard(kGuardBytes);
      for (int e = 0; e + 1 < kExperts; ++e) {
        SG_CUDA_CHECK(cudaMemcpy(guard.data(), out.get<uint8_t>() + e * kStride + out_bytes, kGuardBytes,
                                 cudaMemcpyDeviceToHost));
        EXPECT_EQ(std::count(guard.begin(), guard.end(), kGuard), kGuardBytes) << what << ": written past expert " << e;
      }
    }
  }
}

// A small case for compute-sanitizer (one pairing per mainloop variant: both operands
// dequantized, bf16 tokens read from the stage, fp8 promotion).
TEST(FormatPairings, SanitizerSmallCase) {
  SG_REQUIRE_HOPPER();
  for (const Pairing pairing : {Pairing{Format::mxfp4, Format::mxfp4}, Pairing{Format::bf16, Format::mxfp8},
                                Pairing{Format::fp8_block128, Format::nvfp4}, Pairing{Format::nvfp4, Format::nvfp4}}) {
    std::mt19937 rng(19);
    Problem p;
    p.build(3, 33, 136, 256, rng, 0, 0, 0, pairing.a, pairing.b);
    const auto reference = rounded_reference(p);
    GroupedGemmArgs args = p.args();
    args.granularity = SignalGranularity::per_row_block;
    expect_run_correct(p, args, {33, 0, 5}, reference, name(pairing));
    // The heuristic's tiles above run the register-weights mainloop (fp8_block128 tokens, this few
    // tiles: 128x128, so their decode tile is given); 64x128 without a workspace is the dequantizing
    // one (both operands, or fp8_block128 tokens beside nvfp4 weights, in shared memory).
    if (pairing.a == Format::fp8_block128) {
      args.config = TileConfig{48, 256, 0, 0};
      expect_run_correct(p, args, {33, 0, 5}, reference, name(pairing) + " on the 48x256 decode tile");
    }
    args.config = TileConfig{64, 128, 0, 0};
    expect_run_correct(p, args, {33, 0, 5}, reference, name(pairing) + " on the dequantizing mainloop");
  }
}

// masked_m outside [0, max_m] (read on the device) runs as if clamped, for every pairing (also with
// the workspace where the pairing uses one: the activation conversion clamps as well), and is
// reported through error_flag.
TEST(FormatPairings, OutOfRangeMaskedMIsClampedAndReported) {
  SG_REQUIRE_HOPPER();
  const std::vector<int32_t> given = {-4, 1000, 10}, clamped = {0, 64, 10};
  for (const Pairing& pairing : kPairings) {
    std::mt19937 rng(83);
    Problem p;
    p.build(3, 64, 256, 256, rng, 0, 0, 0, pairing.a, pairing.b);
    const auto reference = rounded_reference(p);
    GroupedGemmArgs args = p.args();
    args.granularity = SignalGranularity::per_row_block;
    DeviceBuffer workspace(workspace_bytes(args));
    for (const bool with_workspace : {false, true}) {
      if (with_workspace && workspace.bytes() == 0) continue;
      const std::string what = name(pairing) + (with_workspace ? " with a workspace" : "");
      DeviceBuffer flag = DeviceBuffer::from(std::vector<int32_t>{0});
      args.error_flag = flag.get<int32_t>();
      args.workspace = with_workspace ? workspace.get() : nullptr;
      args.workspace_bytes = with_workspace ? workspace.bytes() : 0;
      const RunResult r = run(p, args, given);
      ASSERT_TRUE(r.status.ok()) << what << ": " << r.status.message;
      EXPECT_EQ(check_output(p, clamped, reference, kTolerance), "") << what;
      EXPECT_EQ(check_signals(args, clamped, r.signals), "") << what;
      EXPECT_EQ(flag.to_host<int32_t>()[0] & kErrorMaskedMOutOfRange, kErrorMaskedMOutOfRange) << what;
    }
  }
}

// Activations converted once into a workspace (GroupedGemmArgs::workspace): of a one-format pairing,
// then bf16 x the weights' format; fp8_block128 tokens, then read as bf16 by the register-weights
// mainloop, which still promotes with their scales. The same products as the conversion inside the
// GEMM, so the same tolerance. Padded activation strides (the conversion reads them; the workspace
// is packed), edge masked_m, decode and wide tiles, few SMs; the tile and the signal layout are
// those of the bf16 launch (fp8 tokens: of their own pairing, or 128x128 where narrows_decode_tile
// says); a workspace too small is an error naming workspace_bytes.
TEST(FormatPairings, ActivationsConvertedOnceInTheWorkspace) {
  SG_REQUIRE_HOPPER();
  const std::vector<int32_t> masked_m = {0, 1, 65, 130, 37};
  for (const Pairing pairing : {Pairing{Format::nvfp4, Format::nvfp4}, Pairing{Format::mxfp4, Format::mxfp4},
                                Pairing{Format::mxfp8, Format::mxfp8}, Pairing{Format::fp8_block128, Format::nvfp4},
                                Pairing{Format::fp8_block128, Format::mxfp4}}) {
    const bool fp8 = pairing.a == Format::fp8_block128;
    const int k = fp8 ? 640 : 576;  // whole 128-K blocks for fp8_block128
    std::mt19937 rng(61);
    Problem p;
    p.build(5, 130, 328, k, rng, /*a_pad=*/32, /*b_pad=*/16, /*out_pad=*/16, pairing.a, pairing.b);
    const auto reference = rounded_reference(p);
    GroupedGemmArgs probe = p.args();
    ASSERT_EQ(activation_workspace_bytes(probe), size_t(5) * 130 * k * 2);
    DeviceBuffer workspace(activation_workspace_bytes(probe));
    for (const int expected_m : {32, 0})  // the decode tiles, then the heuristic's wide tile
      for (const int sm_count : {0, 3}) {
        GroupedGemmArgs args = p.args();
        args.workspace = workspace.get();
        args.workspace_bytes = workspace.bytes();
        args.expected_m = expected_m;
        args.sm_count = sm_count;
        args.granularity = expected_m == 0 ? SignalGranularity::per_row_block : SignalGranularity::per_expert;
        GroupedGemmArgs as_bf16 = args;
        if (!fp8) as_bf16.a = OperandArgs{Format::bf16, workspace.get(), nullptr, 0, 0};
        as_bf16.workspace = nullptr;
        const TileConfig cfg = select_config(args), bf16_cfg = select_config(as_bf16);
        // fp8 tokens: their pairing's tile, but 128x128 for these 30 decode tiles of 48x256 with
        // K = 640 in the workspace (host::narrows_decode_tile).
        const bool narrowed = fp8 && expected_m == 32;
        EXPECT_EQ(cfg.block_m, narrowed ? 128 : bf16_cfg.block_m);
        EXPECT_EQ(cfg.block_n, narrowed ? 128 : bf16_cfg.block_n);
        expect_run_correct(p, args, masked_m, reference,
                           name(pairing) + " with a workspace, expected_m " + std::to_string(expected_m) +
                               " sm_count " + std::to_string(sm_count));
      }
    GroupedGemmArgs small = p.args();
    small.workspace = workspace.get();
    small.workspace_bytes = workspace.bytes() - 16;
    const Status s = validate(small);
    EXPECT_EQ(s.code, StatusCode::invalid_argument);
    EXPECT_NE(s.message.find("workspace_bytes"), std::string::npos) << s.message;
    // Stages that pass validation's range but not shared memory are rejected before the conversion
    // is enqueued: the workspace stays as it was.
    GroupedGemmArgs too_deep = p.args();
    too_deep.workspace = workspace.get();
    too_deep.workspace_bytes = workspace.bytes();
    too_deep.config = TileConfig{0, 0, 16, 0};
    cudaMemset(workspace.get(), 0x5A, workspace.bytes());
    const Status deep = grouped_gemm_nt_masked(too_deep);
    EXPECT_EQ(deep.code, StatusCode::invalid_argument) << name(pairing);
    EXPECT_NE(deep.message.find("config.stages"), std::string::npos) << deep.message;
    const auto bytes = workspace.to_host<uint8_t>();
    EXPECT_TRUE(std::all_of(bytes.begin(), bytes.end(), [](uint8_t b) { return b == 0x5A; })) << name(pairing);
  }
}

// Captured once, replayed with masked_m changed between replays (as decode does), where the
// launch keeps state in its workspace: activations converted there first (two kernels), split K's
// partials and counters, the dynamic tile counter. Every replay against the reference, with its
// signals; rows past masked_m stay poisoned.
TEST(FormatPairings, GraphReplaysWithAWorkspaceFollowMaskedM) {
  SG_REQUIRE_HOPPER();
  struct Case {
    const char* what;
    Format a, b;
    int experts, max_m, n, k, expected_m;
  };
  const Case cases[] = {{"nvfp4 x nvfp4, activations converted in the workspace", Format::nvfp4, Format::nvfp4, 5, 96,
                         264, 576, 0},
                        {"fp8_block128, split K", Format::fp8_block128, Format::fp8_block128, 1, 16, 512, 4096, 0},
                        // 128x128 tiles (expected_m 90), which take tiles from the counter
                        {"fp8_block128, dynamic tiles", Format::fp8_block128, Format::fp8_block128, 6, 200, 384, 512,
                         90}};
  for (const Case& c : cases) {
    std::mt19937 rng(71);
    Problem p;
    p.build(c.experts, c.max_m, c.n, c.k, rng, /*a_pad=*/0, /*b_pad=*/0, /*out_pad=*/0, c.a, c.b);
    const auto reference = rounded_reference(p);
    GroupedGemmArgs args = p.args();
    args.granularity = SignalGranularity::per_row_block;
    args.sm_count = 120;
    args.expected_m = c.expected_m;
    DeviceBuffer workspace(workspace_bytes(args));
    args.workspace = workspace.get();
    args.workspace_bytes = workspace.bytes();
    const TileConfig cfg = select_config(args);
    const bool keeps_state = c.a != Format::fp8_block128 ? host::uses_activation_workspace(args, cfg)
                             : c.k == 4096 ? workspace.bytes() > host::kTileCounterBytes  // split K's partials
                                           : host::takes_tiles_dynamically(args, &cfg);
    ASSERT_TRUE(keeps_state) << c.what;
    const SignalLayout layout = signal_layout(args);
    DeviceBuffer signals(sizeof(uint32_t) * layout.counter_count());
    args.signals = signals.get<uint32_t>();
    cudaStream_t stream;
    SG_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    args.stream = stream;
    p.set_masked_m(std::vector<int32_t>(c.experts, c.max_m));  // the graph reads masked_m at each replay
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    SG_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
    SG_CUDA_CHECK(cudaMemsetAsync(signals.get(), 0, signals.bytes(), stream));
    const Status captured = grouped_gemm_nt_masked(args);
    SG_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
    ASSERT_TRUE(captured.ok()) << c.what << ": " << captured.message;
    SG_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    for (int replay = 0; replay < 4; ++replay) {
      std::vector<int32_t> masked_m(c.experts);
      for (auto& m : masked_m) m = int(rng() % (c.max_m + 1));
      masked_m[replay % c.experts] = replay % 2 == 0 ? c.max_m : 1;
      p.set_masked_m(masked_m);
      p.poison_output();
      SG_CUDA_CHECK(cudaDeviceSynchronize());  // the set-up ran on the legacy stream
      SG_CUDA_CHECK(cudaGraphLaunch(exec, stream));
      SG_CUDA_CHECK(cudaStreamSynchronize(stream));
      EXPECT_EQ(check_output(p, masked_m, reference, kTolerance), "") << c.what << ", replay " << replay;
      EXPECT_EQ(check_signals(args, masked_m, signals.to_host<uint32_t>(), /*base=*/0), "")
          << c.what << ", replay " << replay;
    }
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    cudaStreamDestroy(stream);
  }
}

// fp16 output (OutputType::fp16) from every pairing, fp8_block128 x fp8_block128 included, but
// fp8_block128 x FP4 (reported unsupported): the epilogue rounds alpha * acc to fp16 instead of bf16,
// whatever the mainloop. The decode and the wide tiles, the activation workspace where the pairing
// takes one, split K on few tiles (E1 with the workspace), signals; compared with the reference
// rounded to fp16 within 3e-4 (the fp16 step is 2^-11..2^-10 of the value: an output rounded to bf16
// instead is off by ~1e-3 and fails; fp8 x fp8 keeps its accumulation allowance, see check_output).
TEST(FormatPairings, Fp16Output) {
  SG_REQUIRE_HOPPER();
  std::vector<Pairing> pairings(std::begin(kPairings), std::end(kPairings));
  pairings.push_back({Format::fp8_block128, Format::fp8_block128});
  for (const Pairing& pairing : pairings) {
    const bool fp8_pair = pairing.a == Format::fp8_block128 && pairing.b == Format::fp8_block128;
    for (const int experts : {5, 1}) {
      const std::vector<int32_t> masked_m =
          experts == 5 ? std::vector<int32_t>{0, 1, 65, 130, 37} : std::vector<int32_t>{3};
      std::mt19937 rng(47 + experts);
      Problem p;
      p.build(experts, 130, 328, 1024, rng, /*a_pad=*/32, /*b_pad=*/16, /*out_pad=*/16, pairing.a, pairing.b);
      p.out_type = OutputType::fp16;
      if (kernels::is_fp8_tokens_fp4_weights_pair(pairing.a, pairing.b)) {
        const Status status = validate(p.args());  // its register-weights kernels round to bf16 only
        EXPECT_EQ(status.code, StatusCode::unsupported) << name(pairing);
        EXPECT_NE(status.message.find("out_type"), std::string::npos) << status.message;
        continue;
      }
      const auto reference = rounded_reference(p);
      const std::vector<double> abs_sums = fp8_pair ? fp8_abs_product_sums(p) : std::vector<double>{};
      for (const int expected_m : {32, 0})
        for (const bool with_workspace : {false, true}) {
          GroupedGemmArgs args = p.args();
          args.expected_m = expected_m;
          args.granularity = expected_m == 0 ? SignalGranularity::per_row_block : SignalGranularity::per_expert;
          DeviceBuffer workspace(with_workspace ? workspace_bytes(args) : 0);
          if (with_workspace && workspace.bytes() == 0) continue;
          args.workspace = workspace.get();
          args.workspace_bytes = workspace.bytes();
          const TileConfig cfg = select_config(args);
          const std::string what = name(pairing) + " E" + std::to_string(experts) + " expected_m " +
                                   std::to_string(expected_m) + (with_workspace ? " with a workspace" : "") +
                                   " tile " + std::to_string(cfg.block_m) + "x" + std::to_string(cfg.block_n);
          const RunResult r = run(p, args, masked_m);
          ASSERT_TRUE(r.status.ok()) << what << ": " << r.status.message;
          EXPECT_EQ(check_output(p, masked_m, reference, fp8_pair ? kTolerance : 3e-4, fp8_pair ? &abs_sums : nullptr),
                    "")
              << what;
          EXPECT_EQ(check_signals(args, masked_m, r.signals), "") << what;
        }
    }
  }
}

// A tile fixed on one side only (config.block_m or config.block_n, as a benchmark override does):
// where the heuristic's completion is not compiled for the pairing (64x256 for fp8_block128 at
// max_m = 64, 192x256 for bf16 x nvfp4 at max_m = 140), the launch takes a compiled tile with the
// caller's side, and its signals follow that tile (signal_layout says the same). Before, these
// passed validate() and every launch failed.
TEST(FormatPairings, PartialTileOverridesRunACompiledTile) {
  SG_REQUIRE_HOPPER();
  struct Case {
    Pairing pairing;
    int max_m;
    TileConfig config;
  };
  const Case cases[] = {{{Format::fp8_block128, Format::fp8_block128}, 64, TileConfig{0, 256, 0}},
                        {{Format::bf16, Format::nvfp4}, 140, TileConfig{0, 256, 0}},
                        {{Format::fp8_block128, Format::nvfp4}, 140, TileConfig{0, 256, 0}},
                        {{Format::bf16, Format::mxfp8}, 140, TileConfig{0, 128, 0}},
                        {{Format::bf16, Format::bf16}, 64, TileConfig{128, 0, 0}}};
  std::mt19937 rng(83);
  for (const Case& c : cases) {
    Problem p;
    p.build(3, c.max_m, 320, 512, rng, 0, 0, 0, c.pairing.a, c.pairing.b);
    const auto reference = rounded_reference(p);
    GroupedGemmArgs args = p.args();
    args.config = c.config;
    args.granularity = SignalGranularity::per_row_block;
    const std::string what = name(c.pairing) + " max_m " + std::to_string(c.max_m) + " config " +
                             std::to_string(c.config.block_m) + "x" + std::to_string(c.config.block_n);
    // Counters for validate() (run() gives the launch its own).
    DeviceBuffer counters(signal_layout(args).counter_count() * sizeof(uint32_t));
    GroupedGemmArgs checked = args;
    checked.signals = counters.get<uint32_t>();
    ASSERT_TRUE(validate(checked).ok()) << what << ": " << validate(checked).message;
    const TileConfig chosen = select_config(args);
    EXPECT_TRUE(c.config.block_m == 0 || chosen.block_m == c.config.block_m) << what;
    EXPECT_TRUE(c.config.block_n == 0 || chosen.block_n == c.config.block_n) << what;
    // fp8 x fp8: the tensor cores' ~14-bit sums per 128-K block, bounded by the sum of |terms|
    // (check_output), at random_problems' 2e-3.
    const bool fp8_pair = c.pairing.a == Format::fp8_block128 && c.pairing.b == Format::fp8_block128;
    const std::vector<double> abs_sums = fp8_pair ? fp8_abs_product_sums(p) : std::vector<double>{};
    for (const auto& masked_m : {std::vector<int32_t>{c.max_m, 1, 0}, std::vector<int32_t>{c.max_m - 1, 65, 33}}) {
      const std::string run_what =
          what + " (" + std::to_string(chosen.block_m) + "x" + std::to_string(chosen.block_n) + ")";
      const RunResult r = run(p, args, masked_m);
      ASSERT_TRUE(r.status.ok()) << run_what << ": " << r.status.message;
      EXPECT_EQ(check_output(p, masked_m, reference, fp8_pair ? 2e-3 : kTolerance, fp8_pair ? &abs_sums : nullptr),
                "")
          << run_what;
      EXPECT_EQ(check_signals(args, masked_m, r.signals), "") << run_what;
    }
  }
}

// Buffers allocated in the capture itself (cudaMallocAsync on the capturing stream, as a graph's own
// memory or torch's stream-ordered allocator gives them): the driver knows no attributes of them until
// the graph runs, so the launch's device-pointer check lets an unknown pointer pass while the stream
// captures (it refused them as host memory before). The workspace (activations converted into it)
// and the signals are allocated and freed inside the graph.
TEST(FormatPairings, GraphWithBuffersAllocatedInTheCapture) {
  SG_REQUIRE_HOPPER();
  std::mt19937 rng(89);
  Problem p;
  p.build(4, 64, 256, 512, rng, 0, 0, 0, Format::nvfp4, Format::nvfp4);
  const auto reference = rounded_reference(p);
  const std::vector<int32_t> masked_m = {64, 1, 0, 37};
  p.set_masked_m(masked_m);
  GroupedGemmArgs args = p.args();
  args.granularity = SignalGranularity::per_expert;
  const SignalLayout layout = signal_layout(args);
  args.workspace_bytes = workspace_bytes(args);
  ASSERT_GT(args.workspace_bytes, 0u);
  DeviceBuffer signals_copy(layout.counter_count() * sizeof(uint32_t));

  cudaStream_t stream;
  SG_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  args.stream = stream;
  cudaGraph_t graph;
  SG_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  SG_CUDA_CHECK(cudaMallocAsync(&args.workspace, args.workspace_bytes, stream));
  void* signals = nullptr;
  SG_CUDA_CHECK(cudaMallocAsync(&signals, signals_copy.bytes(), stream));
  SG_CUDA_CHECK(cudaMemsetAsync(signals, 0, signals_copy.bytes(), stream));
  args.signals = static_cast<uint32_t*>(signals);
  const Status captured = grouped_gemm_nt_masked(args);
  SG_CUDA_CHECK(cudaMemcpyAsync(signals_copy.get(), signals, signals_copy.bytes(), cudaMemcpyDeviceToDevice, stream));
  SG_CUDA_CHECK(cudaFreeAsync(signals, stream));
  SG_CUDA_CHECK(cudaFreeAsync(args.workspace, stream));
  SG_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  ASSERT_TRUE(captured.ok()) << captured.message;
  cudaGraphExec_t exec;
  SG_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  for (int replay = 0; replay < 2; ++replay) {
    p.poison_output();
    SG_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    SG_CUDA_CHECK(cudaStreamSynchronize(stream));
    EXPECT_EQ(check_output(p, masked_m, reference, kTolerance), "") << "replay " << replay;
    args.signals = signals_copy.get<uint32_t>();
    EXPECT_EQ(check_signals(args, masked_m, signals_copy.to_host<uint32_t>(), 0), "") << "replay " << replay;
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace signalgemm::test
