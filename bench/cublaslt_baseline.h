// cuBLASLt baseline: the same masked grouped FP8 GEMM with DeepSeek-style block scales (1x128 per
// token row, 128x128 per weight block), run as one cublasLtMatmul per expert over that expert's
// real rows rounded up to 16. cuBLASLt cannot skip padded rows, so per expert is the fairest use of
// it; a strided batched GEMM over max_m rows would charge it for rows that SignalGEMM skips.
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <string>
#include <vector>

namespace signalgemm::bench {

// Rows cuBLASLt computes for an expert with `rows` real ones: its FP8 block-scaled kernels want
// dimensions in multiples of 16 (found on the H100: no algorithm otherwise).
inline int cublaslt_padded_rows(int rows) { return (rows + 15) / 16 * 16; }

class CublasLtFp8Grouped {
 public:
  // Operands in SignalGEMM's data layout (tokens [E][max_m][K], weights [E][N][K] e4m3, output
  // [E][max_m][N] bf16). The scales are the baseline's own buffers in whatever layout cuBLASLt
  // reads: only time matters once prepare() has checked one expert's output with uniform scales. max_m must be >= cublaslt_padded_rows(max masked_m). sm_count > 0
  // is passed as cuBLASLt's SM_COUNT_TARGET (a heuristic target, not a hard limit like ours).
  CublasLtFp8Grouped(int experts, int max_m, int n, int k, int sm_count = 0);
  ~CublasLtFp8Grouped();
  CublasLtFp8Grouped(const CublasLtFp8Grouped&) = delete;
  CublasLtFp8Grouped& operator=(const CublasLtFp8Grouped&) = delete;

  // Picks an algorithm per distinct padded row count and runs every expert once on the given
  // buffers, so a configuration cuBLASLt rejects only at run time is caught here, with uniform
  // scales, checking the first expert with rows at 15 places against float64 dot products. Returns
  // an empty string when ready, else why cuBLASLt cannot run this problem or computes it wrong.
  std::string prepare(const std::vector<int>& masked_m, const void* tokens, const void* weights, void* out,
                      cudaStream_t stream);

  // Enqueues the per-expert GEMMs on `stream`. Returns an empty string, or the failing call.
  std::string run(const void* tokens, const void* weights, void* out, cudaStream_t stream);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace signalgemm::bench
