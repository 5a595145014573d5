// signalgemm-bench: times SignalGEMM's masked grouped GEMM on the SPEC §6 shapes (or --shapes)
// against the roofline floor (SPEC §7) and cuBLASLt measured in the same process.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench_util.cuh"
#include "cublaslt_fp8.h"
#include "signalgemm/gemm.h"

namespace signalgemm::bench {
namespace {

// Ceilings measured on the lent H100 (SPEC §7): the floor of a shape is
// max(bytes moved / kHbmBytesPerSecond, FLOPs / tensor-core peak of the path used).
constexpr double kHbmBytesPerSecond = 2.95e12;
constexpr double kFp8FlopsPerSecond = 1305e12;
constexpr double kL2RotationBytes = 120e6;  // rotate inputs over > 2x the 50 MB L2

struct Shape {
  int experts, m, n, k;
};

struct Options {
  std::vector<Shape> shapes = {{32, 32, 4096, 7168}, {32, 32, 7168, 2048}, {32, 128, 4096, 7168},
                               {32, 128, 7168, 2048}, {8, 256, 4096, 7168},  {8, 256, 7168, 2048},
                               {8, 1024, 4096, 7168}, {8, 1024, 7168, 2048}};
  Format format = Format::fp8_block128;
  SignalGranularity signals = SignalGranularity::per_expert;
  bool compare_signals = false;
  bool cublas = true;
  int sm_count = 0;
  TileConfig config;
  int iters = 50, warmup = 5;
  uint32_t seed = 1;
  std::string csv;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "signalgemm-bench: %s\n"
               "usage: signalgemm-bench [--shapes E:m:N:K,...] [--format fp8_block128] [--signals "
               "none|per_expert|per_row_block]\n"
               "       [--compare-signals] [--sm-count N] [--block-m N] [--block-n N] [--stages N]\n"
               "       [--iters N] [--warmup N] [--seed N] [--csv FILE] [--no-cublas]\n",
               why);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  auto value = [&](int& i) -> const char* {
    if (i + 1 >= argc) usage((std::string("missing value for ") + argv[i]).c_str());
    return argv[++i];
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--shapes") {
      o.shapes.clear();
      std::stringstream list(value(i));
      std::string item;
      while (std::getline(list, item, ',')) {
        Shape s{};
        if (std::sscanf(item.c_str(), "%d:%d:%d:%d", &s.experts, &s.m, &s.n, &s.k) != 4) usage("bad --shapes entry");
        o.shapes.push_back(s);
      }
    } else if (a == "--format") {
      const std::string f = value(i);
      const Format all[] = {Format::bf16, Format::fp8_block128, Format::nvfp4, Format::mxfp4, Format::mxfp8};
      bool found = false;
      for (Format x : all)
        if (f == to_string(x)) o.format = x, found = true;
      if (!found) usage("unknown --format");
    } else if (a == "--signals") {
      const std::string g = value(i);
      if (g == "none") o.signals = SignalGranularity::none;
      else if (g == "per_expert") o.signals = SignalGranularity::per_expert;
      else if (g == "per_row_block") o.signals = SignalGranularity::per_row_block;
      else usage("unknown --signals");
    } else if (a == "--compare-signals") o.compare_signals = true;
    else if (a == "--no-cublas") o.cublas = false;
    else if (a == "--sm-count") o.sm_count = std::atoi(value(i));
    else if (a == "--block-m") o.config.block_m = std::atoi(value(i));
    else if (a == "--block-n") o.config.block_n = std::atoi(value(i));
    else if (a == "--stages") o.config.stages = std::atoi(value(i));
    else if (a == "--iters") o.iters = std::max(1, std::atoi(value(i)));
    else if (a == "--warmup") o.warmup = std::max(0, std::atoi(value(i)));
    else if (a == "--seed") o.seed = uint32_t(std::atoi(value(i)));
    else if (a == "--csv") o.csv = value(i);
    else usage(("unknown option " + a).c_str());
  }
  return o;
}

// One input set of a shape: SignalGEMM's fp8_block128 layouts (docs/formats.md).
struct InputSet {
  uint8_t *a = nullptr, *b = nullptr;
  float *sfa = nullptr, *sfb = nullptr;
  void* c = nullptr;
};

struct Row {
  Shape shape;
  int max_m = 0;
  double us = 0, tflops = 0, gbps = 0, floor_us = 0, cublas_us = 0, signals_off_us = 0;
  std::string note;
};

