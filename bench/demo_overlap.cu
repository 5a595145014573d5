// Demo: the down GEMM and the MoE combine, run one after the other and then overlapped through
// SignalGEMM's signals, on DeepSeek-V3 decode shapes (N = 7168, K = 2048, top-8 routing), two ways:
// beside the GEMM on SMs it leaves free (a second stream), and after it as a programmatic dependent
// launch (CombineArgs::enable_pdl: the combine takes each SM a GEMM CTA leaves). Prints each alone,
// sequential, both overlaps and the hidden fraction (sequential - overlapped) / combine, and writes
// an SVG timeline of both overlapped runs (signal seen / rows recorded per counter, phases per
// combine block) when --svg FILE is given.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <random>
#include <vector>

#include "bench_util.cuh"
#include "cli.h"
#include "timeline_svg.h"
#include "signalgemm/combine.h"
#include "signalgemm/gemm.h"

using namespace signalgemm;
using signalgemm::bench::fill_random_e4m3;
using signalgemm::bench::fill_random_scale;

#define CHECK_CUDA SG_BENCH_CHECK_CUDA
#define CHECK_STATUS SG_BENCH_CHECK_STATUS

namespace {

constexpr int kN = 7168, kK = 2048, kTopk = 8;

struct Shape {
  int experts, m;
};

struct Timings {
  float gemm_all, gemm_reduced, combine_alone, sequential, overlapped, after_pdl;
};


Timings run_shape(const Shape& shape, int combine_blocks, int iters, std::mt19937& rng, const char* svg) {
  int sms = 0;
  CHECK_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  // Routing: per-expert counts m * U(0.7, 1.3); rows dealt to token slots at random.
  std::uniform_real_distribution<double> spread(0.7, 1.3);
  std::vector<int32_t> masked_m(shape.experts);
  for (auto& m : masked_m) m = std::max(1, int(std::lround(shape.m * spread(rng))));
  const int max_m = (*std::max_element(masked_m.begin(), masked_m.end()) + 3) / 4 * 4;
  std::vector<int> slots;
  for (int e = 0; e < shape.experts; ++e)
    for (int i = 0; i < masked_m[e]; ++i) slots.push_back(e * max_m + i);
  std::shuffle(slots.begin(), slots.end(), rng);
  const int tokens = int((slots.size() + kTopk - 1) / kTopk);
  std::vector<int32_t> topk_idx(size_t(tokens) * kTopk, -1), row_source(size_t(shape.experts) * max_m, -1);
  std::vector<float> weights(size_t(tokens) * kTopk, 0.f);
  for (size_t s = 0; s < slots.size(); ++s) {
    topk_idx[s] = slots[s] / max_m;
    weights[s] = 1.f / kTopk;
    row_source[slots[s]] = int32_t(s);
  }

  // Device buffers.
  const size_t a_bytes = size_t(shape.experts) * max_m * kK, b_bytes = size_t(shape.experts) * kN * kK;
  const size_t sfa_count = size_t(shape.experts) * (kK / 128) * max_m, sfb_count = size_t(shape.experts) * (kN / 128) * (kK / 128);
  uint8_t *a, *b;
  float *sfa, *sfb;
  void *c, *out, *workspace;
  int32_t *d_masked_m, *d_topk_idx, *d_row_source;
  float* d_weights;
  uint32_t* signals;
  CHECK_CUDA(cudaMalloc(&a, a_bytes));
  CHECK_CUDA(cudaMalloc(&b, b_bytes));
  CHECK_CUDA(cudaMalloc(&sfa, sfa_count * 4));
  CHECK_CUDA(cudaMalloc(&sfb, sfb_count * 4));
  CHECK_CUDA(cudaMalloc(&c, size_t(shape.experts) * max_m * kN * 2));
  CHECK_CUDA(cudaMalloc(&out, size_t(tokens) * kN * 2));
  const size_t ws_bytes = combine_workspace_bytes(tokens, kTopk);
  CHECK_CUDA(cudaMalloc(&workspace, ws_bytes));
  CHECK_CUDA(cudaMalloc(&d_masked_m, masked_m.size() * 4));
  CHECK_CUDA(cudaMalloc(&d_topk_idx, topk_idx.size() * 4));
  CHECK_CUDA(cudaMalloc(&d_row_source, row_source.size() * 4));
  CHECK_CUDA(cudaMalloc(&d_weights, weights.size() * 4));
  fill_random_e4m3<<<1024, 256>>>(a, a_bytes, 1);
  fill_random_e4m3<<<1024, 256>>>(b, b_bytes, 2);
  fill_random_scale<<<256, 256>>>(sfa, sfa_count, 0.01f, 3);
  fill_random_scale<<<256, 256>>>(sfb, sfb_count, 0.002f, 4);
  CHECK_CUDA(cudaMemcpy(d_masked_m, masked_m.data(), masked_m.size() * 4, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(d_topk_idx, topk_idx.data(), topk_idx.size() * 4, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(d_row_source, row_source.data(), row_source.size() * 4, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(d_weights, weights.data(), weights.size() * 4, cudaMemcpyHostToDevice));
  // The fills and uploads ran on the legacy stream (an upload from pageable memory may return before
  // it lands), which does not order the non-blocking streams below.
  CHECK_CUDA(cudaDeviceSynchronize());

  GroupedGemmArgs g;
  g.num_experts = shape.experts, g.max_m = max_m, g.n = kN, g.k = kK;
  g.a = {Format::fp8_block128, a, sfa, 0, 0};
  g.b = {Format::fp8_block128, b, sfb, 0, 0};
  g.out = c;
  g.masked_m = d_masked_m;
  g.expected_m = shape.m;
  g.granularity = SignalGranularity::per_expert;
  const SignalLayout layout = signal_layout(g);
  CHECK_CUDA(cudaMalloc(&signals, layout.counter_count() * 4));
  g.signals = signals;
  // The GEMM's kernel loaded before the combine first spins beside it (docs/signals.md).
  CHECK_STATUS(load_kernels(g));
  // Overlapped, the combine runs as two launches sharing its work queues: combine_blocks CTAs on
  // the SMs the GEMM leaves free, and a full-chip launch ordered after the GEMM for what is left.
  std::vector<uint64_t> timeline(combine_timeline_entries(layout, combine_blocks + sms), 0);
  uint64_t* d_timeline;
  CHECK_CUDA(cudaMalloc(&d_timeline, timeline.size() * 8));

  cudaStream_t s1, s2;
  CHECK_CUDA(cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking));
  CHECK_CUDA(cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking));
  cudaEvent_t start, stop, fork, join;
  CHECK_CUDA(cudaEventCreate(&start));
  CHECK_CUDA(cudaEventCreate(&stop));
  CHECK_CUDA(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming));
  CHECK_CUDA(cudaEventCreateWithFlags(&join, cudaEventDisableTiming));

  CombineArgs cb;
  cb.gemm_out = c;
  cb.masked_m = d_masked_m;
  cb.layout = layout;
  cb.signals = signals;
  cb.num_tokens = tokens;
  cb.topk = kTopk;
  cb.topk_idx = d_topk_idx;
  cb.topk_weights = d_weights;
  cb.row_source = d_row_source;
  cb.workspace = workspace;
  cb.workspace_bytes = ws_bytes;
  cb.out = out;
  cb.num_blocks = sms;
  cb.timeout_ns = 5'000'000'000;
  int32_t* d_error_flag;  // a combine that times out says so here (checked once all runs are done)
  CHECK_CUDA(cudaMalloc(&d_error_flag, 4));
  CHECK_CUDA(cudaMemset(d_error_flag, 0, 4));
  cb.error_flag = d_error_flag;

  // Every variant clears the counters and the workspace first, before its timed region.
  auto clear = [&](cudaStream_t s) {
    CHECK_CUDA(cudaMemsetAsync(signals, 0, layout.counter_count() * 4, s));
    CHECK_CUDA(cudaMemsetAsync(workspace, 0, ws_bytes, s));
  };
  enum Variant { kGemmAll, kGemmReduced, kCombineAlone, kSequential, kOverlapped, kAfterPdl };
  // A spin queued before the start event outlasts the host's enqueueing of the variant (its launches
  // validate their pointers; the overlapped one also forks and joins a stream), so the events time
  // the GPU's work only, every variant alike.
  constexpr uint64_t kEnqueueCoverNs = 200'000;
  auto run_variant = [&](Variant v) {
    GroupedGemmArgs gv = g;
    CombineArgs cv = cb;
    clear(s1);
    if (v == kCombineAlone) {  // signals already complete: the GEMM ran before the timed region
      gv.stream = s1;
      CHECK_STATUS(grouped_gemm_nt_masked(gv));
      signalgemm::bench::spin_kernel<<<1, 1, 0, s1>>>(kEnqueueCoverNs);
      CHECK_CUDA(cudaEventRecord(start, s1));
      cv.stream = s1;
      CHECK_STATUS(combine(cv));
      CHECK_CUDA(cudaEventRecord(stop, s1));
      return;
    }
    signalgemm::bench::spin_kernel<<<1, 1, 0, s1>>>(kEnqueueCoverNs);
    CHECK_CUDA(cudaEventRecord(start, s1));
    gv.stream = s1;
    if (v == kGemmReduced || v == kOverlapped) gv.sm_count = sms - combine_blocks;
    if (v == kOverlapped) {
      CHECK_CUDA(cudaEventRecord(fork, s1));
      CHECK_CUDA(cudaStreamWaitEvent(s2, fork));
      cv.stream = s2;
      cv.num_blocks = combine_blocks;
      CHECK_STATUS(combine(cv));  // first, so it waits on the signals as they come
      CHECK_STATUS(grouped_gemm_nt_masked(gv));
      CombineArgs rest = cb;
      rest.stream = s1;
      rest.first_block = combine_blocks;
      CHECK_STATUS(combine(rest));
      CHECK_CUDA(cudaEventRecord(join, s2));
      CHECK_CUDA(cudaStreamWaitEvent(s1, join));
    } else {
      CHECK_STATUS(grouped_gemm_nt_masked(gv));
      if (v == kSequential || v == kAfterPdl) {
        cv.stream = s1;
        cv.enable_pdl = v == kAfterPdl;  // its blocks take the SMs the GEMM's CTAs leave
        CHECK_STATUS(combine(cv));
      }
    }
    CHECK_CUDA(cudaEventRecord(stop, s1));
  };
  // The variants take turns, run by run: the hidden fractions are small differences of medians, which
  // a clock or temperature drift between blocks of runs of one variant would move.
  constexpr Variant kVariants[] = {kGemmAll, kGemmReduced, kCombineAlone, kSequential, kOverlapped, kAfterPdl};
  std::vector<float> us[std::size(kVariants)];
  for (int i = 0; i < iters + 3; ++i)
    for (Variant v : kVariants) {
      run_variant(v);
      CHECK_CUDA(cudaEventSynchronize(stop));
      float ms = 0;
      CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
      if (i >= 3) us[v].push_back(ms * 1000.f);
    }
  Timings t{};
  t.gemm_all = signalgemm::bench::median(us[kGemmAll]);
  t.gemm_reduced = signalgemm::bench::median(us[kGemmReduced]);
  t.combine_alone = signalgemm::bench::median(us[kCombineAlone]);
  t.sequential = signalgemm::bench::median(us[kSequential]);
  t.overlapped = signalgemm::bench::median(us[kOverlapped]);
  t.after_pdl = signalgemm::bench::median(us[kAfterPdl]);
  CHECK_CUDA(cudaDeviceSynchronize());
  int32_t error_flag = 0;
  CHECK_CUDA(cudaMemcpy(&error_flag, d_error_flag, 4, cudaMemcpyDeviceToHost));
  if (error_flag != 0) {
    std::fprintf(stderr, "signalgemm-demo: a combine reported error flag %d (timeout or bad routing)\n", error_flag);
    std::exit(1);
  }

  if (svg != nullptr) {
    std::vector<signalgemm::bench::TimelinePanel> panels;
    for (Variant v : {kOverlapped, kAfterPdl}) {
      CHECK_CUDA(cudaMemset(d_timeline, 0, timeline.size() * 8));
      cb.timeline = d_timeline;
      run_variant(v);
      CHECK_CUDA(cudaDeviceSynchronize());
      CHECK_CUDA(cudaMemcpy(timeline.data(), d_timeline, timeline.size() * 8, cudaMemcpyDeviceToHost));
      char label[96];
      if (v == kOverlapped)
        std::snprintf(label, sizeof(label), "beside: GEMM on %d SMs, combine on %d", sms - combine_blocks, combine_blocks);
      else
        std::snprintf(label, sizeof(label), "after, PDL: GEMM on %d SMs, combine on those it leaves", sms);
      panels.push_back({label, timeline, layout, combine_blocks + sms});
    }
    char title[160];
    std::snprintf(title, sizeof(title), "GEMM (E=%d, m=%d, N=%d, K=%d) overlapped with the combine", shape.experts,
                  shape.m, kN, kK);
    signalgemm::bench::write_timeline_svg(svg, title, panels);
  }
  for (void* p : {(void*)a, (void*)b, (void*)sfa, (void*)sfb, c, out, workspace, (void*)d_masked_m, (void*)d_topk_idx,
                  (void*)d_row_source, (void*)d_weights, (void*)signals, (void*)d_timeline, (void*)d_error_flag})
    cudaFree(p);
  cudaStreamDestroy(s1);
  cudaStreamDestroy(s2);
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  int combine_blocks = 8, iters = 30;
  const char* svg = nullptr;
  const char* usage = "usage: %s [--combine-sms N >= 1, below the SM count] [--iters N >= 1] [--svg FILE]\n";
  for (int i = 1; i < argc; ++i) {
    const bool value = i + 1 < argc;
    const bool int_option = !std::strcmp(argv[i], "--combine-sms") || !std::strcmp(argv[i], "--iters");
    if (int_option && value) {
      if (!signalgemm::bench::parse_int(argv[i + 1], 1, !std::strcmp(argv[i], "--iters") ? iters : combine_blocks)) {
        std::fprintf(stderr, "signalgemm-demo: %s: '%s' is not an integer >= 1\n", argv[i], argv[i + 1]);
        return 2;
      }
      ++i;
    } else if (!std::strcmp(argv[i], "--svg") && value) {
      svg = argv[++i];
    } else {
      const bool help = !std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h");
      if (!help) std::fprintf(stderr, "signalgemm-demo: unknown option or missing value: %s\n", argv[i]);
      std::fprintf(help ? stdout : stderr, usage, argv[0]);
      return help ? 0 : 2;
    }
  }
  const cudaDeviceProp prop = signalgemm::bench::require_hopper("signalgemm-demo");
  if (combine_blocks >= prop.multiProcessorCount) {  // the GEMM beside it keeps at least one SM
    std::fprintf(stderr, "signalgemm-demo: --combine-sms %d leaves the GEMM no SM (%s has %d)\n", combine_blocks,
                 prop.name, prop.multiProcessorCount);
    return 2;
  }
  std::printf("overlap demo on %s: down GEMM N=%d K=%d fp8_block128, top-%d combine; beside: the GEMM leaves %d SMs "
              "free to the combine, and a full-chip combine launch after the GEMM joins for the rest; after: one "
              "full-chip combine launched as the GEMM's programmatic dependent\n",
              prop.name, kN, kK, kTopk, combine_blocks);
  std::printf("%4s %5s | %9s %9s %9s | %9s %9s %9s | %6s %6s\n", "E", "m", "gemm_us", "gemm_rd", "comb_us", "seq_us",
              "beside", "after", "hidden", "hidden");
  std::mt19937 rng(2026);
  const Shape shapes[] = {{32, 32}, {32, 128}, {8, 256}};
  for (const Shape& s : shapes) {
    const Timings t = run_shape(s, combine_blocks, iters, rng, (&s == &shapes[0]) ? svg : nullptr);
    std::printf("%4d %5d | %9.1f %9.1f %9.1f | %9.1f %9.1f %9.1f | %5.0f%% %5.0f%%\n", s.experts, s.m, t.gemm_all,
                t.gemm_reduced, t.combine_alone, t.sequential, t.overlapped, t.after_pdl,
                100 * (t.sequential - t.overlapped) / t.combine_alone,
                100 * (t.sequential - t.after_pdl) / t.combine_alone);
  }
  std::printf("gemm_rd: GEMM alone on the SMs it keeps beside the combine; seq: GEMM (all SMs) then combine (all "
              "SMs); beside, after: the two overlaps, each with its hidden fraction (seq - overlapped) / comb, the "
              "multi-GPU benchmark's measure\n");
  return 0;
}
