// The single-GPU combine overlapped with the GEMM (beside it, and after it as its programmatic
// dependent): its output against a CPU combine of the (separately verified) GEMM output, for random
// routings; 10,000 overlapped iterations per granularity with zero stale reads and no timeouts.
#include <algorithm>
#include <array>
#include <functional>

#include "gpu_test_util.h"
#include "signalgemm/combine.h"
#include "signalgemm/gemm.h"

namespace signalgemm::test {
namespace {

// A routing: which (expert, row) serves slot k of token t.
struct Routing {
  int num_tokens = 0, topk = 0;
  std::vector<int32_t> masked_m, topk_idx, row_source;
  std::vector<float> topk_weights;
};

// Random per-expert counts (some 0, one max_m), rows dealt to token slots in random order.
Routing random_routing(int experts, int max_m, int topk, std::mt19937& rng) {
  Routing r;
  r.topk = topk;
  r.masked_m.resize(experts);
  for (auto& m : r.masked_m) m = rng() % 4 == 0 ? 0 : int(rng() % (max_m + 1));
  r.masked_m[rng() % experts] = max_m;
  std::vector<std::pair<int, int>> rows;
  for (int e = 0; e < experts; ++e)
    for (int i = 0; i < r.masked_m[e]; ++i) rows.push_back({e, i});
  std::shuffle(rows.begin(), rows.end(), rng);
  r.num_tokens = int((rows.size() + topk - 1) / topk);
  r.topk_idx.assign(size_t(r.num_tokens) * topk, -1);
  r.topk_weights.assign(size_t(r.num_tokens) * topk, 0.f);
  r.row_source.assign(size_t(experts) * max_m, -1);
  std::uniform_real_distribution<float> uw(0.05f, 1.f);
  for (size_t s = 0; s < rows.size(); ++s) {
    const auto [e, i] = rows[s];
    r.topk_idx[s] = e;
    r.topk_weights[s] = uw(rng);
    r.row_source[size_t(e) * max_m + i] = int32_t(s);
  }
  return r;
}

// out[t] = sum_k w * C[e_k, i_k] in the kernel's order, from C as the GPU wrote it.
std::vector<double> cpu_combine(const Routing& r, const std::vector<uint16_t>& c, int max_m, int n) {
  std::vector<double> out(size_t(r.num_tokens) * n, 0.0);
  std::vector<std::pair<int, int>> source_of_slot(size_t(r.num_tokens) * r.topk, {-1, -1});
  for (size_t e = 0; e * max_m < r.row_source.size(); ++e)
    for (int i = 0; i < max_m; ++i)
      if (int s = r.row_source[e * max_m + i]; s >= 0) source_of_slot[s] = {int(e), i};
  for (int t = 0; t < r.num_tokens; ++t)
    for (int k = 0; k < r.topk; ++k) {
      const int s = t * r.topk + k;
      if (r.topk_idx[s] < 0) continue;
      const auto [e, i] = source_of_slot[s];
      for (int j = 0; j < n; ++j)
        out[size_t(t) * n + j] += double(r.topk_weights[s]) * ref::bf16_to_float(c[(size_t(e) * max_m + i) * n + j]);
    }
  return out;
}

// kMaxM rows per expert's slab: 40 is one row block (one or two 32-row record items per counter);
// 300 is three (per_row_block: three counters per expert). kDepth: the GEMM's K.
template <int kSlabRows, int kDepth = 256>
class CombineFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have_hopper_gpu()) GTEST_SKIP() << "no Hopper (sm_90) GPU: skipped";
    std::mt19937 rng(77);
    problem.build(kExperts, kMaxM, kN, kK, rng);
    // Golden C for every row, checked against the float64 reference: a row's values do not depend
    // on masked_m, so every routing below combines rows of this output.
    const std::vector<int32_t> all(kExperts, kMaxM);
    const auto reference = ref::masked_grouped_gemm(problem.a, problem.b, all.data(), problem.alpha.data());
    problem.set_masked_m(all);
    problem.poison_output();
    ASSERT_TRUE(grouped_gemm_nt_masked(problem.args()).ok());
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    ASSERT_EQ(check_output(problem, all, reference), "");
    golden = problem.output();
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    cudaStreamCreateWithFlags(&gemm_stream, cudaStreamNonBlocking);
    cudaStreamCreateWithFlags(&combine_stream, cudaStreamNonBlocking);
    cudaEventCreateWithFlags(&fork, cudaEventDisableTiming);
    cudaEventCreateWithFlags(&join, cudaEventDisableTiming);
  }
  void TearDown() override {
    if (gemm_stream) cudaStreamDestroy(gemm_stream);
    if (combine_stream) cudaStreamDestroy(combine_stream);
    if (fork) cudaEventDestroy(fork);
    if (join) cudaEventDestroy(join);
  }

  // Runs GEMM and combine overlapped for one routing; returns the first mismatch or "" (against
  // the CPU combine of `reference`, by default the routing itself). Beside: the combine waits on a
  // second stream on kCombineBlocks SMs the GEMM leaves free, a second launch after the GEMM joins.
  // `after_pdl`: one combine on every SM, the GEMM's programmatic dependent on its stream.
  // `replays` > 0: the step (counters and workspace cleared, the launches; beside: forked and
  // joined through events) captured in one CUDA graph and replayed that often, the output poisoned
  // and compared after each. Without `run_gemm` only the combine runs (its signals never come),
  // with a 20 ms timeout, and nothing is compared.
  std::string run_overlapped(const Routing& r, SignalGranularity g, DeviceBuffer& flag,
                             const Routing* reference = nullptr, bool run_gemm = true, bool after_pdl = false,
                             int replays = 0) {
    GroupedGemmArgs args = problem.args();
    args.granularity = g;
    args.scope = scope;
    args.config = tile;
    args.sm_count = after_pdl ? 0 : sms - kCombineBlocks;
    args.stream = gemm_stream;
    const SignalLayout layout = signal_layout(args);
    DeviceBuffer signals(sizeof(uint32_t) * layout.counter_count());
    DeviceBuffer topk_idx = DeviceBuffer::from(r.topk_idx), weights = DeviceBuffer::from(r.topk_weights);
    DeviceBuffer row_source = DeviceBuffer::from(r.row_source);
    DeviceBuffer workspace(combine_workspace_bytes(r.num_tokens, r.topk));
    DeviceBuffer out(size_t(std::max(r.num_tokens, 1)) * kN * 2);
    args.signals = signals.get<uint32_t>();
    problem.set_masked_m(r.masked_m);
    problem.poison_output();
    cudaMemset(signals.get(), 0, signals.bytes());
    cudaMemset(workspace.get(), 0, workspace.bytes());
    cudaMemset(out.get(), 0xff, out.bytes());  // poison: a token not summed reads as NaN
    cudaDeviceSynchronize();  // the legacy-stream set-up must not race the non-blocking streams

    CombineArgs c;
    c.gemm_out = problem.d_out.get();
    c.gemm_out_row_stride = problem.out_row_stride;
    c.masked_m = problem.d_masked_m.get<int32_t>();
    c.layout = layout;
    c.signals = signals.get<uint32_t>();
    c.scope = scope;
    c.num_tokens = r.num_tokens;
    c.topk = r.topk;
    c.topk_idx = topk_idx.get<int32_t>();
    c.topk_weights = weights.get<float>();
    c.row_source = row_source.get<int32_t>();
    c.workspace = workspace.get();
    c.workspace_bytes = workspace.bytes();
    c.out = out.get();
    c.timeout_ns = run_gemm ? 2'000'000'000 : 20'000'000;
    c.error_flag = flag.get<int32_t>();
    // One launch of the combine: `blocks` CTAs on `stream`, the first numbered `first_block`.
    const auto launch_combine = [&](cudaStream_t stream, int blocks, int first_block, bool pdl) {
      CombineArgs launch = c;
      launch.stream = stream;
      launch.num_blocks = blocks;
      launch.first_block = first_block;
      launch.enable_pdl = pdl;
      return combine(launch);
    };
    const auto enqueue = [&]() -> std::string {
      if (replays > 0) {  // what the direct launch's set-up did, in the graph
        if (cudaMemsetAsync(signals.get(), 0, signals.bytes(), gemm_stream) != cudaSuccess ||
            cudaMemsetAsync(workspace.get(), 0, workspace.bytes(), gemm_stream) != cudaSuccess)
          return "memset in the capture failed";
      }
      if (after_pdl) {
        if (Status s = grouped_gemm_nt_masked(args); !s.ok()) return s.message;
        if (Status s = launch_combine(gemm_stream, sms, 0, true); !s.ok()) return s.message;
        return "";
      }
      if (replays > 0 &&
          (cudaEventRecord(fork, gemm_stream) != cudaSuccess || cudaStreamWaitEvent(combine_stream, fork) != cudaSuccess))
        return "fork in the capture failed";
      // The consumer first: already waiting when the GEMM starts.
      if (Status s = launch_combine(combine_stream, kCombineBlocks, 0, false); !s.ok()) return s.message;
      if (!run_gemm) return "";
      if (Status s = grouped_gemm_nt_masked(args); !s.ok()) return s.message;
      if (Status s = launch_combine(gemm_stream, kHelperBlocks, kCombineBlocks, false); !s.ok()) return s.message;
      if (replays > 0 &&
          (cudaEventRecord(join, combine_stream) != cudaSuccess || cudaStreamWaitEvent(gemm_stream, join) != cudaSuccess))
        return "join in the capture failed";
      return "";
    };
    const auto compare = [&]() -> std::string {
      const auto want = cpu_combine(reference != nullptr ? *reference : r, golden, kMaxM, kN);
      const auto got = out.to_host<uint16_t>();
      for (size_t i = 0; i < want.size(); ++i) {
        const double g_value = ref::bf16_to_float(got[i]);
        if (!(std::abs(g_value - want[i]) <= 1e-2 * std::abs(want[i]) + 1e-3))
          return "token " + std::to_string(i / kN) + " col " + std::to_string(i % kN) + ": got " +
                 std::to_string(g_value) + " want " + std::to_string(want[i]);
      }
      return "";
    };
    // This configuration's kernels loaded before the consumer spins beside its first launch (under
    // lazy module loading that launch may wait for the device to go idle: docs/signals.md); the
    // fixture's golden launch may have run another tile on all SMs.
    if (run_gemm)
      if (Status s = load_kernels(args); !s.ok()) return s.message;
    if (replays == 0) {
      if (std::string err = enqueue(); !err.empty()) return err;
      if (cudaDeviceSynchronize() != cudaSuccess) return "kernel failed";
      return run_gemm ? compare() : "";
    }
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    if (cudaStreamBeginCapture(gemm_stream, cudaStreamCaptureModeGlobal) != cudaSuccess) return "capture failed";
    const std::string captured = enqueue();
    if (cudaStreamEndCapture(gemm_stream, &graph) != cudaSuccess || !captured.empty())
      return "capture failed: " + captured;
    std::string result;
    if (cudaGraphInstantiate(&exec, graph, 0) != cudaSuccess) result = "graph instantiation failed";
    for (int replay = 0; replay < replays && result.empty(); ++replay) {
      cudaMemset(out.get(), 0xff, out.bytes());
      cudaDeviceSynchronize();
      if (cudaGraphLaunch(exec, gemm_stream) != cudaSuccess || cudaStreamSynchronize(gemm_stream) != cudaSuccess)
        result = "graph launch failed";
      else if (std::string err = compare(); !err.empty())
        result = "replay " + std::to_string(replay) + ": " + err;
    }
    if (exec != nullptr) cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    return result;
  }

  // 20 random routings per granularity, beside the GEMM and after it (programmatic dependent launch),
  // with top-k of 1, 4, 8 and 32 in turn and every fifth with system-scope signals.
  void matches_cpu_combine(uint32_t seed) {
    std::mt19937 rng(seed);
    DeviceBuffer flag = DeviceBuffer::from(std::vector<int32_t>{0});
    for (auto g : {SignalGranularity::per_expert, SignalGranularity::per_row_block})
      for (bool after_pdl : {false, true})
        for (int trial = 0; trial < 20; ++trial) {
          const int topk = std::array{1, kTopk, 8, 32}[trial % 4];
          scope = trial % 5 == 4 ? SignalScope::sys : SignalScope::gpu;
          ASSERT_EQ(run_overlapped(random_routing(kExperts, kMaxM, topk, rng), g, flag, nullptr, true, after_pdl), "")
              << to_string(g) << (after_pdl ? " after the GEMM (PDL)" : " beside the GEMM") << " trial " << trial
              << " topk " << topk << (scope == SignalScope::sys ? " sys scope" : "");
        }
    scope = SignalScope::gpu;
    EXPECT_EQ(flag.to_host<int32_t>()[0], 0) << "a wait timed out";
  }

  static constexpr int kExperts = 8, kMaxM = kSlabRows, kN = 256, kK = kDepth, kTopk = 4, kCombineBlocks = 4;
  // A second launch of the same combine, stream-ordered after the GEMM, joins through the queues.
  static constexpr int kHelperBlocks = 8;
  SignalScope scope = SignalScope::gpu;  // of the GEMM's signals and the combine's waits
  TileConfig tile;                       // the GEMM's (default: the heuristic's)
  Problem problem;
  std::vector<uint16_t> golden;
  int sms = 0;
  cudaStream_t gemm_stream = nullptr, combine_stream = nullptr;
  cudaEvent_t fork = nullptr, join = nullptr;
};

