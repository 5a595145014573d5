// signalgemm-bench: times SignalGEMM's masked grouped GEMM on the SPEC §6 shapes (or --shapes)
// against the roofline floor (SPEC §7) and cuBLASLt, measured in the same process on the same
// rotated inputs. One aligned line per shape; --csv writes the same rows with a few more fields.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench_options.h"
#include "bench_util.cuh"
#include "cublaslt_baseline.h"
#include "signalgemm/gemm.h"

namespace signalgemm::bench {
namespace {

// ---- Ceilings measured on the lent H100 (SPEC §7), used on every device (an H200's HBM is faster:
//      its memory-bound shapes can read below 1x). The floor of a shape is
//      max(bytes moved / kHbmBytesPerSecond, FLOPs / peak of the operands' tensor-core rate).
constexpr double kHbmBytesPerSecond = 2.95e12;  // device-to-device copy, bytes read + written
constexpr double kFp8FlopsPerSecond = 1305e12;  // dense FP8 GEMM
constexpr double kBf16FlopsPerSecond = 697e12;  // dense BF16 GEMM

// ---- Input rotation: consecutive launches read different input sets, and the launches between two
//      uses of one set move more than kRotationL2s times the device's L2, so no launch finds its
//      operands left in L2 by an earlier one.
constexpr double kRotationL2s = 2.4;
constexpr int kMaxInputSets = 256;
constexpr double kUsableMemoryFraction = 0.6;  // of free device memory, for all input sets together

// max_m is the largest masked_m rounded up to this, so cuBLASLt's rows (rounded up to 16) stay
// inside every expert's slab.
constexpr int kMaxMMultiple = 16;

size_t ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }
size_t round_up(size_t a, size_t b) { return ceil_div(a, b) * b; }

// ---------------------------------------------------------------------------------------------
// Device memory

struct CudaFree {
  void operator()(void* p) const { cudaFree(p); }
};
using DeviceBuffer = std::unique_ptr<void, CudaFree>;

// Null for 0 bytes: an unscaled operand (bf16) must be given null scales.
DeviceBuffer device_alloc(size_t bytes) {
  void* p = nullptr;
  if (bytes > 0) SG_BENCH_CHECK_CUDA(cudaMalloc(&p, bytes));
  return DeviceBuffer(p);
}

// ---------------------------------------------------------------------------------------------
// Problem: one shape, its routing and its sizes

// Bytes of one operand [experts][rows][k] and its scales, in the layout of docs/formats.md.
struct OperandSize {
  size_t data = 0, scales = 0;
};

OperandSize operand_size(Format f, bool is_weights, int experts, int rows, int k) {
  OperandSize s;
  s.data = size_t(experts) * rows * ceil_div(size_t(k) * element_bits(f), 8);
  const int block = scale_block_k(f);
  if (block == 0) return s;
  const size_t k_blocks = ceil_div(k, block);
  if (f == Format::fp8_block128)  // fp32: A per 1x128 (token count padded to 4), B per 128x128
    s.scales = sizeof(float) * experts * k_blocks * (is_weights ? ceil_div(rows, 128) : round_up(rows, 4));
  else  // one byte per row and K block
    s.scales = size_t(experts) * rows * k_blocks * scale_bytes(f);
  return s;
}

// Bytes of `rows` activation rows and their scales (every format scales activations per row).
double activation_bytes(Format f, double rows, int k) {
  const int block = scale_block_k(f);
  const double scale_row = block == 0 ? 0.0 : double(ceil_div(k, block)) * scale_bytes(f);
  return rows * (double(k) * element_bits(f) / 8 + scale_row);
}

// Tensor-core peak the operands' precision allows on Hopper: FP8 when both are e4m3 (mxfp8 x mxfp8
// too, though it runs bf16 MMAs: the floor is what the formats allow, not what the kernel does), else
// BF16 (FP4 dequantizes exactly to bf16, SPEC §2).
double peak_flops_per_second(Format a, Format b) {
  auto is_e4m3 = [](Format f) { return f == Format::fp8_block128 || f == Format::mxfp8; };
  return is_e4m3(a) && is_e4m3(b) ? kFp8FlopsPerSecond : kBf16FlopsPerSecond;
}

struct Problem {
  Shape shape{};
  Format a_format = Format::fp8_block128, b_format = Format::fp8_block128;
  OutputType out_type = OutputType::bf16;
  std::vector<int> masked_m;
  int max_m = 0;
  double rows = 0;  // sum of masked_m: the rows actually computed
  OperandSize a, b;
  size_t c_bytes = 0;

