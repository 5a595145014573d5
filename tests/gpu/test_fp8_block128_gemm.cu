// fp8_block128 masked grouped GEMM on the GPU against the float64 CPU reference: values, masked
// rows untouched, signal counts, strides, clamping, persistence, CUDA-graph replay; and the bf16 and
// register-weights mainloops' tiles, and prefill-sized problems of three pairings.
#include <algorithm>

#include "gpu_test_util.h"
#include "host/config.h"
#include "signalgemm/gemm.h"

namespace signalgemm::test {
namespace {

void expect_signals(const GroupedGemmArgs& args, const std::vector<int32_t>& masked_m,
                    const std::vector<uint32_t>& signals, uint32_t base = 7) {
  EXPECT_EQ(check_signals(args, masked_m, signals, base), "");
}

// The tiles a pairing compiles: the common ones, and for fp8_block128 x fp8_block128 the token-rows tiles.
std::vector<host::TileShape> compiled_tiles(const Problem& p) {
  std::vector<host::TileShape> tiles(std::begin(host::kSupportedTiles), std::end(host::kSupportedTiles));
  if (p.a_format == Format::fp8_block128 && p.b_format == Format::fp8_block128)
    tiles.insert(tiles.end(), std::begin(host::kTokenRowsTiles), std::end(host::kTokenRowsTiles));
  return tiles;
}

// Every compiled tile on one problem: values against the reference, masked rows untouched,
// signal counts.
// sm_count > 0: a persistent grid of that many CTAs, each running many tiles in a row.
void expect_every_tile_correct(Problem& p, const std::vector<int32_t>& masked_m, SignalGranularity g,
                               int sm_count = 0) {
  const auto reference = full_reference(p);
  for (const host::TileShape tile : compiled_tiles(p))
    for (int cluster : {1, 2}) {
      const bool fp8_pair = p.a_format == Format::fp8_block128 && p.b_format == Format::fp8_block128;
      if (cluster == 2 && !(fp8_pair && host::is_cluster_tile(tile.block_m, tile.block_n))) continue;
      GroupedGemmArgs args = p.args();
      args.config.block_m = tile.block_m;
      args.config.block_n = tile.block_n;
      args.config.cluster = cluster;
      args.granularity = g;
      args.sm_count = sm_count;
      const RunResult r = run(p, args, masked_m);
      ASSERT_TRUE(r.status.ok()) << r.status.message;
      EXPECT_EQ(check_output(p, masked_m, reference), "")
          << tile.block_m << "x" << tile.block_n << " cluster " << cluster << " sm_count " << sm_count;
      expect_signals(args, masked_m, r.signals);
    }
}

// Two-CTA clusters: every share mode (row-block pairs, an odd row block, the lone last column of
// N = 600 where rank 1 idles), masked_m from 0 to max_m, and grids of 1 CTA (no cluster), 3 CTAs
// (one cluster) and all SMs.
TEST(Fp8Block128Gemm, ClusterPairsEveryShareMode) {
  SG_REQUIRE_HOPPER();
  std::mt19937 rng(77);
  Problem p;
  p.build(/*experts=*/8, /*max_m=*/520, /*n=*/600, /*k=*/384, rng);
  const auto reference = full_reference(p);
  const std::vector<int32_t> masked_m = {0, 1, 129, 256, 257, 385, 511, 520};
  for (int block_n : {128, 256})
    for (int sm_count : {0, 1, 3})
      for (auto g : {SignalGranularity::per_expert, SignalGranularity::per_row_block}) {
        GroupedGemmArgs args = p.args();
        args.config.block_m = 128;
        args.config.block_n = block_n;
        args.config.cluster = 2;
        args.sm_count = sm_count;
        args.granularity = g;
        const RunResult r = run(p, args, masked_m);
        ASSERT_TRUE(r.status.ok()) << r.status.message;
        EXPECT_EQ(check_output(p, masked_m, reference), "")
            << "128x" << block_n << " sm_count " << sm_count << " " << to_string(g);
        expect_signals(args, masked_m, r.signals);
      }
}

// Dynamic tiles (a workspace holds the grid's tile counter): every single-CTA tile, masked_m from
// 0 to max_m, grids of 3 and all CTAs, both granularities; the workspace starts as garbage
// (the launch zeroes its counter) and serves two launches in a row.
TEST(Fp8Block128Gemm, DynamicTilesFromAWorkspace) {
  SG_REQUIRE_HOPPER();
  std::mt19937 rng(404);
  Problem p;
  p.build(/*experts=*/6, /*max_m=*/300, /*n=*/456, /*k=*/384, rng);
  const auto reference = full_reference(p);
  const std::vector<int32_t> masked_m = {0, 1, 129, 300, 63, 257};
  std::vector<uint8_t> garbage(256);
  for (auto& x : garbage) x = uint8_t(rng());
  DeviceBuffer workspace = DeviceBuffer::from(garbage);
  for (const host::TileShape tile : compiled_tiles(p))
    for (int sm_count : {0, 3})
      for (auto g : {SignalGranularity::per_expert, SignalGranularity::per_row_block})
        for (int launch = 0; launch < 2; ++launch) {
          GroupedGemmArgs args = p.args();
          args.config.block_m = tile.block_m;
          args.config.block_n = tile.block_n;
          args.config.cluster = 1;
          args.sm_count = sm_count;
          args.granularity = g;
          args.workspace = workspace.get();
          args.workspace_bytes = workspace.bytes();
          const RunResult r = run(p, args, masked_m);
          ASSERT_TRUE(r.status.ok()) << r.status.message;
          EXPECT_EQ(check_output(p, masked_m, reference), "")
              << tile.block_m << "x" << tile.block_n << " sm_count " << sm_count << " launch " << launch;
          expect_signals(args, masked_m, r.signals);
        }
}

// Few tiles: each tile's K split over several CTAs (host::plan_split_k), the last piece summing
// the partials in piece order. Even and uneven splits, one and several experts, both tiles, both
// granularities, a workspace of garbage; two launches give the same bits (the sum's order never
// depends on timing), and a launch on few SMs runs unsplit.
struct SplitKCase {
  int experts, max_m, n, k, block_m;
  std::vector<int32_t> masked_m;
  int block_n = 128;
};

void expect_split_k_correct(Format a_format, Format b_format, const std::vector<SplitKCase>& cases) {
  std::mt19937 rng(505);
  for (const SplitKCase& c : cases) {
    Problem p;
    p.build(c.experts, c.max_m, c.n, c.k, rng, 0, 0, 0, a_format, b_format);
    const auto reference = full_reference(p);
    for (int sm_count : {0, 3})
      for (auto g : {SignalGranularity::per_expert, SignalGranularity::per_row_block}) {
        GroupedGemmArgs args = p.args();
        args.config.block_m = c.block_m;
        args.config.block_n = c.block_n;
        args.sm_count = sm_count;
        args.granularity = g;
        const size_t bytes = workspace_bytes(args);
        if (sm_count == 0)
          EXPECT_GT(bytes, activation_workspace_bytes(args) + host::kTileCounterBytes) << "expected a split of K";
        std::vector<uint8_t> garbage(std::max<size_t>(bytes, 1));
        for (auto& x : garbage) x = uint8_t(rng());
        DeviceBuffer workspace = DeviceBuffer::from(garbage);
        args.workspace = bytes > 0 ? workspace.get() : nullptr;  // bf16 unsplit: none needed
        args.workspace_bytes = bytes;
        std::vector<uint16_t> first;
        for (int launch = 0; launch < 2; ++launch) {
          const RunResult r = run(p, args, c.masked_m);
          ASSERT_TRUE(r.status.ok()) << r.status.message;
          EXPECT_EQ(check_output(p, c.masked_m, reference), "")
              << c.experts << " experts, n " << c.n << ", k " << c.k << ", sm_count " << sm_count;
          expect_signals(args, c.masked_m, r.signals);
          if (launch == 0) first = p.output();
          else EXPECT_TRUE(first == p.output()) << "two launches differ";
        }
      }
  }
}

TEST(Fp8Block128Gemm, SplitKForFewTiles) {
  SG_REQUIRE_HOPPER();
  expect_split_k_correct(Format::fp8_block128, Format::fp8_block128,
                         {{1, 20, 1024, 4096, 32, {17}},         // 8 tiles, 5 pieces of 6 or 7 K blocks
                          {2, 64, 640, 6144, 64, {64, 1}},       // 10 tiles, 8 pieces of 6
                          {3, 50, 328, 2432, 32, {0, 50, 33}}});  // partial column block; 3 pieces of 6, 6, 7
}

TEST(Fp8Block128Gemm, EveryTileConfigAndEdgeMaskedM) {
  SG_REQUIRE_HOPPER();
  std::mt19937 rng(2026);
  Problem p;
  p.build(/*experts=*/7, /*max_m=*/200, /*n=*/328, /*k=*/512, rng);  // n: partial column blocks
  // Last row blocks of every MMA width (the real rows rounded up to 32): 1 -> 32, 63 -> 64,
  // 65 -> 96, 127 -> 128, 150 -> 160 (192-token tile) and 150 - 128 = 22 -> 32 (128-token tile);
  // 64 and 128 rows end exactly on a 64- and a 128-row block (their per_row_block counters).
  for (auto g : {SignalGranularity::per_expert, SignalGranularity::per_row_block}) {
    expect_every_tile_correct(p, {0, 1, 63, 65, 127, 150, 200}, g);
    expect_every_tile_correct(p, {64, 128, 0, 129, 192, 33, 1}, g);
  }
}

TEST(Fp8Block128Gemm, ManyExpertsRandomMaskedMHeuristicConfig) {
  SG_REQUIRE_HOPPER();
  std::mt19937 rng(7);
  Problem p;
  p.build(32, 130, 256, 384, rng);
  const auto reference = full_reference(p);
  for (int trial = 0; trial < 3; ++trial) {
    std::vector<int32_t> masked_m(32);
    for (auto& m : masked_m) m = int(rng() % 131);
    masked_m[0] = 0, masked_m[1] = 130, masked_m[2] = 1, masked_m[3] = 128, masked_m[4] = 129, masked_m[5] = 64;
    GroupedGemmArgs args = p.args();
    args.expected_m = 40 + 40 * trial;
    args.granularity = SignalGranularity::per_expert;
    const RunResult r = run(p, args, masked_m);
    ASSERT_TRUE(r.status.ok()) << r.status.message;
    EXPECT_EQ(check_output(p, masked_m, reference), "") << "trial " << trial;
    expect_signals(args, masked_m, r.signals);
  }
}

// One 128-token block per expert over many tiles: the heuristic takes the token-rows 128x192
// (widens_fp8_token_block), whose second MMA warpgroup idles on experts of <= 64 rows; with and
// without the workspace's tile counter (which this tile does not use), both signal granularities.
TEST(Fp8Block128Gemm, ManyOneBlockExpertsOnTheTokenRowsTile) {
  SG_REQUIRE_HOPPER();
  std::mt19937 rng(51);
  Problem p;
  p.build(16, 96, 3080, 256, rng);  // 16 x ceil(3080 / 192) = 272 tiles; a partial last column block
  const auto reference = full_reference(p);
  std::vector<int32_t> masked_m(16);
  for (auto& m : masked_m) m = int(rng() % 97);
  masked_m[0] = 0, masked_m[1] = 1, masked_m[2] = 63, masked_m[3] = 64, masked_m[4] = 65, masked_m[5] = 96;
  for (const bool with_workspace : {false, true})
    for (const SignalGranularity g : {SignalGranularity::per_expert, SignalGranularity::per_row_block}) {
      GroupedGemmArgs args = p.args();
      args.expected_m = 64;
      args.granularity = g;
      DeviceBuffer workspace;
      if (with_workspace) {
        workspace = DeviceBuffer(workspace_bytes(args));
        args.workspace = workspace.get(), args.workspace_bytes = workspace.bytes();
      }
      const TileConfig cfg = select_config(args);
      EXPECT_EQ(cfg.block_m, 128);
      EXPECT_EQ(cfg.block_n, 192);
      const RunResult r = run(p, args, masked_m);
      ASSERT_TRUE(r.status.ok()) << r.status.message;
      EXPECT_EQ(check_output(p, masked_m, reference), "") << (with_workspace ? "with a workspace" : "");
      expect_signals(args, masked_m, r.signals);
    }
}

// Both SPEC §6 (N, K) pairs, with few rows so the float64 reference stays quick.
TEST(Fp8Block128Gemm, DeepSeekShapes) {
  SG_REQUIRE_HOPPER();
  std::mt19937 rng(11);
  struct Shape { int experts, max_m, n, k; std::vector<int32_t> masked_m; };
  for (const Shape& s : {Shape{1, 72, 4096, 7168, {65}}, Shape{2, 40, 7168, 2048, {33, 0}}}) {
    Problem p;
    p.build(s.experts, s.max_m, s.n, s.k, rng);
    const auto reference = ref::masked_grouped_gemm(p.a, p.b, s.masked_m.data(), p.alpha.data());
    GroupedGemmArgs args = p.args();
    args.granularity = SignalGranularity::per_row_block;
    const RunResult r = run(p, args, s.masked_m);
    ASSERT_TRUE(r.status.ok()) << r.status.message;
    EXPECT_EQ(check_output(p, s.masked_m, reference), "") << "n " << s.n << " k " << s.k;
    expect_signals(args, s.masked_m, r.signals);
  }
}

// Prefill-sized problems (SPEC §6: m >= 1024): many row blocks per expert on the heuristic's large
// tiles (fp8: 128x256 in two-CTA clusters at K >= 4096, or dynamic tiles from a workspace; bf16 x
// nvfp4: 192x128 on the register-weights mainloop; bf16: 128x256). The float64 reference is too slow
// for every row, so it covers the rows at each side of every 64-row boundary (the edges of 128- and
// 192-row tiles), the last real row and a few random ones, all columns (the last column block is
// partial); every other real row must be written and finite, every row past masked_m untouched.
TEST(PrefillShapes, SampledRowsAgainstTheReference) {
  SG_REQUIRE_HOPPER();
  constexpr int kExperts = 4, kMaxM = 1100, kN = 2176, kK = 4096;
  const std::vector<int32_t> masked_m = {1100, 1023, 0, 517};
  struct Pairing { Format a, b; };
  for (const Pairing pairing : {Pairing{Format::fp8_block128, Format::fp8_block128},
                                Pairing{Format::bf16, Format::nvfp4}, Pairing{Format::bf16, Format::bf16}}) {
    const std::string what = std::string(to_string(pairing.a)) + " x " + to_string(pairing.b);
    std::mt19937 rng(77);
    Problem p;
    p.build(kExperts, kMaxM, kN, kK, rng, 0, 0, 0, pairing.a, pairing.b);
    // Sampled rows and their float64 reference, per expert.
    std::vector<std::vector<int>> rows(kExperts);
    for (int e = 0; e < kExperts; ++e) {
      const int m = masked_m[e];
      for (int edge = 64; edge < m; edge += 64)
        for (int row : {edge - 1, edge}) rows[e].push_back(row);
      if (m > 0) rows[e].insert(rows[e].end(), {0, m - 1, int(rng() % m), int(rng() % m)});
    }
    std::vector<std::vector<double>> reference(kExperts);
    std::vector<double> b_row(kK);
    for (int e = 0; e < kExperts; ++e) {
      if (rows[e].empty()) continue;
      std::vector<std::vector<double>> a_rows(rows[e].size(), std::vector<double>(kK));
      for (size_t r = 0; r < rows[e].size(); ++r)
        for (int c = 0; c < kK; ++c) a_rows[r][c] = ref::dequantize_element(p.a, e, rows[e][r], c);
      reference[e].assign(rows[e].size() * kN, 0.0);
      for (int j = 0; j < kN; ++j) {
        for (int c = 0; c < kK; ++c) b_row[c] = ref::dequantize_element(p.b, e, j, c);
        for (size_t r = 0; r < rows[e].size(); ++r) {
          double sum = 0;
          for (int c = 0; c < kK; ++c) sum += a_rows[r][c] * b_row[c];
          reference[e][r * kN + j] = double(p.alpha[e]) * sum;
        }
      }
    }
    DeviceBuffer workspace;
    for (const bool with_workspace : {false, true}) {
      GroupedGemmArgs args = p.args();
      args.expected_m = 1024;
      args.granularity = SignalGranularity::per_row_block;
      if (with_workspace) {
        workspace = DeviceBuffer(std::max<size_t>(workspace_bytes(args), 16));
        args.workspace = workspace.get();
        args.workspace_bytes = workspace.bytes();
      }
      const TileConfig config = select_config(args);
      SCOPED_TRACE(what + (with_workspace ? ", workspace" : "") + ", tile " + std::to_string(config.block_m) + "x" +
                   std::to_string(config.block_n) + " cluster " + std::to_string(config.cluster));
      const RunResult r = run(p, args, masked_m);
      ASSERT_TRUE(r.status.ok()) << r.status.message;
      expect_signals(args, masked_m, r.signals);
      const auto out = p.output();
      const int64_t pitch = p.out_row_stride / 2;
      for (int e = 0; e < kExperts; ++e) {
        int unwritten = 0, overwritten = 0;
        for (int i = 0; i < kMaxM; ++i)
          for (int j = 0; j < kN; ++j) {
            const uint16_t bits = out[(size_t(e) * kMaxM + i) * pitch + j];
            if (i >= masked_m[e]) overwritten += bits != kPoison;
            else unwritten += !std::isfinite(ref::bf16_to_float(bits));
          }
        EXPECT_EQ(overwritten, 0) << "expert " << e << ": elements written past masked_m";
        EXPECT_EQ(unwritten, 0) << "expert " << e << ": real elements left poisoned or not finite";
        double err2 = 0, ref2 = 0;
        for (size_t r = 0; r < rows[e].size(); ++r)
          for (int j = 0; j < kN; ++j) {
            const double got = ref::bf16_to_float(out[(size_t(e) * kMaxM + rows[e][r]) * pitch + j]);
            const double want = reference[e][r * kN + j];
            err2 += (got - want) * (got - want);
            ref2 += want * want;
          }
        if (!rows[e].empty())
          EXPECT_LE(std::sqrt(err2 / ref2), 2e-3) << "expert " << e << ", " << rows[e].size() << " sampled rows";
      }
    }
  }
}

// Problems smaller than one tile in every direction (TMA boxes larger than the tensor).
TEST(Fp8Block128Gemm, ProblemsSmallerThanATile) {
  SG_REQUIRE_HOPPER();
  std::mt19937 rng(31);
  struct Tiny { int experts, max_m, n, k; std::vector<int32_t> masked_m; };
  for (const Tiny& t : {Tiny{1, 1, 8, 128, {1}}, Tiny{3, 5, 72, 256, {5, 0, 2}}, Tiny{2, 33, 200, 128, {33, 17}}}) {
    Problem p;
    p.build(t.experts, t.max_m, t.n, t.k, rng);
    SCOPED_TRACE("E " + std::to_string(t.experts) + " max_m " + std::to_string(t.max_m) + " n " + std::to_string(t.n));
    expect_every_tile_correct(p, t.masked_m, SignalGranularity::per_row_block);
  }
}

TEST(Fp8Block128Gemm, PaddedStridesAndFewSms) {
  SG_REQUIRE_HOPPER();
  std::mt19937 rng(5);
  Problem p;
  p.build(5, 96, 512, 256, rng, /*a_pad=*/48, /*b_pad=*/16, /*out_pad=*/32);
  const auto reference = full_reference(p);
  const std::vector<int32_t> masked_m = {96, 3, 0, 50, 77};
  for (int sm_count : {1, 3}) {
    GroupedGemmArgs args = p.args();
    args.sm_count = sm_count;
    args.granularity = SignalGranularity::per_expert;
    args.scope = SignalScope::sys;
    const RunResult r = run(p, args, masked_m);
    ASSERT_TRUE(r.status.ok()) << r.status.message;
    EXPECT_EQ(check_output(p, masked_m, reference), "") << "sm_count " << sm_count;
    expect_signals(args, masked_m, r.signals);
  }
}

// Row scatter (out_rows, the epilogue-send mode's output): every row through its own pointer, out
// null; padded output rows; both signal granularities.
TEST(Fp8Block128Gemm, RowScatterThroughOutRows) {
  SG_REQUIRE_HOPPER();
  std::mt19937 rng(29);
  Problem p;
  p.build(4, 80, 384, 256, rng, 0, 0, /*out_pad=*/16);
  const auto reference = full_reference(p);
  std::vector<void*> rows(size_t(p.experts) * p.max_m);
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<uint8_t*>(p.d_out.get()) + i * p.out_row_stride;
  DeviceBuffer d_rows = DeviceBuffer::from(rows);
  const std::vector<int32_t> masked_m = {80, 0, 1, 45};
  for (auto g : {SignalGranularity::per_expert, SignalGranularity::per_row_block}) {
    GroupedGemmArgs args = p.args();
    args.out = nullptr;
    args.out_rows = d_rows.get<void*>();
    args.granularity = g;
    const RunResult r = run(p, args, masked_m);
    ASSERT_TRUE(r.status.ok()) << r.status.message;
    EXPECT_EQ(check_output(p, masked_m, reference), "") << to_string(g);
    expect_signals(args, masked_m, r.signals);
  }
}

// Lets its programmatic dependent start at once, then, `delay_ns` later, writes masked_m: the
// dependent runs meanwhile, and reads masked_m only after its griddepcontrol.wait.
__global__ void write_masked_m_late(int32_t* masked_m, const int32_t* values, int experts, uint64_t delay_ns) {
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  spin_for_ns(delay_ns);
  for (int e = threadIdx.x; e < experts; e += blockDim.x) masked_m[e] = values[e];
}

// With PDL the kernel may start while the previous kernel still runs; it must still see that
// kernel's writes. The previous kernel triggers its dependents first and writes masked_m 200 us
// later: a GEMM that read masked_m before waiting would take the stale {64, 64, 64} and write the
// poisoned rows past 5 and 0.
TEST(Fp8Block128Gemm, ProgrammaticDependentLaunchSeesPreviousWrites) {
  SG_REQUIRE_HOPPER();
  std::mt19937 rng(23);
  Problem p;
  p.build(3, 64, 256, 256, rng);
  const auto reference = full_reference(p);
  cudaStream_t stream;
  SG_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  GroupedGemmArgs args = p.args();
  args.enable_pdl = true;
  args.stream = stream;
  const std::vector<int32_t> masked_m = {5, 0, 64};
  DeviceBuffer values = DeviceBuffer::from(masked_m);
  // Loaded first: a lazy load behind the spinning writer would start the GEMM after it, testing nothing.
  ASSERT_TRUE(load_kernels(args).ok());
  for (int launch = 0; launch < 3; ++launch) {
    p.set_masked_m({64, 64, 64});
    p.poison_output();
    SG_CUDA_CHECK(cudaDeviceSynchronize());
    write_masked_m_late<<<1, 32, 0, stream>>>(p.d_masked_m.get<int32_t>(), values.get<int32_t>(), 3, 200'000);
    ASSERT_TRUE(grouped_gemm_nt_masked(args).ok());
    SG_CUDA_CHECK(cudaStreamSynchronize(stream));
    EXPECT_EQ(check_output(p, masked_m, reference), "") << "launch " << launch;
  }
  cudaStreamDestroy(stream);
}

// alpha may be null: every expert's alpha is 1.
TEST(Fp8Block128Gemm, NullAlphaIsOne) {
  SG_REQUIRE_HOPPER();
  std::mt19937 rng(24);
  Problem p;
  p.build(3, 64, 384, 256, rng);
  const std::vector<int32_t> all(p.experts, p.max_m);
  const std::vector<float> ones(p.experts, 1.f);
  const auto reference = ref::masked_grouped_gemm(p.a, p.b, all.data(), ones.data());
  GroupedGemmArgs args = p.args();
  args.alpha = nullptr;
  const std::vector<int32_t> masked_m = {64, 1, 37};
  const RunResult r = run(p, args, masked_m);
  ASSERT_TRUE(r.status.ok()) << r.status.message;
  EXPECT_EQ(check_output(p, masked_m, reference), "");
}

TEST(Fp8Block128Gemm, OutOfRangeMaskedMIsClampedAndReported) {
  SG_REQUIRE_HOPPER();
  std::mt19937 rng(3);
  Problem p;
  p.build(3, 64, 256, 256, rng);
  const auto reference = full_reference(p);
  DeviceBuffer flag = DeviceBuffer::from(std::vector<int32_t>{0});
  GroupedGemmArgs args = p.args();
  args.error_flag = flag.get<int32_t>();
  const RunResult r = run(p, args, {-4, 1000, 10});
  ASSERT_TRUE(r.status.ok()) << r.status.message;
  EXPECT_EQ(check_output(p, {0, 64, 10}, reference), "");
  EXPECT_EQ(flag.to_host<int32_t>()[0] & kErrorMaskedMOutOfRange, kErrorMaskedMOutOfRange);

  DeviceBuffer clean = DeviceBuffer::from(std::vector<int32_t>{0});
  args.error_flag = clean.get<int32_t>();
  ASSERT_TRUE(run(p, args, {0, 64, 10}).status.ok());
  EXPECT_EQ(clean.to_host<int32_t>()[0], 0);
}

// A graph captured before any eager launch of the kernel (the cluster kernel then makes its
// occupancy query inside the capture) and one captured after, both replayed three times.
void expect_graph_replay_matches_direct_launch(const TileConfig& config, bool capture_first) {
  std::mt19937 rng(17);
  Problem p;
  p.build(4, 64, 256, 512, rng);
  const auto reference = full_reference(p);
  const std::vector<int32_t> masked_m = {64, 17, 0, 33};
  p.set_masked_m(masked_m);
  DeviceBuffer d_signals = DeviceBuffer::from(std::vector<uint32_t>(4, 0));
  GroupedGemmArgs args = p.args();
  args.config = config;
  args.granularity = SignalGranularity::per_expert;
  args.signals = d_signals.get<uint32_t>();

  cudaStream_t stream;
  SG_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  args.stream = stream;
  std::vector<uint16_t> direct;
  auto direct_launch = [&] {
    p.poison_output();
    EXPECT_TRUE(grouped_gemm_nt_masked(args).ok());
    EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    direct = p.output();
  };
  if (!capture_first) direct_launch();

  cudaGraph_t graph;
  cudaGraphExec_t exec;
  SG_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  SG_CUDA_CHECK(cudaMemsetAsync(d_signals.get(), 0, d_signals.bytes(), stream));
  const Status captured = grouped_gemm_nt_masked(args);
  SG_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  ASSERT_TRUE(captured.ok()) << captured.message;
  SG_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  if (capture_first) direct_launch();
  for (int replay = 0; replay < 3; ++replay) {
    p.poison_output();
    SG_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    SG_CUDA_CHECK(cudaStreamSynchronize(stream));
    EXPECT_EQ(p.output(), direct) << "replay " << replay;
    expect_signals(args, masked_m, d_signals.to_host<uint32_t>(), 0);
  }
  EXPECT_EQ(check_output(p, masked_m, reference), "");
  // The graph reads masked_m on the device at each replay: new values, no new capture.
  for (const std::vector<int32_t>& next : {std::vector<int32_t>{0, 1, 64, 63}, {33, 0, 1, 64}, {64, 64, 7, 0}}) {
    p.set_masked_m(next);
    p.poison_output();
    SG_CUDA_CHECK(cudaDeviceSynchronize());
    SG_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    SG_CUDA_CHECK(cudaStreamSynchronize(stream));
    EXPECT_EQ(check_output(p, next, reference), "") << "masked_m " << next[0] << ", " << next[1] << ", ...";
    expect_signals(args, next, d_signals.to_host<uint32_t>(), 0);
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

TEST(Fp8Block128Gemm, CudaGraphReplayMatchesDirectLaunch) {
  SG_REQUIRE_HOPPER();
  expect_graph_replay_matches_direct_launch(TileConfig{}, /*capture_first=*/false);
  // Two-CTA clusters, captured before this test's eager launch (run alone, the kernel's first launch
  // in the process: its occupancy query is then made inside the capture) and after it.
  expect_graph_replay_matches_direct_launch(TileConfig{128, 128, 0, 2}, /*capture_first=*/true);
  expect_graph_replay_matches_direct_launch(TileConfig{128, 256, 0, 2}, /*capture_first=*/false);
}

// bf16 x bf16: the unscaled mainloop, every tile, K not a multiple of the 64-element stage (the
// last stage is zero-filled by TMA), a partial column block.
TEST(Bf16Gemm, EveryTileConfigAndEdgeMaskedM) {
  SG_REQUIRE_HOPPER();
  std::mt19937 rng(41);
  Problem p;
  p.build(/*experts=*/5, /*max_m=*/130, /*n=*/328, /*k=*/520, rng, 0, 0, 0, Format::bf16, Format::bf16);
  expect_every_tile_correct(p, {0, 1, 65, 128, 130}, SignalGranularity::per_expert);
}

// bf16: K blocks of 64 elements, at least 8 pieces (host::min_k_pieces); a K (3080) whose last
// block is partial (zero-filled by TMA) in the last of 8 pieces.
TEST(Bf16Gemm, SplitKForFewTiles) {
  SG_REQUIRE_HOPPER();
  expect_split_k_correct(Format::bf16, Format::bf16, {{1, 20, 1024, 3072, 32, {17}},       // 8 tiles, 8 pieces of 6
                                        {2, 64, 640, 3136, 64, {64, 1}},     // 10 tiles, 8 pieces of 6 or 7
                                        {2, 50, 328, 3080, 32, {50, 33}}});  // partial column block
}

// bf16 x FP4 or mxfp8 weights (the register-weights mainloop): a piece is a range of whole stages
// (256 K on these tiles for FP4, 128 K for mxfp8), the last stage partial in the third case
// (K = 1344: 21 blocks of 64).
TEST(RegisterWeightsGemm, SplitKForFewTiles) {
  SG_REQUIRE_HOPPER();
  for (const Format weights : {Format::nvfp4, Format::mxfp4}) {
    SCOPED_TRACE(to_string(weights));
    expect_split_k_correct(Format::bf16, weights,
                           {{1, 20, 1024, 4096, 32, {17}, 256},          // 4 tiles, 8 pieces of 2 stages
                            {2, 48, 640, 2048, 48, {48, 1}, 256},        // partial column block; 5 pieces of 1-2
                            {3, 40, 264, 1344, 32, {0, 40, 33}, 256}});  // 3 pieces of 2 stages
  }
  // mxfp8 weights: stages of 128 K; the 64x256 tile too (5 pieces of 3 or 4 stages).
  SCOPED_TRACE("bf16 x mxfp8");
  expect_split_k_correct(Format::bf16, Format::mxfp8,
                         {{1, 20, 1024, 4096, 32, {17}, 256}, {1, 64, 1024, 2048, 64, {64}, 256},
                          {3, 40, 264, 1344, 32, {0, 40, 33}, 256}});
  // The weights' format on both sides: the activations converted to bf16 at the workspace's start,
  // the bf16 launch's partials past them.
  for (const Format format : {Format::nvfp4, Format::mxfp4, Format::mxfp8}) {
    SCOPED_TRACE(to_string(format) + std::string(" x ") + to_string(format));
    expect_split_k_correct(format, format,
                           {{1, 20, 1024, 4096, 32, {17}, 256}, {3, 40, 264, 1344, 32, {0, 40, 33}, 256}});
  }
  // fp8_block128 tokens x FP4 weights: the tokens converted to bf16 in the workspace (their scales
  // promoted per 128-K block in each piece), the partials past them; K = 2432: 19 blocks of 128,
  // 3 pieces of 3, 3 and 4 stages of 256 K, the last one partial.
  {
    SCOPED_TRACE("fp8_block128 x nvfp4");
    expect_split_k_correct(Format::fp8_block128, Format::nvfp4,
                           {{1, 20, 1024, 4096, 32, {17}, 256}, {3, 40, 264, 2432, 32, {0, 40, 33}, 256},
                            {2, 48, 640, 2048, 48, {48, 1}, 256}});
  }
  SCOPED_TRACE("fp8_block128 x mxfp4");
  expect_split_k_correct(Format::fp8_block128, Format::mxfp4,
                         {{3, 40, 264, 2432, 32, {0, 40, 33}, 256}, {2, 48, 640, 2048, 48, {48, 1}, 256}});
}

// One small split per register-weights split kernel not covered by MmaFragments.SplitKForFewTiles
// (bf16 x mxfp8: 4 pieces; fp8_block128 tokens in the workspace x nvfp4: 2 pieces), for the
// sanitizers in scripts/gpu_check.sh.
TEST(RegisterWeightsGemm, SplitKSanitizerSmallCase) {
  SG_REQUIRE_HOPPER();
  for (const Format tokens : {Format::bf16, Format::fp8_block128}) {
    const Format weights = tokens == Format::bf16 ? Format::mxfp8 : Format::nvfp4;
    SCOPED_TRACE(to_string(tokens) + std::string(" x ") + to_string(weights));
    expect_split_k_correct(tokens, weights, {{1, 20, 512, 1536, 32, {17}, 256}});
  }
}

// bf16 activations x nvfp4, mxfp4 or mxfp8 weights: dequantized into the MMAs' registers, exact,
// every tile; padded strides. k = 576: MX rows hold 18 scale bytes, so every other row's scales
// start in the middle of a 32-bit word, and the last stage reaches past K.
TEST(RegisterWeightsGemm, EveryTileConfigAndEdgeMaskedM) {
  SG_REQUIRE_HOPPER();
  for (const Format weights : {Format::nvfp4, Format::mxfp4, Format::mxfp8}) {
    SCOPED_TRACE(to_string(weights));
    std::mt19937 rng(47);
    Problem p;
    p.build(/*experts=*/5, /*max_m=*/130, /*n=*/328, /*k=*/576, rng, /*a_pad=*/32, /*b_pad=*/16, 0, Format::bf16,
            weights);
    for (int sm_count : {0, 3})  // 3: many tiles per CTA (the scale buffer and fragments carried across tiles)
      expect_every_tile_correct(p, {0, 1, 65, 128, 130}, SignalGranularity::per_row_block, sm_count);
  }
}

// Block scales far from 1, per expert (weights scaled by 2^-100 .. 2^100 before quantization):
// every e8m0 exponent path of the register-weights mainloop (dequant_fragments.cuh) and of the dequantizing
// one (bf16 x mxfp8) against the float64 reference, on decode and wide tiles.
TEST(RegisterWeightsGemm, BlockScalesAcrossTheExponentRange) {
  SG_REQUIRE_HOPPER();
  for (const Format weights : {Format::mxfp4, Format::nvfp4, Format::mxfp8}) {
    SCOPED_TRACE(to_string(weights));
    std::mt19937 rng(59);
    Problem p;
    p.b_expert_gain = {0x1p-100f, 0x1p-40f, 1.f, 0x1p40f, 0x1p100f};
    p.build(/*experts=*/5, /*max_m=*/40, /*n=*/264, /*k=*/320, rng, 0, 0, 0, Format::bf16, weights);
    const auto reference = full_reference(p);
    const std::vector<int32_t> masked_m = {40, 7, 33, 1, 40};
    for (const TileConfig config : {TileConfig{}, TileConfig{128, 128, 0, 0}}) {
      GroupedGemmArgs args = p.args();
      args.expected_m = 32;
      args.config = config;
      args.granularity = SignalGranularity::per_expert;
      const RunResult r = run(p, args, masked_m);
      ASSERT_TRUE(r.status.ok()) << r.status.message;
      EXPECT_EQ(check_output(p, masked_m, reference), "") << "block_m " << config.block_m;
      expect_signals(args, masked_m, r.signals);
    }
  }
}

// Weights dequantized in registers on decode (bf16 tokens x nvfp4, mxfp4 or mxfp8; tokens converted
// in shared memory: fp8_block128 x FP4, nvfp4 x nvfp4, mxfp4 x mxfp4, mxfp8 x mxfp8): the decode tiles of 256
// weight rows (32x256, 48x256, 64x256, given in config), a last stage reaching past K (576 = 2 x 256 + 64, where mxfp4
// rows hold 18 scale bytes; fp8_block128, whose stages hold whole 128-K blocks: 640), a partial column block, padded
// strides, all SMs and a grid of 2 CTAs.
TEST(RegisterWeightsGemm, DecodeTilesOf256WeightRows) {
  SG_REQUIRE_HOPPER();
  const Format pairs[][2] = {{Format::bf16, Format::nvfp4},  {Format::bf16, Format::mxfp4},
                             {Format::bf16, Format::mxfp8},  {Format::fp8_block128, Format::nvfp4},
                             {Format::fp8_block128, Format::mxfp4},
                             {Format::nvfp4, Format::nvfp4}, {Format::mxfp4, Format::mxfp4},
                             {Format::mxfp8, Format::mxfp8}};
  for (const auto& [tokens, weights] : pairs) {
    std::mt19937 rng(53);
    Problem p;
    p.build(/*experts=*/12, /*max_m=*/64, /*n=*/328, /*k=*/tokens == Format::fp8_block128 ? 640 : 576, rng,
            /*a_pad=*/32, /*b_pad=*/16, 0, tokens, weights);
    const auto reference = full_reference(p);
    // Every MMA width of every decode tile (the real tokens of a block rounded up to 8, at least
    // 16: mma_tile_width): 16 .. 32, 16 .. 48 and 16 .. 64 tokens.
    const std::vector<int32_t> masked_m = {0, 1, 9, 17, 24, 25, 33, 40, 41, 49, 57, 64};
    for (const int block_m : {32, 48, 64})
      for (const int sm_count : {0, 2}) {  // 2: several tiles per CTA
        GroupedGemmArgs args = p.args();
        args.config = TileConfig{block_m, 256, 0};
        args.granularity = SignalGranularity::per_row_block;
        args.sm_count = sm_count;
        const TileConfig cfg = select_config(args);
        const RunResult r = run(p, args, masked_m);
        ASSERT_TRUE(r.status.ok()) << r.status.message;
        EXPECT_EQ(check_output(p, masked_m, reference), "")
            << to_string(tokens) << " x " << to_string(weights) << " " << cfg.block_m << "x" << cfg.block_n
            << " sm_count " << sm_count;
        expect_signals(args, masked_m, r.signals);
      }
  }
}

// bf16 tokens, 49-64 per expert, with enough tiles: the heuristic's 64x128 (config.cpp), a partial
// column block and a last stage past K; the decode tiles given explicitly on the same problem.
TEST(RegisterWeightsGemm, SixtyFourTokensOn64x128) {
  SG_REQUIRE_HOPPER();
  for (const Format weights : {Format::nvfp4, Format::mxfp4, Format::mxfp8}) {
    std::mt19937 rng(59);
    Problem p;
    p.build(/*experts=*/12, /*max_m=*/64, /*n=*/776, /*k=*/576, rng, /*a_pad=*/32, /*b_pad=*/16, 0, Format::bf16,
            weights);
    const auto reference = full_reference(p);
    const std::vector<int32_t> masked_m = {0, 1, 9, 17, 24, 25, 33, 40, 41, 49, 57, 64};
    for (const TileConfig given :
         {TileConfig{}, TileConfig{32, 256, 0}, TileConfig{48, 256, 0}, TileConfig{64, 256, 0}}) {
      GroupedGemmArgs args = p.args();
      args.expected_m = 40;  // 1.3 x 40 = 52 tokens: one block of 64
      args.config = given;
      args.granularity = SignalGranularity::per_row_block;
      const TileConfig cfg = select_config(args);
      if (given.block_m == 0) {  // 12 x 4 = 48 tiles of 64x256 would split K in 2 pieces only
        EXPECT_EQ(cfg.block_m, 64);
        EXPECT_EQ(cfg.block_n, 128);
      }
      const RunResult r = run(p, args, masked_m);
      ASSERT_TRUE(r.status.ok()) << r.status.message;
      EXPECT_EQ(check_output(p, masked_m, reference), "")
          << "bf16 x " << to_string(weights) << " " << cfg.block_m << "x" << cfg.block_n;
      expect_signals(args, masked_m, r.signals);
    }
  }
}

TEST(Fp8Block128Gemm, HostPointersAreRejectedNotLaunched) {
  SG_REQUIRE_HOPPER();
  std::mt19937 rng(43);
  Problem p;
  p.build(2, 16, 128, 128, rng);
  const std::vector<int32_t> host_masked_m = {16, 3};
  GroupedGemmArgs args = p.args();
  args.masked_m = host_masked_m.data();
  Status s = grouped_gemm_nt_masked(args);
  EXPECT_EQ(s.code, StatusCode::invalid_argument);
  EXPECT_NE(s.message.find("masked_m"), std::string::npos) << s.message;
  std::vector<uint32_t> host_signals(2);
  args = p.args();
  args.signals = host_signals.data();
  args.granularity = SignalGranularity::per_expert;
  s = grouped_gemm_nt_masked(args);
  EXPECT_NE(s.message.find("signals"), std::string::npos) << s.message;
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // nothing was launched, nothing faulted
}

// Operands or the stream of one launch on another GPU than the current one: named, not launched.
TEST(Fp8Block128Gemm, OperandsOnAnotherDeviceAreRejectedNotLaunched) {
  SG_REQUIRE_HOPPER();
  int devices = 0;
  SG_CUDA_CHECK(cudaGetDeviceCount(&devices));
  if (devices < 2) GTEST_SKIP() << "needs two GPUs";
  std::mt19937 rng(46);
  Problem p;
  p.build(2, 16, 128, 128, rng);  // on device 0
  SG_CUDA_CHECK(cudaSetDevice(1));
  DeviceBuffer signals_on_1(2 * sizeof(uint32_t));
  GroupedGemmArgs args = p.args();
  Status s = grouped_gemm_nt_masked(args);  // current device 1, operands on 0
  EXPECT_EQ(s.code, StatusCode::invalid_argument);
  EXPECT_NE(s.message.find("a.data is on device 0, the launch runs on device 1"), std::string::npos) << s.message;
  cudaStream_t stream_on_1 = nullptr;
  SG_CUDA_CHECK(cudaStreamCreate(&stream_on_1));
  SG_CUDA_CHECK(cudaSetDevice(0));
  args.stream = stream_on_1;  // operands on the current device, the stream on another
  s = grouped_gemm_nt_masked(args);
  EXPECT_NE(s.message.find("stream belongs to device 1, the launch runs on device 0"), std::string::npos)
      << s.message;
  args.stream = nullptr;
  args.signals = signals_on_1.get<uint32_t>();
  args.granularity = SignalGranularity::per_expert;
  s = grouped_gemm_nt_masked(args);
  EXPECT_NE(s.message.find("signals is on device 1"), std::string::npos) << s.message;
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // nothing was launched, nothing faulted
  SG_CUDA_CHECK(cudaSetDevice(1));
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  SG_CUDA_CHECK(cudaStreamDestroy(stream_on_1));
  SG_CUDA_CHECK(cudaSetDevice(0));
}

TEST(Fp8Block128Gemm, UnsupportedFormatPairIsReportedNotLaunched) {
  GroupedGemmArgs args;
  args.num_experts = 1, args.max_m = 16, args.n = 128, args.k = 128;
  static uint8_t dummy[256] __attribute__((aligned(16)));
  args.a = OperandArgs{Format::mxfp8, dummy, dummy, 0, 0};  // mixed block-scaled pair: no mainloop
  args.b = OperandArgs{Format::nvfp4, dummy, dummy, 0, 0};
  args.out = dummy;
  args.masked_m = reinterpret_cast<const int32_t*>(dummy);
  const Status s = grouped_gemm_nt_masked(args);
  EXPECT_EQ(s.code, StatusCode::unsupported);
  EXPECT_NE(s.message.find("a.format"), std::string::npos) << s.message;
}

}  // namespace
}  // namespace signalgemm::test
