// cuBLASLt baseline: the same masked grouped FP8 GEMM with DeepSeek-style block scales, run as one
// cublasLtMatmul per expert with that expert's real row count rounded up to 16 (cuBLASLt cannot
// skip padded rows, so this is the fairest use of it).
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <string>
#include <vector>

namespace signalgemm::bench {

class CublasLtFp8Grouped {
 public:
  // Device operands in SignalGEMM's data layout; scales are the baseline's own buffers.
  CublasLtFp8Grouped(int experts, int max_m, int n, int k);
  ~CublasLtFp8Grouped();

  // Empty if cuBLASLt accepted every per-expert problem, else why not.
  std::string prepare(const std::vector<int>& masked_m);
  // Enqueues the per-expert GEMMs on `stream` reading a[e], b[e] and writing c[e].
  void run(const void* a, const void* b, void* c, cudaStream_t stream);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace signalgemm::bench