  size_t set_bytes() const { return a.data + a.scales + b.data + b.scales + c_bytes; }
  double flops() const { return 2.0 * rows * shape.n * shape.k; }
  // What a perfect kernel moves: the rows used of A and their scales, all of B and its scales,
  // the rows written of C.
  double bytes_moved() const {
    return activation_bytes(a_format, rows, shape.k) + double(b.data + b.scales) +
           rows * shape.n * output_bytes(out_type);
  }
  double floor_us() const {
    return std::max(bytes_moved() / kHbmBytesPerSecond, flops() / peak_flops_per_second(a_format, b_format)) * 1e6;
  }
};

// masked_m[e] = round(m * U(1 - spread, 1 + spread)), at least 1. Seeded by (seed, E, m) only, so a
// layer's up and down GEMMs see the same routing, and a shape gets the same routing whatever else is listed.
std::vector<int> draw_masked_m(uint32_t seed, double spread_fraction, const Shape& s) {
  std::seed_seq seq{seed, uint32_t(s.experts), uint32_t(s.m)};
  std::mt19937 rng(seq);
  std::uniform_real_distribution<double> spread(1 - spread_fraction, 1 + spread_fraction);
  std::vector<int> masked_m(s.experts);
  for (int& m : masked_m) m = std::max(1, int(std::lround(s.m * spread(rng))));
  return masked_m;
}

Problem make_problem(const Options& o, const Shape& s) {
  Problem p;
  p.shape = s;
  p.a_format = o.a_format, p.b_format = o.b_format;
  p.out_type = o.out_type;
  p.masked_m = draw_masked_m(o.seed, o.spread, s);
  const int largest = *std::max_element(p.masked_m.begin(), p.masked_m.end());
  p.max_m = o.max_m > 0 ? o.max_m : int(round_up(largest, kMaxMMultiple));
  if (p.max_m < largest) {
    std::fprintf(stderr, "signalgemm-bench: --max-m %d is below the largest masked_m (%d) of shape E=%d m=%d\n",
                 o.max_m, largest, s.experts, s.m);
    std::exit(2);
  }
  for (int m : p.masked_m) p.rows += m;
  p.a = operand_size(o.a_format, false, s.experts, p.max_m, s.k);
  p.b = operand_size(o.b_format, true, s.experts, s.n, s.k);
  p.c_bytes = size_t(s.experts) * p.max_m * s.n * output_bytes(o.out_type);
  return p;
}

// ---------------------------------------------------------------------------------------------
// Inputs, generated on the GPU

constexpr int kFillBlocks = 1024, kFillThreads = 256;

void fill_data(Format f, void* p, size_t bytes, uint32_t seed, cudaStream_t stream) {
  switch (f) {
    case Format::bf16:
      fill_random_bf16<<<kFillBlocks, kFillThreads, 0, stream>>>(static_cast<uint16_t*>(p), bytes / 2, seed);
      break;
    case Format::nvfp4:
    case Format::mxfp4:
      fill_random_e2m1x2<<<kFillBlocks, kFillThreads, 0, stream>>>(static_cast<uint8_t*>(p), bytes, seed);
      break;
    default:  // e4m3
      fill_random_e4m3<<<kFillBlocks, kFillThreads, 0, stream>>>(static_cast<uint8_t*>(p), bytes, seed);
  }
  SG_BENCH_CHECK_LAUNCH();
}

void fill_scales(Format f, void* p, size_t bytes, uint32_t seed, cudaStream_t stream) {
  if (bytes == 0) return;
  if (f == Format::fp8_block128)  // fp32 in [2e-2, 4e-2)
    fill_random_scale<<<kFillBlocks, kFillThreads, 0, stream>>>(static_cast<float*>(p), bytes / 4, 2e-2f, seed);
  else  // one-byte codes: e4m3 for nvfp4, e8m0 for the MX formats
    fill_random_byte_scale<<<kFillBlocks, kFillThreads, 0, stream>>>(static_cast<uint8_t*>(p), bytes,
                                                                      f != Format::nvfp4, seed);
  SG_BENCH_CHECK_LAUNCH();
}

struct InputSet {
  DeviceBuffer a, sfa, b, sfb, c;
};

InputSet make_input_set(const Problem& p, uint32_t seed, cudaStream_t stream) {
  InputSet in{device_alloc(p.a.data), device_alloc(p.a.scales), device_alloc(p.b.data), device_alloc(p.b.scales),
              device_alloc(p.c_bytes)};
  fill_data(p.a_format, in.a.get(), p.a.data, seed * 4 + 0, stream);
  fill_scales(p.a_format, in.sfa.get(), p.a.scales, seed * 4 + 1, stream);
  fill_data(p.b_format, in.b.get(), p.b.data, seed * 4 + 2, stream);
  fill_scales(p.b_format, in.sfb.get(), p.b.scales, seed * 4 + 3, stream);
  return in;
}

// Bytes the input sets of a shape rotate over: kRotationL2s times the current device's L2.
double rotation_bytes() {
  int device = 0, l2_bytes = 0;
  SG_BENCH_CHECK_CUDA(cudaGetDevice(&device));
  SG_BENCH_CHECK_CUDA(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, device));
  return kRotationL2s * l2_bytes;
}

