// The multi-GPU combine (ep_combine) overlapped with each rank's down GEMM: every rank's output
// against a float64 CPU combine of the (separately verified) GEMM outputs of all ranks, for fresh
// random routings and masked_m (0, 1, odd values and max_m in every iteration), both signal
// granularities, and every third iteration the epilogue-send mode (rows written by the GEMM into
// the owners' windows). Three set-ups: one process driving every GPU (1,000 iterations), a single
// rank (the local combine), and one process per GPU (this binary re-executed as workers, sharing
// the ncclUniqueId on the command line and the GEMM outputs through ncclAllGather).
//
// Own main(): `--ep-worker RANK RANKS ID_HEX ITERATIONS` runs one worker rank.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include <nccl.h>

#include "consumer/ep_combine_testing.h"
#include "gpu_test_util.h"
#include "signalgemm/combine.h"
#include "signalgemm/ep_combine.h"
#include "signalgemm/gemm.h"

namespace signalgemm::test {
namespace {

// A problem size: experts per rank, max_m, N, K, top-k. kSmall's N = 1032 is 129 vectors of 16
// bytes per row, so the rows of the last expert travel in two chunks, the second one partial (and
// the GEMM's last column block is partial too). kTopEight has the benchmark's top-8 and N = 7168
// (reduce groups of up to 32 slots, rows of several full chunks) at a K the CPU reference affords.
struct EpShape {
  int experts_per_rank, max_m, n, k, topk;
  int max_tokens_per_rank(int ranks) const { return ranks * experts_per_rank * max_m * 12 / 10 / topk + 8; }
};
constexpr EpShape kSmall{4, 40, 1032, 256, 4}, kTopEight{8, 96, 7168, 128, 8};
constexpr int kCombineBlocks = 4;  // beside the GEMM, on the SMs it leaves free
constexpr int kHelperBlocks = 8;   // stream-ordered after the GEMM, joining through the queues

int hopper_gpu_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  for (int d = 0; d < count; ++d) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, d) != cudaSuccess || prop.major != 9 || prop.minor != 0) return d;
  }
  return count;
}

// One routing over all ranks, generated identically in every process from the same seed.
struct EpRouting {
  int ranks = 0, slots_per_rank = 0;
  std::vector<std::vector<int32_t>> masked_m, row_source;  // per rank: [E_local], [E_local][max_m]
  std::vector<int> num_tokens;                             // per rank
  std::vector<std::vector<int32_t>> topk_idx;              // per rank: [num_tokens][topk], global expert
  std::vector<std::vector<float>> weights;
  std::vector<std::vector<std::array<int, 3>>> slot_source;  // per owner slot: (rank, local expert, row)
};

// Per global expert a count: a quarter 0, one max_m, one 1, the rest uniform in [0, max_m]; each
// row goes to a random owner rank (or its expert's own); each owner's slots are shuffled, with about 10% left unused
// (topk_idx -1); each expert's rows are ordered by (owner, slot) as a low-latency dispatch lays
// them out (grouped by source rank).
// `local_only`: every row goes to the expert's own rank (no row crosses a GPU).
EpRouting random_ep_routing(int ranks, const EpShape& shape, std::mt19937& rng, bool local_only = false) {
  EpRouting r;
  r.ranks = ranks;
  const int experts_per_rank = shape.experts_per_rank, max_m = shape.max_m, topk = shape.topk;
  const int experts = ranks * experts_per_rank;
  r.slots_per_rank = shape.max_tokens_per_rank(ranks) * topk;
  std::vector<int> count(experts);
  for (auto& m : count) m = rng() % 4 == 0 ? 0 : int(rng() % (max_m + 1));
  const int full = int(rng() % experts);
  count[full] = max_m;
  if (experts > 1) count[(full + 1 + rng() % (experts - 1)) % experts] = 1;
  std::vector<std::vector<int>> owner_slots(ranks);  // global expert per slot, -1 unused
  for (int g = 0; g < experts; ++g)
    for (int i = 0; i < count[g]; ++i) owner_slots[local_only ? g / experts_per_rank : rng() % ranks].push_back(g);
  std::uniform_real_distribution<float> uw(0.05f, 1.f);
  r.masked_m.assign(ranks, std::vector<int32_t>(experts_per_rank, 0));
  r.row_source.assign(ranks, std::vector<int32_t>(size_t(experts_per_rank) * max_m, -1));
  r.num_tokens.resize(ranks);
  r.topk_idx.resize(ranks);
  r.weights.resize(ranks);
  r.slot_source.resize(ranks);
  std::vector<std::vector<std::pair<int, int>>> rows_of_expert(experts);  // (owner, slot)
  for (int o = 0; o < ranks; ++o) {
    std::shuffle(owner_slots[o].begin(), owner_slots[o].end(), rng);
    std::vector<int> slots;
    for (int g : owner_slots[o]) {
      if (rng() % 10 == 0) slots.push_back(-1);
      slots.push_back(g);
    }
    r.num_tokens[o] = int((slots.size() + topk - 1) / topk);
    slots.resize(size_t(r.num_tokens[o]) * topk, -1);
    r.topk_idx[o].assign(slots.begin(), slots.end());
    r.weights[o].resize(slots.size());
    r.slot_source[o].assign(slots.size(), {-1, -1, -1});
    for (size_t s = 0; s < slots.size(); ++s) {
      r.weights[o][s] = slots[s] >= 0 ? uw(rng) : 0.f;
      if (slots[s] >= 0) rows_of_expert[slots[s]].push_back({o, int(s)});
    }
  }
  for (int g = 0; g < experts; ++g) {
    auto& rows = rows_of_expert[g];
    std::sort(rows.begin(), rows.end());
    const int rank = g / experts_per_rank, e = g % experts_per_rank;
    r.masked_m[rank][e] = int(rows.size());
    for (size_t i = 0; i < rows.size(); ++i) {
      const auto [owner, slot] = rows[i];
      r.row_source[rank][size_t(e) * max_m + i] = owner * r.slots_per_rank + slot;
      r.slot_source[owner][slot] = {rank, e, int(i)};
    }
  }
  return r;
}

__global__ void spin_kernel(uint64_t ns) { spin_for_ns(ns); }