using CombineTest = CombineFixture<40>;
using CombineTestSeveralRowBlocks = CombineFixture<300>;
using CombineTestDeepK = CombineFixture<300, 4096>;

TEST_F(CombineTest, MatchesCpuCombineForRandomRoutings) { matches_cpu_combine(5); }

// GEMM and combine as one CUDA graph (SPEC §4: capturable), both overlaps, both granularities,
// three replays each with the output poisoned before.
TEST_F(CombineTest, CapturedWithTheGemmInOneGraph) {
  std::mt19937 rng(13);
  DeviceBuffer flag = DeviceBuffer::from(std::vector<int32_t>{0});
  for (auto g : {SignalGranularity::per_expert, SignalGranularity::per_row_block})
    for (bool after_pdl : {false, true})
      EXPECT_EQ(run_overlapped(random_routing(kExperts, kMaxM, kTopk, rng), g, flag, nullptr, true, after_pdl, 3), "")
          << to_string(g) << (after_pdl ? " after the GEMM (PDL)" : " beside the GEMM");
  EXPECT_EQ(flag.to_host<int32_t>()[0], 0) << "a wait timed out";
}
TEST_F(CombineTestSeveralRowBlocks, MatchesCpuCombineForRandomRoutings) { matches_cpu_combine(12); }

