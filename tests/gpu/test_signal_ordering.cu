// Signal ordering under concurrency: a consumer kernel running beside the GEMM (on SMs the GEMM
// leaves free) copies the rows a counter covers the instant that counter reaches its expected
// value. If any row were not yet written or not yet visible, the copy would hold poison or a stale
// value, so the copy must equal the final output exactly. 1000 launches per granularity with
// random masked_m (zeros and max_m included) on the fp8 tiles, 200 on each other mainloop.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>

#include "gpu_test_util.h"
#include "host/config.h"
#include "signalgemm/consumer.cuh"
#include "signalgemm/gemm.h"

namespace signalgemm::test {
namespace {

constexpr uint64_t kTimeoutNs = 2'000'000'000;  // a missing signal fails the test, never hangs it

// One warp per counter (the launch has at least as many warps as counters), so every counter has a
// waiter of its own the instant it completes: lane 0 acquires it, the warp barrier extends that to
// the warp, and the warp copies the covered rows at once. `block_per_counter`: whole blocks take
// the counters in turn instead (block_wait_signal), for a test about loading, not timing.
__global__ void snapshot_on_signal(const uint16_t* out, uint16_t* snapshot, int64_t pitch, const int32_t* masked_m,
                                   SignalLayout layout, const uint32_t* signals, int32_t* timeout_flag,
                                   SignalScope scope = SignalScope::gpu, bool block_per_counter = false) {
  const bool per_row_block = layout.granularity == SignalGranularity::per_row_block;
  const int counters_per_expert = per_row_block ? layout.row_blocks_per_expert() : 1;
  const int lane = block_per_counter ? threadIdx.x : threadIdx.x % 32;
  const int width = block_per_counter ? blockDim.x : 32;
  const int64_t waiters = block_per_counter ? gridDim.x : int64_t(gridDim.x) * (blockDim.x / 32);
  const int64_t first = block_per_counter ? blockIdx.x : blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  for (int64_t c = first; c < layout.counter_count(); c += waiters) {
    const int e = int(c / counters_per_expert);
    const int rb = int(c % counters_per_expert);
    const uint32_t expected = layout.expected(masked_m[e], rb);
    if (expected == 0) continue;  // no rows: nothing will ever be signalled
    if (block_per_counter) {
      if (!block_wait_signal(signals + c, expected, scope, kTimeoutNs, timeout_flag)) continue;
    } else {
      bool reached = true;
      if (lane == 0) reached = wait_signal(signals + c, expected, scope, kTimeoutNs, timeout_flag);
      if (!__shfl_sync(0xffffffffu, reached, 0)) continue;
      __syncwarp();
    }
    const int first_row = per_row_block ? rb * layout.block_m : 0;
    const int rows = layout.covered_rows(masked_m[e], rb);
    const int64_t base = (int64_t(e) * layout.max_m + first_row) * pitch;
    for (int64_t i = lane; i < int64_t(rows) * pitch; i += width) {
      if (i % pitch < layout.n) snapshot[base + i] = out[base + i];
    }
  }
}

// load_kernels lets a configuration's first launch run beside a consumer that already spins on its
// signals. Under lazy module loading (CUDA's default) that launch would otherwise load the kernel
// and wait for the device to go idle: for the consumer to time out. Other tests of the binary load
// this kernel too; scripts/gpu_check.sh (like ctest) runs every test alone in a fresh process, where
// the launch below is the kernel's first.
TEST(SignalOrdering, LoadedKernelsFirstLaunchBesideASpinningConsumer) {
  SG_REQUIRE_HOPPER();
  std::mt19937 rng(45);
  Problem p;
  p.build(/*experts=*/6, /*max_m=*/200, /*n=*/640, /*k=*/384, rng);
  std::vector<int32_t> masked_m = {0, 1, 77, 200, 129, 3};
  p.set_masked_m(masked_m);
  p.poison_output();
  const auto reference = ref::masked_grouped_gemm(p.a, p.b, masked_m.data(), p.alpha.data());
  int sms = 0;
  SG_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  constexpr int kConsumerBlocks = 8;
  GroupedGemmArgs args = p.args();
  args.config.block_m = 192;
  args.config.block_n = 128;
  args.granularity = SignalGranularity::per_row_block;
  args.sm_count = sms - kConsumerBlocks;
  const SignalLayout layout = signal_layout(args);
  DeviceBuffer signals(sizeof(uint32_t) * layout.counter_count());
  SG_CUDA_CHECK(cudaMemset(signals.get(), 0, signals.bytes()));
  args.signals = signals.get<uint32_t>();
  DeviceBuffer snapshot(p.d_out.bytes());
  SG_CUDA_CHECK(cudaMemset(snapshot.get(), 0xff, snapshot.bytes()));
  DeviceBuffer timeout_flag = DeviceBuffer::from(std::vector<int32_t>{0});
  cudaStream_t gemm_stream, consumer_stream;
  SG_CUDA_CHECK(cudaStreamCreateWithFlags(&gemm_stream, cudaStreamNonBlocking));
  SG_CUDA_CHECK(cudaStreamCreateWithFlags(&consumer_stream, cudaStreamNonBlocking));
  args.stream = gemm_stream;

  ASSERT_TRUE(load_kernels(args).ok());
  SG_CUDA_CHECK(cudaDeviceSynchronize());
  snapshot_on_signal<<<kConsumerBlocks, 256, 0, consumer_stream>>>(
      p.d_out.get<uint16_t>(), snapshot.get<uint16_t>(), p.out_row_stride / 2, p.d_masked_m.get<int32_t>(), layout,
      signals.get<uint32_t>(), timeout_flag.get<int32_t>(), SignalScope::gpu, /*block_per_counter=*/true);
  SG_CUDA_CHECK(cudaGetLastError());
  const Status s = grouped_gemm_nt_masked(args);
  ASSERT_TRUE(s.ok()) << s.message;
  SG_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(timeout_flag.to_host<int32_t>()[0], 0) << "the consumer's wait timed out: the launch waited for it";
  EXPECT_EQ(check_output(p, masked_m, reference), "");
  const auto out = p.output(), seen = snapshot.to_host<uint16_t>();
  const int64_t pitch = p.out_row_stride / 2;
  int64_t differing = 0;
  for (int e = 0; e < p.experts; ++e)
    for (int i = 0; i < masked_m[e]; ++i)
      for (int j = 0; j < p.n; ++j) differing += seen[(e * p.max_m + i) * pitch + j] != out[(e * p.max_m + i) * pitch + j];
  EXPECT_EQ(differing, 0) << "elements the consumer saw differ from the final output";
  cudaStreamDestroy(gemm_stream);
  cudaStreamDestroy(consumer_stream);
}

// `launches` per granularity with a consumer on the SMs the GEMM leaves free; `dynamic_tiles`: with
// a workspace, so the CTAs take tiles from a counter (or, with few tiles, split K; or, for the
// one-format pairings, the activations are converted there first). `scope`: the signals' and the
// consumer's.
void expect_consumer_never_sees_unfinished_rows(Problem& p, const TileConfig& config, std::mt19937& rng,
                                                bool dynamic_tiles = false, int launches = 1000,
                                                SignalScope scope = SignalScope::gpu) {

  // Golden output, checked against the float64 reference once; rows < masked_m never depend on
  // masked_m and the kernel is deterministic, so every later launch must reproduce it bit for bit.
  // It runs the tile configuration under test, which also loads that kernel before the consumer
  // spins beside it (as load_kernels would; see the test above).
  // The golden launch runs on the SMs and with the workspace of the launches below: a split of K
  // (host::plan_split_k) sums its pieces in another order than one CTA's K loop.
  int sms = 0;
  SG_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  constexpr int kConsumerBlocks = 8;
  GroupedGemmArgs golden_args = p.args();
  golden_args.config = config;
  golden_args.sm_count = sms - kConsumerBlocks;
  DeviceBuffer golden_workspace;
  if (dynamic_tiles) {
    golden_workspace = DeviceBuffer(workspace_bytes(golden_args));
    golden_args.workspace = golden_workspace.get();
    golden_args.workspace_bytes = golden_workspace.bytes();
  }
  const std::vector<int32_t> all_rows(p.experts, p.max_m);
  const auto reference = ref::masked_grouped_gemm(p.a, p.b, all_rows.data(), p.alpha.data());
  p.set_masked_m(all_rows);
  p.poison_output();
  ASSERT_TRUE(grouped_gemm_nt_masked(golden_args).ok());
  SG_CUDA_CHECK(cudaDeviceSynchronize());
  ASSERT_EQ(check_output(p, all_rows, reference), "");
  const auto golden = p.output();
  cudaStream_t gemm_stream, consumer_stream;
  SG_CUDA_CHECK(cudaStreamCreateWithFlags(&gemm_stream, cudaStreamNonBlocking));
  SG_CUDA_CHECK(cudaStreamCreateWithFlags(&consumer_stream, cudaStreamNonBlocking));
  DeviceBuffer snapshot(p.d_out.bytes());
  DeviceBuffer timeout_flag = DeviceBuffer::from(std::vector<int32_t>{0});
  const int64_t pitch = p.out_row_stride / 2;

  for (auto granularity : {SignalGranularity::per_expert, SignalGranularity::per_row_block}) {
    GroupedGemmArgs args = p.args();
    args.config = config;
    args.granularity = granularity;
    args.scope = scope;
    args.sm_count = sms - kConsumerBlocks;
    args.stream = gemm_stream;
    DeviceBuffer workspace;
    if (dynamic_tiles) {
      workspace = DeviceBuffer(workspace_bytes(args));
      args.workspace = workspace.get();
      args.workspace_bytes = workspace.bytes();
    }
    const SignalLayout layout = signal_layout(args);
    ASSERT_LE(layout.counter_count(), kConsumerBlocks * 256 / 32) << "a counter without a waiter of its own";
    DeviceBuffer signals(sizeof(uint32_t) * layout.counter_count());
    args.signals = signals.get<uint32_t>();

    int mismatched_launches = 0;
    for (int iter = 0; iter < launches; ++iter) {
      std::vector<int32_t> masked_m(p.experts);
      for (auto& m : masked_m) m = int(rng() % (p.max_m + 1));
      masked_m[iter % p.experts] = 0;
      masked_m[(iter + 5) % p.experts] = p.max_m;
      p.set_masked_m(masked_m);
      p.poison_output();
      SG_CUDA_CHECK(cudaMemset(snapshot.get(), 0xff, snapshot.bytes()));
      SG_CUDA_CHECK(cudaMemset(signals.get(), 0, signals.bytes()));
      // The set-up above ran on the legacy stream, which does not order the non-blocking streams
      // below: finish it before either kernel starts.
      SG_CUDA_CHECK(cudaDeviceSynchronize());
      // Consumer first, so it is already spinning when the first tiles complete.
      snapshot_on_signal<<<kConsumerBlocks, 256, 0, consumer_stream>>>(
          p.d_out.get<uint16_t>(), snapshot.get<uint16_t>(), pitch, p.d_masked_m.get<int32_t>(), layout,
          signals.get<uint32_t>(), timeout_flag.get<int32_t>(), scope);
      SG_CUDA_CHECK(cudaGetLastError());
      const Status s = grouped_gemm_nt_masked(args);
      ASSERT_TRUE(s.ok()) << s.message;
      SG_CUDA_CHECK(cudaDeviceSynchronize());

      const auto out = p.output();
      const auto seen = snapshot.to_host<uint16_t>();
      bool mismatch = false;
      for (int e = 0; e < p.experts && !mismatch; ++e)
        for (int i = 0; i < masked_m[e] && !mismatch; ++i)
          for (int j = 0; j < p.n; ++j) {
            const size_t idx = (size_t(e) * p.max_m + i) * pitch + j;
            if (seen[idx] != out[idx] || out[idx] != golden[idx]) {
              ADD_FAILURE() << to_string(granularity) << " iter " << iter << ": expert " << e << " row " << i
                            << " col " << j << " consumer saw " << seen[idx] << ", final " << out[idx]
                            << ", golden " << golden[idx];
              mismatch = true;
              break;
            }
          }
      mismatched_launches += mismatch;
      if (mismatched_launches > 3) break;
    }
    EXPECT_EQ(mismatched_launches, 0) << to_string(granularity);
  }
  EXPECT_EQ(timeout_flag.to_host<int32_t>()[0], 0) << "a consumer wait timed out";
  cudaStreamDestroy(gemm_stream);
  cudaStreamDestroy(consumer_stream);
}

TEST(SignalOrdering, ConsumerNeverSeesUnfinishedRows) {
  SG_REQUIRE_HOPPER();
  std::mt19937 rng(42);
  Problem p;
  p.build(/*experts=*/16, /*max_m=*/96, /*n=*/1024, /*k=*/1024, rng);
  expect_consumer_never_sees_unfinished_rows(p, TileConfig{}, rng);
}

// CTAs taking tiles dynamically (128x256 tiles, where experts span several rounds of the grid).
TEST(SignalOrdering, ConsumerNeverSeesUnfinishedRowsOfDynamicTiles) {
  SG_REQUIRE_HOPPER();
  std::mt19937 rng(44);
  Problem p;
  p.build(/*experts=*/8, /*max_m=*/300, /*n=*/1280, /*k=*/512, rng);
  TileConfig config;
  config.block_m = 128;
  config.block_n = 256;
  expect_consumer_never_sees_unfinished_rows(p, config, rng, /*dynamic_tiles=*/true);
}

// The token-rows tile (128x192: tokens as the wgmma's M, staged without the transpose), given a
// workspace as the heuristic's launches are (it walks the fixed order all the same); N = 1280 ends
// in a partial column block.
TEST(SignalOrdering, ConsumerNeverSeesUnfinishedRowsOfTokenRowsTiles) {
  SG_REQUIRE_HOPPER();
  std::mt19937 rng(46);
  Problem p;
  p.build(/*experts=*/8, /*max_m=*/300, /*n=*/1280, /*k=*/512, rng);
  TileConfig config;
  config.block_m = 128;
  config.block_n = 192;
  expect_consumer_never_sees_unfinished_rows(p, config, rng, /*dynamic_tiles=*/true);
}

// Two-CTA clusters (128x256 tiles): row-block pairs sharing weights, odd row blocks sharing tokens,
// and a lone last column (N = 1280: five column blocks) where rank 1 idles.
TEST(SignalOrdering, ConsumerNeverSeesUnfinishedRowsOfClusterPairs) {
  SG_REQUIRE_HOPPER();
  std::mt19937 rng(43);
  Problem p;
  p.build(/*experts=*/8, /*max_m=*/300, /*n=*/1280, /*k=*/512, rng);
  TileConfig config;
  config.block_m = 128;
  config.block_n = 256;
  config.cluster = 2;
  expect_consumer_never_sees_unfinished_rows(p, config, rng);
}

// Split K (few decode tiles, a workspace): only the last piece of a tile stores it and signals.
TEST(SignalOrdering, ConsumerNeverSeesUnfinishedRowsOfSplitK) {
  SG_REQUIRE_HOPPER();
  std::mt19937 rng(45);
  Problem p;
  p.build(/*experts=*/3, /*max_m=*/40, /*n=*/384, /*k=*/3072, rng);  // 18 tiles of 32x128, 24 K blocks
  TileConfig config;
  config.block_m = 32;
  config.block_n = 128;
  GroupedGemmArgs probe = p.args();
  probe.config = config;
  probe.sm_count = 120;
  ASSERT_GT(workspace_bytes(probe), host::kTileCounterBytes) << "expected a split of K";
  expect_consumer_never_sees_unfinished_rows(p, config, rng, /*dynamic_tiles=*/true);
}

// The tiles the heuristic picks for decode, beside a consumer: 32 and 64 tokens on 128 weight rows,
// and one 192-token block per expert.
TEST(SignalOrdering, ConsumerNeverSeesUnfinishedRowsOfDecodeTiles) {
  SG_REQUIRE_HOPPER();
  for (const auto& [config, max_m] : {std::pair{TileConfig{32, 128, 0, 0}, 64}, std::pair{TileConfig{64, 128, 0, 0}, 64},
                                      std::pair{TileConfig{192, 128, 0, 0}, 192}}) {
    SCOPED_TRACE(std::to_string(config.block_m) + "x" + std::to_string(config.block_n));
    std::mt19937 rng(49);
    Problem p;
    p.build(/*experts=*/24, max_m, /*n=*/640, /*k=*/512, rng);
    expect_consumer_never_sees_unfinished_rows(p, config, rng);
  }
}

// The other mainloops, 200 launches per granularity each: bf16 (unscaled), FP4 weights
// dequantized in registers (bf16 x nvfp4 decode, signals at system scope), the dequantizing
// mainloop (fp8_block128 x nvfp4 on 64x128), and activations converted in a workspace first
// (nvfp4 x nvfp4: two kernels, the GEMM a programmatic dependent of the conversion).
TEST(SignalOrdering, ConsumerNeverSeesUnfinishedRowsOfEveryMainloop) {
  SG_REQUIRE_HOPPER();
  struct Case {
    Format a, b;
    TileConfig config;
    bool workspace;
    SignalScope scope;
  };
  const Case cases[] = {{Format::bf16, Format::bf16, TileConfig{}, false, SignalScope::gpu},
                        {Format::bf16, Format::nvfp4, TileConfig{}, false, SignalScope::sys},
                        {Format::fp8_block128, Format::nvfp4, TileConfig{64, 128, 0, 0}, false, SignalScope::gpu},
                        // the register-weights decode tiles of 256 weight rows, K split where a workspace allows
                        {Format::bf16, Format::nvfp4, TileConfig{48, 256, 0, 0}, true, SignalScope::gpu},
                        {Format::bf16, Format::nvfp4, TileConfig{32, 256, 0, 0}, true, SignalScope::gpu},
                        {Format::nvfp4, Format::nvfp4, TileConfig{}, true, SignalScope::gpu}};
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(to_string(c.a)) + " x " + to_string(c.b));
    std::mt19937 rng(47);
    Problem p;
    p.build(/*experts=*/8, /*max_m=*/96, /*n=*/640, /*k=*/512, rng, 0, 0, 0, c.a, c.b);
    expect_consumer_never_sees_unfinished_rows(p, c.config, rng, c.workspace, /*launches=*/200, c.scope);
  }
}