// One rank living in this process: its GPU, its GEMM problem, its combine buffers.
struct RankState {
  EpShape shape = kSmall;
  int rank = 0, device = 0, sms = 0;
  Problem problem;
  EpCombineContext* context = nullptr;
  cudaStream_t gemm_stream = nullptr, combine_stream = nullptr;
  DeviceBuffer signals, row_source, topk_idx, weights, out, workspace, flag, out_rows;

  // Builds the rank's problem (seeded by rank, so every process builds the same) and checks its
  // full GEMM output against the float64 reference; returns that output's bf16 bits.
  std::vector<uint16_t> build(int rank_, int ranks) {
    rank = rank_;
    cudaSetDevice(device);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    std::mt19937 rng(1000 + rank);
    problem.build(shape.experts_per_rank, shape.max_m, shape.n, shape.k, rng);
    const std::vector<int32_t> all(shape.experts_per_rank, shape.max_m);
    const auto reference = ref::masked_grouped_gemm(problem.a, problem.b, all.data(), problem.alpha.data());
    problem.set_masked_m(all);
    problem.poison_output();
    EXPECT_TRUE(grouped_gemm_nt_masked(problem.args()).ok());
    // Loaded here, on an idle device: in a test its first launch follows a barrier that spins on the
    // other ranks (lazy module loading would wait for that barrier to end).
    spin_kernel<<<1, 1>>>(0);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(check_output(problem, all, reference), "") << "rank " << rank;
    const int tokens = shape.max_tokens_per_rank(ranks), rows = shape.experts_per_rank * shape.max_m;
    signals = DeviceBuffer(sizeof(uint32_t) * rows);  // >= any layout's counters
    row_source = DeviceBuffer(sizeof(int32_t) * rows);
    topk_idx = DeviceBuffer(sizeof(int32_t) * tokens * shape.topk);
    weights = DeviceBuffer(sizeof(float) * tokens * shape.topk);
    out = DeviceBuffer(size_t(tokens) * shape.n * 2);
    workspace = DeviceBuffer(ep_combine_workspace_bytes(rows));  // >= any layout
    flag = DeviceBuffer::from(std::vector<int32_t>{0});
    out_rows = DeviceBuffer(sizeof(void*) * rows);
    cudaStreamCreateWithFlags(&gemm_stream, cudaStreamNonBlocking);
    cudaStreamCreateWithFlags(&combine_stream, cudaStreamNonBlocking);
    return problem.output();
  }
  void release() {
    cudaSetDevice(device);
    if (gemm_stream) cudaStreamDestroy(gemm_stream);
    if (combine_stream) cudaStreamDestroy(combine_stream);
    gemm_stream = combine_stream = nullptr;
  }