// The wide fp8 tile at K >= 4096 without a workspace runs in two-CTA clusters, its tiles dealt out in
// a fixed order. Beside a combine that holds SMs, a consumer block can leave its GPC an odd number
// of free SMs, so fewer pairs fit than sm_count / 2, and a pair left waiting for the consumer's SMs
// would never run while the consumer waits for its tiles: the heuristic's pairs then run as single
// CTAs, and a cluster asked for keeps as many pairs as fit beside any placement of the consumer.
TEST_F(CombineTestDeepK, BesideATwoCtaClusterGemm) {
  std::mt19937 rng(23);
  DeviceBuffer flag = DeviceBuffer::from(std::vector<int32_t>{0});
  for (const int cluster : {0, 2}) {
    tile = TileConfig{128, 256, 0, cluster};
    for (auto g : {SignalGranularity::per_expert, SignalGranularity::per_row_block})
      EXPECT_EQ(run_overlapped(random_routing(kExperts, kMaxM, kTopk, rng), g, flag), "")
          << "cluster " << cluster << ", " << to_string(g);
  }
  EXPECT_EQ(flag.to_host<int32_t>()[0], 0) << "a wait timed out";
}

// A row_source entry past num_tokens * topk is reported (kErrorInvalidRouting) and skipped, never
// written; the rest of the combine is exact.
TEST_F(CombineTest, ReportsRowSourcePastTheSlots) {
  std::mt19937 rng(8);
  DeviceBuffer flag = DeviceBuffer::from(std::vector<int32_t>{0});
  for (auto g : {SignalGranularity::per_expert, SignalGranularity::per_row_block}) {
    Routing reference = random_routing(kExperts, kMaxM, kTopk, rng);
    Routing sent = reference;
    const int slot = 0;  // random_routing deals rows to slots 0, 1, ...: slot 0 is used
    const auto row = std::find(sent.row_source.begin(), sent.row_source.end(), slot);
    ASSERT_NE(row, sent.row_source.end());
    *row = reference.num_tokens * kTopk;  // one past the last slot
    sent.topk_idx[slot] = reference.topk_idx[slot] = -1;  // the slot neither awaited nor summed
    cudaMemset(flag.get(), 0, flag.bytes());
    EXPECT_EQ(run_overlapped(sent, g, flag, &reference), "") << to_string(g);
    EXPECT_EQ(flag.to_host<int32_t>()[0], kErrorInvalidRouting) << to_string(g);
  }
}

