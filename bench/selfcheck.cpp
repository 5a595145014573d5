// CPU self-check of the reference path: quantize random operands to every format, run the float64
// masked grouped GEMM, and compare with the same GEMM on the unquantized inputs. The error is the
// format's quantization error, which must fall under a per-format bound. No GPU involved.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "signalgemm/reference.h"

using namespace signalgemm;

int main(int argc, char** argv) {
  if (argc > 1) {  // it takes no arguments
    std::fprintf(!std::strcmp(argv[1], "--help") ? stdout : stderr, "usage: %s (no arguments)\n", argv[0]);
    return !std::strcmp(argv[1], "--help") ? 0 : 2;
  }
  constexpr int kExperts = 2, kMaxM = 48, kN = 64, kK = 256;
  const std::vector<int32_t> masked_m = {kMaxM, 17};
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> xa(kExperts * kMaxM * kK), xb(kExperts * kN * kK);
  for (auto& x : xa) x = normal(rng);
  for (auto& x : xb) x = normal(rng);

  // Exact product of the unquantized inputs.
  std::vector<double> exact(size_t(kExperts) * kMaxM * kN, 0.0);
  for (int e = 0; e < kExperts; ++e)
    for (int i = 0; i < masked_m[e]; ++i)
      for (int j = 0; j < kN; ++j) {
        double sum = 0;
        for (int k = 0; k < kK; ++k)
          sum += double(xa[(size_t(e) * kMaxM + i) * kK + k]) * xb[(size_t(e) * kN + j) * kK + k];
        exact[(size_t(e) * kMaxM + i) * kN + j] = sum;
      }

  struct Case { Format format; double bound; };
  // Bounds: a few times the relative RMS error of each element format (mantissa bits 7, 3, 1).
  const Case cases[] = {{Format::bf16, 1e-2}, {Format::fp8_block128, 8e-2}, {Format::mxfp8, 8e-2},
                        {Format::nvfp4, 0.25}, {Format::mxfp4, 0.3}};
  bool all_ok = true;
  std::printf("signalgemm self-check (CPU reference): %dx%dx%d x %d experts, masked_m = {%d, %d}\n", kMaxM, kN, kK,
              kExperts, masked_m[0], masked_m[1]);
  std::printf("%-14s %-12s %-8s %s\n", "format", "rel. error", "bound", "verdict");
  for (const Case& c : cases) {
    const auto a = ref::quantize(c.format, ref::Role::a, xa.data(), kExperts, kMaxM, kK);
    const auto b = ref::quantize(c.format, ref::Role::b, xb.data(), kExperts, kN, kK);
    const auto alpha = ref::combined_alpha(a, b);
    const auto got = ref::masked_grouped_gemm(a, b, masked_m.data(), alpha.data());
    double err2 = 0, ref2 = 0;
    bool masked_rows_ok = true;
    for (int e = 0; e < kExperts; ++e)
      for (int i = 0; i < kMaxM; ++i)
        for (int j = 0; j < kN; ++j) {
          const size_t idx = (size_t(e) * kMaxM + i) * kN + j;
          if (i >= masked_m[e]) {
            masked_rows_ok &= std::isnan(got[idx]);
            continue;
          }
          err2 += (got[idx] - exact[idx]) * (got[idx] - exact[idx]);
          ref2 += exact[idx] * exact[idx];
        }
    const double rel = std::sqrt(err2 / ref2);
    const bool ok = rel < c.bound && masked_rows_ok;
    all_ok &= ok;
    std::printf("%-14s %-12.3e %-8.2g %s\n", to_string(c.format), rel, c.bound, ok ? "ok" : "FAIL");
  }
  std::printf("self-check: %s\n", all_ok ? "ok" : "FAILED");
  return all_ok ? 0 : 1;
}