double time_median_us(int warmup, int iters, int sets, const std::function<void(int)>& launch) {
  cudaEvent_t start, stop;
  SG_BENCH_CHECK_CUDA(cudaEventCreate(&start));
  SG_BENCH_CHECK_CUDA(cudaEventCreate(&stop));
  std::vector<float> us;
  for (int i = 0; i < warmup + iters; ++i) {
    SG_BENCH_CHECK_CUDA(cudaEventRecord(start));
    launch(i % sets);
    SG_BENCH_CHECK_CUDA(cudaEventRecord(stop));
    SG_BENCH_CHECK_CUDA(cudaEventSynchronize(stop));
    SG_BENCH_CHECK_CUDA(cudaGetLastError());
    float ms = 0;
    SG_BENCH_CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
    if (i >= warmup) us.push_back(ms * 1000.f);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return median(us);
}

Row bench_shape(const Options& o, const Shape& s, std::mt19937& rng) {
  Row row;
  row.shape = s;
  std::uniform_real_distribution<double> spread(0.7, 1.3);
  std::vector<int> masked_m(s.experts);
  for (int& m : masked_m) m = std::max(1, int(std::lround(s.m * spread(rng))));
  // Rounded up to 16 so the cuBLASLt baseline's padded rows stay inside every expert's slab.
  row.max_m = (*std::max_element(masked_m.begin(), masked_m.end()) + 15) / 16 * 16;
  const int max_m = row.max_m;
  const int kb = s.k / 128;
  double rows = 0;
  for (int m : masked_m) rows += m;

  const size_t a_bytes = size_t(s.experts) * max_m * s.k, b_bytes = size_t(s.experts) * s.n * s.k;
  const size_t sfa_count = size_t(s.experts) * kb * ((max_m + 3) / 4 * 4);
  const size_t sfb_count = size_t(s.experts) * ((s.n + 127) / 128) * kb;
  const size_t c_bytes = size_t(s.experts) * max_m * s.n * 2;
  const size_t set_bytes = a_bytes + b_bytes + 4 * (sfa_count + sfb_count) + c_bytes;
  size_t free_bytes = 0, total_bytes = 0;
  SG_BENCH_CHECK_CUDA(cudaMemGetInfo(&free_bytes, &total_bytes));
  int sets = int(std::ceil(kL2RotationBytes / double(set_bytes)));
  sets = std::max(2, std::min({sets, 16, int(0.6 * free_bytes / set_bytes)}));
  if (sets < 2) {
    row.note = "does not fit in device memory twice";
    return row;
  }
  std::vector<InputSet> inputs(sets);
  for (int i = 0; i < sets; ++i) {
    InputSet& in = inputs[i];
    SG_BENCH_CHECK_CUDA(cudaMalloc(&in.a, a_bytes));
    SG_BENCH_CHECK_CUDA(cudaMalloc(&in.b, b_bytes));
    SG_BENCH_CHECK_CUDA(cudaMalloc(&in.sfa, 4 * sfa_count));
    SG_BENCH_CHECK_CUDA(cudaMalloc(&in.sfb, 4 * sfb_count));
    SG_BENCH_CHECK_CUDA(cudaMalloc(&in.c, c_bytes));
    fill_random_e4m3<<<2048, 256>>>(in.a, a_bytes, o.seed * 7 + 4 * i);
    fill_random_e4m3<<<2048, 256>>>(in.b, b_bytes, o.seed * 7 + 4 * i + 1);
    fill_random_scale<<<256, 256>>>(in.sfa, sfa_count, 1e-2f, o.seed * 7 + 4 * i + 2);
    fill_random_scale<<<256, 256>>>(in.sfb, sfb_count, 1e-3f, o.seed * 7 + 4 * i + 3);
  }
  int32_t* d_masked_m;
  float* d_alpha;
  SG_BENCH_CHECK_CUDA(cudaMalloc(&d_masked_m, 4 * s.experts));
  SG_BENCH_CHECK_CUDA(cudaMalloc(&d_alpha, 4 * s.experts));
  const std::vector<int32_t> masked_host(masked_m.begin(), masked_m.end());
  SG_BENCH_CHECK_CUDA(cudaMemcpy(d_masked_m, masked_host.data(), 4 * s.experts, cudaMemcpyHostToDevice));
  fill_random_scale<<<1, 64>>>(d_alpha, s.experts, 0.5f, o.seed);

  GroupedGemmArgs args;
  args.num_experts = s.experts, args.max_m = max_m, args.n = s.n, args.k = s.k;
  args.a.format = o.format;
  args.b.format = o.format;
  args.masked_m = d_masked_m;
  args.alpha = d_alpha;
  args.sm_count = o.sm_count;
  args.expected_m = s.m;
  args.config = o.config;
  args.granularity = o.signals;
  const SignalLayout layout = signal_layout(args);
  uint32_t* signals = nullptr;
  SG_BENCH_CHECK_CUDA(cudaMalloc(&signals, 4 * std::max<int64_t>(1, layout.counter_count())));
  SG_BENCH_CHECK_CUDA(cudaMemset(signals, 0, 4 * std::max<int64_t>(1, layout.counter_count())));
  SG_BENCH_CHECK_CUDA(cudaDeviceSynchronize());

  // Counters only add and wrap harmlessly, so they are never reset inside the timed loop.
  auto launch_with = [&](SignalGranularity g) {
    return [&, g](int set) {
      GroupedGemmArgs a = args;
      a.a.data = inputs[set].a, a.a.scales = inputs[set].sfa;
      a.b.data = inputs[set].b, a.b.scales = inputs[set].sfb;
      a.out = inputs[set].c;
      a.granularity = g;
      a.signals = g == SignalGranularity::none ? nullptr : signals;
      if (Status st = grouped_gemm_nt_masked(a); !st.ok() && row.note.empty()) row.note = st.message;
    };
  };
  row.us = time_median_us(o.warmup, o.iters, sets, launch_with(o.signals));
  if (!row.note.empty()) row.us = 0;
  if (o.compare_signals && row.note.empty())
    row.signals_off_us = time_median_us(o.warmup, o.iters, sets, launch_with(SignalGranularity::none));

  // Bytes a perfect kernel moves: the rows actually used of A and its scales, all of B and its
  // scales, the rows written of C.
  const double bytes = rows * s.k + rows * kb * 4 + double(b_bytes) + 4.0 * sfb_count + rows * s.n * 2;
  const double flops = 2.0 * rows * s.n * s.k;
  row.floor_us = std::max(bytes / kHbmBytesPerSecond, flops / kFp8FlopsPerSecond) * 1e6;
  if (row.us > 0) {
    row.tflops = flops / row.us * 1e-6;
    row.gbps = bytes / row.us * 1e-3;
  }

  if (o.cublas) {
    CublasLtFp8Grouped baseline(s.experts, max_m, s.n, s.k);
    const std::string why = baseline.prepare(masked_m);
    if (why.empty()) {
      row.cublas_us = time_median_us(o.warmup, o.iters, sets, [&](int set) {
        baseline.run(inputs[set].a, inputs[set].b, inputs[set].c, nullptr);
      });
    } else {
      row.note += (row.note.empty() ? "" : "; ") + std::string("cublas unsupported: ") + why;
    }
  }

  for (InputSet& in : inputs) {
    cudaFree(in.a), cudaFree(in.b), cudaFree(in.sfa), cudaFree(in.sfb), cudaFree(in.c);
  }
  cudaFree(d_masked_m), cudaFree(d_alpha), cudaFree(signals);
  return row;
}

}  // namespace
}  // namespace signalgemm::bench