// A row whose slot is routed nowhere (topk_idx -1): its token does not wait for that slot, so the
// row must not count as one of the token's arrivals (it would let the sum start before a real slot
// is in): reported and skipped, the other slots summed as routed.
TEST_F(CombineTest, ReportsRowSourceNamingAnUnusedSlot) {
  std::mt19937 rng(10);
  DeviceBuffer flag = DeviceBuffer::from(std::vector<int32_t>{0});
  for (auto g : {SignalGranularity::per_expert, SignalGranularity::per_row_block}) {
    Routing routing = random_routing(kExperts, kMaxM, kTopk, rng);
    const int slot = 0;  // random_routing deals rows to slots 0, 1, ...: slot 0 has a row
    ASSERT_NE(std::find(routing.row_source.begin(), routing.row_source.end(), slot), routing.row_source.end());
    routing.topk_idx[slot] = -1;  // the row still names it
    cudaMemset(flag.get(), 0, flag.bytes());
    EXPECT_EQ(run_overlapped(routing, g, flag, &routing), "") << to_string(g);
    EXPECT_EQ(flag.to_host<int32_t>()[0], kErrorInvalidRouting) << to_string(g);
  }
}

// Two rows of one expert naming one slot: the second recorded is reported and not counted (counted,
// it would complete its token's arrivals before the token's other slots are in). Here the slot the
// second row should have named is routed nowhere, and the doubly named slot weighs 0, so the sums
// do not depend on which of the two rows was recorded first.
TEST_F(CombineTest, ReportsTwoRowsNamingOneSlot) {
  std::mt19937 rng(16);
  DeviceBuffer flag = DeviceBuffer::from(std::vector<int32_t>{0});
  for (auto g : {SignalGranularity::per_expert, SignalGranularity::per_row_block}) {
    Routing routing = random_routing(kExperts, kMaxM, kTopk, rng);
    const auto two_rows = std::find_if(routing.masked_m.begin(), routing.masked_m.end(), [](int m) { return m >= 2; });
    ASSERT_NE(two_rows, routing.masked_m.end());
    const size_t e = size_t(two_rows - routing.masked_m.begin());
    int32_t* rows = &routing.row_source[e * kMaxM];
    const int last = routing.masked_m[e] - 1;
    const int32_t kept = rows[0], dropped = rows[last];  // random_routing names a slot in every real row
    rows[last] = kept;
    routing.topk_idx[dropped] = -1;
    routing.topk_weights[kept] = 0.f;
    cudaMemset(flag.get(), 0, flag.bytes());
    EXPECT_EQ(run_overlapped(routing, g, flag, &routing), "") << to_string(g);
    EXPECT_EQ(flag.to_host<int32_t>()[0], kErrorInvalidRouting) << to_string(g);
  }
}

