// Benchmark: the down GEMM and the multi-GPU combine (ep_combine over NCCL's device API), one
// process driving every GPU, DeepSeek-V3 decode shapes (N = 7168, K = 2048, top-8), E experts per
// GPU, each row's token owned by a random rank (DeepEP low-latency layout). Per shape, over NVLink
// and with the sends to other GPUs throttled to --throttle-gbps (a model of a link across
// machines): the GEMM alone (all SMs, and the SMs it keeps when overlapped), the combine alone,
// sequential (GEMM, then combine) and overlapped; the hidden fraction
//   (sequential - overlapped) / combine alone
// and overlapped / max(GEMM at the same sm_count, combine alone); over NVLink also the
// epilogue-send mode (ep_epilogue_send_*: the GEMM writes rows straight into the owners' windows).
// Every variant runs on all GPUs at once, after a device-side NCCL barrier; a time is the slowest
// GPU's, median of --iters. After the timed runs of each variant that combines, one more run with
// the output poisoned is checked against a float64 CPU combine of the plain GEMM's output.
#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "bench_util.cuh"
#include "cli.h"
#include "signalgemm/combine.h"
#include "signalgemm/ep_combine.h"
#include "signalgemm/gemm.h"
#include "signalgemm/reference.h"
#include "timeline_svg.h"

using namespace signalgemm;
using signalgemm::bench::fill_random_e4m3;
using signalgemm::bench::fill_random_scale;

#define CHECK_CUDA SG_BENCH_CHECK_CUDA
#define CHECK_STATUS SG_BENCH_CHECK_STATUS
#define CHECK_NCCL(expr)                                                                       \
  do {                                                                                         \
    ncclResult_t r_ = (expr);                                                                  \
    if (r_ != ncclSuccess) {                                                                   \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #expr, ncclGetErrorString(r_)); \
      std::exit(1);                                                                            \
    }                                                                                          \
  } while (0)

namespace {

constexpr int kN = 7168, kK = 2048, kTopk = 8;

struct Shape {
  int experts, m;  // experts per GPU
};

int max_m_of(int m) { return (int(m * 1.3) + 2 + 3) / 4 * 4; }

struct Rank {
  int device = 0, sms = 0;
  EpCombineContext* context = nullptr;
  uint8_t *a = nullptr, *b = nullptr;
  float *sfa = nullptr, *sfb = nullptr, *weights = nullptr;
  void *c = nullptr, *out = nullptr, *workspace = nullptr;
  int32_t *masked_m = nullptr, *topk_idx = nullptr, *row_source = nullptr;
  uint32_t* signals = nullptr;
  void** out_rows = nullptr;  // epilogue-send mode: each row's slot in its owner's window
  uint64_t* timeline = nullptr;
  int32_t* error_flag = nullptr;
  cudaStream_t s1 = nullptr, s2 = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr, fork = nullptr, join = nullptr;
  int num_tokens = 0;
  int64_t remote_rows = 0;
  // The check: per owned token and column, the float64 combine of the plain GEMM's output, and
  // the sum of the magnitudes it adds (the tolerance's scale).
  std::vector<double> want, magnitude;
  GroupedGemmArgs gemm;
  SignalLayout layout;
};

struct Times {
  float gemm_all = 0, gemm_reduced = 0, combine_alone = 0, sequential = 0, overlapped = 0, epilogue_send = 0;
  float epilogue_gemm = 0, epilogue_reduce = 0;  // the epilogue-send mode's two parts, each alone
  float epilogue_prepare = 0;                    // its prepare kernel, outside the mode's timed step
};

// kEpilogueGemm: the epilogue-send GEMM without the reduce (what the sends cost the GEMM);
// kEpilogueReduce: its reduce alone, the GEMM and its sends complete before the timed part;
// kEpiloguePrepare: its prepare kernel alone (the step runs after the stop event, untimed).
enum Variant {
  kGemmAll,
  kGemmReduced,
  kCombineAlone,
  kSequential,
  kOverlapped,
  kEpilogueSend,
  kEpilogueGemm,
  kEpilogueReduce,
  kEpiloguePrepare
};
constexpr const char* kVariantNames[] = {"gemm",          "gemm_rd",       "combine alone",   "sequential",
                                         "overlapped",    "epilogue send", "epilogue gemm",   "epilogue reduce",
                                         "epilogue prepare"};


class Bench {
 public:
  Bench(std::vector<Rank>& ranks, int combine_blocks, int iters, SignalGranularity granularity, int reduce_tokens)
      : r_(ranks), combine_blocks_(combine_blocks), iters_(iters), reduce_tokens_(reduce_tokens),
        granularity_(granularity) {}