int main(int argc, char** argv) {
  using namespace signalgemm;
  using namespace signalgemm::bench;
  const Options o = parse(argc, argv);
  const cudaDeviceProp prop = require_hopper("signalgemm-bench");
  std::printf("signalgemm-bench on %s (%d SMs): format %s, signals %s, masked_m = m * U(0.7, 1.3), max_m = max masked_m rounded up to 16\n",
              prop.name, prop.multiProcessorCount, to_string(o.format), to_string(o.signals));
  std::printf("floor = max(bytes / %.2f TB/s, FLOPs / %.0f TFLOP/s); cuBLASLt: one FP8 block-scaled matmul per expert "
              "with its real rows rounded up to 16; median of %d runs, inputs rotated over > 2x L2\n",
              kHbmBytesPerSecond / 1e12, kFp8FlopsPerSecond / 1e12, o.iters);
  std::printf("%3s %5s %5s %5s | %5s | %8s %8s %8s | %8s %7s | %9s %8s | %8s %7s\n", "E", "m", "N", "K", "max_m", "us",
              "TFLOP/s", "GB/s", "floor_us", "x_floor", "cublas_us", "x_cublas", "sig_off", "on/off");
  FILE* csv = o.csv.empty() ? nullptr : std::fopen(o.csv.c_str(), "w");
  if (csv)
    std::fprintf(csv, "E,m,N,K,max_m,us,tflops,gbps,floor_us,x_floor,cublas_us,x_cublas,signals_off_us,note\n");
  std::mt19937 rng(o.seed);
  for (const Shape& s : o.shapes) {
    const Row r = bench_shape(o, s, rng);
    const double x_floor = r.us > 0 ? r.us / r.floor_us : 0, x_cublas = r.cublas_us > 0 ? r.us / r.cublas_us : 0;
    std::printf("%3d %5d %5d %5d | %5d | %8.1f %8.1f %8.0f | %8.1f %7.3f | %9.1f %8.3f | %8.1f %7.4f %s\n", s.experts,
                s.m, s.n, s.k, r.max_m, r.us, r.tflops, r.gbps, r.floor_us, x_floor, r.cublas_us, x_cublas,
                r.signals_off_us, r.signals_off_us > 0 ? r.us / r.signals_off_us : 0.0, r.note.c_str());
    if (csv)
      std::fprintf(csv, "%d,%d,%d,%d,%d,%.2f,%.2f,%.1f,%.2f,%.4f,%.2f,%.4f,%.2f,\"%s\"\n", s.experts, s.m, s.n, s.k,
                   r.max_m, r.us, r.tflops, r.gbps, r.floor_us, x_floor, r.cublas_us, x_cublas, r.signals_off_us,
                   r.note.c_str());
  }
  if (csv) std::fclose(csv);
  return 0;
}