// A topk_idx entry past the GEMM's experts: no row can ever arrive for that slot, so its token must
// not wait for it (it would end in a timeout): reported, and the other slots summed as routed.
TEST_F(CombineTest, ReportsTopkIdxPastTheExperts) {
  std::mt19937 rng(11);
  DeviceBuffer flag = DeviceBuffer::from(std::vector<int32_t>{0});
  for (auto g : {SignalGranularity::per_expert, SignalGranularity::per_row_block}) {
    Routing sent = random_routing(kExperts, kMaxM, kTopk, rng);
    Routing reference = sent;
    const int slot = 0;  // has a row (random_routing deals rows to slots 0, 1, ...), now skipped too
    sent.topk_idx[slot] = kExperts + 3;
    reference.topk_idx[slot] = -1;
    cudaMemset(flag.get(), 0, flag.bytes());
    EXPECT_EQ(run_overlapped(sent, g, flag, &reference), "") << to_string(g);
    EXPECT_EQ(flag.to_host<int32_t>()[0], kErrorInvalidRouting) << to_string(g);
  }
}

// A slot routed to an expert without rows (masked_m 0), whose row an expert with rows still names,
// and one routed to -5 with no row: the row of another expert's slot is reported and never summed
// (counted, it would let the token start early, summing another expert's row), and neither slot is
// waited for (no row can come: the token would end in a timeout); the other slots are exact.
TEST_F(CombineTest, ReportsSlotsOfExpertsWithoutRowsAndRowsOfAnotherExpertsSlot) {
  std::mt19937 rng(15);
  DeviceBuffer flag = DeviceBuffer::from(std::vector<int32_t>{0});
  for (auto g : {SignalGranularity::per_expert, SignalGranularity::per_row_block})
    for (const bool rowless_expert : {true, false}) {
      Routing sent = random_routing(kExperts, kMaxM, kTopk, rng);
      if (rowless_expert && std::find(sent.masked_m.begin(), sent.masked_m.end(), 0) == sent.masked_m.end())
        sent.masked_m[(sent.topk_idx[0] + 1) % kExperts] = 0;
      const int32_t rowless = int32_t(std::find(sent.masked_m.begin(), sent.masked_m.end(), 0) - sent.masked_m.begin());
      if (rowless_expert) ASSERT_LT(rowless, kExperts);
      if (!rowless_expert)  // slot 0's row no longer names it: only topk_idx can report
        *std::find(sent.row_source.begin(), sent.row_source.end(), 0) = -1;
      // (A masked_m set to 0 above drops that expert's rows: their slots must not wait either.)
      for (int e = 0; e < kExperts; ++e)
        for (int i = sent.masked_m[e]; i < kMaxM; ++i)
          if (int32_t& source = sent.row_source[size_t(e) * kMaxM + i]; source >= 0) {
            sent.topk_idx[source] = -1;
            source = -1;
          }
      sent.topk_idx[0] = rowless_expert ? rowless : -5;  // slot 0 has a row (random_routing deals slots in order)
      Routing reference = sent;
      reference.topk_idx[0] = -1;
      cudaMemset(flag.get(), 0, flag.bytes());
      const std::string what = std::string(to_string(g)) + (rowless_expert ? ", an expert without rows" : ", expert id -5");
      EXPECT_EQ(run_overlapped(sent, g, flag, &reference), "") << what;
      EXPECT_EQ(flag.to_host<int32_t>()[0], kErrorInvalidRouting) << what;
    }
}