  // Routing for one shape: per GPU and local expert m * U(0.7, 1.3) rows, each from a random
  // owner rank; each owner's slots in random order; rows of an expert ordered by owner.
  void set_up(const Shape& shape, std::mt19937& rng) {
    const int ranks = int(r_.size()), max_m = max_m_of(shape.m);
    const int slots_per_rank = max_tokens_ * kTopk;
    std::uniform_real_distribution<double> spread(0.7, 1.3);
    std::vector<std::vector<int32_t>> masked(ranks, std::vector<int32_t>(shape.experts));
    std::vector<std::vector<int>> owner_slots(ranks);  // global expert per slot
    for (int g = 0; g < ranks * shape.experts; ++g) {
      int& m = masked[g / shape.experts][g % shape.experts];
      m = std::min(max_m, std::max(1, int(std::lround(shape.m * spread(rng)))));
      for (int i = 0; i < m; ++i) owner_slots[rng() % ranks].push_back(g);
    }
    std::vector<std::vector<std::pair<int, int>>> rows_of(ranks * shape.experts);
    std::vector<std::vector<int32_t>> topk_idx(ranks);
    std::vector<std::vector<float>> weights(ranks);
    // Top-k weights from their own generator: the routing stays the one earlier runs measured.
    std::mt19937 weight_rng(uint32_t(shape.experts * 1000 + shape.m));
    std::uniform_real_distribution<float> weight(0.05f, 1.f);
    for (int o = 0; o < ranks; ++o) {
      std::shuffle(owner_slots[o].begin(), owner_slots[o].end(), rng);
      r_[o].num_tokens = int((owner_slots[o].size() + kTopk - 1) / kTopk);
      if (r_[o].num_tokens > max_tokens_) {
        std::fprintf(stderr, "routing has more tokens than the window holds\n");
        std::exit(1);
      }
      topk_idx[o].assign(size_t(r_[o].num_tokens) * kTopk, -1);
      weights[o].assign(topk_idx[o].size(), 0.f);
      for (size_t s = 0; s < owner_slots[o].size(); ++s) {
        topk_idx[o][s] = owner_slots[o][s];
        weights[o][s] = weight(weight_rng);
        rows_of[owner_slots[o][s]].push_back({o, int(s)});
      }
    }
    // Per owner slot, where its row is: (local expert * max_m + row) * ranks + producing rank.
    std::vector<std::vector<int64_t>> slot_row(ranks);
    for (int o = 0; o < ranks; ++o) slot_row[o].assign(topk_idx[o].size(), -1);
    for (int rank = 0; rank < ranks; ++rank) {
      Rank& R = r_[rank];
      CHECK_CUDA(cudaSetDevice(R.device));
      std::vector<int32_t> row_source(size_t(shape.experts) * max_m, -1);
      R.remote_rows = 0;
      for (int e = 0; e < shape.experts; ++e) {
        auto& rows = rows_of[rank * shape.experts + e];
        std::sort(rows.begin(), rows.end());
        for (size_t i = 0; i < rows.size(); ++i) {
          row_source[size_t(e) * max_m + i] = rows[i].first * slots_per_rank + rows[i].second;
          R.remote_rows += rows[i].first != rank;
          slot_row[rows[i].first][rows[i].second] = (int64_t(e) * max_m + int64_t(i)) * ranks + rank;
        }
      }
      const size_t a_bytes = size_t(shape.experts) * max_m * kK, b_bytes = size_t(shape.experts) * kN * kK;
      const size_t sfa = size_t(shape.experts) * (kK / 128) * max_m, sfb = size_t(shape.experts) * (kN / 128) * (kK / 128);
      CHECK_CUDA(cudaMalloc(&R.a, a_bytes));
      CHECK_CUDA(cudaMalloc(&R.b, b_bytes));
      CHECK_CUDA(cudaMalloc(&R.sfa, sfa * 4));
      CHECK_CUDA(cudaMalloc(&R.sfb, sfb * 4));
      CHECK_CUDA(cudaMalloc(&R.c, size_t(shape.experts) * max_m * kN * 2));
      CHECK_CUDA(cudaMalloc(&R.out, size_t(std::max(R.num_tokens, 1)) * kN * 2));
      CHECK_CUDA(cudaMalloc(&R.masked_m, shape.experts * 4));
      CHECK_CUDA(cudaMalloc(&R.topk_idx, std::max<size_t>(topk_idx[rank].size(), 1) * 4));
      CHECK_CUDA(cudaMalloc(&R.weights, std::max<size_t>(weights[rank].size(), 1) * 4));
      CHECK_CUDA(cudaMalloc(&R.row_source, row_source.size() * 4));
      fill_random_e4m3<<<1024, 256>>>(R.a, a_bytes, 1 + rank);
      fill_random_e4m3<<<1024, 256>>>(R.b, b_bytes, 11 + rank);
      fill_random_scale<<<256, 256>>>(R.sfa, sfa, 0.01f, 21 + rank);
      fill_random_scale<<<256, 256>>>(R.sfb, sfb, 0.002f, 31 + rank);
      CHECK_CUDA(cudaMemcpy(R.masked_m, masked[rank].data(), shape.experts * 4, cudaMemcpyHostToDevice));
      CHECK_CUDA(cudaMemcpy(R.topk_idx, topk_idx[rank].data(), topk_idx[rank].size() * 4, cudaMemcpyHostToDevice));
      CHECK_CUDA(cudaMemcpy(R.weights, weights[rank].data(), weights[rank].size() * 4, cudaMemcpyHostToDevice));
      CHECK_CUDA(cudaMemcpy(R.row_source, row_source.data(), row_source.size() * 4, cudaMemcpyHostToDevice));
      GroupedGemmArgs& g = R.gemm;
      g = GroupedGemmArgs{};
      g.num_experts = shape.experts, g.max_m = max_m, g.n = kN, g.k = kK;
      g.a = {Format::fp8_block128, R.a, R.sfa, 0, 0};
      g.b = {Format::fp8_block128, R.b, R.sfb, 0, 0};
      g.out = R.c;
      g.masked_m = R.masked_m;
      g.expected_m = shape.m;
      g.granularity = granularity_;
      g.config = tile_;
      R.layout = signal_layout(g);
      CHECK_CUDA(cudaMalloc(&R.workspace, ep_combine_workspace_bytes(R.layout.counter_count())));
      CHECK_CUDA(cudaMalloc(&R.signals, R.layout.counter_count() * 4));
      g.signals = R.signals;
      // Loaded now: a step's barrier may spin on this GPU while it waits for the others (docs/signals.md).
      CHECK_STATUS(load_kernels(g));
      CHECK_CUDA(cudaMalloc(&R.timeline, combine_timeline_entries(R.layout, combine_blocks_ + R.sms) * 8));
      CHECK_CUDA(cudaMalloc(&R.out_rows, size_t(shape.experts) * max_m * sizeof(void*)));
      CHECK_CUDA(cudaDeviceSynchronize());
    }
    set_up_check(shape, slot_row, weights);
  }