// How many input sets to rotate over: enough that the other sets' launches move more than
// rotation_bytes() (what a launch reads and writes, not the slabs allocated: max_m may be far above
// the rows used) between two uses of one set, at least 2, at most
// kMaxInputSets and what fits in kUsableMemoryFraction of free memory. 0 when not even one fits;
// `note` says why when the rotation is cut short.
int input_set_count(const Problem& p, std::string& note) {
  size_t free_bytes = 0, total_bytes = 0;
  SG_BENCH_CHECK_CUDA(cudaMemGetInfo(&free_bytes, &total_bytes));
  const double set_bytes = double(p.set_bytes());
  const int fit = int(kUsableMemoryFraction * double(free_bytes) / set_bytes);
  const double needed = 1 + std::ceil(rotation_bytes() / p.bytes_moved());
  const int wanted = int(std::clamp(needed, 2.0, double(kMaxInputSets)));
  char text[160];
  if (fit < 1) {
    std::snprintf(text, sizeof text, "inputs need %.2f GB, %.2f GB free", set_bytes / 1e9, free_bytes / 1e9);
    note = text;
    return 0;
  }
  if (fit < wanted || wanted < needed) {
    std::snprintf(text, sizeof text, "only %d input set(s) rotate; L2 may flatter", std::min(wanted, fit));
    note = text;
  }
  return std::min(wanted, fit);
}

// ---------------------------------------------------------------------------------------------
// Timing

// GPU time of the work one call enqueues, between two events. A spin kernel queued before the start
// event keeps the GPU busy while the host enqueues, so host launch overhead (argument validation,
// cuBLASLt's per-call setup) stays out of the measurement; the spin adapts to outlast the host.
class EventTimer {
 public:
  explicit EventTimer(cudaStream_t stream) : stream_(stream) {
    SG_BENCH_CHECK_CUDA(cudaEventCreate(&start_));
    SG_BENCH_CHECK_CUDA(cudaEventCreate(&stop_));
  }
  ~EventTimer() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;

  float time_us(const std::function<void()>& enqueue) {
    spin_kernel<<<1, 1, 0, stream_>>>(spin_ns_);
    SG_BENCH_CHECK_LAUNCH();
    SG_BENCH_CHECK_CUDA(cudaEventRecord(start_, stream_));
    const auto host_start = std::chrono::steady_clock::now();
    enqueue();
    const auto host_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                             std::chrono::steady_clock::now() - host_start)
                             .count();
    SG_BENCH_CHECK_CUDA(cudaEventRecord(stop_, stream_));
    SG_BENCH_CHECK_CUDA(cudaEventSynchronize(stop_));
    SG_BENCH_CHECK_CUDA(cudaGetLastError());
    float ms = 0.f;
    SG_BENCH_CHECK_CUDA(cudaEventElapsedTime(&ms, start_, stop_));
    spin_ns_ = std::clamp<uint64_t>(2 * uint64_t(host_ns) + kSpinMarginNs, spin_ns_, kMaxSpinNs);
    return ms * 1000.f;
  }

 private:
  static constexpr uint64_t kSpinMarginNs = 10'000;
  static constexpr uint64_t kMaxSpinNs = 5'000'000;
  cudaStream_t stream_;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
  uint64_t spin_ns_ = 20'000;
};