// A consumer on the host: counters in mapped pinned memory, SignalScope::sys. The host thread polls
// each expert's counter with acquire loads while the GEMM runs and, the moment it completes, has a
// copy engine fetch that expert's rows on another stream: every fetched row must equal the final
// output, and no counter may pass its expected value.
TEST(SignalOrdering, HostConsumerOfPinnedCountersFetchesFinishedRows) {
  SG_REQUIRE_HOPPER();
  std::mt19937 rng(48);
  Problem p;
  p.build(/*experts=*/8, /*max_m=*/256, /*n=*/2048, /*k=*/1024, rng);
  const std::vector<int32_t> masked_m = {0, 1, 77, 256, 129, 3, 200, 255};
  p.set_masked_m(masked_m);
  p.poison_output();
  const auto reference = ref::masked_grouped_gemm(p.a, p.b, masked_m.data(), p.alpha.data());
  GroupedGemmArgs args = p.args();
  args.granularity = SignalGranularity::per_expert;
  args.scope = SignalScope::sys;  // the host reads the counters, and the rows through a copy engine
  const SignalLayout layout = signal_layout(args);
  uint32_t* counters = nullptr;
  uint16_t* fetched = nullptr;
  SG_CUDA_CHECK(cudaHostAlloc(&counters, sizeof(uint32_t) * layout.counter_count(), cudaHostAllocMapped));
  SG_CUDA_CHECK(cudaHostAlloc(&fetched, p.d_out.bytes(), cudaHostAllocDefault));
  std::fill_n(counters, layout.counter_count(), 0u);
  std::fill_n(fetched, p.d_out.bytes() / 2, uint16_t(0xffff));
  args.signals = counters;
  cudaStream_t gemm_stream, copy_stream;
  SG_CUDA_CHECK(cudaStreamCreateWithFlags(&gemm_stream, cudaStreamNonBlocking));
  SG_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_stream, cudaStreamNonBlocking));
  args.stream = gemm_stream;
  ASSERT_TRUE(load_kernels(args).ok());
  SG_CUDA_CHECK(cudaDeviceSynchronize());

  const Status s = grouped_gemm_nt_masked(args);
  ASSERT_TRUE(s.ok()) << s.message;
  const int64_t pitch = p.out_row_stride / 2;
  std::vector<bool> done(p.experts);
  int pending = 0;
  for (int e = 0; e < p.experts; ++e) pending += !(done[e] = layout.expected(masked_m[e]) == 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (pending > 0 && std::chrono::steady_clock::now() < deadline) {
    for (int e = 0; e < p.experts; ++e) {
      if (done[e]) continue;
      // Acquire: pairs with the kernel's system-scope release, so the rows the counter covers are
      // visible before the copy below is even enqueued.
      const uint32_t value = __atomic_load_n(counters + e, __ATOMIC_ACQUIRE);
      const uint32_t expected = layout.expected(masked_m[e]);
      ASSERT_LE(value, expected) << "expert " << e << "'s counter passed its expected value";
      if (value < expected) continue;
      const size_t offset = size_t(e) * p.max_m * pitch;
      SG_CUDA_CHECK(cudaMemcpyAsync(fetched + offset, p.d_out.get<uint16_t>() + offset,
                                    size_t(masked_m[e]) * pitch * 2, cudaMemcpyDeviceToHost, copy_stream));
      done[e] = true;
      --pending;
    }
  }
  EXPECT_EQ(pending, 0) << "counters still short of their expected values after 5 s";
  SG_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(check_output(p, masked_m, reference), "");
  const auto out = p.output();
  int64_t differing = 0;
  for (int e = 0; e < p.experts; ++e)
    for (int64_t i = 0; i < int64_t(masked_m[e]) * pitch; ++i) {
      const size_t index = size_t(e) * p.max_m * pitch + i;
      differing += i % pitch < p.n && fetched[index] != out[index];
    }
  EXPECT_EQ(differing, 0) << "rows fetched on their counter's signal differ from the final output";
  for (int e = 0; e < p.experts; ++e) EXPECT_EQ(counters[e], layout.expected(masked_m[e])) << "expert " << e;
  cudaStreamDestroy(gemm_stream);
  cudaStreamDestroy(copy_stream);
  cudaFreeHost(counters);
  cudaFreeHost(fetched);
}

// Counters in pageable host memory cannot be reached by the kernel: refused, naming them.
TEST(SignalOrdering, RefusesCountersInPageableHostMemory) {
  SG_REQUIRE_HOPPER();
  std::mt19937 rng(49);
  Problem p;
  p.build(/*experts=*/2, /*max_m=*/64, /*n=*/256, /*k=*/256, rng);
  GroupedGemmArgs args = p.args();
  args.granularity = SignalGranularity::per_expert;
  std::vector<uint32_t> pageable(signal_layout(args).counter_count());
  args.signals = pageable.data();
  const Status s = grouped_gemm_nt_masked(args);
  EXPECT_EQ(s.code, StatusCode::invalid_argument);
  EXPECT_NE(s.message.find("signals is not device memory"), std::string::npos) << s.message;
}

}  // namespace
}  // namespace signalgemm::test