// Tokens with no routed slot (all -1, one of them first): nothing arrives for them, and their
// output is zero, both overlaps.
TEST_F(CombineTest, TokensWithoutRoutedSlotsSumToZero) {
  std::mt19937 rng(14);
  DeviceBuffer flag = DeviceBuffer::from(std::vector<int32_t>{0});
  for (bool after_pdl : {false, true}) {
    Routing routing = random_routing(kExperts, kMaxM, kTopk, rng);
    // Two unrouted tokens: one in front (every row's slot moves up by topk), one at the end.
    for (auto& source : routing.row_source)
      if (source >= 0) source += kTopk;
    routing.topk_idx.insert(routing.topk_idx.begin(), kTopk, -1);
    routing.topk_weights.insert(routing.topk_weights.begin(), kTopk, 0.5f);
    routing.topk_idx.insert(routing.topk_idx.end(), kTopk, -1);
    routing.topk_weights.insert(routing.topk_weights.end(), kTopk, 0.5f);
    routing.num_tokens += 2;
    EXPECT_EQ(run_overlapped(routing, SignalGranularity::per_expert, flag, nullptr, true, after_pdl), "")
        << (after_pdl ? "after the GEMM (PDL)" : "beside the GEMM");
  }
  EXPECT_EQ(flag.to_host<int32_t>()[0], 0);
}

// Signals that never come (no GEMM runs): the combine reports a timeout and ends; after its first
// timeout the other waits give up at once.
TEST_F(CombineTest, EndsWithATimeoutWhenNoGemmRuns) {
  std::mt19937 rng(9);
  DeviceBuffer flag = DeviceBuffer::from(std::vector<int32_t>{0});
  EXPECT_EQ(run_overlapped(random_routing(kExperts, kMaxM, kTopk, rng), SignalGranularity::per_expert, flag,
                           nullptr, /*run_gemm=*/false),
            "");
  EXPECT_EQ(flag.to_host<int32_t>()[0], kErrorSignalTimeout);
}

TEST_F(CombineTest, StressTenThousandOverlappedIterations) {
  std::mt19937 rng(6);
  DeviceBuffer flag = DeviceBuffer::from(std::vector<int32_t>{0});
  for (auto g : {SignalGranularity::per_expert, SignalGranularity::per_row_block}) {
    int failures = 0;
    for (int iter = 0; iter < 10000 && failures < 3; ++iter) {
      // Beside the GEMM and after it (PDL) in turn.
      const std::string err =
          run_overlapped(random_routing(kExperts, kMaxM, kTopk, rng), g, flag, nullptr, true, iter % 2 == 1);
      if (!err.empty()) {
        ADD_FAILURE() << to_string(g) << " iteration " << iter << ": " << err;
        ++failures;
      }
    }
    EXPECT_EQ(failures, 0) << to_string(g);
  }
  EXPECT_EQ(flag.to_host<int32_t>()[0], 0) << "a wait timed out";
}