  // The check's reference: every rank's plain GEMM output, copied back, combined per owner in float64.
  void set_up_check(const Shape& shape, const std::vector<std::vector<int64_t>>& slot_row,
                    const std::vector<std::vector<float>>& weights) {
    const int ranks = int(r_.size());
    std::vector<std::vector<uint16_t>> c(ranks);
    for (int rank = 0; rank < ranks; ++rank) {
      Rank& R = r_[rank];
      CHECK_CUDA(cudaSetDevice(R.device));
      GroupedGemmArgs g = R.gemm;
      g.stream = R.s1;
      CHECK_STATUS(grouped_gemm_nt_masked(g));
      CHECK_CUDA(cudaStreamSynchronize(R.s1));
      c[rank].resize(size_t(shape.experts) * max_m_of(shape.m) * kN);
      CHECK_CUDA(cudaMemcpy(c[rank].data(), R.c, c[rank].size() * 2, cudaMemcpyDeviceToHost));
    }
    for (int o = 0; o < ranks; ++o) {
      Rank& R = r_[o];
      R.want.assign(size_t(R.num_tokens) * kN, 0.0);
      R.magnitude.assign(R.want.size(), 0.0);
      for (size_t s = 0; s < slot_row[o].size(); ++s) {
        if (slot_row[o][s] < 0) continue;
        const uint16_t* row = c[slot_row[o][s] % ranks].data() + slot_row[o][s] / ranks * kN;
        const size_t t = s / kTopk;
        for (int j = 0; j < kN; ++j) {
          const double term = double(weights[o][s]) * ref::bf16_to_float(row[j]);
          R.want[t * kN + j] += term;
          R.magnitude[t * kN + j] += std::abs(term);
        }
      }
    }
  }