// One thing to time. `enqueue(set)` enqueues one run on input set `set` and returns an empty
// string, or why it could not (the variant is then dropped with that reason).
struct Variant {
  std::string name;
  std::function<std::string(int set)> enqueue;
  std::vector<float> us;
  std::string error;

  double median_us() const { return error.empty() ? median(us) : 0.0; }
};

// Times the variants round-robin, starting each round one variant later, so every variant sees the
// same clocks and temperature and none always follows the same neighbour (which matters for the
// signals on/off ratio). Every launch reads the next input set in the rotation.
void time_round_robin(std::vector<Variant>& variants, int warmup, int iters, int sets, EventTimer& timer) {
  const int count = int(variants.size());
  int launch = 0;
  for (int round = 0; round < warmup + iters; ++round) {
    for (int j = 0; j < count; ++j) {
      Variant& v = variants[(round + j) % count];
      if (!v.error.empty()) continue;
      const int set = launch++ % sets;
      std::string error;
      const float us = timer.time_us([&] { error = v.enqueue(set); });
      if (!error.empty())
        v.error = error;
      else if (round >= warmup)
        v.us.push_back(us);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// One shape

struct Row {
  Problem problem;
  int sets = 0;
  std::string tile;  // block_m x block_n x stages the library chose
  double us = 0, signals_off_us = 0, cublas_us = 0;  // medians; 0 = not measured
  std::vector<std::string> notes;
};

std::string describe(const TileConfig& c) {
  if (c.block_m <= 0 || c.block_n <= 0) return "-";
  return std::to_string(c.block_m) + "x" + std::to_string(c.block_n) + "x" + std::to_string(c.stages) +
         (c.cluster > 1 ? "c" + std::to_string(c.cluster) : "");
}

GroupedGemmArgs gemm_args(const Options& o, const Problem& p, const int32_t* masked_m, const float* alpha,
                          cudaStream_t stream) {
  GroupedGemmArgs args;
  args.num_experts = p.shape.experts;
  args.max_m = p.max_m;
  args.n = p.shape.n;
  args.k = p.shape.k;
  args.a.format = p.a_format;
  args.b.format = p.b_format;
  args.out_type = p.out_type;
  args.masked_m = masked_m;
  args.alpha = alpha;
  args.granularity = o.signals;
  args.sm_count = o.sm_count;
  args.expected_m = o.hint ? p.shape.m : 0;  // the heuristic's hint: the mean rows per expert
  args.config = o.config;
  args.stream = stream;
  return args;
}

Row measure_shape(const Options& o, const Shape& shape, cudaStream_t stream) {
  Row row;
  row.problem = make_problem(o, shape);
  const Problem& p = row.problem;
  std::string memory_note;
  row.sets = input_set_count(p, memory_note);
  if (!memory_note.empty()) row.notes.push_back(memory_note);
  if (row.sets == 0) return row;

  std::vector<InputSet> inputs;
  for (int i = 0; i < row.sets; ++i) inputs.push_back(make_input_set(p, o.seed * 64 + uint32_t(i), stream));
  DeviceBuffer masked_m = device_alloc(sizeof(int32_t) * shape.experts);
  DeviceBuffer alpha = device_alloc(sizeof(float) * shape.experts);
  const std::vector<int32_t> masked_host(p.masked_m.begin(), p.masked_m.end());
  SG_BENCH_CHECK_CUDA(cudaMemcpyAsync(masked_m.get(), masked_host.data(), sizeof(int32_t) * shape.experts,
                                      cudaMemcpyHostToDevice, stream));
  fill_random_scale<<<1, 64, 0, stream>>>(static_cast<float*>(alpha.get()), shape.experts, 0.75f, o.seed);
  SG_BENCH_CHECK_LAUNCH();

  GroupedGemmArgs base =
      gemm_args(o, p, static_cast<const int32_t*>(masked_m.get()), static_cast<const float*>(alpha.get()), stream);
  // FP4 weights rearranged once, as at model load (not timed).
  if (o.mma_fragments && (p.b_format == Format::nvfp4 || p.b_format == Format::mxfp4)) {
    for (InputSet& in : inputs) {
      DeviceBuffer packed = device_alloc(mma_fragment_bytes(shape.experts, shape.n, shape.k));
      const OperandArgs rows{p.b_format, in.b.get(), in.sfb.get(), 0, 0};
      if (const Status s = pack_mma_fragments(rows, shape.experts, shape.n, shape.k, packed.get(), stream); !s.ok()) {
        std::fprintf(stderr, "%s\n", s.message.c_str());
        std::exit(1);
      }
      in.b = std::move(packed);
    }
    base.b.layout = OperandLayout::mma_fragments;
    row.notes.push_back("weights in the mma_fragments layout");
  }
  // The workspace: activations converted once per launch (timed with it), or the tile counter.
  DeviceBuffer workspace;
  if (o.workspace && workspace_bytes(base) > 0) {
    workspace = device_alloc(workspace_bytes(base));
    base.workspace = workspace.get();
    base.workspace_bytes = workspace_bytes(base);
    if (activation_workspace_bytes(base) > 0) row.notes.push_back("activations converted in a workspace");
  }
  row.tile = describe(select_config(base));
  // Counters only add and wrap harmlessly, so they are zeroed once and never reset between launches.
  const int64_t counters = signal_layout(base).counter_count();
  DeviceBuffer signals = device_alloc(sizeof(uint32_t) * std::max<int64_t>(counters, 1));
  SG_BENCH_CHECK_CUDA(cudaMemsetAsync(signals.get(), 0, sizeof(uint32_t) * std::max<int64_t>(counters, 1), stream));
  SG_BENCH_CHECK_CUDA(cudaStreamSynchronize(stream));

  auto ours = [&](SignalGranularity g) {
    return [&, g](int set) -> std::string {
      GroupedGemmArgs args = base;
      args.a.data = inputs[set].a.get(), args.a.scales = inputs[set].sfa.get();
      args.b.data = inputs[set].b.get(), args.b.scales = inputs[set].sfb.get();
      args.out = inputs[set].c.get();
      args.granularity = g;
      args.signals = g == SignalGranularity::none ? nullptr : static_cast<uint32_t*>(signals.get());
      const Status status = grouped_gemm_nt_masked(args);
      return status.ok() ? std::string() : status.message;
    };
  };

  std::vector<Variant> variants;
  Variant signals_on{"signalgemm", ours(o.signals), {}, {}};
  // One untimed launch first: an unsupported configuration is reported once, not timed.
  if (std::string why = signals_on.enqueue(0); !why.empty()) {
    row.notes.push_back(why);
  } else {
    SG_BENCH_CHECK_CUDA(cudaStreamSynchronize(stream));
    SG_BENCH_CHECK_CUDA(cudaGetLastError());
    variants.push_back(signals_on);
    if (o.compare_signals && o.signals != SignalGranularity::none)
      variants.push_back({"signals off", ours(SignalGranularity::none), {}, {}});
  }

  std::unique_ptr<CublasLtFp8Grouped> baseline;
  if (o.cublas) {
    if (p.a_format != Format::fp8_block128 || p.b_format != Format::fp8_block128) {
      row.notes.push_back("cublas: n/a (baseline is fp8_block128 x fp8_block128 only)");
    } else {
      baseline = std::make_unique<CublasLtFp8Grouped>(shape.experts, p.max_m, shape.n, shape.k, o.sm_count);
      const std::string why =
          baseline->prepare(p.masked_m, inputs[0].a.get(), inputs[0].b.get(), inputs[0].c.get(), stream);
      if (!why.empty())
        row.notes.push_back("cublas: not timed (" + why + ")");
      else
        variants.push_back({"cublas", [&](int set) {
                              return baseline->run(inputs[set].a.get(), inputs[set].b.get(), inputs[set].c.get(),
                                                   stream);
                            }, {}, {}});
    }
  }

  EventTimer timer(stream);
  time_round_robin(variants, o.warmup, o.iters, row.sets, timer);
  for (const Variant& v : variants) {
    const bool is_cublas = v.name == "cublas";
    if (!v.error.empty()) row.notes.push_back(is_cublas ? "cublas: unsupported (" + v.error + ")" : v.name + ": " + v.error);
    if (v.name == "signalgemm") row.us = v.median_us();
    if (v.name == "signals off") row.signals_off_us = v.median_us();
    if (is_cublas) row.cublas_us = v.median_us();
  }
  return row;
}

// ---------------------------------------------------------------------------------------------
// Report

std::string fixed(double v, int precision) {
  if (!(v > 0)) return "-";
  char text[32];
  std::snprintf(text, sizeof text, "%.*f", precision, v);
  return text;
}

double ratio(double a, double b) { return a > 0 && b > 0 ? a / b : 0.0; }

std::string join(const std::vector<std::string>& parts, const char* separator) {
  std::string out;
  for (const std::string& s : parts) out += (out.empty() ? "" : separator) + s;
  return out;
}

// Console columns, in order; '|' follows a column when `bar` is set. Header and rows share these.
struct Column {
  const char* name;
  int width;
  bool bar;
};
constexpr Column kColumns[] = {{"E", 3, false},        {"m", 5, false},         {"N", 5, false},
                               {"K", 5, true},         {"max_m", 5, true},      {"us", 8, true},
                               {"TFLOP/s", 7, true},   {"GB/s", 6, true},       {"floor_us", 8, true},
                               {"x_floor", 7, true},   {"cublas_us", 9, true},  {"x_cublas", 8, true},
                               {"signals_off_us", 14, true}, {"on/off", 6, true}, {"tile", 10, true}};
constexpr int kColumnCount = int(sizeof(kColumns) / sizeof(kColumns[0]));

void print_line(const std::vector<std::string>& cells, const std::string& note) {
  std::string line;
  for (int i = 0; i < kColumnCount; ++i) {
    char cell[64];
    std::snprintf(cell, sizeof cell, "%*s", kColumns[i].width, cells[i].c_str());
    line += cell;
    line += kColumns[i].bar ? " | " : " ";
  }
  std::printf("%s%s\n", line.c_str(), note.c_str());
  std::fflush(stdout);
}

void print_header() {
  std::vector<std::string> names;
  for (const Column& c : kColumns) names.push_back(c.name);
  print_line(names, "note");
}

struct Metrics {
  double tflops, gbps, floor_us, x_floor, x_cublas, on_off;
};

Metrics metrics(const Row& r) {
  const Problem& p = r.problem;
  Metrics m{};
  m.floor_us = p.rows > 0 ? p.floor_us() : 0;
  if (r.us > 0) {
    m.tflops = p.flops() / r.us * 1e-6;
    m.gbps = p.bytes_moved() / r.us * 1e-3;
  }
  m.x_floor = ratio(r.us, m.floor_us);
  m.x_cublas = ratio(r.us, r.cublas_us);
  m.on_off = ratio(r.us, r.signals_off_us);
  return m;
}

void print_row(const Row& r) {
  const Shape& s = r.problem.shape;
  const Metrics m = metrics(r);
  print_line({std::to_string(s.experts), std::to_string(s.m), std::to_string(s.n), std::to_string(s.k),
              std::to_string(r.problem.max_m), fixed(r.us, 1), fixed(m.tflops, 1), fixed(m.gbps, 0),
              fixed(m.floor_us, 1), fixed(m.x_floor, 3), fixed(r.cublas_us, 1), fixed(m.x_cublas, 3),
              fixed(r.signals_off_us, 1), fixed(m.on_off, 4), r.tile},
             join(r.notes, "; "));
}

std::string csv_field(double v, int precision) { return v > 0 ? fixed(v, precision) : ""; }

std::string csv_quote(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) out += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return out + "\"";
}

void write_csv_header(FILE* f) {
  std::fprintf(f,
               "E,m,N,K,max_m,masked_m_min,masked_m_max,rows,a_format,b_format,signals,sm_count,tile,input_sets,"
               "us,tflops,gbps,floor_us,x_floor,cublas_us,x_cublas,signals_off_us,on_off,note\n");
}

void write_csv_row(FILE* f, const Options& o, const Row& r) {
  const Problem& p = r.problem;
  const Shape& s = p.shape;
  const Metrics m = metrics(r);
  const auto [lo, hi] = std::minmax_element(p.masked_m.begin(), p.masked_m.end());
  std::fprintf(f, "%d,%d,%d,%d,%d,%d,%d,%.0f,%s,%s,%s,%d,%s,%d,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n", s.experts, s.m, s.n,
               s.k, p.max_m, *lo, *hi, p.rows, to_string(p.a_format), to_string(p.b_format), to_string(o.signals),
               o.sm_count, r.tile.c_str(), r.sets, csv_field(r.us, 2).c_str(), csv_field(m.tflops, 2).c_str(),
               csv_field(m.gbps, 1).c_str(), csv_field(m.floor_us, 2).c_str(), csv_field(m.x_floor, 4).c_str(),
               csv_field(r.cublas_us, 2).c_str(), csv_field(m.x_cublas, 4).c_str(),
               csv_field(r.signals_off_us, 2).c_str(), csv_field(m.on_off, 4).c_str(),
               csv_quote(join(r.notes, "; ")).c_str());
  std::fflush(f);
}

void print_preamble(const Options& o, const cudaDeviceProp& prop) {
  std::printf("signalgemm-bench on %s (%d SMs): a %s, b %s, out %s, signals %s%s, sm_count %s\n", prop.name,
              prop.multiProcessorCount, to_string(o.a_format), to_string(o.b_format), to_string(o.out_type),
              to_string(o.signals),
              o.compare_signals ? " (and off: signals_off_us, on/off)" : "",
              o.sm_count > 0 ? std::to_string(o.sm_count).c_str() : "all");
  const std::string max_m_rule =
      o.max_m > 0 ? std::to_string(o.max_m) : "max masked_m rounded up to " + std::to_string(kMaxMMultiple);
  std::printf("routing: masked_m[e] = round(m * U(%.2g, %.2g)) >= 1 (seed %u); max_m = %s; expected_m = %s\n",
              1 - o.spread, 1 + o.spread, o.seed, max_m_rule.c_str(), o.hint ? "m" : "0 (no hint)");
  std::printf("floor = max(bytes / %.2f TB/s, FLOPs / %.0f TFLOP/s FP8 or %.0f BF16), SPEC's ceilings measured on an "
              "H100, on every device; bytes = rows used of A + scales, all of B + scales, rows written of C\n",
              kHbmBytesPerSecond / 1e12, kFp8FlopsPerSecond / 1e12, kBf16FlopsPerSecond / 1e12);
  std::printf("timing: median of %d runs after %d warm-up, GPU time between events (host enqueue hidden behind a "
              "spin kernel); variants interleaved; input sets rotated, > %.0f MB (%.1f x L2) moved between two uses of "
              "one\n",
              o.iters, o.warmup, rotation_bytes() / 1e6, kRotationL2s);
  if (o.cublas)
    std::printf("cublas: cuBLASLt FP8 block-scaled (1x128 tokens, 128x128 weights), one cublasLtMatmul per expert over "
                "its masked_m rows rounded up to 16 (it cannot skip padded rows), heuristic algorithm; timed only "
                "where one expert's output, with uniform scales, matched float64 dot products at 15 places\n");
  std::printf("\n");
}

}  // namespace
}  // namespace signalgemm::bench

