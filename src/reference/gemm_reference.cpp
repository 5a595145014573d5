// The masked grouped GEMM in float64: the exact product of the dequantized operands (every
// element x scale is exact in double), against which the kernels are compared.
#include <algorithm>
#include <atomic>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>

#include "signalgemm/reference.h"

namespace signalgemm::ref {

std::vector<double> masked_grouped_gemm(const QuantizedOperand& a, const QuantizedOperand& b,
                                        const int32_t* masked_m, const float* alpha) {
  constexpr const char* kWhere = "signalgemm::ref::masked_grouped_gemm";
  if (a.experts != b.experts)
    throw std::invalid_argument(std::string(kWhere) + ": a.experts (" + std::to_string(a.experts) +
                                ") differs from b.experts (" + std::to_string(b.experts) + ")");
  if (a.k != b.k)
    throw std::invalid_argument(std::string(kWhere) + ": a.k (" + std::to_string(a.k) + ") differs from b.k (" +
                                std::to_string(b.k) + ")");
  if (masked_m == nullptr) throw std::invalid_argument(std::string(kWhere) + ": masked_m is null");

  // Dequantize once (this also checks each operand's buffers against its shape), then run a
  // plain loop nest whose inner product walks two contiguous K rows.
  const std::vector<double> a_values = dequantize(a);
  const std::vector<double> b_values = dequantize(b);
  const int experts = a.experts, max_m = a.rows, n = b.rows, k = a.k;

  std::vector<double> c(size_t(experts) * max_m * n, std::numeric_limits<double>::quiet_NaN());
  // Every output row is independent: the host's cores take rows from a shared counter (the GPU
  // tests' references of the SPEC shapes took minutes on one core). Each element is summed in the
  // same order whichever thread computes it, so the result does not depend on the thread count.
  const int64_t rows = int64_t(experts) * max_m;
  std::atomic<int64_t> next_row{0};
  auto compute_rows = [&] {
    for (int64_t r = next_row.fetch_add(1, std::memory_order_relaxed); r < rows;
         r = next_row.fetch_add(1, std::memory_order_relaxed)) {
      const int e = int(r / max_m), i = int(r % max_m);
      if (i >= std::clamp(masked_m[e], 0, max_m)) continue;
      const double scale = alpha != nullptr ? double(alpha[e]) : 1.0;
      const double* a_row = a_values.data() + size_t(r) * k;
      double* c_row = c.data() + size_t(r) * n;
      for (int j = 0; j < n; ++j) {
        const double* b_row = b_values.data() + (size_t(e) * n + j) * k;
        // Four partial sums break the dependency chain of a single accumulator (several times
        // faster; float64 keeps the order immaterial at the tests' tolerances).
        double partial[4] = {0.0, 0.0, 0.0, 0.0};
        int kk = 0;
        for (; kk + 4 <= k; kk += 4)
          for (int lane = 0; lane < 4; ++lane) partial[lane] += a_row[kk + lane] * b_row[kk + lane];
        for (; kk < k; ++kk) partial[0] += a_row[kk] * b_row[kk];
        c_row[j] = scale * ((partial[0] + partial[1]) + (partial[2] + partial[3]));
      }
    }
  };
  // Small products stay on the calling thread (a thread start costs more than they do).
  const double macs = double(rows) * n * k;
  const int helpers = macs < 1e7 ? 0 : int(std::min<unsigned>(std::thread::hardware_concurrency(), 64)) - 1;
  std::vector<std::thread> threads;
  for (int t = 0; t < helpers; ++t) threads.emplace_back(compute_rows);
  compute_rows();
  for (std::thread& thread : threads) thread.join();
  return c;
}

}  // namespace signalgemm::ref