  // One more run of a variant that combines, with every output poisoned first (bf16 NaN), against
  // the reference: the bf16 rounding of the result and fp32 sums stay far inside the tolerance;
  // a missing, doubled or misweighted row does not.
  void verify(Variant v, double throttle) {
    for (Rank& R : r_) {
      CHECK_CUDA(cudaSetDevice(R.device));
      CHECK_CUDA(cudaMemsetAsync(R.out, 0xff, size_t(std::max(R.num_tokens, 1)) * kN * 2, R.s1));
    }
    enqueue(v, throttle);
    for (size_t i = 0; i < r_.size(); ++i) {
      Rank& R = r_[i];
      CHECK_CUDA(cudaSetDevice(R.device));
      CHECK_CUDA(cudaStreamSynchronize(R.s1));
      int32_t flag = 0;
      CHECK_CUDA(cudaMemcpy(&flag, R.error_flag, 4, cudaMemcpyDeviceToHost));
      std::vector<uint16_t> got(R.want.size());
      CHECK_CUDA(cudaMemcpy(got.data(), R.out, got.size() * 2, cudaMemcpyDeviceToHost));
      for (size_t j = 0; j < got.size() && flag == 0; ++j) {
        const double value = ref::bf16_to_float(got[j]);
        if (std::abs(value - R.want[j]) <= 1e-2 * std::abs(R.want[j]) + 1e-3 * R.magnitude[j]) continue;
        std::fprintf(stderr, "check FAILED: GPU %zu, %s, token %zu column %zu: got %g, want %g\n", i,
                     kVariantNames[v], j / kN, j % kN, value, R.want[j]);
        std::exit(1);
      }
      if (flag != 0) {
        std::fprintf(stderr, "check FAILED: GPU %zu, %s: a combine wait timed out\n", i, kVariantNames[v]);
        std::exit(1);
      }
    }
  }

  void tear_down() {
    for (Rank& R : r_) {
      CHECK_CUDA(cudaSetDevice(R.device));
      CHECK_CUDA(cudaDeviceSynchronize());
      for (void* p : {(void*)R.a, (void*)R.b, (void*)R.sfa, (void*)R.sfb, R.c, R.out, R.workspace, (void*)R.masked_m,
                      (void*)R.topk_idx, (void*)R.weights, (void*)R.row_source, (void*)R.signals, (void*)R.timeline,
                      (void*)R.out_rows})
        cudaFree(p);
    }
  }

  EpCombineArgs combine_args(Rank& R, double throttle, bool with_timeline) {
    EpCombineArgs c;
    c.gemm_out = R.c;
    c.masked_m = R.masked_m;
    c.layout = R.layout;
    c.signals = R.signals;
    c.row_source = R.row_source;
    c.num_tokens = R.num_tokens;
    c.topk_idx = R.topk_idx;
    c.topk_weights = R.weights;
    c.out = R.out;
    c.epoch = epoch_;
    c.workspace = R.workspace;
    c.workspace_bytes = ep_combine_workspace_bytes(R.layout.counter_count());
    c.num_blocks = R.sms;
    c.reduce_tokens = reduce_tokens_;
    c.remote_bytes_per_second = throttle;
    c.timeout_ns = 2'000'000'000ull;
    c.error_flag = R.error_flag;
    c.timeline = with_timeline ? R.timeline : nullptr;
    return c;
  }