int main(int argc, char** argv) {
  using namespace signalgemm::bench;
  Options o = parse_options(argc, argv);
  const cudaDeviceProp prop = require_hopper("signalgemm-bench");
  // More than the device has means all of them (the library's rule): reported as what runs.
  if (o.sm_count >= prop.multiProcessorCount) o.sm_count = 0;

  FILE* csv = nullptr;
  if (!o.csv.empty()) {
    csv = std::fopen(o.csv.c_str(), "w");
    if (csv == nullptr) {
      std::fprintf(stderr, "signalgemm-bench: cannot write %s\n", o.csv.c_str());
      return 2;
    }
    write_csv_header(csv);
  }
  cudaStream_t stream = nullptr;
  SG_BENCH_CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));

  print_preamble(o, prop);
  print_header();
  int refused = 0;  // shapes the library would not run (their note says why)
  for (const Shape& s : o.shapes) {
    const Row row = measure_shape(o, s, stream);
    print_row(row);
    if (csv) write_csv_row(csv, o, row);
    if (row.us == 0) ++refused;
  }

  SG_BENCH_CHECK_CUDA(cudaStreamDestroy(stream));
  if (csv) std::fclose(csv);
  if (refused > 0)
    std::fprintf(stderr, "signalgemm-bench: %d of %zu shapes not run (see their notes)\n", refused, o.shapes.size());
  return refused > 0 ? 1 : 0;
}
