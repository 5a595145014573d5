// Helpers shared by the GPU tests: skip without a Hopper GPU, device buffers, problem setup from
// the CPU reference's quantizers, and result checks.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "signalgemm/gemm.h"
#include "signalgemm/reference.h"

namespace signalgemm::test {

// Spins the calling thread for `ns` of the GPU's global timer (a kernel that stays busy).
__device__ inline void spin_for_ns(uint64_t ns) {
  uint64_t start, now;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  do asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  while (now - start < ns);
}

#define SG_CUDA_CHECK(expr)                                                                        \
  do {                                                                                             \
    cudaError_t err_ = (expr);                                                                     \
    ASSERT_EQ(err_, cudaSuccess) << #expr << ": " << cudaGetErrorString(err_);                     \
  } while (0)

inline bool have_hopper_gpu() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    cudaGetLastError();
    return false;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  return prop.major == 9 && prop.minor == 0;
}

#define SG_REQUIRE_HOPPER()                                                                        \
  do {                                                                                             \
    if (!::signalgemm::test::have_hopper_gpu()) GTEST_SKIP() << "no Hopper (sm_90) GPU: skipped";  \
  } while (0)

// Owning device allocation.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes > 0 && cudaMalloc(&ptr_, bytes) != cudaSuccess) ptr_ = nullptr;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept { *this = std::move(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  template <typename T = void>
  T* get() const {
    return static_cast<T*>(ptr_);
  }
  size_t bytes() const { return bytes_; }

  // A copy from pageable host memory that has landed when this returns: cudaMemcpy may return before
  // its DMA does, and launches on non-blocking streams are not ordered after the legacy stream's.
  // (The legacy stream only: a consumer may already spin on a non-blocking one.)
  static void upload(void* device, const void* host, size_t bytes) {
    cudaMemcpy(device, host, bytes, cudaMemcpyHostToDevice);
    cudaStreamSynchronize(cudaStreamLegacy);
  }
  template <typename T>
  static DeviceBuffer from(const std::vector<T>& host) {
    DeviceBuffer b(host.size() * sizeof(T));
    upload(b.ptr_, host.data(), b.bytes_);
    return b;
  }
  template <typename T>
  std::vector<T> to_host() const {
    std::vector<T> host(bytes_ / sizeof(T));
    cudaMemcpy(host.data(), ptr_, bytes_, cudaMemcpyDeviceToHost);
    return host;
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

inline std::vector<float> random_normal(size_t count, std::mt19937& rng, float stddev = 1.f) {
  std::normal_distribution<float> dist(0.f, stddev);
  std::vector<float> v(count);
  for (auto& x : v) x = dist(rng);
  return v;
}

// Bit pattern the output is filled with before every launch: a NaN nobody computes, as bf16 and
// as fp16.
inline constexpr uint16_t kPoison = 0x7fa5;

// One bf16 rounding step at `x`: the spacing of bf16 values around it.
inline double bf16_ulp(double x) {
  int exponent = 0;
  std::frexp(std::max(std::fabs(x), 1e-30), &exponent);  // |x| in [2^(exponent-1), 2^exponent)
  return std::ldexp(1.0, exponent - 8);                  // 7 stored mantissa bits
}

// The same for fp16: 10 stored mantissa bits, and a fixed step of 2^-24 among its subnormals.
inline double fp16_ulp(double x) {
  int exponent = 0;
  std::frexp(std::max(std::fabs(x), 1e-30), &exponent);
  return std::ldexp(1.0, std::max(exponent, -13) - 11);
}

// A problem with one format per operand, quantized on the host, uploaded with optional padded
// strides (bytes).
struct Problem {
  Format a_format = Format::fp8_block128;
  Format b_format = Format::fp8_block128;
  int experts = 0, max_m = 0, n = 0, k = 0;
  int64_t a_row_stride = 0, b_row_stride = 0, out_row_stride = 0;  // bytes (0 = packed)
  OutputType out_type = OutputType::bf16;  // bf16 or fp16 (2 bytes either way)
  std::vector<float> b_expert_gain;  // if set before build: expert e's weights x b_expert_gain[e]
  ref::QuantizedOperand a, b;
  std::vector<float> alpha;
  DeviceBuffer d_a, d_sfa, d_b, d_sfb, d_alpha, d_out, d_masked_m;

  // Uploads operands with the strides requested (padding bytes get random garbage).
  void build(int experts_, int max_m_, int n_, int k_, std::mt19937& rng, int a_pad = 0, int b_pad = 0,
             int out_pad = 0, Format a_format_ = Format::fp8_block128, Format b_format_ = Format::fp8_block128) {
    a_format = a_format_, b_format = b_format_;
    experts = experts_, max_m = max_m_, n = n_, k = k_;
    const auto xa = random_normal(size_t(experts) * max_m * k, rng);
    auto xb = random_normal(size_t(experts) * n * k, rng, 0.05f);
    for (size_t e = 0; e < b_expert_gain.size() && int(e) < experts; ++e)
      for (size_t i = e * n * k; i < (e + 1) * n * k; ++i) xb[i] *= b_expert_gain[e];
    a = ref::quantize(a_format, ref::Role::a, xa.data(), experts, max_m, k);
    b = ref::quantize(b_format, ref::Role::b, xb.data(), experts, n, k);
    // alpha also folds in nvfp4's per-expert global scales, as callers do, so that C has the size of
    // the unquantized product (without them nvfp4 products are ~10^4 times larger: fp16 overflows).
    alpha = ref::combined_alpha(a, b);
    std::uniform_real_distribution<float> ua(0.5f, 2.f);
    for (auto& x : alpha) x *= ua(rng);
    a_row_stride = a.row_bytes() + a_pad;
    b_row_stride = b.row_bytes() + b_pad;
    out_row_stride = int64_t(n) * 2 + out_pad;
    d_a = upload_strided(a.data, experts * max_m, int(a.row_bytes()), a_row_stride, rng);
    d_b = upload_strided(b.data, experts * n, int(b.row_bytes()), b_row_stride, rng);
    d_sfa = DeviceBuffer::from(a.scales);
    d_sfb = DeviceBuffer::from(b.scales);
    d_alpha = DeviceBuffer::from(alpha);
    d_out = DeviceBuffer(size_t(experts) * max_m * out_row_stride);
    d_masked_m = DeviceBuffer(sizeof(int32_t) * experts);
  }

  static DeviceBuffer upload_strided(const std::vector<uint8_t>& packed, int rows, int row_bytes, int64_t stride,
                                     std::mt19937& rng) {
    std::vector<uint8_t> host(size_t(rows) * stride);
    for (auto& x : host) x = uint8_t(rng());
    for (int r = 0; r < rows; ++r) std::memcpy(&host[size_t(r) * stride], &packed[size_t(r) * row_bytes], row_bytes);
    return DeviceBuffer::from(host);
  }

  GroupedGemmArgs args() const {
    GroupedGemmArgs g;
    g.num_experts = experts, g.max_m = max_m, g.n = n, g.k = k;
    g.a = OperandArgs{a_format, d_a.get(), d_sfa.get(), a_row_stride, 0};
    g.b = OperandArgs{b_format, d_b.get(), d_sfb.get(), b_row_stride, 0};
    g.out = d_out.get();
    g.out_type = out_type;
    g.out_row_stride = out_row_stride;
    g.masked_m = d_masked_m.get<int32_t>();
    g.alpha = d_alpha.get<float>();
    return g;
  }

  void set_masked_m(const std::vector<int32_t>& m) {
    DeviceBuffer::upload(d_masked_m.get(), m.data(), sizeof(int32_t) * m.size());
  }
  void poison_output() {
    std::vector<uint16_t> p(d_out.bytes() / 2, kPoison);
    DeviceBuffer::upload(d_out.get(), p.data(), d_out.bytes());
  }
  // Output as 16-bit patterns (out_type), [experts][max_m][out_row_stride / 2].
  std::vector<uint16_t> output() const { return d_out.to_host<uint16_t>(); }
  double output_value(uint16_t bits) const {
    return out_type == OutputType::fp16 ? ref::fp16_to_float(bits) : ref::bf16_to_float(bits);
  }
  // `x` rounded to out_type, as the kernel's output is.
  double rounded_to_output(double x) const {
    const float f = static_cast<float>(x);
    return out_type == OutputType::fp16 ? ref::fp16_to_float(ref::float_to_fp16(f))
                                        : ref::bf16_to_float(ref::float_to_bf16(f));
  }
  // One rounding step of out_type at `x`.
  double output_step(double x) const { return out_type == OutputType::fp16 ? fp16_ulp(x) : bf16_ulp(x); }
};

// Per expert, ||C - ref|| / ||ref|| <= tolerance over its real rows, every other row and column
// still poisoned. An expert of a few elements (one row of a narrow N) can miss that bound through
// legitimate rounding flips: the kernel rounds its fp32 sum and the reference its float64 sum to
// bf16 (or fp16, Problem::out_type), and where the two straddle a rounding boundary they land one
// step apart (bf16's step is 2^-8..2^-7 of the value, fp16's 2^-11..2^-10). So an expert also
// passes when no element is off by more than one step and at most 1% of them (at least one) are off
// at all; a lost scale or a misplaced chunk is off by far more.
// fp8_block128 x fp8_block128 (`abs_product_sums` given: |alpha| * sum_k |a * b| per element, as
// fp8_abs_product_sums returns): Hopper's FP8 MMAs accumulate each 128-K block with ~14-bit sums
// (the kernel promotes every block to fp32), which flips roundings more often (4-25% of the
// elements in experts of 16-112 elements, H100, 2026-11-27) and, where the terms cancel, can miss
// by more than one step. There an element may be off by one step plus 2^-11 of its sum of |terms|
// (a lost scale or a wrong chunk is off by ~1/sqrt(K) of it and more), and up to 40% (at least 3)
// of an expert's elements may be off (25% seen in one of 16 elements; a wrong rounding mode would
// flip about half, and the other pairings' tests hold their shared epilogue to 1%).
// Returns a description of the first failure, or "".
inline std::string check_output(const Problem& p, const std::vector<int32_t>& masked_m,
                                const std::vector<double>& reference, double tolerance = 2e-3,
                                const std::vector<double>* abs_product_sums = nullptr) {
  constexpr double kFp8AccumulationError = 1.0 / 2048;
  const auto out = p.output();
  const int64_t pitch = p.out_row_stride / 2;
  for (int e = 0; e < p.experts; ++e) {
    const int m = std::clamp(masked_m[e], 0, p.max_m);
    double err2 = 0, ref2 = 0;
    int64_t elements = 0, off_by_one_step = 0, off_by_more = 0;
    for (int i = 0; i < p.max_m; ++i) {
      for (int64_t j = 0; j < pitch; ++j) {
        const uint16_t bits = out[(size_t(e) * p.max_m + i) * pitch + j];
        if (i >= m || j >= p.n) {
          if (bits != kPoison)
            return "expert " + std::to_string(e) + " row " + std::to_string(i) + " col " + std::to_string(j) +
                   " written but outside masked_m/n";
          continue;
        }
        const size_t index = (size_t(e) * p.max_m + i) * p.n + j;
        const double got = p.output_value(bits);
        const double want = reference[index];
        if (!std::isfinite(got)) {
          char bits_hex[8];
          std::snprintf(bits_hex, sizeof bits_hex, "0x%04x", unsigned(bits));
          return "expert " + std::to_string(e) + " row " + std::to_string(i) + " col " + std::to_string(j) +
                 " not finite (bits " + bits_hex + (bits == kPoison ? ": never written)" : ")");
        }
        err2 += (got - want) * (got - want);
        ref2 += want * want;
        ++elements;
        const double error = std::fabs(got - want);
        const double allowed =
            p.output_step(want) + (abs_product_sums != nullptr ? kFp8AccumulationError * (*abs_product_sums)[index] : 0.0);
        if (error > allowed) ++off_by_more;
        else if (error > 0) ++off_by_one_step;
      }
    }
    const double relative = std::sqrt(err2 / std::max(ref2, 1e-300));
    const int64_t flips_allowed =
        abs_product_sums != nullptr ? std::max<int64_t>(3, elements * 2 / 5) : std::max<int64_t>(1, elements / 100);
    const bool rounding_flips_only = off_by_more == 0 && off_by_one_step <= flips_allowed;
    if (m > 0 && relative > tolerance && !rounding_flips_only)
      return "expert " + std::to_string(e) + ": relative error " + std::to_string(relative) + " (" +
             std::to_string(m) + " rows, " + std::to_string(elements) + " elements, " + std::to_string(off_by_more) +
             " off by more than allowed, " + std::to_string(off_by_one_step) + " by one step)";
  }
  return "";
}

// Float64 reference for every row (masked_m = max_m): rows < masked_m do not depend on masked_m.
inline std::vector<double> full_reference(const Problem& p) {
  const std::vector<int32_t> all(p.experts, p.max_m);
  return ref::masked_grouped_gemm(p.a, p.b, all.data(), p.alpha.data());
}

// |alpha| * sum_k |a * b| for every element of an fp8_block128 x fp8_block128 problem (all rows):
// the scale of the MMAs' accumulation error, for check_output. e4m3's sign is bit 7 and the block
// scales are positive, so clearing the sign bits gives |a| and |b|.
inline std::vector<double> fp8_abs_product_sums(const Problem& p) {
  ref::QuantizedOperand a = p.a, b = p.b;
  for (auto& x : a.data) x &= 0x7f;
  for (auto& x : b.data) x &= 0x7f;
  const std::vector<int32_t> every_row(p.experts, p.max_m);
  std::vector<double> sums = ref::masked_grouped_gemm(a, b, every_row.data(), p.alpha.data());
  for (double& x : sums) x = std::fabs(x);
  return sums;
}

// Each counter ends at its base plus exactly what the signal layout announces for masked_m.
inline std::string check_signals(const GroupedGemmArgs& args, const std::vector<int32_t>& masked_m,
                          const std::vector<uint32_t>& signals, uint32_t base = 7) {
  const SignalLayout layout = signal_layout(args);
  if (int64_t(signals.size()) != layout.counter_count()) return "wrong counter count";
  for (int e = 0; e < args.num_experts; ++e) {
    const int m = std::clamp(masked_m[e], 0, args.max_m);
    const int blocks = layout.granularity == SignalGranularity::per_row_block ? layout.row_blocks_per_expert() : 1;
    for (int rb = 0; rb < blocks; ++rb) {
      const uint32_t got = signals[layout.counter_index(e, rb)];
      const uint32_t want = base + layout.expected(m, rb);
      if (got != want)
        return "expert " + std::to_string(e) + " row block " + std::to_string(rb) + ": counter " +
               std::to_string(got) + ", expected " + std::to_string(want);
    }
  }
  return "";
}


struct RunResult {
  Status status;
  std::vector<uint32_t> signals;
};

// Poisons the output, sets masked_m, starts every counter at `signal_base`, launches, synchronizes.
inline RunResult run(Problem& p, GroupedGemmArgs args, const std::vector<int32_t>& masked_m,
                     uint32_t signal_base = 7) {
  p.set_masked_m(masked_m);
  p.poison_output();
  DeviceBuffer d_signals;
  if (args.granularity != SignalGranularity::none) {
    const SignalLayout layout = signal_layout(args);
    d_signals = DeviceBuffer::from(std::vector<uint32_t>(layout.counter_count(), signal_base));
    args.signals = d_signals.get<uint32_t>();
  }
  RunResult r;
  r.status = grouped_gemm_nt_masked(args);
  if (cudaError_t err = cudaDeviceSynchronize(); err != cudaSuccess)
    r.status = Status{StatusCode::cuda_error, std::string("kernel failed: ") + cudaGetErrorString(err)};
  if (args.signals != nullptr) r.signals = d_signals.to_host<uint32_t>();
  return r;
}

}  // namespace signalgemm::test