  // Enqueues one variant on every GPU: untimed set-up, a spin that covers the host's enqueueing,
  // the device-side barrier that starts all GPUs together, then the timed work.
  void enqueue(Variant v, double throttle, bool with_timeline = false) {
    const bool epilogue = v == kEpilogueSend || v == kEpilogueGemm || v == kEpilogueReduce || v == kEpiloguePrepare;
    const bool combines = v == kCombineAlone || v == kSequential || v == kOverlapped || epilogue;
    if (combines) ++epoch_;
    for (Rank& R : r_) {
      CHECK_CUDA(cudaSetDevice(R.device));
      signalgemm::bench::spin_kernel<<<1, 1, 0, R.s1>>>(200'000);
      CHECK_CUDA(cudaMemsetAsync(R.signals, 0, R.layout.counter_count() * 4, R.s1));
      CHECK_CUDA(cudaMemsetAsync(R.workspace, 0, ep_combine_workspace_bytes(R.layout.counter_count()), R.s1));
      GroupedGemmArgs g = R.gemm;
      g.stream = R.s1;
      if (v == kCombineAlone) CHECK_STATUS(grouped_gemm_nt_masked(g));  // signals complete before timing
      uint32_t* window_counters = nullptr;
      GroupedGemmArgs sending = g;  // the epilogue-send mode's GEMM
      if (epilogue) {  // untimed, before the barrier (which the mode needs anyway), except when timed alone
        EpCombineArgs c = combine_args(R, 0, false);
        c.stream = R.s1;
        if (v != kEpiloguePrepare) CHECK_STATUS(ep_epilogue_send_prepare(R.context, c, R.out_rows, &window_counters));
        sending.out_rows = R.out_rows;
        sending.signals = window_counters;
        sending.granularity = SignalGranularity::per_expert;
        sending.scope = SignalScope::sys;
      }
      if (v == kEpilogueReduce) {  // every rank's rows sent before the barrier below
        CHECK_STATUS(ep_combine_barrier(R.context, R.s1));
        CHECK_STATUS(grouped_gemm_nt_masked(sending));
      }
      CHECK_STATUS(ep_combine_barrier(R.context, R.s1));
      CHECK_CUDA(cudaEventRecord(R.start, R.s1));
      EpCombineArgs c = combine_args(R, throttle, with_timeline);
      c.stream = R.s1;
      switch (v) {
        case kGemmAll: CHECK_STATUS(grouped_gemm_nt_masked(g)); break;
        case kGemmReduced:
          g.sm_count = R.sms - combine_blocks_;
          CHECK_STATUS(grouped_gemm_nt_masked(g));
          break;
        case kCombineAlone: CHECK_STATUS(ep_combine(R.context, c)); break;
        case kEpilogueSend:
          CHECK_STATUS(grouped_gemm_nt_masked(sending));
          CHECK_STATUS(ep_epilogue_send_reduce(R.context, c));
          break;
        case kEpilogueGemm: CHECK_STATUS(grouped_gemm_nt_masked(sending)); break;
        case kEpilogueReduce: CHECK_STATUS(ep_epilogue_send_reduce(R.context, c)); break;
        case kEpiloguePrepare:  // then the step itself, after the stop event: the epochs stay in step
          CHECK_STATUS(ep_epilogue_send_prepare(R.context, c, R.out_rows, &window_counters));
          CHECK_CUDA(cudaEventRecord(R.stop, R.s1));
          sending.signals = window_counters;
          CHECK_STATUS(ep_combine_barrier(R.context, R.s1));
          CHECK_STATUS(grouped_gemm_nt_masked(sending));
          CHECK_STATUS(ep_epilogue_send_reduce(R.context, c));
          continue;
        case kSequential:
          CHECK_STATUS(grouped_gemm_nt_masked(g));
          CHECK_STATUS(ep_combine(R.context, c));
          break;
        case kOverlapped: {
          CHECK_CUDA(cudaEventRecord(R.fork, R.s1));
          CHECK_CUDA(cudaStreamWaitEvent(R.s2, R.fork));
          EpCombineArgs beside = c;
          beside.stream = R.s2;
          beside.num_blocks = combine_blocks_;
          CHECK_STATUS(ep_combine(R.context, beside));  // first, so it waits on the signals as they come
          g.sm_count = R.sms - combine_blocks_;
          CHECK_STATUS(grouped_gemm_nt_masked(g));
          c.first_block = combine_blocks_;
          CHECK_STATUS(ep_combine(R.context, c));
          CHECK_CUDA(cudaEventRecord(R.join, R.s2));
          CHECK_CUDA(cudaStreamWaitEvent(R.s1, R.join));
          break;
        }
      }
      CHECK_CUDA(cudaEventRecord(R.stop, R.s1));
    }
  }

  // One run of variant v: the slowest GPU's time between its events, in us.
  float time_once(Variant v, double throttle, int iteration) {
    enqueue(v, throttle);
    float slowest = 0;
    for (Rank& R : r_) {
      CHECK_CUDA(cudaSetDevice(R.device));
      CHECK_CUDA(cudaEventSynchronize(R.stop));
      float ms = 0;
      CHECK_CUDA(cudaEventElapsedTime(&ms, R.start, R.stop));
      int32_t flag = 0;
      CHECK_CUDA(cudaMemcpy(&flag, R.error_flag, 4, cudaMemcpyDeviceToHost));
      if (flag != 0) {
        std::fprintf(stderr, "GPU %d: a combine wait timed out (variant %d, iteration %d)\n", R.device, int(v),
                     iteration);
        std::exit(1);
      }
      slowest = std::max(slowest, ms * 1000.f);
    }
    return slowest;
  }

  // Times every variant, the variants taking turns run by run (the hidden fraction is a small
  // difference of two medians, which a clock or temperature drift between blocks of one variant's
  // runs would move); then checks the output of each that combines.
  Times run(double throttle) {
    std::vector<Variant> variants = {kGemmAll, kGemmReduced, kCombineAlone, kSequential, kOverlapped};
    const bool epilogue = throttle == 0 && granularity_ == SignalGranularity::per_expert;
    if (epilogue) variants.insert(variants.end(), {kEpilogueSend, kEpilogueGemm, kEpilogueReduce, kEpiloguePrepare});
    // The throttle models the sends of the combine beside or after the GEMM (not the epilogue's).
    const auto link = [&](Variant v) {
      return v == kCombineAlone || v == kSequential || v == kOverlapped ? throttle : 0.0;
    };
    std::vector<float> us[std::size(kVariantNames)];
    for (int i = 0; i < iters_ + 3; ++i)
      for (Variant v : variants) {
        const float t = time_once(v, link(v), i);
        if (i >= 3) us[v].push_back(t);
      }
    for (Variant v : variants)
      if (v != kGemmAll && v != kGemmReduced && v != kEpilogueGemm) verify(v, link(v));
    const auto median = [&](Variant v) { return signalgemm::bench::median(us[v]); };
    Times t;
    t.gemm_all = median(kGemmAll);
    t.gemm_reduced = median(kGemmReduced);
    t.combine_alone = median(kCombineAlone);
    t.sequential = median(kSequential);
    t.overlapped = median(kOverlapped);
    if (epilogue) {
      t.epilogue_send = median(kEpilogueSend);
      t.epilogue_gemm = median(kEpilogueGemm);
      t.epilogue_reduce = median(kEpilogueReduce);
      t.epilogue_prepare = median(kEpiloguePrepare);
    }
    return t;
  }

  void write_svg(const char* path, double throttle, const std::string& title, const std::string& footer) {
    for (Rank& R : r_) {
      CHECK_CUDA(cudaSetDevice(R.device));
      CHECK_CUDA(cudaMemset(R.timeline, 0, combine_timeline_entries(R.layout, combine_blocks_ + R.sms) * 8));
      CHECK_CUDA(cudaDeviceSynchronize());
    }
    enqueue(kOverlapped, throttle, true);
    std::vector<signalgemm::bench::TimelinePanel> panels;
    for (size_t i = 0; i < r_.size(); ++i) {
      Rank& R = r_[i];
      CHECK_CUDA(cudaSetDevice(R.device));
      CHECK_CUDA(cudaDeviceSynchronize());
      signalgemm::bench::TimelinePanel p;
      p.label = "GPU " + std::to_string(i) + " (" + std::to_string(R.remote_rows) + " rows to other GPUs)";
      p.layout = R.layout;
      p.blocks = combine_blocks_ + R.sms;
      p.stamps.resize(combine_timeline_entries(R.layout, p.blocks));
      CHECK_CUDA(cudaMemcpy(p.stamps.data(), R.timeline, p.stamps.size() * 8, cudaMemcpyDeviceToHost));
      panels.push_back(std::move(p));
    }
    signalgemm::bench::write_timeline_svg(path, title, panels, footer);
  }

  // --block-m / --block-n: the GEMM's tile (zero fields: the heuristic).
  void set_tile(const TileConfig& tile) { tile_ = tile; }
  void set_max_tokens(int t) { max_tokens_ = t; }

 private:
  std::vector<Rank>& r_;
  int combine_blocks_, iters_, reduce_tokens_;
  TileConfig tile_{};
  SignalGranularity granularity_;
  int max_tokens_ = 0;
  uint32_t epoch_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  int combine_blocks = 16, iters = 20, gpus = 0, reduce_tokens = 0;
  TileConfig tile{};
  double throttle_gbps = 50;
  const char* svg = nullptr;
  const char* svg_throttled = nullptr;
  SignalGranularity granularity = SignalGranularity::per_expert;
  std::vector<Shape> shapes = {{32, 32}, {32, 128}, {8, 256}};  // the issue's shapes
  const char* usage =
      "usage: %s [--gpus N] [--combine-sms N] [--iters N] [--throttle-gbps G] [--svg FILE] "
      "[--svg-throttled FILE] [--per-row-block] [--reduce-tokens 0-4] [--block-m N --block-n N] [--shapes E:m,...]\n";
  // The value after option argv[i], an integer in [min_value, max_value]; else a usage error (exit 2).
  auto int_value = [&](int& i, long min_value, int& out, long max_value = INT_MAX) {
    long v = 0;
    if (!signalgemm::bench::parse_int(argv[i + 1], min_value, max_value, v)) {
      std::fprintf(stderr, "%s: '%s' is not an integer in [%ld, %ld]\n", argv[i], argv[i + 1], min_value, max_value);
      std::exit(2);
    }
    out = int(v);
    ++i;
  };
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      std::printf(usage, argv[0]);
      return 0;
    }
    if (!std::strcmp(argv[i], "--combine-sms") && i + 1 < argc) int_value(i, 1, combine_blocks);
    else if (!std::strcmp(argv[i], "--iters") && i + 1 < argc) int_value(i, 1, iters);
    else if (!std::strcmp(argv[i], "--gpus") && i + 1 < argc) int_value(i, 0, gpus);
    else if (!std::strcmp(argv[i], "--reduce-tokens") && i + 1 < argc) int_value(i, 0, reduce_tokens, 4);
    else if (!std::strcmp(argv[i], "--block-m") && i + 1 < argc) int_value(i, 0, tile.block_m);
    else if (!std::strcmp(argv[i], "--block-n") && i + 1 < argc) int_value(i, 0, tile.block_n);
    else if (!std::strcmp(argv[i], "--throttle-gbps") && i + 1 < argc) {
      char* end = nullptr;
      throttle_gbps = std::strtod(argv[++i], &end);
      if (*end != '\0' || !(throttle_gbps >= 0)) {
        std::fprintf(stderr, "--throttle-gbps: '%s' is not a number >= 0\n", argv[i]);
        return 2;
      }
    }
    else if (!std::strcmp(argv[i], "--svg") && i + 1 < argc) svg = argv[++i];
    else if (!std::strcmp(argv[i], "--per-row-block")) granularity = SignalGranularity::per_row_block;
    else if (!std::strcmp(argv[i], "--svg-throttled") && i + 1 < argc) svg_throttled = argv[++i];
    else if (!std::strcmp(argv[i], "--shapes") && i + 1 < argc) {
      shapes.clear();
      for (char* item = std::strtok(argv[++i], ","); item != nullptr; item = std::strtok(nullptr, ",")) {
        Shape s{};
        char* colon = std::strchr(item, ':');
        if (colon != nullptr) *colon = '\0';
        if (colon == nullptr || !signalgemm::bench::parse_int(item, 1, s.experts) ||
            !signalgemm::bench::parse_int(colon + 1, 1, s.m)) {
          if (colon != nullptr) *colon = ':';
          std::fprintf(stderr, "--shapes: '%s' is not E:m (integers >= 1)\n", item);
          return 2;
        }
        shapes.push_back(s);
      }
      if (shapes.empty()) {
        std::fprintf(stderr, "--shapes: no E:m given\n");
        return 2;
      }
    } else {
      std::fprintf(stderr, usage, argv[0]);
      return 2;
    }
  }
  setenv("NCCL_NVLS_ENABLE", "0", 0);  // NVLink multicast stays off
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const cudaDeviceProp prop = signalgemm::bench::require_hopper("signalgemm-ep-bench");
  int count = 0;
  CHECK_CUDA(cudaGetDeviceCount(&count));
  if (gpus == 0) gpus = count;
  if (gpus > count) {
    std::fprintf(stderr, "signalgemm-ep-bench: --gpus %d but %d present\n", gpus, count);
    return 2;
  }
  if (combine_blocks >= prop.multiProcessorCount) {  // the GEMM beside the combine keeps at least one SM
    std::fprintf(stderr, "signalgemm-ep-bench: --combine-sms %d leaves the GEMM no SM (%s has %d)\n", combine_blocks,
                 prop.name, prop.multiProcessorCount);
    return 2;
  }
  int version = 0;
  CHECK_NCCL(ncclGetVersion(&version));
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", std::gmtime(&now));