TEST(Combine, RejectsMissingArguments) {
  CombineArgs c;
  EXPECT_NE(combine(c).message.find("gemm_out"), std::string::npos);
  // Sizes of values combine() refuses do not wrap around.
  EXPECT_EQ(combine_workspace_bytes(-1, 8), combine_workspace_bytes(0, 8));
  EXPECT_EQ(combine_workspace_bytes(4, -1), combine_workspace_bytes(4, 0));
  static uint8_t buffer[64] __attribute__((aligned(16)));
  c.gemm_out = buffer;
  c.masked_m = reinterpret_cast<const int32_t*>(buffer);
  EXPECT_NE(combine(c).message.find("signals"), std::string::npos);
}

// Strides that would read before gemm_out or overlap rows, misaligned arrays, unknown enums, an
// output of another type than bf16, a short workspace, too many slots per token and buffers that
// alias are named before any pointer is looked at (no GPU needed).
TEST(Combine, RejectsBadStridesAlignmentAndGranularity) {
  static uint8_t buffer[4096] __attribute__((aligned(16)));
  CombineArgs valid;  // each array in its own part of `buffer`
  valid.gemm_out = buffer;  // 2 experts x 8 rows x 128 bytes
  valid.masked_m = reinterpret_cast<const int32_t*>(buffer + 2048);
  valid.layout = SignalLayout{2, 8, 64, 64, 128, SignalGranularity::per_expert};  // rows of 128 bytes
  valid.signals = reinterpret_cast<uint32_t*>(buffer + 2064);
  valid.num_tokens = 1;
  valid.topk = 1;
  valid.topk_idx = reinterpret_cast<const int32_t*>(buffer + 2080);
  valid.topk_weights = reinterpret_cast<const float*>(buffer + 2096);
  valid.row_source = reinterpret_cast<const int32_t*>(buffer + 2112);  // 2 x 8 entries
  valid.workspace = buffer + 2304;
  valid.workspace_bytes = 256;
  valid.out = buffer + 2560;
  valid.error_flag = reinterpret_cast<int32_t*>(buffer + 2688);
  valid.timeline = reinterpret_cast<uint64_t*>(buffer + 2816);  // combine_timeline_entries: 4 + 3 x 8
  const auto message = [&](auto change) {
    CombineArgs c = valid;
    change(c);
    const Status s = combine(c);
    EXPECT_EQ(s.code, StatusCode::invalid_argument) << s.message;
    return s.message;
  };
  EXPECT_NE(message([](CombineArgs& c) { c.gemm_out_row_stride = -16; }).find("gemm_out_row_stride"), std::string::npos);
  EXPECT_NE(message([](CombineArgs& c) { c.gemm_out_row_stride = 64; }).find("smaller than one row"), std::string::npos);
  EXPECT_NE(message([](CombineArgs& c) { c.gemm_out_expert_stride = 128 * 7; }).find("smaller than one expert"),
            std::string::npos);
  EXPECT_NE(message([](CombineArgs& c) { c.topk_idx = reinterpret_cast<const int32_t*>(buffer + 2); })
                .find("topk_idx must be 4-byte aligned"),
            std::string::npos);
  EXPECT_NE(message([](CombineArgs& c) { c.timeline = reinterpret_cast<uint64_t*>(buffer + 4); })
                .find("timeline must be 8-byte aligned"),
            std::string::npos);
  EXPECT_NE(message([](CombineArgs& c) { c.layout.granularity = SignalGranularity(3); }).find("layout.granularity"),
            std::string::npos);
  EXPECT_NE(message([](CombineArgs& c) { c.scope = SignalScope(7); }).find("scope: unknown value 7"),
            std::string::npos);
  EXPECT_NE(message([](CombineArgs& c) { c.layout.block_n = 0; }).find("layout.block_n = 0 must be >= 1"),
            std::string::npos);
  EXPECT_NE(message([](CombineArgs& c) { c.topk_weights = nullptr; }).find("topk_weights is null"), std::string::npos);
  EXPECT_NE(message([](CombineArgs& c) { c.first_block = 1 << 30; }).find("first_block + num_blocks"),
            std::string::npos);
  EXPECT_NE(message([](CombineArgs& c) { c.layout.out_type = OutputType::fp16; }).find("layout.out_type"),
            std::string::npos);
  EXPECT_NE(message([](CombineArgs& c) { c.workspace_bytes = combine_workspace_bytes(1, 1) - 1; })
                .find("workspace_bytes = 23 is less than combine_workspace_bytes(num_tokens, topk) = 24"),
            std::string::npos);
  // A group's slot addresses live in shared memory: at most 32 slots per token.
  EXPECT_NE(message([](CombineArgs& c) { c.topk = 33; }).find("topk must be in [1, 32]"), std::string::npos);
  // row_source entries are int32 slot ids.
  EXPECT_NE(message([](CombineArgs& c) { c.topk = 32, c.num_tokens = 1 << 26; })
                .find("num_tokens * topk = 2147483648 must be below 2^31"),
            std::string::npos);
  // A timeout's only report is the flag.
  EXPECT_NE(message([](CombineArgs& c) { c.timeout_ns = 1000, c.error_flag = nullptr; }).find("error_flag is null"),
            std::string::npos);
  // What the combine writes must not alias what it reads, nor each other: summed in place over
  // gemm_out, a token would overwrite rows other tokens still read.
  const std::pair<std::function<void(CombineArgs&)>, std::string> aliases[] = {
      {[](CombineArgs& c) { c.out = buffer + 128 * 15; }, "out overlaps gemm_out"},  // the last row
      {[](CombineArgs& c) { c.gemm_out_expert_stride = 1536; }, "workspace overlaps gemm_out"},  // spans 2560 bytes
      {[](CombineArgs& c) { c.masked_m = reinterpret_cast<const int32_t*>(buffer + 2304 + 64); },
       "workspace overlaps masked_m"},
      {[](CombineArgs& c) { c.out = buffer + 2064; }, "out overlaps signals"},
      {[](CombineArgs& c) { c.error_flag = reinterpret_cast<int32_t*>(buffer + 2112 + 60); },
       "error_flag overlaps row_source"},
      {[](CombineArgs& c) { c.timeline = reinterpret_cast<uint64_t*>(buffer + 2560 - 8); }, "out overlaps timeline"},
      {[](CombineArgs& c) { c.topk_weights = reinterpret_cast<const float*>(buffer + 2400); },
       "workspace overlaps topk_weights"}};
  for (const auto& [change, want] : aliases) EXPECT_NE(message(change).find(want), std::string::npos) << want;
  // Valid arguments reach the pointer checks: without a device that is no_device, not a pointer
  // "failing" a query that cannot be made; with one, the host buffer is named.
  int devices = 0;
  const bool no_device = cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0;
  cudaGetLastError();
  const Status s = combine(valid);
  EXPECT_EQ(s.code, no_device ? StatusCode::no_device : StatusCode::invalid_argument) << s.message;
}