  // This rank's masked_m and routing on the device; GEMM output and combine output poisoned.
  void upload_routing(const EpRouting& r) {
    problem.set_masked_m(r.masked_m[rank]);
    problem.poison_output();
    cudaMemcpy(row_source.get(), r.row_source[rank].data(), r.row_source[rank].size() * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(topk_idx.get(), r.topk_idx[rank].data(), r.topk_idx[rank].size() * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(weights.get(), r.weights[rank].data(), r.weights[rank].size() * 4, cudaMemcpyHostToDevice);
    cudaMemset(out.get(), 0xff, out.bytes());  // poison: bf16 NaN
  }

  // The combine arguments both modes share.
  EpCombineArgs combine_args(const EpRouting& r, const SignalLayout& layout, uint32_t epoch) {
    EpCombineArgs c;
    c.masked_m = problem.d_masked_m.get<int32_t>();
    c.layout = layout;
    c.row_source = row_source.get<int32_t>();
    c.num_tokens = r.num_tokens[rank];
    c.topk_idx = topk_idx.get<int32_t>();
    c.topk_weights = weights.get<float>();
    c.out = out.get();
    c.epoch = epoch;
    c.workspace = workspace.get();
    c.workspace_bytes = workspace.bytes();
    c.timeout_ns = 5'000'000'000;
    c.error_flag = flag.get<int32_t>();
    c.reduce_tokens = int(epoch % 5);  // 0 (the default: tokens per SM) to 4: groups and partial groups
    return c;
  }

  // This rank's routing, signals and workspace for one combine (either mode), then a device sync.
  std::string set_up(const EpRouting& r) {
    cudaSetDevice(device);
    upload_routing(r);
    cudaMemset(signals.get(), 0, signals.bytes());
    cudaMemset(workspace.get(), 0, workspace.bytes());
    cudaMemset(flag.get(), 0, flag.bytes());
    return cudaDeviceSynchronize() == cudaSuccess ? "" : "set-up failed";
  }

  // Sets up and launches combine (beside), GEMM, combine (after).
  std::string launch(const EpRouting& r, SignalGranularity g, uint32_t epoch) {
    if (std::string e = set_up(r); !e.empty()) return e;
    return enqueue(r, g, epoch);
  }
  std::string enqueue(const EpRouting& r, SignalGranularity g, uint32_t epoch) {
    cudaSetDevice(device);
    GroupedGemmArgs args = problem.args();
    args.granularity = g;
    args.sm_count = sms - kCombineBlocks;
    args.stream = gemm_stream;
    args.signals = signals.get<uint32_t>();
    const SignalLayout layout = signal_layout(args);
    EpCombineArgs c = combine_args(r, layout, epoch);
    c.gemm_out = problem.d_out.get();
    c.gemm_out_row_stride = problem.out_row_stride;
    c.signals = signals.get<uint32_t>();
    c.num_blocks = kCombineBlocks;
    c.stream = combine_stream;
    // The GEMM's kernels loaded before the consumer spins beside its first launch (lazy module
    // loading; docs/signals.md): the golden launch ran on all SMs, perhaps another kernel.
    if (Status s = load_kernels(args); !s.ok()) return s.message;
    if (Status s = ep_combine(context, c); !s.ok()) return s.message;  // consumer first: already waiting
    if (Status s = grouped_gemm_nt_masked(args); !s.ok()) return s.message;
    EpCombineArgs helper = c;
    helper.num_blocks = kHelperBlocks;
    helper.first_block = kCombineBlocks;
    helper.stream = gemm_stream;
    if (Status s = ep_combine(context, helper); !s.ok()) return s.message;
    return "";
  }

  // The epilogue-send mode: the GEMM writes every row into its owner's window; no combine beside it.
  std::string launch_epilogue_send(const EpRouting& r, uint32_t epoch) {
    if (std::string e = set_up(r); !e.empty()) return e;
    return enqueue_epilogue_send(r, epoch);
  }
  // `delay_ns`: a kernel that spins this long runs between the GEMM and the reduce (a slow owner).
  std::string enqueue_epilogue_send(const EpRouting& r, uint32_t epoch, uint64_t delay_ns = 0) {
    cudaSetDevice(device);
    GroupedGemmArgs args = problem.args();
    args.granularity = SignalGranularity::per_expert;
    args.scope = SignalScope::sys;
    args.stream = gemm_stream;
    const SignalLayout layout = signal_layout(args);
    EpCombineArgs c = combine_args(r, layout, epoch);
    c.num_blocks = kHelperBlocks;
    c.stream = gemm_stream;
    uint32_t* window_signals = nullptr;
    if (Status s = ep_epilogue_send_prepare(context, c, out_rows.get<void*>(), &window_signals); !s.ok())
      return s.message;
    args.out = nullptr;
    args.out_rows = out_rows.get<void*>();
    args.signals = window_signals;
    // Loaded before the barrier, which spins on the other ranks (lazy module loading; docs/signals.md).
    if (Status s = load_kernels(args); !s.ok()) return s.message;
    if (Status s = ep_combine_barrier(context, gemm_stream); !s.ok()) return s.message;
    if (Status s = grouped_gemm_nt_masked(args); !s.ok()) return s.message;
    if (delay_ns > 0) spin_kernel<<<1, 1, 0, gemm_stream>>>(delay_ns);
    if (Status s = ep_epilogue_send_reduce(context, c); !s.ok()) return s.message;
    return "";
  }

  // After launch(): waits and compares with the CPU combine of every rank's golden output; the
  // error flag must read `expected_flag`.
  std::string check(const EpRouting& r, const std::vector<std::vector<uint16_t>>& golden, int32_t expected_flag = 0) {
    cudaSetDevice(device);
    if (cudaError_t e = cudaDeviceSynchronize(); e != cudaSuccess) return std::string("kernel: ") + cudaGetErrorString(e);
    if (const int32_t f = flag.to_host<int32_t>()[0]; f != expected_flag)
      return "error flag " + std::to_string(f) + ", expected " + std::to_string(expected_flag) +
             (f & kErrorSignalTimeout ? " (a wait timed out)" : "");
    const auto got = out.to_host<uint16_t>();
    const int64_t pitch = problem.out_row_stride / 2;
    for (int t = 0; t < r.num_tokens[rank]; ++t)
      for (int j = 0; j < shape.n; ++j) {
        double want = 0;
        for (int k = 0; k < shape.topk; ++k) {
          const int s = t * shape.topk + k;
          if (r.topk_idx[rank][s] < 0) continue;
          const auto [src, e, i] = r.slot_source[rank][s];
          want += double(r.weights[rank][s]) * ref::bf16_to_float(golden[src][(size_t(e) * shape.max_m + i) * pitch + j]);
        }
        const double value = ref::bf16_to_float(got[size_t(t) * shape.n + j]);
        if (!(std::abs(value - want) <= 1e-2 * std::abs(want) + 1e-3))
          return "rank " + std::to_string(rank) + " token " + std::to_string(t) + " col " + std::to_string(j) +
                 ": got " + std::to_string(value) + " want " + std::to_string(want);
      }
    return "";
  }
};

SignalGranularity granularity_of(int iteration) {
  return iteration % 2 == 0 ? SignalGranularity::per_expert : SignalGranularity::per_row_block;
}

// One process, every rank in it (ncclCommInitAll): returns the number of failing iterations.
// Epochs first_epoch, first_epoch + 1, ... (modulo 2^32).
int run_single_process(int ranks, int iterations, const EpShape& shape = kSmall, uint32_t first_epoch = 1) {
  std::vector<ncclComm_t> comms(ranks);
  std::vector<int> devices(ranks);
  for (int i = 0; i < ranks; ++i) devices[i] = i;
  EXPECT_EQ(ncclCommInitAll(comms.data(), ranks, devices.data()), ncclSuccess);
  std::vector<std::unique_ptr<RankState>> states;
  std::vector<std::vector<uint16_t>> golden;
  for (int i = 0; i < ranks; ++i) {
    states.push_back(std::make_unique<RankState>());
    states[i]->shape = shape;
    states[i]->device = i;
    golden.push_back(states[i]->build(i, ranks));
  }
  std::vector<EpCombineContext*> contexts(ranks, nullptr);
  const EpCombineConfig config{shape.max_tokens_per_rank(ranks), shape.topk, shape.n};
  Status s = ep_combine_create_all(comms.data(), ranks, config, contexts.data());
  EXPECT_TRUE(s.ok()) << s.message;
  if (!s.ok()) return iterations;
  for (int i = 0; i < ranks; ++i) {
    states[i]->context = contexts[i];
    if (first_epoch != 1) {
      const Status start = test_hooks::ep_combine_start_at_epoch(contexts[i], first_epoch);
      EXPECT_TRUE(start.ok()) << start.message;
    }
  }

  std::mt19937 rng(2026 + ranks);
  int failures = 0;
  for (int iter = 0; iter < iterations && failures < 3; ++iter) {
    const EpRouting routing = random_ep_routing(ranks, shape, rng);
    std::string err;
    // Every third iteration in the epilogue-send mode (the same epochs and window).
    const bool epilogue_send = iter % 3 == 2;
    for (auto& st : states)
      if (err.empty())
        err = epilogue_send ? st->launch_epilogue_send(routing, first_epoch + uint32_t(iter))
                            : st->launch(routing, granularity_of(iter), first_epoch + uint32_t(iter));
    if (!err.empty() && epilogue_send) {
      // Ranks already launched wait in a device barrier (no timeout) for the ones that were not: the
      // checks below would never return, so the process ends here, failed.
      std::fprintf(stderr, "%d ranks, epilogue send, iteration %d: %s\n", ranks, iter, err.c_str());
      std::fflush(stderr);
      std::_Exit(1);
    }
    for (auto& st : states) {
      const std::string e = st->check(routing, golden);
      if (err.empty()) err = e;
    }
    if (!err.empty()) {
      ADD_FAILURE() << ranks << " ranks, " << (epilogue_send ? "epilogue send" : to_string(granularity_of(iter)))
                    << ", iteration " << iter << " (epoch " << first_epoch + uint32_t(iter) << "): " << err;
      ++failures;
    }
  }
  // The device-side barrier: every rank enqueues it; all must complete (watchdog: 10 s). Enqueued
  // while another rank's device is current: a context's calls run on its own device.
  for (int round = 0; round < 10; ++round)
    for (auto& st : states) {
      const int other = (st->device + 1) % ranks;
      cudaSetDevice(other);
      const Status barrier = ep_combine_barrier(st->context, st->gemm_stream);
      EXPECT_TRUE(barrier.ok()) << barrier.message;
      int current = -1;
      cudaGetDevice(&current);
      EXPECT_EQ(current, other) << "ep_combine_barrier changed the current device";
    }
  for (auto& st : states) {
    cudaSetDevice(st->device);
    int waited_ms = 0;
    while (cudaStreamQuery(st->gemm_stream) == cudaErrorNotReady && waited_ms < 10000) {
      usleep(1000);
      ++waited_ms;
    }
    if (waited_ms >= 10000) {
      ADD_FAILURE() << "ep_combine_barrier did not complete on rank " << st->rank;
      std::_Exit(1);  // a kernel still spins: no clean teardown possible
    }
  }
  EXPECT_TRUE(ep_combine_destroy_all(contexts.data(), ranks).ok());
  for (auto& st : states) st->release();
  for (auto& c : comms) ncclCommDestroy(c);
  return failures;
}

TEST(EpCombine, RejectsBadArguments) {
  EpCombineArgs a;
  EXPECT_NE(ep_combine(nullptr, a).message.find("context"), std::string::npos);
  EXPECT_NE(ep_epilogue_send_reduce(nullptr, a).message.find("context"), std::string::npos);
  void* rows[1];
  uint32_t* signals = nullptr;
  EXPECT_NE(ep_epilogue_send_prepare(nullptr, a, rows, &signals).message.find("context"), std::string::npos);
  EpCombineContext* ctx = nullptr;
  EXPECT_NE(ep_combine_create(nullptr, EpCombineConfig{1, 1, 8}, &ctx).message.find("comm"), std::string::npos);
  EXPECT_EQ(ctx, nullptr);
  // Named before any rank's thread starts (one refusing alone would leave the others in a collective).
  ncclComm_t comms[2] = {nullptr, nullptr};
  EpCombineContext* contexts[2] = {nullptr, nullptr};
  EXPECT_NE(ep_combine_create_all(comms, 2, EpCombineConfig{1, 1, 8}, contexts).message.find("comms[0] is null"),
            std::string::npos);
  // A null context has no rank, and there is nothing to destroy.
  EXPECT_EQ(ep_combine_rank(nullptr), -1);
  EXPECT_EQ(ep_combine_num_ranks(nullptr), -1);
  EXPECT_EQ(ep_combine_device(nullptr), -1);
  EXPECT_TRUE(ep_combine_destroy(nullptr).ok());
  EXPECT_TRUE(ep_combine_destroy_all(contexts, 2).ok());  // both null
  EXPECT_NE(ep_combine_destroy_all(nullptr, 2).message.find("contexts"), std::string::npos);
  EXPECT_NE(ep_combine_destroy_all(contexts, -1).message.find("count"), std::string::npos);
  EXPECT_EQ(ep_combine_workspace_bytes(-5), ep_combine_workspace_bytes(0));
}

TEST(EpCombine, OneProcessAllGpusThousandIterations) {
  const int gpus = hopper_gpu_count();
  if (gpus < 2) GTEST_SKIP() << "fewer than 2 Hopper GPUs: skipped";
  EXPECT_EQ(run_single_process(gpus, 1000), 0);
}

// The benchmark's top-8 and row width (its routing and K aside): fewer iterations, wider rows.
TEST(EpCombine, TopEightWideRows) {
  const int gpus = hopper_gpu_count();
  if (gpus < 2) GTEST_SKIP() << "fewer than 2 Hopper GPUs: skipped";
  EXPECT_EQ(run_single_process(gpus, 60, kTopEight), 0);
}

TEST(EpCombine, SingleRankIsTheLocalCombine) {
  if (hopper_gpu_count() < 1) GTEST_SKIP() << "no Hopper (sm_90) GPU: skipped";
  EXPECT_EQ(run_single_process(1, 100), 0);
  EXPECT_EQ(run_single_process(1, 20, kTopEight), 0);
}

// Epochs from 2^31 + 1 (where a flag never written, or left at an old epoch, would read as
// "reached") and across the wrap (0 follows 0xFFFFFFFF), with one rank and with two.
TEST(EpCombine, EpochsPastTwoToTheThirtyOneAndTheWrap) {
  const int gpus = hopper_gpu_count();
  if (gpus < 1) GTEST_SKIP() << "no Hopper (sm_90) GPU: skipped";
  for (int ranks = 1; ranks <= std::min(gpus, 2); ++ranks) {
    EXPECT_EQ(run_single_process(ranks, 12, kSmall, 0x80000001u), 0) << ranks << " ranks";
    EXPECT_EQ(run_single_process(ranks, 12, kSmall, 0xFFFFFFFAu), 0) << ranks << " ranks";
  }
}

// One rank on GPU 0 with its context (kSmall): the error-path tests.
class EpCombineSingleRank : public ::testing::Test {
 protected:
  void SetUp() override {
    if (hopper_gpu_count() < 1) GTEST_SKIP() << "no Hopper (sm_90) GPU: skipped";
    int device = 0;
    ASSERT_EQ(ncclCommInitAll(&comm, 1, &device), ncclSuccess);
    st.shape = kSmall;
    golden.push_back(st.build(0, 1));
    const EpCombineConfig config{kSmall.max_tokens_per_rank(1), kSmall.topk, kSmall.n};
    ASSERT_TRUE(ep_combine_create(comm, config, &st.context).ok());
  }
  void TearDown() override {
    if (st.context != nullptr) EXPECT_TRUE(ep_combine_destroy(st.context).ok());
    st.release();
    if (comm != nullptr) ncclCommDestroy(comm);
  }
  ncclComm_t comm = nullptr;
  RankState st;
  std::vector<std::vector<uint16_t>> golden;  // the rank's full GEMM output
};

// A routing entry that names no rank of the comm (a topk_idx past num_ranks * E_local, a row_source
// past num_ranks * slots) or is below -1 is reported as kErrorInvalidRouting and skipped in both
// modes, never followed; the rest of the combine is exact.
TEST_F(EpCombineSingleRank, ReportsRoutingThatNamesNoRank) {
  std::mt19937 rng(77);
  uint32_t epoch = 0;
  for (const bool below : {false, true}) {
    for (int mode = 0; mode < 2; ++mode) {  // ep_combine beside the GEMM, then rows sent from its epilogue
      EpRouting routing = random_ep_routing(1, kSmall, rng);
      int slot = 0;
      while (routing.topk_idx[0][slot] < 0) ++slot;
      EpRouting sent = routing;
      // Expert 0 of rank 1 and slot 0 of rank 1 (no such rank), or ids below the padding's -1.
      sent.topk_idx[0][slot] = below ? -2 : kSmall.experts_per_rank;
      const auto [rank, e, i] = routing.slot_source[0][slot];
      sent.row_source[rank][size_t(e) * kSmall.max_m + i] = below ? -5 : routing.slots_per_rank;
      routing.topk_idx[0][slot] = -1;  // the reference: that slot not summed
      ++epoch;
      const std::string launched = mode == 0 ? st.launch(sent, SignalGranularity::per_expert, epoch)
                                             : st.launch_epilogue_send(sent, epoch);
      const std::string what = std::string(below ? "ids below -1" : "ids past the ranks") + ", mode " +
                               std::to_string(mode);
      EXPECT_EQ(launched, "") << what;
      EXPECT_EQ(st.check(routing, golden, kErrorInvalidRouting), "") << what;
    }
  }
}

// A workspace shorter than the layout's counters need and a GEMM output of another type than bf16
// are named before any launch, in both modes.
TEST_F(EpCombineSingleRank, RejectsShortWorkspaceOtherOutputTypesAndAliases) {
  std::mt19937 rng(78);
  const EpRouting routing = random_ep_routing(1, kSmall, rng);
  GroupedGemmArgs args = st.problem.args();
  args.granularity = SignalGranularity::per_expert;
  const SignalLayout layout = signal_layout(args);
  EpCombineArgs c = st.combine_args(routing, layout, 1);
  c.gemm_out = st.problem.d_out.get();
  c.signals = st.signals.get<uint32_t>();
  uint32_t* window_signals = nullptr;
  const auto messages = [&] {
    return std::vector<std::string>{
        ep_combine(st.context, c).message,
        ep_epilogue_send_prepare(st.context, c, st.out_rows.get<void*>(), &window_signals).message,
        ep_epilogue_send_reduce(st.context, c).message};
  };
  c.workspace_bytes = ep_combine_workspace_bytes(layout.counter_count()) - 1;
  for (const std::string& m : messages()) EXPECT_NE(m.find("workspace_bytes"), std::string::npos) << m;
  c.workspace_bytes = st.workspace.bytes();
  c.layout.out_type = OutputType::fp16;
  for (const std::string& m : messages()) EXPECT_NE(m.find("layout.out_type"), std::string::npos) << m;
  c.layout.out_type = OutputType::bf16;
  // Buffers that alias: the sums written over the routing they are summed by (every mode), or in
  // place over the GEMM's rows (ep_combine, which reads them there; the epilogue send reads the window).
  void* const out = c.out;
  c.out = const_cast<float*>(c.topk_weights);
  for (const std::string& m : messages()) EXPECT_NE(m.find("out overlaps topk_weights"), std::string::npos) << m;
  c.out = const_cast<void*>(c.gemm_out);
  EXPECT_NE(ep_combine(st.context, c).message.find("out overlaps gemm_out"), std::string::npos);
  c.out = out;
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // nothing was launched
}

// A config's values are checked once the ranks agree on it (after the collective gather, so that
// every rank fails alike), each named.
TEST_F(EpCombineSingleRank, RefusesBadConfigValues) {
  const std::pair<EpCombineConfig, std::string> cases[] = {
      {{0, 4, 256}, "config.max_tokens_per_rank must be >= 1"},
      {{8, 33, 256}, "config.topk must be in [1, 32]"},
      {{8, 4, 12}, "config.n must be a positive multiple of 8"},
      {{(1 << 25) + 1, 32, 256}, "config.max_tokens_per_rank = 33554433 is too large"}};  // 2^30 + 32 slots
  for (const auto& [config, want] : cases) {
    EpCombineContext* other = nullptr;
    const Status s = ep_combine_create(comm, config, &other);
    EXPECT_NE(s.message.find(want), std::string::npos) << s.message;
    EXPECT_EQ(other, nullptr);
  }
}

// Epochs count 1, 2, 3, ... per context: a fresh context refuses 0 (the default, which would
// open the window's reuse gate early) and 2, naming the epoch; nothing is launched.
TEST_F(EpCombineSingleRank, RefusesEpochsOutOfSequence) {
  std::mt19937 rng(79);
  const EpRouting routing = random_ep_routing(1, kSmall, rng);
  GroupedGemmArgs args = st.problem.args();
  args.granularity = SignalGranularity::per_expert;
  EpCombineArgs c = st.combine_args(routing, signal_layout(args), 0);
  c.gemm_out = st.problem.d_out.get();
  c.signals = st.signals.get<uint32_t>();
  uint32_t* window_signals = nullptr;
  for (uint32_t epoch : {0u, 2u}) {
    c.epoch = epoch;
    const std::string want = "epoch = " + std::to_string(epoch) + " does not follow this context's start, 0";
    for (const std::string& m : {ep_combine(st.context, c).message,
                                 ep_epilogue_send_prepare(st.context, c, st.out_rows.get<void*>(), &window_signals).message,
                                 ep_epilogue_send_reduce(st.context, c).message})
      EXPECT_NE(m.find(want), std::string::npos) << m;
  }
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // nothing was launched
}

// An epilogue-send combine is one prepare of a new epoch, then its reduce: a second prepare of the
// same epoch (a loop that forgot to count up) would zero counters a peer's reduce may still poll,
// a reduce without its prepare would read the last combine's counters, and an ep_combine may not
// join the epoch of an epilogue-send one. Each is refused naming the epoch.
TEST_F(EpCombineSingleRank, EpilogueSendRunsPrepareThenReduceOfOneEpoch) {
  std::mt19937 rng(80);
  const EpRouting routing = random_ep_routing(1, kSmall, rng);
  ASSERT_EQ(st.set_up(routing), "");
  GroupedGemmArgs args = st.problem.args();
  args.granularity = SignalGranularity::per_expert;
  EpCombineArgs c = st.combine_args(routing, signal_layout(args), 1);
  c.gemm_out = st.problem.d_out.get();
  c.gemm_out_row_stride = st.problem.out_row_stride;
  c.signals = st.signals.get<uint32_t>();
  uint32_t* window_signals = nullptr;
  void** out_rows = st.out_rows.get<void*>();
  const std::string no_prepare = "ep_epilogue_send_reduce follows ep_epilogue_send_prepare of its epoch";
  EXPECT_NE(ep_epilogue_send_reduce(st.context, c).message.find(no_prepare), std::string::npos);
  ASSERT_TRUE(ep_epilogue_send_prepare(st.context, c, out_rows, &window_signals).ok());
  const std::string repeated = "epoch = 1 does not follow this context's last, 1";
  for (const std::string& m : {ep_epilogue_send_prepare(st.context, c, out_rows, &window_signals).message,
                               ep_combine(st.context, c).message})
    EXPECT_NE(m.find(repeated), std::string::npos) << m;
  c.epoch = 2;
  EXPECT_NE(ep_epilogue_send_reduce(st.context, c).message.find(no_prepare), std::string::npos);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // the one prepare
}

// Signals that never come (no GEMM runs): the combine reports a timeout and ends, in both modes;
// after its first timeout the other waits give up at once. One context serves both modes although
// ep_combine.h says to create contexts anew after a timeout: with one rank no peer can still be
// writing rows into its window.
TEST_F(EpCombineSingleRank, EndsWithATimeoutWhenNoGemmRuns) {
  std::mt19937 rng(78);
  const EpRouting routing = random_ep_routing(1, kSmall, rng);
  GroupedGemmArgs args = st.problem.args();
  args.granularity = SignalGranularity::per_expert;
  args.signals = st.signals.get<uint32_t>();
  for (int mode = 0; mode < 2; ++mode) {  // ep_combine, then the epilogue-send reduce
    ASSERT_EQ(st.set_up(routing), "");
    EpCombineArgs c = st.combine_args(routing, signal_layout(args), uint32_t(mode + 1));
    c.gemm_out = st.problem.d_out.get();
    c.gemm_out_row_stride = st.problem.out_row_stride;
    c.signals = st.signals.get<uint32_t>();
    c.timeout_ns = 20'000'000;
    if (mode == 0) {
      EXPECT_TRUE(ep_combine(st.context, c).ok());
    } else {
      uint32_t* window_signals = nullptr;
      EXPECT_TRUE(ep_epilogue_send_prepare(st.context, c, st.out_rows.get<void*>(), &window_signals).ok());
      EXPECT_TRUE(ep_epilogue_send_reduce(st.context, c).ok());  // no GEMM before it: its counters stay 0
    }
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(st.flag.to_host<int32_t>()[0], kErrorSignalTimeout) << "mode " << mode;
    // A token with a slot whose wait failed is not written (the poison stays); one with no used slot
    // is the empty sum.
    const auto got = st.out.to_host<uint16_t>();
    int unwritten = 0;
    for (int t = 0; t < routing.num_tokens[0]; ++t) {
      bool used = false;
      for (int k = 0; k < kSmall.topk; ++k) used |= routing.topk_idx[0][t * kSmall.topk + k] >= 0;
      const uint16_t want = used ? 0xffff : 0;
      unwritten += used;
      for (int j = 0; j < kSmall.n; ++j)
        if (got[size_t(t) * kSmall.n + j] != want) {
          ADD_FAILURE() << "mode " << mode << " token " << t << " col " << j << ": " << got[size_t(t) * kSmall.n + j]
                        << ", want " << want;
          break;
        }
    }
    EXPECT_GT(unwritten, 0);
  }
}

// Entries of row_source at or past masked_m are padding whatever they hold: neither mode reads them
// (no report, the combine exact). In the epilogue-send mode a used slot routed to an expert with no
// rows is reported (no row can serve it) and adds nothing.
TEST_F(EpCombineSingleRank, PaddingPastMaskedMIsNotReadAndSlotsOfEmptyExpertsAreReported) {
  std::mt19937 rng(79);
  uint32_t epoch = 0;
  for (int mode = 0; mode < 2; ++mode) {
    EpRouting routing = random_ep_routing(1, kSmall, rng);
    EpRouting sent = routing;
    for (int e = 0; e < kSmall.experts_per_rank; ++e)
      for (int i = routing.masked_m[0][e]; i < kSmall.max_m; ++i)
        sent.row_source[0][size_t(e) * kSmall.max_m + i] = i % 2 ? routing.slots_per_rank + i : -7 - i;
    ++epoch;
    EXPECT_EQ(mode == 0 ? st.launch(sent, SignalGranularity::per_expert, epoch) : st.launch_epilogue_send(sent, epoch),
              "") << "mode " << mode;
    EXPECT_EQ(st.check(routing, golden), "") << "stale padding, mode " << mode;
  }
  EpRouting routing;
  int empty = kSmall.experts_per_rank;
  for (int draw = 0; draw < 100 && empty == kSmall.experts_per_rank; ++draw) {  // one with an empty expert
    routing = random_ep_routing(1, kSmall, rng);
    empty = 0;
    while (empty < kSmall.experts_per_rank && routing.masked_m[0][empty] != 0) ++empty;
  }
  ASSERT_LT(empty, kSmall.experts_per_rank) << "no routing with an expert without rows in 100 draws";
  int slot = 0;
  while (routing.topk_idx[0][slot] < 0) ++slot;
  EpRouting sent = routing;
  sent.topk_idx[0][slot] = empty;  // its row still goes to the slot, from the expert that has it
  routing.topk_idx[0][slot] = -1;  // the reference: that slot not summed
  EXPECT_EQ(st.launch_epilogue_send(sent, ++epoch), "");
  EXPECT_EQ(st.check(routing, golden, kErrorInvalidRouting), "") << "slot of an expert with no rows";
}

// ep_combine_create gathers the configs: ranks that differ all fail, naming the difference.
TEST(EpCombine, RejectsConfigsThatDifferAcrossRanks) {
  if (hopper_gpu_count() < 2) GTEST_SKIP() << "fewer than 2 Hopper GPUs: skipped";
  std::array<ncclComm_t, 2> comms{};
  const std::array<int, 2> devices{0, 1};
  ASSERT_EQ(ncclCommInitAll(comms.data(), 2, devices.data()), ncclSuccess);
  std::array<EpCombineContext*, 2> contexts{};
  std::array<Status, 2> statuses;
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r)
    threads.emplace_back([&, r] {
      statuses[r] = ep_combine_create(comms[r], EpCombineConfig{64, 4, r == 0 ? 1032 : 1040}, &contexts[r]);
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < 2; ++r) {
    EXPECT_FALSE(statuses[r].ok()) << "rank " << r;
    EXPECT_NE(statuses[r].message.find("config differs across ranks"), std::string::npos) << statuses[r].message;
    EXPECT_EQ(contexts[r], nullptr);
  }
  for (auto& c : comms) ncclCommDestroy(c);
}

// Three combines enqueued back to back, no host sync between them: epilogue send (epoch 1), ep_combine
// (2), epilogue send (3), with the last rank's reduce of epoch 1 held back 20 ms and epoch 2's rows
// all local, so every other rank finishes epoch 2 and prepares epoch 3 while that reduce still
// has to read their counters and expected counts in the same half: the prepare must wait for it.
int run_mode_switch_beside_a_slow_owner(int ranks) {
  std::vector<ncclComm_t> comms(ranks);
  std::vector<int> devices(ranks);
  for (int i = 0; i < ranks; ++i) devices[i] = i;
  EXPECT_EQ(ncclCommInitAll(comms.data(), ranks, devices.data()), ncclSuccess);
  constexpr int kEpochs = 3;
  std::vector<std::unique_ptr<RankState>> states;  // [epoch][rank]: buffers of its own, streams of slot 0
  std::vector<std::vector<uint16_t>> golden;
  for (int epoch = 0; epoch < kEpochs; ++epoch)
    for (int i = 0; i < ranks; ++i) {
      states.push_back(std::make_unique<RankState>());
      states.back()->device = i;
      auto output = states.back()->build(i, ranks);
      if (epoch == 0) golden.push_back(std::move(output));
    }
  auto state = [&](int epoch, int rank) -> RankState& { return *states[size_t(epoch) * ranks + rank]; };
  std::vector<EpCombineContext*> contexts(ranks, nullptr);
  const EpCombineConfig config{kSmall.max_tokens_per_rank(ranks), kSmall.topk, kSmall.n};
  Status s = ep_combine_create_all(comms.data(), ranks, config, contexts.data());
  EXPECT_TRUE(s.ok()) << s.message;
  if (!s.ok()) return 1;
  for (int e = 0; e < kEpochs; ++e)
    for (int i = 0; i < ranks; ++i) {
      state(e, i).context = contexts[i];
      if (e > 0) state(e, i).release();  // their own streams; they run on slot 0's
      state(e, i).gemm_stream = state(0, i).gemm_stream;
      state(e, i).combine_stream = state(0, i).combine_stream;
    }

  std::mt19937 rng(77 + ranks);
  const int slow = ranks - 1;
  EpRouting routings[kEpochs];
  // Epoch 1: the slow rank owns rows of rank 0's experts (so its reduce reads rank 0's counters).
  auto reads_rank0 = [&](const EpRouting& r) {
    for (const auto& [rank, e, row] : r.slot_source[slow])
      if (rank == 0) return true;
    return false;
  };
  do routings[0] = random_ep_routing(ranks, kSmall, rng);
  while (!reads_rank0(routings[0]));
  routings[1] = random_ep_routing(ranks, kSmall, rng, /*local_only=*/true);
  routings[2] = random_ep_routing(ranks, kSmall, rng);
  std::string err;
  for (int e = 0; e < kEpochs; ++e)
    for (int i = 0; i < ranks; ++i)
      if (err.empty()) err = state(e, i).set_up(routings[e]);
  // The local contract (docs/multigpu.md): one combine's launches on a rank finish before the next's
  // start, across its two streams, by events.
  std::vector<cudaEvent_t> events(2 * ranks);
  for (int i = 0; i < ranks; ++i) {
    cudaSetDevice(i);
    cudaEventCreateWithFlags(&events[2 * i], cudaEventDisableTiming);
    cudaEventCreateWithFlags(&events[2 * i + 1], cudaEventDisableTiming);
  }
  for (int i = 0; i < ranks && err.empty(); ++i)
    err = state(0, i).enqueue_epilogue_send(routings[0], 1, i == slow ? 20'000'000 : 0);
  for (int i = 0; i < ranks && err.empty(); ++i) {
    RankState& st = state(1, i);
    cudaSetDevice(i);
    cudaEventRecord(events[2 * i], st.gemm_stream);
    cudaStreamWaitEvent(st.combine_stream, events[2 * i]);
    err = st.enqueue(routings[1], SignalGranularity::per_expert, 2);
    cudaEventRecord(events[2 * i + 1], st.combine_stream);
    cudaStreamWaitEvent(st.gemm_stream, events[2 * i + 1]);
  }
  for (int i = 0; i < ranks && err.empty(); ++i) err = state(2, i).enqueue_epilogue_send(routings[2], 3);
  for (int e = 0; e < kEpochs; ++e)
    for (int i = 0; i < ranks; ++i) {
      const std::string check = state(e, i).check(routings[e], golden);
      if (err.empty() && !check.empty()) err = "epoch " + std::to_string(e + 1) + ": " + check;
    }
  EXPECT_EQ(err, "");
  for (auto& ev : events) cudaEventDestroy(ev);
  EXPECT_TRUE(ep_combine_destroy_all(contexts.data(), ranks).ok());
  for (int i = 0; i < ranks; ++i) state(0, i).release();
  for (auto& c : comms) ncclCommDestroy(c);
  return err.empty() ? 0 : 1;
}

TEST(EpCombine, ModeSwitchBesideASlowOwner) {
  const int gpus = hopper_gpu_count();
  if (gpus < 2) GTEST_SKIP() << "fewer than 2 Hopper GPUs: skipped";
  EXPECT_EQ(run_mode_switch_beside_a_slow_owner(gpus), 0);
}

std::string self_path;

TEST(EpCombine, OneProcessPerGpu) {
  const int gpus = hopper_gpu_count();
  if (gpus < 2) GTEST_SKIP() << "fewer than 2 Hopper GPUs: skipped";
  ncclUniqueId id;
  ASSERT_EQ(ncclGetUniqueId(&id), ncclSuccess);
  std::string hex;
  for (size_t i = 0; i < sizeof(id.internal); ++i) {
    char b[3];
    std::snprintf(b, sizeof(b), "%02x", uint8_t(id.internal[i]));
    hex += b;
  }
  std::vector<pid_t> pids;
  for (int rank = 0; rank < gpus; ++rank) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {  // exec at once: a forked child must not touch the parent's CUDA state
      const std::string r = std::to_string(rank), n = std::to_string(gpus);
      execl(self_path.c_str(), self_path.c_str(), "--ep-worker", r.c_str(), n.c_str(), hex.c_str(), "200",
            static_cast<char*>(nullptr));
      _exit(127);
    }
    pids.push_back(pid);
  }
  // Bounded: a worker that fails leaves the others waiting in a collective, so once one has failed
  // (or the time is up) the rest are killed and reported instead of waited for.
  std::vector<bool> done(gpus, false);
  int running = gpus;
  bool stop = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
  while (running > 0) {
    for (int rank = 0; rank < gpus; ++rank) {
      int status = 0;
      if (done[rank] || waitpid(pids[rank], &status, WNOHANG) != pids[rank]) continue;
      done[rank] = true;
      --running;
      const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      EXPECT_TRUE(ok) << "worker rank " << rank << " exited with status " << status;
      stop |= !ok;
    }
    if (running > 0 && (stop || std::chrono::steady_clock::now() > deadline)) {
      for (int rank = 0; rank < gpus; ++rank) {
        if (done[rank]) continue;
        kill(pids[rank], SIGKILL);
        waitpid(pids[rank], nullptr, 0);
        ADD_FAILURE() << "worker rank " << rank << (stop ? " killed after another worker failed" : " timed out");
      }
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// A worker: one rank, one GPU, ncclCommInitRank. Exit code 0 when every iteration matched.
int worker_main(int rank, int ranks, const char* hex, int iterations) {
  ncclUniqueId id;
  for (size_t i = 0; i < sizeof(id.internal); ++i) id.internal[i] = char(std::stoi(std::string(hex + 2 * i, 2), nullptr, 16));
  cudaSetDevice(rank);
  ncclComm_t comm;
  if (ncclCommInitRank(&comm, ranks, id, rank) != ncclSuccess) {
    std::fprintf(stderr, "worker %d: ncclCommInitRank failed\n", rank);
    return 1;
  }
  RankState st;
  st.device = rank;
  const std::vector<uint16_t> mine = st.build(rank, ranks);
  if (::testing::Test::HasFailure()) return 1;
  // Every rank's golden GEMM output, to build the CPU reference of this rank's tokens.
  DeviceBuffer gathered(mine.size() * 2 * ranks);
  ncclAllGather(st.problem.d_out.get(), gathered.get(), mine.size() * 2, ncclUint8, comm, st.gemm_stream);
  cudaStreamSynchronize(st.gemm_stream);
  const auto all = gathered.to_host<uint16_t>();
  std::vector<std::vector<uint16_t>> golden(ranks);
  for (int r = 0; r < ranks; ++r) golden[r].assign(all.begin() + r * mine.size(), all.begin() + (r + 1) * mine.size());
  if (golden[rank] != mine) {
    std::fprintf(stderr, "worker %d: all-gathered golden output differs from the local one\n", rank);
    return 1;
  }
  const EpCombineConfig config{kSmall.max_tokens_per_rank(ranks), kSmall.topk, kSmall.n};
  if (Status s = ep_combine_create(comm, config, &st.context); !s.ok()) {
    std::fprintf(stderr, "worker %d: %s\n", rank, s.message.c_str());
    return 1;
  }
  std::mt19937 rng(4242 + ranks);  // the same routings in every worker
  int failures = 0;
  for (int iter = 0; iter < iterations && failures < 3; ++iter) {
    const EpRouting routing = random_ep_routing(ranks, kSmall, rng);
    // The modes as in run_single_process; here each rank's process enqueues only its own launches.
    std::string err = iter % 3 == 2 ? st.launch_epilogue_send(routing, uint32_t(iter + 1))
                                    : st.launch(routing, granularity_of(iter), uint32_t(iter + 1));
    const std::string e = st.check(routing, golden);
    if (err.empty()) err = e;
    if (!err.empty()) {
      std::fprintf(stderr, "worker %d iteration %d: %s\n", rank, iter, err.c_str());
      ++failures;
    }
  }
  if (Status s = ep_combine_destroy(st.context); !s.ok()) {
    std::fprintf(stderr, "worker %d: %s\n", rank, s.message.c_str());
    ++failures;
  }
  st.release();
  ncclCommDestroy(comm);
  std::printf("worker %d of %d: %d iterations, %d failing\n", rank, ranks, iterations, failures);
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace signalgemm::test

int main(int argc, char** argv) {
  setenv("NCCL_NVLS_ENABLE", "0", 0);  // no NVLink multicast (not used, and not wanted set up)
  signalgemm::test::self_path = "/proc/self/exe";
  if (argc == 6 && std::string(argv[1]) == "--ep-worker")
    return signalgemm::test::worker_main(std::atoi(argv[2]), std::atoi(argv[3]), argv[4], std::atoi(argv[5]));
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