  std::vector<ncclComm_t> comms(gpus);
  std::vector<int> devices(gpus);
  for (int i = 0; i < gpus; ++i) devices[i] = i;
  CHECK_NCCL(ncclCommInitAll(comms.data(), gpus, devices.data()));
  int max_tokens = 0;
  for (const Shape& s : shapes) max_tokens = std::max(max_tokens, gpus * s.experts * max_m_of(s.m) / kTopk + 1);
  std::vector<EpCombineContext*> contexts(gpus);
  CHECK_STATUS(ep_combine_create_all(comms.data(), gpus, EpCombineConfig{max_tokens, kTopk, kN}, contexts.data()));
  std::vector<Rank> ranks(gpus);
  for (int i = 0; i < gpus; ++i) {
    Rank& R = ranks[i];
    R.device = i;
    R.context = contexts[i];
    CHECK_CUDA(cudaSetDevice(i));
    CHECK_CUDA(cudaDeviceGetAttribute(&R.sms, cudaDevAttrMultiProcessorCount, i));
    CHECK_CUDA(cudaStreamCreateWithFlags(&R.s1, cudaStreamNonBlocking));
    CHECK_CUDA(cudaStreamCreateWithFlags(&R.s2, cudaStreamNonBlocking));
    CHECK_CUDA(cudaEventCreate(&R.start));
    CHECK_CUDA(cudaEventCreate(&R.stop));
    CHECK_CUDA(cudaEventCreateWithFlags(&R.fork, cudaEventDisableTiming));
    CHECK_CUDA(cudaEventCreateWithFlags(&R.join, cudaEventDisableTiming));
    CHECK_CUDA(cudaMalloc(&R.error_flag, 4));
    CHECK_CUDA(cudaMemset(R.error_flag, 0, 4));
  }