// Pointers the kernel would dereference are checked before the launch: a host buffer is named.
TEST(Combine, HostPointersAreRejectedNotLaunched) {
  SG_REQUIRE_HOPPER();
  DeviceBuffer device(4096);
  static uint8_t host[4096] __attribute__((aligned(16)));
  uint8_t* const d = device.get<uint8_t>();  // each array in its own part (no aliases)
  CombineArgs c;
  c.gemm_out = d;  // 8 rows of 16 bytes
  c.masked_m = reinterpret_cast<const int32_t*>(d + 1024);
  c.layout = SignalLayout{1, 8, 8, 64, 128, SignalGranularity::per_expert};
  c.signals = reinterpret_cast<const uint32_t*>(d + 1040);
  c.num_tokens = 1;
  c.topk = 1;
  c.topk_idx = reinterpret_cast<const int32_t*>(d + 1056);
  c.topk_weights = reinterpret_cast<const float*>(d + 1072);
  c.row_source = reinterpret_cast<const int32_t*>(d + 1088);
  c.workspace = d + 2048;
  c.workspace_bytes = 2048;
  c.out = host;
  const Status s = combine(c);
  EXPECT_EQ(s.code, StatusCode::invalid_argument);
  EXPECT_NE(s.message.find("out is not device memory"), std::string::npos) << s.message;
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // nothing was launched, nothing faulted
}

}  // namespace
}  // namespace signalgemm::test