  std::printf("multi-GPU combine benchmark, %s, %d x %s, NCCL %d (device API, LSA windows; NVLS off)\n", date, gpus,
              prop.name, version);
  std::printf("down GEMM N=%d K=%d fp8_block128, top-%d combine, E experts per GPU, each row's token owned by a random "
              "GPU; %s signals; overlapped: %d SMs beside the GEMM + a full-chip combine launch after it\n",
              kN, kK, kTopk, to_string(granularity), combine_blocks);
  if (tile.block_m != 0 || tile.block_n != 0) std::printf("GEMM tile override: %d x %d\n", tile.block_m, tile.block_n);
  std::printf("link 'nvlink': NVLink as is; 'X GB/s': sends to other GPUs throttled to X GB/s per GPU (a model of a "
              "link across machines)\n");
  std::printf("%4s %5s %10s %9s | %8s %8s %8s | %8s %8s | %7s %9s | %8s %7s %9s %8s %8s %8s\n", "E", "m", "link",
              "remote_MB", "gemm_us", "gemm_rd", "comb_us", "seq_us", "ovl_us", "hidden", "ovl/max", "epi_us", "hidden",
              "epi/max", "epi_gemm", "epi_rd", "epi_prep");
  Bench bench(ranks, combine_blocks, iters, granularity, reduce_tokens);
  bench.set_max_tokens(max_tokens);
  bench.set_tile(tile);
  std::mt19937 rng(2026);
  for (const Shape& s : shapes) {
    bench.set_up(s, rng);
    double remote_mb = 0;
    for (const Rank& R : ranks) remote_mb = std::max(remote_mb, R.remote_rows * kN * 2 / 1e6);
    for (int pass = 0; pass < 2; ++pass) {
      const double throttle = pass == 0 ? 0.0 : throttle_gbps * 1e9;
      if (pass == 1 && (throttle <= 0 || gpus < 2)) continue;  // --throttle-gbps 0: NVLink only
      std::fprintf(stderr, "E=%d m=%d throttle %.0f GB/s...\n", s.experts, s.m, throttle / 1e9);
      const Times t = bench.run(throttle);
      const double hidden = (t.sequential - t.overlapped) / t.combine_alone;
      const double ratio = t.overlapped / std::max(t.gemm_reduced, t.combine_alone);
      char link[32];
      if (throttle > 0) std::snprintf(link, sizeof(link), "%.0f GB/s", throttle_gbps);
      else std::snprintf(link, sizeof(link), "nvlink");
      char epilogue[128] = " |        -       -         -        -        -        -";  // no throttle model there
      if (t.epilogue_send > 0)
        std::snprintf(epilogue, sizeof(epilogue), " | %8.1f %6.0f%% %9.3f %8.1f %8.1f %8.1f", t.epilogue_send,
                      100 * (t.sequential - t.epilogue_send) / t.combine_alone,
                      t.epilogue_send / std::max(t.gemm_all, t.combine_alone), t.epilogue_gemm, t.epilogue_reduce,
                      t.epilogue_prepare);
      std::printf("%4d %5d %10s %9.1f | %8.1f %8.1f %8.1f | %8.1f %8.1f | %6.0f%% %9.3f%s\n", s.experts, s.m, link,
                  remote_mb, t.gemm_all, t.gemm_reduced, t.combine_alone, t.sequential, t.overlapped, 100 * hidden,
                  ratio, epilogue);
      std::fflush(stdout);
    }
    if (&s == &shapes[0]) {
      char title[256], footer[128];
      std::snprintf(footer, sizeof(footer), "%s, %d x %s", date, gpus, prop.name);
      if (svg != nullptr) {
        std::snprintf(title, sizeof(title), "GEMM (E=%d/GPU, m=%d, N=%d, K=%d) on %d SMs overlapped with the combine over NVLink",
                      s.experts, s.m, kN, kK, ranks[0].sms - combine_blocks);
        bench.write_svg(svg, 0, title, footer);
      }
      if (svg_throttled != nullptr && gpus > 1) {
        std::snprintf(title, sizeof(title), "GEMM (E=%d/GPU, m=%d) overlapped with the combine, sends throttled to %.0f GB/s",
                      s.experts, s.m, throttle_gbps);
        bench.write_svg(svg_throttled, throttle_gbps * 1e9, title, footer);
      }
    }
    bench.tear_down();
  }
  std::printf("gemm_rd: GEMM alone on the SMs it keeps when overlapped; seq: GEMM (all SMs) then combine (all SMs); "
              "hidden = (seq - ovl) / comb; ovl/max = ovl / max(gemm_rd, comb) (target <= 1.1, hidden >= 80%%); "
              "remote_MB: bytes the busiest GPU sends to others; epi: the epilogue-send mode (the GEMM on all SMs "
              "writes rows into the owners' windows, then the reduce), hidden = (seq - epi) / comb, epi/max = epi / "
              "max(GEMM, comb); epi_gemm: that GEMM with its sends, no reduce; epi_rd: its reduce alone (rows already in); "
              "epi_prep: its prepare kernel alone (routing only: it runs before the step's barrier, outside epi_us); "
              "every variant that combines was checked against a float64 CPU combine of the GEMM's output\n");
  CHECK_STATUS(ep_combine_destroy_all(contexts.data(), gpus));
  for (auto& c : comms) ncclCommDestroy(c);
  return 0;
}
